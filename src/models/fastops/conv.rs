//! Convolution through per-band im2col + GEMM (1×1 convolutions as plain matrix products, stride-1
//! 3×3, 5×5, 1×7 and 7×1 ones on large maps by Winograd's algorithm), with its own backward pass.

mod crop;
mod epilogue;
mod gather;
mod geom;
mod implicit;
mod matmul;
mod packed;
mod phases;
mod points;
pub(super) mod projection;
mod shift;
mod winograd;

#[cfg(test)]
pub(crate) use implicit::calls as implicit_calls;
#[cfg(test)]
pub(crate) use winograd::{calls as winograd_calls, enabled as winograd_enabled};

/// Whether the implicit-GEMM path can run on this CPU (the packed product's AVX-512F).
#[cfg(test)]
pub(crate) fn implicit_available() -> bool {
    packed::available()
}

/// Whether inference passes keep Winograd's kernel points: Winograd is on and its packed products
/// run on this CPU.
#[cfg(test)]
pub(crate) fn keeps_weight_transforms() -> bool {
    winograd::enabled() && packed::available()
}

use super::inference::kept_weights;
use super::weight_cache::WeightCache;
use super::{
    blocked, image_blocks, par_chunks, par_map, sum_in_order, threads, with_slice, zero, Elem,
};
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use crop::Crop;
pub(crate) use epilogue::Epilogue;
use gather::Gathered;
pub(crate) use geom::Arith;
use geom::Geom;
use matmul::{inner_par, mm, mm_split};
use shift::Shifted;

/// How im2col and col2im find each tap's input entries: by a constant shift where the
/// convolution allows ([`Shifted`]), else through a gather table ([`Gathered`]). Made once per
/// convolution and pass.
enum Taps {
    Shifted(Shifted),
    Gathered(Gathered),
}

impl Taps {
    fn of(g: &Geom) -> Self {
        match Shifted::of(g) {
            Some(s) => Taps::Shifted(s),
            None => Taps::Gathered(Gathered::of(g)),
        }
    }

    /// im2col of output positions `f.0..f.1` of one input plane `xc`: tap `r`'s entries at
    /// `dst[r·ld + off..]`.
    fn im2col<T: Elem>(&self, xc: &[T], f: (usize, usize), dst: &mut [T], ld: usize, off: usize) {
        match self {
            Taps::Shifted(t) => t.im2col(xc, f, dst, ld, off),
            Taps::Gathered(t) => t.im2col(xc, f, dst, ld, off),
        }
    }

    /// im2col of one channel of `n` images (image `i`'s plane at `x[xb.0 + i·xb.1..]`, its `p`
    /// positions at `i·p` in each tap's row `dst[r·ld..]`).
    #[allow(clippy::too_many_arguments)]
    fn im2col_images<T: Elem>(
        &self,
        x: &[T],
        xb: (usize, usize),
        n: usize,
        p: usize,
        dst: &mut [T],
        ld: usize,
    ) {
        match self {
            Taps::Shifted(t) => t.im2col_images(x, xb.0, xb.1, n, p, dst, ld),
            Taps::Gathered(t) => t.im2col_images(x, xb, n, p, dst, ld),
        }
    }

    /// Adds the column gradients of output positions `f.0..f.1` (tap `r`'s at
    /// `src[r·ld + off..]`) onto one input-gradient plane (col2im).
    fn col2im_add<T: Elem>(
        &self,
        src: &[T],
        f: (usize, usize),
        ld: usize,
        off: usize,
        dxc: &mut [T],
    ) {
        match self {
            Taps::Shifted(t) => t.col2im_add(src, f, ld, off, dxc),
            Taps::Gathered(t) => t.col2im_add(src, f, ld, off, dxc),
        }
    }

    /// col2im of one image of the batch: its `channels` input-gradient planes of `plane`
    /// entries in `dx`, the column gradients of channel `c`, tap `r` at
    /// `src[(c·taps + r)·ld + off..][..p]`.
    #[allow(clippy::too_many_arguments)]
    fn col2im_channels<T: Elem>(
        &self,
        src: &[T],
        ld: usize,
        off: usize,
        p: usize,
        (channels, plane): (usize, usize),
        dx: &mut [T],
    ) {
        match self {
            Taps::Shifted(t) => t.col2im_channels(src, ld, off, p, channels, plane, dx),
            Taps::Gathered(t) => t.col2im_channels(src, ld, off, p, channels, dx),
        }
    }
}

