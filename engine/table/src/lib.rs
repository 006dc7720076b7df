//! MantisDB immutable sorted segment files and the per-shard block cache.
//!
//! A flushed memtable (or a compaction's merge) becomes a segment: data blocks of sorted
//! entries, each compressed and CRC-guarded, an index of the blocks, an xor filter for point
//! lookups, a properties block and a fixed footer (`docs/formats.md, "Segment files"` has the bytes).
//! [`SegmentWriter`] streams entries into a new file with bounded memory; [`Segment`] opens
//! one, verifying everything it reads, and serves `get`, range cursors and `verify`;
//! [`BlockCache`] keeps decoded blocks of one shard, bounded in bytes, under LRU or LFU.
//!
//! All I/O goes through `mantis_storage`'s `Storage`/`File` traits, so the same code runs on
//! O_DIRECT files and on the simulated faulty disk.

mod block;
mod bytes;
mod cache;
mod codec;
mod entry;
mod error;
mod filter;
mod footer;
mod frame;
mod index;
mod iter;
mod output;
mod props;
mod reader;
mod writer;

pub use block::Block;
pub use cache::{BlockCache, BlockKey, CachePolicy, CacheStats};
pub use codec::{zstd_level_range, Codec};
pub use entry::{Entry, EntryKind, KEY_MAX_BYTES, VALUE_MAX_BYTES};
pub use error::{Result, TableError};
pub use filter::key_hash64;
pub use footer::FOOTER_BYTES;
pub use index::{BlockHandle, IndexEntry};
pub use iter::SegmentIter;
pub use mantis_integrity::Algorithm as ChecksumAlgorithm;
pub use props::{CodecStats, SegmentProperties};
pub use reader::{Segment, VerifyReport};
pub use writer::{
    KeyspaceCodec, SegmentMeta, SegmentWriter, WriterOptions, BLOCK_SIZE_TARGET_DEFAULT_BYTES,
    BLOCK_SIZE_TARGET_MAX_BYTES, KEYSPACE_CODECS_MAX, WRITE_BUFFER_DEFAULT_BYTES,
    WRITE_BUFFER_MAX_BYTES,
};
