//! `--device cpu|cuda[:N]` and `--precision f32|tf32|bf16`.

use candle_core::{DType, Device};

/// The device named on the command line, and its name for provenance.
pub fn parse_device(spec: &str) -> Result<(Device, String), String> {
    match spec {
        "cpu" => Ok((Device::Cpu, "cpu".into())),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse::<usize>()
                    .map_err(|_| format!("--device {s}: expected cuda:N with N a GPU number"))?,
                None => 0,
            };
            cuda_device(ordinal).map(|d| (d, format!("cuda:{ordinal}")))
        }
        other => Err(format!("--device {other}: expected cpu, cuda or cuda:N")),
    }
}

/// The CUDA device `ordinal`, made once per process and shared by everything that uses it
/// (training, evaluation, uploads, read-backs, checkpoints, NCCL): one device, one stream.
///
/// candle 0.11's `Device::new_cuda` takes `context.per_thread_stream()`
/// (candle-core `cuda_backend/device.rs`, `BackendDevice::new`), a handle meaning "the calling
/// thread's stream". repro runs forward passes and training steps on a rayon worker
/// (`fastops::on_worker`) and uploads, reads back and checkpoints on the main thread, so with
/// that default the two would queue work on different streams with no order between them: a
/// read could see a forward pass half done, a timing would measure only the queuing, and memory
/// freed on one thread could be reused while the other stream still reads it.
/// `Device::new_cuda_with_stream` gives the device one explicit stream that every thread uses.
#[cfg(feature = "cuda")]
pub fn cuda_device(ordinal: usize) -> Result<Device, String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static DEVICES: OnceLock<Mutex<HashMap<usize, Device>>> = OnceLock::new();
    let mut devices = DEVICES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(d) = devices.get(&ordinal) {
        return Ok(d.clone());
    }
    // candle's error text can carry a backtrace: keep its first line.
    let no_gpu = |e: &dyn std::fmt::Display| {
        let e = e.to_string();
        format!(
            "--device cuda:{ordinal}: no usable GPU ({})",
            e.lines().next().unwrap_or_default().trim()
        )
    };
    let device = Device::new_cuda_with_stream(ordinal).map_err(|e| no_gpu(&e))?;
    keep_freed_memory(&device).map_err(|e| no_gpu(&e))?;
    devices.insert(ordinal, device.clone());
    Ok(device)
}

