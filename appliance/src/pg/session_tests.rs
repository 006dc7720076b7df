//! The state machine driven byte by byte with a tiny in-test SQL backend: startup, auth,
//! simple and extended query, transaction status, errors, limits, and psql's catalog queries.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::auth::{md5_response, AuthMethod};
use super::backend::*;
use super::codec::{Format, PROTOCOL_V3, SSL_REQUEST_CODE};
use super::error::PgError;
use super::session::{Flow, Progress, Session, Settings};

/// An int4 value or NULL.
#[derive(Debug, Clone, PartialEq)]
struct Int(Option<i32>);

impl WireValue for Int {
    fn to_text(&self) -> Option<String> {
        self.0.map(|v| v.to_string())
    }
    fn to_binary(&self) -> Option<Vec<u8>> {
        self.0.map(|v| v.to_be_bytes().to_vec())
    }
}

fn int_col(name: &str) -> ColumnDesc {
    ColumnDesc {
        name: name.into(),
        type_oid: 23,
        type_len: 4,
    }
}

/// Understands a handful of fixed statements; enough to exercise every protocol path.
#[derive(Default)]
struct Toy {
    in_txn: bool,
    tables: BTreeMap<String, TableDesc>,
}

impl SqlBackend for Toy {
    type Value = Int;
    type Prepared = String;

    async fn execute(&mut self, sql: &str) -> Result<Vec<Outcome<Int>>, PgError> {
        let mut out = Vec::new();
        for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            out.push(match stmt {
                "begin" => {
                    self.in_txn = true;
                    Outcome::Command {
                        tag: "BEGIN".into(),
                    }
                }
                "commit" | "rollback" | "ROLLBACK" => {
                    self.in_txn = false;
                    Outcome::Command {
                        tag: "COMMIT".into(),
                    }
                }
                "insert" => Outcome::Command {
                    tag: "INSERT 0 1".into(),
                },
                _ if stmt.starts_with("rows ") => {
                    let n: i32 = stmt[5..].parse().unwrap();
                    Outcome::Rows {
                        columns: vec![int_col("n")],
                        rows: (0..n).map(|i| vec![Int(Some(i))]).collect(),
                    }
                }
                _ => {
                    return Err(PgError::error("42601", "syntax error at or near \"x\"")
                        .with_position(Some(3)))
                }
            });
        }
        Ok(out)
    }

    async fn prepare(
        &mut self,
        sql: &str,
        _param_oids: &[u32],
    ) -> Result<(String, StatementDesc), PgError> {
        match sql {
            "select $1" => Ok((
                sql.into(),
                StatementDesc {
                    param_oids: vec![23],
                    columns: vec![int_col("v")],
                },
            )),
            "insert $1" => Ok((
                sql.into(),
                StatementDesc {
                    param_oids: vec![23],
                    columns: vec![],
                },
            )),
            _ => Err(PgError::error("42P01", "relation \"nope\" does not exist")),
        }
    }

    async fn execute_prepared(
        &mut self,
        prepared: &String,
        params: &[Param],
    ) -> Result<Outcome<Int>, PgError> {
        let p = &params[0];
        let v = match (&p.bytes, p.format) {
            (None, _) => None,
            (Some(b), Format::Text) => Some(
                std::str::from_utf8(b)
                    .unwrap()
                    .parse::<i32>()
                    .map_err(|_| {
                        PgError::error("22P02", "invalid input syntax for type integer")
                    })?,
            ),
            (Some(b), Format::Binary) => Some(i32::from_be_bytes(b[..4].try_into().unwrap())),
        };
        if prepared == "insert $1" {
            return Ok(Outcome::Command {
                tag: "INSERT 0 1".into(),
            });
        }
        let n = v.unwrap_or(0).max(0);
        Ok(Outcome::Rows {
            columns: vec![int_col("v")],
            rows: (0..n).map(|i| vec![Int(Some(i + 100))]).collect(),
        })
    }

    fn in_transaction(&self) -> bool {
        self.in_txn
    }

    async fn list_tables(&self) -> Result<Vec<String>, PgError> {
        Ok(self.tables.keys().cloned().collect())
    }

    async fn describe_table(&self, name: &str) -> Result<Option<TableDesc>, PgError> {
        Ok(self.tables.get(name).cloned())
    }
}

