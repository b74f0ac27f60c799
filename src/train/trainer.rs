//! The training loop of one run: the paper's recipe (section 4), periodic single-crop
//! evaluation with the moving-average weights, metrics in Parquet, checkpoints that resume
//! exactly, and a clean stop when the loss diverges. Its observer (a [`RunObserver`]: the
//! runner's TensorBoard events and report) hears of every step and evaluation.
//!
//! Determinism: the batch order and every augmentation depend only on (seed, epoch, index),
//! dropout masks on (seed, step), and the checkpoint carries the loss accumulator, so a run
//! killed at any point and resumed from its last checkpoint writes the same metrics as one
//! that never stopped (on the CPU).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};

use super::evaluate::{evaluate_logits, evaluate_single_crop, EvalScore};
use super::progress::Progress;
use super::step::{StepOutcome, TrainStep};
use super::vars::sorted_vars;
use super::{tensor_err, RunConfig, TrainError};
use crate::data::{
    ColorDistortion, Dataset, EvalTransform, Interpolation, Loader, LoaderConfig, Preprocess,
    SkippedImage, TrainAugment,
};
use crate::data::{ColorMode, InterpolationMode};
use crate::interrupt::StopSignal;
use crate::models::import;
use crate::replicas::{any_replica, Replicas};
use crate::store::checkpoint::{
    Checkpoint, Loaded, OnDamage, TrainingState, CHECKPOINT_FORMAT_VERSION,
};
use crate::store::diagnostics::{append_diagnostics, DiagnosticsRow};
use crate::store::integrity::set_aside;
use crate::store::metrics::{read_metrics, MetricsRow};
use crate::store::RunDir;
use crate::watch::{EvalPoint, RunObserver, RunStart, StepPoint};

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum RunOutcome {
    /// All epochs trained; the final weights are in `final.safetensors`. `skipped_images`
    /// lists the files left out because they could not be decoded (`skip_bad_images`).
    Finished {
        steps: u64,
        last: Option<EvalScore>,
        skipped_images: Vec<SkippedImage>,
    },
    /// The loss (or the gradient norm) became NaN or infinite at `step`.
    Diverged { step: u64, loss: f64 },
    /// Stopped early on request (`stop_after_steps`), as a kill would.
    Stopped { step: u64 },
    /// Stopped by [`TrainJob::stop`] (Ctrl-C, SIGTERM) after saving a checkpoint at `step`.
    Interrupted { step: u64 },
}

/// What the runner hands the trainer.
pub struct TrainJob<'a> {
    pub config: &'a RunConfig,
    /// The hash of `config`; checkpoints of another configuration are refused.
    pub config_hash: &'a str,
    pub dir: &'a RunDir,
    pub train_set: &'a Dataset,
    pub val_set: &'a Dataset,
    pub device: &'a Device,
    /// Decode threads (0 = all cores).
    pub threads: usize,
    /// Stop without saving after this many steps in total (tests simulate a kill with it).
    pub stop_after_steps: Option<u64>,
    /// Checked after every step: when set, the trainer saves a checkpoint and returns
    /// [`RunOutcome::Interrupted`].
    pub stop: StopSignal,
    pub progress: Progress,
    /// The processes training this run together; only rank 0 evaluates and writes.
    pub replicas: Replicas,
    /// Told of the start, every step and every evaluation (replica 0 only).
    pub observer: &'a dyn RunObserver,
}

/// Everything that lives for the duration of the run.
struct Session {
    model: TrainStep,
    train_loader: Loader,
    val_loader: Loader,
    /// The validation images in a seeded shuffled order (`train.diagnostics` only): batch
    /// statistics over the class-sorted order would normalise the class signal away.
    val_mixed: Option<Loader>,
    steps_per_epoch: u64,
    total_steps: u64,
    /// Micro-batches this process runs per update.
    micro_per_process: usize,
}

