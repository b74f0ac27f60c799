//! BatchNorm followed by ReLU, fused, forward and backward, on N×C×H×W.

use super::simd::{channel_lane_sum, wide_fn, LANES};
use super::{blocked, image_blocks, par_chunks, par_map, vec_slice, with_slice, zero, Elem};
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, Var};
use candle_nn::BatchNorm;

/// Per-channel mean and biased variance over (N, H, W), accumulated in f64, channel-parallel.
fn batch_stats<T: Elem>(
    x: &[T],
    xb: (usize, usize),
    n: usize,
    c: usize,
    hw: usize,
) -> Vec<(f64, f64)> {
    par_map(c, |ch| channel_stats(x, xb, n, ch, hw))
}

wide_fn! {
    /// Mean and biased variance of channel `ch` over (N, H, W).
    fn channel_stats<T: Elem>(x: &[T], xb: (usize, usize), n: usize, ch: usize, hw: usize) -> (f64, f64) {
        let m = (n * hw) as f64;
        let mean = channel_lane_sum(x, xb, n, ch, hw, |v| v) / m;
        let sq = channel_lane_sum(x, xb, n, ch, hw, |v| (v - mean) * (v - mean));
        (mean, sq / m)
    }
}

/// `(Σ g, Σ g·(x − mean))` over one plane, `g` taken where the pre-activation `x·a + b` is ≥ 0
/// (candle's ReLU passes the gradient at 0), in f64 over `LANES` accumulators.
#[inline(always)]
fn masked_grad_sums<T: Elem>(xp: &[T], gp: &[T], a: T, b: T, mean: f64) -> (f64, f64) {
    if let Some(sums) = super::simd::masked_grad_sums_f32(xp, gp, a, b, mean) {
        return sums;
    }
    let z = zero::<T>();
    let (mut sg, mut sgx) = ([0f64; LANES], [0f64; LANES]);
    let mut xs = xp.chunks_exact(LANES);
    let mut gs = gp.chunks_exact(LANES);
    for (xc, gc) in (&mut xs).zip(&mut gs) {
        for l in 0..LANES {
            let (v, g) = (xc[l], gc[l]);
            let g = if v * a + b >= z { g.to_f64() } else { 0.0 };
            sg[l] += g;
            sgx[l] += g * (v.to_f64() - mean);
        }
    }
    let (mut tg, mut tgx) = (sg.iter().sum::<f64>(), sgx.iter().sum::<f64>());
    for (&v, &g) in xs.remainder().iter().zip(gs.remainder()) {
        if v * a + b >= z {
            tg += g.to_f64();
            tgx += g.to_f64() * (v.to_f64() - mean);
        }
    }
    (tg, tgx)
}

wide_fn! {
    /// [`masked_grad_sums`] of channel `ch` summed over the images, in image order.
    #[allow(clippy::too_many_arguments)]
    fn channel_grad_sums<T: Elem>(
        xs: &[T],
        xb: (usize, usize),
        gs: &[T],
        gb: (usize, usize),
        n: usize,
        ch: usize,
        hw: usize,
        ab: (T, T),
        mean: f64,
    ) -> (f64, f64) {
        let (mut sg, mut sgx) = (0f64, 0f64);
        for i in 0..n {
            let xp = &xs[xb.0 + i * xb.1 + ch * hw..][..hw];
            let gp = &gs[gb.0 + i * gb.1 + ch * hw..][..hw];
            let (g, gx) = masked_grad_sums(xp, gp, ab.0, ab.1, mean);
            sg += g;
            sgx += gx;
        }
        (sg, sgx)
    }
}

wide_fn! {
    /// `y = max(0, x·a + b)` over one plane.
    fn relu_affine_plane<T: Elem>(yp: &mut [T], xp: &[T], a: T, b: T) -> () {
        let z = zero::<T>();
        for (o, &v) in yp.iter_mut().zip(xp) {
            let t = v * a + b;
            *o = if t > z { t } else { z };
        }
    }
}

wide_fn! {
    /// The input gradient over one plane in training, `g·sc + x·k_x + k_0` where the
    /// pre-activation `x·a + b` is ≥ 0 (else `x·k_x + k_0`).
    fn train_grad_plane<T: Elem>(dp: &mut [T], xp: &[T], gp: &[T], ab: (T, T), k: (T, T, T)) -> () {
        let (z, (a, b), (sc, k_x, k_0)) = (zero::<T>(), ab, k);
        for ((d, &v), &gv) in dp.iter_mut().zip(xp).zip(gp) {
            let gv = if v * a + b >= z { gv } else { z };
            *d = gv * sc + v * k_x + k_0;
        }
    }
}

