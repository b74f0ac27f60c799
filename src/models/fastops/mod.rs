//! CPU fast paths for the operations that dominate Inception training: convolution (forward,
//! input gradient, weight gradient), BatchNorm + ReLU fused, and pooling.
//!
//! Each op is a candle custom op (`CustomOp2`/`CustomOp3`/`CustomOp1`) whose forward and backward
//! run on slices of the CPU storage:
//!
//! - [`conv2d`]: 1×1 stride-1 convolutions are plain matrix products over each image (no im2col);
//!   the others go through an im2col of a band of output rows (bounded so the band stays in
//!   cache) and one GEMM per band, with the zero padding of each axis written by the im2col
//!   itself (no padded copy of the input). The input gradient is `Wᵀ·dY` per band followed by
//!   col2im; the weight gradient is `Σ dY·colᵀ`, accumulated per fixed group of images and summed
//!   in a fixed order, so results are deterministic for a given number of threads.
//! - [`bn_relu`]: batch statistics in one parallel pass per channel (f64 accumulation), the
//!   running statistics updated exactly as candle's `BatchNorm` does, then
//!   `max(0, x·a + b)` in place of candle's transpose/contiguous/broadcast chain; the backward
//!   recomputes `x̂` from the input instead of storing it.
//! - [`max_pool`] and [`avg_pool_same`]: direct loops over each plane, backward by scatter
//!   (max, first maximum of the window wins, as in PyTorch) or by a box sum of `dY / count`
//!   (average).
//! - [`scaled_residual`]: the tail of an Inception-ResNet unit, `act(x + scale·(u + bias))`, in
//!   one pass (four candle ops otherwise).
//!
//! The fast ops run only on the CPU device with f32/f64 tensors; everywhere else (CUDA, other
//! dtypes) callers fall back to the stock candle ops. The stock path can also be forced with the
//! environment variable `REPRO_STOCK_OPS=1` (read once, at the first use) or [`set_enabled`], so
//! the two can be compared; `tests.rs` checks every fast op against the stock one.

mod bn;
pub mod conv;
mod pool;
pub mod profile;
mod residual;
mod simd;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU8, Ordering};

use candle_core::{bail, DType, Layout, Result, Storage, Tensor, WithDType};

pub use bn::bn_relu;
pub use conv::conv2d;
pub use pool::{avg_pool_same, max_pool};
pub use residual::scaled_residual;

/// 0: not read yet, 1: fast ops on, 2: stock ops forced.
static MODE: AtomicU8 = AtomicU8::new(0);

/// Whether the fast ops are in use (unless the tensor is not on the CPU): false when
/// `REPRO_STOCK_OPS` is set to anything but `0` or empty, or after `set_enabled(false)`.
pub fn enabled() -> bool {
    match MODE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let stock = std::env::var("REPRO_STOCK_OPS")
                .map(|v| !v.is_empty() && v != "0")
                .unwrap_or(false);
            // Keep a value another thread may have set meanwhile.
            let _ = MODE.compare_exchange(
                0,
                if stock { 2 } else { 1 },
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            MODE.load(Ordering::Relaxed) == 1
        }
    }
}

/// Switches between the fast ops and stock candle for the whole process (benchmarks).
pub fn set_enabled(on: bool) {
    MODE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// Whether a fast op can take `x`: fast ops on, CPU device (and the device paths not forced
/// onto it), f32 or f64.
pub fn usable(x: &Tensor) -> bool {
    enabled()
        && x.device().is_cpu()
        && !DEVICE_PATHS_ON_CPU.load(Ordering::Relaxed)
        && matches!(x.dtype(), DType::F32 | DType::F64)
}

static DEVICE_PATHS_ON_CPU: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Runs on the CPU the ops a CUDA device runs instead of the fast ops: stock candle, and the
/// convolutions through [`crate::models::cuda_conv`] with repro's own backward. For tests of
/// that path on a machine without a GPU; process-wide, like [`set_enabled`].
pub fn force_device_paths_on_cpu(on: bool) {
    DEVICE_PATHS_ON_CPU.store(on, Ordering::Relaxed);
}

/// Whether the convolution of `x` goes through [`crate::models::cuda_conv`]: on a CUDA device
/// (unless the stock ops are forced), or on the CPU under [`force_device_paths_on_cpu`].
pub(crate) fn device_paths(x: &Tensor) -> bool {
    match x.device().is_cpu() {
        true => DEVICE_PATHS_ON_CPU.load(Ordering::Relaxed),
        false => enabled() && x.device().is_cuda(),
    }
}

/// The float types the fast ops run on.
pub(crate) trait Elem: WithDType + Copy + Send + Sync + 'static {}
impl Elem for f32 {}
impl Elem for f64 {}

/// A buffer of `n` entries that the caller overwrites entirely before reading any (outputs of
/// GEMMs with `read_dst = false`, im2col bands, element-wise outputs): no memset pass.
#[allow(clippy::uninit_vec)]
pub(crate) fn uninit<T: Elem>(n: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: f32/f64 have no invalid bit patterns and every entry is written before it is read.
    unsafe { v.set_len(n) };
    v
}

#[inline]
pub(crate) fn zero<T: Elem>() -> T {
    T::from_f64(0.0)
}

/// Offset of the first image and the stride between images of a rank-4 layout whose every image
/// is one contiguous block (a contiguous tensor, or a channel slice of one), else `None`.
pub(crate) fn image_blocks(l: &Layout) -> Option<(usize, usize)> {
    let dims = l.dims();
    let strides = l.stride();
    if dims.len() != 4 {
        return None;
    }
    let mut expected = 1;
    for d in (1..4).rev() {
        if dims[d] != 1 && strides[d] != expected {
            return None;
        }
        expected *= dims[d];
    }
    let batch_stride = if dims[0] == 1 { expected } else { strides[0] };
    Some((l.start_offset(), batch_stride))
}

/// `t` itself when its images are contiguous blocks, else a contiguous copy.
pub(crate) fn blocked(t: &Tensor) -> Result<Tensor> {
    if image_blocks(t.layout()).is_some() {
        Ok(t.clone())
    } else {
        t.contiguous()
    }
}

/// Runs `f` on the CPU slice of `t` and its layout.
pub(crate) fn with_slice<T: Elem, R>(
    t: &Tensor,
    f: impl FnOnce(&[T], &Layout) -> Result<R>,
) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(cpu.as_slice::<T>()?, layout),
        _ => bail!("fast ops run on the CPU only"),
    }
}

