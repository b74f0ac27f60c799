//! Claims about where training ends: model size against residual connections (Figures 25
//! and 26), and wide residual networks with and without scaling of the residuals (section 3.3).

use crate::report::input::{Claim, Metric, Verdict};
use crate::report::stats::{mean, range, sample_sd};
use crate::report::style::network_name;
use crate::store::MetricsRow;

/// A network's runs (its seeds) as the claims read them.
#[derive(Debug, Clone, Copy)]
pub struct NetworkRuns<'a> {
    /// The network as the paper's data names it (`inception_v4`), or a label.
    pub name: &'a str,
    /// Each run's metrics rows.
    pub runs: &'a [Vec<MetricsRow>],
    /// Whether each run diverged (same order as `runs`).
    pub diverged: &'a [bool],
}

/// The error (%) at a run's last evaluation.
fn final_error(rows: &[MetricsRow], metric: Metric) -> Option<f64> {
    metric.curve(rows).last().map(|&(_, error)| error)
}

/// The final errors of the runs that were evaluated.
fn final_errors(network: &NetworkRuns, metric: Metric) -> Vec<f64> {
    network
        .runs
        .iter()
        .filter_map(|rows| final_error(rows, metric))
        .collect()
}

/// "Inception-v4 21.30 % (sd 0.40, 3 runs)".
fn describe(network: &NetworkRuns, errors: &[f64]) -> String {
    let name = network_name(network.name);
    match (mean(errors), sample_sd(errors)) {
        (Some(m), Some(sd)) => format!("{name} {m:.2} % (sd {sd:.2}, {} runs)", errors.len()),
        (Some(m), None) => format!("{name} {m:.2} % (1 run)"),
        _ => format!("{name}: not evaluated"),
    }
}

/// Whether a network's error curve has flattened by its last evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flattening {
    /// The seeds' mean error moved by `change` points between the last two evaluations,
    /// no more than `spread`, the range of the seeds' final errors.
    Flat { change: f64, spread: f64 },
    /// It moved by more than the seed spread: the final error is not final yet.
    Moving { change: f64, spread: f64 },
    /// One run, or runs with a single evaluation: no spread to judge by.
    Unknown,
}

/// Compares the change of the mean error between the runs' last two evaluations with the
/// spread of their final errors: a curve has flattened when the last step moves the mean
/// less than the seeds differ.
fn flattening(network: &NetworkRuns, metric: Metric) -> Flattening {
    let ends: Option<Vec<(f64, f64)>> = network
        .runs
        .iter()
        .map(|rows| match metric.curve(rows).as_slice() {
            [.., (_, previous), (_, last)] => Some((*previous, *last)),
            _ => None,
        })
        .collect();
    let Some(ends) = ends.filter(|e| e.len() > 1) else {
        return Flattening::Unknown;
    };
    let previous: Vec<f64> = ends.iter().map(|e| e.0).collect();
    let last: Vec<f64> = ends.iter().map(|e| e.1).collect();
    let (Some(mean_previous), Some(mean_last), Some(spread)) =
        (mean(&previous), mean(&last), range(&last))
    else {
        return Flattening::Unknown;
    };
    let change = mean_last - mean_previous;
    match change.abs() <= spread {
        true => Flattening::Flat { change, spread },
        false => Flattening::Moving { change, spread },
    }
}

/// "Inception-v4 flat (−0.10 against a seed range of 1.20)".
fn describe_flattening(network: &NetworkRuns, flattening: Flattening) -> String {
    let name = network_name(network.name);
    match flattening {
        Flattening::Flat { change, spread } => {
            format!("{name} flat ({change:+.2} against a seed range of {spread:.2})")
        }
        Flattening::Moving { change, spread } => {
            format!("{name} still moving ({change:+.2} against a seed range of {spread:.2})")
        }
        Flattening::Unknown => {
            format!("{name} not judged (fewer than two runs with two evaluations)")
        }
    }
}

