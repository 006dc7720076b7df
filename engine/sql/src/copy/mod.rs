//! Issue 11: `COPY table [(cols)] FROM STDIN` and the bulk row API behind it. Rows arrive as
//! text fields (parsed once per field with the column's type, no SQL AST) or as typed values
//! ([`Session::copy_rows`]), are checked like INSERT's (types, lengths, NOT NULL, key and
//! unique-index conflicts, same SQLSTATEs) and written through INSERT's paths: one atomic
//! batch per COPY (row tables), chunks for big columnar loads, the delta for small ones.
//!
//! All or nothing, as in PostgreSQL: the rows are held until the end of the data, so one COPY
//! carries at most `COPY_ROWS_MAX` rows and `COPY_BYTES_MAX` bytes of data (54000 beyond).
//! COPY runs only outside a transaction block (25001 inside BEGIN): it writes its own
//! atomic batch, which a transaction's buffered writes could not see or roll back.

pub mod format;
mod write;

use std::rc::Rc;

use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};

use crate::binder::{ident_name, Binder};
use crate::catalog::TableDef;
use crate::error::{state, Result, SqlError};
use crate::eval::eval;
use crate::exec::{Ctx, Row};
use crate::plan::BExpr;
use crate::types::Value;
use crate::Session;
pub use format::{CopyFormat, Splitter};

/// Rows one COPY may carry: they are held in memory and written in one atomic batch.
pub const COPY_ROWS_MAX: usize = crate::store::TX_WRITES_MAX;
/// Bytes of COPY data one statement may send (the rows are held until its end).
pub const COPY_BYTES_MAX: usize = 1 << 30;

/// A parsed `COPY ... FROM STDIN`.
#[derive(Debug, Clone, PartialEq)]
pub struct CopySpec {
    pub table: sqlparser::ast::ObjectName,
    pub columns: Vec<String>,
    pub format: CopyFormat,
}

fn limit(what: String) -> SqlError {
    SqlError::new(state::PROGRAM_LIMIT_EXCEEDED, what)
}

fn one_byte(c: char, what: &str) -> Result<u8> {
    u8::try_from(u32::from(c))
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| {
            SqlError::unsupported(format!("COPY {what} must be a single one-byte character"))
        })
}

/// Whether `sql` is a COPY statement (the wire layer then enters copy mode).
pub fn is_copy(sql: &str) -> bool {
    sql.trim_start()
        .get(..4)
        .is_some_and(|w| w.eq_ignore_ascii_case("copy"))
}

/// Parses `COPY table [(cols)] FROM STDIN [WITH (...)]` (also the pre-9.0 option spelling).
pub fn parse_copy(sql: &str) -> Result<CopySpec> {
    // sqlparser reads pg_dump's inline data after `FROM STDIN;`: give it an empty one.
    // The newline makes it hand back any text after the statement, which is refused below.
    let mut stmts = crate::parser::parse(&format!("{};\n", sql.trim_end().trim_end_matches(';')))?;
    let (Some(stmt), true) = (stmts.pop(), stmts.is_empty()) else {
        return Err(SqlError::syntax("COPY must be the only statement"));
    };
    let Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        values,
    } = stmt
    else {
        return Err(SqlError::syntax("not a COPY statement"));
    };
    if values
        .iter()
        .any(|v| v.as_deref().is_none_or(|t| !t.trim().is_empty()))
    {
        return Err(SqlError::syntax("COPY must be the only statement"));
    }
    if to {
        return Err(SqlError::unsupported("COPY ... TO"));
    }
    if target != CopyTarget::Stdin {
        return Err(SqlError::unsupported(
            "COPY from a file or program (use FROM STDIN, or psql's \\copy)",
        ));
    }
    let CopySource::Table {
        table_name,
        columns,
    } = source
    else {
        return Err(SqlError::syntax("COPY FROM needs a table"));
    };
    let format = copy_format(&options, &legacy_options)?;
    Ok(CopySpec {
        table: table_name,
        columns: columns.iter().map(ident_name).collect(),
        format,
    })
}

