//! Stride-1 convolutions with kernels of up to 7 taps along each axis (3×3, 5×5, 1×n, n×1) by
//! Winograd's minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2016). Along an axis with `r` taps, F(m, r) gives `m` outputs of the correlation
//! from `α = m + r − 1` inputs with `α` products instead of `m·r`: the inputs and the kernel are
//! each taken to `α` points (`Bᵀ d`, `G g`), multiplied there, and the products taken back
//! (`Aᵀ`). Over a tile of `m_h × m_w` outputs and `C` channels that is `α_h·α_w` matrix products
//! of `O × C` (the kernel's points) by `C × tiles` (the inputs' points), 4× fewer multiply-adds
//! than the direct convolution for F(4, 3) on both axes.
//!
//! The forward pass uses F(m, r); the input gradient of a stride-1 convolution is itself one
//! (`grad_input_as_conv`), so it comes here through the forward pass; the weight gradient, a
//! correlation of the input with the output gradient, is F(r, m) on the same tiles (the same
//! `Bᵀ`; the output gradient's tile takes the place of the kernel), its products summed over the
//! tiles in `O × C` matrices before going back to the `r_h × r_w` taps.
//!
//! The sums are the direct convolution's up to rounding: the points 0, ±1, ±2 (±1/2 beyond 6
//! points) and ∞ keep the transforms' entries between 1/24 and 16 for the 3×3 and 5×5 kernels
//! that come here (1/90 and 64 with 7 taps); the tests below bound the error against the
//! definition, and timm's logits at 299 px, which go through it, still match. Only convolutions
//! that gain take it ([`Plan::worth`]): large maps and enough channels. Kernels of one row or
//! column (1×7, 7×1) skip the one-tap axis, and take their windows where they lie in the image
//! (see [`Plan::column_input_points`] and `phases::short_row_windows`).
//! `REPRO_WINOGRAD=0` turns it off (the im2col path then runs every convolution); bf16 products
//! never come here.

use gemm::Parallelism;

use super::super::simd::{as_f32, as_f32_mut, wide_fn};
use super::super::weight_cache::{kept_or_made, WeightCache};
use super::super::{par_items, par_map, sum_in_order, threads, uninit, zero, Elem, SyncPtr};
use super::epilogue::Epilogue;
use super::geom::{Arith, Geom};
use super::matmul::mm;
use super::packed::{self, PackedLhs};
use super::phases;

/// Whether Winograd's convolutions are in use: `REPRO_WINOGRAD` unset or anything but `0`/`off`.
pub(crate) fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("REPRO_WINOGRAD").map_or(true, |v| v != "0" && v != "off"))
}

