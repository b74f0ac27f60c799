//! Matrix products in bf16 with f32 inputs and outputs, for the convolutions' mixed-precision
//! mode (PyTorch's CPU autocast policy): both operands are rounded to bf16 (round to nearest,
//! ties to even) and the products are accumulated in f32.
//!
//! [`gemm_bf16`] is a Goto-style blocked product (`driver.rs`): a block of each operand is
//! rounded to bf16 and packed (`pack.rs`) so that the micro-kernel reads it sequentially, with
//! two consecutive k values side by side in one u32. That is the operand format of `vdpbf16ps`,
//! which multiplies such pairs and adds both products to an f32 lane. Three schemes:
//!
//! - *broadcast*: a 12 × 32 tile of dst in 24 zmm accumulators; per k-pair, each of the 12 lhs
//!   pairs is broadcast against the pairs of the 32 rhs columns. Operands contiguous along k
//!   are packed with 16 × 16 transposes in registers. Used for every layout but the one below,
//!   and by the portable kernel for all layouts.
//! - *dot*: a 4 × 4 tile of dst as 16 dot products along k, 16 k-pairs per instruction, summed
//!   horizontally once per k block. Used where both operands are contiguous along a long k
//!   (the weight gradient, `lhs · rhsᵀ`) and the rows are too few for the broadcast tile's
//!   12 (64 rows, say): packing then needs no transpose and no padding rows.
//! - *tiles* (`amx.rs`, CPUs with AMX-BF16): a 32 × 32 tile of dst in four AMX tile registers,
//!   `tdpbf16ps` on 16 k-pairs of two lhs and two rhs tiles at a time; lhs packed one line per
//!   strip (its pairs contiguous, as a tile row wants them), rhs in the broadcast scheme's strips.
//!   Chosen over the other two wherever the CPU and the OS allow it.
//!
//! The AVX-512 and AMX kernels treat denormal inputs as zero and flush denormal results to zero
//! (`vcvtne2ps2bf16`, `vdpbf16ps` and `tdpbf16ps` do, whatever MXCSR says); the portable kernel
//! keeps them. Packing buffers live in a per-thread scratch vector that is kept between calls
//! (at most a few MiB per thread).

#[cfg(target_arch = "x86_64")]
mod amx;
mod driver;
mod pack;
mod portable;
mod round;
mod scheme;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use round::round_to_bf16;

/// Which implementation [`gemm_bf16_with`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// AMX tiles (`tdpbf16ps`, `amx.rs`): only on CPUs with AMX-BF16 besides AVX512-BF16, and
    /// where the OS grants the tiles.
    Amx,
    /// AVX-512 (F, BW) and AVX512-BF16 (`vdpbf16ps`): only on CPUs that have them.
    Avx512Bf16,
    /// Plain Rust: f32 arithmetic on the bf16-rounded inputs.
    Portable,
}

/// The fastest kernel this CPU runs (`REPRO_AMX=0` leaves AMX out, for comparison).
pub fn kernel() -> Kernel {
    static AMX_OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let amx_off = *AMX_OFF.get_or_init(|| std::env::var("REPRO_AMX").is_ok_and(|v| v == "0"));
    if !avx512_bf16_available() {
        Kernel::Portable
    } else if amx_available() && !amx_off {
        Kernel::Amx
    } else {
        Kernel::Avx512Bf16
    }
}

/// Whether this CPU and OS run the AMX kernel (AVX512-BF16 is checked apart).
fn amx_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return amx::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The features the AVX512-BF16 kernel is compiled for: (detected, name, /proc/cpuinfo flag).
#[cfg(target_arch = "x86_64")]
fn avx512_bf16_features() -> [(bool, &'static str, &'static str); 3] {
    use std::arch::is_x86_feature_detected as has;
    [
        (has!("avx512f"), "AVX-512F", "avx512f"),
        (has!("avx512bw"), "AVX-512BW", "avx512bw"),
        (has!("avx512bf16"), "AVX512-BF16", "avx512_bf16"),
    ]
}

