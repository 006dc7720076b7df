//! INSERT, UPDATE and DELETE: bound once into a `DmlPlan` (kept by prepared statements),
//! executed by computing and checking every new row first (types, NOT NULL, lengths,
//! uniqueness) into the statement's pending writes; nothing reaches the engine on error.

use std::rc::Rc;

use sqlparser::ast::{self, AssignmentTarget, FromTable, OnConflictAction, OnInsert, TableObject};

use crate::binder::{ident_name, object_name, Binder, Scope, ScopeCol};
use crate::catalog::{IndexDef, TableDef};
use crate::error::{state, Result, SqlError};
use crate::eval::{eval, truth};
use crate::exec::{exec, Ctx, Row};
use crate::keys;
use crate::plan::{BExpr, Plan};
use crate::rowcodec::encode_row;
use crate::store::{View, Writes};
use crate::types::{common_type, SqlType, Value};
use mantis_lock::LockMode;

pub enum Conflict {
    Nothing,
    /// SET expressions over [existing row..., excluded row...], and an optional WHERE.
    Update {
        sets: Vec<(usize, BExpr)>,
        filter: Option<BExpr>,
    },
}

pub struct InsertPlan {
    pub table: Rc<TableDef>,
    pub targets: Vec<usize>,
    pub source: Plan,
    pub defaults: Vec<Option<BExpr>>,
    pub on_conflict: Option<Conflict>,
}

pub struct UpdatePlan {
    pub table: Rc<TableDef>,
    pub sets: Vec<(usize, BExpr)>,
    pub access: Plan,
}

pub struct DeletePlan {
    pub table: Rc<TableDef>,
    pub access: Plan,
}

pub enum DmlPlan {
    Insert(InsertPlan),
    Update(UpdatePlan),
    Delete(DeletePlan),
}

/// Whether a value of type `src` may be stored in a column of type `dst` (42804 if not).
pub fn check_assignable(src: &SqlType, dst: &SqlType, col: &str) -> Result<()> {
    let ok = *src == SqlType::Unknown
        || src == dst
        || dst.is_text()
        || (src.is_numeric_family() && dst.is_numeric_family())
        || (!src.is_text() && common_type(src, dst).is_some());
    if ok {
        Ok(())
    } else {
        Err(SqlError::mismatch(format!(
            "column \"{col}\" is of type {} but expression is of type {}",
            dst.pg_name(),
            src.pg_name()
        ))
        .with_detail("You will need to rewrite or cast the expression."))
    }
}

fn table_scope(t: &TableDef, alias: &str) -> Scope {
    Scope::of_table(t, alias)
}

fn bind_sets(
    b: &mut Binder,
    t: &TableDef,
    scope: Scope,
    assignments: &[ast::Assignment],
) -> Result<Vec<(usize, BExpr)>> {
    let mut sets = Vec::new();
    for a in assignments {
        let AssignmentTarget::ColumnName(n) = &a.target else {
            return Err(SqlError::unsupported("tuple assignment"));
        };
        let cname = object_name(n);
        let c = t.column_index(&cname).ok_or_else(|| {
            SqlError::new(
                state::UNDEFINED_COLUMN,
                format!(
                    "column \"{cname}\" of relation \"{}\" does not exist",
                    t.name
                ),
            )
        })?;
        if sets.iter().any(|(x, _)| *x == c) {
            return Err(SqlError::syntax(format!(
                "multiple assignments to same column \"{cname}\""
            )));
        }
        let (e, ty) = b.bind_in_scope(scope.clone(), &a.value)?;
        check_assignable(&ty, &t.columns[c].ty, &cname)?;
        let e = b.coerce(e, &t.columns[c].ty)?;
        sets.push((c, crate::optimizer::fold(&e)));
    }
    Ok(sets)
}

