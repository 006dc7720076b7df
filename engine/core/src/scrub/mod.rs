//! Integrity checking of a shard's files: the offline verifier behind `mantisctl verify`
//! (`offline`, over a stopped data directory) and the background scrubber (`scrubber`, a
//! rate-limited walk of every live segment and the WAL inside a running shard).
//!
//! Both report [`Finding`]s: a *problem* is damage (or a file the data needs is missing); a
//! *note* is something a crash leaves behind and startup cleans up (a torn WAL tail, a segment
//! file no manifest lists).

mod manifest_check;
mod offline;
mod rate;
pub(crate) mod scrubber;

use std::path::PathBuf;

pub use offline::{verify_data_dir, verify_shard_dir, DataDirReport};
pub use rate::RateLimiter;
pub use scrubber::{ScrubConfig, ScrubStats, SCRUB_RATE_DEFAULT_BYTES_PER_SEC};

/// Which structure a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    Layout,
    Manifest,
    Segment,
    Wal,
}

impl Site {
    pub const COUNT: usize = 4;
    /// In [`Site::index`] order.
    pub const ALL: [Site; Site::COUNT] = [Site::Layout, Site::Manifest, Site::Segment, Site::Wal];

    pub fn index(self) -> usize {
        match self {
            Site::Layout => 0,
            Site::Manifest => 1,
            Site::Segment => 2,
            Site::Wal => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Site::Layout => "layout",
            Site::Manifest => "manifest",
            Site::Segment => "segment",
            Site::Wal => "wal",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Damage: exits `mantisctl verify` non-zero.
    Problem,
    /// Normal after a crash; startup deals with it.
    Note,
}

/// One thing the verifier or scrubber found, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub shard: usize,
    pub site: Site,
    pub severity: Severity,
    pub file: PathBuf,
    pub offset: u64,
    pub detail: String,
}

impl Finding {
    pub fn is_problem(&self) -> bool {
        self.severity == Severity::Problem
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.severity {
            Severity::Problem => "PROBLEM",
            Severity::Note => "note",
        };
        write!(
            f,
            "{kind}: shard {} {} {} offset {}: {}",
            self.shard,
            self.site.as_str(),
            self.file.display(),
            self.offset,
            self.detail
        )
    }
}

/// A corruption seen on a read or by the scrubber: logged, counted, kept for health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptionEvent {
    pub shard: usize,
    pub site: Site,
    pub file: PathBuf,
    pub offset: u64,
    pub expected_crc: Option<u32>,
    pub found_crc: Option<u32>,
    pub detail: String,
    pub at_unix_ms: u64,
}

impl CorruptionEvent {
    pub fn from_table(shard: usize, e: &mantis_table::TableError) -> Self {
        let (file, offset, expected_crc, found_crc) = match e {
            mantis_table::TableError::ChecksumMismatch {
                file,
                offset,
                expected,
                found,
            } => (file.clone(), *offset, Some(*expected), Some(*found)),
            // The digests are in the error's text, which becomes the event's detail.
            mantis_table::TableError::Corrupt { file, offset, .. }
            | mantis_table::TableError::DigestMismatch { file, offset, .. } => {
                (file.clone(), *offset, None, None)
            }
            _ => (PathBuf::new(), 0, None, None),
        };
        CorruptionEvent {
            shard,
            site: Site::Segment,
            file,
            offset,
            expected_crc,
            found_crc,
            detail: e.to_string(),
            at_unix_ms: crate::event::now_ms(),
        }
    }
}
