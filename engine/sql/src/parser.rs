//! SQL text to AST with sqlparser's PostgreSQL dialect; syntax errors carry the 1-based
//! character position PostgreSQL reports.

use sqlparser::ast::{Query, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};

use crate::error::{state, Result, SqlError};

/// Statement nesting depth the parser accepts (deeper input is refused, not overflowed).
pub const PARSE_DEPTH_MAX: usize = 200;
/// Longest statement text accepted.
pub const SQL_BYTES_MAX: usize = 16 << 20;

pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    if sql.len() > SQL_BYTES_MAX {
        return Err(SqlError::new(
            state::PROGRAM_LIMIT_EXCEEDED,
            "statement too long",
        ));
    }
    Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(PARSE_DEPTH_MAX)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| to_error(sql, e))
}

pub fn parse_view_query(sql: &str) -> Result<Query> {
    let mut stmts = parse(sql)?;
    match (stmts.pop(), stmts.is_empty()) {
        (Some(Statement::Query(q)), true) => Ok(*q),
        _ => Err(SqlError::internal("stored view is not a single query")),
    }
}

fn to_error(sql: &str, e: ParserError) -> SqlError {
    let msg = match &e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => {
            return SqlError::new(state::PROGRAM_LIMIT_EXCEEDED, "statement nested too deeply")
        }
    };
    let err = SqlError::syntax(format!("syntax error: {}", strip_location(&msg)));
    // Without a location the parser ran out of input: PostgreSQL points just past the end.
    let pos = position(sql, &msg)
        .unwrap_or_else(|| u32::try_from(sql.chars().count() + 1).unwrap_or(u32::MAX));
    err.with_position(pos)
}

fn strip_location(msg: &str) -> &str {
    match msg.find(" at Line: ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

/// Converts sqlparser's "Line: L, Column: C" into a character offset into `sql`.
fn position(sql: &str, msg: &str) -> Option<u32> {
    let after = &msg[msg.find("Line: ")? + 6..];
    let line: usize = after
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let col_part = &after[after.find("Column: ")? + 8..];
    let col: usize = col_part
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let mut offset = 0usize;
    for (i, l) in sql.split('\n').enumerate() {
        if i + 1 == line {
            return u32::try_from(offset + col.max(1)).ok();
        }
        offset += l.chars().count() + 1;
    }
    u32::try_from(sql.chars().count().max(1)).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn syntax_error_has_position() {
        let e = parse("SELECT 1 FROM t WHERE").unwrap_err();
        assert_eq!(e.sqlstate, "42601");
        // Out of input: just past the end, as PostgreSQL reports it.
        assert_eq!(e.position, Some(22));
        let e = parse("SELECT * FROM t WHERE a = = 1").unwrap_err();
        assert_eq!(e.position, Some(27));
        let e = parse("SELECT 1;\nSELEC 2").unwrap_err();
        assert_eq!(e.position, Some(11));
    }
}
