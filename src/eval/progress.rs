//! Progress of an evaluation: a bar with crops/s and an ETA on a terminal, a log line at
//! most every ten seconds otherwise (pipes, CI, batch jobs), nothing in tests.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::store::clock::duration_text;

/// How often a non-terminal prints a line.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// Where progress goes.
pub(super) struct EvalProgress {
    label: String,
    total: u64,
    crops_per_image: u64,
    start: Instant,
    output: Output,
}

enum Output {
    Bar(ProgressBar),
    Lines { last: Option<Instant> },
    Quiet,
}

impl EvalProgress {
    /// A bar when stderr is a terminal and `show` is set, lines when it is not, else nothing.
    pub(super) fn new(label: String, total: u64, crops_per_image: u64, show: bool) -> Self {
        let output = match (show, std::io::stderr().is_terminal()) {
            (false, _) => Output::Quiet,
            (true, true) => {
                let bar = ProgressBar::new(total);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {pos}/{len} images {msg} (ETA {eta})",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(label.clone());
                Output::Bar(bar)
            }
            (true, false) => Output::Lines { last: None },
        };
        Self {
            label,
            total,
            crops_per_image,
            start: Instant::now(),
            output,
        }
    }

    /// `done` images of the total are scored (`skipped` of them left out as unreadable).
    pub(super) fn update(&mut self, done: u64, skipped: u64) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let crops_per_s = (done - skipped) as f64 * self.crops_per_image as f64 / elapsed.max(1e-9);
        let skipped_text = match skipped {
            0 => String::new(),
            n => format!(", {n} skipped"),
        };
        match &mut self.output {
            Output::Bar(bar) => {
                bar.set_position(done);
                bar.set_message(format!("{crops_per_s:.1} crops/s{skipped_text}"));
            }
            Output::Lines { last } => {
                let finished = done == self.total;
                if finished || last.is_none_or(|t| t.elapsed() >= LINE_EVERY) {
                    *last = Some(Instant::now());
                    let eta = match finished {
                        true => String::new(),
                        false => format!(
                            ", about {} left",
                            duration_text(
                                elapsed / done.max(1) as f64 * (self.total - done) as f64
                            )
                        ),
                    };
                    tracing::info!(
                        "{}: {done} of {} images, {crops_per_s:.1} crops/s{skipped_text}{eta}",
                        self.label,
                        self.total
                    );
                }
            }
            Output::Quiet => {}
        }
    }
}

impl Drop for EvalProgress {
    fn drop(&mut self) {
        if let Output::Bar(bar) = &self.output {
            bar.finish_and_clear();
        }
    }
}
