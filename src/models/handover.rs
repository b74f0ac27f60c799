//! A forward value computed on untracked tensors before the custom op that stands for it in
//! candle's graph is applied, and handed to that op's forward once. The forward must return a
//! storage of its own, so it returns a copy of the value's; the value is dropped then, so the
//! activations are not held twice. Used by `cuda_conv`'s convolution and by fastops' fused
//! stages.

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CudaStorage, Result, Shape, Storage, Tensor};

pub(crate) struct HandedOver {
    /// The op's name, for its errors.
    op: &'static str,
    value: Mutex<Option<Tensor>>,
}

impl HandedOver {
    pub(crate) fn new(op: &'static str, value: Tensor) -> Self {
        Self {
            op,
            value: Mutex::new(Some(value)),
        }
    }

    /// The value, taken, as exactly its own buffer (a storage's `try_clone` copies the whole
    /// buffer, whatever the layout).
    fn take(&self) -> Result<Tensor> {
        let op = self.op;
        let Ok(mut slot) = self.value.lock() else {
            bail!("{op}: poisoned lock")
        };
        let Some(v) = slot.take() else {
            bail!("{op}: forward ran twice")
        };
        let (_, l) = v.storage_and_layout();
        if l.is_contiguous() && l.start_offset() == 0 {
            Ok(v)
        } else {
            v.copy()
        }
    }

    /// A copy of the value's CPU storage and its shape: the op's `cpu_fwd`.
    pub(crate) fn cpu(&self) -> Result<(CpuStorage, Shape)> {
        let v = self.take()?;
        let (storage, layout) = v.storage_and_layout();
        match &*storage {
            Storage::Cpu(s) => Ok((s.try_clone(layout)?, v.shape().clone())),
            _ => bail!("{}: the forward value is not on the CPU", self.op),
        }
    }

    /// A copy of the value's CUDA storage and its shape: the op's `cuda_fwd`.
    pub(crate) fn cuda(&self) -> Result<(CudaStorage, Shape)> {
        let v = self.take()?;
        let (storage, layout) = v.storage_and_layout();
        match &*storage {
            Storage::Cuda(s) => Ok((s.try_clone(layout)?, v.shape().clone())),
            _ => bail!("{}: the forward value is not on the GPU", self.op),
        }
    }
}
