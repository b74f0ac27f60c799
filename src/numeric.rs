//! Numeric summaries of tensors shared by the benchmarks (CPU/GPU parity) and the tests that
//! compare two implementations: the largest absolute value and the largest absolute difference,
//! read back to the host in f64.

use candle_core::{DType, Device, Result, Tensor};

/// `max |t|` over all entries, on any device and in any float type.
pub fn max_abs(t: &Tensor) -> Result<f64> {
    t.to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f64>()
}

/// `max |a − b|` over all entries of two tensors of one shape (on any devices, in any float
/// types); an error when the shapes differ.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    let on_host = |t: &Tensor| t.to_device(&Device::Cpu)?.to_dtype(DType::F64);
    max_abs(&(on_host(a)? - on_host(b)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_value_and_difference() {
        let a = Tensor::new(&[[1f32, -4.0], [2.5, 0.0]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[[1f64, -1.0], [2.0, 0.5]], &Device::Cpu).unwrap();
        assert_eq!(max_abs(&a).unwrap(), 4.0);
        assert_eq!(max_abs_diff(&a, &b).unwrap(), 3.0);
        let c = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        assert!(max_abs_diff(&a, &c).is_err());
    }
}
