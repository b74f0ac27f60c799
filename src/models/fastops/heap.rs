//! The C allocator's settings for the fast ops' buffers.
//!
//! Every convolution, BatchNorm and pooling pass allocates its outputs and scratch buffers
//! afresh. With glibc's defaults a buffer above the (adaptive) mmap threshold is mapped and
//! unmapped each time, and freed memory at the top of a heap is handed back to the kernel, so
//! the next step faults every page in again and the kernel zeroes it. For Inception-v3 at the
//! CIFAR-10 scale (75 px, width 0.25, batch 32) that was 3,700 page faults per training step;
//! kept in the heap, the buffers are reused from one step to the next (about none per step, and
//! 14 % more images/s on a 2-core AMD EPYC).
//!
//! The trim threshold alone is not enough: when memory is returned, glibc keeps only its top pad
//! (128 KiB) at the end of a heap, and a per-thread arena's heap that empties is unmapped whole
//! unless the pad would be left. At full width a step's buffers come and go in blocks far above
//! 128 KiB, so Inception-v4 at 299 px (batch 8, bf16) still faulted in 91,000–160,000 pages a
//! step (an eighth of its CPU time in the kernel), 13,000–40,000 with a 64 MiB pad; with the pad,
//! 107 px trains 4–6 % faster and 299 px at batch 32 29 % faster, at the same peak resident set
//! (within the ±2 % it moves from run to run).

/// glibc's largest mmap threshold (32 MiB on 64-bit): smaller buffers come from the heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Free memory at the top of a heap is returned to the kernel only above this (64 MiB): a
/// training step frees and reallocates about the same buffers every step, so returning them
/// only costs page faults. Higher values kept more memory at full width (Inception-v4, 107 px,
/// batch 16: peak resident set 1,246 MB with 256 MiB, 1,220 MB with 64 MiB and with glibc's
/// defaults).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 64 << 20;

/// Memory kept at the top of a heap when glibc trims or grows it (64 MiB; glibc's is 128 KiB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TOP_PAD: libc::c_int = 64 << 20;

/// Keeps freed buffers in the process's heaps (see the module's comment), unless the user set
/// glibc's own variables for them (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`,
/// `MALLOC_TOP_PAD_`), which then win. Call at the start of `main`. Does nothing outside glibc.
pub fn configure_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (var, param, value) in [
        (
            "MALLOC_MMAP_THRESHOLD_",
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD,
        ),
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
