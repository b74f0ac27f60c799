//! Stride-1 convolutions as one packed product per image whose right operand, the image's im2col
//! matrix, is never made: each strip of it that the product asks for ([`Strips`]) is read from
//! the image tap by tap, a masked load at a constant shift per (channel, tap) row, zeros where the
//! tap falls in the padding. The weights are the product's left operand as they lie (`O × C·KH·KW`),
//! packed once per pass (kept between inference passes).
//!
//! The product's columns are the output rows laid at the input's row pitch (`OH × W`), so that
//! every tap is one shift of the whole strip; where the output is narrower than the input (VALID
//! padding) the columns past `OW` of each row are computed and dropped.
//!
//! Against Winograd this does all the multiplications, but without transforms: on maps with few
//! channels the transforms cost more than the multiplications they save (the 1×7 and 7×1
//! convolutions ran here too until Winograd's one-axis transforms were made cheaper; they now
//! go through F(2, 7)). Against im2col, nothing is written to memory but the output.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::super::inference::inferring;
use super::super::simd::{as_f32, first_lanes};
use super::super::weight_cache::WeightCache;
use super::super::{par_items, threads, uninit, Elem, SyncPtr};
use super::epilogue::Epilogue;
use super::geom::{Arith, Geom};
use super::packed::{self, Strips, NR, NV};
use super::winograd;

/// Most taps (KH·KW) of a kernel this path takes: the masks of a strip's taps are made on the
/// stack.
const MAX_TAPS: usize = 49;

