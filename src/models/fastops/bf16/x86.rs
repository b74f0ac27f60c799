//! The AVX-512 + AVX512-BF16 kernels (`vdpbf16ps`) and the conversions that pack operands for
//! them (`vcvtne2ps2bf16`). Every function here needs a CPU with AVX-512F, AVX-512BW and
//! AVX512-BF16, which is what their `# Safety` sections mean by "the CPU has the features".

use std::arch::x86_64::*;

use super::super::simd::first_lanes;
use super::scheme::{DstTile, Scheme};

/// Broadcast tile: MR rows × NR columns, 2·MR zmm accumulators.
const MR: usize = 12;
const NR: usize = 32;
/// Dot tile: R rows × C columns, R·C zmm accumulators (dot products along k).
const R: usize = 4;
const C: usize = 4;
/// k-pairs per zmm.
const LANES: usize = 16;

pub(super) static BROADCAST: Scheme = Scheme {
    tile_rows: MR,
    tile_cols: NR,
    lhs_width: MR,
    rhs_width: NR,
    pair_align: 1,
    kc_max: 384,
    mc_max: 384,
    nc_max: 2048,
    simd_pack: true,
    tile: broadcast_tile,
};

pub(super) static DOT: Scheme = Scheme {
    tile_rows: R,
    tile_cols: C,
    lhs_width: 1,
    rhs_width: 1,
    pair_align: LANES,
    kc_max: 1024,
    mc_max: 192,
    nc_max: 512,
    simd_pack: true,
    tile: dot_tile,
};

#[inline]
fn as_bf16(v: __m512i) -> __m512bh {
    // SAFETY: both are 512 bits of plain data.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
}

#[inline]
fn as_words(v: __m512bh) -> __m512i {
    // SAFETY: both are 512 bits of plain data.
    unsafe { std::mem::transmute::<__m512bh, __m512i>(v) }
}

/// 16 packed pairs from `src` (64 bytes; no alignment needed).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn load_pairs(src: *const u32) -> __m512bh {
    as_bf16(_mm512_loadu_si512(src.cast()))
}

/// Stores the first `dst.len()` (at most 16) words of `v`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn store_words(dst: &mut [u32], v: __m512i) {
    if dst.len() >= 16 {
        _mm512_storeu_si512(dst.as_mut_ptr().cast(), v)
    } else {
        _mm512_mask_storeu_epi32(dst.as_mut_ptr().cast(), first_lanes(dst.len()), v)
    }
}

/// `dst[j]` = the pair (row0[j], row1[j]) (`row1` absent: zero) for `j < len`, zero after.
///
/// # Safety
/// `row0` and `row1` are valid for reads of `len` floats; the CPU has the features.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn interleave_pairs(
    row0: *const f32,
    row1: Option<*const f32>,
    len: usize,
    dst: &mut [u32],
) {
    // u16 lane 2j takes lane j (row0, the low half of the conversion), 2j + 1 lane 16 + j.
    const INTERLEAVE: [u16; 32] = {
        let mut t = [0; 32];
        let mut j = 0;
        while j < 16 {
            t[2 * j] = j as u16;
            t[2 * j + 1] = 16 + j as u16;
            j += 1;
        }
        t
    };
    let order = _mm512_loadu_si512(INTERLEAVE.as_ptr().cast());
    for (c, chunk) in dst.chunks_mut(16).enumerate() {
        let j = 16 * c;
        let mask = first_lanes(len.saturating_sub(j));
        // Masked-off lanes are not read, so the addresses may lie past the rows.
        let even = _mm512_maskz_loadu_ps(mask, row0.wrapping_add(j));
        let odd = match row1 {
            Some(r) => _mm512_maskz_loadu_ps(mask, r.wrapping_add(j)),
            None => _mm512_setzero_ps(),
        };
        let halves = as_words(_mm512_cvtne2ps_pbh(odd, even));
        store_words(chunk, _mm512_permutexvar_epi16(order, halves));
    }
}

/// `dst[p]` = the pair (line[2p], line[2p + 1]), zero past `len` values.
///
/// # Safety
/// `line` is valid for reads of `len` floats; the CPU has the features.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn pairs_along_line(line: *const f32, len: usize, dst: &mut [u32]) {
    for (c, chunk) in dst.chunks_mut(16).enumerate() {
        let k = 32 * c;
        let left = len.saturating_sub(k);
        let lo = _mm512_maskz_loadu_ps(first_lanes(left), line.wrapping_add(k));
        let hi = _mm512_maskz_loadu_ps(
            first_lanes(left.saturating_sub(16)),
            line.wrapping_add(k + 16),
        );
        store_words(chunk, as_words(_mm512_cvtne2ps_pbh(hi, lo)));
    }
}

