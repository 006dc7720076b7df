//! Fuzz-style properties: random SQL-ish strings, mutated valid statements and random bytes
//! go through `Session::execute`; nothing panics and every error carries a 5-character
//! SQLSTATE.
#![allow(clippy::unwrap_used)]

mod common;

use proptest::prelude::*;

const FRAGMENTS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "t",
    "u",
    "a",
    "b",
    "c",
    "*",
    ",",
    "(",
    ")",
    "1",
    "0",
    "-1",
    "2147483647",
    "'x'",
    "NULL",
    "=",
    "<",
    ">",
    "<>",
    "+",
    "-",
    "/",
    "%",
    "||",
    "AND",
    "OR",
    "NOT",
    "IN",
    "EXISTS",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "GROUP BY",
    "ORDER BY",
    "HAVING",
    "LIMIT",
    "OFFSET",
    "UNION",
    "JOIN",
    "LEFT JOIN",
    "ON",
    "count(*)",
    "sum(a)",
    "avg(b)",
    "min(c)",
    "abs(a)",
    "coalesce(a, b)",
    "CAST(a AS TEXT)",
    "::int",
    "BETWEEN",
    "IS NULL",
    "DISTINCT",
    "AS",
    "x",
    "INSERT INTO t VALUES",
    "UPDATE t SET a =",
    "DELETE FROM t",
    "CREATE TABLE",
    "DROP TABLE",
    "CREATE INDEX i ON t (a)",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    ";",
    "(SELECT a FROM u)",
    "generate_series(1, 5)",
    "1.5",
    "true",
];

fn sql_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 1..24).prop_map(|v| v.join(" "))
}

const VALID: &[&str] = &[
    "SELECT a, b FROM t WHERE a > 1 ORDER BY b DESC LIMIT 3",
    "SELECT count(*), sum(b) FROM t GROUP BY a HAVING count(*) > 0",
    "SELECT t.a, u.c FROM t LEFT JOIN u ON t.a = u.a WHERE u.c IS NULL",
    "INSERT INTO t VALUES (7, 'seven', 7.5)",
    "UPDATE t SET b = b || 'x' WHERE a = 2",
    "SELECT (SELECT max(c) FROM u WHERE u.a = t.a) FROM t",
    "SELECT a FROM t UNION SELECT a FROM u EXCEPT SELECT 3",
];

/// A valid statement with one character replaced, removed or duplicated.
fn mutated() -> impl Strategy<Value = String> {
    (
        prop::sample::select(VALID),
        any::<usize>(),
        any::<char>(),
        0..3u8,
    )
        .prop_map(|(s, at, c, how)| {
            let mut chars: Vec<char> = s.chars().collect();
            let i = at % chars.len();
            match how {
                0 => chars[i] = c,
                1 => {
                    chars.remove(i);
                }
                _ => chars.insert(i, chars[i]),
            }
            chars.into_iter().collect()
        })
}

fn check(session: &mut mantis_sql::Session, sql: &str) {
    if let Err(e) = common::block_on(session.execute(sql)) {
        assert_eq!(e.sqlstate.len(), 5, "{sql:?}: {e:?}");
        assert!(
            e.sqlstate.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{sql:?}: {e:?}"
        );
    }
    // Leave no transaction open between cases.
    let _ = common::block_on(session.execute("ROLLBACK"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_input_never_panics(soup in sql_soup(), bad in mutated(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let (engine, sql, _) = common::setup(2);
        let mut s = sql.session();
        common::run(&mut s, "CREATE TABLE t (a INT PRIMARY KEY, b TEXT, c REAL); CREATE TABLE u (a INT, c INT)");
        common::run(&mut s, "INSERT INTO t VALUES (1, 'one', 1), (2, 'two', NULL); INSERT INTO u VALUES (1, 10), (3, NULL)");
        check(&mut s, &soup);
        check(&mut s, &bad);
        check(&mut s, &String::from_utf8_lossy(&bytes));
        drop(s);
        engine.shutdown().unwrap();
    }
}
