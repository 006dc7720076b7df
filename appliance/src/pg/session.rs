//! The protocol state machine of one connection, independent of the socket: it is given the
//! bytes received so far, consumes one message at a time, and appends the answers to `out`.
//! Startup (SSL refusal, protocol check, parameters), authentication, simple query, extended
//! query (named and unnamed statements and portals, formats, row limits, skip-to-Sync after an
//! error) and the transaction status of ReadyForQuery are all here.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::auth::{AuthMethod, AuthState, Step};
use super::backend::{ColumnDesc, Outcome, Param, SqlBackend, StatementDesc, WireValue};
use super::catalog::{self, Context, Text};
use super::codec::{self, encode, Decoded, Format, Frontend, Startup, Target};
use super::error::{sqlstate, PgError, Severity};

/// Issue 11: COPY FROM STDIN (a child module: it drives this session's state).
#[path = "copy_in.rs"]
mod copy_in;

/// Prepared statements one connection may hold.
pub const STATEMENTS_MAX: usize = 1024;
/// Open portals one connection may hold.
pub const PORTALS_MAX: usize = 256;

/// Connection-level settings, fixed at accept time.
#[derive(Clone)]
pub struct Settings {
    /// None: clients are trusted (only allowed on loopback binds by the configuration).
    pub password: Option<String>,
    pub auth_method: AuthMethod,
    pub message_bytes_max: usize,
    pub process_id: i32,
    pub secret_key: i32,
}

