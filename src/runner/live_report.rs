//! The report re-rendered while runs train. After an evaluation of a run this process
//! trains (replica 0 only), the experiment's report is rendered again from the stored
//! results — exactly what `repro report` renders from another shell — at most once every
//! [`LiveReport::every`], and never sooner than [`COST_FACTOR`] times the last rendering
//! took, so that it costs at most a twentieth of the training time. Several processes
//! (local or Slurm jobs) may render one report at once: every file is replaced atomically.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::report::write_report;
use super::tables::row_results;
use crate::experiment::{Experiment, TableSpec};
use crate::watch::{EvalPoint, RunObserver};

/// Renderings are at least this many times their own duration apart.
pub const COST_FACTOR: u32 = 20;

/// Where and how often the report is rendered while runs train.
#[derive(Clone, Debug)]
pub struct LiveReport {
    /// The reports folder (`reports/`).
    pub reports: PathBuf,
    /// At most once every this long; zero: after every evaluation.
    pub every: Duration,
    /// The command shown on the page.
    pub command: String,
}

/// Renders one experiment's report after evaluations, as often as [`LiveReport`] allows.
pub(super) struct ReportRefresher<'a> {
    experiment: &'a Experiment,
    results: &'a Path,
    live: &'a LiveReport,
    timing: Mutex<Timing>,
}

#[derive(Default)]
struct Timing {
    last: Option<Instant>,
    cost: Duration,
}

impl<'a> ReportRefresher<'a> {
    pub(super) fn new(experiment: &'a Experiment, results: &'a Path, live: &'a LiveReport) -> Self {
        Self {
            experiment,
            results,
            live,
            timing: Mutex::new(Timing::default()),
        }
    }

    /// Renders the report now, whatever the last rendering was; a failure is a warning
    /// (training goes on).
    pub(super) fn refresh(&self) {
        let start = Instant::now();
        let tables = |t: &TableSpec, row: usize| row_results(self.experiment, self.results, t, row);
        let written = write_report(
            self.experiment,
            self.results,
            &self.live.reports,
            &self.live.command,
            &tables,
        );
        let mut timing = self.timing.lock().unwrap_or_else(|e| e.into_inner());
        timing.last = Some(Instant::now());
        timing.cost = start.elapsed();
        match written {
            Ok(page) => tracing::debug!(
                "report {} rendered in {:.3} s",
                page.display(),
                timing.cost.as_secs_f64()
            ),
            Err(e) => tracing::warn!("the report could not be rendered while training: {e}"),
        }
    }

    fn due(&self) -> bool {
        let timing = self.timing.lock().unwrap_or_else(|e| e.into_inner());
        let gap = match self.live.every.is_zero() {
            true => Duration::ZERO,
            false => self.live.every.max(timing.cost * COST_FACTOR),
        };
        timing.last.is_none_or(|t| t.elapsed() >= gap)
    }
}

impl RunObserver for ReportRefresher<'_> {
    fn evaluated(&self, _eval: &EvalPoint) {
        if self.due() {
            self.refresh();
        }
    }
}
