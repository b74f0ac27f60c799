//! Pooling by direct loops over each plane, with backward passes.

use super::simd::wide_fn;
use super::{
    blocked, image_blocks, par_chunk_groups, plane, with_slice, zero, Elem, MIN_TASK_ENTRIES,
};
use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

/// The planes of an N×C×H×W tensor whose images are contiguous blocks (a channel slice of a
/// concatenation's gradient is: the pools read it where it lies instead of copying it).
struct Planes<'a, T> {
    s: &'a [T],
    /// Offset of the first image and the stride between images.
    at: (usize, usize),
    c: usize,
    hw: usize,
}

impl<'a, T> Planes<'a, T> {
    fn of(s: &'a [T], l: &Layout) -> Result<Self> {
        let (_, c, h, w) = l.shape().dims4()?;
        match image_blocks(l) {
            Some(at) => Ok(Self {
                s,
                at,
                c,
                hw: h * w,
            }),
            None => bail!("pooling: the images of an operand are not contiguous"),
        }
    }

    /// Plane `p` (image `p / C`, channel `p % C`).
    #[inline(always)]
    fn get(&self, p: usize) -> &'a [T] {
        plane(self.s, self.at, self.c, self.hw, p)
    }
}

/// k×k max pooling with stride s, no padding.
struct MaxPoolOp {
    k: usize,
    s: usize,
}

impl MaxPoolOp {
    fn out(&self, len: usize) -> usize {
        (len - self.k) / self.s + 1
    }

    /// Index in the plane of the first maximum of the window at (oy, ox).
    #[inline]
    fn argmax<T: Elem>(&self, xp: &[T], w: usize, oy: usize, ox: usize) -> usize {
        let (y0, x0) = (oy * self.s, ox * self.s);
        let mut best = y0 * w + x0;
        let mut bv = xp[best];
        for dy in 0..self.k {
            let row = (y0 + dy) * w;
            for dx in 0..self.k {
                let v = xp[row + x0 + dx];
                if v > bv {
                    bv = v;
                    best = row + x0 + dx;
                }
            }
        }
        best
    }

    fn run<T: Elem>(&self, x: &[T], l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        if h < self.k || w < self.k {
            bail!(
                "pooling window {0}x{0} does not fit a {h}x{w} input",
                self.k
            )
        }
        let x = Planes::of(x, l)?;
        let (oh, ow) = (self.out(h), self.out(w));
        let mut y = super::uninit::<T>(n * c * oh * ow);
        // Down the window's rows first, for a whole row of columns at a time (vectorised), then
        // across the columns of each window: 2 of the 3×3 window's 8 comparisons per output
        // are left to scalar code (one pass of 9 scalar ones made Inception-ResNet-v2's five
        // pools 24–26 ms of an evaluation pass at 299 px, batch 8).
        par_chunk_groups(&mut y, oh * ow, MIN_TASK_ENTRIES, |p0, ys| {
            let mut column = vec![zero::<T>(); w];
            for (k, yp) in ys.chunks_exact_mut(oh * ow).enumerate() {
                let xp = x.get(p0 + k);
                for (oy, out) in yp.chunks_exact_mut(ow).enumerate() {
                    column_max(&mut column, &xp[oy * self.s * w..], w, self.k);
                    for (ox, o) in out.iter_mut().enumerate() {
                        let window = &column[ox * self.s..][..self.k];
                        *o = window[1..].iter().fold(window[0], |b, &v| greater(v, b));
                    }
                }
            }
        });
        Ok((T::to_cpu_storage_owned(y), Shape::from((n, c, oh, ow))))
    }

    fn backward<T: Elem>(&self, x: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (oh, ow) = (self.out(h), self.out(w));
        let grad = blocked(grad)?;
        let dx = with_slice::<T, _>(x, |xs, lx| {
            with_slice::<T, _>(&grad, |gs, lg| {
                let (xs, gs) = (Planes::of(xs, lx)?, Planes::of(gs, lg)?);
                // Zeroed by the tasks that sum into it.
                let mut dx = super::uninit::<T>(n * c * h * w);
                par_chunk_groups(&mut dx, h * w, MIN_TASK_ENTRIES, |p0, ds| {
                    ds.fill(zero());
                    for (k, dp) in ds.chunks_exact_mut(h * w).enumerate() {
                        let (xp, gp) = (xs.get(p0 + k), gs.get(p0 + k));
                        for oy in 0..oh {
                            for ox in 0..ow {
                                dp[self.argmax(xp, w, oy, ox)] += gp[oy * ow + ox];
                            }
                        }
                    }
                });
                Ok(dx)
            })
        })?;
        Tensor::from_vec(dx, (n, c, h, w), x.device())
    }
}

