//! Convolution, BatchNorm and ReLU as one node of candle's graph in training.
//!
//! As two nodes, candle's backward pass gives the convolution's output its own gradient
//! entry: a tensor of zeros the size of the output, the BatchNorm's input gradient added to it
//! into a third buffer, then the convolution's backward. As one node, the BatchNorm's input
//! gradient goes straight into the convolution's backward. The arithmetic is the two ops'
//! (the same functions on the same values), so results are bit for bit those of
//! [`super::conv2d`] followed by [`super::bn_relu`].

use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use candle_nn::BatchNorm;

use super::bn::{self, BnReluOp};
use super::conv::{self, Conv2dOp};
use super::profile::{span, Kind};
use super::tape;
use super::{vec_slice, with_storage, Elem};

/// `relu(bn(conv2d(x, weight)))` with [`super::conv2d`]'s padding and stride, as one node
/// when training on the fast path; elsewhere the two ops.
pub fn conv_bn_relu(
    x: &Tensor,
    weight: &Tensor,
    (pad, stride): ((usize, usize), usize),
    bn: &BatchNorm,
    train: bool,
) -> Result<Tensor> {
    let conv = conv::fast_op(x, weight, pad, stride).filter(|_| bn::applies(x, bn));
    let (Some(conv), true) = (conv, train) else {
        return bn::bn_relu(&super::conv2d(x, weight, pad, stride)?, bn, train);
    };
    let x = tape::same(x, super::blocked(x)?)?;
    let w = tape::same(weight, weight.contiguous()?)?;
    // The convolution outside the graph: the fused node stands for it.
    let y = x.detach().apply_op2(&w.detach(), conv)?;
    let p = bn::prepare(&y, bn, train)?;
    let params = tape::cat(&[&p.gamma, &p.beta], 0)?;
    tape::apply3(
        &x,
        &w,
        &params,
        ConvBnReluOp {
            conv,
            bn: p.op,
            y: p.x,
        },
    )
}

/// The fused node on (input, weight, [γ; β]); `y` is the convolution's output, computed
/// before the node was made.
struct ConvBnReluOp {
    conv: Conv2dOp,
    bn: BnReluOp,
    y: Tensor,
}

impl ConvBnReluOp {
    fn forward<T: Elem>(&self, params: &[T], lp: &Layout) -> Result<(CpuStorage, Shape)> {
        let params = vec_slice(params, lp)?;
        let (gamma, beta) = params.split_at(params.len() / 2);
        with_storage(&self.y, |ys, ly| {
            self.bn.run(ys.as_slice::<T>()?, ly, gamma, beta)
        })
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
        let (dy, dgamma, dbeta) = {
            let _span = span(Kind::BnReluBackward);
            self.bn.backward::<T>(&self.y, &gamma, &beta, grad)?
        };
        let (dx, dw) = self.conv.backward::<T>(x, w, &dy)?;
        Ok((dx, dw, Tensor::cat(&[&dgamma, &dbeta], 0)?))
    }
}

impl CustomOp3 for ConvBnReluOp {
    fn name(&self) -> &'static str {
        "fast-conv-bn-relu"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        params: &CpuStorage,
        lp: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _span = span(Kind::BnReluForward);
        match params {
            CpuStorage::F32(p) => self.forward(p, lp),
            CpuStorage::F64(p) => self.forward(p, lp),
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
