//! `repro bench`: timings and CPU/GPU parity that the release binary can run on a machine
//! without a Rust toolchain (the GPU check, `scripts/gpu-check.sh`). Each measurement prints
//! one JSON object per line on stdout.
//!
//! - `repro bench train --device cuda:0 --size 299 --batch 32 --steps 10`: training images/s
//!   of the paper's step (forward, smoothed cross-entropy, backward, clipping, RMSProp, EMA),
//!   the same step `repro run` trains with and `cargo bench --bench train_step` times on the CPU;
//! - `repro bench eval ...`: evaluation crops/s (forward in inference mode);
//! - `repro bench parity --device cuda:0 --size 139 --batch 2`: one set of seeded weights and
//!   one input on the CPU and on the device: logits in inference and training mode (batch
//!   statistics) and every gradient, largest differences relative to the CPU's magnitudes.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::device::{apply_precision, parse_device, Precision};
use crate::models::{Arch, ModelConfig};
use crate::numeric::{max_abs, max_abs_diff};
use crate::spec::TrainConfig;
use crate::train::{sorted_vars, TrainStep};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchKind,
}

#[derive(Subcommand, Debug)]
pub enum BenchKind {
    /// Training images/s of each network (one warm-up step, then `--steps` timed steps).
    Train(BenchOptions),
    /// Evaluation crops/s of each network (forward in inference mode).
    Eval(BenchOptions),
    /// The same weights and input on the CPU and on `--device`: logits and gradients compared.
    Parity(BenchOptions),
}

#[derive(Args, Debug, Clone)]
pub struct BenchOptions {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, tf32 (CUDA only) or bf16 (convolutions in bf16, the rest f32).
    #[arg(long, default_value = "f32")]
    pub precision: String,
    /// Comma-separated networks (default: all four).
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    #[arg(long, default_value_t = 299)]
    pub size: usize,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Timed steps (train, eval); ignored by parity.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    #[arg(long, default_value_t = 1.0)]
    pub width: f64,
    #[arg(long, default_value_t = 1000)]
    pub classes: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl Default for BenchOptions {
    /// The command line's defaults: CPU, f32, all four networks, 299 px, batch 32.
    fn default() -> Self {
        Self {
            device: "cpu".into(),
            precision: "f32".into(),
            models: None,
            size: 299,
            batch: 32,
            steps: 10,
            warmup: 2,
            width: 1.0,
            classes: 1000,
            seed: 0,
        }
    }
}

/// One line of `repro bench train|eval`.
#[derive(Debug, Serialize)]
pub struct Timing {
    pub kind: &'static str,
    pub model: String,
    pub device: String,
    pub precision: String,
    pub size: usize,
    pub batch: usize,
    pub steps: usize,
    /// Images (train) or crops (eval) per second over the timed steps.
    pub per_s: f64,
    /// The same rate at the median step time: steadier than `per_s` on a machine shared with
    /// other work, and what the benchmarks compare against PyTorch (timed the same way).
    pub median_per_s: f64,
    /// Each timed step, milliseconds.
    pub step_ms: Vec<f64>,
    /// Processes training together (`mpirun -np N repro bench train`); the rates count the
    /// images of all of them.
    pub processes: usize,
    /// Of each step, milliseconds spent exchanging with the other processes (train only).
    pub comm_ms_per_step: f64,
}

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
    /// Over every trainable variable: max |g_cpu − g_dev| / max |g_cpu| of that variable, and
    /// the variable where it is largest.
    pub grad_max_rel_diff: f64,
    pub grad_worst_var: String,
    pub seconds: f64,
}

fn archs(o: &BenchOptions) -> Result<Vec<Arch>, String> {
    match &o.models {
        None => Ok(Arch::ALL.to_vec()),
        Some(names) => names
            .iter()
            .map(|n| Arch::from_name(n).ok_or_else(|| format!("--models: unknown network `{n}`")))
            .collect(),
    }
}

fn model_config(arch: Arch, o: &BenchOptions) -> ModelConfig {
    let mut m = ModelConfig::new(arch);
    m.image_size = o.size;
    m.width = o.width;
    m.num_classes = o.classes;
    m
}

fn setup(o: &BenchOptions) -> Result<(Device, String, Precision), String> {
    let (device, name) = parse_device(&o.device)?;
    let precision = Precision::parse(&o.precision)?;
    apply_precision(precision, &device)?;
    Ok((device, name, precision))
}

fn err(context: &'static str) -> impl Fn(candle_core::Error) -> String {
    move |e| format!("{context}: {e}")
}

