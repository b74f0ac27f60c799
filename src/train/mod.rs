//! Training building blocks: optimizers with TensorFlow semantics (RMSProp, SGD-momentum),
//! the learning-rate schedule, gradient clipping, the label-smoothed loss and top-k error,
//! and the exponential moving average of the weights.
//!
//! The paper (Szegedy et al. 2016, section 4) trains with RMSProp (decay 0.9, ε = 1.0),
//! learning rate 0.045 decayed by 0.94 every two epochs, gradient clipping at 2.0, and
//! evaluates a running average of the parameters. candle 0.11 has none of these, so they
//! live here, each in its own file, operating on named `candle_core::Var`s.

pub mod clip;
mod config;
pub mod ema;
mod error;
pub mod evaluate;
pub mod inplace;
pub mod loss;
pub mod optim;
pub mod phases;
pub mod progress;
pub mod readback;
pub mod schedule;
pub mod step;
pub mod trainer;
pub mod vars;

pub use clip::{
    clip_by_global_norm, global_norm, global_norm_tensor, scale_each_to_norm, scale_to_norm,
    ClipError, ClipMode, DEFAULT_CLIP_NORM,
};
pub use config::{OptimizerConfig, RunConfig, TrainConfig};
pub use ema::{Ema, EmaConfig, EmaError, LiveWeights};
pub(crate) use error::tensor_err;
pub use error::TrainError;
pub use evaluate::{evaluate_logits, evaluate_single_crop, EvalScore, PrePoolActivity};
pub use loss::{
    smoothed_cross_entropy, top_k_error, top_k_hits, LossError, DEFAULT_LABEL_SMOOTHING,
};
pub use optim::{
    OptimError, Optimizer, RmsProp, RmsPropConfig, SgdMomentum, SgdMomentumConfig, WeightDecay,
};
pub use progress::Progress;
pub use schedule::{LrSchedule, ScheduleError};
pub use step::{StepOutcome, TrainStep};
pub use trainer::{final_weights_path, train_run, RunOutcome, TrainJob};
pub use vars::sorted_vars;
