//! Convolution, BatchNorm and ReLU as one node of candle's graph.
//!
//! In training, as two nodes, candle's backward pass gives the convolution's output its own
//! gradient entry: a tensor of zeros the size of the output, the BatchNorm's input gradient
//! added to it into a third buffer, then the convolution's backward. As one node, the
//! BatchNorm's input gradient goes straight into the convolution's backward. On small maps,
//! where the convolution is one product over the whole batch, the node keeps the product's
//! output as it comes, in channel rows (C×N×H×W): the statistics are read there, the output is
//! written into images with BatchNorm and ReLU applied as it is copied out, and the backward
//! pass writes the BatchNorm's input gradient in rows, which the convolution's backward takes
//! as it is (before, a copy into images each way, and a pass of its own for BatchNorm + ReLU).
//! In evaluation the
//! node's forward pass is the convolution with the BatchNorm (running statistics) and ReLU
//! applied to its outputs as they are written (no pass of their own over the output, no second
//! buffer). The arithmetic is the two ops' (the same functions on the same values), so results
//! are bit for bit those of [`super::conv2d`] followed by [`super::bn_relu`].

use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use candle_nn::BatchNorm;

use super::bn::{self, BnReluOp};
use super::conv::{self, Conv2dOp};
use super::profile::{span, Kind};
use super::tape;
use super::{vec_slice, with_storage, Elem};

/// `relu(bn(conv2d(x, weight)))` with [`super::conv2d`]'s padding and stride, as one node on
/// the fast path; elsewhere the two ops.
pub fn conv_bn_relu(
    x: &Tensor,
    weight: &Tensor,
    (pad, stride): ((usize, usize), usize),
    bn: &BatchNorm,
    train: bool,
) -> Result<Tensor> {
    let Some(conv) = conv::fast_op(x, weight, pad, stride).filter(|_| bn::applies(x, bn)) else {
        return bn::bn_relu(&super::conv2d(x, weight, pad, stride)?, bn, train);
    };
    let x = tape::same(x, super::blocked(x)?)?;
    let w = tape::same(weight, weight.contiguous()?)?;
    let (gamma, beta) = bn.weight_and_bias().expect("checked by applies");
    let op = match train {
        true => {
            // The convolution outside the graph (its output gives the batch statistics): the
            // fused node stands for it. Small maps keep it as the channel rows the whole-batch
            // product writes (no copy into images, and the BatchNorm's input gradient goes
            // back in that layout).
            let (xd, wd) = (x.detach(), w.detach());
            let rows = match x.dtype() {
                DType::F32 => conv.forward_rows::<f32>(&xd, &wd)?,
                _ => conv.forward_rows::<f64>(&xd, &wd)?,
            };
            match rows {
                Some(rows) => ConvBnReluOp {
                    conv,
                    bn: bn::prepare_rows(&rows, bn)?,
                    y: Kept::Rows(rows),
                },
                None => {
                    let y = xd.apply_op2(&wd, conv)?;
                    let p = bn::prepare(&y, bn, train)?;
                    ConvBnReluOp {
                        conv,
                        bn: p.op,
                        y: Kept::Images(p.x),
                    }
                }
            }
        }
        false => ConvBnReluOp {
            conv,
            bn: bn::evaluation_op(bn)?,
            y: Kept::Nothing,
        },
    };
    let params = super::concat::cat(&[gamma, beta], 0)?;
    tape::apply3(&x, &w, &params, op)
}

/// The fused node on (input, weight, [γ; β]).
struct ConvBnReluOp {
    conv: Conv2dOp,
    bn: BnReluOp,
    y: Kept,
}

/// The convolution's output as the node keeps it.
enum Kept {
    /// Training: N×O×OH×OW images, computed before the node was made.
    Images(Tensor),
    /// Training on small maps: O×N×OH×OW channel rows ([`Conv2dOp::forward_rows`]).
    Rows(Tensor),
    /// Evaluation: the node computes the convolution itself, BatchNorm and ReLU applied to
    /// its outputs as they are written, and keeps nothing.
    Nothing,
}

impl ConvBnReluOp {
    fn forward<T: Elem>(
        &self,
        (x, lx): (&CpuStorage, &Layout),
        (w, lw): (&CpuStorage, &Layout),
        params: &[T],
        lp: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let params = vec_slice(params, lp)?;
        let (gamma, beta) = params.split_at(params.len() / 2);
        match &self.y {
            Kept::Images(y) => {
                let _span = span(Kind::BnReluForward);
                with_storage(y, |ys, ly| {
                    self.bn.run(ys.as_slice::<T>()?, ly, gamma, beta)
                })
            }
            Kept::Rows(rows) => {
                let _span = span(Kind::BnReluForward);
                let ab = self.bn.affine_of(gamma, beta);
                let (o, n, oh, ow) = rows.dims4()?;
                with_storage(rows, |rs, _| {
                    let y = conv::rows_to_images(rs.as_slice::<T>()?, rows.dims(), &ab);
                    Ok((T::to_cpu_storage_owned(y), Shape::from((n, o, oh, ow))))
                })
            }
            Kept::Nothing => {
                let _span = span(Kind::ConvForward);
                let ab = self.bn.affine_of(gamma, beta);
                self.conv.run::<T>(x, lx, w, lw, Some(&ab))
            }
        }
    }

