//! The end of an Inception-ResNet unit, fused: `act(x + scale·(u + bias))`, with `u` the
//! projection's convolution output and `bias` its per-channel bias, forward and backward in one
//! pass each instead of four element-wise candle ops (bias, scale, add, ReLU).

use super::simd::{channel_lane_sum, wide_fn};
use super::{
    par_chunk_groups, par_map, vec_slice, with_slice, zero, Elem, SyncPtr, MIN_TASK_ENTRIES,
};
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};

/// The unit's pre-activation `x + s·(u + b)`: one expression for both forward passes and the
/// backward's ReLU mask, so that the fused paths agree bit for bit.
#[inline(always)]
fn pre_activation<T: Elem>(x: T, u: T, b: T, s: T) -> T {
    x + (u + b) * s
}

wide_fn! {
    /// `y = x + s·(u + b)`, then ReLU if `relu`, over the planes `p0..` that `ys` holds (`shape`
    /// = (C, H·W, p0); plane `p` takes channel `p mod C`'s bias).
    fn residual_planes<T: Elem>(ys: &mut [T], x: &[T], u: &[T], bias: &[T], shape: (usize, usize, usize), s: T, relu: bool) -> () {
        let (c, hw, p0) = shape;
        let z = zero::<T>();
        for (k, yp) in ys.chunks_exact_mut(hw).enumerate() {
            let p = p0 + k;
            let (xp, up, b) = (&x[p * hw..][..hw], &u[p * hw..][..hw], bias[p % c]);
            for ((o, &xv), &uv) in yp.iter_mut().zip(xp).zip(up) {
                let t = pre_activation(xv, uv, b, s);
                *o = if relu && t < z { z } else { t };
            }
        }
    }
}

wide_fn! {
    /// [`residual_planes`] with `ys` holding `u` on entry (the projection's output, overwritten
    /// with the unit's).
    pub(crate) fn residual_planes_in_place<T: Elem>(ys: &mut [T], x: &[T], bias: &[T], shape: (usize, usize, usize), s: T, relu: bool) -> () {
        let (c, hw, p0) = shape;
        let z = zero::<T>();
        for (k, yp) in ys.chunks_exact_mut(hw).enumerate() {
            let p = p0 + k;
            let (xp, b) = (&x[p * hw..][..hw], bias[p % c]);
            for (o, &xv) in yp.iter_mut().zip(xp) {
                let t = pre_activation(xv, *o, b, s);
                *o = if relu && t < z { z } else { t };
            }
        }
    }
}

wide_fn! {
    /// Over the planes `p0..` that `gm` holds (`shape` as [`residual_planes`]): `g` where the
    /// pre-activation `x + s·(u + b)` is ≥ 0, else 0, into `gm`, and `s` times that into `du`.
    #[allow(clippy::too_many_arguments)]
    fn relu_passed_planes<T: Elem>(gm: &mut [T], du: &mut [T], x: &[T], u: &[T], g: &[T], bias: &[T], shape: (usize, usize, usize), s: T) -> () {
        let (c, hw, p0) = shape;
        let z = zero::<T>();
        for (k, (mp, dp)) in gm.chunks_exact_mut(hw).zip(du.chunks_exact_mut(hw)).enumerate() {
            let p = p0 + k;
            let at = p * hw..(p + 1) * hw;
            let (xp, up, gp, b) = (&x[at.clone()], &u[at.clone()], &g[at], bias[p % c]);
            for ((((m, d), &xv), &uv), &gv) in mp.iter_mut().zip(dp.iter_mut()).zip(xp).zip(up).zip(gp) {
                *m = if pre_activation(xv, uv, b, s) >= z { gv } else { z };
                *d = *m * s;
            }
        }
    }
}

wide_fn! {
    /// `s·g` over a run of entries.
    fn scaled<T: Elem>(dp: &mut [T], gp: &[T], s: T) -> () {
        for (d, &v) in dp.iter_mut().zip(gp) {
            *d = v * s;
        }
    }
}

wide_fn! {
    /// Σ of channel `ch` of an N×C×(hw) tensor, in f64, image by image.
    fn channel_sum<T: Elem>(gs: &[T], n: usize, c: usize, ch: usize, hw: usize) -> f64 {
        channel_lane_sum(gs, (0, c * hw), n, ch, hw, |v| v)
    }
}

/// The fused op on (x, u, bias).
struct ScaledResidualOp {
    scale: f64,
    relu: bool,
}

/// The contiguous entries of a tensor's layout.
fn dense<'a, T: Elem>(s: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => bail!("scaled_residual: inputs must be contiguous"),
    }
}

impl ScaledResidualOp {
    fn run<T: Elem>(
        &self,
        x: &[T],
        lx: &Layout,
        u: &[T],
        lu: &Layout,
        bias: &[T],
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = lx.shape().dims4()?;
        if lu.dims() != lx.dims() || bias.len() != c {
            bail!(
                "scaled_residual: trunk {:?}, branch {:?}, bias {}",
                lx.dims(),
                lu.dims(),
                bias.len()
            )
        }
        let (x, u) = (dense(x, lx)?, dense(u, lu)?);
        let hw = h * w;
        let s = T::from_f64(self.scale);
        let mut y = super::uninit::<T>(n * c * hw);
        // Planes in groups: at the CIFAR-10 scale most have 1 to 49 entries.
        par_chunk_groups(&mut y, hw, MIN_TASK_ENTRIES, |p0, ys| {
            residual_planes(ys, x, u, bias, (c, hw, p0), s, self.relu)
        });
        Ok((T::to_cpu_storage_owned(y), Shape::from((n, c, h, w))))
    }

