//! Convolution through per-band im2col + GEMM (1×1 convolutions as plain matrix products), with
//! its own backward pass.

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::{blocked, image_blocks, threads, with_slice, zero, Elem};

/// Entries of one im2col band (K × band columns): about 1 MiB of f32, so the band stays in L2.
const BAND_ELEMS: usize = 1 << 18;

/// Shapes of one convolution: input N×C×H×W, weight O×C×KH×KW, output N×O×OH×OW.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    s: usize,
    ph: usize,
    pw: usize,
    oh: usize,
    ow: usize,
}

impl Geom {
    fn new(x: &[usize], wt: &[usize], pad: (usize, usize), s: usize) -> Result<Self> {
        let (&[n, c, h, w], &[o, ci, kh, kw]) = (x, wt) else { bail!("conv2d expects rank-4 input and weight, got {x:?} and {wt:?}") };
        if c != ci {
            bail!("conv2d: input has {c} channels, weight expects {ci}")
        }
        if s == 0 || h + 2 * pad.0 < kh || w + 2 * pad.1 < kw {
            bail!("conv2d: kernel {kh}x{kw} (stride {s}, padding {pad:?}) does not fit a {h}x{w} input")
        }
        let oh = (h + 2 * pad.0 - kh) / s + 1;
        let ow = (w + 2 * pad.1 - kw) / s + 1;
        Ok(Self { n, c, h, w, o, kh, kw, s, ph: pad.0, pw: pad.1, oh, ow })
    }
    /// Rows of the im2col matrix (= columns of the flattened weight).
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    fn p(&self) -> usize {
        self.oh * self.ow
    }
    fn image_in(&self) -> usize {
        self.c * self.h * self.w
    }
    /// A 1×1 stride-1 unpadded convolution: the input image is its own im2col matrix.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.s == 1 && self.ph == 0 && self.pw == 0
    }
    /// Output rows per im2col band.
    fn band_rows(&self) -> usize {
        (BAND_ELEMS / (self.k() * self.ow).max(1)).clamp(1, self.oh)
    }
    fn out_dims(&self) -> (usize, usize, usize, usize) {
        (self.n, self.o, self.oh, self.ow)
    }
}

/// The outputs `lo..hi` along one axis whose tap `k` reads inside the input of length `len`.
#[inline]
fn valid_range(out: usize, s: usize, k: usize, pad: usize, len: usize) -> (usize, usize) {
    // input index = o*s + k - pad must lie in [0, len)
    let lo = if pad > k { (pad - k).div_ceil(s) } else { 0 };
    let hi = if len + pad > k { (len + pad - k).div_ceil(s) } else { 0 };
    let hi = hi.min(out);
    (lo.min(hi), hi)
}

/// im2col of output rows `oh0..oh0+rows` of one image: `col[(c·KH+i)·KW+j][t]` for the band's
/// output positions `t`, zeros where the tap falls in the padding.
fn im2col<T: Elem>(x: &[T], g: &Geom, oh0: usize, rows: usize, col: &mut [T]) {
    let cols = rows * g.ow;
    let plane = g.h * g.w;
    for c in 0..g.c {
        let xc = &x[c * plane..(c + 1) * plane];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let r = (c * g.kh + ki) * g.kw + kj;
                let dst = &mut col[r * cols..(r + 1) * cols];
                let (lo, hi) = valid_range(g.ow, g.s, kj, g.pw, g.w);
                for t in 0..rows {
                    let d = &mut dst[t * g.ow..(t + 1) * g.ow];
                    let ih = ((oh0 + t) * g.s + ki) as isize - g.ph as isize;
                    if ih < 0 || ih >= g.h as isize || lo == hi {
                        d.fill(zero());
                        continue;
                    }
                    let xrow = &xc[ih as usize * g.w..(ih as usize + 1) * g.w];
                    d[..lo].fill(zero());
                    d[hi..].fill(zero());
                    let start = lo * g.s + kj - g.pw;
                    if g.s == 1 {
                        d[lo..hi].copy_from_slice(&xrow[start..start + hi - lo]);
                    } else {
                        for (o, v) in d[lo..hi].iter_mut().enumerate() {
                            *v = xrow[start + o * g.s];
                        }
                    }
                }
            }
        }
    }
}

/// Adds a band's column gradients back onto the input gradient of one image (col2im).
fn col2im_add<T: Elem>(col: &[T], g: &Geom, oh0: usize, rows: usize, dx: &mut [T]) {
    let cols = rows * g.ow;
    let plane = g.h * g.w;
    for c in 0..g.c {
        let dxc = &mut dx[c * plane..(c + 1) * plane];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let r = (c * g.kh + ki) * g.kw + kj;
                let src = &col[r * cols..(r + 1) * cols];
                let (lo, hi) = valid_range(g.ow, g.s, kj, g.pw, g.w);
                if lo == hi {
                    continue;
                }
                let start = lo * g.s + kj - g.pw;
                for t in 0..rows {
                    let ih = ((oh0 + t) * g.s + ki) as isize - g.ph as isize;
                    if ih < 0 || ih >= g.h as isize {
                        continue;
                    }
                    let row = &mut dxc[ih as usize * g.w..(ih as usize + 1) * g.w];
                    let s = &src[t * g.ow + lo..t * g.ow + hi];
                    if g.s == 1 {
                        for (d, &v) in row[start..start + hi - lo].iter_mut().zip(s) {
                            *d += v;
                        }
                    } else {
                        for (o, &v) in s.iter().enumerate() {
                            row[start + o * g.s] += v;
                        }
                    }
                }
            }
        }
    }
}

