//! The blocking loops shared by every kernel: k blocks of at most `kc_max`, column blocks of
//! rhs packed once per k block, row blocks of lhs packed once per (column, k) block, and the
//! micro-kernel over the tiles, column tile outer so that one packed rhs tile stays in L1 while
//! the packed lhs block (in L2) streams past it.

use std::cell::Cell;

use super::pack::{self, Layout, Lines};
use super::scheme::{DstTile, Scheme};

/// Runs `dst [+]= lhs · rhs` with `scheme`; `m, n, k > 0`.
///
/// # Safety
/// As for [`super::gemm_bf16`]; the CPU runs the scheme's kernel.
pub(super) unsafe fn run(
    s: &Scheme,
    (m, n, k): (usize, usize, usize),
    dst: (*mut f32, usize, usize),
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
) {
    let kc_step = block_len(k, s.kc_max, 2 * s.pair_align);
    let mc_step = block_len(m, s.mc_max, s.tile_rows);
    let nc_step = block_len(n, s.nc_max, s.tile_cols);
    let kp_max = kc_step.div_ceil(2).next_multiple_of(s.pair_align);
    let (mc_pad, nc_pad) = (
        mc_step.next_multiple_of(s.tile_rows),
        nc_step.next_multiple_of(s.tile_cols),
    );
    let (a_len, b_len) = (mc_pad * kp_max, nc_pad * kp_max);
    let line_len = mc_pad.max(nc_pad).max(kp_max);
    with_scratch(a_len + b_len + line_len, |scratch| {
        let (a_buf, rest) = scratch.split_at_mut(a_len);
        let (b_buf, line) = rest.split_at_mut(b_len);
        for jc in (0..n).step_by(nc_step) {
            let nc = nc_step.min(n - jc);
            for pc in (0..k).step_by(kc_step) {
                let kc = kc_step.min(k - pc);
                let kp = kc.div_ceil(2).next_multiple_of(s.pair_align);
                let b_layout = Layout {
                    width: s.rhs_width,
                    kp,
                    outer: nc.next_multiple_of(s.tile_cols),
                };
                let b = &mut b_buf[..b_layout.len()];
                let rhs_block = Lines {
                    ptr: rhs.0.add(pc * rhs.1 + jc * rhs.2),
                    outer_stride: rhs.2,
                    k_stride: rhs.1,
                };
                pack::pack(&rhs_block, nc, kc, &b_layout, s.simd_pack, b, line);
                for ic in (0..m).step_by(mc_step) {
                    let mc = mc_step.min(m - ic);
                    let a_layout = Layout {
                        width: s.lhs_width,
                        kp,
                        outer: mc.next_multiple_of(s.tile_rows),
                    };
                    let a = &mut a_buf[..a_layout.len()];
                    let lhs_block = Lines {
                        ptr: lhs.0.add(ic * lhs.1 + pc * lhs.2),
                        outer_stride: lhs.1,
                        k_stride: lhs.2,
                    };
                    pack::pack(&lhs_block, mc, kc, &a_layout, s.simd_pack, a, line);
                    for jr in (0..nc).step_by(s.tile_cols) {
                        let b_tile = &b[jr * kp..][..s.tile_cols * kp];
                        for ir in (0..mc).step_by(s.tile_rows) {
                            let a_tile = &a[ir * kp..][..s.tile_rows * kp];
                            let out = DstTile {
                                ptr: dst.0.add((ic + ir) * dst.1 + (jc + jr) * dst.2),
                                rs: dst.1,
                                cs: dst.2,
                                rows: s.tile_rows.min(mc - ir),
                                cols: s.tile_cols.min(nc - jr),
                                accumulate: accumulate || pc > 0,
                            };
                            (s.tile)(kp, a_tile, b_tile, &out);
                        }
                    }
                }
            }
        }
    })
}

/// The step that splits `total` into the fewest blocks of at most `max` (a multiple of
/// `align`), as even as a multiple of `align` allows.
fn block_len(total: usize, max: usize, align: usize) -> usize {
    let blocks = total.div_ceil(max);
    total.div_ceil(blocks).next_multiple_of(align)
}

thread_local! {
    static SCRATCH: Cell<Vec<u32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on `len` words of this thread's scratch buffer (contents unspecified), starting on
/// a 64-byte boundary. The buffer is kept for the next call.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [u32]) -> R) -> R {
    const SLACK: usize = 64 / size_of::<u32>() - 1;
    let mut buf = SCRATCH.with(Cell::take);
    if buf.len() < len + SLACK {
        buf = vec![0; len + SLACK];
    }
    let start = buf.as_ptr().align_offset(64).min(SLACK);
    let result = f(&mut buf[start..start + len]);
    SCRATCH.with(|s| s.set(buf));
    result
}
