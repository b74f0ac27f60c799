//! Verdicts on the paper's claims from the data. The central one: residual connections
//! speed up training (Figures 21–24), tested by comparing errors at matched epochs.

use crate::report::input::{Claim, Metric, Verdict};
use crate::report::stats::{interpolate, mean, mean_curve, sample_sd, Curve};
use crate::report::style::network_name;
use crate::store::MetricsRow;

/// Share of matched epochs at which the residual network must be lower (or, for "not
/// supported", higher) for a clear verdict.
const CLEAR_SHARE: f64 = 0.75;

/// The mean curve (epoch, error %) of several runs of one network.
fn network_curve(runs: &[Vec<MetricsRow>], metric: Metric) -> Curve {
    let curves: Vec<Curve> = runs.iter().map(|rows| metric.curve(rows)).collect();
    mean_curve(&curves)
}

/// `Inception-v4 85.50 ± 2.00 % (3 runs)`: the last evaluated error of each run.
fn final_mean_sd(network: &str, runs: &[Vec<MetricsRow>], metric: Metric) -> String {
    let finals: Vec<f64> = runs
        .iter()
        .filter_map(|rows| metric.curve(rows).last().map(|p| p.1))
        .collect();
    let name = network_name(network);
    match (mean(&finals), sample_sd(&finals)) {
        (Some(m), Some(sd)) => format!("{name} {m:.2} ± {sd:.2} % ({} runs)", finals.len()),
        (Some(m), None) => format!("{name} {m:.2} % (1 run)"),
        _ => format!("{name} not evaluated"),
    }
}

/// Tests "the residual network trains faster than its plain counterpart" (e.g.
/// `inception_resnet_v2` against `inception_v4`): at each evaluated epoch of the residual
/// network's mean curve inside the plain network's range, the plain mean is interpolated
/// and the difference taken. Supported when the residual error is lower at ≥ 75 % of the
/// matched epochs and lower on average; not supported when it is higher at ≥ 75 % and
/// higher on average; inconclusive otherwise or with fewer than two matched epochs.
pub fn residual_speeds_up_training(
    residual: &str,
    residual_runs: &[Vec<MetricsRow>],
    plain: &str,
    plain_runs: &[Vec<MetricsRow>],
    metric: Metric,
) -> Claim {
    let statement = format!(
        "Residual connections speed up training: {} reaches lower {} error than {} at the same epoch.",
        network_name(residual),
        metric.label(),
        network_name(plain)
    );
    let plain_curve = network_curve(plain_runs, metric);
    let differences: Vec<(f64, f64)> = network_curve(residual_runs, metric)
        .into_iter()
        .filter_map(|(epoch, r)| Some((epoch, r - interpolate(&plain_curve, epoch)?)))
        .collect();
    let Some(mean_difference) = mean(&differences.iter().map(|d| d.1).collect::<Vec<_>>()) else {
        return Claim {
            statement,
            verdict: Verdict::Inconclusive,
            evidence: "No epochs at which both networks were evaluated.".to_string(),
        };
    };
    let n = differences.len();
    let lower = differences.iter().filter(|d| d.1 < 0.0).count();
    let higher = differences.iter().filter(|d| d.1 > 0.0).count();
    let share = |k: usize| k as f64 / n as f64;
    let verdict = if n < 2 {
        Verdict::Inconclusive
    } else if share(lower) >= CLEAR_SHARE && mean_difference < 0.0 {
        Verdict::Supported
    } else if share(higher) >= CLEAR_SHARE && mean_difference > 0.0 {
        Verdict::NotSupported
    } else {
        Verdict::Inconclusive
    };
    let (first, last) = (differences[0].0, differences[n - 1].0);
    let evidence = format!(
        "Over {n} matched epochs ({first:.2}–{last:.2}; {} residual and {} plain runs), the residual network's {} error is lower at {lower} ({:.0} %), by {:+.2} points on average (residual − plain). At their last evaluations: {}, {} (mean ± sd over seeds). Rule: supported when the residual network is lower at ≥ 75 % of the matched epochs and on average; not supported when higher at ≥ 75 % and on average; otherwise inconclusive.",
        residual_runs.len(),
        plain_runs.len(),
        metric.label(),
        100.0 * share(lower),
        mean_difference,
        final_mean_sd(residual, residual_runs, metric),
        final_mean_sd(plain, plain_runs, metric),
    );
    Claim {
        statement,
        verdict,
        evidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::claims::test_rows::test_rows as run;

    #[test]
    fn lower_residual_curve_supports_the_claim() {
        let residual = vec![run(&[(1.0, 0.80), (2.0, 0.60), (3.0, 0.50)])];
        let plain = vec![
            run(&[(1.0, 0.90), (2.0, 0.70), (3.0, 0.55)]),
            run(&[(1.0, 0.88), (2.0, 0.72), (3.0, 0.53)]),
        ];
        let claim = residual_speeds_up_training(
            "inception_resnet_v2",
            &residual,
            "inception_v4",
            &plain,
            Metric::Top1,
        );
        assert_eq!(claim.verdict, Verdict::Supported, "{}", claim.evidence);
        assert!(claim.statement.contains("Inception-ResNet-v2"));
        assert!(
            claim.evidence.contains(
                "Inception-ResNet-v2 50.00 % (1 run), Inception-v4 54.00 ± 1.41 % (2 runs)"
            ),
            "{}",
            claim.evidence
        );
        assert!(
            claim.evidence.contains("Rule: supported when"),
            "{}",
            claim.evidence
        );
        assert!(
            claim.evidence.contains("lower at 3 (100 %)"),
            "{}",
            claim.evidence
        );
        assert!(
            claim.evidence.contains("-8.00 points"),
            "{}",
            claim.evidence
        );
    }

    #[test]
    fn higher_residual_curve_does_not_support_it() {
        let residual = vec![run(&[(1.0, 0.95), (2.0, 0.80), (3.0, 0.70)])];
        let plain = vec![run(&[(1.0, 0.90), (2.0, 0.70), (3.0, 0.55)])];
        let claim = residual_speeds_up_training("a", &residual, "b", &plain, Metric::Top1);
        assert_eq!(claim.verdict, Verdict::NotSupported);
    }

    #[test]
    fn mixed_or_missing_data_is_inconclusive() {
        let residual = vec![run(&[(1.0, 0.85), (2.0, 0.75)])];
        let plain = vec![run(&[(1.0, 0.90), (2.0, 0.70)])];
        let mixed = residual_speeds_up_training("a", &residual, "b", &plain, Metric::Top1);
        assert_eq!(mixed.verdict, Verdict::Inconclusive);
        let disjoint = vec![run(&[(5.0, 0.5), (6.0, 0.4)])];
        let none = residual_speeds_up_training("a", &disjoint, "b", &plain, Metric::Top1);
        assert_eq!(none.verdict, Verdict::Inconclusive);
        assert!(none.evidence.starts_with("No epochs"));
        let top5 = residual_speeds_up_training("a", &residual, "b", &plain, Metric::Top5);
        assert_eq!(top5.verdict, Verdict::Inconclusive);
    }
}
