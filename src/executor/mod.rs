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

use crate::experiment::{ExecutorKind, ExecutorSpec};
use crate::runner::RunOptions;

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
