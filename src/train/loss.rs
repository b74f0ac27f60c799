//! The training loss (cross-entropy with label smoothing) and the top-k error.

use candle_core::{DType, Tensor, D};

/// The paper's label-smoothing ε (section 4, "label smoothing regularization [0.1]").
pub const DEFAULT_LABEL_SMOOTHING: f64 = 0.1;

/// Errors of the loss and error-rate functions.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    /// `logits` is not `(batch, classes)` or `labels` is not `(batch,)`.
    #[error("{what}: logits must be (batch, classes) and labels (batch,), got {logits:?} and {labels:?}")]
    Shape {
        what: &'static str,
        logits: Vec<usize>,
        labels: Vec<usize>,
    },
    /// Label smoothing outside `[0, 1]`.
    #[error("label smoothing must be in [0, 1], got {0}")]
    BadSmoothing(f64),
    /// `k` of a top-k error is 0.
    #[error("top-k error: k must be at least 1")]
    ZeroK,
    /// A tensor operation failed.
    #[error("loss: {0}")]
    Candle(#[from] candle_core::Error),
}

fn check_shapes(what: &'static str, logits: &Tensor, labels: &Tensor) -> Result<(), LossError> {
    let ok = matches!((logits.dims(), labels.dims()), ([b, c], [bl]) if b == bl && *c > 0);
    if ok {
        Ok(())
    } else {
        Err(LossError::Shape {
            what,
            logits: logits.dims().to_vec(),
            labels: labels.dims().to_vec(),
        })
    }
}

/// Mean cross-entropy against smoothed targets, TF semantics
/// (`tf.losses.softmax_cross_entropy(label_smoothing=ε)`):
/// `target = (1 − ε)·onehot(label) + ε / num_classes`, so
/// `loss = (1 − ε)·nll(label) + ε·mean_c(−log p_c)`, averaged over the batch.
///
/// `logits` is `(batch, classes)`, `labels` `(batch,)` of an integer dtype. The result is a
/// scalar with a backward pass (built on `log_softmax`, not `softmax_last_dim`).
pub fn smoothed_cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    smoothing: f64,
) -> Result<Tensor, LossError> {
    check_shapes("smoothed cross-entropy", logits, labels)?;
    if !(0.0..=1.0).contains(&smoothing) {
        return Err(LossError::BadSmoothing(smoothing));
    }
    let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let index = labels.to_dtype(DType::U32)?.unsqueeze(1)?;
    let nll = log_p.gather(&index, 1)?.neg()?.mean_all()?;
    if smoothing == 0.0 {
        return Ok(nll);
    }
    let uniform = log_p.mean(D::Minus1)?.neg()?.mean_all()?;
    Ok((nll.affine(1.0 - smoothing, 0.0)? + uniform.affine(smoothing, 0.0)?)?)
}

/// Per-example top-k hits as a `(batch,)` `f32` tensor of 0/1, computed on the device.
///
/// Tie rule (pessimistic): the label counts as within the top k only if fewer than `k`
/// *other* classes score **greater than or equal to** it, i.e. a tie is resolved against
/// the label. A network that outputs constant logits therefore scores chance-or-worse
/// instead of a perfect top-k. A NaN label score is a miss; NaN scores of other classes
/// never beat the label. `k` is clamped to the number of classes.
pub fn top_k_hits(logits: &Tensor, labels: &Tensor, k: usize) -> Result<Tensor, LossError> {
    check_shapes("top-k error", logits, labels)?;
    if k == 0 {
        return Err(LossError::ZeroK);
    }
    let k = k.min(logits.dim(1)?);
    let index = labels.to_dtype(DType::U32)?.unsqueeze(1)?;
    let label_score = logits.gather(&index, 1)?;
    // Classes scoring >= the label's score, the label itself included (unless it is NaN).
    let at_least = logits
        .broadcast_ge(&label_score)?
        .to_dtype(DType::F32)?
        .sum(1)?;
    let label_is_number = at_least.ge(1f32)?.to_dtype(DType::F32)?;
    let within_k = at_least.le(k as f32)?.to_dtype(DType::F32)?;
    Ok((label_is_number * within_k)?)
}