thread_local! {
    static CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many forward passes and weight gradients this thread has run through Winograd (tests
/// check which convolutions took it; counted per thread, so that tests running at the same time
/// do not add to each other's).
#[cfg(test)]
pub(crate) fn calls() -> u64 {
    CALLS.with(std::cell::Cell::get)
}

/// The finite points the transforms evaluate at, in the order they are taken (∞ is always the
/// last point): small integers and their halves keep the transforms' entries moderate.
const POINTS: [f64; 7] = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5];

/// Outputs per tile along an axis with `r` taps. F(4, 3) on a 3-tap axis (6 points); two
/// outputs on longer ones, whose α would otherwise pass 8 points and lose accuracy.
fn tile_outputs(r: usize) -> usize {
    match r {
        1 => 1,
        2 | 3 => 4,
        _ => 2,
    }
}

/// One axis of the algorithm F(m, r) over `α = m + r − 1` points (an axis of one tap is the
/// identity, `m = r = α = 1`).
#[derive(Clone, Debug)]
struct Axis {
    m: usize,
    r: usize,
    /// `Aᵀ`, m × α: the products at the points back to the `m` outputs.
    at: Vec<f64>,
    /// `G`, α × r: the `r` taps to the points (Lagrange's denominators folded in).
    g: Vec<f64>,
    /// `Bᵀ`, α × α: the `α` inputs to the points. Depends on α only.
    bt: Vec<f64>,
}

/// The coefficients (lowest power first) of `Π (x − q)` over `roots`.
fn poly_from_roots(roots: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut c = vec![1.0];
    for q in roots {
        let mut next = vec![0.0; c.len() + 1];
        for (i, &v) in c.iter().enumerate() {
            next[i + 1] += v;
            next[i] -= q * v;
        }
        c = next;
    }
    c
}

impl Axis {
    /// F(m, r) as the transpose of the Toom-Cook linear convolution of an `m`-vector by an
    /// `r`-vector: evaluation at the points (`A`, `G`), interpolation back (`Bᵀ`'s transpose), the
    /// point at ∞ standing for the leading coefficients.
    fn new(m: usize, r: usize) -> Self {
        let a = m + r - 1;
        let pts = &POINTS[..a - 1];
        let (mut at, mut g, mut bt) = (vec![0.0; m * a], vec![0.0; a * r], vec![0.0; a * a]);
        for (j, &p) in pts.iter().enumerate() {
            let others = || pts.iter().enumerate().filter(move |&(l, _)| l != j);
            let f: f64 = others().map(|(_, &q)| p - q).product();
            for i in 0..m {
                at[i * a + j] = p.powi(i as i32);
            }
            for k in 0..r {
                g[j * r + k] = p.powi(k as i32) / f;
            }
            for (i, v) in poly_from_roots(others().map(|(_, &q)| q))
                .into_iter()
                .enumerate()
            {
                bt[j * a + i] = v;
            }
        }
        at[(m - 1) * a + a - 1] = 1.0;
        g[(a - 1) * r + r - 1] = 1.0;
        for (i, v) in poly_from_roots(pts.iter().copied()).into_iter().enumerate() {
            bt[(a - 1) * a + i] = v;
        }
        Self { m, r, at, g, bt }
    }

    fn alpha(&self) -> usize {
        self.m + self.r - 1
    }
}

/// Kernels per chunk of [`Plan::kernel_points`]: its taps, halves and points stay in L2 (63
/// entries a kernel for a 3×3 through F(4, 3), 22 for a 1×7 through F(2, 7): 252 and 88 KiB of
/// f32).
const KERNEL_CHUNK: usize = 1024;

/// `f(first kernel, kernels)` for each chunk of [`KERNEL_CHUNK`] of `oc` kernels, the chunks in
/// parallel.
fn kernel_chunks(oc: usize, f: impl Fn(usize, usize) + Sync + Send) {
    par_items(oc.div_ceil(KERNEL_CHUNK), |chunk| {
        let q0 = chunk * KERNEL_CHUNK;
        f(q0, KERNEL_CHUNK.min(oc - q0))
    });
}

/// Entries of a block's transformed operands (both of them, all points): about 2 MiB of f32.
const BLOCK_ELEMS: usize = 1 << 19;

/// Fewest tiles in a block, above [`BLOCK_ELEMS`] where the channels are many: each of a
/// block's products packs the kernel's points (`O × C`) for the block's tiles alone, and with a
/// few dozen tiles that packing weighs as much as the products (Inception-ResNet-v2's 256→256
/// 3×3 at 35×35, batch 8, had blocks of 18 tiles: forward 55 → 44 ms and weight gradient 65 →
/// 40 ms with 64; its 192→80 input gradient at 71×71 54 → 38 and 67 → 50 ms; the convolutions
/// whose blocks already held 64 tiles unchanged).
const MIN_BLOCK_TILES: usize = 64;

/// [`MIN_BLOCK_TILES`] where the kernel's points are packed once per pass
/// ([`super::packed`]): a block needs only enough tiles to fill the micro-kernel's strips of 48
/// columns (Inception-v4 at 299 px, batch 8, its Winograd convolutions a pass, three alternated
/// runs: 105–111 ms with 48, 110–118 with 16, 109–114 with 96).
const MIN_PACKED_BLOCK_TILES: usize = 48;

/// Fewest tiles (over the batch) a convolution goes through Winograd with: the kernel's
/// transform and the packing of its points cost as much per kernel entry as a few hundred tiles'
/// products save (Inception-C's 8×8 maps at batch 8, 32 tiles of 4×4, ran 1.3× slower).
const MIN_TILES: usize = 256;

/// Fewest outputs along each side of the map: on smaller maps a tile row holds a few tiles, the
/// transforms run on rows too short to pay, and the whole-batch im2col GEMM is at its best
/// (Inception-v3's 5×5 at 11×11, 107 px, batch 16, 576 tiles: forward 2.2 vs 2.0 ms, weight
/// gradient 2.3 vs 1.9 ms through Winograd and im2col; a 3×3 there, 1.6 vs 1.4 and 1.9 vs 1.4;
/// the 3×3s at 23×23 and the 1×7s at 17×17 gain 15–40 %).
const MIN_SIDE: usize = 16;

/// Fewest input or output channels: the transforms of the inputs and outputs cost per channel
/// what the products cost per pair of channels (Inception-v3's 20→48 3×3 convolution at the
/// CIFAR-10 scale made its step 4 % slower; the 32→32 and 32→64 ones of its stem at 299 px
/// still gain 10–25 %).
const MIN_CHANNELS: usize = 32;

/// How one convolution runs through Winograd: each axis's F(m, r), and its tiles.
pub(super) struct Plan {
    h: Axis,
    w: Axis,
    /// Tiles per image along each axis.
    th: usize,
    tw: usize,
}

impl Plan {
    /// The plan for `g`, if `g` is a stride-1 convolution with native products, a kernel of
    /// 2 to 7 taps along both axes, outputs at least a tile long, and enough tiles and channels
    /// to pay for the transforms ([`Self::worth`]); `None` also when `REPRO_WINOGRAD=0`. Every
    /// convolution asks, so the axes' matrices are made only for those that take it.
    pub(super) fn of(g: &Geom) -> Option<Self> {
        let (th, tw) = Self::tiles(g)?;
        if !enabled() || !Self::worth(g, th * tw) {
            return None;
        }
        Self::new(g)
    }

    /// Whether the transforms pay for `g`, with `tiles` tiles an image: enough tiles, channels
    /// and outputs a side, whatever the kernel. The 1×7 and 7×1 ones (F(2, 7), 8 products for
    /// 14) had lost to the whole-batch im2col GEMM on the networks' 17×17 maps (Inception-v4's
    /// 224→256 1×7 and 7×1 at 299 px, batch 8: 56–63 ms a pass against 49–53) until their
    /// transforms were made cheap (the one-tap axis skipped, `Bᵀ` and `Aᵀ` in one pass each, the
    /// windows read where they lie); since then they gain in training too (steps at 299 px,
    /// batch 8, alternated on the same binary: Inception-v4 2.59–2.63 s against 2.73–2.85,
    /// Inception-v3 1.31–1.32 against 1.32–1.34) and more in evaluation.
    fn worth(g: &Geom, tiles: usize) -> bool {
        g.n * tiles >= MIN_TILES && g.c.min(g.o) >= MIN_CHANNELS && g.oh.min(g.ow) >= MIN_SIDE
    }

    /// Tiles per image down and across, wherever the algorithm applies to `g` (1×n and n×1
    /// kernels too), worth it or not.
    fn tiles(g: &Geom) -> Option<(usize, usize)> {
        let fits = |k: usize, out: usize| k <= 7 && (k == 1 || out >= tile_outputs(k));
        if g.s != 1
            || g.arith != Arith::Native
            || (g.kh == 1 && g.kw == 1)
            || !fits(g.kh, g.oh)
            || !fits(g.kw, g.ow)
        {
            return None;
        }
        let (mh, mw) = (tile_outputs(g.kh), tile_outputs(g.kw));
        Some((g.oh.div_ceil(mh), g.ow.div_ceil(mw)))
    }

    /// The plan for `g` wherever the algorithm applies, worth it or not.
    fn new(g: &Geom) -> Option<Self> {
        let (th, tw) = Self::tiles(g)?;
        Some(Self {
            h: Axis::new(tile_outputs(g.kh), g.kh),
            w: Axis::new(tile_outputs(g.kw), g.kw),
            th,
            tw,
        })
    }

    fn points(&self) -> usize {
        self.h.alpha() * self.w.alpha()
    }

    /// The tile rows (over all images: row `n·th + i` is image `n`'s `i`-th) split into blocks
    /// whose transformed operands, `C` and `O` channels at every point, fit [`BLOCK_ELEMS`] unless
    /// that leaves fewer than [`MIN_BLOCK_TILES`] tiles ([`MIN_PACKED_BLOCK_TILES`] where the
    /// kernel's points are `packed`), into a multiple of the threads where there are enough
    /// rows, all of them within a row of the same size.
    fn blocks(&self, g: &Geom, packed: bool) -> Blocks {
        let rows = g.n * self.th;
        let per_row = self.points() * (g.c + g.o) * self.tw;
        let min_tiles = if packed {
            MIN_PACKED_BLOCK_TILES
        } else {
            MIN_BLOCK_TILES
        };
        let most = (BLOCK_ELEMS / per_row.max(1))
            .max(min_tiles.div_ceil(self.tw))
            .clamp(1, rows.div_ceil(threads()).max(1))
            .min(rows);
        // As many blocks as that takes, rounded up to a multiple of the threads, of even size:
        // blocks of `most` rows and a short last one left threads idle at the end (Inception-
        // ResNet-v2's 7×1 at 17×17, 72 tile rows in blocks of 10: 40 rows on one thread, 32 on
        // the other).
        let count = rows
            .div_ceil(most.max(1))
            .next_multiple_of(threads())
            .min(rows);
        Blocks {
            rows,
            per: rows.div_ceil(count.max(1)).max(1),
        }
    }

    /// `U`: the kernel at every point, `u[(ξ·α_w + ν)·O·C + o·C + c]`: `G` along the rows, then
    /// along the columns, a chunk of [`KERNEL_CHUNK`] kernels at a time on each thread (its taps,
    /// halves and points stay in L1 and L2; over all `O·C` kernels at once, each of the
    /// transforms' passes went through memory: 1.8–3.8 ms a call on one thread for Inception-v4's
    /// 17×17 and 35×35 convolutions, most of what Winograd saved on some of them).
    fn kernel_points<T: Elem>(&self, wt: &[T], g: &Geom) -> Vec<T> {
        let (ah, aw, oc) = (self.h.alpha(), self.w.alpha(), g.o * g.c);
        let (kh, kw, pts) = (g.kh, g.kw, self.points());
        let mut u = uninit::<T>(pts * oc);
        let up = SyncPtr(u.as_mut_ptr());
        kernel_chunks(oc, |q0, len| {
            let up = &up;
            // taps[(i·kw + j)·len + q]: tap (i, j) of kernel q0 + q.
            let mut taps = uninit::<T>(kh * kw * len);
            let kernels = wt[q0 * kh * kw..][..len * kh * kw].chunks_exact(kh * kw);
            for (q, k) in kernels.enumerate() {
                for (r, &v) in k.iter().enumerate() {
                    taps[r * len + q] = v;
                }
            }
            let mut half = uninit::<T>(ah * kw * len);
            for j in 0..kw {
                let (d, s) = (&mut half[j * len..], &taps[j * len..]);
                self.h.apply_g(d, kw * len, s, kw * len, len);
            }
            let mut points = uninit::<T>(pts * len);
            for xi in 0..ah {
                let (d, s) = (&mut points[xi * aw * len..], &half[xi * kw * len..]);
                self.w.apply_g(d, len, s, len, len);
            }
            for (p, row) in points.chunks_exact(len).enumerate() {
                // SAFETY: kernels q0..q0 + len of point p, written by this chunk alone.
                unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), up.0.add(p * oc + q0), len) };
            }
        });
        u
    }

    /// The kernel's points ([`Self::kernel_points`]) packed for the products, one matrix
    /// (`O × C`) a point.
    fn packed_kernel_points(&self, wt: &[f32], g: &Geom) -> Vec<PackedLhs> {
        let (u, oc) = (self.kernel_points(wt, g), g.o * g.c);
        par_map(self.points(), |p| {
            PackedLhs::pack(&u[p * oc..][..oc], (g.o, g.c), g.c)
        })
    }

    /// What the kernel's points depend on besides the weights: their dimensions and each
    /// axis's F(m, r).
    fn shape(&self, g: &Geom) -> [usize; 6] {
        [g.o, g.c, g.kh, g.kw, self.h.m, self.w.m]
    }

    /// `V`: the input tiles of block rows `rows` at every point, `v[(ξ·α_w + ν)·C·tb + c·tb + t]`
    /// with `t = (row − rows.start)·tw + tile column`.
    fn input_points<T: Elem>(
        &self,
        x: &[T],
        xb: (usize, usize),
        g: &Geom,
        rows: std::ops::Range<usize>,
        v: &mut [T],
    ) {
        if self.down_the_rows(g) {
            return self.column_input_points(x, xb, g, rows, v);
        }
        let plane = g.h * g.w;
        self.window_points(
            (g.c, |c, n| &x[xb.0 + n * xb.1 + c * plane..][..plane]),
            ((g.h, g.w), (-(g.ph as isize), -(g.pw as isize))),
            (self.h.alpha(), self.w.alpha()),
            rows,
            (
                |d, ds, s, ss, len| self.h.apply_bt(d, ds, s, ss, len),
                |d, ds, s, ss, len| self.w.apply_bt(d, ds, s, ss, len),
            ),
            v,
        )
    }

    /// Whether the kernel is one column (n×1) without padding across, on six or eight points:
    /// each tile's window is then `α_h` stretches of whole image rows
    /// ([`Self::column_input_points`]).
    fn down_the_rows(&self, g: &Geom) -> bool {
        self.w.alpha() == 1 && g.pw == 0 && self.tw == g.w && matches!(self.h.alpha(), 6 | 8)
    }

    /// [`Self::input_points`] for an n×1 kernel ([`Self::down_the_rows`]) with a dedicated pass
    /// of `Bᵀ` (six or eight points). Tile row `ty`'s window is image rows `m·ty − ph + j`
    /// (`j < α`): with the image's rows (zero above and below it) split into their `m` phases,
    /// tap `j` of every window of an image's tile rows is one stretch of phase `j mod m`, so
    /// each image and channel takes one pass of `Bᵀ` over all its tile rows in the block.
    fn column_input_points<T: Elem>(
        &self,
        x: &[T],
        xb: (usize, usize),
        g: &Geom,
        rows: std::ops::Range<usize>,
        v: &mut [T],
    ) {
        let (a, m, w, tb) = (self.h.alpha(), self.h.m, g.w, rows.len() * self.tw);
        let plane = g.h * w;
        // Rows of each phase a stretch of `count` tile rows reads.
        let span = |count: usize| count + (a - 1) / m;
        let mut phases = uninit::<T>(m * span(self.th) * w);
        for n in rows.start / self.th..rows.end.div_ceil(self.th) {
            let first = rows.start.max(n * self.th) - n * self.th;
            let count = rows.end.min((n + 1) * self.th) - n * self.th - first;
            let at = (n * self.th + first - rows.start) * w;
            let len = count * w;
            let pitch = span(count) * w;
            for ch in 0..g.c {
                let p = &x[xb.0 + n * xb.1 + ch * plane..][..plane];
                for (i, d) in phases[..m * pitch].chunks_exact_mut(w).enumerate() {
                    let (q, r) = (i / span(count), i % span(count));
                    let iy = ((first + r) * m + q) as isize - g.ph as isize;
                    match (0..g.h as isize).contains(&iy) {
                        true => d.copy_from_slice(&p[iy as usize * w..][..w]),
                        false => d.fill(zero()),
                    }
                }
                let tap = |j: usize| &phases[(j % m) * pitch + (j / m) * w..][..len];
                let dst = &mut v[ch * tb + at..];
                match a {
                    6 => bt6_rows(rows_mut(dst, g.c * tb, len), std::array::from_fn(tap)),
                    _ => bt8_rows(rows_mut(dst, g.c * tb, len), std::array::from_fn(tap)),
                }
            }
        }
    }

    /// The points of the windows of every plane in block rows `rows`: the `p × q` windows of
    /// plane `ch < planes` (`plane(ch, n)` of image `n`; `map` its size and the first window's
    /// corner, as [`Self::gather_windows`] takes them) taken by `along_h` down the rows
    /// (p → α_h) and by `along_w` across the columns (q → α_w), point (ξ, ν) of tile `t` at
    /// `out[(ξ·α_w + ν)·planes·tb + ch·tb + t]`. The transforms have `Axis::apply_bt`'s
    /// arguments.
    fn window_points<'a, T: Elem>(
        &self,
        (planes, plane): (usize, impl Fn(usize, usize) -> &'a [T]),
        map: ((usize, usize), (isize, isize)),
        (p, q): (usize, usize),
        rows: std::ops::Range<usize>,
        (along_h, along_w): (
            impl Fn(&mut [T], usize, &[T], usize, usize),
            impl Fn(&mut [T], usize, &[T], usize, usize),
        ),
        out: &mut [T],
    ) {
        let (ah, aw) = (self.h.alpha(), self.w.alpha());
        let tb = rows.len() * self.tw;
        // An axis of one tap (1×n and n×1 kernels) is the identity: its pass is skipped, the
        // window standing for the half-way points (1×n) or the pass down the rows writing the
        // points (n×1).
        let (h_identity, w_identity) = (ah == 1 && p == 1, aw == 1 && q == 1);
        let mut window = uninit::<T>(p * q * tb);
        let mut half = uninit::<T>(if h_identity || w_identity {
            0
        } else {
            ah * q * tb
        });
        let mut scratch = Vec::new();
        for ch in 0..planes {
            // window[a][b][t]: entry (a, b) of tile t's window, zero outside the plane.
            let windows = (&mut window[..], &mut scratch);
            self.gather_windows(|n| plane(ch, n), map, (p, q), rows.clone(), windows);
            if w_identity {
                along_h(&mut out[ch * tb..], planes * tb, &window, tb, tb);
                continue;
            }
            let half: &[T] = if h_identity {
                &window
            } else {
                for b in 0..q {
                    along_h(&mut half[b * tb..], q * tb, &window[b * tb..], q * tb, tb);
                }
                &half
            };
            for xi in 0..ah {
                let d = &mut out[(xi * aw * planes + ch) * tb..];
                along_w(d, planes * tb, &half[xi * q * tb..], tb, tb);
            }
        }
    }

    /// `dst[(a·nb + b)·tb + t]` for `a < na`, `b < nb`: entry (a, b) of the window of tile `t` of
    /// block rows `rows`, i.e. row `ty·m_h + a + first.0` and column `tx·m_w + b + first.1` of
    /// image `n`'s plane `plane(n)` (`h × w`), zero outside it. `scratch` is scratch.
    fn gather_windows<'a, T: Elem>(
        &self,
        plane: impl Fn(usize) -> &'a [T],
        ((h, w), first): ((usize, usize), (isize, isize)),
        (na, nb): (usize, usize),
        rows: std::ops::Range<usize>,
        (dst, scratch): (&mut [T], &mut Vec<T>),
    ) {
        let tb = rows.len() * self.tw;
        for (k, row) in rows.enumerate() {
            let (n, ty) = (row / self.th, row % self.th);
            let p = plane(n);
            for a in 0..na {
                let iy = (ty * self.h.m + a) as isize + first.0;
                let src = (0..h as isize)
                    .contains(&iy)
                    .then(|| &p[iy as usize * w..][..w]);
                let d = &mut dst[a * nb * tb + k * self.tw..];
                strided_rows(d, tb, src, first.1, (self.w.m, nb, self.tw), scratch);
            }
        }
    }

    /// Takes the products `mp[(ξ·α_w + ν)·O·tb + o·tb + t]` of block rows `rows` back to outputs
    /// (`Aᵀ` along the columns, then the rows) and writes them into `y` (N×O×OH×OW), `epi`
    /// applied to each channel's outputs once the block has written them.
    fn write_outputs<T: Elem>(
        &self,
        mp: &[T],
        g: &Geom,
        rows: std::ops::Range<usize>,
        (y, epi): (&SyncPtr<T>, Epilogue<T>),
    ) {
        let (ah, aw, mh, mw) = (self.h.alpha(), self.w.alpha(), self.h.m, self.w.m);
        let tb = rows.len() * self.tw;
        // As in `window_points`, an axis of one tap is skipped.
        let (h_identity, w_identity) = (ah == 1, aw == 1);
        let mut half = uninit::<T>(if h_identity || w_identity {
            0
        } else {
            ah * mw * tb
        });
        let mut out = uninit::<T>(mh * mw * tb);
        for o in 0..g.o {
            if w_identity {
                self.h.apply_at(&mut out, tb, &mp[o * tb..], g.o * tb, tb);
            } else if h_identity {
                self.w.apply_at(&mut out, tb, &mp[o * tb..], g.o * tb, tb);
            } else {
                for xi in 0..ah {
                    let (d, s) = (&mut half[xi * mw * tb..], &mp[(xi * aw * g.o + o) * tb..]);
                    self.w.apply_at(d, tb, s, g.o * tb, tb);
                }
                for j in 0..mw {
                    let (d, s) = (&mut out[j * tb..], &half[j * tb..]);
                    self.h.apply_at(d, mw * tb, s, mw * tb, tb);
                }
            }
            for (k, row) in rows.clone().enumerate() {
                let (n, ty) = (row / self.th, row % self.th);
                for i in 0..mh.min(g.oh - ty * mh) {
                    let oy = ty * mh + i;
                    // SAFETY: this output row belongs to this block's tile row alone.
                    let yrow = unsafe {
                        std::slice::from_raw_parts_mut(
                            y.0.add(((n * g.o + o) * g.oh + oy) * g.ow),
                            g.ow,
                        )
                    };
                    phases::join(&out[i * mw * tb + k * self.tw..], tb, mw, yrow);
                }
            }
            self.epilogue(o, g, rows.clone(), (y, epi));
        }
    }

    /// `epi` on channel `o`'s outputs of block rows `rows`, once for each image's stretch of
    /// them (consecutive output rows), after the block has written them.
    fn epilogue<T: Elem>(
        &self,
        o: usize,
        g: &Geom,
        rows: std::ops::Range<usize>,
        (y, epi): (&SyncPtr<T>, Epilogue<T>),
    ) {
        if matches!(epi, Epilogue::None) {
            return;
        }
        for n in rows.start / self.th..rows.end.div_ceil(self.th) {
            let first = rows.start.max(n * self.th) - n * self.th;
            let end = rows.end.min((n + 1) * self.th) - n * self.th;
            let (oy, end) = (first * self.h.m, (end * self.h.m).min(g.oh));
            // SAFETY: these output rows belong to this block's tile rows alone, and no other
            // reference to them is alive.
            let ys = unsafe {
                std::slice::from_raw_parts_mut(
                    y.0.add(((n * g.o + o) * g.oh + oy) * g.ow),
                    (end - oy) * g.ow,
                )
            };
            epi.channel(o, ys);
        }
    }

    /// `Vdy`: the output gradient's tiles of block rows `rows` at every point of the weight
    /// gradient's F(r, m) (`gh`, `gw` its `G`), `(ξ·α_w + ν)·O·tb + o·tb + t`.
    #[allow(clippy::too_many_arguments)]
    fn grad_points<T: Elem>(
        &self,
        dy: &[T],
        db: (usize, usize),
        g: &Geom,
        (gh, gw): (&Axis, &Axis),
        rows: std::ops::Range<usize>,
        vd: &mut [T],
    ) {
        let plane = g.oh * g.ow;
        self.window_points(
            (g.o, |o, n| &dy[db.0 + n * db.1 + o * plane..][..plane]),
            ((g.oh, g.ow), (0, 0)),
            (self.h.m, self.w.m),
            rows,
            (
                |d, ds, s, ss, len| gh.apply_g(d, ds, s, ss, len),
                |d, ds, s, ss, len| gw.apply_g(d, ds, s, ss, len),
            ),
            vd,
        )
    }
}

