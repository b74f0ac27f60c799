//! `repro bench`: timings and CPU/GPU parity that the release binary can run on a machine
//! without a Rust toolchain (the GPU check, `scripts/gpu-check.sh`). Each measurement prints
//! JSON objects, one per line on stdout, as it goes: a line per timed iteration, then the
//! network's summary, so a step stopped by its time limit still leaves what it measured. A
//! network that fails prints a line with its error and the others still run; the command then
//! exits non-zero.
//!
//! - `repro bench train --device cuda:0 --size 299 --batch 32 --steps 10`: training images/s
//!   of the paper's step (forward, smoothed cross-entropy, backward, clipping, RMSProp, EMA),
//!   the same step `repro run` trains with and `cargo bench --bench train_step` times on the CPU,
//!   then the time of each phase of the step over `--phase-steps` more steps;
//! - `repro bench eval ...`: evaluation crops/s (forward in inference mode);
//! - `repro bench parity --device cuda:0 --size 139 --batch 2`: one set of seeded weights and
//!   one input on the CPU and on the device: logits in inference and training mode (batch
//!   statistics) and every gradient, relative L2 differences per tensor;
//! - `repro bench stream --device cuda:0`: that the process uses one device and one stream, and
//!   that work queued on a worker thread is complete when the main thread reads it;
//! - `repro bench compare`: training images/s of repro and of PyTorch + timm (f32 and bf16
//!   autocast) alternately in one command, with the ratios and each side's share of the CPU's
//!   f32 peak.

mod compare;
mod parity;
mod peak;
mod stream;
mod timing;
mod torch_side;

use clap::{Args, Subcommand};

use crate::device::{apply_precision, parse_device, Precision};
use crate::models::{Arch, ModelConfig};

pub use compare::{CompareOptions, Comparison, Scale};
pub use parity::{parity, Parity, TensorDifference};
pub use peak::{CpuInfo, Peak};
pub use stream::{stream_check, StreamCheck};
pub use timing::{
    eval_crops_per_s, eval_timing, train_images_per_s, train_timing, Iteration, PhaseTime,
    ProfileEntry, Timing,
};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchKind,
}

#[derive(Subcommand, Debug)]
pub enum BenchKind {
    /// Training images/s of each network (warm-up steps, then `--steps` timed steps, then the
    /// phases of `--phase-steps` more).
    Train(BenchOptions),
    /// Evaluation crops/s of each network (forward in inference mode).
    Eval(BenchOptions),
    /// The same weights and input on the CPU and on `--device`: logits and gradients compared.
    Parity(BenchOptions),
    /// One device and one stream: work queued on a worker thread, read on the main thread.
    Stream(BenchOptions),
    /// Training images/s of repro and PyTorch + timm (f32, bf16 autocast) alternately on this
    /// CPU: the three networks at the mini scale, 107 px and 299 px, the ratios, and each
    /// side's share of the CPU's f32 peak.
    Compare(CompareOptions),
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
    /// Training steps after the timed ones whose phases are timed (each phase waits for the
    /// device, so they are not part of the images/s).
    #[arg(long, default_value_t = 2)]
    pub phase_steps: usize,
    /// Train: over the phase steps, also the time of each kind of the CPU's fast ops
    /// (convolution forward and gradients, BatchNorm+ReLU, pooling, residual sums) and of the
    /// rest of the forward and backward passes (candle's own ops, autograd), printed as a table
    /// on stderr and in the summary line.
    #[arg(long)]
    pub profile: bool,
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
            phase_steps: 2,
            profile: false,
            width: 1.0,
            classes: 1000,
            seed: 0,
        }
    }
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

fn setup(o: &BenchOptions) -> Result<(candle_core::Device, String, Precision), String> {
    let (device, name) = parse_device(&o.device)?;
    let precision = Precision::parse(&o.precision)?;
    apply_precision(precision, &device)?;
    Ok((device, name, precision))
}

fn err(context: &'static str) -> impl Fn(candle_core::Error) -> String {
    move |e| format!("{context}: {e}")
}

