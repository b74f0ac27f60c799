//! `repro status`: where each run of an experiment stands, read from its folder without
//! taking any lock — running (and by which process), stopped at a step, done, diverged or
//! failed, with its last evaluation.

use super::plan::{plan, PlannedRun, RunProgress};
use super::summary::last_evaluation;
use crate::spec::Experiment;
use crate::store::clock::duration_text;
use crate::store::provenance::{Provenance, RunStatus};
use crate::store::{recorded_holder, RunDir};
use std::path::Path;

/// Each planned run of `experiment` with one plain line saying where it stands.
pub fn run_states(experiment: &Experiment, results: &Path) -> Vec<(PlannedRun, String)> {
    plan(experiment, results)
        .into_iter()
        .map(|p| {
            let line = state_line(&p);
            (p, line)
        })
        .collect()
}

fn state_line(planned: &PlannedRun) -> String {
    let epochs = planned.run.config.train.epochs;
    let evaluated = last_evaluation(planned)
        .map(|r| {
            format!(
                "; last evaluation at epoch {:.2} of {epochs}: top-1 error {:.2} % after {}",
                r.epoch,
                100.0 * r.top1_err.unwrap_or(f64::NAN),
                duration_text(r.wall_s)
            )
        })
        .unwrap_or_default();
    let checkpoint = match planned.progress {
        RunProgress::Partial { step } => format!(", checkpoint at step {step}"),
        _ => String::new(),
    };
    if let Some(holder) = recorded_holder(&planned.dir).filter(|h| h.alive() != Some(false)) {
        return format!("running: {holder}{checkpoint}{evaluated}");
    }
    let failed = || match Provenance::read(&RunDir::new(&planned.dir).provenance_json()) {
        Ok(Provenance {
            status: RunStatus::Failed { message },
            ..
        }) => Some(format!("failed: {message}")),
        _ => None,
    };
    let state = match planned.progress {
        RunProgress::Diverged { step } => format!("diverged at step {step}"),
        RunProgress::Done => "done".to_string(),
        RunProgress::Partial { step } => failed().unwrap_or_else(|| {
            format!("stopped at step {step}; `repro run` resumes it from its checkpoint")
        }),
        RunProgress::Missing => failed().unwrap_or_else(|| "not started".to_string()),
    };
    format!("{state}{evaluated}")
}
