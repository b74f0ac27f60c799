//! What the trainer tells whoever watches a run: its start, each step, each evaluation.

use crate::store::diagnostics::DiagnosticsRow;
use crate::store::metrics::MetricsRow;

/// Where a run starts or resumes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunStart {
    /// Steps already taken (0 for a new run; the checkpoint's step when resuming).
    pub step: u64,
    /// Steps of the whole run.
    pub total_steps: u64,
    /// Steps between evaluations.
    pub eval_every_steps: u64,
}

/// One optimizer step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPoint {
    /// Steps taken, this one included.
    pub step: u64,
    /// The fractional epoch reached.
    pub epoch: f64,
    /// The step's training loss.
    pub loss: f64,
    /// Its learning rate.
    pub lr: f64,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
}

/// An evaluation, as stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalPoint<'a> {
    /// The row written to `metrics.parquet`.
    pub row: &'a MetricsRow,
    /// The row written to `diagnostics.parquet` (`train.diagnostics` only).
    pub diagnostics: Option<&'a DiagnosticsRow>,
}

/// Told how a run progresses. Called on replica 0 only, from the training loop: every
/// method must return quickly and must not fail the run (an observer that cannot do its
/// job says so and carries on without it).
pub trait RunObserver {
    /// Training starts, or resumes at `start.step`.
    fn started(&self, _start: &RunStart) {}
    /// A step was taken (called after every step: act at a bounded rate).
    fn stepped(&self, _step: &StepPoint) {}
    /// An evaluation was written to the run's metrics.
    fn evaluated(&self, _eval: &EvalPoint) {}
}

/// Watches nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unwatched;

impl RunObserver for Unwatched {}

/// Several observers, each told everything, in order.
#[derive(Default)]
pub struct Observers<'a>(pub Vec<&'a dyn RunObserver>);

impl RunObserver for Observers<'_> {
    fn started(&self, start: &RunStart) {
        self.0.iter().for_each(|o| o.started(start));
    }

    fn stepped(&self, step: &StepPoint) {
        self.0.iter().for_each(|o| o.stepped(step));
    }

    fn evaluated(&self, eval: &EvalPoint) {
        self.0.iter().for_each(|o| o.evaluated(eval));
    }
}
