//! The files of one run folder, `results/runs/<name>-<hash>/`.

use std::io;
use std::path::{Path, PathBuf};

use super::atomic::AtomicWriteError;
use super::provenance::Provenance;

/// The resolved configuration.
pub const CONFIG_FILE: &str = "config.yaml";
/// Provenance of the run.
pub const PROVENANCE_FILE: &str = "provenance.json";
/// One row per evaluation point.
pub const METRICS_FILE: &str = "metrics.parquet";
/// The moving-average weights under timm's names, once the run has finished.
pub const FINAL_WEIGHTS_FILE: &str = "final.safetensors";
/// Sizes and checksums of the files above as last written (see [`RunDir::record_checksum`]).
pub const CHECKSUMS_FILE: &str = "checksums.json";
/// How the name of every TensorBoard events file starts; TensorBoard reads the files whose
/// names contain `tfevents`, in name order.
pub const TENSORBOARD_FILE_PREFIX: &str = "events.out.tfevents.";

/// Names the files of a run folder; creates nothing unless asked.
///
/// ```text
/// <root>/config.yaml        fully resolved configuration (the thing that was hashed)
/// <root>/provenance.json    see `store::provenance`
/// <root>/metrics.parquet    see `store::metrics`
/// <root>/final.safetensors  the moving-average weights (timm names), once finished
/// <root>/checkpoints/       see `store::checkpoint`
/// <root>/checksums.json    sizes and checksums of config, provenance and metrics as written
/// <root>/damaged/           damaged files and checkpoints, moved aside (never deleted)
/// <root>/events.out.tfevents.*  TensorBoard events, one file per session (see `watch`)
/// <root>/DONE               written last; see `store::done`
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
        self.root.join(CONFIG_FILE)
    }

    /// Provenance of the run.
    pub fn provenance_json(&self) -> PathBuf {
        self.root.join(PROVENANCE_FILE)
    }

    /// One row per evaluation point.
    pub fn metrics_parquet(&self) -> PathBuf {
        self.root.join(METRICS_FILE)
    }

    /// Written only when `train.diagnostics` is on.
    pub fn diagnostics_parquet(&self) -> PathBuf {
        self.root.join("diagnostics.parquet")
    }

    /// The folder of checkpoint slots.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// The run's checkpoints.
    pub fn checkpoint_store(&self) -> super::checkpoint::Checkpoints {
        super::checkpoint::Checkpoints::new(self.checkpoints())
    }

    /// Where damaged files and checkpoints are moved.
    pub fn damaged(&self) -> PathBuf {
        self.root.join("damaged")
    }

    /// The moving-average weights of a finished run, under timm's names.
    pub fn final_weights(&self) -> PathBuf {
        self.root.join(FINAL_WEIGHTS_FILE)
    }

    /// The TensorBoard events files of the run's sessions, in name (= time) order.
    pub fn tensorboard_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.root)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.file_name().is_some_and(|n| {
                            n.to_string_lossy().starts_with(TENSORBOARD_FILE_PREFIX)
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// The completion marker.
    pub fn done_marker(&self) -> PathBuf {
        self.root.join("DONE")
    }

    /// Records the size and checksum of the file `name` (e.g. [`METRICS_FILE`]) as it is now,
    /// so that damage to it is found before it is used; call it after each write.
    pub fn record_checksum(&self, name: &str) -> Result<(), AtomicWriteError> {
        super::integrity::record_checksum(&self.root, CHECKSUMS_FILE, name)
    }

    /// The recorded files that are missing or differ from their record (and the record
    /// itself when it is unreadable).
    pub fn damaged_files(&self) -> Vec<super::integrity::Damage> {
        super::integrity::recorded_damage(&self.root, CHECKSUMS_FILE)
    }

    /// Writes `provenance.json` and records its checksum.
    pub fn write_provenance(
        &self,
        provenance: &Provenance,
    ) -> Result<(), super::provenance::ProvenanceError> {
        provenance.write(&self.provenance_json())?;
        Ok(self.record_checksum(PROVENANCE_FILE)?)
    }

    /// Writes `metrics.parquet` with `rows` and records its checksum.
    pub fn write_metrics(
        &self,
        rows: &[super::metrics::MetricsRow],
    ) -> Result<(), super::metrics::MetricsError> {
        super::metrics::write_metrics(&self.metrics_parquet(), rows)?;
        Ok(self.record_checksum(METRICS_FILE)?)
    }

    /// Creates the folder and its `checkpoints/` subfolder.
    pub fn create(&self) -> io::Result<()> {
        std::fs::create_dir_all(self.checkpoints())
    }

    /// Whether the run finished and may be reused.
    pub fn is_done(&self) -> bool {
        self.done_marker().is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_done_marker() {
        // DONE written by hand: what the marker holds is done.rs's business.
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::new(tmp.path().join("inception-v4-3f9a1c2e"));
        assert_eq!(run.metrics_parquet(), run.root().join("metrics.parquet"));
        assert_eq!(run.damaged(), run.root().join("damaged"));
        run.create().unwrap();
        assert!(run.checkpoints().is_dir());
        assert!(!run.is_done());
        std::fs::write(run.done_marker(), "{}").unwrap();
        assert!(run.is_done());
    }
}
