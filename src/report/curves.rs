//! Figures 21–26: error (%) against epoch, one line per network, seeds drawn faintly with
//! their mean bold, and the paper's digitised curves faintly beside ours when asked.

use super::chart::{ChartLine, LineChart};
use super::dash::SOLID;
use super::input::{FigureInput, Metric, Series};
use super::paper::PaperPoint;
use super::stats::{mean_curve, Curve};
use super::style::{line_looks, network_name, LineLook};
use plotters::style::RGBColor;

/// Opacity of single seeds when a mean is drawn over them.
const SEED_OPACITY: f64 = 0.3;
/// Opacity of the paper's curves.
const PAPER_OPACITY: f64 = 0.35;

/// Whether a figure shows the paper's curves: it reproduces one of the paper's figures and
/// the experiment is at paper scale or the figure asks for the overlay.
pub fn shows_paper(figure: &FigureInput, paper_scale: bool) -> bool {
    figure.paper_figure.is_some() && (paper_scale || figure.overlay_paper)
}

/// The networks of `series` in order of first appearance, each with its series; series of
/// one network with different labels (e.g. with and without residual scaling) are apart.
pub fn by_network(series: &[Series]) -> Vec<(&str, Vec<&Series>)> {
    let mut groups: Vec<(&str, Vec<&Series>)> = Vec::new();
    for s in series {
        match groups
            .iter_mut()
            .find(|(n, members)| *n == s.network && members[0].label == s.label)
        {
            Some((_, members)) => members.push(s),
            None => groups.push((&s.network, vec![s])),
        }
    }
    groups
}

/// The figure's metric of one series as (epoch, error %), evaluated rows only.
pub fn error_curve(figure: &FigureInput, series: &Series) -> Curve {
    figure.metric.curve(&series.rows)
}

/// The legend text of a network's bold line: its name, how many seeds were averaged and
/// which runs did not finish.
fn legend_text(name: &str, members: &[&Series], overlay: bool) -> String {
    let mut text = name.to_string();
    if overlay {
        text.push_str(", ours");
    }
    if members.len() > 1 {
        text.push_str(&format!(", mean of {} seeds", members.len()));
    }
    let unfinished: Vec<String> = members
        .iter()
        .filter(|s| s.status != "done")
        .map(|s| format!("seed {}: {}", s.seed, s.status))
        .collect();
    if !unfinished.is_empty() {
        text.push_str(&format!(" ({})", unfinished.join("; ")));
    }
    text
}

/// The chart of one figure; `overlay` adds the paper's curves of `figure.paper_figure`
/// from `paper`.
pub fn error_chart(figure: &FigureInput, paper: &[PaperPoint], overlay: bool) -> LineChart {
    let groups = by_network(&figure.series);
    let networks: Vec<&str> = groups.iter().map(|(n, _)| *n).collect();
    let looks = line_looks(&networks);
    let mut lines = Vec::new();
    if overlay {
        lines.extend(paper_lines(figure, paper));
    }
    for ((network, members), look) in groups.iter().zip(&looks) {
        let curves: Vec<Curve> = members.iter().map(|s| error_curve(figure, s)).collect();
        let name = match members[0].label.as_str() {
            "" => network_name(network),
            label => label.to_string(),
        };
        let bold = if curves.len() > 1 {
            for curve in &curves {
                lines.push(ChartLine {
                    points: curve.clone(),
                    look: *look,
                    width: 1,
                    opacity: SEED_OPACITY,
                    legend: None,
                });
            }
            mean_curve(&curves)
        } else {
            curves.into_iter().next().unwrap_or_default()
        };
        lines.push(ChartLine {
            points: bold,
            look: *look,
            width: 3,
            opacity: 1.0,
            legend: Some(legend_text(&name, members, overlay)),
        });
    }
    let title = match (&figure.title, figure.paper_figure) {
        (Some(title), _) => title.clone(),
        (None, Some(n)) => format!("Figure {n} reproduced: {}", figure.metric.quantity()),
        (None, None) => format!("{}: {}", figure.id, figure.metric.quantity()),
    };
    LineChart {
        title,
        x_desc: "Epoch".to_string(),
        y_desc: match figure.metric {
            Metric::PrePoolZeros => "Zero activations before the pooling (%)".to_string(),
            m => format!("Error ({}) %", m.label()),
        },
        lines,
        y_from_zero: false,
        empty_note: "no evaluation points yet".to_string(),
    }
}

