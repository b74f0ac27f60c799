//! In-place CPU kernels for the per-step parameter updates: the optimizers' slot updates, the
//! weight update, the EMA and the squared norm of the clipping.
//!
//! Written with candle's element-wise ops, one RMSProp update of a variable is a dozen passes
//! over it, each allocating a fresh tensor: for 43 M parameters (Inception-v4) RMSProp, EMA and
//! clipping took about 125 ms of every CPU training step on 2 cores, 75 ms with these kernels.
//! Here each update is one pass that rewrites its destinations in place (candle's in-place
//! ops), split over the fast ops' threads; RMSProp's four passes (weight decay, mean square,
//! momentum, weight) are one. The formulas and their order of operations are those of the
//! candle versions, which remain the path on CUDA and with the fast ops off
//! (`REPRO_STOCK_OPS=1`).
//!
//! In place means the state tensors must not share storage with anything else: callers copy
//! state they load from outside.

use std::cell::RefCell;

use candle_core::{bail, CpuStorage, DType, InplaceOp1, InplaceOp2, Layout, Result, Tensor};

use crate::models::fastops::simd::wide_fn;
use crate::models::fastops::{self, Elem};

/// Whether the in-place kernels can update `dst` from `srcs`: fast ops on, every tensor on the
/// CPU, contiguous, of one float type (f32/f64) and one shape.
pub fn usable(dst: &Tensor, srcs: &[&Tensor]) -> bool {
    fastops::usable(dst)
        && dst.is_contiguous()
        && srcs.iter().all(|s| {
            s.device().is_cpu()
                && s.dtype() == dst.dtype()
                && s.is_contiguous()
                && s.dims() == dst.dims()
        })
}

/// Most elements in one parallel chunk of an element-wise update: large enough that splitting
/// costs nothing.
const CHUNK: usize = 1 << 15;

/// Elements per partial sum of [`sum_of_squares`]: fixed, so that the result depends on the
/// tensor's size only; small, so that the tensors of the scaled-down networks (a few thousand
/// to tens of thousands of entries each) are split over the threads too.
const SUM_CHUNK: usize = 1 << 12;

fn dense<'a, T>(s: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => bail!("in-place update: operand is not contiguous"),
    }
}

fn dense_mut<'a, T>(s: &'a mut [T], l: &Layout) -> Result<&'a mut [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut s[a..b]),
        None => bail!("in-place update: destination is not contiguous"),
    }
}

/// `f(dst_chunk, offset)` over chunks of `dst`, in parallel (the last one may be shorter).
fn chunked<T: Elem>(dst: &mut [T], f: impl Fn(&mut [T], usize) + Sync + Send) {
    let len = chunk_len(dst.len());
    fastops::par_chunks(dst, len, |i, chunk| f(chunk, i * len));
}

/// The chunk length [`chunked`] splits `n` elements into: one chunk per thread, between
/// [`fastops::MIN_TASK_ENTRIES`] and [`CHUNK`]. At the CIFAR-10 scale most variables are under
/// `CHUNK`, and with whole `CHUNK`s they were updated on one core while the other spun or
/// slept: training images/s (75 px, width 0.25, batch 32; 2-core Intel Xeon, three alternated
/// runs) Inception-v3 637–651 → 643–661, Inception-v4 343–352 → 351–363, Inception-ResNet-v2
/// 300–311 → 314–324, with [`SUM_CHUNK`].
fn chunk_len(n: usize) -> usize {
    n.div_ceil(fastops::threads())
        .next_multiple_of(64)
        .clamp(fastops::MIN_TASK_ENTRIES, CHUNK)
}

/// A destination-rewriting element-wise kernel with one source: `d = f(d, s)`.
trait Kernel1: Sync {
    fn name(&self) -> &'static str;
    fn apply<T: Elem>(&self, d: T, s: T) -> T;
}

struct Op1<K>(K);

fn run1<T: Elem, K: Kernel1>(k: &K, d: &mut [T], s: &[T]) {
    chunked(d, |dc, off| {
        let s = &s[off..off + dc.len()];
        for (x, &y) in dc.iter_mut().zip(s) {
            *x = k.apply(*x, y);
        }
    });
}

