//! What the fast ops' tests share: a small deterministic generator (Knuth's MMIX linear
//! congruential one), so that every test draws its shapes and values the same way on every run.

/// The generator's state; `Lcg(seed)` starts it.
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    fn step(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }

    /// A whole number below `n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((self.step() >> 33) as usize) % n
    }

    /// One of `v`'s entries.
    pub(crate) fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }

    /// An f32 in `[-half, half)` (24 random bits).
    pub(crate) fn f32_within(&mut self, half: f32) -> f32 {
        ((self.step() >> 40) as f32 / (1u64 << 24) as f32) * (2.0 * half) - half
    }

    /// An f64 in `[-1, 1)` (53 random bits).
    pub(crate) fn f64_unit(&mut self) -> f64 {
        ((self.step() >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}
