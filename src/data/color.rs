//! Colour adjustments on planar RGB float images in [0, 1], with TF's definitions
//! (`adjust_brightness`, `adjust_saturation`, `adjust_hue`, `adjust_contrast`).

/// One colour adjustment with its drawn parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum ColorOp {
    /// Adds a delta to every channel.
    Brightness(f32),
    /// Scales HSV saturation by a factor, clamped to [0, 1].
    Saturation(f32),
    /// Rotates HSV hue by a delta (in turns).
    Hue(f32),
    /// Moves each channel away from its image mean by a factor.
    Contrast(f32),
}

/// The three planes of a CHW image.
fn planes(chw: &mut [f32]) -> (&mut [f32], &mut [f32], &mut [f32]) {
    let n = chw.len() / 3;
    let (r, rest) = chw.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    (r, g, b)
}

/// Applies `op` to a planar RGB image in place.
pub(crate) fn apply(op: ColorOp, chw: &mut [f32]) {
    match op {
        ColorOp::Brightness(delta) => chw.iter_mut().for_each(|v| *v += delta),
        ColorOp::Saturation(factor) => {
            let (r, g, b) = planes(chw);
            for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
                saturate(r, g, b, factor);
            }
        }
        ColorOp::Hue(delta) => {
            let (r, g, b) = planes(chw);
            for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
                let (h, s, v) = rgb_to_hsv(*r, *g, *b);
                (*r, *g, *b) = hsv_to_rgb((h + delta).rem_euclid(1.0), s, v);
            }
        }
        ColorOp::Contrast(factor) => {
            let n = chw.len() / 3;
            for plane in chw.chunks_mut(n) {
                let mean = (plane.iter().map(|&v| v as f64).sum::<f64>() / n as f64) as f32;
                plane
                    .iter_mut()
                    .for_each(|v| *v = (*v - mean) * factor + mean);
            }
        }
    }
}

/// Saturation scaling through HSV without computing hue: with v = max and
/// s = (v - min) / v, every channel is `v - v * s * g(hue)`, so scaling s to s' maps a
/// channel c to `v - (v - c) * s' / s`. For v <= 0 TF sets s = 0, giving (v, v, v).
fn saturate(r: &mut f32, g: &mut f32, b: &mut f32, factor: f32) {
    let v = r.max(*g).max(*b);
    if v <= 0.0 {
        (*r, *g, *b) = (v, v, v);
        return;
    }
    let min = r.min(*g).min(*b);
    let s = (v - min) / v;
    if s <= 0.0 {
        return;
    }
    let k = (s * factor).clamp(0.0, 1.0) / s;
    *r = v - (v - *r) * k;
    *g = v - (v - *g) * k;
    *b = v - (v - *b) * k;
}

/// RGB to (hue in [0, 1), saturation, value), TF's convention.
pub(crate) fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let v = r.max(g).max(b);
    let delta = v - r.min(g).min(b);
    let s = if v > 0.0 { delta / v } else { 0.0 };
    if delta <= 0.0 {
        return (0.0, s, v);
    }
    let h = if v == r {
        (g - b) / delta
    } else if v == g {
        2.0 + (b - r) / delta
    } else {
        4.0 + (r - g) / delta
    };
    ((h / 6.0).rem_euclid(1.0), s, v)
}

/// (hue in turns, saturation, value) to RGB.
pub(crate) fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h * 6.0;
    // With t = (6h + k) mod 6, a channel is v * (1 - s * (1 - clamp(|t - 3| - 1, 0, 1))).
    let channel = |k: f32| {
        let t = (h6 + k).rem_euclid(6.0);
        let g = (t - 3.0).abs() - 1.0;
        v * (1.0 - s * (1.0 - g.clamp(0.0, 1.0)))
    };
    (channel(0.0), channel(4.0), channel(2.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(chw: &[f32], i: usize) -> [f32; 3] {
        let n = chw.len() / 3;
        [chw[i], chw[n + i], chw[2 * n + i]]
    }

    fn near(a: [f32; 3], b: [f32; 3]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn hsv_round_trip() {
        for rgb in [
            [0.9, 0.2, 0.1],
            [0.1, 0.8, 0.3],
            [0.2, 0.3, 0.95],
            [0.5, 0.5, 0.5],
            [1.0, 0.0, 1.0],
        ] {
            let (h, s, v) = rgb_to_hsv(rgb[0], rgb[1], rgb[2]);
            let (r, g, b) = hsv_to_rgb(h, s, v);
            assert!(
                near([r, g, b], rgb),
                "{rgb:?} -> {h},{s},{v} -> {r},{g},{b}"
            );
        }
        let (h, _, _) = rgb_to_hsv(0.0, 1.0, 0.0);
        assert!((h - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn saturation_matches_hsv_definition() {
        let mut img = vec![0.8, 0.4, 0.3, 0.2, 0.6, 0.2];
        apply(ColorOp::Saturation(0.5), &mut img);
        // Planar [r0, r1, g0, g1, b0, b1]: pixel 0 is (0.8, 0.3, 0.6).
        let (h, s, v) = rgb_to_hsv(0.8, 0.3, 0.6);
        let (r, g, b) = hsv_to_rgb(h, s * 0.5, v);
        assert!(near(px(&img, 0), [r, g, b]), "{:?}", px(&img, 0));
        // (0.4, 0.2, 0.2) has s = 0.5; a factor of 10 clamps s to 1.
        let mut img2 = vec![0.4, 0.2, 0.2];
        apply(ColorOp::Saturation(10.0), &mut img2);
        assert!(near(px(&img2, 0), [0.4, 0.0, 0.0]), "{img2:?}");
    }

    #[test]
    fn brightness_hue_contrast() {
        let mut img = vec![0.1, 0.5, 0.2, 0.2, 0.3, 0.3];
        apply(ColorOp::Brightness(0.1), &mut img);
        assert!(near(px(&img, 1), [0.6, 0.3, 0.4]));
        let mut red = vec![1.0, 0.0, 0.0];
        apply(ColorOp::Hue(1.0 / 3.0), &mut red);
        assert!(near(px(&red, 0), [0.0, 1.0, 0.0]), "{red:?}");
        let mut two = vec![0.2, 0.6, 0.5, 0.5, 0.0, 1.0];
        apply(ColorOp::Contrast(2.0), &mut two);
        assert!(
            near(px(&two, 0), [0.0, 0.5, -0.5]) && near(px(&two, 1), [0.8, 0.5, 1.5]),
            "{two:?}"
        );
    }
}
