//! repro's side of the lockstep comparison: the recipe both trainers follow, the batches both
//! read, and repro's trace (per-step loss and gradient norm, the first step's gradients, the
//! final weights, running statistics and moving averages).
//!
//! Files of a lockstep folder (all safetensors under timm's state-dict names):
//! - `recipe.json`: [`LockstepRecipe`], the learning rate of every step included;
//! - `batches.safetensors`: `images.NNNN` `[b, 3, s, s]` f32 and `labels.NNNN` `[b]` i64;
//! - `init.safetensors`: repro's seeded initial weights, which the reference loads;
//! - `repro_steps.json`, `repro_grads_step1.safetensors`, `repro_final.safetensors`,
//!   `repro_ema.safetensors`: repro's trace; the reference writes the same with `timm_`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Loader, LoaderConfig, Preprocess, TrainAugment};
use crate::experiment::{OptimizerConfig, TrainConfig};
use crate::hashing::{fnv1a64, mix64, splitmix64};
use crate::models::{import, Arch, AvgPoolPadding, ModelConfig};
use crate::train::{EmaConfig, LrSchedule, RmsPropConfig, StepOutcome, TrainStep};

/// Errors of the lockstep check; each names the file or step involved.
#[derive(Debug, thiserror::Error)]
pub enum LockstepError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("step {step}: {message}")]
    Step { step: usize, message: String },
    #[error("{0}")]
    Other(String),
}

fn file_err(path: &Path) -> impl FnOnce(String) -> LockstepError + '_ {
    move |message| LockstepError::File {
        path: path.to_path_buf(),
        message,
    }
}

/// Everything both trainers need to take the same steps. The paper's recipe (RMSProp with
/// TF semantics, clipping by global norm, label smoothing, weight decay on conv/fc weights,
/// EMA with TF's warm-up), without dropout: its masks cannot be shared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockstepRecipe {
    pub arch: Arch,
    pub width: f64,
    pub image_size: usize,
    pub num_classes: usize,
    pub aux_head: bool,
    /// timm's convention for the network (v3 includes padded zeros in its average pools).
    pub avg_pool_padding: AvgPoolPadding,
    /// PyTorch convention: `running = (1 − m)·running + m·batch`.
    pub bn_momentum: f64,
    pub bn_eps: f64,
    pub batch_size: usize,
    pub steps: usize,
    /// Seeds repro's initial weights and the synthetic batches.
    pub seed: u64,
    pub base_lr: f64,
    pub lr_decay_factor: f64,
    /// Staircase decay every this many steps.
    pub lr_decay_steps: f64,
    pub rmsprop: RmsPropConfig,
    pub weight_decay: f64,
    pub clip_norm: f64,
    pub label_smoothing: f64,
    pub aux_weight: f64,
    pub ema_decay: f64,
    /// Where the batches came from: `synthetic` or an image folder.
    pub data: String,
    /// Both trainers compute in this float type: `f32`, or `f64` to see past rounding noise.
    pub dtype: String,
    /// The learning rate of each step as repro's schedule computes it (the reference
    /// recomputes it from the fields above and checks).
    pub lr: Vec<f64>,
}

impl LockstepRecipe {
    /// The paper's recipe for `arch` with timm's pooling convention, at the given scale.
    pub fn new(arch: Arch, width: f64, image_size: usize, batch_size: usize, steps: usize) -> Self {
        let train = TrainConfig::default();
        let mut recipe = Self {
            arch,
            width,
            image_size,
            num_classes: 10,
            aux_head: false,
            avg_pool_padding: timm_avg_pool_padding(arch),
            bn_momentum: 0.03,
            bn_eps: 1e-3,
            batch_size,
            steps,
            seed: 0,
            base_lr: 0.045,
            lr_decay_factor: 0.94,
            lr_decay_steps: 10.0,
            rmsprop: RmsPropConfig::default(),
            weight_decay: train.weight_decay,
            clip_norm: train.clip_norm,
            label_smoothing: train.label_smoothing,
            aux_weight: train.aux_weight,
            ema_decay: train.ema.decay,
            data: "synthetic".into(),
            dtype: "f32".into(),
            lr: Vec::new(),
        };
        recipe.fill_lr();
        recipe
    }

