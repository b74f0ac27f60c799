//! Single-crop top-1/top-5 evaluation of a network over a loader, as the training curves use.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::top_k_hits;
use super::TrainError;
use crate::data::Loader;
use crate::models::Network;

/// Errors in [0, 1] and the number of images they were measured on.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalScore {
    pub top1_err: f64,
    pub top5_err: f64,
    pub images: u64,
    /// How much of the layer before the average pooling was zero, when measured.
    pub pre_pool: Option<PrePoolActivity>,
}

/// The paper's sign of a network that "died" (section 3.3): "the last layer before the
/// average pooling started to produce only zeros".
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrePoolActivity {
    /// Fraction of all activations (images x channels x positions) that are exactly zero.
    pub zero_frac: f64,
    /// Fraction of channels that are zero at every position of every evaluated image.
    pub dead_channel_frac: f64,
}

/// Evaluates `net` in inference mode (BatchNorm running statistics, no dropout) on every
/// batch of `loader` (epoch 0, in order), measuring the pre-pooling activations too.
pub fn evaluate_single_crop(net: &Network, loader: &Loader) -> Result<EvalScore, TrainError> {
    let mut activity = ActivityTally::default();
    let mut score = evaluate_logits(loader, |x| {
        let out = net.infer(x)?;
        activity.add(&out.pre_pool)?;
        Ok(out.logits)
    })?;
    score.pre_pool = activity.finish();
    Ok(score)
}

/// Running counts of zero activations and of each channel's largest activation.
#[derive(Default)]
struct ActivityTally {
    zeros: u64,
    total: u64,
    channel_max: Vec<f32>,
}

impl ActivityTally {
    fn add(&mut self, pre_pool: &Tensor) -> candle_core::Result<()> {
        let x = pre_pool.to_dtype(candle_core::DType::F32)?;
        self.zeros += x
            .eq(0.0)?
            .to_dtype(candle_core::DType::U32)?
            .sum_all()?
            .to_scalar::<u32>()? as u64;
        self.total += x.elem_count() as u64;
        // The activations are ReLU outputs, so a channel is dead when its maximum is zero.
        let max = x.max(3)?.max(2)?.max(0)?.to_vec1::<f32>()?;
        if self.channel_max.is_empty() {
            self.channel_max = max;
        } else {
            for (m, v) in self.channel_max.iter_mut().zip(max) {
                *m = m.max(v);
            }
        }
        Ok(())
    }

    fn finish(&self) -> Option<PrePoolActivity> {
        (self.total > 0).then(|| PrePoolActivity {
            zero_frac: self.zeros as f64 / self.total as f64,
            dead_channel_frac: self.channel_max.iter().filter(|&&m| m <= 0.0).count() as f64
                / self.channel_max.len() as f64,
        })
    }
}

/// Top-1/top-5 errors of the logits `forward` gives for every batch of `loader`.
pub fn evaluate_logits(
    loader: &Loader,
    mut forward: impl FnMut(&Tensor) -> candle_core::Result<Tensor>,
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
            let hits: Tensor = top_k_hits(&logits, &batch.labels, k).map_err(TrainError::Loss)?;
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
        return Err(TrainError::Setup(
            "the validation set yielded no images".into(),
        ));
    }
    Ok(EvalScore {
        top1_err: 1.0 - hits1 / images as f64,
        top5_err: 1.0 - hits5 / images as f64,
        images,
        pre_pool: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn pre_pool_activity_counts_zeros_and_channels_zero_everywhere() {
        // Two batches of (N, C=3, 1, 2): channel 2 is zero in every image, channel 0 only in
        // the first batch.
        let first =
            Tensor::new(&[[[[0f32, 0.0]], [[1.0, 0.0]], [[0.0, 0.0]]]], &Device::Cpu).unwrap();
        let second = Tensor::new(
            &[
                [[[0.5f32, 0.0]], [[0.0, 2.0]], [[0.0, 0.0]]],
                [[[0.0f32, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]]],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let mut tally = ActivityTally::default();
        tally.add(&first).unwrap();
        tally.add(&second).unwrap();
        let a = tally.finish().unwrap();
        assert_eq!(a.zero_frac, 15.0 / 18.0);
        assert_eq!(a.dead_channel_frac, 1.0 / 3.0);
        assert!(ActivityTally::default().finish().is_none());
    }
}
