//! `repro lockstep` and `repro curves` from the command line, without the reference Python:
//! repro's side of a lockstep folder, the error when the reference's files are missing, and
//! exit code 2 for bad input.

mod common;

use std::process::{Command, Output};

use common::{output_text, TempDir};

fn repro(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repro"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn lockstep_writes_repros_side_and_names_what_the_comparison_lacks() {
    let tmp = TempDir::new("lockstep");
    let small = [
        "--width", "0.125", "--size", "75", "--steps", "2", "--dir", "ls",
    ];
    let mut args = vec!["lockstep", "--models", "inception_v4", "--no-reference"];
    args.extend(small);
    let out = repro(&tmp.0, &args);
    assert!(out.status.success(), "{}", output_text(&out));
    let dir = tmp.0.join("ls/inception_v4");
    for file in [
        "recipe.json",
        "batches.safetensors",
        "init.safetensors",
        "repro_steps.json",
        "repro_grads_step1.safetensors",
        "repro_final.safetensors",
        "repro_ema.safetensors",
    ] {
        assert!(dir.join(file).is_file(), "missing {file}");
    }
    let steps: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("repro_steps.json")).unwrap())
            .unwrap();
    assert_eq!(steps["loss"].as_array().unwrap().len(), 2);
    assert!(steps["grad_norm"][0].as_f64().unwrap() > 0.0);

    let out = repro(
        &tmp.0,
        &[
            "lockstep",
            "--models",
            "inception_v4",
            "--compare-only",
            "--dir",
            "ls",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("timm_steps.json"),
        "{}",
        output_text(&out)
    );

    let out = repro(&tmp.0, &["lockstep", "--models", "inception_resnet_v1"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("timm has"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn curves_without_metrics_is_bad_input_naming_the_file() {
    let tmp = TempDir::new("curves");
    std::fs::create_dir_all(tmp.0.join("a")).unwrap();
    let out = repro(
        &tmp.0,
        &[
            "curves",
            "--ours",
            "a",
            "--reference",
            "a",
            "--title",
            "t",
            "--out",
            "o",
            "--stem",
            "s",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("metrics.parquet"),
        "{}",
        output_text(&out)
    );
}
