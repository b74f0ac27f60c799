//! Rendering an experiment's report from what its runs stored: a pure function of the
//! results folder, so `repro report` re-renders without training anything.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::claims::check_claim;
use super::plan::{plan, PlannedRun};
use super::run_state::RunState;
use super::tables::RowResults;
use crate::experiment::{Experiment, Overlay, ResolvedRun, TableSpec};
use crate::report::{
    paper_table_values, render_experiment, render_index, Claim, FigureInput, IndexEntry,
    ReportInput, RunInfo, Series, TableInput, TableRow, Verdict,
};
use crate::store::metrics::read_metrics;
use crate::store::provenance::Provenance;
use crate::store::RunDir;

/// The folder that holds the reports of `experiment`'s group: `<reports>/[<group>/]`.
fn group_dir(experiment: &Experiment, reports: &Path) -> PathBuf {
    match &experiment.group {
        Some(group) => reports.join(group),
        None => reports.to_path_buf(),
    }
}

/// Refuses to put a report of smoke data where a report of real data is: the smoke profile of
/// an experiment renders to the same folder as its real runs, and that report (such as the
/// committed `reports/mini/`) may stand for hours of training. Reports from before `entry.json`
/// said which kind they are may be replaced.
pub fn check_report_folder(experiment: &Experiment, reports: &Path) -> Result<(), String> {
    if super::summary::smoke_notice(experiment).is_none() {
        return Ok(());
    }
    let dir = group_dir(experiment, reports).join(&experiment.name);
    let Ok(text) = std::fs::read_to_string(dir.join("entry.json")) else {
        return Ok(());
    };
    match serde_json::from_str::<StoredEntry>(&text) {
        Ok(StoredEntry {
            smoke_data: Some(false),
            ..
        }) => Err(format!(
            "{} holds the report of {}'s runs on real data, which a report of smoke data would \
             replace; give the smoke run a reports folder of its own (--reports <folder>)",
            dir.display(),
            experiment.name
        )),
        _ => Ok(()),
    }
}