/// `rows` rows of `len` entries of `dst`, `stride` apart, as separate slices.
fn rows_mut<T, const N: usize>(dst: &mut [T], stride: usize, len: usize) -> [&mut [T]; N] {
    assert!(stride >= len && dst.len() >= (N - 1) * stride + len);
    let mut rest = dst;
    std::array::from_fn(|i| {
        let taken = std::mem::take(&mut rest);
        let (row, tail) = taken.split_at_mut(len);
        if i + 1 < N {
            rest = &mut tail[stride - len..];
        }
        row
    })
}

/// `N` rows of `len` entries of `src`, `stride` apart.
fn rows_of<T, const N: usize>(src: &[T], stride: usize, len: usize) -> [&[T]; N] {
    std::array::from_fn(|k| &src[k * stride..][..len])
}

/// `Bᵀ` of F(4, 3) (points 0, 1, −1, 2, −2, ∞) applied to six rows of `src` (`ss` apart), the
/// six results into rows of `dst` (`ds` apart): the same matrix as [`Axis::bt`], with its
/// common terms computed once (12 operations for 22 non-zero entries) in one pass.
fn bt6<T: Elem>(dst: &mut [T], ds: usize, src: &[T], ss: usize, len: usize) {
    bt6_rows(rows_mut(dst, ds, len), rows_of(src, ss, len));
}

