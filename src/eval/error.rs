//! The error type of the eval module.

use std::path::PathBuf;

use polars::prelude::PolarsError;

use crate::data::DataError;
use crate::models::import::ImportError;
use crate::store::atomic::AtomicWriteError;

/// Everything that can go wrong in an evaluation or its files; every variant about a
/// file names it.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// An impossible request (no models, unknown protocol, labels beyond the classifier).
    #[error("invalid evaluation request: {0}")]
    Config(String),
    /// A network could not be built for a checkpoint.
    #[error("cannot build the network for {weights}: {source}")]
    Build {
        /// The checkpoint the network was built for.
        weights: PathBuf,
        /// What candle said.
        source: candle_core::Error,
    },
    /// A checkpoint could not be loaded (the error names the file).
    #[error(transparent)]
    Weights(#[from] ImportError),
    /// An image could not be read or decoded (the error names the file).
    #[error(transparent)]
    Image(#[from] DataError),
    /// Scoring a batch of crops failed.
    #[error("evaluating {weights}: {source}")]
    Forward {
        /// The checkpoint being evaluated.
        weights: PathBuf,
        /// What candle said.
        source: candle_core::Error,
    },
    /// Averaging or ranking probabilities failed.
    #[error("scoring: {0}")]
    Scores(String),
    /// A Parquet file could not be opened.
    #[error("reading {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// polars failed to build, read or write a table.
    #[error("{path}: {source}")]
    Polars {
        /// The file.
        path: PathBuf,
        /// What polars said.
        source: PolarsError,
    },
    /// A column is missing, of the wrong type, or holds a null.
    #[error("{path}: column `{column}`: {problem}")]
    Column {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Writing a file failed (the error names it).
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
    /// Stopped by Ctrl-C or SIGTERM ([`crate::interrupt`]); nothing was written.
    #[error("interrupted after {images} of {total} images")]
    Interrupted {
        /// Images scored (or skipped) before the stop.
        images: u64,
        /// Images of the evaluation.
        total: u64,
    },
}

impl EvalError {
    /// Whether the input is at fault (images, weights, the request), not the evaluation:
    /// callers map it to exit status 2. Unreadable images are [`EvalError::Image`].
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            EvalError::Image(_)
                | EvalError::Weights(_)
                | EvalError::Build { .. }
                | EvalError::Config(_)
        )
    }
}
