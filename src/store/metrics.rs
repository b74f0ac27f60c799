//! `metrics.parquet`: one row per evaluation point of a training run.
//!
//! Parquet files cannot be appended to, so [`append_metrics`] reads the existing rows, adds
//! the new ones and rewrites the whole (small) file atomically. The schema is plain
//! `f64`/`u64` columns with nulls only in the error and activity columns, so polars, pandas (pyarrow)
//! and duckdb read it without this program.

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::atomic::{self, AtomicWriteError};

/// A quantity recorded at each evaluation of a run: what figures draw against epoch and
/// claims compare (`top1`, `top5` or `pre_pool_zeros` in experiment files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Top-1 error.
    Top1,
    /// Top-5 error.
    Top5,
    /// The share of zero activations before the average pooling (section 3.3's "died").
    PrePoolZeros,
}

impl Metric {
    /// Whether it is an error rate (what tables hold and claims about errors compare).
    pub fn is_error(self) -> bool {
        matches!(self, Metric::Top1 | Metric::Top5)
    }

    /// The value of this metric in a metrics row (a fraction), if that row was evaluated.
    pub fn of(self, row: &MetricsRow) -> Option<f64> {
        match self {
            Metric::Top1 => row.top1_err,
            Metric::Top5 => row.top5_err,
            Metric::PrePoolZeros => row.pre_pool_zero_frac,
        }
    }

    /// A run's error curve: (epoch, error in %) of its evaluated rows, in epoch order.
    pub fn curve(self, rows: &[MetricsRow]) -> Vec<(f64, f64)> {
        let mut curve: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| Some((r.epoch, self.of(r)? * 100.0)))
            .collect();
        curve.sort_by(|a, b| a.0.total_cmp(&b.0));
        curve
    }

    /// `"top1"`, `"top5"` or `"pre_pool_zeros"`, as in `figure_curves.csv`.
    pub fn key(self) -> &'static str {
        match self {
            Metric::Top1 => "top1",
            Metric::Top5 => "top5",
            Metric::PrePoolZeros => "pre_pool_zeros",
        }
    }

    /// `"top-1"` or `"top-5"`, for prose about errors.
    pub fn label(self) -> &'static str {
        match self {
            Metric::Top1 => "top-1",
            Metric::Top5 => "top-5",
            Metric::PrePoolZeros => "pre-pooling zeros",
        }
    }

    /// What is plotted, for titles and axes: `"top-1 error"`, `"zero activations before
    /// the pooling"`.
    pub fn quantity(self) -> &'static str {
        match self {
            Metric::Top1 => "top-1 error",
            Metric::Top5 => "top-5 error",
            Metric::PrePoolZeros => "zero activations before the pooling",
        }
    }
}

/// Errors of reading or writing a metrics file; each names the file (and column).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The file could not be opened.
    #[error("reading {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// polars failed to build, read or write the table.
    #[error("{path}: {source}")]
    Polars {
        path: PathBuf,
        #[source]
        source: PolarsError,
    },
    /// A column is missing or has an unexpected type.
    #[error("{path}: column `{column}`: expected {expected}, found {found}")]
    Column {
        path: PathBuf,
        column: String,
        expected: String,
        found: String,
    },
    /// A column that may not be null holds a null.
    #[error("{path}: column `{column}` has a null in row {row}")]
    Null {
        path: PathBuf,
        column: &'static str,
        row: usize,
    },
    /// Writing the file failed.
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
}

/// One evaluation point of a training run.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    /// Fractional epoch at this point.
    pub epoch: f64,
    /// Optimizer steps taken.
    pub step: u64,
    /// Training images consumed (global, over all replicas).
    pub images_seen: u64,
    /// Learning rate at this step.
    pub lr: f64,
    /// Mean training loss since the previous row.
    pub train_loss: f64,
    /// Top-1 validation error in [0, 1], if evaluated.
    pub top1_err: Option<f64>,
    /// Top-5 validation error in [0, 1], if evaluated.
    pub top5_err: Option<f64>,
    /// Images in the evaluation (0 when not evaluated).
    pub eval_images: u64,
    /// Training throughput since the previous row.
    pub images_per_s: f64,
    /// Wall-clock seconds since the run started.
    pub wall_s: f64,
    /// Fraction of the activations before the average pooling that are exactly zero on the
    /// evaluated images (the paper's sign of a network that died), if measured.
    pub pre_pool_zero_frac: Option<f64>,
    /// Fraction of the channels before the average pooling that are zero on every evaluated
    /// image, if measured.
    pub pre_pool_dead_channel_frac: Option<f64>,
}

