//! The C allocator's settings for the fast ops' buffers.
//!
//! Every convolution, BatchNorm and pooling pass allocates its outputs and scratch buffers
//! afresh, a few to tens of MiB each at full width. Memory that glibc hands back to the kernel
//! has to be faulted in (and zeroed by the kernel) when it is used again, and with glibc's
//! defaults that happens all the time:
//!
//! - a buffer above the (adaptive) mmap threshold is mapped and unmapped on every use; for
//!   Inception-v3 at the CIFAR-10 scale (75 px, width 0.25, batch 32) that was 3,700 page faults
//!   per training step, 14 % of its images/s on a 2-core AMD EPYC;
//! - free memory at the top of a heap is returned once it exceeds the trim threshold, keeping
//!   only a small pad, so a step that frees its activations faults them in again the next step
//!   (Inception-v4 at 299 px, bf16: 91,000–160,000 page faults a step);
//! - each thread that allocates gets its own arena, and an arena other than the main one is a
//!   chain of heaps of at most 64 MiB. Buffers of tens of MiB fragment those heaps: on an Intel
//!   Xeon (2 cores), evaluating Inception-ResNet-v2 at 299 px (batch 8) a rayon worker chained a
//!   new heap every 0.15 s for whole forward passes, 1.9 GB of fresh pages, and such a pass took
//!   4.0–4.5 s instead of 0.9 s; the process peaked at 4.5 GB instead of 2.7 GB.
//!
//! So every thread allocates from the main arena (one heap that grows contiguously), nothing is
//! mapped on its own, and free memory stays in the heap. A training or evaluation loop
//! allocates about the same buffers every step, so the heap settles at the peak of one step and
//! then faults nothing. Measured on that Xeon, against glibc's defaults with the earlier
//! thresholds: evaluation of Inception-ResNet-v2 at 299 px, mean of 8 passes 5.9–6.2 → 8.4–9.0
//! crops/s, peak resident set 4.55 → 2.72 GB; Inception-v4 8.3–9.9 → 9.7–10.1 crops/s, 2.0–3.3
//! → 2.0 GB; training at 299 px (batch 8) and at the CIFAR-10 scale at the same speed (within
//! the ±3 % runs differ) and a 1–2 % lower peak. The cost is that memory freed after a large
//! phase stays with the process until it exits.
//!
//! The heap is also backed by transparent huge pages where the kernel gives them on request
//! (`/sys/kernel/mm/transparent_hugepage/enabled` set to `madvise`, as on many distributions and
//! VMs): [`HugePageHeap`], the `repro` binary's allocator, asks for them (`MADV_HUGEPAGE`) on
//! each stretch the heap grows by, as glibc's own `glibc.malloc.hugetlb=1` tunable would if it
//! could be set from inside the process. The fast ops stream through buffers of megabytes, and
//! with 4 KiB pages each of those pages is a TLB miss, a costly one in a VM (a two-level page
//! walk). Measured on the 2-core Xeon (KVM), alternated runs, with and without glibc's tunable
//! on the binary before this: evaluation of Inception-v4 at 299 px, batch 8, 8.2–8.4 → 9.2
//! crops/s (three runs each; again later, 8.8–9.7 → 9.8–10.5); training at 299 px, batch 8,
//! Inception-v4 2.40 → 2.68 and Inception-ResNet-v2 2.23 → 2.38 images/s, the peak resident set
//! within 1 % (2.39 → 2.41 and 3.14 → 3.13 GB). With [`HugePageHeap`], `REPRO_HUGE_PAGES=0`
//! against unset: 9.4–9.5 → 9.6–10.7 crops/s, and 834 of the 884 MB resident in huge pages
//! (`AnonHugePages`). PyTorch gains nothing from them on the same machine (its Inception-v4
//! evaluation 5.9–6.4 crops/s without, 5.8–5.9 with glibc's tunable). `REPRO_HUGE_PAGES=0` turns
//! the request off.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// All threads share the main arena (see the module's comment).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENA_MAX: libc::c_int = 1;

/// No buffer gets a mapping of its own, however large.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_MAX: libc::c_int = 0;

/// Free memory at the top of the heap is returned to the kernel only above 2 GiB (the largest
/// value `mallopt` takes): in practice never during a run.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = libc::c_int::MAX;

