//! WAL configuration and its limits.

use mantis_storage::BLOCK_SIZE;

use crate::error::WalError;

pub const SEGMENT_SIZE_DEFAULT_BYTES: u64 = 64 << 20;
/// Smaller segments would roll on nearly every commit.
pub const SEGMENT_SIZE_MIN_BYTES: u64 = 4 * BLOCK_SIZE as u64;
pub const PENDING_DEFAULT_BYTES: usize = 4 << 20;
/// Keeps a chunk's payload length well inside its u32 field.
pub const PENDING_LIMIT_BYTES: usize = 1 << 30;
pub const SPARE_SEGMENTS_DEFAULT: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    /// Size of each segment file (a multiple of 4 KiB). A record too big for one gets a
    /// segment of its own, sized to fit.
    pub segment_size_bytes: u64,
    /// Bytes of records waiting for the next group commit; appenders beyond it wait. The
    /// commit in flight holds up to as much again, so WAL memory stays under twice this
    /// (plus one record larger than the limit, which is admitted alone).
    pub pending_bytes_max: usize,
    /// Recycled segments kept as spares; others are removed. One next segment is always
    /// prepared ahead, whatever this says.
    pub spare_segments_max: usize,
    /// At open, cut the log at damage in the middle (keeping a copy) instead of refusing.
    pub repair: bool,
    /// Checksum of the records (and chunk payload check value) written from now on; each
    /// chunk records its own, so a log written under another choice still reads.
    pub checksum: mantis_integrity::Algorithm,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_size_bytes: SEGMENT_SIZE_DEFAULT_BYTES,
            pending_bytes_max: PENDING_DEFAULT_BYTES,
            spare_segments_max: SPARE_SEGMENTS_DEFAULT,
            repair: false,
            checksum: mantis_integrity::Algorithm::Crc32,
        }
    }
}

impl WalConfig {
    pub fn validate(&self) -> Result<(), WalError> {
        let bad = |reason: String| Err(WalError::Config { reason });
        if !self.segment_size_bytes.is_multiple_of(BLOCK_SIZE as u64)
            || self.segment_size_bytes < SEGMENT_SIZE_MIN_BYTES
        {
            return bad(format!(
                "segment_size_bytes {} must be a multiple of {BLOCK_SIZE} and at least {SEGMENT_SIZE_MIN_BYTES}",
                self.segment_size_bytes
            ));
        }
        if self.pending_bytes_max == 0 || self.pending_bytes_max > PENDING_LIMIT_BYTES {
            return bad(format!(
                "pending_bytes_max {} must be in 1..={PENDING_LIMIT_BYTES}",
                self.pending_bytes_max
            ));
        }
        Ok(())
    }
}
