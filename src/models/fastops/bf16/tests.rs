use super::*;

/// The kernels this CPU runs (the AVX-512 one skipped, with a message, where it cannot).
fn kernels() -> Vec<Kernel> {
    match missing_cpu_features() {
        None if amx_available() => vec![Kernel::Amx, Kernel::Avx512Bf16, Kernel::Portable],
        None => {
            println!("skipping the AMX kernel: this CPU or OS has no AMX-BF16 tiles");
            vec![Kernel::Avx512Bf16, Kernel::Portable]
        }
        Some(why) => {
            println!("skipping the AVX512-BF16 kernel: {why}");
            vec![Kernel::Portable]
        }
    }
}

/// A small deterministic generator of values in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// A strided matrix in a buffer whose other elements are a NaN with a recognisable payload
/// (an input gap that is read poisons the result; a dst gap that is written is noticed).
struct Mat {
    data: Vec<f32>,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

const GAP: u32 = 0x7FC0_ABCD;

impl Mat {
    fn new(
        rows: usize,
        cols: usize,
        (rs, cs): (usize, usize),
        mut value: impl FnMut() -> f32,
    ) -> Mat {
        let len = if rows * cols == 0 {
            0
        } else {
            (rows - 1) * rs + (cols - 1) * cs + 1
        };
        let mut m = Mat {
            data: vec![f32::from_bits(GAP); len],
            rows,
            cols,
            rs,
            cs,
        };
        for i in 0..rows {
            for j in 0..cols {
                m.data[i * rs + j * cs] = value();
            }
        }
        m
    }

    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }

    /// Which indices of `data` are elements (the others are gaps).
    fn elements(&self) -> Vec<bool> {
        let mut is = vec![false; self.data.len()];
        for i in 0..self.rows {
            for j in 0..self.cols {
                is[i * self.rs + j * self.cs] = true;
            }
        }
        is
    }

    fn operand(&self) -> (*const f32, usize, usize) {
        (self.data.as_ptr(), self.rs, self.cs)
    }
}

/// How the operands of one call lie in memory: the (row, column) strides of lhs (m×k),
/// rhs (k×n) and dst (m×n).
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// Convolution forward: both row-major, gaps after each row.
    Forward,
    /// Input gradient: lhs column-major (reduction strided).
    InputGrad,
    /// Weight gradient: rhs column-major (each column contiguous along k).
    WeightGrad,
    /// Every stride > 1, dst column-major.
    Strided,
}

const LAYOUTS: [Layout; 4] = [
    Layout::Forward,
    Layout::InputGrad,
    Layout::WeightGrad,
    Layout::Strided,
];

type Strides = (usize, usize);

impl Layout {
    fn strides(self, m: usize, n: usize, k: usize) -> [Strides; 3] {
        match self {
            Layout::Forward => [(k + 3, 1), (n + 1, 1), (n + 5, 1)],
            Layout::InputGrad => [(1, m + 2), (n, 1), (n, 1)],
            Layout::WeightGrad => [(k, 1), (1, k + 1), (n + 2, 1)],
            Layout::Strided => [(2 * k * 3 + 1, 3), (2, 2 * k + 3), (2, 2 * m + 1)],
        }
    }
}

