//! Rounding f32 to bf16: to nearest, ties to even, as `vcvtne2ps2bf16` does.

/// `x` rounded to the nearest bf16 (ties to even), as the f32 with the same value (its low 16
/// bits zero). Overflow gives ±∞; a NaN stays a NaN (quiet, same sign); denormals are kept.
pub fn round_to_bf16(x: f32) -> f32 {
    f32::from_bits(u32::from(bf16_bits(x)) << 16)
}

/// The bf16 bit pattern of [`round_to_bf16`]`(x)`.
pub(super) fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        // Setting the quiet bit keeps the truncated mantissa non-zero.
        return ((bits | 0x0040_0000) >> 16) as u16;
    }
    let round_half_even = 0x7FFF + ((bits >> 16) & 1);
    // No overflow: the largest non-NaN pattern, 0xFF80_0000 (−∞), has room for the addend.
    ((bits + round_half_even) >> 16) as u16
}
