//! Joining the replicas this process was started as, through the engine the build has.

use std::sync::Arc;

use super::collective::{DistError, Replicas, Single};
use super::launch::LaunchInfo;

/// The replicas this process was started as: [`Single`] alone; when a launcher started
/// several processes, NCCL in a build with the `nccl` feature (any launcher), else MPI in a
/// build with the `mpi` feature (`mpirun`, `srun`), else an error saying what to do.
pub fn from_environment() -> Result<(Replicas, LaunchInfo), DistError> {
    let info = LaunchInfo::detect(|name| std::env::var(name).ok())?;
    if info.world_size == 1 {
        return Ok((Arc::new(Single), info));
    }
    #[cfg(feature = "nccl")]
    {
        let replicas = super::nccl::NcclReplicas::init(&info)?;
        return Ok((Arc::new(replicas), info));
    }
    #[allow(unreachable_code)]
    if info.launcher == "torchrun" {
        return Err(DistError::Launch(format!(
            "started by torchrun as {} processes: without the `nccl` feature (CUDA builds) repro's replicas join through MPI; start them with `mpirun -np {} repro ...` or `srun -n {} repro ...`",
            info.world_size, info.world_size, info.world_size
        )));
    }
    join(info)
}

#[cfg(feature = "mpi")]
fn join(info: LaunchInfo) -> Result<(Replicas, LaunchInfo), DistError> {
    let replicas = super::mpi::MpiReplicas::init()?;
    use super::collective::Collective;
    if (replicas.rank(), replicas.world_size()) != (info.rank, info.world_size) {
        return Err(DistError::Launch(format!(
            "{} says rank {} of {}, MPI says rank {} of {}",
            info.launcher,
            info.rank,
            info.world_size,
            replicas.rank(),
            replicas.world_size()
        )));
    }
    Ok((Arc::new(replicas), info))
}

#[cfg(not(feature = "mpi"))]
fn join(info: LaunchInfo) -> Result<(Replicas, LaunchInfo), DistError> {
    Err(DistError::Launch(format!(
        "started by {} as {} processes, but this repro was built without MPI: build it with `cargo build --release --features mpi` (needs an MPI library, e.g. Debian's libopenmpi-dev, and libclang-dev)",
        info.launcher, info.world_size
    )))
}
