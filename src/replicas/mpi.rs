//! The MPI engine (rsmpi over the system's MPI library): process groups, bootstrap and CPU
//! all-reduce, as Horovod uses it.

use std::sync::Mutex;

use mpi::collective::SystemOperation;
use mpi::datatype::Equivalence;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;

use super::{Collective, DistError};

/// `MPI_COMM_WORLD` of the processes the launcher started.
pub struct MpiReplicas {
    /// Kept alive for the process's lifetime: dropping it finalizes MPI.
    _universe: Universe,
    world: SimpleCommunicator,
    /// MPI is initialized for serialized calls from any thread: one call at a time.
    serial: Mutex<()>,
}

// SAFETY: MPI was initialized with `MPI_THREAD_SERIALIZED` (checked in `init`) and every call
// goes through `serial`, so calls from different threads never overlap.
unsafe impl Send for MpiReplicas {}
unsafe impl Sync for MpiReplicas {}

impl MpiReplicas {
    pub fn init() -> Result<Self, DistError> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| DistError::Launch("MPI was already initialized".into()))?;
        if threading < Threading::Serialized {
            return Err(DistError::Launch(format!(
                "the MPI library offers thread level {threading:?}; repro needs Serialized"
            )));
        }
        let world = universe.world();
        Ok(Self {
            _universe: universe,
            world,
            serial: Mutex::new(()),
        })
    }

    fn serial(&self) -> std::sync::MutexGuard<'_, ()> {
        self.serial.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The element-wise sum over the processes, in place.
    fn sum_in_place<T: Equivalence + Copy>(&self, buffer: &mut [T]) {
        let _serial = self.serial();
        let send = buffer.to_vec();
        self.world
            .all_reduce_into(&send[..], buffer, SystemOperation::sum());
    }
}

impl Collective for MpiReplicas {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn world_size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_reduce_sum_f32(&self, buffer: &mut [f32]) -> Result<(), DistError> {
        self.sum_in_place(buffer);
        Ok(())
    }

    fn all_reduce_sum_f64(&self, buffer: &mut [f64]) -> Result<(), DistError> {
        self.sum_in_place(buffer);
        Ok(())
    }

    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<(), DistError> {
        let _serial = self.serial();
        let root = self.world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        root.broadcast_into(&mut bytes[..]);
        Ok(())
    }

    fn barrier(&self) -> Result<(), DistError> {
        let _serial = self.serial();
        self.world.barrier();
        Ok(())
    }
}
