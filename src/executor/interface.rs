//! What every executor does, and the split of an experiment's runs into finished and missing.

use crate::experiment::Experiment;
use crate::runner::{PlannedRun, RunResult};

/// Trains the missing runs of an experiment.
pub trait Executor {
    /// Trains (or hands out) the selected runs that are not finished; returns each selected
    /// run with what happened to it. After a stop request no further run starts.
    /// Runs handed to a scheduler and not waited for (`--no-wait`) come back as
    /// [`RunResult::Queued`].
    fn train(&self, experiment: &Experiment) -> Vec<(PlannedRun, RunResult)>;
}

/// The selected runs of `experiment` split into the finished ones (reused as they are, with
/// their result) and those to train.
pub(crate) fn finished_and_missing(
    experiment: &Experiment,
    results: &std::path::Path,
    only: Option<&[String]>,
) -> (Vec<(PlannedRun, RunResult)>, Vec<PlannedRun>) {
    let mut finished = Vec::new();
    let mut missing = Vec::new();
    for planned in crate::runner::selected_plan(experiment, results, only) {
        match planned.progress {
            crate::runner::RunProgress::Done | crate::runner::RunProgress::Diverged { .. } => {
                let progress = planned.progress.clone();
                finished.push((planned, RunResult::Reused(progress)));
            }
            _ => missing.push(planned),
        }
    }
    (finished, missing)
}
