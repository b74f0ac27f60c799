//! The Slurm executor's settings: `executor.slurm` with its defaults filled in.

use std::time::Duration;

use crate::experiment::SlurmSpec;

/// `executor.slurm` with its defaults filled in.
#[derive(Clone, Debug)]
pub struct Settings {
    pub spec: SlurmSpec,
    pub signal_seconds: u32,
    pub poll: Duration,
    pub max_resubmits: u32,
}

impl Settings {
    pub fn from_spec(spec: SlurmSpec) -> Self {
        Self {
            signal_seconds: spec.signal_seconds.unwrap_or(120),
            poll: Duration::from_secs(spec.poll_seconds.unwrap_or(30).max(1)),
            max_resubmits: spec.max_resubmits.unwrap_or(3),
            spec,
        }
    }

    /// Processes per job: the run's data-parallel replicas.
    pub fn ranks(&self) -> u32 {
        self.spec.nodes.unwrap_or(1) * self.spec.tasks_per_node.unwrap_or(1)
    }

    /// The device the jobs train on.
    pub(super) fn device(&self) -> &'static str {
        match self.spec.gpus_per_node.unwrap_or(0) {
            0 => "cpu",
            _ => "cuda",
        }
    }
}
