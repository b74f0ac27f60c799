//! Everything between image files on disk and a batch tensor.
//!
//! - [`source`]: the ImageFolder layout, class indices, subsets, which set was used.
//! - [`ilsvrc`]: the ILSVRC-2012 validation layouts, ground truth and blacklist.
//! - [`synthetic`]: class-dependent JPEG smoke data.
//! - [`decode`]: JPEG/PNG to RGB, bad-file detection.
//! - [`resize`]: TF-legacy bilinear/bicubic resampling.
//! - [`crops`]: crop geometry (central, 10, 12 and 144 crops).
//! - [`augment`]: TF-slim Inception preprocessing for training and evaluation.
//! - [`loader`]: the parallel, deterministic, prefetching batch loader.

pub mod augment;
mod color;
mod config;
pub mod crops;
pub mod decode;
pub mod error;
pub mod ilsvrc;
pub mod loader;
pub mod resize;
mod rng;
pub mod source;
pub mod synthetic;

pub use augment::{render_crop, ColorDistortion, EvalTransform, Preprocess, TrainAugment};
pub use config::{ColorMode, DataConfig, EvalSet, InterpolationMode, SyntheticSpec, ValLayout};
pub use crops::{
    central_crop, crops_12, crops_144, googlenet_scales, ten_crops, Crop, CropBox, CropOrder,
    CropProtocol,
};
pub use decode::{decode_image_bytes, decode_image_file, RgbImage};
pub use error::DataError;
pub use ilsvrc::{ilsvrc_val_flat, ilsvrc_val_folders, ValLabels};
pub use loader::{Batch, EpochIter, Loader, LoaderConfig, SkippedImage};
pub use resize::Interpolation;
pub use source::{ClassSelection, Dataset, ImageSet, Sample, SkippedFiles, Subset};
pub use synthetic::write_synthetic_dataset;
