//! Kernel taps that only ever read the zero padding. On the small maps of the networks at the
//! CIFAR-10 scale (Inception-B's 1×7 and 7×1 convolutions on 3×3 maps, Inception-C's 1×3 and 3×1
//! on 1×1 maps) whole rows or columns of the kernel never touch the input: their products are
//! exact zeros for every output. The convolution then runs with the kernel cropped to the taps
//! that do (a 1×3 convolution of a 1×1 map becomes a matrix product), and the weight gradient of
//! the others is exactly zero.

use super::geom::Geom;
use crate::models::fastops::Elem;

/// The taps `lo..hi` of a kernel of length `k` along one axis that read inside an input of
/// length `len` for at least one of the `out` outputs of a stride-1 convolution (input index
/// `o + tap − pad`). With a larger stride the live taps need not be one range.
fn live(out: usize, k: usize, pad: usize, len: usize) -> (usize, usize) {
    let lo = pad.saturating_sub(out - 1);
    let hi = k.min(pad + len);
    (lo.min(hi), hi)
}

/// A convolution whose kernel has taps that never read the input, and the same convolution on
/// the kernel cropped to the others.
pub(super) struct Crop {
    full: Geom,
    /// The cropped convolution: same input and output, kernel `kh×kw` from tap `at` of the full
    /// one, left/top padding reduced by as much.
    pub(super) live: Geom,
    at: (usize, usize),
}

impl Crop {
    /// `None` when every tap of `g` reads the input for some output, or the stride is not 1.
    pub(super) fn of(g: &Geom) -> Option<Self> {
        if g.s != 1 {
            return None;
        }
        let (h0, h1) = live(g.oh, g.kh, g.ph, g.h);
        let (w0, w1) = live(g.ow, g.kw, g.pw, g.w);
        if (h0, h1, w0, w1) == (0, g.kh, 0, g.kw) || h0 == h1 || w0 == w1 {
            return None;
        }
        let live = Geom {
            kh: h1 - h0,
            kw: w1 - w0,
            ph: g.ph - h0,
            pw: g.pw - w0,
            ..*g
        };
        Some(Self {
            full: *g,
            live,
            at: (h0, w0),
        })
    }

    /// The live taps of an O×C×KH×KW weight, O×C×KH'×KW'.
    pub(super) fn weight<T: Elem>(&self, wt: &[T]) -> Vec<T> {
        let (f, l) = (&self.full, &self.live);
        let mut out = Vec::with_capacity(f.o * f.c * l.kh * l.kw);
        for oc in 0..f.o * f.c {
            let first = (oc * f.kh + self.at.0) * f.kw;
            if l.kw == f.kw {
                // Whole kernel rows: one block per (output, input) channel pair.
                out.extend_from_slice(&wt[first..first + l.kh * f.kw]);
                continue;
            }
            for i in 0..l.kh {
                let row = first + i * f.kw + self.at.1;
                out.extend_from_slice(&wt[row..row + l.kw]);
            }
        }
        out
    }

    /// The full weight gradient from the live taps' (zero at the others).
    pub(super) fn weight_grad<T: Elem>(&self, dw: &[T]) -> Vec<T> {
        let (f, l) = (&self.full, &self.live);
        let mut out = vec![crate::models::fastops::zero::<T>(); f.o * f.c * f.kh * f.kw];
        for oc in 0..f.o * f.c {
            let first = (oc * f.kh + self.at.0) * f.kw;
            let live = &dw[oc * l.kh * l.kw..][..l.kh * l.kw];
            if l.kw == f.kw {
                out[first..first + l.kh * f.kw].copy_from_slice(live);
                continue;
            }
            for i in 0..l.kh {
                let row = first + i * f.kw + self.at.1;
                out[row..row + l.kw].copy_from_slice(&live[i * l.kw..][..l.kw]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_taps_match_brute_force() {
        for k in 1..8usize {
            for pad in 0..4usize {
                for len in 1..6usize {
                    let Some(out) = (len + 2 * pad + 1).checked_sub(k).filter(|&o| o > 0) else {
                        continue;
                    };
                    let reads = |t: usize| {
                        (0..out)
                            .any(|o| (0..len as isize).contains(&((o + t) as isize - pad as isize)))
                    };
                    let want: Vec<usize> = (0..k).filter(|&t| reads(t)).collect();
                    let (lo, hi) = live(out, k, pad, len);
                    assert_eq!((lo..hi).collect::<Vec<_>>(), want, "{out} {k} {pad} {len}");
                }
            }
        }
    }

    #[test]
    fn a_1x3_kernel_on_a_1x1_map_crops_to_a_matrix_product() {
        let g = Geom::new(&[2, 4, 1, 1], &[5, 4, 1, 3], (0, 1), 1).unwrap();
        let c = Crop::of(&g).unwrap();
        assert!(c.live.pointwise());
        assert_eq!((c.live.oh, c.live.ow), (1, 1));
        let wt: Vec<f64> = (0..5 * 4 * 3).map(|v| v as f64).collect();
        let w = c.weight(&wt);
        assert_eq!(w.len(), 20);
        assert_eq!(w[0], 1.0);
        assert_eq!(w[1], 4.0);
        let back = c.weight_grad(&w);
        for (i, v) in back.iter().enumerate() {
            assert_eq!(*v, if i % 3 == 1 { i as f64 } else { 0.0 });
        }
        // Every tap of a 3×3 SAME convolution reads a 3×3 map.
        let full = Geom::new(&[2, 4, 3, 3], &[5, 4, 3, 3], (1, 1), 1).unwrap();
        assert!(Crop::of(&full).is_none());
        let b = Geom::new(&[2, 4, 3, 3], &[5, 4, 1, 7], (0, 3), 1).unwrap();
        let c = Crop::of(&b).unwrap();
        assert_eq!((c.live.kw, c.live.pw, c.at), (5, 2, (0, 1)));
    }
}
