//! What a kernel is to the blocking loops: its micro-kernel, tile and block sizes, and where
//! a tile of the result goes.

/// Where a micro-kernel puts its tile: `rows × cols` elements of dst (the rest of the tile is
/// padding and is dropped), element (i, j) at `ptr + i·rs + j·cs`.
pub(super) struct DstTile {
    pub ptr: *mut f32,
    pub rs: usize,
    pub cs: usize,
    pub rows: usize,
    pub cols: usize,
    /// Add to dst (else overwrite it without reading it).
    pub accumulate: bool,
}

impl DstTile {
    /// Writes (or adds) the tile given as rows of `W` values, one element at a time.
    ///
    /// # Safety
    /// The tile's `rows × cols` elements are valid for writes (and reads when accumulating);
    /// `tile` has at least `rows` rows and `cols <= W`.
    pub unsafe fn store<const W: usize>(&self, tile: &[[f32; W]]) {
        for (i, row) in tile.iter().enumerate().take(self.rows) {
            for (j, &v) in row.iter().enumerate().take(self.cols) {
                let d = self.ptr.add(i * self.rs + j * self.cs);
                *d = if self.accumulate { *d + v } else { v };
            }
        }
    }
}

/// A micro-kernel: `dst tile [+]= a · b` over `kp` k-pairs, `a` the tile's packed lhs rows and
/// `b` its packed rhs columns (the layouts its [`Scheme`] describes).
///
/// # Safety
/// `a` and `b` hold `kp` pairs of every row / column of the tile; `out` is valid as
/// [`DstTile::store`] requires; the CPU has the features the kernel is compiled for.
pub(super) type TileFn = unsafe fn(kp: usize, a: &[u32], b: &[u32], out: &DstTile);

/// A kernel and the packing and block sizes it wants.
pub(super) struct Scheme {
    /// dst rows and columns of one micro-kernel call.
    pub tile_rows: usize,
    pub tile_cols: usize,
    /// Strip widths of the packed lhs and rhs ([`super::pack::Layout::width`]); divide the tile's sides.
    pub lhs_width: usize,
    pub rhs_width: usize,
    /// The packed k-pairs of a block are rounded up to a multiple of this (zeros after k).
    pub pair_align: usize,
    pub kc_max: usize,
    pub mc_max: usize,
    pub nc_max: usize,
    /// Whether packing may use AVX-512 (else the scalar packing runs).
    pub simd_pack: bool,
    pub tile: TileFn,
}
