//! The merge: moves a columnar table's delta rows into column chunks, shard by shard, one
//! chunk per step. A step writes the chunk's header and columns (all on the shard that owns
//! the delta rows) and deletes those rows in one `write_batch`, which is atomic on a shard:
//! after a crash either the rows are still in the delta or they are in the chunk, never both
//! and never neither. Merges of one table never overlap within the process (`MergeGuard`):
//! two overlapping merges would both copy the same delta rows into chunks.

use std::collections::BTreeSet;
use std::sync::Mutex;

use mantis_columnar::column::ColumnBuilder;
use mantis_columnar::{encode_column, ChunkMeta, Column, PhysType, Scalar, CHUNK_ROWS_MAX};
use mantis_engine::{BatchOp, EngineHandle};

use super::convert::{phys_of, to_scalar};
use super::keys;
use crate::catalog::TableDef;
use crate::error::{Result, SqlError};
use crate::exec::Row;
use crate::store::View;
use crate::SqlEngine;

/// What one merge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeStats {
    pub rows_merged: u64,
    pub chunks_written: u64,
    pub chunk_bytes: u64,
    /// True when another merge of the table was running and this one did nothing.
    pub skipped_busy: bool,
}

static MERGING: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

pub(super) struct MergeGuard(u32);

impl MergeGuard {
    pub(super) fn try_new(table_id: u32) -> Result<Option<MergeGuard>> {
        let mut set = MERGING
            .lock()
            .map_err(|_| SqlError::internal("columnar merge registry poisoned"))?;
        // Not `then_some(MergeGuard(..))`: that builds (and drops) a guard even when the
        // table is busy, and its `Drop` takes this lock again: a self-deadlock.
        if set.insert(table_id) {
            Ok(Some(MergeGuard(table_id)))
        } else {
            Ok(None)
        }
    }
}

impl Drop for MergeGuard {
    fn drop(&mut self) {
        if let Ok(mut set) = MERGING.lock() {
            set.remove(&self.0);
        }
    }
}

