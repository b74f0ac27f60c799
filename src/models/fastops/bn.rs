//! BatchNorm followed by ReLU, fused, forward and backward, on N×C×H×W (and in training on a
//! convolution's output kept as channel rows, C×N×H×W: see [`Arrangement`]).

use super::simd::{channel_lane_sum, masked_channel_sums, wide_fn};
use super::{
    blocked, f64_entries, image_blocks, par_chunk_groups, par_map, plane, vec_slice, with_slice,
    zero, Elem, MIN_TASK_ENTRIES,
};
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, Var};
use candle_nn::BatchNorm;

/// How the BatchNorm's input lies: as N×C×H×W images (`Images`, the offset of the first and
/// the stride between them), or as channel rows, C×N×H×W (`Rows`: a convolution's whole-batch
/// product writes its output that way, and the fused node keeps it so in training).
#[derive(Clone, Copy)]
pub(super) enum Arrangement {
    Images((usize, usize)),
    Rows,
}

impl Arrangement {
    /// For channel `ch`: the `(offset, image stride)` that puts its plane of image `i` at
    /// `offset + i·stride + ch·hw`, where the kernels below look for it.
    #[inline]
    fn blocks(self, ch: usize, n: usize, hw: usize) -> (usize, usize) {
        match self {
            Arrangement::Images(xb) => xb,
            // ch·N·hw + i·hw = (ch·(N − 1)·hw) + i·hw + ch·hw
            Arrangement::Rows => (ch * n.saturating_sub(1) * hw, hw),
        }
    }
}

/// Per-channel mean and biased variance over (N, H, W), accumulated in f64, channel-parallel
/// (the same sums in the same order for either layout).
fn batch_stats<T: Elem>(
    x: &[T],
    at: Arrangement,
    n: usize,
    c: usize,
    hw: usize,
) -> Vec<(f64, f64)> {
    par_map(c, |ch| channel_stats(x, at.blocks(ch, n, hw), n, ch, hw))
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

wide_fn! {
    /// BatchNorm's backward sums of channel `ch` ([`masked_channel_sums`]).
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
        masked_channel_sums(xs, xb, gs, gb, n, (ch, hw), ab, mean)
    }
}

/// `max(0, v·a + b)`, the product rounded before the sum: the one formula of the forward pass,
/// which the convolution's epilogue in evaluation shares to give this op's values bit for bit.
#[inline(always)]
fn relu_affine<T: Elem>(v: T, (a, b): (T, T)) -> T {
    let (t, z) = (v * a + b, zero::<T>());
    if t > z {
        t
    } else {
        z
    }
}

wide_fn! {
    /// `y = max(0, x·a + b)` over the planes `p0..` that `ys` holds, `(a, b)` of each channel.
    fn relu_affine_planes<T: Elem>(ys: &mut [T], x: &[T], xb: (usize, usize), shape: (usize, usize), p0: usize, ab: &[(T, T)]) -> () {
        let (c, hw) = shape;
        for (k, yp) in ys.chunks_exact_mut(hw).enumerate() {
            let p = p0 + k;
            for (o, &v) in yp.iter_mut().zip(plane(x, xb, c, hw, p)) {
                *o = relu_affine(v, ab[p % c]);
            }
        }
    }
}

wide_fn! {
    /// `y = max(0, x·a + b)`, over outputs of one channel.
    pub(super) fn relu_affine_copy<T: Elem>(ys: &mut [T], xs: &[T], ab: (T, T)) -> () {
        for (y, &x) in ys.iter_mut().zip(xs) {
            *y = relu_affine(x, ab);
        }
    }
}

wide_fn! {
    /// `y = max(0, y·a + b)` in place, over outputs of one channel.
    pub(super) fn relu_affine_in_place<T: Elem>(ys: &mut [T], ab: (T, T)) -> () {
        for y in ys.iter_mut() {
            *y = relu_affine(*y, ab);
        }
    }
}

/// Per channel, what the input gradient of one plane needs: the pre-activation's `(a, b)`, and
/// `dx = g·sc + x·k_x + k_0` where `x·a + b` is ≥ 0, else `x·k_x + k_0` (`k_x = k_0 = 0` in
/// evaluation).
#[derive(Clone, Copy)]
struct GradCoef<T> {
    a: T,
    b: T,
    sc: T,
    k_x: T,
    k_0: T,
}

