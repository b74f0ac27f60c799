//! A 2-D convolution whose backward pass runs on the fast paths of the device.
//!
//! candle's own conv2d backward (candle-core 0.11 `backprop.rs`, `Op::Conv2D`) computes the
//! input gradient with `conv_transpose2d`, which on CUDA is a naive one-thread-per-output
//! kernel (and a direct loop on the CPU); with the `cudnn` feature the weight gradient also
//! falls back to a naive kernel because its kernel operand is a non-contiguous transpose.
//! [`conv2d`] gives the same forward value with a custom backward built only from ops that run
//! on cuBLAS (im2col + GEMM, or cuDNN's forward with the `cudnn` feature):
//!
//! - input gradient: the output gradient, dilated by the stride and zero-padded, convolved
//!   with the spatially flipped, in/out-transposed kernel (a stride-1 `conv2d`);
//! - weight gradient: the input with batch and channel axes swapped, convolved with the output
//!   gradient (batch and channel swapped, made contiguous) at dilation = stride;
//! - 1x1 stride-1 convolutions are matmuls in both passes: forward `W · x[b]` as one batched
//!   matmul over the NCHW tensor with no copies, input gradient `Wᵀ · g[b]`, weight gradient one
//!   GEMM over all `b·h·w` positions.
//!
//! How it hooks into autograd: candle only lets code outside the crate attach a custom
//! backward through `CustomOp1/2/3`, whose forward receives raw storages, and the conv
//! parameters candle's storage-level `conv2d` needs (`ParamsConv2D`) cannot be built outside
//! candle. So the forward value is computed first with ordinary (untracked) tensor ops, handed
//! to a [`CustomOp2`] over `(x, w)`, and the op's forward returns a copy of that value's storage
//! (one device-to-device copy of the output, about 1 % of a layer's time). The precomputed
//! value is dropped right after, so activations are not held twice.
//!
//! The op is plain candle code: it runs, and is tested against candle's own conv2d and its
//! gradients, on the CPU. On the CPU it is also faster than candle's backward.
//!
//! Mixed precision: [`conv2d`] takes a compute dtype; with `Some(DType::BF16)` the input and
//! weight are cast to bf16 for the convolution (and for both backward convolutions, since the
//! gradient arrives in the op's dtype), and the output is cast back, so BatchNorm, the loss and
//! the optimizer stay in f32 (PyTorch autocast's policy for convolutions).