wide_fn! {
    fn bt6_rows<T: Elem>(o: [&mut [T]; 6], d: [&[T]; 6]) -> () {
        let (four, five, two) = (T::from_f64(4.0), T::from_f64(5.0), T::from_f64(2.0));
        let [o0, o1, o2, o3, o4, o5] = o;
        let [d0, d1, d2, d3, d4, d5] = d;
        for t in 0..o0.len() {
            let (a0, a1, a2, a3, a4, a5) = (d0[t], d1[t], d2[t], d3[t], d4[t], d5[t]);
            let (p, q) = (a4 - four * a2, a3 - four * a1);
            let (r, u) = (a4 - a2, two * (a3 - a1));
            o0[t] = four * a0 - five * a2 + a4;
            o1[t] = p + q;
            o2[t] = p - q;
            o3[t] = r + u;
            o4[t] = r - u;
            o5[t] = four * a1 - five * a3 + a5;
        }
    }
}

/// `Aᵀ` of F(4, 3) applied to six rows of `src` (`ss` apart), the four outputs into rows of
/// `dst` (`ds` apart), common terms once.
fn at46<T: Elem>(dst: &mut [T], ds: usize, src: &[T], ss: usize, len: usize) {
    at46_rows(rows_mut(dst, ds, len), rows_of(src, ss, len));
}

