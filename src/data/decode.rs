//! Decoding image files to 8-bit RGB.
//!
//! The format is read from the file's first bytes, not its extension (ImageNet has PNG
//! files named .JPEG). JPEG (baseline, progressive, grayscale, CMYK/YCCK) and PNG
//! (grayscale, RGBA, 16-bit) all become RGB; alpha is dropped, not composited, as TF's
//! `decode_image(channels=3)` does. A JPEG whose entropy-coded data ends before the EOI
//! marker is rejected as truncated rather than padded with grey.

use std::io::Cursor;
use std::path::Path;

use image::{ImageFormat, ImageReader};

use super::error::{DataError, Result};

/// An 8-bit RGB image, row-major, channels interleaved (HWC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// The pixel at (x, y) as [r, g, b].
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }
}

/// Reads and decodes an image file to RGB; errors name the file.
pub fn decode_image_file(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_image_bytes(&bytes, path)
}

/// Decodes an in-memory image to RGB; `path` is only used in error messages.
pub fn decode_image_bytes(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    let fail = |reason: String| DataError::Decode {
        path: path.to_path_buf(),
        reason,
    };
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| fail(e.to_string()))?;
    match reader.format() {
        Some(ImageFormat::Jpeg) => {
            if !jpeg_has_end_marker(bytes) {
                return Err(fail("truncated JPEG (no end-of-image marker)".into()));
            }
        }
        Some(ImageFormat::Png) => {}
        _ if bytes.is_empty() => return Err(fail("empty file (0 bytes)".into())),
        _ => return Err(fail("not a JPEG or PNG file".into())),
    }
    let decoded = reader.decode().map_err(|e| fail(e.to_string()))?;
    let rgb = decoded.into_rgb8();
    let (width, height) = rgb.dimensions();
    if width == 0 || height == 0 {
        return Err(fail("image has zero size".into()));
    }
    Ok(RgbImage {
        width,
        height,
        pixels: rgb.into_raw(),
    })
}

