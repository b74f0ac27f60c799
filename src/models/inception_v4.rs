//! Inception-v4 (paper Figs 3-9), as TF-slim and timm build it. Variable names are timm's
//! (`features.N...`, classifier `last_linear`). Where third-party transcriptions of the figures
//! disagree on the 1x7/7x1 order, TF-slim and timm agree with each other and are followed.

use candle_core::Result;

use super::blocks::reduction_a;
use super::body::Body;
use super::layers::{Chain, Ctx, Mixed, K1, K1X3, K1X7, K3, K3X1, K7X1};
use super::ModelConfig;

/// Reduction-A filter counts k, l, m, n (paper Table 1).
const REDUCTION_A: [usize; 4] = [192, 224, 256, 384];

pub(super) fn body(ctx: &Ctx, cfg: &ModelConfig) -> Result<Body> {
    let [n_a, n_b, n_c] = cfg.blocks();
    // timm numbers the modules of one flat `features` sequence.
    let features = ctx.pp("features");
    let index = std::cell::Cell::new(0usize);
    let next = || index.replace(index.get() + 1).to_string();
    let at = || features.pp(next());

    let stem = Chain::from(3)
        .conv_s2(&features, &next(), 32, K3)?
        .conv_valid(&features, &next(), 32, K3)?
        .conv(&features, &next(), 64, K3)?;
    let c = stem.channels();
    let stem = stem.mixed(mixed_3a(&at(), c)?);
    let c = stem.channels();
    let stem = stem.mixed(mixed_4a(&at(), c)?);
    let c = stem.channels();
    let stem = stem.mixed(mixed_5a(&at(), c)?);

    let mut a = Chain::from(stem.channels());
    for _ in 0..n_a {
        let block = inception_a(&at(), a.channels())?;
        a = a.mixed(block);
    }
    let red_a = Chain::from(a.channels()).mixed(reduction_a(&at(), a.channels(), REDUCTION_A)?);
    let mut b = Chain::from(red_a.channels());
    for _ in 0..n_b {
        let block = inception_b(&at(), b.channels())?;
        b = b.mixed(block);
    }
    let red_b = Chain::from(b.channels()).mixed(reduction_b(&at(), b.channels())?);
    let mut c = Chain::from(red_b.channels());
    for _ in 0..n_c {
        let block = inception_c(&at(), c.channels())?;
        c = c.mixed(block);
    }
    Ok(Body::standard([stem, a, red_a, b, red_b, c]))
}

/// Stem, 147x147 → 73x73: [max 3/2 V] [conv 3/2 V 96]; the pool comes first.
fn mixed_3a(ctx: &Ctx, cin: usize) -> Result<Mixed> {
    Ok(Mixed::new(vec![
        Chain::from(cin).max_pool(),
        Chain::from(cin).conv_s2(ctx, "conv", 96, K3)?,
    ]))
}

/// Stem, 73x73 → 71x71.
fn mixed_4a(ctx: &Ctx, cin: usize) -> Result<Mixed> {
    Ok(Mixed::new(vec![
        Chain::from(cin)
            .conv(ctx, "branch0.0", 64, K1)?
            .conv_valid(ctx, "branch0.1", 96, K3)?,
        Chain::from(cin)
            .conv(ctx, "branch1.0", 64, K1)?
            .conv(ctx, "branch1.1", 64, K1X7)?
            .conv(ctx, "branch1.2", 64, K7X1)?
            .conv_valid(ctx, "branch1.3", 96, K3)?,
    ]))
}

/// Stem, 71x71 → 35x35: [conv 3/2 V 192] [max 3/2 V] (the figure omits the conv's stride).
fn mixed_5a(ctx: &Ctx, cin: usize) -> Result<Mixed> {
    Ok(Mixed::new(vec![
        Chain::from(cin).conv_s2(ctx, "conv", 192, K3)?,
        Chain::from(cin).max_pool(),
    ]))
}

/// Inception-A (Fig 4).
fn inception_a(ctx: &Ctx, cin: usize) -> Result<Mixed> {
    Ok(Mixed::new(vec![
        Chain::from(cin).conv(ctx, "branch0", 96, K1)?,
        Chain::from(cin)
            .conv(ctx, "branch1.0", 64, K1)?
            .conv(ctx, "branch1.1", 96, K3)?,
        Chain::from(cin)
            .conv(ctx, "branch2.0", 64, K1)?
            .conv(ctx, "branch2.1", 96, K3)?
            .conv(ctx, "branch2.2", 96, K3)?,
        Chain::from(cin)
            .avg_pool(ctx)
            .conv(ctx, "branch3.1", 96, K1)?,
    ]))
}

/// Inception-B (Fig 5).
fn inception_b(ctx: &Ctx, cin: usize) -> Result<Mixed> {
    Ok(Mixed::new(vec![
        Chain::from(cin).conv(ctx, "branch0", 384, K1)?,
        Chain::from(cin)
            .conv(ctx, "branch1.0", 192, K1)?
            .conv(ctx, "branch1.1", 224, K1X7)?
            .conv(ctx, "branch1.2", 256, K7X1)?,
        Chain::from(cin)
            .conv(ctx, "branch2.0", 192, K1)?
            .conv(ctx, "branch2.1", 192, K7X1)?
            .conv(ctx, "branch2.2", 224, K1X7)?
            .conv(ctx, "branch2.3", 224, K7X1)?
            .conv(ctx, "branch2.4", 256, K1X7)?,
        Chain::from(cin)
            .avg_pool(ctx)
            .conv(ctx, "branch3.1", 128, K1)?,
    ]))
}

/// Reduction-B (Fig 8).
fn reduction_b(ctx: &Ctx, cin: usize) -> Result<Mixed> {
    Ok(Mixed::new(vec![
        Chain::from(cin)
            .conv(ctx, "branch0.0", 192, K1)?
            .conv_s2(ctx, "branch0.1", 192, K3)?,
        Chain::from(cin)
            .conv(ctx, "branch1.0", 256, K1)?
            .conv(ctx, "branch1.1", 256, K1X7)?
            .conv(ctx, "branch1.2", 320, K7X1)?
            .conv_s2(ctx, "branch1.3", 320, K3)?,
        Chain::from(cin).max_pool(),
    ]))
}

/// Inception-C (Fig 6).
fn inception_c(ctx: &Ctx, cin: usize) -> Result<Mixed> {
    let pair = |a: &'static str, b: &'static str| {
        move |c: usize| {
            Ok(vec![
                Chain::from(c).conv(ctx, a, 256, K1X3)?,
                Chain::from(c).conv(ctx, b, 256, K3X1)?,
            ])
        }
    };
    Ok(Mixed::new(vec![
        Chain::from(cin).conv(ctx, "branch0", 256, K1)?,
        Chain::from(cin)
            .conv(ctx, "branch1_0", 384, K1)?
            .fork(pair("branch1_1a", "branch1_1b"))?,
        Chain::from(cin)
            .conv(ctx, "branch2_0", 384, K1)?
            .conv(ctx, "branch2_1", 448, K3X1)?
            .conv(ctx, "branch2_2", 512, K1X3)?
            .fork(pair("branch2_3a", "branch2_3b"))?,
        Chain::from(cin)
            .avg_pool(ctx)
            .conv(ctx, "branch3.1", 256, K1)?,
    ]))
}