/// Runs one product and checks every element of dst against an f64 product of the
/// bf16-rounded inputs, and the gaps of dst untouched.
///
/// Bound: the products of two bf16 are exact in f32, so each kernel only rounds sums; every
/// term passes through at most k + 2 of them (the running sum, the sums of k blocks, dst), so
/// |error| ≤ γ(k + 2)·Σ|a||b| with γ(j) = j·2⁻²⁴/(1 − j·2⁻²⁴) (dst counted as one more term).
/// It is also checked against 1e-5·Σ|a||b|, a bound random data stays far below.
fn check(
    kernel: Kernel,
    layout: Layout,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    seed: u64,
) {
    let mut rng = Rng(seed | 1);
    let [ls, rs, ds] = layout.strides(m, n, k);
    let lhs = Mat::new(m, k, ls, || rng.next());
    let rhs = Mat::new(k, n, rs, || rng.next());
    let mut dst = Mat::new(m, n, ds, || if accumulate { rng.next() } else { f32::NAN });
    let before = dst.data.clone();
    // SAFETY: every operand covers its strided range; dst is its own buffer.
    unsafe {
        gemm_bf16_with(
            kernel,
            (m, n, k),
            (dst.data.as_mut_ptr(), dst.rs, dst.cs),
            accumulate,
            lhs.operand(),
            rhs.operand(),
        )
    };
    let u = f64::from(2f32.powi(-24));
    let gamma = (k + 2) as f64 * u / (1.0 - (k + 2) as f64 * u);
    let case = format!("{kernel:?} {layout:?} m={m} n={n} k={k} accumulate={accumulate}");
    for i in 0..m {
        for j in 0..n {
            let (mut exact, mut magnitude) = (0f64, 0f64);
            if accumulate {
                let d = f64::from(before[i * dst.rs + j * dst.cs]);
                (exact, magnitude) = (d, d.abs());
            }
            for p in 0..k {
                let t =
                    f64::from(round_to_bf16(lhs.at(i, p))) * f64::from(round_to_bf16(rhs.at(p, j)));
                exact += t;
                magnitude += t.abs();
            }
            let got = f64::from(dst.at(i, j));
            let bound = gamma.min(1e-5) * magnitude + 1e-30;
            assert!(
                (got - exact).abs() <= bound,
                "{case}: dst[{i}][{j}] = {got}, expected {exact} ± {bound}"
            );
        }
    }
    for (index, ((&a, &b), element)) in dst.data.iter().zip(&before).zip(dst.elements()).enumerate()
    {
        if !element {
            assert_eq!(a.to_bits(), b.to_bits(), "{case}: dst gap {index} written");
        }
    }
}

#[test]
fn rounds_to_nearest_even() {
    let bits = |b: u32| f32::from_bits(b);
    let cases = [
        (1.0, 1.0),
        (bits(0x3F80_7FFF), 1.0),
        (bits(0x3F80_8000), 1.0), // tie, even below
        (bits(0x3F80_8001), bits(0x3F81_0000)),
        (bits(0x3F81_8000), bits(0x3F82_0000)), // tie, even above
        (bits(0xBF81_8000), bits(0xBF82_0000)), // negative tie up in magnitude
        (bits(0xBF80_8000), -1.0),              // negative tie down
        (-3.0, -3.0),
        (0.1, bits(0x3DCD_0000)),               // 0x3DCCCCCD
        (bits(0x7F7F_7FFF), bits(0x7F7F_0000)), // largest bf16 stays
        (bits(0x7F7F_8000), f32::INFINITY),     // tie above it: even is ∞
        (f32::MAX, f32::INFINITY),
        (-f32::MAX, f32::NEG_INFINITY),
        (f32::INFINITY, f32::INFINITY),
        (f32::NEG_INFINITY, f32::NEG_INFINITY),
        (0.0, 0.0),
        (bits(0x0000_8001), bits(0x0001_0000)), // denormals round too
    ];
    for (x, want) in cases {
        let got = round_to_bf16(x);
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "round_to_bf16({x:e} = {:#x})",
            x.to_bits()
        );
    }
    assert_eq!(round_to_bf16(-0.0).to_bits(), 0x8000_0000);
    for nan in [
        f32::NAN,
        -f32::NAN,
        bits(0x7F80_0001),
        bits(0xFF80_0001),
        bits(0x7FFF_FFFF),
    ] {
        let r = round_to_bf16(nan);
        assert!(
            r.is_nan() && r.to_bits() & 0xFFFF == 0,
            "{:#x} -> {:#x}",
            nan.to_bits(),
            r.to_bits()
        );
        assert_eq!(r.is_sign_negative(), nan.is_sign_negative());
    }
}

#[test]
fn kernel_matches_cpu_features() {
    assert_eq!(
        kernel() != Kernel::Portable,
        missing_cpu_features().is_none()
    );
    if std::env::var_os("REPRO_AMX").is_none() {
        assert_eq!(kernel() == Kernel::Amx, amx_available());
    }
}

#[test]
fn small_and_odd_shapes() {
    const DIMS: [usize; 9] = [1, 2, 15, 16, 17, 31, 33, 100, 257];
    let mut seed = 1;
    for kernel in kernels() {
        for layout in LAYOUTS {
            for m in DIMS {
                for n in DIMS {
                    for k in DIMS {
                        if m * n * k > 40_000 && (m, n, k) != (257, 257, 257) {
                            continue;
                        }
                        seed += 1;
                        check(kernel, layout, (m, n, k), seed % 2 == 0, seed);
                    }
                }
            }
        }
    }
}

