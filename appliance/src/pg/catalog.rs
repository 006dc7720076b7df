//! Statements answered by the wire layer itself, before the SQL engine sees them: what psql
//! and drivers send about the server (`SELECT version()`, `SHOW`, `SET`, `current_schema()`)
//! and the `pg_catalog` queries behind psql 15's `\dt` and `\d table`, answered from the
//! engine's own catalog (`list_tables` / `describe_table`). The query shapes were captured with
//! `psql -E` against PostgreSQL 15; only their distinctive fragments are matched.

use super::backend::{ColumnDesc, Outcome, SqlBackend, TableDesc, WireValue};
use super::error::{sqlstate, PgError};

/// The version string clients see; major 15 so that psql picks its PostgreSQL 15 queries.
pub const SERVER_VERSION: &str = "15.0";
/// OIDs given to tables, in `list_tables` order, starting where PostgreSQL's user objects start.
const TABLE_OID_BASE: u32 = 16_384;
const TEXT_OID: u32 = 25;

/// A canned value: text, or NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub Option<String>);

impl WireValue for Text {
    fn to_text(&self) -> Option<String> {
        self.0.clone()
    }
    /// Every canned column is of type text, whose binary form is its bytes.
    fn to_binary(&self) -> Option<Vec<u8>> {
        self.0.clone().map(String::into_bytes)
    }
}

/// Who is asking, for `current_user` and `\dt`'s Owner column.
pub struct Context<'a> {
    pub user: &'a str,
    pub database: &'a str,
}

/// The server parameters reported at startup and by `SHOW`.
pub fn parameters(ctx: &Context<'_>) -> Vec<(&'static str, String)> {
    vec![
        ("server_version", SERVER_VERSION.to_string()),
        ("server_encoding", "UTF8".into()),
        ("client_encoding", "UTF8".into()),
        ("DateStyle", "ISO, MDY".into()),
        ("IntervalStyle", "postgres".into()),
        ("TimeZone", "UTC".into()),
        ("integer_datetimes", "on".into()),
        ("standard_conforming_strings", "on".into()),
        ("is_superuser", "on".into()),
        ("session_authorization", ctx.user.to_string()),
        ("application_name", String::new()),
    ]
}

fn rows(names: &[&str], data: Vec<Vec<Option<String>>>) -> Outcome<Text> {
    Outcome::Rows {
        columns: names
            .iter()
            .map(|n| ColumnDesc {
                name: (*n).to_string(),
                type_oid: TEXT_OID,
                type_len: -1,
            })
            .collect(),
        rows: data
            .into_iter()
            .map(|r| r.into_iter().map(Text).collect())
            .collect(),
    }
}

fn one(name: &str, value: &str) -> Outcome<Text> {
    rows(&[name], vec![vec![Some(value.to_string())]])
}

fn command(tag: &str) -> Outcome<Text> {
    Outcome::Command { tag: tag.into() }
}

/// The statement normalised for matching: trimmed, trailing semicolons gone, lower case,
/// runs of whitespace collapsed.
fn normalise(sql: &str) -> String {
    let s = sql.trim().trim_end_matches(';').trim();
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// Whether the wire layer answers `sql` itself (see [`answer`]).
pub fn intercepts(sql: &str) -> bool {
    if sql.contains("pg_catalog.") || sql.contains("information_schema.") {
        return true;
    }
    let n = normalise(sql);
    matches!(
        n.as_str(),
        "select version()"
            | "select pg_catalog.version()"
            | "select current_schema()"
            | "select current_schema"
            | "select current_database()"
            | "select current_user"
            | "select session_user"
            | "select user"
            | "discard all"
    ) || ["set ", "reset ", "show "].iter().any(|p| n.starts_with(p))
}

/// Answers a statement for which [`intercepts`] is true.
pub async fn answer<B: SqlBackend>(
    sql: &str,
    ctx: &Context<'_>,
    backend: &B,
) -> Result<Outcome<Text>, PgError> {
    if sql.contains("pg_catalog.") || sql.contains("information_schema.") {
        return catalog_query(sql, ctx, backend).await;
    }
    let n = normalise(sql);
    let out = match n.as_str() {
        "select version()" | "select pg_catalog.version()" => one(
            "version",
            &format!(
                "PostgreSQL {SERVER_VERSION} (MantisDB {}) on x86_64-pc-linux-gnu",
                env!("CARGO_PKG_VERSION")
            ),
        ),
        "select current_schema()" | "select current_schema" => one("current_schema", "public"),
        "select current_database()" => one("current_database", ctx.database),
        "select current_user" | "select session_user" | "select user" => {
            one("current_user", ctx.user)
        }
        "discard all" => command("DISCARD ALL"),
        _ if n.starts_with("set ") => command("SET"),
        _ if n.starts_with("reset ") => command("RESET"),
        _ if n.starts_with("show ") => return show(&n[5..], ctx),
        _ => {
            return Err(PgError::error(
                sqlstate::INTERNAL_ERROR,
                "statement is not answered by the wire layer",
            ))
        }
    };
    Ok(out)
}

fn show(name: &str, ctx: &Context<'_>) -> Result<Outcome<Text>, PgError> {
    let name = name.trim();
    let extra = [
        ("search_path", "\"$user\", public"),
        ("transaction_isolation", "read committed"),
        ("transaction isolation level", "read committed"),
        ("max_identifier_length", "63"),
        ("lc_collate", "C"),
        ("lc_ctype", "C"),
    ];
    if let Some((n, v)) = parameters(ctx)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        return Ok(one(n, &v));
    }
    if let Some((n, v)) = extra.iter().find(|(n, _)| *n == name) {
        return Ok(one(&n.replace(' ', "_"), v));
    }
    Err(PgError::error(
        sqlstate::UNDEFINED_OBJECT,
        format!("unrecognized configuration parameter \"{name}\""),
    ))
}