/// Column names and types of `metrics.parquet`, in file order.
pub const METRICS_COLUMNS: [(&str, ColumnKind); 10] = [
    ("epoch", ColumnKind::F64),
    ("step", ColumnKind::U64),
    ("images_seen", ColumnKind::U64),
    ("lr", ColumnKind::F64),
    ("train_loss", ColumnKind::F64),
    ("top1_err", ColumnKind::F64),
    ("top5_err", ColumnKind::F64),
    ("eval_images", ColumnKind::U64),
    ("images_per_s", ColumnKind::F64),
    ("wall_s", ColumnKind::F64),
];

/// Columns appended after the first release of the format: files written before lack them
/// and read with their values missing.
pub const ADDED_METRICS_COLUMNS: [(&str, ColumnKind); 2] = [
    ("pre_pool_zero_frac", ColumnKind::F64),
    ("pre_pool_dead_channel_frac", ColumnKind::F64),
];

/// Physical type of a metrics column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// 64-bit float (`double` in Parquet).
    F64,
    /// 64-bit unsigned integer (`uint64` logical type in Parquet).
    U64,
}

impl ColumnKind {
    fn dtype(self) -> DataType {
        match self {
            ColumnKind::F64 => DataType::Float64,
            ColumnKind::U64 => DataType::UInt64,
        }
    }
}

fn to_frame(rows: &[MetricsRow]) -> PolarsResult<DataFrame> {
    fn f64s(rows: &[MetricsRow], get: impl Fn(&MetricsRow) -> f64) -> Vec<f64> {
        rows.iter().map(get).collect()
    }
    fn u64s(rows: &[MetricsRow], get: impl Fn(&MetricsRow) -> u64) -> Vec<u64> {
        rows.iter().map(get).collect()
    }
    let opt = |get: fn(&MetricsRow) -> Option<f64>| rows.iter().map(get).collect::<Vec<_>>();
    DataFrame::new(
        rows.len(),
        vec![
            Column::new("epoch".into(), f64s(rows, |r| r.epoch)),
            Column::new("step".into(), u64s(rows, |r| r.step)),
            Column::new("images_seen".into(), u64s(rows, |r| r.images_seen)),
            Column::new("lr".into(), f64s(rows, |r| r.lr)),
            Column::new("train_loss".into(), f64s(rows, |r| r.train_loss)),
            Column::new("top1_err".into(), opt(|r| r.top1_err)),
            Column::new("top5_err".into(), opt(|r| r.top5_err)),
            Column::new("eval_images".into(), u64s(rows, |r| r.eval_images)),
            Column::new("images_per_s".into(), f64s(rows, |r| r.images_per_s)),
            Column::new("wall_s".into(), f64s(rows, |r| r.wall_s)),
            Column::new("pre_pool_zero_frac".into(), opt(|r| r.pre_pool_zero_frac)),
            Column::new(
                "pre_pool_dead_channel_frac".into(),
                opt(|r| r.pre_pool_dead_channel_frac),
            ),
        ],
    )
}

/// Checks that `df` has exactly the metrics columns, in order, with their types (the added
/// columns may be missing, all together).
fn check_schema(path: &Path, df: &DataFrame) -> Result<(), MetricsError> {
    let found: Vec<(String, DataType)> = df
        .schema()
        .iter()
        .map(|(name, dtype)| (name.to_string(), dtype.clone()))
        .collect();
    let expected = match found.len() > METRICS_COLUMNS.len() {
        true => METRICS_COLUMNS.len() + ADDED_METRICS_COLUMNS.len(),
        false => METRICS_COLUMNS.len(),
    };
    let columns = METRICS_COLUMNS.iter().chain(&ADDED_METRICS_COLUMNS);
    for (i, (name, kind)) in columns.take(expected).enumerate() {
        let bad = |found: String| MetricsError::Column {
            path: path.to_path_buf(),
            column: name.to_string(),
            expected: format!("{} at position {i}", kind.dtype()),
            found,
        };
        match found.get(i) {
            None => return Err(bad("no such column".to_string())),
            Some((n, d)) if n != name || *d != kind.dtype() => {
                return Err(bad(format!("`{n}`: {d}")))
            }
            Some(_) => {}
        }
    }
    if let Some((n, d)) = found.get(expected) {
        return Err(MetricsError::Column {
            path: path.to_path_buf(),
            column: n.clone(),
            expected: "no further columns".to_string(),
            found: d.to_string(),
        });
    }
    Ok(())
}

