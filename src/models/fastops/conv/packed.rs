//! f32 matrix products whose left operand is packed once and used many times: Winograd's
//! kernel points, one `O × C` matrix per point, multiply every block of tiles of a
//! convolution. The `gemm` crate packs both operands anew on every call, so Winograd's blocks
//! had to hold at least 64 tiles for the kernel's packing to pay; packed here once per pass,
//! the blocks can be as small as the level-2 cache wants. Inception-v4, 299 px, batch 8,
//! evaluation: its Winograd convolutions 115–125 → 105–111 ms a pass (three alternated runs).
//!
//! The micro-kernel computes an [`MR`] × [`NR`] tile of the result in 24 AVX-512 registers:
//! per step along k, three vectors of the right operand and [`MR`] broadcasts of the left one.
//! The right operand is copied a strip of [`NR`] columns at a time into a contiguous buffer
//! that stays in L1 while every row panel of the left operand passes it. Needs AVX-512F
//! ([`available`]); elsewhere, and with `REPRO_PACKED=0` (for comparison), callers keep the
//! `gemm` crate.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::sync::Arc;

use super::super::weight_cache::{kept_or_made, WeightCache};

/// Rows of the result per micro-kernel call (every channel count of the networks is a
/// multiple of 8).
const MR: usize = 8;
/// 16-lane vectors of the result per row of a tile.
pub(super) const NV: usize = 3;
/// Columns of the result per micro-kernel call.
pub(super) const NR: usize = 16 * NV;
/// Steps along k per pass over the result: the right operand's strip (`KC × NR`, 36 KiB) stays
/// in L1.
const KC: usize = 192;
/// How far ahead (floats of the packed left operand, eight steps) the micro-kernel asks for
/// the left operand's next lines: its panels come from L2.
const PREFETCH_AHEAD: usize = 64;

/// Whether the packed product is in use: the CPU has AVX-512F and `REPRO_PACKED` is unset or
/// anything but `0`/`off`.
pub(super) fn available() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        let wanted = std::env::var("REPRO_PACKED").map_or(true, |v| v != "0" && v != "off");
        #[cfg(target_arch = "x86_64")]
        let cpu = std::arch::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let cpu = false;
        wanted && cpu
    })
}

/// An `m × k` left operand packed in panels of [`MR`] rows: panel `s` holds, for each `p < k`,
/// rows `s·MR .. s·MR + MR` of column `p` side by side (zeros past `m`).
pub(super) struct PackedLhs {
    m: usize,
    k: usize,
    data: Vec<f32>,
}

impl PackedLhs {
    /// Packs the `m × k` matrix whose entry (i, p) is `src[i·rs + p]`.
    pub(super) fn pack(src: &[f32], (m, k): (usize, usize), rs: usize) -> Self {
        assert!(m == 0 || k == 0 || src.len() >= (m - 1) * rs + k);
        let panels = m.div_ceil(MR);
        let mut data = vec![0f32; panels * MR * k];
        for (s, panel) in data.chunks_exact_mut(MR * k.max(1)).enumerate() {
            for r in 0..MR.min(m - s * MR) {
                let row = &src[(s * MR + r) * rs..][..k];
                for (p, &v) in row.iter().enumerate() {
                    panel[p * MR + r] = v;
                }
            }
        }
        Self { m, k, data }
    }
}

/// Where the product's right operand comes from: it is read a strip of [`NR`] columns and at
/// most [`KC`] rows at a time, copied into a contiguous buffer. A matrix in memory
/// ([`product`]), or one that exists only as a rule for finding its entries (a convolution's
/// im2col matrix, read straight from the image: [`super::implicit`]).
pub(super) trait Strips: Sync {
    /// Writes rows `p0..p0 + rows` of columns `j0..j0 + cols` (at most [`NR`]) to `strip`, row
    /// `p` at `strip[(p − p0)·NR..]`, with zeros in the lanes from `cols` to [`NR`].
    ///
    /// # Safety
    /// AVX-512F is available; `strip` is valid for writes of `rows · NR` floats.
    unsafe fn fill(&self, p0: usize, rows: usize, j0: usize, cols: usize, strip: *mut f32);
}

/// A right operand in memory: `k × n`, rows `ldb` apart.
struct Rows {
    b: *const f32,
    ldb: usize,
}

