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

/// Lanes `0..n` of a 16-lane AVX-512 mask (all for n ≥ 16).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn first_lanes(n: usize) -> std::arch::x86_64::__mmask16 {
    if n >= 16 {
        !0
    } else {
        ((1u32 << n) - 1) as std::arch::x86_64::__mmask16
    }
}

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

/// `Σ f(x)` over channel `ch` of N images of C×`hw` (image `i`'s plane at
/// `xb.0 + i·xb.1 + ch·hw`), in f64 over `LANES` accumulators that run on across the planes:
/// entry `j` of every plane goes to lane `j mod LANES`, and the lanes are added in order at the
/// end. A plane then costs its adds, not a reduction of its own: most planes of the networks at
/// the CIFAR-10 scale have 1 to 49 entries.
#[inline(always)]
pub(crate) fn channel_lane_sum<T: Elem>(
    x: &[T],
    xb: (usize, usize),
    n: usize,
    ch: usize,
    hw: usize,
    f: impl Fn(f64) -> f64,
) -> f64 {
    let mut acc = [0f64; LANES];
    for i in 0..n {
        let mut chunks = x[xb.0 + i * xb.1 + ch * hw..][..hw].chunks_exact(LANES);
        for c in &mut chunks {
            for (a, v) in acc.iter_mut().zip(c) {
                *a += f(v.to_f64());
            }
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // A whole chunk with the lanes past the plane adding +0 (which leaves a lane that
            // starts at +0 as it was): a loop of fixed length keeps the lanes in registers.
            for (l, a) in acc.iter_mut().enumerate() {
                *a += rest.get(l).map_or(0.0, |v| f(v.to_f64()));
            }
        }
    }
    acc.iter().sum()
}

/// BatchNorm's backward sums of channel `ch`: `(Σ g, Σ g·(x − mean))` over its planes in `xs`
/// and `gs` (image `i`'s at `xb.0 + i·xb.1 + ch·hw`, likewise `gb`), `g` taken where the
/// pre-activation `x·a + b` is ≥ 0 (candle's ReLU passes the gradient at 0), in f64 lanes as
/// [`channel_lane_sum`]. With AVX2 the f32 case runs on intrinsics (the compiler leaves the
/// per-lane select scalar and branchy), computing exactly what the generic loop does, lane for
/// lane: masked entries add +0 there and 0 here, which leaves a lane that starts at +0 as it was.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn masked_channel_sums<T: Elem>(
    xs: &[T],
    xb: (usize, usize),
    gs: &[T],
    gb: (usize, usize),
    n: usize,
    (ch, hw): (usize, usize),
    (a, b): (T, T),
    mean: f64,
) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(x), Some(g)) = (as_f32(xs), as_f32(gs)) {
        if avx2() {
            let (a, b) = (a.to_f64() as f32, b.to_f64() as f32);
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { masked_channel_sums_avx2(x, xb, g, gb, n, (ch, hw), (a, b), mean) };
        }
    }
    masked_channel_sums_generic(xs, xb, gs, gb, n, (ch, hw), (a, b), mean)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn masked_channel_sums_generic<T: Elem>(
    xs: &[T],
    xb: (usize, usize),
    gs: &[T],
    gb: (usize, usize),
    n: usize,
    (ch, hw): (usize, usize),
    (a, b): (T, T),
    mean: f64,
) -> (f64, f64) {
    let z = T::from_f64(0.0);
    let (mut sg, mut sgx) = ([0f64; LANES], [0f64; LANES]);
    // Lane `l` takes `v`, `g` of an entry of the plane (`inside`) or of the padding past it,
    // which adds 0 as the AVX2 code's +0 loads do.
    let mut add = |l: usize, v: T, g: T, inside: bool| {
        let g = if inside && v * a + b >= z {
            g.to_f64()
        } else {
            0.0
        };
        sg[l] += g;
        sgx[l] += if inside { g * (v.to_f64() - mean) } else { 0.0 };
    };
    for i in 0..n {
        let xp = &xs[xb.0 + i * xb.1 + ch * hw..][..hw];
        let gp = &gs[gb.0 + i * gb.1 + ch * hw..][..hw];
        let (mut xc, mut gc) = (xp.chunks_exact(LANES), gp.chunks_exact(LANES));
        for (x8, g8) in (&mut xc).zip(&mut gc) {
            for l in 0..LANES {
                add(l, x8[l], g8[l], true);
            }
        }
        let rest = xc.remainder().len();
        if rest > 0 {
            // As in `channel_lane_sum`: a whole chunk, the lanes past the plane adding 0.
            let (xr, gr) = (xc.remainder(), gc.remainder());
            for l in 0..LANES {
                let (v, g) = (xr.get(l).copied(), gr.get(l).copied());
                add(l, v.unwrap_or(z), g.unwrap_or(z), l < rest);
            }
        }
    }
    (sg.iter().sum(), sgx.iter().sum())
}

/// `xp` as f32 when `T` is f32.
pub(crate) fn as_f32<T: Elem>(xp: &[T]) -> Option<&[f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32.
        .then(|| unsafe { std::slice::from_raw_parts(xp.as_ptr().cast::<f32>(), xp.len()) })
}

