//! Gradient clipping by global norm, as TF's `clip_by_global_norm`.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use super::inplace;

/// The paper's clipping threshold ("gradient clipping with threshold 2.0").
pub const DEFAULT_CLIP_NORM: f64 = 2.0;

/// What the clipping threshold bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipMode {
    /// The norm of all gradients together (TF's `clip_by_global_norm`; repro's default).
    #[default]
    GlobalNorm,
    /// Each variable's gradient on its own (TF-slim's `clip_gradient_norms`, i.e.
    /// `tf.clip_by_norm` per variable).
    PerVariable,
}

impl ClipMode {
    /// Whether this is the default (left out of a run's configuration and hash).
    pub fn is_global_norm(&self) -> bool {
        *self == ClipMode::GlobalNorm
    }
}

/// Errors of gradient clipping.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// The threshold is not a positive finite number.
    #[error("gradient clipping: threshold must be finite and > 0, got {0}")]
    BadThreshold(f64),
    /// A tensor operation failed.
    #[error("gradient clipping: {0}")]
    Candle(#[from] candle_core::Error),
}

/// The global L2 norm of the gradients of `vars` in `grads` (variables without a gradient are
/// ignored), as a one-element tensor on their device: nothing is read back. On the CPU fast
/// path the sum is taken in place, in f64.
pub fn global_norm_tensor<'a>(
    grads: &GradStore,
    vars: impl IntoIterator<Item = &'a Var>,
) -> Result<Tensor, ClipError> {
    let gradients: Vec<Tensor> = vars
        .into_iter()
        .filter_map(|v| grads.get(v.as_tensor()).cloned())
        .collect();
    let Some(first) = gradients.first() else {
        return Ok(Tensor::new(0f64, &candle_core::Device::Cpu)?);
    };
    if gradients.iter().all(|g| inplace::usable(g, &[])) {
        let mut sum = 0.0;
        for g in &gradients {
            sum += inplace::sum_of_squares(g)?;
        }
        return Ok(Tensor::new(sum.sqrt(), first.device())?);
    }
    // Sums in f64 when the gradients are f64 (a lockstep check in f64 found the f32 sum's
    // rounding), else in f32 (bf16/f16 gradients are widened).
    let dtype = if gradients.iter().all(|g| g.dtype() == DType::F64) {
        DType::F64
    } else {
        DType::F32
    };
    let mut squares = Vec::with_capacity(gradients.len());
    for g in &gradients {
        squares.push(g.to_dtype(dtype)?.sqr()?.sum_all()?);
    }
    Ok(Tensor::stack(&squares, 0)?.sum_all()?.sqrt()?)
}

/// [`global_norm_tensor`] read back.
pub fn global_norm<'a>(
    grads: &GradStore,
    vars: impl IntoIterator<Item = &'a Var>,
) -> Result<f64, ClipError> {
    let norm = global_norm_tensor(grads, vars)?;
    Ok(super::readback::read_f64s(&[&norm])?[0])
}

fn check_threshold(clip_norm: f64) -> Result<(), ClipError> {
    match clip_norm.is_finite() && clip_norm > 0.0 {
        true => Ok(()),
        false => Err(ClipError::BadThreshold(clip_norm)),
    }
}

/// Scales the gradients of `vars` in `grads` by `clip_norm / norm` when their global norm
/// `norm` (computed by the caller) exceeds `clip_norm`. A norm that is not finite (a diverged
/// step) leaves them as they are: the caller must skip the update (TF would turn every gradient
/// into NaN).
pub fn scale_to_norm<'a>(
    grads: &mut GradStore,
    vars: impl IntoIterator<Item = &'a Var>,
    clip_norm: f64,
    norm: f64,
) -> Result<(), ClipError> {
    check_threshold(clip_norm)?;
    if norm.is_finite() && norm > clip_norm {
        let scale = clip_norm / norm;
        for v in vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                let scaled = g.affine(scale, 0.0)?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
    }
    Ok(())
}

/// Scales the gradient `g` of each of `vars` in `grads` by `clip_norm / max(‖g‖, clip_norm)`
/// (TF's `clip_by_norm` per variable), computed on the device: nothing is read back.
pub fn scale_each_to_norm<'a>(
    grads: &mut GradStore,
    vars: impl IntoIterator<Item = &'a Var>,
    clip_norm: f64,
) -> Result<(), ClipError> {
    check_threshold(clip_norm)?;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            let norm = g.sqr()?.sum_all()?.sqrt()?;
            let factor = (norm.maximum(clip_norm)?.recip()? * clip_norm)?;
            let scaled = g.broadcast_mul(&factor)?;
            grads.insert(v.as_tensor(), scaled);
        }
    }
    Ok(())
}