/// Whether `g` runs here: f32 in inference, stride 1, the output no wider than the input, a
/// kernel other than 1×1, on a CPU with the packed product, and the rule of [`worth`] (or
/// `REPRO_IMPLICIT`: `0` never, `1` wherever it applies).
pub(super) fn applies(g: &Geom) -> bool {
    g.s == 1
        && g.arith == Arith::Native
        && g.ow <= g.w
        && g.kh * g.kw > 1
        && g.kh * g.kw <= MAX_TAPS
        && packed::available()
        && inferring()
        && match setting() {
            Setting::Never => false,
            Setting::Always => true,
            Setting::Rule => worth(g),
        }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Setting {
    Never,
    Always,
    Rule,
}

fn setting() -> Setting {
    static SETTING: std::sync::OnceLock<Setting> = std::sync::OnceLock::new();
    *SETTING.get_or_init(|| match std::env::var("REPRO_IMPLICIT").as_deref() {
        Ok("0") | Ok("off") => Setting::Never,
        Ok("1") | Ok("on") => Setting::Always,
        _ => Setting::Rule,
    })
}

/// Where this path beats the others (Winograd, or else im2col), from each convolution of the
/// three networks timed both ways in evaluation at 299 px, batch 8 (see the README):
/// - maps of at least [`MIN_SIDE`] a side: on smaller ones most of each image's last strip is
///   padding, and im2col's one product over the whole batch wins;
/// - other kernels on few channel pairs (at most [`MAX_SMALL_WEIGHTS`]) and maps of at most
///   [`MAX_SMALL_PLANE`] outputs, where Winograd's transforms outweigh its savings;
/// - any of them where Winograd does not run.
fn worth(g: &Geom) -> bool {
    if g.oh.min(g.ow) < MIN_SIDE {
        return false;
    }
    (g.c * g.o <= MAX_SMALL_WEIGHTS && g.p() <= MAX_SMALL_PLANE) || winograd::Plan::of(g).is_none()
}

/// See [`worth`]: the smallest maps, and the largest (input × output) channel count and map
/// where this path runs before Winograd.
const MIN_SIDE: usize = 16;
const MAX_SMALL_WEIGHTS: usize = 32 * 64;
const MAX_SMALL_PLANE: usize = 48 * 48;

/// Columns per product where an image's product is split into blocks: the block's results
/// (`rows ×` this) stay in L2 while the product passes over them once per step of 192 along k
/// (the packed product's `KC`), and the epilogue finds them there.
fn block_columns(rows: usize) -> usize {
    const BLOCK_ELEMS: usize = 1 << 16;
    (BLOCK_ELEMS / rows.max(1)).div_ceil(NR).max(1) * NR
}

/// Into how many column ranges to split each of `n` images' products of `cols` columns so that
/// the tasks share out evenly over the threads: whole images where their number allows, else
/// every image in as many ranges as there are threads.
fn image_parts(n: usize, cols: usize) -> usize {
    let t = threads();
    if n.is_multiple_of(t) {
        1
    } else {
        t.min(cols.div_ceil(NR)).max(1)
    }
}

/// Columns `c0..c1` of range `part` of `parts` ([`image_parts`]) of `cols`, in whole strips.
fn part_columns(cols: usize, part: usize, parts: usize) -> (usize, usize) {
    let strips = cols.div_ceil(NR);
    (
        (strips * part / parts * NR).min(cols),
        (strips * (part + 1) / parts * NR).min(cols),
    )
}

thread_local! {
    static CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Forward passes this thread has run here so far (tests check that the path they mean to cover
/// ran; counted per thread, so that tests running at the same time do not add to each other's).
#[cfg(test)]
pub(crate) fn calls() -> u64 {
    CALLS.with(std::cell::Cell::get)
}

/// The forward pass of `g` (input images at `xb` = (offset, image stride) in `x`, weights `wt`),
/// `epi` applied to the outputs; `None` unless the tensors are f32.
pub(super) fn forward<T: Elem>(
    x: &[T],
    xb: (usize, usize),
    wt: &[T],
    g: &Geom,
    epi: Epilogue<T>,
    kept: Option<&WeightCache>,
) -> Option<Vec<T>> {
    let (x, wt) = (as_f32(x)?, as_f32(wt)?);
    CALLS.with(|c| c.set(c.get() + 1));
    let lhs = packed::packed_weights(wt, (g.o, g.k()), kept);
    let (p, grid) = (g.p(), g.oh * g.w);
    let mut y = uninit::<T>(g.n * g.o * p);
    let yp = SyncPtr(y.as_mut_ptr());
    let parts = image_parts(g.n, grid);
    let block = block_columns(g.o);
    par_items(g.n * parts, |item| {
        let (i, (c0, c1)) = (item / parts, part_columns(grid, item % parts, parts));
        let image = x[xb.0 + i * xb.1..].as_ptr();
        let yp = &yp;
        // SAFETY: image i's output planes, of which this task alone writes columns c0..c1.
        let y = unsafe { yp.0.add(i * g.o * p) };
        let mut narrow = Vec::new();
        for b0 in (c0..c1).step_by(block) {
            let cols = block.min(c1 - b0);
            let src = ImageTaps {
                x: image,
                g: *g,
                first: b0,
            };
            if g.ow == g.w {
                // SAFETY: the CPU has AVX-512F (`applies`); the strips read image i's entries
                // only (masked outside it) and write these columns of its O planes.
                unsafe { packed::product_of(&lhs, cols, &src, (y.add(b0).cast(), p), false) };
                for o in 0..g.o {
                    // SAFETY: as above.
                    epi.channel(o, unsafe {
                        std::slice::from_raw_parts_mut(y.add(o * p + b0), cols)
                    });
                }
                continue;
            }
            // Output rows narrower than the grid's: the block's grid columns go to a buffer,
            // and each row's first OW columns from there to the output.
            narrow.resize(g.o * cols, 0f32);
            // SAFETY: as above, the buffer holding O rows of `cols`.
            unsafe { packed::product_of(&lhs, cols, &src, (narrow.as_mut_ptr(), cols), false) };
            let mut q = b0;
            while q < b0 + cols {
                let (r, u) = (q / g.w, q % g.w);
                let run = (g.w - u).min(b0 + cols - q);
                if u < g.ow {
                    let len = run.min(g.ow - u);
                    for o in 0..g.o {
                        let from = &narrow[o * cols + q - b0..][..len];
                        // SAFETY: T is f32 (checked on entry); output row r of channel o,
                        // columns u..u + len, come from this block alone.
                        let (from, to) = unsafe {
                            (
                                std::slice::from_raw_parts(from.as_ptr().cast::<T>(), len),
                                std::slice::from_raw_parts_mut(y.add(o * p + r * g.ow + u), len),
                            )
                        };
                        epi.channel_from(o, to, from);
                    }
                }
                q += run;
            }
        }
    });
    Some(y)
}

/// The im2col matrix of one image, read in place: row `c·KH·KW + i·KW + j` (channel c, tap
/// (i, j)), column `q` of the grid (output row `q / W`, column `q mod W`) holds input entry
/// `q + (i − PH)·W + (j − PW)` of channel c's plane, or 0 where that lies in the padding.
struct ImageTaps {
    x: *const f32,
    g: Geom,
    /// The grid column of the product's first column.
    first: usize,
}

// The image outlives the product that reads it, and nothing writes to it meanwhile.
unsafe impl Sync for ImageTaps {}

impl Strips for ImageTaps {
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
    unsafe fn fill(&self, p0: usize, rows: usize, j0: usize, cols: usize, strip: *mut f32) {
        #[cfg(target_arch = "x86_64")]
        {
            let g = &self.g;
            let (taps, plane, q0) = (g.kh * g.kw, g.h * g.w, self.first + j0);
            // Each lane's output row and column.
            let mut row = [0i32; NR];
            let mut col = [0i32; NR];
            for l in 0..NR {
                row[l] = ((q0 + l) / g.w) as i32;
                col[l] = ((q0 + l) % g.w) as i32;
            }
            let (h, w) = (_mm512_set1_epi32(g.h as i32), _mm512_set1_epi32(g.w as i32));
            // Per tap, the lanes that read inside the image (an unsigned compare also rules out
            // the negative rows and columns) and the shift.
            let mut masks = [[0 as __mmask16; NV]; MAX_TAPS];
            let mut shifts = [0isize; MAX_TAPS];
            for t in 0..taps {
                let (dy, dx) = (
                    (t / g.kw) as i32 - g.ph as i32,
                    (t % g.kw) as i32 - g.pw as i32,
                );
                let (dy_v, dx_v) = (_mm512_set1_epi32(dy), _mm512_set1_epi32(dx));
                for (v, mask) in masks[t].iter_mut().enumerate() {
                    let r = _mm512_loadu_si512(row.as_ptr().add(16 * v).cast());
                    let c = _mm512_loadu_si512(col.as_ptr().add(16 * v).cast());
                    let inside = _mm512_cmplt_epu32_mask(_mm512_add_epi32(r, dy_v), h)
                        & _mm512_cmplt_epu32_mask(_mm512_add_epi32(c, dx_v), w);
                    *mask = inside & first_lanes(cols.saturating_sub(16 * v));
                }
                shifts[t] = (dy * g.w as i32 + dx) as isize;
            }
            let (mut c, mut t) = (p0 / taps, p0 % taps);
            for p in 0..rows {
                let src = self
                    .x
                    .wrapping_add(c * plane + q0)
                    .wrapping_offset(shifts[t]);
                for (v, &mask) in masks[t].iter().enumerate() {
                    // Lanes outside the image are masked off and read nothing.
                    let x = _mm512_maskz_loadu_ps(mask, src.wrapping_add(16 * v));
                    _mm512_storeu_ps(strip.add(p * NR + 16 * v), x);
                }
                t += 1;
                if t == taps {
                    (c, t) = (c + 1, 0);
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (p0, rows, j0, cols, strip);
    }
}
