//! One model's class probabilities for each image of an evaluation (softmax averaged over the
//! image's crops), kept beside the evaluation so that an ensemble of evaluated models averages
//! them instead of running every member's forward passes again.
//!
//! Two files: `<stem>.safetensors` (`probabilities`, images x classes, f32) and `<stem>.json`
//! (the images in order, with their labels, the skipped images, the crop protocol and the
//! evaluation set), written in that order, so the JSON marks a complete pair.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::report::{EvalReport, SkippedSample};
use super::EvalError;
use crate::store::atomic::{write_json, write_safetensors};

/// What the JSON half of a stored pair holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    /// [`EvalReport::models`] of the single model.
    model: String,
    crop_definition: String,
    eval_set: String,
    classes: usize,
    /// The evaluated images, in the order of the tensor's rows.
    images: Vec<(PathBuf, u32)>,
    /// (path, label, reason) of the images left out.
    skipped: Vec<(PathBuf, u32, String)>,
}

/// A stored single-model evaluation's probabilities.
pub struct StoredProbabilities {
    pub model: String,
    pub crop_definition: String,
    pub eval_set: String,
    /// `images x classes` probabilities on the CPU.
    pub probabilities: Tensor,
    /// The evaluated images with their labels, in row order.
    pub images: Vec<(PathBuf, u32)>,
    pub skipped: Vec<SkippedSample>,
}

fn pair(stem: &Path) -> (PathBuf, PathBuf) {
    (
        stem.with_extension("safetensors"),
        stem.with_extension("json"),
    )
}

/// Stores the probabilities of a single-model `report` under `stem` (`.safetensors` + `.json`).
pub fn write_probabilities(stem: &Path, report: &EvalReport) -> Result<(), EvalError> {
    let [model] = report.record.models.as_slice() else {
        return Err(EvalError::Config(
            "only a single model's probabilities are stored".into(),
        ));
    };
    let images = report.predictions.len();
    let classes = match images {
        0 => 0,
        n => report.probabilities.len() / n,
    };
    if classes * images != report.probabilities.len() || classes == 0 {
        return Err(EvalError::Config(format!(
            "{} probabilities for {images} images",
            report.probabilities.len()
        )));
    }
    let (tensors, index) = pair(stem);
    let probabilities = Tensor::from_slice(&report.probabilities, (images, classes), &Device::Cpu)
        .map_err(|e| EvalError::Scores(e.to_string()))?;
    write_safetensors(
        &tensors,
        &HashMap::from([("probabilities".to_string(), probabilities)]),
    )?;
    let index_data = Index {
        model: model.clone(),
        crop_definition: report.record.crop_definition.clone(),
        eval_set: report.record.eval_set.clone(),
        classes,
        images: report
            .predictions
            .iter()
            .map(|p| (p.path.clone(), p.label))
            .collect(),
        skipped: report
            .skipped
            .iter()
            .map(|s| (s.path.clone(), s.label, s.reason.clone()))
            .collect(),
    };
    write_json(&index, &index_data)?;
    Ok(())
}

/// The pair stored under `stem`, or `None` when it is not there (or only half of it is).
pub fn read_probabilities(stem: &Path) -> Result<Option<StoredProbabilities>, EvalError> {
    let (tensors, index) = pair(stem);
    if !index.is_file() || !tensors.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&index).map_err(|source| EvalError::Open {
        path: index.clone(),
        source,
    })?;
    let bad = |what: String| EvalError::Config(format!("{}: {what}", index.display()));
    let data: Index = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let mut loaded = candle_core::safetensors::load(&tensors, &Device::Cpu)
        .map_err(|e| EvalError::Config(format!("{}: {e}", tensors.display())))?;
    let probabilities = loaded
        .remove("probabilities")
        .ok_or_else(|| bad("its tensor file holds no `probabilities`".into()))?;
    if probabilities.dims() != [data.images.len(), data.classes] {
        let dims: Vec<String> = probabilities.dims().iter().map(|d| d.to_string()).collect();
        return Err(bad(format!(
            "{} images of {} classes, but the tensor is {}",
            data.images.len(),
            data.classes,
            dims.join(" x ")
        )));
    }
    Ok(Some(StoredProbabilities {
        model: data.model,
        crop_definition: data.crop_definition,
        eval_set: data.eval_set,
        probabilities,
        images: data.images,
        skipped: data
            .skipped
            .into_iter()
            .map(|(path, label, reason)| SkippedSample {
                path,
                label,
                reason,
            })
            .collect(),
    }))
}
