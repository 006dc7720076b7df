//! Runs every sqllogictest file under tests/slt/ (SQLite's corpus sample) against the
//! engine under the label `postgresql`, and fails listing every failing record (file:line).
//! Records the engine does not support are listed, with reasons, in docs/sql.md and in
//! `UNSUPPORTED` below; nothing else is skipped.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use mantis_sql::{StatementResult, Value};
use sqllogictest::{Condition, DBOutput, DefaultColumnType, Record};

/// Records skipped on purpose: (file suffix, line, reason). Keep in sync with docs/sql.md.
const UNSUPPORTED: &[(&str, u32, &str)] = &[
    ("evidence/in1.test", 313, "x'...' is a bit string in PostgreSQL, not a blob; comparing it with an integer column is an error"),
    ("evidence/in1.test", 324, "x'...' is a bit string in PostgreSQL, not a blob; comparing it with an integer column is an error"),
    ("evidence/in2.test", 81, "PostgreSQL rejects an empty IN list as a syntax error"),
    ("evidence/in2.test", 88, "PostgreSQL rejects an empty IN list as a syntax error"),
    ("evidence/in2.test", 95, "PostgreSQL rejects an empty IN list as a syntax error"),
    ("evidence/in2.test", 102, "PostgreSQL rejects an empty IN list as a syntax error"),
    ("evidence/in2.test", 109, "PostgreSQL rejects an empty IN list as a syntax error"),
    ("evidence/in2.test", 119, "PostgreSQL rejects an empty IN list as a syntax error"),
    ("evidence/in2.test", 129, "PostgreSQL rejects an empty IN list as a syntax error"),
    ("evidence/in2.test", 139, "PostgreSQL rejects an empty IN list as a syntax error"),
    ("evidence/slt_lang_reindex.test", 37, "REINDEX without INDEX/TABLE is SQLite syntax; indexes here never need rebuilding"),
    ("evidence/slt_lang_replace.test", 38, "REPLACE INTO / INSERT OR REPLACE are SQLite syntax (PostgreSQL: INSERT ... ON CONFLICT DO UPDATE)"),
    ("evidence/slt_lang_replace.test", 48, "REPLACE INTO / INSERT OR REPLACE are SQLite syntax (PostgreSQL: INSERT ... ON CONFLICT DO UPDATE)"),
    ("evidence/slt_lang_replace.test", 58, "REPLACE INTO / INSERT OR REPLACE are SQLite syntax (PostgreSQL: INSERT ... ON CONFLICT DO UPDATE)"),
    ("evidence/slt_lang_replace.test", 68, "REPLACE INTO / INSERT OR REPLACE are SQLite syntax (PostgreSQL: INSERT ... ON CONFLICT DO UPDATE)"),
    ("evidence/slt_lang_replace.test", 42, "reads the row a REPLACE statement (SQLite syntax) would have written"),
    ("evidence/slt_lang_replace.test", 51, "reads the row a REPLACE statement (SQLite syntax) would have written"),
    ("evidence/slt_lang_replace.test", 62, "reads the row a REPLACE statement (SQLite syntax) would have written"),
    ("evidence/slt_lang_replace.test", 71, "reads the row a REPLACE statement (SQLite syntax) would have written"),
    ("evidence/slt_lang_update.test", 88, "PostgreSQL rejects several assignments to one column (42601); SQLite keeps the last"),
    ("evidence/slt_lang_update.test", 98, "reads the result of that SQLite-only UPDATE"),
    ("evidence/slt_lang_update.test", 104, "reads the result of that SQLite-only UPDATE"),
];

#[derive(Debug)]
struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

type Reply = Result<Vec<StatementResult>, String>;

/// A synchronous DB: each statement goes over a channel to a glommio executor thread that
/// owns the SQL session (its futures are not Send).
struct Db {
    tx: flume::Sender<(String, flume::Sender<Reply>)>,
    /// The column types the running record declares ("query IRT"): the corpus formats
    /// values by them, as its ODBC-based PostgreSQL runner did.
    declared: DeclaredTypes,
}

