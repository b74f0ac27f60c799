//! Exponential moving average of the model's variables, as TF's
//! `tf.train.ExponentialMovingAverage` (the paper evaluates "a running average of the
//! parameters computed over time").
//!
//! Every variable of the model is averaged, BatchNorm running statistics included: they are
//! `Var`s in the `VarMap` too, and evaluating averaged weights with live statistics would
//! mix two different networks.

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use super::inplace;

/// Errors of the moving average; each names the variable involved.
#[derive(Debug, thiserror::Error)]
pub enum EmaError {
    /// A variable in the EMA has no counterpart in a loaded state.
    #[error("EMA: no value for variable `{name}` in {place}")]
    Missing { name: String, place: &'static str },
    /// A loaded EMA state has a tensor for a variable the EMA does not track.
    #[error("EMA state: unexpected entry `{name}` (no such variable)")]
    Unexpected { name: String },
    /// A tensor has another shape than the variable it belongs to.
    #[error("EMA: `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A tensor operation on `name` failed.
    #[error("EMA update of `{name}`: {source}")]
    Tensor {
        name: String,
        #[source]
        source: candle_core::Error,
    },
}

fn tensor_err(name: &str) -> impl FnOnce(candle_core::Error) -> EmaError + '_ {
    move |source| EmaError::Tensor {
        name: name.to_string(),
        source,
    }
}

fn check_shape(name: &str, expected: &Tensor, found: &Tensor) -> Result<(), EmaError> {
    if expected.dims() == found.dims() {
        Ok(())
    } else {
        Err(EmaError::ShapeMismatch {
            name: name.to_string(),
            expected: expected.dims().to_vec(),
            found: found.dims().to_vec(),
        })
    }
}

/// Settings of the moving average.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmaConfig {
    /// Decay per update: 0.9999 (TF-slim's `moving_average_decay` for Inception).
    pub decay: f64,
    /// TF's `num_updates` warm-up: the decay used for the n-th update (n = 0, 1, …) is
    /// `min(decay, (1 + n) / (10 + n))`, so the average forgets the random initialisation
    /// quickly. On by default because TF-slim's training script passes the global step.
    pub warmup: bool,
}

impl Default for EmaConfig {
    fn default() -> Self {
        Self {
            decay: 0.9999,
            warmup: true,
        }
    }
}

struct Averaged {
    name: String,
    live: Var,
    shadow: Tensor,
}

/// The moving average of a set of named variables, held on their device.
pub struct Ema {
    config: EmaConfig,
    num_updates: u64,
    entries: Vec<Averaged>,
}

impl Ema {
    /// Starts averaging `vars` (e.g. [`crate::train::sorted_vars`] of the model's `VarMap`),
    /// with every average initialised to the variable's current value, as TF does.
    pub fn new(vars: Vec<(String, Var)>, config: EmaConfig) -> Result<Self, EmaError> {
        let mut vars = vars;
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let entries = vars
            .into_iter()
            .map(|(name, live)| {
                let shadow = live
                    .as_detached_tensor()
                    .copy()
                    .map_err(tensor_err(&name))?;
                Ok(Averaged { name, live, shadow })
            })
            .collect::<Result<Vec<_>, EmaError>>()?;
        Ok(Self {
            config,
            num_updates: 0,
            entries,
        })
    }

    /// The settings.
    pub fn config(&self) -> &EmaConfig {
        &self.config
    }

    /// How many updates have been applied (saved in the checkpoint's `state.json`).
    pub fn num_updates(&self) -> u64 {
        self.num_updates
    }

    /// The decay the next [`Ema::update`] will use.
    pub fn next_decay(&self) -> f64 {
        if self.config.warmup {
            let n = self.num_updates as f64;
            self.config.decay.min((1.0 + n) / (10.0 + n))
        } else {
            self.config.decay
        }
    }

