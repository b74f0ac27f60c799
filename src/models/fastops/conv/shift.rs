//! im2col and col2im of stride-1 convolutions whose output rows are as wide as the input's
//! (every SAME convolution of the networks, and the cropped 1×n / n×1 ones). Output entry `f`
//! (flat in its plane) of tap `(i, j)` then reads input entry `f + shift`, one constant per
//! tap; the entries whose source lies in the padding (rows above or below the plane, columns
//! that wrapped around a row end) are zeros. Those positions are the same for every channel and
//! image, so a table made once per convolution turns each (channel, image, tap) row into one
//! masked copy (im2col) or masked add (col2im) the compiler vectorises, where a row-by-row copy
//! with zeros written around it spent more time in bookkeeping than in moving data on the small
//! maps of the CIFAR-10 scale.

use super::super::simd::wide_fn;
use super::super::{zero, Elem};
use super::geom::{valid_range, Geom};

/// One tap: output positions `lo..hi` of the plane hold every entry that reads the input, at
/// input position `f + shift`, where `live[f - lo]`; the rest are zeros.
struct Tap {
    shift: isize,
    lo: usize,
    hi: usize,
    live: Vec<bool>,
}

/// The taps of one convolution, in im2col row order (`i·KW + j`).
pub(super) struct Shifted {
    taps: Vec<Tap>,
}

impl Shifted {
    /// The table of `g`, or `None` when its taps are not constant shifts (stride above 1, or
    /// output rows narrower than the input's).
    pub(super) fn of(g: &Geom) -> Option<Self> {
        if g.s != 1 || g.ow != g.w {
            return None;
        }
        let w = g.w;
        let mut taps = Vec::with_capacity(g.kh * g.kw);
        for ki in 0..g.kh {
            let (t_lo, t_hi) = valid_range(g.oh, 1, ki, g.ph, g.h);
            for kj in 0..g.kw {
                let (u_lo, u_hi) = valid_range(g.ow, 1, kj, g.pw, w);
                let shift = (ki * w + kj) as isize - (g.ph * w + g.pw) as isize;
                if t_lo == t_hi || u_lo == u_hi {
                    taps.push(Tap {
                        shift,
                        lo: 0,
                        hi: 0,
                        live: Vec::new(),
                    });
                    continue;
                }
                // First and one past the last live position: every position between them
                // reads inside the plane, live or not, as the source index only grows.
                let (lo, hi) = (t_lo * w + u_lo, (t_hi - 1) * w + u_hi);
                let live = (lo..hi).map(|f| (u_lo..u_hi).contains(&(f % w))).collect();
                taps.push(Tap {
                    shift,
                    lo,
                    hi,
                    live,
                });
            }
        }
        Some(Self { taps })
    }

    /// Output positions `f0..f1` of tap `tap` that read the input: `(a, b)` within `f0..f1`,
    /// or `None`.
    fn span(tap: &Tap, (f0, f1): (usize, usize)) -> Option<(usize, usize)> {
        let (a, b) = (tap.lo.clamp(f0, f1), tap.hi.clamp(f0, f1));
        (a < b).then_some((a, b))
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
        for (r, tap) in self.taps.iter().enumerate() {
            let d = &mut dst[r * ld + off..][..f1 - f0];
            let Some((a, b)) = Self::span(tap, (f0, f1)) else {
                d.fill(zero());
                continue;
            };
            let s = (a as isize + tap.shift) as usize;
            let live = &tap.live[a - tap.lo..b - tap.lo];
            masked_copies(d, 0, 0, xc, s, 0, 1, f1 - f0, a - f0, b - f0, live);
        }
    }

