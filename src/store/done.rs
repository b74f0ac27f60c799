//! `DONE`: the record a finished run writes last. Its presence makes the run reusable; its
//! content says when the run finished, keeps a copy of the final provenance, and lists the
//! size and checksum of the files that reports and evaluations read, so that damage to them
//! is found before they are used (and `provenance.json` can be restored from it).
//!
//! Run folders finished before this record existed hold a bare time stamp in `DONE`; they
//! still count as finished, with nothing to check against.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::atomic::{self, AtomicWriteError};
use super::integrity::{Damage, FileManifest};
use super::layout::RunDir;
use super::provenance::Provenance;

/// The files of a finished run its `DONE` record checks (those that exist).
pub const CHECKED_FILES: [&str; 4] = [
    super::layout::FINAL_WEIGHTS_FILE,
    super::layout::METRICS_FILE,
    super::layout::PROVENANCE_FILE,
    super::layout::CONFIG_FILE,
];

/// The content of `DONE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoneRecord {
    /// RFC 3339 UTC.
    pub finished_at: String,
    /// `provenance.json` as written when the run finished.
    pub provenance: Provenance,
    /// Sizes and checksums of [`CHECKED_FILES`].
    pub files: FileManifest,
}

/// What a run folder's `DONE` says.
#[derive(Debug, Clone, PartialEq)]
pub enum DoneState {
    /// No `DONE`: the run has not finished.
    Absent,
    /// A `DONE` from before records existed: finished, nothing to check against.
    Unchecked,
    /// A record to check the run's files against.
    Recorded(Box<DoneRecord>),
    /// `DONE` exists but is neither a record nor an old time stamp.
    Damaged(Damage),
}

impl DoneRecord {
    /// Every checked file of `dir` that differs from the record, with its problem.
    pub fn damaged_files(&self, dir: &RunDir) -> Vec<Damage> {
        self.files
            .files
            .keys()
            .filter_map(|name| self.files.verify_file(dir.root(), name).err())
            .collect()
    }
}

/// Writes `DONE` for `dir` with `provenance` (already written to `provenance.json`):
/// call it last.
pub fn write_done(dir: &RunDir, provenance: &Provenance) -> Result<(), AtomicWriteError> {
    let present: Vec<&str> = CHECKED_FILES
        .into_iter()
        .filter(|name| dir.root().join(name).is_file())
        .collect();
    let files =
        FileManifest::of_files(dir.root(), &present).map_err(|source| AtomicWriteError::Io {
            path: dir.done_marker(),
            source,
        })?;
    let record = DoneRecord {
        finished_at: super::clock::now_rfc3339(),
        provenance: provenance.clone(),
        files,
    };
    atomic::write_json(&dir.done_marker(), &record)
}

/// Reads the `DONE` of `dir`.
pub fn read_done(dir: &RunDir) -> DoneState {
    let path = dir.done_marker();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DoneState::Absent,
        Err(e) => return DoneState::Damaged(Damage::new(path, format!("unreadable ({e})"))),
    };
    if let Ok(record) = serde_json::from_slice::<DoneRecord>(&bytes) {
        return DoneState::Recorded(Box::new(record));
    }
    match is_time_stamp(&bytes) {
        true => DoneState::Unchecked,
        false => DoneState::Damaged(Damage::new(path, "not a valid completion record")),
    }
}

/// `2016-02-23T17:04:05Z` and a newline: what `DONE` held before records existed.
fn is_time_stamp(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let t = text.trim_end();
    t.len() == 20
        && t.as_bytes()[10] == b'T'
        && t.ends_with('Z')
        && t.chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16 | 19) || c.is_ascii_digit())
}

/// Whether `path`'s file name is one of [`CHECKED_FILES`] that can be rebuilt only by
/// finishing the run again from its last checkpoint.
pub fn needs_finishing_again(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default();
    name == super::layout::FINAL_WEIGHTS_FILE || name == super::layout::METRICS_FILE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished_run(root: &Path) -> (RunDir, Provenance) {
        let dir = RunDir::new(root.join("run-0123abcd"));
        dir.create().unwrap();
        std::fs::write(dir.final_weights(), vec![3u8; 4096]).unwrap();
        std::fs::write(dir.config_yaml(), b"seed: 0\n").unwrap();
        let p = Provenance::start(serde_json::json!({"seed": 0}), 0, "cpu".into(), "ab".into());
        p.write(&dir.provenance_json()).unwrap();
        write_done(&dir, &p).unwrap();
        (dir, p)
    }

    #[test]
    fn a_record_checks_the_files_that_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, p) = finished_run(tmp.path());
        let DoneState::Recorded(record) = read_done(&dir) else {
            panic!("{:?}", read_done(&dir))
        };
        assert_eq!(record.provenance, p);
        assert_eq!(
            record.files.files.keys().collect::<Vec<_>>(),
            ["config.yaml", "final.safetensors", "provenance.json"]
        );
        assert!(record.damaged_files(&dir).is_empty());
        std::fs::write(dir.config_yaml(), b"seed: 1\n").unwrap();
        std::fs::remove_file(dir.final_weights()).unwrap();
        let damaged = record.damaged_files(&dir);
        assert_eq!(damaged.len(), 2);
        assert_eq!(damaged[0].path, dir.config_yaml());
        assert_eq!(damaged[1].problem, "missing");
        assert!(needs_finishing_again(&damaged[1].path));
        assert!(!needs_finishing_again(&damaged[0].path));
    }

    #[test]
    fn old_time_stamps_count_and_anything_else_is_damage() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::new(tmp.path());
        assert_eq!(read_done(&dir), DoneState::Absent);
        std::fs::write(dir.done_marker(), b"2026-11-30T08:59:01Z\n").unwrap();
        assert_eq!(read_done(&dir), DoneState::Unchecked);
        std::fs::write(dir.done_marker(), b"2026-11-30T08:5\x009:01Z\n").unwrap();
        assert!(matches!(read_done(&dir), DoneState::Damaged(_)));
        std::fs::write(dir.done_marker(), b"").unwrap();
        let DoneState::Damaged(d) = read_done(&dir) else {
            panic!()
        };
        assert_eq!(d.path, dir.done_marker());
    }
}