wide_fn! {
    fn at46_rows<T: Elem>(y: [&mut [T]; 4], m: [&[T]; 6]) -> () {
        let (two, four, eight) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(8.0));
        let [y0, y1, y2, y3] = y;
        let [m0, m1, m2, m3, m4, m5] = m;
        for t in 0..y0.len() {
            let (s12, d12) = (m1[t] + m2[t], m1[t] - m2[t]);
            let (s34, d34) = (m3[t] + m4[t], m3[t] - m4[t]);
            y0[t] = m0[t] + s12 + s34;
            y1[t] = d12 + two * d34;
            y2[t] = s12 + four * s34;
            y3[t] = d12 + eight * d34 + m5[t];
        }
    }
}

/// `Bᵀ` over eight points (0, 1, −1, 2, −2, ½, −½, ∞: F(2, 7), the 1×7 and 7×1 kernels)
/// applied to eight rows of `src` (`ss` apart), the eight results into rows of `dst` (`ds`
/// apart), in one pass: the same matrix as [`Axis::bt`], from its structure. With
/// `P(x) = x·Q(x) = Π (x − p)` over the finite points, `Q(x) = x⁶ − 21/4·x⁴ + 21/4·x² − 1`, the
/// row of a finite point `p` holds the coefficients of `P(x) / (x − p)`: `Q` for 0, and
/// `(x² + p·x)·R(x²)` for ±p, with `R` the quotient of `Q` by `x² − p²`; ∞'s row is `P`.
/// So the rows of `p` and `−p` share their even and odd halves.
fn bt8<T: Elem>(dst: &mut [T], ds: usize, src: &[T], ss: usize, len: usize) {
    bt8_rows(rows_mut(dst, ds, len), rows_of(src, ss, len));
}

wide_fn! {
    fn bt8_rows<T: Elem>(o: [&mut [T]; 8], d: [&[T]; 8]) -> () {
        let c = |v: f64| T::from_f64(v);
        let q = c(21.0 / 4.0);
        // R(x²) = x⁴ + r₂·x² + r₀ for the pairs ±1, ±2, ±½.
        let (r2_1, r2_2, r0_2, r2_h, r0_h) = (c(-17.0 / 4.0), c(-5.0 / 4.0), c(0.25), c(-5.0), c(4.0));
        let (two, half) = (c(2.0), c(0.5));
        let [o0, o1, o2, o3, o4, o5, o6, o7] = o;
        let [d0, d1, d2, d3, d4, d5, d6, d7] = d;
        for t in 0..o0.len() {
            let (a0, a1, a2, a3, a4, a5, a6, a7) =
                (d0[t], d1[t], d2[t], d3[t], d4[t], d5[t], d6[t], d7[t]);
            o0[t] = (a6 - a0) + q * (a2 - a4);
            o7[t] = (a7 - a1) + q * (a3 - a5);
            let (e, od) = (a6 + r2_1 * a4 + a2, a5 + r2_1 * a3 + a1);
            o1[t] = e + od;
            o2[t] = e - od;
            let (e, od) = (a6 + r2_2 * a4 + r0_2 * a2, a5 + r2_2 * a3 + r0_2 * a1);
            o3[t] = e + two * od;
            o4[t] = e - two * od;
            let (e, od) = (a6 + r2_h * a4 + r0_h * a2, a5 + r2_h * a3 + r0_h * a1);
            o5[t] = e + half * od;
            o6[t] = e - half * od;
        }
    }
}

/// `Aᵀ` of F(2, 7) applied to eight rows of `src` (`ss` apart), the two outputs into rows of
/// `dst` (`ds` apart): the products' sum, and their sum weighted by the points (∞'s product
/// counted once).
fn at28<T: Elem>(dst: &mut [T], ds: usize, src: &[T], ss: usize, len: usize) {
    at28_rows(rows_mut(dst, ds, len), rows_of(src, ss, len));
}

wide_fn! {
    fn at28_rows<T: Elem>(y: [&mut [T]; 2], m: [&[T]; 8]) -> () {
        let (two, half) = (T::from_f64(2.0), T::from_f64(0.5));
        let [y0, y1] = y;
        let [m0, m1, m2, m3, m4, m5, m6, m7] = m;
        for t in 0..y0.len() {
            y0[t] = m0[t] + (m1[t] + m2[t]) + (m3[t] + m4[t]) + (m5[t] + m6[t]);
            y1[t] = (m1[t] - m2[t]) + two * (m3[t] - m4[t]) + half * (m5[t] - m6[t]) + m7[t];
        }
    }
}

/// `G` of F(3, 4) (the weight gradient's for a 3-tap axis: the output gradient's 4 entries to
/// the points 0, 1, −1, 2, −2, ∞) applied to four rows of `src` into six rows of `dst`, common
/// terms once: `[¼d₀, −(e+o)/6, −(e−o)/6, (e′+o′)/24, (e′−o′)/24, d₃]` with `e = d₀+d₂`,
/// `o = d₁+d₃`, `e′ = d₀+4d₂`, `o′ = 2d₁+8d₃`.
fn g64<T: Elem>(dst: &mut [T], ds: usize, src: &[T], ss: usize, len: usize) {
    g64_rows(rows_mut(dst, ds, len), rows_of(src, ss, len));
}

wide_fn! {
    fn g64_rows<T: Elem>(o: [&mut [T]; 6], d: [&[T]; 4]) -> () {
        let c = |v: f64| T::from_f64(v);
        let (quarter, sixth, twentyfourth) = (c(0.25), c(-1.0 / 6.0), c(1.0 / 24.0));
        let (two, four, eight) = (c(2.0), c(4.0), c(8.0));
        let [o0, o1, o2, o3, o4, o5] = o;
        let [d0, d1, d2, d3] = d;
        for t in 0..o0.len() {
            let (e, od) = (d0[t] + d2[t], d1[t] + d3[t]);
            let (e2, od2) = (d0[t] + four * d2[t], two * d1[t] + eight * d3[t]);
            o0[t] = quarter * d0[t];
            o1[t] = sixth * (e + od);
            o2[t] = sixth * (e - od);
            o3[t] = twentyfourth * (e2 + od2);
            o4[t] = twentyfourth * (e2 - od2);
            o5[t] = d3[t];
        }
    }
}

impl Axis {
    /// `Bᵀ` applied to `α` rows of `src` (`ss` apart) into `α` rows of `dst` (`ds` apart).
    fn apply_bt<T: Elem>(&self, dst: &mut [T], ds: usize, src: &[T], ss: usize, len: usize) {
        let a = self.alpha();
        match a {
            1 => return dst[..len].copy_from_slice(&src[..len]),
            6 => return bt6(dst, ds, src, ss, len),
            8 => return bt8(dst, ds, src, ss, len),
            _ => {}
        }
        for i in 0..a {
            combine(&mut dst[i * ds..][..len], src, ss, &self.bt[i * a..][..a]);
        }
    }

    /// `G` applied to `r` rows of `src` (`ss` apart) into `α` rows of `dst` (`ds` apart).
    fn apply_g<T: Elem>(&self, dst: &mut [T], ds: usize, src: &[T], ss: usize, len: usize) {
        match (self.m, self.r) {
            (1, 1) => return dst[..len].copy_from_slice(&src[..len]),
            (3, 4) => return g64(dst, ds, src, ss, len),
            _ => {}
        }
        for i in 0..self.alpha() {
            combine(
                &mut dst[i * ds..][..len],
                src,
                ss,
                &self.g[i * self.r..][..self.r],
            );
        }
    }