/// Tests "final accuracy is set mainly by model size, not by the residual connections"
/// with a smaller pair (Inception-v3, Inception-ResNet-v1) and a larger pair (Inception-v4,
/// Inception-ResNet-v2). Supported when both larger networks end below both smaller ones
/// and the gap between the pairs' means is wider than the gap within either pair; not
/// supported when a within-pair gap (plain against residual) is at least as wide as the
/// gap between sizes; inconclusive otherwise, when a network has no evaluation, or while
/// a network's curve still moves by more than its seed spread (the errors are not final).
pub fn size_over_residual(
    small: [NetworkRuns; 2],
    large: [NetworkRuns; 2],
    metric: Metric,
) -> Claim {
    let statement = format!(
        "Final {} error is set mainly by model size: {} and {} end lower than {} and {}, with or without residual connections.",
        metric.label(),
        network_name(large[0].name),
        network_name(large[1].name),
        network_name(small[0].name),
        network_name(small[1].name)
    );
    let networks: Vec<&NetworkRuns> = small.iter().chain(&large).collect();
    let errors: Vec<Vec<f64>> = networks.iter().map(|n| final_errors(n, metric)).collect();
    let described: Vec<String> = networks
        .iter()
        .zip(&errors)
        .map(|(n, e)| describe(n, e))
        .collect();
    let means: Option<Vec<f64>> = errors.iter().map(|e| mean(e)).collect();
    let Some(m) = means else {
        return Claim {
            statement,
            verdict: Verdict::Inconclusive,
            evidence: format!(
                "Not every network has been evaluated: {}.",
                described.join("; ")
            ),
        };
    };
    let (small_plain, small_residual, large_plain, large_residual) = (m[0], m[1], m[2], m[3]);
    let size_gap = (small_plain + small_residual) / 2.0 - (large_plain + large_residual) / 2.0;
    let within = (small_plain - small_residual)
        .abs()
        .max((large_plain - large_residual).abs());
    let ordered = large_plain.max(large_residual) < small_plain.min(small_residual);
    let flattenings: Vec<Flattening> = networks.iter().map(|n| flattening(n, metric)).collect();
    let still_moving = flattenings
        .iter()
        .any(|f| matches!(f, Flattening::Moving { .. }));
    let verdict = if still_moving {
        Verdict::Inconclusive
    } else if ordered && size_gap > within {
        Verdict::Supported
    } else if size_gap <= within && within > 0.0 {
        Verdict::NotSupported
    } else {
        Verdict::Inconclusive
    };
    let evidence = format!(
        "Final {} error (last evaluation, mean over seeds): {}. The larger pair ends {:.2} points {} than the smaller on average; the widest gap within a pair (plain against residual) is {:.2} points. Curves at the end (change of the mean error between the last two evaluations, points): {}. Rule: inconclusive while a curve still moves by more than the range of its seeds' final errors; otherwise supported when both larger networks end below both smaller ones and the size gap exceeds the widest within-pair gap; not supported when a within-pair gap is at least as wide as the size gap; otherwise inconclusive.",
        metric.label(),
        described.join("; "),
        size_gap.abs(),
        if size_gap >= 0.0 { "lower" } else { "higher" },
        within,
        networks
            .iter()
            .zip(&flattenings)
            .map(|(n, &f)| describe_flattening(n, f))
            .collect::<Vec<_>>()
            .join("; ")
    );
    Claim {
        statement,
        verdict,
        evidence,
    }
}

/// How a run died, if it did.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Death {
    /// The loss or gradient norm became non-finite.
    Diverged,
    /// The paper's criterion: every activation before the average pooling was zero at an
    /// evaluation (at this epoch).
    ZeroActivations { epoch: f64 },
    /// Runs recorded before the activations were measured: the last top-1 error within
    /// 2 points of chance.
    AtChance,
}

