//! `repro status`: where each run of an experiment stands, read from its folder without
//! taking any lock — running (and by which process), stopped at a step, done, diverged or
//! failed, with its step rate, the time it needs to finish and its last evaluation — and
//! the time the experiment's unfinished runs need in all.

use std::path::Path;
use std::time::SystemTime;

use super::plan::{plan, training_macs, PlannedRun, RunProgress};
use super::run_state::{rate_text, RunState};
use super::summary::last_evaluated;
use crate::experiment::Experiment;
use crate::models::group_digits;
use crate::store::clock::duration_text;
use crate::store::metrics::{read_metrics, MetricsRow};
use crate::store::provenance::{Provenance, RunStatus};
use crate::store::RunDir;
use crate::watch::eta::seconds_for_work;

/// How runs not started are estimated.
const UNSTARTED: &str = "estimated from training MACs at the pace measured so far";

/// What `repro status` shows of one experiment.
pub struct ExperimentStatus {
    /// Each planned run with one plain line saying where it stands.
    pub runs: Vec<(PlannedRun, String)>,
    /// The time the unfinished runs need in all, as a line.
    pub remaining: String,
}

/// Reads where every run of `experiment` stands at `now`.
pub fn experiment_status(
    experiment: &Experiment,
    results: &Path,
    now: SystemTime,
) -> ExperimentStatus {
    let runs: Vec<(PlannedRun, Vec<MetricsRow>, RunState)> = plan(experiment, results)
        .into_iter()
        .map(|p| {
            let metrics = read_metrics(&RunDir::new(&p.dir).metrics_parquet()).unwrap_or_default();
            let state = RunState::read(&p, &metrics, now);
            (p, metrics, state)
        })
        .collect();
    // (MACs trained, training seconds) of every run that has recorded any.
    let measured: Vec<(f64, f64)> = runs
        .iter()
        .filter_map(|(p, _, s)| {
            let done = s.step? as f64 / s.total_steps? as f64;
            Some((training_macs(&p.run.config)? * done, s.train_s))
        })
        .filter(|&(macs, seconds)| macs > 0.0 && seconds > 0.0)
        .collect();
    let unstarted_s = |p: &PlannedRun| seconds_for_work(training_macs(&p.run.config)?, &measured);

    let mut known_s = 0.0;
    let (mut unfinished, mut unknown) = (0, 0);
    let lines = runs
        .into_iter()
        .map(|(p, metrics, state)| {
            let finished = matches!(p.progress, RunProgress::Done | RunProgress::Diverged { .. });
            unfinished += usize::from(!finished);
            let unstarted = unstarted_s(&p);
            let left = match (&state.estimate, state.step) {
                _ if finished => Some(0.0),
                (Some(e), _) => Some(e.remaining_s),
                (None, None) => unstarted,
                (None, Some(_)) => None,
            };
            match left {
                Some(s) => known_s += s,
                None => unknown += 1,
            }
            let line = state_line(&p, &metrics, &state, unstarted);
            (p, line)
        })
        .collect();
    let remaining =
        match unknown {
            _ if unfinished == 0 => "all runs: nothing left to train".to_string(),
            0 => format!(
            "all runs: about {} left, trained one after another (runs not started: {UNSTARTED})",
            duration_text(known_s)
        ),
            n => {
                format!(
            "all runs: at least {} left; {n} {} no pace to estimate from until {} evaluated",
            duration_text(known_s),
            if n == 1 { "run has" } else { "runs have" },
            if measured.is_empty() { "a run has" } else { "it has" }
        )
            }
        };
    ExperimentStatus {
        runs: lines,
        remaining,
    }
}

fn state_line(
    planned: &PlannedRun,
    metrics: &[MetricsRow],
    state: &RunState,
    unstarted_s: Option<f64>,
) -> String {
    let epochs = planned.run.config.train.epochs;
    let evaluated = last_evaluated(metrics)
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
        RunProgress::Partial { step } => format!(", checkpoint at step {}", group_digits(step)),
        _ => String::new(),
    };
    let pace = pace(state);
    if let Some(holder) = state.trainer.as_ref().filter(|_| state.is_training()) {
        return format!("training: {holder}{pace}{checkpoint}{evaluated}");
    }
    let failed = || match Provenance::read(&RunDir::new(&planned.dir).provenance_json()) {
        Ok(Provenance {
            status: RunStatus::Failed { message },
            ..
        }) => Some(format!("failed: {message}")),
        _ => None,
    };
    let progress = &planned.progress;
    let state_text = match progress {
        RunProgress::Diverged { .. } | RunProgress::Done => progress.to_string(),
        RunProgress::Partial { .. } => failed().unwrap_or_else(|| {
            format!("{progress}; `repro run` resumes it from its checkpoint{pace}")
        }),
        RunProgress::Missing => failed().unwrap_or_else(|| match unstarted_s {
            Some(s) => format!(
                "{progress}; about {} to train ({UNSTARTED})",
                duration_text(s)
            ),
            None => progress.to_string(),
        }),
    };
    format!("{state_text}{evaluated}")
}

/// `; step 340 of 1,200 (28 %), 5.10 steps/s, about 2 min 46 s left`, or as much of it as
/// is known.
fn pace(state: &RunState) -> String {
    let (Some(step), Some(e)) = (state.step, &state.estimate) else {
        return match state.step {
            Some(step) => format!(
                "; step {}, pace known after the first evaluation",
                group_digits(step)
            ),
            None => String::new(),
        };
    };
    let total = state.total_steps.unwrap_or(step).max(1);
    format!(
        "; step {} of {} ({:.0} %), {}, about {} left",
        group_digits(step),
        group_digits(total),
        100.0 * step as f64 / total as f64,
        rate_text(e.steps_per_s),
        duration_text(e.remaining_s)
    )
}