    /// `average = decay·average + (1 − decay)·live` for every variable.
    pub fn update(&mut self) -> Result<(), EmaError> {
        let decay = self.next_decay();
        for e in &mut self.entries {
            let live = e.live.as_detached_tensor();
            if inplace::usable(&e.shadow, &[&live]) {
                inplace::axpby(&e.shadow, decay, 1.0 - decay, &live)
                    .map_err(tensor_err(&e.name))?;
                continue;
            }
            let next = e
                .shadow
                .affine(decay, 0.0)
                .and_then(|old| old + live.affine(1.0 - decay, 0.0)?)
                .map_err(tensor_err(&e.name))?;
            e.shadow = next;
        }
        self.num_updates += 1;
        Ok(())
    }

    /// The averages by variable name (the same names as the model's `VarMap`, so the map is
    /// itself a loadable state dict). They share storage with the averages, which
    /// [`Ema::update`] rewrites in place on the CPU: save (or copy) them before the next update.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.entries
            .iter()
            .map(|e| (e.name.clone(), e.shadow.clone()))
            .collect()
    }

    /// Writes the averages into the tracked variables (the live model) and returns the live
    /// values so that [`LiveWeights::restore`] can put them back after evaluation.
    pub fn swap_in(&self) -> Result<LiveWeights, EmaError> {
        let mut saved = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let live = e
                .live
                .as_detached_tensor()
                .copy()
                .map_err(tensor_err(&e.name))?;
            e.live.set(&e.shadow).map_err(tensor_err(&e.name))?;
            saved.push((e.name.clone(), e.live.clone(), live));
        }
        Ok(LiveWeights { saved })
    }

    /// Restores averages saved by [`Ema::tensors`] and the update count. Every tracked
    /// variable must be present with its shape; unknown names are rejected.
    pub fn load_state(
        &mut self,
        mut tensors: HashMap<String, Tensor>,
        num_updates: u64,
    ) -> Result<(), EmaError> {
        let mut loaded = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let t = tensors.remove(&e.name).ok_or_else(|| EmaError::Missing {
                name: e.name.clone(),
                place: "the loaded EMA state",
            })?;
            let live = e.live.as_tensor();
            check_shape(&e.name, live, &t)?;
            // A copy: the averages are updated in place (see `inplace`), and `t` may share
            // its storage with the caller's tensors.
            let t = t
                .to_device(live.device())
                .and_then(|t| t.to_dtype(live.dtype()))
                .and_then(|t| t.copy())
                .map_err(tensor_err(&e.name))?;
            loaded.push(t);
        }
        if let Some(name) = tensors.into_keys().min() {
            return Err(EmaError::Unexpected { name });
        }
        for (e, t) in self.entries.iter_mut().zip(loaded) {
            e.shadow = t;
        }
        self.num_updates = num_updates;
        Ok(())
    }
}

/// Live weights set aside by [`Ema::swap_in`]; call [`LiveWeights::restore`] to resume
/// training with them (dropping this value keeps the averages in the model).
#[must_use = "the live weights are lost unless restored"]
pub struct LiveWeights {
    saved: Vec<(String, Var, Tensor)>,
}

impl LiveWeights {
    /// Puts the live values back into the model's variables.
    pub fn restore(self) -> Result<(), EmaError> {
        for (name, var, value) in self.saved {
            var.set(&value).map_err(tensor_err(&name))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn values(t: &Tensor) -> Vec<f64> {
        t.to_vec1::<f64>().unwrap()
    }

    fn assert_close(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "got {got:?}, want {want:?}");
        }
    }

    fn set(v: &Var, x: &[f64]) {
        v.set(&Tensor::new(x, &Device::Cpu).unwrap()).unwrap();
    }

    fn one_var(config: EmaConfig) -> (Var, Ema) {
        let w = Var::new(&[1.0f64, 2.0], &Device::Cpu).unwrap();
        let ema = Ema::new(vec![("fc.weight".into(), w.clone())], config).unwrap();
        (w, ema)
    }

    #[test]
    fn two_updates_with_fixed_decay() {
        let (w, mut ema) = one_var(EmaConfig {
            decay: 0.5,
            warmup: false,
        });
        set(&w, &[3.0, 6.0]);
        ema.update().unwrap(); // 0.5·[1, 2] + 0.5·[3, 6] = [2, 4]
        assert_close(&values(&ema.tensors()["fc.weight"]), &[2.0, 4.0]);
        set(&w, &[5.0, 10.0]);
        ema.update().unwrap(); // 0.5·[2, 4] + 0.5·[5, 10] = [3.5, 7]
        assert_close(&values(&ema.tensors()["fc.weight"]), &[3.5, 7.0]);
        assert_eq!(ema.num_updates(), 2);
    }

