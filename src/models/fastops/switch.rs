//! Whether a tensor takes the fast CPU ops: the on/off switch (`REPRO_STOCK_OPS`), and the
//! CPU-side test of the paths written for devices.

use std::sync::atomic::{AtomicU8, Ordering};

use candle_core::{DType, Tensor};

/// 0: not read yet, 1: fast ops on, 2: stock ops forced.
static MODE: AtomicU8 = AtomicU8::new(0);

/// Whether the fast ops are in use (unless the tensor is not on the CPU): false when
/// `REPRO_STOCK_OPS` is set to anything but `0` or empty, or after `set_enabled(false)`.
pub fn enabled() -> bool {
    match MODE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let stock = std::env::var("REPRO_STOCK_OPS")
                .map(|v| !v.is_empty() && v != "0")
                .unwrap_or(false);
            // Keep a value another thread may have set meanwhile.
            let _ = MODE.compare_exchange(
                0,
                if stock { 2 } else { 1 },
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            MODE.load(Ordering::Relaxed) == 1
        }
    }
}

/// Switches between the fast ops and stock candle for the whole process (benchmarks).
pub fn set_enabled(on: bool) {
    MODE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// Whether a fast op can take `x`: fast ops on, CPU device (and the device paths not forced
/// onto it), f32 or f64.
pub fn usable(x: &Tensor) -> bool {
    enabled()
        && x.device().is_cpu()
        && !DEVICE_PATHS_ON_CPU.load(Ordering::Relaxed)
        && matches!(x.dtype(), DType::F32 | DType::F64)
}

static DEVICE_PATHS_ON_CPU: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Runs on the CPU the ops a CUDA device runs instead of the fast ops: stock candle, and the
/// convolutions through [`crate::models::cuda_conv`] with repro's own backward. For tests of
/// that path on a machine without a GPU; process-wide, like [`set_enabled`].
pub fn force_device_paths_on_cpu(on: bool) {
    DEVICE_PATHS_ON_CPU.store(on, Ordering::Relaxed);
}

/// Whether the convolution of `x` goes through [`crate::models::cuda_conv`]: on a CUDA device
/// (unless the stock ops are forced), or on the CPU under [`force_device_paths_on_cpu`].
pub(crate) fn device_paths(x: &Tensor) -> bool {
    match x.device().is_cpu() {
        true => DEVICE_PATHS_ON_CPU.load(Ordering::Relaxed),
        false => enabled() && x.device().is_cuda(),
    }
}

static CONV_BF16: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes every convolution compute in bf16 (`--precision bf16`, set by
/// [`crate::device::apply_precision`]), or in the tensors' own dtype again. Process-wide, like
/// candle's TF32 switch.
pub fn set_conv_bf16(on: bool) {
    CONV_BF16.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// The dtype convolutions compute in: `Some(BF16)` under `--precision bf16`, else `None` (the
/// tensors' own).
pub fn conv_compute_dtype() -> Option<candle_core::DType> {
    CONV_BF16
        .load(std::sync::atomic::Ordering::Relaxed)
        .then_some(candle_core::DType::BF16)
}