    /// Recomputes [`LockstepRecipe::lr`] from the schedule fields.
    pub fn fill_lr(&mut self) {
        let schedule = self.schedule();
        self.lr = (0..self.steps).map(|s| schedule.lr_at(s as f64)).collect();
    }

    /// The schedule with one "epoch" per step.
    fn schedule(&self) -> LrSchedule {
        LrSchedule {
            base_lr: self.base_lr,
            decay_factor: self.lr_decay_factor,
            decay_epochs: self.lr_decay_steps,
            staircase: true,
            warmup_epochs: 0.0,
            reference_batch: None,
        }
    }

    pub fn model_config(&self) -> ModelConfig {
        let mut m = ModelConfig::new(self.arch);
        m.width = self.width;
        m.image_size = self.image_size;
        m.num_classes = self.num_classes;
        m.aux_head = self.aux_head;
        m.avg_pool_padding = Some(self.avg_pool_padding);
        m.bn_momentum = self.bn_momentum;
        m.bn_eps = self.bn_eps;
        m.dropout = 0.0;
        m
    }

    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            batch_size: self.batch_size,
            optimizer: OptimizerConfig::Rmsprop(self.rmsprop),
            lr: self.schedule(),
            weight_decay: self.weight_decay,
            clip_norm: self.clip_norm,
            label_smoothing: self.label_smoothing,
            aux_weight: self.aux_weight,
            ema: EmaConfig {
                decay: self.ema_decay,
                warmup: true,
            },
            ..TrainConfig::default()
        }
    }

    /// The float type of [`LockstepRecipe::dtype`].
    pub fn float_type(&self) -> Result<DType, LockstepError> {
        match self.dtype.as_str() {
            "f32" => Ok(DType::F32),
            "f64" => Ok(DType::F64),
            other => Err(LockstepError::Other(format!(
                "recipe dtype `{other}`: expected f32 or f64"
            ))),
        }
    }

    pub fn read(path: &Path) -> Result<Self, LockstepError> {
        let text = std::fs::read_to_string(path).map_err(|e| file_err(path)(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| file_err(path)(e.to_string()))
    }

    pub fn write(&self, path: &Path) -> Result<(), LockstepError> {
        let text = serde_json::to_string_pretty(self).expect("a recipe serialises");
        std::fs::write(path, text + "\n").map_err(|e| file_err(path)(e.to_string()))
    }
}

/// timm's average-pool padding: torchvision's v3 averages padded zeros in, v4 and IR-v2 not.
pub fn timm_avg_pool_padding(arch: Arch) -> AvgPoolPadding {
    match arch {
        Arch::InceptionV3 => AvgPoolPadding::Include,
        _ => AvgPoolPadding::Exclude,
    }
}

/// Where the batches come from.
#[derive(Clone, Debug)]
pub enum LockstepData {
    /// Generated images whose class shows in their pattern, so the loss can fall.
    Synthetic,
    /// An ImageFolder training set through repro's training augmentation (seeded).
    ImageFolder(PathBuf),
}

/// One batch: images `[b, 3, s, s]` f32 and labels `[b]` u32.
pub type LockstepBatch = (Tensor, Tensor);

/// The recipe's batches.
pub fn make_batches(
    recipe: &LockstepRecipe,
    data: &LockstepData,
) -> Result<Vec<LockstepBatch>, LockstepError> {
    match data {
        LockstepData::Synthetic => Ok((0..recipe.steps)
            .map(|i| synthetic_batch(recipe, i))
            .collect()),
        LockstepData::ImageFolder(root) => folder_batches(recipe, root),
    }
}

