//! `eval.parquet`: one row per evaluation (protocol, crop definition, evaluation set,
//! models, images, errors), written by the Table 2-5 experiments.
//!
//! Columns, in order: `crops` (u64), `crop_definition` (string), `eval_set` (string),
//! `models` (the ensemble's models joined by " + "), `images` (u64), `top1_err` and `top5_err` (f64 in [0, 1]),
//! `skipped_images` (u64: unreadable images left out, not counted in `images`) and
//! `skipped_files` (their paths, one per line). Files written before the last two columns
//! existed are read with no skipped images.

use std::path::Path;

use polars::prelude::*;

use super::parquet::{f64s, polars_error, read_frame, strings, u64s, values, write_frame};
use super::EvalError;

/// One evaluation, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalRecord {
    /// The protocol: crops per image (1, 10, 12 or 144).
    pub crops: u64,
    /// [`crate::data::CropProtocol::describe`] at the input size.
    pub crop_definition: String,
    /// [`crate::data::ImageSet::as_str`] of the evaluated images.
    pub eval_set: String,
    /// The models (`arch:weights`), in ensemble order.
    pub models: Vec<String>,
    /// Images evaluated.
    pub images: u64,
    /// Top-1 error in [0, 1].
    pub top1_err: f64,
    /// Top-5 error in [0, 1].
    pub top5_err: f64,
    /// The images left out because they could not be read or decoded.
    pub skipped: Vec<String>,
}

/// Joins the models of an ensemble in the `models` column. A plain string (not a list)
/// because pandas cannot convert polars' list-of-string-view columns.
const MODEL_SEPARATOR: &str = " + ";

fn columns() -> [(&'static str, DataType); 7] {
    [
        ("crops", DataType::UInt64),
        ("crop_definition", DataType::String),
        ("eval_set", DataType::String),
        ("models", DataType::String),
        ("images", DataType::UInt64),
        ("top1_err", DataType::Float64),
        ("top5_err", DataType::Float64),
    ]
}

/// Columns appended after the first release of the format.
fn added_columns() -> [(&'static str, DataType); 2] {
    [
        ("skipped_images", DataType::UInt64),
        ("skipped_files", DataType::String),
    ]
}

/// Writes `records` as the whole file at `path` (Parquet, atomically).
pub fn write_eval_parquet(path: &Path, records: &[EvalRecord]) -> Result<(), EvalError> {
    fn col<T>(records: &[EvalRecord], get: impl Fn(&EvalRecord) -> T) -> Vec<T> {
        records.iter().map(get).collect()
    }
    let df = DataFrame::new(
        records.len(),
        vec![
            Column::new("crops".into(), col(records, |r| r.crops)),
            Column::new(
                "crop_definition".into(),
                col(records, |r| r.crop_definition.clone()),
            ),
            Column::new("eval_set".into(), col(records, |r| r.eval_set.clone())),
            Column::new(
                "models".into(),
                col(records, |r| r.models.join(MODEL_SEPARATOR)),
            ),
            Column::new("images".into(), col(records, |r| r.images)),
            Column::new("top1_err".into(), col(records, |r| r.top1_err)),
            Column::new("top5_err".into(), col(records, |r| r.top5_err)),
            Column::new(
                "skipped_images".into(),
                col(records, |r| r.skipped.len() as u64),
            ),
            Column::new(
                "skipped_files".into(),
                col(records, |r| r.skipped.join("\n")),
            ),
        ],
    )
    .map_err(|e| polars_error(path, e))?;
    write_frame(path, df)
}

/// Reads every record of an `eval.parquet` file, checking its schema.
pub fn read_eval_parquet(path: &Path) -> Result<Vec<EvalRecord>, EvalError> {
    let df = read_frame(path, &columns(), &added_columns())?;
    let crops = values(path, &df, "crops", u64s)?;
    let definitions = values(path, &df, "crop_definition", strings)?;
    let sets = values(path, &df, "eval_set", strings)?;
    let models = values(path, &df, "models", strings)?;
    let images = values(path, &df, "images", u64s)?;
    let top1 = values(path, &df, "top1_err", f64s)?;
    let top5 = values(path, &df, "top5_err", f64s)?;
    let skipped = match df.width() > columns().len() {
        true => values(path, &df, "skipped_files", strings)?
            .into_iter()
            .map(|files| files.lines().map(str::to_string).collect())
            .collect(),
        false => vec![Vec::new(); df.height()],
    };
    Ok((0..df.height())
        .map(|i| EvalRecord {
            crops: crops[i],
            crop_definition: definitions[i].clone(),
            eval_set: sets[i].clone(),
            models: models[i]
                .split(MODEL_SEPARATOR)
                .map(str::to_string)
                .collect(),
            images: images[i],
            top1_err: top1[i],
            top5_err: top5[i],
            skipped: skipped[i].clone(),
        })
        .collect())
}
