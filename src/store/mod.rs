//! The results store: the layout of a run folder, atomic writes, the folder lock,
//! `metrics.parquet`, `provenance.json`, checkpoints, the `DONE` record and the checksums
//! that tell intact files from damaged ones.
//!
//! Everything here is written whole and renamed into place, so a reader (or a resumed run)
//! only ever sees complete files, and everything a user may open (Parquet, JSON,
//! safetensors) makes sense without this program.

pub mod atomic;
pub mod checkpoint;
pub mod clock;
pub mod diagnostics;
pub mod done;
pub mod integrity;
pub mod layout;
pub mod lock;
pub mod metrics;
pub mod provenance;
#[cfg(test)]
pub(crate) mod test_files;

pub use atomic::{write_bytes, write_json, write_safetensors, AtomicWriteError};
pub use checkpoint::{
    Checkpoint, CheckpointError, Checkpoints, Loaded, OnDamage, Rejected, TrainingState,
    CHECKPOINT_FORMAT_VERSION,
};
pub use integrity::{Damage, FileManifest};
pub use layout::RunDir;
pub use lock::{recorded_holder, LockError, LockHolder, RunLock};
pub use metrics::{append_metrics, read_metrics, write_metrics, MetricsError, MetricsRow};
pub use provenance::{
    manifest_hash, GitInfo, Provenance, ProvenanceError, RunStatus, SkippedImage,
};