/// im2col of output rows `oh0..oh0+rows` of one image: `col[(c·KH+i)·KW+j][t]`.
fn im2col<T: Elem>(x: &[T], g: &Geom, taps: &Taps, oh0: usize, rows: usize, col: &mut [T]) {
    let cols = rows * g.ow;
    let plane = g.h * g.w;
    let k = g.kh * g.kw;
    let f = (oh0 * g.ow, (oh0 + rows) * g.ow);
    for c in 0..g.c {
        let dst = &mut col[c * k * cols..(c + 1) * k * cols];
        taps.im2col(&x[c * plane..(c + 1) * plane], f, dst, cols, 0);
    }
}

/// Adds a band's column gradients back onto the input gradient of one image (col2im).
fn col2im_add<T: Elem>(col: &[T], g: &Geom, taps: &Taps, oh0: usize, rows: usize, dx: &mut [T]) {
    let cols = rows * g.ow;
    let plane = g.h * g.w;
    let k = g.kh * g.kw;
    let f = (oh0 * g.ow, (oh0 + rows) * g.ow);
    for c in 0..g.c {
        let dxc = &mut dx[c * plane..(c + 1) * plane];
        taps.col2im_add(&col[c * k * cols..], f, cols, 0, dxc);
    }
}

/// Output maps at most this large (OH·OW) are convolved for the whole batch in one GEMM: per
/// image, the GEMM would be too narrow to pay for packing the weights.
const BATCHED_MAX_P: usize = 400;

/// Pointwise convolutions of maps at least this large (OH·OW) run image by image even under
/// [`BATCHED_MAX_P`]: each image's C×P block is already its GEMM operand and the output lands
/// where it belongs, while the whole-batch GEMM first gathers the input into C × (N·P) and then
/// copies its output back into images, and at full width (hundreds to thousands of channels)
/// those copies cost more than the wider GEMM saves. Evaluation at 299 px, batch 8, per layer
/// (forward, ms a pass over the blocks): Inception-ResNet-v2's 1088→320 at 17×17 114 → 98,
/// 384→1088 122 → 110, 2080→384 at 8×8 27.5 → 21.8; Inception-v4's 1024→896 at 17×17 92 → 86,
/// 1536→256 at 8×8 8.7 → 6.8; whole passes, three alternated runs: Inception-ResNet-v2
/// 9.6 / 10.3 / 10.2 → 10.5 / 10.7 / 11.1 crops/s, Inception-v4 and Inception-v3 even; training
/// at 75, 107 and 299 px even. At the CIFAR-10 scale (maps of 1, 9 and 49 outputs) nothing
/// changes.
pub(super) const POINTWISE_IMAGE_MIN_P: usize = 64;

/// Uses the whole-batch GEMM.
fn batched(g: &Geom) -> bool {
    g.p() <= BATCHED_MAX_P && g.n > 1 && !(g.pointwise() && g.p() >= POINTWISE_IMAGE_MIN_P)
}

/// im2col of the whole batch: `K × (N·P)`, column `n·P + t`; channel-parallel.
fn im2col_batch<T: Elem>(x: &[T], xb: (usize, usize), g: &Geom) -> Vec<T> {
    let (np, taps, plane) = (g.n * g.p(), g.kh * g.kw, g.h * g.w);
    let t = Taps::of(g);
    let mut col = super::uninit::<T>(g.k() * np);
    par_chunks(&mut col, taps * np, |c, block| {
        t.im2col_images(x, (xb.0 + c * plane, xb.1), g.n, g.p(), block, np)
    });
    col
}

/// `rows × (N·P)` gathered from per-image `rows × P` blocks (offset, image stride).
fn gather_batch<T: Elem>(src: &[T], sb: (usize, usize), rows: usize, g: &Geom) -> Vec<T> {
    let (p, np) = (g.p(), g.n * g.p());
    let mut out = super::uninit::<T>(rows * np);
    par_chunks(&mut out, np, |r, row| {
        for i in 0..g.n {
            row[i * p..(i + 1) * p].copy_from_slice(&src[sb.0 + i * sb.1 + r * p..][..p]);
        }
    });
    out
}

fn forward_batched<T: Elem>(
    x: &[T],
    xb: (usize, usize),
    wt: &[T],
    g: &Geom,
    epi: Epilogue<T>,
) -> Vec<T> {
    let yt = batched_product(x, xb, wt, g);
    scatter_batch(&yt, g.o, (g.n, g.p()), epi)
}

/// The whole-batch product: the output as channel rows, `O × (N·P)`.
fn batched_product<T: Elem>(x: &[T], xb: (usize, usize), wt: &[T], g: &Geom) -> Vec<T> {
    let (k, o, np) = (g.k(), g.o, g.n * g.p());
    let col = if g.pointwise() {
        gather_batch(x, xb, g.c, g)
    } else {
        im2col_batch(x, xb, g)
    };
    let mut yt = super::uninit::<T>(o * np);
    unsafe {
        mm_split(
            o,
            np,
            k,
            (yt.as_mut_ptr(), np, 1),
            (wt.as_ptr(), k, 1),
            (col.as_ptr(), np, 1),
            g.arith,
        )
    };
    yt
}

