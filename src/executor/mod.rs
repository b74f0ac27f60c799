//! Who trains an experiment's missing runs: this process one run after another (`inline`),
//! several `repro` processes on this machine at once (`local`), or one Slurm job per run
//! (`slurm`). The command line picks one through [`build`] and calls [`Executor::train`];
//! the runner and the trainer never see which.
//!
//! `local` and `slurm` start `repro run FILE --runs NAME --executor inline --no-report` for
//! each run ([`JobCommand`]), so a run trains the same way whoever starts it, under the run
//! folder's lock, and resumes from its checkpoint when started again.

mod command;
mod inline;
mod interface;
mod local;
mod outcome;
pub mod slurm;

pub use command::JobCommand;
pub use inline::InlineExecutor;
pub(crate) use interface::finished_and_missing;
pub use interface::Executor;
pub use local::LocalExecutor;
pub use slurm::{job_state_lines, SlurmExecutor};

use crate::runner::RunOptions;
use crate::spec::{ExecutorKind, ExecutorSpec};

/// The executor `spec` (the file's `executor:` with the command line's flags merged over
/// it) asks for.
pub fn build(
    spec: &ExecutorSpec,
    options: &RunOptions,
    command: &JobCommand,
    wait: bool,
) -> Result<Box<dyn Executor>, String> {
    let kind = spec.kind.unwrap_or(ExecutorKind::Inline);
    if !wait && kind != ExecutorKind::Slurm {
        return Err(format!(
            "--no-wait needs the slurm executor; the {} executor trains in this command",
            kind.name()
        ));
    }
    if options.replicas.world_size() > 1 && kind != ExecutorKind::Inline {
        return Err(format!(
            "the {} executor starts its own processes; under mpirun/srun use --executor inline",
            kind.name()
        ));
    }
    Ok(match kind {
        ExecutorKind::Inline => Box::new(InlineExecutor::new(options.clone())),
        ExecutorKind::Local => Box::new(LocalExecutor::new(spec, options, command.clone())?),
        ExecutorKind::Slurm => Box::new(SlurmExecutor::new(
            &spec.slurm,
            options,
            command.clone(),
            wait,
        )?),
    })
}

/// `over` merged over `base`: every field `over` sets wins.
pub fn merge_specs(base: &ExecutorSpec, over: &ExecutorSpec) -> ExecutorSpec {
    let s = &over.slurm;
    let b = &base.slurm;
    ExecutorSpec {
        kind: over.kind.or(base.kind),
        jobs: over.jobs.or(base.jobs),
        devices: over.devices.clone().or_else(|| base.devices.clone()),
        slurm: crate::spec::SlurmSpec {
            partition: s.partition.clone().or_else(|| b.partition.clone()),
            account: s.account.clone().or_else(|| b.account.clone()),
            qos: s.qos.clone().or_else(|| b.qos.clone()),
            time: s.time.clone().or_else(|| b.time.clone()),
            gpus_per_node: s.gpus_per_node.or(b.gpus_per_node),
            cpus_per_task: s.cpus_per_task.or(b.cpus_per_task),
            mem: s.mem.clone().or_else(|| b.mem.clone()),
            nodes: s.nodes.or(b.nodes),
            tasks_per_node: s.tasks_per_node.or(b.tasks_per_node),
            srun: s.srun.clone().or_else(|| b.srun.clone()),
            signal_seconds: s.signal_seconds.or(b.signal_seconds),
            poll_seconds: s.poll_seconds.or(b.poll_seconds),
            max_resubmits: s.max_resubmits.or(b.max_resubmits),
            array_parallelism: s.array_parallelism.or(b.array_parallelism),
            sbatch: s.sbatch.clone().or_else(|| b.sbatch.clone()),
            setup: s.setup.clone().or_else(|| b.setup.clone()),
        },
    }
}
