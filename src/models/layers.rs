//! The building vocabulary shared by the four networks.
//!
//! Every network is a tree of [`Block`]s: [`ConvBnAct`] units and [`Pool2d`]s chained into
//! [`Chain`]s (one branch of an Inception block), chains side by side in a [`Mixed`] block
//! (concatenated on channels), and the Inception-ResNet [`Residual`] unit. The networks differ
//! in numbers and names, not in code. Each block can also [`Block::trace`] an input shape through
//! itself without touching tensors, which is how parameters, MACs and feature-map sizes are
//! counted.

use candle_core::{bail, Result, Tensor};
use candle_nn::{BatchNorm, BatchNormConfig, Init, ModuleT, VarBuilder};
use serde::Serialize;

use super::fastops;
use super::pool::{Pool2d, PoolKind};

/// Channels × height × width of one feature map (the batch dimension left out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FeatureShape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

/// Trainable parameters and multiply-accumulates of a forward pass for one image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cost {
    pub params: u64,
    pub macs: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, other: Cost) {
        self.params += other.params;
        self.macs += other.macs;
    }
}

/// One node of a network.
pub trait Block: Send + Sync {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor>;
    /// The output shape for `input`, adding this block's parameters and MACs to `cost`.
    fn trace(&self, input: FeatureShape, cost: &mut Cost) -> Result<FeatureShape>;
    /// This block as a 1x1 stride-1 conv unit, which [`Mixed`] may merge with its siblings.
    fn as_pointwise(&self) -> Option<&ConvBnAct> {
        None
    }
    /// This block as a stride-1 average pool: linear and the same for every channel, so it
    /// commutes with a following 1x1 convolution.
    fn as_average_pool(&self) -> Option<&Pool2d> {
        None
    }
}

/// How a stride-1 op pads. Stride-2 ops are always VALID in these networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// TF SAME for odd kernels at stride 1: (k-1)/2 on each side of each axis.
    Same,
    /// No padding.
    Valid,
}

/// Kernel (height, width), as TF `[kh, kw]` and PyTorch `(kh, kw)` write it.
pub type Kernel = (usize, usize);
pub const K1: Kernel = (1, 1);
pub const K3: Kernel = (3, 3);
pub const K5: Kernel = (5, 5);
pub const K1X3: Kernel = (1, 3);
pub const K3X1: Kernel = (3, 1);
pub const K1X7: Kernel = (1, 7);
pub const K7X1: Kernel = (7, 1);

/// What every block needs to create its layers: where its weights live (the variable path is
/// the timm state-dict key), the width multiplier, the BatchNorm settings and the average-pool
/// padding semantics of the network.
#[derive(Clone)]
pub struct Ctx<'a> {
    pub vb: VarBuilder<'a>,
    pub width: f64,
    pub bn: BatchNormConfig,
    pub avg_pool: PoolKind,
}

impl<'a> Ctx<'a> {
    /// The same context one level down the variable path.
    pub fn pp(&self, name: impl ToString) -> Self {
        Self {
            vb: self.vb.pp(name),
            ..self.clone()
        }
    }

    /// A filter count of the paper scaled by the width multiplier (at least 1).
    pub fn ch(&self, paper: usize) -> usize {
        ((paper as f64 * self.width).round() as usize).max(1)
    }
}

fn out_len(len: usize, kernel: usize, stride: usize, pad: usize) -> Result<usize> {
    let padded = len + 2 * pad;
    if padded < kernel {
        bail!("a kernel of {kernel} does not fit a feature map of {len} (padding {pad}): the input image is too small")
    }
    Ok((padded - kernel) / stride + 1)
}

/// Convolution without bias, BatchNorm, ReLU: TF-slim's `slim.conv2d` under the Inception arg
/// scope, timm's `ConvNormAct`. Variables: `conv.weight`, `bn.{weight,bias,running_mean,running_var}`.
pub struct ConvBnAct {
    weight: Tensor,
    bn: BatchNorm,
    kernel: Kernel,
    stride: usize,
    /// Zero padding (rows, columns) on each side.
    pad: (usize, usize),
    cin: usize,
    cout: usize,
    /// The BatchNorm is one the fused fast op reproduces (affine, mean removed).
    fast_bn: bool,
}