fn settings(password: Option<&str>, method: AuthMethod) -> Settings {
    Settings {
        password: password.map(str::to_string),
        auth_method: method,
        message_bytes_max: 4096,
        process_id: 42,
        secret_key: 7,
    }
}

fn session(password: Option<&str>) -> Session<Toy> {
    let mut toy = Toy::default();
    toy.tables.insert(
        "t".into(),
        TableDesc {
            name: "t".into(),
            columns: vec![
                TableColumn {
                    name: "id".into(),
                    type_name: "integer".into(),
                    nullable: false,
                    default: None,
                },
                TableColumn {
                    name: "name".into(),
                    type_name: "text".into(),
                    nullable: true,
                    default: Some("'x'::text".into()),
                },
            ],
            primary_key: vec!["id".into()],
            indexes: vec![TableIndex {
                name: "t_name".into(),
                columns: vec!["name".into()],
                unique: false,
            }],
        },
    );
    Session::new(toy, settings(password, AuthMethod::Md5), Box::new(()))
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn startup(user: &str) -> Vec<u8> {
    let mut body = PROTOCOL_V3.to_be_bytes().to_vec();
    body.extend_from_slice(format!("user\0{user}\0\0").as_bytes());
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', format!("{sql}\0").as_bytes())
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = format!("{name}\0{sql}\0").into_bytes();
    b.extend_from_slice(&0i16.to_be_bytes());
    msg(b'P', &b)
}

fn bind(portal: &str, stmt: &str, param: Option<&[u8]>, binary: bool) -> Vec<u8> {
    let fmt: i16 = if binary { 1 } else { 0 };
    let mut b = format!("{portal}\0{stmt}\0").into_bytes();
    b.extend_from_slice(&1i16.to_be_bytes());
    b.extend_from_slice(&fmt.to_be_bytes());
    b.extend_from_slice(&1i16.to_be_bytes());
    match param {
        None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(p) => {
            b.extend_from_slice(&(p.len() as i32).to_be_bytes());
            b.extend_from_slice(p);
        }
    }
    b.extend_from_slice(&1i16.to_be_bytes());
    b.extend_from_slice(&fmt.to_be_bytes());
    msg(b'B', &b)
}

fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend_from_slice(format!("{name}\0").as_bytes());
    msg(b'D', &b)
}

fn execute(portal: &str, rows: i32) -> Vec<u8> {
    let mut b = format!("{portal}\0").into_bytes();
    b.extend_from_slice(&rows.to_be_bytes());
    msg(b'E', &b)
}

fn sync() -> Vec<u8> {
    msg(b'S', b"")
}

/// Feeds all of `input` (in one buffer) and returns the messages sent and whether it closed.
fn feed(s: &mut Session<Toy>, input: &[u8]) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut start = 0;
    let mut closed = false;
    while start < input.len() {
        match futures::executor::block_on(s.step(&input[start..])) {
            Progress::Need(n) => panic!("incomplete input: needs {n}"),
            Progress::Consumed(n, flow) => {
                start += n;
                if flow == Flow::Close {
                    closed = true;
                    break;
                }
            }
        }
    }
    let out = std::mem::take(&mut s.out);
    (split(&out), closed)
}

fn split(mut out: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut msgs = Vec::new();
    while !out.is_empty() {
        if out[0] == b'N' && out.len() == 1 {
            msgs.push((b'N', vec![]));
            break;
        }
        let len = i32::from_be_bytes(out[1..5].try_into().unwrap()) as usize;
        msgs.push((out[0], out[5..1 + len].to_vec()));
        out = &out[1 + len..];
    }
    msgs
}

fn tags(msgs: &[(u8, Vec<u8>)]) -> String {
    msgs.iter().map(|(t, _)| *t as char).collect()
}

fn field(body: &[u8], code: u8) -> Option<String> {
    let mut i = 0;
    while i < body.len() && body[i] != 0 {
        let end = i + 1 + body[i + 1..].iter().position(|&b| b == 0).unwrap();
        if body[i] == code {
            return Some(String::from_utf8_lossy(&body[i + 1..end]).into_owned());
        }
        i = end + 1;
    }
    None
}