fn copy_format(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyFormat> {
    let csv = options.iter().any(|o| match o {
        CopyOption::Format(f) => f.value.eq_ignore_ascii_case("csv"),
        _ => false,
    }) || legacy.iter().any(|o| matches!(o, CopyLegacyOption::Csv(_)));
    let mut f = if csv {
        CopyFormat::csv()
    } else {
        CopyFormat::text()
    };
    for o in options {
        match o {
            CopyOption::Format(name) => match name.value.to_ascii_lowercase().as_str() {
                "csv" | "text" => {}
                other => return Err(SqlError::unsupported(format!("COPY format \"{other}\""))),
            },
            CopyOption::Delimiter(c) => f.delimiter = one_byte(*c, "delimiter")?,
            CopyOption::Null(s) => f.null = s.clone(),
            CopyOption::Header(h) => f.header = *h,
            CopyOption::Quote(c) => f.quote = one_byte(*c, "quote")?,
            CopyOption::Escape(c) => f.escape = one_byte(*c, "escape")?,
            CopyOption::Freeze(_) | CopyOption::Encoding(_) => {}
            other => return Err(SqlError::unsupported(format!("COPY option {other}"))),
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Binary => return Err(SqlError::unsupported("COPY BINARY")),
            CopyLegacyOption::Delimiter(c) => f.delimiter = one_byte(*c, "delimiter")?,
            CopyLegacyOption::Null(s) => f.null = s.clone(),
            CopyLegacyOption::Csv(csv) => {
                for c in csv {
                    match c {
                        CopyLegacyCsvOption::Header => f.header = true,
                        CopyLegacyCsvOption::Quote(q) => f.quote = one_byte(*q, "quote")?,
                        CopyLegacyCsvOption::Escape(e) => f.escape = one_byte(*e, "escape")?,
                        other => return Err(SqlError::unsupported(format!("COPY option {other}"))),
                    }
                }
            }
        }
    }
    if f.header && !f.csv {
        return Err(SqlError::unsupported("COPY HEADER in text format"));
    }
    if f.delimiter == b'\n' || f.delimiter == b'\r' || (f.csv && f.delimiter == f.quote) {
        return Err(SqlError::new(
            state::INVALID_PARAMETER_VALUE,
            "COPY delimiter cannot be newline, carriage return or the quote character",
        ));
    }
    Ok(f)
}

/// The table and columns a COPY fills, with the defaults of the others.
pub(crate) struct Target {
    pub table: Rc<TableDef>,
    pub targets: Vec<usize>,
    defaults: Vec<Option<BExpr>>,
}

impl Target {
    fn bind(b: &Binder, name: &sqlparser::ast::ObjectName, columns: &[String]) -> Result<Target> {
        let t = b.table(name)?;
        let mut targets = Vec::with_capacity(columns.len());
        for n in columns {
            let i = t.column_index(n).ok_or_else(|| {
                SqlError::new(
                    state::UNDEFINED_COLUMN,
                    format!("column \"{n}\" of relation \"{}\" does not exist", t.name),
                )
            })?;
            if targets.contains(&i) {
                return Err(SqlError::new(
                    state::DUPLICATE_COLUMN,
                    format!("column \"{n}\" specified more than once"),
                ));
            }
            targets.push(i);
        }
        if columns.is_empty() {
            targets = (0..t.columns.len()).collect();
        }
        let mut defaults = Vec::with_capacity(t.columns.len());
        for (i, c) in t.columns.iter().enumerate() {
            defaults.push(match (&c.default, targets.contains(&i)) {
                (Some(d), false) => Some(crate::ddl::default_expr(d, &c.ty)?),
                _ => None,
            });
        }
        Ok(Target {
            table: t,
            targets,
            defaults,
        })
    }

    /// The full row from the values of the target columns, checked as INSERT checks it.
    fn row(&self, ctx: &Ctx, values: Vec<Value>) -> Result<Row> {
        assert_eq!(values.len(), self.targets.len());
        let t = &self.table;
        let mut row = vec![Value::Null; t.columns.len()];
        for (v, &c) in values.into_iter().zip(&self.targets) {
            row[c] = crate::dml::fit(t, c, v)?;
        }
        for (c, d) in self.defaults.iter().enumerate() {
            if let Some(d) = d {
                row[c] = crate::dml::fit(t, c, eval(d, &[], ctx, &[])?)?;
            }
        }
        crate::dml::check_not_null(t, &row)?;
        Ok(row)
    }

    /// One record's text fields to a checked row.
    fn parse(&self, ctx: &Ctx, line: u64, fields: Vec<Option<String>>) -> Result<Row> {
        let t = &self.table;
        let at = |e: SqlError| in_copy(e, &t.name, line);
        if fields.len() < self.targets.len() {
            let missing = &t.columns[self.targets[fields.len()]].name;
            return Err(at(SqlError::new(
                format::BAD_COPY_FILE_FORMAT,
                format!("missing data for column \"{missing}\""),
            )));
        }
        if fields.len() > self.targets.len() {
            return Err(at(SqlError::new(
                format::BAD_COPY_FILE_FORMAT,
                "extra data after last expected column",
            )));
        }
        let mut values = Vec::with_capacity(fields.len());
        for (f, &c) in fields.into_iter().zip(&self.targets) {
            let col = &t.columns[c];
            values.push(match f {
                None => Value::Null,
                Some(s) => Value::from_pg_text(&col.ty, &s)
                    .map_err(|e| in_copy(e, &t.name, line).with_column(&col.name, &s))?,
            });
        }
        self.row(ctx, values).map_err(at)
    }
}

/// Adds where in the COPY data an error was found (PostgreSQL's CONTEXT line, as detail).
fn in_copy(e: SqlError, table: &str, line: u64) -> SqlError {
    let place = format!("COPY {table}, line {line}");
    let detail = match e.detail.as_deref() {
        None => place,
        Some(d) if d.starts_with("line ") => place,
        Some(d) => format!("{d} ({place})"),
    };
    SqlError {
        detail: Some(detail),
        ..e
    }
}

trait WithColumn {
    fn with_column(self, column: &str, value: &str) -> SqlError;
}

impl WithColumn for SqlError {
    fn with_column(self, column: &str, value: &str) -> SqlError {
        let detail = self.detail.unwrap_or_default();
        SqlError {
            detail: Some(format!("{detail}, column {column}: \"{value}\"")),
            ..self
        }
    }
}

/// One running `COPY ... FROM STDIN`: fed the CopyData bytes, keeps the checked rows.
pub struct CopyIn {
    target: Target,
    splitter: Splitter,
    rows: Vec<Row>,
    records: Vec<format::Record>,
    bytes: usize,
    ctx: Ctx,
}

impl CopyIn {
    /// Columns each record carries (the CopyInResponse announces them).
    pub fn columns(&self) -> usize {
        self.targets_len()
    }

    fn targets_len(&self) -> usize {
        self.target.targets.len()
    }

    /// The next CopyData bytes: every complete record is parsed and checked now.
    pub fn feed(&mut self, data: &[u8]) -> Result<()> {
        self.bytes += data.len();
        if self.bytes > COPY_BYTES_MAX {
            return Err(limit(format!(
                "COPY data larger than {COPY_BYTES_MAX} bytes: split it into several COPY statements"
            )));
        }
        let name = self.target.table.name.clone();
        self.splitter
            .feed(data, &mut self.records)
            .map_err(|e| in_copy(e, &name, self.splitter.lines()))?;
        self.take()
    }

    fn take(&mut self) -> Result<()> {
        for (line, fields) in self.records.drain(..) {
            if self.rows.len() >= COPY_ROWS_MAX {
                return Err(limit(format!(
                    "COPY of more than {COPY_ROWS_MAX} rows: split it into several COPY statements"
                )));
            }
            self.rows.push(self.target.parse(&self.ctx, line, fields)?);
        }
        Ok(())
    }
}

impl Session {
    /// Starts `COPY ... FROM STDIN` (`sql`): binds the table, refuses it inside a
    /// transaction block (25001). Feed the data to the returned [`CopyIn`], then
    /// [`Session::copy_in_finish`].
    pub async fn copy_in(&mut self, sql: &str) -> Result<CopyIn> {
        let spec = parse_copy(sql)?;
        self.refuse_in_transaction()?;
        let cat = self.sql_engine().catalog().await?;
        let b = Binder::new(&cat, Vec::new());
        let target = Target::bind(&b, &spec.table, &spec.columns)?;
        Ok(CopyIn {
            target,
            splitter: Splitter::new(spec.format),
            rows: Vec::new(),
            records: Vec::new(),
            bytes: 0,
            ctx: Ctx::new(Vec::new()),
        })
    }

    /// The end of the data (CopyDone): writes every row, or none on an error. Returns the
    /// number of rows (the `COPY n` tag).
    pub async fn copy_in_finish(&mut self, mut c: CopyIn) -> Result<u64> {
        let name = c.target.table.name.clone();
        c.splitter
            .finish(&mut c.records)
            .map_err(|e| in_copy(e, &name, c.splitter.lines()))?;
        c.take()?;
        self.copy_write(&c.target, c.rows).await
    }

    /// The bulk row API: `rows` of typed values for `columns` (empty: all, in order) of
    /// `table`, checked and written as one COPY.
    pub async fn copy_rows(
        &mut self,
        table: &str,
        columns: &[&str],
        rows: Vec<Vec<Value>>,
    ) -> Result<u64> {
        self.refuse_in_transaction()?;
        if rows.len() > COPY_ROWS_MAX {
            return Err(limit(format!(
                "COPY of more than {COPY_ROWS_MAX} rows: split it into several calls"
            )));
        }
        let cat = self.sql_engine().catalog().await?;
        let b = Binder::new(&cat, Vec::new());
        let name = sqlparser::ast::ObjectName(vec![sqlparser::ast::ObjectNamePart::Identifier(
            sqlparser::ast::Ident::new(table),
        )]);
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        let target = Target::bind(&b, &name, &columns)?;
        let ctx = Ctx::new(Vec::new());
        let mut full = Vec::with_capacity(rows.len());
        for (i, r) in rows.into_iter().enumerate() {
            if r.len() != target.targets.len() {
                return Err(SqlError::new(
                    format::BAD_COPY_FILE_FORMAT,
                    format!(
                        "row has {} values for {} columns",
                        r.len(),
                        target.targets.len()
                    ),
                ));
            }
            full.push(
                target
                    .row(&ctx, r)
                    .map_err(|e| in_copy(e, &target.table.name, i as u64 + 1))?,
            );
        }
        self.copy_write(&target, full).await
    }

    async fn copy_write(&mut self, target: &Target, rows: Vec<Row>) -> Result<u64> {
        self.refuse_in_transaction()?;
        let engine = self.sql_engine().clone();
        let r = write::write_rows(&engine, self.row_locks(), &target.table, rows).await;
        // Autocommit: the COPY was the transaction; its row locks go with it.
        self.row_locks().release_all();
        r
    }

    fn refuse_in_transaction(&self) -> Result<()> {
        if self.in_transaction() {
            return Err(SqlError::new(
                state::ACTIVE_SQL_TRANSACTION,
                "COPY FROM cannot run inside a transaction block",
            )
            .with_detail("COPY writes one atomic batch of its own; run it outside BEGIN."));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_copy_options() {
        let s = parse_copy(
            "COPY t (a, b) FROM STDIN WITH (FORMAT csv, HEADER, DELIMITER ';', NULL 'x')",
        )
        .unwrap();
        assert_eq!(s.columns, vec!["a", "b"]);
        assert!(s.format.csv && s.format.header);
        assert_eq!((s.format.delimiter, s.format.null.as_str()), (b';', "x"));
        let s = parse_copy("copy t from stdin csv header").unwrap();
        assert!(s.format.csv && s.format.header);
        let s = parse_copy("COPY t FROM STDIN").unwrap();
        assert_eq!(s.format, CopyFormat::text());
        assert!(parse_copy("COPY t TO STDOUT").is_err());
        assert!(parse_copy("COPY t FROM '/etc/passwd'").is_err());
        assert!(parse_copy("COPY t FROM STDIN BINARY").is_err());
        assert!(parse_copy("COPY t FROM STDIN; SELECT 1").is_err());
        assert!(parse_copy("COPY t FROM STDIN WITH (FORMAT text, HEADER)").is_err());
        assert!(is_copy("  copy t from stdin") && !is_copy("select 1"));
    }
}