pub fn bind_insert(b: &mut Binder, ins: &ast::Insert) -> Result<InsertPlan> {
    let TableObject::TableName(name) = &ins.table else {
        return Err(SqlError::unsupported("INSERT INTO TABLE FUNCTION"));
    };
    if ins.returning.is_some() {
        return Err(SqlError::unsupported("RETURNING"));
    }
    if ins.or.is_some() || ins.replace_into || ins.ignore {
        return Err(SqlError::unsupported("INSERT OR REPLACE / IGNORE"));
    }
    let t = b.table(name)?;
    let targets: Vec<usize> = if ins.columns.is_empty() {
        (0..t.columns.len()).collect()
    } else {
        let mut v = Vec::new();
        for c in &ins.columns {
            let n = ident_name(c);
            let i = t.column_index(&n).ok_or_else(|| {
                SqlError::new(
                    state::UNDEFINED_COLUMN,
                    format!("column \"{n}\" of relation \"{}\" does not exist", t.name),
                )
            })?;
            if v.contains(&i) {
                return Err(SqlError::new(
                    state::DUPLICATE_COLUMN,
                    format!("column \"{n}\" specified more than once"),
                ));
            }
            v.push(i);
        }
        v
    };
    let source = ins
        .source
        .as_ref()
        .ok_or_else(|| SqlError::unsupported("INSERT without a source"))?;
    let bq = b.query(source)?;
    if bq.types.len() > targets.len() {
        return Err(SqlError::syntax(
            "INSERT has more expressions than target columns",
        ));
    }
    if bq.types.len() < targets.len() && ins.columns.is_empty() && bq.types.len() < t.columns.len()
    {
        // INSERT INTO t VALUES (a) fills the leading columns only.
    } else if bq.types.len() < targets.len() {
        return Err(SqlError::syntax(
            "INSERT has more target columns than expressions",
        ));
    }
    let targets: Vec<usize> = targets.into_iter().take(bq.types.len()).collect();
    for (ty, c) in bq.types.iter().zip(&targets) {
        check_assignable(ty, &t.columns[*c].ty, &t.columns[*c].name)?;
    }
    let mut defaults = Vec::with_capacity(t.columns.len());
    for (i, c) in t.columns.iter().enumerate() {
        defaults.push(match (&c.default, targets.contains(&i)) {
            (Some(d), false) => Some(crate::ddl::default_expr(d, &c.ty)?),
            _ => None,
        });
    }
    let on_conflict = match &ins.on {
        None => None,
        Some(OnInsert::OnConflict(oc)) => Some(match &oc.action {
            OnConflictAction::DoNothing => Conflict::Nothing,
            OnConflictAction::DoUpdate(du) => {
                let mut scope = table_scope(&t, &t.name);
                scope.cols.extend(t.columns.iter().map(|c| ScopeCol {
                    table: Some("excluded".into()),
                    name: c.name.clone(),
                    ty: c.ty.clone(),
                }));
                let sets = bind_sets(b, &t, scope.clone(), &du.assignments)?;
                let filter = match &du.selection {
                    Some(s) => Some(b.bind_in_scope(scope, s)?.0),
                    None => None,
                };
                Conflict::Update { sets, filter }
            }
        }),
        Some(_) => return Err(SqlError::unsupported("ON DUPLICATE KEY")),
    };
    let plan = crate::optimizer::optimize(bq.plan);
    Ok(InsertPlan {
        table: t,
        targets,
        source: plan,
        defaults,
        on_conflict,
    })
}

/// The rows of `t` an UPDATE/DELETE touches: a scan, or a key lookup when WHERE pins the
/// primary key or an index.
fn bind_access(
    b: &mut Binder,
    t: &Rc<TableDef>,
    alias: &str,
    selection: &Option<ast::Expr>,
) -> Result<Plan> {
    let filter = match selection {
        Some(w) => {
            b.push_scope(table_scope(t, alias));
            let r = b.boolean_pub(w, "WHERE");
            b.pop_scope();
            Some(r?)
        }
        None => None,
    };
    let scan = Plan::Scan {
        table: t.clone(),
        filter,
    };
    // Without a primary key a row's key is its hidden id, which only a scan yields.
    Ok(if t.has_pk() {
        crate::optimizer::optimize(scan)
    } else {
        match scan {
            Plan::Scan { table, filter } => Plan::Scan {
                table,
                filter: filter.map(|f| crate::optimizer::fold(&f)),
            },
            other => other,
        }
    })
}

