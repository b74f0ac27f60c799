//! How a run stands now, read from its folder without taking its lock: whether a process
//! trains it, the step it has recorded of how many, its step rate and the time it needs to
//! finish. `repro status` prints it; the report marks unfinished runs with it.

use std::path::Path;
use std::time::SystemTime;

use super::plan::{PlannedRun, RunProgress};
use crate::experiment::RunConfig;
use crate::models::group_digits;
use crate::store::lock::LOCK_FILE;
use crate::store::metrics::MetricsRow;
use crate::store::{recorded_holder, LockHolder, RunDir};
use crate::watch::{estimate, Estimate, ProgressPoint};

/// A run as it stands when read.
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    pub progress: RunProgress,
    /// The process training it now (alive on this host, or on another host).
    pub trainer: Option<LockHolder>,
    /// The newest step recorded by an evaluation or a checkpoint.
    pub step: Option<u64>,
    /// Steps of the whole run, once an evaluation or a checkpoint past the first epoch
    /// gives the steps per epoch.
    pub total_steps: Option<u64>,
    /// Its rate and time left (`None` before anything is recorded).
    pub estimate: Option<Estimate>,
    /// Training seconds recorded so far.
    pub train_s: f64,
}

impl RunState {
    /// Reads the run's folder; `metrics` are its rows (read by the caller, who needs them
    /// anyway), `now` the time it is read at.
    pub fn read(planned: &PlannedRun, metrics: &[MetricsRow], now: SystemTime) -> Self {
        let dir = RunDir::new(&planned.dir);
        let trainer = recorded_holder(&planned.dir).filter(|h| h.alive() != Some(false));
        let checkpoint = match planned.progress {
            RunProgress::Done | RunProgress::Diverged { .. } => None,
            _ => dir.checkpoint_store().newest(),
        };
        let mut points: Vec<(ProgressPoint, Option<SystemTime>)> = metrics
            .iter()
            .map(|r| (point(r.step, r.wall_s), None))
            .collect();
        if let Some(last) = points.last_mut() {
            last.1 = modified(&dir.metrics_parquet());
        }
        if let Some((state_file, state)) = &checkpoint {
            points.push((point(state.step, state.wall_s), modified(state_file)));
        }
        points.sort_by_key(|(p, _)| p.step);
        let newest = points.last().copied();
        let steps_per_epoch = metrics
            .iter()
            .rev()
            .find(|r| r.epoch > 0.0)
            .map(|r| (r.step as f64 / r.epoch).round() as u64)
            .or_else(|| {
                let (_, s) = checkpoint.as_ref()?;
                (s.epoch > 0).then(|| (s.step - s.batch_in_epoch) / s.epoch)
            })
            .filter(|&n| n > 0);
        let total_steps = steps_per_epoch.map(|n| total_steps(&planned.run.config, n));
        // Progress since the newest point counts from when it was recorded, or from when
        // this session took the run, whichever is later.
        let since_last_s = trainer.as_ref().and(newest).map(|(_, at)| {
            let started = modified(&planned.dir.join(LOCK_FILE));
            let from = at.max(started).unwrap_or(now);
            now.duration_since(from).map_or(0.0, |d| d.as_secs_f64())
        });
        let list: Vec<ProgressPoint> = points.iter().map(|(p, _)| *p).collect();
        Self {
            progress: planned.progress.clone(),
            step: newest.map(|(p, _)| p.step),
            total_steps,
            estimate: total_steps.and_then(|total| estimate(&list, total, since_last_s)),
            train_s: newest.map_or(0.0, |(p, _)| p.train_s),
            trainer,
        }
    }

    /// Whether a process trains it now.
    pub fn is_training(&self) -> bool {
        self.trainer.is_some()
            && matches!(
                self.progress,
                RunProgress::Partial { .. } | RunProgress::Missing
            )
    }

    /// `training, step 340 of 1,200`, `interrupted at step 340 of 1,200`, `done`,
    /// `diverged at step 12`, `not started`: for legends, tables and status lines.
    pub fn words(&self) -> String {
        let at = || match (self.step, self.total_steps) {
            (Some(step), Some(total)) => {
                format!("step {} of {}", group_digits(step), group_digits(total))
            }
            (Some(step), None) => format!("step {}", group_digits(step)),
            (None, _) => "no step recorded yet".to_string(),
        };
        match &self.progress {
            p @ (RunProgress::Done | RunProgress::Diverged { .. }) => p.to_string(),
            _ if self.is_training() => format!("training, {}", at()),
            RunProgress::Partial { .. } => format!("interrupted at {}", at()),
            RunProgress::Missing if self.step.is_some() => format!("interrupted at {}", at()),
            p @ RunProgress::Missing => p.to_string(),
        }
    }
}

/// The steps of a run of `steps_per_epoch`, as the trainer counts them.
fn total_steps(config: &RunConfig, steps_per_epoch: u64) -> u64 {
    (config.train.epochs * steps_per_epoch as f64)
        .round()
        .max(1.0) as u64
}

fn point(step: u64, train_s: f64) -> ProgressPoint {
    ProgressPoint { step, train_s }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// `5.10 steps/s`, `0.125 steps/s`, `48.2 steps/s`.
pub fn rate_text(steps_per_s: f64) -> String {
    match steps_per_s {
        r if r >= 10.0 => format!("{r:.1} steps/s"),
        r if r >= 1.0 => format!("{r:.2} steps/s"),
        r => format!("{r:.3} steps/s"),
    }
}
