//! Dashed and dash-dotted polylines for plotters: a path element that cuts itself into
//! dashes in pixel space, so a pattern looks the same at any axis scale and in any backend.

use plotters::element::{Drawable, PointCollection};
use plotters::style::ShapeStyle;
use plotters_backend::{BackendCoord, DrawingBackend, DrawingErrorKind};

/// A dash pattern in pixels: alternating "on" and "off" lengths; empty means solid.
pub type DashPattern = &'static [f64];

/// Solid line.
pub const SOLID: DashPattern = &[];
/// Dashed line.
pub const DASHED: DashPattern = &[9.0, 5.0];
/// Dash-dot line.
pub const DASH_DOT: DashPattern = &[10.0, 4.0, 2.0, 4.0];

/// A polyline drawn with a dash pattern.
pub struct PatternedPath<Coord> {
    points: Vec<Coord>,
    pattern: DashPattern,
    style: ShapeStyle,
}

impl<Coord> PatternedPath<Coord> {
    /// A polyline through `points` with `pattern` and `style`.
    pub fn new(points: Vec<Coord>, pattern: DashPattern, style: ShapeStyle) -> Self {
        Self {
            points,
            pattern,
            style,
        }
    }
}

impl<'a, Coord> PointCollection<'a, Coord> for &'a PatternedPath<Coord> {
    type Point = &'a Coord;
    type IntoIter = &'a [Coord];
    fn point_iter(self) -> &'a [Coord] {
        &self.points
    }
}

impl<Coord, DB: DrawingBackend> Drawable<DB> for PatternedPath<Coord> {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        points: I,
        backend: &mut DB,
        _: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        let points: Vec<(f64, f64)> = points.map(|(x, y)| (x as f64, y as f64)).collect();
        for dash in dashes(&points, self.pattern) {
            let dash = dash
                .into_iter()
                .map(|(x, y)| (x.round() as i32, y.round() as i32));
            backend.draw_path(dash, &self.style)?;
        }
        Ok(())
    }
}

/// Cuts a polyline into the "on" pieces of `pattern` (lengths along the line, carried over
/// vertices). A solid pattern returns the polyline whole.
pub fn dashes(points: &[(f64, f64)], pattern: DashPattern) -> Vec<Vec<(f64, f64)>> {
    if pattern.is_empty() || pattern.iter().sum::<f64>() <= 0.0 {
        return vec![points.to_vec()];
    }
    let mut pieces = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    let mut index = 0; // position in the pattern; even = on
    let mut left = pattern[0]; // length left in the current pattern entry
    if let Some(&first) = points.first() {
        current.push(first);
    }
    for pair in points.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let length = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        let mut done = 0.0;
        while length - done > left {
            done += left;
            let t = done / length;
            let p = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
            if index % 2 == 0 {
                push_distinct(&mut current, p);
                pieces.push(std::mem::take(&mut current));
            } else {
                current = vec![p];
            }
            index = (index + 1) % pattern.len();
            left = pattern[index];
        }
        left -= length - done;
        if index % 2 == 0 {
            push_distinct(&mut current, b);
        }
    }
    if index % 2 == 0 && current.len() > 1 {
        pieces.push(current);
    }
    pieces
}

/// Appends `p` unless it repeats the last point.
fn push_distinct(line: &mut Vec<(f64, f64)>, p: (f64, f64)) {
    if line.last() != Some(&p) {
        line.push(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solid_pattern_keeps_the_polyline() {
        let line = vec![(0.0, 0.0), (3.0, 4.0), (6.0, 0.0)];
        assert_eq!(dashes(&line, SOLID), vec![line]);
    }

    #[test]
    fn dashes_follow_the_pattern_across_vertices() {
        // 10 px right, then 10 px down; pattern 4 on, 2 off.
        let line = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0)];
        let pieces = dashes(&line, &[4.0, 2.0]);
        let expected = vec![
            vec![(0.0, 0.0), (4.0, 0.0)],
            vec![(6.0, 0.0), (10.0, 0.0)],
            vec![(10.0, 2.0), (10.0, 6.0)],
            vec![(10.0, 8.0), (10.0, 10.0)],
        ];
        assert_eq!(pieces.len(), expected.len(), "{pieces:?}");
        for (piece, want) in pieces.iter().zip(&expected) {
            assert_eq!(piece.len(), want.len(), "{pieces:?}");
            for (p, q) in piece.iter().zip(want) {
                assert!(
                    (p.0 - q.0).abs() < 1e-9 && (p.1 - q.1).abs() < 1e-9,
                    "{pieces:?}"
                );
            }
        }
    }

    #[test]
    fn a_dash_spanning_a_vertex_bends_with_the_line() {
        let line = [(0.0, 0.0), (3.0, 0.0), (3.0, 3.0)];
        let pieces = dashes(&line, &[5.0, 1.0]);
        assert_eq!(pieces[0], vec![(0.0, 0.0), (3.0, 0.0), (3.0, 2.0)]);
        assert_eq!(pieces.len(), 1, "the last 0 px after the gap draw nothing");
    }
}
