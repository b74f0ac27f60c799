//! `repro status`: where each run of some experiments stands, and the time they need.

use std::path::Path;
use std::time::SystemTime;

use crate::executor::job_state_lines;
use crate::experiment::Experiment;
use crate::runner::experiment_status;

/// The status of every run of `experiments` at `now`, one line each, and the time left per
/// experiment.
pub fn status_text(experiments: &[Experiment], results: &Path, now: SystemTime) -> String {
    let mut out = String::new();
    for e in experiments {
        out.push_str(&format!("{}\n", e.heading()));
        let status = experiment_status(e, results, now);
        let planned: Vec<_> = status.runs.iter().map(|(p, _)| p).collect();
        let jobs = job_state_lines(&planned);
        let width = status
            .runs
            .iter()
            .map(|(p, _)| p.run.name.len())
            .max()
            .unwrap_or(0);
        for ((planned, state), job) in status.runs.iter().zip(jobs) {
            let job = job.map(|j| format!("; {j}")).unwrap_or_default();
            out.push_str(&format!("  {:<width$}  {state}{job}\n", planned.run.name));
        }
        out.push_str(&format!("  {}\n", status.remaining));
    }
    out
}
