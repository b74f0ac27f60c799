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
//! - `repro bench compare`: training images/s (`--mode eval`: evaluation crops/s) of repro and
//!   of PyTorch + timm (f32 and bf16 autocast) alternately in one command, with the ratios and
//!   each side's share of the CPU's f32 peak.

mod compare;
mod json_lines;
mod options;
mod parity;
mod peak;
mod stream;
mod timing;
mod torch_side;

use clap::{Args, Subcommand};

use crate::device::{parse_device, Precision};

pub use compare::{CompareOptions, Comparison, Scale};
pub(crate) use json_lines::emit;
#[cfg(test)]
pub(crate) use options::tiny;
pub(crate) use options::{archs, err, median, model_config, setup};
pub use options::{BenchOptions, Mode};
pub use parity::{parity, Parity, TensorDifference};
pub use peak::{measure_fma_peak, CpuInfo, Peak};
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
    /// Training images/s (`--mode eval`: evaluation crops/s) of repro and PyTorch + timm (f32,
    /// bf16 autocast) alternately on this CPU: the three networks at the mini scale, 107 px and
    /// 299 px, the ratios, and each side's share of the CPU's f32 peak.
    Compare(CompareOptions),
}

/// Checks what the user asked for (networks, device, precision) before anything runs, so
/// that bad input is told apart from a measurement that fails.
pub fn validate(args: &BenchArgs) -> Result<(), String> {
    let o = match &args.what {
        BenchKind::Train(o) | BenchKind::Eval(o) | BenchKind::Parity(o) | BenchKind::Stream(o) => o,
        BenchKind::Compare(c) => return compare::validate(c),
    };
    archs(o)?;
    let (device, _) = parse_device(&o.device)?;
    let precision = Precision::parse(&o.precision)?;
    crate::device::check_precision(precision, &device).map_err(|e| format!("--precision: {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Arch;

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
