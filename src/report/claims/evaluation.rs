//! Claims about evaluation (Tables 3–5): more crops lower the error, and ensembles lower it
//! further than their best member.

use crate::report::input::{Claim, EvalRecord, Metric, Verdict};
use crate::report::stats::mean;

/// Share of rows that must agree for a clear verdict.
const CLEAR_SHARE: f64 = 0.75;

fn error_of(result: &EvalRecord, metric: Metric) -> f64 {
    100.0
        * match metric {
            Metric::Top1 => result.top1_err,
            Metric::Top5 => result.top5_err,
            // Experiment files cannot name it for a claim (`spec::Metric` has only errors).
            Metric::PrePoolZeros => unreachable!("evaluation claims compare errors"),
        }
}

/// A table's stored evaluations by row label (one result per seed).
#[derive(Debug, Clone)]
pub struct TableErrors<'a> {
    pub crops: u32,
    pub rows: Vec<(&'a str, Vec<EvalRecord>)>,
}

impl TableErrors<'_> {
    /// The mean error (%) of a row's seeds and the images each was evaluated on.
    fn row(&self, label: &str, metric: Metric) -> Option<(f64, u64)> {
        let (_, results) = self.rows.iter().find(|(l, _)| *l == label)?;
        let errors: Vec<f64> = results.iter().map(|r| error_of(r, metric)).collect();
        Some((
            mean(&errors)?,
            results.iter().map(|r| r.images).max().unwrap_or(0),
        ))
    }
}

/// Tests "evaluating more crops lowers the error" row by row (the same networks in two
/// tables). Supported when `more` is lower in ≥ 75 % of the rows and on average; not
/// supported when it is higher in ≥ 75 % and on average; inconclusive otherwise.
pub fn more_crops_lower_error(fewer: &TableErrors, more: &TableErrors, metric: Metric) -> Claim {
    let statement = format!(
        "Evaluating {} crops lowers the {} error against {} crop(s).",
        more.crops,
        metric.label(),
        fewer.crops
    );
    let mut lines = Vec::new();
    let mut differences = Vec::new();
    for (label, _) in &fewer.rows {
        let (Some((a, images_a)), Some((b, images_b))) =
            (fewer.row(label, metric), more.row(label, metric))
        else {
            continue;
        };
        differences.push(b - a);
        let images = if images_a == images_b {
            format!("{images_a} images")
        } else {
            format!("{images_a} and {images_b} images")
        };
        lines.push(format!(
            "{label} {a:.2} → {b:.2} % ({:+.2}, {images})",
            b - a
        ));
    }
    let Some(average) = mean(&differences) else {
        return Claim {
            statement,
            verdict: Verdict::Inconclusive,
            evidence: "No network is evaluated under both protocols yet.".into(),
        };
    };
    let n = differences.len() as f64;
    let lower = differences.iter().filter(|d| **d < 0.0).count();
    let higher = differences.iter().filter(|d| **d > 0.0).count();
    let verdict = if lower as f64 / n >= CLEAR_SHARE && average < 0.0 {
        Verdict::Supported
    } else if higher as f64 / n >= CLEAR_SHARE && average > 0.0 {
        Verdict::NotSupported
    } else {
        Verdict::Inconclusive
    };
    let evidence = format!(
        "{} error, {} → {} crops (mean over seeds): {}. Lower in {lower} of {} networks, by {:+.2} points on average. Rule: supported when lower for at least 75 % of the networks and on average; not supported when higher for at least 75 % and on average; otherwise inconclusive.",
        metric.label(),
        fewer.crops,
        more.crops,
        lines.join("; "),
        differences.len(),
        average
    );
    Claim {
        statement,
        verdict,
        evidence,
    }
}

/// An ensemble and its members evaluated alone, under the same crops.
#[derive(Debug, Clone)]
pub struct EnsembleRow {
    pub label: String,
    pub ensemble: Option<EvalRecord>,
    /// Each member run's name and its single-model evaluation, if stored.
    pub members: Vec<(String, Option<EvalRecord>)>,
}

