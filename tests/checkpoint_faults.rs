//! Fault injection: every file of a checkpoint and of a run folder truncated, zeroed, with
//! one byte flipped in the middle, or deleted, and what `repro run` (the library's
//! `train_missing`) then does. The outcome asserted for each is the README's table: the run
//! resumes from the newest intact state (damaged files moved to `damaged/`) and ends with
//! final weights identical to those of a run that was never damaged, or it stops with an
//! error that names the file and the command that starts it over. Never a panic, never a
//! silently different result.
//!
//! One reference run of a tiny network (12 steps; evaluations and checkpoints at steps 3, 6,
//! 9 and 12; the last two checkpoints kept) is trained once and copied for each case.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use repro::experiment::Experiment;
use repro::runner::{restart_runs, train_missing, RunOptions, RunResult};
use repro::store::metrics::{read_metrics, MetricsRow};
use repro::store::RunDir;
use repro::train::RunOutcome;

use common::tiny::tiny_experiment;
use common::TempDir;

const TRAIN: &str =
    "epochs: 2, eval_every_epochs: 0.5, checkpoint_every_steps: 1000, lr: {base_lr: 0.045}";
const NEWEST: &str = "checkpoints/step-000000012";

struct Reference {
    _tmp: TempDir,
    results: PathBuf,
    /// `runs/<folder>` relative to `results`.
    run: PathBuf,
    final_weights: Vec<u8>,
    metrics: Vec<MetricsRow>,
    provenance: Vec<u8>,
    config: Vec<u8>,
}

fn options(results: &Path) -> RunOptions {
    common::tiny::cpu_options(results, &["--set", "train.epochs=2"])
}

fn experiment(dir: &Path) -> Experiment {
    tiny_experiment(dir, "inception_resnet_v2", TRAIN)
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let tmp = TempDir::new("faults-reference");
        let results = tmp.0.join("results");
        let e = experiment(&tmp.0);
        let outcome = train_missing(&e, &options(&results));
        assert!(
            matches!(
                outcome[0].1,
                RunResult::Trained(RunOutcome::Finished { steps: 12, .. })
            ),
            "{:?}",
            outcome[0].1
        );
        let dir = outcome[0].0.dir.clone();
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let kept: Vec<String> = names_in(&dir.join("checkpoints"));
        assert_eq!(kept, ["step-000000009", "step-000000012"]);
        Reference {
            run: dir.strip_prefix(&results).unwrap().to_path_buf(),
            final_weights: read("final.safetensors"),
            metrics: read_metrics(&dir.join("metrics.parquet")).unwrap(),
            provenance: read("provenance.json"),
            config: read("config.yaml"),
            results,
            _tmp: tmp,
        }
    })
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the reference results; `killed` removes what only the end of a run writes
/// (`DONE`, `final.safetensors`), as a kill after the last checkpoint leaves it.
struct Case {
    tmp: TempDir,
    results: PathBuf,
    dir: PathBuf,
}

impl Case {
    fn new(tag: &str, killed: bool) -> Self {
        let r = reference();
        let tmp = TempDir::new(&format!("faults-{tag}"));
        let results = tmp.0.join("results");
        copy_tree(&r.results, &results);
        let dir = results.join(&r.run);
        if killed {
            std::fs::remove_file(dir.join("DONE")).unwrap();
            std::fs::remove_file(dir.join("final.safetensors")).unwrap();
        }
        Self { tmp, results, dir }
    }

    fn run(&self) -> RunResult {
        let e = experiment(&self.tmp.0);
        let mut out = train_missing(&e, &options(&self.results));
        out.remove(0).1
    }

    /// The run ended as the reference did: same final weights, same evaluations.
    fn assert_same_result(&self, what: &str) {
        let r = reference();
        let final_weights = std::fs::read(self.dir.join("final.safetensors"))
            .unwrap_or_else(|e| panic!("{what}: final.safetensors: {e}"));
        assert!(
            final_weights == r.final_weights,
            "{what}: other final weights"
        );
        let rows = read_metrics(&self.dir.join("metrics.parquet")).unwrap();
        let key = |m: &MetricsRow| {
            (
                m.step,
                m.epoch,
                m.images_seen,
                m.lr,
                m.train_loss,
                m.top1_err,
                m.top5_err,
            )
        };
        assert_eq!(
            rows.iter().map(key).collect::<Vec<_>>(),
            r.metrics.iter().map(key).collect::<Vec<_>>(),
            "{what}"
        );
        assert!(RunDir::new(&self.dir).is_done(), "{what}");
    }

    fn damaged(&self) -> Vec<String> {
        names_in(&self.dir.join("damaged"))
    }
}

type Fault = fn(&Path);