impl<K: Kernel1> InplaceOp2 for Op1<K> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn cpu_fwd(&self, d: &mut CpuStorage, ld: &Layout, s: &CpuStorage, ls: &Layout) -> Result<()> {
        match (d, s) {
            (CpuStorage::F32(d), CpuStorage::F32(s)) => {
                run1(&self.0, dense_mut(d, ld)?, dense(s, ls)?)
            }
            (CpuStorage::F64(d), CpuStorage::F64(s)) => {
                run1(&self.0, dense_mut(d, ld)?, dense(s, ls)?)
            }
            _ => bail!("{}: f32 or f64 tensors of one dtype only", self.0.name()),
        }
        Ok(())
    }
}

/// `d = a·d + b·s`.
struct Axpby {
    a: f64,
    b: f64,
}

impl Kernel1 for Axpby {
    fn name(&self) -> &'static str {
        "inplace-axpby"
    }
    #[inline]
    fn apply<T: Elem>(&self, d: T, s: T) -> T {
        d * T::from_f64(self.a) + s * T::from_f64(self.b)
    }
}

/// `ms = decay·ms + (1 − decay)·g²`.
struct MeanSquare {
    decay: f64,
}

impl MeanSquare {
    #[inline]
    fn apply<T: Elem>(&self, ms: T, g: T) -> T {
        ms * T::from_f64(self.decay) + g * g * T::from_f64(1.0 - self.decay)
    }
}

/// `mom = momentum·mom + lr·g / sqrt(ms + ε)`.
struct RmsMomentum {
    momentum: f64,
    lr: f64,
    epsilon: f64,
}

impl RmsMomentum {
    #[inline]
    fn apply<T: Elem>(&self, mom: T, g: T, ms: T) -> T {
        let denom = (ms + T::from_f64(self.epsilon)).to_f64().sqrt();
        mom * T::from_f64(self.momentum) + g / T::from_f64(denom) * T::from_f64(self.lr)
    }
}

/// `dst = a·dst + b·src` in place.
pub fn axpby(dst: &Tensor, a: f64, b: f64, src: &Tensor) -> Result<()> {
    dst.inplace_op2(src, &Op1(Axpby { a, b }))
}

/// One RMSProp step of a variable, the four passes of the update written with candle's ops
/// fused into one: with `decay = Some(rate)` the gradient first takes weight decay (`g + rate·w`, as
/// [`axpby`] computes it into a copy), then the mean square, the momentum and
/// `w = w − mom` ([`axpby`]), each element through the same kernels in the same order, so the
/// results are those of the four passes, bit for bit. One read of `g`, one read and write of
/// `w`, `ms` and `mom`, no allocation: a third of the memory traffic of the passes.
#[allow(clippy::too_many_arguments)]
pub fn rmsprop_step(
    w: &Tensor,
    g: &Tensor,
    ms: &Tensor,
    mom: &Tensor,
    decay: Option<f64>,
    (ms_decay, momentum, epsilon): (f64, f64, f64),
    lr: f64,
) -> Result<()> {
    let k = RmsPropKernels {
        decay: decay.map(|rate| Axpby { a: 1.0, b: rate }),
        ms: MeanSquare { decay: ms_decay },
        mom: RmsMomentum {
            momentum,
            lr,
            epsilon,
        },
        w: Axpby { a: 1.0, b: -1.0 },
    };
    with_mut(w, |ws, wl| {
        with_mut(ms, |mss, msl| {
            with_mut(mom, |moms, moml| {
                let n = wl.shape().elem_count();
                fastops::with_storage(g, |gs, gl| {
                    // The same call for each float type the tensors may hold.
                    macro_rules! step_as {
                        ($dtype:ident) => {
                            if let (
                                CpuStorage::$dtype(w),
                                CpuStorage::$dtype(ms),
                                CpuStorage::$dtype(mom),
                                CpuStorage::$dtype(g),
                            ) = (&mut *ws, &mut *mss, &mut *moms, gs)
                            {
                                let (w, ms) = (dense_mut(w, wl)?, dense_mut(ms, msl)?);
                                let (mom, g) = (dense_mut(mom, moml)?, dense(g, gl)?);
                                return rmsprop_chunks(&k, w, ms, mom, g, n);
                            }
                        };
                    }
                    step_as!(F32);
                    step_as!(F64);
                    bail!("rmsprop step: f32 or f64 tensors of one dtype only")
                })
            })
        })
    })
}