/// Counts what the session did; the daemon feeds its Prometheus metrics from it.
pub trait Observer {
    /// One statement (`query`: a simple-query string; `execute`: an Execute) finished.
    fn statement(&self, kind: &'static str, elapsed: Duration, failed: bool);
    /// An ErrorResponse was sent.
    fn error(&self, e: &PgError);
}

impl Observer for () {
    fn statement(&self, _: &'static str, _: Duration, _: bool) {}
    fn error(&self, _: &PgError) {}
}

/// What the connection loop does after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Send what is in `out`, then close.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Wait for at least this many bytes from where the last step stopped.
    Need(usize),
    Consumed(usize, Flow),
}

enum Phase {
    Startup,
    Auth(AuthState),
    Ready,
}

enum Statement<P> {
    Empty,
    /// Answered by the wire layer ([`catalog`]).
    Canned(String),
    /// The third field is the statement text when it modifies data or schema: Execute
    /// audits it (issue 8), as the simple protocol does.
    Backend(P, StatementDesc, Option<String>),
}

enum Rows<V> {
    Backend(VecDeque<Vec<V>>),
    Canned(VecDeque<Vec<Text>>),
}

enum PortalState<V> {
    Bound,
    /// Executed; rows left to send (a row limit suspended it), and rows sent so far.
    Open {
        rows: Rows<V>,
        sent: u64,
    },
    Done,
}

struct Portal<P, V> {
    statement: Rc<Statement<P>>,
    params: Vec<Param>,
    /// One per result column (empty when there are none).
    formats: Vec<Format>,
    /// Filled by Describe for canned statements (which must be run to know their columns).
    columns: Option<Vec<ColumnDesc>>,
    state: PortalState<V>,
}

pub struct Session<B: SqlBackend> {
    backend: B,
    settings: Settings,
    observer: Box<dyn Observer>,
    phase: Phase,
    user: String,
    database: String,
    statements: HashMap<String, Rc<Statement<B::Prepared>>>,
    portals: HashMap<String, Portal<B::Prepared, B::Value>>,
    /// An error happened in an extended-query batch: ignore messages until Sync.
    skipping: bool,
    /// An error happened inside BEGIN ... : only ROLLBACK/COMMIT are accepted.
    failed_transaction: bool,
    /// Encoded answers not yet written to the socket.
    pub out: Vec<u8>,
    /// Issue 11: a COPY FROM STDIN is receiving data.
    copy: Option<copy_in::CopyState>,
}

impl<B: SqlBackend> Session<B> {
    pub fn new(backend: B, settings: Settings, observer: Box<dyn Observer>) -> Session<B> {
        Session {
            backend,
            settings,
            observer,
            phase: Phase::Startup,
            user: String::new(),
            database: String::new(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            skipping: false,
            failed_transaction: false,
            out: Vec::new(),
            copy: None,
        }
    }

    /// Whether startup and authentication are done.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// Handles the first complete message in `buf`, if there is one.
    pub async fn step(&mut self, buf: &[u8]) -> Progress {
        let result = match self.phase {
            Phase::Startup => self.step_startup(buf),
            Phase::Auth(_) | Phase::Ready => {
                match codec::decode_message(buf, self.settings.message_bytes_max) {
                    Ok(Decoded::Incomplete { needed_bytes_min }) => {
                        Ok(Progress::Need(needed_bytes_min))
                    }
                    Ok(Decoded::Done { value, consumed }) => self
                        .dispatch(value)
                        .await
                        .map(|flow| Progress::Consumed(consumed, flow)),
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(Progress::Need(n)) => {
                assert!(
                    n > buf.len(),
                    "an incomplete message must ask for more bytes"
                );
                Progress::Need(n)
            }
            Ok(done) => done,
            Err(e) => {
                // Errors reaching here end the connection (PostgreSQL sends them as FATAL).
                let e = PgError {
                    severity: Severity::Fatal,
                    ..e
                };
                self.observer.error(&e);
                encode::error_response(&mut self.out, &e);
                Progress::Consumed(buf.len(), Flow::Close)
            }
        }
    }

    fn step_startup(&mut self, buf: &[u8]) -> Result<Progress, PgError> {
        let (startup, consumed) = match codec::decode_startup(buf)? {
            Decoded::Incomplete { needed_bytes_min } => {
                return Ok(Progress::Need(needed_bytes_min))
            }
            Decoded::Done { value, consumed } => (value, consumed),
        };
        let flow = match startup {
            // No TLS/GSS here: 'N' tells the client to go on in plain text.
            Startup::Ssl | Startup::GssEnc => {
                self.out.push(b'N');
                Flow::Continue
            }
            // Statements are not interruptible yet: the request is accepted and dropped,
            // and its connection closed without an answer, as PostgreSQL does.
            Startup::Cancel { .. } => Flow::Close,
            Startup::Start {
                major,
                minor,
                params,
            } => self.start(major, minor, params)?,
        };
        Ok(Progress::Consumed(consumed, flow))
    }

    fn start(
        &mut self,
        major: u16,
        minor: u16,
        params: Vec<(String, String)>,
    ) -> Result<Flow, PgError> {
        if major != 3 {
            return Err(PgError::fatal(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0"
                ),
            ));
        }
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        self.user = get("user").filter(|u| !u.is_empty()).ok_or_else(|| {
            PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "no PostgreSQL user name specified in startup packet",
            )
        })?;
        self.database = get("database").unwrap_or_else(|| self.user.clone());
        let unknown: Vec<&str> = params
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| k.starts_with("_pq_."))
            .collect();
        if minor > 0 || !unknown.is_empty() {
            encode::negotiate_protocol_version(&mut self.out, 0, &unknown);
        }
        match self.settings.password {
            Some(_) => {
                let state = AuthState::begin(self.settings.auth_method, &mut self.out);
                self.phase = Phase::Auth(state);
            }
            None => self.finish_startup(),
        }
        Ok(Flow::Continue)
    }

    fn finish_startup(&mut self) {
        encode::auth_ok(&mut self.out);
        let ctx = Context {
            user: &self.user,
            database: &self.database,
        };
        for (name, value) in catalog::parameters(&ctx) {
            encode::parameter_status(&mut self.out, name, &value);
        }
        encode::backend_key_data(
            &mut self.out,
            self.settings.process_id,
            self.settings.secret_key,
        );
        self.phase = Phase::Ready;
        self.ready_for_query();
    }

    fn ready_for_query(&mut self) {
        let status = if self.failed_transaction {
            b'E'
        } else if self.backend.in_transaction() {
            b'T'
        } else {
            b'I'
        };
        encode::ready_for_query(&mut self.out, status);
    }

