//! The thread pools the fast ops run on and their parallel loops.

/// Whether the fast ops split their work over candle's own CPU worker pool (the one that runs
/// candle's element-wise ops, `CANDLE_NUM_THREADS` threads; the default) rather than rayon's
/// global pool (`REPRO_FASTOPS_POOL=rayon`, `RAYON_NUM_THREADS` threads). candle's workers spin
/// for a while after each parallel loop before they park, so the next loop starts on threads
/// that are awake; rayon's workers go to sleep and every loop wakes them through the kernel (at
/// the CIFAR-10 scale a training step runs about a thousand loops, and a tenth of its time was
/// the kernel's scheduling). Measured on a 2-core Intel Xeon, both settings alternated twice:
/// training images/s at the CIFAR-10 scale (75 px, width 0.25, batch 32) Inception-v4 303–311 →
/// 329–333, Inception-v3 533–535 → 590–602; at 107 px (batch 16) Inception-v4 19.9–20.4 →
/// 22.0–22.6, Inception-ResNet-v2 18.6–18.8 → 20.0–20.4; at 299 px and in evaluation even;
/// a 2-epoch CIFAR-10 run of Inception-v3 with its data loader 84 → 78 s, the same error.
pub(super) fn candle_pool() -> bool {
    static POOL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *POOL.get_or_init(|| std::env::var("REPRO_FASTOPS_POOL").map_or(true, |v| v != "rayon"))
}

/// How many times an idle worker of candle's element-wise pool spins before it parks when the
/// fast ops run on rayon's pool (`REPRO_FASTOPS_POOL=rayon`), unless
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT` says otherwise. Candle's default (25,000) keeps a worker
/// spinning for about a millisecond after every element-wise op; on a machine with as many
/// cores as threads that spin then takes a core from the rayon workers running the next
/// convolution (measured: Inception-ResNet-v2 inference at 107 px, batch 16, on 2 cores, 84 ->
/// 100 images/s with 500). With the fast ops on candle's pool (the default) the spinning workers
/// are the ones that run the next op, and candle's default stays.
const CANDLE_SPIN_LIMIT: &str = "500";

/// Sets up the CPU thread pools for the fast ops: with the fast ops on rayon's pool, shortens the
/// idle spin of candle's element-wise pool (see [`CANDLE_SPIN_LIMIT`]) unless the user set it.
/// Call at the start of `main`, before any thread exists (it sets an environment variable, which
/// candle reads when its pool starts).
pub(super) fn configure_thread_pools() {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if !candle_pool() && std::env::var_os(VAR).is_none() {
        std::env::set_var(VAR, CANDLE_SPIN_LIMIT);
    }
}

/// Number of threads the fast ops split their work over.
pub(crate) fn threads() -> usize {
    if candle_pool() {
        candle_core::utils::barrier_pool().n_workers() + 1
    } else {
        rayon::current_num_threads().max(1)
    }
}

/// Runs `f` on a worker thread of rayon's global pool when that is the fast ops' pool, unless the
/// caller already runs on a rayon worker (whose pool the ops then use, as their parallel loops
/// always do); on candle's pool (the default), where the caller takes its share of each loop,
/// `f` runs on the caller. A whole forward or training step then forks each op's parallel loop
/// from inside the pool: the calling worker takes a share of the work and the other picks its
/// share from the local queue, instead of the caller sleeping on a latch while a worker is woken
/// for every op (measured: Inception-ResNet-v2 inference at 107 px, batch 16, 2 cores, +12 %).
pub fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if candle_pool() || rayon::current_thread_index().is_some() {
        f()
    } else {
        // The trainer's collector of fused stages' gradients goes with its forward pass.
        let collector = super::tape::current();
        rayon::scope(|_| super::tape::isolated(collector, f))
    }
}

/// Calls `f(i)` for every `i < n`, in parallel. The caller makes the items independent
/// (results must not depend on which thread runs which item).
pub(crate) fn par_items(n: usize, f: impl Fn(usize) + Sync + Send) {
    use rayon::prelude::*;
    if n <= 1 || threads() == 1 {
        (0..n).for_each(f);
    } else if candle_pool() {
        candle_core::utils::barrier_pool().execute_chunked(n, |range| range.for_each(&f));
    } else {
        (0..n).into_par_iter().for_each(f);
    }
}

/// `f(i, chunk_i)` over consecutive chunks of `len` entries of `out`, in parallel (the last one
/// shorter where `len` does not divide `out`).
pub(crate) fn par_chunks<T: Send>(
    out: &mut [T],
    len: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if len == 0 {
        return;
    }
    let total = out.len();
    let base = SyncPtr(out.as_mut_ptr());
    par_items(total.div_ceil(len), |i| {
        let b = &base;
        let start = i * len;
        // Chunks are disjoint, inside `out`, and each index is visited once.
        let chunk =
            unsafe { std::slice::from_raw_parts_mut(b.0.add(start), len.min(total - start)) };
        f(i, chunk)
    });
}

/// Entries of the small chunks (planes) one parallel task of an element-wise pass takes at
/// least: most planes at the CIFAR-10 scale have 1 to 49 entries, and a task (and any buffer it
/// allocates) per plane would cost more than the plane's work.
pub(crate) const MIN_TASK_ENTRIES: usize = 4096;

/// [`par_chunks`] with the chunks taken in groups of at least `min_entries` entries (whole
/// chunks): `f(first, group)`, `group` holding chunks `first, first + 1, ...`. For passes over
/// many small chunks, where a task per chunk would cost more than the chunk's work.
pub(crate) fn par_chunk_groups<T: Send>(
    out: &mut [T],
    len: usize,
    min_entries: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if len == 0 {
        return;
    }
    let per = min_entries.div_ceil(len).max(1);
    let n = out.len() / len;
    let base = SyncPtr(out.as_mut_ptr());
    par_items(n.div_ceil(per), |gi| {
        let b = &base;
        let (first, count) = (gi * per, per.min(n - gi * per));
        // Groups are disjoint and each is visited once.
        let group = unsafe { std::slice::from_raw_parts_mut(b.0.add(first * len), count * len) };
        f(first, group)
    });
}

/// `f(i)` for every `i < n` in parallel, collected in index order.
pub(crate) fn par_map<R: Send>(n: usize, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
    par_chunks(&mut out, 1, |i, slot| slot[0] = Some(f(i)));
    out.into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// The element-wise sum of per-group partial results (of [`par_map`]), added in the groups'
/// order, so that a result depends on the number of groups only, not on which thread finished
/// first.
pub(crate) fn sum_in_order<T: std::ops::AddAssign>(partials: Vec<Vec<T>>) -> Vec<T> {
    let mut it = partials.into_iter();
    let mut total = it.next().expect("at least one group");
    for part in it {
        for (t, v) in total.iter_mut().zip(part) {
            *t += v;
        }
    }
    total
}

pub(crate) struct SyncPtr<T>(pub(crate) *mut T);
unsafe impl<T: Send> Sync for SyncPtr<T> {}
unsafe impl<T: Send> Send for SyncPtr<T> {}
