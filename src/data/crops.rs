//! Crop geometry shared by training, single-crop and multi-crop evaluation.
//!
//! A [`CropBox`] is in source-image pixels, as `f64`: `x, y` is the top-left corner and
//! `w, h` the size, so pixel column `i` covers `[i, i + 1)`. Boxes of crop-then-resize
//! crops (central crop, training crops) have integer coordinates. Boxes of
//! resize-then-crop crops (10, 12, 144 crops) are the pre-image in the source of an
//! integer crop in the resized image; with TF's legacy coordinate mapping (see
//! [`super::resize`]) resampling that pre-image samples exactly the points that resizing
//! the whole image and then cutting the crop would.

/// A rectangle in source-image pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CropBox {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

/// How a crop is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CropOrder {
    /// Cut the box, then resize it: interpolation reads only pixels of the box.
    CropThenResize,
    /// Resize the whole image, then cut: interpolation may read just outside the box.
    ResizeThenCrop,
}

/// A crop to be resampled to the network input: box, horizontal mirror, and order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Crop {
    /// The region of the source image.
    pub bbox: CropBox,
    /// Whether the result is flipped left-right.
    pub mirror: bool,
    /// Whether the box is cut before or after resizing.
    pub order: CropOrder,
}

/// TF `central_crop`: keeps `fraction` of each side; the offset is
/// `floor((side - side * fraction) / 2)` and the size `side - 2 * offset`.
pub fn central_crop(width: u32, height: u32, fraction: f64) -> CropBox {
    let side = |n: u32| {
        let n = n as f64;
        let offset = ((n - n * fraction) / 2.0).floor();
        (offset, n - 2.0 * offset)
    };
    let ((x, w), (y, h)) = (side(width), side(height));
    CropBox { x, y, w, h }
}

/// The five boxes of size `cw x ch` at the four corners and the centre (integer offset
/// `(side - crop) / 2`, rounded down) of a `width x height` frame, in that order:
/// top-left, top-right, bottom-left, bottom-right, centre.
/// Panics if the crop is larger than the frame.
fn corners_and_centre(width: u32, height: u32, cw: u32, ch: u32) -> [(u32, u32); 5] {
    assert!(
        cw <= width && ch <= height,
        "crop {cw}x{ch} larger than the {width}x{height} frame it is cut from"
    );
    let (dx, dy) = (width - cw, height - ch);
    [(0, 0), (dx, 0), (0, dy), (dx, dy), (dx / 2, dy / 2)]
}

/// Each crop followed by its mirror.
fn with_mirrors(boxes: impl IntoIterator<Item = CropBox>, order: CropOrder) -> Vec<Crop> {
    boxes
        .into_iter()
        .flat_map(|bbox| {
            [false, true].map(|mirror| Crop {
                bbox,
                mirror,
                order,
            })
        })
        .collect()
}

/// The ten crops of size `cw x ch` taken directly from a `width x height` image: four
/// corners and the centre, each followed by its mirror. Panics if the crop is larger
/// than the image.
pub fn ten_crops(width: u32, height: u32, cw: u32, ch: u32) -> Vec<Crop> {
    let boxes = corners_and_centre(width, height, cw, ch).map(|(x, y)| CropBox {
        x: x as f64,
        y: y as f64,
        w: cw as f64,
        h: ch as f64,
    });
    with_mirrors(boxes, CropOrder::CropThenResize)
}

/// The image resized so that its shorter side is `shorter`: the resized size and the
/// source pixels per resized pixel along x and y. The longer side is rounded to the
/// nearest pixel.
struct ResizedFrame {
    width: u32,
    height: u32,
    sx: f64,
    sy: f64,
}

impl ResizedFrame {
    fn new(width: u32, height: u32, shorter: u32) -> Self {
        let short = width.min(height) as f64;
        let scaled = |n: u32| {
            if n as f64 == short {
                shorter
            } else {
                (n as f64 * shorter as f64 / short).round() as u32
            }
        };
        let (rw, rh) = (scaled(width), scaled(height));
        ResizedFrame {
            width: rw,
            height: rh,
            sx: width as f64 / rw as f64,
            sy: height as f64 / rh as f64,
        }
    }

    /// The source-pixel pre-image of an integer box in the resized frame.
    fn pre_image(&self, x: u32, y: u32, w: u32, h: u32) -> CropBox {
        CropBox {
            x: x as f64 * self.sx,
            y: y as f64 * self.sy,
            w: w as f64 * self.sx,
            h: h as f64 * self.sy,
        }
    }

