//! The paper's preprocessing, as in TF-slim's `inception_preprocessing.py`.
//!
//! Training: distorted-bounding-box crop, bilinear resize, random horizontal flip,
//! colour distortion, clip to [0, 1], scale to [-1, 1]. Evaluation: central crop and
//! resize, scale to [-1, 1]. Outputs are planar RGB (CHW) `f32`. Every random choice of
//! an image derives from (seed, epoch, image index) alone.

use super::color::{self, ColorOp};
use super::crops::{central_crop, Crop, CropBox, CropOrder};
use super::decode::RgbImage;
use super::error::DataError;
use super::resize::{resample_chw, Interpolation};
use super::rng::{SampleRng, Stream};

/// Colour distortion of the training preprocessing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorDistortion {
    /// No colour change.
    Off,
    /// TF-slim fast mode: brightness ±32/255 and saturation ×[0.5, 1.5], in random order.
    Fast,
    /// TF-slim full mode: also hue ±0.2 and contrast ×[0.5, 1.5], in one of 4 orderings.
    Full,
}

/// Training augmentation settings; the defaults are TF-slim's.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainAugment {
    /// Network input side in pixels (299).
    pub image_size: u32,
    /// Crop area as a fraction of the image area (0.05, 1.0).
    pub area_range: (f64, f64),
    /// Crop width / height (0.75, 1.33).
    pub aspect_ratio_range: (f64, f64),
    /// Minimum fraction of the (whole-image) bounding box a crop must cover (0.1). With
    /// the whole image as box this raises the smallest crop area to 10%.
    pub min_object_covered: f64,
    /// Attempts before falling back to the whole image (100).
    pub max_attempts: u32,
    /// Random horizontal flip (true).
    pub flip: bool,
    /// Colour distortion (fast).
    pub color: ColorDistortion,
}

impl Default for TrainAugment {
    fn default() -> Self {
        TrainAugment {
            image_size: 299,
            area_range: (0.05, 1.0),
            aspect_ratio_range: (0.75, 1.33),
            min_object_covered: 0.1,
            max_attempts: 100,
            flip: true,
            color: ColorDistortion::Fast,
        }
    }
}

/// Evaluation preprocessing: central crop keeping `crop_fraction` of each side, resized.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalTransform {
    /// Network input side in pixels (299).
    pub image_size: u32,
    /// Fraction of each side kept (0.875).
    pub crop_fraction: f64,
    /// Resize interpolation (bilinear, as TF-slim).
    pub interpolation: Interpolation,
}

impl Default for EvalTransform {
    fn default() -> Self {
        EvalTransform {
            image_size: 299,
            crop_fraction: 0.875,
            interpolation: Interpolation::Bilinear,
        }
    }
}

/// Training or evaluation preprocessing.
#[derive(Clone, Debug, PartialEq)]
pub enum Preprocess {
    /// Random crop, flip and colour distortion.
    Train(TrainAugment),
    /// Deterministic central crop.
    Eval(EvalTransform),
}

impl Preprocess {
    /// Checks that the settings describe a possible preprocessing.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |what: String| Err(DataError::Config(what));
        match self {
            Preprocess::Train(t) => {
                let (a0, a1) = t.area_range;
                let (r0, r1) = t.aspect_ratio_range;
                if t.image_size == 0 {
                    return bad("image_size must be positive".into());
                }
                if !(0.0 < a0 && a0 <= a1 && a1 <= 1.0) {
                    return bad(format!(
                        "area_range {:?} must satisfy 0 < lo <= hi <= 1",
                        t.area_range
                    ));
                }
                if !(0.0 < r0 && r0 <= r1) {
                    return bad(format!(
                        "aspect_ratio_range {:?} must satisfy 0 < lo <= hi",
                        t.aspect_ratio_range
                    ));
                }
            }
            Preprocess::Eval(e) => {
                if e.image_size == 0 {
                    return bad("image_size must be positive".into());
                }
                if !(e.crop_fraction > 0.0 && e.crop_fraction <= 1.0) {
                    return bad(format!(
                        "crop_fraction {} must be in (0, 1]",
                        e.crop_fraction
                    ));
                }
            }
        }
        Ok(())
    }

    /// Side of the square output in pixels.
    pub fn image_size(&self) -> u32 {
        match self {
            Preprocess::Train(t) => t.image_size,
            Preprocess::Eval(e) => e.image_size,
        }
    }

    /// Preprocesses `img` into `out` (CHW, `3 * size * size` values in [-1, 1]). The random
    /// choices of training depend only on (seed, epoch, index).
    pub fn apply(&self, img: &RgbImage, seed: u64, epoch: u64, index: u64, out: &mut [f32]) {
        match self {
            Preprocess::Train(t) => {
                let mut rng = SampleRng::new(seed, Stream::Augment, epoch, index);
                augment_train(img, t, &mut rng, out);
            }
            Preprocess::Eval(e) => {
                let crop = Crop {
                    bbox: central_crop(img.width, img.height, e.crop_fraction),
                    mirror: false,
                    order: CropOrder::CropThenResize,
                };
                render_crop(img, &crop, e.image_size, e.interpolation, out);
            }
        }
    }
}