/// Per-image `rows × P` blocks, contiguous, from `rows × (N·P)` (the inverse of
/// [`gather_batch`]), `epi` applied to each row (channel) as it is copied.
fn scatter_batch<T: Elem>(
    src: &[T],
    rows: usize,
    (n, p): (usize, usize),
    epi: Epilogue<T>,
) -> Vec<T> {
    let np = n * p;
    let mut out = super::uninit::<T>(n * rows * p);
    par_chunks(&mut out, rows * p, |i, block| {
        for r in 0..rows {
            let row = &mut block[r * p..(r + 1) * p];
            epi.channel_from(r, row, &src[r * np + i * p..][..p]);
        }
    });
    out
}

/// The input gradient for the whole batch from `dyt`, the output gradient gathered as
/// O × (N·P) (shared with [`grad_weight_batched`]).
fn grad_input_batched<T: Elem>(dyt: &[T], wt: &[T], g: &Geom) -> Vec<T> {
    let (k, p, o, np) = (g.k(), g.p(), g.o, g.n * g.p());
    let mut dcol = super::uninit::<T>(k * np);
    unsafe {
        mm_split(
            k,
            np,
            o,
            (dcol.as_mut_ptr(), np, 1),
            (wt.as_ptr(), 1, k),
            (dyt.as_ptr(), np, 1),
            g.arith,
        )
    };
    if g.pointwise() {
        // Each input entry has one column entry: a scatter, no col2im sum.
        return scatter_batch(&dcol, g.c, (g.n, g.p()), Epilogue::NONE);
    }
    let (plane, chw) = (g.h * g.w, g.image_in());
    let t = Taps::of(g);
    // Zeroed image by image on the threads that sum into them (a zeroed allocation is a serial
    // pass over the whole batch on the calling thread).
    let mut dx = super::uninit::<T>(g.n * chw);
    par_chunks(&mut dx, chw, |i, dxi| {
        dxi.fill(zero());
        t.col2im_channels(&dcol, np, i * p, p, (g.c, plane), dxi)
    });
    dx
}

/// The weight gradient for the whole batch from `dyt`, the output gradient gathered as
/// O × (N·P).
fn grad_weight_batched<T: Elem>(x: &[T], xb: (usize, usize), dyt: &[T], g: &Geom) -> Vec<T> {
    let (k, o, np) = (g.k(), g.o, g.n * g.p());
    let col = if g.pointwise() {
        gather_batch(x, xb, g.c, g)
    } else {
        im2col_batch(x, xb, g)
    };
    let mut dw = super::uninit::<T>(o * k);
    // dY (o × NP) · colᵀ (NP × k), colᵀ element (t, r) at col[r·NP + t]; overwrites all of dw.
    unsafe {
        mm_split(
            o,
            k,
            np,
            (dw.as_mut_ptr(), k, 1),
            (dyt.as_ptr(), np, 1),
            (col.as_ptr(), 1, np),
            g.arith,
        )
    };
    dw
}

/// The forward pass, `epi` applied to the outputs as they are written; transforms of the
/// weights kept in `kept`, where given, for the next pass.
fn forward<T: Elem>(
    x: &[T],
    xb: (usize, usize),
    wt: &[T],
    g: &Geom,
    epi: Epilogue<T>,
    kept: Option<&WeightCache>,
) -> Vec<T> {
    if implicit::applies(g) {
        if let Some(y) = implicit::forward(x, xb, wt, g, epi, kept) {
            return y;
        }
    }
    match winograd::Plan::of(g) {
        Some(plan) => winograd::forward(x, xb, wt, g, &plan, epi, kept),
        None => forward_direct(x, xb, wt, g, epi),
    }
}

