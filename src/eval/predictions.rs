//! The `--predictions` file: one row per image with its label and the ensemble's top 5.
//!
//! Columns: `path` (string), `label` (u32), `top5_classes` (list of u32, most probable
//! first), `top5_probs` (list of f32, the averaged probabilities of those classes), and
//! on every row the evaluation's `crop_definition` and `eval_set`.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::evaluate::EvalReport;
use super::parquet::{
    list_column, lists, polars_error, read_frame, strings, u32s, values, write_frame,
};
use super::EvalError;

/// One image's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The image file.
    pub path: PathBuf,
    /// Its class index.
    pub label: u32,
    /// The most probable classes (at most 5) with their averaged probabilities, most
    /// probable first; equal probabilities by ascending class.
    pub top5: Vec<(u32, f32)>,
}

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

/// Writes the predictions of `report` to `path` (Parquet, atomically).
pub fn write_predictions(path: &Path, report: &EvalReport) -> Result<(), EvalError> {
    let rows = &report.predictions;
    let paths: Vec<String> = rows.iter().map(|p| p.path.display().to_string()).collect();
    let labels: Vec<u32> = rows.iter().map(|p| p.label).collect();
    let classes: Vec<Series> = rows
        .iter()
        .map(|p| Series::new("".into(), p.top5.iter().map(|t| t.0).collect::<Vec<u32>>()))
        .collect();
    let probs: Vec<Series> = rows
        .iter()
        .map(|p| Series::new("".into(), p.top5.iter().map(|t| t.1).collect::<Vec<f32>>()))
        .collect();
    let repeat = |v: String| vec![v; rows.len()];
    let df = DataFrame::new(
        rows.len(),
        vec![
            Column::new("path".into(), paths),
            Column::new("label".into(), labels),
            list_column("top5_classes", classes),
            list_column("top5_probs", probs),
            Column::new(
                "crop_definition".into(),
                repeat(report.protocol_description.clone()),
            ),
            Column::new("eval_set".into(), repeat(report.eval_set.to_string())),
        ],
    )
    .map_err(|e| polars_error(path, e))?;
    write_frame(path, df)
}

/// Reads the rows of a predictions file, checking its schema.
pub fn read_predictions(path: &Path) -> Result<Vec<Prediction>, EvalError> {
    let df = read_frame(path, &columns())?;
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
    paths
        .into_iter()
        .zip(labels)
        .zip(classes.into_iter().zip(probs))
        .enumerate()
        .map(|(row, ((p, label), (c, pr)))| {
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
            Ok(Prediction {
                path: PathBuf::from(p),
                label,
                top5: c.into_iter().zip(pr).collect(),
            })
        })
        .collect()
}