/// `dst (m×n, row stride dst_rs) [+]= lhs (m×k) · rhs (k×n)`, strides given as (row, column).
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn mm<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const T,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const T,
    rhs_rs: usize,
    rhs_cs: usize,
    par: Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs,
        lhs_cs as isize,
        lhs_rs as isize,
        rhs,
        rhs_cs as isize,
        rhs_rs as isize,
        T::from_f64(1.0),
        T::from_f64(1.0),
        false,
        false,
        false,
        par,
    )
}

/// Parallelism inside one GEMM: none when the images alone keep every thread busy.
fn inner_par(images: usize) -> Parallelism {
    let t = threads();
    if images >= t {
        Parallelism::None
    } else {
        Parallelism::Rayon(t)
    }
}

fn forward<T: Elem>(x: &[T], xb: (usize, usize), wt: &[T], g: &Geom) -> Vec<T> {
    let (k, p, o) = (g.k(), g.p(), g.o);
    let mut y = vec![zero::<T>(); g.n * o * p];
    let par = inner_par(g.n);
    y.par_chunks_mut(o * p).enumerate().for_each(|(i, yn)| {
        let xn = &x[xb.0 + i * xb.1..][..g.image_in()];
        unsafe {
            if g.pointwise() {
                mm(o, p, k, yn.as_mut_ptr(), p, false, wt.as_ptr(), k, 1, xn.as_ptr(), p, 1, par);
                return;
            }
            let band = g.band_rows();
            let mut col = vec![zero::<T>(); k * band * g.ow];
            for oh0 in (0..g.oh).step_by(band) {
                let rows = band.min(g.oh - oh0);
                let cols = rows * g.ow;
                im2col(xn, g, oh0, rows, &mut col[..k * cols]);
                mm(o, cols, k, yn[oh0 * g.ow..].as_mut_ptr(), p, false, wt.as_ptr(), k, 1, col.as_ptr(), cols, 1, par);
            }
        }
    });
    y
}

fn grad_input<T: Elem>(dy: &[T], db: (usize, usize), wt: &[T], g: &Geom) -> Vec<T> {
    let (k, p, o) = (g.k(), g.p(), g.o);
    let mut dx = vec![zero::<T>(); g.n * g.image_in()];
    let par = inner_par(g.n);
    dx.par_chunks_mut(g.image_in()).enumerate().for_each(|(i, dxn)| {
        let dyn_ = &dy[db.0 + i * db.1..][..o * p];
        unsafe {
            // Wᵀ: (k × o) with element (r, q) at wt[q·k + r].
            if g.pointwise() {
                mm(k, p, o, dxn.as_mut_ptr(), p, false, wt.as_ptr(), 1, k, dyn_.as_ptr(), p, 1, par);
                return;
            }
            let band = g.band_rows();
            let mut col = vec![zero::<T>(); k * band * g.ow];
            for oh0 in (0..g.oh).step_by(band) {
                let rows = band.min(g.oh - oh0);
                let cols = rows * g.ow;
                mm(k, cols, o, col.as_mut_ptr(), cols, false, wt.as_ptr(), 1, k, dyn_[oh0 * g.ow..].as_ptr(), p, 1, par);
                col2im_add(&col[..k * cols], g, oh0, rows, dxn);
            }
        }
    });
    dx
}

fn grad_weight<T: Elem>(x: &[T], xb: (usize, usize), dy: &[T], db: (usize, usize), g: &Geom) -> Vec<T> {
    let (k, p, o) = (g.k(), g.p(), g.o);
    // A fixed partition of the images into groups (one per thread), summed in order afterwards:
    // the result depends on the thread count only.
    let groups = threads().min(g.n).max(1);
    let par = inner_par(groups);
    let partials: Vec<Vec<T>> = (0..groups)
        .into_par_iter()
        .map(|gi| {
            let mut acc = vec![zero::<T>(); o * k];
            let mut first = true;
            let band = g.band_rows();
            let mut col = if g.pointwise() { Vec::new() } else { vec![zero::<T>(); k * band * g.ow] };
            for i in gi * g.n / groups..(gi + 1) * g.n / groups {
                let xn = &x[xb.0 + i * xb.1..][..g.image_in()];
                let dyn_ = &dy[db.0 + i * db.1..][..o * p];
                unsafe {
                    if g.pointwise() {
                        // dY (o × p) · Xᵀ (p × k), Xᵀ element (t, r) at xn[r·p + t].
                        mm(o, k, p, acc.as_mut_ptr(), k, !first, dyn_.as_ptr(), p, 1, xn.as_ptr(), 1, p, par);
                    } else {
                        for oh0 in (0..g.oh).step_by(band) {
                            let rows = band.min(g.oh - oh0);
                            let cols = rows * g.ow;
                            im2col(xn, g, oh0, rows, &mut col[..k * cols]);
                            mm(o, k, cols, acc.as_mut_ptr(), k, !first, dyn_[oh0 * g.ow..].as_ptr(), p, 1, col.as_ptr(), 1, cols, par);
                            first = false;
                        }
                    }
                }
                first = false;
            }
            acc
        })
        .collect();
    let mut it = partials.into_iter();
    let mut total = it.next().expect("at least one group");
    for part in it {
        for (t, v) in total.iter_mut().zip(part) {
            *t += v;
        }
    }
    total
}

