//! Reading values of a training step back to the host.
//!
//! On a GPU every read is a full drain of the device's queue, so a step reads all it needs at
//! once: [`read_f64s`] gathers scalars (the loss, the hits, the gradient norm) on the device and
//! copies them in one transfer. Each call is counted, so tests can hold the step to its one read.

use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Result, Tensor};

static READS: AtomicU64 = AtomicU64::new(0);

/// The values of `scalars` (each holding one element, of any float or integer type, all on one
/// device) as f64, read back in one transfer.
pub fn read_f64s(scalars: &[&Tensor]) -> Result<Vec<f64>> {
    let flat = scalars
        .iter()
        .map(|t| t.to_dtype(DType::F64)?.reshape(1))
        .collect::<Result<Vec<_>>>()?;
    READS.fetch_add(1, Ordering::Relaxed);
    Tensor::cat(&flat, 0)?.to_vec1::<f64>()
}

/// How many reads [`read_f64s`] has made in this process.
pub fn host_reads() -> u64 {
    READS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn scalars_of_several_types_come_back_in_one_read() {
        let d = Device::Cpu;
        let a = Tensor::new(2.5f32, &d).unwrap();
        let b = Tensor::new(&[7u32], &d).unwrap();
        let c = Tensor::new(-1.25f64, &d).unwrap();
        let before = host_reads();
        assert_eq!(read_f64s(&[&a, &b, &c]).unwrap(), [2.5, 7.0, -1.25]);
        assert!(host_reads() > before);
    }
}
