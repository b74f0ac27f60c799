//! Weights in timm's format: a PyTorch state dict saved as safetensors
//! (`safetensors.torch.save_file(model.state_dict(), f)`).
//!
//! repro's variables carry timm's names, so loading is a lookup by name. Every mismatch is
//! collected and reported at once; `num_batches_tracked` is ignored on load and written on
//! save, so a checkpoint of ours loads into timm with `load_state_dict(strict=True)`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

const NUM_BATCHES_TRACKED: &str = "num_batches_tracked";
/// At most this many names of each kind are listed in an error.
const LISTED: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read weights from {path}: {source}")]
    Read {
        path: PathBuf,
        source: candle_core::Error,
    },
    #[error("cannot write weights to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("weights in {source_name} do not fit the network:{}", describe(.missing, .unexpected, .mis_shaped))]
    Mismatch {
        source_name: String,
        missing: Vec<String>,
        unexpected: Vec<String>,
        /// (name, shape in the file, shape in the network)
        mis_shaped: Vec<(String, Vec<usize>, Vec<usize>)>,
    },
    #[error("cannot copy {name} into the network: {source}")]
    Copy {
        name: String,
        source: candle_core::Error,
    },
}

fn describe(
    missing: &[String],
    unexpected: &[String],
    mis_shaped: &[(String, Vec<usize>, Vec<usize>)],
) -> String {
    let mut out = String::new();
    let mut list = |title: &str, items: Vec<String>| {
        if items.is_empty() {
            return;
        }
        out.push_str(&format!(
            "\n  {title} ({}): {}",
            items.len(),
            items
                .iter()
                .take(LISTED)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if items.len() > LISTED {
            out.push_str(&format!(", ... and {} more", items.len() - LISTED));
        }
    };
    list("missing from the file", missing.to_vec());
    list("not in the network", unexpected.to_vec());
    list(
        "wrong shape (file vs network)",
        mis_shaped
            .iter()
            .map(|(n, f, m)| format!("{n} {f:?} vs {m:?}"))
            .collect(),
    );
    out
}

/// Loads a safetensors state dict into the network's variables.
pub fn load_timm_weights(varmap: &VarMap, path: &Path) -> Result<(), ImportError> {
    let tensors =
        candle_core::safetensors::load(path, &Device::Cpu).map_err(|source| ImportError::Read {
            path: path.into(),
            source,
        })?;
    load_state_dict(varmap, tensors, &path.display().to_string())
}

/// Copies named tensors into the network's variables after checking that the names and
/// shapes match exactly (running statistics included, `num_batches_tracked` ignored).
pub fn load_state_dict(
    varmap: &VarMap,
    mut tensors: HashMap<String, Tensor>,
    source_name: &str,
) -> Result<(), ImportError> {
    tensors.retain(|name, _| !name.ends_with(NUM_BATCHES_TRACKED));
    let vars = varmap.data().lock().expect("varmap lock poisoned");
    let mut missing: Vec<String> = vars
        .keys()
        .filter(|k| !tensors.contains_key(*k))
        .cloned()
        .collect();
    let mut unexpected: Vec<String> = tensors
        .keys()
        .filter(|k| !vars.contains_key(*k))
        .cloned()
        .collect();
    let mut mis_shaped: Vec<_> = tensors
        .iter()
        .filter_map(|(name, t)| {
            let var = vars.get(name)?;
            (t.dims() != var.dims()).then(|| (name.clone(), t.dims().to_vec(), var.dims().to_vec()))
        })
        .collect();
    if !(missing.is_empty() && unexpected.is_empty() && mis_shaped.is_empty()) {
        missing.sort();
        unexpected.sort();
        mis_shaped.sort();
        return Err(ImportError::Mismatch {
            source_name: source_name.into(),
            missing,
            unexpected,
            mis_shaped,
        });
    }
    for (name, var) in vars.iter() {
        let value = tensors[name]
            .to_dtype(var.dtype())
            .and_then(|t| t.to_device(var.device()));
        value
            .and_then(|t| var.set(&t))
            .map_err(|source| ImportError::Copy {
                name: name.clone(),
                source,
            })?;
    }
    Ok(())
}

/// The number of outputs of `arch`'s classifier in a weights file (to evaluate a checkpoint
/// without being told its number of classes).
pub fn classifier_outputs(path: &Path, arch: super::Arch) -> Result<usize, String> {
    let name = format!("{}.weight", arch.classifier_name());
    let header = safetensors_header(path)
        .map_err(|e| format!("cannot read weights from {}: {e}", path.display()))?;
    header[&name]["shape"][0]
        .as_u64()
        .map(|n| n as usize)
        .ok_or_else(|| {
            format!(
                "{} has no `{name}`: is it a {arch} checkpoint?",
                path.display()
            )
        })
}

/// The JSON header of a safetensors file (names, dtypes, shapes), without reading the tensors.
fn safetensors_header(path: &Path) -> std::io::Result<serde_json::Value> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(std::io::Error::other(
            "not a safetensors file (header length)",
        ));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)?;
    serde_json::from_slice(&header).map_err(std::io::Error::other)
}

