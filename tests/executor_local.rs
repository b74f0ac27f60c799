//! The local executor: several `repro` processes on this machine, one run each, give the
//! same weights as the inline executor; its settings are checked before anything starts.
//! One compute thread per process (`RAYON_NUM_THREADS=1`, `--threads 1`) makes the weights
//! comparable bit for bit.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{output_text, repo, run_dirs, TempDir};

fn smoke(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repro"))
        .env("RAYON_NUM_THREADS", "1")
        .arg("run")
        .arg(repo("experiments/fig23.yaml"))
        .args(["--smoke", "--threads", "1"])
        .args(extra)
        .arg("--results")
        .arg(dir.join("results"))
        .arg("--reports")
        .arg(dir.join("reports"))
        .output()
        .unwrap()
}

#[test]
fn two_local_jobs_train_what_the_inline_executor_trains() {
    let inline = TempDir::new("local-inline");
    let o = smoke(&inline.0, &[]);
    assert!(o.status.success(), "{}", output_text(&o));
    let local = TempDir::new("local-jobs");
    let o = smoke(&local.0, &["--executor", "local", "--jobs", "2"]);
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert_eq!(
        text.matches("trained by a local job on cpu").count(),
        2,
        "{text}"
    );
    assert_eq!(text.matches(": started on cpu (pid").count(), 2, "{text}");
    assert!(local.0.join("reports/fig23/index.html").is_file());
    let (ours, theirs) = (
        run_dirs(&local.0.join("results")),
        run_dirs(&inline.0.join("results")),
    );
    assert_eq!(ours.len(), 2);
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a.file_name(), b.file_name());
        let log = std::fs::read_to_string(a.join("local.log")).unwrap();
        assert!(log.contains("training steps 0.."), "{log}");
        assert!(
            std::fs::read(a.join("final.safetensors")).unwrap()
                == std::fs::read(b.join("final.safetensors")).unwrap(),
            "{} differs from the inline run",
            a.display()
        );
    }
    let again = smoke(&local.0, &["--executor", "local", "--jobs", "2"]);
    let text = output_text(&again);
    assert!(again.status.success(), "{text}");
    assert_eq!(text.matches("already trained").count(), 2, "{text}");
    assert!(!text.contains("started on"), "{text}");
}

#[test]
fn executor_settings_that_cannot_work_are_bad_input_before_anything_runs() {
    let tmp = TempDir::new("local-bad");
    for (args, expected) in [
        (
            &["--executor", "local", "--jobs", "0"][..],
            "--jobs must be at least 1",
        ),
        (
            &["--executor", "local", "--no-wait"][..],
            "--no-wait needs the slurm executor",
        ),
        (
            &["--executor", "local", "--devices", "tpu:0"][..],
            "executor.devices",
        ),
        (
            &["--set", "executor.slurm.partiton=gpu"][..],
            "unknown field `partiton`",
        ),
    ] {
        let o = smoke(&tmp.0, args);
        let text = output_text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains(expected), "{args:?}: {text}");
        assert!(
            !tmp.0.join("results/runs").exists(),
            "{args:?} started a run"
        );
    }
    // The slurm executor on a machine without Slurm's commands.
    let o = Command::new(env!("CARGO_BIN_EXE_repro"))
        .env("PATH", tmp.0.join("no-such-folder"))
        .arg("run")
        .arg(repo("experiments/fig23.yaml"))
        .args(["--smoke", "--executor", "slurm", "--results"])
        .arg(tmp.0.join("results"))
        .output()
        .unwrap();
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains("needs Slurm's sbatch on PATH"), "{text}");
    assert!(!tmp.0.join("results/runs").exists());
}

#[test]
fn local_jobs_train_sweep_cells_whose_names_hold_commas() {
    // `--runs` names one cell of the sweep (its two seeds); each job is handed its run's full
    // name, `inception_v4_ablation/init=pytorch,clip_mode=per_variable/seed=N`, on its own
    // command line.
    let dir = TempDir::new("local-sweep");
    let o = Command::new(env!("CARGO_BIN_EXE_repro"))
        .env("RAYON_NUM_THREADS", "1")
        .arg("run")
        .arg(repo("experiments/mini/ablation.yaml"))
        .args([
            "--smoke",
            "--threads",
            "1",
            "--executor",
            "local",
            "--jobs",
            "2",
        ])
        .args([
            "--runs",
            "inception_v4_ablation/init=pytorch,clip_mode=per_variable",
        ])
        .arg("--results")
        .arg(dir.0.join("results"))
        .arg("--reports")
        .arg(dir.0.join("reports"))
        .output()
        .unwrap();
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert_eq!(
        text.matches("trained by a local job on cpu").count(),
        2,
        "{text}"
    );
    let mut folders: Vec<String> = run_dirs(&dir.0.join("results"))
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    assert_eq!(folders.len(), 2, "{folders:?}");
    for (folder, seed) in folders.iter().zip(["seed=0", "seed=1"]) {
        assert!(
            folder.starts_with(&format!(
                "inception_v4_ablation~init=pytorch,clip_mode=per_variable~{seed}-"
            )),
            "{folders:?}"
        );
    }
}
