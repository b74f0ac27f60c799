//! Renders one experiment's report folder from a [`ReportInput`]: figures (PNG + SVG),
//! tables (Markdown + HTML) and `index.html`, every file written atomically.

use std::path::{Path, PathBuf};

use super::curves::{error_chart, shows_paper};
use super::error::ReportError;
use super::figure_file::{write_figure, FigureFiles};
use super::html::{file_stem, page};
use super::input::ReportInput;
use super::page::experiment_page;
use super::paper::{paper_curves, paper_table_values};
use super::run_plots::{lr_chart, throughput_chart};
use super::runs_section::{LR_STEM, THROUGHPUT_STEM};
use super::tables::{table_cells, to_html, to_markdown};
use crate::store::atomic;

/// The files of a rendered experiment report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedReport {
    /// `<out_dir>/index.html`.
    pub index_html: PathBuf,
    /// Every file written, `index.html` last.
    pub files: Vec<PathBuf>,
}

fn create_dir(path: &Path) -> Result<(), ReportError> {
    std::fs::create_dir_all(path).map_err(|source| ReportError::CreateDir {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes the report of `input` into `out_dir` (usually `reports/<experiment>/`):
/// `figures/<id>.png|svg`, `figures/learning-rate.png|svg`, `figures/throughput.png|svg`,
/// `tables/<id>.md|html` and `index.html`. Trains nothing; reads nothing but `input`.
pub fn render_experiment(
    input: &ReportInput,
    out_dir: &Path,
) -> Result<RenderedReport, ReportError> {
    let figures_dir = out_dir.join("figures");
    let tables_dir = out_dir.join("tables");
    create_dir(&figures_dir)?;
    create_dir(&tables_dir)?;
    let mut files = Vec::new();
    let mut add = |f: FigureFiles| files.extend([f.png, f.svg]);

    let paper = if input
        .figures
        .iter()
        .any(|f| shows_paper(f, input.paper_scale))
    {
        paper_curves()
    } else {
        Vec::new()
    };
    for figure in &input.figures {
        let chart = error_chart(figure, &paper, shows_paper(figure, input.paper_scale));
        add(write_figure(&figures_dir, &file_stem(&figure.id), &chart)?);
    }
    if !input.runs.is_empty() {
        add(write_figure(&figures_dir, LR_STEM, &lr_chart(&input.runs))?);
        add(write_figure(
            &figures_dir,
            THROUGHPUT_STEM,
            &throughput_chart(&input.runs),
        )?);
    }

    let paper_tables = paper_table_values();
    let mut fragments = Vec::new();
    for table in &input.tables {
        let stem = file_stem(&table.id);
        let cells = table_cells(table, &paper_tables);
        let fragment = to_html(&cells);
        let md = tables_dir.join(format!("{stem}.md"));
        atomic::write_bytes(&md, to_markdown(&cells).as_bytes())?;
        let html = tables_dir.join(format!("{stem}.html"));
        let standalone = format!(
            "<p class=\"meta\"><a href=\"../index.html\">Back to the report</a></p>\n{fragment}"
        );
        atomic::write_bytes(&html, page(&table.title, &standalone).as_bytes())?;
        files.extend([md, html]);
        fragments.push((stem, fragment));
    }

    let index_html = out_dir.join("index.html");
    atomic::write_bytes(&index_html, experiment_page(input, &fragments).as_bytes())?;
    files.push(index_html.clone());
    remove_stale(&[&figures_dir, &tables_dir], &files)?;
    Ok(RenderedReport { index_html, files })
}

/// Deletes what an earlier rendering left in the report's own folders and this one did
/// not write (a figure or run since removed from the experiment), so that a committed
/// report holds only what its page shows. Another process's file being written (several
/// jobs render one report while their runs train) is left alone.
fn remove_stale(dirs: &[&Path], written: &[PathBuf]) -> Result<(), ReportError> {
    for dir in dirs {
        let entries = std::fs::read_dir(dir).map_err(|source| ReportError::Clean {
            path: dir.to_path_buf(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() && !written.contains(&path) && !in_flight(&path) {
                std::fs::remove_file(&path).map_err(|source| ReportError::Clean {
                    path: path.clone(),
                    source,
                })?;
            }
        }
    }
    Ok(())
}

/// A temporary file of an atomic write that may still be in progress: a minute old at most
/// (one left by a killed process is older, and removed).
fn in_flight(path: &Path) -> bool {
    let temporary = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(atomic::TEMP_PREFIX));
    let young = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_none_or(|age| age.as_secs() < 60);
    temporary && young
}