    /// im2col of one channel of the whole batch (`n` images of `p` output positions): image
    /// `i`'s plane of that channel at `x[base + i·stride..]`, tap `r`'s row at `dst[r·ld..]`,
    /// image `i`'s entries at `i·p` in it. The tap's bookkeeping is done once for all images.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn im2col_images<T: Elem>(
        &self,
        x: &[T],
        base: usize,
        stride: usize,
        n: usize,
        p: usize,
        dst: &mut [T],
        ld: usize,
    ) {
        for (r, tap) in self.taps.iter().enumerate() {
            let row = &mut dst[r * ld..][..n * p];
            let Some((a, b)) = Self::span(tap, (0, p)) else {
                row.fill(zero());
                continue;
            };
            let s = base + (a as isize + tap.shift) as usize;
            masked_copies(row, 0, p, x, s, stride, n, p, a, b, &tap.live[a - tap.lo..]);
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
        for (r, tap) in self.taps.iter().enumerate() {
            let Some((a, b)) = Self::span(tap, (f0, f1)) else {
                continue;
            };
            let s = (a as isize + tap.shift) as usize;
            let live = &tap.live[a - tap.lo..b - tap.lo];
            masked_adds(dxc, s, 0, src, r * ld + off + a - f0, 0, 1, b - a, live);
        }
    }

    /// col2im of image `i` of the whole batch (`p` output positions an image): channel `c`'s
    /// input-gradient plane at `dx[c·plane..]`, the column gradients of channel `c`, tap `r`
    /// at `src[(c·taps + r)·ld + off..]`. The tap's bookkeeping is done once for all channels.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn col2im_channels<T: Elem>(
        &self,
        src: &[T],
        ld: usize,
        off: usize,
        p: usize,
        channels: usize,
        plane: usize,
        dx: &mut [T],
    ) {
        let taps = self.taps.len();
        for (r, tap) in self.taps.iter().enumerate() {
            let Some((a, b)) = Self::span(tap, (0, p)) else {
                continue;
            };
            let s = (a as isize + tap.shift) as usize;
            let live = &tap.live[a - tap.lo..b - tap.lo];
            let s0 = r * ld + off + a;
            masked_adds(dx, s, plane, src, s0, taps * ld, channels, b - a, live);
        }
    }
}

wide_fn! {
    /// For each `q < count`, the `p` entries at `dst[d0 + q·ds..]`: `src[s0 + q·ss + f − a]`
    /// for `f` in `a..b` where `live[f − a]`, zero elsewhere.
    #[allow(clippy::too_many_arguments)]
    fn masked_copies<T: Elem>(
        dst: &mut [T],
        d0: usize,
        ds: usize,
        src: &[T],
        s0: usize,
        ss: usize,
        count: usize,
        p: usize,
        a: usize,
        b: usize,
        live: &[bool],
    ) -> () {
        let live = &live[..b - a];
        for q in 0..count {
            let d = &mut dst[d0 + q * ds..][..p];
            let s = &src[s0 + q * ss..][..b - a];
            d[..a].fill(zero());
            for ((d, &s), &l) in d[a..b].iter_mut().zip(s).zip(live) {
                *d = if l { s } else { zero() };
            }
            d[b..].fill(zero());
        }
    }
}

wide_fn! {
    /// For each `q < count`: `dst[d0 + q·ds + f] += src[s0 + q·ss + f]` for `f < len` where
    /// `live[f]`. Adding +0 elsewhere leaves `dst` as it was: a sum that starts at +0 is
    /// never −0.
    #[allow(clippy::too_many_arguments)]
    fn masked_adds<T: Elem>(
        dst: &mut [T],
        d0: usize,
        ds: usize,
        src: &[T],
        s0: usize,
        ss: usize,
        count: usize,
        len: usize,
        live: &[bool],
    ) -> () {
        let live = &live[..len];
        for q in 0..count {
            let d = &mut dst[d0 + q * ds..][..len];
            let s = &src[s0 + q * ss..][..len];
            for ((d, &s), &l) in d.iter_mut().zip(s).zip(live) {
                *d += if l { s } else { zero() };
            }
        }
    }
}