/// Trains (or resumes) one run to the end, writing metrics and checkpoints into `job.dir`.
/// The caller holds the run's lock.
pub fn train_run(job: &TrainJob) -> Result<RunOutcome, TrainError> {
    let cfg = job.config;
    let writer = job.replicas.rank() == 0;
    let mut s = Session::new(job)?;
    let (mut state, mut history) = resume(job, &mut s)?;
    check_same_weights(job, &s, &state)?;
    if writer && job.replicas.world_size() > 1 {
        tracing::info!(
            "training on {} processes, {} replicas in all",
            job.replicas.world_size(),
            cfg.train.replicas
        );
    }

    let eval_every =
        ((cfg.train.eval_every_epochs * s.steps_per_epoch as f64).round() as u64).max(1);
    let session_start = Instant::now();
    let wall_before = state.wall_s;
    let mut interval_start = Instant::now();
    let mut interval_images = 0u64;
    let mut interval_correct = 0u64;
    let (mut interval_norm_sum, mut interval_steps) = (0.0f64, 0u64);
    let mut last_score = None;
    job.progress.start(s.total_steps, state.step);
    if writer {
        job.observer.started(&RunStart {
            step: state.step,
            total_steps: s.total_steps,
            eval_every_steps: eval_every,
        });
    }
    let lr_scale = cfg
        .train
        .lr
        .batch_scale(cfg.train.batch_size * cfg.train.micro_batches());

    while state.step < s.total_steps {
        let epoch = state.epoch;
        let accumulate = s.micro_per_process;
        let start_batch = state.batch_in_epoch as usize * accumulate;
        let mut micro = Vec::with_capacity(accumulate);
        for batch in s.train_loader.iter_epoch(epoch, start_batch) {
            micro.push(batch?);
            if micro.len() < accumulate {
                continue;
            }
            let batches = std::mem::take(&mut micro);
            let lr = cfg
                .train
                .lr
                .lr_at(state.step as f64 / s.steps_per_epoch as f64)
                * lr_scale;
            let pairs: Vec<(&Tensor, &Tensor)> =
                batches.iter().map(|b| (&b.images, &b.labels)).collect();
            let (loss_value, n, grad_norm) = match s.model.step_micro(&pairs, lr, state.step)? {
                StepOutcome::Updated {
                    loss,
                    top1_correct,
                    grad_norm,
                    images,
                } => {
                    interval_correct += top1_correct;
                    interval_norm_sum += grad_norm;
                    interval_steps += 1;
                    (loss, images, grad_norm)
                }
                StepOutcome::Diverged { value } => return diverge(job, &state, value),
            };
            state.step += 1;
            state.batch_in_epoch += 1;
            state.images_seen += n;
            state.loss_sum += loss_value;
            state.loss_count += 1;
            interval_images += n;
            if state.batch_in_epoch == s.steps_per_epoch {
                state.epoch += 1;
                state.batch_in_epoch = 0;
            }
            job.progress.step(
                state.step,
                epoch_f(&state, s.steps_per_epoch),
                loss_value,
                lr,
            );
            if writer {
                job.observer.stepped(&StepPoint {
                    step: state.step,
                    epoch: epoch_f(&state, s.steps_per_epoch),
                    loss: loss_value,
                    lr,
                    grad_norm,
                });
            }

            if job.stop_after_steps == Some(state.step) {
                job.progress.finish();
                return Ok(RunOutcome::Stopped { step: state.step });
            }
            let at_eval = state.step % eval_every == 0 || state.step == s.total_steps;
            if at_eval && writer {
                let train_seconds = interval_start.elapsed().as_secs_f64();
                let score = evaluate_with_ema(&s)?;
                state.wall_s = wall_before + session_start.elapsed().as_secs_f64();
                let row = MetricsRow {
                    epoch: epoch_f(&state, s.steps_per_epoch),
                    step: state.step,
                    images_seen: state.images_seen,
                    lr,
                    train_loss: state.loss_sum / state.loss_count.max(1) as f64,
                    top1_err: Some(score.top1_err),
                    top5_err: Some(score.top5_err),
                    eval_images: score.images,
                    images_per_s: interval_images as f64 / train_seconds.max(1e-9),
                    wall_s: state.wall_s,
                    pre_pool_zero_frac: score.pre_pool.map(|a| a.zero_frac),
                    pre_pool_dead_channel_frac: score.pre_pool.map(|a| a.dead_channel_frac),
                };
                job.progress.eval(&row);
                let diagnostics = match cfg.train.diagnostics {
                    true => {
                        let train_top1_err =
                            1.0 - interval_correct as f64 / interval_images.max(1) as f64;
                        let grad_norm = interval_norm_sum / interval_steps.max(1) as f64;
                        let diagnostics = diagnose(&s, &row, train_top1_err, grad_norm)?;
                        append_diagnostics(
                            &job.dir.diagnostics_parquet(),
                            state.step - 1,
                            diagnostics.clone(),
                        )?;
                        Some(diagnostics)
                    }
                    false => None,
                };
                history.push(row);
                job.dir.write_metrics(&history)?;
                // Before the checkpoint: a run killed in between resumes from an earlier
                // one and tells the observers so, and they drop this evaluation then.
                job.observer.evaluated(&EvalPoint {
                    row: history.last().expect("just pushed"),
                    diagnostics: diagnostics.as_ref(),
                });
                state.loss_sum = 0.0;
                state.loss_count = 0;
                last_score = Some(score);
                save(job, &s, &state, &history)?;
                interval_start = Instant::now();
                interval_images = 0;
                interval_correct = 0;
                (interval_norm_sum, interval_steps) = (0.0, 0);
            } else if state.step % cfg.train.checkpoint_every_steps.max(1) == 0 && writer {
                state.wall_s = wall_before + session_start.elapsed().as_secs_f64();
                save(job, &s, &state, &history)?;
            }
            // Every replica stops at the same step when any was asked to.
            if any_replica(job.replicas.as_ref(), job.stop.requested())? {
                state.wall_s = wall_before + session_start.elapsed().as_secs_f64();
                if writer {
                    save(job, &s, &state, &history)?;
                }
                job.progress.finish();
                return Ok(RunOutcome::Interrupted { step: state.step });
            }
            if state.step >= s.total_steps {
                break;
            }
        }
        // An epoch cut short (every image of its last batches unreadable) still ends.
        if state.epoch == epoch && state.step < s.total_steps {
            state.epoch += 1;
            state.batch_in_epoch = 0;
        }
    }
    job.progress.finish();
    if writer {
        export_final(job, &s)?;
    }
    let mut skipped_images = s.train_loader.bad_images();
    skipped_images.extend(s.val_loader.bad_images());
    // A file the training and the validation images share is one file skipped, not two.
    let mut seen = std::collections::HashSet::new();
    skipped_images.retain(|b| seen.insert(b.path.clone()));
    Ok(RunOutcome::Finished {
        steps: state.step,
        last: last_score,
        skipped_images,
    })
}

