//! Dropout whose mask is a pure function of (seed, element index): a run resumed from a
//! checkpoint draws exactly the masks an uninterrupted run would (candle's own dropout draws
//! from an unseeded thread RNG).

use candle_core::{Result, Tensor};

use crate::hashing::{splitmix64, GOLDEN_GAMMA};

/// Zeroes each element with probability `drop` and scales the rest by `1 / (1 - drop)`.
pub fn seeded_dropout(x: &Tensor, drop: f64, seed: u64) -> Result<Tensor> {
    if drop <= 0.0 {
        return Ok(x.clone());
    }
    let keep_scale = (1.0 / (1.0 - drop)) as f32;
    let mask: Vec<f32> = (0..x.elem_count() as u64)
        .map(|i| {
            if unit_interval(seed, i) < drop {
                0.0
            } else {
                keep_scale
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    x * mask
}

/// SplitMix64 of (seed, index) mapped to [0, 1).
fn unit_interval(seed: u64, index: u64) -> f64 {
    let z = splitmix64(seed ^ index.wrapping_mul(GOLDEN_GAMMA));
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn same_seed_same_mask_and_the_expected_rate() {
        let x = Tensor::ones((100, 100), candle_core::DType::F32, &Device::Cpu).unwrap();
        let a = seeded_dropout(&x, 0.2, 7)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = seeded_dropout(&x, 0.2, 7)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let c = seeded_dropout(&x, 0.2, 8)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let dropped = a.iter().filter(|v| **v == 0.0).count() as f64 / a.len() as f64;
        assert!((dropped - 0.2).abs() < 0.02, "{dropped}");
        assert!(a.iter().all(|v| *v == 0.0 || (*v - 1.25).abs() < 1e-6));
    }
}