/// Allocator settings for a device with one stream. cudarc allocates stream-ordered
/// (`cuMemAllocAsync`) from the device's default memory pool, whose release threshold is 0: at
/// every synchronisation the pool hands freed memory back to the driver, and the next step maps
/// it again. The threshold is raised so freed memory stays in the pool for the next step (as
/// PyTorch's caching allocator keeps it). cudarc also records an event on every allocation and
/// use so that other streams can wait for it; with one stream that is pure overhead.
#[cfg(feature = "cuda")]
fn keep_freed_memory(device: &Device) -> Result<(), String> {
    use candle_core::cuda::cudarc::driver::{result, sys};
    let cuda = device.as_cuda_device().map_err(|e| e.to_string())?;
    let context = cuda.cuda_stream().context().clone();
    // SAFETY: every allocation of this context is made and used on the device's one stream
    // (see `cuda_device`), so no cross-stream synchronisation is needed; the pool handle comes
    // from the context's own device and the attribute's value is the u64 the driver expects.
    unsafe {
        context.disable_event_tracking();
        if context.has_async_alloc() {
            let pool = result::device::get_default_mem_pool(context.cu_device())
                .map_err(|e| format!("default memory pool: {e}"))?;
            let mut keep_all = u64::MAX;
            result::mem_pool::set_attribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut keep_all as *mut u64).cast(),
            )
            .map_err(|e| format!("memory pool release threshold: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
pub fn cuda_device(ordinal: usize) -> Result<Device, String> {
    Err(format!(
        "--device cuda:{ordinal}: this binary was built without CUDA support; rebuild with `cargo build --release --features cuda` (see README)"
    ))
}

/// The arithmetic training and evaluation use. Weights, BatchNorm, the loss and the optimizer
/// state are f32 in every mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Plain f32 everywhere (the reference).
    #[default]
    F32,
    /// f32 tensors, with cuBLAS allowed to use TF32 tensor cores for f32 matrix products
    /// (every convolution on CUDA is an im2col + GEMM or a plain GEMM): 10-bit mantissa
    /// products, f32 accumulation, as PyTorch's `allow_tf32`. CUDA only.
    Tf32,
    /// Autocast-style mixed precision: convolutions (forward and both gradients) compute in
    /// bf16 from f32 weights and activations and return f32; BatchNorm, the loss, the optimizer
    /// and the remaining f32 matrix products (classifier) stay f32, the latter with TF32 on
    /// CUDA. On the CPU, with AVX512-BF16 dot products (products of bf16 operands summed in
    /// f32).
    Bf16,
}

impl Precision {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "f32" | "fp32" => Ok(Self::F32),
            "tf32" => Ok(Self::Tf32),
            "bf16" => Ok(Self::Bf16),
            other => Err(format!("--precision {other}: expected f32, tf32 or bf16")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Tf32 => "tf32",
            Self::Bf16 => "bf16",
        }
    }

    /// The dtype convolutions compute in, for [`crate::models::cuda_conv::conv2d`]'s `compute`
    /// argument (`None`: the tensors' own).
    pub fn conv_compute_dtype(self) -> Option<DType> {
        match self {
            Self::Bf16 => Some(DType::BF16),
            Self::F32 | Self::Tf32 => None,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `precision` can run on `device` (else why not, for a message that names the flag or
/// setting), without setting anything: TF32 has no meaning on
/// the CPU; bf16 on the CPU runs repro's convolutions with AVX512-BF16 dot products, which the
/// CPU must have (and the fast ops must be on: candle's own CPU convolution has no bf16).
pub fn check_precision(precision: Precision, device: &Device) -> Result<(), String> {
    if device.is_cuda() {
        return Ok(());
    }
    match precision {
        Precision::F32 => Ok(()),
        Precision::Tf32 => Err(
            "tf32 exists only on CUDA devices (the CPU has no TF32); use f32 or bf16 on the CPU"
                .into(),
        ),
        Precision::Bf16 => {
            if let Some(missing) = crate::models::fastops::bf16_missing_cpu_features() {
                return Err(format!("bf16 on the CPU: {missing}; use f32"));
            }
            if !crate::models::fastops::enabled() {
                return Err("bf16 on the CPU needs repro's fast CPU ops, which \
                            REPRO_STOCK_OPS turned off (candle's CPU convolution has no bf16)"
                    .into());
            }
            Ok(())
        }
    }
}

/// Sets the process-wide switches `precision` needs on `device` (candle's cuBLAS TF32 flag is a
/// global; call this before building the model) until the returned scope is dropped, which
/// sets f32 back: evaluations after a bf16 run compute in f32 again.
pub fn apply_precision(precision: Precision, device: &Device) -> Result<PrecisionScope, String> {
    check_precision(precision, device)?;
    set_switches(precision);
    Ok(PrecisionScope(()))
}

/// While alive, the precision [`apply_precision`] set; f32 again once dropped.
#[must_use = "the precision goes back to f32 when this is dropped"]
pub struct PrecisionScope(());

impl Drop for PrecisionScope {
    fn drop(&mut self) {
        set_switches(Precision::F32);
    }
}

fn set_switches(precision: Precision) {
    // A no-op in builds without CUDA (candle's dummy backend).
    candle_core::cuda::set_gemm_reduced_precision_f32(matches!(
        precision,
        Precision::Tf32 | Precision::Bf16
    ));
    crate::models::fastops::set_conv_bf16(precision == Precision::Bf16);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_parses_and_bad_names_say_what_is_expected() {
        assert_eq!(parse_device("cpu").unwrap().1, "cpu");
        assert!(parse_device("gpu")
            .unwrap_err()
            .contains("expected cpu, cuda or cuda:N"));
        assert!(parse_device("cuda:x")
            .unwrap_err()
            .contains("expected cuda:N"));
        #[cfg(not(feature = "cuda"))]
        assert!(parse_device("cuda:0")
            .unwrap_err()
            .contains("built without CUDA support"));
    }

    #[test]
    fn precisions_parse_and_tf32_is_refused_on_the_cpu() {
        for p in [Precision::F32, Precision::Tf32, Precision::Bf16] {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        assert!(Precision::parse("fp16")
            .unwrap_err()
            .contains("expected f32, tf32 or bf16"));
        assert_eq!(Precision::Bf16.conv_compute_dtype(), Some(DType::BF16));
        // Checked only: applying bf16 here would switch the convolutions of every test of this
        // process that runs at the same time.
        assert!(check_precision(Precision::F32, &Device::Cpu).is_ok());
        assert!(check_precision(Precision::Tf32, &Device::Cpu)
            .unwrap_err()
            .contains("tf32 exists only on CUDA devices (the CPU has no TF32)"));
        match crate::models::fastops::bf16_missing_cpu_features() {
            None => assert!(check_precision(Precision::Bf16, &Device::Cpu).is_ok()),
            Some(missing) => assert_eq!(
                check_precision(Precision::Bf16, &Device::Cpu).unwrap_err(),
                format!("bf16 on the CPU: {missing}; use f32")
            ),
        }
        let scope = apply_precision(Precision::F32, &Device::Cpu).unwrap();
        assert_eq!(crate::models::fastops::conv_compute_dtype(), None);
        drop(scope);
    }
}