impl Session {
    fn new(job: &TrainJob) -> Result<Self, TrainError> {
        let cfg = job.config;
        if job.train_set.num_classes() != cfg.model.num_classes {
            return Err(TrainError::Setup(format!(
                "the training set has {} classes but model.num_classes is {}",
                job.train_set.num_classes(),
                cfg.model.num_classes
            )));
        }
        let mut model = TrainStep::new(&cfg.model, &cfg.train, cfg.seed, job.device)?;
        model.set_replicas(job.replicas.clone());
        let world = job.replicas.world_size();
        let micro_per_process = cfg
            .train
            .micro_batches_per_process(world)
            .map_err(TrainError::Setup)?;

        let size = cfg.model.image_size as u32;
        let [lo, hi] = cfg.data.train_crop_area;
        let augment = TrainAugment {
            image_size: size,
            area_range: (lo, hi),
            color: color(cfg.data.color_distortion),
            ..TrainAugment::default()
        };
        let mut train_cfg = LoaderConfig::new(cfg.train.batch_size, Preprocess::Train(augment));
        train_cfg.seed = cfg.seed;
        train_cfg.drop_last = true;
        train_cfg.num_threads = job.threads;
        train_cfg.skip_bad_images = cfg.data.skip_bad_images;
        (train_cfg.rank, train_cfg.world_size) = (job.replicas.rank(), world);
        let train_loader = Loader::new(job.train_set, train_cfg, job.device)?;
        let steps_per_epoch = (train_loader.len() / micro_per_process) as u64;
        if steps_per_epoch == 0 {
            return Err(TrainError::Setup(format!(
                "the training set ({} images) is smaller than one update of {} x {} images",
                job.train_set.len(),
                cfg.train.micro_batches(),
                cfg.train.batch_size
            )));
        }
        let val_loader = Loader::new(
            job.val_set,
            eval_loader_config(cfg, job.threads),
            job.device,
        )?;
        let total_steps = (cfg.train.epochs * steps_per_epoch as f64).round().max(1.0) as u64;
        let val_mixed = if cfg.train.diagnostics {
            let mut c = eval_loader_config(cfg, job.threads);
            c.shuffle = true;
            c.seed = 0;
            Some(Loader::new(job.val_set, c, job.device)?)
        } else {
            None
        };
        Ok(Self {
            model,
            train_loader,
            val_loader,
            val_mixed,
            steps_per_epoch,
            total_steps,
            micro_per_process,
        })
    }
}

