//! The `inline` executor: this process trains the runs one after another.

use super::Executor;
use crate::experiment::Experiment;
use crate::runner::{train_missing, PlannedRun, RunOptions, RunResult};

pub struct InlineExecutor {
    options: RunOptions,
}

impl InlineExecutor {
    pub fn new(options: RunOptions) -> Self {
        Self { options }
    }
}

impl Executor for InlineExecutor {
    fn train(&self, experiment: &Experiment) -> Vec<(PlannedRun, RunResult)> {
        train_missing(experiment, &self.options)
    }
}
