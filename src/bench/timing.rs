//! Training images/s and evaluation crops/s, a line per timed iteration as it goes.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use super::{err, median, model_config, setup, BenchOptions};
use crate::device::Precision;
use crate::experiment::TrainConfig;
use crate::models::fastops::profile::{self, Kind};
use crate::models::Arch;
use crate::train::TrainStep;

/// One line of `repro bench train|eval`: the summary of a network.
#[derive(Debug, Serialize)]
pub struct Timing {
    pub kind: &'static str,
    pub model: String,
    pub device: String,
    pub precision: String,
    pub size: usize,
    pub batch: usize,
    /// The networks' width multiplier (1 = the paper's).
    pub width: f64,
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
    /// Training only: the median time of each phase of the step over the phase steps (each
    /// phase waited for, so their sum exceeds a timed step a little).
    pub phase_ms: Vec<PhaseTime>,
    /// Training with `--profile`: milliseconds per step by kind of work, over the phase steps.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profile: Vec<ProfileEntry>,
}

/// One kind of work in a training step: its milliseconds and calls per step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileEntry {
    pub what: String,
    pub ms: f64,
    pub calls: f64,
}

/// The time of one phase of a training step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseTime {
    pub phase: &'static str,
    pub ms: f64,
}

/// A line per iteration, printed as it ends: `train_step`, `eval_step` or `train_phases`.
#[derive(Debug, Serialize)]
pub struct Iteration {
    pub kind: &'static str,
    pub model: &'static str,
    pub iteration: usize,
    pub warm_up: bool,
    pub ms: f64,
    /// The phases of the step (`train_phases` lines only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phase_ms: Vec<PhaseTime>,
}

/// Runs `o.warmup` untimed then `o.steps` timed calls of `step(index, warm_up)`, telling `each`
/// about every one, and reports the rate in images (or crops) per second; `step` must wait for
/// its work to finish.
fn timed(
    kind: &'static str,
    arch: Arch,
    o: &BenchOptions,
    (device, device_name, precision): (&Device, String, Precision),
    mut step: impl FnMut(u64, bool) -> Result<(), String>,
    each: &mut dyn FnMut(&Iteration),
) -> Result<Timing, String> {
    let line_kind = match kind {
        "train" => "train_step",
        _ => "eval_step",
    };
    let mut run = |i: usize, warm_up: bool| -> Result<f64, String> {
        let t = Instant::now();
        step(i as u64, warm_up)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        each(&Iteration {
            kind: line_kind,
            model: arch.name(),
            iteration: i,
            warm_up,
            ms,
            phase_ms: Vec::new(),
        });
        Ok(ms)
    };
    for i in 0..o.warmup {
        run(i, true)?;
    }
    device.synchronize().map_err(err("synchronize"))?;
    let mut step_ms = Vec::with_capacity(o.steps);
    let start = Instant::now();
    for i in 0..o.steps {
        step_ms.push(run(o.warmup + i, false)?);
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
        width: o.width,
        steps: o.steps,
        per_s: (o.steps * o.batch) as f64 / secs,
        median_per_s: o.batch as f64 * 1e3 / median(&step_ms),
        step_ms,
        processes: 1,
        comm_ms_per_step: 0.0,
        phase_ms: Vec::new(),
        profile: Vec::new(),
    })
}

/// [`train_timing`] without the per-iteration lines.
pub fn train_images_per_s(
    arch: Arch,
    o: &BenchOptions,
    replicas: &crate::replicas::Replicas,
) -> Result<Timing, String> {
    train_timing(arch, o, replicas, &mut |_| {})
}

/// Training images/s of `arch` on `o.device`, over all `replicas` (one process each, every
/// one running `o.batch` images per step), then the phases of `o.phase_steps` more steps.
pub fn train_timing(
    arch: Arch,
    o: &BenchOptions,
    replicas: &crate::replicas::Replicas,
    each: &mut dyn FnMut(&Iteration),
) -> Result<Timing, String> {
    let (device, device_name, precision, _precision) = setup(o)?;
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
    let one_step = |i: u64, warm_up: bool| {
        // Each step reads its loss back to the host: the timing covers the whole step.
        step.borrow_mut()
            .step(&images, &labels, 0.045, i)
            .map(|_| ())
            .map_err(|e| {
                let what = if warm_up { "warm-up step" } else { "step" };
                format!("{}: {what}: {e}", arch.name())
            })
    };
    let mut timing = timed(
        "train",
        arch,
        o,
        (&device, device_name, precision),
        |i, warm_up| {
            if !warm_up && i == o.warmup as u64 {
                comm_before.set(step.borrow().communication_seconds());
            }
            one_step(i, warm_up)
        },
        each,
    )?;
    let world = replicas.world_size();
    let comm = step.borrow().communication_seconds() - comm_before.get();
    timing.processes = world;
    timing.per_s *= world as f64;
    timing.median_per_s *= world as f64;
    timing.comm_ms_per_step = comm * 1e3 / o.steps.max(1) as f64;

    step.borrow_mut().time_phases(&device);
    profile::enable(o.profile);
    let _ = profile::take();
    let mut phases: Vec<Vec<PhaseTime>> = Vec::new();
    for k in 0..o.phase_steps {
        let i = o.warmup + o.steps + k;
        let t = Instant::now();
        one_step(i as u64, false)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let phase_ms: Vec<PhaseTime> = step
            .borrow()
            .phase_milliseconds()
            .unwrap_or_default()
            .into_iter()
            .map(|(phase, ms)| PhaseTime { phase, ms })
            .collect();
        each(&Iteration {
            kind: "train_phases",
            model: arch.name(),
            iteration: i,
            warm_up: false,
            ms,
            phase_ms: phase_ms.clone(),
        });
        phases.push(phase_ms);
    }
    profile::enable(false);
    let ops = profile::take();
    if let Some(first) = phases.first() {
        timing.phase_ms = (0..first.len())
            .map(|p| PhaseTime {
                phase: first[p].phase,
                ms: median(&phases.iter().map(|s| s[p].ms).collect::<Vec<_>>()),
            })
            .collect();
    }
    if o.profile && !phases.is_empty() {
        let steps = phases.len() as f64;
        let mean_phase = |name: &str| {
            phases
                .iter()
                .flatten()
                .filter(|p| p.phase == name)
                .map(|p| p.ms)
                .sum::<f64>()
                / steps
        };
        timing.profile = step_profile(&ops, steps, &mean_phase);
    }
    Ok(timing)
}

