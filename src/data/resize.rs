//! Separable resampling of a source window to a fixed output size, with TF's legacy
//! coordinate mapping.
//!
//! We implement TF 1.x `resize_bilinear` / `resize_bicubic` with `align_corners=False`
//! and `half_pixel_centers=False` (the only behaviour TF had when TF-slim's Inception
//! preprocessing and checkpoints were made): output pixel `o` samples source coordinate
//! `x0 + o * w / out_w`, where the window starts at `x0` and is `w` wide. Bilinear reads
//! `floor` and `floor + 1`; bicubic reads four taps with the Keys kernel, a = -0.75 (TF's
//! legacy bicubic). Tap indices are clamped to a pixel range: the crop's own pixels for
//! crop-then-resize (TF's slice followed by resize), the whole image for
//! resize-then-crop. Neither filter is antialiased, as in TF.

use super::crops::{Crop, CropOrder};
use super::decode::RgbImage;

/// Interpolation used when resizing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// Two-tap linear in each axis (TF `resize_bilinear`).
    Bilinear,
    /// Four-tap cubic convolution, a = -0.75 (TF legacy `resize_bicubic`).
    Bicubic,
}

/// Per-output-coordinate tap indices and weights along one axis.
struct AxisTaps<const N: usize> {
    index: Vec<[usize; N]>,
    weight: Vec<[f32; N]>,
}

fn keys_cubic(t: f64) -> f64 {
    const A: f64 = -0.75;
    let t = t.abs();
    if t <= 1.0 {
        ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0
    } else if t < 2.0 {
        ((A * t - 5.0 * A) * t + 8.0 * A) * t - 4.0 * A
    } else {
        0.0
    }
}

impl<const N: usize> AxisTaps<N> {
    /// Taps for `n_out` outputs sampling `[start, start + len)`, indices clamped to
    /// `[lo, hi]`, weights multiplied by `gain`; `mirror` reverses the output order.
    fn new(
        start: f64,
        len: f64,
        n_out: usize,
        lo: usize,
        hi: usize,
        gain: f32,
        mirror: bool,
    ) -> Self {
        let scale = len / n_out as f64;
        let mut index = Vec::with_capacity(n_out);
        let mut weight = Vec::with_capacity(n_out);
        for o in 0..n_out {
            let o = if mirror { n_out - 1 - o } else { o };
            let pos = start + o as f64 * scale;
            let base = pos.floor();
            let frac = pos - base;
            let mut idx = [0usize; N];
            let mut w = [0f32; N];
            for (k, (i, wk)) in idx.iter_mut().zip(&mut w).enumerate() {
                // N = 2: taps base, base+1; N = 4: taps base-1 ..= base+2.
                let offset = k as f64 - (N as f64 / 2.0 - 1.0);
                *i = (base + offset).clamp(lo as f64, hi as f64) as usize;
                let kernel = if N == 2 {
                    1.0 - (frac - offset).abs()
                } else {
                    keys_cubic(frac - offset)
                };
                *wk = kernel as f32 * gain;
            }
            index.push(idx);
            weight.push(w);
        }
        AxisTaps { index, weight }
    }

    fn span(&self) -> (usize, usize) {
        let flat = self.index.iter().flatten();
        (*flat.clone().min().unwrap_or(&0), *flat.max().unwrap_or(&0))
    }
}

/// The pixel range [lo, hi] taps may read along one axis.
fn clamp_range(start: f64, len: f64, size: u32, order: CropOrder) -> (usize, usize) {
    let last = size as usize - 1;
    match order {
        CropOrder::ResizeThenCrop => (0, last),
        CropOrder::CropThenResize => {
            let lo = (start.floor().max(0.0) as usize).min(last);
            let hi = ((start + len).ceil() as usize)
                .saturating_sub(1)
                .clamp(lo, last);
            (lo, hi)
        }
    }
}

