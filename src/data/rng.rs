//! Counter-based randomness: every random choice of the data pipeline derives from
//! (seed, purpose, epoch, index), so results do not depend on thread scheduling.

/// What a random stream is used for; keeps streams of different purposes independent.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stream {
    /// Training augmentation of one image.
    Augment = 1,
    /// The per-epoch shuffle of the sample order.
    Shuffle = 2,
    /// Choosing the images of a per-class subset.
    Subset = 3,
    /// Drawing synthetic images.
    Synthetic = 4,
}

use crate::hashing::{mix64, GOLDEN_GAMMA};

/// A SplitMix64 generator whose starting state hashes (seed, stream, epoch, index).
pub(crate) struct SampleRng {
    state: u64,
}

impl SampleRng {
    /// The generator for one (seed, stream, epoch, index) tuple.
    pub(crate) fn new(seed: u64, stream: Stream, epoch: u64, index: u64) -> Self {
        let mut h = mix64(seed ^ GOLDEN_GAMMA);
        h = mix64(h ^ (stream as u64).wrapping_mul(GOLDEN_GAMMA));
        h = mix64(h ^ epoch.wrapping_mul(0xd6e8_feb8_6659_fd93));
        h = mix64(h ^ index.wrapping_mul(0xa076_1d64_78bd_642f));
        SampleRng { state: h }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub(crate) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [0, n); `n` must be positive.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift reduction; the bias is below 2^-32 for the sizes used here.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A fair coin.
    pub(crate) fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    /// Fisher-Yates shuffle.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}