/// Renders `reports/[<group>/]<experiment>/` and refreshes that folder's `index.html`.
/// `table_results` gives, per table and row index, the evaluations that exist; each is read
/// once and serves both the tables and the claims. Refuses what [`check_report_folder`]
/// refuses.
pub fn write_report(
    experiment: &Experiment,
    results: &Path,
    reports: &Path,
    command: &str,
    table_results: &dyn Fn(&TableSpec, usize) -> RowResults,
) -> Result<PathBuf, String> {
    check_report_folder(experiment, reports)?;
    let reports = group_dir(experiment, reports);
    let planned = plan(experiment, results);
    let now = std::time::SystemTime::now();
    let (runs, states): (Vec<RunInfo>, Vec<RunState>) =
        planned.iter().map(|p| run_info(p, now)).unzip();
    // Every row's stored evaluations, read once for the tables and the claims.
    let stored: Vec<Vec<RowResults>> = experiment
        .tables
        .iter()
        .map(|t| (0..t.rows.len()).map(|i| table_results(t, i)).collect())
        .collect();
    let stored_results = |t: &TableSpec, row: usize| -> RowResults {
        experiment
            .tables
            .iter()
            .position(|other| other.id == t.id)
            .map(|k| stored[k][row].clone())
            .unwrap_or_default()
    };
    let paper_scale = experiment.runs.values().all(is_paper_scale);

    let figures = experiment
        .figures
        .iter()
        .map(|f| FigureInput {
            id: f.id.clone(),
            paper_figure: f.paper_figure,
            title: f.title.clone(),
            metric: f.metric,
            overlay_paper: f.paper_overlay == Overlay::Always
                || (f.paper_overlay == Overlay::Auto && paper_scale),
            series: f
                .runs
                .iter()
                .map(|name| {
                    let run = &experiment.runs[name];
                    Series {
                        network: run.config.model.arch.name().to_string(),
                        label: f.labels.get(name).cloned().unwrap_or_default(),
                        seed: run.config.seed,
                        rows: RunInfo::metrics_of(&runs, name),
                        status: runs
                            .iter()
                            .find(|r| &r.name == name)
                            .map(|r| r.status.clone())
                            .unwrap_or_default(),
                    }
                })
                .collect(),
        })
        .collect();

    let paper = paper_table_values();
    let tables = experiment
        .tables
        .iter()
        .zip(&stored)
        .map(|(t, stored_rows)| TableInput {
            id: t.id.clone(),
            title: t
                .title
                .clone()
                .unwrap_or_else(|| format!("{}: {}-crop evaluation", t.id, t.crops)),
            rows: t
                .rows
                .iter()
                .enumerate()
                .map(|(i, row)| {
                    // The paper's values (and our difference to them) only mean something
                    // at the paper's scale; scaled-down tables show ours alone.
                    let mut out = paper
                        .table_row(&t.id, &row.label)
                        .filter(|_| paper_scale)
                        .unwrap_or_else(|| TableRow {
                            label: row.label.clone(),
                            paper_top1: None,
                            paper_top5: None,
                            paper_crops: t.crops.to_string(),
                            paper_eval_set: String::new(),
                            results: Vec::new(),
                            note: String::new(),
                        });
                    out.results = stored_rows[i].clone();
                    if row.ensemble {
                        out.note = format!(
                            "ensemble of {} (probabilities averaged)",
                            row.runs.join(", ")
                        );
                    } else if row.runs.len() > 1 {
                        out.note = format!("{} seeds: {}", row.runs.len(), row.runs.join(", "));
                    }
                    out
                })
                .collect(),
        })
        .collect();

    let claims: Vec<Claim> = experiment
        .claims
        .iter()
        .map(|c| {
            let mut claim = check_claim(experiment, &c.check, &planned, &runs, &stored_results);
            claim.statement = c.statement.clone();
            claim
        })
        .collect();

    let training = runs
        .iter()
        .zip(&states)
        .filter(|(_, state)| state.is_training())
        .map(|(run, _)| format!("{}: {}", run.name, run.status))
        .collect();
    let input = ReportInput {
        experiment: experiment.name.clone(),
        title: if experiment.title.is_empty() {
            experiment.name.clone()
        } else {
            experiment.title.clone()
        },
        description: experiment.description.clone(),
        notice: super::summary::smoke_notice(experiment),
        paper_scale,
        figures,
        tables,
        runs,
        deviations: deviations(experiment),
        claims: claims.clone(),
        command: command.to_string(),
        generated_at: crate::store::clock::rfc3339_utc(now),
        commit: crate::store::provenance::GitInfo::of_work_tree(Path::new(".")).describe(),
        training,
    };
    let out_dir = reports.join(&experiment.name);
    let rendered = render_experiment(&input, &out_dir).map_err(|e| e.to_string())?;
    let entry = StoredEntry {
        experiment: experiment.name.clone(),
        title: input.title.clone(),
        description: input.description.clone(),
        generated_at: input.generated_at.clone(),
        claims: claims
            .iter()
            .map(|c| StoredClaim(c.statement.clone(), c.verdict, c.evidence.clone()))
            .collect(),
        smoke_data: Some(input.notice.is_some()),
    };
    crate::store::write_json(&out_dir.join("entry.json"), &entry).map_err(|e| e.to_string())?;
    refresh_index(&reports)?;
    Ok(rendered.index_html)
}

/// What `reports/index.html` shows of an experiment, kept beside its report.
#[derive(Serialize, Deserialize)]
struct StoredEntry {
    experiment: String,
    title: String,
    description: String,
    generated_at: String,
    claims: Vec<StoredClaim>,
    /// Whether the runs trained on generated smoke data (absent in reports rendered before
    /// this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    smoke_data: Option<bool>,
}

/// A claim as `entry.json` holds it: `[statement, verdict, evidence]`.
#[derive(Serialize, Deserialize)]
struct StoredClaim(String, Verdict, String);

/// Rewrites `reports/index.html` from the `entry.json` of every rendered experiment.
fn refresh_index(reports: &Path) -> Result<(), String> {
    let mut entries = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(reports)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    dirs.sort();
    for dir in dirs {
        let Ok(text) = std::fs::read_to_string(dir.join("entry.json")) else {
            continue;
        };
        let e = match serde_json::from_str::<StoredEntry>(&text) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(
                    "{}: {e}; left out of {} until its report is rendered again",
                    dir.join("entry.json").display(),
                    reports.join("index.html").display()
                );
                continue;
            }
        };
        let claims = e
            .claims
            .into_iter()
            .map(|StoredClaim(statement, verdict, evidence)| Claim {
                statement,
                verdict,
                evidence,
            })
            .collect();
        entries.push(IndexEntry {
            experiment: e.experiment,
            title: e.title,
            description: e.description,
            generated_at: e.generated_at,
            claims,
        });
    }
    render_index(reports, &entries)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// What the report shows of a run, and how it stands at `now`.
