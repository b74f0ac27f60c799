//! Running an experiment: the plan (which runs, cached or not), the datasets of each run,
//! training what is missing under run-folder locks.

mod datasets;
mod execute;
mod plan;
mod report;

pub use datasets::{prepare_datasets, RunData};
pub use execute::{train_missing, RunOptions, RunResult};
pub use plan::{plan, progress_of, run_dir, PlannedRun, RunProgress};
pub use report::write_report;
