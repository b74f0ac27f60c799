//! Helpers for tests that stop runs halfway: a smoke run slow enough to catch in the act,
//! and the step its checkpoint has reached.

use std::path::Path;
use std::time::{Duration, Instant};

/// `--set` arguments that make fig23's smoke profile take a few seconds and checkpoint
/// after every step (Inception-ResNet-v2, first in name order, trains 6 epochs).
pub const SLOW_SMOKE: [&str; 6] = [
    "--set",
    "train.epochs=6",
    "--set",
    "train.checkpoint_every_steps=1",
    "--set",
    "runs.inception_v4.train.epochs=1",
];

/// The step of the newest checkpoint of the first run folder under `runs` that has one.
pub fn checkpointed_step(runs: &Path) -> Option<u64> {
    std::fs::read_dir(runs).ok()?.find_map(|e| {
        let dir = repro::store::RunDir::new(e.ok()?.path());
        dir.checkpoint_store().newest_state().map(|s| s.step)
    })
}

/// Polls until a run under `runs` has checkpointed step `step` or later and `ready` agrees,
/// for at most two minutes; returns the step seen.
pub fn wait_for_checkpoint(runs: &Path, step: u64, mut ready: impl FnMut() -> bool) -> Option<u64> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if let Some(s) = checkpointed_step(runs).filter(|&s| s >= step) {
            if ready() {
                return Some(s);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
