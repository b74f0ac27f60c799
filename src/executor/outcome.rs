//! What a run folder says after another process (a local job, a Slurm job) trained it.

use std::path::Path;

use crate::runner::{PlannedRun, RunFailure, RunProgress, RunResult};
use crate::store::provenance::{Provenance, RunStatus};
use crate::store::RunDir;

/// The run's state once the process `by` ("Slurm job 1234") ended as `ended` ("exit code
/// 1", "CANCELLED"), given the `progress` its folder shows now: finished or diverged, else a
/// failure that quotes the job's log. `bad_input`: the job said its input was bad (exit
/// code 2).
pub fn folder_outcome(
    planned: &PlannedRun,
    progress: RunProgress,
    by: &str,
    ended: &str,
    log: &Path,
    bad_input: bool,
) -> RunResult {
    if matches!(progress, RunProgress::Done | RunProgress::Diverged { .. }) {
        return RunResult::Delegated {
            progress,
            by: by.to_string(),
        };
    }
    let recorded = match Provenance::read(&RunDir::new(&planned.dir).provenance_json()) {
        Ok(Provenance {
            status: RunStatus::Failed { message },
            ..
        }) => format!(": {message}"),
        _ => String::new(),
    };
    let at = match progress {
        RunProgress::Partial { step } => format!(" (checkpoint at step {step})"),
        _ => String::new(),
    };
    let message = format!(
        "{by} ended ({ended}){at}{recorded}{}",
        log_tail(log, 8)
            .map(|t| format!("\n    last lines of {}:\n{t}", log.display()))
            .unwrap_or_default()
    );
    RunResult::Failed(match bad_input {
        true => RunFailure::bad_input(message),
        false => RunFailure::new(message),
    })
}

/// The last `n` non-empty lines of a log, indented, or `None` when it cannot be read.
pub fn log_tail(log: &Path, n: usize) -> Option<String> {
    let bytes = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return None;
    }
    Some(
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| format!("      {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}
