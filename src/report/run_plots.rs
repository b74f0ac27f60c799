//! The plots of an experiment's runs, all runs in one chart each: the learning-rate
//! schedules against epoch and the training throughput (images/s) against wall-clock time.

use plotters::style::RGBColor;

use super::chart::{ChartLine, LineChart};
use super::dash::SOLID;
use super::input::RunInfo;
use super::stats::Curve;
use super::style::{line_looks, network_name, LineLook};

/// Colours of the learning-rate schedules, in order of appearance.
const SCHEDULE_COLORS: [RGBColor; 4] = [
    RGBColor(0, 70, 160),
    RGBColor(200, 30, 30),
    RGBColor(0, 140, 60),
    RGBColor(140, 60, 170),
];

/// A run's learning rate against epoch: the schedule when given, otherwise the recorded
/// rates as a staircase (each holds until the next row, as the paper's schedule does
/// between its steps).
fn lr_points(run: &RunInfo) -> Curve {
    if !run.lr_schedule.is_empty() {
        return run.lr_schedule.clone();
    }
    let mut points: Vec<(f64, f64)> = Vec::new();
    for r in &run.metrics {
        if let Some(&(_, previous)) = points.last() {
            points.push((r.epoch, previous));
        }
        points.push((r.epoch, r.lr));
    }
    points
}

/// "a", "a and b", "a, b and 3 more".
fn run_list(names: &[&str]) -> String {
    match names {
        [one] => one.to_string(),
        [a, b] => format!("{a} and {b}"),
        [a, b, rest @ ..] => format!("{a}, {b} and {} more", rest.len()),
        [] => String::new(),
    }
}

/// The learning rate against epoch of every run, one line per distinct schedule (runs
/// sharing one are named in its legend).
pub fn lr_chart(runs: &[RunInfo]) -> LineChart {
    let mut schedules: Vec<(Curve, Vec<&str>)> = Vec::new();
    for run in runs {
        let points = lr_points(run);
        match schedules.iter_mut().find(|(p, _)| *p == points) {
            Some((_, names)) => names.push(&run.name),
            None => schedules.push((points, vec![&run.name])),
        }
    }
    let several = schedules.len() > 1;
    let lines = schedules
        .into_iter()
        .filter(|(points, _)| !points.is_empty())
        .enumerate()
        .map(|(i, (points, names))| ChartLine {
            points,
            look: LineLook {
                color: SCHEDULE_COLORS[i % SCHEDULE_COLORS.len()],
                pattern: SOLID,
            },
            width: 2,
            opacity: 1.0,
            legend: several.then(|| run_list(&names)),
        })
        .collect();
    LineChart {
        title: "Learning-rate schedule".to_string(),
        x_desc: "Epoch".to_string(),
        y_desc: "Learning rate".to_string(),
        lines,
        y_from_zero: true,
        empty_note: "no metrics yet".to_string(),
    }
}

/// A time unit that keeps the axis numbers readable for a run lasting `seconds`.
fn time_unit(seconds: f64) -> (&'static str, f64) {
    if seconds < 180.0 {
        ("s", 1.0)
    } else if seconds < 3.0 * 3600.0 {
        ("min", 60.0)
    } else {
        ("h", 3600.0)
    }
}