wide_fn! {
    /// The input gradient over the planes `p0..` that `ds` holds.
    #[allow(clippy::too_many_arguments)]
    fn grad_planes<T: Elem>(ds: &mut [T], x: &[T], xb: (usize, usize), g: &[T], gb: (usize, usize), shape: (usize, usize), p0: usize, coef: &[GradCoef<T>], train: bool) -> () {
        let (z, (c, hw)) = (zero::<T>(), shape);
        for (k, dp) in ds.chunks_exact_mut(hw).enumerate() {
            let p = p0 + k;
            let k = coef[p % c];
            let (xp, gp) = (plane(x, xb, c, hw, p), plane(g, gb, c, hw, p));
            if train {
                for ((d, &v), &gv) in dp.iter_mut().zip(xp).zip(gp) {
                    let gv = if v * k.a + k.b >= z { gv } else { z };
                    *d = gv * k.sc + v * k.k_x + k.k_0;
                }
            } else {
                for ((d, &v), &gv) in dp.iter_mut().zip(xp).zip(gp) {
                    *d = if v * k.a + k.b >= z { gv * k.sc } else { z };
                }
            }
        }
    }
}

/// The fused op on (x, gamma, beta); `mean` and `invstd` are the statistics it normalises with
/// (the batch's in training, the running ones in evaluation).
pub(super) struct BnReluOp {
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

    /// [`Self::affine`] of γ and β in the tensors' type, computed in f64 and rounded once.
    pub(super) fn affine_of<T: Elem>(&self, gamma: &[T], beta: &[T]) -> Vec<(T, T)> {
        let f64s = |v: &[T]| v.iter().map(|v| v.to_f64()).collect::<Vec<f64>>();
        self.affine(&f64s(gamma), &f64s(beta))
            .into_iter()
            .map(|(a, b)| (T::from_f64(a), T::from_f64(b)))
            .collect()
    }

    pub(super) fn run<T: Elem>(
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
        let ab = self.affine_of(gamma, beta);
        let mut y = super::uninit::<T>(n * c * hw);
        par_chunk_groups(&mut y, hw, MIN_TASK_ENTRIES, |p0, ys| {
            relu_affine_planes(ys, x, xb, (c, hw), p0, &ab)
        });
        Ok((T::to_cpu_storage_owned(y), Shape::from((n, c, h, w))))
    }

    pub(super) fn backward<T: Elem>(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (n, c, h, w) = x.dims4()?;
        let xb = image_blocks(x.layout()).expect("checked in the forward pass");
        let (dx, dgamma, dbeta) =
            self.gradients::<T>(x, Arrangement::Images(xb), gamma, beta, grad)?;
        Ok((
            Tensor::from_vec(dx, (n, c, h, w), x.device())?,
            dgamma,
            dbeta,
        ))
    }

    /// The gradients for the input kept as channel rows (C×N×H×W, see [`Arrangement`]), the input
    /// gradient in that layout too (as the convolution's backward pass takes it), and the
    /// output's gradient `grad` as N×C×H×W images.
    pub(super) fn backward_rows<T: Elem>(
        &self,
        rows: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        grad: &Tensor,
    ) -> Result<(Vec<T>, Tensor, Tensor)> {
        self.gradients::<T>(rows, Arrangement::Rows, gamma, beta, grad)
    }

