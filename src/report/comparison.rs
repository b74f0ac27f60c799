//! Two or more groups of runs drawn in one chart: each run faint, each group's mean bold, one
//! colour per group. Used to lay repro's curves over a reference trainer's (`repro curves`).

use std::path::{Path, PathBuf};

use plotters::style::RGBColor;

use super::chart::{ChartLine, LineChart};
use super::dash::{DASHED, DASH_DOT, SOLID};
use super::figure_file::write_figure;
use super::stats::{mean_curve, Curve};
use super::style::LineLook;
use super::ReportError;

/// The runs of one group (e.g. "repro" or "timm"), each a curve.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveGroup {
    pub label: String,
    pub curves: Vec<Curve>,
}

/// One comparison chart.
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonChart {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub groups: Vec<CurveGroup>,
}

const GROUP_LOOKS: [LineLook; 4] = [
    LineLook {
        color: RGBColor(220, 0, 0),
        pattern: SOLID,
    },
    LineLook {
        color: RGBColor(0, 0, 230),
        pattern: DASHED,
    },
    LineLook {
        color: RGBColor(0, 150, 0),
        pattern: DASH_DOT,
    },
    LineLook {
        color: RGBColor(230, 140, 0),
        pattern: SOLID,
    },
];

/// Draws `chart` into `<dir>/<stem>.png` and `.svg`; returns the PNG's path.
pub fn write_comparison(
    dir: &Path,
    stem: &str,
    chart: &ComparisonChart,
) -> Result<PathBuf, ReportError> {
    let mut lines = Vec::new();
    for (group, look) in chart.groups.iter().zip(GROUP_LOOKS.iter().cycle()) {
        for curve in &group.curves {
            lines.push(ChartLine {
                points: curve.clone(),
                look: *look,
                width: 1,
                opacity: 0.35,
                legend: None,
            });
        }
    }
    for (group, look) in chart.groups.iter().zip(GROUP_LOOKS.iter().cycle()) {
        let n = group.curves.len();
        lines.push(ChartLine {
            points: mean_curve(&group.curves),
            look: *look,
            width: 3,
            opacity: 1.0,
            legend: Some(match n {
                1 => format!("{} (one run)", group.label),
                n => format!("{} (mean of {n} seeds)", group.label),
            }),
        });
    }
    let drawing = LineChart {
        title: chart.title.clone(),
        x_desc: chart.x_desc.clone(),
        y_desc: chart.y_desc.clone(),
        lines,
        y_from_zero: false,
        empty_note: "no data".into(),
    };
    std::fs::create_dir_all(dir).map_err(|source| ReportError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(write_figure(dir, stem, &drawing)?.png)
}