/// Reads the column `name` as nullable values.
fn column<T>(
    path: &Path,
    df: &DataFrame,
    name: &'static str,
    get: impl Fn(&Column) -> PolarsResult<Vec<Option<T>>>,
) -> Result<Vec<Option<T>>, MetricsError> {
    df.column(name)
        .and_then(get)
        .map_err(|source| MetricsError::Polars {
            path: path.to_path_buf(),
            source,
        })
}

/// Reads the column `name`, which may hold no nulls.
fn required<T>(
    path: &Path,
    df: &DataFrame,
    name: &'static str,
    get: impl Fn(&Column) -> PolarsResult<Vec<Option<T>>>,
) -> Result<Vec<T>, MetricsError> {
    column(path, df, name, get)?
        .into_iter()
        .enumerate()
        .map(|(row, v)| {
            v.ok_or(MetricsError::Null {
                path: path.to_path_buf(),
                column: name,
                row,
            })
        })
        .collect()
}

fn f64_values(c: &Column) -> PolarsResult<Vec<Option<f64>>> {
    Ok(c.f64()?.iter().collect())
}

fn u64_values(c: &Column) -> PolarsResult<Vec<Option<u64>>> {
    Ok(c.u64()?.iter().collect())
}

/// Reads every row of a metrics file, checking its schema.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>, MetricsError> {
    let file = File::open(path).map_err(|source| MetricsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|source| MetricsError::Polars {
            path: path.to_path_buf(),
            source,
        })?;
    check_schema(path, &df)?;
    let epoch = required(path, &df, "epoch", f64_values)?;
    let step = required(path, &df, "step", u64_values)?;
    let images_seen = required(path, &df, "images_seen", u64_values)?;
    let lr = required(path, &df, "lr", f64_values)?;
    let train_loss = required(path, &df, "train_loss", f64_values)?;
    let top1_err = column(path, &df, "top1_err", f64_values)?;
    let top5_err = column(path, &df, "top5_err", f64_values)?;
    let eval_images = required(path, &df, "eval_images", u64_values)?;
    let images_per_s = required(path, &df, "images_per_s", f64_values)?;
    let wall_s = required(path, &df, "wall_s", f64_values)?;
    let added = |name| match df.width() > METRICS_COLUMNS.len() {
        true => column(path, &df, name, f64_values),
        false => Ok(vec![None; df.height()]),
    };
    let zero_frac = added("pre_pool_zero_frac")?;
    let dead_channels = added("pre_pool_dead_channel_frac")?;
    Ok((0..df.height())
        .map(|i| MetricsRow {
            epoch: epoch[i],
            step: step[i],
            images_seen: images_seen[i],
            lr: lr[i],
            train_loss: train_loss[i],
            top1_err: top1_err[i],
            top5_err: top5_err[i],
            eval_images: eval_images[i],
            images_per_s: images_per_s[i],
            wall_s: wall_s[i],
            pre_pool_zero_frac: zero_frac[i],
            pre_pool_dead_channel_frac: dead_channels[i],
        })
        .collect())
}

/// Writes `rows` as the whole metrics file, atomically.
pub fn write_metrics(path: &Path, rows: &[MetricsRow]) -> Result<(), MetricsError> {
    let mut df = to_frame(rows).map_err(|source| MetricsError::Polars {
        path: path.to_path_buf(),
        source,
    })?;
    atomic::write_via_temp_path(path, |tmp| -> PolarsResult<()> {
        let file = File::create(tmp)?;
        ParquetWriter::new(file)
            .with_compression(ParquetCompression::Zstd(None))
            .finish(&mut df)?;
        Ok(())
    })?;
    Ok(())
}

