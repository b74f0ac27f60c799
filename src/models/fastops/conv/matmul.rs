//! The matrix products of the convolutions: the `gemm` crate called with explicit strides (or,
//! under bf16, repro's bf16 product), and split by output columns over the threads where it
//! would run on one.

use gemm::Parallelism;

use super::super::{bf16, par_items, threads, Elem, SyncPtr};
use super::geom::Arith;

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
    arith: Arith,
) {
    strided(
        (m, n, k),
        (dst, dst_rs, 1),
        accumulate,
        (lhs, lhs_rs, lhs_cs),
        (rhs, rhs_rs, rhs_cs),
        par,
        arith,
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
    arith: Arith,
) {
    strided(shape, dst, false, lhs, rhs, par, arith)
}

/// `dst [+]= lhs · rhs`, every operand as (pointer, row stride, column stride): through the
/// `gemm` crate, or under [`Arith::Bf16`] through [`bf16::gemm_bf16`] (f32 only), split by
/// columns over the threads `par` asks for.
#[inline]
unsafe fn strided<T: Elem>(
    (m, n, k): (usize, usize, usize),
    dst: (*mut T, usize, usize),
    accumulate: bool,
    lhs: (*const T, usize, usize),
    rhs: (*const T, usize, usize),
    par: Parallelism,
    arith: Arith,
) {
    if arith == Arith::Bf16 {
        assert!(
            std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>(),
            "bf16 products take f32 tensors"
        );
        let parts = match par {
            Parallelism::Rayon(t) => t.max(1),
            _ => 1,
        };
        let l = SyncPtr(lhs.0.cast::<f32>() as *mut f32);
        let rhs = (rhs.0.cast::<f32>(), rhs.1, rhs.2);
        let dst = (dst.0.cast::<f32>(), dst.1, dst.2);
        return by_columns(parts, n, dst, rhs, |cols, d, r| {
            let l = &l;
            bf16::gemm_bf16((m, cols, k), d, accumulate, (l.0, lhs.1, lhs.2), r)
        });
    }
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

/// Runs `f(columns, dst, rhs)` on up to `parts` threads, each on its own range of the `n`
/// output columns (whole 16-column strips, the micro-kernels' width for f32), with `dst` and
/// `rhs` moved to the range's first column. The result depends on `parts` only.
unsafe fn by_columns<T: Elem>(
    parts: usize,
    n: usize,
    dst: (*mut T, usize, usize),
    rhs: (*const T, usize, usize),
    f: impl Fn(usize, (*mut T, usize, usize), (*const T, usize, usize)) + Sync,
) {
    let strips = n.div_ceil(16);
    let parts = parts.min(strips).max(1);
    if parts == 1 {
        return f(n, dst, rhs);
    }
    let (d, r) = (SyncPtr(dst.0), SyncPtr(rhs.0 as *mut T));
    par_items(parts, |i| {
        let (c0, c1) = (
            (strips * i / parts * 16).min(n),
            (strips * (i + 1) / parts * 16).min(n),
        );
        let (d, r) = (&d, &r);
        // Disjoint column ranges of dst; rhs is only read.
        f(
            c1 - c0,
            (d.0.add(c0 * dst.2), dst.1, dst.2),
            (r.0.add(c0 * rhs.2) as *const T, rhs.1, rhs.2),
        )
    });
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
    arith: Arith,
) {
    let t = threads();
    if t <= 1 || n.div_ceil(16) < 2 || !split_columns() {
        let par = if t <= 1 {
            Parallelism::None
        } else {
            Parallelism::Rayon(t)
        };
        return mm_general((m, n, k), dst, lhs, rhs, par, arith);
    }
    let l = SyncPtr(lhs.0 as *mut T);
    by_columns(t, n, dst, rhs, |cols, d, r| {
        let l = &l;
        mm_general(
            (m, cols, k),
            d,
            (l.0 as *const T, lhs.1, lhs.2),
            r,
            Parallelism::None,
            arith,
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
