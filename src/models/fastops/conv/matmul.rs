//! The matrix products of the convolutions: the `gemm` crate called with explicit strides, and
//! split by output columns over the threads where it would run on one.

use gemm::Parallelism;

use super::super::{par_items, threads, Elem, SyncPtr};

/// `dst (m×n, row stride dst_rs) [+]= lhs (m×k) · rhs (k×n)`, strides given as (row, column).
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) unsafe fn mm<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const T,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const T,
    rhs_rs: usize,
    rhs_cs: usize,
    par: Parallelism,
) {
    strided(
        (m, n, k),
        (dst, dst_rs, 1),
        accumulate,
        (lhs, lhs_rs, lhs_cs),
        (rhs, rhs_rs, rhs_cs),
        par,
    )
}

/// `dst = lhs (m×k) · rhs (k×n)`, every operand given as (pointer, row stride, column stride).
#[inline]
pub(super) unsafe fn mm_general<T: Elem>(
    shape: (usize, usize, usize),
    dst: (*mut T, usize, usize),
    lhs: (*const T, usize, usize),
    rhs: (*const T, usize, usize),
    par: Parallelism,
) {
    strided(shape, dst, false, lhs, rhs, par)
}

/// `dst [+]= lhs · rhs` through the `gemm` crate, every operand as (pointer, row stride, column
/// stride).
#[inline]
unsafe fn strided<T: Elem>(
    (m, n, k): (usize, usize, usize),
    dst: (*mut T, usize, usize),
    accumulate: bool,
    lhs: (*const T, usize, usize),
    rhs: (*const T, usize, usize),
    par: Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst.0,
        dst.2 as isize,
        dst.1 as isize,
        accumulate,
        lhs.0,
        lhs.2 as isize,
        lhs.1 as isize,
        rhs.0,
        rhs.2 as isize,
        rhs.1 as isize,
        T::from_f64(1.0),
        T::from_f64(1.0),
        false,
        false,
        false,
        par,
    )
}

/// [`mm`] over all threads, each computing its own range of the `n` output columns with a
/// single-threaded GEMM. The `gemm` crate runs a GEMM on one thread when each of its blocks is
/// under 48·48·256 multiply-adds, which most whole-batch GEMMs of small maps are; split by
/// columns they keep every core busy. The result depends on the thread count only.
pub(super) unsafe fn mm_split<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    dst: (*mut T, usize, usize),
    lhs: (*const T, usize, usize),
    rhs: (*const T, usize, usize),
) {
    let t = threads();
    // Column ranges in whole 16-column strips (the micro-kernels' width for f32).
    let strips = n.div_ceil(16);
    if t <= 1 || strips < 2 || !split_columns() {
        let par = if t <= 1 {
            Parallelism::None
        } else {
            Parallelism::Rayon(t)
        };
        return mm_general((m, n, k), dst, lhs, rhs, par);
    }
    let parts = t.min(strips);
    let (d, l, r) = (
        SyncPtr(dst.0),
        SyncPtr(lhs.0 as *mut T),
        SyncPtr(rhs.0 as *mut T),
    );
    par_items(parts, |i| {
        let (c0, c1) = (
            (strips * i / parts * 16).min(n),
            (strips * (i + 1) / parts * 16).min(n),
        );
        let (d, l, r) = (&d, &l, &r);
        // Disjoint column ranges of dst; lhs and rhs are only read.
        mm_general(
            (m, c1 - c0, k),
            (d.0.add(c0 * dst.2), dst.1, dst.2),
            (l.0, lhs.1, lhs.2),
            (r.0.add(c0 * rhs.2), rhs.1, rhs.2),
            Parallelism::None,
        )
    });
}

/// Whether [`mm_split`] splits (`REPRO_GEMM_SPLIT=0` leaves the split to the `gemm` crate, for
/// comparison).
pub(super) fn split_columns() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("REPRO_GEMM_SPLIT").map_or(true, |v| v != "0"))
}

/// Parallelism inside one GEMM: none when the images alone keep every thread busy.
pub(super) fn inner_par(images: usize) -> Parallelism {
    let t = threads();
    if images >= t {
        Parallelism::None
    } else {
        Parallelism::Rayon(t)
    }
}
