//! What happened to each run of an experiment, and why one could not be trained.

use super::plan::RunProgress;
use crate::train::RunOutcome;

/// What happened to one run.
#[derive(Clone, Debug, PartialEq)]
pub enum RunResult {
    Reused(RunProgress),
    Trained(RunOutcome),
    Failed(RunFailure),
    /// Trained by another process (`by`: "Slurm job 1234", "a local job on cuda:1"); its
    /// state as read from the run folder afterwards.
    Delegated {
        progress: RunProgress,
        by: String,
    },
    /// Handed to a scheduler and not waited for (`--no-wait`): `state` is `submitted`,
    /// `queued` or `running`.
    Queued {
        state: String,
        by: String,
    },
}

/// Why a run could not be trained.
#[derive(Clone, Debug, PartialEq)]
pub struct RunFailure {
    /// For users: what went wrong, naming the file or setting.
    pub message: String,
    /// Caused by the input (unreadable or missing data), not by the run itself.
    pub bad_input: bool,
}

impl RunFailure {
    pub fn new(message: impl ToString) -> Self {
        Self {
            message: message.to_string(),
            bad_input: false,
        }
    }

    pub fn bad_input(message: impl ToString) -> Self {
        Self {
            message: message.to_string(),
            bad_input: true,
        }
    }
}

impl RunResult {
    /// Whether the run was stopped by a signal (it resumes from its checkpoint).
    pub fn is_interrupted(&self) -> bool {
        matches!(self, RunResult::Trained(RunOutcome::Interrupted { .. }))
    }

    /// The failure this result counts as (failed or diverged), named for the user.
    pub fn failure(&self, experiment: &str, run: &str) -> Option<RunFailure> {
        match self {
            RunResult::Failed(f) => Some(RunFailure {
                message: format!("{experiment}: run `{run}`: {}", f.message),
                bad_input: f.bad_input,
            }),
            _ if self.is_failure() => Some(RunFailure::new(format!(
                "{experiment}: run `{run}` diverged"
            ))),
            _ => None,
        }
    }

    /// Whether the run counts against the exit status (failed or diverged).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            RunResult::Failed(_)
                | RunResult::Trained(RunOutcome::Diverged { .. })
                | RunResult::Reused(RunProgress::Diverged { .. })
                | RunResult::Delegated {
                    progress: RunProgress::Diverged { .. },
                    ..
                }
        )
    }
}
