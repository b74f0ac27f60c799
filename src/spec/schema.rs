//! The YAML schema of experiment files. Every struct rejects unknown keys, and every field
//! has a default, so that each file (an experiment, or a file it includes) can be checked on
//! its own with exact line and column before the files are merged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::executor::{ExecutorKind, ExecutorSpec, SlurmSpec};
use crate::device::Precision;
use crate::models::{Arch, AvgPoolPadding};
use crate::train::{ClipMode, EmaConfig, LrSchedule, RmsPropConfig, SgdMomentumConfig};

/// One experiment file as written (before includes are merged).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentFile {
    /// Files merged under this one, relative to it, in order.
    pub include: Vec<String>,
    /// Short name: the report folder (`reports/<name>/`). Defaults to the file stem.
    pub name: Option<String>,
    /// A family of experiments reported together under `reports/<group>/<name>/`, with
    /// their own index (e.g. `mini` for the CIFAR-10 reproduction).
    pub group: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// Settings every run starts from.
    pub defaults: RunSpec,
    /// Training runs by name; figures and tables refer to them.
    pub runs: BTreeMap<String, RunSpec>,
    pub figures: Vec<FigureSpec>,
    pub tables: Vec<TableSpec>,
    /// Claims of the paper that this experiment tests.
    pub claims: Vec<ClaimSpec>,
    /// Named overlays (`smoke`, selected by `--smoke`, or `--profile NAME`).
    pub profiles: BTreeMap<String, ProfileSpec>,
    /// How `repro run` trains the missing runs (in this process, several at once, on Slurm).
    pub executor: ExecutorSpec,
}

/// A run as written: every part optional, merged over `defaults` (and over the run it
/// `extends`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSpec {
    /// Another run whose settings this one starts from (e.g. the same network, another seed).
    pub extends: Option<String>,
    pub model: ModelSpec,
    pub data: DataSpec,
    pub train: TrainSpec,
    pub seed: Option<u64>,
}

/// An overlay applied on top of every resolved run, and of named runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileSpec {
    pub description: Option<String>,
    pub every_run: RunSpec,
    pub runs: BTreeMap<String, RunSpec>,
    /// Merged over the file's `executor:`.
    pub executor: ExecutorSpec,
}

/// [`crate::models::ModelConfig`] with every field optional.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSpec {
    pub arch: Option<Arch>,
    pub num_classes: Option<usize>,
    pub width: Option<f64>,
    pub blocks: Option<[usize; 3]>,
    pub residual_scales: Option<[f64; 3]>,
    pub dropout: Option<f64>,
    pub aux_head: Option<bool>,
    pub image_size: Option<usize>,
    pub avg_pool_padding: Option<AvgPoolPadding>,
    pub bn_eps: Option<f64>,
    pub bn_momentum: Option<f64>,
}

/// Data settings as written; see [`DataConfig`] for the meaning of each.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSpec {
    pub train: Option<String>,
    pub val: Option<String>,
    pub val_layout: Option<ValLayout>,
    pub val_ground_truth: Option<String>,
    pub val_wnids: Option<String>,
    pub blacklist: Option<String>,
    pub eval_set: Option<EvalSet>,
    pub classes: Option<usize>,
    pub train_images_per_class: Option<usize>,
    pub val_images_per_class: Option<usize>,
    pub subset_seed: Option<u64>,
    pub skip_bad_images: Option<bool>,
    pub synthetic: Option<SyntheticSpec>,
    pub color_distortion: Option<ColorMode>,
    pub train_crop_area: Option<[f64; 2]>,
    pub eval_crop_fraction: Option<f64>,
    pub interpolation: Option<InterpolationMode>,
}

/// Training settings as written; see [`TrainConfig`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSpec {
    pub epochs: Option<f64>,
    pub batch_size: Option<usize>,
    pub eval_batch_size: Option<usize>,
    pub optimizer: Option<OptimizerConfig>,
    pub lr: Option<LrSchedule>,
    pub weight_decay: Option<f64>,
    pub clip_norm: Option<f64>,
    pub clip_mode: Option<ClipMode>,
    pub label_smoothing: Option<f64>,
    pub aux_weight: Option<f64>,
    pub ema: Option<EmaConfig>,
    pub eval_every_epochs: Option<f64>,
    pub checkpoint_every_steps: Option<u64>,
    pub keep_checkpoints: Option<usize>,
    pub precision: Option<Precision>,
    pub diagnostics: Option<bool>,
    pub accumulate: Option<usize>,
    pub replicas: Option<usize>,
}