wide_fn! {
    /// The input gradient over one plane in evaluation: `g·sc` where `x·a + b` is ≥ 0.
    fn eval_grad_plane<T: Elem>(dp: &mut [T], xp: &[T], gp: &[T], ab: (T, T), sc: T) -> () {
        let (z, (a, b)) = (zero::<T>(), ab);
        for ((d, &v), &gv) in dp.iter_mut().zip(xp).zip(gp) {
            *d = if v * a + b >= z { gv * sc } else { z };
        }
    }
}

/// The fused op on (x, gamma, beta); `mean` and `invstd` are the statistics it normalises with
/// (the batch's in training, the running ones in evaluation).
struct BnReluOp {
    mean: Vec<f64>,
    invstd: Vec<f64>,
    train: bool,
}

impl BnReluOp {
    /// Per-channel scale and shift: y = max(0, x·a + b).
    fn affine(&self, gamma: &[f64], beta: &[f64]) -> Vec<(f64, f64)> {
        (0..gamma.len())
            .map(|c| {
                let a = gamma[c] * self.invstd[c];
                (a, beta[c] - self.mean[c] * a)
            })
            .collect()
    }

    fn run<T: Elem>(
        &self,
        x: &[T],
        lx: &Layout,
        gamma: &[T],
        beta: &[T],
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = lx.shape().dims4()?;
        let Some(xb) = image_blocks(lx) else {
            bail!("bn_relu: input images are not contiguous")
        };
        let hw = h * w;
        let g: Vec<f64> = gamma.iter().map(|v| v.to_f64()).collect();
        let b: Vec<f64> = beta.iter().map(|v| v.to_f64()).collect();
        let ab: Vec<(T, T)> = self
            .affine(&g, &b)
            .into_iter()
            .map(|(a, b)| (T::from_f64(a), T::from_f64(b)))
            .collect();
        let mut y = super::uninit::<T>(n * c * hw);
        par_chunks(&mut y, hw, |p, yp| {
            let (i, ch) = (p / c, p % c);
            let (a, b) = ab[ch];
            let xp = &x[xb.0 + i * xb.1 + ch * hw..][..hw];
            relu_affine_plane(yp, xp, a, b);
        });
        Ok((T::to_cpu_storage_owned(y), Shape::from((n, c, h, w))))
    }

    fn backward<T: Elem>(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (n, c, h, w) = x.dims4()?;
        let hw = h * w;
        let m = (n * hw) as f64;
        let grad = blocked(grad)?;
        let gamma_v: Vec<f64> = gamma.to_dtype(DType::F64)?.to_vec1()?;
        let beta_v: Vec<f64> = beta.to_dtype(DType::F64)?.to_vec1()?;
        let ab = self.affine(&gamma_v, &beta_v);
        let (dx, sums) = with_slice::<T, _>(x, |xs, lx| {
            with_slice::<T, _>(&grad, |gs, lg| {
                let xb = image_blocks(lx).expect("checked in the forward pass");
                let gb = image_blocks(lg).expect("made blocked above");
                let ab_t: Vec<(T, T)> = ab
                    .iter()
                    .map(|&(a, b)| (T::from_f64(a), T::from_f64(b)))
                    .collect();
                // Σ g and Σ g·x̂ per channel, g the gradient where the pre-activation is ≥ 0
                // (candle's ReLU passes the gradient at 0).
                let sums: Vec<(f64, f64)> = par_map(c, |ch| {
                    let (sg, sgx) =
                        channel_grad_sums(xs, xb, gs, gb, n, ch, hw, ab_t[ch], self.mean[ch]);
                    (sg, sgx * self.invstd[ch])
                });
                let mut dx = super::uninit::<T>(n * c * hw);
                par_chunks(&mut dx, hw, |p, dp| {
                    let (i, ch) = (p / c, p % c);
                    let xp = &xs[xb.0 + i * xb.1 + ch * hw..][..hw];
                    let gp = &gs[gb.0 + i * gb.1 + ch * hw..][..hw];
                    let scale = gamma_v[ch] * self.invstd[ch];
                    let sc = T::from_f64(scale);
                    if self.train {
                        // dx = γ·σ⁻¹·(g − Σg/M − x̂·Σg·x̂/M), with x̂ = (x − μ)·σ⁻¹
                        let (sg, sgx) = sums[ch];
                        let k_x = T::from_f64(-scale * self.invstd[ch] * sgx / m);
                        let k_0 = T::from_f64(
                            -scale * sg / m + scale * self.invstd[ch] * sgx / m * self.mean[ch],
                        );
                        train_grad_plane(dp, xp, gp, ab_t[ch], (sc, k_x, k_0));
                    } else {
                        eval_grad_plane(dp, xp, gp, ab_t[ch], sc);
                    }
                });
                Ok((dx, sums))
            })
        })?;
        let dev = x.device();
        let dgamma: Vec<T> = sums.iter().map(|s| T::from_f64(s.1)).collect();
        let dbeta: Vec<T> = sums.iter().map(|s| T::from_f64(s.0)).collect();
        Ok((
            Tensor::from_vec(dx, (n, c, h, w), dev)?,
            Tensor::from_vec(dgamma, c, dev)?,
            Tensor::from_vec(dbeta, c, dev)?,
        ))
    }
}