    async fn dispatch(&mut self, message: Frontend) -> Result<Flow, PgError> {
        if let Phase::Auth(state) = &mut self.phase {
            let Frontend::Password(body) = message else {
                return Err(PgError::protocol("expected a password message"));
            };
            let password = self.settings.password.clone().unwrap_or_default();
            if state.step(&body, &self.user, &password, &mut self.out)? == Step::Accepted {
                self.finish_startup();
            }
            return Ok(Flow::Continue);
        }
        if self.copy.is_some() {
            return Ok(self.copy_message(message).await);
        }
        if self.skipping && !matches!(message, Frontend::Sync | Frontend::Terminate) {
            return Ok(Flow::Continue);
        }
        let kind = kind_of(&message);
        let started = Instant::now();
        let result = match message {
            Frontend::Query(sql) if copy_in::is_copy(&sql) && !self.failed_transaction => {
                self.copy_start(&sql).await;
                return Ok(Flow::Continue);
            }
            Frontend::Query(sql) => {
                self.simple_query(&sql).await;
                return Ok(Flow::Continue);
            }
            Frontend::Parse {
                name,
                sql,
                param_oids,
            } => self.parse(name, &sql, &param_oids).await,
            Frontend::Bind {
                portal,
                statement,
                param_formats,
                params,
                result_formats,
            } => self.bind(portal, &statement, &param_formats, params, &result_formats),
            Frontend::Describe { target, name } => self.describe(target, &name).await,
            Frontend::Execute { portal, rows_max } => self.execute(&portal, rows_max).await,
            Frontend::Close { target, name } => {
                match target {
                    Target::Statement => self.statements.remove(&name).map(|_| ()),
                    Target::Portal => self.portals.remove(&name).map(|_| ()),
                };
                encode::empty(&mut self.out, b'3');
                Ok(())
            }
            Frontend::Sync => {
                self.skipping = false;
                self.portals.remove("");
                self.ready_for_query();
                Ok(())
            }
            Frontend::Flush => Ok(()),
            // Issue 11: the rest of a COPY that already failed: ignored, as in PostgreSQL.
            Frontend::CopyData(_) | Frontend::CopyDone | Frontend::CopyFail(_) => Ok(()),
            Frontend::Terminate => return Ok(Flow::Close),
            Frontend::Password(_) => Err(PgError::protocol("unexpected password message")),
            Frontend::Unsupported(tag) => {
                return Err(PgError::protocol(format!(
                    "invalid frontend message type {tag}"
                )))
            }
        };
        if kind == "execute" {
            self.observer
                .statement(kind, started.elapsed(), result.is_err());
        }
        if let Err(e) = result {
            self.extended_error(e);
        }
        Ok(Flow::Continue)
    }

    fn extended_error(&mut self, e: PgError) {
        self.observer.error(&e);
        encode::error_response(&mut self.out, &e);
        self.note_failure();
        self.skipping = true;
    }

    fn note_failure(&mut self) {
        if self.backend.in_transaction() {
            self.failed_transaction = true;
        }
    }

    fn context(&self) -> Context<'_> {
        Context {
            user: &self.user,
            database: &self.database,
        }
    }

    async fn simple_query(&mut self, sql: &str) {
        let started = Instant::now();
        let result = self.simple_query_inner(sql).await;
        crate::monitoring::audit_sql(
            &self.user,
            sql,
            result.as_ref().err().map(|e| e.sqlstate.to_string()),
        );
        self.observer
            .statement("query", started.elapsed(), result.is_err());
        crate::monitoring::note_slow("pg", "query", &self.user, sql, started.elapsed());
        if let Err(e) = result {
            self.observer.error(&e);
            encode::error_response(&mut self.out, &e);
            self.note_failure();
        }
        self.ready_for_query();
    }

    async fn simple_query_inner(&mut self, sql: &str) -> Result<(), PgError> {
        if is_empty_query(sql) {
            encode::empty(&mut self.out, b'I');
            return Ok(());
        }
        if self.failed_transaction {
            return self.in_failed_transaction(sql).await;
        }
        if catalog::intercepts(sql) {
            let outcome = catalog::answer(sql, &self.context(), &self.backend).await?;
            write_outcome(&mut self.out, outcome);
            return Ok(());
        }
        let outcomes = self.backend.execute(sql).await?;
        for outcome in outcomes {
            write_outcome(&mut self.out, outcome);
        }
        Ok(())
    }

