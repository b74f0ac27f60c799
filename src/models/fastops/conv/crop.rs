//! Kernel taps that only ever read the zero padding. On the small maps of the networks at the
//! CIFAR-10 scale (Inception-B's 1×7 and 7×1 convolutions on 3×3 maps, Inception-C's 1×3 and 3×1
//! on 1×1 maps) whole rows or columns of the kernel never touch the input: their products are
//! exact zeros for every output. The convolution then runs with the kernel cropped to the taps
//! that do (a 1×3 convolution of a 1×1 map becomes a matrix product), and the weight gradient of
//! the others is exactly zero.

use super::geom::Geom;
use crate::models::fastops::{par_chunks, Elem};

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
        let pairs = f.o * f.c;
        if let Some((s, len)) = self.segment() {
            let full = f.kh * f.kw;
            let mut out = crate::models::fastops::uninit::<T>(pairs * len);
            // By output channel over the threads (the weights come from memory, not cache).
            par_chunks(&mut out, f.c * len, |o, dst| {
                for c in 0..f.c {
                    let (from, to) = ((o * f.c + c) * full + s, c * len);
                    if full <= WINDOW && from + WINDOW <= wt.len() && to + WINDOW <= dst.len() {
                        // Spills past the pair's taps into the next pair's place, which that
                        // pair then overwrites.
                        put_window(&mut dst[to..], window(&wt[from..]));
                    } else {
                        dst[to..to + len].copy_from_slice(&wt[from..from + len]);
                    }
                }
            });
            return out;
        }
        let mut out = Vec::with_capacity(pairs * l.kh * l.kw);
        for oc in 0..pairs {
            for i in 0..l.kh {
                let row = (oc * f.kh + self.at.0 + i) * f.kw + self.at.1;
                out.extend_from_slice(&wt[row..row + l.kw]);
            }
        }
        out
    }

    /// The full weight gradient from the live taps' (zero at the others).
    pub(super) fn weight_grad<T: Elem>(&self, dw: &[T]) -> Vec<T> {
        let (f, l) = (&self.full, &self.live);
        let pairs = f.o * f.c;
        let full = f.kh * f.kw;
        let zero = crate::models::fastops::zero::<T>();
        if let Some((s, len)) = self.segment() {
            let mut out = crate::models::fastops::uninit::<T>(pairs * full);
            let keep: [bool; WINDOW] = std::array::from_fn(|t| (s..s + len).contains(&t));
            par_chunks(&mut out, f.c * full, |o, dst| {
                for c in 0..f.c {
                    let (from, to) = ((o * f.c + c) * len, c * full);
                    if full <= WINDOW
                        && from >= s
                        && from - s + WINDOW <= dw.len()
                        && to + WINDOW <= dst.len()
                    {
                        // The pair's whole kernel in a window read `s` entries early, so that
                        // its live taps land at `s..`, the other taps set to zero (the entries
                        // past the kernel, zeros too, spill into the next pair's place, which
                        // that pair then overwrites).
                        let w = window(&dw[from - s..]);
                        put_window(
                            &mut dst[to..],
                            std::array::from_fn(|t| if keep[t] { w[t] } else { zero }),
                        );
                    } else {
                        let d = &mut dst[to..to + full];
                        d.fill(zero);
                        d[s..s + len].copy_from_slice(&dw[from..from + len]);
                    }
                }
            });
            return out;
        }
        let mut out = vec![zero; pairs * full];
        for oc in 0..pairs {
            let live = &dw[oc * l.kh * l.kw..][..l.kh * l.kw];
            for i in 0..l.kh {
                let row = (oc * f.kh + self.at.0 + i) * f.kw + self.at.1;
                out[row..row + l.kw].copy_from_slice(&live[i * l.kw..][..l.kw]);
            }
        }
        out
    }

    /// Where the live taps are one run of each (output, input) channel pair's flattened kernel
    /// (whole kernel rows live, or a single row): its start and length.
    fn segment(&self) -> Option<(usize, usize)> {
        let (f, l) = (&self.full, &self.live);
        (l.kw == f.kw || l.kh == 1).then_some(((self.at.0 * f.kw) + self.at.1, l.kh * l.kw))
    }
}

/// The kernels the networks crop have at most this many taps (1×7, 7×1, 1×3, 3×1): each
/// (output, input) channel pair's taps are copied as one fixed-size window rather than by a
/// call to `memcpy` for a few entries (a cropped kernel has thousands of pairs).
const WINDOW: usize = 8;

/// The first [`WINDOW`] entries of `s`, read as one value: the compiler turns a slice copy
/// into a call to `memcpy` even at this fixed size, which costs more than the copy.
#[inline(always)]
fn window<T: Copy>(s: &[T]) -> [T; WINDOW] {
    assert!(s.len() >= WINDOW);
    // SAFETY: `s` has at least WINDOW entries; the read needs no alignment.
    unsafe { std::ptr::read_unaligned(s.as_ptr().cast::<[T; WINDOW]>()) }
}

/// Writes `w` over the first [`WINDOW`] entries of `d` (see [`window`]).
#[inline(always)]
fn put_window<T: Copy>(d: &mut [T], w: [T; WINDOW]) {
    assert!(d.len() >= WINDOW);
    // SAFETY: `d` has at least WINDOW entries; the write needs no alignment.
    unsafe { std::ptr::write_unaligned(d.as_mut_ptr().cast::<[T; WINDOW]>(), w) }
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

    /// The cropped weight holds exactly the live taps, in order, and the weight gradient puts
    /// them back with zeros at the others: kernels whose live taps are one run per channel pair
    /// (copied in windows, a short last pair included) and one with both axes cropped.
    #[test]
    fn cropped_weights_and_their_gradients_match_the_definition() {
        // (input channels, map, outputs, kernel, padding)
        let cases = [
            (5, (3, 3), 7, (1, 7), (0, 3)),
            (6, (3, 3), 4, (7, 1), (3, 0)),
            (3, (1, 1), 5, (1, 3), (0, 1)),
            (4, (1, 1), 3, (3, 1), (1, 0)),
            (2, (1, 1), 3, (3, 3), (1, 1)),
            (3, (2, 2), 2, (5, 5), (2, 2)),
            (2, (2, 3), 3, (1, 9), (0, 4)),
        ];
        for (c, (h, w), o, (kh, kw), pad) in cases {
            let g = Geom::new(&[2, c, h, w], &[o, c, kh, kw], pad, 1).unwrap();
            let crop = Crop::of(&g).unwrap();
            let (l, at) = (crop.live, crop.at);
            let what = format!("{c}×{h}×{w}, {o}×{kh}×{kw}");
            let wt: Vec<f32> = (0..o * c * kh * kw).map(|v| v as f32 + 1.0).collect();
            let cropped = crop.weight(&wt);
            let mut want = Vec::new();
            for pair in 0..o * c {
                for i in 0..l.kh {
                    for j in 0..l.kw {
                        want.push(wt[(pair * kh + at.0 + i) * kw + at.1 + j]);
                    }
                }
            }
            assert_eq!(cropped, want, "{what}: weight");
            let back = crop.weight_grad(&cropped);
            for (e, (&got, &v)) in back.iter().zip(&wt).enumerate() {
                let (i, j) = (e / kw % kh, e % kw);
                let live = (at.0..at.0 + l.kh).contains(&i) && (at.1..at.1 + l.kw).contains(&j);
                assert_eq!(got, if live { v } else { 0.0 }, "{what}: gradient at {e}");
            }
        }
    }
}
