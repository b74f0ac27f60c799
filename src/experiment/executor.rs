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

/// `executor:` as written; every field optional. The same fields are `repro run`'s executor
/// flags (`--executor`, `--jobs`, `--partition`, ...), which win over the file's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
#[command(next_help_heading = "Executor")]
pub struct ExecutorSpec {
    /// inline: this process, one run after another (default); local: several `repro`
    /// processes at once on this machine; slurm: one Slurm job per run.
    #[arg(long = "executor", value_enum)]
    pub kind: Option<ExecutorKind>,
    /// local: how many runs train at once (default: one per device of --devices; 2 on the CPU).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// local: the devices of the jobs, one each (`cuda:0`, `cuda:1`); on the CPU, `cpu` for
    /// every job, whose threads then share the cores. Default: --device for every job.
    #[arg(long, value_delimiter = ',', value_name = "DEVICE,...")]
    pub devices: Option<Vec<String>>,
    #[command(flatten)]
    pub slurm: SlurmSpec,
}

impl ExecutorSpec {
    /// `self` merged over `base`: every field `self` sets wins (lists as a whole).
    pub fn merged_over(&self, base: &ExecutorSpec) -> ExecutorSpec {
        let mut merged = serde_yaml::to_value(base).expect("an executor section serialises");
        let mut top = serde_yaml::to_value(self).expect("an executor section serialises");
        drop_nulls(&mut top);
        super::yaml::deep_merge(&mut merged, &top);
        serde_yaml::from_value(merged).expect("a merge of two executor sections is one")
    }
}

/// Removes the unset (null) fields of a mapping, at every level.
fn drop_nulls(value: &mut serde_yaml::Value) {
    if let serde_yaml::Value::Mapping(map) = value {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(drop_nulls);
    }
}

/// `executor.slurm:` as written; each field is also a flag of `repro run` (`--gpus-per-node`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
#[command(next_help_heading = "Executor (slurm)")]
pub struct SlurmSpec {
    /// The partition of the jobs.
    #[arg(long)]
    pub partition: Option<String>,
    /// The account charged.
    #[arg(long)]
    pub account: Option<String>,
    /// The quality of service.
    #[arg(long)]
    pub qos: Option<String>,
    /// Time limit per job, in Slurm's notation (`2-00:00:00`, `90`, `4:00:00`).
    #[arg(long)]
    pub time: Option<String>,
    /// `--gres=gpu:N` per node; the runs then train on `cuda`.
    #[arg(long)]
    pub gpus_per_node: Option<u32>,
    /// CPUs per task.
    #[arg(long)]
    pub cpus_per_task: Option<u32>,
    /// Memory per node (`64G`).
    #[arg(long)]
    pub mem: Option<String>,
    /// Nodes per job (data-parallel replicas started with srun).
    #[arg(long)]
    pub nodes: Option<u32>,
    /// Ranks per node: more than one (or more than one node) starts the run's data-parallel
    /// replicas with `srun` inside the job.
    #[arg(long)]
    pub tasks_per_node: Option<u32>,
    /// The command that starts the ranks (default `srun`; e.g. `srun --mpi=pmix`).
    #[arg(long)]
    pub srun: Option<String>,
    /// Seconds before the time limit at which the job is sent SIGUSR1: the run checkpoints
    /// and the job requeues itself (default 120).
    #[arg(long)]
    pub signal_seconds: Option<u32>,
    /// How often the waiting `repro run` asks the queue (default 30 s).
    #[arg(long)]
    pub poll_seconds: Option<u64>,
    /// How many times a job that ended before its run finished (cancelled, node failure) is
    /// submitted again (default 3).
    #[arg(long)]
    pub max_resubmits: Option<u32>,
    /// Submit the missing runs of an experiment as one job array, at most this many
    /// running at once (`--array=0-N%P`); unset: one job per run.
    #[arg(long, value_name = "N")]
    pub array_parallelism: Option<u32>,
    /// Further `#SBATCH` options, written as given (`--constraint=a100`).
    #[arg(long = "sbatch", value_name = "OPTION")]
    pub sbatch: Option<Vec<String>>,
    /// Shell lines run before `repro` in each job (`module load cuda`).
    #[arg(long = "setup", value_name = "LINE")]
    pub setup: Option<Vec<String>>,
}