fn single_table(twj: &ast::TableWithJoins) -> Result<(ast::ObjectName, Option<String>)> {
    if !twj.joins.is_empty() {
        return Err(SqlError::unsupported("joins in UPDATE/DELETE"));
    }
    match &twj.relation {
        ast::TableFactor::Table { name, alias, .. } => {
            Ok((name.clone(), alias.as_ref().map(|a| ident_name(&a.name))))
        }
        _ => Err(SqlError::unsupported("UPDATE/DELETE of a non-table")),
    }
}

pub fn bind_update(b: &mut Binder, stmt: &ast::Statement) -> Result<UpdatePlan> {
    let ast::Statement::Update {
        table,
        assignments,
        from,
        selection,
        returning,
        ..
    } = stmt
    else {
        return Err(SqlError::internal("not an UPDATE"));
    };
    if from.is_some() || returning.is_some() {
        return Err(SqlError::unsupported("UPDATE ... FROM / RETURNING"));
    }
    let (name, alias) = single_table(table)?;
    let t = b.table(&name)?;
    crate::columnar::refuse_change(&t, "UPDATE")?;
    let alias = alias.unwrap_or_else(|| t.name.clone());
    let sets = bind_sets(b, &t, table_scope(&t, &alias), assignments)?;
    let access = bind_access(b, &t, &alias, selection)?;
    Ok(UpdatePlan {
        table: t,
        sets,
        access,
    })
}

pub fn bind_delete(b: &mut Binder, d: &ast::Delete) -> Result<DeletePlan> {
    if d.using.is_some() || d.returning.is_some() || d.limit.is_some() || !d.order_by.is_empty() {
        return Err(SqlError::unsupported(
            "DELETE ... USING / RETURNING / LIMIT",
        ));
    }
    let tables = match &d.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
    };
    let [twj] = tables.as_slice() else {
        return Err(SqlError::unsupported("DELETE from several tables"));
    };
    let (name, alias) = single_table(twj)?;
    let t = b.table(&name)?;
    crate::columnar::refuse_change(&t, "DELETE")?;
    let alias = alias.unwrap_or_else(|| t.name.clone());
    let access = bind_access(b, &t, &alias, &d.selection)?;
    Ok(DeletePlan { table: t, access })
}

// ---------------------------------------------------------------- execution

/// The key of an index entry for `row` (stored at `row_key`), and for a unique index
/// without NULLs the part that must be unique (which is then the whole key).
pub fn index_key(ix: &IndexDef, row: &[Value], row_key: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut k = keys::index_prefix(ix.id);
    let mut has_null = false;
    for c in &ix.columns {
        has_null |= row[*c].is_null();
        keys::encode_value(&mut k, &row[*c]);
    }
    if ix.unique && !has_null {
        let u = k.clone();
        (k, Some(u))
    } else {
        k.extend_from_slice(row_key);
        (k, None)
    }
}

pub(crate) fn pk_key(t: &TableDef, row: &[Value]) -> Vec<u8> {
    let pk: Vec<Value> = t.primary_key.iter().map(|c| row[*c].clone()).collect();
    keys::row_key(t.id, &pk)
}

/// A new hidden row id: microseconds since the epoch times 256 plus the shard, strictly
/// increasing per thread, so ids from different shards never collide and follow insert order.
pub(crate) fn new_row_id() -> i64 {
    use std::cell::Cell;
    thread_local!(static LAST: Cell<i64> = const { Cell::new(0) });
    let tag = mantis_engine::EngineHandle::current_shard().map_or(255, |s| (s % 255) as i64);
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    LAST.with(|l| {
        let next = (now_us * 256 + tag).max(l.get() + 256);
        l.set(next);
        next
    })
}

/// Tries at most this many hidden row ids for one that lands on the inserting shard.
const LOCAL_ROW_ID_TRIES_MAX: usize = 64;

