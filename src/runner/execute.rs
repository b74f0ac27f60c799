//! Carrying out a plan: each missing or interrupted run is trained (or resumed) under its
//! folder's lock; finished runs are reused. A run that fails or diverges is recorded and the
//! rest of the experiment goes on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::Device;

use super::datasets::prepare_datasets;
use super::live_report::{LiveReport, ReportRefresher};
use super::outcome::{RunFailure, RunResult};
use super::plan::{plan, PlannedRun};
use super::repair::{
    check_finished, set_aside_damaged_files, stored_provenance, write_config, FinishedCheck,
};
use crate::data::DataError;
use crate::experiment::Experiment;
use crate::interrupt::StopSignal;
use crate::replicas::Replicas;
use crate::store::done::write_done;
use crate::store::provenance::{manifest_hash, Provenance, RunStatus, SkippedImage};
use crate::store::{CheckpointError, LockError, RunDir, RunLock};
use crate::train::{train_run, Progress, RunOutcome, TrainError, TrainJob};
use crate::watch::{Observers, TensorBoardSink};

/// How to carry out an experiment.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The results folder (`results/`).
    pub results: PathBuf,
    pub device: Device,
    /// How the device is named in provenance (`cpu`, `cuda:0`).
    pub device_name: String,
    /// Retrain runs even when they are finished.
    pub force: bool,
    /// Decode threads (0 = all cores).
    pub threads: usize,
    /// How long to wait for a run folder another process holds; `None` fails at once.
    pub wait_for_lock: Option<Duration>,
    /// Progress bars / log lines.
    pub show_progress: bool,
    /// Ctrl-C / SIGTERM: the run in progress checkpoints and no further run starts.
    pub stop: StopSignal,
    /// The processes this command runs as; replica 0 takes the run folders and writes.
    pub replicas: Replicas,
    /// Train only the runs of these names (`--runs`); `None` trains every missing run.
    pub only: Option<Vec<String>>,
    /// The profile, `--set` and `--results` arguments of this command, as given, for the
    /// commands that messages suggest (`repro run FILE <these> --restart RUN`).
    pub command_flags: Vec<String>,
    /// Render the experiment's report after evaluations while runs train (replica 0).
    pub live_report: Option<LiveReport>,
}

impl RunOptions {
    /// One process on the CPU, one decoding thread, no progress output, no lock waiting, no
    /// live report: how the tests (and a library caller that wants nothing else) run.
    pub fn on_cpu(results: PathBuf) -> Self {
        Self {
            results,
            device: Device::Cpu,
            device_name: "cpu".into(),
            force: false,
            threads: 1,
            wait_for_lock: None,
            show_progress: false,
            stop: StopSignal::default(),
            replicas: crate::replicas::single(),
            only: None,
            command_flags: Vec::new(),
            live_report: None,
        }
    }
}

/// The planned runs of `experiment`, or only those named in `only` (`--runs`).
pub fn selected_plan(
    experiment: &Experiment,
    results: &Path,
    only: Option<&[String]>,
) -> Vec<PlannedRun> {
    let mut folders = std::collections::HashSet::new();
    plan(experiment, results)
        .into_iter()
        .filter(|p| only.is_none_or(|names| names.contains(&p.run.name)))
        // A folder two names share is trained once.
        .filter(|p| folders.insert(p.dir.clone()))
        .collect()
}

/// Trains what is missing in this process; returns each planned run with what happened to
/// it. After a stop request no further run starts: the runs not reached are left out of the
/// result.
pub fn train_missing(
    experiment: &Experiment,
    options: &RunOptions,
) -> Vec<(PlannedRun, RunResult)> {
    let mut out = Vec::new();
    for planned in selected_plan(experiment, &options.results, options.only.as_deref()) {
        if options.stop.requested() {
            break;
        }
        let result = train_one(experiment, &planned, options).unwrap_or_else(RunResult::Failed);
        if let RunResult::Failed(f) = &result {
            tracing::error!("run {}: {}", planned.run.name, f.message);
        }
        // Every replica stopped (the trainer agrees on it), whichever got the signal.
        let interrupted = result.is_interrupted();
        out.push((planned, result));
        if interrupted {
            break;
        }
    }
    out
}

/// What replica 0 decided about a run, for every replica to follow.
enum Decision {
    Train,
    Reuse,
    Fail(RunFailure),
}