    /// `Aᵀ` applied to `α` rows of `src` into `m` rows of `dst`.
    fn apply_at<T: Elem>(&self, dst: &mut [T], ds: usize, src: &[T], ss: usize, len: usize) {
        match (self.m, self.r) {
            (1, 1) => return dst[..len].copy_from_slice(&src[..len]),
            (4, 3) => return at46(dst, ds, src, ss, len),
            (2, 7) => return at28(dst, ds, src, ss, len),
            _ => {}
        }
        let a = self.alpha();
        for i in 0..self.m {
            combine(&mut dst[i * ds..][..len], src, ss, &self.at[i * a..][..a]);
        }
    }
}

/// Consecutive tile rows taken `per` at a time.
struct Blocks {
    rows: usize,
    per: usize,
}

impl Blocks {
    fn count(&self) -> usize {
        self.rows.div_ceil(self.per)
    }
    fn rows(&self, b: usize) -> std::ops::Range<usize> {
        b * self.per..((b + 1) * self.per).min(self.rows)
    }
}

/// `dst[b·ld + t] = src[t·step + b + first]` for `b < taps`, `t < len`: zero where that index
/// lies outside `src` (a row of the image), and everywhere without a row. `scratch` is scratch.
fn strided_rows<T: Elem>(
    dst: &mut [T],
    ld: usize,
    src: Option<&[T]>,
    first: isize,
    (step, taps, len): (usize, usize, usize),
    scratch: &mut Vec<T>,
) {
    let Some(src) = src else {
        for b in 0..taps {
            dst[b * ld..][..len].fill(zero());
        }
        return;
    };
    if phases::short_row_windows(dst, ld, src, first, (step, taps, len)) {
        return;
    }
    if step == 1 {
        // Windows one apart: tap b is the row itself from `first + b`.
        for b in 0..taps {
            copy_clipped(&mut dst[b * ld..][..len], src, first + b as isize);
        }
        return;
    }
    // Tap b of window t is entry b mod step of group t + b / step of the row from `first`: the
    // row's `count` groups (its span, zeros outside `src`, in `pad`) split into their phases.
    let count = len + (taps - 1) / step;
    let span = count * step;
    scratch.resize(span + span, zero());
    let (pad, phases) = scratch.split_at_mut(span);
    copy_clipped(pad, src, first);
    phases::split(pad, step, count, phases, count);
    for b in 0..taps {
        let from = &phases[(b % step) * count + b / step..][..len];
        dst[b * ld..][..len].copy_from_slice(from);
    }
}

/// `dst[i] = src[from + i]`, zero where that lies outside `src`.
fn copy_clipped<T: Elem>(dst: &mut [T], src: &[T], from: isize) {
    let len = dst.len() as isize;
    let lo = (-from).clamp(0, len);
    let hi = (src.len() as isize - from).clamp(lo, len);
    let (lo, hi) = (lo as usize, hi as usize);
    dst[..lo].fill(zero());
    let at = (lo as isize + from) as usize;
    dst[lo..hi].copy_from_slice(&src[at..at + hi - lo]);
    dst[hi..].fill(zero());
}

/// `dst[t] = Σ_k coefs[k]·src[k·stride + t]`, zero coefficients skipped, the terms added in
/// order of `k`, up to three of them in one pass over `dst`.
fn combine<T: Elem>(dst: &mut [T], src: &[T], stride: usize, coefs: &[f64]) {
    let mut pending: [(T, usize); 3] = [(zero(), 0); 3];
    let mut n = 0;
    let mut first = true;
    for (k, &c) in coefs.iter().enumerate() {
        if c == 0.0 {
            continue;
        }
        pending[n] = (T::from_f64(c), k * stride);
        n += 1;
        if n == 3 {
            combine_pass(dst, src, pending, n, first);
            (n, first) = (0, false);
        }
    }
    if n > 0 || first {
        combine_pass(dst, src, pending, n, first);
    }
}

wide_fn! {
    /// `dst[t] (= | +=) Σ c·src[off + t]` over the first `n` of `terms` (n ≤ 3), in order.
    fn combine_pass<T: Elem>(dst: &mut [T], src: &[T], terms: [(T, usize); 3], n: usize, first: bool) -> () {
        let len = dst.len();
        let [(c0, o0), (c1, o1), (c2, o2)] = terms;
        match (n, first) {
            (0, _) => dst.fill(zero()),
            (1, true) => {
                for (d, &a) in dst.iter_mut().zip(&src[o0..][..len]) {
                    *d = c0 * a;
                }
            }
            (2, true) => {
                for ((d, &a), &b) in dst.iter_mut().zip(&src[o0..][..len]).zip(&src[o1..][..len]) {
                    *d = c0 * a + c1 * b;
                }
            }
            (3, true) => {
                let it = dst.iter_mut().zip(&src[o0..][..len]).zip(&src[o1..][..len]);
                for (((d, &a), &b), &e) in it.zip(&src[o2..][..len]) {
                    *d = c0 * a + c1 * b + c2 * e;
                }
            }
            (1, false) => {
                for (d, &a) in dst.iter_mut().zip(&src[o0..][..len]) {
                    *d += c0 * a;
                }
            }
            (2, false) => {
                for ((d, &a), &b) in dst.iter_mut().zip(&src[o0..][..len]).zip(&src[o1..][..len]) {
                    *d += c0 * a + c1 * b;
                }
            }
            _ => {
                let it = dst.iter_mut().zip(&src[o0..][..len]).zip(&src[o1..][..len]);
                for (((d, &a), &b), &e) in it.zip(&src[o2..][..len]) {
                    *d += c0 * a + c1 * b + c2 * e;
                }
            }
        }
    }
}

/// The forward pass of the convolution `g` (planned as `plan`): blocks of tile rows in parallel,
/// each through its input points, one GEMM per point and back to its outputs.
pub(super) fn forward<T: Elem>(
    x: &[T],
    xb: (usize, usize),
    wt: &[T],
    g: &Geom,
    plan: &Plan,
    epi: Epilogue<T>,
    kept: Option<&WeightCache>,
) -> Vec<T> {
    CALLS.with(|c| c.set(c.get() + 1));
    let mut y = uninit::<T>(g.n * g.o * g.p());
    let yp = SyncPtr(y.as_mut_ptr());
    let (pts, c, o) = (plan.points(), g.c, g.o);
    // Where the packed product runs (f32, AVX-512F, a block per thread at least), the kernel's
    // points are packed once for every block (and kept for the next pass in `kept`), and the
    // blocks can be small.
    let small = plan.blocks(g, true);
    let packed = as_f32(wt)
        .filter(|_| packed::available() && small.count() >= threads())
        .map(|wt| {
            kept_or_made(kept, wt, &plan.shape(g), || {
                plan.packed_kernel_points(wt, g)
            })
        });
    let (u, blocks) = match packed {
        Some(_) => (Vec::new(), small),
        None => (plan.kernel_points(wt, g), plan.blocks(g, false)),
    };
    let par = gemm_par(blocks.count());
    par_items(blocks.count(), |b| {
        let rows = blocks.rows(b);
        let tb = rows.len() * plan.tw;
        let mut v = uninit::<T>(pts * c * tb);
        plan.input_points(x, xb, g, rows.clone(), &mut v);
        let mut mp = uninit::<T>(pts * o * tb);
        for p in 0..pts {
            if let (Some(packed), Some(v), Some(mp)) = (&packed, as_f32(&v), as_f32_mut(&mut mp)) {
                // SAFETY: the CPU runs it (`packed` is made only then); point p's matrices lie
                // inside v (C × tb) and mp (O × tb).
                unsafe {
                    packed::product(
                        &packed[p],
                        tb,
                        (v[p * c * tb..].as_ptr(), tb),
                        (mp[p * o * tb..].as_mut_ptr(), tb),
                        false,
                    )
                };
                continue;
            }
            // SAFETY: point p's matrices lie inside u, v and mp.
            unsafe {
                mm(
                    o,
                    tb,
                    c,
                    mp[p * o * tb..].as_mut_ptr(),
                    tb,
                    false,
                    u[p * o * c..].as_ptr(),
                    c,
                    1,
                    v[p * c * tb..].as_ptr(),
                    tb,
                    1,
                    par,
                    Arith::Native,
                )
            };
        }
        plan.write_outputs(&mp, g, rows, (&yp, epi));
    });
    y
}