/// The heap grows by at least 64 MiB at a time (glibc's default is 128 KiB), so a step that
/// needs a little more than the last does not grow it many times.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TOP_PAD: libc::c_int = 64 << 20;

/// Keeps freed buffers in the process's heap (see the module's comment), unless the user set
/// glibc's own variables for them (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_MAX_`,
/// `MALLOC_TRIM_THRESHOLD_`, `MALLOC_TOP_PAD_`), which then win, and has [`HugePageHeap`] ask
/// for huge pages from here on where the kernel gives them on request. Call at the start of
/// `main`, before any other thread exists. Does nothing outside glibc.
pub fn configure_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if huge_pages_on_request() {
        // SAFETY: sbrk(0) only reads the current end of the heap.
        ADVISED_END.store(unsafe { libc::sbrk(0) } as usize, Ordering::Relaxed);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (var, param, value) in [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, ARENA_MAX),
        ("MALLOC_MMAP_MAX_", libc::M_MMAP_MAX, MMAP_MAX),
        (
            "MALLOC_TRIM_THRESHOLD_",
            libc::M_TRIM_THRESHOLD,
            TRIM_THRESHOLD,
        ),
        ("MALLOC_TOP_PAD_", libc::M_TOP_PAD, TOP_PAD),
    ] {
        if std::env::var_os(var).is_none() {
            // SAFETY: mallopt only changes allocator parameters; glibc takes its lock.
            unsafe { libc::mallopt(param, value) };
        }
    }
}

/// Allocations at least this large may have grown the heap: [`HugePageHeap`] then looks.
const LOOK_FROM: usize = 64 << 10;

/// The end of the heap up to which huge pages were asked for; 0 while nothing is to be asked.
static ADVISED_END: AtomicUsize = AtomicUsize::new(0);

/// Whether the kernel gives transparent huge pages to memory that asks for them and not to
/// other memory (`[madvise]` in `/sys/kernel/mm/transparent_hugepage/enabled`; with `always`
/// the heap has them anyway), unless `REPRO_HUGE_PAGES` is `0` or `off`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn huge_pages_on_request() -> bool {
    let wanted = std::env::var("REPRO_HUGE_PAGES").map_or(true, |v| v != "0" && v != "off");
    wanted
        && std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .is_ok_and(|mode| mode.contains("[madvise]"))
}

/// The C allocator, whose heap [`configure_heap`] set up, with transparent huge pages asked for
/// on each stretch the heap grows by (see the module's comment). The `repro` binary's global
/// allocator.
pub struct HugePageHeap;

impl HugePageHeap {
    /// Whether the heap's growth is marked for huge pages ([`configure_heap`] set it up, the
    /// kernel gives them on request, `REPRO_HUGE_PAGES` does not turn it off).
    pub fn asking() -> bool {
        ADVISED_END.load(Ordering::Relaxed) != 0
    }

    /// After an allocation of `size` bytes: asks for huge pages on the heap's growth since the
    /// last time (from where [`configure_heap`] found its end), if the allocation was large
    /// enough to have grown it.
    fn advise_growth(size: usize) {
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        let _ = size;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        if size >= LOOK_FROM {
            let from = ADVISED_END.load(Ordering::Relaxed);
            if from == 0 {
                return;
            }
            // SAFETY: sbrk(0) only reads the current end of the heap.
            let end = unsafe { libc::sbrk(0) } as usize;
            if end <= from
                || ADVISED_END
                    .compare_exchange(from, end, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                return;
            }
            // The first whole page of the growth (the heap's first end can be inside a page of
            // the program's data).
            // SAFETY: sysconf only reads a system setting.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
            let start = from.next_multiple_of(page);
            if start < end {
                // SAFETY: the range lies in the heap, mapped up to `end`; the advice changes how
                // its pages are backed, not what they hold. A failure leaves them as they were.
                unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE)
                };
            }
        }
    }
}

// SAFETY: every call goes to the system allocator unchanged; the advice does not touch memory.
unsafe impl GlobalAlloc for HugePageHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        Self::advise_growth(layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        Self::advise_growth(layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        Self::advise_growth(new_size);
        p
    }
}
