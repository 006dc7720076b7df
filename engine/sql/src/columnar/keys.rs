//! Where chunks live. Every chunk belongs to one shard and its keys must hash to that shard
//! (so the chunk and the delete of the rows it absorbed form one atomic per-shard batch):
//! each key ends in a 4-byte *salt* probed until the key lands on the shard.
//!
//! ```text
//! header: FE 'S' 'k' table u32 | 'h' | shard u16 | chunk u64 | salt u32  -> header value
//! column: FE 'S' 'k' table u32 | 'c' | shard u16 | chunk u64 | col u16 | salt u32 -> chunk blob
//! header value: ncols+1 u32 | salt u32 per column (the row-id column last) | crc32 of those
//!               | ChunkMeta (mantis_columnar::stats, its own crc)
//! ```

use mantis_columnar::ChunkMeta;
use mantis_engine::EngineHandle;

use crate::error::{Result, SqlError};
use crate::keys::SQL_PREFIX;

pub const TAG_CHUNK: u8 = b'k';
/// Salts tried before giving up on placing a key on a shard (1/shards succeed per try).
const SALT_PROBES_MAX: u32 = 1 << 20;

pub fn table_prefix(table_id: u32) -> Vec<u8> {
    let mut k = SQL_PREFIX.to_vec();
    k.push(TAG_CHUNK);
    k.extend_from_slice(&table_id.to_be_bytes());
    k
}

/// Prefix of the headers of `table` on `shard` (or on every shard when `None`).
pub fn header_prefix(table_id: u32, shard: Option<u16>) -> Vec<u8> {
    let mut k = table_prefix(table_id);
    k.push(b'h');
    if let Some(s) = shard {
        k.extend_from_slice(&s.to_be_bytes());
    }
    k
}

fn salted(handle: &EngineHandle, base: Vec<u8>, shard: usize) -> Result<(Vec<u8>, u32)> {
    for salt in 0..SALT_PROBES_MAX {
        let mut k = base.clone();
        k.extend_from_slice(&salt.to_be_bytes());
        if handle.shard_for(&k) == shard {
            return Ok((k, salt));
        }
    }
    Err(SqlError::internal(format!(
        "no chunk key salt places a key on shard {shard}"
    )))
}

pub fn header_key(handle: &EngineHandle, table_id: u32, shard: u16, chunk: u64) -> Result<Vec<u8>> {
    let mut base = header_prefix(table_id, Some(shard));
    base.extend_from_slice(&chunk.to_be_bytes());
    Ok(salted(handle, base, shard as usize)?.0)
}

fn column_base(table_id: u32, shard: u16, chunk: u64, col: u16) -> Vec<u8> {
    let mut k = table_prefix(table_id);
    k.push(b'c');
    k.extend_from_slice(&shard.to_be_bytes());
    k.extend_from_slice(&chunk.to_be_bytes());
    k.extend_from_slice(&col.to_be_bytes());
    k
}

/// A new column key on `shard`, and its salt (kept in the header).
pub fn new_column_key(
    handle: &EngineHandle,
    table_id: u32,
    shard: u16,
    chunk: u64,
    col: u16,
) -> Result<(Vec<u8>, u32)> {
    salted(
        handle,
        column_base(table_id, shard, chunk, col),
        shard as usize,
    )
}

pub fn column_key(table_id: u32, shard: u16, chunk: u64, col: u16, salt: u32) -> Vec<u8> {
    let mut k = column_base(table_id, shard, chunk, col);
    k.extend_from_slice(&salt.to_be_bytes());
    k
}

/// (shard, chunk id) of a header key.
pub fn parse_header_key(table_id: u32, key: &[u8]) -> Result<(u16, u64)> {
    let p = header_prefix(table_id, None).len();
    let bad = || SqlError::internal(format!("malformed chunk header key {key:02x?}"));
    let rest = key
        .get(p..)
        .filter(|r| r.len() == 2 + 8 + 4)
        .ok_or_else(bad)?;
    let shard = u16::from_be_bytes([rest[0], rest[1]]);
    let mut id = [0u8; 8];
    id.copy_from_slice(&rest[2..10]);
    Ok((shard, u64::from_be_bytes(id)))
}

/// A decoded header value: the column salts and the chunk statistics.
pub struct Header {
    pub salts: Vec<u32>,
    pub meta: ChunkMeta,
}

pub fn encode_header(salts: &[u32], meta: &ChunkMeta) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + salts.len() * 4);
    out.extend_from_slice(&(salts.len() as u32).to_le_bytes());
    for s in salts {
        out.extend_from_slice(&s.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&meta.encode());
    out
}

pub fn decode_header(key: &[u8], v: &[u8]) -> Result<Header> {
    let bad = |what: &str| {
        SqlError::new(
            crate::error::state::DATA_CORRUPTED,
            format!("columnar chunk header {key:02x?}: {what}"),
        )
    };
    let n = v
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .filter(|n| *n <= mantis_columnar::stats::COLUMNS_MAX + 1)
        .ok_or_else(|| bad("salt count"))?;
    let salts_end = 4 + n * 4;
    let body = v.get(..salts_end).ok_or_else(|| bad("short"))?;
    let crc = v
        .get(salts_end..salts_end + 4)
        .ok_or_else(|| bad("short"))?;
    let found = crc32fast::hash(body);
    let expected = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if found != expected {
        return Err(bad(&format!(
            "salt checksum expected {expected:#010x} found {found:#010x}"
        )));
    }
    let salts = body[4..]
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let meta = ChunkMeta::decode(&v[salts_end + 4..]).map_err(|e| bad(&e.to_string()))?;
    Ok(Header { salts, meta })
}
