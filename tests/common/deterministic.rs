//! Deterministic, non-trivial tensors from a counter-based hash: the same formula as
//! `tools/timm_parity_fixture.py`, so both sides rebuild identical weights and inputs
//! without shipping them.

use candle_core::{Device, Tensor};

fn fnv1a32(name: &str) -> u32 {
    name.bytes().fold(0x811C_9DC5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

/// `n` values in [-1, 1): lowbias32(seed + i * golden ratio), top 24 bits.
pub fn uniform_pm1(name: &str, n: usize) -> Vec<f32> {
    let seed = fnv1a32(name);
    (0..n as u64)
        .map(|i| {
            let mut x = seed.wrapping_add((i.wrapping_mul(0x9E37_79B9) & 0xFFFF_FFFF) as u32);
            x ^= x >> 16;
            x = x.wrapping_mul(0x7FEB_352D);
            x ^= x >> 15;
            x = x.wrapping_mul(0x846C_A68B);
            x ^= x >> 16;
            let u = (x >> 8) as f32 * (1.0 / (1u32 << 24) as f32);
            2.0f32 * u - 1.0f32
        })
        .collect()
}

/// The value of state-dict entry `name` with `shape`, by the fixture's rules.
pub fn state_tensor(name: &str, shape: &[usize]) -> Tensor {
    let n = shape.iter().product::<usize>().max(1);
    let v = uniform_pm1(name, n);
    let affine =
        |scale: f32, offset: f32| v.iter().map(|x| offset + scale * x).collect::<Vec<f32>>();
    let values = if name.ends_with("running_var") {
        affine(0.5, 1.0)
    } else if name.ends_with("bn.weight") {
        affine(0.25, 1.0)
    } else if name.ends_with("bias") || name.ends_with("running_mean") {
        v.iter().map(|x| 0.1f32 * x).collect()
    } else if shape.len() == 4 {
        let fan_in = (shape[1] * shape[2] * shape[3]) as f64;
        let s = (6.0 / fan_in).sqrt() as f32;
        v.iter().map(|x| s * x).collect()
    } else if shape.len() == 2 {
        let s = (3.0 / shape[1] as f64).sqrt() as f32;
        v.iter().map(|x| s * x).collect()
    } else {
        panic!("no rule for {name} {shape:?}")
    };
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}
