//! Optimizers with TensorFlow (v1) semantics and checkpointable state.
//!
//! - [`RmsProp`]: `tf.compat.v1.train.RMSPropOptimizer`, non-centered, the paper's optimizer.
//! - [`SgdMomentum`]: `tf.compat.v1.train.MomentumOptimizer`, non-Nesterov.
//!
//! Both take a list of named variables (see [`crate::train::sorted_vars`]), skip the ones
//! without a gradient in the `GradStore` (BatchNorm running statistics are updated in place
//! by the forward pass and never appear in the graph), and add L2 weight decay to the
//! gradient of the variables selected by a [`WeightDecay`] rule.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use super::inplace;

/// Errors of the optimizers; each names the variable or state entry involved.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// A state entry the optimizer needs is absent from the loaded state.
    #[error("optimizer state: missing entry `{name}`")]
    MissingState { name: String },
    /// The loaded state holds an entry that matches no variable of this optimizer.
    #[error("optimizer state: unexpected entry `{name}` (no such variable)")]
    UnexpectedState { name: String },
    /// A loaded state entry has a different shape than its variable.
    #[error("optimizer state: entry `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A tensor operation failed while updating `name`.
    #[error("optimizer update of `{name}`: {source}")]
    Update {
        name: String,
        #[source]
        source: candle_core::Error,
    },
}

/// A first-order optimizer over named variables whose state can be saved and restored.
pub trait Optimizer {
    /// Applies one update with learning rate `lr` using the gradients in `grads`.
    /// Variables without a gradient are left untouched, and so is their state.
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<(), OptimError>;

    /// The optimizer's slots, named `<var>.<slot>`, ready for `safetensors` saving. They share
    /// storage with the optimizer, which updates them in place on the CPU: save (or copy) them
    /// before the next step.
    fn state(&self) -> HashMap<String, Tensor>;

    /// Restores slots saved by [`Optimizer::state`]. Every slot must be present, with the
    /// variable's shape; entries for unknown variables are rejected. Tensors are moved to the
    /// variable's device and dtype.
    fn load_state(&mut self, state: HashMap<String, Tensor>) -> Result<(), OptimError>;
}

/// Which variables receive L2 weight decay, and how much: `g += rate * w`, the gradient of
/// TF-slim's `l2_regularizer(rate)` loss term `rate · Σw² / 2`.
#[derive(Clone)]
pub struct WeightDecay {
    rate: f64,
    applies: Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

impl WeightDecay {
    /// No weight decay at all.
    pub fn none() -> Self {
        Self::custom(0.0, |_| false)
    }

    /// Decays conv/fc weights only: names ending in `.weight`, except BatchNorm's
    /// (`bn.weight`, the γ). This is the default rule.
    pub fn weights_only(rate: f64) -> Self {
        Self::custom(rate, is_conv_or_fc_weight)
    }

    /// Decays the variables whose name satisfies `applies`.
    pub fn custom(rate: f64, applies: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self {
            rate,
            applies: Arc::new(applies),
        }
    }

    /// The decay rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Whether the variable called `name` is decayed (always false when the rate is 0).
    pub fn applies_to(&self, name: &str) -> bool {
        self.rate != 0.0 && (self.applies)(name)
    }
}

impl std::fmt::Debug for WeightDecay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightDecay")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

fn is_conv_or_fc_weight(name: &str) -> bool {
    name.ends_with(".weight") && !name.ends_with("bn.weight")
}

/// One trainable variable as the optimizers see it.
struct Param {
    name: String,
    var: Var,
    decays: bool,
}

fn params(vars: Vec<(String, Var)>, decay: &WeightDecay) -> Vec<Param> {
    let mut vars = vars;
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.into_iter()
        .map(|(name, var)| Param {
            decays: decay.applies_to(&name),
            name,
            var,
        })
        .collect()
}

/// The gradient of `p` with weight decay added, or `None` when `p` took no part in the graph.
fn decayed_grad(p: &Param, grads: &GradStore, rate: f64) -> candle_core::Result<Option<Tensor>> {
    let Some(g) = grads.get(p.var.as_tensor()) else {
        return Ok(None);
    };
    if p.decays {
        let w = p.var.as_tensor();
        if inplace::usable(g, &[w]) {
            let gd = g.copy()?;
            inplace::axpby(&gd, 1.0, rate, w)?;
            return Ok(Some(gd));
        }
        Ok(Some((g + p.var.as_detached_tensor().affine(rate, 0.0)?)?))
    } else {
        Ok(Some(g.clone()))
    }
}

/// Calls `update(i, var, g)` with the (weight-decayed) gradient of every param that has one,
/// in order; errors name the param.
fn for_each_gradient(
    params: &[Param],
    grads: &GradStore,
    rate: f64,
    mut update: impl FnMut(usize, &Var, &Tensor) -> candle_core::Result<()>,
) -> Result<(), OptimError> {
    for (i, p) in params.iter().enumerate() {
        let g = decayed_grad(p, grads, rate).map_err(update_err(&p.name))?;
        if let Some(g) = g {
            update(i, &p.var, &g).map_err(update_err(&p.name))?;
        }
    }
    Ok(())
}

fn update_err(name: &str) -> impl FnOnce(candle_core::Error) -> OptimError + '_ {
    move |source| OptimError::Update {
        name: name.to_string(),
        source,
    }
}