/// Which validation layout `val` has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValLayout {
    /// `val/<class>/<image>`, like the training set.
    ImageFolder,
    /// ILSVRC-2012 as distributed: a flat folder of `ILSVRC2012_val_%08d.JPEG` with the
    /// devkit's ground truth (`val_ground_truth`) or per-image WNIDs (`val_wnids`).
    IlsvrcFlat,
}

/// Which validation images an evaluation uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalSet {
    All,
    /// The 48,238 images left after removing the devkit's blacklist (the paper's Table 2).
    Nonblacklisted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColorMode {
    Off,
    Fast,
    Full,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterpolationMode {
    Bilinear,
    Bicubic,
}

/// Class-dependent synthetic JPEGs generated into `<results>/data/` (smoke runs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticSpec {
    pub classes: usize,
    pub train_per_class: usize,
    pub val_per_class: usize,
    /// Side of the generated images in pixels.
    pub image_size: u32,
    pub seed: u64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            classes: 4,
            train_per_class: 24,
            val_per_class: 8,
            image_size: 64,
            seed: 0,
        }
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

/// The data of a resolved run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// ImageFolder root of the training images (`train/<class>/<image>`).
    pub train: Option<String>,
    /// Validation images, in `val_layout`.
    pub val: Option<String>,
    pub val_layout: ValLayout,
    pub val_ground_truth: Option<String>,
    pub val_wnids: Option<String>,
    pub blacklist: Option<String>,
    pub eval_set: EvalSet,
    /// Use only the first N classes (sorted by folder name).
    pub classes: Option<usize>,
    pub train_images_per_class: Option<usize>,
    pub val_images_per_class: Option<usize>,
    pub subset_seed: u64,
    pub skip_bad_images: bool,
    /// When set, `train` and `val` are generated instead of read.
    pub synthetic: Option<SyntheticSpec>,
    pub color_distortion: ColorMode,
    /// Area range of the random training crop, as fractions of the image: TF-slim's
    /// [0.05, 1.0] by default. Small or low-resolution datasets train better with less.
    pub train_crop_area: [f64; 2],
    /// Central crop of single-crop evaluation: the fraction of each side kept.
    pub eval_crop_fraction: f64,
    pub interpolation: InterpolationMode,
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
    /// f32 (the reference; the only mode on the CPU), tf32 or bf16 (CUDA only).
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

/// A figure of the paper: error against epoch for some runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FigureSpec {
    /// `fig23`: the file name of the rendered figure.
    pub id: String,
    /// The paper's figure number, for the digitised overlay.
    #[serde(default)]
    pub paper_figure: Option<u32>,
    /// The chart's title (default: "Figure N reproduced: top-1 error", or the id's).
    #[serde(default)]
    pub title: Option<String>,
    pub metric: FigureMetric,
    /// Runs drawn, one line (or one band of seeds) per network.
    pub runs: Vec<String>,
    /// Draw the paper's digitised curves: `auto` = when the runs are at paper scale.
    #[serde(default)]
    pub paper_overlay: Overlay,
    /// Legend labels by run name, for runs of one network that differ in more than the
    /// seed (e.g. with and without residual scaling); runs with the same label share a band.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Top1,
    Top5,
}

/// What a figure draws against epoch: an error, or the share of zero activations before
/// the average pooling (section 3.3's sign of a network that died).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FigureMetric {
    Top1,
    Top5,
    PrePoolZeros,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlay {
    #[default]
    Auto,
    Always,
    Never,
}

/// A table of the paper: evaluations of trained runs under one crop protocol.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// `table2` … `table5`: also the key of the paper's values.
    pub id: String,
    #[serde(default)]
    pub title: Option<String>,
    /// 1, 10, 12 or 144.
    pub crops: u32,
    #[serde(default)]
    pub eval_set: Option<EvalSet>,
    /// Evaluate at most this many validation images per class (a seeded subset, the same
    /// for every row): for the costly 144-crop protocol on small machines.
    #[serde(default)]
    pub images_per_class: Option<usize>,
    /// Leave out validation images that cannot be read or decoded (counted and listed in
    /// `eval.parquet`, shown in the table) instead of failing the evaluation. Default: the
    /// runs' `data.skip_bad_images`.
    #[serde(default)]
    pub skip_bad_images: Option<bool>,
    /// Which images: the runs' validation set (`val`, default) or `train_holdout`, images of
    /// the training folder that the runs' `train_images_per_class` subset left out (a second
    /// split, disjoint from the training images and from `val`); `images_per_class` of them
    /// (default 200).
    #[serde(default)]
    pub split: EvalSplit,
    pub rows: Vec<TableRowSpec>,
}

