//! What `repro run` tells its user: one plain line per run, and a note when the numbers come
//! from generated smoke data and mean nothing about the networks.

use super::outcome::RunResult;
use super::plan::{PlannedRun, RunProgress};
use crate::experiment::Experiment;
use crate::store::clock::duration_text;
use crate::store::metrics::{read_metrics, MetricsRow};
use crate::store::RunDir;
use crate::train::RunOutcome;

/// `trained: 16 steps in 4.1 s, top-1 error 75.00 %, top-5 error 0.00 % on 12 images`, then the
/// run folder; for a failed run, what went wrong.
pub fn run_line(planned: &PlannedRun, result: &RunResult) -> String {
    let folder = planned.dir.display();
    let last = last_evaluation(planned);
    let what = match result {
        RunResult::Failed(f) => return format!("failed: {}", f.message),
        RunResult::Trained(RunOutcome::Finished { skipped_images, .. }) => {
            let skipped = match skipped_images.len() {
                0 => String::new(),
                n => format!(" ({n} unreadable images skipped, listed in provenance.json)"),
            };
            format!("trained: {}{skipped}", steps_and_errors(last.as_ref()))
        }
        RunResult::Reused(RunProgress::Done) => {
            format!("already trained: {}", steps_and_errors(last.as_ref()))
        }
        RunResult::Trained(RunOutcome::Diverged { step, loss }) => format!(
            "{} (loss {loss}); kept as it is for the figures",
            RunProgress::Diverged { step: *step }
        ),
        RunResult::Reused(progress @ RunProgress::Diverged { .. }) => {
            format!("{progress} in an earlier run; kept as it is for the figures")
        }
        RunResult::Trained(RunOutcome::Interrupted { step }) => format!(
            "{}; checkpoint saved, the same command resumes it",
            RunProgress::Partial { step: *step }
        ),
        RunResult::Trained(RunOutcome::Stopped { step }) => format!(
            "{} without a checkpoint",
            RunProgress::Partial { step: *step }
        ),
        RunResult::Reused(progress) => progress.to_string(),
        RunResult::Delegated { progress, by } => match progress {
            RunProgress::Done => format!("trained by {by}: {}", steps_and_errors(last.as_ref())),
            RunProgress::Diverged { .. } => {
                format!("{progress} ({by}); kept as it is for the figures")
            }
            RunProgress::Partial { .. } => {
                format!("{progress} ({by}); checkpoint saved, the same command resumes it")
            }
            RunProgress::Missing => format!("{progress} ({by})"),
        },
        RunResult::Queued { state, by } => format!("{state}: {by}"),
    };
    format!("{what}; {folder}")
}

/// `16 steps in 4.1 s, top-1 error 75.00 %, top-5 error 0.00 % on 12 images`.
fn steps_and_errors(last: Option<&MetricsRow>) -> String {
    let Some(row) = last else {
        return "(no evaluation recorded)".to_string();
    };
    let errors = match (row.top1_err, row.top5_err) {
        (Some(top1), Some(top5)) => format!(
            ", top-1 error {:.2} %, top-5 error {:.2} % on {} images",
            100.0 * top1,
            100.0 * top5,
            row.eval_images
        ),
        _ => String::new(),
    };
    format!(
        "{} steps in {}{errors}",
        row.step,
        duration_text(row.wall_s)
    )
}

/// The last evaluated row of the run's metrics, if any.
pub(super) fn last_evaluation(planned: &PlannedRun) -> Option<MetricsRow> {
    let rows = read_metrics(&RunDir::new(&planned.dir).metrics_parquet()).ok()?;
    last_evaluated(&rows).cloned()
}

/// The last row of `rows` with an evaluation.
pub(super) fn last_evaluated(rows: &[MetricsRow]) -> Option<&MetricsRow> {
    rows.iter().rev().find(|r| r.top1_err.is_some())
}

/// The note shown under the runs and in the report when any run trains on generated data.
pub fn smoke_notice(experiment: &Experiment) -> Option<String> {
    let data = experiment
        .runs
        .values()
        .map(|r| &r.config.data)
        .find(|d| d.synthetic.is_some())?;
    let synthetic = data.synthetic.as_ref()?;
    let train_per_class = data
        .train_images_per_class
        .map_or(synthetic.train_per_class, |n| {
            n.min(synthetic.train_per_class)
        });
    let classes = synthetic.classes;
    let top5 = match classes {
        0..=5 => format!(
            ", and top-5 error is 0 % whenever there are 5 classes or fewer (here {classes})"
        ),
        _ => String::new(),
    };
    Some(format!(
        "Smoke data: these runs trained on generated images ({classes} classes, {} training and {} \
         validation images per class) for a few steps. The numbers show that the pipeline runs \
         end to end, not what the networks learn: chance is {:.0} % top-1 error{top5}.",
        train_per_class,
        synthetic.val_per_class,
        100.0 * (1.0 - 1.0 / classes.max(1) as f64)
    ))
}
