//! Columnar tables (issue 11): `CREATE TABLE ... WITH (storage = 'columnar')`.
//!
//! Inserts go through the WAL like any row: into a row-wise *delta* under the table's row
//! prefix, keyed by the hidden row id; an autocommit INSERT of many rows skips the delta
//! and writes chunks directly (`bulk`). A *merge* (`merge`; `VACUUM tbl`, or in the
//! background once `DELTA_ROWS_MERGE` rows were inserted through one SQL engine:
//! `background`) moves each shard's delta into column chunks stored as KV values on that
//! same shard (`keys`), writing the chunk and deleting the merged delta rows in one atomic
//! per-shard batch. Scans run on the shards that own the data (`onshard`): the delta
//! first, then the chunks (skipping those whose min/max exclude the filter), dropping chunk
//! rows whose row id is still in the delta (a merge that ran in between); `pushdown` runs
//! filter + GROUP BY + aggregates there in the `mantis_columnar` kernels, and only partial
//! states cross shards. UPDATE and DELETE are refused (0A000).

pub mod background;
pub mod bulk;
pub mod convert;
pub mod keys;
pub mod merge;
pub mod onshard;
pub mod pushdown;
pub mod scan;

use sqlparser::ast::{Expr, SqlOption, Value as AstValue};

use crate::catalog::{StorageKind, TableDef};
use crate::error::{Result, SqlError};

pub use merge::{merge_table, merge_table_with, MergeStats};
pub use scan::{last_scan, ScanCounters};

/// Rows inserted into one columnar table through one SQL engine after which it merges the
/// table's delta on its own.
pub const DELTA_ROWS_MERGE: u64 = 65_536;

/// The storage kind asked for in `WITH (...)`; other options are refused.
pub fn storage_option(options: &[SqlOption]) -> Result<StorageKind> {
    let mut kind = StorageKind::Row;
    for o in options {
        let SqlOption::KeyValue { key, value } = o else {
            return Err(SqlError::unsupported(format!("table option {o}")));
        };
        if !key.value.eq_ignore_ascii_case("storage") {
            return Err(SqlError::unsupported(format!("table option {}", key.value)));
        }
        let text = match value {
            Expr::Value(v) => match &v.value {
                AstValue::SingleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            Expr::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        };
        kind = match text.to_ascii_lowercase().as_str() {
            "columnar" | "column" => StorageKind::Columnar,
            "row" | "heap" => StorageKind::Row,
            other => {
                return Err(SqlError::new(
                    crate::error::state::INVALID_PARAMETER_VALUE,
                    format!("unknown storage \"{other}\" (expected 'row' or 'columnar')"),
                ))
            }
        };
    }
    Ok(kind)
}

/// UPDATE and DELETE are not built for columnar tables: refuse them up front (0A000).
pub fn refuse_change(t: &TableDef, what: &str) -> Result<()> {
    if t.is_columnar() {
        return Err(SqlError::unsupported(format!(
            "{what} on columnar table \"{}\" (columnar tables are append-only)",
            t.name
        )));
    }
    Ok(())
}

/// The table name of a `VACUUM name` statement (sqlparser 0.55 does not parse VACUUM).
pub fn vacuum_target(sql: &str) -> Option<String> {
    let s = sql.trim().trim_end_matches(';').trim();
    let mut words = s.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("vacuum") {
        return None;
    }
    let name = words.next()?;
    if words.next().is_some() {
        return None;
    }
    Some(name.trim_matches('"').to_lowercase())
}

thread_local!(static INSERTED: std::cell::RefCell<std::collections::HashMap<u32, u64>> =
    std::cell::RefCell::new(std::collections::HashMap::new()));

/// Counts rows committed into a columnar table's delta through this thread's engine and
/// starts a background merge of the delta once `DELTA_ROWS_MERGE` have accumulated
/// (`background`: the INSERT that crossed the threshold does not wait for it).
pub async fn note_inserts(engine: &crate::SqlEngine, t: &TableDef, rows: u64) -> Result<()> {
    let due = INSERTED.with(|m| {
        let mut m = m.borrow_mut();
        let n = m.entry(t.id).or_insert(0);
        *n += rows;
        if *n >= DELTA_ROWS_MERGE {
            *n = 0;
            true
        } else {
            false
        }
    });
    if due {
        background::spawn_merge(engine.handle(), t)?;
    }
    Ok(())
}