/// Appends `rows` to the metrics file at `path` (creating it if absent) by rewriting it
/// whole and atomically. Returns the number of rows now in the file.
pub fn append_metrics(path: &Path, rows: &[MetricsRow]) -> Result<usize, MetricsError> {
    let mut all = if path.exists() {
        read_metrics(path)?
    } else {
        Vec::new()
    };
    all.extend_from_slice(rows);
    write_metrics(path, &all)?;
    Ok(all.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: u64, evaluated: bool) -> MetricsRow {
        MetricsRow {
            epoch: step as f64 / 10.0,
            step,
            images_seen: step * 32,
            lr: 0.045,
            train_loss: 6.9 - step as f64 * 0.01,
            top1_err: evaluated.then_some(0.75),
            top5_err: evaluated.then_some(0.5),
            eval_images: if evaluated { 50_000 } else { 0 },
            images_per_s: 123.5,
            wall_s: step as f64 * 1.5,
            pre_pool_zero_frac: evaluated.then_some(0.25),
            pre_pool_dead_channel_frac: evaluated.then_some(0.0),
        }
    }

    #[test]
    fn append_round_trips_rows_with_the_expected_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.parquet");
        assert_eq!(append_metrics(&path, &[row(1, false)]).unwrap(), 1);
        assert_eq!(
            append_metrics(&path, &[row(2, true), row(3, false)]).unwrap(),
            3
        );
        let back = read_metrics(&path).unwrap();
        assert_eq!(back, vec![row(1, false), row(2, true), row(3, false)]);

        let df = ParquetReader::new(File::open(&path).unwrap())
            .finish()
            .unwrap();
        let schema: Vec<(String, DataType)> = df
            .schema()
            .iter()
            .map(|(n, d)| (n.to_string(), d.clone()))
            .collect();
        let expected: Vec<(String, DataType)> = METRICS_COLUMNS
            .iter()
            .chain(&ADDED_METRICS_COLUMNS)
            .map(|(n, k)| (n.to_string(), k.dtype()))
            .collect();
        assert_eq!(schema, expected);
        assert_eq!(df.column("top1_err").unwrap().null_count(), 2);
        assert_eq!(df.column("pre_pool_zero_frac").unwrap().null_count(), 2);
        // only the file itself, no leftovers of the atomic rewrite
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_file_from_before_the_activity_columns_reads_and_gains_them_on_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.parquet");
        let old = row(1, true);
        let mut df = to_frame(std::slice::from_ref(&old)).unwrap();
        for (name, _) in ADDED_METRICS_COLUMNS {
            df = df.drop(name).unwrap();
        }
        ParquetWriter::new(File::create(&path).unwrap())
            .finish(&mut df)
            .unwrap();
        let read = read_metrics(&path).unwrap();
        assert_eq!(read[0].pre_pool_zero_frac, None);
        assert_eq!(read[0].top1_err, old.top1_err);
        append_metrics(&path, &[row(2, true)]).unwrap();
        let read = read_metrics(&path).unwrap();
        assert_eq!(
            read.iter()
                .map(|r| r.pre_pool_zero_frac)
                .collect::<Vec<_>>(),
            vec![None, Some(0.25)]
        );
    }

    #[test]
    fn wrong_schema_is_reported_with_file_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.parquet");
        let mut df = DataFrame::new(
            1,
            vec![
                Column::new("epoch".into(), vec![1.0f64]),
                Column::new("step".into(), vec![1.5f64]),
            ],
        )
        .unwrap();
        ParquetWriter::new(File::create(&path).unwrap())
            .finish(&mut df)
            .unwrap();
        let err = read_metrics(&path).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, MetricsError::Column { ref column, .. } if column == "step"),
            "{msg}"
        );
        assert!(msg.contains("metrics.parquet"), "{msg}");
    }

    #[test]
    fn missing_file_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_metrics(&dir.path().join("nope.parquet")).unwrap_err();
        assert!(matches!(err, MetricsError::Open { .. }));
    }
}