use candle_core::{bail, CpuStorage, CudaStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

use super::handover::HandedOver;

static BACKWARD_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many backward passes of [`conv2d`] this process has run (tests check which path the
/// convolutions of a network took).
pub fn backward_calls() -> u64 {
    BACKWARD_CALLS.load(std::sync::atomic::Ordering::Relaxed)
}

/// `x (b, ci, h, w)` convolved with `w (co, ci, kh, kw)`, zero padding `pad = (rows, columns)`
/// on each side, `stride` on both axes, no dilation or groups. The same value as
/// `x.pad_with_zeros(2, ph, ph)?.pad_with_zeros(3, pw, pw)?.conv2d(w, 0, stride, 1, 1)`, with the
/// backward pass described in the module doc. `compute` casts both operands (e.g. to bf16)
/// for the convolution and the result back to `x`'s dtype.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    pad: (usize, usize),
    compute: Option<DType>,
) -> Result<Tensor> {
    let out_dtype = x.dtype();
    let (x, w) = match compute {
        Some(dt) if dt != out_dtype => (x.to_dtype(dt)?, w.to_dtype(dt)?),
        _ => (x.clone(), w.clone()),
    };
    // Equal paddings go to candle's conv as one number; unequal ones (1x7, 7x1) are applied
    // as explicit zero padding, whose own backward is a cheap narrow.
    let (x, pad) = if pad.0 == pad.1 {
        (x, pad.0)
    } else {
        (
            x.pad_with_zeros(2, pad.0, pad.0)?
                .pad_with_zeros(3, pad.1, pad.1)?,
            0,
        )
    };
    let y = conv2d_square_pad(&x, &w, stride, pad)?;
    if y.dtype() != out_dtype {
        y.to_dtype(out_dtype)
    } else {
        Ok(y)
    }
}

/// The op itself, on tensors of one dtype and one padding for both axes.
fn conv2d_square_pad(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let (_, ci, h, wd) = x.dims4()?;
    let (co, ci_k, kh, kw) = w.dims4()?;
    if ci != ci_k {
        bail!("conv2d: input has {ci} channels, the kernel expects {ci_k}")
    }
    if stride == 0 || pad >= kh.min(kw) && pad > 0 {
        bail!("conv2d: unsupported stride {stride} / padding {pad} for a {kh}x{kw} kernel")
    }
    if h + 2 * pad < kh || wd + 2 * pad < kw {
        bail!("conv2d: a {kh}x{kw} kernel does not fit a {h}x{wd} input padded by {pad}")
    }
    let value = forward_value(&x.detach(), &w.detach(), stride, pad, co)?;
    if !x.track_op() && !w.track_op() {
        return Ok(value);
    }
    x.apply_op2(
        w,
        FastConv2d {
            stride,
            pad,
            value: HandedOver::new("fast-conv2d", value),
        },
    )
}

fn is_pointwise(w: &Tensor, stride: usize, pad: usize) -> bool {
    let (_, _, kh, kw) = w.dims4().unwrap_or((0, 0, 0, 0));
    (kh, kw, stride, pad) == (1, 1, 1, 0)
}

/// The forward value on untracked tensors.
fn forward_value(x: &Tensor, w: &Tensor, stride: usize, pad: usize, co: usize) -> Result<Tensor> {
    if is_pointwise(w, stride, pad) {
        // (co, ci) · (b, ci, h·w) → (b, co, h·w): one batched GEMM, no im2col copy.
        let (b, ci, h, wd) = x.dims4()?;
        let x3 = x.contiguous()?.reshape((b, ci, h * wd))?;
        let w2 = w.reshape((co, ci))?;
        return w2.broadcast_matmul(&x3)?.reshape((b, co, h, wd));
    }
    x.conv2d(w, pad, stride, 1, 1)
}

struct FastConv2d {
    stride: usize,
    pad: usize,
    /// The forward value, computed before the op is applied.
    value: HandedOver,
}

impl CustomOp2 for FastConv2d {
    fn name(&self) -> &'static str {
        "fast-conv2d"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.value.cpu()
    }

    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.value.cuda()
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        BACKWARD_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (x, w, g) = (x.detach(), w.detach(), g.detach().contiguous()?);
        Ok((
            Some(input_grad(&x, &w, &g, self.stride, self.pad)?),
            Some(weight_grad(&x, &w, &g, self.stride, self.pad)?),
        ))
    }
}

/// dL/dx for `y = conv(x, w, stride, pad)` given `g = dL/dy`.
pub(crate) fn input_grad(
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let (b, ci, h, wd) = x.dims4()?;
    let (co, _, kh, kw) = w.dims4()?;
    let (_, _, oh, ow) = g.dims4()?;
    if is_pointwise(w, stride, pad) {
        // (ci, co) · (b, co, h·w) → (b, ci, h·w).
        let wt = w.reshape((co, ci))?.t()?;
        return wt
            .broadcast_matmul(&g.reshape((b, co, oh * ow))?)?
            .reshape((b, ci, h, wd));
    }
    // Dilate the gradient by the stride: (oh-1)·s+1 rows with s-1 zeros between entries.
    let g = if stride > 1 {
        let z = g
            .reshape((b, co, oh, 1, ow, 1))?
            .pad_with_zeros(3, 0, stride - 1)?
            .pad_with_zeros(5, 0, stride - 1)?;
        z.reshape((b, co, oh * stride, ow * stride))?
            .narrow(2, 0, (oh - 1) * stride + 1)?
            .narrow(3, 0, (ow - 1) * stride + 1)?
    } else {
        g.clone()
    };
    // Full correlation with the flipped kernel; input rows/columns the forward never read
    // (a strided VALID conv's trailing border) get zero gradient through the extra padding.
    let pads = |k: usize, len: usize, dilated: usize| -> Result<(usize, usize)> {
        let before = (k - 1).checked_sub(pad).ok_or_else(|| {
            candle_core::Error::Msg("fast-conv2d: padding larger than the kernel".into())
        })?;
        let after = (len + k - 1)
            .checked_sub(before + dilated)
            .ok_or_else(|| candle_core::Error::Msg("fast-conv2d: inconsistent shapes".into()))?;
        Ok((before, after))
    };
    let (top, bottom) = pads(kh, h, g.dim(2)?)?;
    let (left, right) = pads(kw, wd, g.dim(3)?)?;
    let g = g
        .pad_with_zeros(2, top, bottom)?
        .pad_with_zeros(3, left, right)?;
    let wf = w.flip(&[2, 3])?.transpose(0, 1)?.contiguous()?; // (ci, co, kh, kw)
    g.conv2d(&wf, 0, 1, 1, 1)
}