/// The images a table is evaluated on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalSplit {
    #[default]
    Val,
    TrainHoldout,
}

/// One row: a network (its runs are seeds, reported as mean ± sd) or an ensemble (its runs'
/// probabilities are averaged). Instead of trained runs, a row can name released weight
/// files (`released`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRowSpec {
    /// The paper's row label (`inception_v4`, `inception_v3 x4`, ...).
    pub label: String,
    #[serde(default)]
    pub runs: Vec<String>,
    #[serde(default)]
    pub ensemble: bool,
    #[serde(default)]
    pub released: Option<ReleasedSpec>,
}

/// Released weights (a timm state dict saved as safetensors) evaluated in a table row.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleasedSpec {
    /// The network, merged over `defaults.model`.
    pub model: ModelSpec,
    /// One file per seed, or per ensemble member when the row is an ensemble.
    pub weights: Vec<String>,
    /// Central-crop fraction (default: the network's, 0.875; 0.8975 for Inception-ResNet-v2).
    #[serde(default)]
    pub crop_fraction: Option<f64>,
}

/// A claim of the paper and how the experiment checks it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimSpec {
    pub statement: String,
    pub check: ClaimCheck,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClaimCheck {
    /// The residual network's error is lower than the plain one's at matched epochs.
    ResidualFaster {
        residual: RunNames,
        plain: RunNames,
        metric: Metric,
    },
    /// Final error follows model size more than residual connections: both networks of
    /// the `large` pair end lower than both of the `small` pair, and the gap between the
    /// sizes is wider than the gap within each pair.
    SizeOverResidual {
        small: NetworkPair,
        large: NetworkPair,
        metric: Metric,
    },
    /// Without scaling of the residuals a wide Inception-ResNet dies early in training
    /// (section 3.3); with it, it trains.
    ResidualScaling {
        scaled: RunNames,
        unscaled: RunNames,
    },
    /// Evaluating more crops lowers the error: table `more` against table `fewer`, row by row.
    MoreCropsLowerError {
        fewer: String,
        more: String,
        metric: Metric,
    },
    /// Every ensemble row of table `ensembles` is lower than its best member evaluated alone
    /// in table `singles` (under the same crops).
    EnsembleLowersError {
        ensembles: String,
        singles: String,
        metric: Metric,
    },
}

impl ClaimCheck {
    /// The training runs the check reads.
    pub fn runs(&self) -> Vec<&String> {
        match self {
            ClaimCheck::ResidualFaster {
                residual, plain, ..
            } => residual.names().iter().chain(plain.names()).collect(),
            ClaimCheck::SizeOverResidual { small, large, .. } => [small, large]
                .into_iter()
                .flat_map(|p| p.plain.names().iter().chain(p.residual.names()))
                .collect(),
            ClaimCheck::ResidualScaling { scaled, unscaled } => {
                scaled.names().iter().chain(unscaled.names()).collect()
            }
            ClaimCheck::MoreCropsLowerError { .. } | ClaimCheck::EnsembleLowersError { .. } => {
                Vec::new()
            }
        }
    }

    /// The tables (by id) the check reads.
    pub fn tables(&self) -> Vec<&String> {
        match self {
            ClaimCheck::MoreCropsLowerError { fewer, more, .. } => vec![fewer, more],
            ClaimCheck::EnsembleLowersError {
                ensembles, singles, ..
            } => vec![ensembles, singles],
            _ => Vec::new(),
        }
    }
}

/// A plain network and its residual counterpart of similar cost, each one run or several
/// seeds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPair {
    pub plain: RunNames,
    pub residual: RunNames,
}

/// One run name, or a list of runs (the seeds of one network).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RunNames {
    One(String),
    Many(Vec<String>),
}

impl RunNames {
    pub fn names(&self) -> &[String] {
        match self {
            RunNames::One(name) => std::slice::from_ref(name),
            RunNames::Many(names) => names,
        }
    }
}
