//! What one evaluation found: the errors, what was evaluated, and each image's result.

use std::fmt;
use std::path::PathBuf;

use super::record::EvalRecord;

/// The result of one evaluation: what `eval.parquet` stores of it, and each image's result.
/// Errors are fractions in [0, 1]; `Display` shows percent.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalReport {
    /// The errors, the crops, the images and models evaluated (`eval.parquet`'s row).
    pub record: EvalRecord,
    /// One entry per evaluated image, in dataset order.
    pub predictions: Vec<Prediction>,
    /// Each evaluated image's class probabilities (averaged over crops, then models), in the
    /// order of `predictions`: images x classes; empty unless the request kept them.
    pub probabilities: Vec<f32>,
    /// The images left out because they could not be read or decoded, in dataset order.
    pub skipped: Vec<SkippedSample>,
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.record;
        writeln!(
            f,
            "top-1 error {:.2}%  top-5 error {:.2}%  ({} images, {})",
            100.0 * r.top1_err,
            100.0 * r.top5_err,
            r.images,
            r.eval_set
        )?;
        writeln!(f, "protocol: {}", r.crop_definition)?;
        write!(f, "models: {}", r.models.join(", "))?;
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

/// An image of the evaluated set left out because it could not be read or decoded
/// (`--skip-bad-images`), with the class the predictions file lists it under.
#[derive(Clone, Debug, PartialEq)]
pub struct SkippedSample {
    /// The image file.
    pub path: PathBuf,
    /// Its class index.
    pub label: u32,
    /// What the reader or decoder said.
    pub reason: String,
}