    /// (input gradient in the input's layout, dγ, dβ); `x` has the dims N×C×H×W for images and
    /// C×N×H×W for rows.
    fn gradients<T: Elem>(
        &self,
        x: &Tensor,
        at: Arrangement,
        gamma: &Tensor,
        beta: &Tensor,
        grad: &Tensor,
    ) -> Result<(Vec<T>, Tensor, Tensor)> {
        let (n, c, h, w) = grad.dims4()?;
        let hw = h * w;
        let m = (n * hw) as f64;
        let grad = blocked(grad)?;
        let (gamma_v, beta_v) = (f64_entries(gamma)?, f64_entries(beta)?);
        let ab = self.affine(&gamma_v, &beta_v);
        let (dx, sums) = with_slice::<T, _>(x, |xs, _| {
            with_slice::<T, _>(&grad, |gs, lg| {
                let gb = image_blocks(lg).expect("made blocked above");
                let ab_t: Vec<(T, T)> = ab
                    .iter()
                    .map(|&(a, b)| (T::from_f64(a), T::from_f64(b)))
                    .collect();
                // Σ g and Σ g·x̂ per channel, g the gradient where the pre-activation is ≥ 0
                // (candle's ReLU passes the gradient at 0).
                let sums: Vec<(f64, f64)> = par_map(c, |ch| {
                    let xb = at.blocks(ch, n, hw);
                    let (sg, sgx) =
                        channel_grad_sums(xs, xb, gs, gb, n, ch, hw, ab_t[ch], self.mean[ch]);
                    (sg, sgx * self.invstd[ch])
                });
                let coef: Vec<GradCoef<T>> = (0..c)
                    .map(|ch| {
                        let scale = gamma_v[ch] * self.invstd[ch];
                        let (a, b) = ab_t[ch];
                        let (k_x, k_0) = if self.train {
                            // dx = γ·σ⁻¹·(g − Σg/M − x̂·Σg·x̂/M), with x̂ = (x − μ)·σ⁻¹
                            let (sg, sgx) = sums[ch];
                            (
                                -scale * self.invstd[ch] * sgx / m,
                                -scale * sg / m + scale * self.invstd[ch] * sgx / m * self.mean[ch],
                            )
                        } else {
                            (0.0, 0.0)
                        };
                        GradCoef {
                            a,
                            b,
                            sc: T::from_f64(scale),
                            k_x: T::from_f64(k_x),
                            k_0: T::from_f64(k_0),
                        }
                    })
                    .collect();
                let mut dx = super::uninit::<T>(n * c * hw);
                match at {
                    Arrangement::Images(xb) => {
                        par_chunk_groups(&mut dx, hw, MIN_TASK_ENTRIES, |p0, ds| {
                            grad_planes(ds, xs, xb, gs, gb, (c, hw), p0, &coef, self.train)
                        })
                    }
                    // Channel by channel, each as a one-channel tensor of N planes: its row of
                    // the input and of the gradient written, its planes of `grad`.
                    Arrangement::Rows => {
                        par_chunk_groups(&mut dx, n * hw, MIN_TASK_ENTRIES, |c0, ds| {
                            for (k, row) in ds.chunks_exact_mut(n * hw).enumerate() {
                                let ch = c0 + k;
                                let (xr, gr) = ((ch * n * hw, hw), (gb.0 + ch * hw, gb.1));
                                let one = &coef[ch..ch + 1];
                                grad_planes(row, xs, xr, gs, gr, (1, hw), 0, one, self.train)
                            }
                        })
                    }
                }
                Ok((dx, sums))
            })
        })?;
        let dev = x.device();
        let dgamma: Vec<T> = sums.iter().map(|s| T::from_f64(s.1)).collect();
        let dbeta: Vec<T> = sums.iter().map(|s| T::from_f64(s.0)).collect();
        Ok((
            dx,
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
            d => bail!("fast bn_relu backward: unsupported dtype {}", d.as_str()),
        };
        Ok((Some(dx), Some(dg), Some(db)))
    }
}

/// `relu(bn.forward_t(x, train))` for an N×C×H×W `x`. On the fast path (CPU, f32/f64, affine
/// BatchNorm) one fused op; the running statistics are updated as candle's `BatchNorm` does
/// (PyTorch momentum, unbiased variance in the running update, biased in the normalisation),
/// in the same variables. Elsewhere stock candle.
pub fn bn_relu(x: &Tensor, bn: &BatchNorm, train: bool) -> Result<Tensor> {
    if !applies(x, bn) {
        return stock_bn_relu(x, bn, train);
    }
    let p = prepare(x, bn, train)?;
    super::tape::apply3(&p.x, &p.gamma, &p.beta, p.op)
}

/// Whether [`bn_relu`] runs the fused op on `x`.
pub(super) fn applies(x: &Tensor, bn: &BatchNorm) -> bool {
    match bn.weight_and_bias() {
        Some((gamma, _)) => super::usable(x) && x.rank() == 4 && gamma.dtype() == x.dtype(),
        None => false,
    }
}

/// The fused op's input (`x` with contiguous images), parameters and op, the running
/// statistics updated when training. Only where [`applies`].
pub(super) struct Prepared {
    pub x: Tensor,
    pub gamma: Tensor,
    pub beta: Tensor,
    pub op: BnReluOp,
}

pub(super) fn prepare(x: &Tensor, bn: &BatchNorm, train: bool) -> Result<Prepared> {
    let (gamma, beta) = bn.weight_and_bias().expect("checked by applies");
    let x = super::tape::same(x, blocked(x)?)?;
    let (n, c, h, w) = x.dims4()?;
    let op = if train {
        let xb = image_blocks(x.layout()).expect("blocked above");
        training_op(&x, Arrangement::Images(xb), (n, c, h * w), bn)?
    } else {
        evaluation_op(bn)?
    };
    Ok(Prepared {
        x,
        gamma: gamma.clone(),
        beta: beta.clone(),
        op,
    })
}

/// The op in training for a convolution's output kept as channel rows (C×N×H×W, see
/// [`Arrangement`]), the running statistics updated: the same statistics, bit for bit, as
/// [`prepare`] finds in the same values as images.
pub(super) fn prepare_rows(rows: &Tensor, bn: &BatchNorm) -> Result<BnReluOp> {
    let (c, n, h, w) = rows.dims4()?;
    if !rows.is_contiguous() {
        bail!("bn_relu: channel rows must be contiguous")
    }
    training_op(rows, Arrangement::Rows, (n, c, h * w), bn)
}

/// The batch statistics of `x` (laid out as `at` says), the running statistics updated with
/// them, and the op that normalises with them.
fn training_op(
    x: &Tensor,
    at: Arrangement,
    (n, c, hw): (usize, usize, usize),
    bn: &BatchNorm,
) -> Result<BnReluOp> {
    let stats = match x.dtype() {
        DType::F32 => with_slice::<f32, _>(x, |s, _| Ok(batch_stats(s, at, n, c, hw)))?,
        _ => with_slice::<f64, _>(x, |s, _| Ok(batch_stats(s, at, n, c, hw)))?,
    };
    // The running update, written as candle's BatchNorm::forward_train writes it.
    let momentum = bn.momentum();
    let batch = (n * hw) as f64;
    let (rm, rv) = (bn.running_mean(), bn.running_var());
    if [rm, rv]
        .iter()
        .all(|r| super::usable(r) && r.is_contiguous())
    {
        rm.inplace_op1(&RunningUpdate {
            values: stats.iter().map(|s| s.0).collect(),
            keep: 1.0 - momentum,
            take: momentum,
        })?;
        rv.inplace_op1(&RunningUpdate {
            values: stats.iter().map(|s| s.1).collect(),
            keep: 1.0 - momentum,
            take: momentum * batch / (batch - 1.0),
        })?;
    } else {
        running_update(bn, &stats, x.dtype(), momentum * batch / (batch - 1.0))?;
    }
    let eps = bn.eps();
    Ok(BnReluOp {
        mean: stats.iter().map(|s| s.0).collect(),
        invstd: stats.iter().map(|s| 1.0 / (s.1 + eps).sqrt()).collect(),
        train: true,
    })
}

/// The fused op in evaluation: normalised with the running statistics. Only where [`applies`].
pub(super) fn evaluation_op(bn: &BatchNorm) -> Result<BnReluOp> {
    let (mean, var) = (
        f64_entries(bn.running_mean())?,
        f64_entries(bn.running_var())?,
    );
    Ok(BnReluOp {
        mean,
        invstd: var.iter().map(|v| 1.0 / (v + bn.eps()).sqrt()).collect(),
        train: false,
    })
}

/// The running statistics' update in candle's element-wise ops (running statistics that are
/// not contiguous CPU tensors).
fn running_update(bn: &BatchNorm, stats: &[(f64, f64)], dtype: DType, var_take: f64) -> Result<()> {
    let momentum = bn.momentum();
    let c = stats.len();
    let (rm, rv) = (bn.running_mean(), bn.running_var());
    let dev = rm.device();
    let mean =
        Tensor::from_vec(stats.iter().map(|s| s.0).collect::<Vec<_>>(), c, dev)?.to_dtype(dtype)?;
    let var =
        Tensor::from_vec(stats.iter().map(|s| s.1).collect::<Vec<_>>(), c, dev)?.to_dtype(dtype)?;
    let new_mean = ((rm.detach() * (1.0 - momentum))? + (mean * momentum)?)?;
    let new_var = ((rv.detach() * (1.0 - momentum))? + (var * var_take)?)?;
    Var::from_tensor(rm)?.set(&new_mean)?;
    Var::from_tensor(rv)?.set(&new_var)
}

/// A running statistic's update in place: `r ← r·keep + v·take`, each product written as
/// candle's `tensor * scalar` computes it (`x·k + 0` in the tensor's type) and the value `v`
/// rounded to that type first, so the result is the element-wise ops' bit for bit, without
/// their half-dozen tensors per BatchNorm and step.
struct RunningUpdate {
    values: Vec<f64>,
    keep: f64,
    take: f64,
}

impl RunningUpdate {
    fn apply<T: Elem>(&self, r: &mut [T]) {
        let (keep, take, z) = (T::from_f64(self.keep), T::from_f64(self.take), zero::<T>());
        for (r, &v) in r.iter_mut().zip(&self.values) {
            *r = (*r * keep + z) + (T::from_f64(v) * take + z);
        }
    }
}

impl candle_core::InplaceOp1 for RunningUpdate {
    fn name(&self) -> &'static str {
        "fast-bn-running-update"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let Some((a, b)) = l.contiguous_offsets() else {
            bail!("BatchNorm running statistic is not contiguous")
        };
        if b - a != self.values.len() {
            bail!(
                "BatchNorm running statistic has {} entries, the batch {} channels",
                b - a,
                self.values.len()
            )
        }
        match s {
            CpuStorage::F32(d) => self.apply(&mut d[a..b]),
            CpuStorage::F64(d) => self.apply(&mut d[a..b]),
            _ => bail!("BatchNorm running statistics: f32 or f64 only"),
        }
        Ok(())
    }
}

