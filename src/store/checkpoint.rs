//! Training checkpoints that survive crashes and damage.
//!
//! A run folder's `checkpoints/` keeps the last K checkpoints (`train.keep_checkpoints`), a
//! folder each, named by step (`step-000001200/`):
//!
//! - `weights.safetensors` (the model's `VarMap`, timm names), `ema.safetensors`,
//!   `optim.safetensors`;
//! - `state.json`, the training position;
//! - `metrics.parquet`, the run's metrics rows up to this step, so that a damaged
//!   `metrics.parquet` of the run folder is rebuilt exactly from the checkpoint it resumes;
//! - `manifest.json`, written last: the size and checksum of every other file
//!   ([`FileManifest`]). A folder without a valid manifest is not a checkpoint.
//!
//! Saving fills a temporary folder, renames it into place and only then removes the oldest
//! checkpoints beyond K, so a crash at any point leaves the previous checkpoints intact.
//! Loading takes the newest checkpoint whose files match its manifest and parse. Each newer
//! one that does not is moved to the run's `damaged/` folder (never deleted) and reported
//! with what was wrong; when no checkpoint is intact, loading fails rather than start over.
//!
//! Run folders written before manifests existed have one slot, `checkpoints/latest/` (and
//! `latest.previous` after a crash mid-swap); those still load, checked only by parsing.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::atomic::{self, AtomicWriteError, TEMP_PREFIX};
use super::integrity::{set_aside, Damage, FileManifest};
use super::metrics::{read_metrics, write_metrics, MetricsError, MetricsRow};

/// Version of the checkpoint layout and `state.json` schema written by this code.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;
/// Model weights (including BatchNorm running statistics), timm tensor names.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// Moving averages of the weights, same names as [`WEIGHTS_FILE`].
pub const EMA_FILE: &str = "ema.safetensors";
/// Optimizer slots, named `<var>.<slot>`.
pub const OPTIM_FILE: &str = "optim.safetensors";
/// Training position.
pub const STATE_FILE: &str = "state.json";
/// The run's metrics rows up to the checkpoint's step.
pub const METRICS_FILE: &str = "metrics.parquet";
/// Sizes and checksums of the other files; written last.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Checkpoints kept when the run does not say (`train.keep_checkpoints`).
pub const DEFAULT_KEEP: usize = 2;

const STEP_PREFIX: &str = "step-";
/// The one slot of checkpoints written before manifests existed, and its swap partner.
const LEGACY_SLOTS: [&str; 2] = ["latest", "latest.previous"];

