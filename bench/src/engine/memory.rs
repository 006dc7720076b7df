//! Resident memory of this process, from /proc/self/status.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemorySample {
    /// Resident set size now.
    pub vm_rss_bytes: u64,
    /// Peak resident set size since the process started.
    pub vm_hwm_bytes: u64,
}

pub fn sample() -> MemorySample {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    MemorySample {
        vm_rss_bytes: field_bytes(&status, "VmRSS:"),
        vm_hwm_bytes: field_bytes(&status, "VmHWM:"),
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
    fn own_process_is_resident() {
        let m = sample();
        assert!(m.vm_rss_bytes > 0 && m.vm_hwm_bytes >= m.vm_rss_bytes);
    }
}
