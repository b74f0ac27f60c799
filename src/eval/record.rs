//! `eval.parquet`: one row per evaluation (protocol, crop definition, evaluation set,
//! models, images, errors), written by the Table 2-5 experiments.
//!
//! Columns, in order: `crops` (u64), `crop_definition` (string), `eval_set` (string),
//! `models` (the ensemble's models joined by " + "), `images` (u64), `top1_err` and `top5_err` (f64 in [0, 1]).

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
        ],
    )
    .map_err(|e| polars_error(path, e))?;
    write_frame(path, df)
}

/// Reads every record of an `eval.parquet` file, checking its schema.
pub fn read_eval_parquet(path: &Path) -> Result<Vec<EvalRecord>, EvalError> {
    let df = read_frame(path, &columns())?;
    let crops = values(path, &df, "crops", u64s)?;
    let definitions = values(path, &df, "crop_definition", strings)?;
    let sets = values(path, &df, "eval_set", strings)?;
    let models = values(path, &df, "models", strings)?;
    let images = values(path, &df, "images", u64s)?;
    let top1 = values(path, &df, "top1_err", f64s)?;
    let top5 = values(path, &df, "top5_err", f64s)?;
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
        })
        .collect())
}