/// Runs one `repro bench` command, printing a JSON line per network.
/// Checks what the user asked for (networks, device, precision) before anything runs, so
/// that bad input is told apart from a measurement that fails.
pub fn validate(args: &BenchArgs) -> Result<(), String> {
    let o = match &args.what {
        BenchKind::Train(o) | BenchKind::Eval(o) | BenchKind::Parity(o) => o,
    };
    archs(o)?;
    parse_device(&o.device)?;
    Precision::parse(&o.precision)?;
    Ok(())
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    let emit = |v: &dyn erased::Json| println!("{}", v.json());
    match args.what {
        BenchKind::Train(o) => {
            let (replicas, _) = crate::dist::from_environment().map_err(|e| e.to_string())?;
            for arch in archs(&o)? {
                let timing = train_images_per_s(arch, &o, &replicas)?;
                if replicas.rank() == 0 {
                    emit(&timing);
                }
            }
        }
        BenchKind::Eval(o) => {
            for arch in archs(&o)? {
                emit(&eval_crops_per_s(arch, &o)?);
            }
        }
        BenchKind::Parity(o) => {
            for arch in archs(&o)? {
                emit(&parity(arch, &o)?);
            }
        }
    }
    Ok(())
}

mod erased {
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        }
    }
}

/// Runs `o.warmup` untimed then `o.steps` timed calls of `step(index, warm_up)` and reports
/// the rate in images (or crops) per second; `step` must wait for its work to finish.
fn timed(
    kind: &'static str,
    arch: Arch,
    o: &BenchOptions,
    (device, device_name, precision): (&Device, String, Precision),
    mut step: impl FnMut(u64, bool) -> Result<(), String>,
) -> Result<Timing, String> {
    for i in 0..o.warmup {
        step(i as u64, true)?;
    }
    device.synchronize().map_err(err("synchronize"))?;
    let mut step_ms = Vec::with_capacity(o.steps);
    let start = Instant::now();
    for i in 0..o.steps {
        let t = Instant::now();
        step((o.warmup + i) as u64, false)?;
        step_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    device.synchronize().map_err(err("synchronize"))?;
    let secs = start.elapsed().as_secs_f64();
    Ok(Timing {
        kind,
        model: arch.name().into(),
        device: device_name,
        precision: precision.name().into(),
        size: o.size,
        batch: o.batch,
        steps: o.steps,
        per_s: (o.steps * o.batch) as f64 / secs,
        median_per_s: o.batch as f64 * 1e3 / median(&step_ms),
        step_ms,
        processes: 1,
        comm_ms_per_step: 0.0,
    })
}

/// The median of `v` (the mean of the middle two for an even count); NaN when empty.
fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Training images/s of `arch` on `o.device`, over all `replicas` (one process each, every
/// one running `o.batch` images per step).
pub fn train_images_per_s(
    arch: Arch,
    o: &BenchOptions,
    replicas: &crate::dist::Replicas,
) -> Result<Timing, String> {
    let (device, device_name, precision) = setup(o)?;
    let model = model_config(arch, o);
    let mut step = TrainStep::new(&model, &TrainConfig::default(), o.seed, &device)
        .map_err(|e| format!("{}: {e}", arch.name()))?;
    step.set_replicas(replicas.clone());
    let step = std::cell::RefCell::new(step);
    let comm_before = std::cell::Cell::new(0.0);
    let images =
        Tensor::randn(0f32, 1.0, (o.batch, 3, o.size, o.size), &device).map_err(err("input"))?;
    let labels: Vec<u32> = (0..o.batch as u32).map(|i| i % o.classes as u32).collect();
    let labels = Tensor::new(labels.as_slice(), &device).map_err(err("labels"))?;
    timed(
        "train",
        arch,
        o,
        (&device, device_name, precision),
        |i, warm_up| {
            if !warm_up && i == o.warmup as u64 {
                comm_before.set(step.borrow().communication_seconds());
            }
            // Each step reads its loss back to the host: the timing covers the whole step.
            step.borrow_mut()
                .step(&images, &labels, 0.045, i)
                .map(|_| ())
                .map_err(|e| {
                    let what = if warm_up { "warm-up step" } else { "step" };
                    format!("{}: {what}: {e}", arch.name())
                })
        },
    )
    .map(|mut t| {
        let world = replicas.world_size();
        let comm = step.borrow().communication_seconds() - comm_before.get();
        t.processes = world;
        t.per_s *= world as f64;
        t.median_per_s *= world as f64;
        t.comm_ms_per_step = comm * 1e3 / o.steps.max(1) as f64;
        t
    })
}

/// Evaluation crops/s of `arch` on `o.device` (batch of `o.batch` crops per forward pass).
pub fn eval_crops_per_s(arch: Arch, o: &BenchOptions) -> Result<Timing, String> {
    let (device, device_name, precision) = setup(o)?;
    let model = model_config(arch, o);
    let step = TrainStep::new(&model, &TrainConfig::default(), o.seed, &device)
        .map_err(|e| format!("{}: {e}", arch.name()))?;
    let images =
        Tensor::randn(0f32, 1.0, (o.batch, 3, o.size, o.size), &device).map_err(err("input"))?;
    timed(
        "eval",
        arch,
        o,
        (&device, device_name, precision),
        |_, _| {
            let out = step.net.forward_t(&images, false).map_err(err("forward"))?;
            // Reading one number back waits for the whole forward pass.
            out.logits
                .sum_all()
                .and_then(|s| s.to_dtype(DType::F64))
                .and_then(|s| s.to_scalar::<f64>())
                .map(|_| ())
                .map_err(err("logits"))
        },
    )
}

/// The same seeded weights and one input on the CPU and on `o.device`: inference and training
/// logits, and the gradients of a smoothed cross-entropy.
pub fn parity(arch: Arch, o: &BenchOptions) -> Result<Parity, String> {
    let start = Instant::now();
    let (device, device_name, precision) = setup(o)?;
    let model = model_config(arch, o);
    let train = TrainConfig::default();
    // Weights are initialised on the host from the seed and copied, so both sides hold the same values.
    let cpu = TrainStep::new(&model, &train, o.seed, &Device::Cpu)
        .map_err(|e| format!("{}: {e}", arch.name()))?;
    let dev = TrainStep::new(&model, &train, o.seed, &device)
        .map_err(|e| format!("{}: {e}", arch.name()))?;
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

    let (mut grad_max_rel_diff, mut grad_worst_var) = (0.0f64, String::new());
    let dev_vars: std::collections::HashMap<String, candle_core::Var> =
        sorted_vars(&dev.varmap).into_iter().collect();
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
        let scale = max_abs(gc).map_err(err("compare"))?;
        let rel = max_abs_diff(gc, gd).map_err(err("compare"))? / scale.max(1e-12);
        if rel > grad_max_rel_diff || grad_worst_var.is_empty() {
            grad_max_rel_diff = rel;
            grad_worst_var = name;
        }
    }
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
        grad_max_rel_diff,
        grad_worst_var,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(models: &str) -> BenchOptions {
        BenchOptions {
            device: "cpu".into(),
            precision: "f32".into(),
            models: Some(vec![models.into()]),
            size: 75,
            batch: 2,
            steps: 1,
            warmup: 1,
            width: 0.125,
            classes: 10,
            seed: 0,
        }
    }

    #[test]
    fn median_takes_the_middle_value() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn train_and_eval_timings_run_on_the_cpu() {
        let o = tiny("inception_resnet_v2");
        let t = train_images_per_s(Arch::InceptionResnetV2, &o, &crate::dist::single()).unwrap();
        assert!(t.per_s > 0.0 && t.step_ms.len() == 1);
        // One step: the median step is that step.
        assert_eq!(t.median_per_s, o.batch as f64 * 1e3 / t.step_ms[0]);
        let e = eval_crops_per_s(Arch::InceptionResnetV2, &o).unwrap();
        assert!(e.per_s > 0.0);
        assert!(serde_json::to_string(&e)
            .unwrap()
            .contains("\"kind\":\"eval\""));
    }

    /// CPU against CPU: the comparison itself reports zero differences.
    #[test]
    fn parity_of_the_cpu_with_itself_is_exact() {
        let p = parity(Arch::InceptionV4, &tiny("inception_v4")).unwrap();
        assert_eq!(p.eval_logits_max_abs_diff, 0.0);
        assert_eq!(p.train_logits_max_abs_diff, 0.0);
        assert_eq!(p.grad_max_rel_diff, 0.0);
        assert!(p.eval_logits_max_abs > 0.0 && !p.grad_worst_var.is_empty());
    }

    #[test]
    fn without_cuda_the_device_error_says_so() {
        let mut o = tiny("inception_v3");
        o.device = "cuda:0".into();
        let e = train_images_per_s(Arch::InceptionV3, &o, &crate::dist::single()).unwrap_err();
        #[cfg(not(feature = "cuda"))]
        assert!(e.contains("built without CUDA support"), "{e}");
        let _ = e;
    }
}
