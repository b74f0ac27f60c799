//! Small statistics over curves and seeds: mean, standard deviation, interpolation and the
//! mean of several curves.

/// A curve: (x, y) points sorted by x.
pub type Curve = Vec<(f64, f64)>;

/// The arithmetic mean; `None` for no values.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The largest value minus the smallest; `None` for no values.
pub fn range(values: &[f64]) -> Option<f64> {
    let max = values.iter().copied().reduce(f64::max)?;
    let min = values.iter().copied().reduce(f64::min)?;
    Some(max - min)
}

/// The sample standard deviation (n − 1); `None` for fewer than two values.
pub fn sample_sd(values: &[f64]) -> Option<f64> {
    let m = mean(values)?;
    (values.len() > 1).then(|| {
        let ss: f64 = values.iter().map(|v| (v - m).powi(2)).sum();
        (ss / (values.len() - 1) as f64).sqrt()
    })
}

/// The curve's value at `x` by linear interpolation; `None` outside its x range.
pub fn interpolate(curve: &[(f64, f64)], x: f64) -> Option<f64> {
    let (first, last) = (curve.first()?, curve.last()?);
    if x < first.0 - X_TOLERANCE || x > last.0 + X_TOLERANCE {
        return None;
    }
    let i = curve.partition_point(|p| p.0 < x - X_TOLERANCE);
    let hi = curve.get(i).unwrap_or(last);
    if (hi.0 - x).abs() <= X_TOLERANCE || i == 0 {
        return Some(hi.1);
    }
    let lo = curve[i - 1];
    let t = (x - lo.0) / (hi.0 - lo.0);
    Some(lo.1 + (hi.1 - lo.1) * t)
}

/// x values closer than this count as equal (epochs are fractional, written as f64).
const X_TOLERANCE: f64 = 1e-6;

/// The pointwise mean of several curves, at every x of any of them that lies inside all of
/// them (so a seed that stopped early ends the mean there).
pub fn mean_curve(curves: &[Curve]) -> Curve {
    let mut xs: Vec<f64> = curves.iter().flatten().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup_by(|a, b| (*a - *b).abs() <= X_TOLERANCE);
    xs.into_iter()
        .filter_map(|x| {
            let ys: Option<Vec<f64>> = curves.iter().map(|c| interpolate(c, x)).collect();
            Some((x, mean(&ys?)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_sd_and_range() {
        assert_eq!(mean(&[]), None);
        assert_eq!(mean(&[1.0, 2.0, 3.0]), Some(2.0));
        assert_eq!(sample_sd(&[5.0]), None);
        assert!((sample_sd(&[1.0, 2.0, 3.0]).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(range(&[]), None);
        assert_eq!(range(&[4.0]), Some(0.0));
        assert_eq!(range(&[3.0, -1.0, 2.5]), Some(4.0));
    }

    #[test]
    fn interpolation_inside_and_outside() {
        let c = vec![(1.0, 10.0), (3.0, 30.0)];
        assert_eq!(interpolate(&c, 2.0), Some(20.0));
        assert_eq!(interpolate(&c, 1.0), Some(10.0));
        assert_eq!(interpolate(&c, 3.0), Some(30.0));
        assert_eq!(interpolate(&c, 0.5), None);
        assert_eq!(interpolate(&c, 3.5), None);
        assert_eq!(interpolate(&[], 1.0), None);
    }

    #[test]
    fn mean_curve_stops_where_a_curve_stops() {
        let a = vec![(1.0, 10.0), (2.0, 20.0), (3.0, 30.0)];
        let b = vec![(1.0, 30.0), (2.0, 40.0)];
        assert_eq!(mean_curve(&[a, b]), vec![(1.0, 20.0), (2.0, 30.0)]);
    }
}
