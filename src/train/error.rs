//! Why a training run stopped with an error (a diverging loss is an outcome, not an error).

use crate::store::CheckpointError;

/// Errors that stop a run (a diverging loss is an outcome, not an error).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{context}: {source}")]
    Tensor {
        context: String,
        source: candle_core::Error,
    },
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Checkpoint(Box<CheckpointError>),
    #[error("{0}")]
    Other(String),
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

pub(crate) fn other(e: impl std::fmt::Display) -> TrainError {
    TrainError::Other(e.to_string())
}