/// The psql catalog queries we know, by a fragment only that query has.
async fn catalog_query<B: SqlBackend>(
    sql: &str,
    ctx: &Context<'_>,
    backend: &B,
) -> Result<Outcome<Text>, PgError> {
    let tables = backend.list_tables().await?;
    if sql.contains("as \"Owner\"") && sql.contains("c.relkind IN (") {
        return Ok(list_relations(sql, ctx, &tables));
    }
    if sql.contains("SELECT c.oid,\n  n.nspname,\n  c.relname") {
        let pattern = quoted_after(sql, "OPERATOR(pg_catalog.~) ");
        let data = tables
            .iter()
            .enumerate()
            .filter(|(_, t)| pattern.as_deref().is_none_or(|p| regex_match(p, t)))
            .map(|(i, t)| {
                vec![
                    Some(table_oid(i).to_string()),
                    Some("public".into()),
                    Some(t.clone()),
                ]
            })
            .collect();
        return Ok(rows(&["oid", "nspname", "relname"], data));
    }
    let table = match quoted_after(sql, "c.oid = ")
        .or_else(|| quoted_after(sql, "a.attrelid = "))
        .and_then(|oid| oid.parse::<u32>().ok())
        .and_then(|oid| oid.checked_sub(TABLE_OID_BASE))
        .and_then(|i| tables.get(i as usize))
    {
        Some(name) => backend.describe_table(name).await?,
        None => None,
    };
    Ok(match table {
        Some(t) if sql.contains("c.relchecks, c.relkind") => relation_info(&t),
        Some(t) if sql.contains("FROM pg_catalog.pg_attribute a") => attributes(&t),
        Some(t) if sql.contains("pg_catalog.pg_index i") => indexes(&t),
        // Policies, statistics, publications, inheritance, ...: none here.
        _ => rows(&[], Vec::new()),
    })
}

fn table_oid(index: usize) -> u32 {
    TABLE_OID_BASE.saturating_add(u32::try_from(index).unwrap_or(u32::MAX))
}