    fn backward<T: Elem>(
        &self,
        x: &Tensor,
        w: &Tensor,
        params: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let c = params.dim(0)? / 2;
        let params = params.detach();
        let (gamma, beta) = (params.narrow(0, 0, c)?, params.narrow(0, c, c)?);
        let (dx, dw, dgamma, dbeta) = match &self.y {
            Kept::Rows(rows) => {
                let (dyt, dgamma, dbeta) = {
                    let _span = span(Kind::BnReluBackward);
                    self.bn.backward_rows::<T>(rows, &gamma, &beta, grad)?
                };
                let (dx, dw) = self.conv.backward_rows::<T>(x, w, dyt)?;
                (dx, dw, dgamma, dbeta)
            }
            kept => {
                // In evaluation the convolution's output was not kept: the backward pass (rare
                // there) computes it again.
                let y = match kept {
                    Kept::Images(y) => y.clone(),
                    _ => x.detach().apply_op2(&w.detach(), self.conv)?,
                };
                let (dy, dgamma, dbeta) = {
                    let _span = span(Kind::BnReluBackward);
                    self.bn.backward::<T>(&y, &gamma, &beta, grad)?
                };
                let (dx, dw) = self.conv.backward::<T>(x, w, &dy)?;
                (dx, dw, dgamma, dbeta)
            }
        };
        Ok((dx, dw, Tensor::cat(&[&dgamma, &dbeta], 0)?))
    }
}

impl CustomOp3 for ConvBnReluOp {
    fn name(&self) -> &'static str {
        "fast-conv-bn-relu"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
        params: &CpuStorage,
        lp: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match params {
            CpuStorage::F32(p) => self.forward((x, lx), (w, lw), p, lp),
            CpuStorage::F64(p) => self.forward((x, lx), (w, lw), p, lp),
            _ => bail!("fast conv-bn-relu: f32 or f64 tensors only"),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        params: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, dp) = match x.dtype() {
            DType::F32 => self.backward::<f32>(x, w, params, grad)?,
            DType::F64 => self.backward::<f64>(x, w, params, grad)?,
            d => bail!(
                "fast conv-bn-relu backward: unsupported dtype {}",
                d.as_str()
            ),
        };
        Ok((Some(dx), Some(dw), Some(dp)))
    }
}

/// In an inference pass, the merged 1×1 heads of an Inception block ([`super::conv2d`] of the
/// heads' stacked weights) with each head's BatchNorm (running statistics) and ReLU applied to
/// its channels as the convolution writes them, `bns` in the order of the weights' rows; `None`
/// where this does not run (outside an inference pass, off the fast path), and the caller runs
/// the convolution and each head's [`super::bn_relu`]. Bit for bit those ops.
pub fn conv_bn_relu_heads(
    x: &Tensor,
    weight: &Tensor,
    (pad, stride): ((usize, usize), usize),
    bns: &[&BatchNorm],
) -> Result<Option<Tensor>> {
    let fused = super::inference::inferring() && bns.iter().all(|bn| bn::applies(x, bn));
    let Some(conv) = conv::fast_op(x, weight, pad, stride).filter(|_| fused) else {
        return Ok(None);
    };
    let channels: usize = bns.iter().map(|bn| bn.running_mean().elem_count()).sum();
    if channels != weight.dim(0)? {
        bail!(
            "merged heads: {channels} BatchNorm channels for {} filters",
            weight.dim(0)?
        )
    }
    let x = super::blocked(x)?;
    let w = weight.contiguous()?;
    let (y, shape) = with_storage(&x, |xs, lx| {
        with_storage(&w, |ws, lw| match x.dtype() {
            DType::F32 => conv.run::<f32>(xs, lx, ws, lw, Some(&stacked_affine::<f32>(bns)?)),
            _ => conv.run::<f64>(xs, lx, ws, lw, Some(&stacked_affine::<f64>(bns)?)),
        })
    })?;
    let y = match y {
        CpuStorage::F32(v) => Tensor::from_vec(v, shape, x.device())?,
        CpuStorage::F64(v) => Tensor::from_vec(v, shape, x.device())?,
        _ => bail!("merged heads: the convolution gave neither f32 nor f64"),
    };
    Ok(Some(y))
}

/// Each BatchNorm's evaluation `(a, b)` per channel, one after the other.
fn stacked_affine<T: Elem>(bns: &[&BatchNorm]) -> Result<Vec<(T, T)>> {
    let mut ab = Vec::new();
    for bn in bns {
        let (gamma, beta) = bn.weight_and_bias().expect("checked by applies");
        let op = bn::evaluation_op(bn)?;
        let (g, b) = (
            super::with_slice::<T, _>(gamma, |s, l| vec_slice(s, l))?,
            super::with_slice::<T, _>(beta, |s, l| vec_slice(s, l))?,
        );
        ab.extend(op.affine_of(&g, &b));
    }
    Ok(ab)
}
