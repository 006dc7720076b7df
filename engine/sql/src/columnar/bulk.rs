//! Bulk inserts straight into chunks: an autocommit `INSERT` of at least `BULK_ROWS_MIN`
//! rows into a columnar table skips the row-wise delta. Its rows are split by the shard
//! that owns their row key (where the delta would have put them), cut into chunks of up to
//! `CHUNK_ROWS_MAX` rows, and every shard's chunks are written in one `write_batch`, which
//! the engine commits atomically across shards (two-phase commit): the statement is all or
//! nothing, as through the delta. The write never reaches the delta, so no merge has to
//! rewrite it later. A merge of the same table running at the same time would pick the same
//! chunk ids, so the bulk path takes the merge guard and falls back to the delta when it is
//! held.

use mantis_columnar::CHUNK_ROWS_MAX;

use super::merge::{chunk_batch, next_chunk_id, MergeGuard};
use crate::catalog::TableDef;
use crate::error::{Result, SqlError};
use crate::exec::Row;
use crate::store::Writes;
use crate::SqlEngine;

/// Rows one INSERT must carry to go straight into chunks: smaller inserts would leave
/// many small chunks (each costs a header and one value per column to read), so they go
/// through the delta and are merged into full chunks.
pub const BULK_ROWS_MIN: usize = 8192;

/// Writes the statement's rows `writes` of columnar table `t` as chunks; gives `writes`
/// back untouched when the bulk path does not apply (too few rows, anything but row puts
/// in it, a merge of the table running).
pub async fn write_chunks(
    engine: &SqlEngine,
    t: &TableDef,
    writes: Writes,
) -> Result<Option<Writes>> {
    assert!(t.is_columnar());
    let prefix = crate::keys::row_prefix(t.id);
    let only_row_puts = writes
        .map
        .iter()
        .all(|(k, v)| k.starts_with(&prefix) && v.is_some());
    if writes.map.len() < BULK_ROWS_MIN || !only_row_puts {
        return Ok(Some(writes));
    }
    let Some(guard) = MergeGuard::try_new(t.id)? else {
        return Ok(Some(writes));
    };
    let mut rows = Vec::with_capacity(writes.map.len());
    for (k, v) in writes.map {
        let Some(v) = v else {
            return Err(SqlError::internal("bulk insert: a delete among the rows"));
        };
        let row = crate::rowcodec::decode_row(&v, t.columns.len())?;
        rows.push((k, row));
    }
    write_keyed(engine, t, rows, guard).await?;
    Ok(None)
}

/// Issue 11 (COPY): writes `rows` (keys new to the table, in key order) of columnar table
/// `t` as chunks in one atomic batch. Returns them untouched when a merge of the table
/// holds the guard, so the caller writes them through the delta instead.
pub async fn write_rows(
    engine: &SqlEngine,
    t: &TableDef,
    rows: Vec<(Vec<u8>, Row)>,
) -> Result<Option<Vec<(Vec<u8>, Row)>>> {
    assert!(t.is_columnar());
    let Some(guard) = MergeGuard::try_new(t.id)? else {
        return Ok(Some(rows));
    };
    write_keyed(engine, t, rows, guard).await?;
    Ok(None)
}

/// Splits key-ordered `rows` by owning shard and writes each shard's chunks, all in one
/// `write_batch`, while `_guard` keeps merges of the table out.
async fn write_keyed(
    engine: &SqlEngine,
    t: &TableDef,
    rows: Vec<(Vec<u8>, Row)>,
    _guard: MergeGuard,
) -> Result<()> {
    let handle = engine.handle();
    let mut per_shard: Vec<Vec<(Vec<u8>, Row)>> =
        (0..handle.shard_count()).map(|_| Vec::new()).collect();
    for (k, row) in rows {
        per_shard[handle.shard_for(&k)].push((k, row));
    }
    let mut ops = Vec::new();
    for (shard, rows) in per_shard.iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        // Chunks record their key range: rows must come in key order.
        assert!(
            rows.windows(2).all(|w| w[0].0 < w[1].0),
            "bulk rows in key order"
        );
        let shard = u16::try_from(shard).map_err(|_| SqlError::internal("shard id"))?;
        let mut chunk = next_chunk_id(handle, t, shard).await?;
        for part in rows.chunks(CHUNK_ROWS_MAX) {
            ops.extend(chunk_batch(handle, t, shard, chunk, part, false)?.0);
            chunk += 1;
            glommio::yield_if_needed().await;
        }
    }
    handle
        .write_batch(ops)
        .await
        .map_err(|e| SqlError::storage("columnar bulk insert", e))
}
