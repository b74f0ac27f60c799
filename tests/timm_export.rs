//! Writes full-size random weights of the three timm networks for
//! `tools/check_timm_strict_load.py`, which loads them into timm with `strict=True`.
//! Run by hand (not in CI): `REPRO_EXPORT_DIR=/tmp/x cargo test --release --test timm_export -- --ignored`.

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use repro::models::{import, Arch, ModelConfig, Network};

#[test]
#[ignore = "writes ~500 MB for a manual check with PyTorch"]
fn export_weights_for_timm() {
    let dir =
        std::path::PathBuf::from(std::env::var("REPRO_EXPORT_DIR").expect("set REPRO_EXPORT_DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    for arch in [
        Arch::InceptionV3,
        Arch::InceptionV4,
        Arch::InceptionResnetV2,
    ] {
        let vm = VarMap::new();
        Network::new(
            &ModelConfig::new(arch),
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        )
        .unwrap();
        import::save_timm_weights(&vm, &dir.join(format!("{}.safetensors", arch.name())), 0)
            .unwrap();
    }
}