/// `\dt` and `\d` without a name: Schema, Name, Type, Owner.
fn list_relations(sql: &str, ctx: &Context<'_>, tables: &[String]) -> Outcome<Text> {
    // `\dv`, `\di`, `\ds` ask for other kinds: we only have tables.
    let kinds = sql
        .split("c.relkind IN (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or("");
    let wants_tables = kinds.contains("'r'");
    let pattern = quoted_after(sql, "c.relname OPERATOR(pg_catalog.~) ");
    let data = tables
        .iter()
        .filter(|_| wants_tables)
        .filter(|t| pattern.as_deref().is_none_or(|p| regex_match(p, t)))
        .map(|t| {
            vec![
                Some("public".into()),
                Some(t.clone()),
                Some("table".into()),
                Some(ctx.user.to_string()),
            ]
        })
        .collect();
    rows(&["Schema", "Name", "Type", "Owner"], data)
}

fn relation_info(t: &TableDesc) -> Outcome<Text> {
    let has_index = !t.primary_key.is_empty() || !t.indexes.is_empty();
    let s = |v: &str| Some(v.to_string());
    let b = |v: bool| s(if v { "t" } else { "f" });
    rows(
        &[
            "relchecks",
            "relkind",
            "relhasindex",
            "relhasrules",
            "relhastriggers",
            "relrowsecurity",
            "relforcerowsecurity",
            "relhasoids",
            "relispartition",
            "?column?",
            "reltablespace",
            "reloftype",
            "relpersistence",
            "relreplident",
            "amname",
        ],
        vec![vec![
            s("0"),
            s("r"),
            b(has_index),
            b(false),
            b(false),
            b(false),
            b(false),
            b(false),
            b(false),
            s(""),
            s("0"),
            s(""),
            s("p"),
            s("d"),
            s("heap"),
        ]],
    )
}

fn attributes(t: &TableDesc) -> Outcome<Text> {
    let data = t
        .columns
        .iter()
        .map(|c| {
            let not_null = !c.nullable || t.primary_key.contains(&c.name);
            vec![
                Some(c.name.clone()),
                Some(c.type_name.clone()),
                c.default.clone(),
                Some(if not_null { "t" } else { "f" }.into()),
                None,
                Some(String::new()),
                Some(String::new()),
            ]
        })
        .collect();
    rows(
        &[
            "attname",
            "format_type",
            "pg_get_expr",
            "attnotnull",
            "attcollation",
            "attidentity",
            "attgenerated",
        ],
        data,
    )
}

/// One row per index, primary key first, as psql's footer "Indexes:" wants them.
fn indexes(t: &TableDesc) -> Outcome<Text> {
    let s = |v: &str| Some(v.to_string());
    let b = |v: bool| s(if v { "t" } else { "f" });
    let mut data = Vec::new();
    if !t.primary_key.is_empty() {
        let cols = t.primary_key.join(", ");
        let name = format!("{}_pkey", t.name);
        data.push(vec![
            s(&name),
            b(true),
            b(true),
            b(false),
            b(true),
            Some(format!(
                "CREATE UNIQUE INDEX {name} ON public.{} USING btree ({cols})",
                t.name
            )),
            Some(format!("PRIMARY KEY ({cols})")),
            s("p"),
            b(false),
            b(false),
            b(false),
            s("0"),
        ]);
    }
    let mut others: Vec<_> = t.indexes.iter().collect();
    others.sort_by(|a, b| a.name.cmp(&b.name));
    for ix in others {
        let cols = ix.columns.join(", ");
        let unique = if ix.unique { "UNIQUE " } else { "" };
        data.push(vec![
            s(&ix.name),
            b(false),
            b(ix.unique),
            b(false),
            b(true),
            Some(format!(
                "CREATE {unique}INDEX {} ON public.{} USING btree ({cols})",
                ix.name, t.name
            )),
            None,
            None,
            b(false),
            b(false),
            b(false),
            s("0"),
        ]);
    }
    rows(
        &[
            "relname",
            "indisprimary",
            "indisunique",
            "indisclustered",
            "indisvalid",
            "pg_get_indexdef",
            "pg_get_constraintdef",
            "contype",
            "condeferrable",
            "condeferred",
            "indisreplident",
            "reltablespace",
        ],
        data,
    )
}

/// The single-quoted literal right after `marker` (psql doubles quotes inside).
fn quoted_after(sql: &str, marker: &str) -> Option<String> {
    let rest = &sql[sql.find(marker)? + marker.len()..];
    let rest = rest.strip_prefix('\'')?;
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            if chars.peek() == Some(&'\'') {
                chars.next();
                out.push('\'');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// Matches the regular expressions psql builds from `\d` patterns: `^(...)$` around
/// literals, `.` (psql's `?`), `.*` (psql's `*`), `\` escapes, and `|` between alternatives.
pub fn regex_match(pattern: &str, name: &str) -> bool {
    let inner = pattern
        .strip_prefix("^(")
        .and_then(|p| p.strip_suffix(")$"))
        .unwrap_or(pattern);
    split_alternatives(inner)
        .iter()
        .any(|alt| glob(&tokens(alt), name.as_bytes()))
}

fn split_alternatives(p: &str) -> Vec<String> {
    let mut alts = vec![String::new()];
    let mut escaped = false;
    for c in p.chars() {
        match c {
            '|' if !escaped => alts.push(String::new()),
            _ => {
                escaped = c == '\\' && !escaped;
                if let Some(last) = alts.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    alts
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Lit(u8),
    Any,
    AnyRun,
}

fn tokens(p: &str) -> Vec<Tok> {
    let b = p.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 < b.len() => {
                out.push(Tok::Lit(b[i + 1]));
                i += 2;
            }
            b'.' if b.get(i + 1) == Some(&b'*') => {
                out.push(Tok::AnyRun);
                i += 2;
            }
            b'.' => {
                out.push(Tok::Any);
                i += 1;
            }
            c => {
                out.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    out
}

fn glob(p: &[Tok], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((Tok::AnyRun, rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((Tok::Any, rest)) => !s.is_empty() && glob(rest, &s[1..]),
        Some((Tok::Lit(c), rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn psql_patterns() {
        assert!(regex_match("^(t)$", "t"));
        assert!(!regex_match("^(t)$", "tt"));
        assert!(regex_match("^(t.*)$", "things"));
        assert!(regex_match("^(a.c)$", "abc"));
        assert!(regex_match("^(a\\.c)$", "a.c"));
        assert!(!regex_match("^(a\\.c)$", "abc"));
        assert!(regex_match("^(x|y)$", "y"));
    }

    #[test]
    fn quoted_literals() {
        let sql = "WHERE c.relname OPERATOR(pg_catalog.~) '^(it''s)$' COLLATE";
        assert_eq!(
            quoted_after(sql, "OPERATOR(pg_catalog.~) ").unwrap(),
            "^(it's)$"
        );
        assert_eq!(
            quoted_after("WHERE c.oid = '16384';", "c.oid = ").unwrap(),
            "16384"
        );
    }

    #[test]
    fn normalising() {
        assert_eq!(normalise("  SELECT\n  version() ;; "), "select version()");
    }
}
