//! Runs of a tiny network on generated data, trained through the library in a second or two.

use std::path::Path;

use candle_core::Device;
use repro::experiment::{load_experiment, Experiment, LoadOptions, ResolvedRun};
use repro::runner::prepare_datasets;
use repro::store::metrics::{read_metrics, MetricsRow};
use repro::store::RunDir;
use repro::train::{train_run, Progress, RunOutcome, TrainJob};

/// A run of a tiny network on 4 generated classes, with `train` as extra YAML under `train:`.
pub fn tiny_run(dir: &Path, arch: &str, train: &str) -> ResolvedRun {
    tiny_experiment(dir, arch, train).runs["r"].clone()
}

/// An experiment of one figure over the tiny run `r` (see [`tiny_run`]).
pub fn tiny_experiment(dir: &Path, arch: &str, train: &str) -> Experiment {
    let yaml = format!(
        "runs:\n  r:\n    model: {{arch: {arch}, width: 0.125, image_size: 75, blocks: [1, 1, 1], bn_momentum: 0.1, dropout: 0.2}}\n    \
         data: {{synthetic: {{classes: 4, train_per_class: 24, val_per_class: 8, image_size: 48}}, train_crop_area: [0.5, 1.0]}}\n    \
         train: {{batch_size: 16, eval_batch_size: 32, ema: {{decay: 0.9}}, {train}}}\n\
         figures:\n  - {{id: f, metric: top1, runs: [r]}}\n"
    );
    let path = dir.join("exp.yaml");
    std::fs::write(&path, yaml).unwrap();
    load_experiment(&path, &LoadOptions::default()).unwrap()
}

pub fn train(
    run: &ResolvedRun,
    results: &Path,
    folder: &str,
    stop_after_steps: Option<u64>,
) -> (RunOutcome, Vec<MetricsRow>) {
    let data = prepare_datasets(&run.config.data, results).unwrap();
    let dir = RunDir::new(results.join(folder));
    dir.create().unwrap();
    let job = TrainJob {
        config: &run.config,
        config_hash: &run.hash,
        dir: &dir,
        train_set: &data.train,
        val_set: &data.val,
        device: &Device::Cpu,
        threads: 2,
        stop: repro::interrupt::StopSignal::default(),
        replicas: std::sync::Arc::new(repro::replicas::Single),
        stop_after_steps,
        progress: Progress::quiet(),
        observer: &repro::watch::Unwatched,
    };
    let outcome = train_run(&job).unwrap();
    let rows = if dir.metrics_parquet().exists() {
        read_metrics(&dir.metrics_parquet()).unwrap()
    } else {
        Vec::new()
    };
    (outcome, rows)
}

/// How the tests run experiments ([`repro::runner::RunOptions::on_cpu`]), with
/// `command_flags` as the command line would have given them.
pub fn cpu_options(results: &Path, command_flags: &[&str]) -> repro::runner::RunOptions {
    repro::runner::RunOptions {
        command_flags: command_flags.iter().map(|f| f.to_string()).collect(),
        ..repro::runner::RunOptions::on_cpu(results.to_path_buf())
    }
}
