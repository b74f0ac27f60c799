//! Numerical parity with timm: the same deterministic weights, loaded through the safetensors
//! import under timm's own key names, give timm's logits at 299 px. The fixture
//! (`tests/fixtures/timm_logits.safetensors`) is written by `tools/timm_parity_fixture.py`.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use common::deterministic::{state_tensor, uniform_pm1};
use repro::models::{import, Arch, AvgPoolPadding, ModelConfig, Network};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// timm's state dict, rebuilt from its key list (`name<TAB>[shape]` per line).
fn timm_state_dict(keys_file: &str) -> HashMap<String, Tensor> {
    let text = std::fs::read_to_string(fixture(keys_file)).unwrap();
    text.lines()
        .map(|line| {
            let (name, shape) = line.split_once('\t').unwrap();
            let shape: Vec<usize> = shape
                .trim_matches(['[', ']'])
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().parse().unwrap())
                .collect();
            let t = if name.ends_with("num_batches_tracked") {
                Tensor::new(0i64, &Device::Cpu).unwrap()
            } else {
                state_tensor(name, &shape)
            };
            (name.to_string(), t)
        })
        .collect()
}

fn check(arch: Arch, keys_file: &str, avg_pool_padding: AvgPoolPadding) {
    let dir = std::env::temp_dir().join(format!("repro-parity-{}-{}", arch, std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let weights = dir.join("timm.safetensors");
    candle_core::safetensors::save(&timm_state_dict(keys_file), &weights).unwrap();

    let mut cfg = ModelConfig::new(arch);
    cfg.avg_pool_padding = Some(avg_pool_padding);
    let vm = VarMap::new();
    let net = Network::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    import::load_timm_weights(&vm, &weights).unwrap();
    std::fs::remove_dir_all(&dir).ok();

    let shape = (2, 3, 299, 299);
    let x = Tensor::from_vec(uniform_pm1("input", 2 * 3 * 299 * 299), shape, &Device::Cpu).unwrap();
    let expected =
        candle_core::safetensors::load(fixture("timm_logits.safetensors"), &Device::Cpu).unwrap();
    let expected = &expected[&format!("{}.logits", arch.name())];
    // The eval-mode pass, and the inference pass evaluations run (other convolution paths).
    for (pass, ours) in [
        ("eval mode", net.forward_t(&x, false).unwrap().logits),
        ("inference", net.infer(&x).unwrap().logits),
    ] {
        compare(arch, pass, ours, expected);
    }
}

fn compare(arch: Arch, pass: &str, ours: Tensor, expected: &Tensor) {
    assert_eq!(ours.dims(), expected.dims());
    let range = (expected.max_all().unwrap().to_scalar::<f32>().unwrap()
        - expected.min_all().unwrap().to_scalar::<f32>().unwrap()) as f64;
    let diff = (ours - expected)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    eprintln!("{arch} ({pass}): max |ours - timm| = {diff:.3e}, logit range {range:.2}");
    assert!(range > 1.0, "fixture logits are degenerate");
    assert!(
        diff <= 1e-3 * range,
        "{arch} ({pass}): max abs difference {diff} exceeds 1e-3 of the logit range {range}"
    );
}

#[test]
fn inception_v3_matches_timm() {
    // timm's v3 (from torchvision) averages padded zeros in; TF does not.
    check(
        Arch::InceptionV3,
        "timm_keys_v3.txt",
        AvgPoolPadding::Include,
    );
}

#[test]
fn inception_v4_matches_timm() {
    check(
        Arch::InceptionV4,
        "timm_keys_v4.txt",
        AvgPoolPadding::Exclude,
    );
}

#[test]
fn inception_resnet_v2_matches_timm() {
    check(
        Arch::InceptionResnetV2,
        "timm_keys_irv2.txt",
        AvgPoolPadding::Exclude,
    );
}

/// The include/exclude choice matters: with TF's semantics timm's v3 logits are not matched,
/// so the parity tests above do check the pooling at the borders.
#[test]
fn inception_v3_with_tf_pooling_differs_from_timm() {
    let result = std::panic::catch_unwind(|| {
        check(
            Arch::InceptionV3,
            "timm_keys_v3.txt",
            AvgPoolPadding::Exclude,
        )
    });
    assert!(result.is_err());
}