    /// Top-left corners of the squares of side `shorter` along the longer side: left,
    /// centre, right (top, centre, bottom for portrait). A square image gives the same
    /// square three times.
    fn squares(&self, shorter: u32) -> [(u32, u32); 3] {
        if self.width >= self.height {
            let d = self.width - shorter;
            [(0, 0), (d / 2, 0), (d, 0)]
        } else {
            let d = self.height - shorter;
            [(0, 0), (0, d / 2), (0, d)]
        }
    }
}

/// GoogLeNet's shorter-side scales for an input of `input` pixels: 256, 288, 320, 352
/// times `input / 224`, rounded to the nearest pixel (342, 384, 427, 470 for 299).
pub fn googlenet_scales(input: u32) -> [u32; 4] {
    [256u32, 288, 320, 352].map(|s| (s as f64 * input as f64 / 224.0).round() as u32)
}

/// The 12 crops of one square: 4 corners + centre crop of `input`, and the whole square
/// (resized to the input), each followed by its mirror.
fn square_crops(frame: &ResizedFrame, (qx, qy): (u32, u32), side: u32, input: u32) -> Vec<Crop> {
    let mut boxes: Vec<CropBox> = corners_and_centre(side, side, input, input)
        .iter()
        .map(|&(x, y)| frame.pre_image(qx + x, qy + y, input, input))
        .collect();
    boxes.push(frame.pre_image(qx, qy, side, side));
    with_mirrors(boxes, CropOrder::ResizeThenCrop)
}

/// The GoogLeNet 144-crop set for an `input`-pixel network: for each of the 4 scales of
/// [`googlenet_scales`], for the left/centre/right (top/centre/bottom) squares, the 12
/// crops of one square (TL, TR, BL, BR, centre, whole square; each then its mirror).
pub fn crops_144(width: u32, height: u32, input: u32) -> Vec<Crop> {
    googlenet_scales(input)
        .iter()
        .flat_map(|&side| {
            let frame = ResizedFrame::new(width, height, side);
            frame
                .squares(side)
                .into_iter()
                .flat_map(move |q| square_crops(&frame, q, side, input))
        })
        .collect()
}

/// "12 crops": the 144-crop set restricted to one scale (index into
/// [`googlenet_scales`]) and the centre square: 6 crops, each then its mirror.
pub fn crops_12(width: u32, height: u32, input: u32, scale_index: usize) -> Vec<Crop> {
    let side = googlenet_scales(input)[scale_index];
    let frame = ResizedFrame::new(width, height, side);
    square_crops(&frame, frame.squares(side)[1], side, input)
}

/// Ten crops of the input size after resizing the shorter side to `shorter`.
fn ten_crops_resized(width: u32, height: u32, shorter: u32, input: u32) -> Vec<Crop> {
    let frame = ResizedFrame::new(width, height, shorter);
    let boxes = corners_and_centre(frame.width, frame.height, input, input)
        .map(|(x, y)| frame.pre_image(x, y, input, input));
    with_mirrors(boxes, CropOrder::ResizeThenCrop)
}

/// An evaluation crop protocol: a description of which crops are averaged.
#[derive(Clone, Debug, PartialEq)]
pub enum CropProtocol {
    /// One central crop keeping `fraction` of each side, resized to the input.
    Central {
        /// Fraction of each side kept (TF-slim: 0.875).
        fraction: f64,
    },
    /// Resize the shorter side to `shorter`, then 4 corners + centre of the input size,
    /// each with its mirror.
    TenCrop {
        /// Shorter side after resizing; must be at least the input size (else `crops`
        /// panics).
        shorter: u32,
    },
    /// One scale of the 144-crop set, centre square only: 6 crops x mirror.
    Crops12 {
        /// Index into [`googlenet_scales`] (default 1: 288 x input / 224).
        scale_index: usize,
    },
    /// The GoogLeNet 144-crop set.
    Crops144,
}

impl CropProtocol {
    /// The crops of a `width x height` image for an `input`-pixel network.
    pub fn crops(&self, width: u32, height: u32, input: u32) -> Vec<Crop> {
        match *self {
            CropProtocol::Central { fraction } => vec![Crop {
                bbox: central_crop(width, height, fraction),
                mirror: false,
                order: CropOrder::CropThenResize,
            }],
            CropProtocol::TenCrop { shorter } => ten_crops_resized(width, height, shorter, input),
            CropProtocol::Crops12 { scale_index } => crops_12(width, height, input, scale_index),
            CropProtocol::Crops144 => crops_144(width, height, input),
        }
    }

