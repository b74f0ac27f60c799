//! The same seeded weights and one input on the CPU and on a device: logits in inference and
//! training mode, and every gradient.

use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::{err, model_config, setup, BenchOptions};
use crate::experiment::TrainConfig;
use crate::models::Arch;
use crate::numeric::{max_abs, max_abs_diff};
use crate::train::{sorted_vars, TrainStep};

/// Tensors listed in [`Parity::grad_worst`].
const WORST: usize = 5;

/// One line of `repro bench parity`.
#[derive(Debug, Serialize)]
pub struct Parity {
    pub kind: &'static str,
    pub model: String,
    pub device: String,
    pub precision: String,
    pub size: usize,
    pub batch: usize,
    /// max |cpu − device| over the logits in inference mode, and the largest |logit| on the CPU.
    pub eval_logits_max_abs_diff: f64,
    pub eval_logits_max_abs: f64,
    /// The same in training mode (BatchNorm batch statistics).
    pub train_logits_max_abs_diff: f64,
    pub train_logits_max_abs: f64,
    /// The largest relative L2 difference of one variable's gradient (see
    /// [`TensorDifference`]), and the variables where it is largest, worst first.
    pub grad_max_rel_l2: f64,
    pub grad_worst: Vec<TensorDifference>,
    /// Variables compared.
    pub grads_compared: usize,
    pub seconds: f64,
}

/// How far one variable's gradient on the device is from the CPU's: ‖g_dev − g_cpu‖ /
/// max(‖g_cpu‖, 10⁻⁴ ‖all of g_cpu‖). The floor keeps gradients that vanish in theory (a
/// channel no image activates, a bias before a batch-normalised convolution) from reporting
/// their rounding noise as a large relative error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorDifference {
    pub name: String,
    pub rel_l2: f64,
}