/// Training throughput at each metrics row against wall-clock time since the start of
/// the run, one line per run in its network's colour (one legend entry per network).
pub fn throughput_chart(runs: &[RunInfo]) -> LineChart {
    let last = runs
        .iter()
        .flat_map(|r| &r.metrics)
        .map(|r| r.wall_s)
        .fold(0.0, f64::max);
    let (unit, per_unit) = time_unit(last);
    let mut networks: Vec<&str> = Vec::new();
    for run in runs {
        if !networks.contains(&run.network.as_str()) {
            networks.push(&run.network);
        }
    }
    let looks = line_looks(&networks);
    let lines = runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let n = networks
                .iter()
                .position(|n| *n == run.network)
                .expect("collected above");
            let first = runs[..i].iter().all(|r| r.network != run.network);
            let count = runs.iter().filter(|r| r.network == run.network).count();
            ChartLine {
                points: run
                    .metrics
                    .iter()
                    .map(|r| (r.wall_s / per_unit, r.images_per_s))
                    .collect(),
                look: looks[n],
                width: 2,
                opacity: 0.8,
                legend: first.then(|| match count {
                    1 => network_name(&run.network),
                    _ => format!("{} ({count} runs)", network_name(&run.network)),
                }),
            }
        })
        .collect();
    LineChart {
        title: "Training throughput".to_string(),
        x_desc: format!("Wall-clock time since the run started ({unit})"),
        y_desc: "Images/s".to_string(),
        lines,
        y_from_zero: true,
        empty_note: "no metrics yet".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MetricsRow;

    fn run(wall: &[f64]) -> RunInfo {
        RunInfo {
            name: "inception_v4-seed1".to_string(),
            network: "inception_v4".to_string(),
            hash: "abc".to_string(),
            config_yaml: String::new(),
            provenance: None,
            status: String::new(),
            lr_schedule: Vec::new(),
            metrics: wall
                .iter()
                .enumerate()
                .map(|(i, &wall_s)| MetricsRow {
                    epoch: i as f64,
                    step: i as u64,
                    images_seen: 0,
                    lr: 0.045 * 0.94f64.powi(i as i32),
                    train_loss: 1.0,
                    top1_err: None,
                    top5_err: None,
                    eval_images: 0,
                    images_per_s: 100.0 + i as f64,
                    wall_s,
                    pre_pool_zero_frac: None,
                    pre_pool_dead_channel_frac: None,
                })
                .collect(),
        }
    }

    #[test]
    fn throughput_axis_uses_a_readable_unit() {
        let chart = throughput_chart(&[run(&[0.0, 7200.0, 14400.0])]);
        assert_eq!(chart.x_desc, "Wall-clock time since the run started (h)");
        assert_eq!(chart.lines[0].points[2], (4.0, 102.0));
        assert_eq!(
            throughput_chart(&[run(&[10.0])]).x_desc,
            "Wall-clock time since the run started (s)"
        );
    }

    #[test]
    fn lr_chart_follows_the_schedule() {
        let chart = lr_chart(&[run(&[1.0, 2.0])]);
        let lr1 = 0.045 * 0.94;
        assert_eq!(
            chart.lines[0].points,
            vec![(0.0, 0.045), (1.0, 0.045), (1.0, lr1)]
        );
        assert_eq!(chart.y_desc, "Learning rate");
        assert_eq!(chart.lines[0].legend, None, "one schedule needs no legend");
    }

    #[test]
    fn runs_sharing_a_schedule_share_a_line_and_networks_share_a_colour() {
        let mut a = run(&[1.0, 2.0]);
        a.name = "a".into();
        let mut b = run(&[1.0, 2.0]);
        b.name = "b".into();
        let mut c = run(&[1.0, 2.0, 3.0]);
        c.name = "c".into();
        c.network = "inception_resnet_v2".into();
        let lr = lr_chart(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(lr.lines.len(), 2);
        assert_eq!(lr.lines[0].legend.as_deref(), Some("a and b"));
        assert_eq!(lr.lines[1].legend.as_deref(), Some("c"));
        let speed = throughput_chart(&[a, b, c]);
        assert_eq!(speed.lines.len(), 3);
        assert_eq!(speed.lines[0].look, speed.lines[1].look);
        assert_ne!(speed.lines[0].look, speed.lines[2].look);
        let legends: Vec<Option<&str>> = speed.lines.iter().map(|l| l.legend.as_deref()).collect();
        assert_eq!(
            legends,
            [
                Some("Inception-v4 (2 runs)"),
                None,
                Some("Inception-ResNet-v2")
            ]
        );
    }
}