/// Packs lines contiguous along k into strips of `width` lines (the [`super::pack::Layout`]
/// with `kp` pairs per line): 16 pairs of up to 16 lines at a time are converted and
/// transposed in registers, so each k-pair's lines are stored side by side with one store.
///
/// # Safety
/// Line `o < outer` is valid for reads of `kc` floats at `src + o·outer_stride`; `out` holds
/// `outer.next_multiple_of(width) · kp` words with `kc ≤ 2·kp`; the CPU has the features.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn strips_from_lines(
    (src, outer_stride): (*const f32, usize),
    (outer, kc): (usize, usize),
    (width, kp): (usize, usize),
    out: &mut [u32],
) {
    assert!(out.len() >= outer.next_multiple_of(width) * kp && kc <= 2 * kp);
    let out = out.as_mut_ptr();
    for o0 in (0..outer.next_multiple_of(width)).step_by(width) {
        let strip = out.add(o0 * kp);
        for sub in (0..width).step_by(LANES) {
            let lines = LANES.min(width - sub);
            let lanes = first_lanes(lines);
            for p0 in (0..kp).step_by(LANES) {
                let mut rows = [_mm512_setzero_si512(); LANES];
                let left = kc.saturating_sub(2 * p0);
                for (l, row) in rows.iter_mut().enumerate().take(lines) {
                    let o = o0 + sub + l;
                    if o >= outer || left == 0 {
                        break;
                    }
                    // Masked-off lanes are not read, so the addresses may lie past the line.
                    let line = src.add(o * outer_stride).wrapping_add(2 * p0);
                    let lo = _mm512_maskz_loadu_ps(first_lanes(left), line);
                    let hi = _mm512_maskz_loadu_ps(
                        first_lanes(left.saturating_sub(LANES)),
                        line.wrapping_add(LANES),
                    );
                    *row = as_words(_mm512_cvtne2ps_pbh(hi, lo));
                }
                let pairs = transpose16(&rows);
                for (j, pair) in pairs.iter().enumerate().take(kp - p0) {
                    let d = strip.add((p0 + j) * width + sub);
                    _mm512_mask_storeu_epi32(d.cast(), lanes, *pair);
                }
            }
        }
    }
}

/// The 16 × 16 transpose of 32-bit words: lane j of row i becomes lane i of row j.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn transpose16(r: &[__m512i; 16]) -> [__m512i; 16] {
    // Within 128-bit lanes: pairs of rows interleaved by words, then by word pairs, which
    // leaves in u[4m + c], 128-bit lane l, the column 4l + c of rows 4m .. 4m + 4.
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    let mut u = [_mm512_setzero_si512(); 16];
    for m in 0..4 {
        let b = 4 * m;
        u[b] = _mm512_unpacklo_epi64(t[b], t[b + 2]);
        u[b + 1] = _mm512_unpackhi_epi64(t[b], t[b + 2]);
        u[b + 2] = _mm512_unpacklo_epi64(t[b + 1], t[b + 3]);
        u[b + 3] = _mm512_unpackhi_epi64(t[b + 1], t[b + 3]);
    }
    // Across 128-bit lanes: row 4l + c takes lane l of u[c], u[4 + c], u[8 + c], u[12 + c].
    let mut out = [_mm512_setzero_si512(); 16];
    for c in 0..4 {
        let a = [u[c], u[4 + c], u[8 + c], u[12 + c]];
        let x0 = _mm512_shuffle_i32x4::<0b10_00_10_00>(a[0], a[1]);
        let x1 = _mm512_shuffle_i32x4::<0b11_01_11_01>(a[0], a[1]);
        let x2 = _mm512_shuffle_i32x4::<0b10_00_10_00>(a[2], a[3]);
        let x3 = _mm512_shuffle_i32x4::<0b11_01_11_01>(a[2], a[3]);
        out[c] = _mm512_shuffle_i32x4::<0b10_00_10_00>(x0, x2);
        out[4 + c] = _mm512_shuffle_i32x4::<0b10_00_10_00>(x1, x3);
        out[8 + c] = _mm512_shuffle_i32x4::<0b11_01_11_01>(x0, x2);
        out[12 + c] = _mm512_shuffle_i32x4::<0b11_01_11_01>(x1, x3);
    }
    out
}

