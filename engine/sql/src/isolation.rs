//! Transaction isolation levels and the read locks that make SERIALIZABLE real (issue 9).
//!
//! Serializable is strict two-phase locking over the lock hierarchy database → table → row:
//! every statement locks what it is about to read before reading it, and keeps the locks until
//! COMMIT / ROLLBACK (an autocommit statement until its end). A point lookup on the full
//! primary key takes IS on the table and S on the row's key (present or absent, so that an
//! INSERT of that key waits); any other scan takes S on the whole table on every shard, which
//! excludes the writers' IX there: no phantoms. The target table of an UPDATE/DELETE is locked
//! SIX (scan) or X (point) at once, so two such statements queue instead of both taking S and
//! deadlocking on the upgrade.

use std::collections::BTreeSet;

use mantis_lock::LockMode;
use sqlparser::ast::{TransactionIsolationLevel, TransactionMode};

use crate::access::{access_nodes, pk_get_row_key};
use crate::error::Result;
use crate::exec::Ctx;
use crate::plan::Plan;
use crate::txlock::TxnLocks;

/// The isolation levels offered. PostgreSQL may run a transaction at a stronger level than
/// asked: REPEATABLE READ runs as SERIALIZABLE, READ UNCOMMITTED as READ COMMITTED.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Writes lock rows X until the end; reads take no locks and see committed data.
    ReadCommitted,
    /// Strict 2PL on reads too (see the module comment).
    #[default]
    Serializable,
}

impl Isolation {
    pub fn from_level(level: &TransactionIsolationLevel) -> Isolation {
        match level {
            TransactionIsolationLevel::ReadUncommitted
            | TransactionIsolationLevel::ReadCommitted => Isolation::ReadCommitted,
            TransactionIsolationLevel::RepeatableRead
            | TransactionIsolationLevel::Serializable
            | TransactionIsolationLevel::Snapshot => Isolation::Serializable,
        }
    }

    /// The level named in `modes` (the last one wins, as in PostgreSQL), if any.
    pub fn from_modes(modes: &[TransactionMode]) -> Option<Isolation> {
        modes.iter().rev().find_map(|m| match m {
            TransactionMode::IsolationLevel(l) => Some(Isolation::from_level(l)),
            TransactionMode::AccessMode(_) => None,
        })
    }

    /// The level named by a `SET default_transaction_isolation = '...'` value.
    pub fn from_name(name: &str) -> Option<Isolation> {
        match name.trim().to_lowercase().as_str() {
            "read uncommitted" | "read committed" => Some(Isolation::ReadCommitted),
            "repeatable read" | "serializable" => Some(Isolation::Serializable),
            _ => None,
        }
    }

    /// The name `SHOW transaction_isolation` prints (the level granted, not the one asked).
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read committed",
            Isolation::Serializable => "serializable",
        }
    }
}

/// Read locks a plan needs before it reads.
#[derive(Default)]
struct ReadSet {
    /// (table id, lock mode) for tables read by a scan.
    tables: BTreeSet<(u32, LockMode)>,
    /// (table id, row key, lock mode) for point lookups on the full primary key.
    rows: BTreeSet<(u32, Vec<u8>, LockMode)>,
}

/// Takes, before `plan` reads anything, the locks a serializable transaction needs for its
/// reads. `write_table` is the target of an UPDATE/DELETE whose access plan this is: its rows
/// are locked X (scans: SIX on the table) instead of S.
pub async fn lock_reads(
    plan: &Plan,
    ctx: &Ctx,
    locks: &TxnLocks,
    write_table: Option<u32>,
) -> Result<()> {
    let set = read_set(plan, ctx, write_table)?;
    // Tables first, then rows in key order: a fixed order between two statements of the
    // same shape, so they queue rather than deadlock.
    for (table, mode) in &set.tables {
        locks.lock_table(*table, *mode).await?;
    }
    for (table, key, mode) in &set.rows {
        let covered = set
            .tables
            .iter()
            .any(|(t, m)| t == table && m.covers(*mode));
        if !covered {
            locks.lock_row(*table, key, *mode).await?;
        }
    }
    Ok(())
}

fn read_set(plan: &Plan, ctx: &Ctx, write_table: Option<u32>) -> Result<ReadSet> {
    let mut nodes = Vec::new();
    access_nodes(plan, &mut nodes);
    let mut set = ReadSet::default();
    for node in nodes {
        match node {
            // The point target of an UPDATE/DELETE (the access plan's root itself, not a
            // subquery's lookup in the same table): `dml::locked_targets` locks it X before it
            // reads it, so locking it here too would only cost a second message to its shard.
            Plan::PkGet { table, .. }
                if std::ptr::eq(node, plan) && write_table == Some(table.id) => {}
            Plan::PkGet { table, key, .. } => {
                let mode = if write_table == Some(table.id) {
                    LockMode::X
                } else {
                    LockMode::S
                };
                // A NULL key matches no row, and no row can ever have one: nothing to lock.
                if let Some(row_key) = pk_get_row_key(table, key, ctx)? {
                    set.rows.insert((table.id, row_key, mode));
                }
            }
            // Collections are not SQL tables: their writes take no SQL locks.
            Plan::Scan { table, .. } if table.is_document() => {}
            Plan::Scan { table, .. } | Plan::IndexScan { table, .. } => {
                let mode = if write_table == Some(table.id) {
                    LockMode::SIX
                } else {
                    LockMode::S
                };
                set.tables.insert((table.id, mode));
            }
            _ => {}
        }
    }
    // One table lock per table: the strongest asked.
    let mut strongest: std::collections::BTreeMap<u32, LockMode> = Default::default();
    for (t, m) in &set.tables {
        let e = strongest.entry(*t).or_insert(*m);
        *e = e.supremum(*m);
    }
    set.tables = strongest.into_iter().collect();
    Ok(set)
}
