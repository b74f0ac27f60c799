//! Packing a block of an operand into bf16 pairs. The block is read as `outer` lines along k
//! (lhs rows or rhs columns) and written as strips of `width` lines: strip `s` holds, for each
//! k-pair `p`, the pairs of its lines `s·width .. (s+1)·width` side by side, each pair one u32
//! with the bf16 of k = 2p in the low half and of k = 2p + 1 in the high half. Lines and pairs
//! past the block are zero (so padding adds nothing to the products).

use super::round::bf16_bits;

/// A block of an operand: element (line o, k index p) at `ptr + o·outer_stride + p·k_stride`.
pub(super) struct Lines {
    pub ptr: *const f32,
    pub outer_stride: usize,
    pub k_stride: usize,
}

/// The shape of a packed block: `outer / width` strips of `kp` pairs × `width` lines.
pub(super) struct Layout {
    pub width: usize,
    pub kp: usize,
    /// Lines including the zero padding; a multiple of `width`.
    pub outer: usize,
}

impl Layout {
    pub fn len(&self) -> usize {
        self.outer * self.kp
    }

    /// The index of pair `p` of line `o`.
    fn index(&self, o: usize, p: usize) -> usize {
        (o / self.width * self.kp + p) * self.width + o % self.width
    }
}

/// Packs the `outer × kc` block `src` into `out` (`layout.len()` words), using `line` (at least
/// `layout.outer` and `layout.kp` words) as scratch. With `simd`, the layouts where lines or k
/// are contiguous are converted with AVX-512.
///
/// # Safety
/// `src` is valid for reads at every (o < outer, p < kc); with `simd`, the CPU has AVX-512F,
/// AVX-512BW and AVX512-BF16.
pub(super) unsafe fn pack(
    src: &Lines,
    outer: usize,
    kc: usize,
    layout: &Layout,
    simd: bool,
    out: &mut [u32],
    line: &mut [u32],
) {
    debug_assert!(outer <= layout.outer && kc <= 2 * layout.kp && out.len() == layout.len());
    #[cfg(target_arch = "x86_64")]
    if simd {
        use super::x86;
        if src.outer_stride == 1 {
            return by_k_pairs(src, outer, kc, layout, out, line, x86::interleave_pairs);
        }
        if src.k_stride == 1 && layout.width == 1 {
            return one_line_strips(src, outer, kc, layout, out, x86::pairs_along_line);
        }
        if src.k_stride == 1 {
            let lines = (src.ptr, src.outer_stride);
            return x86::strips_from_lines(lines, (outer, kc), (layout.width, layout.kp), out);
        }
    }
    let _ = (simd, line);
    scalar(src, outer, kc, layout, out)
}

/// For lines contiguous in memory (outer stride 1): `interleave(row0, row1, outer, dst)` writes
/// the pairs of all lines at one k-pair into `dst` (zeros past `outer`; `row1` absent when k is
/// odd), then the strips get their `width` pairs each.
#[cfg(target_arch = "x86_64")]
unsafe fn by_k_pairs(
    src: &Lines,
    outer: usize,
    kc: usize,
    layout: &Layout,
    out: &mut [u32],
    line: &mut [u32],
    interleave: unsafe fn(*const f32, Option<*const f32>, usize, &mut [u32]),
) {
    let line = &mut line[..layout.outer];
    let strip_len = layout.kp * layout.width;
    for p in 0..layout.kp {
        let k0 = 2 * p;
        if k0 < kc {
            let row = |k: usize| src.ptr.add(k * src.k_stride);
            interleave(row(k0), (k0 + 1 < kc).then(|| row(k0 + 1)), outer, line);
        } else {
            line.fill(0);
        }
        let strips = out.chunks_exact_mut(strip_len);
        for (strip, pairs) in strips.zip(line.chunks_exact(layout.width)) {
            strip[p * layout.width..][..layout.width].copy_from_slice(pairs);
        }
    }
}

/// Strips one line wide with k contiguous in memory (k stride 1): each line's pairs are its
/// strip, converted in place by `convert(line, kc, dst)` (zeros past `kc`).
#[cfg(target_arch = "x86_64")]
unsafe fn one_line_strips(
    src: &Lines,
    outer: usize,
    kc: usize,
    layout: &Layout,
    out: &mut [u32],
    convert: unsafe fn(*const f32, usize, &mut [u32]),
) {
    debug_assert_eq!(layout.width, 1);
    for (o, pairs) in out.chunks_exact_mut(layout.kp).enumerate() {
        if o < outer {
            convert(src.ptr.add(o * src.outer_stride), kc, pairs);
        } else {
            pairs.fill(0);
        }
    }
}

/// Any strides, one element at a time.
unsafe fn scalar(src: &Lines, outer: usize, kc: usize, layout: &Layout, out: &mut [u32]) {
    let at = |o: usize, k: usize| {
        if o < outer && k < kc {
            bf16_bits(*src.ptr.add(o * src.outer_stride + k * src.k_stride))
        } else {
            0
        }
    };
    for o in 0..layout.outer {
        for p in 0..layout.kp {
            out[layout.index(o, p)] = u32::from(at(o, 2 * p)) | u32::from(at(o, 2 * p + 1)) << 16;
        }
    }
}