/// Resamples one crop to `size x size` and scales it to [-1, 1] (CHW). This is the single
/// implementation behind the central crop and the multi-crop protocols.
pub fn render_crop(
    img: &RgbImage,
    crop: &Crop,
    size: u32,
    interpolation: Interpolation,
    out: &mut [f32],
) {
    let s = size as usize;
    with_scratch(out.len(), |buf| {
        resample_chw(img, crop, s, s, interpolation, buf);
        out.iter_mut()
            .zip(buf.iter())
            .for_each(|(o, &v)| *o = (v - 0.5) * 2.0);
    });
}

fn augment_train(img: &RgbImage, t: &TrainAugment, rng: &mut SampleRng, out: &mut [f32]) {
    let crop = Crop {
        bbox: sample_distorted_box(img.width, img.height, t, rng),
        mirror: t.flip && rng.coin(),
        order: CropOrder::CropThenResize,
    };
    let ops = color_ops(t.color, rng);
    let s = t.image_size as usize;
    with_scratch(out.len(), |buf| {
        resample_chw(img, &crop, s, s, Interpolation::Bilinear, buf);
        for &op in &ops {
            color::apply(op, buf);
        }
        out.iter_mut()
            .zip(buf.iter())
            .for_each(|(o, &v)| *o = (v.clamp(0.0, 1.0) - 0.5) * 2.0);
    });
}

thread_local! {
    /// Per-thread working image: the passes of the pipeline run on this cache-warm
    /// buffer and only the final scaling writes to the (usually fresh) batch memory.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn with_scratch(len: usize, f: impl FnOnce(&mut [f32])) {
    SCRATCH.with(|cell| {
        let mut buf = cell.borrow_mut();
        buf.resize(len, 0.0);
        f(&mut buf[..len]);
    });
}

/// The colour adjustments of one image, in the order they apply (TF-slim `distort_color`).
fn color_ops(mode: ColorDistortion, rng: &mut SampleRng) -> Vec<ColorOp> {
    if mode == ColorDistortion::Off {
        return Vec::new();
    }
    let orderings = if mode == ColorDistortion::Fast { 2 } else { 4 };
    let ordering = rng.below(orderings);
    let b = ColorOp::Brightness(rng.uniform(-32.0 / 255.0, 32.0 / 255.0) as f32);
    let s = ColorOp::Saturation(rng.uniform(0.5, 1.5) as f32);
    if mode == ColorDistortion::Fast {
        return if ordering == 0 {
            vec![b, s]
        } else {
            vec![s, b]
        };
    }
    let h = ColorOp::Hue(rng.uniform(-0.2, 0.2) as f32);
    let c = ColorOp::Contrast(rng.uniform(0.5, 1.5) as f32);
    match ordering {
        0 => vec![b, s, h, c],
        1 => vec![s, b, c, h],
        2 => vec![c, h, b, s],
        _ => vec![h, s, c, b],
    }
}

