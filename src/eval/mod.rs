//! Multi-crop and ensemble evaluation: the paper's Tables 2-5.
//!
//! - [`protocol`]: the crop protocols selected by `--crops 1|10|12|144`.
//! - [`scores`]: averaging softmax probabilities over crops and models, top-k selection.
//! - [`render`]: decoding a chunk of images once and rendering all their crops.
//! - [`evaluate`]: [`evaluate`](evaluate::evaluate) ties it together for one model or an
//!   ensemble of checkpoints and returns an [`EvalReport`].
//! - [`predictions`]: the per-image `--predictions` Parquet file.
//! - [`record`]: `eval.parquet`, one [`EvalRecord`] per evaluation.
//!
//! Every output carries the crop protocol's [`describe`](crate::data::CropProtocol::describe)
//! text and the evaluation set.

mod error;
pub mod evaluate;
mod parquet;
pub mod predictions;
mod probabilities;
mod progress;
pub mod protocol;
pub mod record;
pub mod render;
mod report;
pub mod scores;

pub use error::EvalError;
pub use evaluate::{ensemble_of_stored, evaluate, EvalRequest, ModelWeights};
pub use predictions::{read_predictions, write_predictions, PredictionsFile};
pub use probabilities::{read_probabilities, write_probabilities, StoredProbabilities};
pub use protocol::protocol_for;
pub use record::{read_eval_parquet, write_eval_parquet, EvalRecord};
pub use report::{EvalReport, Prediction, SkippedSample};

#[cfg(test)]
mod tests;
