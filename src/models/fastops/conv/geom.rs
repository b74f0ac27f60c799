//! The shapes of one convolution and the index arithmetic every kernel of it shares.

use candle_core::{bail, Result};

/// Entries of one im2col band (K × band columns): about 1 MiB of f32, so the band stays in L2.
const BAND_ELEMS: usize = 1 << 18;

/// How a convolution's matrix products multiply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Arith {
    /// In the tensors' own type (f32 or f64).
    #[default]
    Native,
    /// f32 tensors whose operands are rounded to bf16, the products summed in f32
    /// (`--precision bf16`).
    Bf16,
}

/// Shapes of one convolution: input N×C×H×W, weight O×C×KH×KW, output N×O×OH×OW, and how its
/// products multiply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Geom {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) o: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) s: usize,
    pub(super) ph: usize,
    pub(super) pw: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) arith: Arith,
}

impl Geom {
    pub(super) fn new(x: &[usize], wt: &[usize], pad: (usize, usize), s: usize) -> Result<Self> {
        let (&[n, c, h, w], &[o, ci, kh, kw]) = (x, wt) else {
            bail!("conv2d expects rank-4 input and weight, got {x:?} and {wt:?}")
        };
        if c != ci {
            bail!("conv2d: input has {c} channels, weight expects {ci}")
        }
        if s == 0 || h + 2 * pad.0 < kh || w + 2 * pad.1 < kw {
            bail!("conv2d: kernel {kh}x{kw} (stride {s}, padding {pad:?}) does not fit a {h}x{w} input")
        }
        let oh = (h + 2 * pad.0 - kh) / s + 1;
        let ow = (w + 2 * pad.1 - kw) / s + 1;
        Ok(Self {
            n,
            c,
            h,
            w,
            o,
            kh,
            kw,
            s,
            ph: pad.0,
            pw: pad.1,
            oh,
            ow,
            arith: Arith::Native,
        })
    }
    /// Rows of the im2col matrix (= columns of the flattened weight).
    pub(super) fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    pub(super) fn p(&self) -> usize {
        self.oh * self.ow
    }
    pub(super) fn image_in(&self) -> usize {
        self.c * self.h * self.w
    }
    /// A 1×1 stride-1 unpadded convolution: the input image is its own im2col matrix.
    pub(super) fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.s == 1 && self.ph == 0 && self.pw == 0
    }
    /// Output rows per im2col band.
    pub(super) fn band_rows(&self) -> usize {
        (BAND_ELEMS / (self.k() * self.ow).max(1)).clamp(1, self.oh)
    }
    pub(super) fn out_dims(&self) -> (usize, usize, usize, usize) {
        (self.n, self.o, self.oh, self.ow)
    }
}

/// The outputs `lo..hi` along one axis whose tap `k` reads inside the input of length `len`.
#[inline]
pub(super) fn valid_range(
    out: usize,
    s: usize,
    k: usize,
    pad: usize,
    len: usize,
) -> (usize, usize) {
    // input index = o*s + k - pad must lie in [0, len)
    let lo = if pad > k { (pad - k).div_ceil(s) } else { 0 };
    let hi = if len + pad > k {
        (len + pad - k).div_ceil(s)
    } else {
        0
    };
    let hi = hi.min(out);
    (lo.min(hi), hi)
}
