//! `repro run` through the library, as main.rs calls it: `commands::run_experiments` on the
//! smoke profile of experiments/fig23.yaml trains both runs, evaluates and writes the report;
//! with one run's DONE gone, plan, status and the run lines put its state in the same words;
//! the next call finishes that run again from its checkpoint and reuses the other.

mod common;

use std::path::Path;
use std::time::SystemTime;

use repro::commands::{plan_text, run_experiments, status_text, RunEnd, RunRequest};
use repro::executor::JobCommand;
use repro::experiment::{load_experiment, ExecutorSpec, Experiment, LoadOptions};
use repro::runner::{plan, run_line, RunResult};

use common::TempDir;

fn smoke_experiment() -> Experiment {
    let options = LoadOptions {
        profile: Some("smoke".into()),
        ..LoadOptions::default()
    };
    load_experiment(&common::cli::repo("experiments/fig23.yaml"), &options).unwrap()
}

fn request<'a>(experiments: &'a [Experiment], root: &Path) -> RunRequest<'a> {
    let results = root.join("results");
    let reports = root.join("reports");
    RunRequest {
        experiments,
        options: common::tiny::cpu_options(&results, &["--smoke"]),
        restart: Vec::new(),
        executor: ExecutorSpec::default(),
        wait: true,
        job_command: JobCommand::current(Some("smoke".into()), Vec::new(), &results, &reports)
            .unwrap(),
        reports,
        no_report: false,
        command_line: "repro run experiments/fig23.yaml --smoke".into(),
    }
}

fn run(request: &RunRequest) -> (RunEnd, Vec<String>) {
    let mut lines = Vec::new();
    let end = run_experiments(request, &mut |line| lines.push(line)).unwrap();
    (end, lines)
}

/// Words the commands used for the same states before they shared one vocabulary.
const OLD_WORDS: [&str; 6] = [
    "resume @",
    "unfinished at",
    "stopped at step",
    "done (cached)",
    "to train ",
    "not trained",
];

#[test]
fn the_library_runs_an_experiment_and_every_command_names_its_states_alike() {
    let tmp = TempDir::new("library-run");
    let experiments = vec![smoke_experiment()];
    let request = request(&experiments, &tmp.0);

    let (end, lines) = run(&request);
    assert!(matches!(end, RunEnd::Finished), "{end:?}\n{lines:#?}");
    assert_eq!(end.exit_class(), None);
    assert_eq!(lines[0], experiments[0].heading());
    assert!(
        lines[0].ends_with("fig23.yaml, profile smoke)"),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("  trained: ")).count(),
        2,
        "{lines:#?}"
    );
    let index = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("report: "))
        .expect("a report line");
    assert!(Path::new(index).is_file(), "{index}");
    assert_no_debug_text(&lines.join("\n"), "the run's output");
    for root in [&request.options.results, &request.reports] {
        for entry in walkdir::WalkDir::new(root) {
            let path = entry.unwrap().into_path();
            let text_file = ["json", "yaml", "html", "svg", "csv", "txt"]
                .contains(&path.extension().and_then(|e| e.to_str()).unwrap_or(""));
            if text_file && path.is_file() {
                let text = std::fs::read_to_string(&path).unwrap();
                assert_no_debug_text(&text, &path.display().to_string());
            }
        }
    }

    // One run loses its DONE record: it is unfinished, at its last checkpoint.
    let results = &request.options.results;
    let planned = plan(&experiments[0], results);
    let victim = &planned[0];
    std::fs::remove_file(victim.dir.join("DONE")).unwrap();
    let planned = plan(&experiments[0], results);
    let victim = &planned[0];
    let words = victim.progress.to_string();
    assert!(words.starts_with("interrupted at step "), "{words}");

    let plan_lines = plan_text(&experiments[0], results);
    let status = status_text(&experiments, results, SystemTime::now());
    let reused = run_line(victim, &RunResult::Reused(victim.progress.clone()));
    let delegated = run_line(
        victim,
        &RunResult::Delegated {
            progress: victim.progress.clone(),
            by: "a local job on cpu".into(),
        },
    );
    for text in [&plan_lines, &status, &reused, &delegated] {
        assert!(text.contains(&words), "`{words}` missing from:\n{text}");
        for old in OLD_WORDS {
            assert!(!text.contains(old), "`{old}` in:\n{text}");
        }
    }
    let done_words = planned[1].progress.to_string();
    assert_eq!(done_words, "done");
    assert!(plan_lines.contains(" done "), "{plan_lines}");

    // The next call finishes the run again from its checkpoint and reuses the other.
    let (end, lines) = run(&request);
    assert!(matches!(end, RunEnd::Finished), "{end:?}\n{lines:#?}");
    let line_of = |name: &str| {
        lines
            .iter()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        line_of(&victim.run.name).contains("trained: "),
        "{lines:#?}"
    );
    assert!(
        line_of(&planned[1].run.name).contains("already trained: "),
        "{lines:#?}"
    );
}