/// Shapes that cross the block sizes of every scheme (k blocks, row blocks, column blocks) and
/// take the AVX-512 dot kernel (weight gradient, k ≥ 512, rows far from a multiple of 12).
#[test]
fn shapes_across_blocks() {
    let shapes = [
        (13, 37, 1100),
        (5, 2100, 40),
        (400, 9, 20),
        (200, 530, 130),
        (33, 47, 801),
        (64, 64, 2049),
    ];
    let mut seed = 99;
    for kernel in kernels() {
        for layout in LAYOUTS {
            for shape in shapes {
                for accumulate in [false, true] {
                    seed += 1;
                    check(kernel, layout, shape, accumulate, seed);
                }
            }
        }
    }
}

#[test]
fn empty_reduction_zeroes_or_keeps_dst() {
    for kernel in kernels() {
        for accumulate in [false, true] {
            let mut dst = vec![7f32; 6];
            let (a, b) = ([0f32; 0], [0f32; 0]);
            // SAFETY: k = 0 reads nothing; dst covers 2×3 row-major.
            unsafe {
                gemm_bf16_with(
                    kernel,
                    (2, 3, 0),
                    (dst.as_mut_ptr(), 3, 1),
                    accumulate,
                    (a.as_ptr(), 0, 1),
                    (b.as_ptr(), 3, 1),
                )
            };
            assert_eq!(dst, vec![if accumulate { 7.0 } else { 0.0 }; 6]);
        }
    }
}

#[test]
fn nan_and_infinity_propagate() {
    for kernel in kernels() {
        let (m, n, k) = (20, 40, 300);
        let mut lhs: Vec<f32> = (0..m * k).map(|x| (x % 7) as f32 * 0.25).collect();
        let rhs: Vec<f32> = (0..k * n).map(|x| (x % 5) as f32 * 0.5 + 0.5).collect();
        lhs[3 * k + 17] = f32::NAN;
        lhs[5 * k + 2] = f32::INFINITY;
        for rhs_layout in [(n, 1), (1, k)] {
            let mut dst = vec![0f32; m * n];
            let rhs: Vec<f32> = if rhs_layout == (n, 1) {
                rhs.clone()
            } else {
                (0..k * n).map(|x| rhs[x % k * n + x / k]).collect()
            };
            // SAFETY: all three are dense m×k, k×n, m×n buffers.
            unsafe {
                gemm_bf16_with(
                    kernel,
                    (m, n, k),
                    (dst.as_mut_ptr(), n, 1),
                    false,
                    (lhs.as_ptr(), k, 1),
                    (rhs.as_ptr(), rhs_layout.0, rhs_layout.1),
                )
            };
            for (i, row) in dst.chunks(n).enumerate() {
                for &v in row {
                    match i {
                        3 => assert!(v.is_nan(), "{kernel:?}"),
                        5 => assert_eq!(v, f32::INFINITY, "{kernel:?}"),
                        _ => assert!(v.is_finite(), "{kernel:?}"),
                    }
                }
            }
        }
    }
}

/// The result carries bf16's rounding (relative errors up to about 2⁻⁸ per factor), not f32's:
/// positive inputs, so no cancellation hides it.
#[test]
fn error_is_that_of_bf16_not_f32() {
    for kernel in kernels() {
        for k in [1, 64] {
            let (m, n) = (40, 50);
            let mut rng = Rng(7);
            let lhs: Vec<f32> = (0..m * k).map(|_| 1.5 + 0.5 * rng.next()).collect();
            let rhs: Vec<f32> = (0..k * n).map(|_| 1.5 + 0.5 * rng.next()).collect();
            let mut dst = vec![0f32; m * n];
            // SAFETY: dense row-major buffers.
            unsafe {
                gemm_bf16_with(
                    kernel,
                    (m, n, k),
                    (dst.as_mut_ptr(), n, 1),
                    false,
                    (lhs.as_ptr(), k, 1),
                    (rhs.as_ptr(), n, 1),
                )
            };
            let mut worst = 0f64;
            for i in 0..m {
                for j in 0..n {
                    let exact: f64 = (0..k)
                        .map(|p| f64::from(lhs[i * k + p]) * f64::from(rhs[p * n + j]))
                        .sum();
                    worst = worst.max((f64::from(dst[i * n + j]) - exact).abs() / exact);
                }
            }
            let bound = 2.0 * 2f64.powi(-8) + 2f64.powi(-16);
            assert!(
                worst <= bound,
                "{kernel:?} k={k}: relative error {worst:e} above bf16's"
            );
            assert!(
                worst >= 2f64.powi(-13),
                "{kernel:?} k={k}: relative error {worst:e}: not rounded to bf16?"
            );
        }
    }
}
