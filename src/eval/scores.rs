//! From logits to per-image probabilities and ranks: softmax per crop, mean over the crops
//! of an image, mean over the models of an ensemble, top-k.

use candle_core::{Result, Tensor};
use candle_nn::ops::softmax_last_dim;

/// Softmax probabilities of `(images * crops, classes)` logits, averaged over the
/// `crops` consecutive rows of each image: `(images, classes)`.
pub fn average_over_crops(logits: &Tensor, crops: usize) -> Result<Tensor> {
    let (rows, classes) = logits.dims2()?;
    if crops == 0 || rows % crops != 0 {
        candle_core::bail!(
            "{rows} rows of logits are not a whole number of images of {crops} crops"
        )
    }
    softmax_last_dim(logits)?
        .reshape((rows / crops, crops, classes))?
        .mean(1)
}

/// The element-wise mean of equally shaped `(images, classes)` probabilities of the models
/// of an ensemble.
pub fn average_over_models(per_model: &[Tensor]) -> Result<Tensor> {
    match per_model {
        [] => candle_core::bail!("an ensemble needs at least one model"),
        [one] => Ok(one.clone()),
        many => Tensor::stack(many, 0)?.mean(0),
    }
}

/// The `k` largest probabilities of one image with their classes, largest first; equal
/// probabilities are listed by ascending class, NaN last.
pub fn top_k(probs: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut ranked: Vec<(u32, f32)> = probs
        .iter()
        .enumerate()
        .map(|(class, &p)| (class as u32, p))
        .collect();
    ranked.sort_by(|a, b| {
        let key = |p: f32| if p.is_nan() { f32::NEG_INFINITY } else { p };
        key(b.1).total_cmp(&key(a.1)).then(a.0.cmp(&b.0))
    });
    ranked.truncate(k);
    ranked
}