impl Db {
    fn start(engine: mantis_engine::EngineHandle, declared: DeclaredTypes) -> Db {
        let (tx, rx) = flume::bounded::<(String, flume::Sender<Reply>)>(1);
        std::thread::spawn(move || {
            mantis_storage::rt::run_local(|| async move {
                let sql = mantis_sql::SqlEngine::open(engine).await.unwrap();
                let mut session = sql.session();
                while let Ok((text, reply)) = rx.recv_async().await {
                    let r = session.execute(&text).await.map_err(|e| e.to_string());
                    let _ = reply.send(r);
                }
            })
            .unwrap();
        });
        Db { tx, declared }
    }
}

type DeclaredTypes = std::sync::Arc<std::sync::Mutex<Vec<DefaultColumnType>>>;

/// Formats a value for a column declared `ty`: I truncates numbers to integers, R prints
/// three decimals, T prints text.
fn format_as(v: &Value, ty: Option<&DefaultColumnType>) -> String {
    match (ty, v) {
        (_, Value::Null) => "NULL".into(),
        (
            Some(DefaultColumnType::Integer),
            Value::Float32(_) | Value::Float64(_) | Value::Numeric(_),
        ) => {
            format!("{}", v.as_f64().unwrap_or(0.0).trunc() as i64)
        }
        (
            Some(DefaultColumnType::FloatingPoint),
            Value::Int16(_) | Value::Int32(_) | Value::Int64(_),
        ) => {
            format!("{:.3}", v.as_f64().unwrap_or(0.0))
        }
        (
            Some(DefaultColumnType::Text),
            Value::Float32(_) | Value::Float64(_) | Value::Numeric(_),
        ) => v.to_pg_text().unwrap_or_default(),
        _ => format_value(v),
    }
}

fn format_value(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Float32(_) | Value::Float64(_) | Value::Numeric(_) => {
            format!("{:.3}", v.as_f64().unwrap_or(0.0))
        }
        Value::Bool(b) => if *b { "1" } else { "0" }.into(),
        Value::Text(s) if s.is_empty() => "(empty)".into(),
        other => other.to_pg_text().unwrap_or_default(),
    }
}

impl sqllogictest::DB for Db {
    type Error = Error;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Error> {
        let (rtx, rrx) = flume::bounded(1);
        self.tx
            .send((sql.to_string(), rtx))
            .map_err(|e| Error(e.to_string()))?;
        let results = rrx
            .recv()
            .map_err(|e| Error(e.to_string()))?
            .map_err(Error)?;
        match results.into_iter().last() {
            Some(StatementResult::Rows { columns, rows }) => Ok(DBOutput::Rows {
                types: columns.iter().map(|_| DefaultColumnType::Any).collect(),
                rows: {
                    let declared = self.declared.lock().unwrap().clone();
                    rows.iter()
                        .map(|r| {
                            r.iter()
                                .enumerate()
                                .map(|(i, v)| format_as(v, declared.get(i)))
                                .collect()
                        })
                        .collect()
                },
            }),
            _ => Ok(DBOutput::StatementComplete(0)),
        }
    }

    fn engine_name(&self) -> &str {
        "postgresql"
    }
}

/// Compares values regardless of layout: the corpus lists one value per line, other files
/// one row per line.
fn flat_validator(
    _n: sqllogictest::Normalizer,
    actual: &[Vec<String>],
    expected: &[String],
) -> bool {
    let a = actual
        .iter()
        .flatten()
        .flat_map(|v| v.split_ascii_whitespace());
    let e = expected.iter().flat_map(|v| v.split_ascii_whitespace());
    a.eq(e)
}

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            slt_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "test") {
            out.push(p);
        }
    }
}