/// The key of a new row without a primary key, chosen (among fresh hidden ids) to live on
/// `target` when one of the first tries does. WHY: the new key's X lock and its write then
/// need no message to another shard (pgbench's history INSERT runs inside the hold of the hot
/// branch row's lock), and a transaction whose other rows are on one shard stays a one-shard
/// commit. Any id is as good as another: nobody chooses or sees it, and ids stay increasing
/// per shard.
fn row_key_on(
    t: &TableDef,
    handle: &mantis_engine::EngineHandle,
    target: Option<usize>,
) -> Vec<u8> {
    let mut key = keys::row_key(t.id, &[Value::Int64(new_row_id())]);
    for _ in 1..LOCAL_ROW_ID_TRIES_MAX {
        if target.is_none() || target == Some(handle.shard_for(&key)) {
            break;
        }
        key = keys::row_key(t.id, &[Value::Int64(new_row_id())]);
    }
    key
}

/// Most keys of a transaction's buffered writes looked at to find the shards it writes on.
const WRITE_SET_KEYS_SCANNED_MAX: usize = 64;

/// Where a transaction's one-row INSERT puts a hidden-id row: the session's shard when the
/// transaction writes nothing elsewhere (or writes there too), else a shard it already writes
/// on — so a transaction whose rows all live on one other shard stays a one-shard commit
/// (pgbench's account, teller and branch rows share a shard a quarter of the time). None (any
/// shard) for a session off the shards that has written nothing yet.
fn hidden_row_shard(
    handle: &mantis_engine::EngineHandle,
    tx: Option<&Writes>,
    stmt: &Writes,
) -> Option<usize> {
    let here = mantis_engine::EngineHandle::current_shard();
    let mut elsewhere = None;
    let keys = tx.into_iter().chain([stmt]).flat_map(|w| w.map.keys());
    for key in keys.take(WRITE_SET_KEYS_SCANNED_MAX) {
        let shard = handle.shard_for(key);
        if Some(shard) == here {
            return here;
        }
        elsewhere.get_or_insert(shard);
    }
    elsewhere.or(here)
}

pub(crate) fn fit(t: &TableDef, c: usize, v: Value) -> Result<Value> {
    let col = &t.columns[c];
    crate::cast::cast(v, &col.ty, false).map_err(|e| {
        if e.sqlstate == "42846" {
            SqlError::mismatch(format!(
                "column \"{}\" is of type {}",
                col.name,
                col.ty.pg_name()
            ))
        } else {
            e
        }
    })
}

pub(crate) fn check_not_null(t: &TableDef, row: &[Value]) -> Result<()> {
    for (c, v) in t.columns.iter().zip(row) {
        if !c.nullable && v.is_null() {
            return Err(SqlError::new(
                state::NOT_NULL_VIOLATION,
                format!(
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    c.name, t.name
                ),
            ));
        }
    }
    Ok(())
}

fn duplicate(t: &TableDef, name: &str, cols: &[usize], row: &[Value]) -> SqlError {
    let names: Vec<&str> = cols.iter().map(|c| t.columns[*c].name.as_str()).collect();
    let vals: Vec<String> = cols
        .iter()
        .map(|c| row[*c].to_pg_text().unwrap_or_else(|| "null".into()))
        .collect();
    SqlError::new(
        state::UNIQUE_VIOLATION,
        format!("duplicate key value violates unique constraint \"{name}\""),
    )
    .with_detail(format!(
        "Key ({})=({}) already exists.",
        names.join(", "),
        vals.join(", ")
    ))
}

/// Pending writes of one statement plus the transaction's, read through to the engine.
pub struct Pending<'a> {
    pub handle: &'a mantis_engine::EngineHandle,
    pub tx: Option<&'a Writes>,
    pub stmt: Writes,
    /// The transaction's row locks (strict 2PL: X on every row written).
    pub locks: &'a crate::txlock::TxnLocks,
}