/// The forward pass through im2col (or none) and GEMMs.
fn forward_direct<T: Elem>(
    x: &[T],
    xb: (usize, usize),
    wt: &[T],
    g: &Geom,
    epi: Epilogue<T>,
) -> Vec<T> {
    if points::applies(g) {
        let mut y = points::forward(x, xb, wt, g);
        epi.planes(&mut y, 1, 0);
        return y;
    }
    if batched(g) {
        return forward_batched(x, xb, wt, g, epi);
    }
    let (k, p, o) = (g.k(), g.p(), g.o);
    let mut y = super::uninit::<T>(g.n * o * p);
    let par = inner_par(g.n);
    let taps = Taps::of(g);
    par_chunks(&mut y, o * p, |i, yn| {
        let xn = &x[xb.0 + i * xb.1..][..g.image_in()];
        unsafe {
            if g.pointwise() {
                mm(
                    o,
                    p,
                    k,
                    yn.as_mut_ptr(),
                    p,
                    false,
                    wt.as_ptr(),
                    k,
                    1,
                    xn.as_ptr(),
                    p,
                    1,
                    par,
                    g.arith,
                );
                epi.planes(yn, p, i * o);
                return;
            }
            let band = g.band_rows();
            let mut col = super::uninit::<T>(k * band * g.ow);
            for oh0 in (0..g.oh).step_by(band) {
                let rows = band.min(g.oh - oh0);
                let cols = rows * g.ow;
                im2col(xn, g, &taps, oh0, rows, &mut col[..k * cols]);
                mm(
                    o,
                    cols,
                    k,
                    yn[oh0 * g.ow..].as_mut_ptr(),
                    p,
                    false,
                    wt.as_ptr(),
                    k,
                    1,
                    col.as_ptr(),
                    cols,
                    1,
                    par,
                    g.arith,
                );
                for (q, yq) in yn.chunks_exact_mut(p).enumerate() {
                    epi.channel(q, &mut yq[oh0 * g.ow..][..cols]);
                }
            }
        }
    });
    y
}

/// The input gradient image by image (maps too large for the whole-batch GEMM), or of a
/// pointwise convolution of 1×1 maps.
fn grad_input<T: Elem>(dy: &[T], db: (usize, usize), wt: &[T], g: &Geom) -> Vec<T> {
    if points::applies(g) {
        return points::grad_input(dy, db, wt, g);
    }
    if g.s == 1 && !g.pointwise() && g.kh > g.ph && g.kw > g.pw {
        return grad_input_as_conv(dy, db, wt, g);
    }
    let (k, p, o) = (g.k(), g.p(), g.o);
    // Every entry is written below: by the product (pointwise) or by col2im's sums into the
    // image, zeroed on its thread first.
    let mut dx = super::uninit::<T>(g.n * g.image_in());
    let par = inner_par(g.n);
    let taps = Taps::of(g);
    par_chunks(&mut dx, g.image_in(), |i, dxn| {
        let dyn_ = &dy[db.0 + i * db.1..][..o * p];
        if !g.pointwise() {
            dxn.fill(zero());
        }
        unsafe {
            // Wᵀ: (k × o) with element (r, q) at wt[q·k + r].
            if g.pointwise() {
                mm(
                    k,
                    p,
                    o,
                    dxn.as_mut_ptr(),
                    p,
                    false,
                    wt.as_ptr(),
                    1,
                    k,
                    dyn_.as_ptr(),
                    p,
                    1,
                    par,
                    g.arith,
                );
                return;
            }
            let band = g.band_rows();
            let mut col = super::uninit::<T>(k * band * g.ow);
            for oh0 in (0..g.oh).step_by(band) {
                let rows = band.min(g.oh - oh0);
                let cols = rows * g.ow;
                mm(
                    k,
                    cols,
                    o,
                    col.as_mut_ptr(),
                    cols,
                    false,
                    wt.as_ptr(),
                    1,
                    k,
                    dyn_[oh0 * g.ow..].as_ptr(),
                    p,
                    1,
                    par,
                    g.arith,
                );
                col2im_add(&col[..k * cols], g, &taps, oh0, rows, dxn);
            }
        }
    });
    dx
}

/// The input gradient of a stride-1 convolution is itself a stride-1 convolution: of `dY` with
/// the kernel flipped in space and transposed in channels, padded by `k - 1 - pad`. Run through
/// the forward path it needs no col2im scatter (large maps, where the scatter dominates).
fn grad_input_as_conv<T: Elem>(dy: &[T], db: (usize, usize), wt: &[T], g: &Geom) -> Vec<T> {
    let (kh, kw) = (g.kh, g.kw);
    let mut flipped = super::uninit::<T>(wt.len());
    for q in 0..g.o {
        for c in 0..g.c {
            for i in 0..kh {
                for j in 0..kw {
                    flipped[((c * g.o + q) * kh + kh - 1 - i) * kw + kw - 1 - j] =
                        wt[((q * g.c + c) * kh + i) * kw + j];
                }
            }
        }
    }
    let t = Geom {
        n: g.n,
        c: g.o,
        h: g.oh,
        w: g.ow,
        o: g.c,
        kh,
        kw,
        s: 1,
        ph: kh - 1 - g.ph,
        pw: kw - 1 - g.pw,
        oh: g.h,
        ow: g.w,
        arith: g.arith,
    };
    forward(dy, db, &flipped, &t, Epilogue::NONE, None)
}