/// The kernels of one fused RMSProp step.
struct RmsPropKernels {
    decay: Option<Axpby>,
    ms: MeanSquare,
    mom: RmsMomentum,
    w: Axpby,
}

fn rmsprop_chunks<T: Elem>(
    k: &RmsPropKernels,
    w: &mut [T],
    ms: &mut [T],
    mom: &mut [T],
    g: &[T],
    n: usize,
) -> Result<()> {
    if [w.len(), ms.len(), mom.len(), g.len()] != [n; 4] {
        bail!("rmsprop step: the variable, its slots and its gradient differ in size");
    }
    let (ms_p, mom_p) = (
        fastops::SyncPtr(ms.as_mut_ptr()),
        fastops::SyncPtr(mom.as_mut_ptr()),
    );
    chunked(w, |wc, off| {
        let (ms_p, mom_p) = (&ms_p, &mom_p);
        // SAFETY: the chunks `off..off + len` are disjoint, and `ms` and `mom` are as long as
        // `w` (checked above) and no other tensor's storage (the optimizer's own slots).
        let (msc, momc) = unsafe {
            (
                std::slice::from_raw_parts_mut(ms_p.0.add(off), wc.len()),
                std::slice::from_raw_parts_mut(mom_p.0.add(off), wc.len()),
            )
        };
        rmsprop_elements(k, wc, msc, momc, &g[off..off + wc.len()]);
    });
    Ok(())
}

wide_fn! {
    /// The fused step over one chunk.
    fn rmsprop_elements<T: Elem>(
        k: &RmsPropKernels,
        w: &mut [T],
        ms: &mut [T],
        mom: &mut [T],
        g: &[T],
    ) -> () {
        for (((w, ms), mom), &g) in w.iter_mut().zip(ms.iter_mut()).zip(mom.iter_mut()).zip(g) {
            let g = match &k.decay {
                Some(d) => d.apply(g, *w),
                None => g,
            };
            *ms = k.ms.apply(*ms, g);
            *mom = k.mom.apply(*mom, g, *ms);
            *w = k.w.apply(*w, *mom);
        }
    }
}

/// Mutable access to the CPU storage of `t` for `f`, as an in-place op (several tensors can be
/// opened at once by nesting: each has its own lock).
fn with_mut(t: &Tensor, f: impl FnMut(&mut CpuStorage, &Layout) -> Result<()>) -> Result<()> {
    struct Access<F>(RefCell<F>);
    impl<F: FnMut(&mut CpuStorage, &Layout) -> Result<()>> InplaceOp1 for Access<F> {
        fn name(&self) -> &'static str {
            "inplace-access"
        }
        fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
            (self.0.borrow_mut())(s, l)
        }
    }
    t.inplace_op1(&Access(RefCell::new(f)))
}