/// Moves the `slots` of every param out of `state`, checking names and shapes.
fn take_slots(
    params: &[Param],
    slots: &[&str],
    mut state: HashMap<String, Tensor>,
) -> Result<Vec<Vec<Tensor>>, OptimError> {
    let mut out = Vec::with_capacity(params.len());
    for p in params {
        let want = p.var.as_tensor();
        let mut per_param = Vec::with_capacity(slots.len());
        for slot in slots {
            let key = format!("{}.{}", p.name, slot);
            let t = state
                .remove(&key)
                .ok_or_else(|| OptimError::MissingState { name: key.clone() })?;
            if t.dims() != want.dims() {
                return Err(OptimError::ShapeMismatch {
                    name: key,
                    expected: want.dims().to_vec(),
                    found: t.dims().to_vec(),
                });
            }
            // A copy: the slots are updated in place (see `inplace`), and `t` may share its
            // storage with the caller's tensors.
            let t = t
                .to_device(want.device())
                .and_then(|t| t.to_dtype(want.dtype()))
                .and_then(|t| t.copy())
                .map_err(update_err(&key))?;
            per_param.push(t);
        }
        out.push(per_param);
    }
    if let Some(name) = state.into_keys().min() {
        return Err(OptimError::UnexpectedState { name });
    }
    Ok(out)
}

/// Hyper-parameters of [`RmsProp`]; defaults are the paper's (and TF's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RmsPropConfig {
    /// Discount of the mean-square average (TF `decay`, often called ρ).
    pub decay: f64,
    /// Momentum of the update accumulator.
    pub momentum: f64,
    /// Added to the mean square *inside* the square root (TF placement; PyTorch adds it
    /// outside). The paper uses 1.0, which makes early steps close to plain momentum SGD.
    pub epsilon: f64,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        Self {
            decay: 0.9,
            momentum: 0.9,
            epsilon: 1.0,
        }
    }
}

/// RMSProp as `tf.compat.v1.train.RMSPropOptimizer` (non-centered):
///
/// ```text
/// ms  = decay·ms + (1 − decay)·g²
/// mom = momentum·mom + lr·g / sqrt(ms + ε)
/// w  -= mom
/// ```
///
/// `ms` starts at ones (TF initialises the mean-square slot to 1), `mom` at zeros. The
/// learning rate enters the momentum accumulator, so a change of `lr` affects only new
/// contributions. State slots: `<var>.ms`, `<var>.mom`.
pub struct RmsProp {
    config: RmsPropConfig,
    weight_decay: WeightDecay,
    params: Vec<Param>,
    ms: Vec<Tensor>,
    mom: Vec<Tensor>,
}