impl Pending<'_> {
    fn view(&self) -> View<'_> {
        View {
            handle: self.handle,
            layers: [Some(&self.stmt), self.tx],
        }
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.view().get(key).await
    }

    fn remove_row(&mut self, t: &TableDef, key: &[u8], row: &[Value]) {
        self.stmt.delete(key.to_vec());
        for ix in &t.indexes {
            self.stmt.delete(index_key(ix, row, key).0);
        }
    }

    /// Adds a row after checking key and unique-index conflicts. Returns false (and writes
    /// nothing) on a conflict when `soft` is set.
    pub(crate) async fn add_row(
        &mut self,
        t: &TableDef,
        key: Vec<u8>,
        row: &[Value],
        soft: bool,
    ) -> Result<bool> {
        if t.has_pk() && self.get(&key).await?.is_some() {
            if soft {
                return Ok(false);
            }
            return Err(duplicate(
                t,
                &format!("{}_pkey", t.name),
                &t.primary_key,
                row,
            ));
        }
        let mut entries = Vec::with_capacity(t.indexes.len());
        for ix in &t.indexes {
            let (ik, unique) = index_key(ix, row, &key);
            if unique.is_some() {
                // X on the unique entry before the check, as for the primary key: two
                // transactions inserting one value under different keys queue here.
                self.locks.lock_row(t.id, &ik, LockMode::X).await?;
            }
            if unique.is_some() && self.get(&ik).await?.is_some() {
                if soft {
                    return Ok(false);
                }
                return Err(duplicate(t, &ix.name, &ix.columns, row));
            }
            entries.push(ik);
        }
        for ik in entries {
            self.stmt.put(ik, key.clone());
        }
        self.stmt.put(key, encode_row(row));
        Ok(true)
    }

    /// The existing row that blocks inserting `row`, through the key or a unique index.
    async fn conflicting(
        &self,
        t: &TableDef,
        key: &[u8],
        row: &[Value],
    ) -> Result<Option<(Vec<u8>, Row)>> {
        if t.has_pk() {
            if let Some(v) = self.get(key).await? {
                return Ok(Some((
                    key.to_vec(),
                    crate::rowcodec::decode_row(&v, t.columns.len())?,
                )));
            }
        }
        for ix in &t.indexes {
            let (ik, unique) = index_key(ix, row, key);
            if unique.is_some() {
                if let Some(rk) = self.get(&ik).await? {
                    if let Some(v) = self.get(&rk).await? {
                        return Ok(Some((
                            rk,
                            crate::rowcodec::decode_row(&v, t.columns.len())?,
                        )));
                    }
                }
            }
        }
        Ok(None)
    }
}

pub async fn run_insert(p: &InsertPlan, ctx: &mut Ctx, w: &mut Pending<'_>) -> Result<u64> {
    crate::access::prefetch(
        &p.source,
        ctx,
        &View {
            handle: w.handle,
            layers: [None, w.tx],
        },
    )
    .await?;
    let rows = exec(&p.source, ctx, &[])?;
    let t = &p.table;
    // Compute and check every row before writing any.
    let mut full_rows = Vec::with_capacity(rows.len());
    for r in rows {
        let mut row = vec![Value::Null; t.columns.len()];
        for (v, &c) in r.into_iter().zip(&p.targets) {
            row[c] = fit(t, c, v)?;
        }
        for (c, d) in p.defaults.iter().enumerate() {
            if let Some(d) = d {
                row[c] = fit(t, c, eval(d, &[], ctx, &[])?)?;
            }
        }
        check_not_null(t, &row)?;
        full_rows.push(row);
    }
    let mut count = 0u64;
    // A one-row INSERT inside a transaction keeps a hidden-id row on a shard it already
    // writes on ([`hidden_row_shard`]); other inserts spread their rows over the shards, as
    // bulk loads and scans want.
    let keep_local = w.tx.is_some() && full_rows.len() == 1;
    for row in full_rows {
        let key = if t.has_pk() {
            pk_key(t, &row)
        } else if keep_local {
            row_key_on(t, w.handle, hidden_row_shard(w.handle, w.tx, &w.stmt))
        } else {
            keys::row_key(t.id, &[Value::Int64(new_row_id())])
        };
        // X on the new key first: the duplicate check below must see any concurrent insert.
        w.locks.lock_row(t.id, &key, LockMode::X).await?;
        match &p.on_conflict {
            None => {
                w.add_row(t, key, &row, false).await?;
                count += 1;
            }
            Some(Conflict::Nothing) => {
                if w.add_row(t, key, &row, true).await? {
                    count += 1;
                }
            }
            Some(Conflict::Update { sets, filter }) => match w.conflicting(t, &key, &row).await? {
                None => {
                    w.add_row(t, key, &row, false).await?;
                    count += 1;
                }
                Some((old_key, old)) => {
                    let mut both = old.clone();
                    both.extend(row.iter().cloned());
                    if let Some(f) = filter {
                        if truth(&eval(f, &both, ctx, &[])?)? != Some(true) {
                            continue;
                        }
                    }
                    let mut new = old.clone();
                    for (c, e) in sets {
                        new[*c] = fit(t, *c, eval(e, &both, ctx, &[])?)?;
                    }
                    check_not_null(t, &new)?;
                    w.remove_row(t, &old_key, &old);
                    let nk = if t.has_pk() { pk_key(t, &new) } else { old_key };
                    w.add_row(t, nk, &new, false).await?;
                    count += 1;
                }
            },
        }
        crate::store::check_tx_size(w.stmt.len())?;
    }
    Ok(count)
}

