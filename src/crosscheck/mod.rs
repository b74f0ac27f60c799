//! Checks of repro's training against an independent reference trainer (PyTorch + timm).
//!
//! - [`lockstep`]: the same initial weights and the same batches on both sides, compared step
//!   by step (loss, gradient norm, per-variable gradients at the first step) and at the end
//!   (weights, BatchNorm running statistics, moving averages). The reference side is
//!   `tools/lockstep_timm.py`; this module writes its inputs, trains repro's side, and
//!   compares what both wrote.
//! - [`curves`]: repro's runs and a reference trainer's runs of one recipe (`metrics.parquet`
//!   each) drawn together, with a seed-spread verdict (`repro curves`).

pub mod command;
pub mod compare;
pub mod curves;
pub mod lockstep;

pub use compare::{compare_dir, Comparison, StepRow, TensorDiff};
pub use lockstep::{LockstepData, LockstepError, LockstepRecipe, LockstepRun};
