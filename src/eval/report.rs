//! What one evaluation found: the errors, what was evaluated, and each image's result.

use std::fmt;
use std::path::PathBuf;

use super::record::EvalRecord;
use crate::data::ImageSet;

/// The result of one evaluation. Errors are fractions in [0, 1]; `Display` shows percent.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalReport {
    /// Top-1 error in [0, 1].
    pub top1_err: f64,
    /// Top-5 error in [0, 1].
    pub top5_err: f64,
    /// Images evaluated.
    pub images: u64,
    /// Crops per image.
    pub crops: usize,
    /// [`CropProtocol::describe`] at the input size.
    pub protocol_description: String,
    /// Which images were evaluated.
    pub eval_set: ImageSet,
    /// [`ModelWeights::name`] of every model, in ensemble order.
    pub models: Vec<String>,
    /// One entry per evaluated image, in dataset order.
    pub predictions: Vec<Prediction>,
    /// Each evaluated image's class probabilities (averaged over crops, then models), in the
    /// order of `predictions`: images x classes.
    pub probabilities: Vec<f32>,
    /// The images left out because they could not be read or decoded, in dataset order.
    pub skipped: Vec<SkippedImage>,
}

impl EvalReport {
    /// The `eval.parquet` row of this evaluation.
    pub fn record(&self) -> EvalRecord {
        EvalRecord {
            crops: self.crops as u64,
            crop_definition: self.protocol_description.clone(),
            eval_set: self.eval_set.as_str().to_string(),
            models: self.models.clone(),
            images: self.images,
            top1_err: self.top1_err,
            top5_err: self.top5_err,
            skipped: self
                .skipped
                .iter()
                .map(|b| b.path.display().to_string())
                .collect(),
        }
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "top-1 error {:.2}%  top-5 error {:.2}%  ({} images, {})",
            100.0 * self.top1_err,
            100.0 * self.top5_err,
            self.images,
            self.eval_set
        )?;
        writeln!(f, "protocol: {}", self.protocol_description)?;
        write!(f, "models: {}", self.models.join(", "))?;
        if !self.skipped.is_empty() {
            write!(
                f,
                "\nskipped {} unreadable image(s), not counted in the errors:",
                self.skipped.len()
            )?;
            const LISTED: usize = 10;
            for b in self.skipped.iter().take(LISTED) {
                write!(f, "\n  {}: {}", b.path.display(), b.reason)?;
            }
            if self.skipped.len() > LISTED {
                write!(
                    f,
                    "\n  ... and {} more (all in --predictions)",
                    self.skipped.len() - LISTED
                )?;
            }
        }
        Ok(())
    }
}

/// One image's result.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prediction {
    /// The image file.
    pub path: PathBuf,
    /// Its class index.
    pub label: u32,
    /// The most probable classes (at most 5) with their averaged probabilities, most
    /// probable first; equal probabilities by ascending class.
    pub top5: Vec<(u32, f32)>,
}

/// An image left out of an evaluation because it could not be read or decoded
/// (`--skip-bad-images`).
#[derive(Clone, Debug, PartialEq)]
pub struct SkippedImage {
    /// The image file.
    pub path: PathBuf,
    /// Its class index.
    pub label: u32,
    /// What the reader or decoder said.
    pub reason: String,
}
