//! One optimisation step of the paper's recipe, on a network and its optimizer state:
//! forward in training mode, smoothed cross-entropy (+ 0.4 × the auxiliary loss), backward,
//! clipping by global norm, the optimizer update, the moving average. The trainer and the
//! training benchmark run exactly this.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

use super::trainer::{other, tensor_err, TrainError};
use super::{
    clip_by_global_norm, global_norm, smoothed_cross_entropy, sorted_vars, top_k_hits, Ema,
    Optimizer, RmsProp, SgdMomentum, WeightDecay,
};
use crate::hashing::{mix64, GOLDEN_GAMMA};
use crate::models::fastops;
use crate::models::init::{initialize, zeroed_var_builder};
use crate::models::{ModelConfig, Network};
use crate::spec::{OptimizerConfig, TrainConfig};

/// The result of a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepOutcome {
    /// The weights were updated. `loss` is the step's training loss, `grad_norm` the global
    /// gradient norm (before clipping, when clipping is on), `top1_correct` how many images of
    /// the batch the training-mode forward put in the right class.
    Updated {
        loss: f64,
        grad_norm: f64,
        top1_correct: u64,
    },
    /// The loss or the gradient norm was NaN or infinite; nothing was updated.
    Diverged { value: f64 },
}

/// A network with everything a training step changes.
pub struct TrainStep {
    pub varmap: VarMap,
    pub net: Network,
    pub optimizer: Box<dyn Optimizer + Send>,
    pub ema: Ema,
    trainable: Vec<(String, Var)>,
    train: TrainConfig,
    seed: u64,
}

impl TrainStep {
    /// A freshly initialised network (seeded) with its optimizer and moving average, in f32.
    pub fn new(
        model: &ModelConfig,
        train: &TrainConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self, TrainError> {
        Self::with_dtype(model, train, seed, device, DType::F32)
    }

    /// [`TrainStep::new`] with variables of another float type: f64 on the CPU takes the
    /// rounding noise out of comparisons with a reference trainer.
    pub fn with_dtype(
        model: &ModelConfig,
        train: &TrainConfig,
        seed: u64,
        device: &Device,
        dtype: DType,
    ) -> Result<Self, TrainError> {
        let varmap = VarMap::new();
        let net = Network::new(model, zeroed_var_builder(&varmap, dtype, device))
            .map_err(tensor_err("building the network"))?;
        initialize(&varmap, seed).map_err(tensor_err("initialising the weights"))?;
        let vars = sorted_vars(&varmap);
        let trainable = vars
            .iter()
            .filter(|(n, _)| !is_running_stat(n))
            .cloned()
            .collect();
        let decay = WeightDecay::weights_only(train.weight_decay);
        let optimizer: Box<dyn Optimizer + Send> = match &train.optimizer {
            OptimizerConfig::Rmsprop(c) => {
                Box::new(RmsProp::new(vars.clone(), *c, decay).map_err(other)?)
            }
            OptimizerConfig::Sgd(c) => {
                Box::new(SgdMomentum::new(vars.clone(), *c, decay).map_err(other)?)
            }
        };
        let ema = Ema::new(vars, train.ema).map_err(other)?;
        Ok(Self {
            varmap,
            net,
            optimizer,
            ema,
            trainable,
            train: train.clone(),
            seed,
        })
    }

    /// Step number `step` (0-based; it seeds the dropout mask) at learning rate `lr`.
    pub fn step(
        &mut self,
        images: &Tensor,
        labels: &Tensor,
        lr: f64,
        step: u64,
    ) -> Result<StepOutcome, TrainError> {
        fastops::on_worker(|| self.step_on_worker(images, labels, lr, step, None))
    }

    /// [`TrainStep::step`] that also returns the gradient of every trainable variable by name,
    /// as the backward pass produced it (before clipping and weight decay). For comparisons
    /// with a reference trainer.
    pub fn step_keeping_gradients(
        &mut self,
        images: &Tensor,
        labels: &Tensor,
        lr: f64,
        step: u64,
    ) -> Result<(StepOutcome, Vec<(String, Tensor)>), TrainError> {
        fastops::on_worker(|| {
            let mut kept = Vec::new();
            let outcome = self.step_on_worker(images, labels, lr, step, Some(&mut kept))?;
            Ok((outcome, kept))
        })
    }

    fn step_on_worker(
        &mut self,
        images: &Tensor,
        labels: &Tensor,
        lr: f64,
        step: u64,
        keep_gradients: Option<&mut Vec<(String, Tensor)>>,
    ) -> Result<StepOutcome, TrainError> {
        self.net.set_dropout_seed(mix(self.seed, step));
        let (loss, logits) = self.loss(images, labels)?;
        let top1_correct = top_k_hits(&logits, labels, 1)
            .map_err(other)?
            .sum_all()
            .and_then(|t| t.to_dtype(DType::F64)?.to_scalar::<f64>())
            .map_err(tensor_err("training top-1"))? as u64;
        let value = loss
            .to_dtype(DType::F64)
            .and_then(|l| l.to_scalar::<f64>())
            .map_err(tensor_err("reading the loss"))?;
        if !value.is_finite() {
            return Ok(StepOutcome::Diverged { value });
        }
        let mut grads = loss.backward().map_err(tensor_err("backward pass"))?;
        if let Some(kept) = keep_gradients {
            for (name, var) in &self.trainable {
                if let Some(g) = grads.get(var.as_tensor()) {
                    kept.push((
                        name.clone(),
                        g.copy().map_err(tensor_err("copying a gradient"))?,
                    ));
                }
            }
        }
        let vars = self.trainable.iter().map(|(_, v)| v);
        let norm = if self.train.clip_norm > 0.0 {
            clip_by_global_norm(&mut grads, vars, self.train.clip_norm)
        } else {
            global_norm(&grads, vars)
        }
        .map_err(other)?;
        if !norm.is_finite() {
            return Ok(StepOutcome::Diverged { value: norm });
        }
        self.optimizer.step(&grads, lr).map_err(other)?;
        self.ema.update().map_err(other)?;
        Ok(StepOutcome::Updated {
            loss: value,
            grad_norm: norm,
            top1_correct,
        })
    }

    /// Smoothed cross-entropy of the logits, plus the weighted auxiliary loss when the head is
    /// on; also the main head's logits.
    fn loss(&self, images: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor), TrainError> {
        let out = self
            .net
            .forward_t(images, true)
            .map_err(tensor_err("forward pass"))?;
        let eps = self.train.label_smoothing;
        let mut loss = smoothed_cross_entropy(&out.logits, labels, eps).map_err(other)?;
        if let Some(aux) = &out.aux_logits {
            let aux_loss = smoothed_cross_entropy(aux, labels, eps).map_err(other)?;
            loss = (loss + (aux_loss * self.train.aux_weight).map_err(tensor_err("aux loss"))?)
                .map_err(tensor_err("aux loss"))?;
        }
        Ok((loss, out.logits))
    }
}

fn is_running_stat(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

/// A per-step seed from the run seed.
fn mix(seed: u64, step: u64) -> u64 {
    mix64(seed.wrapping_mul(GOLDEN_GAMMA) ^ step)
}