/// `Σ t²` in f64, in parallel and in a fixed order of chunks (deterministic for a given size).
pub fn sum_of_squares(t: &Tensor) -> Result<f64> {
    /// Eight independent accumulators: one running sum would wait on the latency of every add.
    fn lanes<T: Elem>(s: &[T]) -> f64 {
        let mut acc = [0f64; 8];
        let mut it = s.chunks_exact(8);
        for c in &mut it {
            for (a, v) in acc.iter_mut().zip(c) {
                let v = v.to_f64();
                *a += v * v;
            }
        }
        let rest: f64 = it.remainder().iter().map(|v| v.to_f64() * v.to_f64()).sum();
        acc.iter().sum::<f64>() + rest
    }
    fn sum<T: Elem>(s: &[T]) -> f64 {
        let parts = fastops::par_map(s.len().div_ceil(SUM_CHUNK), |i| {
            lanes(&s[i * SUM_CHUNK..((i + 1) * SUM_CHUNK).min(s.len())])
        });
        parts.into_iter().sum()
    }
    match t.dtype() {
        DType::F32 => fastops::with_slice::<f32, _>(t, |s, l| Ok(sum(dense(s, l)?))),
        DType::F64 => fastops::with_slice::<f64, _>(t, |s, l| Ok(sum(dense(s, l)?))),
        d => bail!("sum_of_squares: unsupported dtype {}", d.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn rand(n: usize, dtype: DType, seed: f32) -> Tensor {
        (Tensor::rand(-1f32, 1., n, &Device::Cpu).unwrap() + seed as f64)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    fn values(t: &Tensor) -> Vec<f64> {
        t.to_dtype(DType::F64).unwrap().to_vec1().unwrap()
    }

    /// Each kernel against the same formula in candle's element-wise ops, on sizes around the
    /// chunk boundaries (one chunk, a chunk per thread with a shorter last one, whole `CHUNK`s
    /// and a remainder); f32 results are bit-identical (same operations in the same order).
    #[test]
    fn kernels_match_candle_ops() {
        let min = fastops::MIN_TASK_ENTRIES;
        for dtype in [DType::F32, DType::F64] {
            for n in [
                1,
                7,
                2 * min - 1,
                2 * min + 3,
                CHUNK - 1,
                CHUNK,
                2 * CHUNK + 5,
            ] {
                let (d, s, t) = (
                    rand(n, dtype, 0.0),
                    rand(n, dtype, 0.1),
                    rand(n, dtype, 1.5),
                );

                let want = ((&d * 0.9).unwrap() + (&s * -0.3).unwrap()).unwrap();
                let got = d.copy().unwrap();
                axpby(&got, 0.9, -0.3, &s).unwrap();
                assert_eq!(values(&got), values(&want), "axpby {dtype:?} {n}");

                // RMSProp on (w = d, g = s, ms = t, mom = d + 0.25), with and without decay,
                // against the same formulas in candle's ops.
                for decay in [None, Some(4e-5)] {
                    let (w, ms, mom) = (d.copy().unwrap(), t.copy().unwrap(), (&d + 0.25).unwrap());
                    let g = match decay {
                        Some(rate) => (&s + d.affine(rate, 0.0).unwrap()).unwrap(),
                        None => s.clone(),
                    };
                    let want_ms = (ms.affine(0.9, 0.0).unwrap()
                        + g.sqr().unwrap().affine(1.0 - 0.9, 0.0).unwrap())
                    .unwrap();
                    let denom = want_ms.affine(1.0, 1.0).unwrap().sqrt().unwrap();
                    let want_mom = (mom.affine(0.9, 0.0).unwrap()
                        + (&g / denom).unwrap().affine(0.045, 0.0).unwrap())
                    .unwrap();
                    let want_w = (&w - &want_mom).unwrap();
                    rmsprop_step(&w, &s, &ms, &mom, decay, (0.9, 0.9, 1.0), 0.045).unwrap();
                    let what = format!("rmsprop {dtype:?} {n} decay {decay:?}");
                    assert_eq!(values(&ms), values(&want_ms), "ms, {what}");
                    assert_eq!(values(&mom), values(&want_mom), "mom, {what}");
                    assert_eq!(values(&w), values(&want_w), "w, {what}");
                }

                let want: f64 = values(&s).iter().map(|v| v * v).sum();
                let got = sum_of_squares(&s).unwrap();
                assert!(
                    (got - want).abs() <= 1e-12 * want,
                    "sum of squares {dtype:?} {n}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn usable_needs_matching_contiguous_cpu_tensors() {
        let a = rand(6, DType::F32, 0.0);
        assert!(usable(&a, &[&rand(6, DType::F32, 0.0)]));
        assert!(!usable(&a, &[&rand(6, DType::F64, 0.0)]));
        assert!(!usable(&a, &[&rand(5, DType::F32, 0.0)]));
        let m = a.reshape((2, 3)).unwrap();
        assert!(!usable(&m.t().unwrap(), &[&m]));
    }
}
