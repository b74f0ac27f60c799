//! What each `repro` command does, as library functions: main.rs parses the arguments into
//! their requests, prints what they say and maps how they end to exit statuses.

mod eval;
mod models;
mod outcome;
mod plan;
mod report;
mod run;
mod status;

pub use eval::{evaluate_weights, EvalArgs, EvalOutcome, EvalSetArg, PadArg};
pub use models::{models_text, Format, ModelsArgs};
pub use outcome::{CommandError, ExitClass};
pub use plan::plan_text;
pub use report::render_report;
pub use run::{run_experiments, RunEnd, RunRequest};
pub use status::status_text;