impl CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "fast-max-pool"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let _span = super::profile::span(super::profile::Kind::PoolForward);
        match s {
            CpuStorage::F32(x) => self.run(x, l),
            CpuStorage::F64(x) => self.run(x, l),
            _ => bail!("fast max pool: f32 or f64 only"),
        }
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let _span = super::profile::span(super::profile::Kind::PoolBackward);
        Ok(Some(match x.dtype() {
            DType::F32 => self.backward::<f32>(x, grad)?,
            DType::F64 => self.backward::<f64>(x, grad)?,
            d => bail!("fast max pool backward: unsupported dtype {}", d.as_str()),
        }))
    }
}

/// Stride-1 average pooling over a (2p+1)² window with p zeros of padding on each side.
struct AvgPoolOp {
    p: usize,
    include_pad: bool,
}

/// `v` where it is greater than `b`, else `b`: a window's maximum taken in order keeps its first
/// entry when that is NaN and skips later NaNs.
#[inline(always)]
fn greater<T: Elem>(v: T, b: T) -> T {
    if v > b {
        v
    } else {
        b
    }
}

wide_fn! {
    /// `column[j]`: the maximum ([`greater`], rows in order) of entry `j` of the `rows` rows of
    /// `w` entries from the start of `x`.
    fn column_max<T: Elem>(column: &mut [T], x: &[T], w: usize, rows: usize) -> () {
        column.copy_from_slice(&x[..w]);
        for dy in 1..rows {
            for (c, &v) in column.iter_mut().zip(&x[dy * w..][..w]) {
                *c = greater(v, *c);
            }
        }
    }
}

/// Number of in-bounds cells of a window centred at `i` (±p) along an axis of length `len`.
#[inline]
fn valid(i: usize, p: usize, len: usize) -> usize {
    (i + p).min(len - 1) + 1 - i.saturating_sub(p)
}

/// out[i][j] = Σ of `src` over the in-bounds cells of the (2p+1)² window at (i, j): the rows of
/// the window summed into `rowbuf`, then 2p+1 shifted adds of it (contiguous, vectorised loops).
fn box_sum<T: Elem>(src: &[T], h: usize, w: usize, p: usize, rowbuf: &mut [T], out: &mut [T]) {
    for i in 0..h {
        let (r0, r1) = (i.saturating_sub(p), (i + p).min(h - 1));
        rowbuf.copy_from_slice(&src[r0 * w..(r0 + 1) * w]);
        for r in r0 + 1..=r1 {
            for (a, &v) in rowbuf.iter_mut().zip(&src[r * w..(r + 1) * w]) {
                *a += v;
            }
        }
        let o = &mut out[i * w..(i + 1) * w];
        o.copy_from_slice(rowbuf);
        for d in 1..=p.min(w - 1) {
            // o[j] += rowbuf[j + d] and o[j + d] += rowbuf[j], for every j where both exist.
            for (a, &v) in o[..w - d].iter_mut().zip(&rowbuf[d..]) {
                *a += v;
            }
            for (a, &v) in o[d..].iter_mut().zip(&rowbuf[..w - d]) {
                *a += v;
            }
        }
    }
}

impl AvgPoolOp {
    /// The divisor of every output cell as a factor, one plane: 1/(2p+1)² with `include_pad`,
    /// else 1/(number of in-bounds cells of its window).
    fn weights<T: Elem>(&self, h: usize, w: usize) -> Vec<T> {
        let k = (2 * self.p + 1) as f64;
        let mut plane = Vec::with_capacity(h * w);
        for i in 0..h {
            for j in 0..w {
                plane.push(T::from_f64(if self.include_pad {
                    1.0 / (k * k)
                } else {
                    1.0 / (valid(i, self.p, h) * valid(j, self.p, w)) as f64
                }));
            }
        }
        plane
    }