/// Replica 0 takes the run folder (lock, `--force`, done or not) and every replica follows
/// its decision; the lock lives as long as the returned guard.
fn take_run(
    planned: &PlannedRun,
    options: &RunOptions,
) -> Result<(Decision, Option<RunLock>), RunFailure> {
    let dir = RunDir::new(&planned.dir);
    let (decision, guard) = if options.replicas.rank() == 0 {
        let taken = (|| {
            dir.create().map_err(|e| {
                RunFailure::new(format!("cannot create {}: {e}", planned.dir.display()))
            })?;
            let guard = lock(&planned.dir, options.wait_for_lock).map_err(RunFailure::new)?;
            if options.force {
                clear_run(&dir).map_err(RunFailure::new)?;
            } else if dir.is_done()
                && check_finished(&dir, &planned.run).map_err(RunFailure::new)?
                    == FinishedCheck::Reuse
            {
                return Ok((Decision::Reuse, Some(guard)));
            }
            set_aside_damaged_files(&dir).map_err(RunFailure::new)?;
            write_config(&dir, &planned.run).map_err(RunFailure::new)?;
            Ok((Decision::Train, Some(guard)))
        })();
        taken.unwrap_or_else(|f| (Decision::Fail(f), None))
    } else {
        (Decision::Train, None)
    };
    if options.replicas.world_size() == 1 {
        return Ok((decision, guard));
    }
    let mut word = match &decision {
        Decision::Train => b"train".to_vec(),
        Decision::Reuse => b"reuse".to_vec(),
        Decision::Fail(f) => format!("fail:{}", f.message).into_bytes(),
    };
    options
        .replicas
        .broadcast(&mut word)
        .map_err(RunFailure::new)?;
    let decision = match word.as_slice() {
        b"train" => Decision::Train,
        b"reuse" => Decision::Reuse,
        other => Decision::Fail(RunFailure::new(format!(
            "replica 0: {}",
            String::from_utf8_lossy(other.strip_prefix(b"fail:").unwrap_or(other))
        ))),
    };
    Ok((decision, guard))
}

fn train_one(
    experiment: &Experiment,
    planned: &PlannedRun,
    options: &RunOptions,
) -> Result<RunResult, RunFailure> {
    let dir = RunDir::new(&planned.dir);
    let writer = options.replicas.rank() == 0;
    let (decision, _lock) = take_run(planned, options)?;
    match decision {
        Decision::Train => {}
        Decision::Reuse => return Ok(RunResult::Reused(super::plan::progress_of(&planned.dir))),
        Decision::Fail(f) => return Err(f),
    }
    let run = &planned.run;

    // The run's precision holds until it returns; table evaluations after it compute in f32.
    let _precision = crate::device::apply_precision(run.config.train.precision, &options.device)
        .map_err(|why| RunFailure::bad_input(format!("train.precision: {why}")))?;
    let data =
        prepare_datasets(&run.config.data, &options.results).map_err(RunFailure::bad_input)?;
    let manifest: Vec<(String, u64)> = data
        .train
        .samples
        .iter()
        .map(|s| {
            let rel = s.path.strip_prefix(&data.train.root).unwrap_or(&s.path);
            (
                rel.to_string_lossy().replace('\\', "/"),
                std::fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0),
            )
        })
        .collect();
    let config_json = serde_json::to_value(&run.config).map_err(RunFailure::new)?;
    let stored = match writer {
        true => stored_provenance(&dir).map_err(RunFailure::new)?,
        false => None,
    };
    let mut provenance = stored.unwrap_or_else(|| {
        Provenance::start(
            config_json,
            run.config.seed,
            options.device_name.clone(),
            manifest_hash(&manifest),
        )
    });
    provenance.status = RunStatus::Running;
    if writer {
        dir.write_provenance(&provenance).map_err(RunFailure::new)?;
    }

    let progress = if options.show_progress && writer {
        Progress::auto(run.name.clone())
    } else {
        Progress::quiet()
    };
    let tensorboard = writer.then(|| tensorboard_sink(&dir, run)).flatten();
    let refresher = options
        .live_report
        .as_ref()
        .filter(|_| writer)
        .map(|live| ReportRefresher::new(experiment, &options.results, live));
    let mut observers = Observers::default();
    if let Some(t) = &tensorboard {
        observers.0.push(t);
    }
    if let Some(r) = &refresher {
        observers.0.push(r);
    }
    let job = TrainJob {
        config: &run.config,
        config_hash: &run.hash,
        dir: &dir,
        train_set: &data.train,
        val_set: &data.val,
        device: &options.device,
        threads: options.threads,
        stop_after_steps: None,
        stop: options.stop,
        progress,
        replicas: options.replicas.clone(),
        observer: &observers,
    };
    let outcome = match train_run(&job) {
        Ok(outcome) => outcome,
        Err(e) => {
            provenance.finish(RunStatus::Failed {
                message: e.to_string(),
            });
            if writer {
                let _ = dir.write_provenance(&provenance);
            }
            return Err(match e {
                TrainError::Data(e @ (DataError::Decode { .. } | DataError::Io { .. })) => {
                    RunFailure::bad_input(format!(
                        "{e} (set `data.skip_bad_images: true` to leave unreadable images out)"
                    ))
                }
                e if e.is_bad_input() => RunFailure::bad_input(e),
                TrainError::Checkpoint(e) if matches!(*e, CheckpointError::NoneIntact { .. }) => {
                    RunFailure::new(format!(
                        "{e}. Start the run over with `{}` (its files are moved to {}, not deleted)",
                        restart_command(experiment, &run.name, options),
                        options.results.join("set-aside").display()
                    ))
                }
                e => RunFailure::new(e),
            });
        }
    };
    match &outcome {
        RunOutcome::Finished { skipped_images, .. } => {
            // A run finished again from its last checkpoint reads no images: keep the list.
            let skipped: Vec<SkippedImage> = skipped_images
                .iter()
                .map(|b| SkippedImage {
                    path: b
                        .path
                        .strip_prefix(&data.train.root)
                        .or_else(|_| b.path.strip_prefix(&data.val.root))
                        .unwrap_or(&b.path)
                        .to_path_buf(),
                    reason: b.reason.clone(),
                })
                .collect();
            for s in skipped {
                if !provenance.skipped_images.contains(&s) {
                    provenance.skipped_images.push(s);
                }
            }
            provenance.finish(RunStatus::Done)
        }
        RunOutcome::Diverged { step, .. } => provenance.finish(RunStatus::Diverged { step: *step }),
        RunOutcome::Stopped { .. } | RunOutcome::Interrupted { .. } => {}
    }
    if !writer {
        return Ok(RunResult::Trained(outcome));
    }
    dir.write_provenance(&provenance).map_err(RunFailure::new)?;
    if !matches!(
        outcome,
        RunOutcome::Stopped { .. } | RunOutcome::Interrupted { .. }
    ) {
        write_done(&dir, &provenance).map_err(RunFailure::new)?;
        // The page shows the run finished, not training, until the next rendering.
        if let Some(r) = &refresher {
            r.refresh();
        }
    }
    Ok(RunResult::Trained(outcome))
}

