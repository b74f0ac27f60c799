//! The path a CUDA device takes, checked on the CPU: every convolution of the four networks
//! goes through repro's own convolution backward (`models::cuda_conv`, GEMMs only) rather than
//! candle's naive input-gradient kernel, with gradients equal to stock candle's in f64; and a
//! training step reads back from the device once.
//!
//! These switch process-wide settings (`fastops::force_device_paths_on_cpu`, `set_enabled`),
//! so they run one at a time and live in their own test binary.

use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use repro::experiment::TrainConfig;
use repro::hashing::mix64;
use repro::models::{cuda_conv, fastops, Arch, ModelConfig};
use repro::train::readback::host_reads;
use repro::train::TrainStep;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn tiny(arch: Arch, dtype: DType) -> TrainStep {
    let mut model = ModelConfig::new(arch);
    model.width = 0.125;
    model.image_size = 75;
    model.blocks = Some([1, 1, 1]);
    model.num_classes = 3;
    model.dropout = 0.0;
    TrainStep::with_dtype(&model, &TrainConfig::default(), 7, &Device::Cpu, dtype).unwrap()
}

fn batch(seed: u64, dtype: DType) -> (Tensor, Tensor) {
    let n = 2 * 3 * 75 * 75;
    let x: Vec<f64> = (0..n as u64)
        .map(|i| ((mix64(seed ^ i) >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0)
        .collect();
    let x = Tensor::from_vec(x, (2, 3, 75, 75), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    (
        x,
        Tensor::new(&[(seed % 3) as u32, 1], &Device::Cpu).unwrap(),
    )
}

/// Every gradient of one step of `arch` in f64, with the ops as currently switched.
fn gradients(arch: Arch) -> Vec<(String, Tensor)> {
    let (x, y) = batch(5, DType::F64);
    tiny(arch, DType::F64)
        .step_keeping_gradients(&x, &y, 0.01, 0)
        .unwrap()
        .1
}

/// The largest relative L2 difference of one tensor's gradient, and its name. Gradients far
/// below the whole gradient's norm are compared against a ten-thousandth of that instead: some
/// vanish exactly in theory (the bias of Inception-ResNet-v2's last projection feeds a
/// batch-normalised convolution, which removes any per-channel constant), leaving rounding noise.
fn worst_relative_difference(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> (f64, String) {
    assert_eq!(a.len(), b.len());
    let sq = |t: &Tensor| {
        t.sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let whole = b.iter().map(|(_, g)| sq(g)).sum::<f64>().sqrt();
    let mut worst = (0.0, String::new());
    for ((name, ga), (name_b, gb)) in a.iter().zip(b) {
        assert_eq!(name, name_b);
        let diff = sq(&(ga - gb).unwrap()).sqrt();
        let rel = diff / sq(gb).sqrt().max(1e-4 * whole);
        if rel > worst.0 {
            worst = (rel, name.clone());
        }
    }
    worst
}

#[test]
fn every_convolution_takes_repros_backward_with_stock_candles_gradients() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for arch in Arch::ALL {
        fastops::force_device_paths_on_cpu(true);
        let (stock_before, ours_before) = (
            fastops::conv::stock_conv_calls(),
            cuda_conv::backward_calls(),
        );
        let device_path = gradients(arch);
        let (stock, ours) = (
            fastops::conv::stock_conv_calls() - stock_before,
            cuda_conv::backward_calls() - ours_before,
        );
        fastops::force_device_paths_on_cpu(false);
        fastops::set_enabled(false);
        let stock_before = fastops::conv::stock_conv_calls();
        let reference = gradients(arch);
        let stock_reference = fastops::conv::stock_conv_calls() - stock_before;
        fastops::set_enabled(true);

        assert_eq!(
            stock,
            0,
            "{}: {stock} convolutions took candle's own",
            arch.name()
        );
        assert!(
            ours > 0 && ours == stock_reference as u64,
            "{}: {ours} backward passes through repro's convolution, {stock_reference} convolutions in the stock forward",
            arch.name()
        );
        let (worst, name) = worst_relative_difference(&device_path, &reference);
        assert!(
            worst < 1e-10,
            "{}: gradient of {name} differs by {worst:e} (relative L2)",
            arch.name()
        );
        eprintln!(
            "{}: {ours} convolutions through repro's backward, worst relative L2 difference {worst:.1e} ({name})",
            arch.name()
        );
    }
}

#[test]
fn a_training_step_reads_from_the_device_once() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for device_paths in [true, false] {
        fastops::force_device_paths_on_cpu(device_paths);
        let mut step = tiny(Arch::InceptionV4, DType::F32);
        let (a, b) = (batch(1, DType::F32), batch(2, DType::F32));
        for (i, micro) in [vec![(&a.0, &a.1)], vec![(&a.0, &a.1), (&b.0, &b.1)]]
            .iter()
            .enumerate()
        {
            let before = host_reads();
            step.step_micro(micro, 0.01, i as u64).unwrap();
            assert_eq!(
                host_reads() - before,
                1,
                "{} micro-batch(es), device paths {device_paths}",
                micro.len()
            );
        }
    }
    fastops::force_device_paths_on_cpu(false);
}