impl CustomOp3 for BnReluOp {
    fn name(&self) -> &'static str {
        "fast-bn-relu"
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
        let _span = super::profile::span(super::profile::Kind::BnReluForward);
        match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(g), CpuStorage::F32(b)) => {
                self.run(x, l1, &vec_slice(g, l2)?, &vec_slice(b, l3)?)
            }
            (CpuStorage::F64(x), CpuStorage::F64(g), CpuStorage::F64(b)) => {
                self.run(x, l1, &vec_slice(g, l2)?, &vec_slice(b, l3)?)
            }
            _ => bail!("fast bn_relu: f32 or f64 tensors of one dtype only"),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _span = super::profile::span(super::profile::Kind::BnReluBackward);
        let (dx, dg, db) = match x.dtype() {
            DType::F32 => self.backward::<f32>(x, gamma, beta, grad)?,
            DType::F64 => self.backward::<f64>(x, gamma, beta, grad)?,
            d => bail!("fast bn_relu backward: unsupported dtype {d:?}"),
        };
        Ok((Some(dx), Some(dg), Some(db)))
    }
}

/// `relu(bn.forward_t(x, train))` for an N×C×H×W `x`. On the fast path (CPU, f32/f64, affine
/// BatchNorm) one fused op; the running statistics are updated as candle's `BatchNorm` does
/// (PyTorch momentum, unbiased variance in the running update, biased in the normalisation),
/// in the same variables. Elsewhere stock candle.
pub fn bn_relu(x: &Tensor, bn: &BatchNorm, train: bool) -> Result<Tensor> {
    let Some((gamma, beta)) = bn.weight_and_bias() else {
        return stock_bn_relu(x, bn, train);
    };
    if !super::usable(x) || x.rank() != 4 || gamma.dtype() != x.dtype() {
        return stock_bn_relu(x, bn, train);
    }
    let x = blocked(x)?;
    let (n, c, h, w) = x.dims4()?;
    let eps = bn.eps();
    let op = if train {
        let stats = match x.dtype() {
            DType::F32 => with_slice::<f32, _>(&x, |s, l| {
                Ok(batch_stats(
                    s,
                    image_blocks(l).expect("blocked"),
                    n,
                    c,
                    h * w,
                ))
            })?,
            _ => with_slice::<f64, _>(&x, |s, l| {
                Ok(batch_stats(
                    s,
                    image_blocks(l).expect("blocked"),
                    n,
                    c,
                    h * w,
                ))
            })?,
        };
        // The running update, written as candle's BatchNorm::forward_train writes it.
        let momentum = bn.momentum();
        let batch = (n * h * w) as f64;
        let dev = x.device();
        let mean = Tensor::from_vec(stats.iter().map(|s| s.0).collect::<Vec<_>>(), c, dev)?
            .to_dtype(x.dtype())?;
        let var = Tensor::from_vec(stats.iter().map(|s| s.1).collect::<Vec<_>>(), c, dev)?
            .to_dtype(x.dtype())?;
        let rm = bn.running_mean();
        let rv = bn.running_var();
        let new_mean = ((rm.detach() * (1.0 - momentum))? + (mean * momentum)?)?;
        let new_var =
            ((rv.detach() * (1.0 - momentum))? + (var * (momentum * batch / (batch - 1.0)))?)?;
        Var::from_tensor(rm)?.set(&new_mean)?;
        Var::from_tensor(rv)?.set(&new_var)?;
        BnReluOp {
            mean: stats.iter().map(|s| s.0).collect(),
            invstd: stats.iter().map(|s| 1.0 / (s.1 + eps).sqrt()).collect(),
            train: true,
        }
    } else {
        let mean: Vec<f64> = bn.running_mean().to_dtype(DType::F64)?.to_vec1()?;
        let var: Vec<f64> = bn.running_var().to_dtype(DType::F64)?.to_vec1()?;
        BnReluOp {
            mean,
            invstd: var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect(),
            train: false,
        }
    };
    x.apply_op3(gamma, beta, op)
}

/// Stock candle: `BatchNorm::forward_t` then ReLU.
pub fn stock_bn_relu(x: &Tensor, bn: &BatchNorm, train: bool) -> Result<Tensor> {
    use candle_nn::ModuleT;
    bn.forward_t(x, train)?.relu()
}
