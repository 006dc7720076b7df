//! What the wire layer needs from a SQL engine, as a trait: the connection state machine is
//! written against it, so it is tested with a tiny in-test backend and runs in the daemon
//! against `mantis-sql` (see `mantis.rs`). Values stay the backend's own type; the wire layer
//! only asks them for their text or binary encodings.

use std::future::Future;

use super::codec::Format;
use super::error::PgError;

/// One result column as the client is told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDesc {
    pub name: String,
    pub type_oid: u32,
    /// pg_type.typlen: bytes of a fixed-size type, -1 for variable length.
    pub type_len: i16,
}

/// A value the wire layer can send in either format.
pub trait WireValue {
    /// Text format; None is SQL NULL.
    fn to_text(&self) -> Option<String>;
    /// Binary format; None is SQL NULL.
    fn to_binary(&self) -> Option<Vec<u8>>;
}

/// What one statement produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<V> {
    Rows {
        columns: Vec<ColumnDesc>,
        rows: Vec<Vec<V>>,
    },
    /// A statement without a result set; `tag` is the CommandComplete text ("INSERT 0 3").
    Command { tag: String },
}

/// The shape of a prepared statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementDesc {
    pub param_oids: Vec<u32>,
    /// Empty when the statement returns no rows.
    pub columns: Vec<ColumnDesc>,
}

/// One Bind parameter as received: its format and bytes (None = NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub format: Format,
    pub bytes: Option<Vec<u8>>,
}

/// A table as psql's `\d` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDesc {
    pub name: String,
    pub columns: Vec<TableColumn>,
    pub primary_key: Vec<String>,
    pub indexes: Vec<TableIndex>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumn {
    pub name: String,
    /// As `format_type` prints it: "integer", "character varying(20)", "text", ...
    pub type_name: String,
    pub nullable: bool,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableIndex {
    pub name: String,
    pub columns: Vec<String>,
    pub unique: bool,
}

/// A SQL session behind one client connection. Futures are !Send (they run on the shard's
/// executor), which is why the lint about Send bounds on async trait methods is silenced.
#[allow(async_fn_in_trait)]
pub trait SqlBackend {
    type Value: WireValue;
    type Prepared;

    /// Runs a simple-query string: zero or more statements, all results in order.
    fn execute(
        &mut self,
        sql: &str,
    ) -> impl Future<Output = Result<Vec<Outcome<Self::Value>>, PgError>>;

    /// Plans `sql`; `param_oids` are the client's type hints (0 = infer).
    fn prepare(
        &mut self,
        sql: &str,
        param_oids: &[u32],
    ) -> impl Future<Output = Result<(Self::Prepared, StatementDesc), PgError>>;

    /// Runs a prepared statement with bound parameters.
    fn execute_prepared(
        &mut self,
        prepared: &Self::Prepared,
        params: &[Param],
    ) -> impl Future<Output = Result<Outcome<Self::Value>, PgError>>;

    /// Inside BEGIN ... COMMIT (ReadyForQuery reports 'T').
    fn in_transaction(&self) -> bool;

    fn list_tables(&self) -> impl Future<Output = Result<Vec<String>, PgError>>;

    /// Issue 11: starts `COPY ... FROM STDIN` (`sql`); returns the columns each row carries.
    async fn copy_in_start(&mut self, sql: &str) -> Result<usize, PgError> {
        let _ = sql;
        Err(PgError::error(
            super::error::sqlstate::FEATURE_NOT_SUPPORTED,
            "COPY is not supported by this backend",
        ))
    }

    /// The next CopyData bytes of the running COPY.
    async fn copy_in_data(&mut self, data: &[u8]) -> Result<(), PgError> {
        let _ = data;
        Ok(())
    }

    /// The end of the data: writes the rows (all or none); returns how many.
    async fn copy_in_done(&mut self) -> Result<u64, PgError> {
        Ok(0)
    }

    /// Drops the running COPY (CopyFail, an error, a protocol violation): nothing is written.
    fn copy_in_abort(&mut self) {}

    fn describe_table(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<TableDesc>, PgError>>;
}
