//! Damaged run folders: what `repro run` does before it reuses or resumes a run whose files
//! were truncated, zeroed, bit-flipped or deleted, and `--restart`, which starts a run over
//! with its old folder kept aside.
//!
//! Nothing here deletes: a damaged file goes to the run's `damaged/` folder and a restarted
//! run's files to `results/set-aside/`, and every repair is reported with the file's name
//! and what was wrong.

use std::fs;
use std::path::{Path, PathBuf};

use super::plan::plan;
use crate::experiment::{Experiment, ResolvedRun};
use crate::store::done::{needs_finishing_again, read_done, DoneState};
use crate::store::integrity::{free_aside_name, set_aside};
use crate::store::layout::{CONFIG_FILE, METRICS_FILE, PROVENANCE_FILE};
use crate::store::lock::LOCK_FILE;
use crate::store::{Provenance, RunDir, RunLock};

/// What the check of a finished run decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FinishedCheck {
    /// Intact (or repaired in place): reuse it.
    Reuse,
    /// A file only training can rebuild (the final weights, the metrics) or `DONE` itself was
    /// damaged: `DONE` is set aside and the run is finished again from its newest intact
    /// checkpoint.
    FinishAgain,
}

/// Checks a finished run's files against its `DONE` record and repairs what it can: the
/// provenance from the record's copy, the configuration from the resolved run. The caller
/// holds the run lock.
pub(super) fn check_finished(dir: &RunDir, run: &ResolvedRun) -> Result<FinishedCheck, String> {
    let record = match read_done(dir) {
        DoneState::Absent | DoneState::Unchecked => return Ok(FinishedCheck::Reuse),
        DoneState::Damaged(damage) => {
            let moved = move_aside(dir, &dir.done_marker())?;
            tracing::warn!(
                "{damage}; moved to {}, and the run is finished again from its newest intact checkpoint",
                moved.display()
            );
            return Ok(FinishedCheck::FinishAgain);
        }
        DoneState::Recorded(record) => record,
    };
    let mut finish_again = false;
    for damage in record.damaged_files(dir) {
        let path = &damage.path;
        if needs_finishing_again(path) {
            let moved = match path.exists() {
                true => format!("; moved to {},", move_aside(dir, path)?.display()),
                false => ";".to_string(),
            };
            tracing::warn!(
                "{damage}{moved} and the run is finished again from its newest intact checkpoint"
            );
            finish_again = true;
        } else if *path == dir.provenance_json() {
            dir.write_provenance(&record.provenance)
                .map_err(|e| format!("restoring {}: {e}", path.display()))?;
            tracing::warn!(
                "{damage}; restored from the copy in {}",
                dir.done_marker().display()
            );
        } else if *path == dir.config_yaml() {
            write_config(dir, run)?;
            tracing::warn!("{damage}; written again from the experiment's resolved run");
        }
    }
    if finish_again {
        move_aside(dir, &dir.done_marker())?;
        return Ok(FinishedCheck::FinishAgain);
    }
    Ok(FinishedCheck::Reuse)
}

/// Writes the run's resolved configuration to `config.yaml`.
pub(super) fn write_config(dir: &RunDir, run: &ResolvedRun) -> Result<(), String> {
    let text = serde_yaml::to_string(&run.config).map_err(|e| e.to_string())?;
    crate::store::write_bytes(&dir.config_yaml(), text.as_bytes()).map_err(|e| e.to_string())?;
    dir.record_checksum(CONFIG_FILE).map_err(|e| e.to_string())
}

/// Before a run resumes: moves aside each file that differs from its recorded checksum
/// (`checksums.json`), saying what becomes of it: the metrics are rebuilt from the newest
/// intact checkpoint, the configuration is written again, the provenance starts anew.
pub(super) fn set_aside_damaged_files(dir: &RunDir) -> Result<(), String> {
    for damage in dir.damaged_files() {
        let name = damage.path.file_name().unwrap_or_default();
        let then = if name == METRICS_FILE {
            "the metrics are rebuilt from the newest intact checkpoint"
        } else if name == CONFIG_FILE {
            "the configuration is written again"
        } else if name == PROVENANCE_FILE {
            "a new provenance record starts (its start time and code version are this session's)"
        } else {
            "the run's files are checked by parsing only until they are written again"
        };
        if !damage.path.exists() {
            tracing::warn!("{damage}; {then}");
            continue;
        }
        let moved = move_aside(dir, &damage.path)?;
        tracing::warn!("{damage}; moved to {}, and {then}", moved.display());
    }
    Ok(())
}

