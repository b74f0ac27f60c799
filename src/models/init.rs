//! Seeded weight initialisation. candle's CPU random generator cannot be seeded, so a run's
//! initial weights are drawn here from a counter-based generator keyed by (seed, variable
//! name, element): the same seed gives the same network on every device and thread count.
//!
//! The schemes are TF-slim's for the Inception networks: convolutions use variance scaling
//! (factor 2, fan-in, truncated normal), the classifiers Glorot-uniform, BatchNorm starts at
//! gamma 1 / beta 0 with running statistics 0 / 1, and biases at 0.

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};

use crate::hashing::{fnv1a64, splitmix64, GOLDEN_GAMMA};

/// Overwrites every variable of `varmap` with its seeded initial value.
pub fn initialize(varmap: &VarMap, seed: u64) -> Result<()> {
    let vars = varmap.data().lock().expect("varmap lock poisoned");
    for (name, var) in vars.iter() {
        let dims = var.dims();
        let n = var.elem_count();
        let key = seed ^ fnv1a64(name.as_bytes());
        let values: Vec<f32> = if name.ends_with("running_var") || name.ends_with("bn.weight") {
            vec![1.0; n]
        } else if name.ends_with("bias") || name.ends_with("running_mean") {
            vec![0.0; n]
        } else if dims.len() == 4 {
            let fan_in = (dims[1] * dims[2] * dims[3]) as f64;
            // TF's truncated normal at 2 sigma has std 0.87962566 of the untruncated one.
            let std = (2.0 / fan_in).sqrt() / 0.879_625_66;
            (0..n as u64)
                .map(|i| (std * truncated_normal(key, i)) as f32)
                .collect()
        } else if dims.len() == 2 {
            let limit = (6.0 / (dims[0] + dims[1]) as f64).sqrt();
            (0..n as u64)
                .map(|i| (limit * (2.0 * uniform(key, i, 0) - 1.0)) as f32)
                .collect()
        } else {
            candle_core::bail!("no initialiser for {name} with shape {dims:?}")
        };
        let t = Tensor::from_vec(values, dims, &candle_core::Device::Cpu)?
            .to_dtype(var.dtype())?
            .to_device(var.device())?;
        var.set(&t)?;
    }
    Ok(())
}

/// A builder that creates the network's variables in `varmap` filled with zeros, for
/// networks whose every variable is overwritten next ([`initialize`] for training, a
/// checkpoint for evaluation): candle's own random initialisation of the layer hints would
/// be drawn and thrown away (half a second for Inception-v4).
pub fn zeroed_var_builder(varmap: &VarMap, dtype: DType, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(Zeroed(varmap.clone())), dtype, device.clone())
}

struct Zeroed(VarMap);

impl SimpleBackend for Zeroed {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.0.get(s, name, Init::Const(0.0), dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.0.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_tensor(name)
    }
}

/// SplitMix64 of (key, index, draw) mapped to (0, 1).
fn uniform(key: u64, index: u64, draw: u64) -> f64 {
    let z = splitmix64(
        key ^ index.wrapping_mul(GOLDEN_GAMMA) ^ draw.wrapping_mul(0xD1B5_4A32_D192_ED03),
    );
    ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// A standard normal draw redrawn until it lies within two standard deviations.
fn truncated_normal(key: u64, index: u64) -> f64 {
    (0..)
        .step_by(2)
        .map(|d| box_muller(key, index, d))
        .find(|z| z.abs() <= 2.0)
        .expect("a draw within 2 sigma")
}

fn box_muller(key: u64, index: u64, draw: u64) -> f64 {
    let (u1, u2) = (uniform(key, index, draw), uniform(key, index, draw + 1));
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Arch, ModelConfig, Network};
    use candle_core::{DType, Device};
    use candle_nn::VarBuilder;

    fn init(seed: u64) -> VarMap {
        let vm = VarMap::new();
        let mut cfg = ModelConfig::new(Arch::InceptionV4);
        cfg.width = 0.25;
        Network::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        initialize(&vm, seed).unwrap();
        vm
    }

    fn values(vm: &VarMap, name: &str) -> Vec<f32> {
        vm.data().lock().unwrap()[name]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    }

    #[test]
    fn same_seed_same_weights_other_seed_other_weights() {
        let (a, b, c) = (init(1), init(1), init(2));
        let name = "features.7.branch2.1.conv.weight";
        assert_eq!(values(&a, name), values(&b, name));
        assert_ne!(values(&a, name), values(&c, name));
    }

    #[test]
    fn conv_weights_have_he_variance_and_bn_starts_at_identity() {
        let vm = init(3);
        let w = values(&vm, "features.11.branch0.conv.weight"); // 1x1 conv, fan-in 256
        let var = w.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / w.len() as f64;
        assert!((var / (2.0 / 256.0) - 1.0).abs() < 0.1, "variance {var}");
        let limit = 2.0 * (2.0f64 / 256.0).sqrt() / 0.879_625_66;
        assert!(w.iter().all(|x| (*x as f64).abs() <= limit + 1e-6));
        assert!(values(&vm, "features.11.branch0.bn.weight")
            .iter()
            .all(|x| *x == 1.0));
        assert!(values(&vm, "features.11.branch0.bn.running_mean")
            .iter()
            .all(|x| *x == 0.0));
    }
}
