//! A line chart in the paper's style (grid, axis titles, legend inside the plot), drawn
//! with plotters; the error curves and the runs' plots are all made of it.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::dash::PatternedPath;
use super::figure_file::Drawing;
use super::stats::Curve;
use super::style::{LineLook, FONT_FAMILY};

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartLine {
    /// The points, sorted by x.
    pub points: Curve,
    /// Colour and dash pattern.
    pub look: LineLook,
    /// Stroke width in pixels.
    pub width: u32,
    /// Opacity in [0, 1]: faint lines (single seeds, the paper's curves) are light.
    pub opacity: f64,
    /// Legend text; `None` keeps the line out of the legend.
    pub legend: Option<String>,
}

/// A line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Title above the plot.
    pub title: String,
    /// x axis title.
    pub x_desc: String,
    /// y axis title.
    pub y_desc: String,
    /// Lines, drawn in order (faint ones first reads best).
    pub lines: Vec<ChartLine>,
    /// Whether the y axis starts at 0 (throughput, learning rate) rather than fitting the data.
    pub y_from_zero: bool,
    /// Shown in the plot when no line has a point.
    pub empty_note: String,
}

impl LineChart {
    /// The x and y ranges that fit every line, padded so that lines do not touch the frame.
    fn ranges(&self) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
        let points = || self.lines.iter().flat_map(|l| l.points.iter());
        let (mut x0, mut x1, mut y0, mut y1) = points().fold(
            (
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ),
            |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
        );
        if !x0.is_finite() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        if x1 - x0 < 1e-9 {
            (x0, x1) = (x0 - 0.5, x1 + 0.5);
        }
        if self.y_from_zero {
            y0 = y0.min(0.0);
        }
        let pad = ((y1 - y0) * 0.06).max(y1.abs() * 0.01).max(1e-9);
        let y0 = if self.y_from_zero && y0 >= 0.0 {
            0.0
        } else {
            y0 - pad
        };
        (x0..x1, y0..y1 + pad)
    }
}

/// A tick label with as many decimals as ticks `span` apart need.
fn tick_label(value: f64, span: f64) -> String {
    let step = span / 8.0;
    let decimals = if step > 0.0 {
        (-step.log10()).ceil().clamp(0.0, 8.0) as usize
    } else {
        0
    };
    format!("{value:.decimals$}")
}

impl Drawing for LineChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (xr, yr) = self.ranges();
        let (x_span, y_span) = (xr.end - xr.start, yr.end - yr.start);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT_FAMILY, 27))
            .margin(14)
            .x_label_area_size(60)
            .y_label_area_size(84)
            .build_cartesian_2d(xr, yr)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .axis_desc_style((FONT_FAMILY, 23))
            .label_style((FONT_FAMILY, 20))
            .x_label_formatter(&|v| tick_label(*v, x_span))
            .y_label_formatter(&|v| tick_label(*v, y_span))
            .bold_line_style(BLACK.mix(0.18))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(|e| err(&e))?;

        let mut legend_entries = 0;
        // A line without points may still have a legend entry (a run not yet evaluated).
        for line in &self.lines {
            let style = line.look.color.mix(line.opacity).stroke_width(line.width);
            let pattern = line.look.pattern;
            let anno = chart
                .draw_series(std::iter::once(PatternedPath::new(
                    line.points.clone(),
                    pattern,
                    style,
                )))
                .map_err(|e| err(&e))?;
            if let Some(text) = &line.legend {
                legend_entries += 1;
                anno.label(text.as_str()).legend(move |(x, y)| {
                    PatternedPath::new(vec![(x, y), (x + 30, y)], pattern, style)
                });
            }
        }
        if legend_entries > 0 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .legend_area_size(38)
                .margin(12)
                .label_font((FONT_FAMILY, 18))
                .background_style(WHITE.mix(0.75))
                .border_style(BLACK.mix(0.4))
                .draw()
                .map_err(|e| err(&e))?;
        }
        if self.lines.iter().all(|l| l.points.is_empty()) {
            let (w, h) = root.dim_in_pixel();
            let grey = BLACK.mix(0.6);
            let style = TextStyle::from((FONT_FAMILY, 26).into_font())
                .color(&grey)
                .pos(Pos::new(HPos::Center, VPos::Center));
            root.draw_text(&self.empty_note, &style, (w as i32 / 2, h as i32 / 2))
                .map_err(|e| err(&e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::dash::SOLID;

    fn line(points: Curve) -> ChartLine {
        ChartLine {
            points,
            look: LineLook {
                color: BLACK,
                pattern: SOLID,
            },
            width: 2,
            opacity: 1.0,
            legend: None,
        }
    }

    fn chart(lines: Vec<ChartLine>, y_from_zero: bool) -> LineChart {
        LineChart {
            title: String::new(),
            x_desc: String::new(),
            y_desc: String::new(),
            lines,
            y_from_zero,
            empty_note: String::new(),
        }
    }

    #[test]
    fn ranges_fit_the_data_with_padding() {
        let c = chart(vec![line(vec![(0.5, 80.0), (3.0, 60.0)])], false);
        let (x, y) = c.ranges();
        assert_eq!(x, 0.5..3.0);
        assert!(y.start < 60.0 && y.start > 55.0 && y.end > 80.0 && y.end < 85.0);
        let (_, y) = chart(vec![line(vec![(0.0, 100.0), (1.0, 120.0)])], true).ranges();
        assert_eq!(y.start, 0.0);
    }

    #[test]
    fn degenerate_ranges_are_widened() {
        let (x, _) = chart(vec![line(vec![(2.0, 50.0)])], false).ranges();
        assert_eq!(x, 1.5..2.5);
        let (x, y) = chart(vec![], false).ranges();
        assert!(x.end > x.start && y.end > y.start);
    }

    #[test]
    fn tick_labels_carry_enough_decimals() {
        assert_eq!(tick_label(20.0, 140.0), "20");
        assert_eq!(tick_label(0.5, 3.0), "0.5");
        assert_eq!(tick_label(0.045, 0.05), "0.045");
    }
}
