//! `repro curves`: repro's runs and a reference trainer's runs of the same recipe (folders
//! holding `metrics.parquet`, and `diagnostics.parquet` when written) in one figure each for
//! evaluation top-1 and training loss, with a verdict: does repro's mean curve lie within the
//! seed spread of the reference?

use std::fmt::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::report::comparison::{write_comparison, ComparisonChart, CurveGroup};
use crate::report::stats;
use crate::store::diagnostics::{read_diagnostics, DiagnosticsRow};
use crate::store::metrics::{read_metrics, MetricsRow};

#[derive(Args, Debug, Clone)]
pub struct CurvesArgs {
    /// repro's run folders (seeds of one configuration).
    #[arg(long, value_delimiter = ',', required = true)]
    pub ours: Vec<PathBuf>,
    /// The reference trainer's run folders (same configuration, its own seeds).
    #[arg(long, value_delimiter = ',', required = true)]
    pub reference: Vec<PathBuf>,
    #[arg(long, default_value = "repro")]
    pub ours_label: String,
    #[arg(long, default_value = "PyTorch + timm")]
    pub reference_label: String,
    /// Chart title (the network and the recipe).
    #[arg(long)]
    pub title: String,
    /// Output folder of the figures and the Markdown summary.
    #[arg(long)]
    pub out: PathBuf,
    /// File stem of the outputs (`<stem>_top1.png`, `<stem>_loss.png`, `<stem>.md`).
    #[arg(long)]
    pub stem: String,
}

/// Why `repro curves` could not give a verdict.
#[derive(Debug, thiserror::Error)]
pub enum CurvesError {
    /// A run folder cannot be read (bad input).
    #[error("{0}")]
    Input(String),
    /// A figure or the summary could not be written.
    #[error("{0}")]
    Write(String),
}

/// What `repro curves` concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurvesVerdict {
    /// repro's mean curve lies within the reference's seed spread (at ≥ 80 % of the shared
    /// evaluations).
    WithinSpread,
    /// It does not.
    OutsideSpread,
    /// One run on each side: no seed spread to judge by.
    NoSpread,
}

struct Run {
    name: String,
    metrics: Vec<MetricsRow>,
    diagnostics: Option<Vec<DiagnosticsRow>>,
}

fn read_run(dir: &Path) -> Result<Run, String> {
    let metrics = read_metrics(&dir.join("metrics.parquet")).map_err(|e| e.to_string())?;
    if metrics.is_empty() {
        return Err(format!("{}: no metrics rows yet", dir.display()));
    }
    let path = dir.join("diagnostics.parquet");
    let diagnostics = if path.exists() {
        Some(read_diagnostics(&path).map_err(|e| e.to_string())?)
    } else {
        None
    };
    Ok(Run {
        name: dir.display().to_string(),
        metrics,
        diagnostics,
    })
}

/// The verdict at each evaluation step all runs share.
#[derive(Clone, Debug, PartialEq)]
pub struct SpreadPoint {
    pub step: u64,
    pub ours: Vec<f64>,
    pub reference: Vec<f64>,
}

// A spread point has at least one run on each side (both folder lists are required).
fn range(v: &[f64]) -> f64 {
    stats::range(v).unwrap_or(f64::NAN)
}

fn mean(v: &[f64]) -> f64 {
    stats::mean(v).unwrap_or(f64::NAN)
}

/// The sample standard deviation; 0 for a single run.
fn sd(v: &[f64]) -> f64 {
    stats::sample_sd(v).unwrap_or(0.0)
}

impl SpreadPoint {
    /// The rule: the two means differ by no more than the larger seed range of the two sides
    /// (max − min over seeds), i.e. the difference between trainers is no larger than the
    /// difference between seeds of one trainer.
    pub fn within(&self) -> bool {
        (mean(&self.ours) - mean(&self.reference)).abs()
            <= range(&self.ours).max(range(&self.reference))
    }
}