/// A new TensorBoard events file for this session of `run`, or a warning and none.
fn tensorboard_sink(dir: &RunDir, run: &crate::experiment::ResolvedRun) -> Option<TensorBoardSink> {
    let config = serde_yaml::to_string(&run.config).unwrap_or_default();
    TensorBoardSink::create(dir.root(), &run.name, &config)
        .map_err(|e| {
            tracing::warn!(
                "cannot create a TensorBoard events file in {}: {e}; training goes on without it",
                dir.root().display()
            )
        })
        .ok()
}

/// `repro run FILE <flags> --restart RUN`, for a user to copy.
fn restart_command(experiment: &Experiment, run: &str, options: &RunOptions) -> String {
    let mut argv = vec![
        "repro".to_string(),
        "run".to_string(),
        experiment.path.display().to_string(),
    ];
    argv.extend(options.command_flags.iter().cloned());
    argv.extend(["--restart".to_string(), run.to_string()]);
    crate::shell::shell_line(&argv)
}

fn lock(dir: &Path, wait: Option<Duration>) -> Result<RunLock, LockError> {
    match wait {
        Some(timeout) => RunLock::acquire_waiting(dir, timeout),
        None => RunLock::acquire(dir),
    }
}

/// Removes what a previous training of the run left (`--force`), keeping the lock file.
fn clear_run(dir: &RunDir) -> Result<(), String> {
    let remove = |p: PathBuf| -> Result<(), String> {
        let result = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match result {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("cannot remove {}: {e}", p.display()))
            }
            _ => Ok(()),
        }
    };
    remove(dir.done_marker())?;
    remove(dir.checkpoints())?;
    remove(dir.metrics_parquet())?;
    remove(dir.provenance_json())?;
    remove(dir.root().join(crate::store::layout::CHECKSUMS_FILE))?;
    remove(crate::train::final_weights_path(dir.root()))?;
    for events in dir.tensorboard_files() {
        remove(events)?;
    }
    dir.create().map_err(|e| e.to_string())
}