    /// Number of crops per image.
    pub fn num_crops(&self) -> usize {
        match self {
            CropProtocol::Central { .. } => 1,
            CropProtocol::TenCrop { .. } => 10,
            CropProtocol::Crops12 { .. } => 12,
            CropProtocol::Crops144 => 144,
        }
    }

    /// A one-line description for provenance, e.g. "12 crops (shorter side 384 for a
    /// 299 input, centre square, 4 corners + centre + whole square, x mirror)".
    pub fn describe(&self, input: u32) -> String {
        match *self {
            CropProtocol::Central { fraction } => {
                format!("1 central crop keeping {fraction} of each side, resized to {input}")
            }
            CropProtocol::TenCrop { shorter } => format!(
                "10 crops (shorter side {shorter}, 4 corners + centre of {input}, x mirror)"
            ),
            CropProtocol::Crops12 { scale_index } => format!(
                "12 crops (shorter side {} for a {input} input, centre square, 4 corners + centre of {input} + whole square, x mirror)",
                googlenet_scales(input)[scale_index]
            ),
            CropProtocol::Crops144 => format!(
                "144 crops (shorter sides [{}] for a {input} input, x 3 squares, x 4 corners + centre of {input} + whole square, x mirror)",
                googlenet_scales(input).map(|s| s.to_string()).join(", ")
            ),
        }
    }
}