/// Scales the gradients of `vars` in `grads` by `clip_norm / max(norm, clip_norm)`, where
/// `norm` is the global L2 norm over all of them, and returns that pre-clip norm (one scalar
/// read back). Variables without a gradient are ignored; see [`scale_to_norm`] for a norm
/// that is not finite.
pub fn clip_by_global_norm<'a>(
    grads: &mut GradStore,
    vars: impl IntoIterator<Item = &'a Var>,
    clip_norm: f64,
) -> Result<f64, ClipError> {
    check_threshold(clip_norm)?;
    let vars: Vec<&Var> = vars.into_iter().collect();
    let norm = global_norm(grads, vars.iter().copied())?;
    scale_to_norm(grads, vars, clip_norm, norm)?;
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Two variables whose gradients are `ga` and `gb`, plus one that takes no part.
    fn setup(ga: &[f32], gb: &[f32]) -> (Vec<Var>, GradStore) {
        let dev = Device::Cpu;
        let a = Var::zeros(ga.len(), DType::F32, &dev).unwrap();
        let b = Var::zeros(gb.len(), DType::F32, &dev).unwrap();
        let unused = Var::zeros(1, DType::F32, &dev).unwrap();
        let ta = Tensor::new(ga, &dev).unwrap();
        let tb = Tensor::new(gb, &dev).unwrap();
        let loss = ((a.as_tensor() * ta).unwrap().sum_all().unwrap()
            + (b.as_tensor() * tb).unwrap().sum_all().unwrap())
        .unwrap();
        let grads = loss.backward().unwrap();
        (vec![a, b, unused], grads)
    }

    fn assert_grad(grads: &GradStore, v: &Var, want: &[f32]) {
        let got: Vec<f32> = grads.get(v.as_tensor()).unwrap().to_vec1().unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn above_threshold_scales_every_gradient_by_clip_over_norm() {
        // norm = sqrt(3² + 4²) = 5 > 2: every gradient is multiplied by 2/5
        let (vars, mut grads) = setup(&[3.0], &[0.0, 4.0]);
        let norm = clip_by_global_norm(&mut grads, &vars, 2.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        assert_grad(&grads, &vars[0], &[1.2]);
        assert_grad(&grads, &vars[1], &[0.0, 1.6]);
    }

    #[test]
    fn below_threshold_leaves_gradients_unchanged() {
        let (vars, mut grads) = setup(&[0.3], &[0.0, 0.4]);
        let norm = clip_by_global_norm(&mut grads, &vars, 2.0).unwrap();
        assert!((norm - 0.5).abs() < 1e-6);
        assert_grad(&grads, &vars[0], &[0.3]);
        assert_grad(&grads, &vars[1], &[0.0, 0.4]);
    }

    #[test]
    fn nan_gradient_is_reported_not_hidden() {
        let (vars, mut grads) = setup(&[f32::NAN], &[1.0, 1.0]);
        let norm = clip_by_global_norm(&mut grads, &vars, 2.0).unwrap();
        assert!(norm.is_nan());
    }

    #[test]
    fn bad_threshold_is_rejected() {
        let (vars, mut grads) = setup(&[1.0], &[1.0]);
        assert!(matches!(
            clip_by_global_norm(&mut grads, &vars, 0.0),
            Err(ClipError::BadThreshold(_))
        ));
    }

    #[test]
    fn per_variable_clipping_bounds_each_gradient_on_its_own() {
        // |ga| = 5 is cut to 2; |gb| = 1 is left as it is.
        let (vars, mut grads) = setup(&[3.0, 4.0], &[0.6, 0.8]);
        scale_each_to_norm(&mut grads, &vars, 2.0).unwrap();
        assert_grad(&grads, &vars[0], &[1.2, 1.6]);
        assert_grad(&grads, &vars[1], &[0.6, 0.8]);
        assert!(grads.get(vars[2].as_tensor()).is_none());
        assert!(matches!(
            scale_each_to_norm(&mut grads, &vars, 0.0),
            Err(ClipError::BadThreshold(_))
        ));
    }
}
