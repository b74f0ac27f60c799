//! The `--predictions` file: one row per image with its label and the ensemble's top 5.
//!
//! Columns: `path` (string), `label` (u32), `top5_classes` (list of u32, most probable
//! first), `top5_probs` (list of f32, the averaged probabilities of those classes), and
//! on every row the evaluation's `crop_definition` and `eval_set`; then `skipped` (string:
//! null for an evaluated image; for an image that could not be read or decoded, the reason,
//! with empty top-5 lists). The evaluated images come first, the skipped ones after them.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::parquet::{
    list_column, lists, polars_error, read_frame, strings, u32s, values, write_frame,
};
use super::report::{EvalReport, Prediction, SkippedSample};
use super::EvalError;

fn columns() -> [(&'static str, DataType); 6] {
    [
        ("path", DataType::String),
        ("label", DataType::UInt32),
        ("top5_classes", DataType::List(Box::new(DataType::UInt32))),
        ("top5_probs", DataType::List(Box::new(DataType::Float32))),
        ("crop_definition", DataType::String),
        ("eval_set", DataType::String),
    ]
}

/// Columns appended after the first release of the format.
fn added_columns() -> [(&'static str, DataType); 1] {
    [("skipped", DataType::String)]
}

/// Writes the predictions of `report` to `path` (Parquet, atomically): the evaluated images,
/// then the skipped ones.
pub fn write_predictions(path: &Path, report: &EvalReport) -> Result<(), EvalError> {
    let (rows, skipped) = (&report.predictions, &report.skipped);
    let n = rows.len() + skipped.len();
    let paths: Vec<String> = rows
        .iter()
        .map(|p| &p.path)
        .chain(skipped.iter().map(|s| &s.path))
        .map(|p| p.display().to_string())
        .collect();
    let labels: Vec<u32> = rows
        .iter()
        .map(|p| p.label)
        .chain(skipped.iter().map(|s| s.label))
        .collect();
    let list = |get: &dyn Fn(&Prediction) -> Series| -> Vec<Series> {
        rows.iter()
            .map(get)
            .chain(skipped.iter().map(|_| get(&Prediction::default())))
            .collect()
    };
    let classes =
        list(&|p| Series::new("".into(), p.top5.iter().map(|t| t.0).collect::<Vec<u32>>()));
    let probs = list(&|p| Series::new("".into(), p.top5.iter().map(|t| t.1).collect::<Vec<f32>>()));
    let reasons: Vec<Option<String>> = rows
        .iter()
        .map(|_| None)
        .chain(skipped.iter().map(|s| Some(s.reason.clone())))
        .collect();
    let repeat = |v: String| vec![v; n];
    let df = DataFrame::new(
        n,
        vec![
            Column::new("path".into(), paths),
            Column::new("label".into(), labels),
            list_column("top5_classes", classes),
            list_column("top5_probs", probs),
            Column::new(
                "crop_definition".into(),
                repeat(report.record.crop_definition.clone()),
            ),
            Column::new("eval_set".into(), repeat(report.record.eval_set.clone())),
            Column::new("skipped".into(), reasons),
        ],
    )
    .map_err(|e| polars_error(path, e))?;
    write_frame(path, df)
}

/// The rows of a predictions file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PredictionsFile {
    /// The evaluated images, in file order.
    pub predictions: Vec<Prediction>,
    /// The images left out as unreadable, in file order.
    pub skipped: Vec<SkippedSample>,
}

/// Reads the rows of a predictions file, checking its schema.
pub fn read_predictions(path: &Path) -> Result<PredictionsFile, EvalError> {
    let df = read_frame(path, &columns(), &added_columns())?;
    let reasons: Vec<Option<String>> = match df.width() > columns().len() {
        true => df
            .column("skipped")
            .and_then(strings)
            .map_err(|e| polars_error(path, e))?,
        false => vec![None; df.height()],
    };
    let no_nulls =
        |what: &str| PolarsError::ComputeError(format!("null inside a {what} list").into());
    let paths = values(path, &df, "path", strings)?;
    let labels = values(path, &df, "label", u32s)?;
    let classes = values(path, &df, "top5_classes", |c| {
        lists(c, |s| {
            s.u32()?
                .iter()
                .map(|v| v.ok_or_else(|| no_nulls("class")))
                .collect()
        })
    })?;
    let probs = values(path, &df, "top5_probs", |c| {
        lists(c, |s| {
            s.f32()?
                .iter()
                .map(|v| v.ok_or_else(|| no_nulls("probability")))
                .collect()
        })
    })?;
    let mut file = PredictionsFile::default();
    for (row, (((p, label), (c, pr)), reason)) in paths
        .into_iter()
        .zip(labels)
        .zip(classes.into_iter().zip(probs))
        .zip(reasons)
        .enumerate()
    {
        if c.len() != pr.len() {
            return Err(EvalError::Column {
                path: path.to_path_buf(),
                column: "top5_probs".into(),
                problem: format!(
                    "row {row} has {} classes but {} probabilities",
                    c.len(),
                    pr.len()
                ),
            });
        }
        match reason {
            Some(reason) => file.skipped.push(SkippedSample {
                path: PathBuf::from(p),
                label,
                reason,
            }),
            None => file.predictions.push(Prediction {
                path: PathBuf::from(p),
                label,
                top5: c.into_iter().zip(pr).collect(),
            }),
        }
    }
    Ok(file)
}
