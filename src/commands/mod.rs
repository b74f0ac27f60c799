//! What each `repro` command does, as library functions: main.rs parses the arguments into
//! their requests, prints what they say and maps how they end to exit statuses.

mod outcome;
mod plan;
mod run;
mod status;

pub use outcome::{CommandError, ExitClass};
pub use plan::plan_text;
pub use run::{run_experiments, RunEnd, RunRequest};
pub use status::status_text;
