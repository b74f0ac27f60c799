//! Errors of rendering a report; each names the file or figure concerned.

use std::path::PathBuf;

use crate::store::AtomicWriteError;

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A folder could not be created.
    #[error("creating {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A report folder could not be listed, or a stale file in it removed.
    #[error("cleaning {path}: {source}")]
    Clean {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// plotters failed to draw a figure.
    #[error("drawing figure {figure}: {message}")]
    Draw { figure: String, message: String },
    /// A PNG could not be encoded.
    #[error("encoding {path}: {source}")]
    Png {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    /// Writing a file failed.
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
}
