//! Shared plumbing of the eval module's Parquet files: atomic writing, reading with a
//! schema check, and typed column access whose errors name the file and column.

use std::fs::File;
use std::path::Path;

use polars::prelude::*;

use super::EvalError;
use crate::store::atomic;

/// Writes `df` to `path` atomically, zstd-compressed.
pub(super) fn write_frame(path: &Path, mut df: DataFrame) -> Result<(), EvalError> {
    atomic::write_via_temp_path(path, |tmp| -> PolarsResult<()> {
        ParquetWriter::new(File::create(tmp)?)
            .with_compression(ParquetCompression::Zstd(None))
            .finish(&mut df)?;
        Ok(())
    })?;
    Ok(())
}

/// Reads `path` and checks that it has exactly `columns` (name, type), in order, followed by
/// `added` — columns later versions appended, which files written before them lack.
pub(super) fn read_frame(
    path: &Path,
    columns: &[(&str, DataType)],
    added: &[(&str, DataType)],
) -> Result<DataFrame, EvalError> {
    let file = File::open(path).map_err(|source| EvalError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| polars_error(path, e))?;
    let found: Vec<(String, DataType)> = df
        .schema()
        .iter()
        .map(|(n, d)| (n.to_string(), d.clone()))
        .collect();
    let present = found
        .len()
        .clamp(columns.len(), columns.len() + added.len());
    for (i, (name, dtype)) in columns.iter().chain(added).take(present).enumerate() {
        let problem = match found.get(i) {
            None => Some("no such column".to_string()),
            Some((n, d)) if n != name || d != dtype => Some(format!("found `{n}`: {d}")),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            return Err(column_error(
                path,
                name,
                format!("expected {dtype} at position {i}, {problem}"),
            ));
        }
    }
    if let Some((n, d)) = found.get(present) {
        return Err(column_error(
            path,
            n,
            format!("unexpected extra column of type {d}"),
        ));
    }
    Ok(df)
}

/// Wraps a polars error with the file it concerns.
pub(super) fn polars_error(path: &Path, source: PolarsError) -> EvalError {
    EvalError::Polars {
        path: path.to_path_buf(),
        source,
    }
}

fn column_error(path: &Path, column: &str, problem: String) -> EvalError {
    EvalError::Column {
        path: path.to_path_buf(),
        column: column.to_string(),
        problem,
    }
}

/// Reads the non-null column `name` of `df` (read from `path`) through `get`.
pub(super) fn values<T>(
    path: &Path,
    df: &DataFrame,
    name: &str,
    get: impl Fn(&Column) -> PolarsResult<Vec<Option<T>>>,
) -> Result<Vec<T>, EvalError> {
    let column = df
        .column(name)
        .and_then(get)
        .map_err(|e| polars_error(path, e))?;
    column
        .into_iter()
        .enumerate()
        .map(|(row, v)| v.ok_or_else(|| column_error(path, name, format!("null in row {row}"))))
        .collect()
}

/// Values of a `String` column.
pub(super) fn strings(c: &Column) -> PolarsResult<Vec<Option<String>>> {
    Ok(c.str()?.iter().map(|v| v.map(str::to_string)).collect())
}

/// Values of a `UInt32` column.
pub(super) fn u32s(c: &Column) -> PolarsResult<Vec<Option<u32>>> {
    Ok(c.u32()?.iter().collect())
}

/// Values of a `UInt64` column.
pub(super) fn u64s(c: &Column) -> PolarsResult<Vec<Option<u64>>> {
    Ok(c.u64()?.iter().collect())
}

/// Values of a `Float64` column.
pub(super) fn f64s(c: &Column) -> PolarsResult<Vec<Option<f64>>> {
    Ok(c.f64()?.iter().collect())
}

/// Values of a list column, each list read through `inner` (which must find no nulls).
pub(super) fn lists<T>(
    c: &Column,
    inner: impl Fn(&Series) -> PolarsResult<Vec<T>>,
) -> PolarsResult<Vec<Option<Vec<T>>>> {
    c.list()?
        .amortized_iter()
        .map(|v| v.map(|s| inner(s.as_ref())).transpose())
        .collect()
}

/// A list column built from one `Series` per row.
pub(super) fn list_column(name: &str, rows: Vec<Series>) -> Column {
    Column::new(name.into(), rows)
}