/// Stock candle: `BatchNorm::forward_t` then ReLU.
pub fn stock_bn_relu(x: &Tensor, bn: &BatchNorm, train: bool) -> Result<Tensor> {
    use candle_nn::ModuleT;
    bn.forward_t(x, train)?.relu()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::{BatchNormConfig, VarBuilder, VarMap};

    /// The in-place running update gives candle's element-wise ops' values bit for bit (both
    /// statistics, f32 and f64, a few momenta and batch sizes).
    #[test]
    fn running_update_in_place_is_the_element_wise_ops_exactly() {
        let dev = Device::Cpu;
        for (dtype, momentum, batch) in [
            (DType::F32, 0.1, 64.0),
            (DType::F32, 0.003, 9.0),
            (DType::F64, 0.1, 7.0),
            (DType::F64, 0.5, 1568.0),
        ] {
            let c = 37;
            let stats: Vec<(f64, f64)> = (0..c)
                .map(|i| (0.37 * i as f64 - 3.1, 0.01 + 0.77 * i as f64))
                .collect();
            let start = Tensor::rand(0.5f32, 1.5, c, &dev).unwrap();
            let cfg = BatchNormConfig {
                momentum,
                ..Default::default()
            };
            let map = VarMap::new();
            let bn =
                candle_nn::batch_norm(c, cfg, VarBuilder::from_varmap(&map, dtype, &dev)).unwrap();
            let set = |t: &Tensor| {
                let t = t.to_dtype(dtype).unwrap();
                Var::from_tensor(bn.running_mean())
                    .unwrap()
                    .set(&t)
                    .unwrap();
                Var::from_tensor(bn.running_var()).unwrap().set(&t).unwrap();
            };
            let values = |t: &Tensor| -> Vec<u64> {
                let v: Vec<f64> = t.to_dtype(DType::F64).unwrap().to_vec1().unwrap();
                v.iter().map(|x| x.to_bits()).collect()
            };
            let var_take = momentum * batch / (batch - 1.0);
            set(&start);
            running_update(&bn, &stats, dtype, var_take).unwrap();
            let want = (values(bn.running_mean()), values(bn.running_var()));
            set(&start);
            let update = |stat: usize, take: f64| RunningUpdate {
                values: stats
                    .iter()
                    .map(|s| if stat == 0 { s.0 } else { s.1 })
                    .collect(),
                keep: 1.0 - momentum,
                take,
            };
            bn.running_mean().inplace_op1(&update(0, momentum)).unwrap();
            bn.running_var().inplace_op1(&update(1, var_take)).unwrap();
            let got = (values(bn.running_mean()), values(bn.running_var()));
            assert_eq!(got.0, want.0, "running mean, {dtype:?} momentum {momentum}");
            assert_eq!(
                got.1, want.1,
                "running variance, {dtype:?} momentum {momentum}"
            );
        }
    }
}
