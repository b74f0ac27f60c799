//! `provenance.json`: what ran, from which code, on what, with which data, and how it ended.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::atomic::{self, AtomicWriteError};

/// Errors of reading or writing provenance; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid provenance JSON.
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
}

/// How a run stands or ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunStatus {
    /// Still training (or killed without a chance to say otherwise).
    Running,
    /// Finished normally.
    Done,
    /// The loss or gradient norm became non-finite at `step`.
    Diverged { step: u64 },
    /// Stopped by an error.
    Failed { message: String },
}

/// The code the run was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitInfo {
    /// `git rev-parse HEAD`, or "unknown" outside a repository or without git.
    pub commit: String,
    /// Whether tracked or untracked files differed from the commit; `None` when unknown.
    pub dirty: Option<bool>,
}

impl GitInfo {
    /// The state of the git work tree containing `dir`, asking the `git` executable.
    pub fn of_work_tree(dir: &Path) -> Self {
        let git = |args: &[&str]| -> Option<String> {
            let out = Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        match git(&["rev-parse", "HEAD"]) {
            Some(commit) if !commit.is_empty() => Self {
                commit,
                // What the program writes (reports/, results/) is not a change to the code.
                dirty: git(&[
                    "status",
                    "--porcelain",
                    "--",
                    ".",
                    ":(exclude)reports",
                    ":(exclude)results",
                ])
                .map(|s| !s.is_empty()),
            },
            _ => Self::unknown(),
        }
    }

    /// `3f9a1c2` (12 hex digits), with `+ local changes` when the tree was dirty.
    pub fn describe(&self) -> String {
        let short: String = self.commit.chars().take(12).collect();
        match self.dirty {
            Some(true) => format!("{short} + local changes"),
            _ => short,
        }
    }

    /// No git information.
    pub fn unknown() -> Self {
        Self {
            commit: "unknown".to_string(),
            dirty: None,
        }
    }
}

pub use crate::data::SkippedImage;

/// Everything needed to say what a results folder contains and how it was produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The fully resolved run configuration (the thing that was hashed).
    pub config: serde_json::Value,
    /// The run's seed.
    pub seed: u64,
    /// The code version.
    pub git: GitInfo,
    /// `CARGO_PKG_VERSION` of repro.
    pub repro_version: String,
    /// The compute device, e.g. "cpu" or "cuda:0 (NVIDIA H200)".
    pub device: String,
    /// [`manifest_hash`] of the training data.
    pub dataset_manifest_hash: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC, once the run has stopped.
    pub ended_at: Option<String>,
    /// How the run stands.
    pub status: RunStatus,
    /// Images left out because they could not be read.
    pub skipped_images: Vec<SkippedImage>,
}

impl Provenance {
    /// Provenance of a run starting now, with status `Running`; git is asked about the
    /// current directory.
    pub fn start(
        config: serde_json::Value,
        seed: u64,
        device: String,
        dataset_manifest_hash: String,
    ) -> Self {
        Self {
            config,
            seed,
            git: GitInfo::of_work_tree(Path::new(".")),
            repro_version: env!("CARGO_PKG_VERSION").to_string(),
            device,
            dataset_manifest_hash,
            started_at: super::clock::now_rfc3339(),
            ended_at: None,
            status: RunStatus::Running,
            skipped_images: Vec::new(),
        }
    }

    /// Records the end of the run: `status` and the end time.
    pub fn finish(&mut self, status: RunStatus) {
        self.status = status;
        self.ended_at = Some(super::clock::now_rfc3339());
    }

    /// Writes the provenance as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<(), ProvenanceError> {
        Ok(atomic::write_json(path, self)?)
    }

    /// Reads a provenance file.
    pub fn read(path: &Path) -> Result<Self, ProvenanceError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProvenanceError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ProvenanceError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// A stable hash of a dataset listing: SHA-256 (hex) over the entries sorted by path, each
/// fed as `<relative path>\0<size in bytes>\n`. Independent of listing order; paths should
/// use `/` separators so the hash is the same on every OS.
pub fn manifest_hash(entries: &[(String, u64)]) -> String {
    let mut sorted: Vec<&(String, u64)> = entries.iter().collect();
    sorted.sort();
    let mut hasher = Sha256::new();
    for (path, size) in sorted {
        hasher.update(path.as_bytes());
        hasher.update([0u8]);
        hasher.update(size.to_string().as_bytes());
        hasher.update(b"\n");
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provenance.json");
        let mut p = Provenance::start(
            serde_json::json!({"model": "inception_v4", "batch": 32}),
            7,
            "cpu".into(),
            manifest_hash(&[("a/1.jpg".into(), 10)]),
        );
        p.skipped_images.push(SkippedImage {
            path: "n01440764/bad.JPEG".into(),
            reason: "truncated JPEG".into(),
        });
        p.finish(RunStatus::Diverged { step: 1234 });
        p.write(&path).unwrap();
        let back = Provenance::read(&path).unwrap();
        assert_eq!(back, p);
        let raw: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            raw["status"],
            serde_json::json!({"state": "diverged", "step": 1234})
        );
        assert_eq!(raw["repro_version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn status_variants_serialize_with_a_state_tag() {
        let failed = serde_json::to_value(RunStatus::Failed {
            message: "out of memory".into(),
        })
        .unwrap();
        assert_eq!(
            failed,
            serde_json::json!({"state": "failed", "message": "out of memory"})
        );
        assert_eq!(
            serde_json::to_value(RunStatus::Done).unwrap(),
            serde_json::json!({"state": "done"})
        );
    }

    #[test]
    fn manifest_hash_ignores_order_but_not_content() {
        let a = manifest_hash(&[("x/1.jpg".into(), 100), ("x/2.jpg".into(), 200)]);
        let b = manifest_hash(&[("x/2.jpg".into(), 200), ("x/1.jpg".into(), 100)]);
        let c = manifest_hash(&[("x/1.jpg".into(), 100), ("x/2.jpg".into(), 201)]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 64);
        // SHA-256 of the empty string: the empty manifest
        assert_eq!(
            manifest_hash(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn git_outside_a_repository_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(GitInfo::of_work_tree(dir.path()), GitInfo::unknown());
    }

    #[test]
    fn written_reports_and_results_do_not_make_the_tree_dirty_but_code_changes_do() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(args)
                .output()
                .map(|o| o.status.success());
            assert!(ok.unwrap_or(false), "git {args:?}");
        };
        git(&["init", "-q"]);
        std::fs::write(dir.path().join("main.rs"), "fn main() {}").unwrap();
        git(&["add", "main.rs"]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "c",
        ]);
        for output in ["reports/mini/index.html", "results/runs/a/DONE"] {
            let path = dir.path().join(output);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        let info = GitInfo::of_work_tree(dir.path());
        assert_eq!(info.commit.len(), 40);
        assert_eq!(info.dirty, Some(false));
        std::fs::write(dir.path().join("main.rs"), "fn main() { }").unwrap();
        assert_eq!(GitInfo::of_work_tree(dir.path()).dirty, Some(true));
    }

    #[test]
    fn unreadable_or_invalid_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provenance.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = Provenance::read(&path).unwrap_err();
        assert!(err.to_string().contains("provenance.json"), "{err}");
    }
}