// The caller of `product` keeps the matrix alive and unwritten while the product reads it.
unsafe impl Sync for Rows {}

impl Strips for Rows {
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
    #[inline]
    unsafe fn fill(&self, p0: usize, rows: usize, j0: usize, cols: usize, strip: *mut f32) {
        #[cfg(target_arch = "x86_64")]
        {
            use crate::models::fastops::simd::first_lanes;
            let masks: [__mmask16; NV] =
                std::array::from_fn(|v| first_lanes(cols.saturating_sub(16 * v)));
            for p in 0..rows {
                let src = self.b.add((p0 + p) * self.ldb + j0);
                for (v, &mask) in masks.iter().enumerate() {
                    let x = _mm512_maskz_loadu_ps(mask, src.add(16 * v));
                    _mm512_storeu_ps(strip.add(p * NR + 16 * v), x);
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (p0, rows, j0, cols, strip);
    }
}

/// The weights `wt`, an `m × k` matrix with rows `k` apart, packed; kept in `kept` where given
/// (an inference pass), so that the next pass finds them packed.
pub(super) fn packed_weights(
    wt: &[f32],
    (m, k): (usize, usize),
    kept: Option<&WeightCache>,
) -> Arc<PackedLhs> {
    // The shape key starts with 0 to tell these apart from Winograd's kernel points, whose key
    // starts with the output channel count.
    kept_or_made(kept, wt, &[0, m, k], || PackedLhs::pack(wt, (m, k), k))
}

/// `dst (m × n, rows ldc apart) [+]= lhs (m × k) · rhs (k × n, rows ldb apart)` on this thread.
///
/// # Safety
/// [`available`] is true; `rhs` is valid for reads of `k` rows of `n` floats `ldb` apart and
/// `dst` for reads and writes of `m` rows of `n` floats `ldc` apart.
pub(super) unsafe fn product(
    lhs: &PackedLhs,
    n: usize,
    (b, ldb): (*const f32, usize),
    dst: (*mut f32, usize),
    accumulate: bool,
) {
    product_of(lhs, n, &Rows { b, ldb }, dst, accumulate)
}

/// [`product`] with the right operand (`k × n`) read through `rhs`.
///
/// # Safety
/// [`available`] is true; `rhs` fills strips of `k` rows and `n` columns, and `dst` is valid
/// for reads and writes of `m` rows of `n` floats `ldc` apart.
pub(super) unsafe fn product_of<S: Strips>(
    lhs: &PackedLhs,
    n: usize,
    rhs: &S,
    dst: (*mut f32, usize),
    accumulate: bool,
) {
    #[cfg(target_arch = "x86_64")]
    x86::product(lhs, n, rhs, dst, accumulate);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (lhs, n, rhs, dst, accumulate);
        unreachable!("the packed product runs only where `available` is true");
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use crate::models::fastops::simd::first_lanes;

    /// [`super::product`], compiled for AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn product<S: Strips>(
        lhs: &PackedLhs,
        n: usize,
        rhs: &S,
        (c, ldc): (*mut f32, usize),
        accumulate: bool,
    ) {
        let (m, k) = (lhs.m, lhs.k);
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            if !accumulate {
                for i in 0..m {
                    std::ptr::write_bytes(c.add(i * ldc), 0, n);
                }
            }
            return;
        }
        // One strip of the right operand, contiguous: read where they lie, rows a power-of-two
        // multiple of 64 bytes apart would fall into a few of L1's sets and miss.
        let mut strip = std::mem::MaybeUninit::<Strip>::uninit();
        let strip = strip.as_mut_ptr().cast::<f32>();
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            for j0 in (0..n).step_by(NR) {
                let w = NR.min(n - j0);
                let masks: [__mmask16; NV] =
                    std::array::from_fn(|v| first_lanes(w.saturating_sub(16 * v)));
                rhs.fill(pc, kc, j0, w, strip);
                for (s, i0) in (0..m).step_by(MR).enumerate() {
                    let a = lhs.data.as_ptr().add(s * MR * k + pc * MR);
                    let tile = Tile {
                        c: c.add(i0 * ldc + j0),
                        ldc,
                        rows: MR.min(m - i0),
                        masks,
                        accumulate: accumulate || pc > 0,
                    };
                    match w.div_ceil(16) {
                        1 => kernel::<1>(kc, a, strip, &tile),
                        2 => kernel::<2>(kc, a, strip, &tile),
                        _ => kernel::<NV>(kc, a, strip, &tile),
                    }
                }
            }
        }
    }

