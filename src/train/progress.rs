//! Progress of a training run: a bar on a terminal, plain log lines otherwise (CI, pipes).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::store::metrics::MetricsRow;

/// Where progress goes.
pub struct Progress {
    label: String,
    bar: Mutex<Option<ProgressBar>>,
    mode: Mode,
    last_line: Mutex<Option<Instant>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bar,
    Lines,
    Quiet,
}

impl Progress {
    /// A bar when stderr is a terminal, log lines otherwise.
    pub fn auto(label: impl Into<String>) -> Self {
        let mode = if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        };
        Self::with_mode(label, mode)
    }

    /// Nothing at all (tests).
    pub fn quiet() -> Self {
        Self::with_mode("", Mode::Quiet)
    }

    fn with_mode(label: impl Into<String>, mode: Mode) -> Self {
        Self {
            label: label.into(),
            bar: Mutex::new(None),
            mode,
            last_line: Mutex::new(None),
        }
    }

    pub(crate) fn start(&self, total_steps: u64, done: u64) {
        match self.mode {
            Mode::Bar => {
                let bar = ProgressBar::new(total_steps).with_position(done);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {pos}/{len} steps {msg} ({eta})",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(self.label.clone());
                *self.bar.lock().expect("progress lock") = Some(bar);
            }
            Mode::Lines => tracing::info!("{}: training steps {done}..{total_steps}", self.label),
            Mode::Quiet => {}
        }
    }

    pub(crate) fn step(&self, step: u64, epoch: f64, loss: f64, lr: f64) {
        match self.mode {
            Mode::Bar => {
                if let Some(bar) = self.bar.lock().expect("progress lock").as_ref() {
                    bar.set_position(step);
                    bar.set_message(format!("epoch {epoch:.2} loss {loss:.4} lr {lr:.2e}"));
                }
            }
            Mode::Lines => {
                // At most one line every 10 seconds.
                let mut last = self.last_line.lock().expect("progress lock");
                if last.is_none_or(|t| t.elapsed().as_secs() >= 10) {
                    *last = Some(Instant::now());
                    tracing::info!(
                        "{}: step {step} epoch {epoch:.2} loss {loss:.4} lr {lr:.3e}",
                        self.label
                    );
                }
            }
            Mode::Quiet => {}
        }
    }

    pub(crate) fn eval(&self, row: &MetricsRow) {
        let msg = format!(
            "{}: epoch {:.2} step {} train loss {:.4} top-1 {:.2}% top-5 {:.2}% ({:.1} img/s)",
            self.label,
            row.epoch,
            row.step,
            row.train_loss,
            100.0 * row.top1_err.unwrap_or(f64::NAN),
            100.0 * row.top5_err.unwrap_or(f64::NAN),
            row.images_per_s
        );
        match self.mode {
            Mode::Bar => match self.bar.lock().expect("progress lock").as_ref() {
                Some(bar) => bar.println(msg),
                None => eprintln!("{msg}"),
            },
            Mode::Lines => tracing::info!("{msg}"),
            Mode::Quiet => {}
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = self.bar.lock().expect("progress lock").take() {
            bar.finish_and_clear();
        }
    }
}