    fn run<T: Elem>(&self, x: &[T], l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let x = Planes::of(x, l)?;
        let weights = self.weights::<T>(h, w);
        let y = scaled_box_sums(&x, n * c, (h, w), self.p, &weights, Scale::AfterSum);
        Ok((T::to_cpu_storage_owned(y), Shape::from((n, c, h, w))))
    }

    fn backward<T: Elem>(&self, x: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let grad = blocked(grad)?;
        let weights = self.weights::<T>(h, w);
        let dx = with_slice::<T, _>(&grad, |gs, lg| {
            let gs = Planes::of(gs, lg)?;
            Ok(scaled_box_sums(
                &gs,
                n * c,
                (h, w),
                self.p,
                &weights,
                Scale::BeforeSum,
            ))
        })?;
        Tensor::from_vec(dx, (n, c, h, w), x.device())
    }
}

impl CustomOp1 for AvgPoolOp {
    fn name(&self) -> &'static str {
        "fast-avg-pool"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let _span = super::profile::span(super::profile::Kind::PoolForward);
        match s {
            CpuStorage::F32(x) => self.run(x, l),
            CpuStorage::F64(x) => self.run(x, l),
            _ => bail!("fast avg pool: f32 or f64 only"),
        }
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let _span = super::profile::span(super::profile::Kind::PoolBackward);
        Ok(Some(match x.dtype() {
            DType::F32 => self.backward::<f32>(x, grad)?,
            DType::F64 => self.backward::<f64>(x, grad)?,
            d => bail!("fast avg pool backward: unsupported dtype {}", d.as_str()),
        }))
    }
}

/// Where the avg pool's divisors go: after the box sum (forward), or before it (backward, whose
/// window is the same: `dx = box_sum(dy / count)`).
#[derive(Clone, Copy)]
enum Scale {
    AfterSum,
    BeforeSum,
}

/// The box sums of the `planes` planes of `src` scaled by `weights` (one plane of factors), a
/// plane each, in plane order.
fn scaled_box_sums<T: Elem>(
    src: &Planes<T>,
    planes: usize,
    (h, w): (usize, usize),
    p: usize,
    weights: &[T],
    order: Scale,
) -> Vec<T> {
    let hw = h * w;
    let mut out = super::uninit::<T>(planes * hw);
    if hw == 1 {
        // A 1×1 map (Inception-C at the CIFAR-10 scale): each window holds its one cell, and
        // the box sum is the value itself in either order.
        let f = weights[0];
        par_chunk_groups(&mut out, 1, MIN_TASK_ENTRIES, |p0, os| {
            for (k, o) in os.iter_mut().enumerate() {
                *o = src.get(p0 + k)[0] * f;
            }
        });
        return out;
    }
    par_chunk_groups(&mut out, hw, MIN_TASK_ENTRIES, |p0, os| {
        let (mut row, mut scaled) = (vec![zero::<T>(); w], Vec::new());
        for (k, o) in os.chunks_exact_mut(hw).enumerate() {
            let plane = src.get(p0 + k);
            match order {
                Scale::AfterSum => {
                    box_sum(plane, h, w, p, &mut row, o);
                    for (v, &f) in o.iter_mut().zip(weights) {
                        *v *= f;
                    }
                }
                Scale::BeforeSum => {
                    scaled.clear();
                    scaled.extend(plane.iter().zip(weights).map(|(&g, &f)| g * f));
                    box_sum(&scaled, h, w, p, &mut row, o);
                }
            }
        }
    });
    out
}

/// k×k max pooling with stride `stride` and no padding, on a CPU f32/f64 N×C×H×W tensor.
/// Callers check [`super::usable`] first.
pub fn max_pool(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    let xc = super::tape::same(x, blocked(x)?)?;
    super::tape::apply1(
        &xc,
        MaxPoolOp {
            k: kernel,
            s: stride,
        },
    )
}

/// Stride-1 (2·pad+1)² average pooling with `pad` zeros on each side (SAME size), dividing by the
/// whole window (`include_pad`) or by its in-bounds cells, on a CPU f32/f64 N×C×H×W tensor.
pub fn avg_pool_same(x: &Tensor, pad: usize, include_pad: bool) -> Result<Tensor> {
    let xc = super::tape::same(x, blocked(x)?)?;
    super::tape::apply1(
        &xc,
        AvgPoolOp {
            p: pad,
            include_pad,
        },
    )
}
