//! Pointwise convolutions of 1×1 maps (Inception-C and the last units of the networks at the
//! CIFAR-10 scale, and the 1×3/3×1 convolutions there once cropped): the batch is already a
//! matrix, image `n`'s channels one column `n` strided by the image stride, so the three GEMMs
//! read and write the tensors where they are, with no gather or scatter.

use super::geom::Geom;
use super::matmul::mm_split;
use crate::models::fastops::Elem;

/// Whether `g` is a pointwise convolution of 1×1 maps over more than one image.
pub(super) fn applies(g: &Geom) -> bool {
    g.pointwise() && g.p() == 1 && g.n > 1
}

/// `Y (O × N, column n at n·O) = W (O × C) · X (C × N, column n at xb.0 + n·xb.1)`.
pub(super) fn forward<T: Elem>(x: &[T], xb: (usize, usize), wt: &[T], g: &Geom) -> Vec<T> {
    let mut y = super::super::uninit::<T>(g.n * g.o);
    // SAFETY: every operand lies inside its slice (image n's C channels end at
    // xb.0 + n·xb.1 + C ≤ x.len()); the GEMM writes all of y.
    unsafe {
        mm_split(
            g.o,
            g.n,
            g.c,
            (y.as_mut_ptr(), 1, g.o),
            (wt.as_ptr(), g.c, 1),
            (x[xb.0..].as_ptr(), 1, xb.1),
            g.arith,
        )
    };
    y
}

/// `dX (C × N) = Wᵀ (C × O) · dY (O × N)`.
pub(super) fn grad_input<T: Elem>(dy: &[T], db: (usize, usize), wt: &[T], g: &Geom) -> Vec<T> {
    let mut dx = super::super::uninit::<T>(g.n * g.c);
    // SAFETY: as in `forward`.
    unsafe {
        mm_split(
            g.c,
            g.n,
            g.o,
            (dx.as_mut_ptr(), 1, g.c),
            (wt.as_ptr(), 1, g.c),
            (dy[db.0..].as_ptr(), 1, db.1),
            g.arith,
        )
    };
    dx
}

/// `dW (O × C) = dY (O × N) · Xᵀ (N × C)`.
pub(super) fn grad_weight<T: Elem>(
    x: &[T],
    xb: (usize, usize),
    dy: &[T],
    db: (usize, usize),
    g: &Geom,
) -> Vec<T> {
    let mut dw = super::super::uninit::<T>(g.o * g.c);
    // SAFETY: as in `forward`.
    unsafe {
        mm_split(
            g.o,
            g.c,
            g.n,
            (dw.as_mut_ptr(), g.c, 1),
            (dy[db.0..].as_ptr(), 1, db.1),
            (x[xb.0..].as_ptr(), xb.1, 1),
            g.arith,
        )
    };
    dw
}