/// Fraction of examples whose label is not within the top `k` (see [`top_k_hits`] for the
/// tie rule). Reads one scalar back from the device.
pub fn top_k_error(logits: &Tensor, labels: &Tensor, k: usize) -> Result<f64, LossError> {
    let hits = top_k_hits(logits, labels, k)?;
    let hit_rate = hits.mean_all()?.to_scalar::<f32>()?;
    Ok(1.0 - f64::from(hit_rate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn labels(v: &[u32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn smoothed_loss_matches_hand_computation_and_has_a_gradient() {
        // Row 1: logits [1, 2, 3], label 2. lse = ln(e + e² + e³) = 3.40760596444438,
        //   log p = [-2.40760596, -1.40760596, -0.40760596],
        //   targets = [0.1/3, 0.1/3, 0.9 + 0.1/3] → loss₁ = 0.50760596444438
        // Row 2: logits [1, 1, 1], label 0: every log p = -ln 3 → loss₂ = ln 3 = 1.09861228866811
        // mean = 0.80310912655624
        let dev = Device::Cpu;
        let logits = Var::from_slice(&[1f64, 2., 3., 1., 1., 1.], (2, 3), &dev).unwrap();
        let loss = smoothed_cross_entropy(logits.as_tensor(), &labels(&[2, 0]), 0.1).unwrap();
        let value = loss.to_scalar::<f64>().unwrap();
        assert!((value - 0.80310912655624).abs() < 1e-12, "{value}");

        // d loss / d logits = (softmax − target) / batch; row 2: ([1/3]*3 − [0.9+0.1/3, 0.1/3, 0.1/3]) / 2
        let grads = loss.backward().unwrap();
        let g = grads
            .get(logits.as_tensor())
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        assert!((g[1][0] - (1.0 / 3.0 - 0.9 - 0.1 / 3.0) / 2.0).abs() < 1e-12);
        assert!((g[1][1] - (1.0 / 3.0 - 0.1 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn zero_smoothing_is_plain_cross_entropy() {
        let logits = Tensor::new(&[[1f64, 2., 3.]], &Device::Cpu).unwrap();
        let ours = smoothed_cross_entropy(&logits, &labels(&[2]), 0.0).unwrap();
        let plain = candle_nn::loss::cross_entropy(&logits, &labels(&[2])).unwrap();
        let (a, b) = (
            ours.to_scalar::<f64>().unwrap(),
            plain.to_scalar::<f64>().unwrap(),
        );
        assert!((a - b).abs() < 1e-12);
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let logits = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(
            smoothed_cross_entropy(&logits, &labels(&[0, 1, 2]), 0.1),
            Err(LossError::Shape { .. })
        ));
        assert!(matches!(
            smoothed_cross_entropy(&logits, &labels(&[0, 1]), 1.5),
            Err(LossError::BadSmoothing(_))
        ));
        assert!(matches!(
            top_k_error(&logits, &labels(&[0, 1]), 0),
            Err(LossError::ZeroK)
        ));
    }

    #[test]
    fn top_k_counts_ties_against_the_label() {
        let dev = Device::Cpu;
        let logits = Tensor::new(
            &[
                [0.1f32, 0.9, 0.0, 0.0], // label 1 strictly best: top-1 hit
                [0.5, 0.5, 0.0, 0.0],    // label 0 tied with class 1: top-1 miss, top-2 hit
                [0.2, 0.2, 0.2, 0.2],    // constant logits: miss for k < 4
                [0.3, 0.9, 0.8, 0.1],    // label 0 is third: top-2 miss, top-3 hit
            ],
            &dev,
        )
        .unwrap();
        let l = labels(&[1, 0, 3, 0]);
        let hits = |k| {
            top_k_hits(&logits, &l, k)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(hits(1), [1.0, 0.0, 0.0, 0.0]);
        assert_eq!(hits(2), [1.0, 1.0, 0.0, 0.0]);
        assert_eq!(hits(3), [1.0, 1.0, 0.0, 1.0]);
        assert_eq!(hits(4), [1.0, 1.0, 1.0, 1.0]);
        // k beyond the number of classes is clamped: everything is within the top 4
        assert_eq!(top_k_error(&logits, &l, 5).unwrap(), 0.0);
        assert!((top_k_error(&logits, &l, 1).unwrap() - 0.75).abs() < 1e-7);
    }

    #[test]
    fn nan_label_score_is_a_miss() {
        let logits = Tensor::new(&[[f32::NAN, 0.0], [1.0, f32::NAN]], &Device::Cpu).unwrap();
        let hits = top_k_hits(&logits, &labels(&[0, 0]), 2).unwrap();
        assert_eq!(hits.to_vec1::<f32>().unwrap(), [0.0, 1.0]);
    }
}
