//! The portable kernel: the broadcast scheme's packing (scalar) and tile shape, with f32
//! arithmetic on the unpacked bf16 values.

use super::scheme::{DstTile, Scheme};

/// Tile rows and columns (the same strips as the AVX-512 broadcast kernel).
const MR: usize = 12;
const NR: usize = 32;

pub(super) static BROADCAST: Scheme = Scheme {
    tile_rows: MR,
    tile_cols: NR,
    lhs_width: MR,
    rhs_width: NR,
    pair_align: 1,
    kc_max: 256,
    mc_max: 96,
    nc_max: 1024,
    simd_pack: false,
    tile,
};

/// The two values of a packed pair (k even, k odd).
fn unpack(pair: u32) -> (f32, f32) {
    (
        f32::from_bits(pair << 16),
        f32::from_bits(pair & 0xFFFF_0000),
    )
}

/// # Safety
/// As for [`super::driver::TileFn`].
unsafe fn tile(kp: usize, a: &[u32], b: &[u32], out: &DstTile) {
    let mut acc = [[0f32; NR]; MR];
    for (a_pairs, b_pairs) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kp) {
        let (mut b_even, mut b_odd) = ([0f32; NR], [0f32; NR]);
        for ((e, o), &pair) in b_even.iter_mut().zip(&mut b_odd).zip(b_pairs) {
            (*e, *o) = unpack(pair);
        }
        for (row, &pair) in acc.iter_mut().zip(a_pairs) {
            let (a_even, a_odd) = unpack(pair);
            for ((x, e), o) in row.iter_mut().zip(&b_even).zip(&b_odd) {
                *x += a_even * e + a_odd * o;
            }
        }
    }
    out.store(&acc)
}