    /// (dx, du, dbias): with `g` the incoming gradient where the pre-activation is ≥ 0 (candle's
    /// ReLU passes the gradient at 0), dx = g, du = scale·g, dbias = scale·Σ g per channel.
    fn backward<T: Elem>(
        &self,
        x: &Tensor,
        u: &Tensor,
        bias: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (n, c, h, w) = x.dims4()?;
        let hw = h * w;
        let grad = grad.contiguous()?;
        let s = T::from_f64(self.scale);
        let elems = n * c * hw;
        let mut du = super::uninit::<T>(elems);
        let g = if !self.relu {
            with_slice::<T, _>(&grad, |gs, lg| {
                let gs = dense(gs, lg)?;
                par_chunk_groups(&mut du, hw, MIN_TASK_ENTRIES, |p0, ds| {
                    scaled(ds, &gs[p0 * hw..][..ds.len()], s)
                });
                Ok(())
            })?;
            grad
        } else {
            let masked = with_slice::<T, _>(x, |xs, lx| {
                with_slice::<T, _>(u, |us, lu| {
                    with_slice::<T, _>(bias, |bs, lb| {
                        with_slice::<T, _>(&grad, |gs, lg| {
                            let (xs, us, gs) = (dense(xs, lx)?, dense(us, lu)?, dense(gs, lg)?);
                            let bs = vec_slice(bs, lb)?;
                            let mut gm = super::uninit::<T>(elems);
                            let dus = SyncPtr(du.as_mut_ptr());
                            par_chunk_groups(&mut gm, hw, MIN_TASK_ENTRIES, |p0, ms| {
                                let dus = &dus;
                                // SAFETY: the same range of `du` as `ms` is of `gm`: the groups
                                // are disjoint, and `du` has `gm`'s length.
                                let ds = unsafe {
                                    std::slice::from_raw_parts_mut(dus.0.add(p0 * hw), ms.len())
                                };
                                relu_passed_planes(ms, ds, xs, us, gs, &bs, (c, hw, p0), s);
                            });
                            Ok(gm)
                        })
                    })
                })
            })?;
            Tensor::from_vec(masked, (n, c, h, w), x.device())?
        };
        let dbias = with_slice::<T, _>(&g, |gs, lg| {
            let gs = dense(gs, lg)?;
            Ok(par_map(c, |ch| {
                T::from_f64(channel_sum(gs, n, c, ch, hw) * self.scale)
            }))
        })?;
        let dev = x.device();
        Ok((
            g,
            Tensor::from_vec(du, (n, c, h, w), dev)?,
            Tensor::from_vec(dbias, c, dev)?,
        ))
    }
}

impl CustomOp3 for ScaledResidualOp {
    fn name(&self) -> &'static str {
        "fast-scaled-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _span = super::profile::span(super::profile::Kind::ResidualForward);
        match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(u), CpuStorage::F32(b)) => {
                self.run(x, l1, u, l2, &vec_slice(b, l3)?)
            }
            (CpuStorage::F64(x), CpuStorage::F64(u), CpuStorage::F64(b)) => {
                self.run(x, l1, u, l2, &vec_slice(b, l3)?)
            }
            _ => bail!("fast scaled_residual: f32 or f64 tensors of one dtype only"),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        u: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _span = super::profile::span(super::profile::Kind::ResidualBackward);
        let (dx, du, db) = match x.dtype() {
            DType::F32 => self.backward::<f32>(x, u, bias, grad)?,
            DType::F64 => self.backward::<f64>(x, u, bias, grad)?,
            d => bail!(
                "fast scaled_residual backward: unsupported dtype {}",
                d.as_str()
            ),
        };
        Ok((Some(dx), Some(du), Some(db)))
    }
}

/// `x + scale·(u + bias)`, then ReLU if `relu`, for N×C×H×W `x` and `u` and a length-C `bias`:
/// the fused op on the CPU with f32/f64, stock candle elsewhere.
pub fn scaled_residual(
    x: &Tensor,
    u: &Tensor,
    bias: &Tensor,
    scale: f64,
    relu: bool,
) -> Result<Tensor> {
    if !super::usable(x) || x.rank() != 4 || u.dtype() != x.dtype() || bias.dtype() != x.dtype() {
        return stock_scaled_residual(x, u, bias, scale, relu);
    }
    let (xc, uc) = (x.contiguous()?, u.contiguous()?);
    let (x, u) = (super::tape::same(x, xc)?, super::tape::same(u, uc)?);
    super::tape::apply3(&x, &u, bias, ScaledResidualOp { scale, relu })
}

/// Stock candle: the bias broadcast over the map, scaled, added to the trunk, then ReLU.
pub fn stock_scaled_residual(
    x: &Tensor,
    u: &Tensor,
    bias: &Tensor,
    scale: f64,
    relu: bool,
) -> Result<Tensor> {
    let up = u.broadcast_add(&bias.reshape((1, bias.elem_count(), 1, 1))?)?;
    let y = (x + (up * scale)?)?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}