/// Tests "an ensemble is better than its members". Supported when every evaluated ensemble
/// is lower than its best member; not supported when every one is at or above its members'
/// mean; inconclusive otherwise or when results are missing.
pub fn ensembles_lower_error(rows: &[EnsembleRow], metric: Metric) -> Claim {
    let statement = format!(
        "Ensembles of separately trained networks lower the {} error below their best member.",
        metric.label()
    );
    let mut lines = Vec::new();
    let (mut below_best, mut above_mean, mut complete) = (0, 0, 0);
    for row in rows {
        let members: Option<Vec<f64>> = row
            .members
            .iter()
            .map(|(_, r)| r.as_ref().map(|r| error_of(r, metric)))
            .collect();
        let (Some(ensemble), Some(members)) =
            (row.ensemble.as_ref().map(|r| error_of(r, metric)), members)
        else {
            lines.push(format!("{}: not evaluated yet", row.label));
            continue;
        };
        let (Some(best), Some(average)) =
            (members.iter().copied().reduce(f64::min), mean(&members))
        else {
            continue;
        };
        complete += 1;
        below_best += usize::from(ensemble < best);
        above_mean += usize::from(ensemble >= average);
        lines.push(format!("{}: {ensemble:.2} % against best member {best:.2} % and member mean {average:.2} % ({:+.2} vs best)", row.label, ensemble - best));
    }
    let verdict = if complete > 0 && complete == rows.len() && below_best == complete {
        Verdict::Supported
    } else if complete > 0 && complete == rows.len() && above_mean == complete {
        Verdict::NotSupported
    } else {
        Verdict::Inconclusive
    };
    Claim {
        statement,
        verdict,
        evidence: format!(
            "{} error, same crops and images: {}. Rule: supported when every ensemble is below its best member; not supported when every one is at or above its members' mean; otherwise inconclusive.",
            metric.label(),
            lines.join("; ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(top1: f64, images: u64) -> EvalRecord {
        EvalRecord {
            top1_err: top1,
            top5_err: top1 / 4.0,
            images,
            crops: 1,
            crop_definition: String::new(),
            eval_set: "all".into(),
            models: vec![],
            skipped: vec![],
        }
    }

    #[test]
    fn lower_multi_crop_errors_support_the_claim() {
        let one = TableErrors {
            crops: 1,
            rows: vec![
                ("a", vec![result(0.30, 300), result(0.32, 300)]),
                ("b", vec![result(0.25, 300)]),
            ],
        };
        let many = TableErrors {
            crops: 144,
            rows: vec![
                ("a", vec![result(0.28, 300), result(0.29, 300)]),
                ("b", vec![result(0.24, 300)]),
            ],
        };
        let claim = more_crops_lower_error(&one, &many, Metric::Top1);
        assert_eq!(claim.verdict, Verdict::Supported, "{}", claim.evidence);
        assert!(
            claim
                .evidence
                .contains("a 31.00 → 28.50 % (-2.50, 300 images)"),
            "{}",
            claim.evidence
        );
        let reversed = more_crops_lower_error(&many, &one, Metric::Top1);
        assert_eq!(reversed.verdict, Verdict::NotSupported);
        let disjoint = TableErrors {
            crops: 12,
            rows: vec![("c", vec![result(0.2, 300)])],
        };
        assert_eq!(
            more_crops_lower_error(&one, &disjoint, Metric::Top1).verdict,
            Verdict::Inconclusive
        );
    }

    #[test]
    fn an_ensemble_below_its_best_member_supports_the_claim() {
        let row = |ensemble: Option<f64>, members: &[f64]| EnsembleRow {
            label: "x".into(),
            ensemble: ensemble.map(|e| result(e, 300)),
            members: members
                .iter()
                .enumerate()
                .map(|(i, &m)| (format!("m{i}"), Some(result(m, 300))))
                .collect(),
        };
        let good = ensembles_lower_error(&[row(Some(0.20), &[0.25, 0.22, 0.24])], Metric::Top1);
        assert_eq!(good.verdict, Verdict::Supported, "{}", good.evidence);
        assert!(good.evidence.contains("-2.00 vs best"), "{}", good.evidence);
        let between = ensembles_lower_error(&[row(Some(0.23), &[0.25, 0.22, 0.24])], Metric::Top1);
        assert_eq!(between.verdict, Verdict::Inconclusive);
        let bad = ensembles_lower_error(&[row(Some(0.30), &[0.25, 0.22, 0.24])], Metric::Top1);
        assert_eq!(bad.verdict, Verdict::NotSupported);
        let missing = ensembles_lower_error(&[row(None, &[0.25])], Metric::Top1);
        assert_eq!(missing.verdict, Verdict::Inconclusive);
    }
}