fn faults() -> [(&'static str, Fault); 4] {
    [
        ("truncated", |p| {
            let len = std::fs::metadata(p).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(len / 2).unwrap();
        }),
        ("zeroed", |p| {
            let len = std::fs::metadata(p).unwrap().len() as usize;
            std::fs::write(p, vec![0u8; len]).unwrap();
        }),
        ("one byte flipped", |p| {
            let mut bytes = std::fs::read(p).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x01;
            std::fs::write(p, bytes).unwrap();
        }),
        ("deleted", |p| std::fs::remove_file(p).unwrap()),
    ]
}

/// A killed run whose newest checkpoint has `file` damaged resumes from the one before
/// (step 9), moves the damaged one aside, trains the 3 steps again and ends identical.
fn newest_checkpoint_file(file: &str) {
    for (fault, apply) in faults() {
        let what = format!("{file} {fault}");
        let case = Case::new(&format!("ckpt-{file}-{fault}").replace(' ', "_"), true);
        apply(&case.dir.join(NEWEST).join(file));
        let result = case.run();
        assert!(
            matches!(
                result,
                RunResult::Trained(RunOutcome::Finished { steps: 12, .. })
            ),
            "{what}: {result:?}"
        );
        case.assert_same_result(&what);
        let damaged = case.damaged();
        assert!(
            damaged.len() == 1 && damaged[0].starts_with("step-000000012."),
            "{what}: {damaged:?}"
        );
    }
}

#[test]
fn checkpoint_weights() {
    newest_checkpoint_file("weights.safetensors");
}

#[test]
fn checkpoint_ema() {
    newest_checkpoint_file("ema.safetensors");
}

#[test]
fn checkpoint_optimizer() {
    newest_checkpoint_file("optim.safetensors");
}

#[test]
fn checkpoint_state() {
    newest_checkpoint_file("state.json");
}

#[test]
fn checkpoint_metrics_copy() {
    newest_checkpoint_file("metrics.parquet");
}

#[test]
fn checkpoint_manifest() {
    newest_checkpoint_file("manifest.json");
}

#[test]
fn every_checkpoint_damaged_is_an_error_naming_them_and_the_restart_command() {
    let case = Case::new("all-damaged", true);
    for step in ["step-000000009", "step-000000012"] {
        std::fs::write(
            case.dir
                .join("checkpoints")
                .join(step)
                .join("weights.safetensors"),
            b"",
        )
        .unwrap();
    }
    let RunResult::Failed(failure) = case.run() else {
        panic!("the run went on without a checkpoint")
    };
    let m = &failure.message;
    assert!(!failure.bad_input);
    assert!(m.contains("no checkpoint in"), "{m}");
    assert!(
        m.contains("the checkpoint at step 12 is damaged") && m.contains("step 9"),
        "{m}"
    );
    assert!(m.contains("weights.safetensors"), "{m}");
    assert!(
        m.contains("repro run ") && m.contains("--set train.epochs=2 --restart r`"),
        "{m}"
    );
    // Both are kept aside; nothing was trained from scratch behind the user's back.
    assert_eq!(case.damaged().len(), 2);
    assert!(!case.dir.join("final.safetensors").exists());

    // `--restart r`: the folder's files go to results/set-aside/, and the run trains anew.
    let e = experiment(&case.tmp.0);
    let moved = restart_runs(&e, &case.results, &["r".to_string()]).unwrap();
    let [(name, to)] = &moved[..] else {
        panic!("{moved:?}")
    };
    assert_eq!(name, "r");
    assert!(to.starts_with(case.results.join("set-aside")));
    assert!(to.join("damaged").is_dir() && to.join("metrics.parquet").is_file());
    assert!(matches!(
        case.run(),
        RunResult::Trained(RunOutcome::Finished { steps: 12, .. })
    ));
    case.assert_same_result("restarted");
}

/// `metrics.parquet` of a killed run: rebuilt from the checkpoint's copy (a damaged file
/// moved aside first), every evaluation kept.
#[test]
fn run_metrics_while_resuming() {
    for (fault, apply) in faults() {
        let case = Case::new(&format!("metrics-{fault}").replace(' ', "_"), true);
        apply(&case.dir.join("metrics.parquet"));
        let result = case.run();
        assert!(
            matches!(result, RunResult::Trained(_)),
            "{fault}: {result:?}"
        );
        case.assert_same_result(fault);
        let rows = read_metrics(&case.dir.join("metrics.parquet")).unwrap();
        assert_eq!(rows, reference().metrics, "{fault}: not the saved rows");
        if fault != "deleted" {
            assert!(
                case.damaged()[0].starts_with("metrics.parquet."),
                "{fault}: {:?}",
                case.damaged()
            );
        }
    }
}

/// `provenance.json` and `config.yaml` of a killed run: moved aside and written anew.
#[test]
fn run_provenance_and_config_while_resuming() {
    for file in ["provenance.json", "config.yaml"] {
        for (fault, apply) in faults() {
            let what = format!("{file} {fault}");
            let case = Case::new(&format!("meta-{file}-{fault}").replace(' ', "_"), true);
            apply(&case.dir.join(file));
            let result = case.run();
            assert!(
                matches!(result, RunResult::Trained(_)),
                "{what}: {result:?}"
            );
            case.assert_same_result(&what);
            let provenance =
                repro::store::Provenance::read(&case.dir.join("provenance.json")).unwrap();
            assert_eq!(provenance.status, repro::store::RunStatus::Done, "{what}");
            assert_eq!(
                std::fs::read(case.dir.join("config.yaml")).unwrap(),
                reference().config,
                "{what}"
            );
            if fault != "deleted" {
                assert!(case.damaged()[0].starts_with(file), "{what}");
            }
        }
    }
}

/// The files of a finished run, checked against `DONE` before it is reused: the final
/// weights and the metrics are made again from the last checkpoint, the provenance comes
/// back from `DONE`'s copy, the configuration from the experiment. All byte for byte.
#[test]
fn finished_run_files() {
    for file in [
        "final.safetensors",
        "metrics.parquet",
        "provenance.json",
        "config.yaml",
        "DONE",
    ] {
        for (fault, apply) in faults() {
            let what = format!("{file} {fault}");
            let case = Case::new(&format!("done-{file}-{fault}").replace(' ', "_"), false);
            apply(&case.dir.join(file));
            let result = case.run();
            assert!(
                matches!(
                    result,
                    RunResult::Reused(_) | RunResult::Trained(RunOutcome::Finished { .. })
                ),
                "{what}: {result:?}"
            );
            case.assert_same_result(&what);
            if file == "provenance.json" {
                let back = std::fs::read_to_string(case.dir.join(file)).unwrap();
                assert_eq!(
                    back,
                    String::from_utf8_lossy(&reference().provenance),
                    "{what}"
                );
            }
            if file == "config.yaml" {
                assert_eq!(
                    std::fs::read(case.dir.join(file)).unwrap(),
                    reference().config
                );
            }
            // Reused (repaired in place) unless the final weights or metrics had to be made
            // again, or DONE itself was unreadable.
            let reused = matches!(result, RunResult::Reused(_));
            eprintln!(
                "{what}: {}",
                if reused { "reused" } else { "finished again" }
            );
            match file {
                "provenance.json" | "config.yaml" => assert!(reused, "{what}"),
                "final.safetensors" | "metrics.parquet" => assert!(!reused, "{what}"),
                _ => assert!(!reused || fault == "one byte flipped", "{what}"),
            }
        }
    }
}

/// Disk full while a checkpoint is written (a 3 MiB tmpfs; needs root to mount it): the
/// error names the file, no partial checkpoint is left, and the older checkpoints load.
#[test]
fn disk_full_during_a_checkpoint() {
    use candle_core::{Device, Tensor};
    use repro::store::{Checkpoint, CheckpointError, Checkpoints, OnDamage, TrainingState};
    use std::collections::HashMap;

    let tmp = TempDir::new("faults-enospc");
    let mount = tmp.0.join("small");
    std::fs::create_dir_all(&mount).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&mount)
        .output();
    match mounted {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "skipped: cannot mount a tmpfs here ({}); run as root to test a full disk",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("skipped: no mount command ({e})");
            return;
        }
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());

    // 3 files of 800 KiB: one checkpoint fits, a second does not.
    let tensors = |v: f32| {
        HashMap::from([(
            "w".to_string(),
            Tensor::full(v, (200, 1024), &Device::Cpu).unwrap(),
        )])
    };
    let checkpoint = |step: u64| Checkpoint {
        state: TrainingState {
            format_version: repro::store::CHECKPOINT_FORMAT_VERSION,
            step,
            epoch: 0,
            batch_in_epoch: step,
            images_seen: 0,
            rng_seed: 0,
            rng_state: Vec::new(),
            ema_num_updates: 0,
            config_hash: "h".into(),
            loss_sum: 0.0,
            loss_count: 0,
            wall_s: 0.0,
        },
        weights: tensors(step as f32),
        ema: tensors(1.0),
        optim: tensors(2.0),
        metrics: Some(Vec::new()),
    };
    let store = Checkpoints::new(mount.join("checkpoints"));
    store.save(&checkpoint(10), 2).unwrap();
    let err = store.save(&checkpoint(20), 2).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CheckpointError::Write(_)), "{text}");
    assert!(
        text.contains(".safetensors") && text.contains("No space left on device"),
        "{text}"
    );
    assert_eq!(names_in(store.dir()), ["step-000000010"], "debris left");
    let loaded = store.load(&Device::Cpu, &OnDamage::Skip).unwrap().unwrap();
    assert_eq!(loaded.checkpoint.state.step, 10);
    assert!(loaded.rejected.is_empty());
}