/// The weight gradient image by image (maps too large for the whole-batch GEMM), or of a
/// pointwise convolution of 1×1 maps.
fn grad_weight<T: Elem>(
    x: &[T],
    xb: (usize, usize),
    dy: &[T],
    db: (usize, usize),
    g: &Geom,
) -> Vec<T> {
    if points::applies(g) {
        return points::grad_weight(x, xb, dy, db, g);
    }
    let (k, p, o) = (g.k(), g.p(), g.o);
    // A fixed partition of the images into groups (one per thread), summed in order afterwards:
    // the result depends on the thread count only.
    let groups = threads().min(g.n).max(1);
    let par = inner_par(groups);
    let taps = Taps::of(g);
    let partials: Vec<Vec<T>> = par_map(groups, |gi| {
        let mut acc = vec![zero::<T>(); o * k];
        let mut first = true;
        let band = g.band_rows();
        let mut col = if g.pointwise() {
            Vec::new()
        } else {
            vec![zero::<T>(); k * band * g.ow]
        };
        for i in gi * g.n / groups..(gi + 1) * g.n / groups {
            let xn = &x[xb.0 + i * xb.1..][..g.image_in()];
            let dyn_ = &dy[db.0 + i * db.1..][..o * p];
            unsafe {
                if g.pointwise() {
                    // dY (o × p) · Xᵀ (p × k), Xᵀ element (t, r) at xn[r·p + t].
                    mm(
                        o,
                        k,
                        p,
                        acc.as_mut_ptr(),
                        k,
                        !first,
                        dyn_.as_ptr(),
                        p,
                        1,
                        xn.as_ptr(),
                        1,
                        p,
                        par,
                        g.arith,
                    );
                } else {
                    for oh0 in (0..g.oh).step_by(band) {
                        let rows = band.min(g.oh - oh0);
                        let cols = rows * g.ow;
                        im2col(xn, g, &taps, oh0, rows, &mut col[..k * cols]);
                        mm(
                            o,
                            k,
                            cols,
                            acc.as_mut_ptr(),
                            k,
                            !first,
                            dyn_[oh0 * g.ow..].as_ptr(),
                            p,
                            1,
                            col.as_ptr(),
                            1,
                            cols,
                            par,
                            g.arith,
                        );
                        first = false;
                    }
                }
            }
            first = false;
        }
        acc
    });
    sum_in_order(partials)
}

fn dims_of(l: &Layout) -> &[usize] {
    l.dims()
}

fn weight_slice<'a, T: Elem>(s: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => bail!("conv2d: weight is not contiguous"),
    }
}

/// The output gradient the backward pass starts from.
enum OutGrad<'a, T> {
    /// N×O×OH×OW images: the slice and its (offset of the first, stride between them).
    Images(&'a [T], (usize, usize)),
    /// Channel rows, O × (N·OH·OW).
    Rows(Vec<T>),
}

/// Whether the forward pass is one whole-batch product (gather or im2col, product, copy into
/// images): small maps that neither Winograd nor the 1×1-map path take.
fn rows_path(g: &Geom) -> bool {
    batched(g) && !points::applies(g) && winograd::Plan::of(g).is_none() && !implicit::applies(g)
}

/// The output as N×O×OH×OW images from channel rows, O×N×OH×OW (see
/// [`Conv2dOp::forward_rows`]), `max(0, y·a + b)` applied with `ab` (the BatchNorm's scale and
/// shift of each output channel).
pub(super) fn rows_to_images<T: Elem>(rows: &[T], dims: &[usize], ab: &[(T, T)]) -> Vec<T> {
    let (o, n, p) = (dims[0], dims[1], dims[2] * dims[3]);
    scatter_batch(rows, o, (n, p), Epilogue::BnRelu(ab))
}

/// The convolution as a custom op on (input, weight).
#[derive(Clone, Copy)]
pub(super) struct Conv2dOp {
    pad: (usize, usize),
    stride: usize,
    arith: Arith,
}

impl Conv2dOp {
    /// The forward pass; with `ab`, `max(0, y·a + b)` (`ab[o]` for output channel `o`) applied
    /// to the outputs as they are written.
    pub(super) fn run<T: Elem>(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
        ab: Option<&[(T, T)]>,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geom(dims_of(lx), dims_of(lw))?;
        let Some(xb) = image_blocks(lx) else {
            bail!("conv2d: input images are not contiguous")
        };
        let (x, wt) = (x.as_slice::<T>()?, weight_slice(w.as_slice::<T>()?, lw)?);
        let epi = Epilogue::bn_relu(ab);
        // Transforms of the weights are kept across inference passes where they are made from
        // the weights' own storage (a cropped kernel is a new copy every pass).
        let y = match Crop::of(&g) {
            Some(crop) => forward::<T>(x, xb, &crop.weight(wt), &crop.live, epi, None),
            None => forward::<T>(x, xb, wt, &g, epi, kept_weights().as_deref()),
        };
        Ok((T::to_cpu_storage_owned(y), Shape::from(g.out_dims())))
    }