/// A contiguous rank-1 view of a per-channel parameter.
pub(crate) fn vec_slice<T: Elem>(s: &[T], l: &Layout) -> Result<Vec<T>> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(s[a..b].to_vec()),
        None => bail!("per-channel parameter is not contiguous"),
    }
}

/// Whether the fast ops split their work over candle's own CPU worker pool (the one that runs
/// candle's element-wise ops, `CANDLE_NUM_THREADS` threads) instead of rayon's global pool
/// (`RAYON_NUM_THREADS`): `REPRO_FASTOPS_POOL=candle`. Sharing candle's pool keeps a third
/// spinning thread off a 2-core machine; rayon's pool (the default) sleeps when idle and copes
/// better when other processes take cores.
fn candle_pool() -> bool {
    static POOL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *POOL.get_or_init(|| {
        std::env::var("REPRO_FASTOPS_POOL")
            .map(|v| v == "candle")
            .unwrap_or(false)
    })
}

/// How many times an idle worker of candle's element-wise pool spins before it parks, unless
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT` says otherwise. Candle's default (25,000) keeps a worker
/// spinning for about a millisecond after every element-wise op; on a machine with as many
/// cores as threads that spin takes a core from the rayon workers running the next
/// convolution (measured: Inception-ResNet-v2 inference at 107 px, batch 16, on 2 cores, 84 ->
/// 100 images/s with 500).
const CANDLE_SPIN_LIMIT: &str = "500";

/// Sets up the CPU thread pools for the fast ops: shortens the idle spin of candle's
/// element-wise pool (see [`CANDLE_SPIN_LIMIT`]) unless the user set it. Call at the start of
/// `main`, before any thread exists (it sets an environment variable, which candle reads when its
/// pool starts).
pub fn configure_thread_pools() {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VAR).is_none() {
        std::env::set_var(VAR, CANDLE_SPIN_LIMIT);
    }
}

/// Number of threads the fast ops split their work over.
pub(crate) fn threads() -> usize {
    if candle_pool() {
        candle_core::utils::barrier_pool().n_workers() + 1
    } else {
        rayon::current_num_threads().max(1)
    }
}

/// Runs `f` on a worker thread of rayon's global pool, the fast ops' pool, unless the caller
/// already runs on a rayon worker (whose pool the ops then use, as their parallel loops always
/// do) or the fast ops share candle's pool. A whole forward or training step then forks each op's parallel loop
/// from inside the pool: the calling worker takes a share of the work and the other picks its
/// share from the local queue, instead of the caller sleeping on a latch while a worker is woken
/// for every op (measured: Inception-ResNet-v2 inference at 107 px, batch 16, 2 cores, +12 %).
pub fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if candle_pool() || rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

/// Calls `f(i)` for every `i < n`, in parallel. The caller makes the items independent
/// (results must not depend on which thread runs which item).
pub(crate) fn par_items(n: usize, f: impl Fn(usize) + Sync + Send) {
    use rayon::prelude::*;
    if n <= 1 || threads() == 1 {
        (0..n).for_each(f);
    } else if candle_pool() {
        candle_core::utils::barrier_pool().execute_chunked(n, |range| range.for_each(&f));
    } else {
        (0..n).into_par_iter().for_each(f);
    }
}

/// `f(i, chunk_i)` over consecutive chunks of `len` entries of `out`, in parallel.
pub(crate) fn par_chunks<T: Send>(
    out: &mut [T],
    len: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if len == 0 {
        return;
    }
    let n = out.len() / len;
    let base = SyncPtr(out.as_mut_ptr());
    par_items(n, |i| {
        let b = &base;
        // Chunks are disjoint and each index is visited once.
        let chunk = unsafe { std::slice::from_raw_parts_mut(b.0.add(i * len), len) };
        f(i, chunk)
    });
}

/// `f(i)` for every `i < n` in parallel, collected in index order.
pub(crate) fn par_map<R: Send>(n: usize, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
    par_chunks(&mut out, 1, |i, slot| slot[0] = Some(f(i)));
    out.into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

pub(crate) struct SyncPtr<T>(pub(crate) *mut T);
unsafe impl<T: Send> Sync for SyncPtr<T> {}
unsafe impl<T: Send> Send for SyncPtr<T> {}