/// The same seeded weights and one input on the CPU and on `o.device`: inference and training
/// logits, and the gradients of a smoothed cross-entropy.
pub fn parity(arch: Arch, o: &BenchOptions) -> Result<Parity, String> {
    let start = Instant::now();
    let (device, device_name, precision, _precision) = setup(o)?;
    let model = model_config(arch, o);
    let train = TrainConfig::default();
    let named = |e: crate::train::TrainError| format!("{}: {e}", arch.name());
    // Weights are initialised on the host from the seed and copied, so both sides hold the same values.
    let cpu = TrainStep::new(&model, &train, o.seed, &Device::Cpu).map_err(named)?;
    let dev = TrainStep::new(&model, &train, o.seed, &device).map_err(named)?;
    let x = Tensor::randn(0f32, 1.0, (o.batch, 3, o.size, o.size), &Device::Cpu)
        .map_err(err("input"))?;
    let xd = x.to_device(&device).map_err(err("input"))?;
    let labels: Vec<u32> = (0..o.batch as u32).map(|i| i % o.classes as u32).collect();
    let yc = Tensor::new(labels.as_slice(), &Device::Cpu).map_err(err("labels"))?;
    let yd = yc.to_device(&device).map_err(err("labels"))?;

    let eval_c = cpu
        .net
        .forward_t(&x, false)
        .map_err(err("cpu forward"))?
        .logits;
    let eval_d = dev
        .net
        .forward_t(&xd, false)
        .map_err(err("device forward"))?
        .logits;
    let eval_logits_max_abs = max_abs(&eval_c).map_err(err("compare"))?;
    let eval_logits_max_abs_diff = max_abs_diff(&eval_c, &eval_d).map_err(err("compare"))?;

    cpu.net.set_dropout_seed(1);
    dev.net.set_dropout_seed(1);
    let loss = |step: &TrainStep,
                x: &Tensor,
                y: &Tensor|
     -> Result<(Tensor, candle_core::backprop::GradStore), String> {
        let out = step
            .net
            .forward_t(x, true)
            .map_err(err("training forward"))?;
        let l = crate::train::smoothed_cross_entropy(&out.logits, y, 0.1)
            .map_err(|e| format!("loss: {e}"))?;
        let grads = l.backward().map_err(err("backward"))?;
        Ok((out.logits, grads))
    };
    let (train_c, grads_c) = loss(&cpu, &x, &yc)?;
    let (train_d, grads_d) = loss(&dev, &xd, &yd)?;
    let train_logits_max_abs = max_abs(&train_c).map_err(err("compare"))?;
    let train_logits_max_abs_diff = max_abs_diff(&train_c, &train_d).map_err(err("compare"))?;

    let dev_vars: std::collections::HashMap<String, candle_core::Var> =
        sorted_vars(&dev.varmap).into_iter().collect();
    let mut pairs = Vec::new();
    for (name, var) in sorted_vars(&cpu.varmap) {
        let (Some(gc), Some(dv)) = (grads_c.get(var.as_tensor()), dev_vars.get(&name)) else {
            continue;
        };
        let Some(gd) = grads_d.get(dv.as_tensor()) else {
            return Err(format!(
                "{}: no gradient on the device for {name}",
                arch.name()
            ));
        };
        let gd = gd.to_device(&Device::Cpu).map_err(err("gradient"))?;
        pairs.push((name, gc.clone(), gd));
    }
    let worst = worst_differences(&pairs).map_err(err("compare"))?;
    Ok(Parity {
        kind: "parity",
        model: arch.name().into(),
        device: device_name,
        precision: precision.name().into(),
        size: o.size,
        batch: o.batch,
        eval_logits_max_abs_diff,
        eval_logits_max_abs,
        train_logits_max_abs_diff,
        train_logits_max_abs,
        grad_max_rel_l2: worst.first().map_or(0.0, |d| d.rel_l2),
        grad_worst: worst,
        grads_compared: pairs.len(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The [`WORST`] largest [`TensorDifference`]s of `(name, reference, other)`, worst first.
fn worst_differences(
    pairs: &[(String, Tensor, Tensor)],
) -> candle_core::Result<Vec<TensorDifference>> {
    let norm = |t: &Tensor| -> candle_core::Result<f64> {
        t.to_dtype(candle_core::DType::F64)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f64>()
            .map(f64::sqrt)
    };
    let mut norms = Vec::with_capacity(pairs.len());
    for (_, reference, _) in pairs {
        norms.push(norm(reference)?);
    }
    let whole = norms.iter().map(|n| n * n).sum::<f64>().sqrt();
    let mut out = Vec::with_capacity(pairs.len());
    for ((name, reference, other), n) in pairs.iter().zip(&norms) {
        let diff = norm(
            &(reference.to_dtype(candle_core::DType::F64)?
                - other.to_dtype(candle_core::DType::F64)?)?,
        )?;
        out.push(TensorDifference {
            name: name.clone(),
            rel_l2: diff / n.max(1e-4 * whole).max(f64::MIN_POSITIVE),
        });
    }
    out.sort_by(|a, b| b.rel_l2.total_cmp(&a.rel_l2).then(a.name.cmp(&b.name)));
    out.truncate(WORST);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::tiny;
    use super::*;

    /// CPU against CPU: the comparison itself reports zero differences.
    #[test]
    fn parity_of_the_cpu_with_itself_is_exact() {
        let p = parity(Arch::InceptionV4, &tiny("inception_v4")).unwrap();
        assert_eq!(p.eval_logits_max_abs_diff, 0.0);
        assert_eq!(p.train_logits_max_abs_diff, 0.0);
        assert_eq!(p.grad_max_rel_l2, 0.0);
        assert!(p.eval_logits_max_abs > 0.0 && p.grad_worst.len() == WORST);
        assert!(p.grads_compared > 50);
    }

    #[test]
    fn the_worst_tensors_come_first_and_vanishing_ones_do_not_count_their_noise() {
        let t = |v: &[f32]| Tensor::new(v, &Device::Cpu).unwrap();
        let pairs = vec![
            ("a".to_string(), t(&[3.0, 4.0]), t(&[3.0, 4.5])),
            ("b".to_string(), t(&[30.0, 40.0]), t(&[30.0, 40.0])),
            ("vanishing".to_string(), t(&[1e-9, 0.0]), t(&[-1e-9, 0.0])),
        ];
        let worst = worst_differences(&pairs).unwrap();
        assert_eq!(worst[0].name, "a");
        assert!((worst[0].rel_l2 - 0.1).abs() < 1e-12, "{worst:?}");
        // 2e-9 against a floor of 1e-4 x 50.2: far below a real difference
        assert_eq!(worst[1].name, "vanishing");
        assert!(worst[1].rel_l2 < 1e-6, "{worst:?}");
        assert_eq!(
            worst[2],
            TensorDifference {
                name: "b".into(),
                rel_l2: 0.0
            }
        );
    }
}