fn dims_of(l: &Layout) -> &[usize] {
    l.dims()
}

fn weight_slice<'a, T: Elem>(s: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => bail!("conv2d: weight is not contiguous"),
    }
}

/// The convolution as a custom op on (input, weight).
struct Conv2dOp {
    pad: (usize, usize),
    stride: usize,
}

impl Conv2dOp {
    fn run<T: Elem>(&self, x: &CpuStorage, lx: &Layout, w: &CpuStorage, lw: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(dims_of(lx), dims_of(lw), self.pad, self.stride)?;
        let Some(xb) = image_blocks(lx) else { bail!("conv2d: input images are not contiguous") };
        let y = forward::<T>(x.as_slice::<T>()?, xb, weight_slice(w.as_slice::<T>()?, lw)?, &g);
        Ok((T::to_cpu_storage_owned(y), Shape::from(g.out_dims())))
    }

    fn backward<T: Elem>(&self, x: &Tensor, w: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor)> {
        let g = Geom::new(x.dims(), w.dims(), self.pad, self.stride)?;
        let grad = blocked(grad)?;
        let (dx, dw) = with_slice::<T, _>(x, |xs, lx| {
            with_slice::<T, _>(w, |ws, lw| {
                with_slice::<T, _>(&grad, |gs, lg| {
                    let xb = image_blocks(lx).expect("checked in the forward pass");
                    let db = image_blocks(lg).expect("made blocked above");
                    let ws = weight_slice(ws, lw)?;
                    let (dx, dw) = rayon::join(|| grad_input(gs, db, ws, &g), || grad_weight(xs, xb, gs, db, &g));
                    Ok((dx, dw))
                })
            })
        })?;
        let dev = x.device();
        Ok((Tensor::from_vec(dx, x.dims(), dev)?, Tensor::from_vec(dw, w.dims(), dev)?))
    }
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "fast-conv2d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => self.run::<f32>(s1, l1, s2, l2),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => self.run::<f64>(s1, l1, s2, l2),
            _ => bail!("fast conv2d: f32 or f64 input and weight of one dtype only"),
        }
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = match x.dtype() {
            candle_core::DType::F32 => self.backward::<f32>(x, w, grad)?,
            candle_core::DType::F64 => self.backward::<f64>(x, w, grad)?,
            d => bail!("fast conv2d backward: unsupported dtype {d:?}"),
        };
        Ok((Some(dx), Some(dw)))
    }
}

/// Convolution of `x` (N×C×H×W) with `weight` (O×C×KH×KW), zero padding `pad` = (rows, columns)
/// on each side, the same stride on both axes, no bias. The fast op on the CPU with f32/f64;
/// elsewhere (or with the fast ops off) stock candle, padding each axis separately.
pub fn conv2d(x: &Tensor, weight: &Tensor, pad: (usize, usize), stride: usize) -> Result<Tensor> {
    if super::usable(x) && x.dtype() == weight.dtype() {
        let x = blocked(x)?;
        let w = weight.contiguous()?;
        return x.apply_op2(&w, Conv2dOp { pad, stride });
    }
    stock_conv2d(x, weight, pad, stride)
}

/// Stock candle's convolution with per-axis padding (candle pads both axes by one amount).
pub fn stock_conv2d(x: &Tensor, weight: &Tensor, pad: (usize, usize), stride: usize) -> Result<Tensor> {
    let (ph, pw) = pad;
    if ph == pw {
        x.conv2d(weight, ph, stride, 1, 1)
    } else {
        x.pad_with_zeros(2, ph, ph)?.pad_with_zeros(3, pw, pw)?.conv2d(weight, 0, stride, 1, 1)
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn valid_range_matches_brute_force() {
        for out in 1..6 {
            for s in 1..3 {
                for k in 0..4 {
                    for pad in 0..4 {
                        for len in 1..8 {
                            let ok: Vec<usize> = (0..out).filter(|o| (0..len as isize).contains(&((o * s + k) as isize - pad as isize))).collect();
                            let (lo, hi) = valid_range(out, s, k, pad, len);
                            assert_eq!((lo..hi).collect::<Vec<_>>(), ok, "out {out} s {s} k {k} pad {pad} len {len}");
                        }
                    }
                }
            }
        }
    }
}