fn ready(user: &str) -> Session<Toy> {
    let mut s = session(None);
    let (m, closed) = feed(&mut s, &startup(user));
    assert!(!closed);
    assert!(s.is_ready());
    assert_eq!(m.last().unwrap(), &(b'Z', b"I".to_vec()));
    s
}

#[test]
fn ssl_refused_then_trusted_startup() {
    let mut s = session(None);
    let mut ssl = 8i32.to_be_bytes().to_vec();
    ssl.extend_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
    let (m, _) = feed(&mut s, &ssl);
    assert_eq!(tags(&m), "N");
    let (m, closed) = feed(&mut s, &startup("alice"));
    assert!(!closed);
    let t = tags(&m);
    assert!(t.starts_with("RS") && t.ends_with("KZ"), "{t}");
    assert_eq!(m[0].1, 0i32.to_be_bytes().to_vec(), "AuthenticationOk");
    let params: Vec<String> = m
        .iter()
        .filter(|(t, _)| *t == b'S')
        .map(|(_, b)| String::from_utf8_lossy(b).replace('\0', "="))
        .collect();
    assert!(params.iter().any(|p| p.starts_with("server_version=15.")));
    assert!(params.contains(&"integer_datetimes=on=".to_string()));
    assert!(params.contains(&"client_encoding=UTF8=".to_string()));
}

#[test]
fn unknown_protocol_version_is_refused_and_closed() {
    let mut s = session(None);
    let mut body = (2i32 << 16).to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0a\0\0");
    let mut pkt = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    pkt.extend_from_slice(&body);
    let (m, closed) = feed(&mut s, &pkt);
    assert!(closed);
    assert_eq!(tags(&m), "E");
    assert_eq!(field(&m[0].1, b'C').unwrap(), "0A000");
    assert_eq!(field(&m[0].1, b'S').unwrap(), "FATAL");
}

#[test]
fn md5_password_right_and_wrong() {
    for (given, ok) in [("s3cret", true), ("wrong", false)] {
        let mut s = session(Some("s3cret"));
        let (m, _) = feed(&mut s, &startup("bob"));
        assert_eq!(tags(&m), "R");
        assert_eq!(&m[0].1[..4], &5i32.to_be_bytes(), "md5 requested");
        let salt: [u8; 4] = m[0].1[4..8].try_into().unwrap();
        let mut answer = md5_response("bob", given, &salt).into_bytes();
        answer.push(0);
        let (m, closed) = feed(&mut s, &msg(b'p', &answer));
        if ok {
            assert!(!closed && s.is_ready());
            assert_eq!(tags(&m).chars().last(), Some('Z'));
        } else {
            assert!(closed && !s.is_ready());
            assert_eq!(field(&m[0].1, b'C').unwrap(), "28P01");
        }
    }
}

#[test]
fn queries_before_authentication_are_refused() {
    let mut s = session(Some("pw"));
    feed(&mut s, &startup("bob"));
    let (m, closed) = feed(&mut s, &query("rows 1"));
    assert!(closed);
    assert_eq!(field(&m[0].1, b'C').unwrap(), "08P01");
}

#[test]
fn simple_query_results_errors_and_empty() {
    let mut s = ready("u");
    let (m, _) = feed(&mut s, &query("rows 2; insert"));
    assert_eq!(tags(&m), "TDDCCZ");
    assert_eq!(m[3].1, b"SELECT 2\0");
    assert_eq!(m[4].1, b"INSERT 0 1\0");
    let (m, _) = feed(&mut s, &query(" ; "));
    assert_eq!(tags(&m), "IZ");
    let (m, _) = feed(&mut s, &query("bogus"));
    assert_eq!(tags(&m), "EZ");
    assert_eq!(field(&m[0].1, b'C').unwrap(), "42601");
    assert_eq!(field(&m[0].1, b'P').unwrap(), "3");
    assert_eq!(field(&m[0].1, b'S').unwrap(), "ERROR");
}