/// Errors of saving or loading checkpoints; each names the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file-system step failed.
    #[error("checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing one of the files failed.
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
    /// Writing the metrics copy failed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The checkpoint was written by an incompatible version of this program.
    #[error("checkpoint {path}: format version {found}, this program reads {expected}")]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// Tensor names or shapes differ from what the model expects.
    #[error("checkpoint {path}: {} problem(s): {}", problems.len(), problems.join("; "))]
    Shapes {
        path: PathBuf,
        problems: Vec<String>,
    },
    /// The checkpoint belongs to a run with another configuration.
    #[error("checkpoint {path}: config hash {found}, this run has {expected}")]
    ConfigMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
    /// There were checkpoints, and none of them is intact.
    #[error("no checkpoint in {dir} is intact: {}", list_rejected(rejected))]
    NoneIntact {
        dir: PathBuf,
        rejected: Vec<Rejected>,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where training stands, as plain numbers (`state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingState {
    /// [`CHECKPOINT_FORMAT_VERSION`] at writing time.
    pub format_version: u32,
    /// Optimizer steps taken.
    pub step: u64,
    /// The epoch in progress (0-based).
    pub epoch: u64,
    /// Batches of `epoch` already consumed; training resumes at this batch.
    pub batch_in_epoch: u64,
    /// Training images consumed.
    pub images_seen: u64,
    /// The run's seed.
    pub rng_seed: u64,
    /// The data/augmentation RNG state, as the loader exports it.
    pub rng_state: Vec<u64>,
    /// Updates applied to the moving average (drives its warm-up).
    pub ema_num_updates: u64,
    /// Hash of the resolved run configuration.
    pub config_hash: String,
    /// Sum and count of the training losses since the last metrics row, so that a resumed
    /// run reports the same mean loss as an uninterrupted one.
    #[serde(default)]
    pub loss_sum: f64,
    #[serde(default)]
    pub loss_count: u64,
    /// Training wall-clock seconds before this checkpoint (over all sessions of the run).
    #[serde(default)]
    pub wall_s: f64,
}

/// A checkpoint in memory: the training position, the three tensor maps and the metrics.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Training position.
    pub state: TrainingState,
    /// Model variables by name.
    pub weights: HashMap<String, Tensor>,
    /// Moving averages by name (empty when the run keeps none).
    pub ema: HashMap<String, Tensor>,
    /// Optimizer slots by name.
    pub optim: HashMap<String, Tensor>,
    /// The run's metrics rows up to `state.step`; `None` in checkpoints written before they
    /// carried them.
    pub metrics: Option<Vec<MetricsRow>>,
}

/// A checkpoint passed over when loading, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Its step, when its folder name or `state.json` says.
    pub step: Option<u64>,
    /// The first problem found.
    pub damage: Damage,
    /// Where it was moved (`None` when it was left in place).
    pub moved_to: Option<PathBuf>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(step) => write!(
                f,
                "the checkpoint at step {step} is damaged ({})",
                self.damage
            )?,
            None => write!(f, "a checkpoint is damaged ({})", self.damage)?,
        }
        match &self.moved_to {
            Some(p) => write!(f, "; moved to {}", p.display()),
            None => Ok(()),
        }
    }
}

fn list_rejected(rejected: &[Rejected]) -> String {
    rejected
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The checkpoint loading found, where it was, and the newer ones it passed over.
#[derive(Debug)]
pub struct Loaded {
    pub checkpoint: Checkpoint,
    pub path: PathBuf,
    pub rejected: Vec<Rejected>,
}

/// What loading does with a damaged checkpoint.
#[derive(Debug, Clone)]
pub enum OnDamage {
    /// Move it into this folder (the process that owns the run folder).
    SetAside(PathBuf),
    /// Leave it where it is (other replicas, which only read).
    Skip,
}

/// The checkpoints of one run: the folder `checkpoints/` of its run folder.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
}

/// A folder that may hold a checkpoint, newest first after sorting.
struct Candidate {
    path: PathBuf,
    step: Option<u64>,
    legacy: bool,
}

/// `step-000001200`.
fn step_folder_name(step: u64) -> String {
    format!("{STEP_PREFIX}{step:09}")
}

impl Checkpoints {
    /// The checkpoints in `dir` (the run folder's `checkpoints/`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Saves `checkpoint` as a new folder, then removes all but the newest `keep` (at least
    /// one). Returns the new folder. The caller must hold the run lock.
    pub fn save(&self, checkpoint: &Checkpoint, keep: usize) -> Result<PathBuf, CheckpointError> {
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        self.remove_stale_temp_dirs()?;
        let target = self.dir.join(step_folder_name(checkpoint.state.step));
        let incoming = atomic::temp_sibling(&target);
        fs::create_dir(&incoming).map_err(io_err(&incoming))?;
        let result = fill(&incoming, checkpoint).and_then(|()| self.commit(&incoming, &target));
        if result.is_err() {
            let _ = fs::remove_dir_all(&incoming);
        }
        result?;
        self.prune(keep.max(1))?;
        Ok(target)
    }

    /// Renames the filled folder into place (replacing a checkpoint of the same step).
    fn commit(&self, incoming: &Path, target: &Path) -> Result<(), CheckpointError> {
        let replaced = target.exists().then(|| atomic::temp_sibling(target));
        if let Some(old) = &replaced {
            fs::rename(target, old).map_err(io_err(target))?;
        }
        fs::rename(incoming, target).map_err(io_err(target))?;
        atomic::sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        if let Some(old) = &replaced {
            fs::remove_dir_all(old).map_err(io_err(old))?;
        }
        Ok(())
    }

    /// Removes every checkpoint but the newest `keep`.
    fn prune(&self, keep: usize) -> Result<(), CheckpointError> {
        for old in self.candidates()?.into_iter().skip(keep) {
            fs::remove_dir_all(&old.path).map_err(io_err(&old.path))?;
        }
        Ok(())
    }

    /// Removes temporary folders left by a crashed save.
    fn remove_stale_temp_dirs(&self) -> Result<(), CheckpointError> {
        let prefix = format!("{TEMP_PREFIX}{STEP_PREFIX}");
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let path = entry.path();
                fs::remove_dir_all(&path).map_err(io_err(&path))?;
            }
        }
        Ok(())
    }

    /// The folders that may hold checkpoints, newest first (legacy slots after the others
    /// of the same step).
    fn candidates(&self) -> Result<Vec<Candidate>, CheckpointError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if let Some(step) = name.strip_prefix(STEP_PREFIX) {
                if let Ok(step) = step.parse::<u64>() {
                    found.push(Candidate {
                        path,
                        step: Some(step),
                        legacy: false,
                    });
                }
            } else if LEGACY_SLOTS.contains(&name.as_str()) {
                let step = read_state(&path).ok().map(|s| s.step);
                found.push(Candidate {
                    path,
                    step,
                    legacy: true,
                });
            }
        }
        found.sort_by_key(|c| (std::cmp::Reverse(c.step), c.legacy, c.path.clone()));
        Ok(found)
    }

    /// Loads the newest intact checkpoint onto `device`; `Ok(None)` when there is none at
    /// all. Damaged ones newer than it are handled as `on_damage` says and listed in
    /// [`Loaded::rejected`]; when every checkpoint is damaged, [`CheckpointError::NoneIntact`].
    pub fn load(
        &self,
        device: &Device,
        on_damage: &OnDamage,
    ) -> Result<Option<Loaded>, CheckpointError> {
        let mut rejected = Vec::new();
        for candidate in self.candidates()? {
            let opened = match candidate.legacy {
                true => open_legacy(&candidate.path, device)?,
                false => open(&candidate, device)?,
            };
            match opened {
                Ok(checkpoint) => {
                    return Ok(Some(Loaded {
                        checkpoint,
                        path: candidate.path,
                        rejected,
                    }))
                }
                Err(damage) => {
                    let moved_to = match on_damage {
                        OnDamage::SetAside(aside) => Some(
                            set_aside(&candidate.path, aside).map_err(io_err(&candidate.path))?,
                        ),
                        OnDamage::Skip => None,
                    };
                    rejected.push(Rejected {
                        step: candidate.step,
                        damage,
                        moved_to,
                    });
                }
            }
        }
        match rejected.is_empty() {
            true => Ok(None),
            false => Err(CheckpointError::NoneIntact {
                dir: self.dir.clone(),
                rejected,
            }),
        }
    }

    /// Where the newest checkpoint with a readable manifest and state stands, without
    /// checksums or tensors (for `repro plan` and `repro status`); `None` when there is none.
    pub fn newest_state(&self) -> Option<TrainingState> {
        self.newest().map(|(_, state)| state)
    }

    /// [`Self::newest_state`] with the checkpoint's `state.json` (whose time says when the
    /// checkpoint was saved).
    pub fn newest(&self) -> Option<(PathBuf, TrainingState)> {
        self.candidates().ok()?.into_iter().find_map(|c| {
            if !c.legacy {
                FileManifest::read(&c.path.join(MANIFEST_FILE)).ok()?;
            }
            let state = read_state(&c.path).ok()?;
            Some((c.path.join(STATE_FILE), state))
        })
    }
}

fn fill(dir: &Path, c: &Checkpoint) -> Result<(), CheckpointError> {
    atomic::write_safetensors(&dir.join(WEIGHTS_FILE), &c.weights)?;
    atomic::write_safetensors(&dir.join(EMA_FILE), &c.ema)?;
    atomic::write_safetensors(&dir.join(OPTIM_FILE), &c.optim)?;
    atomic::write_json(&dir.join(STATE_FILE), &c.state)?;
    let mut files = vec![WEIGHTS_FILE, EMA_FILE, OPTIM_FILE, STATE_FILE];
    if let Some(rows) = &c.metrics {
        write_metrics(&dir.join(METRICS_FILE), rows)?;
        files.push(METRICS_FILE);
    }
    let manifest = FileManifest::of_files(dir, &files).map_err(io_err(dir))?;
    manifest.write(&dir.join(MANIFEST_FILE))?;
    atomic::sync_dir(dir).map_err(io_err(dir))
}

/// Opens a checkpoint with a manifest: every file checked, then parsed. `Err(Damage)` for
/// any problem of the files; an outer error only for an incompatible format.
fn open(c: &Candidate, device: &Device) -> Result<Result<Checkpoint, Damage>, CheckpointError> {
    let dir = &c.path;
    let checked = (|| {
        let manifest = FileManifest::read(&dir.join(MANIFEST_FILE))?;
        for name in [WEIGHTS_FILE, EMA_FILE, OPTIM_FILE, STATE_FILE] {
            if !manifest.files.contains_key(name) {
                return Err(Damage::new(
                    dir.join(MANIFEST_FILE),
                    format!("does not list {name}"),
                ));
            }
        }
        manifest.verify(dir)?;
        Ok(manifest)
    })();
    let manifest = match checked {
        Ok(m) => m,
        Err(d) => return Ok(Err(d)),
    };
    let state = match read_state(dir) {
        Ok(s) => s,
        Err(d) => return Ok(Err(d)),
    };
    check_version(dir, &state)?;
    if c.step != Some(state.step) {
        return Ok(Err(Damage::new(
            dir.join(STATE_FILE),
            format!("says step {}, the folder's name another", state.step),
        )));
    }
    let metrics = match manifest.files.contains_key(METRICS_FILE) {
        true => match read_metrics(&dir.join(METRICS_FILE)) {
            Ok(rows) => Some(rows),
            Err(e) => return Ok(Err(Damage::new(dir.join(METRICS_FILE), e))),
        },
        false => None,
    };
    Ok(load_tensors(dir, state, metrics, device))
}

/// Opens a checkpoint written before manifests existed: checked by parsing only.
fn open_legacy(dir: &Path, device: &Device) -> Result<Result<Checkpoint, Damage>, CheckpointError> {
    let state = match read_state(dir) {
        Ok(s) => s,
        Err(d) => return Ok(Err(d)),
    };
    check_version(dir, &state)?;
    Ok(load_tensors(dir, state, None, device))
}

fn check_version(dir: &Path, state: &TrainingState) -> Result<(), CheckpointError> {
    match state.format_version == CHECKPOINT_FORMAT_VERSION {
        true => Ok(()),
        false => Err(CheckpointError::Version {
            path: dir.join(STATE_FILE),
            found: state.format_version,
            expected: CHECKPOINT_FORMAT_VERSION,
        }),
    }
}

fn load_tensors(
    dir: &Path,
    state: TrainingState,
    metrics: Option<Vec<MetricsRow>>,
    device: &Device,
) -> Result<Checkpoint, Damage> {
    let load = |file: &str| {
        let path = dir.join(file);
        candle_core::safetensors::load(&path, device)
            .map_err(|e| Damage::new(path, format!("not a readable safetensors file ({e})")))
    };
    Ok(Checkpoint {
        weights: load(WEIGHTS_FILE)?,
        ema: load(EMA_FILE)?,
        optim: load(OPTIM_FILE)?,
        state,
        metrics,
    })
}

/// The `state.json` of `dir`; missing, unreadable or malformed is damage.
fn read_state(dir: &Path) -> Result<TrainingState, Damage> {
    let path = dir.join(STATE_FILE);
    let text = fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Damage::new(&path, "missing"),
        _ => Damage::new(&path, format!("unreadable ({e})")),
    })?;
    serde_json::from_slice(&text)
        .map_err(|e| Damage::new(&path, format!("not a valid training state ({e})")))
}

impl Checkpoint {
    /// Checks that the weights (and the EMA, if any) have exactly the names and shapes of
    /// `expected` (e.g. the model's `VarMap`); all problems are reported at once.
    pub fn check_shapes(
        &self,
        slot: &Path,
        expected: &HashMap<String, Vec<usize>>,
    ) -> Result<(), CheckpointError> {
        let mut problems = shape_problems(WEIGHTS_FILE, &self.weights, expected);
        if !self.ema.is_empty() {
            problems.extend(shape_problems(EMA_FILE, &self.ema, expected));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(CheckpointError::Shapes {
                path: slot.to_path_buf(),
                problems,
            })
        }
    }

    /// Checks that the checkpoint was written by a run with configuration hash `expected`.
    pub fn check_config(&self, slot: &Path, expected: &str) -> Result<(), CheckpointError> {
        if self.state.config_hash == expected {
            Ok(())
        } else {
            Err(CheckpointError::ConfigMismatch {
                path: slot.to_path_buf(),
                found: self.state.config_hash.clone(),
                expected: expected.to_string(),
            })
        }
    }
}

fn shape_problems(
    file: &str,
    found: &HashMap<String, Tensor>,
    expected: &HashMap<String, Vec<usize>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names: Vec<&String> = expected.keys().chain(found.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        match (expected.get(name), found.get(name)) {
            (Some(_), None) => problems.push(format!("{file}: missing `{name}`")),
            (None, Some(_)) => problems.push(format!("{file}: unexpected `{name}`")),
            (Some(want), Some(t)) if t.dims() != want.as_slice() => problems.push(format!(
                "{file}: `{name}` has shape {:?}, expected {want:?}",
                t.dims()
            )),
            _ => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::integrity::sum_file;
    use crate::store::test_files::names_in;
    use candle_core::DType;

    fn tensors(value: f32) -> HashMap<String, Tensor> {
        let t = Tensor::full(value, (64, 3), &Device::Cpu).unwrap();
        HashMap::from([("fc.weight".to_string(), t)])
    }

    fn row(step: u64) -> MetricsRow {
        MetricsRow {
            epoch: step as f64 / 10.0,
            step,
            images_seen: step * 32,
            lr: 0.045,
            train_loss: 2.5,
            top1_err: Some(0.5),
            top5_err: Some(0.25),
            eval_images: 100,
            images_per_s: 10.0,
            wall_s: step as f64,
            pre_pool_zero_frac: None,
            pre_pool_dead_channel_frac: None,
        }
    }

    fn checkpoint(step: u64) -> Checkpoint {
        Checkpoint {
            state: TrainingState {
                format_version: CHECKPOINT_FORMAT_VERSION,
                step,
                epoch: 3,
                batch_in_epoch: 17,
                images_seen: step * 32,
                rng_seed: 42,
                rng_state: vec![1, u64::MAX, 3],
                ema_num_updates: step,
                config_hash: "3f9a1c2e".into(),
                loss_sum: 1.5,
                loss_count: 3,
                wall_s: 12.0,
            },
            weights: tensors(step as f32),
            ema: tensors(0.5),
            optim: tensors(2.0)
                .into_iter()
                .map(|(k, v)| (format!("{k}.ms"), v))
                .collect(),
            metrics: Some((1..=step / 10).map(|i| row(i * 10)).collect()),
        }
    }

    fn first_value(t: &HashMap<String, Tensor>, name: &str) -> f32 {
        t[name].flatten_all().unwrap().to_vec1::<f32>().unwrap()[0]
    }

    /// `checkpoints/` with checkpoints at steps 10, 20 and 30, the last two kept.
    fn three_saved(root: &Path) -> Checkpoints {
        let store = Checkpoints::new(root.join("checkpoints"));
        for step in [10, 20, 30] {
            store.save(&checkpoint(step), 2).unwrap();
        }
        store
    }

    fn set_aside_into(root: &Path) -> OnDamage {
        OnDamage::SetAside(root.join("damaged"))
    }

    #[test]
    fn round_trip_keeps_the_newest_two() {
        let dir = tempfile::tempdir().unwrap();
        let store = Checkpoints::new(dir.path().join("checkpoints"));
        assert!(store.load(&Device::Cpu, &OnDamage::Skip).unwrap().is_none());
        assert!(store.newest_state().is_none());
        let store = three_saved(dir.path());
        assert_eq!(names_in(store.dir()), ["step-000000020", "step-000000030"]);
        let loaded = store.load(&Device::Cpu, &OnDamage::Skip).unwrap().unwrap();
        let back = loaded.checkpoint;
        assert_eq!(back.state, checkpoint(30).state);
        assert_eq!(back.metrics, checkpoint(30).metrics);
        assert_eq!(first_value(&back.weights, "fc.weight"), 30.0);
        assert_eq!(first_value(&back.ema, "fc.weight"), 0.5);
        assert_eq!(first_value(&back.optim, "fc.weight.ms"), 2.0);
        assert!(loaded.rejected.is_empty());
        assert_eq!(store.newest_state().unwrap().step, 30);
        assert_eq!(
            names_in(&loaded.path),
            [
                EMA_FILE,
                MANIFEST_FILE,
                METRICS_FILE,
                OPTIM_FILE,
                STATE_FILE,
                WEIGHTS_FILE
            ]
        );
    }

    type Fault = fn(&Path);

    fn faults() -> [(&'static str, Fault); 4] {
        [
            ("truncated", |p| {
                let len = fs::metadata(p).unwrap().len();
                fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_len(len / 2)
                    .unwrap();
            }),
            ("zeroed", |p| {
                let len = fs::metadata(p).unwrap().len() as usize;
                fs::write(p, vec![0u8; len]).unwrap();
            }),
            ("one byte flipped", |p| {
                let mut bytes = fs::read(p).unwrap();
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x01;
                fs::write(p, bytes).unwrap();
            }),
            ("deleted", |p| fs::remove_file(p).unwrap()),
        ]
    }

    #[test]
    fn any_fault_in_any_file_falls_back_to_the_previous_checkpoint() {
        let files = [
            WEIGHTS_FILE,
            EMA_FILE,
            OPTIM_FILE,
            STATE_FILE,
            METRICS_FILE,
            MANIFEST_FILE,
        ];
        for file in files {
            for (fault, apply) in faults() {
                let dir = tempfile::tempdir().unwrap();
                let store = three_saved(dir.path());
                let newest = store.dir().join("step-000000030");
                apply(&newest.join(file));
                let loaded = store
                    .load(&Device::Cpu, &set_aside_into(dir.path()))
                    .unwrap_or_else(|e| panic!("{file} {fault}: {e}"))
                    .unwrap();
                assert_eq!(loaded.checkpoint.state.step, 20, "{file} {fault}");
                assert_eq!(first_value(&loaded.checkpoint.weights, "fc.weight"), 20.0);
                let [rejected] = &loaded.rejected[..] else {
                    panic!("{file} {fault}: {:?}", loaded.rejected)
                };
                assert_eq!(rejected.step, Some(30));
                assert_eq!(rejected.damage.path, newest.join(file), "{file} {fault}");
                let moved = rejected.moved_to.as_ref().unwrap();
                assert!(!newest.exists() && moved.is_dir(), "{file} {fault}");
                assert!(moved.starts_with(dir.path().join("damaged")));
                let text = rejected.to_string();
                assert!(
                    text.starts_with("the checkpoint at step 30 is damaged") && text.contains(file),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn when_every_checkpoint_is_damaged_loading_fails_and_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = three_saved(dir.path());
        for step in ["step-000000020", "step-000000030"] {
            fs::write(store.dir().join(step).join(WEIGHTS_FILE), b"").unwrap();
        }
        let err = store
            .load(&Device::Cpu, &set_aside_into(dir.path()))
            .unwrap_err();
        let CheckpointError::NoneIntact { rejected, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(
            rejected.iter().map(|r| r.step).collect::<Vec<_>>(),
            [Some(30), Some(20)]
        );
        let text = err.to_string();
        assert!(
            text.contains("no checkpoint in") && text.contains("step 20"),
            "{text}"
        );
        assert_eq!(names_in(&dir.path().join("damaged")).len(), 2);
        // Skip leaves them where they are
        let store = three_saved(&dir.path().join("other"));
        fs::write(store.dir().join("step-000000030").join(STATE_FILE), b"{").unwrap();
        let loaded = store.load(&Device::Cpu, &OnDamage::Skip).unwrap().unwrap();
        assert_eq!(loaded.rejected[0].moved_to, None);
        assert!(store.dir().join("step-000000030").exists());
    }

    #[test]
    fn a_crashed_save_leaves_the_older_checkpoints_and_is_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = three_saved(dir.path());
        // a save that died before its rename, and a folder a user copied without manifest
        let stale = store
            .dir()
            .join(format!("{TEMP_PREFIX}step-000000040-999-0"));
        fs::create_dir(&stale).unwrap();
        fs::write(stale.join(WEIGHTS_FILE), b"half").unwrap();
        let loaded = store.load(&Device::Cpu, &OnDamage::Skip).unwrap().unwrap();
        assert_eq!(loaded.checkpoint.state.step, 30);
        store.save(&checkpoint(40), 2).unwrap();
        assert_eq!(names_in(store.dir()), ["step-000000030", "step-000000040"]);
        // saving the same step again replaces it
        store.save(&checkpoint(40), 2).unwrap();
        assert_eq!(store.newest_state().unwrap().step, 40);
    }

    #[test]
    fn checkpoints_of_the_old_single_slot_layout_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = Checkpoints::new(dir.path().join("checkpoints"));
        let slot = store.dir().join("latest");
        fs::create_dir_all(&slot).unwrap();
        let c = checkpoint(10);
        atomic::write_safetensors(&slot.join(WEIGHTS_FILE), &c.weights).unwrap();
        atomic::write_safetensors(&slot.join(EMA_FILE), &c.ema).unwrap();
        atomic::write_safetensors(&slot.join(OPTIM_FILE), &c.optim).unwrap();
        atomic::write_json(&slot.join(STATE_FILE), &c.state).unwrap();
        assert_eq!(store.newest_state().unwrap().step, 10);
        let loaded = store.load(&Device::Cpu, &OnDamage::Skip).unwrap().unwrap();
        assert_eq!(loaded.checkpoint.state.step, 10);
        assert_eq!(loaded.checkpoint.metrics, None);
        // a new save comes first; the old slot goes once more than `keep` exist
        store.save(&checkpoint(20), 1).unwrap();
        assert_eq!(names_in(store.dir()), ["step-000000020"]);
    }

    #[test]
    fn the_manifest_lists_every_file_with_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let store = three_saved(dir.path());
        let newest = store.dir().join("step-000000030");
        let manifest = FileManifest::read(&newest.join(MANIFEST_FILE)).unwrap();
        assert_eq!(manifest.files.len(), 5);
        for (name, sum) in &manifest.files {
            assert_eq!(&sum_file(&newest.join(name)).unwrap(), sum, "{name}");
        }
    }

    #[test]
    fn shape_and_config_problems_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Checkpoints::new(dir.path());
        let mut c = checkpoint(1);
        c.weights.insert(
            "extra.bias".into(),
            Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
        );
        let slot = store.save(&c, 2).unwrap();
        let back = store.load(&Device::Cpu, &OnDamage::Skip).unwrap().unwrap();
        let expected = HashMap::from([("fc.weight".to_string(), vec![3, 64])]);
        let err = back
            .checkpoint
            .check_shapes(&slot, &expected)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unexpected `extra.bias`"), "{err}");
        assert!(
            err.contains("`fc.weight` has shape [64, 3], expected [3, 64]"),
            "{err}"
        );
        assert!(matches!(
            back.checkpoint.check_config(&slot, "other"),
            Err(CheckpointError::ConfigMismatch { .. })
        ));
    }

    #[test]
    fn other_format_version_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Checkpoints::new(dir.path());
        let mut c = checkpoint(1);
        c.state.format_version = CHECKPOINT_FORMAT_VERSION + 1;
        store.save(&c, 2).unwrap();
        assert!(matches!(
            store.load(&Device::Cpu, &OnDamage::Skip),
            Err(CheckpointError::Version { .. })
        ));
    }
}
