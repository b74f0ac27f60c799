//! The `repro` binary's heap grows into memory marked for transparent huge pages, where the
//! kernel gives them on request. Its own `main` (no test harness): the heap has to be set up on
//! the main thread before any other thread exists, as the binary does.

use repro::models::fastops::{configure_cpu, HugePageHeap};

#[global_allocator]
static HEAP: HugePageHeap = HugePageHeap;

/// The `VmFlags` line of this process's mapping that holds `at`.
fn vm_flags(at: usize) -> Option<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if inside {
                return Some(flags.trim().to_string());
            }
            continue;
        }
        let range = line
            .split_whitespace()
            .next()
            .and_then(|r| r.split_once('-'));
        if let Some((lo, hi)) = range {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&at);
            }
        }
    }
    None
}

fn main() {
    configure_cpu();
    if !HugePageHeap::asking() {
        println!("skipped: this machine gives no transparent huge pages on request (or REPRO_HUGE_PAGES=0)");
        return;
    }
    // Larger than the heap's pad: the heap grows for it.
    let buffer = vec![1u8; 256 << 20];
    let middle = buffer.as_ptr() as usize + buffer.len() / 2;
    let flags = vm_flags(middle).expect("the buffer's mapping is in /proc/self/smaps");
    assert!(
        flags.split_whitespace().any(|f| f == "hg"),
        "the heap's new memory is not marked for huge pages: VmFlags {flags}"
    );
    println!("test the_heap_grows_into_memory_marked_for_huge_pages ... ok");
}
