//! Reports: the paper's Figures 21–26 and Tables 2–5 reproduced beside the originals, as
//! PNG, SVG, Markdown and static HTML that opens from disk without a server or network.
//!
//! The runner fills the plain structs of [`input`] from stored results and calls
//! [`render_experiment`] per experiment and [`render_index`] once; nothing here trains or
//! reads results itself. Figures are drawn with plotters using an embedded font (DejaVu
//! Sans), so they render the same on machines without system fonts.
//!
//! - [`input`]: what a report is made of.
//! - [`paper`]: the paper's digitised curves and table values, compiled in.
//! - [`claims`]: verdicts on the paper's claims from the data.
//! - [`render_experiment`], [`render_index`]: the files.

pub mod claims;
pub mod comparison;
pub mod input;
pub mod paper;

mod chart;
mod curves;
mod dash;
mod error;
mod figure_file;
mod html;
mod index;
mod page;
mod render;
mod run_plots;
mod runs_section;
pub(crate) mod stats;
mod style;
mod tables;
#[cfg(test)]
mod tests;

pub use claims::{
    ensembles_lower_error, more_crops_lower_error, residual_scaling_prevents_death,
    residual_speeds_up_training, size_over_residual, EnsembleRow, NetworkRuns, TableErrors,
};
pub use error::ReportError;
pub use index::render_index;
pub use input::{
    Claim, EvalRecord, FigureInput, IndexEntry, Metric, ReportInput, RunInfo, Series, TableInput,
    TableRow, Verdict,
};
pub use paper::{paper_curves, paper_table_values, PaperPoint, PaperTableValue, PaperTables};
pub use render::{render_experiment, RenderedReport};
