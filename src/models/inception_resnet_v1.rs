//! Inception-ResNet-v1 as the paper draws it (Figs 14, 10, 7, 11, 12, 13, 15): the stem of
//! Fig 14, 5/10/5 residual blocks with scales 0.17/0.10/0.20, Reduction-A with
//! k, l, m, n = 192, 192, 256, 384 and the Reduction-B of Fig 12. Unlike facenet there is no
//! extra unscaled Block8 and the head is a 1000-way classifier. No public ImageNet weights
//! exist; variable names follow timm's Inception-ResNet-v2 (`repeat`, `repeat_1`, `repeat_2`,
//! `classif`) so that both load and save the same way.

use candle_core::Result;

use super::blocks::{block17, block35, block8, reduction_a, reduction_b_resnet, v3_stem_to_71, Block35Filters, FactorisedFilters};
use super::layers::{Chain, Ctx, K3};
use super::network::Body;
use super::ModelConfig;

const BLOCK35: Block35Filters = Block35Filters([32, 32, 32, 32, 32, 32]);
const REDUCTION_A: [usize; 4] = [192, 192, 256, 384];
const BLOCK17: FactorisedFilters = FactorisedFilters([128, 128, 128, 128]);
const REDUCTION_B: [usize; 7] = [256, 384, 256, 256, 256, 256, 256];
const BLOCK8: FactorisedFilters = FactorisedFilters([192, 192, 192, 192]);

pub(super) fn body(ctx: &Ctx, cfg: &ModelConfig) -> Result<Body> {
    let [n_a, n_b, n_c] = cfg.blocks();
    let [s_a, s_b, s_c] = cfg.residual_scales();
    let stem = v3_stem_to_71(ctx, ["conv2d_1a", "conv2d_2a", "conv2d_2b", "conv2d_3b", "conv2d_4a"])?
        .conv_s2(ctx, "conv2d_4b", 256, K3)?;

    let mut a = Chain::from(stem.channels());
    for i in 0..n_a {
        let block = block35(&ctx.pp(format!("repeat.{i}")), a.channels(), &BLOCK35, s_a)?;
        a = a.residual(block);
    }
    let red_a = Chain::from(a.channels()).mixed(reduction_a(&ctx.pp("mixed_6a"), a.channels(), REDUCTION_A)?);
    let mut b = Chain::from(red_a.channels());
    for i in 0..n_b {
        let block = block17(&ctx.pp(format!("repeat_1.{i}")), b.channels(), &BLOCK17, s_b)?;
        b = b.residual(block);
    }
    let red_b = Chain::from(b.channels()).mixed(reduction_b_resnet(&ctx.pp("mixed_7a"), b.channels(), REDUCTION_B)?);
    let mut c = Chain::from(red_b.channels());
    for i in 0..n_c {
        let block = block8(&ctx.pp(format!("repeat_2.{i}")), c.channels(), &BLOCK8, s_c, true)?;
        c = c.residual(block);
    }
    Ok(Body::standard([stem, a, red_a, b, red_b, c]))
}
