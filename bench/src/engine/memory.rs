//! Resident memory of this process (/proc/self/status) and of its malloc heap (malloc_info,
//! which covers every arena; mallinfo2 covers only the main one, and shard threads allocate
//! in their own).
//!
//! Why both: VmRSS is the figure the budget is checked against, but when it is over budget the
//! question is whether the engine holds the memory (heap in use) or glibc keeps pages that
//! were freed (heap free), and the two need different fixes.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemorySample {
    /// Resident set size now.
    pub vm_rss_bytes: u64,
    /// Peak resident set size since the process started.
    pub vm_hwm_bytes: u64,
    /// Bytes of live malloc allocations (all arenas, plus mmapped chunks); 0 if unknown.
    pub heap_in_use_bytes: u64,
    /// Bytes malloc holds free in its arenas (freed by the program, kept by glibc).
    pub heap_free_bytes: u64,
}

/// Heap totals from glibc's malloc_info XML: the top-level `<total>` and `<system>` lines
/// (after the last `</heap>`) sum every arena.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct HeapTotals {
    in_use_bytes: u64,
    free_bytes: u64,
}

fn parse_malloc_info(xml: &str) -> Option<HeapTotals> {
    let top = &xml[xml.rfind("</heap>").map_or(0, |i| i + "</heap>".len())..];
    let size_of = |tag: &str| -> Option<u64> {
        let line = top.lines().find(|l| l.trim_start().starts_with(tag))?;
        let rest = &line[line.find("size=\"")? + 6..];
        rest[..rest.find('"')?].parse().ok()
    };
    let fast = size_of("<total type=\"fast\"")?;
    let rest = size_of("<total type=\"rest\"")?;
    let mmap = size_of("<total type=\"mmap\"").unwrap_or(0);
    let current = size_of("<system type=\"current\"")?;
    Some(HeapTotals {
        in_use_bytes: current.saturating_sub(fast + rest) + mmap,
        free_bytes: fast + rest,
    })
}

fn heap_totals() -> Option<HeapTotals> {
    let mut buf: *mut libc::c_char = std::ptr::null_mut();
    let mut len: libc::size_t = 0;
    // SAFETY: open_memstream writes the buffer pointer and length into the two locals, which
    // outlive the stream; the stream is closed below before the buffer is read.
    let stream = unsafe { libc::open_memstream(&mut buf, &mut len) };
    if stream.is_null() {
        return None;
    }
    // SAFETY: `stream` is a valid, open FILE*; malloc_info only writes XML to it.
    let rc = unsafe { libc::malloc_info(0, stream) };
    // SAFETY: closing the stream we opened; afterwards `buf`/`len` describe the final buffer.
    unsafe { libc::fclose(stream) };
    if buf.is_null() {
        return None;
    }
    // SAFETY: after fclose, `buf` points to `len` initialised bytes owned by us until free().
    let text =
        String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) })
            .into_owned();
    // SAFETY: the buffer was allocated by open_memstream with malloc and is freed once.
    unsafe { libc::free(buf.cast()) };
    if rc != 0 {
        return None;
    }
    parse_malloc_info(&text)
}

pub fn sample() -> MemorySample {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let heap = heap_totals().unwrap_or_default();
    MemorySample {
        vm_rss_bytes: field_bytes(&status, "VmRSS:"),
        vm_hwm_bytes: field_bytes(&status, "VmHWM:"),
        heap_in_use_bytes: heap.in_use_bytes,
        heap_free_bytes: heap.free_bytes,
    }
}

/// Asks glibc to give free heap pages back to the kernel (all arenas). A diagnostic: the
/// VmRSS drop it causes is memory the engine had already freed.
pub fn trim_heap() {
    // SAFETY: malloc_trim only returns free memory to the kernel; live allocations are
    // untouched, and it is thread-safe (it takes each arena's lock).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A "Name:   1234 kB" line of /proc/self/status in bytes; 0 when missing.
fn field_bytes(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_status_lines() {
        let s = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(field_bytes(s, "VmRSS:"), 1 << 20);
        assert_eq!(field_bytes(s, "VmHWM:"), 2 << 20);
        assert_eq!(field_bytes(s, "VmSwap:"), 0);
    }

    #[test]
    fn malloc_info_totals_are_parsed_from_the_top_level() {
        let xml = r#"<malloc version="1">
<heap nr="0">
<total type="fast" count="1" size="999"/>
<total type="rest" count="1" size="999"/>
<system type="current" size="999"/>
</heap>
<total type="fast" count="2" size="100"/>
<total type="rest" count="3" size="900"/>
<total type="mmap" count="1" size="4096"/>
<system type="current" size="11000"/>
<system type="max" size="12000"/>
</malloc>
"#;
        let t = parse_malloc_info(xml).unwrap();
        assert_eq!(t.free_bytes, 1000);
        assert_eq!(t.in_use_bytes, 10_000 + 4096);
        assert_eq!(parse_malloc_info("<malloc/>"), None);
    }

    #[test]
    fn heap_in_use_sees_allocations_of_other_threads() {
        // A thread allocates in its own arena, which mallinfo2 would miss. Many small blocks,
        // so they come from the arena and not from mmap.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let before = heap_totals().unwrap();
        let t = std::thread::spawn(move || {
            let blocks: Vec<Vec<u8>> = (0..4096).map(|_| vec![7u8; 16 << 10]).collect();
            tx.send(()).unwrap();
            done_rx.recv().unwrap();
            drop(blocks);
        });
        rx.recv().unwrap();
        let during = heap_totals().unwrap();
        done_tx.send(()).unwrap();
        t.join().unwrap();
        assert!(
            during.in_use_bytes >= before.in_use_bytes + (48 << 20),
            "{before:?} {during:?}"
        );
        let m = sample();
        assert!(m.vm_rss_bytes > 0 && m.vm_hwm_bytes >= m.vm_rss_bytes);
    }
}
