//! Experiment files: the YAML schema (unknown keys rejected, errors with file:line:column),
//! includes, `${VAR}` substitution, profiles (`smoke`), `--set` overrides, and the resolution
//! of every run into a complete configuration whose hash names it.

mod error;
mod executor;
mod load;
pub mod schema;
pub mod selection;
pub mod sweep;
mod yaml;

pub use error::SpecError;
pub use load::{load_experiment, Experiment, LoadOptions, ReleasedRow, ResolvedRun};
pub use schema::*;

#[cfg(test)]
mod tests;