/// The hidden row id of a delta row key (`row_prefix ++ encode(Int64(id))`).
pub fn row_id_of_key(table_id: u32, key: &[u8]) -> Result<i64> {
    let p = crate::keys::row_prefix(table_id).len();
    let rest = key
        .get(p..)
        .filter(|r| r.len() == 17)
        .ok_or_else(|| SqlError::internal(format!("malformed columnar row key {key:02x?}")))?;
    let mut b = [0u8; 8];
    b.copy_from_slice(&rest[9..17]);
    Ok((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

/// Every delta row of `t`: (row key, row).
pub async fn delta_rows(t: &TableDef, view: &View<'_>) -> Result<Vec<(Vec<u8>, Row)>> {
    crate::access::scan_table(t, view).await
}

/// Merges the whole delta of `t` into chunks of up to `CHUNK_ROWS_MAX` rows.
pub async fn merge_table(engine: &SqlEngine, t: &TableDef) -> Result<MergeStats> {
    merge_table_with(engine, t, CHUNK_ROWS_MAX).await
}

/// Merges with chunks of up to `chunk_rows` rows (tests use small chunks to get many).
pub async fn merge_table_with(
    engine: &SqlEngine,
    t: &TableDef,
    chunk_rows: usize,
) -> Result<MergeStats> {
    merge_on(engine.handle(), t, chunk_rows).await
}

/// The merge itself, needing only the engine handle (it runs in the background too).
pub async fn merge_on(
    handle: &EngineHandle,
    t: &TableDef,
    chunk_rows: usize,
) -> Result<MergeStats> {
    assert!(chunk_rows > 0 && chunk_rows <= CHUNK_ROWS_MAX);
    let Some(_guard) = MergeGuard::try_new(t.id)? else {
        return Ok(MergeStats {
            skipped_busy: true,
            ..MergeStats::default()
        });
    };
    let view = View {
        handle,
        layers: [None, None],
    };
    let rows = delta_rows(t, &view).await?;
    let shards = handle.shard_count();
    let mut per_shard: Vec<Vec<(Vec<u8>, Row)>> = (0..shards).map(|_| Vec::new()).collect();
    for (k, r) in rows {
        per_shard[handle.shard_for(&k)].push((k, r));
    }
    let mut stats = MergeStats::default();
    for (shard, rows) in per_shard.into_iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        let shard = u16::try_from(shard).map_err(|_| SqlError::internal("shard id"))?;
        let mut next_chunk = next_chunk_id(handle, t, shard).await?;
        for part in rows.chunks(chunk_rows) {
            let (ops, bytes) = chunk_batch(handle, t, shard, next_chunk, part, true)?;
            handle
                .write_batch(ops)
                .await
                .map_err(|e| SqlError::storage("columnar merge", e))?;
            next_chunk += 1;
            stats.rows_merged += part.len() as u64;
            stats.chunks_written += 1;
            stats.chunk_bytes += bytes;
            glommio::yield_if_needed().await;
        }
    }
    Ok(stats)
}

pub(super) async fn next_chunk_id(handle: &EngineHandle, t: &TableDef, shard: u16) -> Result<u64> {
    let view = View {
        handle,
        layers: [None, None],
    };
    let prefix = keys::header_prefix(t.id, Some(shard));
    let end = crate::keys::prefix_end(&prefix);
    let mut next = 0;
    for (k, _) in view.scan(prefix, end).await? {
        let (_, id) = keys::parse_header_key(t.id, &k)?;
        next = next.max(id + 1);
    }
    Ok(next)
}

/// The columns of `rows` (table columns, then the row ids).
pub fn transpose(t: &TableDef, rows: &[(Vec<u8>, Row)]) -> Result<Vec<Column>> {
    let mut builders: Vec<ColumnBuilder> = t
        .columns
        .iter()
        .map(|c| ColumnBuilder::new(phys_of(&c.ty), rows.len()))
        .collect();
    let mut ids = ColumnBuilder::new(PhysType::Int, rows.len());
    for (k, r) in rows {
        for (b, v) in builders.iter_mut().zip(r) {
            b.push(&to_scalar(v))
                .map_err(|e| SqlError::internal(format!("columnar transpose: {e}")))?;
        }
        ids.push(&Scalar::Int(row_id_of_key(t.id, k)?))
            .map_err(|e| SqlError::internal(format!("columnar transpose: {e}")))?;
    }
    let mut cols: Vec<Column> = builders.into_iter().map(ColumnBuilder::finish).collect();
    cols.push(ids.finish());
    Ok(cols)
}

/// One merge step's batch: the chunk's columns and header, and (`delete_rows`) the deletes
/// of its delta rows.
pub(super) fn chunk_batch(
    handle: &EngineHandle,
    t: &TableDef,
    shard: u16,
    chunk: u64,
    rows: &[(Vec<u8>, Row)],
    delete_rows: bool,
) -> Result<(Vec<BatchOp>, u64)> {
    assert!(!rows.is_empty() && rows.len() <= CHUNK_ROWS_MAX);

    let cols = transpose(t, rows)?;
    let meta = ChunkMeta::of(&cols);
    let mut ops = Vec::with_capacity(cols.len() + 1 + rows.len());
    let mut salts = Vec::with_capacity(cols.len());
    let mut bytes = 0u64;
    for (i, c) in cols.iter().enumerate() {
        let col = u16::try_from(i).map_err(|_| SqlError::internal("too many columns"))?;
        let (key, salt) = keys::new_column_key(handle, t.id, shard, chunk, col)?;
        let (blob, _) = encode_column(c);
        bytes += blob.len() as u64;
        salts.push(salt);
        ops.push(BatchOp::Put {
            key,
            value: blob,
            expires_at_ms: None,
        });
    }
    ops.push(BatchOp::Put {
        key: keys::header_key(handle, t.id, shard, chunk)?,
        value: keys::encode_header(&salts, &meta),
        expires_at_ms: None,
    });
    for (k, _) in rows {
        debug_assert_eq!(handle.shard_for(k), shard as usize);
        if delete_rows {
            ops.push(BatchOp::Delete { key: k.clone() });
        }
    }
    Ok((ops, bytes))
}
