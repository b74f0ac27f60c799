//! Blocks that more than one network uses, parameterised by the paper's filter counts.
//! Each function returns the block as the figure draws it; `ctx` is the block's own variable
//! path, and branch names follow timm's state dicts.

use candle_core::Result;

use super::layers::{Chain, Ctx, Mixed, Residual, K1, K1X3, K1X7, K3, K3X1, K7X1};
use super::ModelConfig;

/// The Inception-v3 stem up to its 71x71x192 map: conv 3/2 V 32, conv 3 V 32, conv 3 S 64,
/// max 3/2 V, conv 1 V 80, conv 3 V 192. `names` are the five convs' variable paths.
/// Inception-v3 and Inception-ResNet-v2 follow it with a max pool, Inception-ResNet-v1 with a
/// stride-2 conv (paper Fig 14).
pub fn v3_stem_to_71(ctx: &Ctx, names: [&str; 5]) -> Result<Chain> {
    Chain::from(3)
        .conv_s2(ctx, names[0], 32, K3)?
        .conv_valid(ctx, names[1], 32, K3)?
        .conv(ctx, names[2], 64, K3)?
        .max_pool()
        .conv_valid(ctx, names[3], 80, K1)?
        .conv_valid(ctx, names[4], 192, K3)
}

/// Reduction-A (paper Fig 7, Table 1): [3x3/2 V n] [1x1 k → 3x3 l → 3x3/2 V m] [max 3/2 V].
pub fn reduction_a(ctx: &Ctx, cin: usize, [k, l, m, n]: [usize; 4]) -> Result<Mixed> {
    Ok(Mixed::new(vec![
        Chain::from(cin).conv_s2(ctx, "branch0", n, K3)?,
        Chain::from(cin)
            .conv(ctx, "branch1.0", k, K1)?
            .conv(ctx, "branch1.1", l, K3)?
            .conv_s2(ctx, "branch1.2", m, K3)?,
        Chain::from(cin).max_pool(),
    ]))
}

/// Filter counts of an Inception-ResNet-A block (Block35): [1x1 b0] [1x1 b1 → 3x3 b1']
/// [1x1 b2 → 3x3 b2' → 3x3 b2''].
pub struct Block35Filters(pub [usize; 6]);

/// Inception-ResNet-A (paper Figs 10 and 16) at 35x35.
pub fn block35(
    ctx: &Ctx,
    cin: usize,
    Block35Filters(f): &Block35Filters,
    scale: f64,
) -> Result<Residual> {
    let branches = vec![
        Chain::from(cin).conv(ctx, "branch0", f[0], K1)?,
        Chain::from(cin)
            .conv(ctx, "branch1.0", f[1], K1)?
            .conv(ctx, "branch1.1", f[2], K3)?,
        Chain::from(cin)
            .conv(ctx, "branch2.0", f[3], K1)?
            .conv(ctx, "branch2.1", f[4], K3)?
            .conv(ctx, "branch2.2", f[5], K3)?,
    ];
    Residual::new(ctx, cin, branches, scale, true)
}

/// Filter counts of an Inception-ResNet-B or -C block: [1x1 b0] [1x1 b1 → 1xk → kx1].
pub struct FactorisedFilters(pub [usize; 4]);

/// Inception-ResNet-B (Block17, paper Figs 11 and 17) at 17x17: the factorised pair is 1x7, 7x1.
pub fn block17(ctx: &Ctx, cin: usize, f: &FactorisedFilters, scale: f64) -> Result<Residual> {
    factorised_residual(ctx, cin, f, (K1X7, K7X1), scale, true)
}

/// Inception-ResNet-C (Block8, paper Figs 13 and 19) at 8x8: the factorised pair is 1x3, 3x1.
pub fn block8(
    ctx: &Ctx,
    cin: usize,
    f: &FactorisedFilters,
    scale: f64,
    relu: bool,
) -> Result<Residual> {
    factorised_residual(ctx, cin, f, (K1X3, K3X1), scale, relu)
}

