//! Counters of one shard's WAL, for metrics and `mantisctl status`.

/// A snapshot of the WAL's counters (monotonic unless said otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalStats {
    pub records_appended: u64,
    pub payload_bytes_appended: u64,
    /// Chunk bytes written to segments, headers and padding included.
    pub bytes_written: u64,
    /// Group commits that succeeded (one chunk, one fdatasync each).
    pub commits: u64,
    pub syncs: u64,
    pub sync_failures: u64,
    pub sync_latency_last_us: u64,
    pub sync_latency_max_us: u64,
    pub sync_latency_total_us: u64,
    /// Appends that failed (any cause).
    pub appends_failed: u64,
    pub disk_full_failures: u64,
    pub segments_rolled: u64,
    pub segments_prepared: u64,
    pub segments_recycled: u64,
    pub segments_removed: u64,
    pub segment_prepare_failures: u64,
    /// Torn tails truncated at open (0 or 1 per open), and their bytes.
    pub torn_tails_truncated: u64,
    pub torn_tail_bytes: u64,
    // Gauges.
    pub current_segment_first_lsn: u64,
    pub current_segment_offset_bytes: u64,
    pub live_segments: usize,
    pub spare_segments: usize,
    pub last_durable_lsn: u64,
    pub flushed_lsn: u64,
    pub pending_bytes: usize,
    pub poisoned: bool,
}