/// The single-crop evaluation loader of a run (central crop, in order, every image).
pub fn eval_loader_config(cfg: &RunConfig, threads: usize) -> LoaderConfig {
    let transform = EvalTransform {
        image_size: cfg.model.image_size as u32,
        crop_fraction: cfg.data.eval_crop_fraction,
        interpolation: interpolation(cfg.data.interpolation),
    };
    let mut c = LoaderConfig::new(cfg.train.eval_batch_size, Preprocess::Eval(transform));
    c.shuffle = false;
    c.drop_last = false;
    c.num_threads = threads;
    c.skip_bad_images = cfg.data.skip_bad_images;
    c
}

fn color(mode: ColorMode) -> ColorDistortion {
    match mode {
        ColorMode::Off => ColorDistortion::Off,
        ColorMode::Fast => ColorDistortion::Fast,
        ColorMode::Full => ColorDistortion::Full,
    }
}

fn interpolation(mode: InterpolationMode) -> Interpolation {
    match mode {
        InterpolationMode::Bilinear => Interpolation::Bilinear,
        InterpolationMode::Bicubic => Interpolation::Bicubic,
    }
}

fn evaluate_with_ema(s: &Session) -> Result<EvalScore, TrainError> {
    let live = s.model.ema.swap_in()?;
    let score = evaluate_single_crop(&s.model.net, &s.val_loader);
    live.restore()?;
    score
}

/// The live weights evaluated with their running statistics and with batch statistics (the
/// running statistics restored afterwards), beside the EMA's error of `row`.
fn diagnose(
    s: &Session,
    row: &MetricsRow,
    train_top1_err: f64,
    grad_norm: f64,
) -> Result<DiagnosticsRow, TrainError> {
    let raw = evaluate_single_crop(&s.model.net, &s.val_loader)?;
    let stats: Vec<(candle_core::Var, Tensor)> = sorted_vars(&s.model.varmap)
        .into_iter()
        .filter(|(name, _)| name.ends_with("running_mean") || name.ends_with("running_var"))
        .map(|(_, var)| {
            let saved = var.as_tensor().copy()?;
            Ok((var, saved))
        })
        .collect::<candle_core::Result<_>>()
        .map_err(tensor_err("saving the running statistics"))?;
    let mixed = s.val_mixed.as_ref().unwrap_or(&s.val_loader);
    let batch_stats = evaluate_logits(mixed, |x| s.model.net.forward_batch_statistics(x));
    for (var, saved) in &stats {
        var.set(saved)
            .map_err(tensor_err("restoring the running statistics"))?;
    }
    Ok(DiagnosticsRow {
        step: row.step,
        epoch: row.epoch,
        train_top1_err,
        ema_top1_err: row.top1_err.unwrap_or(f64::NAN),
        raw_top1_err: raw.top1_err,
        raw_batchstats_top1_err: batch_stats?.top1_err,
        grad_norm,
    })
}

