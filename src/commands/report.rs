//! `repro report`: an experiment's figures, tables and HTML page rendered again from what is
//! stored, without training or evaluating anything.

use std::path::{Path, PathBuf};

use super::outcome::CommandError;
use crate::experiment::{Experiment, TableSpec};
use crate::runner::{check_report_folder, row_results, write_report};

/// Renders the report of `experiment` from `results` under `reports`; returns its index page.
pub fn render_report(
    experiment: &Experiment,
    results: &Path,
    reports: &Path,
    command_line: &str,
) -> Result<PathBuf, CommandError> {
    check_report_folder(experiment, reports).map_err(CommandError::bad_input)?;
    let tables = |t: &TableSpec, row: usize| row_results(experiment, results, t, row);
    write_report(experiment, results, reports, command_line, &tables).map_err(CommandError::failed)
}
