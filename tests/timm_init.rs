//! `model.init: pytorch` against timm's own initialisation: for Inception-v3, Inception-v4 and
//! Inception-ResNet-v2 at full width, every weight tensor of repro's network has the standard
//! deviation of timm's freshly created model (within 5 % for tensors of 4,096 values or more),
//! and every constant tensor (BatchNorm) the same value. Needs a Python with torch and timm
//! (`REPRO_PYTHON`, default `python3`); without one it says so and passes.

use std::collections::HashMap;
use std::process::Command;

use candle_core::{DType, Device};
use candle_nn::VarMap;
use repro::models::init::{initialize, zeroed_var_builder};
use repro::models::{Arch, InitScheme, ModelConfig, Network};

mod common;

/// name → (elements, mean, std, max |x|)
type Stats = HashMap<String, (usize, f64, f64, f64)>;

fn timm_stats(python: &str, model: &str, classes: usize) -> Option<Stats> {
    let out = Command::new(python)
        .arg(common::cli::repo("tools/timm_init_stats.py"))
        .args([model, &classes.to_string(), "0"])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "skipped: `{python}` could not run tools/timm_init_stats.py (torch and timm needed): {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        );
        return None;
    }
    let raw: HashMap<String, (usize, f64, f64, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    Some(raw)
}

fn repro_stats(arch: Arch, classes: usize) -> Stats {
    let mut cfg = ModelConfig::new(arch);
    cfg.num_classes = classes;
    let vm = VarMap::new();
    Network::new(&cfg, zeroed_var_builder(&vm, DType::F32, &Device::Cpu)).unwrap();
    initialize(&vm, 0, InitScheme::Pytorch, arch).unwrap();
    let data = vm.data().lock().unwrap();
    data.iter()
        .map(|(name, var)| {
            let x: Vec<f64> = var
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1()
                .unwrap();
            let n = x.len() as f64;
            let mean = x.iter().sum::<f64>() / n;
            let std = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
            let max = x.iter().map(|v| v.abs()).fold(0.0, f64::max);
            (name.clone(), (x.len(), mean, std, max))
        })
        .collect()
}

#[test]
fn pytorch_init_has_timms_weight_statistics() {
    let python = std::env::var("REPRO_PYTHON").unwrap_or_else(|_| "python3".into());
    for (arch, model) in [
        (Arch::InceptionV3, "inception_v3"),
        (Arch::InceptionV4, "inception_v4"),
        (Arch::InceptionResnetV2, "inception_resnet_v2"),
    ] {
        let Some(theirs) = timm_stats(&python, model, 10) else {
            return;
        };
        let ours = repro_stats(arch, 10);
        let mut compared = 0;
        for (name, &(n, mean, std, _)) in &theirs {
            let Some(&(m, our_mean, our_std, _)) = ours.get(name) else {
                continue;
            };
            assert_eq!(n, m, "{model} {name}: size");
            if std == 0.0 {
                assert!(
                    our_std == 0.0 && (our_mean - mean).abs() < 1e-12,
                    "{model} {name}: timm's constant {mean}, ours mean {our_mean} std {our_std}"
                );
            } else if n >= 4096 {
                assert!(
                    (our_std / std - 1.0).abs() < 0.05,
                    "{model} {name}: std {our_std} against timm's {std}"
                );
            }
            compared += 1;
        }
        assert!(
            compared * 10 >= theirs.len() * 9,
            "{model}: only {compared} of timm's {} tensors found in repro's network",
            theirs.len()
        );
    }
}