/// Restores the newest intact checkpoint, if any, into the session; returns where training
/// stands and the metrics rows up to there (also written to `metrics.parquet`).
fn resume(job: &TrainJob, s: &mut Session) -> Result<(TrainingState, Vec<MetricsRow>), TrainError> {
    let writer = job.replicas.rank() == 0;
    let fresh = TrainingState {
        format_version: CHECKPOINT_FORMAT_VERSION,
        step: 0,
        epoch: 0,
        batch_in_epoch: 0,
        images_seen: 0,
        rng_seed: job.config.seed,
        rng_state: Vec::new(),
        ema_num_updates: 0,
        config_hash: job.config_hash.to_string(),
        loss_sum: 0.0,
        loss_count: 0,
        wall_s: 0.0,
    };
    let on_damage = match writer {
        true => OnDamage::SetAside(job.dir.damaged()),
        false => OnDamage::Skip,
    };
    let Some(Loaded {
        checkpoint: ckpt,
        path,
        rejected,
    }) = job.dir.checkpoint_store().load(job.device, &on_damage)?
    else {
        let history = resumed_metrics(job, None, 0)?;
        return Ok((fresh, history));
    };
    if writer {
        for r in &rejected {
            tracing::warn!("{r}");
        }
        if let Some(newest) = rejected.iter().filter_map(|r| r.step).max() {
            let lost = newest.saturating_sub(ckpt.state.step);
            tracing::warn!(
                "resuming from the checkpoint at step {} instead: {lost} {} to train again",
                ckpt.state.step,
                if lost == 1 { "step" } else { "steps" }
            );
        }
    }
    ckpt.check_config(&path, job.config_hash)?;
    let shapes: HashMap<String, Vec<usize>> = sorted_vars(&s.model.varmap)
        .into_iter()
        .map(|(k, v)| (k, v.dims().to_vec()))
        .collect();
    ckpt.check_shapes(&path, &shapes)?;
    import::load_state_dict(&s.model.varmap, ckpt.weights, &path.display().to_string())?;
    s.model.optimizer.load_state(ckpt.optim)?;
    s.model
        .ema
        .load_state(ckpt.ema, ckpt.state.ema_num_updates)?;
    tracing::info!(
        step = ckpt.state.step,
        epoch = ckpt.state.epoch,
        "resuming from {}",
        path.display()
    );
    let history = resumed_metrics(job, ckpt.metrics, ckpt.state.step)?;
    Ok((ckpt.state, history))
}

/// The metrics rows a run resumed at `step` continues from, written to `metrics.parquet`
/// (replica 0): the checkpoint's copy when it has one (a damaged or different
/// `metrics.parquet` is moved aside with a warning), else the file's rows up to `step`
/// (rows after it are computed again).
fn resumed_metrics(
    job: &TrainJob,
    from_checkpoint: Option<Vec<MetricsRow>>,
    step: u64,
) -> Result<Vec<MetricsRow>, TrainError> {
    if job.replicas.rank() != 0 {
        return Ok(from_checkpoint.unwrap_or_default());
    }
    let path = job.dir.metrics_parquet();
    let on_disk = path.exists().then(|| read_metrics(&path));
    let set_aside_with = |why: String| -> Result<(), TrainError> {
        let moved =
            set_aside(&path, &job.dir.damaged()).map_err(|source| TrainError::SetAside {
                path: path.clone(),
                source,
            })?;
        tracing::warn!("{why}; moved to {}", moved.display());
        Ok(())
    };
    let rows = match (from_checkpoint, on_disk) {
        (Some(saved), Some(Ok(found))) => {
            let kept: Vec<MetricsRow> = found.into_iter().filter(|r| r.step <= step).collect();
            if kept != saved {
                set_aside_with(format!(
                    "{} differs from the copy in the checkpoint at step {step} and is rebuilt from it",
                    path.display()
                ))?;
            }
            saved
        }
        (Some(saved), Some(Err(e))) => {
            set_aside_with(format!(
                "{e}; rebuilt from the copy in the checkpoint at step {step}"
            ))?;
            saved
        }
        (Some(saved), None) => saved,
        (None, Some(Ok(found))) => found.into_iter().filter(|r| r.step <= step).collect(),
        (None, Some(Err(e))) => {
            set_aside_with(format!(
                "{e}; the checkpoint at step {step} holds no copy, so the evaluations before it are lost"
            ))?;
            Vec::new()
        }
        (None, None) => Vec::new(),
    };
    job.dir.write_metrics(&rows)?;
    Ok(rows)
}