/// Runs one file on a fresh engine; returns the failing records as "file:line: message".
fn run_file(path: &Path) -> (usize, Vec<String>) {
    let sim = mantis_storage::SimStorage::new(1);
    let engine = mantis_engine::Engine::open(common::sim_config(&sim, 2)).unwrap();
    let declared: DeclaredTypes = Default::default();
    let mut runner = sqllogictest::Runner::new(|| {
        let h = engine.handle();
        let d = declared.clone();
        async move { Ok::<_, Error>(Db::start(h, d)) }
    });
    runner.add_label("postgresql");
    // The corpus was generated with a threshold of 8 values; files may not say so.
    runner.with_hash_threshold(8);
    runner.with_validator(flat_validator);
    // The corpus has trailing comments on condition lines ("onlyif sqlite # why"), which the
    // crate's parser rejects; cut them (line numbers stay the same).
    let text: String = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| match l.find(" #") {
            Some(i) if l.starts_with("onlyif") || l.starts_with("skipif") => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let records =
        sqllogictest::parse_with_name::<DefaultColumnType>(&text, path.to_string_lossy()).unwrap();
    let name = path.to_string_lossy().to_string();
    let mut failures = Vec::new();
    let mut count = 0;
    let mut pending: Vec<Condition> = Vec::new();
    // The crate's parser leaves the conditions of a halt attached to the next record too.
    let mut consumed = 0usize;
    for mut record in records {
        if let Record::Statement { conditions, .. } | Record::Query { conditions, .. } = &mut record
        {
            conditions.drain(..consumed.min(conditions.len()));
            consumed = 0;
        }
        let (line, conditions) = match &record {
            Record::Statement {
                loc, conditions, ..
            }
            | Record::Query {
                loc, conditions, ..
            } => (Some(loc.line()), conditions.clone()),
            _ => (None, Vec::new()),
        };
        match &record {
            Record::Condition(c) => {
                pending.push(c.clone());
                continue;
            }
            Record::Halt { .. } => {
                // "onlyif mssql / halt" stops only that engine's run.
                if !pending.iter().any(skips_postgres) {
                    break;
                }
                consumed += pending.len();
                pending.clear();
                continue;
            }
            Record::Statement { .. } | Record::Query { .. } => pending.clear(),
            _ => {}
        }
        if let Some(l) = line {
            if conditions.iter().any(skips_postgres) {
                continue;
            }
            if UNSUPPORTED
                .iter()
                .any(|(f, ln, _)| name.ends_with(f) && *ln == l)
            {
                continue;
            }
            count += 1;
        }
        *declared.lock().unwrap() = match &record {
            Record::Query {
                expected: sqllogictest::QueryExpect::Results { types, .. },
                ..
            } => types.clone(),
            _ => Vec::new(),
        };
        if let Err(e) = runner.run(record) {
            let msg = e.to_string();
            let first: String = msg
                .lines()
                .collect::<Vec<_>>()
                .join(" | ")
                .chars()
                .take(1200)
                .collect();
            failures.push(format!("{name}:{}: {first}", line.unwrap_or(0)));
        }
    }
    drop(runner);
    engine.shutdown().unwrap();
    (count, failures)
}

fn skips_postgres(c: &Condition) -> bool {
    match c {
        Condition::OnlyIf { label } => label != "postgresql",
        Condition::SkipIf { label } => label == "postgresql",
    }
}

#[test]
fn sqllogictest_corpus() {
    mantis_storage::rt::raise_memlock_limit().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files = Vec::new();
    slt_files(&dir, &mut files);
    assert!(files.len() >= 13, "slt files missing: {files:?}");
    let only = std::env::var("SLT_FILTER").ok();
    let mut total = 0;
    let mut failures = Vec::new();
    for f in &files {
        if only
            .as_ref()
            .is_some_and(|o| !f.to_string_lossy().contains(o.as_str()))
        {
            continue;
        }
        let start = std::time::Instant::now();
        let (n, fails) = run_file(f);
        eprintln!(
            "{}: {} records, {} failed, {:?}",
            f.display(),
            n,
            fails.len(),
            start.elapsed()
        );
        total += n;
        failures.extend(fails);
    }
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    eprintln!("{} records, {} failed", total, failures.len());
    assert!(
        failures.is_empty(),
        "{} failing records:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