/// `xp` as mutable f32 when `T` is f32.
pub(crate) fn as_f32_mut<T: Elem>(xp: &mut [T]) -> Option<&mut [f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32.
        .then(|| unsafe { std::slice::from_raw_parts_mut(xp.as_mut_ptr().cast::<f32>(), xp.len()) })
}

/// [`masked_channel_sums`] on AVX2: lanes 0–3 and 4–7 in two f64 registers per sum, each
/// plane's last `hw mod 8` entries read with a masked load (the lanes past them read +0).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn masked_channel_sums_avx2(
    x: &[f32],
    xb: (usize, usize),
    g: &[f32],
    gb: (usize, usize),
    n: usize,
    (ch, hw): (usize, usize),
    (a, b): (f32, f32),
    mean: f64,
) -> (f64, f64) {
    use std::arch::x86_64::*;
    if n == 0 || hw == 0 {
        return (0.0, 0.0);
    }
    // Every plane inside its slice: the loads below go through raw pointers.
    assert!(xb.0 + (n - 1) * xb.1 + (ch + 1) * hw <= x.len());
    assert!(gb.0 + (n - 1) * gb.1 + (ch + 1) * hw <= g.len());
    let (full, rem) = (hw / 8 * 8, hw % 8);
    let lane: [i32; 8] = std::array::from_fn(|l| if l < rem { -1 } else { 0 });
    let tail = _mm256_loadu_si256(lane.as_ptr().cast());
    let (va, vb, vz) = (_mm256_set1_ps(a), _mm256_set1_ps(b), _mm256_setzero_ps());
    let vmean = _mm256_set1_pd(mean);
    let (mut sg_lo, mut sg_hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let (mut sx_lo, mut sx_hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let mut add = |xv: __m256, gv: __m256| {
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
    };
    for i in 0..n {
        let xp = x.as_ptr().add(xb.0 + i * xb.1 + ch * hw);
        let gp = g.as_ptr().add(gb.0 + i * gb.1 + ch * hw);
        let mut j = 0;
        while j < full {
            add(_mm256_loadu_ps(xp.add(j)), _mm256_loadu_ps(gp.add(j)));
            j += 8;
        }
        if rem > 0 {
            add(
                _mm256_maskload_ps(xp.add(full), tail),
                _mm256_maskload_ps(gp.add(full), tail),
            );
        }
    }
    let lanes = |lo: __m256d, hi: __m256d| {
        let mut l = [0f64; 8];
        _mm256_storeu_pd(l.as_mut_ptr(), lo);
        _mm256_storeu_pd(l.as_mut_ptr().add(4), hi);
        l.iter().sum::<f64>()
    };
    (lanes(sg_lo, sg_hi), lanes(sx_lo, sx_hi))
}

#[cfg(test)]
mod tests {
    /// The AVX2 sums equal the generic loop's bit for bit: planes with and without a remainder
    /// (1 to 49 entries), zeros and negative zeros among the gradients, images apart in memory.
    #[test]
    fn masked_channel_sums_match_the_generic_loop_exactly() {
        let mut rng = crate::models::fastops::testing::Lcg(5);
        let mut next = || rng.f32_within(2.0);
        for hw in [1, 2, 7, 8, 9, 15, 16, 17, 49] {
            let (n, c, ch) = (5, 3, 1);
            let stride = c * hw + 4;
            let len = 2 + n * stride;
            let x: Vec<f32> = (0..len).map(|_| next()).collect();
            let g: Vec<f32> = (0..len)
                .map(|i| match i % 7 {
                    0 => 0.0,
                    3 => -0.0,
                    _ => next(),
                })
                .collect();
            let (a, b, mean) = (0.8f32, 0.05f32, -0.02);
            let args = ((2, stride), n, (ch, hw), (a, b), mean);
            let generic = super::masked_channel_sums_generic(
                &x, args.0, &g, args.0, args.1, args.2, args.3, args.4,
            );
            if !super::avx2() {
                return; // no AVX2 here: nothing to compare
            }
            // SAFETY: the CPU has AVX2.
            let fast = unsafe {
                super::masked_channel_sums_avx2(
                    &x, args.0, &g, args.0, args.1, args.2, args.3, args.4,
                )
            };
            assert_eq!(fast.0.to_bits(), generic.0.to_bits(), "Σg, plane of {hw}");
            assert_eq!(fast.1.to_bits(), generic.1.to_bits(), "Σg·x, plane of {hw}");
            // And the sums are the sums.
            let (mut sg, mut sgx) = (0f64, 0f64);
            for i in 0..n {
                for j in 0..hw {
                    let k = 2 + i * stride + ch * hw + j;
                    if x[k] * a + b >= 0.0 {
                        sg += g[k] as f64;
                        sgx += g[k] as f64 * (x[k] as f64 - mean);
                    }
                }
            }
            assert!(
                (fast.0 - sg).abs() < 1e-12 && (fast.1 - sgx).abs() < 1e-12,
                "plane of {hw}"
            );
        }
    }
}