/// The fast ops' time per step by kind, what else the forward and backward passes took, and
/// the other phases of the step.
fn step_profile(
    ops: &[(Kind, f64, u64)],
    steps: f64,
    mean_phase: &dyn Fn(&str) -> f64,
) -> Vec<ProfileEntry> {
    let is_forward = |k: Kind| {
        matches!(
            k,
            Kind::ConvForward | Kind::BnReluForward | Kind::PoolForward | Kind::ResidualForward
        )
    };
    let mut out: Vec<ProfileEntry> = ops
        .iter()
        .map(|&(k, ms, calls)| ProfileEntry {
            what: k.name().to_string(),
            ms: ms / steps,
            calls: calls as f64 / steps,
        })
        .collect();
    let counted = |forward: bool| {
        ops.iter()
            .filter(|(k, ..)| is_forward(*k) == forward)
            .map(|(_, ms, _)| ms / steps)
            .sum::<f64>()
    };
    let rest = |what: &str, ms: f64| ProfileEntry {
        what: what.to_string(),
        ms: ms.max(0.0),
        calls: 0.0,
    };
    out.push(rest(
        "rest of the forward pass (candle ops: concatenation, loss, ...)",
        mean_phase("forward") - counted(true),
    ));
    out.push(rest(
        "rest of the backward pass (candle ops, autograd bookkeeping)",
        mean_phase("backward") - counted(false),
    ));
    for phase in ["read", "exchange", "clip", "optimizer", "ema"] {
        out.push(rest(phase, mean_phase(phase)));
    }
    out
}

/// [`eval_timing`] without the per-iteration lines.
pub fn eval_crops_per_s(arch: Arch, o: &BenchOptions) -> Result<Timing, String> {
    eval_timing(arch, o, &mut |_| {})
}

/// Evaluation crops/s of `arch` on `o.device` (batch of `o.batch` crops per forward pass).
pub fn eval_timing(
    arch: Arch,
    o: &BenchOptions,
    each: &mut dyn FnMut(&Iteration),
) -> Result<Timing, String> {
    let (device, device_name, precision, _precision) = setup(o)?;
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
            let out = step.net.infer(&images).map_err(err("forward"))?;
            // Reading one number back waits for the whole forward pass.
            out.logits
                .sum_all()
                .and_then(|s| s.to_dtype(DType::F64))
                .and_then(|s| s.to_scalar::<f64>())
                .map(|_| ())
                .map_err(err("logits"))
        },
        each,
    )
}

#[cfg(test)]
mod tests {
    use super::super::tiny;
    use super::*;

    #[test]
    fn train_and_eval_timings_run_on_the_cpu_with_a_line_per_step() {
        let o = tiny("inception_resnet_v2");
        let mut lines = Vec::new();
        let t = train_timing(
            Arch::InceptionResnetV2,
            &o,
            &crate::replicas::single(),
            &mut |l| lines.push(serde_json::to_value(l).unwrap()),
        )
        .unwrap();
        assert!(t.per_s > 0.0 && t.step_ms.len() == 1);
        // One step: the median step is that step.
        assert_eq!(t.median_per_s, o.batch as f64 * 1e3 / t.step_ms[0]);
        let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["train_step", "train_step", "train_phases"]);
        assert_eq!(lines[0]["warm_up"], true);
        let phases: Vec<&str> = t.phase_ms.iter().map(|p| p.phase).collect();
        assert_eq!(phases, crate::train::phases::PHASES);
        let forward = t.phase_ms[0].ms;
        assert!(forward > 0.0 && t.phase_ms[1].ms > 0.0, "{:?}", t.phase_ms);
        let mut profiled = o.clone();
        profiled.profile = true;
        let p = train_images_per_s(
            Arch::InceptionResnetV2,
            &profiled,
            &crate::replicas::single(),
        )
        .unwrap();
        let entry = |what: &str| p.profile.iter().find(|e| e.what == what).unwrap();
        assert!(entry("convolution forward").calls > 10.0, "{:?}", p.profile);
        assert!(entry("convolution weight gradient").ms > 0.0);
        assert!(entry("residual sum backward").calls > 0.0);
        let e = eval_crops_per_s(Arch::InceptionResnetV2, &o).unwrap();
        assert!(e.per_s > 0.0);
        assert!(serde_json::to_string(&e)
            .unwrap()
            .contains("\"kind\":\"eval\""));
    }
}
