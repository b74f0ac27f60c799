//! im2col and col2im of the convolutions whose taps are not constant shifts (stride 2, and
//! stride-1 convolutions whose output rows are narrower than the input's): a table made once per
//! convolution gives, for each tap and output position of a plane, the input entry it reads or
//! none (the padding). The table is the same for every channel and image, so each (channel,
//! image, tap) row is one gather over the plane (AVX2's masked gather for f32) instead of a copy
//! per output row with zeros written around it, whose bookkeeping dominated on the small maps.

use super::super::simd::{as_f32, as_f32_mut, wide_fn};
use super::super::{zero, Elem};
use super::geom::Geom;

/// Marks an output position whose tap reads the padding.
const PAD: i32 = -1;

/// The taps of one convolution, in im2col row order (`i·KW + j`): `taps[r][f]` is the entry of
/// the input plane that tap `r` reads for output position `f`, or [`PAD`].
pub(super) struct Gathered {
    taps: Vec<Vec<i32>>,
    /// Entries of an input plane: every index is below it.
    plane: usize,
}

impl Gathered {
    /// The table of `g` (planes of up to 2³¹ entries, 8 GiB of f32).
    pub(super) fn of(g: &Geom) -> Self {
        assert!(
            g.h * g.w <= i32::MAX as usize,
            "convolution input plane too large"
        );
        let mut taps = Vec::with_capacity(g.kh * g.kw);
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let mut idx = Vec::with_capacity(g.p());
                for t in 0..g.oh {
                    let ih = (t * g.s + ki) as isize - g.ph as isize;
                    for u in 0..g.ow {
                        let iw = (u * g.s + kj) as isize - g.pw as isize;
                        let inside =
                            (0..g.h as isize).contains(&ih) && (0..g.w as isize).contains(&iw);
                        idx.push(if inside {
                            (ih as usize * g.w + iw as usize) as i32
                        } else {
                            PAD
                        });
                    }
                }
                taps.push(idx);
            }
        }
        Self {
            taps,
            plane: g.h * g.w,
        }
    }

    /// im2col of output positions `f0..f1` of one input plane `xc`: tap `r`'s entries at
    /// `dst[r·ld + off..][..f1 − f0]`.
    pub(super) fn im2col<T: Elem>(
        &self,
        xc: &[T],
        (f0, f1): (usize, usize),
        dst: &mut [T],
        ld: usize,
        off: usize,
    ) {
        for (r, idx) in self.taps.iter().enumerate() {
            gather(
                &mut dst[r * ld + off..][..f1 - f0],
                &xc[..self.plane],
                &idx[f0..f1],
            );
        }
    }

    /// im2col of one channel of the whole batch (`n` images of `p` output positions): image
    /// `i`'s plane of that channel at `x[base + i·stride..][..plane]`, tap `r`'s row at
    /// `dst[r·ld..]`, image `i`'s entries at `i·p` in it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn im2col_images<T: Elem>(
        &self,
        x: &[T],
        (base, stride): (usize, usize),
        n: usize,
        p: usize,
        dst: &mut [T],
        ld: usize,
    ) {
        for (r, idx) in self.taps.iter().enumerate() {
            let row = &mut dst[r * ld..][..n * p];
            for (i, d) in row.chunks_exact_mut(p).enumerate() {
                gather(d, &x[base + i * stride..][..self.plane], idx);
            }
        }
    }

    /// Adds the column gradients of output positions `f0..f1` (tap `r`'s at
    /// `src[r·ld + off..]`) onto the input-gradient plane `dxc` (col2im).
    pub(super) fn col2im_add<T: Elem>(
        &self,
        src: &[T],
        (f0, f1): (usize, usize),
        ld: usize,
        off: usize,
        dxc: &mut [T],
    ) {
        for (r, idx) in self.taps.iter().enumerate() {
            scatter_add(dxc, &src[r * ld + off..][..f1 - f0], &idx[f0..f1]);
        }
    }

    /// col2im of image `i` of the whole batch (`p` output positions an image): channel `c`'s
    /// input-gradient plane at `dx[c·plane..]`, the column gradients of channel `c`, tap `r` at
    /// `src[(c·taps + r)·ld + off..]`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn col2im_channels<T: Elem>(
        &self,
        src: &[T],
        ld: usize,
        off: usize,
        p: usize,
        channels: usize,
        dx: &mut [T],
    ) {
        let taps = self.taps.len();
        for (c, dxc) in dx.chunks_exact_mut(self.plane).take(channels).enumerate() {
            for (r, idx) in self.taps.iter().enumerate() {
                scatter_add(dxc, &src[(c * taps + r) * ld + off..][..p], idx);
            }
        }
    }
}

/// `d[f] = s[idx[f]]`, zero where `idx[f]` is [`PAD`]; `s` is a whole plane, which every index
/// of the table lies in.
fn gather<T: Elem>(d: &mut [T], s: &[T], idx: &[i32]) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(d32), Some(s32)) = (as_f32_mut(d), as_f32(s)) {
        if super::super::simd::avx2() {
            // SAFETY: the CPU has AVX2, and the table's indices lie inside the plane `s`.
            return unsafe { gather_avx2(d32, s32, idx) };
        }
    }
    gather_generic(d, s, idx)
}

wide_fn! {
    fn gather_generic<T: Elem>(d: &mut [T], s: &[T], idx: &[i32]) -> () {
        for (d, &k) in d.iter_mut().zip(idx) {
            *d = if k >= 0 { s[k as usize] } else { zero() };
        }
    }
}

wide_fn! {
    /// `d[idx[f]] += s[f]` where `idx[f]` is not [`PAD`], in order of `f`.
    fn scatter_add<T: Elem>(d: &mut [T], s: &[T], idx: &[i32]) -> () {
        for (&v, &k) in s.iter().zip(idx) {
            if k >= 0 {
                d[k as usize] += v;
            }
        }
    }
}

/// [`gather`] on AVX2. Safety: every index in `idx` is below `s.len()` (the gathers read `s`
/// through a raw pointer), as the table's are below the plane's size.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gather_avx2(d: &mut [f32], s: &[f32], idx: &[i32]) {
    use std::arch::x86_64::*;
    let n = d.len().min(idx.len());
    debug_assert!(idx[..n].iter().all(|&k| k < s.len() as i32));
    let full = n / 8 * 8;
    let zero = _mm256_setzero_ps();
    let mut f = 0;
    while f < full {
        let k = _mm256_loadu_si256(idx.as_ptr().add(f).cast());
        // Lanes whose index is PAD (negative) are not read and come out as zero.
        let live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(k, _mm256_set1_epi32(-1)));
        let v = _mm256_mask_i32gather_ps::<4>(zero, s.as_ptr(), k, live);
        _mm256_storeu_ps(d.as_mut_ptr().add(f), v);
        f += 8;
    }
    for f in full..n {
        let k = idx[f];
        d[f] = if k >= 0 { s[k as usize] } else { 0.0 };
    }
}
