//! A run's TensorBoard events, written from what the trainer reports: one new events file
//! per training session in the run folder, so that `tensorboard --logdir results/runs`
//! shows each run under its folder's name (`inception_v4-36374f4f`).
//!
//! - At the start of a session: `SessionLog.START` at the step after the checkpoint it
//!   resumes from (TensorBoard then drops what an earlier session wrote past that
//!   checkpoint, which this session trains again), and the resolved configuration as text.
//! - During training, at most [`POINTS_PER_EVALUATION`] points per evaluation interval and
//!   at most one every [`MIN_SECONDS_BETWEEN_POINTS`]: `train/loss` and `train/grad_norm`
//!   (means over the steps since the previous point) and `train/learning_rate`.
//! - At every evaluation: `eval/top1_error`, `eval/top5_error` (fractions, as in
//!   `metrics.parquet`), `train/images_per_s` (training throughput since the previous
//!   evaluation), `train/epoch`, the zero-activation share before the pooling and the dead
//!   channels when measured, and the diagnostics when `train.diagnostics` is on; then the
//!   file is synced.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::events::{scalars_event, session_start_event, text_event, wall_time_now, EventFile};
use super::{EvalPoint, RunObserver, RunStart, StepPoint};

/// Training points per evaluation interval, at most.
pub const POINTS_PER_EVALUATION: u64 = 10;
/// Seconds between two training points, at least.
pub const MIN_SECONDS_BETWEEN_POINTS: f64 = 1.0;

/// Writes one run's events file (see the module documentation).
pub struct TensorBoardSink {
    inner: Mutex<Inner>,
}

struct Inner {
    /// `None` once a write failed (said once; training goes on without it).
    file: Option<EventFile>,
    /// The resolved configuration, as Markdown.
    config: String,
    /// Steps between training points, at least.
    every_steps: u64,
    /// The step of the last training point.
    last_point_step: u64,
    last_point_at: Instant,
    pending: Pending,
}

/// Sums over the steps since the last training point.
#[derive(Default)]
struct Pending {
    steps: u64,
    loss: f64,
    grad_norm: f64,
}

impl TensorBoardSink {
    /// A new events file in the run folder `dir`; `config_yaml` is the run's resolved
    /// configuration, shown as text.
    pub fn create(dir: &Path, run_name: &str, config_yaml: &str) -> std::io::Result<Self> {
        let file = EventFile::create(dir)?;
        let indented: String = config_yaml.lines().map(|l| format!("    {l}\n")).collect();
        let config =
            format!("Run `{run_name}`, resolved configuration (config.yaml):\n\n{indented}");
        Ok(Self {
            inner: Mutex::new(Inner {
                file: Some(file),
                config,
                every_steps: 1,
                last_point_step: 0,
                last_point_at: Instant::now(),
                pending: Pending::default(),
            }),
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn write(&mut self, event: &[u8]) {
        let Some(file) = &mut self.file else { return };
        if let Err(e) = file.write(event) {
            tracing::warn!(
                "writing {}: {e}; this run's TensorBoard events stop here (training goes on)",
                file.path().display()
            );
            self.file = None;
        }
    }

    fn sync(&self) {
        let Some(file) = &self.file else { return };
        if let Err(e) = file.sync() {
            tracing::warn!("syncing {}: {e}", file.path().display());
        }
    }

    fn point_due(&self, step: u64) -> bool {
        step >= self.last_point_step + self.every_steps
            && self.last_point_at.elapsed() >= Duration::from_secs_f64(MIN_SECONDS_BETWEEN_POINTS)
    }
}

impl RunObserver for TensorBoardSink {
    fn started(&self, start: &RunStart) {
        let mut inner = self.inner();
        inner.every_steps = (start.eval_every_steps / POINTS_PER_EVALUATION).max(1);
        inner.last_point_step = start.step;
        inner.last_point_at = Instant::now();
        inner.pending = Pending::default();
        let now = wall_time_now();
        inner.write(&session_start_event(now, start.step + 1));
        let config = std::mem::take(&mut inner.config);
        inner.write(&text_event(now, start.step, "config", &config));
        inner.config = config;
    }

    fn stepped(&self, step: &StepPoint) {
        let mut inner = self.inner();
        inner.pending.steps += 1;
        inner.pending.loss += step.loss;
        inner.pending.grad_norm += step.grad_norm;
        if !inner.point_due(step.step) {
            return;
        }
        let n = inner.pending.steps as f64;
        let values = [
            ("train/loss", inner.pending.loss / n),
            ("train/grad_norm", inner.pending.grad_norm / n),
            ("train/learning_rate", step.lr),
        ];
        inner.write(&scalars_event(wall_time_now(), step.step, &values));
        inner.pending = Pending::default();
        inner.last_point_step = step.step;
        inner.last_point_at = Instant::now();
    }

    fn evaluated(&self, eval: &EvalPoint) {
        let row = eval.row;
        let mut values: Vec<(&str, f64)> = vec![
            ("train/epoch", row.epoch),
            ("train/images_per_s", row.images_per_s),
        ];
        let optional = [
            ("eval/top1_error", row.top1_err),
            ("eval/top5_error", row.top5_err),
            ("eval/pre_pool_zero_share", row.pre_pool_zero_frac),
            (
                "eval/pre_pool_dead_channel_share",
                row.pre_pool_dead_channel_frac,
            ),
        ];
        values.extend(optional.iter().filter_map(|(tag, v)| Some((*tag, (*v)?))));
        if let Some(d) = eval.diagnostics {
            values.extend([
                ("diagnostics/train_batches_top1_error", d.train_top1_err),
                ("diagnostics/live_top1_error", d.raw_top1_err),
                (
                    "diagnostics/live_batch_stats_top1_error",
                    d.raw_batchstats_top1_err,
                ),
                ("diagnostics/grad_norm", d.grad_norm),
            ]);
        }
        let mut inner = self.inner();
        inner.write(&scalars_event(wall_time_now(), row.step, &values));
        inner.sync();
    }
}