impl Default for CropProtocol {
    /// TF-slim's single central crop, 0.875.
    fn default() -> Self {
        CropProtocol::Central { fraction: 0.875 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: f64, y: f64, w: f64, h: f64) -> CropBox {
        CropBox { x, y, w, h }
    }

    fn assert_box(got: CropBox, want: CropBox) {
        let ok = [
            (got.x, want.x),
            (got.y, want.y),
            (got.w, want.w),
            (got.h, want.h),
        ]
        .iter()
        .all(|(a, e)| (a - e).abs() < 1e-9);
        assert!(ok, "got {got:?}, want {want:?}");
    }

    #[test]
    fn central_crop_follows_tf() {
        // 500x375: x offset floor(62.5/2)=31, width 438; y offset floor(46.875/2)=23, height 329.
        assert_box(central_crop(500, 375, 0.875), b(31.0, 23.0, 438.0, 329.0));
        // Portrait 333x500: floor(41.625/2)=20 -> 293; floor(62.5/2)=31 -> 438.
        assert_box(central_crop(333, 500, 0.875), b(20.0, 31.0, 293.0, 438.0));
        assert_box(central_crop(256, 256, 0.875), b(16.0, 16.0, 224.0, 224.0));
        assert_box(central_crop(10, 10, 1.0), b(0.0, 0.0, 10.0, 10.0));
    }

    #[test]
    fn ten_crops_corners_centre_and_mirrors() {
        let c = ten_crops(256, 300, 224, 224);
        assert_eq!(c.len(), 10);
        let boxes: Vec<CropBox> = c.iter().step_by(2).map(|c| c.bbox).collect();
        assert_box(boxes[0], b(0.0, 0.0, 224.0, 224.0));
        assert_box(boxes[1], b(32.0, 0.0, 224.0, 224.0));
        assert_box(boxes[2], b(0.0, 76.0, 224.0, 224.0));
        assert_box(boxes[3], b(32.0, 76.0, 224.0, 224.0));
        assert_box(boxes[4], b(16.0, 38.0, 224.0, 224.0));
        assert!(c.iter().enumerate().all(|(i, c)| c.mirror == (i % 2 == 1)));
        assert_eq!(c[0].bbox, c[1].bbox);
    }

    #[test]
    fn ten_crop_protocol_resizes_first() {
        // 512x384 landscape, shorter side -> 256: frame 341x256 (512*256/384 = 341.33),
        // sx = 512/341, sy = 1.5.
        let c = CropProtocol::TenCrop { shorter: 256 }.crops(512, 384, 224);
        assert_eq!(c.len(), 10);
        let sx = 512.0 / 341.0;
        assert_box(c[2].bbox, b(117.0 * sx, 0.0, 224.0 * sx, 336.0));
        assert_box(c[8].bbox, b(58.0 * sx, 24.0, 224.0 * sx, 336.0));
        assert!(c.iter().all(|c| c.order == CropOrder::ResizeThenCrop));
    }

    #[test]
    fn scales() {
        assert_eq!(googlenet_scales(224), [256, 288, 320, 352]);
        assert_eq!(googlenet_scales(299), [342, 384, 427, 470]);
    }

    #[test]
    fn crops_144_landscape() {
        // 448x224 at input 224: scale 256 -> frame 512x256, sx = sy = 224/256 = 0.875.
        let c = crops_144(448, 224, 224);
        assert_eq!(c.len(), 144);
        assert_eq!(c.iter().filter(|c| c.mirror).count(), 72);
        let s = 0.875;
        // First scale, left square (0,0): TL, TR, BL, BR, centre, whole.
        assert_box(c[0].bbox, b(0.0, 0.0, 224.0 * s, 224.0 * s));
        assert_box(c[2].bbox, b(32.0 * s, 0.0, 224.0 * s, 224.0 * s));
        assert_box(c[6].bbox, b(32.0 * s, 32.0 * s, 224.0 * s, 224.0 * s));
        assert_box(c[8].bbox, b(16.0 * s, 16.0 * s, 224.0 * s, 224.0 * s));
        assert_box(c[10].bbox, b(0.0, 0.0, 256.0 * s, 256.0 * s));
        assert!(c[11].mirror && c[11].bbox == c[10].bbox);
        // Centre square at x = 128 (resized), right square at x = 256.
        assert_box(c[12].bbox, b(128.0 * s, 0.0, 224.0 * s, 224.0 * s));
        assert_box(c[24 + 10].bbox, b(256.0 * s, 0.0, 224.0, 224.0));
        // Last scale (352): frame 704x352, sx = 448/704; right square at 352; its
        // bottom-right crop at (352+128, 128).
        let s4 = 448.0 / 704.0;
        assert_box(
            c[108 + 24 + 6].bbox,
            b(480.0 * s4, 128.0 * s4, 224.0 * s4, 224.0 * s4),
        );
        assert_box(c[143].bbox, b(352.0 * s4, 0.0, 352.0 * s4, 352.0 * s4));
        assert!(c[143].mirror);
    }

    #[test]
    fn crops_144_portrait_and_square() {
        // Portrait 300x400 at input 224, scale 288: frame 288x384, squares at y 0, 48, 96.
        let c = crops_144(300, 400, 224);
        assert_eq!(c.len(), 144);
        let (sx, sy) = (300.0 / 288.0, 400.0 / 384.0);
        let base = 36; // second scale
        assert_box(
            c[base + 12 + 8].bbox,
            b(32.0 * sx, (48.0 + 32.0) * sy, 224.0 * sx, 224.0 * sy),
        );
        assert_box(
            c[base + 24 + 10].bbox,
            b(0.0, 96.0 * sy, 288.0 * sx, 288.0 * sy),
        );
        // Square image: all three squares coincide.
        let q = crops_144(500, 500, 299);
        assert_eq!(q.len(), 144);
        assert_eq!(q[0].bbox, q[12].bbox);
        assert_eq!(q[12].bbox, q[24].bbox);
        let s = 500.0 / 342.0;
        assert_box(q[10].bbox, b(0.0, 0.0, 500.0, 500.0));
        assert_box(q[8].bbox, b(21.0 * s, 21.0 * s, 299.0 * s, 299.0 * s));
    }

    #[test]
    fn crops_12_is_one_scale_centre_square() {
        let all = crops_144(500, 375, 299);
        let twelve = crops_12(500, 375, 299, 1);
        assert_eq!(twelve.len(), 12);
        // Scale index 1 starts at 36; its centre square at +12.
        assert_eq!(&twelve[..], &all[48..60]);
        // Shorter side 384: frame 512x384, centre square at x 64; centre crop at 64 + 42.
        let s = 375.0 / 384.0;
        assert_box(twelve[8].bbox, b(106.0 * s, 42.0 * s, 299.0 * s, 299.0 * s));
        let p = CropProtocol::Crops12 { scale_index: 1 };
        assert_eq!(p.crops(500, 375, 299), twelve);
        assert_eq!(p.num_crops(), 12);
        assert!(
            p.describe(299).contains("shorter side 384"),
            "{}",
            p.describe(299)
        );
        assert_eq!(CropProtocol::Crops144.crops(500, 375, 299).len(), 144);
        assert_eq!(CropProtocol::default().crops(500, 375, 299).len(), 1);
    }
}