/// dL/dw for `y = conv(x, w, stride, pad)` given `g = dL/dy`.
pub(crate) fn weight_grad(
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let (b, ci, h, wd) = x.dims4()?;
    let (co, _, kh, kw) = w.dims4()?;
    let (_, _, oh, ow) = g.dims4()?;
    if is_pointwise(w, stride, pad) {
        // (co, b·h·w) · (b·h·w, ci): one GEMM over every position of the batch.
        let gt = g
            .transpose(0, 1)?
            .contiguous()?
            .reshape((co, b * oh * ow))?;
        let xt = x.transpose(0, 1)?.contiguous()?.reshape((ci, b * h * wd))?;
        return gt.matmul(&xt.t()?)?.reshape((co, ci, 1, 1));
    }
    // (ci, b, h, w) ⋆ (co, b, oh, ow) at dilation = stride → (ci, co, kh', kw'), kh' ≥ kh.
    let xt = x.transpose(0, 1)?;
    let gt = g.transpose(0, 1)?.contiguous()?;
    let gw = xt.conv2d(&gt, pad, 1, stride, 1)?.transpose(0, 1)?;
    let (_, _, gh, gwd) = gw.dims4()?;
    let gw = if (gh, gwd) != (kh, kw) {
        gw.narrow(2, 0, kh)?.narrow(3, 0, kw)?
    } else {
        gw
    };
    gw.contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        crate::numeric::max_abs_diff(a, b).unwrap()
    }

    /// Forward values and both gradients equal candle's own conv2d and its autograd, for every
    /// kernel/stride/padding shape the four networks use, square and non-square inputs.
    #[test]
    fn matches_candle_conv_and_its_gradients() {
        let dev = Device::Cpu;
        #[allow(clippy::type_complexity)]
        let cases: &[((usize, usize), usize, (usize, usize), (usize, usize))] = &[
            ((1, 1), 1, (0, 0), (7, 7)),
            ((3, 3), 1, (1, 1), (7, 7)),
            ((3, 3), 1, (0, 0), (9, 8)),
            ((3, 3), 2, (0, 0), (9, 9)),
            ((3, 3), 2, (0, 0), (10, 10)),
            ((1, 7), 1, (0, 3), (6, 8)),
            ((7, 1), 1, (3, 0), (8, 6)),
            ((1, 3), 1, (0, 1), (5, 5)),
            ((3, 1), 1, (1, 0), (5, 5)),
            ((5, 5), 1, (2, 2), (6, 6)),
            ((1, 1), 2, (0, 0), (7, 7)),
        ];
        for (i, &((kh, kw), stride, pad, (h, wd))) in cases.iter().enumerate() {
            let x =
                Var::from_tensor(&Tensor::randn(0f64, 1., (2, 3, h, wd), &dev).unwrap()).unwrap();
            let w =
                Var::from_tensor(&Tensor::randn(0f64, 1., (4, 3, kh, kw), &dev).unwrap()).unwrap();
            let reference = x
                .pad_with_zeros(2, pad.0, pad.0)
                .unwrap()
                .pad_with_zeros(3, pad.1, pad.1)
                .unwrap()
                .conv2d(&w, 0, stride, 1, 1)
                .unwrap();
            let ours = conv2d(&x, &w, stride, pad, None).unwrap();
            assert_eq!(ours.dims(), reference.dims(), "case {i}");
            assert!(max_diff(&ours, &reference) < 1e-12, "case {i}: forward");
            let r = Tensor::randn(0f64, 1., ours.shape(), &dev).unwrap();
            let g_ref = (&reference * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g_ours = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("input", &x), ("weight", &w)] {
                let (a, b) = (
                    g_ours.get(v.as_tensor()).unwrap(),
                    g_ref.get(v.as_tensor()).unwrap(),
                );
                assert_eq!(a.dims(), b.dims(), "case {i}: {name} gradient shape");
                assert!(
                    max_diff(a, b) < 1e-10,
                    "case {i}: {name} gradient differs by {}",
                    max_diff(a, b)
                );
            }
        }
    }

    /// Non-square stride-2 inputs of mixed parity, where candle's own backward fails (it derives
    /// the output padding of both axes from the height): checked against finite differences.
    #[test]
    fn mixed_parity_stride_two_matches_finite_differences() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1., (1, 2, 8, 7), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f64, 1., (3, 2, 3, 3), &dev).unwrap()).unwrap();
        let y = conv2d(&x, &w, 2, (0, 0), None).unwrap();
        let r = Tensor::randn(0f64, 1., y.shape(), &dev).unwrap();
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for var in [&x, &w] {
            let analytic = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let base = var.as_tensor().copy().unwrap();
            let flat = base.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            for j in 0..flat.len() {
                let at = |d: f64| {
                    let mut v = flat.clone();
                    v[j] += d;
                    var.set(&Tensor::from_vec(v, base.shape(), &dev).unwrap())
                        .unwrap();
                    (conv2d(&x, &w, 2, (0, 0), None).unwrap() * &r)
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f64>()
                        .unwrap()
                };
                let numeric = (at(1e-6) - at(-1e-6)) / 2e-6;
                assert!(
                    (numeric - analytic[j]).abs() < 1e-6 * (1.0 + numeric.abs()),
                    "entry {j}: {numeric} vs {}",
                    analytic[j]
                );
            }
            var.set(&base).unwrap();
        }
    }

    /// bf16 compute: f32 in and out, values and gradients close to the f32 ones. candle's CPU
    /// matmul has no bf16, so this runs only where a GPU is visible (CUDA builds).
    #[test]
    fn bf16_compute_keeps_f32_outside_and_stays_close() {
        let Ok(dev) = Device::new_cuda(0) else {
            eprintln!("no CUDA device: bf16 convolution test skipped");
            return;
        };
        let x = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 8, 9, 9), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(
            &(Tensor::randn(0f32, 1., (6, 8, 3, 3), &dev).unwrap() * 0.1).unwrap(),
        )
        .unwrap();
        let full = conv2d(&x, &w, 2, (0, 0), None).unwrap();
        let half = conv2d(&x, &w, 2, (0, 0), Some(DType::BF16)).unwrap();
        assert_eq!(half.dtype(), DType::F32);
        let scale = crate::numeric::max_abs(&full).unwrap();
        assert!(max_diff(&full, &half) < 0.02 * scale);
        let gf = full.sum_all().unwrap().backward().unwrap();
        let gh = half.sum_all().unwrap().backward().unwrap();
        let (a, b) = (
            gf.get(w.as_tensor()).unwrap(),
            gh.get(w.as_tensor()).unwrap(),
        );
        assert_eq!(b.dtype(), DType::F32);
        let scale = crate::numeric::max_abs(a).unwrap();
        assert!(
            max_diff(a, b) < 0.02 * scale,
            "{} vs scale {scale}",
            max_diff(a, b)
        );
    }

    /// Untracked inputs (evaluation) skip the op entirely.
    #[test]
    fn untracked_inputs_give_a_plain_tensor() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (1, 2, 5, 5), &dev).unwrap();
        let w = Tensor::randn(0f32, 1., (3, 2, 1, 1), &dev).unwrap();
        let y = conv2d(&x, &w, 1, (0, 0), None).unwrap();
        assert!(!y.track_op());
        assert!(max_diff(&y, &x.conv2d(&w, 0, 1, 1, 1).unwrap()) < 1e-5);
    }
}