/// TF `sample_distorted_bounding_box` with the whole image as the object box: for up to
/// `max_attempts`, draw an aspect ratio uniformly, then an integer height between the
/// heights giving the minimum and maximum area (so that the width, rounded, fits), and
/// a uniform position; accept if the area is within `area_range` and covers at least
/// `min_object_covered` of the image. Falls back to the whole image.
pub(crate) fn sample_distorted_box(
    width: u32,
    height: u32,
    t: &TrainAugment,
    rng: &mut SampleRng,
) -> CropBox {
    let image_area = width as f64 * height as f64;
    let (min_area, max_area) = (t.area_range.0 * image_area, t.area_range.1 * image_area);
    for _ in 0..t.max_attempts {
        let aspect = rng.uniform(t.aspect_ratio_range.0, t.aspect_ratio_range.1);
        if let Some((w, h)) = random_crop_size(width, height, min_area, max_area, aspect, rng) {
            if (w * h) as f64 >= t.min_object_covered * image_area {
                let x = rng.below((width - w + 1) as u64) as f64;
                let y = rng.below((height - h + 1) as u64) as f64;
                return CropBox {
                    x,
                    y,
                    w: w as f64,
                    h: h as f64,
                };
            }
        }
    }
    CropBox {
        x: 0.0,
        y: 0.0,
        w: width as f64,
        h: height as f64,
    }
}

