//! `job.json` in a run folder: the Slurm job that trains the run, so that a second
//! `repro run` (or `repro status`) finds it instead of submitting the run again.

use std::fs::{File, OpenOptions};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub const JOB_JSON: &str = "job.json";
pub const SCRIPT: &str = "slurm.sh";
const SUBMIT_LOCK: &str = ".submit.lock";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job now in charge of the run.
    pub job_id: String,
    /// When it was submitted, RFC 3339 UTC.
    pub submitted_at: String,
    /// Jobs submitted for this run before it, oldest first.
    #[serde(default)]
    pub earlier_jobs: Vec<String>,
}

impl JobRecord {
    /// The record of a run folder (its `job.json`).
    pub fn read(run_dir: &Path) -> Option<Self> {
        Self::read_file(&run_dir.join(JOB_JSON))
    }

    pub fn write(&self, run_dir: &Path) -> Result<(), String> {
        self.write_file(&run_dir.join(JOB_JSON))
    }

    pub fn read_file(path: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn write_file(&self, path: &Path) -> Result<(), String> {
        crate::store::write_json(path, self).map_err(|e| e.to_string())
    }

    /// The record after submitting `job_id` in place of this one.
    pub fn succeeded_by(previous: Option<Self>, job_id: String) -> Self {
        let mut earlier_jobs = Vec::new();
        if let Some(p) = previous {
            earlier_jobs = p.earlier_jobs;
            earlier_jobs.push(p.job_id);
        }
        Self {
            job_id,
            submitted_at: crate::store::clock::now_rfc3339(),
            earlier_jobs,
        }
    }
}

/// Held while one process decides whether to submit a run's job: a second `repro run`
/// waits, then sees the job the first one recorded.
pub struct SubmitLock(File);

impl SubmitLock {
    /// Locks `dir` (a run folder, or the folder of the report jobs) for submitting.
    pub fn take(dir: &Path) -> Result<Self, String> {
        let path = dir.join(SUBMIT_LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        file.lock()
            .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
        Ok(Self(file))
    }
}

impl Drop for SubmitLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}