    /// The input and weight gradients for the output gradient `grad`; `x` has contiguous
    /// images and `w` is contiguous (as [`conv2d_in`] passes them).
    pub(super) fn backward<T: Elem>(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let grad = blocked(grad)?;
        with_slice::<T, _>(&grad, |gs, lg| {
            let db = image_blocks(lg).expect("made blocked above");
            self.gradients(x, w, OutGrad::Images(gs, db))
        })
    }

    /// In training with a BatchNorm after it: the output as channel rows, O×N×OH×OW (each
    /// output channel's values for the whole batch in one run, the layout its whole-batch
    /// product writes before the copy into images), where the forward pass takes that path
    /// (small maps); else `None`. [`rows_to_images`] gives the output, and
    /// [`Self::backward_rows`] the gradients from the output gradient in the same layout.
    pub(super) fn forward_rows<T: Elem>(&self, x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
        let g = self.geom(x.dims(), w.dims())?;
        let crop = Crop::of(&g);
        let live = crop.as_ref().map_or(&g, |c| &c.live);
        if !rows_path(live) {
            return Ok(None);
        }
        let _span = super::profile::span(super::profile::Kind::ConvForward);
        let yt = with_slice::<T, _>(x, |xs, lx| {
            with_slice::<T, _>(w, |ws, lw| {
                let Some(xb) = image_blocks(lx) else {
                    bail!("conv2d: input images are not contiguous")
                };
                let wt = weight_slice(ws, lw)?;
                let cropped = crop.as_ref().map(|c| c.weight(wt));
                Ok(batched_product(
                    xs,
                    xb,
                    cropped.as_deref().unwrap_or(wt),
                    live,
                ))
            })
        })?;
        Tensor::from_vec(yt, (g.o, g.n, g.oh, g.ow), x.device()).map(Some)
    }

    /// The input and weight gradients from the output gradient as channel rows (`dyt`, laid
    /// out as [`Self::forward_rows`]'s output).
    pub(super) fn backward_rows<T: Elem>(
        &self,
        x: &Tensor,
        w: &Tensor,
        dyt: Vec<T>,
    ) -> Result<(Tensor, Tensor)> {
        self.gradients(x, w, OutGrad::Rows(dyt))
    }

    fn geom(&self, x: &[usize], w: &[usize]) -> Result<Geom> {
        Ok(Geom {
            arith: self.arith,
            ..Geom::new(x, w, self.pad, self.stride)?
        })
    }

    fn gradients<T: Elem>(
        &self,
        x: &Tensor,
        w: &Tensor,
        out: OutGrad<T>,
    ) -> Result<(Tensor, Tensor)> {
        let g = self.geom(x.dims(), w.dims())?;
        let (dx, dw) = with_slice::<T, _>(x, |xs, lx| {
            with_slice::<T, _>(w, |ws, lw| {
                let xb = image_blocks(lx).expect("checked in the forward pass");
                let ws = weight_slice(ws, lw)?;
                use super::profile::{span, Kind};
                let crop = Crop::of(&g);
                let live = crop.as_ref().map_or(&g, |c| &c.live);
                let cropped = crop.as_ref().map(|c| c.weight(ws));
                let wl = cropped.as_deref().unwrap_or(ws);
                let images = match &out {
                    OutGrad::Images(gs, db) => Some((*gs, *db)),
                    OutGrad::Rows(_) => None,
                };
                // Small maps: the output gradient as channel rows (gathered once, or given),
                // for both gradients.
                let input_span = span(Kind::ConvInputGradient);
                let dyt = match out {
                    OutGrad::Rows(dyt) if rows_path(live) => Some(dyt),
                    OutGrad::Rows(_) => bail!("conv2d: an output gradient as rows off that path"),
                    OutGrad::Images(gs, db) => {
                        rows_path(live).then(|| gather_batch(gs, db, live.o, live))
                    }
                };
                let dw = match (dyt, images) {
                    (Some(dyt), _) => {
                        let dx = grad_input_batched(&dyt, wl, live);
                        drop(input_span);
                        let _span = span(Kind::ConvWeightGradient);
                        (dx, grad_weight_batched(xs, xb, &dyt, live))
                    }
                    (None, Some((gs, db))) => {
                        let dx = grad_input(gs, db, wl, live);
                        drop(input_span);
                        let _span = span(Kind::ConvWeightGradient);
                        let dw = match winograd::Plan::of(live) {
                            Some(plan) => winograd::grad_weight(xs, xb, gs, db, live, &plan),
                            None => grad_weight(xs, xb, gs, db, live),
                        };
                        (dx, dw)
                    }
                    (None, None) => unreachable!("rows take the whole-batch path"),
                };
                let (dx, dw) = dw;
                let dw = match &crop {
                    Some(c) => c.weight_grad(&dw),
                    None => dw,
                };
                Ok((dx, dw))
            })
        })?;
        let dev = x.device();
        Ok((
            Tensor::from_vec(dx, x.dims(), dev)?,
            Tensor::from_vec(dw, w.dims(), dev)?,
        ))
    }
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "fast-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _span = super::profile::span(super::profile::Kind::ConvForward);
        match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => self.run::<f32>(s1, l1, s2, l2, None),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => self.run::<f64>(s1, l1, s2, l2, None),
            _ => bail!("fast conv2d: f32 or f64 input and weight of one dtype only"),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = match x.dtype() {
            candle_core::DType::F32 => self.backward::<f32>(x, w, grad)?,
            candle_core::DType::F64 => self.backward::<f64>(x, w, grad)?,
            d => bail!("fast conv2d backward: unsupported dtype {}", d.as_str()),
        };
        Ok((Some(dx), Some(dw)))
    }
}