fn factorised_residual(
    ctx: &Ctx,
    cin: usize,
    FactorisedFilters(f): &FactorisedFilters,
    (first, second): (super::layers::Kernel, super::layers::Kernel),
    scale: f64,
    relu: bool,
) -> Result<Residual> {
    let branches = vec![
        Chain::from(cin).conv(ctx, "branch0", f[0], K1)?,
        Chain::from(cin)
            .conv(ctx, "branch1.0", f[1], K1)?
            .conv(ctx, "branch1.1", f[2], first)?
            .conv(ctx, "branch1.2", f[3], second)?,
    ];
    Residual::new(ctx, cin, branches, scale, relu)
}

/// The Inception-ResNet reduction to 8x8 (paper Figs 12 and 18; `mixed_7a`):
/// [1x1 a → 3x3/2 V a'] [1x1 b → 3x3/2 V b'] [1x1 c → 3x3 c' → 3x3/2 V c''] [max 3/2 V].
pub fn reduction_b_resnet(ctx: &Ctx, cin: usize, f: [usize; 7]) -> Result<Mixed> {
    Ok(Mixed::new(vec![
        Chain::from(cin)
            .conv(ctx, "branch0.0", f[0], K1)?
            .conv_s2(ctx, "branch0.1", f[1], K3)?,
        Chain::from(cin)
            .conv(ctx, "branch1.0", f[2], K1)?
            .conv_s2(ctx, "branch1.1", f[3], K3)?,
        Chain::from(cin)
            .conv(ctx, "branch2.0", f[4], K1)?
            .conv(ctx, "branch2.1", f[5], K3)?
            .conv_s2(ctx, "branch2.2", f[6], K3)?,
        Chain::from(cin).max_pool(),
    ]))
}

/// The filter counts that tell Inception-ResNet-v1 and -v2 apart.
pub struct InceptionResnetFilters {
    pub block35: Block35Filters,
    pub reduction_a: [usize; 4],
    pub block17: FactorisedFilters,
    pub reduction_b: [usize; 7],
    pub block8: FactorisedFilters,
}

/// The five stages after the stem of an Inception-ResNet: IR-A blocks (`repeat`),
/// Reduction-A (`mixed_6a`), IR-B blocks (`repeat_1`), Reduction-B (`mixed_7a`), IR-C blocks
/// (`repeat_2`). With `unscaled_last_block` the last IR-C block is TF-slim's `block8`:
/// scale 1.0 and no ReLU (Inception-ResNet-v2 as released).
pub fn inception_resnet_stages(
    ctx: &Ctx,
    cfg: &ModelConfig,
    cin: usize,
    f: &InceptionResnetFilters,
    unscaled_last_block: bool,
) -> Result<[Chain; 5]> {
    let [n_a, n_b, n_c] = cfg.blocks();
    let [s_a, s_b, s_c] = cfg.residual_scales();
    let mut a = Chain::from(cin);
    for i in 0..n_a {
        let block = block35(
            &ctx.pp(format!("repeat.{i}")),
            a.channels(),
            &f.block35,
            s_a,
        )?;
        a = a.residual(block);
    }
    let red_a = Chain::from(a.channels()).mixed(reduction_a(
        &ctx.pp("mixed_6a"),
        a.channels(),
        f.reduction_a,
    )?);
    let mut b = Chain::from(red_a.channels());
    for i in 0..n_b {
        let block = block17(
            &ctx.pp(format!("repeat_1.{i}")),
            b.channels(),
            &f.block17,
            s_b,
        )?;
        b = b.residual(block);
    }
    let red_b = Chain::from(b.channels()).mixed(reduction_b_resnet(
        &ctx.pp("mixed_7a"),
        b.channels(),
        f.reduction_b,
    )?);
    let scaled = if unscaled_last_block { n_c - 1 } else { n_c };
    let mut c = Chain::from(red_b.channels());
    for i in 0..scaled {
        let block = block8(
            &ctx.pp(format!("repeat_2.{i}")),
            c.channels(),
            &f.block8,
            s_c,
            true,
        )?;
        c = c.residual(block);
    }
    if unscaled_last_block {
        // TF: `block8(net, activation_fn=None)`; timm: `Block8(no_relu=True)`.
        let last = block8(&ctx.pp("block8"), c.channels(), &f.block8, 1.0, false)?;
        c = c.residual(last);
    }
    Ok([a, red_a, b, red_b, c])
}
