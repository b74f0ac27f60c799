//! What a user sees: plain summaries from `run`, `plan` and `eval` (never the debug form of
//! an internal type), unreadable images skipped and counted by `eval`, progress lines when
//! stderr is a pipe, and the exit code of each class of error (0 ok, 1 failed, 2 bad input,
//! 3 interrupted).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use common::{output_text, repo, TempDir};
use repro::models::{import, Arch, ModelConfig, Network};

fn repro(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_repro"));
    c.args(args);
    c
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Text for users never shows the debug form of a Rust value.
fn assert_plain(text: &str) {
    for debug in [
        "{",
        "Some(",
        "None",
        "Trained(",
        "Finished",
        "EvalScore",
        "\\\"",
    ] {
        assert!(!text.contains(debug), "`{debug}` in:\n{text}");
    }
}

#[test]
fn run_and_plan_print_plain_lines_and_say_that_smoke_numbers_mean_nothing() {
    let tmp = TempDir::new("output");
    let fig = repo("experiments/fig23.yaml");
    let fig = fig.to_str().unwrap();
    let dirs = |c: &mut Command| {
        c.arg("--results").arg(tmp.0.join("results"));
    };
    let mut plan = repro(&["plan", fig, "--smoke"]);
    dirs(&mut plan);
    let plan = plan.output().unwrap();
    assert!(plan.status.success(), "{}", output_text(&plan));
    assert_plain(&stdout(&plan));
    assert!(stdout(&plan).contains("fig23 ("), "{}", stdout(&plan));
    assert!(
        stdout(&plan).contains("profile smoke)"),
        "{}",
        stdout(&plan)
    );
    assert_eq!(
        stdout(&plan).matches(" not started ").count(),
        2,
        "{}",
        stdout(&plan)
    );

    let run = || {
        let mut c = repro(&["run", fig, "--smoke", "--reports"]);
        c.arg(tmp.0.join("reports"));
        dirs(&mut c);
        c.output().unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{}", output_text(&first));
    let out = stdout(&first);
    assert_plain(&out);
    let run_lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("results/runs/"))
        .collect();
    assert_eq!(run_lines.len(), 2, "one line per run:\n{out}");
    for line in &run_lines {
        assert!(
            line.contains(" trained: ") && line.contains(" steps in "),
            "{line}"
        );
        assert!(
            line.contains("top-1 error ")
                && line.contains("top-5 error ")
                && line.contains(" images;"),
            "{line}"
        );
    }
    assert!(
        out.contains("note: Smoke data") && out.contains("chance is 75 % top-1 error"),
        "{out}"
    );
    assert!(out.contains("top-5 error is 0 %"), "{out}");
    assert!(out.contains("report: "), "{out}");
    let html = std::fs::read_to_string(tmp.0.join("reports/fig23/index.html")).unwrap();
    assert!(
        html.contains("<p class=\"notice\">Smoke data"),
        "the report says it too"
    );

    let second = run();
    assert!(second.status.success(), "{}", output_text(&second));
    assert_plain(&stdout(&second));
    assert_eq!(
        stdout(&second).matches("already trained").count(),
        2,
        "{}",
        stdout(&second)
    );
}

/// Writes a tiny Inception-v4 for 3 classes, and 3 x 3 validation images, under `dir`.
fn weights_and_images(dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    let mut cfg = ModelConfig::new(Arch::InceptionV4);
    (cfg.width, cfg.image_size, cfg.blocks, cfg.num_classes) = (0.125, 75, Some([1, 1, 1]), 3);
    let vm = VarMap::new();
    Network::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let weights = dir.join("v4.safetensors");
    import::save_timm_weights(&vm, &weights, 0).unwrap();
    let data = repro::data::write_synthetic_dataset(&dir.join("val"), 3, 3, (90, 80), 3).unwrap();
    (weights, data.samples.into_iter().map(|s| s.path).collect())
}

fn eval(dir: &Path, weights: &Path, extra: &[&str]) -> Output {
    let mut c = repro(&[
        "eval",
        "--model",
        "inception_v4",
        "--size",
        "75",
        "--width",
        "0.125",
        "--blocks",
        "1,1,1",
        "--crops",
        "10",
    ]);
    c.arg("--weights")
        .arg(weights)
        .arg("--data")
        .arg(dir.join("val"));
    c.args(extra);
    c.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn eval_skips_unreadable_images_when_asked_and_shows_progress_in_a_pipe() {
    let tmp = TempDir::new("eval-skip");
    let (weights, images) = weights_and_images(&tmp.0);
    let bad = &images[4];
    std::fs::write(bad, b"\xff\xd8\xff\xe0 truncated").unwrap();

    let refused = eval(&tmp.0, &weights, &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", output_text(&refused));
    let message = stderr(&refused);
    assert!(
        message.contains(&bad.display().to_string()) && message.contains("--skip-bad-images"),
        "{message}"
    );

    let predictions = tmp.0.join("predictions.parquet");
    let skipped = eval(
        &tmp.0,
        &weights,
        &[
            "--skip-bad-images",
            "--predictions",
            predictions.to_str().unwrap(),
        ],
    );
    assert!(skipped.status.success(), "{}", output_text(&skipped));
    let out = stdout(&skipped);
    assert_plain(&out);
    assert!(out.contains("(8 images, "), "{out}");
    assert!(out.contains("skipped 1 unreadable image(s)"), "{out}");
    assert!(out.contains(&bad.display().to_string()), "{out}");
    let file = repro::eval::read_predictions(&predictions).unwrap();
    assert_eq!(file.predictions.len(), 8);
    assert_eq!(file.skipped.len(), 1);
    assert_eq!(&file.skipped[0].path, bad);

    // stderr is a pipe here: progress comes as log lines with the rate, ending at the total.
    let progress = stderr(&skipped);
    assert!(
        progress.contains("inception_v4 (10 crops): 9 of 9 images")
            && progress.contains("crops/s, 1 skipped"),
        "{progress}"
    );
}

#[test]
fn each_class_of_error_has_its_exit_code() {
    let tmp = TempDir::new("exit-codes");
    let (weights, _) = weights_and_images(&tmp.0);
    let ok = eval(&tmp.0, &weights, &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", output_text(&ok));

    // Bad input: 2, for a bad flag, an unknown network, a missing file, weights of another shape.
    let bad_flag = repro(&["eval", "--crops", "7"]).output().unwrap();
    assert_eq!(
        bad_flag.status.code(),
        Some(2),
        "{}",
        output_text(&bad_flag)
    );
    let unknown = repro(&["models", "--model", "inception_v9"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2), "{}", output_text(&unknown));
    let missing = eval(&tmp.0, &tmp.0.join("nowhere.safetensors"), &[]);
    assert_eq!(missing.status.code(), Some(2), "{}", output_text(&missing));
    assert!(
        stderr(&missing).contains("nowhere.safetensors"),
        "{}",
        output_text(&missing)
    );
    let wrong_shape = eval(&tmp.0, &weights, &["--width", "0.25"]);
    assert_eq!(
        wrong_shape.status.code(),
        Some(2),
        "{}",
        output_text(&wrong_shape)
    );
    let no_data = repro(&["run", "/nonexistent/experiment.yaml"])
        .output()
        .unwrap();
    assert_eq!(no_data.status.code(), Some(2), "{}", output_text(&no_data));
    assert_plain(&stderr(&no_data));
}

/// A smoke run that takes some seconds and checkpoints every step.
fn slow_run(dir: &Path) -> Command {
    let fig = repo("experiments/fig23.yaml");
    let mut c = repro(&["run", fig.to_str().unwrap(), "--smoke"]);
    c.args(common::runs::SLOW_SMOKE)
        .arg("--results")
        .arg(dir.join("results"))
        .arg("--reports")
        .arg(dir.join("reports"));
    c
}

#[test]
fn ctrl_c_checkpoints_exits_with_3_and_the_same_command_resumes() {
    interrupted_by(libc::SIGINT, "interrupt");
}

/// Slurm sends SIGUSR1 ahead of a time limit (`--signal=USR1@90`); SIGTERM on preemption.
#[test]
fn the_signals_of_a_batch_scheduler_checkpoint_and_stop_alike() {
    interrupted_by(libc::SIGUSR1, "usr1");
    interrupted_by(libc::SIGTERM, "term");
}

fn interrupted_by(signal: libc::c_int, tag: &str) {
    let tmp = TempDir::new(tag);
    let child = slow_run(&tmp.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let runs = tmp.0.join("results/runs");
    let status = || {
        let mut c = repro(&[
            "status",
            repo("experiments/fig23.yaml").to_str().unwrap(),
            "--smoke",
        ]);
        c.args(common::runs::SLOW_SMOKE)
            .arg("--results")
            .arg(tmp.0.join("results"));
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        assert_plain(&stdout(&out));
        stdout(&out)
    };
    let signalled = common::runs::wait_for_checkpoint(&runs, 2, || true).is_some();
    let running = status();
    assert!(
        running.contains(&format!(
            "inception_resnet_v2  training: pid {} on ",
            child.id()
        )) && running.contains(", checkpoint at step "),
        "{running}"
    );
    assert!(
        running.contains("inception_v4         not started"),
        "{running}"
    );
    if signalled {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    }
    assert!(signalled, "the run never checkpointed");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    let message = stderr(&out);
    assert!(
        message.contains("interrupted in run `inception_resnet_v2`")
            && message.contains("resumes it"),
        "{message}"
    );
    assert!(
        stdout(&out).contains("interrupted at step"),
        "{}",
        stdout(&out)
    );
    assert!(
        !std::fs::read_dir(&runs)
            .unwrap()
            .any(|e| e.unwrap().path().join("DONE").exists()),
        "an interrupted run is not marked done"
    );

    let stopped = status();
    assert!(
        stopped.contains("inception_resnet_v2  interrupted at step ")
            && stopped.contains("`repro run` resumes it"),
        "{stopped}"
    );
    let resumed = slow_run(&tmp.0).output().unwrap();
    assert!(resumed.status.success(), "{}", output_text(&resumed));
    assert!(
        stderr(&resumed).contains("resuming from"),
        "{}",
        output_text(&resumed)
    );
    let irv2 = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("inception_resnet_v2")
        })
        .unwrap();
    let rows = repro::store::metrics::read_metrics(&irv2.join("metrics.parquet")).unwrap();
    let epochs: Vec<f64> = rows.iter().map(|r| r.epoch).collect();
    assert_eq!(epochs, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let done = status();
    assert!(
        done.contains(
            "inception_resnet_v2  done; last evaluation at epoch 6.00 of 6: top-1 error "
        ),
        "{done}"
    );
}

#[test]
fn a_table_evaluation_skips_unreadable_images_when_the_table_says_so() {
    let tmp = TempDir::new("table-skip");
    let (weights, images) = weights_and_images(&tmp.0);
    std::fs::write(&images[7], b"not an image at all").unwrap();
    let write_experiment = |skip: bool| {
        let exp = tmp.0.join("released.yaml");
        let yaml = format!(
            "defaults:\n  data: {{train: {0}, val: {0}}}\n  \
             model: {{width: 0.125, image_size: 75, blocks: [1, 1, 1], num_classes: 3}}\n\
             tables:\n  - id: table2\n    crops: 1\n    skip_bad_images: {skip}\n    rows:\n      - label: inception_v4\n        \
             released: {{model: {{arch: inception_v4}}, weights: [{1}]}}\n",
            tmp.0.join("val").display(),
            weights.display()
        );
        std::fs::write(&exp, yaml).unwrap();
        exp
    };
    let run = |exp: &Path| {
        let mut c = repro(&["run", exp.to_str().unwrap()]);
        c.arg("--results")
            .arg(tmp.0.join("results"))
            .arg("--reports")
            .arg(tmp.0.join("reports"));
        c.output().unwrap()
    };
    let refused = run(&write_experiment(false));
    assert_eq!(refused.status.code(), Some(2), "{}", output_text(&refused));
    assert!(
        stderr(&refused).contains(&images[7].display().to_string())
            && stderr(&refused).contains("skip_bad_images: true"),
        "{}",
        output_text(&refused)
    );

    let skipped = run(&write_experiment(true));
    assert!(skipped.status.success(), "{}", output_text(&skipped));
    let table = std::fs::read_to_string(tmp.0.join("reports/released/tables/table2.md")).unwrap();
    assert!(table.contains("| 8 (1 unreadable skipped) |"), "{table}");
    let eval = std::fs::read_dir(tmp.0.join("results/evals"))
        .unwrap()
        .map(|e| e.unwrap().path().join("eval.parquet"))
        .find(|p| p.exists())
        .unwrap();
    let record = &repro::eval::read_eval_parquet(&eval).unwrap()[0];
    assert_eq!(record.images, 8);
    assert_eq!(record.skipped, vec![images[7].display().to_string()]);
    let said = output_text(&skipped);
    assert!(
        said.contains("table2 row `inception_v4`: 1 unreadable image(s) left out")
            && said.contains(&eval.display().to_string()),
        "{said}"
    );
}

#[test]
fn a_table_on_the_train_holdout_split_uses_only_images_training_left_out() {
    let tmp = TempDir::new("holdout");
    let (weights, _) = weights_and_images(&tmp.0);
    let train = tmp.0.join("train");
    repro::data::write_synthetic_dataset(&train, 3, 10, (80, 80), 9).unwrap();
    let exp = tmp.0.join("holdout.yaml");
    let yaml = format!(
        "defaults:\n  data: {{train: {0}, val: {1}, train_images_per_class: 4}}\n  \
         model: {{width: 0.125, image_size: 75, blocks: [1, 1, 1], num_classes: 3}}\n\
         tables:\n  - id: table2\n    crops: 1\n    split: train_holdout\n    images_per_class: 5\n    rows:\n      - label: inception_v4\n        \
         released: {{model: {{arch: inception_v4}}, weights: [{2}]}}\n",
        train.display(),
        tmp.0.join("val").display(),
        weights.display()
    );
    std::fs::write(&exp, yaml).unwrap();

    let experiment =
        repro::experiment::load_experiment(&exp, &repro::experiment::LoadOptions::default())
            .unwrap();
    let data = &experiment.released.values().next().unwrap().config.data;
    let results = tmp.0.join("results");
    let trained = repro::runner::prepare_datasets(data, &results)
        .unwrap()
        .train;
    let holdout = repro::runner::train_holdout(data, &results, 5).unwrap();
    assert_eq!((trained.len(), holdout.len()), (12, 15));
    assert!(holdout
        .samples
        .iter()
        .all(|h| !trained.samples.iter().any(|t| t.path == h.path)));
    assert!(holdout.samples.iter().all(|h| h
        .path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        == holdout.classes[h.label as usize]));

    let out = repro(&["run", exp.to_str().unwrap(), "--results"])
        .arg(&results)
        .arg("--reports")
        .arg(tmp.0.join("reports"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let table = std::fs::read_to_string(tmp.0.join("reports/holdout/tables/table2.md")).unwrap();
    assert!(table.contains("ours train-holdout | 15 |"), "{table}");
    assert!(
        table.contains("train-holdout: images of the training folder"),
        "{table}"
    );

    // Without a training subset nothing is held out: a clear error, exit 2.
    std::fs::write(
        &exp,
        std::fs::read_to_string(&exp)
            .unwrap()
            .replace(", train_images_per_class: 4", ""),
    )
    .unwrap();
    let refused = repro(&["run", exp.to_str().unwrap(), "--results"])
        .arg(&results)
        .arg("--reports")
        .arg(tmp.0.join("reports"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", output_text(&refused));
    assert!(
        stderr(&refused).contains("train_images_per_class"),
        "{}",
        output_text(&refused)
    );
}

#[test]
fn runs_selects_what_is_trained_and_unknown_names_are_bad_input() {
    let tmp = TempDir::new("only");
    let fig = repo("experiments/fig23.yaml");
    let run = |extra: &[&str]| {
        let mut c = repro(&["run", fig.to_str().unwrap(), "--smoke"]);
        c.args(extra)
            .arg("--results")
            .arg(tmp.0.join("results"))
            .arg("--reports")
            .arg(tmp.0.join("reports"));
        c.output().unwrap()
    };
    let one = run(&["--runs", "inception_v4"]);
    assert!(one.status.success(), "{}", output_text(&one));
    let out = stdout(&one);
    assert!(out.contains("inception_v4  trained: "), "{out}");
    assert!(!out.contains("inception_resnet_v2"), "{out}");
    let folders: Vec<String> = std::fs::read_dir(tmp.0.join("results/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    assert!(folders[0].starts_with("inception_v4-"), "{folders:?}");

    let unknown = run(&["--runs", "inception_v9"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", output_text(&unknown));
    assert!(
        stderr(&unknown).contains("--runs: the files use no run `inception_v9` (nor runs under `inception_v9/`); they use: inception_resnet_v2, inception_v4"),
        "{}",
        output_text(&unknown)
    );
}

#[test]
fn bf16_runs_on_a_cpu_without_avx512_bf16_are_bad_input_naming_what_is_missing() {
    let tmp = TempDir::new("bf16-refused");
    let file = repo("experiments/mini/bf16.yaml");
    let out = repro(&["run", file.to_str().unwrap(), "--smoke"])
        .env("REPRO_CPU_BF16", "off")
        .arg("--results")
        .arg(tmp.0.join("results"))
        .arg("--reports")
        .arg(tmp.0.join("reports"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("bf16.yaml: run `inception_resnet_v2_precision/precision=bf16/seed=0`: train.precision: bf16 on the CPU: AVX512-BF16 is turned off (REPRO_CPU_BF16=off); use f32"),
        "{}",
        output_text(&out)
    );
    // Refused before anything trained.
    assert_eq!(run_count(&tmp.0), 0);
    let bench = repro(&[
        "bench",
        "train",
        "--precision",
        "bf16",
        "--size",
        "75",
        "--width",
        "0.125",
    ])
    .env("REPRO_CPU_BF16", "off")
    .output()
    .unwrap();
    assert_eq!(bench.status.code(), Some(2), "{}", output_text(&bench));
    assert!(
        stderr(&bench).contains("--precision: bf16 on the CPU: AVX512-BF16 is turned off"),
        "{}",
        output_text(&bench)
    );
}

fn run_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("results/runs")).map_or(0, |d| d.count())
}

#[test]
fn eval_in_bf16_matches_f32_where_the_cpu_has_it_and_is_refused_where_not() {
    let tmp = TempDir::new("eval-bf16");
    let (weights, _) = weights_and_images(&tmp.0);
    let refused = {
        let mut c = repro(&["eval", "--model", "inception_v4", "--precision", "bf16"]);
        c.env("REPRO_CPU_BF16", "off")
            .arg("--weights")
            .arg(&weights)
            .arg("--data")
            .arg(tmp.0.join("val"));
        c.output().unwrap()
    };
    assert_eq!(refused.status.code(), Some(2), "{}", output_text(&refused));
    assert!(
        stderr(&refused).contains("--precision: bf16 on the CPU: AVX512-BF16 is turned off"),
        "{}",
        output_text(&refused)
    );
    if let Some(missing) = repro::models::fastops::bf16_missing_cpu_features() {
        eprintln!("bf16 evaluation not run: {missing}");
        return;
    }
    let predictions = |precision: &str| {
        let file = tmp.0.join(format!("{precision}.parquet"));
        let out = eval(
            &tmp.0,
            &weights,
            &[
                "--precision",
                precision,
                "--predictions",
                file.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", output_text(&out));
        repro::eval::read_predictions(&file)
            .unwrap()
            .predictions
            .iter()
            .map(|p| p.top5[0].0)
            .collect::<Vec<_>>()
    };
    let (f32_top1, bf16_top1) = (predictions("f32"), predictions("bf16"));
    assert_eq!(f32_top1.len(), 9);
    // Random weights give close logits; bf16 may flip a near tie, not most images.
    let same = f32_top1
        .iter()
        .zip(&bf16_top1)
        .filter(|(a, b)| a == b)
        .count();
    assert!(same >= 7, "{f32_top1:?} vs {bf16_top1:?}");
}
