//! The NCCL engine (`--features nccl`, CUDA builds): one process per GPU, gradients summed on
//! the device by NCCL's all-reduce, as PyTorch's DDP does. Processes come from any launcher
//! that says rank, world size and local rank (`torchrun`, `srun`, `mpirun`); the NCCL unique
//! id goes from rank 0 to the others through a file (`REPRO_NCCL_ID_FILE`, on a filesystem
//! all nodes share; by default a file in /tmp named after the launch, enough for one node),
//! as PyTorch's `file://` rendezvous does. The few host-side operations (a loss sum, the
//! weight checksum, a stop flag) go through the same communicator via small device buffers.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candle_core::backend::BackendStorage;
use candle_core::cuda::cudarc::driver::CudaStream;
use candle_core::cuda::cudarc::nccl::result::NcclError;
use candle_core::cuda::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::{CudaStorage, CustomOp1, Layout, Shape, Tensor};

use super::{Collective, DistError, LaunchInfo};

/// How long the other ranks wait for rank 0's id file.
const ID_WAIT: Duration = Duration::from_secs(300);
/// How much earlier than a rank's start rank 0 may have written the id file of the same launch
/// (launchers start ranks within seconds; file systems shared by nodes differ in clock a little).
const STALE_AFTER: Duration = Duration::from_secs(120);

/// A communicator over the GPUs of the launched processes.
pub struct NcclReplicas {
    rank: usize,
    world: usize,
    comm: Mutex<SendComm>,
}

/// NCCL communicators may be used from any thread, one call at a time; the mutex around it
/// makes sure of the latter.
struct SendComm(Comm);

// SAFETY: a `Comm` holds a raw NCCL communicator and its stream. NCCL allows a communicator
// to be used from any thread as long as calls do not overlap, which `NcclReplicas::comm`
// (a mutex) guarantees.
unsafe impl Send for SendComm {}

impl NcclReplicas {
    /// Joins the other ranks on this process's GPU (its local rank).
    pub fn init(info: &LaunchInfo) -> Result<Self, DistError> {
        let launch = |e: &dyn std::fmt::Display| DistError::Launch(e.to_string());
        // The run's own device (one per process and ordinal): the communicator works on its
        // one stream, so NCCL's calls are ordered with the training step's kernels.
        let device = crate::device::cuda_device(info.local_rank)
            .map_err(|e| launch(&format!("local rank {}: {e}", info.local_rank)))?;
        let stream = device
            .as_cuda_device()
            .map_err(|e| launch(&e))?
            .cuda_stream();
        let (id, id_path) = exchange_id(info)?;
        let comm = Comm::from_rank(stream, info.rank, info.world_size, id).map_err(|e| {
            launch(&format!(
                "NCCL could not join rank {} of {}: {}",
                info.rank,
                info.world_size,
                nccl_text(&e)
            ))
        })?;
        let replicas = Self {
            rank: info.rank,
            world: info.world_size,
            comm: Mutex::new(SendComm(comm)),
        };
        // Every rank has joined: the id file has served, and a later launch must not read it.
        replicas.barrier()?;
        if info.rank == 0 {
            let _ = std::fs::remove_file(&id_path);
        }
        Ok(replicas)
    }

    fn comm(&self) -> std::sync::MutexGuard<'_, SendComm> {
        self.comm.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sums a host buffer over the ranks through a device copy.
    fn sum_host<T>(&self, buffer: &mut [T]) -> Result<(), DistError>
    where
        T: candle_core::cuda::cudarc::driver::DeviceRepr
            + candle_core::cuda::cudarc::nccl::safe::NcclType
            + Copy,
    {
        let comm = self.comm();
        let stream: Arc<CudaStream> = comm.0.stream();
        let copy = |e| DistError::op("all-reduce", e);
        let mut device = stream.clone_htod(buffer).map_err(copy)?;
        comm.0
            .all_reduce_in_place(&mut device, &ReduceOp::Sum)
            .map_err(|e| DistError::op("all-reduce", nccl_text(&e)))?;
        let summed = stream.clone_dtoh(&device).map_err(copy)?;
        buffer.copy_from_slice(&summed);
        Ok(())
    }
}

impl Collective for NcclReplicas {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_sum_f32(&self, buffer: &mut [f32]) -> Result<(), DistError> {
        self.sum_host(buffer)
    }

    fn all_reduce_sum_f64(&self, buffer: &mut [f64]) -> Result<(), DistError> {
        self.sum_host(buffer)
    }

    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<(), DistError> {
        let comm = self.comm();
        let stream = comm.0.stream();
        let copy = |e| DistError::op("broadcast", e);
        let nccl = |e: NcclError| DistError::op("broadcast", nccl_text(&e));
        let mut len = stream.clone_htod(&[bytes.len() as u64]).map_err(copy)?;
        comm.0.broadcast_in_place(&mut len, 0).map_err(nccl)?;
        let len = stream.clone_dtoh(&len).map_err(copy)?[0] as usize;
        bytes.resize(len, 0);
        if len == 0 {
            return Ok(());
        }
        let mut device = stream.clone_htod(&bytes[..]).map_err(copy)?;
        comm.0.broadcast_in_place(&mut device, 0).map_err(nccl)?;
        *bytes = stream.clone_dtoh(&device).map_err(copy)?;
        Ok(())
    }

    fn barrier(&self) -> Result<(), DistError> {
        self.all_reduce_sum_f32(&mut [0.0])
    }

    fn reduces_on(&self, device: &candle_core::Device) -> bool {
        device.is_cuda()
    }