/// Top-1 errors (%) of every run at the evaluation steps all runs of both sides have.
pub fn spread_points(ours: &[Vec<MetricsRow>], reference: &[Vec<MetricsRow>]) -> Vec<SpreadPoint> {
    let top1_at = |rows: &Vec<MetricsRow>, step: u64| {
        rows.iter()
            .find(|r| r.step == step)
            .and_then(|r| r.top1_err)
            .map(|e| 100.0 * e)
    };
    let Some(first) = ours.first() else {
        return Vec::new();
    };
    first
        .iter()
        .filter_map(|row| {
            let at = |runs: &[Vec<MetricsRow>]| -> Option<Vec<f64>> {
                runs.iter().map(|r| top1_at(r, row.step)).collect()
            };
            Some(SpreadPoint {
                step: row.step,
                ours: at(ours)?,
                reference: at(reference)?,
            })
        })
        .collect()
}

fn curves(runs: &[Run], y: impl Fn(&MetricsRow) -> Option<f64>) -> Vec<Vec<(f64, f64)>> {
    runs.iter()
        .map(|r| {
            r.metrics
                .iter()
                .filter_map(|m| Some((m.step as f64, y(m)?)))
                .collect()
        })
        .collect()
}

/// Draws the figures, prints and writes the summary; returns the verdict: whether repro lies
/// within the reference's seed spread at 80 % of the shared evaluations or more.
pub fn run(args: &CurvesArgs) -> Result<CurvesVerdict, CurvesError> {
    let read_all = |dirs: &[PathBuf]| -> Result<Vec<Run>, CurvesError> {
        dirs.iter()
            .map(|d| read_run(d).map_err(CurvesError::Input))
            .collect()
    };
    let (ours, reference) = (read_all(&args.ours)?, read_all(&args.reference)?);
    let chart =
        |what: &str, y_desc: &str, y: &dyn Fn(&MetricsRow) -> Option<f64>| ComparisonChart {
            title: format!("{}: {what}", args.title),
            x_desc: "training step".into(),
            y_desc: y_desc.into(),
            groups: vec![
                CurveGroup {
                    label: args.ours_label.clone(),
                    curves: curves(&ours, y),
                },
                CurveGroup {
                    label: args.reference_label.clone(),
                    curves: curves(&reference, y),
                },
            ],
        };
    let draw = |stem: String, c: &ComparisonChart| {
        write_comparison(&args.out, &stem, c).map_err(|e| CurvesError::Write(e.to_string()))
    };
    let top1 = draw(
        format!("{}_top1", args.stem),
        &chart("evaluation top-1", "top-1 error (%)", &|m| {
            m.top1_err.map(|e| 100.0 * e)
        }),
    )?;
    let loss = draw(
        format!("{}_loss", args.stem),
        &chart(
            "training loss",
            "training loss (mean since the last evaluation)",
            &|m| Some(m.train_loss),
        ),
    )?;

    let mut md = String::new();
    let _ = writeln!(md, "## {}\n", args.title);
    let _ = writeln!(
        md,
        "![top-1]({})\n![loss]({})\n",
        file_name(&top1),
        file_name(&loss)
    );
    for (label, runs) in [
        (&args.ours_label, &ours),
        (&args.reference_label, &reference),
    ] {
        if runs.iter().all(|r| r.diagnostics.is_some()) {
            let diag: Vec<&Vec<DiagnosticsRow>> =
                runs.iter().filter_map(|r| r.diagnostics.as_ref()).collect();
            let group = |label: &str, y: fn(&DiagnosticsRow) -> f64| CurveGroup {
                label: label.into(),
                curves: diag
                    .iter()
                    .map(|rows| rows.iter().map(|r| (r.step as f64, 100.0 * y(r))).collect())
                    .collect(),
            };
            let c = ComparisonChart {
                title: format!("{}: {label}, top-1 error four ways", args.title),
                x_desc: "training step".into(),
                y_desc: "top-1 error (%)".into(),
                groups: vec![
                    group("training batches (training mode)", |r| r.train_top1_err),
                    group("evaluation, moving averages", |r| r.ema_top1_err),
                    group("evaluation, live weights", |r| r.raw_top1_err),
                    group("evaluation, live weights, batch statistics", |r| {
                        r.raw_batchstats_top1_err
                    }),
                ],
            };
            let slug: String = label
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            let png = draw(format!("{}_diagnostics_{slug}", args.stem), &c)?;
            let _ = writeln!(md, "![{label} diagnostics]({})\n", file_name(&png));
        }
    }

    let all_diagnosed = |runs: &[Run]| runs.iter().all(|r| r.diagnostics.is_some());
    if all_diagnosed(&ours) && all_diagnosed(&reference) {
        let norms = |runs: &[Run]| -> Vec<Vec<(f64, f64)>> {
            runs.iter()
                .filter_map(|r| r.diagnostics.as_ref())
                .map(|rows| {
                    rows.iter()
                        .map(|r| (r.step as f64, r.grad_norm.log10()))
                        .collect()
                })
                .collect()
        };
        let c = ComparisonChart {
            title: format!("{}: gradient norm before clipping", args.title),
            x_desc: "training step".into(),
            y_desc: "log10 of the mean global gradient norm".into(),
            groups: vec![
                CurveGroup {
                    label: args.ours_label.clone(),
                    curves: norms(&ours),
                },
                CurveGroup {
                    label: args.reference_label.clone(),
                    curves: norms(&reference),
                },
            ],
        };
        let png = draw(format!("{}_grad_norm", args.stem), &c)?;
        let _ = writeln!(md, "![gradient norm]({})\n", file_name(&png));
    }

    let ours_rows: Vec<Vec<MetricsRow>> = ours.iter().map(|r| r.metrics.clone()).collect();
    let ref_rows: Vec<Vec<MetricsRow>> = reference.iter().map(|r| r.metrics.clone()).collect();
    let points = spread_points(&ours_rows, &ref_rows);
    let within = points.iter().filter(|p| p.within()).count();
    let holds = !points.is_empty() && within * 5 >= points.len() * 4;
    let _ = writeln!(
        md,
        "| step | {} top-1 % (mean ± sd) | {} top-1 % (mean ± sd) | difference | larger seed range | within |",
        args.ours_label, args.reference_label
    );
    md.push_str("|---:|---:|---:|---:|---:|:--:|\n");
    for p in &points {
        let _ = writeln!(
            md,
            "| {} | {:.1} ± {:.1} | {:.1} ± {:.1} | {:+.1} | {:.1} | {} |",
            p.step,
            mean(&p.ours),
            sd(&p.ours),
            mean(&p.reference),
            sd(&p.reference),
            mean(&p.ours) - mean(&p.reference),
            range(&p.ours).max(range(&p.reference)),
            if p.within() { "yes" } else { "no" }
        );
    }
    let runs = format!(
        "{} run(s) of {}, {} of {}: {}; {}",
        ours.len(),
        args.ours_label,
        reference.len(),
        args.reference_label,
        ours.iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        reference
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    );
    let no_spread = ours.len() < 2 && reference.len() < 2;
    let _ = if no_spread {
        let largest = points
            .iter()
            .map(|p| (mean(&p.ours) - mean(&p.reference)).abs())
            .fold(0.0, f64::max);
        writeln!(
            md,
            "\nNo verdict: one run on each side, so there is no seed spread to judge the differences by (the largest is {largest:.1} points); compare them with the seed range of runs with several seeds ({runs})."
        )
    } else {
        writeln!(
            md,
            "\nRule: at each evaluation both sides have, the difference of the mean top-1 errors is at most the larger seed range (max − min) of the two sides. Verdict: {} ({} of {} evaluations within; {runs}).",
            if holds { "repro lies within the seed spread of the reference" } else { "repro does NOT lie within the seed spread of the reference" },
            within,
            points.len(),
        )
    };
    print!("{md}");
    let path = args.out.join(format!("{}.md", args.stem));
    crate::store::write_bytes(&path, md.as_bytes())
        .map_err(|e| CurvesError::Write(e.to_string()))?;
    Ok(match (no_spread, holds) {
        (true, _) => CurvesVerdict::NoSpread,
        (false, true) => CurvesVerdict::WithinSpread,
        (false, false) => CurvesVerdict::OutsideSpread,
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(ours: &[f64], reference: &[f64]) -> SpreadPoint {
        SpreadPoint {
            step: 1,
            ours: ours.to_vec(),
            reference: reference.to_vec(),
        }
    }

    #[test]
    fn within_means_the_gap_is_no_larger_than_the_seed_range() {
        assert!(point(&[50.0, 52.0], &[51.0, 53.0]).within());
        assert!(point(&[50.0, 50.0], &[52.0, 56.0]).within());
        assert!(!point(&[40.0, 41.0], &[50.0, 52.0]).within());
        assert!(!point(&[60.0, 60.0], &[50.0, 50.0]).within());
    }
}
