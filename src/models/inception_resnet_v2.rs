//! Inception-ResNet-v2 as released (TF-slim `inception_resnet_v2.py`, timm), the model with
//! public weights. It differs from the paper's drawings (Figs 3, 15-19): the stem is
//! Inception-v3's followed by `mixed_5b` (320 channels at 35x35, not the v4 stem's 384), the
//! trunk widths are 320/1088/2080 (the paper draws 384/1152/2048 and, by a typo, "1154"),
//! the stages hold 10/20/10 blocks (the paper 5/10/5), the last Block8 is unscaled and has no
//! ReLU, and a 1x1 conv to 1536 channels precedes the classifier. Variable names are timm's.

use candle_core::Result;

use super::blocks::{
    inception_resnet_stages, v3_stem_to_71, Block35Filters, FactorisedFilters,
    InceptionResnetFilters,
};
use super::body::Body;
use super::layers::{Chain, Ctx, Mixed, K1, K3, K5};
use super::ModelConfig;

const FILTERS: InceptionResnetFilters = InceptionResnetFilters {
    block35: Block35Filters([32, 32, 32, 32, 48, 64]),
    reduction_a: [256, 256, 384, 384],
    block17: FactorisedFilters([192, 128, 160, 192]),
    reduction_b: [256, 384, 256, 288, 256, 288, 320],
    block8: FactorisedFilters([192, 192, 224, 256]),
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
    .max_pool();
    let c = stem.channels();
    let stem = stem.mixed(mixed_5b(&ctx.pp("mixed_5b"), c)?);
    let [a, red_a, b, red_b, c] =
        inception_resnet_stages(ctx, cfg, stem.channels(), &FILTERS, true)?;
    let c = c.conv(ctx, "conv2d_7b", 1536, K1)?;
    Ok(Body::standard([stem, a, red_a, b, red_b, c]))
}

/// The 35x35 Inception block that ends the stem (TF `Mixed_5b`); its pool excludes padding.
fn mixed_5b(ctx: &Ctx, cin: usize) -> Result<Mixed> {
    Ok(Mixed::new(vec![
        Chain::from(cin).conv(ctx, "branch0", 96, K1)?,
        Chain::from(cin)
            .conv(ctx, "branch1.0", 48, K1)?
            .conv(ctx, "branch1.1", 64, K5)?,
        Chain::from(cin)
            .conv(ctx, "branch2.0", 64, K1)?
            .conv(ctx, "branch2.1", 96, K3)?
            .conv(ctx, "branch2.2", 96, K3)?,
        Chain::from(cin)
            .avg_pool(ctx)
            .conv(ctx, "branch3.1", 64, K1)?,
    ]))
}