/// The weight gradient of `g` (planned as `plan`): for every point, `Σ_tiles Vdy · Vᵀ` (O × C)
/// over fixed groups of blocks (one per thread), the groups' sums added in order, then `Aᵀ` of
/// F(r, m) back to the taps.
pub(super) fn grad_weight<T: Elem>(
    x: &[T],
    xb: (usize, usize),
    dy: &[T],
    db: (usize, usize),
    g: &Geom,
    plan: &Plan,
) -> Vec<T> {
    CALLS.with(|c| c.set(c.get() + 1));
    // The weight gradient's algorithm: F(r, m) on each axis (same points, same Bᵀ).
    let (gh, gw) = (Axis::new(g.kh, plan.h.m), Axis::new(g.kw, plan.w.m));
    let blocks = plan.blocks(g, false);
    let groups = threads().min(blocks.count()).max(1);
    let par = gemm_par(groups);
    let (pts, c, o) = (plan.points(), g.c, g.o);
    let partials: Vec<Vec<T>> = par_map(groups, |gi| {
        let mut acc = vec![zero::<T>(); pts * o * c];
        let count = blocks.count();
        for b in gi * count / groups..(gi + 1) * count / groups {
            let rows = blocks.rows(b);
            let tb = rows.len() * plan.tw;
            let mut v = uninit::<T>(pts * c * tb);
            plan.input_points(x, xb, g, rows.clone(), &mut v);
            let mut vd = uninit::<T>(pts * o * tb);
            plan.grad_points(dy, db, g, (&gh, &gw), rows, &mut vd);
            for p in 0..pts {
                // SAFETY: point p's matrices lie inside acc, vd and v (Vᵀ read by strides).
                unsafe {
                    mm(
                        o,
                        c,
                        tb,
                        acc[p * o * c..].as_mut_ptr(),
                        c,
                        true,
                        vd[p * o * tb..].as_ptr(),
                        tb,
                        1,
                        v[p * c * tb..].as_ptr(),
                        1,
                        tb,
                        par,
                        Arith::Native,
                    )
                };
            }
        }
        acc
    });
    taps_from_points(&sum_in_order(partials), g, (&gh, &gw))
}

/// `dW[o][c][i][j] = Σ_ξ Σ_ν Aᵀ_h[i][ξ]·Aᵀ_w[j][ν]·acc[ξ·α_w + ν][o][c]` (F(r, m)'s `Aᵀ`),
/// over all `O·C` kernels at once.
fn taps_from_points<T: Elem>(acc: &[T], g: &Geom, (gh, gw): (&Axis, &Axis)) -> Vec<T> {
    let (ah, aw, oc) = (gh.alpha(), gw.alpha(), g.o * g.c);
    let (kh, kw) = (g.kh, g.kw);
    let mut dw = uninit::<T>(oc * kh * kw);
    let dp = SyncPtr(dw.as_mut_ptr());
    // A chunk of kernels at a time on each thread, as `kernel_points` makes them (on the calling
    // thread alone this was 0.3 ms a call for Inception-ResNet-v2's 1×7 and 7×1 in training).
    kernel_chunks(oc, |q0, len| {
        let dp = &dp;
        let mut half = uninit::<T>(ah * kw * len);
        for xi in 0..ah {
            let (d, s) = (&mut half[xi * kw * len..], &acc[xi * aw * oc + q0..]);
            gw.apply_at(d, len, s, oc, len);
        }
        let mut taps = uninit::<T>(kh * kw * len);
        for j in 0..kw {
            let (d, s) = (&mut taps[j * len..], &half[j * len..]);
            gh.apply_at(d, kw * len, s, kw * len, len);
        }
        for q in 0..len {
            for r in 0..kh * kw {
                // SAFETY: kernel q0 + q's taps, written by this chunk alone.
                unsafe { *dp.0.add((q0 + q) * kh * kw + r) = taps[r * len + q] };
            }
        }
    });
    dw
}

