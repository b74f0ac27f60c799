//! Every fast op against stock candle: forward values and gradients on random shapes (odd
//! sizes, stride 2, batch 1, asymmetric kernels), f32 and f64.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{BatchNorm, BatchNormConfig, VarBuilder, VarMap};

use super::bn::{bn_relu, stock_bn_relu};
use super::conv::conv2d;
use super::inference::inference_keeping;
use super::pool::{avg_pool_same, max_pool};
use super::residual::{scaled_residual, stock_scaled_residual};
use super::testing::Lcg;
use super::weight_cache::WeightCache;
use crate::models::pool::{Pool2d, PoolKind};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    crate::numeric::max_abs_diff(a, b).unwrap()
}

/// A standard-normal tensor of `shape` in `dtype`.
fn randn(shape: &[usize], dtype: DType) -> Tensor {
    Tensor::randn(0f32, 1., shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// The gradients of `Σ y·r`.
fn grads_of(y: &Tensor, r: &Tensor) -> candle_core::backprop::GradStore {
    (y * r).unwrap().sum_all().unwrap().backward().unwrap()
}

fn scale(t: &Tensor) -> f64 {
    1.0 + crate::numeric::max_abs(t).unwrap()
}

fn close(what: &str, a: &Tensor, b: &Tensor, tol: f64) {
    let d = max_abs_diff(a, b);
    assert!(
        d <= tol * scale(b),
        "{what}: max diff {d} (scale {})",
        scale(b)
    );
}

fn tol(dtype: DType) -> f64 {
    if dtype == DType::F32 {
        1e-4
    } else {
        1e-10
    }
}

/// Stock candle's convolution, made to work where its backward cannot: padded per axis
/// explicitly, and cropped to the rows/columns the strided window reads (candle's conv backward
/// derives the output padding of both axes from the height).
fn stock_conv2d(
    x: &Tensor,
    w: &Tensor,
    pad: (usize, usize),
    stride: usize,
) -> candle_core::Result<Tensor> {
    let (_, _, kh, kw) = w.dims4()?;
    let x = x
        .pad_with_zeros(2, pad.0, pad.0)?
        .pad_with_zeros(3, pad.1, pad.1)?;
    let (_, _, h, wd) = x.dims4()?;
    let used = |len: usize, k: usize| (len - k) / stride * stride + k;
    x.narrow(2, 0, used(h, kh))?
        .narrow(3, 0, used(wd, kw))?
        .conv2d(w, 0, stride, 1, 1)
}

/// The fast convolution of `x` and `wt` against stock candle's: the forward values, and the
/// input and weight gradients of `Σ y·r` for a random `r`, within `tol` (relative to scale).
fn conv_matches_stock(what: &str, x: &Var, wt: &Var, pad: (usize, usize), stride: usize, tol: f64) {
    let fast = conv2d(x.as_tensor(), wt.as_tensor(), pad, stride).unwrap();
    let stock = stock_conv2d(x.as_tensor(), wt.as_tensor(), pad, stride).unwrap();
    close(&format!("{what} forward"), &fast, &stock, tol);
    let r = randn(stock.dims(), x.dtype());
    let (gf, gs) = (grads_of(&fast, &r), grads_of(&stock, &r));
    for (name, v) in [("dx", x), ("dw", wt)] {
        close(
            &format!("{what} {name}"),
            gf.get(v.as_tensor()).unwrap(),
            gs.get(v.as_tensor()).unwrap(),
            tol,
        );
    }
}

#[test]
fn conv_matches_stock_forward_and_gradients() {
    let dev = Device::Cpu;
    let mut rng = Lcg(7);
    let kernels = [
        (1, 1),
        (3, 3),
        (1, 7),
        (7, 1),
        (1, 3),
        (3, 1),
        (5, 5),
        (2, 3),
    ];
    for case in 0..40 {
        let dtype = if case % 3 == 0 {
            DType::F64
        } else {
            DType::F32
        };
        let (kh, kw) = rng.pick(&kernels);
        let stride = rng.pick(&[1, 1, 2]);
        let pad = if stride == 1 && rng.below(3) > 0 {
            (kh / 2, kw / 2)
        } else {
            (rng.below(2), rng.below(2))
        };
        let n = rng.pick(&[1, 2, 3]);
        let (c, o) = (1 + rng.below(9), 1 + rng.below(9));
        let h = kh + rng.below(9);
        let w = kw + rng.below(10);
        let x = Var::from_tensor(
            &Tensor::randn(0f32, 1., (n, c, h, w), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
        let wt = Var::from_tensor(
            &Tensor::randn(0f32, 1., (o, c, kh, kw), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
        let what = format!(
            "case {case}: x {:?} w {:?} stride {stride} pad {pad:?} {dtype:?}",
            x.dims(),
            wt.dims()
        );
        conv_matches_stock(&what, &x, &wt, pad, stride, tol(dtype));
    }
}

/// Large maps take the per-image banded path (small ones one GEMM for the whole batch); bands
/// smaller than the map are exercised by many channels.
#[test]
fn conv_large_maps_match_stock() {
    let dev = Device::Cpu;
    for (n, c, h, w, o, k, stride, pad) in [
        (2, 3, 23, 27, 4, (3, 3), 1, (1, 1)),
        (3, 5, 24, 21, 6, (1, 1), 1, (0, 0)),
        (2, 4, 45, 41, 3, (3, 3), 2, (0, 0)),
        (1, 4, 30, 30, 5, (1, 7), 1, (0, 3)),
        (2, 300, 33, 31, 2, (3, 3), 1, (1, 1)),
        (2, 64, 29, 29, 3, (7, 1), 1, (3, 0)),
    ] {
        let x = Var::from_tensor(&Tensor::randn(0f64, 1., (n, c, h, w), &dev).unwrap()).unwrap();
        let wt =
            Var::from_tensor(&Tensor::randn(0f64, 1., (o, c, k.0, k.1), &dev).unwrap()).unwrap();
        let what = format!("x {:?} w {:?} stride {stride}", x.dims(), wt.dims());
        conv_matches_stock(&what, &x, &wt, pad, stride, 1e-10);
    }
}

/// Convolutions with enough tiles and channels go through Winograd (`conv/winograd.rs`):
/// forward, the input gradient (a stride-1 convolution itself) and the weight gradient match
/// stock candle's in f64 and f32. 3×3 SAME and VALID (F(4, 3) on both axes, partial tiles at the
/// edges), 5×5 (F(2, 5)), 1×7 and 7×1 (F(2, 7) along one axis, on 17×17 maps as in the
/// networks); `winograd.rs` checks every kernel against the definition.
#[test]
fn winograd_convolutions_match_stock() {
    let before = super::conv::winograd_calls();
    let cases = [
        (4, 32, 36, 36, 32, (3, 3), (1, 1)),
        (5, 33, 31, 30, 32, (3, 3), (0, 0)),
        (3, 32, 25, 25, 34, (5, 5), (2, 2)),
        (2, 32, 17, 17, 40, (1, 7), (0, 3)),
        (2, 40, 17, 17, 32, (7, 1), (3, 0)),
    ];
    for (n, c, h, w, o, k, pad) in cases {
        for dtype in [DType::F64, DType::F32] {
            let x = Var::from_tensor(&randn(&[n, c, h, w], dtype)).unwrap();
            let wt = Var::from_tensor(&randn(&[o, c, k.0, k.1], dtype)).unwrap();
            let what = format!("x {:?} w {:?} pad {pad:?} {dtype:?}", x.dims(), wt.dims());
            conv_matches_stock(&what, &x, &wt, pad, 1, tol(dtype));
        }
    }
    // Forward, input gradient and weight gradient of every case, in both types.
    let took = super::conv::winograd_calls() - before;
    if super::conv::winograd_enabled() {
        assert!(took >= 3 * 2 * cases.len() as u64, "{took} Winograd passes");
    }
}

/// A convolution case: `(n, c, h, w, o, kernel, padding)`.
type ConvCase = (
    usize,
    usize,
    usize,
    usize,
    usize,
    (usize, usize),
    (usize, usize),
);

/// Each case convolved in an inference pass (f32): equal to stock candle, and with a BatchNorm
/// (far from the identity) and ReLU fused into it, equal to the two ops bit for bit.
fn inference_convolutions_match_stock(cases: &[ConvCase], rng: &mut Lcg) {
    for &(n, c, h, w, o, k, pad) in cases {
        let what = format!("{n}×{c}×{h}×{w}, {o}×{}×{} pad {pad:?}", k.0, k.1);
        let x = randn(&[n, c, h, w], DType::F32);
        let wt = randn(&[o, c, k.0, k.1], DType::F32);
        let fast = super::inference(|| conv2d(&x, &wt, pad, 1)).unwrap();
        let stock = stock_conv2d(&x, &wt, pad, 1).unwrap();
        close(&what, &fast, &stock, tol(DType::F32));
        let (_, bns) = twin_batch_norms(o, DType::F32, rng);
        let fused = super::inference(|| super::conv_bn_relu(&x, &wt, (pad, 1), &bns[0], false));
        let two = bn_relu(&fast, &bns[1], false).unwrap();
        assert_eq!(max_abs_diff(&fused.unwrap(), &two), 0.0, "{what}: fused");
    }
}

/// The 1×7 and 7×1 convolutions of inference passes on enough channels go through Winograd's
/// F(2, 7) along one axis (its transforms straight from the image rows, or from each short row's
/// windows): equal to stock candle on maps of 17 (the networks'), of 16 and of 23 (the rows'
/// windows past 32 entries, and not split into phases), with batches that leave partial blocks,
/// and the fused BatchNorm+ReLU equal to the two ops bit for bit.
#[test]
fn one_axis_winograd_in_inference_matches_stock() {
    let mut rng = Lcg(59);
    let before = (super::conv::winograd_calls(), super::conv::implicit_calls());
    let cases: [ConvCase; 4] = [
        (3, 64, 17, 17, 96, (1, 7), (0, 3)),
        (3, 96, 17, 17, 64, (7, 1), (3, 0)),
        (2, 48, 16, 23, 64, (1, 7), (0, 3)),
        (2, 64, 23, 16, 48, (7, 1), (3, 0)),
    ];
    inference_convolutions_match_stock(&cases, &mut rng);
    if super::conv::winograd_enabled() {
        let took = super::conv::winograd_calls() - before.0;
        assert_eq!(took, 2 * cases.len() as u64, "Winograd passes");
        assert_eq!(
            super::conv::implicit_calls(),
            before.1,
            "implicit GEMM passes"
        );
    }
}

/// Stride-1 convolutions through the implicit GEMM (inference only): SAME 3×3, 1×7, 7×1 and
/// 5×5 kernels, a VALID 3×3 (output rows narrower than the input's), non-square maps, a batch
/// that does not share out evenly over the threads and a batch of one (images split by
/// columns). Equal to stock candle, and the fused BatchNorm+ReLU equal to the two ops bit for
/// bit.
#[test]
fn implicit_convolutions_match_stock() {
    let mut rng = Lcg(53);
    let before = super::conv::implicit_calls();
    let cases: [ConvCase; 6] = [
        (3, 32, 35, 35, 32, (3, 3), (1, 1)),
        (2, 32, 17, 19, 48, (1, 7), (0, 3)),
        (4, 48, 17, 17, 40, (7, 1), (3, 0)),
        (2, 16, 21, 23, 24, (3, 3), (0, 0)),
        (2, 24, 20, 18, 32, (5, 5), (2, 2)),
        (1, 8, 16, 40, 8, (3, 3), (1, 1)),
    ];
    inference_convolutions_match_stock(&cases, &mut rng);
    // Each case twice (the convolution alone, then with its BatchNorm and ReLU).
    let took = super::conv::implicit_calls() - before;
    if super::conv::implicit_available() {
        assert!(took >= 2 * cases.len() as u64, "{took} implicit passes");
    }
}

/// The end of an Inception-ResNet unit with the sum done on each image's projection
/// (inference): bit for bit the convolution followed by `scaled_residual`, with and without the
/// ReLU, in both types, for a batch of one and one that does not share out evenly; not taken
/// outside an inference pass, nor where the projection is one product over the whole batch
/// (small maps).
#[test]
fn projection_onto_trunk_is_the_two_ops_bit_for_bit() {
    use super::project_onto_trunk;
    // (n, branch channels, h, w, trunk channels)
    let cases = [(3, 24, 9, 9, 16), (2, 40, 17, 17, 32), (1, 16, 8, 8, 24)];
    for dtype in [DType::F64, DType::F32] {
        for (n, k, h, w, o) in cases {
            let (x, y) = (randn(&[n, o, h, w], dtype), randn(&[n, k, h, w], dtype));
            let (wt, bias) = (randn(&[o, k, 1, 1], dtype), randn(&[o], dtype));
            for relu in [true, false] {
                let what = format!("{dtype:?} {n}×{k}×{h}×{w} → {o}, relu {relu}");
                let fused = super::inference(|| project_onto_trunk(&x, &y, &wt, &bias, 0.17, relu))
                    .unwrap()
                    .unwrap_or_else(|| panic!("{what}: not taken"));
                let two = super::inference(|| {
                    let u = conv2d(&y, &wt, (0, 0), 1)?;
                    scaled_residual(&x, &u, &bias, 0.17, relu)
                })
                .unwrap();
                assert_eq!(max_abs_diff(&fused, &two), 0.0, "{what}");
                let negative = two.lt(0.0).unwrap().to_dtype(DType::F64).unwrap();
                let negative = negative.mean_all().unwrap().to_scalar::<f64>().unwrap();
                assert_eq!(negative > 0.0, !relu, "{what}: negatives {negative}");
            }
            let outside = project_onto_trunk(&x, &y, &wt, &bias, 0.17, true).unwrap();
            assert!(outside.is_none(), "taken outside an inference pass");
        }
    }
    let (x, y) = (
        randn(&[2, 8, 5, 5], DType::F32),
        randn(&[2, 12, 5, 5], DType::F32),
    );
    let (wt, bias) = (randn(&[8, 12, 1, 1], DType::F32), randn(&[8], DType::F32));
    let small = super::inference(|| project_onto_trunk(&x, &y, &wt, &bias, 0.17, true)).unwrap();
    assert!(small.is_none(), "taken on 5×5 maps");
}

/// Convolutions on transforms of their weights inside an inference pass that keeps them (a 3×3
/// through Winograd's F(4, 3), a 1×7 through F(2, 7), in inference only; a 3×3 on few channels
/// and a 7×1 through the implicit GEMM's packed weights): equal to the reference on the first
/// pass, on the next (from the kept transform), and after the weights changed in place between
/// two passes.
#[test]
fn kept_weight_transforms_follow_their_weights() {
    let cache = std::sync::Arc::new(WeightCache::default());
    for (n, c, h, w, o, k, pad) in [
        (4, 32, 36, 36, 96, (3, 3), (1, 1)),
        (2, 200, 17, 17, 200, (1, 7), (0, 3)),
        (2, 32, 35, 35, 32, (3, 3), (1, 1)),
        (2, 32, 17, 17, 40, (7, 1), (3, 0)),
    ] {
        let x = randn(&[n, c, h, w], DType::F32);
        let wt = Var::from_tensor(&randn(&[o, c, k.0, k.1], DType::F32)).unwrap();
        let kept_before = cache.len();
        for pass in 0..3 {
            if pass == 2 {
                wt.set(&randn(&[o, c, k.0, k.1], DType::F32)).unwrap();
            }
            let fast = inference_keeping(&cache, || conv2d(&x, wt.as_tensor(), pad, 1)).unwrap();
            let stock = stock_conv2d(&x, wt.as_tensor(), pad, 1).unwrap();
            let what = format!("{k:?} kernel, pass {pass}");
            close(&what, &fast, &stock, tol(DType::F32));
        }
        if super::conv::keeps_weight_transforms() {
            assert_eq!(cache.len(), kept_before + 1, "{k:?}: one transform kept");
        }
    }
}

/// Maps smaller than the kernel's reach (the CIFAR-10-scale networks' 3×3 and 1×1 grids): the
/// taps that only read padding are cropped from the kernel, and their weight gradient is zero.
#[test]
fn conv_on_maps_smaller_than_the_kernel_matches_stock() {
    for (n, c, h, w, o, k, stride, pad) in [
        (3, 5, 3, 3, 4, (1, 7), 1, (0, 3)),
        (3, 5, 3, 3, 4, (7, 1), 1, (3, 0)),
        (4, 6, 1, 1, 3, (1, 3), 1, (0, 1)),
        (4, 6, 1, 1, 3, (3, 1), 1, (1, 0)),
        (2, 3, 1, 1, 5, (3, 3), 1, (1, 1)),
        (1, 3, 2, 2, 2, (5, 5), 1, (2, 2)),
        (2, 4, 3, 2, 3, (5, 5), 2, (2, 2)),
        (1, 2, 410, 1, 3, (3, 3), 1, (1, 1)),
    ] {
        for dtype in [DType::F64, DType::F32] {
            let x = Var::from_tensor(&randn(&[n, c, h, w], dtype)).unwrap();
            let wt = Var::from_tensor(&randn(&[o, c, k.0, k.1], dtype)).unwrap();
            let what = format!(
                "x {:?} w {:?} stride {stride} pad {pad:?} {dtype:?}",
                x.dims(),
                wt.dims()
            );
            conv_matches_stock(&what, &x, &wt, pad, stride, tol(dtype));
        }
    }
}

/// Pointwise convolutions of 1×1 maps read a channel slice where it lies (image stride larger
/// than its channels) and hand back gradients of the same values.
#[test]
fn pointwise_on_1x1_maps_takes_channel_slices() {
    let dev = Device::Cpu;
    for n in [1, 5, 40] {
        let big = Var::from_tensor(&Tensor::randn(0f64, 1., (n, 9, 1, 1), &dev).unwrap()).unwrap();
        let x = big.as_tensor().narrow(1, 3, 4).unwrap();
        let wt = Var::from_tensor(&Tensor::randn(0f64, 1., (70, 4, 1, 1), &dev).unwrap()).unwrap();
        let fast = conv2d(&x, wt.as_tensor(), (0, 0), 1).unwrap();
        let stock = stock_conv2d(&x, wt.as_tensor(), (0, 0), 1).unwrap();
        close(&format!("n {n} forward"), &fast, &stock, 1e-12);
        let r = Tensor::randn(0f64, 1., stock.shape(), &dev).unwrap();
        let (gf, gs) = (grads_of(&fast, &r), grads_of(&stock, &r));
        for (name, v) in [("dx", &big), ("dw", &wt)] {
            close(
                &format!("n {n} {name}"),
                gf.get(v.as_tensor()).unwrap(),
                gs.get(v.as_tensor()).unwrap(),
                1e-12,
            );
        }
    }
}

/// `fast` against `reference` on a channel slice of a larger variable (as a branch of a
/// concatenation takes its input), each output concatenated with `extra` other channels (before
/// it with `extra_first`) ahead of the loss, so that the gradient arriving is a channel slice
/// too: the outputs and the variable's gradients compared.
fn check_on_channel_slices(
    what: &str,
    (n, c, hw): (usize, usize, (usize, usize)),
    (extra, extra_first): (usize, bool),
    fast: impl Fn(&Tensor) -> Tensor,
    reference: impl Fn(&Tensor) -> Tensor,
) {
    let dev = Device::Cpu;
    let shape = (n, c + 3, hw.0, hw.1);
    let big = Var::from_tensor(&Tensor::randn(0f64, 1., shape, &dev).unwrap()).unwrap();
    let x = big.as_tensor().narrow(1, 2, c).unwrap();
    let (fast, stock) = (fast(&x), reference(&x));
    close(&format!("{what} forward"), &fast, &stock, 1e-12);
    let (oh, ow) = (stock.dim(2).unwrap(), stock.dim(3).unwrap());
    let other = Tensor::randn(0f64, 1., (n, extra, oh, ow), &dev).unwrap();
    let loss = |y: &Tensor| {
        let parts = if extra_first {
            [&other, y]
        } else {
            [y, &other]
        };
        Tensor::cat(&parts, 1)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let (gf, gs) = (
        loss(&fast).backward().unwrap(),
        loss(&stock).backward().unwrap(),
    );
    close(
        &format!("{what} dx"),
        gf.get(big.as_tensor()).unwrap(),
        gs.get(big.as_tensor()).unwrap(),
        1e-12,
    );
}

/// The input may be a channel slice of a larger tensor (as a branch of a concatenation is), and
/// the gradient arriving may be one too.
#[test]
fn conv_takes_channel_slices() {
    // Small maps (im2col), and maps large enough for Winograd (the output gradient a slice too).
    for (n, c, hw, o) in [(3, 4, (6, 5), 6), (4, 32, (36, 34), 32)] {
        let wt = Tensor::randn(0f64, 1., (o, c, 3, 3), &Device::Cpu).unwrap();
        check_on_channel_slices(
            &format!("conv on {n}×{c}×{}×{}", hw.0, hw.1),
            (n, c, hw),
            (2, false),
            |x| conv2d(x, &wt, (1, 1), 1).unwrap(),
            |x| stock_conv2d(x, &wt, (1, 1), 1).unwrap(),
        );
    }
}

/// The pools too take a channel slice as input and a slice of a concatenation's gradient as
/// their output's gradient, on the maps of the networks at the CIFAR-10 scale (1×1 included,
/// where an average pool is the identity or a scaling).
#[test]
fn pools_take_channel_slices() {
    for (n, c, hw) in [
        (3, 4, (1, 1)),
        (2, 5, (3, 3)),
        (3, 3, (7, 7)),
        (2, 2, (9, 8)),
    ] {
        for (i, pool) in [
            Pool2d::max_3x3_s2(),
            Pool2d::avg_3x3_same(PoolKind::AvgExcludePad),
            Pool2d::avg_3x3_same(PoolKind::AvgIncludePad),
        ]
        .into_iter()
        .enumerate()
        {
            if pool.kind == PoolKind::Max && hw.0 < 3 {
                continue;
            }
            check_on_channel_slices(
                &format!("{pool:?} on {n}×{c}×{}×{}", hw.0, hw.1),
                (n, c, hw),
                (1 + i, true),
                |x| match pool.kind {
                    PoolKind::Max => max_pool(x, pool.kernel, pool.stride).unwrap(),
                    k => avg_pool_same(x, pool.padding, k == PoolKind::AvgIncludePad).unwrap(),
                },
                // (candle's own pooling takes contiguous inputs only)
                |x| pool.stock_forward(&x.contiguous().unwrap()).unwrap(),
            );
        }
    }
}

/// Two BatchNorms of `c` channels, each in its own VarMap (under `bn.`), with the same
/// non-trivial parameters and running statistics (γ, σ² and μ in [0.5, 1.5), β in [-0.5, 0.5))
/// and a momentum of 0.1–0.5.
fn twin_batch_norms(c: usize, dtype: DType, rng: &mut Lcg) -> ([VarMap; 2], Vec<BatchNorm>) {
    let dev = Device::Cpu;
    let cfg = BatchNormConfig {
        eps: 1e-3,
        momentum: 0.1 + 0.1 * rng.below(5) as f64,
        ..Default::default()
    };
    let maps = [VarMap::new(), VarMap::new()];
    let bns: Vec<_> = maps
        .iter()
        .map(|m| {
            candle_nn::batch_norm(c, cfg, VarBuilder::from_varmap(m, dtype, &dev).pp("bn")).unwrap()
        })
        .collect();
    for name in ["weight", "bias", "running_mean", "running_var"] {
        let v = (Tensor::rand(0.5f32, 1.5, c, &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
            - if name == "bias" { 1.0 } else { 0.0 })
        .unwrap();
        for m in &maps {
            m.data().lock().unwrap()[&format!("bn.{name}")]
                .set(&v)
                .unwrap();
        }
    }
    (maps, bns)
}

#[test]
fn bn_relu_matches_stock_in_training_and_evaluation() {
    let dev = Device::Cpu;
    let mut rng = Lcg(11);
    for case in 0..16 {
        let dtype = if case % 2 == 0 {
            DType::F64
        } else {
            DType::F32
        };
        let (n, c, h, w) = (
            1 + rng.below(3),
            1 + rng.below(7),
            1 + rng.below(6),
            2 + rng.below(6),
        );
        let (maps, bns) = twin_batch_norms(c, dtype, &mut rng);
        for train in [true, false] {
            let x = Var::from_tensor(
                &(Tensor::randn(0.3f32, 2., (n, c, h, w), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap()),
            )
            .unwrap();
            let what = format!("case {case} {:?} {dtype:?} train {train}", x.dims());
            let fast = bn_relu(x.as_tensor(), &bns[0], train).unwrap();
            let stock = stock_bn_relu(x.as_tensor(), &bns[1], train).unwrap();
            close(&format!("{what} forward"), &fast, &stock, tol(dtype));
            for name in ["running_mean", "running_var"] {
                let get = |m: &VarMap| {
                    m.data().lock().unwrap()[&format!("bn.{name}")]
                        .as_tensor()
                        .copy()
                        .unwrap()
                };
                close(
                    &format!("{what} {name}"),
                    &get(&maps[0]),
                    &get(&maps[1]),
                    tol(dtype),
                );
            }
            let r = randn(stock.dims(), dtype);
            let (gf, gs) = (grads_of(&fast, &r), grads_of(&stock, &r));
            close(
                &format!("{what} dx"),
                gf.get(x.as_tensor()).unwrap(),
                gs.get(x.as_tensor()).unwrap(),
                tol(dtype),
            );
            for name in ["weight", "bias"] {
                let var = |m: &VarMap| {
                    m.data().lock().unwrap()[&format!("bn.{name}")]
                        .as_tensor()
                        .clone()
                };
                let (a, b) = (var(&maps[0]), var(&maps[1]));
                close(
                    &format!("{what} d{name}"),
                    gf.get(&a).unwrap(),
                    gs.get(&b).unwrap(),
                    tol(dtype),
                );
            }
        }
    }
}

/// The fused node (training) is the convolution followed by the BatchNorm + ReLU op bit for bit:
/// output, running statistics, and the gradients of the input, the kernel, γ and β.
#[test]
fn conv_bn_relu_is_the_two_ops_bit_for_bit() {
    let mut rng = Lcg(23);
    for case in 0..12 {
        let dtype = [DType::F64, DType::F32][case % 2];
        let (n, c, o) = (1 + rng.below(3), 1 + rng.below(6), 1 + rng.below(7));
        let (kh, kw) = rng.pick(&[(1, 1), (3, 3), (1, 7), (7, 1), (3, 1)]);
        let stride = 1 + rng.below(2);
        let pad = if stride == 1 {
            (kh / 2, kw / 2)
        } else {
            (0, 0)
        };
        let (h, w) = (kh + rng.below(9), kw + rng.below(9));
        let (maps, bns) = twin_batch_norms(o, dtype, &mut rng);
        let x = Var::from_tensor(&randn(&[n, c, h, w], dtype)).unwrap();
        let wt = Var::from_tensor(&(randn(&[o, c, kh, kw], dtype) * 0.3).unwrap()).unwrap();
        let what = format!(
            "case {case} {dtype:?} x {:?} w {:?} stride {stride}",
            x.dims(),
            wt.dims()
        );
        let fused =
            super::conv_bn_relu(x.as_tensor(), wt.as_tensor(), (pad, stride), &bns[0], true)
                .unwrap();
        let y = conv2d(x.as_tensor(), wt.as_tensor(), pad, stride).unwrap();
        let two = bn_relu(&y, &bns[1], true).unwrap();
        let same = |what: &str, a: &Tensor, b: &Tensor| {
            assert_eq!(max_abs_diff(a, b), 0.0, "{what}");
        };
        same(&format!("{what} forward"), &fused, &two);
        let var = |m: &VarMap, name: &str| {
            m.data().lock().unwrap()[&format!("bn.{name}")]
                .as_tensor()
                .clone()
        };
        for name in ["running_mean", "running_var"] {
            let (a, b) = (var(&maps[0], name), var(&maps[1], name));
            same(&format!("{what} {name}"), &a, &b);
        }
        let r = randn(two.dims(), dtype);
        let (gf, gt) = (grads_of(&fused, &r), grads_of(&two, &r));
        for (name, t) in [("dx", x.as_tensor()), ("dw", wt.as_tensor())] {
            same(
                &format!("{what} {name}"),
                gf.get(t).unwrap(),
                gt.get(t).unwrap(),
            );
        }
        for name in ["weight", "bias"] {
            let (a, b) = (var(&maps[0], name), var(&maps[1], name));
            same(
                &format!("{what} d{name}"),
                gf.get(&a).unwrap(),
                gt.get(&b).unwrap(),
            );
        }
    }
}

/// In evaluation the fused node writes BatchNorm+ReLU into the convolution's outputs as they
/// are produced, on every path of the forward pass: 1×1 maps, the whole-batch GEMM (pointwise
/// and im2col), image by image (pointwise and in bands of rows, stride 2), Winograd (3×3, 1×7)
/// and a kernel cropped to a 1×1 map. Values and gradients equal the two ops', bit for bit.
#[test]
fn conv_bn_relu_in_evaluation_is_the_two_ops_bit_for_bit() {
    let mut rng = Lcg(41);
    // (n, c, o, h×w, kernel, stride, padding)
    let cases = [
        (8, 5, 6, (1, 1), (1, 1), 1, (0, 0)),
        (2, 6, 5, (7, 7), (1, 1), 1, (0, 0)),
        (2, 6, 5, (9, 9), (3, 3), 1, (1, 1)),
        (2, 4, 7, (21, 21), (1, 1), 1, (0, 0)),
        (2, 3, 5, (45, 45), (3, 3), 2, (0, 0)),
        (2, 5, 4, (21, 22), (1, 7), 1, (0, 3)),
        (4, 32, 32, (35, 35), (3, 3), 1, (1, 1)),
        (2, 32, 33, (17, 19), (1, 7), 1, (0, 3)),
        (2, 32, 32, (17, 17), (7, 1), 1, (3, 0)),
        (8, 4, 6, (1, 1), (3, 3), 1, (1, 1)),
    ];
    for dtype in [DType::F64, DType::F32] {
        for (n, c, o, (h, w), (kh, kw), stride, pad) in cases {
            let what = format!("{dtype:?} {n}×{c}×{h}×{w}, {o}×{kh}×{kw} stride {stride}");
            let (maps, bns) = twin_batch_norms(o, dtype, &mut rng);
            let x = Var::from_tensor(&randn(&[n, c, h, w], dtype)).unwrap();
            let wt = Var::from_tensor(&randn(&[o, c, kh, kw], dtype)).unwrap();
            let (x, wt) = (x.as_tensor(), wt.as_tensor());
            let fused = super::conv_bn_relu(x, wt, (pad, stride), &bns[0], false).unwrap();
            let two = bn_relu(&conv2d(x, wt, pad, stride).unwrap(), &bns[1], false).unwrap();
            assert_eq!(max_abs_diff(&fused, &two), 0.0, "{what}: forward");
            let relu_zeros = two.eq(0.0).unwrap().to_dtype(DType::F64).unwrap();
            let zeros = relu_zeros.mean_all().unwrap().to_scalar::<f64>().unwrap();
            assert!(zeros > 0.0 && zeros < 1.0, "{what}: ReLU cuts {zeros}");
            let r = randn(two.dims(), dtype);
            let (gf, gt) = (grads_of(&fused, &r), grads_of(&two, &r));
            for (name, t) in [("dx", x), ("dw", wt)] {
                let (a, b) = (gf.get(t).unwrap(), gt.get(t).unwrap());
                assert_eq!(max_abs_diff(a, b), 0.0, "{what}: {name}");
            }
            for name in ["weight", "bias"] {
                let var = |m: &VarMap| m.data().lock().unwrap()[&format!("bn.{name}")].clone();
                let (a, b) = (var(&maps[0]), var(&maps[1]));
                let (ga, gb) = (gf.get(&a).unwrap(), gt.get(&b).unwrap());
                assert_eq!(max_abs_diff(ga, gb), 0.0, "{what}: d{name}");
            }
        }
    }
}

#[test]
fn pools_match_stock_forward_and_gradients() {
    let dev = Device::Cpu;
    let mut rng = Lcg(5);
    for case in 0..48 {
        let dtype = if case % 2 == 0 {
            DType::F64
        } else {
            DType::F32
        };
        let (n, c) = (1 + rng.below(3), 1 + rng.below(4));
        // Average pools pad to the same size and take maps of one or two cells too.
        let least = if case % 4 == 1 || case % 4 == 2 { 1 } else { 3 };
        let (h, w) = (least + rng.below(9), least + rng.below(9));
        let pool = match case % 4 {
            0 => Pool2d::max_3x3_s2(),
            1 => Pool2d::avg_3x3_same(PoolKind::AvgExcludePad),
            2 => Pool2d::avg_3x3_same(PoolKind::AvgIncludePad),
            _ => Pool2d {
                kind: PoolKind::Max,
                kernel: 2,
                stride: 1,
                padding: 0,
            },
        };
        let x = Var::from_tensor(
            &Tensor::randn(0f32, 1., (n, c, h, w), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
        let what = format!("case {case} {pool:?} {:?} {dtype:?}", x.dims());
        let fast = match pool.kind {
            PoolKind::Max => max_pool(x.as_tensor(), pool.kernel, pool.stride).unwrap(),
            k => avg_pool_same(x.as_tensor(), pool.padding, k == PoolKind::AvgIncludePad).unwrap(),
        };
        let stock = pool.stock_forward(x.as_tensor()).unwrap();
        close(&format!("{what} forward"), &fast, &stock, tol(dtype));
        let r = randn(stock.dims(), dtype);
        let (gf, gs) = (grads_of(&fast, &r), grads_of(&stock, &r));
        close(
            &format!("{what} dx"),
            gf.get(x.as_tensor()).unwrap(),
            gs.get(x.as_tensor()).unwrap(),
            tol(dtype),
        );
    }
}

/// Same inputs, same thread pool: bit-identical results (the exact-resume tests rely on it).
#[test]
fn conv_backward_is_deterministic() {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (5, 8, 11, 9), &dev).unwrap()).unwrap();
    let wt = Var::from_tensor(&Tensor::randn(0f32, 1., (6, 8, 3, 3), &dev).unwrap()).unwrap();
    let run = || {
        let y = conv2d(x.as_tensor(), wt.as_tensor(), (1, 1), 1).unwrap();
        let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        (
            g.get(x.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            g.get(wt.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
        )
    };
    assert_eq!(run(), run());
}

#[test]
fn scaled_residual_matches_stock_forward_and_gradients() {
    let mut rng = Lcg(23);
    for case in 0..28 {
        let dtype = if case % 2 == 0 {
            DType::F64
        } else {
            DType::F32
        };
        // The last cases large enough to be split into groups of planes over the threads, on
        // the maps of Inception-ResNet-v2 at the CIFAR-10 scale.
        let (n, c, h, w) = match case {
            24 | 25 => (4, 37, 7, 7),
            26 => (8, 600, 1, 1),
            27 => (4, 160, 3, 3),
            _ => (
                1 + rng.below(3),
                1 + rng.below(6),
                1 + rng.below(5),
                1 + rng.below(7),
            ),
        };
        let relu = case % 4 < 2 || case == 26;
        let scale = rng.pick(&[0.1, 0.17, 0.2, 1.0]);
        let var = |shape: &[usize]| Var::from_tensor(&randn(shape, dtype)).unwrap();
        let (x, u, b) = (var(&[n, c, h, w]), var(&[n, c, h, w]), var(&[c]));
        let what = format!(
            "case {case} {:?} {dtype:?} scale {scale} relu {relu}",
            x.dims()
        );
        let args = (x.as_tensor(), u.as_tensor(), b.as_tensor());
        let fast = scaled_residual(args.0, args.1, args.2, scale, relu).unwrap();
        let stock = stock_scaled_residual(args.0, args.1, args.2, scale, relu).unwrap();
        close(&format!("{what} forward"), &fast, &stock, tol(dtype));
        let r = randn(stock.dims(), dtype);
        let (gf, gs) = (grads_of(&fast, &r), grads_of(&stock, &r));
        for (name, v) in [("dx", &x), ("du", &u), ("dbias", &b)] {
            close(
                &format!("{what} {name}"),
                gf.get(v.as_tensor()).unwrap(),
                gs.get(v.as_tensor()).unwrap(),
                tol(dtype),
            );
        }
    }
}

/// On rayon's pool a whole pass runs on one of its workers; on candle's (the default) on the
/// caller, which takes its share of every loop. Nested calls run inline either way.
#[test]
fn on_worker_runs_on_the_fast_ops_pool_and_nests_inline() {
    let caller = std::thread::current().id();
    let outer = super::on_worker(|| {
        let me = std::thread::current().id();
        let inner = super::on_worker(|| std::thread::current().id());
        (
            rayon::current_thread_index().is_some(),
            me == caller,
            me == inner,
        )
    });
    let rayon = !super::parallel::candle_pool();
    assert_eq!(outer, (rayon, !rayon, true));
}

/// `t` rounded to bf16 (candle's conversion: to nearest, ties to even) and back to f32.
fn bf16_rounded(t: &Tensor) -> Tensor {
    t.to_dtype(DType::BF16)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
}

#[test]
fn bf16_convolution_is_the_f32_convolution_of_bf16_rounded_operands() {
    use super::conv::{conv2d_in, Arith};
    let mut rng = Lcg(11);
    // (n, c, o, h, w, kh, kw, stride, pad): the whole-batch path on small maps, the per-image
    // banded path on large ones (and its input gradient as a convolution), 1×1 maps of several
    // images (pointwise, read in place), kernels cropped to a map smaller than them, stride 2.
    let mut cases = vec![
        (4, 6, 10, 8, 8, 3, 3, 1, (1, 1)),
        (2, 5, 7, 40, 33, 3, 3, 1, (1, 1)),
        (3, 9, 4, 30, 30, 1, 7, 1, (0, 3)),
        (5, 12, 9, 1, 1, 1, 1, 1, (0, 0)),
        (3, 7, 6, 1, 1, 3, 3, 1, (1, 1)),
        (2, 4, 5, 17, 17, 3, 3, 2, (0, 0)),
        (1, 3, 8, 35, 35, 3, 3, 2, (1, 1)),
    ];
    for _ in 0..10 {
        let (kh, kw) = rng.pick(&[(1, 1), (3, 3), (1, 7), (7, 1), (3, 1)]);
        let stride = rng.pick(&[1, 2]);
        let pad = match stride {
            1 => (kh / 2, kw / 2),
            _ => (rng.below(2), rng.below(2)),
        };
        let (h, w) = (kh + rng.below(12), kw + rng.below(12));
        let (n, c, o) = (1 + rng.below(4), 1 + rng.below(20), 1 + rng.below(20));
        cases.push((n, c, o, h, w, kh, kw, stride, pad));
    }
    let mut largest_f32_gap = 0f64;
    for (n, c, o, h, w, kh, kw, stride, pad) in cases {
        let what = format!("x {n}x{c}x{h}x{w} w {o}x{c}x{kh}x{kw} stride {stride} pad {pad:?}");
        let x = Var::from_tensor(&randn(&[n, c, h, w], DType::F32)).unwrap();
        let wt = Var::from_tensor(&randn(&[o, c, kh, kw], DType::F32)).unwrap();
        let y = conv2d_in(x.as_tensor(), wt.as_tensor(), pad, stride, Arith::Bf16).unwrap();
        let r = randn(y.dims(), DType::F32);
        let g = grads_of(&y, &r);
        // The reference: the f32 convolution of the rounded operands (the output gradient
        // rounded too), whose products are exact; only the order of the sums differs.
        let xr = Var::from_tensor(&bf16_rounded(x.as_tensor())).unwrap();
        let wr = Var::from_tensor(&bf16_rounded(wt.as_tensor())).unwrap();
        let yr = conv2d_in(xr.as_tensor(), wr.as_tensor(), pad, stride, Arith::Native).unwrap();
        let gr = grads_of(&yr, &bf16_rounded(&r));
        close(&format!("{what} forward"), &y, &yr, 1e-5);
        for (name, v, vr) in [("dx", &x, &xr), ("dw", &wt, &wr)] {
            close(
                &format!("{what} {name}"),
                g.get(v.as_tensor()).unwrap(),
                gr.get(vr.as_tensor()).unwrap(),
                1e-5,
            );
        }
        let y32 = conv2d_in(x.as_tensor(), wt.as_tensor(), pad, stride, Arith::Native).unwrap();
        largest_f32_gap = largest_f32_gap.max(max_abs_diff(&y, &y32) / scale(&y32));
    }
    // Rounding to bf16 (8 bits of mantissa) shows against f32 products: the bf16 path is taken.
    assert!(largest_f32_gap > 1e-4, "{largest_f32_gap}");
}
