//! The data of a training run as an experiment file gives it: where the images are, which
//! subset, and how they are preprocessed. Serialised into the run's configuration and hash.

use serde::{Deserialize, Serialize};

/// Which validation layout `val` has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValLayout {
    /// `val/<class>/<image>`, like the training set.
    ImageFolder,
    /// ILSVRC-2012 as distributed: a flat folder of `ILSVRC2012_val_%08d.JPEG` with the
    /// devkit's ground truth (`val_ground_truth`) or per-image WNIDs (`val_wnids`).
    IlsvrcFlat,
}

/// Which validation images an evaluation uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalSet {
    All,
    /// The 48,238 images left after removing the devkit's blacklist (the paper's Table 2).
    Nonblacklisted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColorMode {
    Off,
    Fast,
    Full,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterpolationMode {
    Bilinear,
    Bicubic,
}

/// Class-dependent synthetic JPEGs generated into `<results>/data/` (smoke runs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticSpec {
    pub classes: usize,
    pub train_per_class: usize,
    pub val_per_class: usize,
    /// Side of the generated images in pixels.
    pub image_size: u32,
    pub seed: u64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            classes: 4,
            train_per_class: 24,
            val_per_class: 8,
            image_size: 64,
            seed: 0,
        }
    }
}

/// The data of a resolved run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// ImageFolder root of the training images (`train/<class>/<image>`).
    pub train: Option<String>,
    /// Validation images, in `val_layout`.
    pub val: Option<String>,
    pub val_layout: ValLayout,
    pub val_ground_truth: Option<String>,
    pub val_wnids: Option<String>,
    pub blacklist: Option<String>,
    pub eval_set: EvalSet,
    /// Use only the first N classes (sorted by folder name).
    pub classes: Option<usize>,
    pub train_images_per_class: Option<usize>,
    pub val_images_per_class: Option<usize>,
    pub subset_seed: u64,
    pub skip_bad_images: bool,
    /// When set, `train` and `val` are generated instead of read.
    pub synthetic: Option<SyntheticSpec>,
    pub color_distortion: ColorMode,
    /// Area range of the random training crop, as fractions of the image: TF-slim's
    /// [0.05, 1.0] by default. Small or low-resolution datasets train better with less.
    pub train_crop_area: [f64; 2],
    /// Central crop of single-crop evaluation: the fraction of each side kept.
    pub eval_crop_fraction: f64,
    pub interpolation: InterpolationMode,
}