/// Convolution of `x` (N×C×H×W) with `weight` (O×C×KH×KW), zero padding `pad` = (rows, columns)
/// on each side, the same stride on both axes, no bias. The fast op on the CPU with f32/f64;
/// on CUDA the custom-gradient convolution whose backward runs on cuBLAS (in the precision
/// `--precision` set); with the fast ops off, or elsewhere, stock candle.
pub fn conv2d(x: &Tensor, weight: &Tensor, pad: (usize, usize), stride: usize) -> Result<Tensor> {
    if let Some(op) = fast_op(x, weight, pad, stride) {
        return conv2d_in(x, weight, pad, stride, op.arith);
    }
    if super::device_paths(x) {
        return crate::models::cuda_conv::conv2d(
            x,
            weight,
            stride,
            pad,
            super::conv_compute_dtype(),
        );
    }
    stock_conv2d(x, weight, pad, stride)
}

/// The fast op [`conv2d`] runs for these operands, if it runs one (the CPU, f32/f64 of one
/// dtype), in the precision `--precision` set.
pub(super) fn fast_op(
    x: &Tensor,
    weight: &Tensor,
    pad: (usize, usize),
    stride: usize,
) -> Option<Conv2dOp> {
    if !super::usable(x) || x.dtype() != weight.dtype() {
        return None;
    }
    let bf16 = x.dtype() == candle_core::DType::F32
        && super::conv_compute_dtype() == Some(candle_core::DType::BF16);
    let arith = match bf16 {
        true => Arith::Bf16,
        false => Arith::Native,
    };
    Some(Conv2dOp { pad, stride, arith })
}

/// [`conv2d`] on the CPU with the products' arithmetic given (the tests run both without
/// switching the whole process to bf16).
pub(crate) fn conv2d_in(
    x: &Tensor,
    weight: &Tensor,
    pad: (usize, usize),
    stride: usize,
    arith: Arith,
) -> Result<Tensor> {
    let x = super::tape::same(x, blocked(x)?)?;
    let w = super::tape::same(weight, weight.contiguous()?)?;
    super::tape::apply2(&x, &w, Conv2dOp { pad, stride, arith })
}