fn run_info(p: &PlannedRun, now: std::time::SystemTime) -> (RunInfo, RunState) {
    let dir = RunDir::new(&p.dir);
    let metrics = readable(&dir.metrics_parquet(), read_metrics).unwrap_or_default();
    let state = RunState::read(p, &metrics, now);
    let info = RunInfo {
        name: p.run.name.clone(),
        network: p.run.config.model.arch.name().to_string(),
        hash: p.run.hash.clone(),
        config_yaml: std::fs::read_to_string(dir.config_yaml())
            .unwrap_or_else(|_| serde_yaml::to_string(&p.run.config).unwrap_or_default()),
        provenance: readable(&dir.provenance_json(), Provenance::read),
        status: state.words(),
        metrics,
        lr_schedule: lr_schedule(&p.run),
    };
    (info, state)
}

/// `read(path)`, or `None` when the file does not exist (a run not started) or cannot be read;
/// the second is said, with the repair, since the report then lacks what the file held.
fn readable<T, E: std::fmt::Display>(
    path: &Path,
    read: impl FnOnce(&Path) -> Result<T, E>,
) -> Option<T> {
    if !path.exists() {
        return None;
    }
    read(path)
        .map_err(|e| {
            tracing::warn!(
                "{e}; the report leaves it out (`repro run` on the experiment repairs the run from its checkpoints)"
            )
        })
        .ok()
}

/// The schedule's learning rate at 400 points over the run (steps show as near-vertical
/// jumps); the last point is the rate of the last step, not of the epoch after it.
fn lr_schedule(run: &ResolvedRun) -> Vec<(f64, f64)> {
    let (epochs, lr) = (run.config.train.epochs, &run.config.train.lr);
    let mut points: Vec<(f64, f64)> = (0..400)
        .map(|i| epochs * i as f64 / 400.0)
        .map(|e| (e, lr.lr_at(e)))
        .collect();
    points.push((epochs, lr.lr_at(epochs * (1.0 - 1e-9))));
    points
}

/// Full ImageNet at the paper's resolution and width.
fn is_paper_scale(run: &ResolvedRun) -> bool {
    let c = &run.config;
    c.data.synthetic.is_none()
        && c.data.classes.is_none()
        && c.model.width == 1.0
        && c.model.image_size == 299
        && c.model.num_classes == 1000
}

/// The known differences between this experiment and the paper, from its resolved runs.
fn deviations(experiment: &Experiment) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(run) = experiment.runs.values().next() {
        let c = &run.config;
        out.push(format!(
            "Batch size {} on one replica; the paper trained on 20 replicas (batch size per replica not stated; TF-slim's default is 32).",
            c.train.batch_size
        ));
        out.push(format!(
            "Evaluation uses an exponential moving average of the weights with decay {} (the paper: \"a running average of the parameters\", decay not stated).",
            c.train.ema.decay
        ));
        if !is_paper_scale(run) {
            out.push(format!(
                "Scaled down: width x{}, {} px inputs, {} classes, {} epochs; absolute errors are not comparable with the paper's, only the comparisons are.",
                c.model.width, c.model.image_size, c.model.num_classes, c.train.epochs
            ));
        }
    }
    out.push("Inception-ResNet-v2 is the released TF-slim/timm layout (v3 stem + mixed_5b, 320/1088/2080 channels, 10/20/10 blocks), not the paper's drawings.".into());
    out.push("The paper never defines its 12 crops; here: one scale, the centre square, 4 corners + centre + the whole square, and their mirrors.".into());
    out
}

#[cfg(test)]
mod index_tests {
    use super::refresh_index;

    #[test]
    fn the_index_reads_committed_entries_and_leaves_out_an_unknown_verdict() {
        let tmp = tempfile::tempdir().unwrap();
        let committed =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("reports/mini/fig23/entry.json");
        std::fs::create_dir_all(tmp.path().join("fig23")).unwrap();
        std::fs::copy(&committed, tmp.path().join("fig23/entry.json")).unwrap();
        let text = std::fs::read_to_string(&committed).unwrap();
        let bad = text
            .replace("\"fig23\"", "\"figbad\"")
            .replace("\"supported\"", "\"maybe\"")
            .replace("Figure 23", "Figure bad");
        assert_ne!(bad, text);
        std::fs::create_dir_all(tmp.path().join("figbad")).unwrap();
        std::fs::write(tmp.path().join("figbad/entry.json"), bad).unwrap();
        refresh_index(tmp.path()).unwrap();
        let index = std::fs::read_to_string(tmp.path().join("index.html")).unwrap();
        assert!(index.contains("Figure 23"), "{index}");
        assert!(index.contains("supported"), "{index}");
        assert!(!index.contains("Figure bad"), "{index}");
    }
}