impl RmsProp {
    /// An optimizer over `vars`, with slots initialised as TF does.
    pub fn new(
        vars: Vec<(String, Var)>,
        config: RmsPropConfig,
        weight_decay: WeightDecay,
    ) -> Result<Self, OptimError> {
        let params = params(vars, &weight_decay);
        let mut ms = Vec::with_capacity(params.len());
        let mut mom = Vec::with_capacity(params.len());
        for p in &params {
            let t = p.var.as_tensor();
            ms.push(t.ones_like().map_err(update_err(&p.name))?);
            mom.push(t.zeros_like().map_err(update_err(&p.name))?);
        }
        Ok(Self {
            config,
            weight_decay,
            params,
            ms,
            mom,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &RmsPropConfig {
        &self.config
    }
}

/// One RMSProp update of `var` and its slots in candle's ops (on CUDA, and with the fast ops
/// off; [`inplace::rmsprop_step`] on the CPU).
fn rmsprop_update(
    c: &RmsPropConfig,
    var: &Var,
    ms: &mut Tensor,
    mom: &mut Tensor,
    g: &Tensor,
    lr: f64,
) -> candle_core::Result<()> {
    let new_ms = (ms.affine(c.decay, 0.0)? + g.sqr()?.affine(1.0 - c.decay, 0.0)?)?;
    let denom = new_ms.affine(1.0, c.epsilon)?.sqrt()?;
    let new_mom = (mom.affine(c.momentum, 0.0)? + (g / denom)?.affine(lr, 0.0)?)?;
    var.set(&(var.as_detached_tensor() - &new_mom)?)?;
    *ms = new_ms.detach();
    *mom = new_mom.detach();
    Ok(())
}

impl Optimizer for RmsProp {
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<(), OptimError> {
        let (c, rate) = (&self.config, self.weight_decay.rate());
        for (i, p) in self.params.iter().enumerate() {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            let (w, ms, mom) = (p.var.as_tensor(), &mut self.ms[i], &mut self.mom[i]);
            if inplace::usable(w, &[g, ms, mom]) {
                let hyper = (c.decay, c.momentum, c.epsilon);
                let decay = p.decays.then_some(rate);
                inplace::rmsprop_step(w, g, ms, mom, decay, hyper, lr)
                    .map_err(update_err(&p.name))?;
                continue;
            }
            let g = decayed_grad(p, grads, rate).map_err(update_err(&p.name))?;
            if let Some(g) = g {
                rmsprop_update(c, &p.var, ms, mom, &g, lr).map_err(update_err(&p.name))?;
            }
        }
        Ok(())
    }

    fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::with_capacity(2 * self.params.len());
        for (i, p) in self.params.iter().enumerate() {
            out.insert(format!("{}.ms", p.name), self.ms[i].clone());
            out.insert(format!("{}.mom", p.name), self.mom[i].clone());
        }
        out
    }

    fn load_state(&mut self, state: HashMap<String, Tensor>) -> Result<(), OptimError> {
        let slots = take_slots(&self.params, &["ms", "mom"], state)?;
        for (i, mut s) in slots.into_iter().enumerate() {
            self.mom[i] = s.pop().expect("two slots");
            self.ms[i] = s.pop().expect("two slots");
        }
        Ok(())
    }
}

/// Hyper-parameters of [`SgdMomentum`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SgdMomentumConfig {
    /// Momentum of the gradient accumulator.
    pub momentum: f64,
}

impl Default for SgdMomentumConfig {
    fn default() -> Self {
        Self { momentum: 0.9 }
    }
}

/// SGD with momentum as `tf.compat.v1.train.MomentumOptimizer` (non-Nesterov):
///
/// ```text
/// accum = momentum·accum + g
/// w    -= lr·accum
/// ```
///
/// The learning rate multiplies the whole accumulator, so a change of `lr` rescales the
/// velocity at once. PyTorch's `SGD(momentum, dampening=0, nesterov=False)` does exactly
/// the same (also when `lr` changes). The formulation that differs is Sutskever et al.'s,
/// `v = m·v + lr·g; w -= v` (the form TF's RMSProp momentum uses), where a new rate affects
/// only new contributions; for a constant `lr` all of them coincide.
/// State slot: `<var>.accum`, initialised to zeros.
pub struct SgdMomentum {
    config: SgdMomentumConfig,
    weight_decay: WeightDecay,
    params: Vec<Param>,
    accum: Vec<Tensor>,
}

impl SgdMomentum {
    /// An optimizer over `vars` with zero accumulators.
    pub fn new(
        vars: Vec<(String, Var)>,
        config: SgdMomentumConfig,
        weight_decay: WeightDecay,
    ) -> Result<Self, OptimError> {
        let params = params(vars, &weight_decay);
        let accum = params
            .iter()
            .map(|p| p.var.as_tensor().zeros_like().map_err(update_err(&p.name)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            config,
            weight_decay,
            params,
            accum,
        })
    }
}

/// One momentum-SGD update of `var` and its accumulator.
fn sgd_update(
    momentum: f64,
    var: &Var,
    accum: &mut Tensor,
    g: &Tensor,
    lr: f64,
) -> candle_core::Result<()> {
    let w = var.as_tensor();
    if inplace::usable(w, &[g, accum]) {
        inplace::axpby(accum, momentum, 1.0, g)?;
        return inplace::axpby(w, 1.0, -lr, accum);
    }
    let new_accum = (accum.affine(momentum, 0.0)? + g)?;
    var.set(&(var.as_detached_tensor() - new_accum.affine(lr, 0.0)?)?)?;
    *accum = new_accum.detach();
    Ok(())
}

impl Optimizer for SgdMomentum {
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<(), OptimError> {
        let (momentum, accum) = (self.config.momentum, &mut self.accum);
        for_each_gradient(
            &self.params,
            grads,
            self.weight_decay.rate(),
            |i, var, g| sgd_update(momentum, var, &mut accum[i], g, lr),
        )
    }

