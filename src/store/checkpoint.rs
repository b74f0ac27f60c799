//! Training checkpoints that a crash can never leave half-written.
//!
//! A checkpoint is a folder (a *slot*, e.g. `checkpoints/latest/`) holding
//! `weights.safetensors` (the model's `VarMap`, timm names), `ema.safetensors`,
//! `optim.safetensors` and `state.json`. Saving writes a complete new folder under a
//! temporary name (with `state.json` last), then swaps it in:
//!
//! 1. `latest` → `latest.previous` (the old checkpoint is kept until the new one is in place)
//! 2. temporary folder → `latest`
//! 3. `latest.previous` is deleted.
//!
//! Loading takes `latest` if its `state.json` is valid, else `latest.previous` (a crash
//! between steps 1 and 2), else nothing: a folder without a valid `state.json` is ignored.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::atomic::{self, AtomicWriteError, TEMP_PREFIX};

/// Version of the checkpoint layout and `state.json` schema written by this code.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;
/// Model weights (including BatchNorm running statistics), timm tensor names.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// Moving averages of the weights, same names as [`WEIGHTS_FILE`].
pub const EMA_FILE: &str = "ema.safetensors";
/// Optimizer slots, named `<var>.<slot>`.
pub const OPTIM_FILE: &str = "optim.safetensors";
/// Training position; written last, its validity marks a complete checkpoint.
pub const STATE_FILE: &str = "state.json";
/// Suffix of the slot that holds the old checkpoint while a new one is swapped in.
pub const PREVIOUS_SUFFIX: &str = ".previous";

/// Errors of saving or loading a checkpoint; each names the file or folder.
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
    /// A tensor file of a checkpoint with a valid `state.json` could not be read.
    #[error("checkpoint {path}: {source}")]
    Tensors {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
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

/// A checkpoint in memory: the training position and the three tensor maps.
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
}

/// The slot that keeps the old checkpoint during a swap: `<slot>.previous`.
pub fn previous_slot(slot: &Path) -> PathBuf {
    let mut name = slot.file_name().unwrap_or_default().to_os_string();
    name.push(PREVIOUS_SUFFIX);
    slot.with_file_name(name)
}

/// Saves `checkpoint` into the folder `slot` (e.g. `checkpoints/latest`), replacing the
/// checkpoint there only once the new one is complete. The caller must hold the run lock.
pub fn save_checkpoint(slot: &Path, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
    let parent = atomic::parent_dir(slot);
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    remove_stale_temp_dirs(slot)?;

    let incoming = atomic::temp_sibling(slot);
    fs::create_dir(&incoming).map_err(io_err(&incoming))?;
    let result = fill(&incoming, checkpoint).and_then(|()| swap_in(&incoming, slot));
    if result.is_err() {
        let _ = fs::remove_dir_all(&incoming);
    }
    result
}

fn fill(dir: &Path, c: &Checkpoint) -> Result<(), CheckpointError> {
    atomic::write_safetensors(&dir.join(WEIGHTS_FILE), &c.weights)?;
    atomic::write_safetensors(&dir.join(EMA_FILE), &c.ema)?;
    atomic::write_safetensors(&dir.join(OPTIM_FILE), &c.optim)?;
    atomic::write_json(&dir.join(STATE_FILE), &c.state)?;
    atomic::sync_dir(dir).map_err(io_err(dir))
}

fn swap_in(incoming: &Path, slot: &Path) -> Result<(), CheckpointError> {
    let previous = previous_slot(slot);
    if slot.exists() {
        if previous.exists() {
            fs::remove_dir_all(&previous).map_err(io_err(&previous))?;
        }
        fs::rename(slot, &previous).map_err(io_err(slot))?;
    }
    fs::rename(incoming, slot).map_err(io_err(slot))?;
    let parent = atomic::parent_dir(slot);
    atomic::sync_dir(parent).map_err(io_err(parent))?;
    if previous.exists() {
        fs::remove_dir_all(&previous).map_err(io_err(&previous))?;
    }
    Ok(())
}