/// Rounds of read-lock-reread before an UPDATE/DELETE gives up with a serialization failure.
const LOCK_ROUNDS_MAX: usize = 16;

/// The rows an UPDATE/DELETE selects, each locked X. Rows are read, the new ones locked (in
/// key order, so two statements over the same rows do not deadlock), and read again: a read
/// counts only if every row it returned was already locked when it ran, because the previous
/// holder may have changed or deleted the row, or added rows that now match, before it
/// released the lock at its commit.
async fn locked_targets(
    access: &Plan,
    t: &TableDef,
    ctx: &mut Ctx,
    w: &Pending<'_>,
) -> Result<Vec<(Vec<u8>, Row)>> {
    let mut locked: std::collections::BTreeSet<Vec<u8>> = std::collections::BTreeSet::new();
    // A point target (full primary key) is known before anything is read: lock it first,
    // then read it once. WHY: reading first, locking what was read, then re-reading it under
    // the lock cost three messages to the row's shard when it is remote; this costs two. The
    // lock is the one the loop below would take (same key function), at every isolation level.
    if let Plan::PkGet { table, key, .. } = access {
        if table.id == t.id {
            if let Some(row_key) = crate::access::pk_get_row_key(table, key, ctx)? {
                if only_node(access) {
                    return point_target(access, t, row_key, ctx, w).await;
                }
                w.locks.lock_row(t.id, &row_key, LockMode::X).await?;
                locked.insert(row_key);
            }
        }
    }
    for _ in 0..LOCK_ROUNDS_MAX {
        ctx.tables.clear();
        ctx.fetched.clear();
        let view = View {
            handle: w.handle,
            layers: [None, w.tx],
        };
        crate::access::prefetch(access, ctx, &view).await?;
        let targets = target_rows(access, t, ctx)?;
        let mut fresh: Vec<&Vec<u8>> = targets
            .iter()
            .map(|(k, _)| k)
            .filter(|k| !locked.contains(*k))
            .collect();
        if fresh.is_empty() {
            return Ok(targets);
        }
        fresh.sort();
        for k in fresh {
            w.locks.lock_row(t.id, k, LockMode::X).await?;
            locked.insert(k.clone());
        }
    }
    Err(SqlError::new(
        "40001",
        format!(
            "could not serialize access to table {}: rows kept changing while being locked",
            t.name
        ),
    ))
}

/// Whether `access` reads nothing but itself (no subquery in its filter).
fn only_node(access: &Plan) -> bool {
    let mut nodes = Vec::new();
    crate::access::access_nodes(access, &mut nodes);
    nodes.len() == 1
}