    /// After an error inside a transaction block only its end is accepted; COMMIT then
    /// rolls back, as in PostgreSQL.
    async fn in_failed_transaction(&mut self, sql: &str) -> Result<(), PgError> {
        let first = sql.split_whitespace().next().unwrap_or("");
        let first = first.trim_end_matches(';').to_ascii_lowercase();
        if !matches!(first.as_str(), "rollback" | "abort" | "commit" | "end") {
            return Err(PgError::error(
                sqlstate::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        self.failed_transaction = false;
        if self.backend.in_transaction() {
            self.backend.execute("ROLLBACK").await?;
        }
        encode::command_complete(&mut self.out, "ROLLBACK");
        Ok(())
    }

    async fn parse(&mut self, name: String, sql: &str, param_oids: &[u32]) -> Result<(), PgError> {
        if !name.is_empty() && self.statements.contains_key(&name) {
            return Err(PgError::error(
                sqlstate::DUPLICATE_PSTATEMENT,
                format!("prepared statement \"{name}\" already exists"),
            ));
        }
        if self.statements.len() >= STATEMENTS_MAX && !self.statements.contains_key(&name) {
            return Err(PgError::error(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!("too many prepared statements (at most {STATEMENTS_MAX})"),
            ));
        }
        if self.failed_transaction {
            return Err(PgError::error(
                sqlstate::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        let statement = if is_empty_query(sql) {
            Statement::Empty
        } else if catalog::intercepts(sql) {
            Statement::Canned(sql.to_string())
        } else {
            let (prepared, desc) = self.backend.prepare(sql, param_oids).await?;
            let audited = crate::monitoring::sql_modifies(sql).then(|| sql.to_string());
            Statement::Backend(prepared, desc, audited)
        };
        self.statements.insert(name, Rc::new(statement));
        assert!(self.statements.len() <= STATEMENTS_MAX);
        encode::empty(&mut self.out, b'1');
        Ok(())
    }

    fn statement(&self, name: &str) -> Result<Rc<Statement<B::Prepared>>, PgError> {
        self.statements.get(name).cloned().ok_or_else(|| {
            let what = if name.is_empty() {
                "unnamed prepared statement does not exist".to_string()
            } else {
                format!("prepared statement \"{name}\" does not exist")
            };
            PgError::error(sqlstate::UNDEFINED_PSTATEMENT, what)
        })
    }

    fn bind(
        &mut self,
        portal: String,
        statement: &str,
        param_formats: &[Format],
        params: Vec<Option<Vec<u8>>>,
        result_formats: &[Format],
    ) -> Result<(), PgError> {
        let stmt = self.statement(statement)?;
        if !portal.is_empty() && self.portals.contains_key(&portal) {
            return Err(PgError::error(
                sqlstate::DUPLICATE_CURSOR,
                format!("cursor \"{portal}\" already exists"),
            ));
        }
        if self.portals.len() >= PORTALS_MAX && !self.portals.contains_key(&portal) {
            return Err(PgError::error(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!("too many open portals (at most {PORTALS_MAX})"),
            ));
        }
        let expected = match stmt.as_ref() {
            Statement::Backend(_, desc, _) => desc.param_oids.len(),
            Statement::Empty | Statement::Canned(_) => 0,
        };
        if params.len() != expected {
            return Err(PgError::error(
                sqlstate::PROTOCOL_VIOLATION,
                format!(
                    "bind message supplies {} parameters, but prepared statement \"{statement}\" requires {expected}",
                    params.len()
                ),
            ));
        }
        let param_formats = spread(param_formats, params.len(), "parameter")?;
        let params = params
            .into_iter()
            .zip(param_formats)
            .map(|(bytes, format)| Param { format, bytes })
            .collect();
        let columns = match stmt.as_ref() {
            Statement::Backend(_, desc, _) => desc.columns.len(),
            // Canned results are text whatever the client asks; the count is checked there.
            Statement::Empty | Statement::Canned(_) => 0,
        };
        let formats = match stmt.as_ref() {
            Statement::Canned(_) => result_formats.to_vec(),
            _ => spread(result_formats, columns, "result")?,
        };
        self.portals.insert(
            portal,
            Portal {
                statement: stmt,
                params,
                formats,
                columns: None,
                state: PortalState::Bound,
            },
        );
        encode::empty(&mut self.out, b'2');
        Ok(())
    }

    async fn describe(&mut self, target: Target, name: &str) -> Result<(), PgError> {
        match target {
            Target::Statement => {
                let stmt = self.statement(name)?;
                let (oids, columns) = match stmt.as_ref() {
                    Statement::Empty => (Vec::new(), Vec::new()),
                    Statement::Backend(_, desc, _) => {
                        (desc.param_oids.clone(), desc.columns.clone())
                    }
                    Statement::Canned(sql) => (Vec::new(), self.canned_columns(sql).await?),
                };
                encode::parameter_description(&mut self.out, &oids);
                write_row_description(&mut self.out, &columns, &[]);
            }
            Target::Portal => {
                let stmt = Rc::clone(&self.portal(name)?.statement);
                let columns = match stmt.as_ref() {
                    Statement::Empty => Vec::new(),
                    Statement::Backend(_, desc, _) => desc.columns.clone(),
                    Statement::Canned(sql) => self.canned_columns(sql).await?,
                };
                let portal = self.portal_mut(name)?;
                portal.columns = Some(columns.clone());
                let formats = canned_formats(&portal.formats, columns.len());
                write_row_description(&mut self.out, &columns, &formats);
            }
        }
        Ok(())
    }

    async fn canned_columns(&self, sql: &str) -> Result<Vec<ColumnDesc>, PgError> {
        Ok(
            match catalog::answer(sql, &self.context(), &self.backend).await? {
                Outcome::Rows { columns, .. } => columns,
                Outcome::Command { .. } => Vec::new(),
            },
        )
    }

    fn portal(&self, name: &str) -> Result<&Portal<B::Prepared, B::Value>, PgError> {
        self.portals.get(name).ok_or_else(|| no_portal(name))
    }

    fn portal_mut(&mut self, name: &str) -> Result<&mut Portal<B::Prepared, B::Value>, PgError> {
        self.portals.get_mut(name).ok_or_else(|| no_portal(name))
    }

    async fn execute(&mut self, name: &str, rows_max: u32) -> Result<(), PgError> {
        let portal = self.portal(name)?;
        if matches!(portal.state, PortalState::Bound) {
            let stmt = Rc::clone(&portal.statement);
            if self.failed_transaction {
                return Err(PgError::error(
                    sqlstate::IN_FAILED_TRANSACTION,
                    "current transaction is aborted, commands ignored until end of transaction block",
                ));
            }
            let state = match stmt.as_ref() {
                Statement::Empty => {
                    encode::empty(&mut self.out, b'I');
                    PortalState::Done
                }
                Statement::Canned(sql) => {
                    match catalog::answer(sql, &self.context(), &self.backend).await? {
                        Outcome::Rows { rows, .. } => PortalState::Open {
                            rows: Rows::Canned(rows.into()),
                            sent: 0,
                        },
                        Outcome::Command { tag } => {
                            encode::command_complete(&mut self.out, &tag);
                            PortalState::Done
                        }
                    }
                }
                Statement::Backend(prepared, _, audited) => {
                    let params = self.portal(name)?.params.clone();
                    let started = std::time::Instant::now();
                    let result = self.backend.execute_prepared(prepared, &params).await;
                    crate::monitoring::note_slow(
                        "pg",
                        "execute",
                        &self.user,
                        audited.as_deref().unwrap_or("(prepared statement)"),
                        started.elapsed(),
                    );
                    if let Some(sql) = audited {
                        crate::monitoring::audit_sql(
                            &self.user,
                            sql,
                            result.as_ref().err().map(|e| e.sqlstate.to_string()),
                        );
                    }
                    match result? {
                        Outcome::Rows { rows, .. } => PortalState::Open {
                            rows: Rows::Backend(rows.into()),
                            sent: 0,
                        },
                        Outcome::Command { tag } => {
                            encode::command_complete(&mut self.out, &tag);
                            PortalState::Done
                        }
                    }
                }
            };
            self.portal_mut(name)?.state = state;
        }
        let out = &mut self.out;
        let portal = self.portals.get_mut(name).ok_or_else(|| no_portal(name))?;
        match &mut portal.state {
            PortalState::Open { rows, sent } => {
                let limit = if rows_max == 0 {
                    usize::MAX
                } else {
                    rows_max as usize
                };
                let (n, left) = match rows {
                    Rows::Backend(r) => (send_rows(out, r, &portal.formats, limit), r.len()),
                    Rows::Canned(r) => {
                        let width = r.front().map_or(0, Vec::len);
                        let formats = canned_formats(&portal.formats, width);
                        (send_rows(out, r, &formats, limit), r.len())
                    }
                };
                *sent += n as u64;
                if left > 0 {
                    encode::empty(out, b's');
                } else {
                    encode::command_complete(out, &format!("SELECT {sent}"));
                    portal.state = PortalState::Done;
                }
            }
            // Executing a finished portal again yields nothing more.
            PortalState::Done | PortalState::Bound => {}
        }
        Ok(())
    }
}

fn no_portal(name: &str) -> PgError {
    PgError::error(
        sqlstate::UNDEFINED_CURSOR,
        format!("portal \"{name}\" does not exist"),
    )
}

fn kind_of(message: &Frontend) -> &'static str {
    match message {
        Frontend::Execute { .. } => "execute",
        Frontend::Query(_) => "query",
        _ => "other",
    }
}

/// A query string with nothing but whitespace and semicolons.
fn is_empty_query(sql: &str) -> bool {
    sql.chars().all(|c| c.is_whitespace() || c == ';')
}

/// Expands Bind's format codes: none means all text, one applies to all, else one each.
fn spread(formats: &[Format], n: usize, what: &str) -> Result<Vec<Format>, PgError> {
    match formats.len() {
        0 => Ok(vec![Format::Text; n]),
        1 => Ok(vec![formats[0]; n]),
        k if k == n => Ok(formats.to_vec()),
        k => Err(PgError::error(
            sqlstate::PROTOCOL_VIOLATION,
            format!("bind message has {k} {what} formats but {n} {what}s"),
        )),
    }
}

/// Formats for canned results, whose count is known only after running them.
fn canned_formats(formats: &[Format], n: usize) -> Vec<Format> {
    if formats.len() == n {
        formats.to_vec()
    } else {
        vec![formats.first().copied().unwrap_or(Format::Text); n]
    }
}

fn write_row_description(out: &mut Vec<u8>, columns: &[ColumnDesc], formats: &[Format]) {
    if columns.is_empty() {
        encode::empty(out, b'n');
        return;
    }
    let fields: Vec<encode::Field<'_>> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| encode::Field {
            name: &c.name,
            type_oid: c.type_oid,
            type_len: c.type_len,
            format: formats.get(i).copied().unwrap_or(Format::Text),
        })
        .collect();
    encode::row_description(out, &fields);
}

/// A simple-query result: RowDescription, DataRows (text), CommandComplete.
fn write_outcome<V: WireValue>(out: &mut Vec<u8>, outcome: Outcome<V>) {
    match outcome {
        Outcome::Command { tag } => encode::command_complete(out, &tag),
        Outcome::Rows { columns, rows } => {
            write_row_description_always(out, &columns);
            let n = rows.len();
            let mut rows: VecDeque<Vec<V>> = rows.into();
            send_rows(out, &mut rows, &[], usize::MAX);
            encode::command_complete(out, &format!("SELECT {n}"));
        }
    }
}

/// Simple query sends a RowDescription even for zero columns.
fn write_row_description_always(out: &mut Vec<u8>, columns: &[ColumnDesc]) {
    let fields: Vec<encode::Field<'_>> = columns
        .iter()
        .map(|c| encode::Field {
            name: &c.name,
            type_oid: c.type_oid,
            type_len: c.type_len,
            format: Format::Text,
        })
        .collect();
    encode::row_description(out, &fields);
}

/// Sends up to `limit` rows from the front of `rows`; returns how many.
fn send_rows<V: WireValue>(
    out: &mut Vec<u8>,
    rows: &mut VecDeque<Vec<V>>,
    formats: &[Format],
    limit: usize,
) -> usize {
    let mut n = 0;
    while n < limit {
        let Some(row) = rows.pop_front() else { break };
        let at = encode::data_row_begin(out, row.len());
        for (i, v) in row.iter().enumerate() {
            let bytes = match formats.get(i).copied().unwrap_or(Format::Text) {
                Format::Text => v.to_text().map(String::into_bytes),
                Format::Binary => v.to_binary(),
            };
            encode::data_value(out, bytes.as_deref());
        }
        encode::data_row_end(out, at);
        n += 1;
    }
    n
}