/// Removes temporary folders of `slot` left by a crashed save.
fn remove_stale_temp_dirs(slot: &Path) -> Result<(), CheckpointError> {
    let parent = atomic::parent_dir(slot);
    let name = slot.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!("{TEMP_PREFIX}{name}-");
    for entry in fs::read_dir(parent).map_err(io_err(parent))? {
        let entry = entry.map_err(io_err(parent))?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

/// Loads the checkpoint in `slot` (or, after a crash mid-swap, in `<slot>.previous`) onto
/// `device`. Returns `Ok(None)` when neither holds a valid `state.json`.
pub fn load_checkpoint(
    slot: &Path,
    device: &Device,
) -> Result<Option<Checkpoint>, CheckpointError> {
    for dir in [slot.to_path_buf(), previous_slot(slot)] {
        let Some(state) = read_state(&dir) else {
            continue;
        };
        if state.format_version != CHECKPOINT_FORMAT_VERSION {
            return Err(CheckpointError::Version {
                path: dir.join(STATE_FILE),
                found: state.format_version,
                expected: CHECKPOINT_FORMAT_VERSION,
            });
        }
        let load = |file: &str| {
            let path = dir.join(file);
            candle_core::safetensors::load(&path, device)
                .map_err(|source| CheckpointError::Tensors { path, source })
        };
        return Ok(Some(Checkpoint {
            weights: load(WEIGHTS_FILE)?,
            ema: load(EMA_FILE)?,
            optim: load(OPTIM_FILE)?,
            state,
        }));
    }
    Ok(None)
}

/// Where the checkpoint in `slot` (or its `.previous` after a crash mid-swap) stands,
/// without loading its tensors; `None` when there is no valid checkpoint.
pub fn read_checkpoint_state(slot: &Path) -> Option<TrainingState> {
    read_state(slot).or_else(|| read_state(&previous_slot(slot)))
}

/// The `state.json` of `dir` if it exists and parses; anything else means "no checkpoint".
fn read_state(dir: &Path) -> Option<TrainingState> {
    let text = fs::read_to_string(dir.join(STATE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
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
    use candle_core::DType;

    fn tensors(prefix: &str, value: f32) -> HashMap<String, Tensor> {
        let t = Tensor::full(value, (2, 3), &Device::Cpu).unwrap();
        HashMap::from([(format!("{prefix}fc.weight"), t)])
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
            weights: tensors("", step as f32),
            ema: tensors("", 0.5),
            optim: tensors("", 2.0)
                .into_iter()
                .map(|(k, v)| (format!("{k}.ms"), v))
                .collect(),
        }
    }

    fn first_value(t: &HashMap<String, Tensor>, name: &str) -> f32 {
        t[name].flatten_all().unwrap().to_vec1::<f32>().unwrap()[0]
    }

    fn expected_shapes() -> HashMap<String, Vec<usize>> {
        HashMap::from([("fc.weight".to_string(), vec![2, 3])])
    }

    #[test]
    fn round_trip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let slot = dir.path().join("checkpoints/latest");
        assert!(load_checkpoint(&slot, &Device::Cpu).unwrap().is_none());

        save_checkpoint(&slot, &checkpoint(10)).unwrap();
        save_checkpoint(&slot, &checkpoint(20)).unwrap();
        let back = load_checkpoint(&slot, &Device::Cpu).unwrap().unwrap();
        assert_eq!(back.state, checkpoint(20).state);
        assert_eq!(first_value(&back.weights, "fc.weight"), 20.0);
        assert_eq!(first_value(&back.ema, "fc.weight"), 0.5);
        assert_eq!(first_value(&back.optim, "fc.weight.ms"), 2.0);
        back.check_shapes(&slot, &expected_shapes()).unwrap();
        back.check_config(&slot, "3f9a1c2e").unwrap();

        // nothing but the slot is left in checkpoints/
        let names: Vec<_> = fs::read_dir(dir.path().join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["latest"]);
    }

    #[test]
    fn checkpoint_without_ema_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let slot = dir.path().join("latest");
        let mut c = checkpoint(5);
        c.ema.clear();
        save_checkpoint(&slot, &c).unwrap();
        let back = load_checkpoint(&slot, &Device::Cpu).unwrap().unwrap();
        assert!(back.ema.is_empty());
        assert_eq!(back.weights.len(), 1);
        back.check_shapes(&slot, &expected_shapes()).unwrap();
    }

    #[test]
    fn incomplete_checkpoint_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let slot = dir.path().join("latest");
        // tensors written, crash before state.json
        fs::create_dir_all(&slot).unwrap();
        atomic::write_safetensors(&slot.join(WEIGHTS_FILE), &tensors("", 1.0)).unwrap();
        assert!(load_checkpoint(&slot, &Device::Cpu).unwrap().is_none());
        // a torn state.json counts as absent too
        fs::write(slot.join(STATE_FILE), "{\"format_version\": 1, \"st").unwrap();
        assert!(load_checkpoint(&slot, &Device::Cpu).unwrap().is_none());
    }

    #[test]
    fn crash_mid_swap_falls_back_to_the_previous_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let slot = dir.path().join("latest");
        save_checkpoint(&slot, &checkpoint(10)).unwrap();
        // simulate: old moved aside, a half-filled temp folder never renamed into place
        fs::rename(&slot, previous_slot(&slot)).unwrap();
        let stale = dir.path().join(format!("{TEMP_PREFIX}latest-999-0"));
        fs::create_dir(&stale).unwrap();
        let back = load_checkpoint(&slot, &Device::Cpu).unwrap().unwrap();
        assert_eq!(back.state.step, 10);
        // the next save cleans up the leftovers
        save_checkpoint(&slot, &checkpoint(30)).unwrap();
        assert!(!stale.exists() && !previous_slot(&slot).exists());
        assert_eq!(
            load_checkpoint(&slot, &Device::Cpu)
                .unwrap()
                .unwrap()
                .state
                .step,
            30
        );
    }

    #[test]
    fn shape_and_config_problems_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let slot = dir.path().join("latest");
        let mut c = checkpoint(1);
        c.weights.insert(
            "extra.bias".into(),
            Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
        );
        save_checkpoint(&slot, &c).unwrap();
        let back = load_checkpoint(&slot, &Device::Cpu).unwrap().unwrap();
        let mut expected = expected_shapes();
        expected.insert("fc.weight".into(), vec![3, 2]);
        let err = back.check_shapes(&slot, &expected).unwrap_err().to_string();
        assert!(err.contains("unexpected `extra.bias`"), "{err}");
        assert!(
            err.contains("`fc.weight` has shape [2, 3], expected [3, 2]"),
            "{err}"
        );
        assert!(matches!(
            back.check_config(&slot, "other"),
            Err(CheckpointError::ConfigMismatch { .. })
        ));
    }

    #[test]
    fn other_format_version_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let slot = dir.path().join("latest");
        let mut c = checkpoint(1);
        c.state.format_version = CHECKPOINT_FORMAT_VERSION + 1;
        save_checkpoint(&slot, &c).unwrap();
        assert!(matches!(
            load_checkpoint(&slot, &Device::Cpu),
            Err(CheckpointError::Version { .. })
        ));
    }
}
