//! Writing a COPY's checked rows, all or nothing, through INSERT's paths. A table with a
//! primary key or a unique index goes row by row through INSERT's `add_row` (X lock on the
//! key, conflict checks against the engine and the earlier rows). A table without either
//! gets fresh hidden row ids that no one else can hold, so its rows skip the per-row locks
//! and checks (one IX on the table instead, which a serializable scan's S excludes) and go
//! straight to one batch: chunks for a big columnar load, row puts otherwise.

use std::rc::Rc;

use mantis_engine::BatchOp;
use mantis_lock::LockMode;

use crate::catalog::TableDef;
use crate::columnar::bulk::{self, BULK_ROWS_MIN};
use crate::dml::{index_key, new_row_id, pk_key, Pending};
use crate::error::{Result, SqlError};
use crate::exec::Row;
use crate::keys;
use crate::rowcodec::encode_row;
use crate::store::Writes;
use crate::txlock::TxnLocks;
use crate::types::Value;
use crate::SqlEngine;

/// Rows handled between two `yield_if_needed` calls.
const YIELD_ROWS: usize = 4096;

pub(crate) async fn write_rows(
    engine: &SqlEngine,
    locks: &TxnLocks,
    t: &Rc<TableDef>,
    rows: Vec<Row>,
) -> Result<u64> {
    let n = rows.len() as u64;
    if rows.is_empty() {
        return Ok(0);
    }
    if t.has_pk() || t.indexes.iter().any(|ix| ix.unique) {
        let writes = checked(engine, locks, t, rows).await?;
        return finish(engine, t, writes, n).await;
    }
    locks.lock_table(t.id, LockMode::IX).await?;
    let mut keyed = Vec::with_capacity(rows.len());
    for (i, row) in rows.into_iter().enumerate() {
        keyed.push((keys::row_key(t.id, &[Value::Int64(new_row_id())]), row));
        if i % YIELD_ROWS == 0 {
            glommio::yield_if_needed().await;
        }
    }
    if t.is_columnar() {
        if keyed.len() >= BULK_ROWS_MIN {
            match bulk::write_rows(engine, t, keyed).await? {
                None => return Ok(n),
                Some(back) => keyed = back,
            }
        }
        let mut w = Writes::default();
        for (k, row) in keyed {
            w.put(k, encode_row(&row));
        }
        return finish(engine, t, w, n).await;
    }
    let mut ops = Vec::with_capacity(keyed.len() * (1 + t.indexes.len()));
    for (i, (key, row)) in keyed.into_iter().enumerate() {
        for ix in &t.indexes {
            ops.push(put(index_key(ix, &row, &key).0, key.clone()));
        }
        ops.push(put(key, encode_row(&row)));
        if i % YIELD_ROWS == 0 {
            glommio::yield_if_needed().await;
        }
    }
    write(engine, ops).await?;
    Ok(n)
}

fn put(key: Vec<u8>, value: Vec<u8>) -> BatchOp {
    BatchOp::Put {
        key,
        value,
        expires_at_ms: None,
    }
}

async fn write(engine: &SqlEngine, ops: Vec<BatchOp>) -> Result<()> {
    engine
        .handle()
        .write_batch(ops)
        .await
        .map_err(|e| SqlError::storage("copy", e))
}

/// INSERT's row-by-row path: X on each key, then the key and unique-index checks.
async fn checked(
    engine: &SqlEngine,
    locks: &TxnLocks,
    t: &TableDef,
    rows: Vec<Row>,
) -> Result<Writes> {
    let mut w = Pending {
        handle: engine.handle(),
        tx: None,
        stmt: Writes::default(),
        locks,
    };
    for (i, row) in rows.into_iter().enumerate() {
        let key = if t.has_pk() {
            pk_key(t, &row)
        } else {
            keys::row_key(t.id, &[Value::Int64(new_row_id())])
        };
        locks.lock_row(t.id, &key, LockMode::X).await?;
        w.add_row(t, key, &row, false).await.map_err(|e| {
            let place = format!("COPY {}, row {}", t.name, i + 1);
            let detail = e
                .detail
                .as_deref()
                .map_or(place.clone(), |d| format!("{d} ({place})"));
            SqlError {
                detail: Some(detail),
                ..e
            }
        })?;
        crate::store::check_tx_size(w.stmt.len())?;
    }
    Ok(w.stmt)
}

/// Writes checked rows as INSERT does: chunks for a big columnar load, else one batch.
async fn finish(engine: &SqlEngine, t: &TableDef, writes: Writes, n: u64) -> Result<u64> {
    let writes = if t.is_columnar() {
        match bulk::write_chunks(engine, t, writes).await? {
            None => return Ok(n),
            Some(back) => back,
        }
    } else {
        writes
    };
    write(engine, writes.into_batch()).await?;
    if t.is_columnar() {
        crate::columnar::note_inserts(engine, t, n).await?;
    }
    Ok(n)
}
