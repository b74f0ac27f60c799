//! What a training run computes: the network, its data, the training recipe and the seed.
//! The hash of this configuration names the run.

use serde::{Deserialize, Serialize};

use super::{ClipMode, EmaConfig, LrSchedule, RmsPropConfig, SgdMomentumConfig};
use crate::data::DataConfig;
use crate::device::Precision;
use crate::models::ModelConfig;

/// Everything that determines what a training run computes. Its hash names the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub model: ModelConfig,
    pub data: DataConfig,
    pub train: TrainConfig,
    pub seed: u64,
}

impl RunConfig {
    /// 16 hex digits of a 64-bit FNV-1a hash of the canonical JSON (sorted keys).
    pub fn hash(&self) -> String {
        let json = serde_json::to_value(self).expect("a run config serialises");
        format!(
            "{:016x}",
            crate::hashing::fnv1a64(crate::hashing::canonical_json(&json).as_bytes())
        )
    }
}

/// The optimizer and its hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerConfig {
    /// RMSProp with TensorFlow's semantics (the paper's).
    Rmsprop(RmsPropConfig),
    /// SGD with momentum (the paper's earlier runs).
    Sgd(SgdMomentumConfig),
}

/// The training recipe of a resolved run (the paper's section 4 by default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: f64,
    /// Images per step on one replica. The paper used 20 replicas (batch not stated).
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub lr: LrSchedule,
    /// L2 weight decay on conv and linear weights.
    pub weight_decay: f64,
    /// Gradient clipping threshold; 0 disables it.
    pub clip_norm: f64,
    /// What the threshold bounds: the global norm (default) or each variable's (TF-slim's
    /// `clip_gradient_norms`). Left out of the hash when it is the default.
    #[serde(default, skip_serializing_if = "ClipMode::is_global_norm")]
    pub clip_mode: ClipMode,
    pub label_smoothing: f64,
    /// Weight of the auxiliary head's loss when the model has one.
    pub aux_weight: f64,
    pub ema: EmaConfig,
    /// Evaluate (single central crop, EMA weights) every this many epochs; fractions allowed.
    pub eval_every_epochs: f64,
    /// Save a checkpoint every this many steps (and at every evaluation).
    pub checkpoint_every_steps: u64,
    /// Checkpoints kept in the run folder (the newest; at least 1). Loading falls back to an
    /// older one when the newest is damaged. Changes nothing the run computes, so it is
    /// neither hashed nor written to `config.yaml`.
    #[serde(skip_serializing, default = "default_keep_checkpoints")]
    pub keep_checkpoints: usize,
    /// f32 (the reference), tf32 (CUDA only) or bf16 (CUDA, and CPUs with AVX512-BF16).
    pub precision: Precision,
    /// At each evaluation also measure the training top-1 error and the live weights with
    /// running and with batch statistics, into `diagnostics.parquet` (two more evaluations
    /// each time). Left out of the configuration's hash when off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub diagnostics: bool,
    /// Micro-batches of `batch_size` per update: their gradients are averaged, as those of
    /// as many replicas would be (BatchNorm normalises each micro-batch on its own, and the
    /// running statistics move by the mean of the micro-batches' statistics). The global
    /// batch is `batch_size x accumulate x replicas`. Left out of the hash when 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub accumulate: usize,
    /// Replicas of the global batch (the paper: 20). Default: the number of processes the
    /// run was started as (`mpirun -np N`). Each of the W processes runs `replicas x
    /// accumulate / W` micro-batches per update, so a run resumes at any W that divides
    /// that. BatchNorm normalises each micro-batch on its own (TF-slim's replicas, no
    /// synchronised statistics). Left out of the hash when 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub replicas: usize,
}

impl TrainConfig {
    /// Micro-batches of `batch_size` in one update, over all replicas.
    pub fn micro_batches(&self) -> usize {
        self.accumulate.max(1) * self.replicas.max(1)
    }

    /// Micro-batches each of `world_size` processes runs per update, or why the run cannot
    /// be split that way.
    pub fn micro_batches_per_process(&self, world_size: usize) -> Result<usize, String> {
        let total = self.micro_batches();
        match world_size > 0 && total.is_multiple_of(world_size) {
            true => Ok(total / world_size),
            false => Err(format!(
                "an update of this run is {total} micro-batches (train.replicas {} x train.accumulate {}), which {world_size} processes cannot share evenly",
                self.replicas, self.accumulate
            )),
        }
    }
}

fn one() -> usize {
    1
}

fn default_keep_checkpoints() -> usize {
    crate::store::checkpoint::DEFAULT_KEEP
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl Default for TrainConfig {
    /// The paper's recipe (section 4) with the Inception-v3 paper's label smoothing and
    /// clipping, and TF-slim's batch size, weight decay and moving-average decay.
    fn default() -> Self {
        Self {
            epochs: 160.0,
            batch_size: 32,
            eval_batch_size: 64,
            optimizer: OptimizerConfig::Rmsprop(RmsPropConfig::default()),
            lr: LrSchedule::default(),
            weight_decay: 4e-5,
            clip_norm: 2.0,
            clip_mode: ClipMode::GlobalNorm,
            label_smoothing: 0.1,
            aux_weight: 0.4,
            ema: EmaConfig::default(),
            eval_every_epochs: 1.0,
            checkpoint_every_steps: 1000,
            keep_checkpoints: default_keep_checkpoints(),
            precision: Precision::F32,
            diagnostics: false,
            accumulate: 1,
            replicas: 1,
        }
    }
}
