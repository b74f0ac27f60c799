//! The crop protocols behind `--crops 1|10|12|144`.
//!
//! - 1: the central crop keeping `crop_fraction` of each side, resized to the input.
//! - 10: the shorter side resized to `round(input / crop_fraction)` (342 for 299 at
//!   0.875, GoogLeNet's first scale), then the four corners and the centre of the input
//!   size, each with its mirror.
//! - 12: the paper never defines it; here it is the 144-crop set restricted to one scale
//!   ([`TWELVE_CROP_SCALE`], shorter side 288 x input / 224) and the centre square:
//!   4 corners + centre + the whole square, each with its mirror. Build
//!   [`CropProtocol::Crops12`] directly for another scale.
//! - 144: GoogLeNet's 4 scales x 3 squares x 6 crops x mirror.

use crate::data::{googlenet_scales, CropProtocol};

use super::EvalError;

/// Index into [`googlenet_scales`] of the one scale of the 12-crop protocol (288 x
/// input / 224: 384 for a 299 input).
pub const TWELVE_CROP_SCALE: usize = 1;

/// The protocol for `crops` crops per image at an `input`-pixel network, with the
/// central crop keeping `crop_fraction` of each side (1 crop) or the shorter side resized
/// to `input / crop_fraction` (10 crops). Errors name the unsupported value.
pub fn protocol_for(crops: u32, crop_fraction: f64, input: u32) -> Result<CropProtocol, EvalError> {
    if !(crop_fraction > 0.0 && crop_fraction <= 1.0) {
        return Err(EvalError::Config(format!(
            "crop fraction must be in (0, 1], got {crop_fraction}"
        )));
    }
    if input == 0 {
        return Err(EvalError::Config("input size must be positive".into()));
    }
    match crops {
        1 => Ok(CropProtocol::Central {
            fraction: crop_fraction,
        }),
        10 => Ok(CropProtocol::TenCrop {
            shorter: (input as f64 / crop_fraction).round() as u32,
        }),
        12 => Ok(CropProtocol::Crops12 {
            scale_index: TWELVE_CROP_SCALE,
        }),
        144 => Ok(CropProtocol::Crops144),
        other => Err(EvalError::Config(format!(
            "unsupported number of crops {other}: expected 1, 10, 12 or 144"
        ))),
    }
}

/// Checks that `protocol` can be applied at an `input`-pixel network (the crop geometry
/// panics on impossible settings, so they are rejected here with a message).
pub fn check_protocol(protocol: &CropProtocol, input: u32) -> Result<(), EvalError> {
    let bad = |what: String| Err(EvalError::Config(what));
    match *protocol {
        CropProtocol::Central { fraction } if !(fraction > 0.0 && fraction <= 1.0) => bad(format!(
            "central crop fraction must be in (0, 1], got {fraction}"
        )),
        CropProtocol::TenCrop { shorter } if shorter < input => bad(format!(
            "10 crops: shorter side {shorter} is smaller than the {input}-pixel input"
        )),
        CropProtocol::Crops12 { scale_index } if scale_index >= googlenet_scales(input).len() => {
            bad(format!(
                "12 crops: scale index {scale_index} out of range (0..{})",
                googlenet_scales(input).len()
            ))
        }
        _ => Ok(()),
    }
}