#[test]
fn transaction_status_and_failed_block() {
    let mut s = ready("u");
    let (m, _) = feed(&mut s, &query("begin"));
    assert_eq!(m.last().unwrap().1, b"T");
    let (m, _) = feed(&mut s, &query("bogus"));
    assert_eq!(m.last().unwrap().1, b"E");
    let (m, _) = feed(&mut s, &query("rows 1"));
    assert_eq!(field(&m[0].1, b'C').unwrap(), "25P02");
    assert_eq!(m.last().unwrap().1, b"E");
    let (m, _) = feed(&mut s, &query("commit"));
    assert_eq!(tags(&m), "CZ");
    assert_eq!(m[0].1, b"ROLLBACK\0", "COMMIT of a failed block rolls back");
    assert_eq!(m.last().unwrap().1, b"I");
}

#[test]
fn extended_query_named_statement_binary_and_text() {
    let mut s = ready("u");
    let mut batch = parse("s1", "select $1");
    batch.extend(describe(b'S', "s1"));
    batch.extend(bind("", "s1", Some(&2i32.to_be_bytes()), true));
    batch.extend(describe(b'P', ""));
    batch.extend(execute("", 0));
    batch.extend(sync());
    let (m, _) = feed(&mut s, &batch);
    assert_eq!(tags(&m), "1tT2TDDCZ");
    assert_eq!(
        m[1].1,
        [&1i16.to_be_bytes()[..], &23u32.to_be_bytes()].concat()
    );
    // Describe portal reports binary format (last two bytes of the only field).
    assert_eq!(&m[4].1[m[4].1.len() - 2..], &1i16.to_be_bytes());
    assert_eq!(
        m[5].1,
        [
            &1i16.to_be_bytes()[..],
            &4i32.to_be_bytes(),
            &100i32.to_be_bytes()
        ]
        .concat()
    );
    assert_eq!(m[7].1, b"SELECT 2\0");
    // The named statement stays; text format this time.
    let mut batch = bind("", "s1", Some(b"1"), false);
    batch.extend(execute("", 0));
    batch.extend(sync());
    let (m, _) = feed(&mut s, &batch);
    assert_eq!(tags(&m), "2DCZ");
    assert_eq!(
        m[1].1,
        [&1i16.to_be_bytes()[..], &3i32.to_be_bytes(), b"100"].concat()
    );
}

#[test]
fn portal_row_limit_suspends() {
    let mut s = ready("u");
    let mut batch = parse("", "select $1");
    batch.extend(bind("p", "", Some(b"3"), false));
    batch.extend(execute("p", 2));
    batch.extend(execute("p", 2));
    batch.extend(sync());
    let (m, _) = feed(&mut s, &batch);
    assert_eq!(tags(&m), "12DDsDCZ");
    assert_eq!(m[6].1, b"SELECT 3\0");
}

#[test]
fn error_in_extended_batch_skips_to_sync() {
    let mut s = ready("u");
    let mut batch = parse("", "nope");
    batch.extend(bind("", "", Some(b"1"), false));
    batch.extend(execute("", 0));
    batch.extend(sync());
    batch.extend(query("rows 1"));
    let (m, _) = feed(&mut s, &batch);
    assert_eq!(tags(&m), "EZTDCZ");
    assert_eq!(field(&m[0].1, b'C').unwrap(), "42P01");
}

#[test]
fn bind_errors() {
    let mut s = ready("u");
    let mut batch = bind("", "missing", Some(b"1"), false);
    batch.extend(sync());
    let (m, _) = feed(&mut s, &batch);
    assert_eq!(field(&m[0].1, b'C').unwrap(), "26000");
    let mut batch = parse("s", "select $1");
    batch.extend(parse("s", "select $1"));
    batch.extend(sync());
    let (m, _) = feed(&mut s, &batch);
    assert_eq!(tags(&m), "1EZ");
    assert_eq!(field(&m[1].1, b'C').unwrap(), "42P05");
    // Wrong parameter count.
    let mut b = b"\0s\0".to_vec();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    let mut batch = msg(b'B', &b);
    batch.extend(sync());
    let (m, _) = feed(&mut s, &batch);
    assert_eq!(field(&m[0].1, b'C').unwrap(), "08P01");
    assert_eq!(tags(&m), "EZ");
}