impl ConvBnAct {
    pub fn new(
        ctx: &Ctx,
        cin: usize,
        cout: usize,
        kernel: Kernel,
        stride: usize,
        padding: Padding,
    ) -> Result<Self> {
        let pad = match padding {
            Padding::Valid => (0, 0),
            Padding::Same if stride == 1 => ((kernel.0 - 1) / 2, (kernel.1 - 1) / 2),
            Padding::Same => bail!("SAME padding is only used at stride 1 in these networks"),
        };
        let init = Init::Kaiming {
            dist: candle_nn::init::NormalOrUniform::Normal,
            fan: candle_nn::init::FanInOut::FanIn,
            non_linearity: candle_nn::init::NonLinearity::ReLU,
        };
        let weight =
            ctx.vb
                .pp("conv")
                .get_with_hints((cout, cin, kernel.0, kernel.1), "weight", init)?;
        let bn = candle_nn::batch_norm(cout, ctx.bn, ctx.vb.pp("bn"))?;
        let fast_bn = ctx.bn.affine && ctx.bn.remove_mean;
        Ok(Self {
            weight,
            bn,
            kernel,
            stride,
            pad,
            cin,
            cout,
            fast_bn,
        })
    }
}

impl ConvBnAct {
    /// Drops the trailing rows/columns a strided VALID conv never reads. The output is the
    /// same, and candle's conv backward (which derives the output padding of both axes from
    /// the height alone) then handles non-square inputs of mixed parity.
    fn crop_unused_border(&self, x: &Tensor) -> Result<Tensor> {
        if self.stride == 1 || self.pad != (0, 0) {
            return Ok(x.clone());
        }
        let (_, _, h, w) = x.dims4()?;
        let used = |len: usize, k: usize| {
            if len < k {
                len
            } else {
                (len - k) / self.stride * self.stride + k
            }
        };
        let (uh, uw) = (used(h, self.kernel.0), used(w, self.kernel.1));
        if (uh, uw) == (h, w) {
            return Ok(x.clone());
        }
        x.narrow(2, 0, uh)?.narrow(3, 0, uw)
    }
}

impl ConvBnAct {
    /// BatchNorm and ReLU of this unit's convolution output `y`, fused on the fast path.
    fn normalize(&self, y: &Tensor, train: bool) -> Result<Tensor> {
        if self.fast_bn {
            fastops::bn_relu(y, &self.bn, train)
        } else {
            self.bn.forward_t(y, train)?.relu()
        }
    }
}

impl Block for ConvBnAct {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if fastops::usable(x) {
            // Fused fast path (CPU): the conv pads each axis itself and needs no cropping.
            if self.fast_bn {
                let geometry = (self.pad, self.stride);
                return fastops::conv_bn_relu(x, &self.weight, geometry, &self.bn, train);
            }
            let y = fastops::conv2d(x, &self.weight, self.pad, self.stride)?;
            return self.normalize(&y, train);
        }
        let x = &self.crop_unused_border(x)?;
        // On CUDA: repro's convolution, whose backward runs on cuBLAS GEMMs (candle's input
        // gradient is a naive kernel); with the fast ops off, stock candle.
        let y = fastops::conv2d(x, &self.weight, self.pad, self.stride)?;
        self.bn.forward_t(&y, train)?.relu()
    }

    fn trace(&self, s: FeatureShape, cost: &mut Cost) -> Result<FeatureShape> {
        if s.c != self.cin {
            bail!("conv expects {} input channels, got {}", self.cin, s.c)
        }
        let h = out_len(s.h, self.kernel.0, self.stride, self.pad.0)?;
        let w = out_len(s.w, self.kernel.1, self.stride, self.pad.1)?;
        let taps = (self.cin * self.kernel.0 * self.kernel.1) as u64;
        *cost += Cost {
            params: taps * self.cout as u64 + 2 * self.cout as u64,
            macs: taps * (self.cout * h * w) as u64,
        };
        Ok(FeatureShape { c: self.cout, h, w })
    }

    fn as_pointwise(&self) -> Option<&ConvBnAct> {
        (self.kernel == K1 && self.stride == 1 && self.pad == (0, 0)).then_some(self)
    }
}