/// The target of an UPDATE/DELETE whose access plan is a lone primary-key lookup of `row_key`:
/// locked X and read under the lock in one message to its shard (`TxnLocks::lock_row_get`),
/// or read from the transaction's own writes, which no one else can change.
async fn point_target(
    access: &Plan,
    t: &TableDef,
    row_key: Vec<u8>,
    ctx: &mut Ctx,
    w: &Pending<'_>,
) -> Result<Vec<(Vec<u8>, Row)>> {
    let own = View {
        handle: w.handle,
        layers: [None, w.tx],
    };
    let value = match own.overlay(&row_key) {
        Some(v) => {
            w.locks.lock_row(t.id, &row_key, LockMode::X).await?;
            v.cloned()
        }
        None => w.locks.lock_row_get(t.id, &row_key, LockMode::X).await?,
    };
    let rows = match value {
        Some(v) => vec![crate::rowcodec::decode_row(&v, t.columns.len())?],
        None => Vec::new(),
    };
    ctx.tables.clear();
    ctx.fetched.clear();
    ctx.fetched
        .insert(access as *const Plan as usize, Rc::new(rows));
    target_rows(access, t, ctx)
}

/// The (key, row) pairs an UPDATE/DELETE's access plan selects.
fn target_rows(access: &Plan, t: &TableDef, ctx: &Ctx) -> Result<Vec<(Vec<u8>, Row)>> {
    match access {
        Plan::Scan { filter, .. } => {
            let data = ctx.tables.get(&t.id).cloned().unwrap_or_default();
            let mut out = Vec::new();
            for (k, row) in data.iter() {
                let keep = match filter {
                    None => true,
                    Some(f) => truth(&eval(f, row, ctx, &[])?)? == Some(true),
                };
                if keep {
                    out.push((k.clone(), row.clone()));
                }
            }
            Ok(out)
        }
        other => Ok(exec(other, ctx, &[])?
            .into_iter()
            .map(|r| (pk_key(t, &r), r))
            .collect()),
    }
}

pub async fn run_update(p: &UpdatePlan, ctx: &mut Ctx, w: &mut Pending<'_>) -> Result<u64> {
    let t = &p.table;
    let targets = locked_targets(&p.access, t, ctx, w).await?;
    let mut changed = Vec::with_capacity(targets.len());
    for (k, old) in targets {
        let mut new = old.clone();
        for (c, e) in &p.sets {
            new[*c] = fit(t, *c, eval(e, &old, ctx, &[])?)?;
        }
        check_not_null(t, &new)?;
        changed.push((k, old, new));
    }
    let key_cols: Vec<usize> = t
        .primary_key
        .iter()
        .chain(t.indexes.iter().flat_map(|i| i.columns.iter()))
        .copied()
        .collect();
    let n = changed.len() as u64;
    // Fast path: no key or indexed column changed, so the row is rewritten in place.
    let in_place = |old: &Row, new: &Row| {
        key_cols.iter().all(|c| {
            crate::types::compare(&old[*c], &new[*c]) == Some(std::cmp::Ordering::Equal)
                || (old[*c].is_null() && new[*c].is_null())
        })
    };
    let mut moved = Vec::new();
    for (k, old, new) in changed {
        if in_place(&old, &new) {
            w.stmt.put(k, encode_row(&new));
        } else {
            w.remove_row(t, &k, &old);
            moved.push((k, new));
        }
    }
    for (old_key, new) in moved {
        let key = if t.has_pk() { pk_key(t, &new) } else { old_key };
        w.add_row(t, key, &new, false).await?;
    }
    crate::store::check_tx_size(w.stmt.len())?;
    Ok(n)
}

pub async fn run_delete(p: &DeletePlan, ctx: &mut Ctx, w: &mut Pending<'_>) -> Result<u64> {
    let targets = locked_targets(&p.access, &p.table, ctx, w).await?;
    for (k, row) in &targets {
        w.remove_row(&p.table, k, row);
    }
    crate::store::check_tx_size(w.stmt.len())?;
    Ok(targets.len() as u64)
}
