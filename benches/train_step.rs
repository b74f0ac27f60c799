//! Training images per second of the four networks on this machine, against PyTorch + timm
//! running the same step (RMSProp, label smoothing, clipping, EMA) in the same command.
//!
//! cargo bench --bench train_step -- [--size 107] [--batch 16] [--steps 3] [--width 1.0] [--models inception_v4,...]
//!
//! The PyTorch side runs `tools/bench_timm_train.py` with `$REPRO_PYTHON`, else `python3` (torch
//! and timm from PyPI); it is skipped with a message when they are missing. Inception-ResNet-v1
//! has no timm model. `repro bench compare` measures the same both ways at three scales.

use std::process::Command;

use repro::bench::{train_images_per_s, BenchOptions};
use repro::models::Arch;

/// The `repro` binary's allocator, so that these timings are the binary's (huge pages).
#[global_allocator]
static HEAP: repro::models::fastops::HugePageHeap = repro::models::fastops::HugePageHeap;

struct Options {
    size: usize,
    batch: usize,
    steps: usize,
    width: f64,
    models: Vec<Arch>,
}

fn options() -> Options {
    let mut o = Options {
        size: 107,
        batch: 16,
        steps: 3,
        width: 1.0,
        models: Arch::ALL.to_vec(),
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut i = 0;
    while i + 1 < args.len() {
        let v = &args[i + 1];
        match args[i].as_str() {
            "--size" => o.size = v.parse().expect("--size N"),
            "--batch" => o.batch = v.parse().expect("--batch N"),
            "--steps" => o.steps = v.parse().expect("--steps N"),
            "--width" => o.width = v.parse().expect("--width W"),
            "--models" => {
                o.models = v
                    .split(',')
                    .map(|m| Arch::from_name(m).expect("known model"))
                    .collect()
            }
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

/// Images per second of `steps` timed training steps after one warm-up step (the same
/// measurement as `repro bench train`).
fn candle_images_per_s(arch: Arch, o: &Options) -> f64 {
    let options = BenchOptions {
        size: o.size,
        batch: o.batch,
        steps: o.steps,
        warmup: 1,
        width: o.width,
        ..BenchOptions::default()
    };
    train_images_per_s(arch, &options, &repro::replicas::single())
        .expect("training step")
        .median_per_s
}

/// PyTorch's images per second per timm model name, or why it was skipped.
fn torch_images_per_s(o: &Options) -> Result<Vec<(String, f64)>, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/bench_timm_train.py");
    let models: Vec<&str> = o
        .models
        .iter()
        .filter(|a| a.has_timm_weights())
        .map(|a| a.name())
        .collect();
    if models.is_empty() {
        return Ok(Vec::new());
    }
    let out = Command::new(python_command())
        .arg(script)
        .args([
            "--size",
            &o.size.to_string(),
            "--batch",
            &o.batch.to_string(),
            "--steps",
            &o.steps.to_string(),
            "--threads",
            &rayon_threads().to_string(),
        ])
        .args([
            "--width-check",
            &o.width.to_string(),
            "--models",
            &models.join(","),
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python_command()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("failed")
            .to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, v) = l.split_once('\t')?;
            Some((name.to_string(), v.trim().parse().ok()?))
        })
        .collect())
}

fn main() {
    repro::models::fastops::configure_cpu();
    let o = options();
    println!(
        "training step, {} px, batch {}, width {}, {} timed steps, {} threads",
        o.size,
        o.batch,
        o.width,
        o.steps,
        rayon_threads()
    );
    let torch = torch_images_per_s(&o);
    if let Err(why) = &torch {
        println!("PyTorch side skipped: {why}");
    }
    println!(
        "{:<22} {:>12} {:>12} {:>8}",
        "model", "repro img/s", "torch img/s", "ratio"
    );
    for &arch in &o.models {
        let ours = candle_images_per_s(arch, &o);
        let theirs = torch
            .as_ref()
            .ok()
            .and_then(|t| t.iter().find(|(n, _)| n == arch.name()).map(|(_, v)| *v));
        let (t, r) = match theirs {
            Some(t) => (format!("{t:.2}"), format!("{:.2}", ours / t)),
            None => ("n/a".into(), "n/a".into()),
        };
        println!("{:<22} {:>12.2} {:>12} {:>8}", arch.name(), ours, t, r);
    }
}

/// The threads of rayon's global pool, which the fast ops use (`RAYON_NUM_THREADS`); PyTorch is
/// given as many.
fn rayon_threads() -> usize {
    rayon::current_num_threads()
}

/// The Python with torch and timm: `$REPRO_PYTHON`, else `python3`.
fn python_command() -> String {
    std::env::var("REPRO_PYTHON").unwrap_or_else(|_| "python3".into())
}