/// The GEMMs run on one thread when the blocks (or groups) keep every thread busy, else on all.
fn gemm_par(tasks: usize) -> Parallelism {
    let t = threads();
    if tasks >= t {
        Parallelism::None
    } else {
        Parallelism::Rayon(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::models::fastops::testing::Lcg;

    /// Each axis's F(m, r) computes the correlation `y_i = Σ_k g_k d_{i+k}` exactly on small
    /// integers (the transforms' entries are dyadic or have small denominators).
    #[test]
    fn one_axis_is_the_correlation() {
        for r in 1..=7 {
            for m in [1, 2, 4] {
                if m + r - 1 > 8 || (r == 1 && m > 1) {
                    continue;
                }
                let ax = Axis::new(m, r);
                let a = ax.alpha();
                let d: Vec<f64> = (0..a).map(|i| (i as f64 * 3.0 + 1.0) % 7.0 - 3.0).collect();
                let k: Vec<f64> = (0..r).map(|i| (i as f64 * 5.0 + 2.0) % 9.0 - 4.0).collect();
                let bd: Vec<f64> = (0..a)
                    .map(|j| (0..a).map(|t| ax.bt[j * a + t] * d[t]).sum())
                    .collect();
                let gk: Vec<f64> = (0..a)
                    .map(|j| (0..r).map(|t| ax.g[j * r + t] * k[t]).sum())
                    .collect();
                for i in 0..m {
                    let got: f64 = (0..a).map(|j| ax.at[i * a + j] * gk[j] * bd[j]).sum();
                    let want: f64 = (0..r).map(|t| k[t] * d[i + t]).sum();
                    assert!(
                        (got - want).abs() < 1e-9,
                        "F({m},{r}) output {i}: {got} vs {want}"
                    );
                }
            }
        }
    }

    /// The dedicated passes of F(4, 3), F(3, 4) and F(2, 7) compute the derived matrices: `bt6`,
    /// `at46`, `g64`, `bt8` and `at28` against the generic row-by-row product on random rows
    /// (f64).
    #[test]
    fn dedicated_passes_are_the_derived_matrices() {
        let mut rng = Lcg(3);
        let (len, stride) = (37, 41);
        let src: Vec<f64> = (0..8 * stride).map(|_| rng.f64_unit()).collect();
        let generic = |mat: &[f64], outs: usize, ins: usize| -> Vec<f64> {
            let mut d = vec![0.0; outs * stride];
            for i in 0..outs {
                combine(
                    &mut d[i * stride..][..len],
                    &src,
                    stride,
                    &mat[i * ins..][..ins],
                );
            }
            d
        };
        let (f43, f34, f27) = (Axis::new(4, 3), Axis::new(3, 4), Axis::new(2, 7));
        let cases: [(&str, &Axis, Vec<f64>, usize, usize); 5] = [
            ("bt", &f43, f43.bt.clone(), 6, 6),
            ("at", &f43, f43.at.clone(), 4, 6),
            ("g", &f34, f34.g.clone(), 6, 4),
            ("bt", &f27, f27.bt.clone(), 8, 8),
            ("at", &f27, f27.at.clone(), 2, 8),
        ];
        for (name, axis, mat, outs, ins) in cases {
            let want = generic(&mat, outs, ins);
            let mut got = vec![0.0; outs * stride];
            match name {
                "bt" => axis.apply_bt(&mut got, stride, &src, stride, len),
                "at" => axis.apply_at(&mut got, stride, &src, stride, len),
                _ => axis.apply_g(&mut got, stride, &src, stride, len),
            }
            for i in 0..outs {
                for t in 0..len {
                    let (a, b) = (got[i * stride + t], want[i * stride + t]);
                    assert!(
                        (a - b).abs() < 1e-13,
                        "{name} row {i} entry {t} (α = {ins}): {a} vs {b}"
                    );
                }
            }
        }
    }

    /// The definition: forward pass and weight gradient in f64 by their sums.
    fn reference(x: &[f64], wt: &[f64], dy: &[f64], g: &Geom) -> (Vec<f64>, Vec<f64>) {
        let mut y = vec![0.0; g.n * g.o * g.p()];
        let mut dw = vec![0.0; wt.len()];
        for n in 0..g.n {
            for o in 0..g.o {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let at = ((n * g.o + o) * g.oh + oy) * g.ow + ox;
                        for c in 0..g.c {
                            for i in 0..g.kh {
                                for j in 0..g.kw {
                                    let iy = (oy + i) as isize - g.ph as isize;
                                    let ix = (ox + j) as isize - g.pw as isize;
                                    if !(0..g.h as isize).contains(&iy)
                                        || !(0..g.w as isize).contains(&ix)
                                    {
                                        continue;
                                    }
                                    let xv =
                                        x[((n * g.c + c) * g.h + iy as usize) * g.w + ix as usize];
                                    let wi = ((o * g.c + c) * g.kh + i) * g.kw + j;
                                    y[at] += wt[wi] * xv;
                                    dw[wi] += dy[at] * xv;
                                }
                            }
                        }
                    }
                }
            }
        }
        (y, dw)
    }

    fn check<T: Elem>(g: &Geom, tol: f64, rng: &mut Lcg) {
        let plan = Plan::new(g).expect("planned");
        let x: Vec<f64> = (0..g.n * g.image_in()).map(|_| rng.f64_unit()).collect();
        let wt: Vec<f64> = (0..g.o * g.k()).map(|_| rng.f64_unit()).collect();
        let dy: Vec<f64> = (0..g.n * g.o * g.p()).map(|_| rng.f64_unit()).collect();
        let (y_ref, dw_ref) = reference(&x, &wt, &dy, g);
        let cast = |v: &[f64]| v.iter().map(|&e| T::from_f64(e)).collect::<Vec<T>>();
        let (xt, wtt, dyt) = (cast(&x), cast(&wt), cast(&dy));
        let y = forward(&xt, (0, g.image_in()), &wtt, g, &plan, Epilogue::NONE, None);
        let dw = grad_weight(&xt, (0, g.image_in()), &dyt, (0, g.o * g.p()), g, &plan);
        // Errors relative to the scale of a sum's terms: √(taps summed) (entries are in ±1).
        let worst = |got: &[T], want: &[f64], terms: usize| {
            got.iter()
                .zip(want)
                .map(|(a, b)| (a.to_f64() - b).abs() / (terms as f64).sqrt())
                .fold(0.0, f64::max)
        };
        let ey = worst(&y, &y_ref, g.k());
        let ew = worst(&dw, &dw_ref, g.n * g.p());
        assert!(ey < tol, "{g:?}: forward error {ey:e}");
        assert!(ew < tol, "{g:?}: weight gradient error {ew:e}");
    }

    /// Which convolutions of the networks take Winograd: at 299 px (batch 8) 3×3 and 5×5 on
    /// large maps do, and Inception-B's 1×7 and 7×1 at 17×17 (F(2, 7)); Inception-C's 8×8 maps
    /// (32 tiles of the 3×3, 128 of the 1×3) and the CIFAR-10 scale's narrow stem do not; at
    /// 107 px (batch 16) the stem does, the 5×5 at 11×11 and the 1×7 at 5×5 do not.
    #[test]
    fn worth_it_on_large_maps_only() {
        let worth = |x: [usize; 4], k: (usize, usize, usize), pad: (usize, usize)| {
            let g = Geom::new(&x, &[k.0, x[1], k.1, k.2], pad, 1).unwrap();
            Plan::tiles(&g).is_some_and(|(th, tw)| Plan::worth(&g, th * tw))
        };
        assert!(worth([8, 64, 35, 35], (96, 3, 3), (1, 1)));
        assert!(worth([8, 32, 149, 149], (32, 3, 3), (0, 0)));
        assert!(worth([8, 192, 17, 17], (224, 1, 7), (0, 3)));
        assert!(worth([8, 224, 17, 17], (256, 7, 1), (3, 0)));
        assert!(!worth([16, 192, 5, 5], (224, 1, 7), (0, 3)));
        assert!(worth([8, 48, 35, 35], (64, 5, 5), (2, 2)));
        assert!(!worth([16, 48, 11, 11], (64, 5, 5), (2, 2)));
        assert!(worth([16, 80, 25, 25], (192, 3, 3), (0, 0)));
        assert!(!worth([8, 448, 8, 8], (384, 3, 3), (1, 1)));
        assert!(!worth([8, 384, 8, 8], (256, 1, 3), (0, 1)));
        assert!(!worth([32, 8, 73, 73], (8, 3, 3), (1, 1)));
        assert!(!worth([32, 20, 18, 18], (48, 3, 3), (0, 0)));
    }

    /// Forward pass and weight gradient against the definition, over random shapes: kernels
    /// 3×3, 5×5, 1×n and n×1, SAME and VALID and in-between paddings, maps that leave partial
    /// tiles, several images and channels; f64 to 1e-13 and f32 to 1e-5 of the terms' scale.
    #[test]
    fn matches_the_definition() {
        let mut rng = Lcg(5);
        let pick = |n: usize, r: &mut Lcg| ((r.f64_unit() + 1.0) * 0.5 * n as f64) as usize % n;
        let kernels = [
            (3, 3),
            (5, 5),
            (1, 7),
            (7, 1),
            (1, 3),
            (3, 1),
            (2, 2),
            (1, 5),
            (6, 1),
        ];
        let mut planned = 0;
        for case in 0..120 {
            let (kh, kw) = kernels[case % kernels.len()];
            let (ph, pw) = match case % 3 {
                0 => (kh / 2, kw / 2),
                1 => (0, 0),
                _ => (pick(kh, &mut rng), pick(kw, &mut rng)),
            };
            let (h, w) = (1 + pick(13, &mut rng), 1 + pick(13, &mut rng));
            let (n, c, o) = (
                1 + pick(3, &mut rng),
                1 + pick(6, &mut rng),
                1 + pick(6, &mut rng),
            );
            let Ok(g) = Geom::new(&[n, c, h, w], &[o, c, kh, kw], (ph, pw), 1) else {
                continue;
            };
            if Plan::new(&g).is_none() {
                continue;
            }
            planned += 1;
            check::<f64>(&g, 1e-13, &mut rng);
            check::<f32>(&g, 1e-5, &mut rng);
        }
        assert!(planned > 60, "only {planned} shapes planned");
    }
}
