//! The "what was run" section of an experiment page: the command, the runs' learning-rate
//! schedules and throughput (one plot each for all runs), each run's provenance (commit,
//! device, dataset, dates, duration) and its configuration.

use super::html::{escape, file_stem};
use super::input::RunInfo;
use crate::store::clock::duration_text;
use crate::store::RunStatus;

/// File stems under `figures/` of the runs' plots: all runs' learning rates, all runs'
/// throughput.
pub const LR_STEM: &str = "learning-rate";
pub const THROUGHPUT_STEM: &str = "throughput";

/// How a run stands, in words.
pub fn status_text(status: &RunStatus) -> String {
    match status {
        RunStatus::Running => "running".to_string(),
        RunStatus::Done => "done".to_string(),
        RunStatus::Diverged { step } => format!("diverged at step {step}"),
        RunStatus::Failed { message } => format!("failed: {message}"),
    }
}

/// The summary table of all runs.
fn runs_table(runs: &[RunInfo]) -> String {
    let mut html = String::from(
        "<div class=\"wide\"><table>\n<tr><th>Run</th><th>Config hash</th><th>Seed</th><th>Status</th>\
         <th>Device</th><th>Commit</th><th>Dataset manifest</th><th>Started → ended</th>\
         <th>Training time</th><th>Last epoch</th></tr>\n",
    );
    for run in runs {
        let last = run.metrics.last();
        let duration = last.map_or("—".to_string(), |r| duration_text(r.wall_s));
        let epoch = last.map_or("—".to_string(), |r| format!("{:.2}", r.epoch));
        let cells: Vec<String> = match &run.provenance {
            Some(p) => {
                let dirty = if p.git.dirty == Some(true) {
                    " (dirty)"
                } else {
                    ""
                };
                vec![
                    p.seed.to_string(),
                    match run.status.is_empty() {
                        true => status_text(&p.status),
                        false => run.status.clone(),
                    },
                    p.device.clone(),
                    format!("{}{dirty}", short(&p.git.commit)),
                    short(&p.dataset_manifest_hash),
                    format!(
                        "{} → {}",
                        p.started_at,
                        p.ended_at.as_deref().unwrap_or("not ended")
                    ),
                ]
            }
            None => {
                let mut cells = vec!["—".to_string(); 6];
                cells[1] = match run.status.as_str() {
                    "" => "no provenance.json".to_string(),
                    status => status.to_string(),
                };
                cells
            }
        };
        html.push_str(&format!(
            "<tr><td><a href=\"#run-{}\">{}</a></td><td><code>{}</code></td>",
            file_stem(&run.name),
            escape(&run.name),
            escape(&run.hash)
        ));
        for cell in cells.iter().chain([&duration, &epoch]) {
            html.push_str(&format!("<td>{}</td>", escape(cell)));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table></div>\n");
    html
}

/// The first 12 characters of a hash or commit.
fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// One run's configuration (and the images it skipped).
fn run_details(run: &RunInfo) -> String {
    let mut html = format!(
        "<h3 id=\"run-{}\">{}</h3>\n",
        file_stem(&run.name),
        escape(&run.name)
    );
    if let Some(p) = &run.provenance {
        if !p.skipped_images.is_empty() {
            html.push_str(&format!(
                "<p class=\"meta\">{} unreadable training images were skipped (listed in provenance.json).</p>\n",
                p.skipped_images.len()
            ));
        }
    }
    html.push_str(&format!(
        "<details><summary>Configuration (config.yaml)</summary><pre>{}</pre></details>\n",
        escape(&run.config_yaml)
    ));
    html
}

/// The whole section: `command`, the runs table, then each run's details.
pub fn runs_section(command: &str, runs: &[RunInfo]) -> String {
    let mut html = format!(
        "<h2 id=\"runs\">What was run</h2>\n<p>Command:</p>\n<pre>{}</pre>\n",
        escape(command)
    );
    if runs.is_empty() {
        html.push_str("<p>No training runs belong to this experiment.</p>\n");
        return html;
    }
    html.push_str(&runs_table(runs));
    html.push_str("<div class=\"plots\">\n");
    for (stem, what) in [
        (LR_STEM, "Learning-rate schedule"),
        (THROUGHPUT_STEM, "Training throughput"),
    ] {
        html.push_str(&format!(
            "<figure><a href=\"figures/{stem}.svg\"><img src=\"figures/{stem}.svg\" alt=\"{what} of the runs\"></a>\
             <figcaption>{what} (<a href=\"figures/{stem}.png\">PNG</a>, \
             <a href=\"figures/{stem}.svg\">SVG</a>)</figcaption></figure>\n"
        ));
    }
    html.push_str("</div>\n");
    for run in runs {
        html.push_str(&run_details(run));
    }
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_words() {
        assert_eq!(
            status_text(&RunStatus::Diverged { step: 12 }),
            "diverged at step 12"
        );
        assert_eq!(status_text(&RunStatus::Done), "done");
    }

    #[test]
    fn a_run_without_provenance_says_so_and_escapes_its_config() {
        let run = RunInfo {
            name: "v4 <seed 1>".to_string(),
            network: "inception_v4".to_string(),
            hash: "h".to_string(),
            config_yaml: "model: <v4>".to_string(),
            provenance: None,
            status: String::new(),
            metrics: vec![],
            lr_schedule: Vec::new(),
        };
        let html = runs_section("repro run x.yaml && echo", &[run]);
        assert!(html.contains("no provenance.json"));
        assert!(html.contains("model: &lt;v4&gt;"));
        assert!(html.contains("repro run x.yaml &amp;&amp; echo"));
        assert!(html.contains("src=\"figures/learning-rate.svg\""));
        assert!(html.contains("id=\"run-v4__seed_1_\""));
    }
}
