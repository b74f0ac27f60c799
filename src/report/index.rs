//! The top-level `reports/index.html`, linking every experiment's report.

use std::path::{Path, PathBuf};

use super::error::ReportError;
use super::html::{escape, page, url_segment};
use super::input::IndexEntry;
use super::page::verdict_badge;
use crate::store::atomic;

/// Writes `<reports_root>/index.html` listing `experiments` in order; an experiment whose
/// `<experiment>/index.html` does not exist yet is listed without a link. Returns the path.
pub fn render_index(
    reports_root: &Path,
    experiments: &[IndexEntry],
) -> Result<PathBuf, ReportError> {
    std::fs::create_dir_all(reports_root).map_err(|source| ReportError::CreateDir {
        path: reports_root.to_path_buf(),
        source,
    })?;
    let mut body = String::from(
        "<h1>Reproduction reports</h1>\n<p>Szegedy, Ioffe, Vanhoucke, Alemi: <i>Inception-v4, \
         Inception-ResNet and the Impact of Residual Connections on Learning</i> (2016, \
         arXiv 1602.07261), reproduced experiment by experiment.</p>\n",
    );
    if experiments.is_empty() {
        body.push_str("<p>No experiment has been reported yet.</p>\n");
    } else {
        body.push_str(
            "<table>\n<tr><th>Experiment</th><th>What it does</th><th>Claims tested</th>\
             <th>Generated</th></tr>\n",
        );
        for entry in experiments {
            body.push_str(&entry_row(reports_root, entry));
        }
        body.push_str("</table>\n");
    }
    let path = reports_root.join("index.html");
    atomic::write_bytes(&path, page("Reproduction reports", &body).as_bytes())?;
    Ok(path)
}

fn entry_row(reports_root: &Path, entry: &IndexEntry) -> String {
    let title = escape(&entry.title);
    let name = escape(&entry.experiment);
    let link = if reports_root
        .join(&entry.experiment)
        .join("index.html")
        .is_file()
    {
        format!(
            "<a href=\"{}/index.html\">{title}</a><br><code>{name}</code>",
            url_segment(&entry.experiment)
        )
    } else {
        format!("{title}<br><code>{name}</code> (not rendered yet)")
    };
    let claims: Vec<String> = entry
        .claims
        .iter()
        .map(|c| format!("{} {}", verdict_badge(c), escape(&c.statement)))
        .collect();
    let claims = if claims.is_empty() {
        "—".to_string()
    } else {
        claims.join("<br>")
    };
    format!(
        "<tr><td>{link}</td><td>{}</td><td>{claims}</td><td>{}</td></tr>\n",
        escape(&entry.description),
        escape(&entry.generated_at)
    )
}
