//! The error type of the data module.

use std::path::PathBuf;

/// Everything that can go wrong between files on disk and a batch tensor.
/// Every variant that concerns a file or folder names it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The dataset root (or another required folder) does not exist.
    #[error("data root {0} does not exist")]
    MissingRoot(PathBuf),
    /// The root exists but contains no decodable-looking image files.
    #[error("no images (.jpg/.jpeg/.png) found under {0}")]
    NoImages(PathBuf),
    /// A class folder contains no image files.
    #[error("class folder {0} contains no images")]
    EmptyClass(PathBuf),
    /// A class named in a subset request is not among the class folders.
    #[error("class {class:?} requested but not found under {root}")]
    UnknownClass {
        /// The requested class name.
        class: String,
        /// The dataset root that was scanned.
        root: PathBuf,
    },
    /// A file could not be decoded as an image.
    #[error("cannot decode image {path}: {reason}")]
    Decode {
        /// The offending file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// A metadata file (ground truth, blacklist, synset list) is malformed.
    #[error("{path}, line {line}: {reason}")]
    Metadata {
        /// The offending file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The ILSVRC layout does not match its label file.
    #[error("ILSVRC layout under {path}: {reason}")]
    Layout {
        /// The folder or file concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An I/O error on a named path.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Encoding an image (synthetic data) failed.
    #[error("cannot encode image {path}: {reason}")]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// What the encoder said.
        reason: String,
    },
    /// An invalid loader or preprocessing setting.
    #[error("invalid data configuration: {0}")]
    Config(String),
    /// Building the batch tensor failed.
    #[error("building batch tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of the data module.
pub type Result<T> = std::result::Result<T, DataError>;
