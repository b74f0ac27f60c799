//! Inception-v3 (Szegedy et al., "Rethinking the Inception Architecture", 1512.00567), the
//! baseline of Figures 21/22 and Tables 2-5, as TF-slim and timm build it. Variable names are
//! timm's (`Mixed_5b.branch5x5_1.conv.weight`, ...).

use candle_core::Result;

use super::blocks::v3_stem_to_71;
use super::body::{stage_letter, Body};
use super::layers::{Chain, Ctx, Mixed, K1, K1X3, K1X7, K3, K3X1, K5, K7X1};
use super::ModelConfig;

pub(super) fn body(ctx: &Ctx, cfg: &ModelConfig) -> Result<Body> {
    let [n_a, n_b, n_c] = cfg.blocks();
    let stem = v3_stem_to_71(
        ctx,
        [
            "Conv2d_1a_3x3",
            "Conv2d_2a_3x3",
            "Conv2d_2b_3x3",
            "Conv2d_3b_1x1",
            "Conv2d_4a_3x3",
        ],
    )?
    .max_pool();

    let mut a = Chain::from(stem.channels());
    for i in 0..n_a {
        let pool_filters = if i == 0 { 32 } else { 64 };
        let block = inception_a(
            &ctx.pp(format!("Mixed_5{}", stage_letter(i))),
            a.channels(),
            pool_filters,
        )?;
        a = a.mixed(block);
    }
    let red_a = Chain::from(a.channels()).mixed(reduction_a(&ctx.pp("Mixed_6a"), a.channels())?);

    let mut b = Chain::from(red_a.channels());
    for i in 0..n_b {
        // 128 in the first block, 192 in the last, 160 between (Mixed_6b..6e).
        let c7 = match i {
            0 => 128,
            i if i + 1 == n_b => 192,
            _ => 160,
        };
        let block = inception_c(
            &ctx.pp(format!("Mixed_6{}", stage_letter(i))),
            b.channels(),
            c7,
        )?;
        b = b.mixed(block);
    }
    let red_b = Chain::from(b.channels()).mixed(reduction_b(&ctx.pp("Mixed_7a"), b.channels())?);

    let mut c = Chain::from(red_b.channels());
    for i in 0..n_c {
        let block = inception_e(&ctx.pp(format!("Mixed_7{}", stage_letter(i))), c.channels())?;
        c = c.mixed(block);
    }
    Ok(Body::standard([stem, a, red_a, b, red_b, c]))
}

/// 35x35 block (timm `InceptionA`, Fig 5 of 1512.00567).
fn inception_a(ctx: &Ctx, cin: usize, pool_filters: usize) -> Result<Mixed> {
    Ok(Mixed::new(vec![
        Chain::from(cin).conv(ctx, "branch1x1", 64, K1)?,
        Chain::from(cin)
            .conv(ctx, "branch5x5_1", 48, K1)?
            .conv(ctx, "branch5x5_2", 64, K5)?,
        Chain::from(cin)
            .conv(ctx, "branch3x3dbl_1", 64, K1)?
            .conv(ctx, "branch3x3dbl_2", 96, K3)?
            .conv(ctx, "branch3x3dbl_3", 96, K3)?,
        Chain::from(cin)
            .avg_pool(ctx)
            .conv(ctx, "branch_pool", pool_filters, K1)?,
    ]))
}

/// 35x35 → 17x17 (timm `InceptionB`, Mixed_6a).
fn reduction_a(ctx: &Ctx, cin: usize) -> Result<Mixed> {
    Ok(Mixed::new(vec![
        Chain::from(cin).conv_s2(ctx, "branch3x3", 384, K3)?,
        Chain::from(cin)
            .conv(ctx, "branch3x3dbl_1", 64, K1)?
            .conv(ctx, "branch3x3dbl_2", 96, K3)?
            .conv_s2(ctx, "branch3x3dbl_3", 96, K3)?,
        Chain::from(cin).max_pool(),
    ]))
}

/// 17x17 block with factorised 7x7 convolutions (timm `InceptionC`, Fig 6 of 1512.00567).
fn inception_c(ctx: &Ctx, cin: usize, c7: usize) -> Result<Mixed> {
    Ok(Mixed::new(vec![
        Chain::from(cin).conv(ctx, "branch1x1", 192, K1)?,
        Chain::from(cin)
            .conv(ctx, "branch7x7_1", c7, K1)?
            .conv(ctx, "branch7x7_2", c7, K1X7)?
            .conv(ctx, "branch7x7_3", 192, K7X1)?,
        Chain::from(cin)
            .conv(ctx, "branch7x7dbl_1", c7, K1)?
            .conv(ctx, "branch7x7dbl_2", c7, K7X1)?
            .conv(ctx, "branch7x7dbl_3", c7, K1X7)?
            .conv(ctx, "branch7x7dbl_4", c7, K7X1)?
            .conv(ctx, "branch7x7dbl_5", 192, K1X7)?,
        Chain::from(cin)
            .avg_pool(ctx)
            .conv(ctx, "branch_pool", 192, K1)?,
    ]))
}

/// 17x17 → 8x8 (timm `InceptionD`, Mixed_7a).
fn reduction_b(ctx: &Ctx, cin: usize) -> Result<Mixed> {
    Ok(Mixed::new(vec![
        Chain::from(cin)
            .conv(ctx, "branch3x3_1", 192, K1)?
            .conv_s2(ctx, "branch3x3_2", 320, K3)?,
        Chain::from(cin)
            .conv(ctx, "branch7x7x3_1", 192, K1)?
            .conv(ctx, "branch7x7x3_2", 192, K1X7)?
            .conv(ctx, "branch7x7x3_3", 192, K7X1)?
            .conv_s2(ctx, "branch7x7x3_4", 192, K3)?,
        Chain::from(cin).max_pool(),
    ]))
}

/// 8x8 block with expanded filter banks (timm `InceptionE`, Fig 7 of 1512.00567).
fn inception_e(ctx: &Ctx, cin: usize) -> Result<Mixed> {
    let pair = |a: &'static str, b: &'static str| {
        move |c: usize| {
            Ok(vec![
                Chain::from(c).conv(ctx, a, 384, K1X3)?,
                Chain::from(c).conv(ctx, b, 384, K3X1)?,
            ])
        }
    };
    Ok(Mixed::new(vec![
        Chain::from(cin).conv(ctx, "branch1x1", 320, K1)?,
        Chain::from(cin)
            .conv(ctx, "branch3x3_1", 384, K1)?
            .fork(pair("branch3x3_2a", "branch3x3_2b"))?,
        Chain::from(cin)
            .conv(ctx, "branch3x3dbl_1", 448, K1)?
            .conv(ctx, "branch3x3dbl_2", 384, K3)?
            .fork(pair("branch3x3dbl_3a", "branch3x3dbl_3b"))?,
        Chain::from(cin)
            .avg_pool(ctx)
            .conv(ctx, "branch_pool", 192, K1)?,
    ]))
}