/// The 1x1 convolution with bias and no normalisation that projects the branches of a
/// residual block back to the trunk width (`conv2d.{weight,bias}` in timm).
pub struct Projection {
    weight: Tensor,
    bias: Tensor,
    cin: usize,
    cout: usize,
}

impl Projection {
    pub fn new(ctx: &Ctx, cin: usize, cout: usize) -> Result<Self> {
        let init = Init::Kaiming {
            dist: candle_nn::init::NormalOrUniform::Normal,
            fan: candle_nn::init::FanInOut::FanIn,
            non_linearity: candle_nn::init::NonLinearity::Linear,
        };
        let weight = ctx.vb.get_with_hints((cout, cin, 1, 1), "weight", init)?;
        let bias = ctx.vb.get_with_hints(cout, "bias", Init::Const(0.0))?;
        Ok(Self {
            weight,
            bias,
            cin,
            cout,
        })
    }

    /// The convolution without its bias: the residual unit adds the bias in its fused tail.
    fn unbiased(&self, x: &Tensor) -> Result<Tensor> {
        fastops::conv2d(x, &self.weight, (0, 0), 1)
    }

    fn trace(&self, s: FeatureShape, cost: &mut Cost) -> FeatureShape {
        *cost += Cost {
            params: (self.cin * self.cout + self.cout) as u64,
            macs: (self.cin * self.cout * s.h * s.w) as u64,
        };
        FeatureShape { c: self.cout, ..s }
    }
}

impl Block for Pool2d {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        self.forward(x)
    }

    fn as_average_pool(&self) -> Option<&Pool2d> {
        (self.kind != PoolKind::Max && self.stride == 1).then_some(self)
    }

    fn trace(&self, s: FeatureShape, _cost: &mut Cost) -> Result<FeatureShape> {
        match (self.output_len(s.h), self.output_len(s.w)) {
            (Some(h), Some(w)) => Ok(FeatureShape { c: s.c, h, w }),
            _ => bail!("a {0}x{0} pooling window does not fit a {1}x{2} feature map: the input image is too small", self.kernel, s.h, s.w),
        }
    }
}

/// Blocks applied one after the other: one branch of an Inception block, or a stage.
/// Built fluently while tracking the channel count, so filter counts are written once.
pub struct Chain {
    blocks: Vec<Box<dyn Block>>,
    channels: usize,
}

impl Chain {
    /// An empty chain on an input of `channels` channels.
    pub fn from(channels: usize) -> Self {
        Self {
            blocks: Vec::new(),
            channels,
        }
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Appends any block whose output has `channels` channels.
    pub fn then(mut self, block: impl Block + 'static, channels: usize) -> Self {
        self.blocks.push(Box::new(block));
        self.channels = channels;
        self
    }

    /// Appends a block of parallel branches.
    pub fn mixed(self, block: Mixed) -> Self {
        let c = block.channels();
        self.then(block, c)
    }

    /// Appends a residual block (the width does not change).
    pub fn residual(self, block: Residual) -> Self {
        let c = self.channels;
        self.then(block, c)
    }

    /// Conv-BN-ReLU at `ctx`/`name` with `paper` filters (before width scaling), stride 1, SAME.
    pub fn conv(self, ctx: &Ctx, name: &str, paper: usize, kernel: Kernel) -> Result<Self> {
        self.conv_with(ctx, name, paper, kernel, 1, Padding::Same)
    }

    /// Conv-BN-ReLU, stride 1, VALID.
    pub fn conv_valid(self, ctx: &Ctx, name: &str, paper: usize, kernel: Kernel) -> Result<Self> {
        self.conv_with(ctx, name, paper, kernel, 1, Padding::Valid)
    }

    /// Conv-BN-ReLU, stride 2, VALID.
    pub fn conv_s2(self, ctx: &Ctx, name: &str, paper: usize, kernel: Kernel) -> Result<Self> {
        self.conv_with(ctx, name, paper, kernel, 2, Padding::Valid)
    }

    fn conv_with(
        self,
        ctx: &Ctx,
        name: &str,
        paper: usize,
        kernel: Kernel,
        stride: usize,
        padding: Padding,
    ) -> Result<Self> {
        let cout = ctx.ch(paper);
        let unit = ConvBnAct::new(&ctx.pp(name), self.channels, cout, kernel, stride, padding)?;
        Ok(self.then(unit, cout))
    }

    /// 3x3 stride-2 VALID max pooling.
    pub fn max_pool(self) -> Self {
        let c = self.channels;
        self.then(Pool2d::max_3x3_s2(), c)
    }

    /// 3x3 stride-1 SAME average pooling with the network's padding semantics.
    pub fn avg_pool(self, ctx: &Ctx) -> Self {
        let c = self.channels;
        self.then(Pool2d::avg_3x3_same(ctx.avg_pool), c)
    }

    /// Splits into parallel chains on the current output, concatenated (Inception-C's
    /// `{1x3, 3x1}` pairs).
    pub fn fork(self, branches: impl FnOnce(usize) -> Result<Vec<Chain>>) -> Result<Self> {
        let mixed = Mixed::new(branches(self.channels)?);
        let c = mixed.channels();
        Ok(self.then(mixed, c))
    }
}

/// The opening of a branch that [`Mixed`] can merge: a 1x1 conv unit on the block's input,
/// optionally after a stride-1 average pool. The pool and the 1x1 convolution are both linear and
/// commute (the pool acts on each channel alike, the convolution on each position alike), so the
/// merged path convolves first and pools the (fewer) output channels, before the BatchNorm.
struct PointwiseHead<'a> {
    pool: Option<&'a Pool2d>,
    conv: &'a ConvBnAct,
    /// Index of the first block after the head.
    rest: usize,
}

