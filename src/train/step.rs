//! One optimisation step of the paper's recipe, on a network and its optimizer state:
//! forward in training mode, smoothed cross-entropy (+ 0.4 × the auxiliary loss), backward
//! (of each micro-batch, gradients averaged), clipping by global norm, the optimizer update,
//! the moving average. The trainer and the training benchmark run exactly this.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

use super::phases::PhaseClock;
use super::readback::read_f64s;
use super::{
    global_norm, global_norm_tensor, scale_each_to_norm, scale_to_norm, smoothed_cross_entropy,
    sorted_vars, top_k_hits, ClipMode, Ema, Optimizer, RmsProp, SgdMomentum, WeightDecay,
};
use super::{tensor_err, TrainError};
use std::sync::Arc;

use super::{OptimizerConfig, TrainConfig};
use crate::hashing::{mix64, GOLDEN_GAMMA};
use crate::models::fastops;
use crate::models::init::{initialize, zeroed_var_builder};
use crate::models::{ModelConfig, Network};
use crate::replicas::{all_reduce_mean, Replicas, Single};

/// The result of a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepOutcome {
    /// The weights were updated. `loss` is the step's training loss, `grad_norm` the global
    /// gradient norm (before clipping, when clipping is on), `top1_correct` how many images of
    /// the batch the training-mode forward put in the right class, `images` how many images
    /// the update saw (over every replica).
    Updated {
        loss: f64,
        grad_norm: f64,
        top1_correct: u64,
        images: u64,
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
    /// The BatchNorm running statistics, which the forward pass updates.
    running: Vec<(String, Var)>,
    train: TrainConfig,
    seed: u64,
    /// The processes of the run; gradients and running statistics are averaged over them.
    replicas: Replicas,
    /// Time spent waiting for and exchanging with the other replicas.
    communication: std::time::Duration,
    /// Times each phase of a step (benchmarks; `None` in training).
    phases: Option<std::cell::RefCell<PhaseClock>>,
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
        initialize(&varmap, seed, model.init, model.arch)
            .map_err(tensor_err("initialising the weights"))?;
        let vars = sorted_vars(&varmap);
        let (running, trainable) = vars.iter().cloned().partition(|(n, _)| is_running_stat(n));
        let decay = WeightDecay::weights_only(train.weight_decay);
        let optimizer: Box<dyn Optimizer + Send> = match &train.optimizer {
            OptimizerConfig::Rmsprop(c) => Box::new(RmsProp::new(vars.clone(), *c, decay)?),
            OptimizerConfig::Sgd(c) => Box::new(SgdMomentum::new(vars.clone(), *c, decay)?),
        };
        let ema = Ema::new(vars, train.ema)?;
        Ok(Self {
            varmap,
            net,
            optimizer,
            ema,
            trainable,
            running,
            train: train.clone(),
            seed,
            replicas: Arc::new(Single),
            communication: std::time::Duration::ZERO,
            phases: None,
        })
    }

    /// Averages every update over `replicas` (one process each), from the next step on.
    pub fn set_replicas(&mut self, replicas: Replicas) {
        self.replicas = replicas;
    }

    /// Times the phases of every following step (each waits for the device: benchmarks only).
    pub fn time_phases(&mut self, device: &Device) {
        self.phases = Some(std::cell::RefCell::new(PhaseClock::new(device)));
    }

    /// Milliseconds per phase of the last step, when [`TrainStep::time_phases`] is on.
    pub fn phase_milliseconds(&self) -> Option<Vec<(&'static str, f64)>> {
        self.phases.as_ref().map(|c| c.borrow().milliseconds())
    }

    /// Ends phase `name` of the step when phases are timed.
    fn mark(&self, name: &str) {
        if let Some(c) = &self.phases {
            c.borrow_mut().mark(name);
        }
    }

    /// Seconds spent in exchanges with the other replicas so far (0 for one process).
    pub fn communication_seconds(&self) -> f64 {
        self.communication.as_secs_f64()
    }

    /// Step number `step` (0-based; it seeds the dropout mask) at learning rate `lr`.
    pub fn step(
        &mut self,
        images: &Tensor,
        labels: &Tensor,
        lr: f64,
        step: u64,
    ) -> Result<StepOutcome, TrainError> {
        self.step_micro(&[(images, labels)], lr, step)
    }

    /// One update from several micro-batches of (images, labels): the mean of their
    /// gradients, as from as many replicas (`train.accumulate`), and over the processes of
    /// the run (each passing as many micro-batches).
    pub fn step_micro(
        &mut self,
        micro: &[(&Tensor, &Tensor)],
        lr: f64,
        step: u64,
    ) -> Result<StepOutcome, TrainError> {
        fastops::on_worker(|| self.step_on_worker(micro, lr, step, None))
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
            let outcome = self.step_on_worker(&[(images, labels)], lr, step, Some(&mut kept))?;
            Ok((outcome, kept))
        })
    }

    fn step_on_worker(
        &mut self,
        micro: &[(&Tensor, &Tensor)],
        lr: f64,
        step: u64,
        keep_gradients: Option<&mut Vec<(String, Tensor)>>,
    ) -> Result<StepOutcome, TrainError> {
        if let Some(c) = &self.phases {
            c.borrow_mut().start();
        }
        let mut grads = self.backward_micro(micro, step)?;
        let mut images = 0usize;
        for (_, labels) in micro {
            images += labels.dim(0).map_err(tensor_err("batch size"))?;
        }
        let world = self.replicas.world_size();
        let read = |t: &[&Tensor]| read_f64s(t).map_err(tensor_err("reading the step's loss"));
        let (value, top1_correct, norm) = if world == 1 {
            // One read for the whole step: the loss, the hits and the gradient norm together.
            let vars = self.trainable.iter().map(|(_, v)| v);
            let norm = global_norm_tensor(&grads.store, vars)?;
            let [loss_sum, hits, norm] = read(&[&grads.loss_sum, &grads.top1_correct, &norm])?[..]
            else {
                unreachable!("three values read")
            };
            self.mark("read");
            (loss_sum / micro.len() as f64, hits as u64, Some(norm))
        } else {
            // The loss and hits of every replica; a non-finite loss anywhere stops every
            // replica at the same step (none waits for the others' gradients).
            let local = read(&[&grads.loss_sum, &grads.top1_correct])?;
            self.mark("read");
            let mut totals = [local[0], local[1], images as f64];
            let exchange = std::time::Instant::now();
            self.replicas.all_reduce_sum_f64(&mut totals)?;
            self.communication += exchange.elapsed();
            images = totals[2] as usize;
            (
                totals[0] / (micro.len() * world) as f64,
                totals[1] as u64,
                None,
            )
        };
        if !value.is_finite() {
            return Ok(StepOutcome::Diverged { value });
        }
        if world > 1 {
            let exchange = std::time::Instant::now();
            self.average_over_replicas(&mut grads.store)?;
            self.communication += exchange.elapsed();
            self.mark("exchange");
        }
        if let Some(kept) = keep_gradients {
            for (name, var) in &self.trainable {
                if let Some(g) = grads.store.get(var.as_tensor()) {
                    kept.push((
                        name.clone(),
                        g.copy().map_err(tensor_err("copying a gradient"))?,
                    ));
                }
            }
        }
        let vars = || self.trainable.iter().map(|(_, v)| v);
        let norm = match norm {
            Some(n) => n,
            None => global_norm(&grads.store, vars())?,
        };
        if !norm.is_finite() {
            return Ok(StepOutcome::Diverged { value: norm });
        }
        if self.train.clip_norm > 0.0 {
            match self.train.clip_mode {
                ClipMode::GlobalNorm => {
                    scale_to_norm(&mut grads.store, vars(), self.train.clip_norm, norm)
                }
                ClipMode::PerVariable => {
                    scale_each_to_norm(&mut grads.store, vars(), self.train.clip_norm)
                }
            }?;
        }
        self.mark("clip");
        self.optimizer.step(&grads.store, lr)?;
        self.mark("optimizer");
        self.ema.update()?;
        self.mark("ema");
        Ok(StepOutcome::Updated {
            loss: value,
            grad_norm: norm,
            top1_correct,
            images: images as u64,
        })
    }

    /// Replaces the gradients and the running statistics by their means over the replicas.
    fn average_over_replicas(&self, store: &mut GradStore) -> Result<(), TrainError> {
        let mut keys: Vec<&Var> = Vec::new();
        let mut tensors: Vec<Tensor> = Vec::new();
        for (_, var) in &self.trainable {
            if let Some(g) = store.get(var.as_tensor()) {
                keys.push(var);
                tensors.push(g.clone());
            }
        }
        let stats: Vec<Tensor> = self
            .running
            .iter()
            .map(|(_, v)| v.as_tensor().clone())
            .collect();
        let n_grads = tensors.len();
        tensors.extend(stats);
        let reduced = all_reduce_mean(self.replicas.as_ref(), &tensors)?;
        for (var, mean) in keys.iter().zip(&reduced[..n_grads]) {
            store.insert(var.as_tensor(), mean.clone());
        }
        for ((_, var), mean) in self.running.iter().zip(&reduced[n_grads..]) {
            var.set(mean)
                .map_err(tensor_err("setting running statistics"))?;
        }
        Ok(())
    }

    /// Forward and backward of every micro-batch: the mean of their gradients, the sum of
    /// their losses and hits (on the device, in f64: nothing is read back). Every micro-batch
    /// starts from the same running statistics and the statistics end at the mean of where
    /// each left them.
    fn backward_micro(
        &self,
        micro: &[(&Tensor, &Tensor)],
        step: u64,
    ) -> Result<MicroGradients, TrainError> {
        let k = micro.len();
        let before = match k {
            1 => Vec::new(),
            _ => snapshot(&self.running)?,
        };
        let mut after: Vec<Vec<Tensor>> = Vec::new();
        let mut total: Option<GradStore> = None;
        let (mut loss_sum, mut top1_correct): (Option<Tensor>, Option<Tensor>) = (None, None);
        let add = |sum: Option<Tensor>, t: Tensor| match sum {
            None => Ok(t),
            Some(s) => s + t,
        };
        for (i, (images, labels)) in micro.iter().enumerate() {
            if k > 1 {
                restore(&self.running, &before)?;
            }
            // Micro-batch i of this process is micro-batch i * W + rank of the update: the
            // global batch the loader gave it (see `LoaderConfig::world_size`).
            let index = i * self.replicas.world_size() + self.replicas.rank();
            self.net
                .set_dropout_seed(micro_seed(self.seed, step, index as u64));
            // The network's stages as single nodes of the graph (fastops' tape): their
            // parameters' gradients come back through `stages`.
            let stages = fastops::StageGrads::new();
            let fused = stages.install();
            let (loss, logits) = self.loss(images, labels)?;
            self.mark("forward");
            let hits = top_k_hits(&logits, labels, 1)?
                .sum_all()
                .and_then(|t| t.to_dtype(DType::F64));
            top1_correct = Some(
                hits.and_then(|h| add(top1_correct, h))
                    .map_err(tensor_err("training top-1"))?,
            );
            loss_sum = Some(
                loss.to_dtype(DType::F64)
                    .and_then(|l| add(loss_sum, l))
                    .map_err(tensor_err("summing the loss"))?,
            );
            let mut grads = loss.backward().map_err(tensor_err("backward pass"))?;
            drop(fused);
            stages
                .merge_into(&mut grads)
                .map_err(tensor_err("the fused stages' gradients"))?;
            self.mark("backward");
            total = Some(match total {
                None => grads,
                Some(mut sum) => {
                    for (_, var) in &self.trainable {
                        let v = var.as_tensor();
                        if let Some(g) = grads.get(v) {
                            let added = match sum.get(v) {
                                Some(s) => (s + g).map_err(tensor_err("adding gradients"))?,
                                None => g.clone(),
                            };
                            sum.insert(v, added);
                        }
                    }
                    sum
                }
            });
            if k > 1 {
                after.push(snapshot(&self.running)?);
            }
        }
        let (Some(mut store), Some(loss_sum), Some(top1_correct)) = (total, loss_sum, top1_correct)
        else {
            return Err(TrainError::Setup(
                "a step needs at least one micro-batch".into(),
            ));
        };
        if k > 1 {
            let scale = 1.0 / k as f64;
            for (_, var) in &self.trainable {
                let v = var.as_tensor();
                if let Some(g) = store.get(v) {
                    let mean = (g * scale).map_err(tensor_err("averaging gradients"))?;
                    store.insert(v, mean);
                }
            }
            for (j, (_, var)) in self.running.iter().enumerate() {
                let parts: Vec<&Tensor> = after.iter().map(|a| &a[j]).collect();
                let mean = (Tensor::stack(&parts, 0).and_then(|t| t.mean(0)))
                    .map_err(tensor_err("averaging running statistics"))?;
                var.set(&mean)
                    .map_err(tensor_err("setting running statistics"))?;
            }
        }
        Ok(MicroGradients {
            store,
            loss_sum,
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
        let mut loss = smoothed_cross_entropy(&out.logits, labels, eps)?;
        if let Some(aux) = &out.aux_logits {
            let aux_loss = smoothed_cross_entropy(aux, labels, eps)?;
            loss = (loss + (aux_loss * self.train.aux_weight).map_err(tensor_err("aux loss"))?)
                .map_err(tensor_err("aux loss"))?;
        }
        Ok((loss, out.logits))
    }
}

/// The averaged gradients of a step's micro-batches, with their summed losses and hits (f64
/// scalars on the device).
struct MicroGradients {
    store: GradStore,
    loss_sum: Tensor,
    top1_correct: Tensor,
}

/// Copies of the variables' current values.
fn snapshot(vars: &[(String, Var)]) -> Result<Vec<Tensor>, TrainError> {
    vars.iter()
        .map(|(_, v)| v.as_tensor().copy())
        .collect::<candle_core::Result<_>>()
        .map_err(tensor_err("saving running statistics"))
}

/// Sets the variables back to `values`.
fn restore(vars: &[(String, Var)], values: &[Tensor]) -> Result<(), TrainError> {
    for ((_, var), value) in vars.iter().zip(values) {
        var.set(value)
            .map_err(tensor_err("restoring running statistics"))?;
    }
    Ok(())
}

/// The dropout seed of micro-batch `index` of a step: micro-batch `index` of an update is
/// the same images, with the same mask, whether one process accumulates it or replica
/// `index` computes it.
fn micro_seed(seed: u64, step: u64, index: u64) -> u64 {
    match index {
        0 => mix(seed, step),
        i => mix64(mix(seed, step) ^ i.wrapping_mul(GOLDEN_GAMMA)),
    }
}

fn is_running_stat(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

/// A per-step seed from the run seed.
fn mix(seed: u64, step: u64) -> u64 {
    mix64(seed.wrapping_mul(GOLDEN_GAMMA) ^ step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Arch;

    fn tiny() -> TrainStep {
        let mut model = ModelConfig::new(Arch::InceptionResnetV2);
        (
            model.width,
            model.image_size,
            model.blocks,
            model.num_classes,
        ) = (0.125, 75, Some([1, 1, 1]), 3);
        model.dropout = 0.0;
        TrainStep::with_dtype(&model, &TrainConfig::default(), 7, &Device::Cpu, DType::F64).unwrap()
    }

    fn batch(seed: u64) -> (Tensor, Tensor) {
        let n = 3 * 3 * 75 * 75;
        let x: Vec<f64> = (0..n as u64)
            .map(|i| ((mix64(seed ^ i) >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0)
            .collect();
        let x = Tensor::from_vec(x, (3, 3, 75, 75), &Device::Cpu).unwrap();
        let y = Tensor::new(&[(seed % 3) as u32, 1, 2], &Device::Cpu).unwrap();
        (x, y)
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        let m = b.abs().unwrap().max_all().unwrap();
        d.to_scalar::<f64>().unwrap() / m.to_scalar::<f64>().unwrap().max(1e-30)
    }

    #[test]
    fn micro_batches_average_the_gradients_and_running_statistics_of_separate_batches() {
        let (a, b) = (batch(1), batch(2));
        let together = tiny();
        let grads = together
            .backward_micro(&[(&a.0, &a.1), (&b.0, &b.1)], 0)
            .unwrap();
        let alone: Vec<(TrainStep, MicroGradients)> = [&a, &b]
            .iter()
            .map(|(x, y)| {
                let model = tiny();
                let g = model.backward_micro(&[(x, y)], 0).unwrap();
                (model, g)
            })
            .collect();
        let (mut checked, mut worst) = (0, 0.0f64);
        for (i, (_, var)) in together.trainable.iter().enumerate() {
            let v = var.as_tensor();
            let parts: Vec<&Tensor> = alone
                .iter()
                .map(|(m, g)| g.store.get(m.trainable[i].1.as_tensor()).unwrap())
                .collect();
            let want = ((parts[0] + parts[1]).unwrap() * 0.5).unwrap();
            worst = worst.max(max_rel(grads.store.get(v).unwrap(), &want));
            checked += 1;
        }
        assert!(
            checked > 50 && worst < 1e-12,
            "{checked} gradients, worst {worst:e}"
        );
        for (i, (name, var)) in together.running.iter().enumerate() {
            let parts: Vec<Tensor> = alone
                .iter()
                .map(|(m, _)| m.running[i].1.as_tensor().clone())
                .collect();
            let want = ((&parts[0] + &parts[1]).unwrap() * 0.5).unwrap();
            let err = max_rel(var.as_tensor(), &want);
            assert!(err < 1e-12, "{name}: {err:e}");
        }
        let scalar = |t: &Tensor| t.to_scalar::<f64>().unwrap();
        let loss_sum: f64 = alone.iter().map(|(_, g)| scalar(&g.loss_sum)).sum();
        assert!((scalar(&grads.loss_sum) - loss_sum).abs() < 1e-12 * loss_sum);
        let hits: f64 = alone.iter().map(|(_, g)| scalar(&g.top1_correct)).sum();
        assert_eq!(scalar(&grads.top1_correct), hits);
    }
}
