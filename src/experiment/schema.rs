//! The YAML schema of experiment files. Every struct rejects unknown keys, and every field
//! has a default, so that each file (an experiment, or a file it includes) can be checked on
//! its own with exact line and column before the files are merged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::executor::{ExecutorKind, ExecutorSpec, SlurmSpec};
pub use crate::data::{
    ColorMode, DataConfig, EvalSet, InterpolationMode, SyntheticSpec, ValLayout,
};
use crate::device::Precision;
use crate::models::{Arch, AvgPoolPadding, InitScheme};
pub use crate::store::metrics::Metric;
use crate::train::{ClipMode, EmaConfig, LrSchedule};
pub use crate::train::{OptimizerConfig, RunConfig, TrainConfig};

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
    /// Setting paths (`train.clip_mode`) mapped to lists of values: the run stands for the
    /// grid of runs they span (see `experiment::sweep`).
    pub sweep: Option<BTreeMap<String, Vec<serde_yaml::Value>>>,
    /// A count (seeds 0 to N-1) or a list of seeds: one run per seed (and per grid cell).
    pub seeds: Option<super::sweep::Seeds>,
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
    /// `tf_slim` (default) or `pytorch`.
    pub init: Option<InitScheme>,
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
    pub metric: Metric,
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
    /// The quantity the check compares, if it compares one.
    pub fn metric(&self) -> Option<Metric> {
        match self {
            ClaimCheck::ResidualFaster { metric, .. }
            | ClaimCheck::SizeOverResidual { metric, .. }
            | ClaimCheck::MoreCropsLowerError { metric, .. }
            | ClaimCheck::EnsembleLowersError { metric, .. } => Some(*metric),
            ClaimCheck::ResidualScaling { .. } => None,
        }
    }

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

    /// The run lists the check reads, to rewrite (a sweep cell's name into its seeds).
    pub fn run_lists_mut(&mut self) -> Vec<&mut RunNames> {
        match self {
            ClaimCheck::ResidualFaster {
                residual, plain, ..
            } => vec![residual, plain],
            ClaimCheck::SizeOverResidual { small, large, .. } => vec![
                &mut small.plain,
                &mut small.residual,
                &mut large.plain,
                &mut large.residual,
            ],
            ClaimCheck::ResidualScaling { scaled, unscaled } => vec![scaled, unscaled],
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