/// Whether a JPEG stream ends its last scan with the EOI marker (0xFFD9). Entropy-coded
/// data never contains 0xFFD9 or 0xFFDA, so the file is complete iff its last EOI comes
/// after its last start-of-scan (an EXIF thumbnail's EOI precedes the main scans).
/// Bytes after the EOI are tolerated.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let Some(eoi) = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]) else {
        return false;
    };
    !bytes[eoi..].windows(2).any(|w| w == [0xFF, 0xDA])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;
    use image::codecs::png::PngEncoder;
    use image::{ExtendedColorType, ImageEncoder};

    /// A JPEG of a horizontal red→blue gradient, encoded in memory.
    pub(crate) fn gradient_jpeg(width: u32, height: u32) -> Vec<u8> {
        let mut px = Vec::with_capacity((width * height * 3) as usize);
        for _y in 0..height {
            for x in 0..width {
                let t = (x * 255 / width.max(2).saturating_sub(1).max(1)) as u8;
                px.extend_from_slice(&[255 - t, 40, t]);
            }
        }
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 95)
            .write_image(&px, width, height, ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    fn png(px: &[u8], w: u32, h: u32, color: ExtendedColorType) -> Vec<u8> {
        let mut out = Vec::new();
        PngEncoder::new(&mut out)
            .write_image(px, w, h, color)
            .unwrap();
        out
    }

    fn decode(bytes: &[u8]) -> Result<RgbImage> {
        decode_image_bytes(bytes, Path::new("some/file.jpg"))
    }

    fn close(a: [u8; 3], b: [u8; 3], tol: i32) -> bool {
        a.iter()
            .zip(b)
            .all(|(&x, y)| (x as i32 - y as i32).abs() <= tol)
    }

    #[test]
    fn baseline_jpeg_decodes() {
        let img = decode(&gradient_jpeg(40, 30)).unwrap();
        assert_eq!(
            (img.width, img.height, img.pixels.len()),
            (40, 30, 40 * 30 * 3)
        );
        assert!(
            close(img.pixel(0, 15), [255, 40, 0], 12),
            "{:?}",
            img.pixel(0, 15)
        );
    }

    #[test]
    fn grayscale_jpeg_becomes_rgb() {
        let px: Vec<u8> = (0..32 * 16).map(|i| (i % 32 * 8) as u8).collect();
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 95)
            .write_image(&px, 32, 16, ExtendedColorType::L8)
            .unwrap();
        let img = decode(&out).unwrap();
        let p = img.pixel(20, 8);
        assert_eq!(p[0], p[1]);
        assert_eq!(p[1], p[2]);
        assert!((p[0] as i32 - 160).abs() <= 8, "{p:?}");
    }

    #[test]
    fn cmyk_and_progressive_jpeg_fixtures_decode() {
        // Made with Pillow: 48x32, left half pure red, right half pure blue.
        for name in ["cmyk.jpg", "progressive.jpg", "grayscale_progressive.jpg"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src/data/testdata")
                .join(name);
            let img = decode_image_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((img.width, img.height), (48, 32), "{name}");
            let (left, right) = (img.pixel(8, 16), img.pixel(40, 16));
            if name.starts_with("grayscale") {
                assert!(close(left, [76, 76, 76], 10), "{name} {left:?}");
                assert!(close(right, [29, 29, 29], 10), "{name} {right:?}");
            } else {
                assert!(close(left, [255, 0, 0], 24), "{name} {left:?}");
                assert!(close(right, [0, 0, 255], 24), "{name} {right:?}");
            }
        }
    }

    #[test]
    fn cmyk_and_ycck_jpegs_from_an_encoder_decode_to_rgb() {
        // 32x16 CMYK: left half red (0, 255, 255, 0), right half blue (255, 255, 0, 0).
        let mut cmyk = Vec::new();
        for _y in 0..16 {
            for x in 0..32 {
                cmyk.extend_from_slice(if x < 16 {
                    &[0, 255, 255, 0]
                } else {
                    &[255, 255, 0, 0]
                });
            }
        }
        for color in [
            jpeg_encoder::ColorType::Cmyk,
            jpeg_encoder::ColorType::CmykAsYcck,
        ] {
            let mut out = Vec::new();
            jpeg_encoder::Encoder::new(&mut out, 95)
                .encode(&cmyk, 32, 16, color)
                .unwrap();
            let img = decode(&out).unwrap_or_else(|e| panic!("{color:?}: {e}"));
            assert!(
                close(img.pixel(4, 8), [255, 0, 0], 24),
                "{color:?} {:?}",
                img.pixel(4, 8)
            );
            assert!(
                close(img.pixel(28, 8), [0, 0, 255], 24),
                "{color:?} {:?}",
                img.pixel(28, 8)
            );
        }
    }

    #[test]
    fn png_gray_and_rgba_become_rgb() {
        let gray = png(&[0, 100, 200, 255], 2, 2, ExtendedColorType::L8);
        let img = decode(&gray).unwrap();
        assert_eq!(
            img.pixels,
            vec![0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255]
        );
        let rgba = png(
            &[10, 20, 30, 0, 40, 50, 60, 255],
            2,
            1,
            ExtendedColorType::Rgba8,
        );
        let img = decode(&rgba).unwrap();
        assert_eq!(img.pixels, vec![10, 20, 30, 40, 50, 60]);
        let gray_alpha = png(&[7, 0, 9, 128], 1, 2, ExtendedColorType::La8);
        assert_eq!(decode(&gray_alpha).unwrap().pixels, vec![7, 7, 7, 9, 9, 9]);
    }

    #[test]
    fn png_named_jpeg_is_read_by_content() {
        let bytes = png(&[1, 2, 3], 1, 1, ExtendedColorType::Rgb8);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n02105855_2933.JPEG");
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(decode_image_file(&path).unwrap().pixels, vec![1, 2, 3]);
    }

    #[test]
    fn corrupt_and_truncated_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = gradient_jpeg(64, 48);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage.jpg", b"this is not an image at all".to_vec()),
            ("empty.jpg", Vec::new()),
            ("truncated.jpg", good[..good.len() / 2].to_vec()),
            ("header_only.jpg", good[..20].to_vec()),
            ("truncated_after_thumbnail.jpg", {
                // A complete JPEG embedded before the cut-off main image (like an EXIF
                // thumbnail) must not make the truncated file look complete.
                let mut b = good[..2].to_vec();
                b.extend_from_slice(&[0xFF, 0xE1, 0x00, 0x04, 0xFF, 0xD9]);
                b.extend_from_slice(&good[2..good.len() - 100]);
                b
            }),
            ("corrupt_body.jpg", {
                let mut b = good.clone();
                let n = b.len();
                for x in &mut b[200..n - 2] {
                    *x = 0xFF;
                }
                b
            }),
            ("truncated.png", {
                let p = png(&[5; 300], 10, 10, ExtendedColorType::Rgb8);
                p[..p.len() - 30].to_vec()
            }),
        ];
        for (name, bytes) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let err = decode_image_file(&path).expect_err(name);
            assert!(matches!(err, DataError::Decode { .. }), "{name}: {err}");
            assert!(err.to_string().contains(name), "{err}");
            if name == "empty.jpg" {
                assert!(err.to_string().contains("empty file"), "{err}");
            }
        }
        let err = decode_image_file(&dir.path().join("absent.jpg")).unwrap_err();
        assert!(err.to_string().contains("absent.jpg"));
    }
}