/// Checks what the user asked for (networks, device, precision) before anything runs, so
/// that bad input is told apart from a measurement that fails.
pub fn validate(args: &BenchArgs) -> Result<(), String> {
    let o = match &args.what {
        BenchKind::Train(o) | BenchKind::Eval(o) | BenchKind::Parity(o) | BenchKind::Stream(o) => o,
        BenchKind::Compare(c) => return compare::validate(c),
    };
    archs(o)?;
    parse_device(&o.device)?;
    Precision::parse(&o.precision)?;
    Ok(())
}

fn emit(v: &impl serde::Serialize) {
    match serde_json::to_string(v) {
        Ok(line) => println!("{line}"),
        Err(e) => println!(
            "{}",
            serde_json::json!({ "kind": "error", "error": e.to_string() })
        ),
    }
}

/// The line of a network whose measurement failed.
#[derive(serde::Serialize)]
struct Failed<'a> {
    kind: &'a str,
    model: &'a str,
    device: &'a str,
    precision: &'a str,
    error: &'a str,
}

/// Runs one `repro bench` command: for each network its lines, or a line with its error.
pub fn run(args: BenchArgs) -> Result<(), String> {
    let (kind, o) = match &args.what {
        BenchKind::Train(o) => ("train", o),
        BenchKind::Eval(o) => ("eval", o),
        BenchKind::Parity(o) => ("parity", o),
        BenchKind::Stream(o) => {
            let check = stream_check(o)?;
            emit(&check);
            return match check.ordered {
                true => Ok(()),
                false => Err("work queued on a worker thread was not complete when read".into()),
            };
        }
        BenchKind::Compare(c) => return compare::run(c),
    };
    let (replicas, _) = crate::replicas::from_environment().map_err(|e| e.to_string())?;
    let writer = replicas.rank() == 0;
    let mut failed = Vec::new();
    for arch in archs(o)? {
        let mut each = |line: &Iteration| {
            if writer {
                emit(line)
            }
        };
        let result = match &args.what {
            BenchKind::Train(_) => train_timing(arch, o, &replicas, &mut each).map(|t| {
                if o.profile && writer {
                    eprint!("{}", profile_table(&t));
                }
                emit(&t)
            }),
            BenchKind::Eval(_) => eval_timing(arch, o, &mut each).map(|t| emit(&t)),
            _ => parity(arch, o).map(|p| emit(&p)),
        };
        if let Err(error) = result {
            if writer {
                emit(&Failed {
                    kind,
                    model: arch.name(),
                    device: &o.device,
                    precision: &o.precision,
                    error: &error,
                });
            }
            failed.push(arch.name());
        }
    }
    match failed.is_empty() {
        true => Ok(()),
        false => Err(format!("bench {kind} failed for {}", failed.join(", "))),
    }
}

/// The profile of a training step as a table for people.
fn profile_table(t: &Timing) -> String {
    let total: f64 = t.profile.iter().map(|p| p.ms).sum();
    let mut s = format!(
        "{} at {} px, batch {}, width {} on {}: {:.1} ms per profiled step\n",
        t.model, t.size, t.batch, t.width, t.device, total
    );
    for p in &t.profile {
        let calls = match p.calls > 0.0 {
            true => format!("{:>6.0} calls", p.calls),
            false => String::new(),
        };
        s += &format!(
            "  {:<66} {:>9.1} ms {:>5.1} % {calls}\n",
            p.what,
            p.ms,
            100.0 * p.ms / total.max(f64::MIN_POSITIVE)
        );
    }
    s
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

#[cfg(test)]
fn tiny(models: &str) -> BenchOptions {
    BenchOptions {
        device: "cpu".into(),
        precision: "f32".into(),
        models: Some(vec![models.into()]),
        size: 75,
        batch: 2,
        steps: 1,
        warmup: 1,
        phase_steps: 1,
        profile: false,
        width: 0.125,
        classes: 10,
        seed: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_value() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn without_cuda_the_device_error_says_so() {
        let mut o = tiny("inception_v3");
        o.device = "cuda:0".into();
        let e = train_images_per_s(Arch::InceptionV3, &o, &crate::replicas::single()).unwrap_err();
        #[cfg(not(feature = "cuda"))]
        assert!(e.contains("built without CUDA support"), "{e}");
        let _ = e;
    }
}
