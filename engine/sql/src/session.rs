//! A client session: runs statements, keeps prepared plans, and buffers a transaction's
//! writes (BEGIN ... COMMIT) so the transaction reads its own writes and applies them at once.

use std::rc::Rc;

use sqlparser::ast::Statement;

use crate::binder::Binder;
use crate::dml::{DmlPlan, Pending};
use crate::error::{state, Result, SqlError};
use crate::exec::{exec, Ctx, Row};
use crate::isolation::Isolation;
use crate::plan::Plan;
use crate::store::{View, Writes};
use crate::types::{SqlType, Value};
use crate::{ddl, dml, Column, SqlEngine, StatementResult};

enum Kind {
    Query {
        plan: Rc<Plan>,
    },
    Dml(Rc<DmlPlan>),
    /// INSERT into a document collection (issue 11).
    DocInsert(Rc<crate::docs::write::DocInsert>),
    /// DDL, transaction control and the like: run from the statement each time.
    Other,
    Empty,
}

struct PreparedInner {
    stmt: Option<Statement>,
    hints: Vec<Option<SqlType>>,
    version: u64,
    kind: Kind,
}

/// A parsed, bound and optimized statement, kept by the client between executions.
#[derive(Clone)]
pub struct Prepared {
    pub param_types: Vec<SqlType>,
    /// Empty when the statement returns no rows.
    pub columns: Vec<Column>,
    inner: Rc<PreparedInner>,
}

pub struct Session {
    engine: SqlEngine,
    tx: Option<Writes>,
    /// Row locks of the current transaction (or of the running autocommit statement).
    locks: crate::txlock::TxnLocks,
    /// A statement failed inside the transaction: only ROLLBACK/COMMIT are accepted.
    failed: bool,
    /// The level new transactions get (`SET SESSION CHARACTERISTICS`,
    /// `default_transaction_isolation`).
    isolation_default: Isolation,
    /// The level of the open transaction (meaningless outside one).
    tx_isolation: Isolation,
    /// A query or DML ran in the open transaction: its level can no longer change.
    tx_queried: bool,
}

fn tag(t: impl Into<String>) -> StatementResult {
    StatementResult::Command { tag: t.into() }
}

fn columns(names: &[String], types: &[SqlType]) -> Vec<Column> {
    names
        .iter()
        .zip(types)
        .map(|(n, t)| Column {
            name: n.clone(),
            ty: t.clone(),
        })
        .collect()
}

impl Session {
    pub(crate) fn new(engine: SqlEngine) -> Session {
        Session {
            locks: crate::txlock::TxnLocks::new(engine.handle().clone()),
            engine,
            tx: None,
            failed: false,
            isolation_default: Isolation::default(),
            tx_isolation: Isolation::default(),
            tx_queried: false,
        }
    }

    /// The isolation level the next statement runs at.
    pub fn isolation(&self) -> Isolation {
        if self.tx.is_some() {
            self.tx_isolation
        } else {
            self.isolation_default
        }
    }

    /// A statement failed inside the transaction: from now on only ROLLBACK (or COMMIT, which
    /// rolls back) is accepted, so nothing the transaction did can be committed and its locks
    /// can go now instead of holding up others until the client rolls back.
    fn fail_transaction(&mut self) {
        self.failed = true;
        self.locks.release_all();
    }

    /// Issue 11: the engine, for COPY (`crate::copy`).
    pub(crate) fn sql_engine(&self) -> &SqlEngine {
        &self.engine
    }

    /// Issue 11: the session's row locks, for COPY (`crate::copy`).
    pub(crate) fn row_locks(&self) -> &crate::txlock::TxnLocks {
        &self.locks
    }

    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// True when a statement failed inside the open transaction (ReadyForQuery 'E').
    pub fn transaction_failed(&self) -> bool {
        self.tx.is_some() && self.failed
    }

    /// Simple query: every statement in `sql`, in order; stops at the first error.
    pub async fn execute(&mut self, sql: &str) -> Result<Vec<StatementResult>> {
        if let Some(name) = crate::columnar::vacuum_target(sql) {
            return Ok(vec![self.vacuum(&name).await?]);
        }
        let stmts = crate::parser::parse(sql)?;
        let mut out = Vec::with_capacity(stmts.len());
        for s in &stmts {
            let p = self.prepare_stmt(Some(s.clone()), &[]).await?;
            // Just bound against the current catalog: no second version check.
            let r = self.run_prepared(&p, &[], true).await;
            if r.is_err() && self.tx.is_some() {
                self.fail_transaction();
            }
            out.push(r?);
        }
        Ok(out)
    }