/// Fails on what Rust's `{:?}` leaves in text: `Some(..)`, `None`, `Ok(..)`, struct braces.
fn assert_no_debug_text(text: &str, what: &str) {
    for pattern in [
        "Some(", ": None", "(None", "Ok(", "Err(", "PathBuf", " { secs:", "\\\"",
    ] {
        assert!(
            !text.contains(pattern),
            "{what} holds `{pattern}`, the Debug form of an internal value"
        );
    }
}

#[test]
fn unknown_run_names_are_bad_input_before_anything_runs() {
    let tmp = TempDir::new("library-run-names");
    let experiments = vec![smoke_experiment()];
    let mut request = request(&experiments, &tmp.0);
    request.restart = vec!["inception_v9".into()];
    let mut lines = Vec::new();
    let err = run_experiments(&request, &mut |line| lines.push(line)).unwrap_err();
    assert_eq!(err.class, repro::commands::ExitClass::BadInput);
    assert!(
        err.message
            .contains("--restart: the files use no run `inception_v9`"),
        "{}",
        err.message
    );
    assert!(lines.is_empty(), "{lines:#?}");
    assert!(!request.options.results.join("runs").exists());
}

#[test]
fn settings_that_do_not_fit_the_data_are_bad_input_whoever_catches_them() {
    let tmp = TempDir::new("library-run-setup");
    let yaml = "runs:\n  r:\n    model: {arch: inception_v4, width: 0.125, image_size: 75, blocks: [1, 1, 1]}\n    \
                data: {synthetic: {classes: 4, train_per_class: 8, val_per_class: 2, image_size: 48}}\n    \
                train: {epochs: 1, batch_size: 64}\nfigures: [{id: f, metric: top1, runs: [r]}]\n";
    let path = tmp.0.join("exp.yaml");
    std::fs::write(&path, yaml).unwrap();
    let experiments = vec![load_experiment(&path, &LoadOptions::default()).unwrap()];
    let request = request(&experiments, &tmp.0);
    let (end, lines) = run(&request);
    let RunEnd::Failed(failures) = &end else {
        panic!("{end:?}\n{lines:#?}");
    };
    assert!(failures[0].bad_input, "{failures:?}");
    assert!(
        failures[0]
            .message
            .contains("the training set (32 images) is smaller than one update"),
        "{failures:?}"
    );
    assert_eq!(end.exit_class(), Some(repro::commands::ExitClass::BadInput));
}

#[test]
fn a_run_two_sweeps_share_trains_once() {
    let tmp = TempDir::new("library-run-sweeps");
    let yaml = "defaults:\n  model: {arch: inception_v4, width: 0.125, image_size: 75, blocks: [1, 1, 1], bn_momentum: 0.1}\n  \
                data: {synthetic: {classes: 4, train_per_class: 8, val_per_class: 2, image_size: 48}}\n  \
                train: {epochs: 1, batch_size: 8, ema: {decay: 0.9}}\n\
                runs:\n  a: {sweep: {model.init: [tf_slim, pytorch]}}\n  b: {sweep: {train.clip_mode: [global_norm, per_variable]}}\n\
                figures: [{id: f, metric: top1, runs: [a, b]}]\n";
    let path = tmp.0.join("sweeps.yaml");
    std::fs::write(&path, yaml).unwrap();
    let experiments = vec![load_experiment(&path, &LoadOptions::default()).unwrap()];
    let e = &experiments[0];
    let (same_a, same_b) = ("a/init=tf_slim", "b/clip_mode=global_norm");
    assert_eq!(e.runs[same_a].hash, e.runs[same_b].hash);
    let request = request(&experiments, &tmp.0);
    let (end, lines) = run(&request);
    assert!(matches!(end, RunEnd::Finished), "{end:?}\n{lines:#?}");
    let trained = lines.iter().filter(|l| l.contains("  trained: ")).count();
    assert_eq!(trained, 3, "{lines:#?}");
    let folders = std::fs::read_dir(request.options.results.join("runs"))
        .unwrap()
        .count();
    assert_eq!(folders, 3);
    let planned = plan(e, &request.options.results);
    assert_eq!(planned.len(), 4);
    let dir_of = |name: &str| {
        planned
            .iter()
            .find(|p| p.run.name == name)
            .unwrap()
            .dir
            .clone()
    };
    assert_eq!(dir_of(same_a), dir_of(same_b));
    assert!(planned.iter().all(|p| p.progress.to_string() == "done"));
}
