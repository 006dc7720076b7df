//! MantisDB's columnar model, as pure functions over memory: a table's rows are cut into
//! chunks of at most [`CHUNK_ROWS_MAX`] rows, and each column of a chunk is stored as one
//! self-checking blob (`chunk`): the values encoded with the smallest of the encodings that
//! fit the chunk (`encoding`: plain, dictionary, run-length, delta, bit-packing), then
//! LZ4-compressed when that helps, then a CRC32 verified on every read. Per-chunk min/max and
//! null counts (`stats`) let scans skip chunks. `kernels` run filters (selection vectors),
//! projection and hash aggregation over decoded columns, producing partial states that merge
//! across chunks and shards. Where the bytes live (KV values per shard) is the SQL layer's
//! business; formats are described in docs/sql.md.

pub mod bitpack;
pub mod chunk;
pub mod column;
pub mod encoding;
pub mod error;
pub mod groups;
pub mod kernels;
mod reader;
pub mod stats;
pub mod vector;

pub use chunk::{decode_column, decode_vector, encode_column, ChunkInfo, Codec};
pub use column::{Column, PhysType, Scalar, Values};
pub use encoding::Encoding;
pub use error::{ColumnarError, Result};
pub use kernels::{AggKind, AggSpec, AggState, CmpOp, GroupedAgg};
pub use stats::{ChunkMeta, ColumnStats};
pub use vector::{filter_vector, DictColumn, Vector};

/// Rows in one chunk, at most: big enough that per-chunk overheads (a KV value per column,
/// a header, a checksum) vanish, small enough that one decoded column stays in cache-sized
/// memory (64 Ki × 8 bytes = 512 KiB).
pub const CHUNK_ROWS_MAX: usize = 65_536;
