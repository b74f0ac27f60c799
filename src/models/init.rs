//! Seeded weight initialisation. candle's CPU random generator cannot be seeded, so a run's
//! initial weights are drawn here from a counter-based generator keyed by (seed, variable
//! name, element): the same seed gives the same network on every device and thread count.
//!
//! The default schemes are TF-slim's for the Inception networks: convolutions use variance
//! scaling (factor 2, fan-in, truncated normal), the classifiers Glorot-uniform, BatchNorm
//! starts at gamma 1 / beta 0 with running statistics 0 / 1, and biases at 0. `model.init:
//! pytorch` gives PyTorch's defaults as timm's ports get them (see [`InitScheme`]).

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};

use super::{Arch, InitScheme};
use crate::hashing::{fnv1a64, splitmix64, GOLDEN_GAMMA};

/// Overwrites every variable of `varmap` with its seeded initial value under `scheme`
/// (`arch` picks timm's per-network choices for [`InitScheme::Pytorch`]).
pub fn initialize(varmap: &VarMap, seed: u64, scheme: InitScheme, arch: Arch) -> Result<()> {
    let vars = varmap.data().lock().expect("varmap lock poisoned");
    for (name, var) in vars.iter() {
        let dims = var.dims();
        let n = var.elem_count();
        let key = seed ^ fnv1a64(name.as_bytes());
        let values: Vec<f32> = if name.ends_with("running_var") || name.ends_with("bn.weight") {
            vec![1.0; n]
        } else if name.ends_with("bn.bias") || name.ends_with("running_mean") {
            vec![0.0; n]
        } else if let Some(weight) = name.strip_suffix("bias") {
            match scheme {
                InitScheme::TfSlim => vec![0.0; n],
                InitScheme::Pytorch => {
                    let weight = vars
                        .get(&format!("{weight}weight"))
                        .map(|w| w.dims().to_vec())
                        .unwrap_or_default();
                    let fan_in: usize = weight.iter().skip(1).product();
                    uniform_values(key, n, 1.0 / (fan_in.max(1) as f64).sqrt())
                }
            }
        } else if dims.len() == 4 || dims.len() == 2 {
            let fan_in: usize = dims.iter().skip(1).product();
            weight_values(scheme, arch, name, dims, fan_in as f64, key, n)
        } else {
            let shape: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            candle_core::bail!("no initialiser for {name} with shape {}", shape.join("x"))
        };
        let t = Tensor::from_vec(values, dims, &candle_core::Device::Cpu)?
            .to_dtype(var.dtype())?
            .to_device(var.device())?;
        var.set(&t)?;
    }
    Ok(())
}

/// A convolution's (4 dimensions) or a linear layer's (2) initial weights.
fn weight_values(
    scheme: InitScheme,
    arch: Arch,
    name: &str,
    dims: &[usize],
    fan_in: f64,
    key: u64,
    n: usize,
) -> Vec<f32> {
    match (scheme, dims.len()) {
        (InitScheme::TfSlim, 4) => {
            // TF's truncated normal at 2 sigma has std 0.87962566 of the untruncated one.
            let std = (2.0 / fan_in).sqrt() / 0.879_625_66;
            (0..n as u64)
                .map(|i| (std * truncated_normal(key, i)) as f32)
                .collect()
        }
        (InitScheme::TfSlim, _) => {
            let limit = (6.0 / (dims[0] + dims[1]) as f64).sqrt();
            uniform_values(key, n, limit)
        }
        (InitScheme::Pytorch, _) if arch == Arch::InceptionV3 => {
            // timm's Inception-v3: trunc_normal_(std) cut at ±2 (absolute, not 2 sigma).
            let std = match name {
                n if n.starts_with("AuxLogits.conv1.") => 0.01,
                n if n.starts_with("AuxLogits.fc.") => 0.001,
                _ => 0.1,
            };
            (0..n as u64)
                .map(|i| normal_within(key, i, std, 2.0) as f32)
                .collect()
        }
        (InitScheme::Pytorch, _) => uniform_values(key, n, 1.0 / fan_in.sqrt()),
    }
}

/// `n` draws uniform in [-limit, limit].
fn uniform_values(key: u64, n: usize, limit: f64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| (limit * (2.0 * uniform(key, i, 0) - 1.0)) as f32)
        .collect()
}

