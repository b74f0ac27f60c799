//! Per-run plots: the learning-rate schedule against epoch and the training throughput
//! (images/s) against wall-clock time.

use plotters::style::RGBColor;

use super::chart::{ChartLine, LineChart};
use super::dash::SOLID;
use super::input::RunInfo;
use super::style::LineLook;

const LINE: LineLook = LineLook {
    color: RGBColor(0, 70, 160),
    pattern: SOLID,
};

fn single_line(points: Vec<(f64, f64)>) -> Vec<ChartLine> {
    vec![ChartLine {
        points,
        look: LINE,
        width: 2,
        opacity: 1.0,
        legend: None,
    }]
}

/// The learning rate against epoch: the schedule when the run's is given, otherwise the
/// recorded rates as a staircase (each holds until the next row, as the paper's schedule
/// does between its steps).
pub fn lr_chart(run: &RunInfo) -> LineChart {
    let mut points: Vec<(f64, f64)> = Vec::new();
    if !run.lr_schedule.is_empty() {
        points = run.lr_schedule.clone();
    } else {
        for r in &run.metrics {
            if let Some(&(_, previous)) = points.last() {
                points.push((r.epoch, previous));
            }
            points.push((r.epoch, r.lr));
        }
    }
    LineChart {
        title: format!("{}: learning rate", run.name),
        x_desc: "Epoch".to_string(),
        y_desc: "Learning rate".to_string(),
        lines: single_line(points),
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

/// Training throughput at each metrics row against wall-clock time since the start.
pub fn throughput_chart(run: &RunInfo) -> LineChart {
    let last = run.metrics.iter().map(|r| r.wall_s).fold(0.0, f64::max);
    let (unit, per_unit) = time_unit(last);
    LineChart {
        title: format!("{}: training throughput", run.name),
        x_desc: format!("Wall-clock time ({unit})"),
        y_desc: "Images/s".to_string(),
        lines: single_line(
            run.metrics
                .iter()
                .map(|r| (r.wall_s / per_unit, r.images_per_s))
                .collect(),
        ),
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
            hash: "abc".to_string(),
            config_yaml: String::new(),
            provenance: None,
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
                })
                .collect(),
        }
    }

    #[test]
    fn throughput_axis_uses_a_readable_unit() {
        let chart = throughput_chart(&run(&[0.0, 7200.0, 14400.0]));
        assert_eq!(chart.x_desc, "Wall-clock time (h)");
        assert_eq!(chart.lines[0].points[2], (4.0, 102.0));
        assert_eq!(
            throughput_chart(&run(&[10.0])).x_desc,
            "Wall-clock time (s)"
        );
    }

    #[test]
    fn lr_chart_follows_the_schedule() {
        let chart = lr_chart(&run(&[1.0, 2.0]));
        let lr1 = 0.045 * 0.94;
        assert_eq!(
            chart.lines[0].points,
            vec![(0.0, 0.045), (1.0, 0.045), (1.0, lr1)]
        );
        assert_eq!(chart.y_desc, "Learning rate");
    }
}