    /// `VACUUM tbl`: merges a columnar table's delta into chunks now (a no-op on row tables).
    async fn vacuum(&mut self, name: &str) -> Result<StatementResult> {
        if self.tx.is_some() {
            return Err(SqlError::new(
                state::ACTIVE_SQL_TRANSACTION,
                "VACUUM cannot run inside a transaction block",
            ));
        }
        let cat = self.engine.catalog().await?;
        let t = cat.table(name).ok_or_else(|| {
            SqlError::new(
                state::UNDEFINED_TABLE,
                format!("relation \"{name}\" does not exist"),
            )
        })?;
        if t.is_columnar() {
            crate::columnar::merge_table(&self.engine, t).await?;
        }
        Ok(tag("VACUUM"))
    }

    pub async fn prepare(
        &mut self,
        sql: &str,
        param_types: &[Option<SqlType>],
    ) -> Result<Prepared> {
        let mut stmts = crate::parser::parse(sql)?;
        if stmts.len() > 1 {
            return Err(SqlError::syntax(
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        self.prepare_stmt(stmts.pop(), param_types).await
    }

    async fn prepare_stmt(
        &mut self,
        stmt: Option<Statement>,
        hints: &[Option<SqlType>],
    ) -> Result<Prepared> {
        if self.failed
            && self.tx.is_some()
            && !matches!(
                stmt,
                Some(Statement::Commit { .. } | Statement::Rollback { .. })
            )
        {
            return Err(SqlError::new(
                state::IN_FAILED_SQL_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        let r = self.bind(stmt, hints).await;
        if r.is_err() && self.tx.is_some() {
            self.fail_transaction();
        }
        r
    }

    async fn bind(
        &mut self,
        stmt: Option<Statement>,
        hints: &[Option<SqlType>],
    ) -> Result<Prepared> {
        let cat = self.engine.catalog().await?;
        let mut b = Binder::new(&cat, hints.to_vec());
        let (kind, cols) = match &stmt {
            None => (Kind::Empty, Vec::new()),
            Some(Statement::Query(q)) => {
                let bq = b.query(q)?;
                let cols = columns(&bq.names, &bq.types);
                (
                    Kind::Query {
                        plan: Rc::new(crate::optimizer::optimize(bq.plan)),
                    },
                    cols,
                )
            }
            Some(Statement::Insert(ins)) if crate::docs::write::insert_target(ins).is_some() => {
                let coll = crate::docs::write::insert_target(ins).unwrap_or_default();
                (
                    Kind::DocInsert(Rc::new(crate::docs::write::bind_insert(
                        &mut b, ins, &coll,
                    )?)),
                    Vec::new(),
                )
            }
            Some(Statement::Insert(ins)) => (
                Kind::Dml(Rc::new(DmlPlan::Insert(dml::bind_insert(&mut b, ins)?))),
                Vec::new(),
            ),
            Some(s @ Statement::Update { .. }) => (
                Kind::Dml(Rc::new(DmlPlan::Update(dml::bind_update(&mut b, s)?))),
                Vec::new(),
            ),
            Some(Statement::Delete(d)) => (
                Kind::Dml(Rc::new(DmlPlan::Delete(dml::bind_delete(&mut b, d)?))),
                Vec::new(),
            ),
            Some(Statement::Explain { .. } | Statement::ShowVariable { .. }) => (
                Kind::Other,
                vec![Column {
                    name: "QUERY PLAN".into(),
                    ty: SqlType::Text,
                }],
            ),
            Some(_) => (Kind::Other, Vec::new()),
        };
        Ok(Prepared {
            param_types: b.param_types(),
            columns: cols,
            inner: Rc::new(PreparedInner {
                stmt,
                hints: hints.to_vec(),
                version: cat.version,
                kind,
            }),
        })
    }

    pub async fn execute_prepared(
        &mut self,
        p: &Prepared,
        params: &[Value],
    ) -> Result<StatementResult> {
        let r = self.run_prepared(p, params, false).await;
        if r.is_err() && self.tx.is_some() {
            self.fail_transaction();
        }
        r
    }

    async fn run_prepared(
        &mut self,
        p: &Prepared,
        params: &[Value],
        fresh: bool,
    ) -> Result<StatementResult> {
        if self.failed
            && self.tx.is_some()
            && !matches!(
                p.inner.stmt,
                Some(Statement::Commit { .. } | Statement::Rollback { .. })
            )
        {
            return Err(SqlError::new(
                state::IN_FAILED_SQL_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        if !fresh && !matches!(p.inner.kind, Kind::Other | Kind::Empty) {
            // A plan bound against an older catalog is re-bound (a table may be gone).
            let cat = self.engine.catalog().await?;
            if cat.version != p.inner.version {
                let rebound = self.bind(p.inner.stmt.clone(), &p.inner.hints).await?;
                return Box::pin(self.run_prepared(&rebound, params, true)).await;
            }
        }
        if params.len() < p.param_types.len() {
            return Err(SqlError::new(
                state::PROTOCOL_VIOLATION,
                format!(
                    "statement needs {} parameters, {} given",
                    p.param_types.len(),
                    params.len()
                ),
            ));
        }
        let params: Vec<Value> = params
            .iter()
            .zip(
                p.param_types
                    .iter()
                    .chain(std::iter::repeat(&SqlType::Unknown)),
            )
            .map(|(v, t)| match v {
                Value::Text(s) if !t.is_text() && *t != SqlType::Unknown => {
                    Value::from_pg_text(t, s)
                }
                other => Ok(other.clone()),
            })
            .collect::<Result<_>>()?;
        match &p.inner.kind {
            Kind::Empty => Ok(tag("")),
            Kind::Query { plan } => {
                let rows = self.run_query(plan, params).await?;
                Ok(StatementResult::Rows {
                    columns: p.columns.clone(),
                    rows,
                })
            }
            Kind::Dml(d) => self.run_dml(d, params).await,
            Kind::DocInsert(d) => {
                if self.tx.is_some() {
                    return Err(SqlError::new(
                        state::ACTIVE_SQL_TRANSACTION,
                        "INSERT into a document collection cannot run inside a transaction block",
                    ));
                }
                let rows = self.run_query(&d.source, params).await?;
                let n = crate::docs::write::run_insert(self.engine.handle(), d, rows).await?;
                Ok(tag(format!("INSERT 0 {n}")))
            }
            Kind::Other => match &p.inner.stmt {
                Some(s) => self.run_other(s).await,
                None => Ok(tag("")),
            },
        }
    }

    async fn run_query(&mut self, plan: &Plan, params: Vec<Value>) -> Result<Vec<Row>> {
        let r = self.run_query_locked(plan, params).await;
        if self.tx.is_none() {
            // Autocommit: the statement was the transaction; its read locks go now.
            self.locks.release_all();
        }
        r
    }

    async fn run_query_locked(&mut self, plan: &Plan, params: Vec<Value>) -> Result<Vec<Row>> {
        self.tx_queried = self.tx.is_some();
        let mut ctx = Ctx::new(params);
        if self.isolation() == Isolation::Serializable {
            crate::isolation::lock_reads(plan, &ctx, &self.locks, None).await?;
        }
        let view = View {
            handle: self.engine.handle(),
            layers: [None, self.tx.as_ref()],
        };
        crate::access::prefetch(plan, &mut ctx, &view).await?;
        exec(plan, &ctx, &[])
    }

    async fn run_dml(&mut self, d: &DmlPlan, params: Vec<Value>) -> Result<StatementResult> {
        let r = self.run_dml_locked(d, params).await;
        if self.tx.is_none() {
            // Autocommit: the statement was the transaction; its writes are applied (or it
            // failed), so its locks go now.
            self.locks.release_all();
        }
        r
    }

    async fn run_dml_locked(&mut self, d: &DmlPlan, params: Vec<Value>) -> Result<StatementResult> {
        self.tx_queried = self.tx.is_some();
        let mut ctx = Ctx::new(params);
        if self.isolation() == Isolation::Serializable {
            // Lock what the statement reads before it reads: the target rows X (or its
            // table SIX for a scan), the tables of an INSERT ... SELECT S.
            let (plan, target) = match d {
                DmlPlan::Insert(p) => (&p.source, None),
                DmlPlan::Update(p) => (&p.access, Some(p.table.id)),
                DmlPlan::Delete(p) => (&p.access, Some(p.table.id)),
            };
            crate::isolation::lock_reads(plan, &ctx, &self.locks, target).await?;
        }
        let mut w = Pending {
            handle: self.engine.handle(),
            tx: self.tx.as_ref(),
            stmt: Writes::default(),
            locks: &self.locks,
        };
        let (n, what) = match d {
            DmlPlan::Insert(p) => (dml::run_insert(p, &mut ctx, &mut w).await?, "INSERT 0"),
            DmlPlan::Update(p) => (dml::run_update(p, &mut ctx, &mut w).await?, "UPDATE"),
            DmlPlan::Delete(p) => (dml::run_delete(p, &mut ctx, &mut w).await?, "DELETE"),
        };
        let mut writes = w.stmt;
        if let (DmlPlan::Insert(p), None) = (d, &self.tx) {
            if p.table.is_columnar() {
                // Issue 11: a big autocommit INSERT goes straight into chunks.
                match crate::columnar::bulk::write_chunks(&self.engine, &p.table, writes).await? {
                    Some(back) => writes = back,
                    None => return Ok(tag(format!("{what} {n}"))),
                }
            }
        }
        self.apply(writes).await?;
        if let (DmlPlan::Insert(p), None) = (d, &self.tx) {
            if p.table.is_columnar() {
                crate::columnar::note_inserts(&self.engine, &p.table, n).await?;
            }
        }
        Ok(tag(format!("{what} {n}")))
    }

    /// Applies a statement's writes: into the transaction, or to the engine at once.
    async fn apply(&mut self, writes: Writes) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        match &mut self.tx {
            Some(tx) => {
                tx.absorb(writes);
                crate::store::check_tx_size(tx.len())
            }
            None => self
                .engine
                .handle()
                .write_batch(writes.into_batch())
                .await
                .map_err(|e| SqlError::storage("write", e)),
        }
    }

    async fn run_other(&mut self, s: &Statement) -> Result<StatementResult> {
        match s {
            Statement::StartTransaction { modes, .. } => {
                if self.tx.is_none() {
                    self.tx = Some(Writes::default());
                    self.failed = false;
                    self.tx_queried = false;
                    self.tx_isolation = self.isolation_default;
                }
                if let Some(level) = Isolation::from_modes(modes) {
                    self.set_tx_isolation(level)?;
                }
                Ok(tag("BEGIN"))
            }
            Statement::SetTransaction { modes, session, .. } => {
                if let Some(level) = Isolation::from_modes(modes) {
                    if *session {
                        self.isolation_default = level;
                    } else if self.tx.is_some() {
                        self.set_tx_isolation(level)?;
                    }
                    // Outside a transaction block PostgreSQL only warns: nothing to change.
                }
                Ok(tag("SET"))
            }
            Statement::Commit { .. } => {
                let tx = self.tx.take();
                let failed = std::mem::replace(&mut self.failed, false);
                let r = match tx {
                    Some(w) if !failed && !w.is_empty() => self
                        .engine
                        .handle()
                        .write_batch(w.into_batch())
                        .await
                        .map(|()| tag("COMMIT"))
                        .map_err(|e| SqlError::storage("commit", e)),
                    Some(_) if !failed => Ok(tag("COMMIT")),
                    Some(_) => Ok(tag("ROLLBACK")),
                    None => Ok(tag("COMMIT")),
                };
                // Strict 2PL: locks go only once the writes are applied (or dropped), and go
                // after a failed commit too: the transaction is over either way.
                self.locks.release_all();
                r
            }
            Statement::Rollback { .. } => {
                self.tx = None;
                self.failed = false;
                self.locks.release_all();
                Ok(tag("ROLLBACK"))
            }
            Statement::CreateTable(ct) => ddl::create_table(&self.engine, ct).await,
            Statement::CreateIndex(ci) if crate::docs::collection_of(&ci.table_name).is_some() => {
                let coll = crate::docs::collection_of(&ci.table_name).unwrap_or_default();
                let cat = self.engine.catalog().await?;
                crate::docs::write::create_index(self.engine.handle(), &cat, ci, &coll).await?;
                Ok(tag("CREATE INDEX"))
            }
            Statement::CreateIndex(ci) => ddl::create_index(&self.engine, ci).await,
            Statement::CreateView { .. } => ddl::create_view(&self.engine, s).await,
            Statement::Drop { .. } => ddl::drop(&self.engine, s).await,
            Statement::Explain {
                statement, analyze, ..
            } => {
                if *analyze {
                    return Err(SqlError::unsupported("EXPLAIN ANALYZE"));
                }
                let lines = self.explain(statement).await?;
                Ok(StatementResult::Rows {
                    columns: vec![Column {
                        name: "QUERY PLAN".into(),
                        ty: SqlType::Text,
                    }],
                    rows: lines.into_iter().map(|l| vec![Value::Text(l)]).collect(),
                })
            }
            Statement::SetVariable {
                variables, value, ..
            } => {
                self.set_variable(&variables.to_string(), value)?;
                Ok(tag("SET"))
            }
            Statement::SetNames { .. } | Statement::SetTimeZone { .. } => Ok(tag("SET")),
            Statement::ShowVariable { variable } => {
                let name = variable
                    .iter()
                    .map(|i| i.value.to_lowercase())
                    .collect::<Vec<_>>()
                    .join(".");
                let value = match name.as_str() {
                    "server_version" => "15.0",
                    "server_encoding" | "client_encoding" => "UTF8",
                    "standard_conforming_strings" => "on",
                    "datestyle" => "ISO, MDY",
                    "timezone" => "UTC",
                    "transaction_isolation" | "transaction.isolation.level" => {
                        self.isolation().as_str()
                    }
                    "default_transaction_isolation" => self.isolation_default.as_str(),
                    _ => {
                        return Err(SqlError::new(
                            state::UNDEFINED_OBJECT,
                            format!("unrecognized configuration parameter \"{name}\""),
                        ))
                    }
                };
                Ok(StatementResult::Rows {
                    columns: vec![Column {
                        name,
                        ty: SqlType::Text,
                    }],
                    rows: vec![vec![Value::Text(value.into())]],
                })
            }
            other => Err(SqlError::unsupported(format!(
                "statement {}",
                first_words(&other.to_string())
            ))),
        }
    }

    /// Changes the open transaction's level: only before its first query, as in PostgreSQL.
    fn set_tx_isolation(&mut self, level: Isolation) -> Result<()> {
        if self.tx_queried && level != self.tx_isolation {
            return Err(SqlError::new(
                state::ACTIVE_SQL_TRANSACTION,
                "SET TRANSACTION ISOLATION LEVEL must be called before any query",
            ));
        }
        self.tx_isolation = level;
        Ok(())
    }

    /// `SET name = value`: the isolation settings are kept, other parameters accepted and
    /// ignored (clients set them on connect).
    fn set_variable(&mut self, name: &str, value: &[sqlparser::ast::Expr]) -> Result<()> {
        let name = name.to_lowercase();
        if name != "default_transaction_isolation" && name != "transaction_isolation" {
            return Ok(());
        }
        let text = match value {
            [sqlparser::ast::Expr::Value(v)] => match &v.value {
                sqlparser::ast::Value::SingleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            [sqlparser::ast::Expr::Identifier(i)] => i.value.clone(),
            other => other
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        };
        let level = Isolation::from_name(&text).ok_or_else(|| {
            SqlError::new(
                state::INVALID_PARAMETER_VALUE,
                format!("invalid value for parameter \"{name}\": \"{text}\""),
            )
        })?;
        if name == "default_transaction_isolation" {
            self.isolation_default = level;
        } else if self.tx.is_some() {
            self.set_tx_isolation(level)?;
        }
        Ok(())
    }

    async fn explain(&mut self, s: &Statement) -> Result<Vec<String>> {
        let p = self.bind(Some(s.clone()), &[]).await?;
        Ok(match &p.inner.kind {
            Kind::Query { plan } => {
                let notes = crate::docs::explain_notes(self.engine.handle(), plan).await?;
                crate::explain::explain_with(plan, &notes)
            }
            Kind::DocInsert(d) => {
                let notes = crate::docs::explain_notes(self.engine.handle(), &d.source).await?;
                let mut v = vec![format!(
                    "Insert on {}.{} (one document store insert per row)",
                    crate::docs::SCHEMA,
                    d.collection
                )];
                v.extend(
                    crate::explain::explain_with(&d.source, &notes)
                        .into_iter()
                        .map(|l| format!("  {l}")),
                );
                v
            }
            Kind::Dml(d) => match &**d {
                DmlPlan::Insert(i) => {
                    let notes = crate::docs::explain_notes(self.engine.handle(), &i.source).await?;
                    let mut v = vec![format!("Insert on {}", i.table.name)];
                    v.extend(
                        crate::explain::explain_with(&i.source, &notes)
                            .into_iter()
                            .map(|l| format!("  {l}")),
                    );
                    v
                }
                DmlPlan::Update(u) => {
                    let mut v = vec![format!("Update on {}", u.table.name)];
                    v.extend(
                        crate::explain::explain(&u.access)
                            .into_iter()
                            .map(|l| format!("  {l}")),
                    );
                    v
                }
                DmlPlan::Delete(d) => {
                    let mut v = vec![format!("Delete on {}", d.table.name)];
                    v.extend(
                        crate::explain::explain(&d.access)
                            .into_iter()
                            .map(|l| format!("  {l}")),
                    );
                    v
                }
            },
            _ => vec!["Utility Statement".into()],
        })
    }
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
