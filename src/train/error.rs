//! Why a training run stopped with an error (a diverging loss is an outcome, not an error),
//! and whether that is the input's fault ([`TrainError::is_bad_input`]).

use super::{ClipError, EmaError, LossError, OptimError};
use crate::models::import::ImportError;
use crate::replicas::DistError;
use crate::store::{CheckpointError, MetricsError};

/// Errors that stop a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed; `context` says which.
    #[error("{context}: {source}")]
    Tensor {
        context: String,
        source: candle_core::Error,
    },
    /// The images could not be read or decoded (the error names the file).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// The run's settings do not fit its data, its processes or its stored state.
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Checkpoint(Box<CheckpointError>),
    /// Weights could not be loaded or saved under timm's names.
    #[error(transparent)]
    Weights(#[from] ImportError),
    #[error(transparent)]
    Optimizer(#[from] OptimError),
    #[error(transparent)]
    MovingAverage(#[from] EmaError),
    #[error(transparent)]
    Clipping(#[from] ClipError),
    #[error(transparent)]
    Loss(#[from] LossError),
    /// Reducing gradients or agreeing with the other replicas failed.
    #[error(transparent)]
    Replicas(#[from] DistError),
    /// The run's metrics or diagnostics could not be written.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// A damaged file could not be moved aside.
    #[error("cannot move {path} aside: {source}")]
    SetAside {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl TrainError {
    /// Whether the input is at fault (exit status 2): unreadable data or settings that do
    /// not fit it; everything else is the run failing (exit status 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, TrainError::Data(_) | TrainError::Setup(_))
    }
}

impl From<CheckpointError> for TrainError {
    fn from(e: CheckpointError) -> Self {
        TrainError::Checkpoint(Box::new(e))
    }
}

pub(crate) fn tensor_err(
    context: impl Into<String>,
) -> impl FnOnce(candle_core::Error) -> TrainError {
    let context = context.into();
    move |source| TrainError::Tensor { context, source }
}