/// The broadcast micro-kernel: per k-pair, two zmm of rhs pairs (32 columns) and each lhs
/// row's pair broadcast, 24 `vdpbf16ps`.
///
/// # Safety
/// As for [`super::driver::TileFn`].
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn broadcast_tile(kp: usize, a: &[u32], b: &[u32], out: &DstTile) {
    assert!(a.len() >= kp * MR && b.len() >= kp * NR);
    let (a, b) = (a.as_ptr(), b.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for p in 0..kp {
        let b0 = load_pairs(b.add(p * NR));
        let b1 = load_pairs(b.add(p * NR + 16));
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = as_bf16(_mm512_set1_epi32(*a.add(p * MR + i) as i32));
            row[0] = _mm512_dpbf16_ps(row[0], b0, ai);
            row[1] = _mm512_dpbf16_ps(row[1], b1, ai);
        }
    }
    store_tile(&acc, out)
}

/// Writes (or adds) a tile of rows of two zmm (32 columns) into dst: with AVX-512 stores,
/// masked at the edge, where its columns are contiguous, else one element at a time.
///
/// # Safety
/// As for [`DstTile::store`]; the CPU has the features.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn store_tile<const R: usize>(acc: &[[__m512; 2]; R], out: &DstTile) {
    if out.cs != 1 {
        // SAFETY: a zmm is 16 f32 lanes, so the rows are 32 floats each, in order; f32 needs
        // less alignment than __m512.
        let rows = &*(acc as *const [[__m512; 2]; R]).cast::<[[f32; NR]; R]>();
        return out.store(rows);
    }
    let masks = [
        first_lanes(out.cols),
        first_lanes(out.cols.saturating_sub(16)),
    ];
    for (i, row) in acc.iter().enumerate().take(out.rows) {
        let d = out.ptr.add(i * out.rs);
        for (h, (&v, &mask)) in row.iter().zip(&masks).enumerate() {
            // Past the last column the mask is empty and nothing is accessed.
            let d = d.wrapping_add(16 * h);
            let v = if out.accumulate {
                _mm512_add_ps(_mm512_maskz_loadu_ps(mask, d), v)
            } else {
                v
            };
            _mm512_mask_storeu_ps(d, mask, v);
        }
    }
}

/// The dot micro-kernel: R lhs lines and C rhs lines (`kp` pairs each, a multiple of 16), all
/// R·C dot products accumulated 16 pairs per `vdpbf16ps`, then summed across lanes.
///
/// # Safety
/// As for [`super::driver::TileFn`].
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn dot_tile(kp: usize, a: &[u32], b: &[u32], out: &DstTile) {
    assert!(kp.is_multiple_of(LANES) && a.len() >= kp * R && b.len() >= kp * C);
    let (a, b) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm512_setzero_ps(); R * C];
    for s in (0..kp).step_by(LANES) {
        let mut rows = [as_bf16(_mm512_setzero_si512()); R];
        for (r, row) in rows.iter_mut().enumerate() {
            *row = load_pairs(a.add(r * kp + s));
        }
        for c in 0..C {
            let col = load_pairs(b.add(c * kp + s));
            for (r, &row) in rows.iter().enumerate() {
                acc[r * C + c] = _mm512_dpbf16_ps(acc[r * C + c], row, col);
            }
        }
    }
    let mut sums = [[0f32; C]; R];
    _mm512_storeu_ps(sums.as_mut_ptr().cast(), lane_sums(&acc));
    out.store(&sums)
}

/// Lane j of the result = the sum of the 16 lanes of `v[j]`: a transpose-and-add tree
/// (halving the partial sums per vector while doubling the vectors per register).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn lane_sums(v: &[__m512; 16]) -> __m512 {
    // 256-bit halves: vector k holds 8 partial sums of v[2k], then 8 of v[2k + 1].
    let mut h8 = [_mm512_setzero_ps(); 8];
    for (h, pair) in h8.iter_mut().zip(v.chunks_exact(2)) {
        *h = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(pair[0], pair[1]),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(pair[0], pair[1]),
        );
    }
    // 128-bit lanes: 128-bit lane l of vector k holds 4 partial sums of v[4k + l].
    let mut h4 = [_mm512_setzero_ps(); 4];
    for (h, pair) in h4.iter_mut().zip(h8.chunks_exact(2)) {
        *h = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(pair[0], pair[1]),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(pair[0], pair[1]),
        );
    }
    // Within 128-bit lanes: element q of 128-bit lane l = the sum of v[4q + l].
    let t0 = _mm512_add_ps(
        _mm512_unpacklo_ps(h4[0], h4[1]),
        _mm512_unpackhi_ps(h4[0], h4[1]),
    );
    let t1 = _mm512_add_ps(
        _mm512_unpacklo_ps(h4[2], h4[3]),
        _mm512_unpackhi_ps(h4[2], h4[3]),
    );
    let sums = _mm512_add_ps(
        _mm512_shuffle_ps::<0b01_00_01_00>(t0, t1),
        _mm512_shuffle_ps::<0b11_10_11_10>(t0, t1),
    );
    // Lane j = 4q + l comes from lane 4l + q.
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_ps(order, sums)
}
