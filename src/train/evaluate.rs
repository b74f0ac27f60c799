//! Single-crop top-1/top-5 evaluation of a network over a loader, as the training curves use.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::top_k_hits;
use super::trainer::TrainError;
use crate::data::Loader;
use crate::models::Network;

/// Errors in [0, 1] and the number of images they were measured on.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalScore {
    pub top1_err: f64,
    pub top5_err: f64,
    pub images: u64,
}

/// Evaluates `net` in inference mode (BatchNorm running statistics, no dropout) on every
/// batch of `loader` (epoch 0, in order).
pub fn evaluate_single_crop(net: &Network, loader: &Loader) -> Result<EvalScore, TrainError> {
    evaluate_logits(loader, |x| net.forward_t(x, false).map(|out| out.logits))
}

/// Top-1/top-5 errors of the logits `forward` gives for every batch of `loader`.
pub fn evaluate_logits(
    loader: &Loader,
    forward: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<EvalScore, TrainError> {
    let err = |what: &'static str| {
        move |source| TrainError::Tensor {
            context: format!("evaluation: {what}"),
            source,
        }
    };
    let (mut hits1, mut hits5, mut images) = (0.0f64, 0.0f64, 0u64);
    for batch in loader.iter_epoch(0, 0) {
        let batch = batch?;
        let logits = forward(&batch.images).map_err(err("forward pass"))?;
        let count = |k: usize| -> Result<f64, TrainError> {
            let hits: Tensor = top_k_hits(&logits, &batch.labels, k)
                .map_err(|e| TrainError::Other(e.to_string()))?;
            Ok(hits
                .sum_all()
                .and_then(|t| t.to_scalar::<f32>())
                .map_err(err("top-k"))? as f64)
        };
        hits1 += count(1)?;
        hits5 += count(5)?;
        images += batch.labels.dim(0).map_err(err("labels"))? as u64;
    }
    if images == 0 {
        return Err(TrainError::Other(
            "the validation set yielded no images".into(),
        ));
    }
    Ok(EvalScore {
        top1_err: 1.0 - hits1 / images as f64,
        top5_err: 1.0 - hits5 / images as f64,
        images,
    })
}