impl Chain {
    /// The chain's mergeable opening, if it has one.
    fn pointwise_head(&self) -> Option<PointwiseHead<'_>> {
        let first = self.blocks.first()?;
        if let Some(conv) = first.as_pointwise() {
            return Some(PointwiseHead {
                pool: None,
                conv,
                rest: 1,
            });
        }
        let conv = self.blocks.get(1)?.as_pointwise()?;
        Some(PointwiseHead {
            pool: Some(first.as_average_pool()?),
            conv,
            rest: 2,
        })
    }

    /// The blocks from number `from` on, applied to `x`.
    fn forward_from(&self, from: usize, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = x.clone();
        for block in &self.blocks[from..] {
            y = block.forward_t(&y, train)?;
        }
        Ok(y)
    }
}

impl Block for Chain {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_from(0, x, train)
    }

    fn trace(&self, s: FeatureShape, cost: &mut Cost) -> Result<FeatureShape> {
        self.blocks
            .iter()
            .try_fold(s, |s, block| block.trace(s, cost))
    }
}

/// Parallel branches on one input, concatenated on channels in the order given.
pub struct Mixed {
    branches: Vec<Chain>,
    /// The branches that open with a 1x1 conv unit on the block's input, possibly after an
    /// average pool ([`PointwiseHead`]; Inception blocks have two to four). On the CPU fast path
    /// their convolutions run as one, over the stacked weights: one matrix product instead of
    /// several, and one input gradient instead of a sum of several.
    pointwise_heads: Vec<usize>,
}

impl Mixed {
    pub fn new(branches: Vec<Chain>) -> Self {
        let pointwise_heads = (0..branches.len())
            .filter(|&i| branches[i].pointwise_head().is_some())
            .collect();
        Self {
            branches,
            pointwise_heads,
        }
    }

    /// The same block with every branch run on its own (the reference for the merged heads).
    #[cfg(test)]
    fn unmerged(branches: Vec<Chain>) -> Self {
        Self {
            branches,
            pointwise_heads: Vec::new(),
        }
    }

    pub fn channels(&self) -> usize {
        self.branches.iter().map(Chain::channels).sum()
    }

    /// Whether to merge the 1x1 heads for input `x`: on the fast path, when there are several and
    /// the input has at least as many positions (N·H·W) as the heads have filters in all. The
    /// stacked weights are a copy of C × filters values made at each pass, worth it only when it
    /// is no larger than the C × positions values of the input read once instead of per head
    /// (Inception-ResNet-v2's last stage at 107 px: 64 positions, 384 filters).
    fn merges_heads(&self, x: &Tensor) -> Result<bool> {
        if self.pointwise_heads.len() < 2 || !fastops::usable(x) {
            return Ok(false);
        }
        let (n, _, h, w) = x.dims4()?;
        let filters: usize = self
            .pointwise_heads
            .iter()
            .filter_map(|&i| self.branches[i].pointwise_head())
            .map(|head| head.conv.cout)
            .sum();
        Ok(n * h * w >= filters)
    }