#[test]
fn oversized_message_and_garbage_close_the_connection() {
    let mut s = ready("u");
    let big = query(&"x".repeat(5000));
    let (m, closed) = futures::executor::block_on(async {
        match s.step(&big[..5]).await {
            Progress::Consumed(_, Flow::Close) => (split(&s.out), true),
            other => panic!("{other:?}"),
        }
    });
    assert!(closed);
    assert_eq!(field(&m[0].1, b'C').unwrap(), "08P01");
    let mut s = ready("u");
    let (m, closed) = feed(&mut s, b"GET / HTTP/1.1\r\n\r\n");
    assert!(closed);
    assert_eq!(tags(&m), "E");
}

#[test]
fn terminate_closes_quietly() {
    let mut s = ready("u");
    let (m, closed) = feed(&mut s, &msg(b'X', b""));
    assert!(closed && m.is_empty());
}

#[test]
fn server_questions_answered_by_the_wire_layer() {
    let mut s = ready("u");
    let (m, _) = feed(&mut s, &query("SELECT version();"));
    assert_eq!(tags(&m), "TDCZ");
    assert!(String::from_utf8_lossy(&m[1].1).contains("PostgreSQL 15"));
    let (m, _) = feed(&mut s, &query("SET extra_float_digits = 3"));
    assert_eq!(m[0].1, b"SET\0");
    let (m, _) = feed(&mut s, &query("show nosuch"));
    assert_eq!(field(&m[0].1, b'C').unwrap(), "42704");
    let (m, _) = feed(&mut s, &query("SHOW client_encoding"));
    assert!(String::from_utf8_lossy(&m[1].1).contains("UTF8"));
}

const PSQL_DT: &str = "SELECT n.nspname as \"Schema\",\n  c.relname as \"Name\",\n  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' END as \"Type\",\n  pg_catalog.pg_get_userbyid(c.relowner) as \"Owner\"\nFROM pg_catalog.pg_class c\n     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\nWHERE c.relkind IN ('r','p','')\n      AND n.nspname <> 'pg_catalog'\n  AND pg_catalog.pg_table_is_visible(c.oid)\nORDER BY 1,2;";

#[test]
fn psql_dt_and_d_table() {
    let mut s = ready("alice");
    let (m, _) = feed(&mut s, &query(PSQL_DT));
    assert_eq!(tags(&m), "TDCZ");
    assert_eq!(
        m[1].1,
        [
            &4i16.to_be_bytes()[..],
            &6i32.to_be_bytes(),
            b"public",
            &1i32.to_be_bytes(),
            b"t",
            &5i32.to_be_bytes(),
            b"table",
            &5i32.to_be_bytes(),
            b"alice"
        ]
        .concat()
    );
    let lookup = "SELECT c.oid,\n  n.nspname,\n  c.relname\nFROM pg_catalog.pg_class c\n     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\nWHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default\n  AND pg_catalog.pg_table_is_visible(c.oid)\nORDER BY 2, 3;";
    let (m, _) = feed(&mut s, &query(lookup));
    assert_eq!(tags(&m), "TDCZ");
    assert!(String::from_utf8_lossy(&m[1].1).contains("16384"));
    let attrs = "SELECT a.attname,\n  pg_catalog.format_type(a.atttypid, a.atttypmod)\nFROM pg_catalog.pg_attribute a\nWHERE a.attrelid = '16384' AND a.attnum > 0 AND NOT a.attisdropped\nORDER BY a.attnum;";
    let (m, _) = feed(&mut s, &query(attrs));
    assert_eq!(tags(&m), "TDDCZ");
    let row = String::from_utf8_lossy(&m[1].1).into_owned();
    assert!(row.contains("id") && row.contains("integer"), "{row}");
    let idx = "SELECT c2.relname, i.indisprimary FROM pg_catalog.pg_class c, pg_catalog.pg_class c2, pg_catalog.pg_index i WHERE c.oid = '16384' AND c.oid = i.indrelid";
    let (m, _) = feed(&mut s, &query(idx));
    assert_eq!(tags(&m), "TDDCZ");
    assert!(String::from_utf8_lossy(&m[1].1).contains("PRIMARY KEY (id)"));
    let (m, _) = feed(
        &mut s,
        &query("SELECT pol.polname FROM pg_catalog.pg_policy pol WHERE pol.polrelid = '16384'"),
    );
    assert_eq!(tags(&m), "TCZ");
}