fn avx512_bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return avx512_bf16_features().iter().all(|f| f.0);
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `None` when this CPU runs the AVX512-BF16 kernel; otherwise a sentence for users naming what
/// it lacks.
pub fn missing_cpu_features() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        let features = avx512_bf16_features();
        let missing = features.iter().filter(|f| !f.0);
        let names: Vec<&str> = missing.clone().map(|f| f.1).collect();
        let flags: Vec<&str> = missing.map(|f| f.2).collect();
        if names.is_empty() {
            return None;
        }
        Some(format!(
            "this CPU has no {} (its flags lack {}); bf16 training on the CPU needs an x86-64 \
             CPU with AVX-512F, AVX-512BW and AVX512-BF16",
            names.join(", "),
            flags.join(", ")
        ))
    }
    #[cfg(not(target_arch = "x86_64"))]
    Some("bf16 training on the CPU needs an x86-64 CPU with AVX512-BF16".to_string())
}

/// `dst (m×n, f32) = [dst +] lhs (m×k) · rhs (k×n)`, where lhs and rhs are read as f32 and
/// rounded to bf16 (round to nearest, ties to even; NaN stays NaN) and the products are
/// accumulated in f32. Every operand is (pointer, row stride, column stride) in elements.
/// Single-threaded (callers split the work over threads by disjoint column ranges of dst). Runs
/// [`kernel`]`()`.
///
/// # Safety
/// - `lhs.0.add(i * lhs.1 + p * lhs.2)` is valid for reads for every `i < m`, `p < k`, and
///   likewise `rhs` for every `p < k`, `j < n`;
/// - `dst.0.add(i * dst.1 + j * dst.2)` is valid for writes (and for reads when `accumulate`)
///   for every `i < m`, `j < n`, and no other thread accesses those elements during the call;
/// - dst does not overlap lhs or rhs (the result is unspecified otherwise).
///
/// With `accumulate == false`, dst is only written, so it may be uninitialised. With `k == 0`,
/// dst is zeroed (or left as is when accumulating).
pub unsafe fn gemm_bf16(
    shape: (usize, usize, usize),
    dst: (*mut f32, usize, usize),
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
) {
    gemm_bf16_with(kernel(), shape, dst, accumulate, lhs, rhs)
}

/// [`gemm_bf16`] with the given kernel (the portable one runs everywhere; asking for
/// [`Kernel::Avx512Bf16`] on a CPU without it panics).
///
/// # Safety
/// As for [`gemm_bf16`].
pub unsafe fn gemm_bf16_with(
    kernel: Kernel,
    (m, n, k): (usize, usize, usize),
    dst: (*mut f32, usize, usize),
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst.0.add(i * dst.1 + j * dst.2).write(0.0);
                }
            }
        }
        return;
    }
    let scheme = match kernel {
        Kernel::Portable => &portable::BROADCAST,
        Kernel::Avx512Bf16 => {
            if !avx512_bf16_available() {
                let why = missing_cpu_features().unwrap_or_default();
                panic!("gemm_bf16_with(Kernel::Avx512Bf16): {why}");
            }
            avx512_scheme((m, k), lhs, rhs)
        }
        Kernel::Amx => {
            if !(avx512_bf16_available() && amx_available()) {
                panic!("gemm_bf16_with(Kernel::Amx): this CPU or OS does not run AMX-BF16 tiles");
            }
            amx_scheme()
        }
    };
    driver::run(scheme, (m, n, k), dst, accumulate, lhs, rhs)
}

/// The AVX-512 scheme for these operands: broadcast, unless both operands are contiguous along
/// a long reduction (where the dot kernel packs them without a transpose) and the broadcast
/// kernel's 12-row tiles would leave over 8 % of its work on padding rows (64 rows: 11 %);
/// measured on Zen 4, the dot kernel is 0.6–0.95× as fast elsewhere.
#[cfg(target_arch = "x86_64")]
fn avx512_scheme(
    (m, k): (usize, usize),
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
) -> &'static scheme::Scheme {
    let both_along_k = lhs.2 == 1 && rhs.1 == 1 && rhs.2 != 1;
    let padded = m.next_multiple_of(x86::BROADCAST.tile_rows);
    if both_along_k && k >= 512 && 100 * m < 92 * padded {
        &x86::DOT
    } else {
        &x86::BROADCAST
    }
}

#[cfg(target_arch = "x86_64")]
fn amx_scheme() -> &'static scheme::Scheme {
    &amx::TILES
}

#[cfg(not(target_arch = "x86_64"))]
fn amx_scheme() -> &'static scheme::Scheme {
    unreachable!("AMX is never available off x86-64")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_scheme(
    _: (usize, usize),
    _: (*const f32, usize, usize),
    _: (*const f32, usize, usize),
) -> &'static scheme::Scheme {
    unreachable!("the AVX512-BF16 kernel is never available off x86-64")
}