/// The provenance a resumed run goes on with: the stored one, or `None` when there is none
/// or it is damaged (moved aside with a warning; the caller starts a new record).
pub(super) fn stored_provenance(dir: &RunDir) -> Result<Option<Provenance>, String> {
    let path = dir.provenance_json();
    if !path.exists() {
        return Ok(None);
    }
    match Provenance::read(&path) {
        Ok(p) => Ok(Some(p)),
        Err(e) => {
            let moved = move_aside(dir, &path)?;
            tracing::warn!(
                "{e}; moved to {}, and a new record starts (its start time and code version are this session's)",
                moved.display()
            );
            Ok(None)
        }
    }
}

fn move_aside(dir: &RunDir, path: &Path) -> Result<PathBuf, String> {
    set_aside(path, &dir.damaged())
        .map_err(|e| format!("cannot move {} aside: {e}", path.display()))
}

/// `--restart`: moves everything the named runs of `experiment` have stored into
/// `<results>/set-aside/<run folder>.<time>/` (the folders stay, with their locks), so that
/// they train from the start. Returns each moved run with where its files went; a run in
/// use by another process is an error.
pub fn restart_runs(
    experiment: &Experiment,
    results: &Path,
    names: &[String],
) -> Result<Vec<(String, PathBuf)>, String> {
    let mut moved = Vec::new();
    for planned in plan(experiment, results) {
        if !names.contains(&planned.run.name) || !planned.dir.is_dir() {
            continue;
        }
        let _lock = RunLock::acquire(&planned.dir).map_err(|e| e.to_string())?;
        let aside = results.join("set-aside");
        let target = set_aside_contents(&planned.dir, &aside)
            .map_err(|e| format!("moving {} aside: {e}", planned.dir.display()))?;
        if let Some(target) = target {
            moved.push((planned.run.name.clone(), target));
        }
    }
    Ok(moved)
}

/// Moves every entry of `dir` but its lock files into a new folder of `aside` named after
/// `dir`; `None` when there was nothing to move.
fn set_aside_contents(dir: &Path, aside: &Path) -> std::io::Result<Option<PathBuf>> {
    let entries: Vec<PathBuf> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    let movable: Vec<&PathBuf> = entries
        .iter()
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name != LOCK_FILE && !name.ends_with(".lock")
        })
        .collect();
    if movable.is_empty() {
        return Ok(None);
    }
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let target = free_aside_name(aside, &name);
    fs::create_dir_all(&target)?;
    for path in movable {
        fs::rename(path, target.join(path.file_name().unwrap_or_default()))?;
    }
    crate::store::atomic::sync_dir(dir)?;
    crate::store::atomic::sync_dir(&target)?;
    Ok(Some(target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_files::names_in;

    #[test]
    fn restart_moves_everything_but_the_locks() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("runs/r-0123abcd");
        fs::create_dir_all(dir.join("checkpoints/step-000000010")).unwrap();
        fs::write(dir.join("DONE"), b"x").unwrap();
        fs::write(dir.join(LOCK_FILE), b"").unwrap();
        fs::write(dir.join(".submit.lock"), b"").unwrap();
        let aside = tmp.path().join("set-aside");
        let target = set_aside_contents(&dir, &aside).unwrap().unwrap();
        assert!(target
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("r-0123abcd.20"));
        assert!(target.join("DONE").is_file());
        assert!(target.join("checkpoints/step-000000010").is_dir());
        assert_eq!(names_in(&dir), [".lock", ".submit.lock"]);
        assert_eq!(set_aside_contents(&dir, &aside).unwrap(), None);
    }
}