/// Batch `index` of the synthetic data: each image is a class-specific plane wave (its
/// frequency and orientation) with a random phase per channel, plus uniform noise, in [-1, 1].
/// A pure function of (seed, index), so the regression test rebuilds what the fixture saw.
pub fn synthetic_batch(recipe: &LockstepRecipe, index: usize) -> LockstepBatch {
    let (b, s, classes) = (recipe.batch_size, recipe.image_size, recipe.num_classes);
    let base = mix64(recipe.seed ^ fnv1a64(b"lockstep-batches")) ^ (index as u64) << 20;
    let mut pixels = Vec::with_capacity(b * 3 * s * s);
    let mut labels = Vec::with_capacity(b);
    for row in 0..b {
        let key = mix64(base ^ row as u64);
        let label = (key % classes as u64) as u32;
        labels.push(label);
        let freq = 1.0 + (label % 4) as f32;
        let angle = std::f32::consts::PI * label as f32 / classes as f32;
        let (fx, fy) = (freq * angle.cos(), freq * angle.sin());
        let mut state = key;
        for _channel in 0..3 {
            state = splitmix64(state);
            let phase = unit(state) * std::f32::consts::TAU;
            for y in 0..s {
                for x in 0..s {
                    state = splitmix64(state);
                    let (u, v) = (x as f32 / s as f32, y as f32 / s as f32);
                    let wave = (std::f32::consts::TAU * (fx * u + fy * v) + phase).sin();
                    pixels.push(0.6 * wave + 0.4 * (2.0 * unit(state) - 1.0));
                }
            }
        }
    }
    let images = Tensor::from_vec(pixels, (b, 3, s, s), &Device::Cpu).expect("sizes agree");
    let labels = Tensor::from_vec(labels, b, &Device::Cpu).expect("sizes agree");
    (images, labels)
}

/// A uniform number in [0, 1) from the top 24 bits.
fn unit(x: u64) -> f32 {
    (x >> 40) as f32 / (1u64 << 24) as f32
}

fn folder_batches(
    recipe: &LockstepRecipe,
    root: &Path,
) -> Result<Vec<LockstepBatch>, LockstepError> {
    let err = |e: crate::data::DataError| LockstepError::Other(e.to_string());
    let dataset = Dataset::image_folder(root).map_err(err)?;
    if dataset.num_classes() != recipe.num_classes {
        return Err(file_err(root)(format!(
            "has {} classes, the recipe {}",
            dataset.num_classes(),
            recipe.num_classes
        )));
    }
    let augment = TrainAugment {
        image_size: recipe.image_size as u32,
        area_range: (0.25, 1.0),
        ..TrainAugment::default()
    };
    let mut config = LoaderConfig::new(recipe.batch_size, Preprocess::Train(augment));
    config.seed = recipe.seed;
    config.drop_last = true;
    let loader = Loader::new(&dataset, config, &Device::Cpu).map_err(err)?;
    let mut out = Vec::with_capacity(recipe.steps);
    let mut epoch = 0;
    while out.len() < recipe.steps {
        for batch in loader.iter_epoch(epoch, 0).take(recipe.steps - out.len()) {
            let batch = batch.map_err(err)?;
            out.push((batch.images, batch.labels));
        }
        epoch += 1;
    }
    Ok(out)
}

/// What repro did, step by step and at the end.
pub struct LockstepRun {
    pub loss: Vec<f64>,
    /// Global gradient norm before clipping.
    pub grad_norm: Vec<f64>,
    pub top1_correct: Vec<u64>,
    /// Initial weights as a timm state dict.
    pub init: HashMap<String, Tensor>,
    /// Every trainable variable's gradient at the first step (before clipping and decay).
    pub first_gradients: HashMap<String, Tensor>,
    /// Final weights and running statistics as a timm state dict.
    pub final_state: HashMap<String, Tensor>,
    /// Final moving averages (weights and running statistics).
    pub ema: HashMap<String, Tensor>,
}

