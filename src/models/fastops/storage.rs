//! The element types of the fast ops and their access to candle's CPU storage.

use candle_core::{bail, Layout, Result, Storage, Tensor, WithDType};

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

/// Plane `p` (image `p / c`, channel `p % c`) of planes of `hw` entries whose image `i` starts
/// at `xb.0 + i·xb.1` (as [`image_blocks`] gives them).
#[inline(always)]
pub(crate) fn plane<T>(x: &[T], xb: (usize, usize), c: usize, hw: usize, p: usize) -> &[T] {
    &x[xb.0 + (p / c) * xb.1 + (p % c) * hw..][..hw]
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
    with_storage(t, |cpu, layout| f(cpu.as_slice::<T>()?, layout))
}

/// Runs `f` on the CPU storage of `t` (any dtype) and its layout.
pub(crate) fn with_storage<R>(
    t: &Tensor,
    f: impl FnOnce(&candle_core::CpuStorage, &Layout) -> Result<R>,
) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(cpu, layout),
        _ => bail!("fast ops run on the CPU only"),
    }
}

/// The entries of a contiguous f32/f64 CPU tensor as f64, read in place: a per-channel
/// parameter of every BatchNorm, every step, where candle's `to_dtype` and `to_vec1` (two ops,
/// each a parallel loop) took longer than the backward pass's arithmetic on small maps.
pub(crate) fn f64_entries(t: &Tensor) -> Result<Vec<f64>> {
    with_storage(t, |s, l| match s {
        candle_core::CpuStorage::F32(v) => Ok(vec_slice(v, l)?.iter().map(|&x| x as f64).collect()),
        candle_core::CpuStorage::F64(v) => vec_slice(v, l),
        _ => bail!("per-channel parameter: f32 or f64 expected"),
    })
}

/// A contiguous rank-1 view of a per-channel parameter.
pub(crate) fn vec_slice<T: Elem>(s: &[T], l: &Layout) -> Result<Vec<T>> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(s[a..b].to_vec()),
        None => bail!("per-channel parameter is not contiguous"),
    }
}