    /// A strip's buffer on whole cache lines: none of the micro-kernel's loads of the strip then
    /// spans two lines (with the buffer 4 bytes off, every one did, and the products ran 8–10 %
    /// slower: `(224, 192, 192)` 169–171 → 136–156 GFLOP/s on one thread, alternated runs).
    #[repr(align(64))]
    #[allow(dead_code)] // written and read through a pointer to its first entry
    struct Strip([f32; KC * NR]);

    /// Where a micro-kernel's tile goes: `rows` rows `ldc` apart, the columns of each vector
    /// that its mask keeps.
    struct Tile {
        c: *mut f32,
        ldc: usize,
        rows: usize,
        masks: [__mmask16; NV],
        accumulate: bool,
    }

    /// `tile [+]= a (MR × kc, packed) · b (kc × 16·V of the strip)`: `V` vectors a row, fewer
    /// than [`NV`] for the last strip of a narrow product.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel<const V: usize>(kc: usize, a: *const f32, b: *const f32, t: &Tile) {
        let mut acc = [[_mm512_setzero_ps(); V]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..kc {
            _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add(PREFETCH_AHEAD).cast());
            let bv: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(b.add(16 * v)));
            for (i, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(i));
                for (r, &bv) in row.iter_mut().zip(&bv) {
                    *r = _mm512_fmadd_ps(av, bv, *r);
                }
            }
            a = a.add(MR);
            b = b.add(NR);
        }
        // Constant indices only (rows checked one by one), so the tile stays in registers.
        for (i, row) in acc.iter().enumerate() {
            if i >= t.rows {
                break;
            }
            let p = t.c.add(i * t.ldc);
            for (v, &r) in row.iter().enumerate() {
                let q = p.add(16 * v);
                let r = if t.accumulate {
                    _mm512_add_ps(_mm512_maskz_loadu_ps(t.masks[v], q), r)
                } else {
                    r
                };
                _mm512_mask_storeu_ps(q, t.masks[v], r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Products of odd shapes (partial row panels, last strips of one, two and three vectors,
    /// several k blocks, row strides wider than the rows) against the sum in f64, with and
    /// without accumulation; the gaps between rows of dst untouched.
    #[test]
    fn packed_products_match_the_definition() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        let mut rng = crate::models::fastops::testing::Lcg(7);
        let mut next = || rng.f32_within(1.0);
        for &(m, n, k) in &[
            (1, 1, 1),
            (8, 48, 192),
            (13, 50, 7),
            (24, 97, 193),
            (16, 68, 200),
            (96, 145, 400),
            (5, 3, 0),
        ] {
            let (lda, ldb, ldc) = (k + 3, n + 5, n + 2);
            let a: Vec<f32> = (0..m * lda).map(|_| next()).collect();
            let b: Vec<f32> = (0..k * ldb).map(|_| next()).collect();
            let c0: Vec<f32> = (0..m * ldc).map(|_| next()).collect();
            let packed = PackedLhs::pack(&a, (m, k), lda);
            for accumulate in [false, true] {
                let mut c = c0.clone();
                unsafe {
                    product(
                        &packed,
                        n,
                        (b.as_ptr(), ldb),
                        (c.as_mut_ptr(), ldc),
                        accumulate,
                    )
                };
                for i in 0..m {
                    for j in 0..ldc {
                        let got = c[i * ldc + j];
                        if j >= n {
                            assert_eq!(got, c0[i * ldc + j], "({m}, {n}, {k}) gap at {i}, {j}");
                            continue;
                        }
                        let mut want: f64 = (0..k)
                            .map(|p| a[i * lda + p] as f64 * b[p * ldb + j] as f64)
                            .sum();
                        if accumulate {
                            want += c0[i * ldc + j] as f64;
                        }
                        let scale = 1.0 + (k as f64).sqrt();
                        assert!(
                            (got as f64 - want).abs() <= 1e-5 * scale,
                            "({m}, {n}, {k}, accumulate {accumulate}) at {i}, {j}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