/// Resamples `crop` of `src` to `out_w x out_h`, writing planar RGB (CHW,
/// `3 * out_h * out_w` values) in [0, 1] (bicubic may overshoot slightly, as in TF),
/// flipped horizontally if the crop says so.
pub fn resample_chw(
    src: &RgbImage,
    crop: &Crop,
    out_w: usize,
    out_h: usize,
    interpolation: Interpolation,
    out: &mut [f32],
) {
    match interpolation {
        Interpolation::Bilinear => resample::<2>(src, crop, out_w, out_h, out),
        Interpolation::Bicubic => resample::<4>(src, crop, out_w, out_h, out),
    }
}

fn resample<const N: usize>(
    src: &RgbImage,
    crop: &Crop,
    out_w: usize,
    out_h: usize,
    out: &mut [f32],
) {
    let Crop {
        bbox,
        mirror,
        order,
    } = *crop;
    assert_eq!(out.len(), 3 * out_w * out_h, "output buffer size");
    let (xlo, xhi) = clamp_range(bbox.x, bbox.w, src.width, order);
    let (ylo, yhi) = clamp_range(bbox.y, bbox.h, src.height, order);
    let xt = AxisTaps::<N>::new(bbox.x, bbox.w, out_w, xlo, xhi, 1.0 / 255.0, mirror);
    let yt = AxisTaps::<N>::new(bbox.y, bbox.h, out_h, ylo, yhi, 1.0, false);
    let (c0, c1) = xt.span();
    let span = c1 - c0 + 1;
    // Column indices relative to the span, times 3 (interleaved channels).
    let xoff: Vec<[usize; N]> = xt
        .index
        .iter()
        .map(|idx| idx.map(|i| (i - c0) * 3))
        .collect();
    let stride = src.width as usize * 3;
    let plane = out_w * out_h;
    let mut row = vec![0f32; span * 3];
    let (r_out, rest) = out.split_at_mut(plane);
    let (g_out, b_out) = rest.split_at_mut(plane);
    for oy in 0..out_h {
        // Vertical pass over the needed columns.
        let rows: [&[u8]; N] =
            yt.index[oy].map(|y| &src.pixels[y * stride + c0 * 3..y * stride + (c1 + 1) * 3]);
        let wy = yt.weight[oy];
        row.fill(0.0);
        for (src_row, &w) in rows.iter().zip(&wy) {
            for (acc, &p) in row.iter_mut().zip(src_row.iter()) {
                *acc += w * p as f32;
            }
        }
        // Horizontal pass into the three planes.
        let line = oy * out_w..(oy + 1) * out_w;
        let (r_line, g_line, b_line) = (
            &mut r_out[line.clone()],
            &mut g_out[line.clone()],
            &mut b_out[line],
        );
        for ox in 0..out_w {
            let (offs, wx) = (&xoff[ox], &xt.weight[ox]);
            let (mut r, mut g, mut b) = (0f32, 0f32, 0f32);
            for k in 0..N {
                let o = offs[k];
                r += wx[k] * row[o];
                g += wx[k] * row[o + 1];
                b += wx[k] * row[o + 2];
            }
            r_line[ox] = r;
            g_line[ox] = g;
            b_line[ox] = b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(width: u32, height: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> RgbImage {
        let mut pixels = Vec::new();
        for y in 0..height {
            for x in 0..width {
                pixels.extend_from_slice(&f(x, y));
            }
        }
        RgbImage {
            width,
            height,
            pixels,
        }
    }

    use crate::data::crops::CropBox;

    fn whole(img: &RgbImage) -> CropBox {
        CropBox {
            x: 0.0,
            y: 0.0,
            w: img.width as f64,
            h: img.height as f64,
        }
    }

    /// Resamples `crop` to `w x h`; values scaled back to 0..255.
    fn run(img: &RgbImage, crop: Crop, w: usize, h: usize, interp: Interpolation) -> Vec<f32> {
        let mut out = vec![0f32; 3 * w * h];
        resample_chw(img, &crop, w, h, interp, &mut out);
        out.iter().map(|v| v * 255.0).collect()
    }

    fn plain(bbox: CropBox) -> Crop {
        Crop {
            bbox,
            mirror: false,
            order: CropOrder::CropThenResize,
        }
    }

    #[test]
    fn bilinear_matches_legacy_tf_mapping() {
        // A 4x1 ramp 0, 100, 200, 250 upsampled to 8: legacy positions o * 0.5.
        let img = image(4, 1, |x, _| {
            let v = [0, 100, 200, 250][x as usize];
            [v, v, v]
        });
        let out = run(&img, plain(whole(&img)), 8, 1, Interpolation::Bilinear);
        let expect = [0.0, 50.0, 100.0, 150.0, 200.0, 225.0, 250.0, 250.0];
        for (o, e) in out[..8].iter().zip(expect) {
            assert!((o - e).abs() < 1e-3, "{out:?}");
        }
        // Downsampling 4 -> 2 takes pixels 0 and 2 exactly (no half-pixel offset).
        let out = run(&img, plain(whole(&img)), 2, 1, Interpolation::Bilinear);
        assert!(
            (out[0] - 0.0).abs() < 1e-3 && (out[1] - 200.0).abs() < 1e-3,
            "{out:?}"
        );
        // Mirrored output is the reversed row.
        let m = run(
            &img,
            Crop {
                bbox: whole(&img),
                mirror: true,
                order: CropOrder::CropThenResize,
            },
            8,
            1,
            Interpolation::Bilinear,
        );
        for (o, e) in m[..8].iter().zip(expect.iter().rev()) {
            assert!((o - e).abs() < 1e-3, "{m:?}");
        }
    }

    #[test]
    fn channels_are_planar_and_vertical_axis_interpolates() {
        let img = image(2, 2, |x, y| [(x * 100) as u8, (y * 200) as u8, 7]);
        let out = run(&img, plain(whole(&img)), 2, 4, Interpolation::Bilinear);
        // R plane: x-dependent only; G plane: y positions 0, .5, 1, 1.5 (clamped).
        assert!((out[0] - 0.0).abs() < 1e-3 && (out[1] - 100.0).abs() < 1e-3);
        let g: Vec<f32> = out[8..16].iter().step_by(2).copied().collect();
        for (v, e) in g.iter().zip([0.0, 100.0, 200.0, 200.0]) {
            assert!((v - e).abs() < 1e-3, "{g:?}");
        }
        assert!(out[16..].iter().all(|v| (v - 7.0).abs() < 1e-3));
    }

    #[test]
    fn crop_then_resize_clamps_to_the_crop_resize_then_crop_does_not() {
        // Columns 0..4 = 0, 10, 20, 30; window = columns 1..3, upsampled to 4 outputs.
        let img = image(4, 1, |x, _| [(x * 10) as u8; 3]);
        let bbox = CropBox {
            x: 1.0,
            y: 0.0,
            w: 2.0,
            h: 1.0,
        };
        let inside = run(&img, plain(bbox), 4, 1, Interpolation::Bilinear);
        let beyond = run(
            &img,
            Crop {
                bbox,
                mirror: false,
                order: CropOrder::ResizeThenCrop,
            },
            4,
            1,
            Interpolation::Bilinear,
        );
        assert!((inside[3] - 20.0).abs() < 1e-3, "{inside:?}"); // position 2.5 clamps to column 2
        assert!((beyond[3] - 25.0).abs() < 1e-3, "{beyond:?}"); // reads column 3
    }

    #[test]
    fn bicubic_is_exact_on_constant_and_linear_interior() {
        let img = image(8, 8, |x, _| [(x * 20) as u8, 90, 90]);
        let out = run(&img, plain(whole(&img)), 16, 16, Interpolation::Bicubic);
        // Outputs at whole and half source pixels reproduce a linear ramp (the kernel is
        // symmetric there); constant planes stay constant.
        for ox in 2..12 {
            let expect = ox as f32 * 0.5 * 20.0;
            assert!(
                (out[5 * 16 + ox] - expect).abs() < 1e-2,
                "x {ox}: {}",
                out[5 * 16 + ox]
            );
        }
        assert!(out[256..].iter().all(|v| (v - 90.0).abs() < 1e-2));
    }
}
