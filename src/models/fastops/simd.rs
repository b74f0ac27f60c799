//! Wider vectors for the element-wise loops, chosen at run time. The crate is built for the
//! x86-64 baseline (SSE2: two f64 or four f32 per instruction); the BatchNorm reductions
//! accumulate in f64, where SSE2 halves or quarters the throughput the CPU has. [`wide_fn!`]
//! compiles a function twice, once with AVX2 + FMA enabled, and calls that copy when the CPU has
//! them. The arithmetic is the same instructions on wider registers: Rust never contracts a
//! product and a sum into an FMA on its own and the vectoriser does not reorder floating-point
//! sums, so both copies give bit-identical results. Where the compiler still leaves a loop
//! scalar, the f32 case is written with AVX2 intrinsics that compute exactly what the generic
//! loop does.

use super::Elem;

/// Whether this CPU runs AVX2 and FMA (the test is cached by the standard library).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// `wide_fn! { fn name<T: Elem>(args) -> R { body } }`: a function `name` whose body runs
/// compiled with AVX2 + FMA where the CPU has them, and as built elsewhere.
macro_rules! wide_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident<$T:ident: Elem>($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$m])*
        $vis fn $name<$T: Elem>($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn body<$T: Elem>($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide<$T: Elem>($($arg: $ty),*) -> $ret {
                    body($($arg),*)
                }
                if $crate::models::fastops::simd::avx2() {
                    // SAFETY: the CPU has the features `wide` is compiled for.
                    return unsafe { wide($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use wide_fn;

/// Lanes of independent f64 accumulators in the reductions: a single running sum would wait on
/// the latency of every add (4 cycles) instead of streaming.
pub(crate) const LANES: usize = 8;

/// `Σ f(x[i])` in f64 over `LANES` accumulators.
#[inline(always)]
fn lane_sum<T: Elem>(x: &[T], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0f64; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += f(v.to_f64());
        }
    }
    let rest: f64 = chunks.remainder().iter().map(|v| f(v.to_f64())).sum();
    acc.iter().sum::<f64>() + rest
}

/// `Σ f(x)` over channel `ch` of N images of C×`hw` (image `i` starts at `xb.0 + i·xb.1`): a
/// [`lane_sum`] per image, added in image order.
#[inline(always)]
pub(crate) fn channel_lane_sum<T: Elem>(
    x: &[T],
    xb: (usize, usize),
    n: usize,
    ch: usize,
    hw: usize,
    f: impl Fn(f64) -> f64,
) -> f64 {
    (0..n)
        .map(|i| lane_sum(&x[xb.0 + i * xb.1 + ch * hw..][..hw], &f))
        .sum()
}

/// `xp` as f32 when `T` is f32.
fn as_f32<T: Elem>(xp: &[T]) -> Option<&[f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32.
        .then(|| unsafe { std::slice::from_raw_parts(xp.as_ptr().cast::<f32>(), xp.len()) })
}

/// The f32 case of BatchNorm's `(Σ g, Σ g·(x − mean))` with AVX2 intrinsics, or `None` (other
/// types, no AVX2). The compiler leaves the per-lane select of the generic loop scalar and
/// branchy; this computes exactly what it does, lane for lane: eight f64 lanes, lane `l`
/// summing elements `l, l + 8, ...` (masked ones as +0), the lanes added in order, then the
/// remainder one by one (masked ones skipped).
pub(crate) fn masked_grad_sums_f32<T: Elem>(
    xp: &[T],
    gp: &[T],
    a: T,
    b: T,
    mean: f64,
) -> Option<(f64, f64)> {
    #[cfg(target_arch = "x86_64")]
    if let (Some(x), Some(g)) = (as_f32(xp), as_f32(gp)) {
        if avx2() {
            let (a, b) = (a.to_f64() as f32, b.to_f64() as f32);
            // SAFETY: the CPU has AVX2 and FMA.
            return Some(unsafe { masked_grad_sums_avx2(x, g, a, b, mean) });
        }
    }
    let _ = (xp, gp, a, b, mean);
    None
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn masked_grad_sums_avx2(x: &[f32], g: &[f32], a: f32, b: f32, mean: f64) -> (f64, f64) {
    use std::arch::x86_64::*;
    let n = x.len().min(g.len());
    let full = n / 8 * 8;
    let (va, vb, vz) = (_mm256_set1_ps(a), _mm256_set1_ps(b), _mm256_setzero_ps());
    let vmean = _mm256_set1_pd(mean);
    let (mut sg_lo, mut sg_hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let (mut sx_lo, mut sx_hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let mut i = 0;
    while i < full {
        let xv = _mm256_loadu_ps(x.as_ptr().add(i));
        let gv = _mm256_loadu_ps(g.as_ptr().add(i));
        // x·a + b rounded after the product, as the scalar code (no fused multiply-add).
        let pre = _mm256_add_ps(_mm256_mul_ps(xv, va), vb);
        let gm = _mm256_and_ps(gv, _mm256_cmp_ps::<_CMP_GE_OQ>(pre, vz));
        let (g_lo, g_hi) = (
            _mm256_cvtps_pd(_mm256_castps256_ps128(gm)),
            _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(gm)),
        );
        let (x_lo, x_hi) = (
            _mm256_cvtps_pd(_mm256_castps256_ps128(xv)),
            _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(xv)),
        );
        sg_lo = _mm256_add_pd(sg_lo, g_lo);
        sg_hi = _mm256_add_pd(sg_hi, g_hi);
        sx_lo = _mm256_add_pd(sx_lo, _mm256_mul_pd(g_lo, _mm256_sub_pd(x_lo, vmean)));
        sx_hi = _mm256_add_pd(sx_hi, _mm256_mul_pd(g_hi, _mm256_sub_pd(x_hi, vmean)));
        i += 8;
    }
    let lanes = |lo: __m256d, hi: __m256d| {
        let mut l = [0f64; 8];
        _mm256_storeu_pd(l.as_mut_ptr(), lo);
        _mm256_storeu_pd(l.as_mut_ptr().add(4), hi);
        l.iter().sum::<f64>()
    };
    let (mut tg, mut tgx) = (lanes(sg_lo, sg_hi), lanes(sx_lo, sx_hi));
    for j in full..n {
        if x[j] * a + b >= 0.0 {
            tg += g[j] as f64;
            tgx += g[j] as f64 * (x[j] as f64 - mean);
        }
    }
    (tg, tgx)
}

#[cfg(test)]
mod tests {
    /// The AVX2 sums equal the generic loop's bit for bit (signs, zeros, lengths with and
    /// without a remainder).
    #[test]
    fn masked_grad_sums_match_the_scalar_loop_exactly() {
        let mut seed = 5u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        };
        for len in [0, 1, 7, 8, 9, 49, 64, 1225] {
            let x: Vec<f32> = (0..len).map(|_| next()).collect();
            let g: Vec<f32> = (0..len).map(|_| next()).collect();
            let (a, b, mean) = (0.7f32, -0.1f32, 0.013);
            let Some(fast) = super::masked_grad_sums_f32(&x, &g, a, b, mean) else {
                return; // no AVX2 here: nothing to compare
            };
            let (mut sg, mut sgx) = ([0f64; 8], [0f64; 8]);
            let full = len / 8 * 8;
            for i in 0..full {
                let gv = if x[i] * a + b >= 0.0 {
                    g[i] as f64
                } else {
                    0.0
                };
                sg[i % 8] += gv;
                sgx[i % 8] += gv * (x[i] as f64 - mean);
            }
            let (mut tg, mut tgx) = (sg.iter().sum::<f64>(), sgx.iter().sum::<f64>());
            for i in full..len {
                if x[i] * a + b >= 0.0 {
                    tg += g[i] as f64;
                    tgx += g[i] as f64 * (x[i] as f64 - mean);
                }
            }
            assert_eq!(fast.0.to_bits(), tg.to_bits(), "Σg, length {len}");
            assert_eq!(fast.1.to_bits(), tgx.to_bits(), "Σg·x, length {len}");
        }
    }
}
