//! `repro status`: where each run of an experiment stands, read from its folder without
//! taking any lock — running (and by which process), stopped at a step, done, diverged or
//! failed, with its last evaluation.

use super::plan::{plan, PlannedRun};
use crate::spec::Experiment;
use crate::store::clock::duration_text;
use crate::store::metrics::read_metrics;
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
    let dir = RunDir::new(&planned.dir);
    let epochs = planned.run.config.train.epochs;
    let last = read_metrics(&dir.metrics_parquet())
        .ok()
        .and_then(|rows| rows.into_iter().rev().find(|r| r.top1_err.is_some()));
    let evaluated = last
        .as_ref()
        .map(|r| {
            format!(
                "; last evaluation at epoch {:.2} of {epochs}: top-1 error {:.2} % after {}",
                r.epoch,
                100.0 * r.top1_err.unwrap_or(f64::NAN),
                duration_text(r.wall_s)
            )
        })
        .unwrap_or_default();
    let provenance = Provenance::read(&dir.provenance_json())
        .ok()
        .map(|p| p.status);
    let checkpoint =
        crate::store::checkpoint::read_checkpoint_state(&dir.latest_checkpoint()).map(|s| s.step);
    if let Some(holder) = recorded_holder(&planned.dir).filter(|h| h.alive() != Some(false)) {
        let step = checkpoint
            .map(|s| format!(", checkpoint at step {s}"))
            .unwrap_or_default();
        return format!("running: {holder}{step}{evaluated}");
    }
    let state = match (dir.is_done(), provenance, checkpoint) {
        (true, Some(RunStatus::Diverged { step }), _) => format!("diverged at step {step}"),
        (true, _, _) => "done".to_string(),
        (false, Some(RunStatus::Failed { message }), _) => format!("failed: {message}"),
        (false, _, Some(step)) => {
            format!("stopped at step {step}; `repro run` resumes it from its checkpoint")
        }
        (false, _, None) => "not started".to_string(),
    };
    format!("{state}{evaluated}")
}
