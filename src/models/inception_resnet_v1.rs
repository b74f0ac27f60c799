//! Inception-ResNet-v1 as the paper draws it (Figs 14, 10, 7, 11, 12, 13, 15): the stem of
//! Fig 14, 5/10/5 residual blocks with scales 0.17/0.10/0.20, Reduction-A with
//! k, l, m, n = 192, 192, 256, 384 and the Reduction-B of Fig 12. Unlike facenet there is no
//! extra unscaled Block8 and the head is a 1000-way classifier. No public ImageNet weights
//! exist; variable names follow timm's Inception-ResNet-v2 (`repeat`, `repeat_1`, `repeat_2`,
//! `classif`) so that both load and save the same way.

use candle_core::Result;

use super::blocks::{
    inception_resnet_stages, v3_stem_to_71, Block35Filters, FactorisedFilters,
    InceptionResnetFilters,
};
use super::body::Body;
use super::layers::{Ctx, K3};
use super::ModelConfig;

const FILTERS: InceptionResnetFilters = InceptionResnetFilters {
    block35: Block35Filters([32, 32, 32, 32, 32, 32]),
    reduction_a: [192, 192, 256, 384],
    block17: FactorisedFilters([128, 128, 128, 128]),
    reduction_b: [256, 384, 256, 256, 256, 256, 256],
    block8: FactorisedFilters([192, 192, 192, 192]),
};

pub(super) fn body(ctx: &Ctx, cfg: &ModelConfig) -> Result<Body> {
    let stem = v3_stem_to_71(
        ctx,
        [
            "conv2d_1a",
            "conv2d_2a",
            "conv2d_2b",
            "conv2d_3b",
            "conv2d_4a",
        ],
    )?
    .conv_s2(ctx, "conv2d_4b", 256, K3)?;
    let [a, red_a, b, red_b, c] =
        inception_resnet_stages(ctx, cfg, stem.channels(), &FILTERS, false)?;
    Ok(Body::standard([stem, a, red_a, b, red_b, c]))
}
