//! Running an experiment: the plan (which runs, cached or not), the datasets of each run,
//! training what is missing under run-folder locks (watched: TensorBoard events, the report
//! re-rendered after evaluations), table evaluations, claims, reports, and where runs stand.

mod claims;
mod datasets;
mod execute;
mod live_report;
mod outcome;
mod plan;
mod preflight;
mod repair;
mod report;
mod run_state;
mod status;
mod summary;
mod tables;

pub use datasets::{eval_dataset, prepare_datasets, train_holdout, RunData, HOLDOUT_PER_CLASS};
pub use execute::{selected_plan, train_missing, RunOptions};
pub use live_report::LiveReport;
pub use outcome::{RunFailure, RunResult};
pub use plan::{plan, progress_of, run_dir, training_macs, PlannedRun, RunProgress};
pub use preflight::preflight;
pub use repair::restart_runs;
pub use report::{check_report_folder, write_report};
pub use run_state::RunState;
pub use status::{experiment_status, ExperimentStatus};
pub use summary::{run_line, smoke_notice};
pub use tables::{evaluate_tables, row_results};
