//! A row split into its phases modulo a step, and phases joined back into a row: entry `j` of
//! every group of `step` (`src[t·step + j]`) is what Winograd's tiles read at offset `j` of their
//! windows, and how a tile row's outputs go back into the image. Only moves, so every path gives
//! the same values. With AVX2, f32 rows of step 2 and 4 (the tiles of F(2, r) and F(4, 3)) go
//! through transposes in registers, eight groups at a time; the scalar strided loops they
//! replace were about 3 % of an Inception-ResNet-v2 training step at 299 px.

#[cfg(target_arch = "x86_64")]
use super::super::simd::{as_f32, as_f32_mut};
use super::super::Elem;

/// `dst[j·ld + t] = src[t·step + j]` for `j < step`, `t < count`.
pub(super) fn split<T: Elem>(src: &[T], step: usize, count: usize, dst: &mut [T], ld: usize) {
    assert!(src.len() >= step * count && (step == 0 || dst.len() >= (step - 1) * ld + count));
    if step == 1 {
        return dst[..count].copy_from_slice(&src[..count]);
    }
    #[cfg(target_arch = "x86_64")]
    let done = match (as_f32(src), as_f32_mut(dst), super::super::simd::avx2()) {
        // SAFETY: the CPU has AVX2; the bounds were checked above and `avx2::split` reads and
        // writes whole groups of eight below `count`.
        (Some(s), Some(d), true) => unsafe { avx2::split(s, step, count, d, ld) },
        _ => 0,
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for j in 0..step {
        for t in done..count {
            dst[j * ld + t] = src[t * step + j];
        }
    }
}

/// `dst[t·step + j] = src[j·ls + t]` for `j < step` and every `t·step + j` inside `dst` (its
/// last group may be partial).
pub(super) fn join<T: Elem>(src: &[T], ls: usize, step: usize, dst: &mut [T]) {
    if step == 1 {
        return dst.copy_from_slice(&src[..dst.len()]);
    }
    let count = dst.len().div_ceil(step);
    #[cfg(target_arch = "x86_64")]
    let done = match (as_f32(src), as_f32_mut(dst), super::super::simd::avx2()) {
        (Some(s), Some(d), true) => {
            assert!(s.len() >= (step - 1) * ls + d.len() / step);
            // SAFETY: the CPU has AVX2; `avx2::join` writes whole groups inside `dst` only, and
            // reads the same entries of `src` the loop below would.
            unsafe { avx2::join(s, ls, step, d) }
        }
        _ => 0,
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for t in done..count {
        for j in 0..step.min(dst.len() - t * step) {
            dst[t * step + j] = src[j * ls + t];
        }
    }
}

/// `dst[b·ld + t] = row[t·step + b + first]` for `b < taps`, `t < len`, zero where that index
/// lies outside `row`: the windows of a row's tiles, tap by tap, where the row is short (the
/// stretch the windows cover within 48 entries, at most 16 tiles: the 1×7 kernels' 17-wide maps,
/// the 3×3s' 35-wide ones) and the CPU has AVX-512F. The stretch is loaded once into three
/// registers and each tap's entries picked out of them by permutations; the generic moves took
/// a copy per tap, each a call for nine entries. Returns whether it did the moves (f32 and such
/// rows only).
pub(super) fn short_row_windows<T: Elem>(
    dst: &mut [T],
    ld: usize,
    row: &[T],
    first: isize,
    (step, taps, len): (usize, usize, usize),
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let (Some(d), Some(r)) = (as_f32_mut(dst), as_f32(row)) {
        let fits = len > 0 && len <= 16 && taps > 0 && (len - 1) * step + taps <= 48;
        if fits && std::arch::is_x86_feature_detected!("avx512f") {
            assert!(d.len() >= (taps - 1) * ld + len);
            // SAFETY: the CPU has AVX-512F; the stores stay inside `d` (checked above) and the
            // loads read entries of `r` only.
            unsafe { avx512::short_row_windows(d, ld, r, first, (step, taps, len)) };
            return true;
        }
    }
    let _ = (dst, ld, row, first, step, taps, len);
    false
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::super::super::simd::first_lanes;

    /// [`super::short_row_windows`] on the CPU that has AVX-512F, for stretches of at most 48
    /// entries and at most 16 tiles.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn short_row_windows(
        d: &mut [f32],
        ld: usize,
        r: &[f32],
        first: isize,
        (step, taps, len): (usize, usize, usize),
    ) {
        // Lanes u of the stretch with `first + u` inside the row.
        let lo = (-first).clamp(0, 48) as u32;
        let hi = (r.len() as isize - first).clamp(lo as isize, 48) as u32;
        let inside = ((1u64 << hi) - 1) & !((1u64 << lo) - 1);
        let base = r.as_ptr().wrapping_offset(first);
        // Masked-off lanes are not read: the loads touch entries of `r` only.
        let part = |k: usize| {
            _mm512_maskz_loadu_ps((inside >> (16 * k)) as __mmask16, base.wrapping_add(16 * k))
        };
        let (first16, second16, third16) = (part(0), part(1), part(2));
        let keep = first_lanes(len);
        let mut at = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(step as i32),
        );
        let beyond = _mm512_set1_epi32(31);
        for b in 0..taps {
            // Entries 0..32 from the first two registers, then those past 31 from the third
            // (its permutation reads the index mod 16).
            let tap = _mm512_permutex2var_ps(first16, at, second16);
            let late = _mm512_cmpgt_epi32_mask(at, beyond);
            let tap = _mm512_mask_permutexvar_ps(tap, late, at, third16);
            _mm512_mask_storeu_ps(d.as_mut_ptr().add(b * ld), keep, tap);
            at = _mm512_add_epi32(at, _mm512_set1_epi32(1));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Groups of eight of [`super::split`] for steps 2 and 4: how many groups it did (a multiple
    /// of eight, or 0 for other steps).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn split(
        s: &[f32],
        step: usize,
        count: usize,
        d: &mut [f32],
        ld: usize,
    ) -> usize {
        let (sp, dp) = (s.as_ptr(), d.as_mut_ptr());
        let whole = count / 8 * 8;
        match step {
            4 => {
                // Eight groups of four, [r0 … r7][p0 … p3], transposed to four rows of eight:
                // pairs of groups interleaved, then pairs of pairs, then the lanes put in order.
                let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
                for t in (0..whole).step_by(8) {
                    let y = |i: usize| _mm256_loadu_ps(sp.add(t * 4 + i * 8));
                    let (y0, y1, y2, y3) = (y(0), y(1), y(2), y(3));
                    let (t0, t1) = (_mm256_unpacklo_ps(y0, y1), _mm256_unpackhi_ps(y0, y1));
                    let (t2, t3) = (_mm256_unpacklo_ps(y2, y3), _mm256_unpackhi_ps(y2, y3));
                    let pd = _mm256_castps_pd;
                    let u = [
                        _mm256_unpacklo_pd(pd(t0), pd(t2)),
                        _mm256_unpackhi_pd(pd(t0), pd(t2)),
                        _mm256_unpacklo_pd(pd(t1), pd(t3)),
                        _mm256_unpackhi_pd(pd(t1), pd(t3)),
                    ];
                    for (j, &v) in u.iter().enumerate() {
                        let row = _mm256_permutevar8x32_ps(_mm256_castpd_ps(v), order);
                        _mm256_storeu_ps(dp.add(j * ld + t), row);
                    }
                }
                whole
            }
            2 => {
                for t in (0..whole).step_by(8) {
                    let (y0, y1) = (
                        _mm256_loadu_ps(sp.add(t * 2)),
                        _mm256_loadu_ps(sp.add(t * 2 + 8)),
                    );
                    // [r0 r1 r4 r5 | r2 r3 r6 r7] of each phase, then its 64-bit pairs in order.
                    let even = _mm256_shuffle_ps::<0x88>(y0, y1);
                    let odd = _mm256_shuffle_ps::<0xDD>(y0, y1);
                    let ordered = |v: __m256| {
                        _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(v)))
                    };
                    _mm256_storeu_ps(dp.add(t), ordered(even));
                    _mm256_storeu_ps(dp.add(ld + t), ordered(odd));
                }
                whole
            }
            _ => 0,
        }
    }

    /// Whole groups of eight of [`super::join`] for steps 2 and 4 (the inverse moves of
    /// [`split`]): how many groups it did.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn join(s: &[f32], ls: usize, step: usize, d: &mut [f32]) -> usize {
        let (sp, dp) = (s.as_ptr(), d.as_mut_ptr());
        let whole = d.len() / step / 8 * 8;
        match step {
            4 => {
                let order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
                for t in (0..whole).step_by(8) {
                    let u = |j: usize| {
                        let row = _mm256_loadu_ps(sp.add(j * ls + t));
                        _mm256_castps_pd(_mm256_permutevar8x32_ps(row, order))
                    };
                    let (u0, u1, u2, u3) = (u(0), u(1), u(2), u(3));
                    let ps = _mm256_castpd_ps;
                    let (t0, t2) = (
                        ps(_mm256_unpacklo_pd(u0, u1)),
                        ps(_mm256_unpackhi_pd(u0, u1)),
                    );
                    let (t1, t3) = (
                        ps(_mm256_unpacklo_pd(u2, u3)),
                        ps(_mm256_unpackhi_pd(u2, u3)),
                    );
                    let out = dp.add(t * 4);
                    _mm256_storeu_ps(out, _mm256_shuffle_ps::<0x88>(t0, t1));
                    _mm256_storeu_ps(out.add(8), _mm256_shuffle_ps::<0xDD>(t0, t1));
                    _mm256_storeu_ps(out.add(16), _mm256_shuffle_ps::<0x88>(t2, t3));
                    _mm256_storeu_ps(out.add(24), _mm256_shuffle_ps::<0xDD>(t2, t3));
                }
                whole
            }
            2 => {
                for t in (0..whole).step_by(8) {
                    let (p0, p1) = (_mm256_loadu_ps(sp.add(t)), _mm256_loadu_ps(sp.add(ls + t)));
                    let (lo, hi) = (_mm256_unpacklo_ps(p0, p1), _mm256_unpackhi_ps(p0, p1));
                    let out = dp.add(t * 2);
                    _mm256_storeu_ps(out, _mm256_permute2f128_ps::<0x20>(lo, hi));
                    _mm256_storeu_ps(out.add(8), _mm256_permute2f128_ps::<0x31>(lo, hi));
                }
                whole
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<T: Elem>(len: usize) -> Vec<T> {
        (0..len)
            .map(|i| T::from_f64(i as f64 * 0.5 - 3.0))
            .collect()
    }

    /// Both directions against their definitions, every step the tiles use and a few more,
    /// counts around the eight-group blocks, phases at a stride longer than the count.
    fn check<T: Elem>() {
        for step in 1..=5 {
            for count in [0, 1, 7, 8, 9, 16, 19, 37] {
                let src = row::<T>(step * count + 3);
                let ld = count + 5;
                let mut got = vec![T::from_f64(99.0); step * ld];
                split(&src, step, count, &mut got, ld);
                for j in 0..step {
                    for t in 0..ld {
                        let want = if t < count {
                            src[t * step + j]
                        } else {
                            T::from_f64(99.0)
                        };
                        assert!(
                            got[j * ld + t] == want,
                            "split step {step} count {count} ({j}, {t})"
                        );
                    }
                }
                for len in [(step * count).saturating_sub(step - 1), step * count] {
                    let mut back = vec![T::from_f64(-7.0); len + 2];
                    join(&got, ld, step, &mut back[..len]);
                    for (i, &v) in back.iter().enumerate() {
                        let want = if i < len { src[i] } else { T::from_f64(-7.0) };
                        assert!(v == want, "join step {step} count {count} len {len} at {i}");
                    }
                }
            }
        }
    }

    /// The windows of short rows against their definition: rows shorter and longer than the
    /// stretch, stretches starting before the row and running past it, every step up to 4, the
    /// rows of `dst` further apart than the tiles and the lanes between them untouched. f32 (the
    /// permutations where the CPU has AVX-512F) and f64 (never taken) alike.
    fn check_windows<T: Elem>() {
        for step in 1..=4 {
            for (taps, len) in [(1, 1), (8, 9), (6, 4), (3, 16), (8, 12), (6, 9), (6, 11)] {
                if (len - 1) * step + taps > 48 {
                    continue;
                }
                for row_len in [0, 1, 5, 17, 35, 40, 60] {
                    for first in [-4isize, -3, -1, 0, 2] {
                        let src = row::<T>(row_len);
                        let ld = len + 3;
                        let mut got = vec![T::from_f64(99.0); taps * ld];
                        let did = short_row_windows(&mut got, ld, &src, first, (step, taps, len));
                        if !did {
                            continue;
                        }
                        for b in 0..taps {
                            for t in 0..ld {
                                let u = (t * step + b) as isize + first;
                                let want = match (t < len, usize::try_from(u)) {
                                    (false, _) => T::from_f64(99.0),
                                    (true, Ok(u)) if u < row_len => src[u],
                                    _ => T::from_f64(0.0),
                                };
                                assert!(
                                    got[b * ld + t] == want,
                                    "step {step} taps {taps} len {len} row {row_len} first {first}: ({b}, {t})"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn short_row_windows_match_their_definition() {
        check_windows::<f32>();
        check_windows::<f64>();
    }

    #[test]
    fn split_and_join_match_their_definitions() {
        check::<f32>();
        check::<f64>();
    }
}