static STOCK_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many convolutions this process has run through [`stock_conv2d`] (tests check which
/// path the convolutions of a network took).
pub fn stock_conv_calls() -> u64 {
    STOCK_CALLS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Stock candle's convolution with per-axis padding (candle pads both axes by one amount).
pub fn stock_conv2d(
    x: &Tensor,
    weight: &Tensor,
    pad: (usize, usize),
    stride: usize,
) -> Result<Tensor> {
    STOCK_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (ph, pw) = pad;
    if ph == pw {
        x.conv2d(weight, ph, stride, 1, 1)
    } else {
        x.pad_with_zeros(2, ph, ph)?
            .pad_with_zeros(3, pw, pw)?
            .conv2d(weight, 0, stride, 1, 1)
    }
}

#[cfg(test)]
mod unit {
    use super::geom::valid_range;
    use super::*;

    /// Both tables (shifts where they apply, the gather table everywhere), in f64 and f32 (whose
    /// gathers run on AVX2 where the CPU has it), against the definition of im2col, on bands of
    /// rows placed at an offset inside a wider matrix; and col2im as its exact transpose:
    /// `⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩` for every basis vector `x` of the plane.
    #[test]
    fn im2col_matches_its_definition_and_col2im_its_transpose() {
        let mut rng = crate::models::fastops::testing::Lcg(11);
        let mut next = |n: usize| rng.below(n);
        for case in 0..400 {
            let (kh, kw) = (1 + next(7), 1 + next(7));
            let s = 1 + next(2);
            let (ph, pw) = if case % 2 == 0 {
                ((kh - 1) / 2, (kw - 1) / 2)
            } else {
                (next(4), next(4))
            };
            let (h, w) = (1 + next(9), 1 + next(19));
            let Ok(g) = Geom::new(&[1, 1, h, w], &[1, 1, kh, kw], (ph, pw), s) else {
                continue;
            };
            let oh0 = next(g.oh);
            let rows = 1 + next(g.oh - oh0);
            let (cols, off) = (rows * g.ow, next(3));
            let ld = cols + off + next(3);
            let shifted = Shifted::of(&g);
            assert_eq!(shifted.is_some(), s == 1 && g.ow == w, "{g:?}");
            let mut tables = vec![("gather", Taps::Gathered(Gathered::of(&g)))];
            if let Some(t) = shifted {
                tables.push(("shift", Taps::Shifted(t)));
            }
            for (name, taps) in &tables {
                check_band::<f64>(&g, (name, taps), (oh0, rows), (ld, off));
                check_band::<f32>(&g, (name, taps), (oh0, rows), (ld, off));
            }
        }
    }

    fn check_band<T: Elem>(
        g: &Geom,
        (name, taps): (&str, &Taps),
        (oh0, rows): (usize, usize),
        (ld, off): (usize, usize),
    ) {
        let (h, w, kh, kw, s, ph, pw) = (g.h, g.w, g.kh, g.kw, g.s, g.ph, g.pw);
        let f = (oh0 * g.ow, (oh0 + rows) * g.ow);
        let x: Vec<T> = (0..h * w).map(|i| T::from_f64(i as f64 + 1.0)).collect();
        {
            let mut got = vec![T::from_f64(f64::NAN); kh * kw * ld];
            taps.im2col(&x, f, &mut got, ld, off);
            for i in 0..kh {
                for j in 0..kw {
                    for t in 0..rows {
                        for u in 0..g.ow {
                            let ih = ((oh0 + t) * s + i) as isize - ph as isize;
                            let iw = (u * s + j) as isize - pw as isize;
                            let inside =
                                (0..h as isize).contains(&ih) && (0..w as isize).contains(&iw);
                            let want = if inside {
                                (ih as usize * w + iw as usize) as f64 + 1.0
                            } else {
                                0.0
                            };
                            let at = (i * kw + j) * ld + off + t * g.ow + u;
                            assert_eq!(
                                got[at].to_f64(),
                                want,
                                "{g:?} {name} oh0 {oh0} rows {rows} tap ({i},{j}) at ({t},{u})"
                            );
                        }
                    }
                }
            }
        }
        // col2im: the column entries are small integers, so every sum is exact.
        let c: Vec<T> = (0..kh * kw * ld)
            .map(|v| T::from_f64((v % 97) as f64 - 40.0))
            .collect();
        let mut back = vec![T::from_f64(0.0); h * w];
        taps.col2im_add(&c, f, ld, off, &mut back);
        for (e, got) in back.iter().enumerate() {
            let mut basis = vec![T::from_f64(0.0); h * w];
            basis[e] = T::from_f64(1.0);
            let mut col = vec![T::from_f64(0.0); kh * kw * ld];
            taps.im2col(&basis, f, &mut col, ld, off);
            let mut want = 0.0;
            for r in 0..kh * kw {
                for q in 0..rows * g.ow {
                    want += col[r * ld + off + q].to_f64() * c[r * ld + off + q].to_f64();
                }
            }
            assert_eq!(got.to_f64(), want, "{g:?} {name} col2im at {e}");
        }
    }

    #[test]
    fn valid_range_matches_brute_force() {
        for out in 1..6 {
            for s in 1..3 {
                for k in 0..4 {
                    for pad in 0..4 {
                        for len in 1..8 {
                            let ok: Vec<usize> = (0..out)
                                .filter(|o| {
                                    (0..len as isize)
                                        .contains(&((o * s + k) as isize - pad as isize))
                                })
                                .collect();
                            let (lo, hi) = valid_range(out, s, k, pad, len);
                            assert_eq!(
                                (lo..hi).collect::<Vec<_>>(),
                                ok,
                                "out {out} s {s} k {k} pad {pad} len {len}"
                            );
                        }
                    }
                }
            }
        }
    }
}
