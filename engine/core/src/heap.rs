//! Giving freed heap back to the operating system.
//!
//! Why: a flush or a compaction allocates transiently (the segment's filter construction, block
//! buffers, the merged run's index) on the shard's own thread, and the memtable it retires frees
//! tens of MiB of small allocations at once. glibc keeps freed memory in the thread's arena and
//! returns only the top of a heap, so without help the process's resident memory settles near
//! its highest transient peak, far above what the engine holds (measured with 10 M keys:
//! 277 MiB resident, 32 MiB in use; docs/benchmarks.md). Resident memory is what an operator's
//! budget and the kernel's memory cgroup count, so after each flush and compaction the shard
//! asks glibc to release whole free pages (`malloc_trim`), and large buffers are served by
//! mmap so that freeing them unmaps them at once.
//!
//! Other allocators (musl, jemalloc) manage this themselves: the calls compile to nothing there.

use std::sync::Once;
use std::time::Instant;

/// Allocations of at least this size are mmapped (and unmapped when freed). Setting it also
/// switches off glibc's dynamic threshold, which otherwise rises up to 32 MiB after the first
/// large free and sends the next large buffers into the arena, where they stay resident.
const MMAP_THRESHOLD_BYTES: i32 = 1 << 20;

static TUNE: Once = Once::new();

/// Sets the allocator options once per process (idempotent; called by `Engine::open`).
pub fn tune_allocator() {
    TUNE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: mallopt only changes allocator parameters; any value is accepted or
            // refused with 0, and no memory is touched.
            let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) };
            if ok == 0 {
                tracing::warn!("mallopt(M_MMAP_THRESHOLD) refused; freed heap may stay resident");
            }
        }
    });
}

/// Returns whole free pages of every arena to the OS. Takes a few milliseconds on a large
/// heap, so it is called from background work after a flush or compaction, not per request.
pub fn release_free_heap(shard: usize) {
    let started = Instant::now();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists; it is thread-safe
        // (each arena is locked while it is trimmed).
        unsafe {
            libc::malloc_trim(0);
        }
    }
    tracing::debug!(
        shard,
        elapsed_us = started.elapsed().as_micros() as u64,
        "released free heap"
    );
}