/// Whether a run died (`None` when it cannot be told: no evaluation).
fn death(rows: &[MetricsRow], diverged: bool, chance: f64) -> Option<Option<Death>> {
    if diverged {
        return Some(Some(Death::Diverged));
    }
    if rows.iter().any(|r| r.pre_pool_zero_frac.is_some()) {
        let dead = rows
            .iter()
            .find(|r| r.pre_pool_zero_frac == Some(1.0))
            .map(|r| Death::ZeroActivations { epoch: r.epoch });
        return Some(dead);
    }
    final_error(rows, Metric::Top1).map(|e| (e >= chance - 2.0).then_some(Death::AtChance))
}

/// Tests "without scaling of the residuals a wide Inception-ResNet dies early in training;
/// scaling them down prevents it" (section 3.3) by the paper's criterion: a run died when
/// "the last layer before the average pooling started to produce only zeros", i.e. every
/// activation there was zero at an evaluation, or when it diverged. Runs recorded before
/// the activations were measured count as dead within 2 points of chance (`classes`
/// classes), and the evidence says so. Supported when every unscaled run died and no
/// scaled run did; not supported when no unscaled run died; inconclusive otherwise or
/// without evaluations.
pub fn residual_scaling_prevents_death(
    scaled: NetworkRuns,
    unscaled: NetworkRuns,
    classes: usize,
) -> Claim {
    let statement = format!(
        "Without scaling of the residuals, a very wide {} dies early in training; scaling the residuals down prevents it.",
        network_name(unscaled.name)
    );
    let chance = 100.0 * (1.0 - 1.0 / classes.max(1) as f64);
    let deaths = |n: &NetworkRuns| -> Option<Vec<Option<Death>>> {
        n.runs
            .iter()
            .zip(n.diverged)
            .map(|(rows, &diverged)| death(rows, diverged, chance))
            .collect()
    };
    let (Some(dead_scaled), Some(dead_unscaled)) = (deaths(&scaled), deaths(&unscaled)) else {
        return Claim {
            statement,
            verdict: Verdict::Inconclusive,
            evidence: "A run has no evaluation yet.".into(),
        };
    };
    if dead_scaled.is_empty() || dead_unscaled.is_empty() {
        return Claim {
            statement,
            verdict: Verdict::Inconclusive,
            evidence: "No runs.".into(),
        };
    }
    let count = |d: &[Option<Death>]| d.iter().filter(|x| x.is_some()).count();
    let (ds, du) = (count(&dead_scaled), count(&dead_unscaled));
    let verdict = if du == dead_unscaled.len() && ds == 0 {
        Verdict::Supported
    } else if du == 0 {
        Verdict::NotSupported
    } else {
        Verdict::Inconclusive
    };
    let side = |label: &str, n: &NetworkRuns, deaths: &[Option<Death>]| {
        let errors = final_errors(n, Metric::Top1);
        let how: Vec<String> = deaths
            .iter()
            .flatten()
            .map(|d| match d {
                Death::Diverged => "diverged".to_string(),
                Death::ZeroActivations { epoch } => {
                    format!("all pre-pooling activations zero at epoch {epoch:.2}")
                }
                Death::AtChance => "at chance (no activation record)".to_string(),
            })
            .collect();
        let zero: Vec<String> = n
            .runs
            .iter()
            .filter_map(|rows| rows.iter().rev().find_map(|r| r.pre_pool_zero_frac))
            .map(|z| format!("{:.1} %", 100.0 * z))
            .collect();
        format!(
            "{label}: {} of {} runs died{}, final top-1 error {}{}",
            count(deaths),
            deaths.len(),
            match how.is_empty() {
                true => String::new(),
                false => format!(" ({})", how.join("; ")),
            },
            mean(&errors)
                .map(|m| format!("{m:.2} %"))
                .unwrap_or_else(|| "n/a".into()),
            match zero.is_empty() {
                true => String::new(),
                false => format!(
                    ", zero activations before the pooling at the last evaluation {}",
                    zero.join(", ")
                ),
            }
        )
    };
    let evidence = format!(
        "{}; {}. Rule: a run died when every activation before the average pooling was zero at an evaluation (the paper's criterion), or when it diverged; runs without that record count as dead within 2 points of chance ({chance:.1} %).",
        side("Unscaled", &unscaled, &dead_unscaled),
        side("scaled", &scaled, &dead_scaled)
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

    fn net<'a>(name: &'a str, runs: &'a [Vec<MetricsRow>]) -> NetworkRuns<'a> {
        const NO: &[bool] = &[false, false, false, false];
        NetworkRuns {
            name,
            runs,
            diverged: &NO[..runs.len()],
        }
    }

    #[test]
    fn size_sets_the_final_error_when_the_pairs_separate() {
        let v3 = vec![run(&[(1.0, 0.6), (3.0, 0.40)]), run(&[(3.0, 0.42)])];
        let r1 = vec![run(&[(3.0, 0.39)])];
        let v4 = vec![run(&[(3.0, 0.30)])];
        let r2 = vec![run(&[(2.0, 0.5), (3.0, 0.29)])];
        let claim = size_over_residual(
            [net("inception_v3", &v3), net("inception_resnet_v1", &r1)],
            [net("inception_v4", &v4), net("inception_resnet_v2", &r2)],
            Metric::Top1,
        );
        assert_eq!(claim.verdict, Verdict::Supported, "{}", claim.evidence);
        // v3: mean of 40 and 42 at the last epoch, not the earlier 60.
        assert!(
            claim
                .evidence
                .contains("Inception-v3 41.00 % (sd 1.41, 2 runs)"),
            "{}",
            claim.evidence
        );
        assert!(
            claim.evidence.contains("10.50 points lower"),
            "{}",
            claim.evidence
        );
    }

    #[test]
    fn a_wide_residual_gap_contradicts_the_size_claim() {
        let v3 = vec![run(&[(3.0, 0.60)])];
        let r1 = vec![run(&[(3.0, 0.40)])];
        let v4 = vec![run(&[(3.0, 0.55)])];
        let r2 = vec![run(&[(3.0, 0.35)])];
        let claim = size_over_residual(
            [net("inception_v3", &v3), net("inception_resnet_v1", &r1)],
            [net("inception_v4", &v4), net("inception_resnet_v2", &r2)],
            Metric::Top1,
        );
        assert_eq!(claim.verdict, Verdict::NotSupported, "{}", claim.evidence);
        let none: Vec<Vec<MetricsRow>> = vec![];
        let missing = size_over_residual(
            [net("inception_v3", &v3), net("inception_resnet_v1", &none)],
            [net("inception_v4", &v4), net("inception_resnet_v2", &r2)],
            Metric::Top1,
        );
        assert_eq!(missing.verdict, Verdict::Inconclusive);
    }

    #[test]
    fn a_curve_still_falling_beyond_its_seed_spread_makes_the_size_claim_inconclusive() {
        let v3 = vec![
            run(&[(2.0, 0.41), (3.0, 0.40)]),
            run(&[(2.0, 0.43), (3.0, 0.42)]),
        ];
        let r1 = vec![run(&[(3.0, 0.39)])];
        let r2 = vec![run(&[(3.0, 0.29)])];
        // Inception-v4's mean falls 5 points in its last step while its seeds end 1 apart.
        let falling = vec![
            run(&[(2.0, 0.36), (3.0, 0.30)]),
            run(&[(2.0, 0.36), (3.0, 0.31)]),
        ];
        let claim = size_over_residual(
            [net("inception_v3", &v3), net("inception_resnet_v1", &r1)],
            [
                net("inception_v4", &falling),
                net("inception_resnet_v2", &r2),
            ],
            Metric::Top1,
        );
        assert_eq!(claim.verdict, Verdict::Inconclusive, "{}", claim.evidence);
        for expected in [
            "Inception-v3 flat (-1.00 against a seed range of 2.00)",
            "Inception-v4 still moving (-5.50 against a seed range of 1.00)",
            "Inception-ResNet-v1 not judged",
        ] {
            assert!(claim.evidence.contains(expected), "{}", claim.evidence);
        }
        // The same ends, flattened: the pairs separate and the claim holds.
        let flat = vec![
            run(&[(2.0, 0.305), (3.0, 0.30)]),
            run(&[(2.0, 0.31), (3.0, 0.31)]),
        ];
        let claim = size_over_residual(
            [net("inception_v3", &v3), net("inception_resnet_v1", &r1)],
            [net("inception_v4", &flat), net("inception_resnet_v2", &r2)],
            Metric::Top1,
        );
        assert_eq!(claim.verdict, Verdict::Supported, "{}", claim.evidence);
    }

    #[test]
    fn dead_unscaled_and_live_scaled_runs_support_the_scaling_claim() {
        let scaled = vec![run(&[(1.0, 0.45)])];
        let dead = vec![run(&[(0.5, 0.60), (1.0, 0.895)])];
        let claim = residual_scaling_prevents_death(
            net("scaled", &scaled),
            net("inception_resnet_v2", &dead),
            10,
        );
        assert_eq!(claim.verdict, Verdict::Supported, "{}", claim.evidence);
        // A diverged run is dead whatever its last evaluation said.
        let diverged = NetworkRuns {
            name: "x",
            runs: &scaled,
            diverged: &[true],
        };
        let claim = residual_scaling_prevents_death(net("scaled", &scaled), diverged, 10);
        assert_eq!(claim.verdict, Verdict::Supported, "{}", claim.evidence);
        assert!(
            claim.evidence.contains("1 of 1 runs died (diverged)"),
            "{}",
            claim.evidence
        );
    }

    #[test]
    fn with_activation_records_a_run_dies_when_its_pre_pooling_layer_is_all_zero() {
        let with_zeros = |points: &[(f64, f64, f64)]| -> Vec<MetricsRow> {
            points
                .iter()
                .map(|&(epoch, err, zero)| MetricsRow {
                    pre_pool_zero_frac: Some(zero),
                    ..run(&[(epoch, err)]).remove(0)
                })
                .collect()
        };
        // Near chance but with live activations: alive by the paper's criterion.
        let scaled = vec![with_zeros(&[(0.5, 0.7, 0.4), (1.0, 0.89, 0.6)])];
        // All zero at epoch 0.5, whatever the error says.
        let unscaled = vec![with_zeros(&[(0.5, 0.5, 1.0), (1.0, 0.5, 1.0)])];
        let claim =
            residual_scaling_prevents_death(net("scaled", &scaled), net("unscaled", &unscaled), 10);
        assert_eq!(claim.verdict, Verdict::Supported, "{}", claim.evidence);
        assert!(
            claim
                .evidence
                .contains("1 of 1 runs died (all pre-pooling activations zero at epoch 0.50)"),
            "{}",
            claim.evidence
        );
        assert!(
            claim.evidence.contains("at the last evaluation 60.0 %"),
            "{}",
            claim.evidence
        );
        // 99.9 % zeros is not "only zeros".
        let nearly = vec![with_zeros(&[(1.0, 0.9, 0.999)])];
        let claim =
            residual_scaling_prevents_death(net("scaled", &scaled), net("unscaled", &nearly), 10);
        assert_eq!(claim.verdict, Verdict::NotSupported, "{}", claim.evidence);
    }

    #[test]
    fn a_live_unscaled_run_does_not_support_the_scaling_claim() {
        let scaled = vec![run(&[(1.0, 0.45)])];
        let alive = vec![run(&[(1.0, 0.50)])];
        let claim =
            residual_scaling_prevents_death(net("scaled", &scaled), net("unscaled", &alive), 10);
        assert_eq!(claim.verdict, Verdict::NotSupported, "{}", claim.evidence);
        let both_dead = vec![run(&[(1.0, 0.9)])];
        let claim = residual_scaling_prevents_death(
            net("scaled", &both_dead),
            net("unscaled", &both_dead),
            10,
        );
        assert_eq!(claim.verdict, Verdict::Inconclusive);
        let not_evaluated = vec![vec![]];
        let claim = residual_scaling_prevents_death(
            net("scaled", &scaled),
            net("unscaled", &not_evaluated),
            10,
        );
        assert_eq!(claim.verdict, Verdict::Inconclusive);
    }
}