/// The network's variables as a timm state dict (on the CPU), with a `num_batches_tracked`
/// entry (int64 scalar) beside every BatchNorm, as PyTorch writes it.
pub fn state_dict(
    varmap: &VarMap,
    num_batches_tracked: i64,
) -> candle_core::Result<HashMap<String, Tensor>> {
    let vars = varmap.data().lock().expect("varmap lock poisoned");
    let mut out = HashMap::with_capacity(vars.len() * 6 / 5);
    for (name, var) in vars.iter() {
        out.insert(name.clone(), var.as_tensor().to_device(&Device::Cpu)?);
        if let Some(prefix) = name.strip_suffix("running_mean") {
            let tracked = Tensor::new(num_batches_tracked, &Device::Cpu)?.to_dtype(DType::I64)?;
            out.insert(format!("{prefix}{NUM_BATCHES_TRACKED}"), tracked);
        }
    }
    Ok(out)
}

/// Saves the network's variables as a timm-compatible safetensors file, atomically (written
/// beside the target and renamed into place).
pub fn save_timm_weights(
    varmap: &VarMap,
    path: &Path,
    num_batches_tracked: i64,
) -> Result<(), ImportError> {
    let write_err = |source| ImportError::Write {
        path: path.into(),
        source,
    };
    let tensors =
        state_dict(varmap, num_batches_tracked).map_err(|e| write_err(std::io::Error::other(e)))?;
    // Atomic: a crash or a full disk leaves the old file (or none), never a torn one.
    crate::store::write_safetensors(path, &tensors).map_err(|e| write_err(std::io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Arch, ModelConfig, Network};
    use candle_nn::VarBuilder;

    fn tiny_net(vm: &VarMap) -> Network {
        let mut cfg = ModelConfig::new(Arch::InceptionResnetV2);
        cfg.width = 0.125;
        cfg.blocks = Some([1, 1, 2]);
        cfg.num_classes = 7;
        Network::new(&cfg, VarBuilder::from_varmap(vm, DType::F32, &Device::Cpu)).unwrap()
    }

    #[test]
    fn save_then_load_restores_every_variable() {
        let (a, b) = (VarMap::new(), VarMap::new());
        let (net_a, net_b) = (tiny_net(&a), tiny_net(&b));
        let dir = std::env::temp_dir().join(format!("repro-import-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.safetensors");
        save_timm_weights(&a, &path, 5).unwrap();
        let raw = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        assert_eq!(raw["conv2d_1a.bn.num_batches_tracked"].dtype(), DType::I64);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "only the file itself"
        );
        load_timm_weights(&b, &path).unwrap();
        let x = Tensor::randn(0f32, 1., (1, 3, 75, 75), &Device::Cpu).unwrap();
        let ya = net_a.forward_t(&x, false).unwrap().logits;
        let yb = net_b.forward_t(&x, false).unwrap().logits;
        assert_eq!(ya.to_vec2::<f32>().unwrap(), yb.to_vec2::<f32>().unwrap());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn mismatches_are_all_listed() {
        let vm = VarMap::new();
        tiny_net(&vm);
        let mut sd = state_dict(&vm, 0).unwrap();
        sd.remove("classif.bias");
        sd.remove("repeat.0.conv2d.weight");
        sd.insert(
            "AuxLogits.fc.weight".into(),
            Tensor::zeros((7, 3), DType::F32, &Device::Cpu).unwrap(),
        );
        sd.insert(
            "classif.weight".into(),
            Tensor::zeros((1000, 192), DType::F32, &Device::Cpu).unwrap(),
        );
        let err = load_state_dict(&vm, sd, "bad.safetensors")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("weights in bad.safetensors do not fit the network:"),
            "{err}"
        );
        assert!(
            err.contains("missing from the file (2): classif.bias, repeat.0.conv2d.weight"),
            "{err}"
        );
        assert!(
            err.contains("not in the network (1): AuxLogits.fc.weight"),
            "{err}"
        );
        assert!(
            err.contains(
                "wrong shape (file vs network) (1): classif.weight [1000, 192] vs [7, 192]"
            ),
            "{err}"
        );
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let vm = VarMap::new();
        let err = load_timm_weights(&vm, Path::new("/nonexistent/w.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/w.safetensors"), "{err}");
    }
}