    #[test]
    fn warmup_uses_tf_num_updates_decay() {
        let (w, mut ema) = one_var(EmaConfig::default());
        assert!((ema.next_decay() - 0.1).abs() < 1e-15); // min(0.9999, 1/10)
        set(&w, &[3.0, 6.0]);
        ema.update().unwrap(); // 0.1·[1, 2] + 0.9·[3, 6] = [2.8, 5.6]
        assert_close(&values(&ema.tensors()["fc.weight"]), &[2.8, 5.6]);
        set(&w, &[5.0, 10.0]);
        ema.update().unwrap(); // (2/11)·[2.8, 5.6] + (9/11)·[5, 10] = [4.6, 9.2]
        assert_close(&values(&ema.tensors()["fc.weight"]), &[4.6, 9.2]);
    }

    #[test]
    fn swap_in_then_restore_round_trips_the_live_weights() {
        let (w, mut ema) = one_var(EmaConfig {
            decay: 0.5,
            warmup: false,
        });
        set(&w, &[3.0, 6.0]);
        ema.update().unwrap();
        let live = ema.swap_in().unwrap();
        assert_close(&values(w.as_tensor()), &[2.0, 4.0]);
        live.restore().unwrap();
        assert_close(&values(w.as_tensor()), &[3.0, 6.0]);
        // the average itself is untouched by the swap
        assert_close(&values(&ema.tensors()["fc.weight"]), &[2.0, 4.0]);
    }

    #[test]
    fn averages_batchnorm_running_stats_from_a_varmap() {
        let dev = Device::Cpu;
        let model = VarMap::new();
        let mean = model
            .get(
                2,
                "bn.running_mean",
                candle_nn::Init::Const(0.0),
                DType::F32,
                &dev,
            )
            .unwrap();
        let vars = crate::train::sorted_vars(&model);
        let mut ema = Ema::new(
            vars,
            EmaConfig {
                decay: 0.75,
                warmup: false,
            },
        )
        .unwrap();
        // a forward pass in training mode moves the running mean in place
        model.data().lock().unwrap()["bn.running_mean"]
            .set(&Tensor::new(&[4f32, 8.0], &dev).unwrap())
            .unwrap();
        ema.update().unwrap(); // 0.75·0 + 0.25·[4, 8] = [1, 2]
        assert_eq!(mean.to_vec1::<f32>().unwrap(), [4.0, 8.0]);

        let average = ema.tensors()["bn.running_mean"].to_vec1::<f32>().unwrap();
        assert_eq!(average, [1.0, 2.0]);
    }

    #[test]
    fn state_round_trips_and_is_validated() {
        let (w, mut ema) = one_var(EmaConfig::default());
        set(&w, &[3.0, 6.0]);
        ema.update().unwrap();
        let saved = ema.tensors();

        let (_, mut other) = one_var(EmaConfig::default());
        other.load_state(saved.clone(), ema.num_updates()).unwrap();
        assert_close(&values(&other.tensors()["fc.weight"]), &[2.8, 5.6]);
        assert_eq!(other.next_decay(), ema.next_decay());
        // Averages are updated in place: the loaded copy must not write through to the source.
        other.update().unwrap();
        assert_close(&values(&saved["fc.weight"]), &[2.8, 5.6]);
        assert_close(&values(&ema.tensors()["fc.weight"]), &[2.8, 5.6]);

        let mut wrong = saved.clone();
        wrong.insert(
            "fc.weight".into(),
            Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap(),
        );
        assert!(matches!(
            other.load_state(wrong, 1),
            Err(EmaError::ShapeMismatch { .. })
        ));
        let mut extra = saved;
        extra.insert(
            "fc.bias".into(),
            Tensor::zeros(2, DType::F64, &Device::Cpu).unwrap(),
        );
        assert!(matches!(
            other.load_state(extra, 1),
            Err(EmaError::Unexpected { name }) if name == "fc.bias"
        ));
    }
}