/// Trains repro on `batches` from its seeded initial weights.
pub fn train_repro(
    recipe: &LockstepRecipe,
    batches: &[LockstepBatch],
) -> Result<LockstepRun, LockstepError> {
    let other = |e: crate::train::TrainError| LockstepError::Other(e.to_string());
    let tensor = |e: candle_core::Error| LockstepError::Other(e.to_string());
    let device = Device::Cpu;
    let dtype = recipe.float_type()?;
    let mut model = TrainStep::with_dtype(
        &recipe.model_config(),
        &recipe.train_config(),
        recipe.seed,
        &device,
        dtype,
    )
    .map_err(other)?;
    let init = copied(import::state_dict(&model.varmap, 0).map_err(tensor)?)?;
    let mut run = LockstepRun {
        loss: Vec::new(),
        grad_norm: Vec::new(),
        top1_correct: Vec::new(),
        init,
        first_gradients: HashMap::new(),
        final_state: HashMap::new(),
        ema: HashMap::new(),
    };
    for (step, (images, labels)) in batches.iter().enumerate().take(recipe.steps) {
        let lr = recipe.lr[step];
        let images = &images.to_dtype(dtype).map_err(tensor)?;
        let outcome = if step == 0 {
            let (outcome, grads) = model
                .step_keeping_gradients(images, labels, lr, step as u64)
                .map_err(other)?;
            run.first_gradients = grads.into_iter().collect();
            outcome
        } else {
            model.step(images, labels, lr, step as u64).map_err(other)?
        };
        match outcome {
            StepOutcome::Updated {
                loss,
                grad_norm,
                top1_correct,
                ..
            } => {
                run.loss.push(loss);
                run.grad_norm.push(grad_norm);
                run.top1_correct.push(top1_correct);
            }
            StepOutcome::Diverged { value } => {
                return Err(LockstepError::Step {
                    step: step + 1,
                    message: format!("repro diverged (loss or gradient norm {value})"),
                })
            }
        }
    }
    run.final_state = import::state_dict(&model.varmap, run.loss.len() as i64).map_err(tensor)?;
    run.ema = copied(model.ema.tensors())?;
    Ok(run)
}

/// Copies tensors that share storage with state updated in place.
fn copied(map: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>, LockstepError> {
    map.into_iter()
        .map(|(k, v)| {
            v.copy()
                .map(|v| (k, v))
                .map_err(|e| LockstepError::Other(e.to_string()))
        })
        .collect()
}

/// Per-step numbers of one side, as `repro_steps.json` / `timm_steps.json` hold them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepTrace {
    pub loss: Vec<f64>,
    pub grad_norm: Vec<f64>,
    pub lr: Vec<f64>,
}

impl StepTrace {
    pub fn read(path: &Path) -> Result<Self, LockstepError> {
        let text = std::fs::read_to_string(path).map_err(|e| file_err(path)(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| file_err(path)(e.to_string()))
    }
}

/// Writes the recipe, the batches and repro's trace into `dir`.
pub fn write_repro_side(
    dir: &Path,
    recipe: &LockstepRecipe,
    batches: &[LockstepBatch],
    run: &LockstepRun,
) -> Result<(), LockstepError> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir)(e.to_string()))?;
    recipe.write(&dir.join("recipe.json"))?;
    let mut tensors = HashMap::new();
    for (i, (images, labels)) in batches.iter().enumerate() {
        let labels = labels
            .to_dtype(DType::I64)
            .map_err(|e| LockstepError::Other(e.to_string()))?;
        tensors.insert(format!("images.{i:04}"), images.clone());
        tensors.insert(format!("labels.{i:04}"), labels);
    }
    save(&dir.join("batches.safetensors"), &tensors)?;
    save(&dir.join("init.safetensors"), &run.init)?;
    save(
        &dir.join("repro_grads_step1.safetensors"),
        &run.first_gradients,
    )?;
    save(&dir.join("repro_final.safetensors"), &run.final_state)?;
    save(&dir.join("repro_ema.safetensors"), &run.ema)?;
    let trace = StepTrace {
        loss: run.loss.clone(),
        grad_norm: run.grad_norm.clone(),
        lr: recipe.lr[..run.loss.len()].to_vec(),
    };
    let path = dir.join("repro_steps.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&trace).expect("serialises"),
    )
    .map_err(|e| file_err(&path)(e.to_string()))
}

pub(crate) fn save(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<(), LockstepError> {
    candle_core::safetensors::save(tensors, path).map_err(|e| file_err(path)(e.to_string()))
}

pub(crate) fn load(path: &Path) -> Result<HashMap<String, Tensor>, LockstepError> {
    candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| file_err(path)(e.to_string()))
}
