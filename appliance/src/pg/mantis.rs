//! The SQL backend of the shipped daemon: `mantis-sql`'s [`Session`] behind the
//! [`SqlBackend`] trait. Parameters arrive as bytes and are decoded with the statement's
//! parameter types; values leave through the engine's own text and binary encoders.

use mantis_sql::{Column, Prepared, Session, SqlEngine, SqlError, SqlType, StatementResult, Value};

use super::backend::{
    ColumnDesc, Outcome, Param, SqlBackend, StatementDesc, TableColumn, TableDesc, TableIndex,
    WireValue,
};
use super::codec::Format;
use super::error::{sqlstate, PgError};

impl WireValue for Value {
    fn to_text(&self) -> Option<String> {
        self.to_pg_text()
    }
    fn to_binary(&self) -> Option<Vec<u8>> {
        self.to_pg_binary()
    }
}

impl From<SqlError> for PgError {
    fn from(e: SqlError) -> PgError {
        let mut p = PgError::error(e.sqlstate, e.message).with_position(e.position);
        p.detail = e.detail;
        p
    }
}

/// One connection's SQL session on this shard's engine.
pub struct MantisBackend {
    engine: SqlEngine,
    session: Session,
    /// Issue 11: the running COPY FROM STDIN.
    copy: Option<mantis_sql::copy::CopyIn>,
}

impl MantisBackend {
    pub fn new(engine: &SqlEngine) -> MantisBackend {
        MantisBackend {
            engine: engine.clone(),
            session: engine.session(),
            copy: None,
        }
    }
}

fn column_desc(c: &Column) -> ColumnDesc {
    ColumnDesc {
        name: c.name.clone(),
        type_oid: c.ty.pg_oid(),
        type_len: c.ty.pg_typlen(),
    }
}

fn outcome(r: StatementResult) -> Outcome<Value> {
    match r {
        StatementResult::Rows { columns, rows } => Outcome::Rows {
            columns: columns.iter().map(column_desc).collect(),
            rows,
        },
        StatementResult::Command { tag } => Outcome::Command { tag },
    }
}

/// The engine type a client's parameter type OID names; None lets the engine infer it.
pub fn type_for_oid(oid: u32) -> Option<SqlType> {
    Some(match oid {
        16 => SqlType::Bool,
        17 => SqlType::Bytea,
        20 => SqlType::Int64,
        21 => SqlType::Int16,
        23 => SqlType::Int32,
        25 => SqlType::Text,
        700 => SqlType::Float32,
        701 => SqlType::Float64,
        1042 => SqlType::Char(None),
        1043 => SqlType::Varchar(None),
        1082 => SqlType::Date,
        1114 | 1184 => SqlType::Timestamp,
        1700 => SqlType::Numeric,
        3802 => SqlType::Jsonb,
        _ => return None,
    })
}

fn decode_param(ty: &SqlType, p: &Param) -> Result<Value, PgError> {
    let Some(bytes) = &p.bytes else {
        return Ok(Value::Null);
    };
    let value = match p.format {
        Format::Text => {
            let text = std::str::from_utf8(bytes).map_err(|_| {
                PgError::error(
                    sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
                    "invalid byte sequence for encoding \"UTF8\"",
                )
            })?;
            Value::from_pg_text(ty, text)?
        }
        Format::Binary => Value::from_pg_binary(ty, bytes)?,
    };
    Ok(value)
}

impl SqlBackend for MantisBackend {
    type Value = Value;
    type Prepared = Prepared;

    async fn copy_in_start(&mut self, sql: &str) -> Result<usize, PgError> {
        let c = self.session.copy_in(sql).await?;
        let columns = c.columns();
        self.copy = Some(c);
        Ok(columns)
    }

    async fn copy_in_data(&mut self, data: &[u8]) -> Result<(), PgError> {
        match &mut self.copy {
            Some(c) => Ok(c.feed(data)?),
            None => Err(PgError::error(
                sqlstate::PROTOCOL_VIOLATION,
                "CopyData without a COPY in progress",
            )),
        }
    }

    async fn copy_in_done(&mut self) -> Result<u64, PgError> {
        match self.copy.take() {
            Some(c) => Ok(self.session.copy_in_finish(c).await?),
            None => Err(PgError::error(
                sqlstate::PROTOCOL_VIOLATION,
                "CopyDone without a COPY in progress",
            )),
        }
    }

    fn copy_in_abort(&mut self) {
        self.copy = None;
    }

    async fn execute(&mut self, sql: &str) -> Result<Vec<Outcome<Value>>, PgError> {
        let results = self.session.execute(sql).await?;
        Ok(results.into_iter().map(outcome).collect())
    }

    async fn prepare(
        &mut self,
        sql: &str,
        param_oids: &[u32],
    ) -> Result<(Prepared, StatementDesc), PgError> {
        let hints: Vec<Option<SqlType>> = param_oids.iter().map(|&o| type_for_oid(o)).collect();
        let prepared = self.session.prepare(sql, &hints).await?;
        let desc = StatementDesc {
            param_oids: prepared.param_types.iter().map(SqlType::pg_oid).collect(),
            columns: prepared.columns.iter().map(column_desc).collect(),
        };
        Ok((prepared, desc))
    }

    async fn execute_prepared(
        &mut self,
        prepared: &Prepared,
        params: &[Param],
    ) -> Result<Outcome<Value>, PgError> {
        assert_eq!(
            params.len(),
            prepared.param_types.len(),
            "Bind checked the count"
        );
        let values = prepared
            .param_types
            .iter()
            .zip(params)
            .map(|(ty, p)| decode_param(ty, p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(outcome(
            self.session.execute_prepared(prepared, &values).await?,
        ))
    }

    fn in_transaction(&self) -> bool {
        self.session.in_transaction()
    }

    async fn list_tables(&self) -> Result<Vec<String>, PgError> {
        Ok(self.engine.list_tables().await?)
    }

    async fn describe_table(&self, name: &str) -> Result<Option<TableDesc>, PgError> {
        let Some(t) = self.engine.describe_table(name).await? else {
            return Ok(None);
        };
        let pkey = format!("{}_pkey", t.name);
        Ok(Some(TableDesc {
            columns: t
                .columns
                .iter()
                .map(|c| TableColumn {
                    name: c.name.clone(),
                    type_name: c.ty.display_name(),
                    nullable: c.nullable,
                    default: c.default.clone(),
                })
                .collect(),
            // The engine lists the primary key among the indexes; psql shows it once.
            indexes: t
                .indexes
                .iter()
                .filter(|i| !(i.name == pkey && i.columns == t.primary_key))
                .map(|i| TableIndex {
                    name: i.name.clone(),
                    columns: i.columns.clone(),
                    unique: i.unique,
                })
                .collect(),
            primary_key: t.primary_key,
            name: t.name,
        }))
    }
}