    /// The outputs of the branches with a 1x1 head, by branch, their heads' convolutions merged.
    fn merged_heads(&self, x: &Tensor, train: bool) -> Result<Vec<Option<Tensor>>> {
        let heads: Vec<PointwiseHead> = self
            .pointwise_heads
            .iter()
            .map(|&i| self.branches[i].pointwise_head().expect("checked in new"))
            .collect();
        let weights: Vec<&Tensor> = heads.iter().map(|h| &h.conv.weight).collect();
        let w = fastops::cat(&weights, 0)?;
        // In an inference pass without pooled heads, each head's BatchNorm and ReLU on its
        // channels as the product writes them.
        let normalized = match heads.iter().all(|h| h.pool.is_none() && h.conv.fast_bn) {
            true => {
                let bns: Vec<&BatchNorm> = heads.iter().map(|h| &h.conv.bn).collect();
                fastops::conv_bn_relu_heads(x, &w, ((0, 0), 1), &bns)?
            }
            false => None,
        };
        let done = normalized.is_some();
        let y = match normalized {
            Some(y) => y,
            None => fastops::conv2d(x, &w, (0, 0), 1)?,
        };
        let mut outs: Vec<Option<Tensor>> = vec![None; self.branches.len()];
        let mut start = 0;
        for (&i, head) in self.pointwise_heads.iter().zip(heads) {
            let mut z = fastops::narrow(&y, 1, start, head.conv.cout)?;
            if !done {
                if let Some(pool) = head.pool {
                    z = pool.forward(&z)?;
                }
                z = head.conv.normalize(&z, train)?;
            }
            outs[i] = Some(self.branches[i].forward_from(head.rest, &z, train)?);
            start += head.conv.cout;
        }
        Ok(outs)
    }
}

impl Block for Mixed {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut merged = if self.merges_heads(x)? {
            self.merged_heads(x, train)?
        } else {
            vec![None; self.branches.len()]
        };
        let outs = self
            .branches
            .iter()
            .zip(&mut merged)
            .map(|(b, done)| match done.take() {
                Some(out) => Ok(out),
                None => b.forward_t(x, train),
            })
            .collect::<Result<Vec<_>>>()?;
        let outs: Vec<&Tensor> = outs.iter().collect();
        fastops::cat(&outs, 1)
    }

    fn trace(&self, s: FeatureShape, cost: &mut Cost) -> Result<FeatureShape> {
        let outs = self
            .branches
            .iter()
            .map(|b| b.trace(s, cost))
            .collect::<Result<Vec<_>>>()?;
        let first = outs[0];
        if outs.iter().any(|o| (o.h, o.w) != (first.h, first.w)) {
            bail!("branches of a mixed block disagree on their output size: {outs:?}")
        }
        Ok(FeatureShape {
            c: outs.iter().map(|o| o.c).sum(),
            ..first
        })
    }
}

/// The Inception-ResNet unit: `out = act(x + scale * up(concat(branches)))`, where `up` is a
/// 1x1 conv with bias back to the trunk width, so the scale multiplies its bias too.
pub struct Residual {
    branches: Mixed,
    up: Projection,
    scale: f64,
    relu: bool,
}

impl Residual {
    /// `ctx` is the block's own path: the projection lives at `conv2d`.
    pub fn new(
        ctx: &Ctx,
        cin: usize,
        branches: Vec<Chain>,
        scale: f64,
        relu: bool,
    ) -> Result<Self> {
        let branches = Mixed::new(branches);
        let up = Projection::new(&ctx.pp("conv2d"), branches.channels(), cin)?;
        Ok(Self {
            branches,
            up,
            scale,
            relu,
        })
    }
}