    fn state(&self) -> HashMap<String, Tensor> {
        self.params
            .iter()
            .zip(&self.accum)
            .map(|(p, a)| (format!("{}.accum", p.name), a.clone()))
            .collect()
    }

    fn load_state(&mut self, state: HashMap<String, Tensor>) -> Result<(), OptimError> {
        let slots = take_slots(&self.params, &["accum"], state)?;
        for (i, mut s) in slots.into_iter().enumerate() {
            self.accum[i] = s.pop().expect("one slot");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    const TOL: f64 = 1e-12;

    fn var(values: &[f64]) -> Var {
        Var::from_slice(values, values.len(), &Device::Cpu).unwrap()
    }

    /// A GradStore holding `g` as the gradient of `v`, via the loss `sum(v · g)`.
    fn grads_for(v: &Var, g: &[f64]) -> GradStore {
        let g = Tensor::from_slice(g, g.len(), &Device::Cpu).unwrap();
        (v.as_tensor() * g)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
    }

    fn values(t: &Tensor) -> Vec<f64> {
        t.to_vec1::<f64>().unwrap()
    }

    fn assert_close(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < TOL, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn rmsprop_two_steps_match_hand_computation() {
        let w = var(&[1.0, -2.0]);
        let mut opt = RmsProp::new(
            vec![("fc.weight".into(), w.clone())],
            RmsPropConfig::default(),
            WeightDecay::none(),
        )
        .unwrap();

        // Step 1, g = [0.5, -1], lr = 0.1, ms starts at 1, mom at 0:
        // ms  = 0.9·1 + 0.1·[0.25, 1]             = [0.925, 1.0]
        // mom = 0.1·[0.5, -1] / sqrt([1.925, 2.0]) = [0.036037498507822, -0.070710678118655]
        // w   = [1, -2] - mom                      = [0.963962501492178, -1.929289321881345]
        opt.step(&grads_for(&w, &[0.5, -1.0]), 0.1).unwrap();
        let st = opt.state();
        assert_close(&values(&st["fc.weight.ms"]), &[0.925, 1.0]);
        assert_close(
            &values(&st["fc.weight.mom"]),
            &[0.036037498507822, -0.070710678118655],
        );
        assert_close(
            &values(w.as_tensor()),
            &[0.963962501492178, -1.929289321881345],
        );

        // Step 2, g = [0.2, 0.4], lr = 0.05:
        // ms  = 0.9·[0.925, 1] + 0.1·[0.04, 0.16]  = [0.8365, 0.916]
        // mom = 0.9·mom₁ + 0.05·[0.2, 0.4] / sqrt([1.8365, 1.916])
        //     = [0.039812867989562, -0.049190794880486]
        // w   = w₁ - mom                           = [0.924149633502615, -1.880098527000859]
        opt.step(&grads_for(&w, &[0.2, 0.4]), 0.05).unwrap();
        let st = opt.state();
        assert_close(&values(&st["fc.weight.ms"]), &[0.8365, 0.916]);
        assert_close(
            &values(&st["fc.weight.mom"]),
            &[0.039812867989562, -0.049190794880486],
        );
        assert_close(
            &values(w.as_tensor()),
            &[0.924149633502615, -1.880098527000859],
        );
    }

    #[test]
    fn sgd_momentum_two_steps_match_hand_computation() {
        let w = var(&[1.0, -2.0]);
        let mut opt = SgdMomentum::new(
            vec![("fc.weight".into(), w.clone())],
            SgdMomentumConfig::default(),
            WeightDecay::none(),
        )
        .unwrap();
        // Step 1, g = [0.5, -1], lr 0.1: accum = [0.5, -1]; w = [1, -2] - 0.1·accum = [0.95, -1.9]
        opt.step(&grads_for(&w, &[0.5, -1.0]), 0.1).unwrap();
        assert_close(&values(&opt.state()["fc.weight.accum"]), &[0.5, -1.0]);
        assert_close(&values(w.as_tensor()), &[0.95, -1.9]);
        // Step 2, g = [0.2, 0.4], lr 0.05: accum = 0.9·[0.5, -1] + [0.2, 0.4] = [0.65, -0.5];
        // w = [0.95, -1.9] - 0.05·[0.65, -0.5] = [0.9175, -1.875]
        opt.step(&grads_for(&w, &[0.2, 0.4]), 0.05).unwrap();
        assert_close(&values(&opt.state()["fc.weight.accum"]), &[0.65, -0.5]);
        assert_close(&values(w.as_tensor()), &[0.9175, -1.875]);
    }

    #[test]
    fn weight_decay_is_added_to_the_gradient_of_selected_vars_only() {
        let w = var(&[1.0, -2.0]);
        let gamma = var(&[1.0, -2.0]);
        let mut opt = SgdMomentum::new(
            vec![
                ("conv.weight".into(), w.clone()),
                ("bn.weight".into(), gamma.clone()),
            ],
            SgdMomentumConfig::default(),
            WeightDecay::weights_only(0.01),
        )
        .unwrap();
        let g = Tensor::new(&[0.5f64, -1.0], &Device::Cpu).unwrap();
        let loss = ((w.as_tensor() * &g).unwrap() + (gamma.as_tensor() * &g).unwrap()).unwrap();
        let grads = loss.sum_all().unwrap().backward().unwrap();
        opt.step(&grads, 0.1).unwrap();
        // decayed: g = [0.5, -1] + 0.01·[1, -2] = [0.51, -1.02]; w = [1, -2] - 0.1·g
        assert_close(&values(w.as_tensor()), &[0.949, -1.898]);
        // BatchNorm γ: plain gradient
        assert_close(&values(gamma.as_tensor()), &[0.95, -1.9]);
    }

    #[test]
    fn decay_rules_select_by_name() {
        let w = WeightDecay::weights_only(4e-5);
        assert!(w.applies_to("features.0.conv.weight"));
        assert!(w.applies_to("last_linear.weight"));
        assert!(!w.applies_to("features.0.bn.weight"));
        assert!(!w.applies_to("last_linear.bias"));
        assert!(!WeightDecay::weights_only(0.0).applies_to("conv.weight"));
    }

    #[test]
    fn vars_without_gradient_are_left_alone() {
        let w = var(&[1.0, 2.0]);
        let running_mean = var(&[3.0, 4.0]);
        let mut opt = RmsProp::new(
            vec![
                ("fc.weight".into(), w.clone()),
                ("bn.running_mean".into(), running_mean.clone()),
            ],
            RmsPropConfig::default(),
            WeightDecay::weights_only(0.1),
        )
        .unwrap();
        opt.step(&grads_for(&w, &[1.0, 1.0]), 0.1).unwrap();
        assert_close(&values(running_mean.as_tensor()), &[3.0, 4.0]);
        assert_close(&values(&opt.state()["bn.running_mean.ms"]), &[1.0, 1.0]);
        assert_ne!(values(w.as_tensor()), vec![1.0, 2.0]);
    }

    #[test]
    fn state_round_trips_and_is_validated() {
        let w = var(&[1.0, -2.0]);
        let mk = |w: &Var| {
            RmsProp::new(
                vec![("fc.weight".into(), w.clone())],
                RmsPropConfig::default(),
                WeightDecay::none(),
            )
            .unwrap()
        };
        let mut a = mk(&w);
        a.step(&grads_for(&w, &[0.5, -1.0]), 0.1).unwrap();
        let saved = a.state();

        let mut b = mk(&w);
        b.load_state(saved.clone()).unwrap();
        assert_close(
            &values(&b.state()["fc.weight.mom"]),
            &values(&saved["fc.weight.mom"]),
        );
        // Slots are updated in place: stepping the loaded optimizer leaves the source alone.
        let before = values(&saved["fc.weight.mom"]);
        b.step(&grads_for(&w, &[0.5, -1.0]), 0.1).unwrap();
        assert_eq!(values(&saved["fc.weight.mom"]), before);
        assert_eq!(values(&a.state()["fc.weight.mom"]), before);

        let mut missing = saved.clone();
        missing.remove("fc.weight.ms");
        assert!(matches!(
            mk(&w).load_state(missing),
            Err(OptimError::MissingState { name }) if name == "fc.weight.ms"
        ));

        let mut extra = saved.clone();
        extra.insert(
            "other.mom".into(),
            Tensor::zeros(2, DType::F64, &Device::Cpu).unwrap(),
        );
        assert!(matches!(
            mk(&w).load_state(extra),
            Err(OptimError::UnexpectedState { name }) if name == "other.mom"
        ));

        let mut wrong = saved;
        wrong.insert(
            "fc.weight.ms".into(),
            Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap(),
        );
        assert!(matches!(
            mk(&w).load_state(wrong),
            Err(OptimError::ShapeMismatch { expected, found, .. }) if expected == [2] && found == [3]
        ));
    }
}
