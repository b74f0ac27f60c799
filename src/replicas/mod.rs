//! Data-parallel training across processes: a [`Collective`] reduces the gradients of the
//! replicas between backward and clipping. The trainer and the runner only see this trait;
//! the engines behind it are existing ones — MPI (`--features mpi`, processes started by
//! `mpirun`, `srun` or any MPI launcher) — never a hand-written substitute. One process is
//! [`Single`], the identity.

mod collective;
mod join;
mod launch;
#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "nccl")]
mod nccl;

pub use collective::{
    all_reduce_mean, any_replica, single, Collective, DistError, Replicas, Single,
};
pub use join::from_environment;
pub use launch::LaunchInfo;