impl Block for Residual {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.branches.forward_t(x, train)?;
        let (up, scale, relu) = (&self.up, self.scale, self.relu);
        // In an inference pass, the sum on each image's projection as it is made.
        if let Some(out) = fastops::project_onto_trunk(x, &y, &up.weight, &up.bias, scale, relu)? {
            return Ok(out);
        }
        fastops::scaled_residual(x, &up.unbiased(&y)?, &up.bias, scale, relu)
    }

    fn trace(&self, s: FeatureShape, cost: &mut Cost) -> Result<FeatureShape> {
        let inner = self.branches.trace(s, cost)?;
        let out = self.up.trace(inner, cost);
        if out != s {
            bail!("residual branch produces {out:?} for a trunk of {s:?}")
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    fn ctx(vm: &VarMap) -> Ctx<'static> {
        Ctx {
            vb: VarBuilder::from_varmap(vm, DType::F64, &Device::Cpu),
            width: 1.0,
            bn: BatchNormConfig {
                eps: 1e-3,
                ..Default::default()
            },
            avg_pool: PoolKind::AvgExcludePad,
        }
    }

    #[test]
    fn width_multiplier_scales_and_keeps_at_least_one_filter() {
        let vm = VarMap::new();
        let mut c = ctx(&vm);
        c.width = 0.125;
        assert_eq!(c.ch(96), 12);
        assert_eq!(c.ch(4), 1);
        c.width = 0.01;
        assert_eq!(c.ch(32), 1);
    }

    #[test]
    fn asymmetric_kernels_pad_each_axis_separately() {
        let vm = VarMap::new();
        let c = ctx(&vm);
        let x = Tensor::randn(0f64, 1., (1, 3, 5, 9), &Device::Cpu).unwrap();
        for k in [K1X7, K7X1, K1X3, K3X1] {
            let unit = ConvBnAct::new(&c.pp(format!("{k:?}")), 3, 4, k, 1, Padding::Same).unwrap();
            assert_eq!(
                unit.forward_t(&x, false).unwrap().dims(),
                &[1, 4, 5, 9],
                "{k:?}"
            );
            let mut cost = Cost::default();
            let s = unit
                .trace(FeatureShape { c: 3, h: 5, w: 9 }, &mut cost)
                .unwrap();
            assert_eq!((s.h, s.w), (5, 9));
            assert_eq!(cost.params, (3 * 4 * k.0 * k.1 + 8) as u64);
            assert_eq!(cost.macs, (3 * 4 * k.0 * k.1 * 45) as u64);
        }
    }

    /// A 1x7 SAME conv equals a 1x7 conv over an input zero-padded by 3 columns only.
    #[test]
    fn one_by_seven_conv_pads_only_the_width() {
        let vm = VarMap::new();
        let c = ctx(&vm);
        let unit = ConvBnAct::new(&c.pp("u"), 2, 3, K1X7, 1, Padding::Same).unwrap();
        let x = Tensor::randn(0f64, 1., (1, 2, 4, 6), &Device::Cpu).unwrap();
        let w = vm.data().lock().unwrap()["u.conv.weight"]
            .as_tensor()
            .clone();
        let manual = x
            .pad_with_zeros(3, 3, 3)
            .unwrap()
            .conv2d(&w, 0, 1, 1, 1)
            .unwrap();
        // BN at init in eval mode is (x - 0) / sqrt(1 + eps); then ReLU.
        let expected = (manual / (1.0f64 + 1e-3).sqrt()).unwrap().relu().unwrap();
        let got = unit.forward_t(&x, false).unwrap();
        let diff = (got - expected)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(diff < 1e-12, "{diff}");
    }

    #[test]
    fn residual_scale_multiplies_the_projection_bias() {
        let vm = VarMap::new();
        let c = ctx(&vm);
        let branch = Chain::from(2)
            .conv(&c.pp("block"), "branch0", 3, K1)
            .unwrap();
        let block = Residual::new(&c.pp("block"), 2, vec![branch], 0.5, false).unwrap();
        // Zero the branch's conv so the residual adds exactly scale * bias.
        let vars = vm.data().lock().unwrap();
        vars["block.branch0.conv.weight"]
            .set(&Tensor::zeros((3, 2, 1, 1), DType::F64, &Device::Cpu).unwrap())
            .unwrap();
        vars["block.conv2d.bias"]
            .set(&Tensor::new(&[4.0f64, -8.0], &Device::Cpu).unwrap())
            .unwrap();
        drop(vars);
        let x = Tensor::ones((1, 2, 1, 1), DType::F64, &Device::Cpu).unwrap();
        let y = block
            .forward_t(&x, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert_eq!(y, vec![3.0, -3.0]); // 1 + 0.5*4, 1 + 0.5*(-8); no ReLU
    }

    /// Merging the 1x1 heads of a mixed block (one after an average pool, which the merged path
    /// applies after the convolution) changes nothing beyond rounding: outputs, BatchNorm
    /// statistics and gradients (input, conv weights, BatchNorm parameters) equal those of
    /// separate branches.
    #[test]
    fn merged_pointwise_heads_match_separate_branches() {
        let vm = VarMap::new();
        let c = ctx(&vm);
        let branches = || mergeable_branches(&c, true);
        let merged = Mixed::new(branches());
        assert_eq!(merged.pointwise_heads, [0, 1, 2, 3]);
        // 15 filters in the heads: merged for 3·6·7 positions, not for 2·2·3.
        let tiny = Tensor::zeros((2, 5, 2, 3), DType::F64, &Device::Cpu).unwrap();
        assert!(!merged.merges_heads(&tiny).unwrap());
        let separate = Mixed::unmerged(branches());
        let x = Var::from_tensor(&Tensor::randn(0f64, 1., (3, 5, 6, 7), &Device::Cpu).unwrap())
            .unwrap();
        assert!(merged.merges_heads(x.as_tensor()).unwrap());
        for train in [true, false] {
            let snapshot = |vm: &VarMap| -> Vec<(String, Tensor)> {
                let mut v: Vec<_> = vm
                    .data()
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
                    .collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            };
            let before = snapshot(&vm);
            let r = Tensor::randn(0f64, 1., (3, 13, 6, 7), &Device::Cpu).unwrap();
            let run = |m: &Mixed| {
                // Each run starts from the same running statistics.
                for (k, t) in &before {
                    vm.data().lock().unwrap()[k].set(t).unwrap();
                }
                let y = m.forward_t(x.as_tensor(), train).unwrap();
                let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let vars = vm.data().lock().unwrap();
                let mut g: Vec<(String, Tensor)> = vars
                    .iter()
                    .filter_map(|(k, v)| grads.get(v.as_tensor()).map(|g| (k.clone(), g.clone())))
                    .collect();
                drop(vars);
                g.push(("x".into(), grads.get(x.as_tensor()).unwrap().clone()));
                g.sort_by(|a, b| a.0.cmp(&b.0));
                (y, g, snapshot(&vm))
            };
            let (ya, ga, sa) = run(&merged);
            let (yb, gb, sb) = run(&separate);
            let diff = |a: &Tensor, b: &Tensor| crate::numeric::max_abs_diff(a, b).unwrap();
            assert!(diff(&ya, &yb) < 1e-12, "train {train}: outputs");
            assert_eq!(ga.len(), gb.len());
            assert!(ga.len() > 10, "gradients of x and of the units' variables");
            for ((ka, a), (kb, b)) in ga.iter().zip(&gb) {
                assert_eq!(ka, kb);
                assert!(diff(a, b) < 1e-10, "train {train}: gradient of {ka}");
            }
            for ((ka, a), (_, b)) in sa.iter().zip(&sb) {
                assert!(diff(a, b) < 1e-12, "train {train}: {ka} after the step");
            }
        }
    }

    /// Branches on a 5-channel input whose heads merge: a 1x1, a 1x1 then a 3x3, where
    /// `pooled` an average pool then a 1x1, and a 1x1.
    fn mergeable_branches(c: &Ctx, pooled: bool) -> Vec<Chain> {
        let mut branches = vec![
            Chain::from(5).conv(c, "b0", 3, K1).unwrap(),
            Chain::from(5)
                .conv(c, "b1a", 4, K1)
                .unwrap()
                .conv(c, "b1b", 2, K3)
                .unwrap(),
        ];
        if pooled {
            branches.push(Chain::from(5).avg_pool(c).conv(c, "b2", 2, K1).unwrap());
        }
        branches.push(Chain::from(5).conv(c, "b3", 6, K1).unwrap());
        branches
    }

    /// In an inference pass, merged heads without a pooled one get each head's BatchNorm and
    /// ReLU as the merged product writes its outputs (`fastops::conv_bn_relu_heads`): the same
    /// outputs as the branches run one by one, with BatchNorms far from the identity.
    #[test]
    fn merged_heads_in_inference_match_separate_branches() {
        let vm = VarMap::new();
        let c = ctx(&vm);
        let branches = || mergeable_branches(&c, false);
        let (merged, separate) = (Mixed::new(branches()), Mixed::unmerged(branches()));
        for (name, var) in vm.data().lock().unwrap().iter() {
            let (lo, hi) = match name.rsplit('.').next() {
                Some("running_var") | Some("weight") if name.contains(".bn.") => (0.5, 2.0),
                Some("running_mean") | Some("bias") if name.contains(".bn.") => (-1.0, 1.0),
                _ => continue,
            };
            let t = Tensor::rand(lo, hi, var.shape(), &Device::Cpu).unwrap();
            var.set(&t.to_dtype(var.dtype()).unwrap()).unwrap();
        }
        let x = Tensor::randn(0f64, 1., (3, 5, 6, 7), &Device::Cpu).unwrap();
        let (a, b) = fastops::inference(|| {
            (
                merged.forward_t(&x, false).unwrap(),
                separate.forward_t(&x, false).unwrap(),
            )
        });
        let diff = crate::numeric::max_abs_diff(&a, &b).unwrap();
        assert!(diff < 1e-12, "outputs differ by {diff}");
        let zeros = b.eq(0.0).unwrap().to_dtype(DType::F64).unwrap();
        let zeros = zeros.mean_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(zeros > 0.05 && zeros < 0.95, "ReLU cuts {zeros}");
        let heads: Vec<&ConvBnAct> = [0, 1, 2]
            .iter()
            .map(|&i| merged.branches[i].pointwise_head().unwrap().conv)
            .collect();
        let w = Tensor::cat(&heads.iter().map(|h| &h.weight).collect::<Vec<_>>(), 0).unwrap();
        let bns: Vec<&BatchNorm> = heads.iter().map(|h| &h.bn).collect();
        let fused = |x| fastops::conv_bn_relu_heads(x, &w, ((0, 0), 1), &bns).unwrap();
        assert!(
            fastops::inference(|| fused(&x)).is_some(),
            "fused in inference"
        );
        assert!(fused(&x).is_none(), "not fused outside inference");
    }

    /// Finite-difference check of a padded asymmetric conv unit (BN in eval mode so the
    /// function is deterministic), with respect to input and weights.
    #[test]
    fn padded_conv_gradients_match_finite_differences() {
        let vm = VarMap::new();
        let c = ctx(&vm);
        for (i, (k, stride)) in [(K1X7, 1), (K7X1, 1), (K3, 1), (K3, 2)]
            .into_iter()
            .enumerate()
        {
            let pad = if stride == 1 {
                Padding::Same
            } else {
                Padding::Valid
            };
            let unit = ConvBnAct::new(&c.pp(i), 2, 3, k, stride, pad).unwrap();
            let x = Var::from_tensor(&Tensor::randn(0f64, 1., (2, 2, 7, 8), &Device::Cpu).unwrap())
                .unwrap();
            let y = unit.forward_t(x.as_tensor(), false).unwrap();
            let r = Tensor::randn(0f64, 1., y.shape(), &Device::Cpu).unwrap();
            let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let weight = vm.data().lock().unwrap()[&format!("{i}.conv.weight")].clone();
            for var in [&x, &weight] {
                let analytic = grads
                    .get(var.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                let base = var.as_tensor().copy().unwrap();
                let flat = base.flatten_all().unwrap().to_vec1::<f64>().unwrap();
                for j in (0..flat.len()).step_by(5) {
                    let at = |delta: f64| {
                        let mut v = flat.clone();
                        v[j] += delta;
                        var.set(&Tensor::from_vec(v, base.shape(), &Device::Cpu).unwrap())
                            .unwrap();
                        let out = unit.forward_t(x.as_tensor(), false).unwrap();
                        (out * &r)
                            .unwrap()
                            .sum_all()
                            .unwrap()
                            .to_scalar::<f64>()
                            .unwrap()
                    };
                    let numeric = (at(1e-6) - at(-1e-6)) / 2e-6;
                    assert!(
                        (numeric - analytic[j]).abs() < 1e-5 * (1.0 + numeric.abs()),
                        "{k:?}/{stride} entry {j}: {numeric} vs {}",
                        analytic[j]
                    );
                }
                var.set(&base).unwrap();
            }
        }
    }
}
