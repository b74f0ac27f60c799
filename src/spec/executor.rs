//! The `executor:` section of an experiment file: how `repro run` carries out the missing
//! runs. A profile may carry its own `executor:` (merged over the file's), and the command
//! line's flags win over both. None of it enters a run's hash: where a run trains does not
//! change what it computes.

use serde::{Deserialize, Serialize};

/// Which executor trains the missing runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// One run after another in this process (the default).
    Inline,
    /// Several `repro` processes on this machine at once, each on its own device.
    Local,
    /// One Slurm job per missing run; the results folder must be on a shared filesystem.
    Slurm,
}

impl ExecutorKind {
    pub fn name(self) -> &'static str {
        match self {
            ExecutorKind::Inline => "inline",
            ExecutorKind::Local => "local",
            ExecutorKind::Slurm => "slurm",
        }
    }
}

/// `executor:` as written; every field optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorSpec {
    pub kind: Option<ExecutorKind>,
    /// local: how many runs train at once.
    pub jobs: Option<usize>,
    /// local: the devices of the jobs, one each (`cuda:0`, `cuda:1`); on the CPU, `cpu` for
    /// every job, whose threads then share the cores.
    pub devices: Option<Vec<String>>,
    pub slurm: SlurmSpec,
}

/// `executor.slurm:` as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmSpec {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Time limit per job, in Slurm's notation (`2-00:00:00`, `90`, `4:00:00`).
    pub time: Option<String>,
    /// `--gres=gpu:N` per node; the runs then train on `cuda`.
    pub gpus_per_node: Option<u32>,
    pub cpus_per_task: Option<u32>,
    /// Memory per node (`64G`).
    pub mem: Option<String>,
    pub nodes: Option<u32>,
    /// Ranks per node: more than one (or more than one node) starts the run's data-parallel
    /// replicas with `srun` inside the job.
    pub tasks_per_node: Option<u32>,
    /// The command that starts the ranks (default `srun`; e.g. `srun --mpi=pmix`).
    pub srun: Option<String>,
    /// Seconds before the time limit at which the job is sent SIGUSR1: the run checkpoints
    /// and the job requeues itself (default 120).
    pub signal_seconds: Option<u32>,
    /// How often the waiting `repro run` asks the queue (default 30 s).
    pub poll_seconds: Option<u64>,
    /// How many times a job that ended before its run finished (cancelled, node failure) is
    /// submitted again (default 3).
    pub max_resubmits: Option<u32>,
    /// Submit the missing runs of an experiment as one job array, at most this many
    /// running at once (`--array=0-N%P`); unset: one job per run.
    pub array_parallelism: Option<u32>,
    /// Further `#SBATCH` options, written as given (`--constraint=a100`).
    pub sbatch: Option<Vec<String>>,
    /// Shell lines run before `repro` in each job (`module load cuda`).
    pub setup: Option<Vec<String>>,
}