/// A normal draw of standard deviation `std`, redrawn until it lies within ±`bound`.
fn normal_within(key: u64, index: u64, std: f64, bound: f64) -> f64 {
    (0..)
        .step_by(2)
        .map(|d| std * box_muller(key, index, d))
        .find(|z| z.abs() <= bound)
        .expect("a draw within the bound")
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
        init_with(Arch::InceptionV4, seed, InitScheme::TfSlim)
    }

    fn init_with(arch: Arch, seed: u64, scheme: InitScheme) -> VarMap {
        let vm = VarMap::new();
        let mut cfg = ModelConfig::new(arch);
        cfg.width = 0.25;
        cfg.num_classes = 10;
        cfg.aux_head = arch == Arch::InceptionV3;
        Network::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        initialize(&vm, seed, scheme, arch).unwrap();
        vm
    }

    fn std_and_max(w: &[f32]) -> (f64, f64) {
        let var = w.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / w.len() as f64;
        let max = w.iter().map(|x| x.abs() as f64).fold(0.0, f64::max);
        (var.sqrt(), max)
    }

    #[test]
    fn pytorch_init_is_uniform_in_one_over_root_fan_in_for_v4_and_irv2() {
        let vm = init_with(Arch::InceptionV4, 3, InitScheme::Pytorch);
        let bound = 1.0 / 256f64.sqrt(); // 1x1 conv, fan-in 256
        let (std, max) = std_and_max(&values(&vm, "features.11.branch0.conv.weight"));
        assert!(
            max <= bound && max > 0.95 * bound,
            "max {max} bound {bound}"
        );
        assert!(
            (std / (bound / 3f64.sqrt()) - 1.0).abs() < 0.05,
            "std {std}"
        );
        let names: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
        let classifier = names
            .iter()
            .find(|n| n.ends_with(".weight") && vm.data().lock().unwrap()[*n].dims().len() == 2)
            .unwrap()
            .clone();
        let dims = vm.data().lock().unwrap()[&classifier].dims().to_vec();
        let bound = 1.0 / (dims[1] as f64).sqrt();
        let bias = classifier.replace("weight", "bias");
        for name in [&classifier, &bias] {
            let (_, max) = std_and_max(&values(&vm, name));
            assert!(
                max <= bound && max > 0.5 * bound,
                "{name}: max {max} bound {bound}"
            );
        }
        assert!(values(&vm, "features.11.branch0.bn.bias")
            .iter()
            .all(|x| *x == 0.0));
        // Inception-ResNet-v2's residual up-projections carry a bias, drawn like PyTorch's.
        let vm = init_with(Arch::InceptionResnetV2, 3, InitScheme::Pytorch);
        let conv_bias = vm
            .data()
            .lock()
            .unwrap()
            .keys()
            .find(|n| n.ends_with(".bias") && !n.ends_with("bn.bias") && n.contains("conv2d"))
            .cloned()
            .expect("a residual up-projection bias");
        assert!(values(&vm, &conv_bias).iter().any(|x| *x != 0.0));
    }

    #[test]
    fn pytorch_init_of_v3_is_timms_normal_with_its_aux_head_exceptions() {
        let vm = init_with(Arch::InceptionV3, 5, InitScheme::Pytorch);
        let (std, _) = std_and_max(&values(&vm, "Mixed_5b.branch1x1.conv.weight"));
        assert!((std / 0.1 - 1.0).abs() < 0.05, "std {std}");
        let (std, _) = std_and_max(&values(&vm, "AuxLogits.conv1.conv.weight"));
        assert!((std / 0.01 - 1.0).abs() < 0.1, "std {std}");
        let (std, _) = std_and_max(&values(&vm, "AuxLogits.fc.weight"));
        assert!((std / 0.001 - 1.0).abs() < 0.1, "std {std}");
    }

    #[test]
    fn the_default_scheme_is_unchanged_by_the_pytorch_one() {
        let a = init_with(Arch::InceptionV4, 1, InitScheme::TfSlim);
        let b = init_with(Arch::InceptionV4, 1, InitScheme::Pytorch);
        let name = "features.7.branch2.1.conv.weight";
        assert_ne!(values(&a, name), values(&b, name));
        assert_eq!(values(&a, name), values(&init(1), name));
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