/// The paper's digitised curves of the figure, one faint line per network, in our styles.
fn paper_lines(figure: &FigureInput, paper: &[PaperPoint]) -> Vec<ChartLine> {
    let Some(number) = figure.paper_figure else {
        return Vec::new();
    };
    let points: Vec<&PaperPoint> = paper
        .iter()
        .filter(|p| p.figure == number && p.metric == figure.metric)
        .collect();
    let mut networks: Vec<&str> = Vec::new();
    for p in &points {
        if !networks.contains(&p.network.as_str()) {
            networks.push(&p.network);
        }
    }
    if networks.is_empty() {
        return Vec::new();
    }
    // One legend entry for all of them keeps the legend small: the colours and dashes
    // already say which network each faint line is.
    let legend_entry = ChartLine {
        points: Vec::new(),
        look: LineLook {
            color: RGBColor(110, 110, 110),
            pattern: SOLID,
        },
        width: 2,
        opacity: PAPER_OPACITY,
        legend: Some("Faint: the paper's curves (digitised)".to_string()),
    };
    let looks = line_looks(&networks);
    let lines = networks
        .into_iter()
        .zip(looks)
        .map(|(network, look)| ChartLine {
            points: points
                .iter()
                .filter(|p| p.network == network)
                .map(|p| (p.epoch, p.error_pct))
                .collect(),
            look,
            width: 2,
            opacity: PAPER_OPACITY,
            legend: None,
        });
    std::iter::once(legend_entry).chain(lines).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::input::Metric;
    use crate::report::paper::paper_curves;
    use crate::store::MetricsRow;

    pub(crate) fn rows(errors: &[(f64, f64)]) -> Vec<MetricsRow> {
        errors
            .iter()
            .map(|&(epoch, top1)| MetricsRow {
                epoch,
                step: (epoch * 100.0) as u64,
                images_seen: (epoch * 3200.0) as u64,
                lr: 0.045,
                train_loss: 5.0,
                top1_err: Some(top1),
                top5_err: Some(top1 / 3.0),
                eval_images: 1000,
                images_per_s: 250.0,
                wall_s: epoch * 60.0,
                pre_pool_zero_frac: None,
                pre_pool_dead_channel_frac: None,
            })
            .collect()
    }

    fn series(network: &str, seed: u64, errors: &[(f64, f64)], status: &str) -> Series {
        Series {
            network: network.to_string(),
            label: String::new(),
            seed,
            rows: rows(errors),
            status: status.to_string(),
        }
    }

    fn figure(series: Vec<Series>) -> FigureInput {
        FigureInput {
            id: "fig23".to_string(),
            title: None,
            paper_figure: Some(23),
            metric: Metric::Top1,
            overlay_paper: false,
            series,
        }
    }

    #[test]
    fn seeds_are_faint_and_their_mean_is_bold_in_percent() {
        let fig = figure(vec![
            series("inception_v4", 1, &[(1.0, 0.9), (2.0, 0.7)], "done"),
            series("inception_v4", 2, &[(1.0, 0.8), (2.0, 0.5)], "done"),
            series(
                "inception_resnet_v2",
                1,
                &[(1.0, 0.6)],
                "diverged at step 150",
            ),
        ]);
        let chart = error_chart(&fig, &[], false);
        assert_eq!(chart.lines.len(), 4);
        let mean = &chart.lines[2];
        assert_eq!(mean.width, 3);
        assert!((mean.points[0].1 - 85.0).abs() < 1e-9);
        assert!((mean.points[1].1 - 60.0).abs() < 1e-9);
        assert_eq!(
            mean.legend.as_deref(),
            Some("Inception-v4, mean of 2 seeds")
        );
        assert_eq!(
            chart.lines[3].legend.as_deref(),
            Some("Inception-ResNet-v2 (seed 1: diverged at step 150)")
        );
        assert_eq!(chart.y_desc, "Error (top-1) %");
    }

    #[test]
    fn paper_overlay_draws_the_figure_networks_faintly() {
        let fig = figure(vec![series("inception_v4", 1, &[(30.0, 0.3)], "done")]);
        let chart = error_chart(&fig, &paper_curves(), true);
        let paper: Vec<_> = chart.lines.iter().filter(|l| l.opacity < 1.0).collect();
        assert_eq!(paper.len(), 3);
        assert_eq!(
            paper[0].legend.as_deref(),
            Some("Faint: the paper's curves (digitised)")
        );
        assert!(paper[1..]
            .iter()
            .all(|l| l.legend.is_none() && l.points.len() > 100));
        assert_eq!(
            chart.lines.last().unwrap().legend.as_deref(),
            Some("Inception-v4, ours")
        );
    }
}