    fn all_reduce_sum_device(&self, flat: &Tensor) -> Result<Tensor, DistError> {
        flat.apply_op1_no_bwd(&DeviceSum(&self.comm))
            .map_err(|e| DistError::op("all-reduce", e))
    }
}

/// The sum over the ranks of a contiguous f32 or f64 device tensor, into a new one.
struct DeviceSum<'a>(&'a Mutex<SendComm>);

impl CustomOp1 for DeviceSum<'_> {
    fn name(&self) -> &'static str {
        "nccl-all-reduce-sum"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("NCCL reduces GPU tensors only")
    }

    fn cuda_fwd(
        &self,
        storage: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("NCCL all-reduce of a non-contiguous tensor");
        };
        let comm = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let out = match storage.dtype() {
            candle_core::DType::F32 => sum_slice::<f32>(&comm.0, storage, start..end)?,
            candle_core::DType::F64 => sum_slice::<f64>(&comm.0, storage, start..end)?,
            other => candle_core::bail!(
                "NCCL all-reduce of {} gradients is not supported (f32 and f64 are)",
                other.as_str()
            ),
        };
        Ok((out, layout.shape().clone()))
    }
}

/// The sum over the ranks of `range` of the storage's values, into new device memory.
fn sum_slice<T>(
    comm: &Comm,
    storage: &CudaStorage,
    range: std::ops::Range<usize>,
) -> candle_core::Result<CudaStorage>
where
    T: candle_core::cuda::CudaDType
        + candle_core::cuda::cudarc::driver::DeviceRepr
        + candle_core::cuda::cudarc::driver::ValidAsZeroBits
        + candle_core::cuda::cudarc::nccl::safe::NcclType,
{
    let device = storage.device().clone();
    let src = storage.as_cuda_slice::<T>()?.slice(range.clone());
    let mut dst = device.alloc_zeros::<T>(range.len())?;
    // The communicator works on the device's one stream (`crate::device::cuda_device`): the
    // all-reduce is queued after the kernels that made `src` and before those that read `dst`,
    // with no host synchronisation.
    comm.all_reduce(&src, &mut dst, &ReduceOp::Sum)
        .map_err(|e| candle_core::Error::Cuda(format!("all-reduce: {}", nccl_text(&e)).into()))?;
    Ok(CudaStorage::wrap_cuda_slice(dst, device))
}

/// What NCCL said went wrong, by the name of its result code (`ncclInvalidUsage`,
/// `ncclSystemError`, …): cudarc's error prints nothing more than "NcclError".
fn nccl_text(e: &NcclError) -> String {
    format!("NCCL returned {:?}", e.0)
}

/// Rank 0 makes the NCCL unique id and writes it to the id file; the others wait for it.
/// Returns the id and the file, which rank 0 removes once every rank has joined.
///
/// A file left by an earlier launch (one that failed before every rank joined, or the same
/// `REPRO_NCCL_ID_FILE` reused) would make NCCL wait forever for ranks of that launch: rank 0
/// removes any old file before writing, and the others take only a file written less than
/// [`STALE_AFTER`] before they started waiting.
fn exchange_id(info: &LaunchInfo) -> Result<(Id, PathBuf), DistError> {
    let path = id_file(info);
    let launch = |m: String| DistError::Launch(m);
    if info.rank == 0 {
        let _ = std::fs::remove_file(&path);
        let id =
            Id::new().map_err(|e| launch(format!("making the unique id: {}", nccl_text(&e))))?;
        let bytes: Vec<u8> = id.internal().iter().map(|&c| c as u8).collect();
        crate::store::write_bytes(&path, &bytes)
            .map_err(|e| launch(format!("writing the NCCL id to {}: {e}", path.display())))?;
        return Ok((id, path));
    }
    let start = Instant::now();
    let not_before = std::time::SystemTime::now() - STALE_AFTER;
    loop {
        let fresh = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= not_before);
        if let Some(bytes) = fresh.then(|| std::fs::read(&path).ok()).flatten() {
            if bytes.len() == 128 {
                let mut internal = [0 as std::ffi::c_char; 128];
                for (d, s) in internal.iter_mut().zip(bytes) {
                    *d = s as std::ffi::c_char;
                }
                return Ok((Id::uninit(internal), path));
            }
        }
        if start.elapsed() > ID_WAIT {
            return Err(launch(format!(
                "rank {} waited {} s for rank 0's NCCL id in {}; on several nodes set \
                 REPRO_NCCL_ID_FILE to a path on a filesystem they all share",
                info.rank,
                ID_WAIT.as_secs(),
                path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `REPRO_NCCL_ID_FILE`, else a file in the temporary folder named after the launch (the
/// launcher's job or run id), so that a file left by an earlier launch is never read.
fn id_file(info: &LaunchInfo) -> PathBuf {
    if let Some(p) = std::env::var_os("REPRO_NCCL_ID_FILE") {
        return p.into();
    }
    let var = |n: &str| std::env::var(n).ok();
    let key = var("TORCHELASTIC_RUN_ID")
        .or_else(|| {
            Some(format!(
                "{}.{}",
                var("SLURM_JOB_ID")?,
                var("SLURM_STEP_ID")?
            ))
        })
        .or_else(|| var("PMIX_NAMESPACE"))
        .or_else(|| {
            var("OMPI_MCA_orte_hnp_uri")
                .map(|u| format!("{:016x}", crate::hashing::fnv1a64(u.as_bytes())))
        })
        .unwrap_or_else(|| format!("{}-{}", info.launcher, info.world_size));
    std::env::temp_dir().join(format!("repro-nccl-{key}.id"))
}