fn save(
    job: &TrainJob,
    s: &Session,
    state: &TrainingState,
    history: &[MetricsRow],
) -> Result<(), TrainError> {
    let weights: HashMap<String, Tensor> = sorted_vars(&s.model.varmap)
        .into_iter()
        .map(|(k, v)| (k, v.as_tensor().clone()))
        .collect();
    let mut state = state.clone();
    state.ema_num_updates = s.model.ema.num_updates();
    let ckpt = Checkpoint {
        state,
        weights,
        ema: s.model.ema.tensors(),
        optim: s.model.optimizer.state(),
        metrics: Some(history.to_vec()),
    };
    job.dir
        .checkpoint_store()
        .save(&ckpt, job.config.train.keep_checkpoints)?;
    Ok(())
}

/// The moving-average weights, as a timm state dict: what evaluation and users load.
fn export_final(job: &TrainJob, s: &Session) -> Result<(), TrainError> {
    let live = s.model.ema.swap_in()?;
    let result = import::save_timm_weights(&s.model.varmap, &final_weights_path(job.dir.root()), 0)
        .map_err(TrainError::from);
    live.restore()?;
    result
}

/// `final.safetensors` in a run folder: the EMA weights under timm's names.
pub fn final_weights_path(run_dir: &Path) -> std::path::PathBuf {
    RunDir::new(run_dir).final_weights()
}

fn diverge(job: &TrainJob, state: &TrainingState, value: f64) -> Result<RunOutcome, TrainError> {
    job.progress.finish();
    tracing::warn!(
        step = state.step + 1,
        value,
        "loss diverged; the run stops here"
    );
    Ok(RunOutcome::Diverged {
        step: state.step + 1,
        loss: value,
    })
}

/// Checks that every replica starts from the same weights (seeded alike, or read from the
/// same checkpoint): rank 0's checksum is broadcast and compared.
fn check_same_weights(
    job: &TrainJob,
    s: &Session,
    state: &TrainingState,
) -> Result<(), TrainError> {
    if job.replicas.world_size() == 1 {
        return Ok(());
    }
    let mut sum = crate::hashing::fnv1a64(&[]);
    for (name, var) in sorted_vars(&s.model.varmap) {
        let values = var
            .as_tensor()
            .flatten_all()
            .and_then(|t| t.to_dtype(candle_core::DType::F32))
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(tensor_err("checksum of the weights"))?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        sum ^= crate::hashing::fnv1a64(name.as_bytes()) ^ crate::hashing::fnv1a64(&bytes);
    }
    let mine = format!("{sum:016x}@{}", state.step);
    let mut first = mine.clone().into_bytes();
    job.replicas.broadcast(&mut first)?;
    let first = String::from_utf8_lossy(&first);
    if first != mine {
        return Err(TrainError::Setup(format!(
            "replica {} starts from other weights than replica 0 (checksum@step {mine} against {first}): every replica must see the same run folder",
            job.replicas.rank()
        )));
    }
    Ok(())
}

/// The fractional epoch reached after `state.step` steps.
fn epoch_f(state: &TrainingState, steps_per_epoch: u64) -> f64 {
    state.step as f64 / steps_per_epoch as f64
}
