//! The files of one run folder, `results/runs/<name>-<hash>/`.

use std::io;
use std::path::{Path, PathBuf};

use super::atomic::{self, AtomicWriteError};

/// Names the files of a run folder; creates nothing unless asked.
///
/// ```text
/// <root>/config.yaml        fully resolved configuration (the thing that was hashed)
/// <root>/provenance.json    see `store::provenance`
/// <root>/metrics.parquet    see `store::metrics`
/// <root>/checkpoints/latest see `store::checkpoint`
/// <root>/DONE               written last; its presence means the run is reusable
/// <root>/.lock              see `store::lock`
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run folder at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The resolved configuration.
    pub fn config_yaml(&self) -> PathBuf {
        self.root.join("config.yaml")
    }

    /// Provenance of the run.
    pub fn provenance_json(&self) -> PathBuf {
        self.root.join("provenance.json")
    }

    /// One row per evaluation point.
    pub fn metrics_parquet(&self) -> PathBuf {
        self.root.join("metrics.parquet")
    }

    /// Written only when `train.diagnostics` is on.
    pub fn diagnostics_parquet(&self) -> PathBuf {
        self.root.join("diagnostics.parquet")
    }

    /// The folder of checkpoint slots.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// A named checkpoint slot, e.g. `"latest"` or `"best"`.
    pub fn checkpoint_slot(&self, name: &str) -> PathBuf {
        self.checkpoints().join(name)
    }

    /// The slot training resumes from.
    pub fn latest_checkpoint(&self) -> PathBuf {
        self.checkpoint_slot("latest")
    }

    /// The completion marker.
    pub fn done_marker(&self) -> PathBuf {
        self.root.join("DONE")
    }

    /// Creates the folder and its `checkpoints/` subfolder.
    pub fn create(&self) -> io::Result<()> {
        std::fs::create_dir_all(self.checkpoints())
    }

    /// Whether the run finished and may be reused.
    pub fn is_done(&self) -> bool {
        self.done_marker().is_file()
    }

    /// Writes `DONE` (containing the completion time), atomically; call it last.
    pub fn mark_done(&self) -> Result<(), AtomicWriteError> {
        let stamp = format!("{}\n", super::clock::now_rfc3339());
        atomic::write_bytes(&self.done_marker(), stamp.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_done_marker() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::new(tmp.path().join("inception-v4-3f9a1c2e"));
        assert_eq!(run.metrics_parquet(), run.root().join("metrics.parquet"));
        assert_eq!(
            run.latest_checkpoint(),
            run.root().join("checkpoints/latest")
        );
        run.create().unwrap();
        assert!(run.checkpoints().is_dir());
        assert!(!run.is_done());
        run.mark_done().unwrap();
        assert!(run.is_done());
        assert!(std::fs::read_to_string(run.done_marker())
            .unwrap()
            .ends_with("Z\n"));
    }
}
