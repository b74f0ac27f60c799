//! Synthetic smoke data: class-dependent images written as JPEG files into an
//! ImageFolder tree, so smoke runs use the same decode path as real data.
//!
//! Class `c` fixes a shape (`c % 8`: disk, square, triangle, ring, cross, horizontal,
//! vertical or diagonal stripes), a colour (`(c / 8) % 8`) and a background brightness
//! (`(c / 64) % 4`), so up to 256 classes are distinct. Each image draws the position,
//! size and rotation of the shape, colour jitter, a background gradient and pixel noise.

use std::fs;
use std::io::BufWriter;
use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageEncoder};

use super::error::{DataError, Result};
use super::rng::{SampleRng, Stream};
use super::source::Dataset;

const PALETTE: [[f64; 3]; 8] = [
    [220.0, 30.0, 30.0],
    [30.0, 200.0, 40.0],
    [40.0, 60.0, 230.0],
    [230.0, 220.0, 40.0],
    [210.0, 40.0, 210.0],
    [40.0, 210.0, 220.0],
    [240.0, 140.0, 20.0],
    [245.0, 245.0, 245.0],
];

const BACKGROUNDS: [f64; 4] = [40.0, 95.0, 150.0, 70.0];

/// Whether local shape coordinates (u, v), in units of the shape radius, are inside the
/// shape `shape` (class % 8).
fn inside(shape: u32, u: f64, v: f64) -> bool {
    let r2 = u * u + v * v;
    let band = |t: f64| ((t + 2.0) * 2.5).floor() as i64 % 2 == 0;
    match shape {
        0 => r2 <= 1.0,
        1 => u.abs() <= 0.8 && v.abs() <= 0.8,
        2 => (-0.8..=0.8).contains(&v) && u.abs() <= (v + 0.8) * 0.6,
        3 => (0.3..=1.0).contains(&r2),
        4 => (u.abs() <= 0.3 && v.abs() <= 1.0) || (v.abs() <= 0.3 && u.abs() <= 1.0),
        5 => r2 <= 1.0 && band(v),
        6 => r2 <= 1.0 && band(u),
        _ => r2 <= 1.0 && band((u + v) * 0.7),
    }
}

/// Draws image `index` of class `class` as interleaved RGB.
fn draw(class: u32, index: u32, width: u32, height: u32, seed: u64) -> Vec<u8> {
    let mut rng = SampleRng::new(seed, Stream::Synthetic, class as u64, index as u64);
    let (w, h) = (width as f64, height as f64);
    let side = w.min(h);
    let radius = side * rng.uniform(0.22, 0.38);
    let cx = rng.uniform(radius, w - radius);
    let cy = rng.uniform(radius, h - radius);
    let angle = rng.uniform(-0.35, 0.35);
    let (sin, cos) = angle.sin_cos();
    let colour = PALETTE[(class / 8 % 8) as usize].map(|c| c + rng.uniform(-20.0, 20.0));
    let base = BACKGROUNDS[(class / 64 % 4) as usize] + rng.uniform(-15.0, 15.0);
    let (gx, gy) = (rng.uniform(-30.0, 30.0) / w, rng.uniform(-30.0, 30.0) / h);
    let shape = class % 8;
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let (dx, dy) = ((x as f64 - cx) / radius, (y as f64 - cy) / radius);
            let (u, v) = (cos * dx + sin * dy, -sin * dx + cos * dy);
            let rgb = if inside(shape, u, v) {
                colour
            } else {
                [base + gx * x as f64 + gy * y as f64; 3]
            };
            for c in rgb {
                let noisy = c + rng.uniform(-18.0, 18.0);
                pixels.push(noisy.clamp(0.0, 255.0) as u8);
            }
        }
    }
    pixels
}

/// Writes `classes x images_per_class` JPEG files of `size = (width, height)` under
/// `root/class_NNN/img_NNNNN.jpg` and returns the scanned dataset. Deterministic in
/// `seed`; existing files of the same names are overwritten.
pub fn write_synthetic_dataset(
    root: &Path,
    classes: u32,
    images_per_class: u32,
    size: (u32, u32),
    seed: u64,
) -> Result<Dataset> {
    let (width, height) = size;
    if classes == 0 || images_per_class == 0 || width < 8 || height < 8 {
        return Err(DataError::Config(format!(
            "synthetic dataset needs classes, images and a size of at least 8x8, got {classes} x {images_per_class} of {width}x{height}"
        )));
    }
    for class in 0..classes {
        let dir = root.join(format!("class_{class:03}"));
        fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
        for index in 0..images_per_class {
            let path = dir.join(format!("img_{index:05}.jpg"));
            let pixels = draw(class, index, width, height, seed);
            let file = fs::File::create(&path).map_err(|e| DataError::io(&path, e))?;
            JpegEncoder::new_with_quality(BufWriter::new(file), 90)
                .write_image(&pixels, width, height, ExtendedColorType::Rgb8)
                .map_err(|e| DataError::Encode {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
        }
    }
    Dataset::image_folder(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::decode::decode_image_file;

    #[test]
    fn writes_a_deterministic_decodable_tree() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let ds = write_synthetic_dataset(a.path(), 3, 4, (40, 30), 5).unwrap();
        write_synthetic_dataset(b.path(), 3, 4, (40, 30), 5).unwrap();
        assert_eq!(ds.classes, vec!["class_000", "class_001", "class_002"]);
        assert_eq!(ds.len(), 12);
        for s in &ds.samples {
            let rel = s.path.strip_prefix(a.path()).unwrap();
            assert_eq!(
                fs::read(&s.path).unwrap(),
                fs::read(b.path().join(rel)).unwrap()
            );
            let img = decode_image_file(&s.path).unwrap();
            assert_eq!((img.width, img.height), (40, 30));
        }
    }

    #[test]
    fn classes_differ_in_colour_and_shape() {
        // Mean colour of the shape region differs between class 0 (red) and class 8 (green).
        let mean = |class| {
            let px = draw(class, 0, 64, 64, 1);
            let mut sums = [0f64; 3];
            for p in px.chunks(3) {
                for c in 0..3 {
                    sums[c] += p[c] as f64;
                }
            }
            sums
        };
        let (red, green) = (mean(0), mean(8));
        assert!(red[0] > red[1] && green[1] > green[0], "{red:?} {green:?}");
        assert!(inside(3, 0.8, 0.0) && !inside(3, 0.1, 0.0));
        assert!(inside(4, 0.9, 0.0) && !inside(4, 0.9, 0.9));
    }

    #[test]
    fn rejects_empty_requests() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            write_synthetic_dataset(dir.path(), 0, 1, (32, 32), 0),
            Err(DataError::Config(_))
        ));
    }
}
