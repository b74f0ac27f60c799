//! `diagnostics.parquet`: what a run looked like from several sides at each evaluation, for
//! telling an optimisation problem from an evaluation problem (written only when
//! `train.diagnostics` is on).
//!
//! Columns, in file order: `step` (u64), `epoch`, `train_top1_err` (the training-mode
//! forward's top-1 error on the training batches since the previous row), `ema_top1_err`
//! (moving-average weights and statistics: the curve's number), `raw_top1_err` (the live
//! weights with their own running statistics), `raw_batchstats_top1_err` (the live weights
//! with BatchNorm normalising by each evaluation batch's own statistics, the images visited in
//! a seeded shuffled order so that each batch mixes the classes), all f64 in [0, 1],
//! and `grad_norm` (the mean global gradient norm, before clipping, over the steps since the
//! previous row; far above the clipping threshold, clipping scales every update down).
//! `tools/timm_train_cifar.py` writes the same file for the reference trainer.

use std::fs::File;
use std::path::Path;

use polars::prelude::*;

use super::atomic;
use super::metrics::MetricsError;

/// One evaluation's diagnostics.
#[derive(Clone, Debug, PartialEq)]
pub struct DiagnosticsRow {
    pub step: u64,
    pub epoch: f64,
    pub train_top1_err: f64,
    pub ema_top1_err: f64,
    pub raw_top1_err: f64,
    pub raw_batchstats_top1_err: f64,
    pub grad_norm: f64,
}

const F64_COLUMNS: [&str; 6] = [
    "epoch",
    "train_top1_err",
    "ema_top1_err",
    "raw_top1_err",
    "raw_batchstats_top1_err",
    "grad_norm",
];

fn polars_err(path: &Path) -> impl Fn(PolarsError) -> MetricsError + '_ {
    move |source| MetricsError::Polars {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads every row (columns by name; a missing or null value is an error naming it).
pub fn read_diagnostics(path: &Path) -> Result<Vec<DiagnosticsRow>, MetricsError> {
    let file = File::open(path).map_err(|source| MetricsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(polars_err(path))?;
    let steps: Vec<Option<u64>> = df
        .column("step")
        .and_then(|c| Ok(c.u64()?.iter().collect()))
        .map_err(polars_err(path))?;
    let mut f64s = Vec::new();
    for name in F64_COLUMNS {
        let values: Vec<Option<f64>> = df
            .column(name)
            .and_then(|c| Ok(c.f64()?.iter().collect()))
            .map_err(polars_err(path))?;
        f64s.push(values);
    }
    (0..df.height())
        .map(|i| {
            let get = |c: usize| {
                f64s[c][i].ok_or_else(|| MetricsError::Null {
                    path: path.to_path_buf(),
                    column: F64_COLUMNS[c],
                    row: i,
                })
            };
            Ok(DiagnosticsRow {
                step: steps[i].ok_or_else(|| MetricsError::Null {
                    path: path.to_path_buf(),
                    column: "step",
                    row: i,
                })?,
                epoch: get(0)?,
                train_top1_err: get(1)?,
                ema_top1_err: get(2)?,
                raw_top1_err: get(3)?,
                raw_batchstats_top1_err: get(4)?,
                grad_norm: get(5)?,
            })
        })
        .collect()
}

/// Writes the rows up to `keep_through_step` already in the file plus `row`, atomically (a
/// resumed run recomputes the rows after its checkpoint).
pub fn append_diagnostics(
    path: &Path,
    keep_through_step: u64,
    row: DiagnosticsRow,
) -> Result<(), MetricsError> {
    let mut rows = if path.exists() {
        read_diagnostics(path)?
    } else {
        Vec::new()
    };
    rows.retain(|r| r.step <= keep_through_step);
    rows.push(row);
    let col = |name: &str, get: fn(&DiagnosticsRow) -> f64| {
        Column::new(name.into(), rows.iter().map(get).collect::<Vec<f64>>())
    };
    let mut df = DataFrame::new(
        rows.len(),
        vec![
            Column::new(
                "step".into(),
                rows.iter().map(|r| r.step).collect::<Vec<u64>>(),
            ),
            col("epoch", |r| r.epoch),
            col("train_top1_err", |r| r.train_top1_err),
            col("ema_top1_err", |r| r.ema_top1_err),
            col("raw_top1_err", |r| r.raw_top1_err),
            col("raw_batchstats_top1_err", |r| r.raw_batchstats_top1_err),
            col("grad_norm", |r| r.grad_norm),
        ],
    )
    .map_err(polars_err(path))?;
    atomic::write_via_temp_path(path, |tmp| -> PolarsResult<()> {
        ParquetWriter::new(File::create(tmp)?).finish(&mut df)?;
        Ok(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: u64) -> DiagnosticsRow {
        DiagnosticsRow {
            step,
            epoch: step as f64 / 4.0,
            train_top1_err: 0.5,
            ema_top1_err: 0.6,
            raw_top1_err: 0.7,
            raw_batchstats_top1_err: 0.8,
            grad_norm: 12.5,
        }
    }

    #[test]
    fn appending_keeps_earlier_rows_and_drops_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("diagnostics.parquet");
        append_diagnostics(&path, 0, row(10)).unwrap();
        append_diagnostics(&path, 10, row(20)).unwrap();
        append_diagnostics(&path, 30, row(30)).unwrap();
        assert_eq!(
            read_diagnostics(&path).unwrap(),
            vec![row(10), row(20), row(30)]
        );
        // A resume from step 10 recomputes what came after it.
        append_diagnostics(&path, 10, row(15)).unwrap();
        assert_eq!(read_diagnostics(&path).unwrap(), vec![row(10), row(15)]);
    }
}
