//! Every on-disk magic number and format version, in one place. `docs/formats.md` describes
//! each format byte by byte; change a layout here and there together, and bump its version.

/// `DATA_DIR/MANTIS`: the layout file that pins the shard count of a data directory.
pub const LAYOUT_FILE_NAME: &str = "MANTIS";
pub const LAYOUT_VERSION: u32 = 1;

/// WAL segment files: `shard-<i>/wal/<first_lsn:020>.wal`.
pub const WAL_DIR: &str = "wal";
pub const WAL_FILE_SUFFIX: &str = ".wal";
/// Magic at the start of every WAL chunk header ("MWAL").
pub const WAL_CHUNK_MAGIC: u32 = 0x4d57_414c;
/// 2: chunk header byte 6 names the checksum algorithm of the chunk's records and payload
///    check value (1 CRC32, 2 MD5, 3 SHA-256; record checksum fields 4, 16 or 32 bytes);
///    version 1 chunks (byte 6 zero, all CRC32) still read.
pub const WAL_FORMAT_VERSION: u16 = 2;
/// The oldest WAL chunk format this build reads.
pub const WAL_FORMAT_VERSION_MIN: u16 = 1;

/// Segment (sorted table) files: `shard-<i>/seg/<id:016>.seg`.
pub const SEGMENT_DIR: &str = "seg";
pub const SEGMENT_FILE_SUFFIX: &str = ".seg";
/// Magic at the end of every segment footer ("MSEGMENT").
pub const SEGMENT_MAGIC: u64 = 0x4d53_4547_4d45_4e54;
/// 2: the point-lookup filter is a binary fuse filter (was Xor16 in 1).
/// 3: the footer names the block checksum algorithm (byte 72: 1 CRC32, 2 MD5, 3 SHA-256) and
///    block trailers carry that algorithm's checksum; version 2 files (all CRC32) still read.
pub const SEGMENT_FORMAT_VERSION: u32 = 3;
/// The oldest segment format this build reads.
pub const SEGMENT_FORMAT_VERSION_MIN: u32 = 2;

/// Manifest files: `shard-<i>/MANIFEST-<generation:010>`, and `CURRENT` naming the live one.
pub const MANIFEST_PREFIX: &str = "MANIFEST-";
pub const MANIFEST_CURRENT: &str = "CURRENT";
/// Magic of every manifest record ("MMAN").
pub const MANIFEST_RECORD_MAGIC: u32 = 0x4d4d_414e;
pub const MANIFEST_FORMAT_VERSION: u16 = 1;
