//! `repro lockstep` and `repro curves` from the command line, without the reference Python:
//! repro's side of a lockstep folder, the error when the reference's files are missing, exit
//! code 2 for bad input, and exit code 1 when the curves' verdict fails or a file cannot be
//! written.

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

/// Run folders `<name>0`, `<name>1`, … under `dir`, each holding a metrics file whose top-1
/// errors are the given values at steps 100 and 200.
fn runs_with_top1(dir: &std::path::Path, name: &str, errors: &[f64]) -> String {
    let mut folders = Vec::new();
    for (i, &e) in errors.iter().enumerate() {
        let folder = dir.join(format!("{name}{i}"));
        std::fs::create_dir_all(&folder).unwrap();
        let row = |step: u64| repro::store::MetricsRow {
            epoch: step as f64 / 100.0,
            step,
            images_seen: step * 32,
            lr: 0.045,
            train_loss: 2.0,
            top1_err: Some(e),
            top5_err: Some(e / 2.0),
            eval_images: 100,
            images_per_s: 10.0,
            wall_s: step as f64,
            pre_pool_zero_frac: None,
            pre_pool_dead_channel_frac: None,
        };
        repro::store::write_metrics(&folder.join("metrics.parquet"), &[row(100), row(200)])
            .unwrap();
        folders.push(folder.display().to_string());
    }
    folders.join(",")
}

fn curves(dir: &std::path::Path, ours: &str, reference: &str, out: &str) -> Output {
    repro(
        dir,
        &[
            "curves",
            "--ours",
            ours,
            "--reference",
            reference,
            "--title",
            "t",
            "--out",
            out,
            "--stem",
            "s",
        ],
    )
}

#[test]
fn curves_exit_with_1_when_the_verdict_fails_or_a_file_cannot_be_written() {
    let tmp = TempDir::new("curves-verdict");
    let reference = runs_with_top1(&tmp.0, "ref", &[0.50, 0.52]);
    let close = runs_with_top1(&tmp.0, "close", &[0.51, 0.505]);
    let far = runs_with_top1(&tmp.0, "far", &[0.80, 0.82]);

    let out = curves(&tmp.0, &close, &reference, "o");
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(output_text(&out).contains("repro lies within the seed spread"));

    let out = curves(&tmp.0, &far, &reference, "o");
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("does NOT lie within the reference's seed spread"),
        "{}",
        output_text(&out)
    );

    // The output folder is a file: nothing can be written, which is a failure, not bad input.
    std::fs::write(tmp.0.join("taken"), b"").unwrap();
    let out = curves(&tmp.0, &close, &reference, "taken");
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(output_text(&out).contains("taken"), "{}", output_text(&out));
}