/// One draw of a crop size with the given aspect ratio, or None if it violates the
/// constraints (TF's `GenerateRandomCrop`).
fn random_crop_size(
    width: u32,
    height: u32,
    min_area: f64,
    max_area: f64,
    aspect: f64,
    rng: &mut SampleRng,
) -> Option<(u32, u32)> {
    let width_for = |h: i64| (h as f64 * aspect).round() as i64;
    let mut h = (min_area / aspect).sqrt().round() as i64;
    let mut max_h = (max_area / aspect).sqrt().round() as i64;
    if width_for(max_h) > width as i64 {
        // The largest height whose rounded width still fits.
        max_h = ((width as f64 + 0.5 - 1e-7) / aspect) as i64;
        if width_for(max_h) > width as i64 {
            max_h -= 1;
        }
    }
    max_h = max_h.min(height as i64);
    h = h.min(max_h);
    if h < max_h {
        h += rng.below((max_h - h + 1) as u64) as i64;
    }
    let mut w = width_for(h);
    let area = |w: i64, h: i64| (w * h) as f64;
    if area(w, h) < min_area {
        h += 1;
        w = width_for(h);
    }
    if area(w, h) > max_area {
        h -= 1;
        w = width_for(h);
    }
    let ok = area(w, h) >= min_area
        && area(w, h) <= max_area
        && w > 0
        && h > 0
        && w <= width as i64
        && h <= height as i64;
    ok.then_some((w as u32, h as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise_image(width: u32, height: u32) -> RgbImage {
        let mut rng = SampleRng::new(1, Stream::Synthetic, 0, 0);
        let pixels = (0..width * height * 3)
            .map(|_| rng.below(256) as u8)
            .collect();
        RgbImage {
            width,
            height,
            pixels,
        }
    }

    #[test]
    fn distorted_boxes_respect_the_constraints() {
        let t = TrainAugment::default();
        let mut areas = Vec::new();
        for i in 0..2000 {
            let mut rng = SampleRng::new(3, Stream::Augment, 0, i);
            let b = sample_distorted_box(500, 375, &t, &mut rng);
            assert!(
                b.x >= 0.0 && b.y >= 0.0 && b.x + b.w <= 500.0 && b.y + b.h <= 375.0,
                "{b:?}"
            );
            assert_eq!(
                (b.x.fract(), b.y.fract(), b.w.fract(), b.h.fract()),
                (0.0, 0.0, 0.0, 0.0)
            );
            let area = b.w * b.h / (500.0 * 375.0);
            assert!(area >= 0.1 - 1e-9, "{b:?}");
            if area < 1.0 {
                let ratio = b.w / b.h;
                assert!((0.74..=1.34).contains(&ratio), "{b:?} ratio {ratio}");
            }
            areas.push(area);
        }
        let mean = areas.iter().sum::<f64>() / areas.len() as f64;
        assert!(mean > 0.3 && mean < 0.8, "mean area {mean}");
        assert!(areas.iter().any(|&a| a < 0.2) && areas.iter().any(|&a| a > 0.9));
    }

    #[test]
    fn impossible_constraints_fall_back_to_the_whole_image() {
        // A 1000x10 strip cannot hold a 3/4..4/3 crop with 50% of its area.
        let t = TrainAugment {
            area_range: (0.5, 1.0),
            ..TrainAugment::default()
        };
        let mut rng = SampleRng::new(0, Stream::Augment, 0, 0);
        let b = sample_distorted_box(1000, 10, &t, &mut rng);
        assert_eq!(
            b,
            CropBox {
                x: 0.0,
                y: 0.0,
                w: 1000.0,
                h: 10.0
            }
        );
    }

    #[test]
    fn train_output_is_deterministic_in_range_and_varies_by_epoch() {
        let img = noise_image(120, 90);
        let p = Preprocess::Train(TrainAugment {
            image_size: 64,
            color: ColorDistortion::Full,
            ..Default::default()
        });
        let run = |epoch, index| {
            let mut out = vec![0f32; 3 * 64 * 64];
            p.apply(&img, 9, epoch, index, &mut out);
            out
        };
        let a = run(0, 5);
        assert_eq!(a, run(0, 5));
        assert_ne!(a, run(1, 5));
        assert_ne!(a, run(0, 6));
        assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));
    }

    #[test]
    fn validate_rejects_impossible_settings() {
        assert!(Preprocess::Train(TrainAugment::default())
            .validate()
            .is_ok());
        assert!(Preprocess::Eval(EvalTransform::default())
            .validate()
            .is_ok());
        let train = |t: TrainAugment| Preprocess::Train(t).validate().is_err();
        assert!(train(TrainAugment {
            area_range: (0.0, 1.0),
            ..Default::default()
        }));
        assert!(train(TrainAugment {
            aspect_ratio_range: (1.5, 1.0),
            ..Default::default()
        }));
        assert!(train(TrainAugment {
            image_size: 0,
            ..Default::default()
        }));
        let eval = EvalTransform {
            crop_fraction: 1.5,
            ..Default::default()
        };
        assert!(matches!(
            Preprocess::Eval(eval).validate(),
            Err(DataError::Config(_))
        ));
    }

    #[test]
    fn eval_is_central_crop_scaled_to_unit_range() {
        // 8x8 image, fraction 0.5: box (2, 2, 4, 4) resized to 4 = the box itself.
        let mut pixels = Vec::new();
        for y in 0..8u32 {
            for x in 0..8u32 {
                pixels.extend_from_slice(&[(x * 30) as u8, (y * 30) as u8, 255]);
            }
        }
        let img = RgbImage {
            width: 8,
            height: 8,
            pixels,
        };
        let e = EvalTransform {
            image_size: 4,
            crop_fraction: 0.5,
            interpolation: Interpolation::Bilinear,
        };
        let mut out = vec![0f32; 48];
        Preprocess::Eval(e).apply(&img, 0, 0, 0, &mut out);
        let scale = |v: f32| (v / 255.0 - 0.5) * 2.0;
        assert!((out[0] - scale(60.0)).abs() < 1e-5); // R at (2, 2)
        assert!((out[3] - scale(150.0)).abs() < 1e-5); // R at (5, 2)
        assert!((out[16 + 4] - scale(90.0)).abs() < 1e-5); // G at row 1 -> y = 3
        assert!(out[32..].iter().all(|v| (v - 1.0).abs() < 1e-6));
    }

    #[test]
    fn fast_mode_uses_both_orders_and_full_mode_all_four() {
        let mut seen_fast = [false; 2];
        let mut seen_full = std::collections::HashSet::new();
        for i in 0..64 {
            let mut rng = SampleRng::new(0, Stream::Augment, 0, i);
            let ops = color_ops(ColorDistortion::Fast, &mut rng);
            seen_fast[matches!(ops[0], ColorOp::Saturation(_)) as usize] = true;
            let mut rng = SampleRng::new(0, Stream::Augment, 1, i);
            let ops = color_ops(ColorDistortion::Full, &mut rng);
            seen_full.insert(format!(
                "{:?}",
                ops.iter().map(std::mem::discriminant).collect::<Vec<_>>()
            ));
            if let ColorOp::Brightness(d) = ops
                .iter()
                .find(|o| matches!(o, ColorOp::Brightness(_)))
                .unwrap()
            {
                assert!(d.abs() <= 32.0 / 255.0);
            }
        }
        assert_eq!(seen_fast, [true, true]);
        assert_eq!(seen_full.len(), 4);
        assert!(color_ops(
            ColorDistortion::Off,
            &mut SampleRng::new(0, Stream::Augment, 0, 0)
        )
        .is_empty());
    }
}
