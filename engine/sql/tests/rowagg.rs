//! Aggregates over row tables pushed down to the shards (issue 6): the results, and their
//! order, equal the whole-table path's on random data and queries; empty tables, NULL group
//! keys, every aggregate kind, a transaction's pending writes, errors, EXPLAIN.
//!
//! The whole-table path is reached through `(SELECT * FROM t OFFSET 0)`, which the
//! push-down does not take (its input is not a plain scan) and which yields the same rows in
//! the same order.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mantis_sql::{Session, StatementResult};
use proptest::prelude::*;

fn explain(s: &mut Session, q: &str) -> String {
    rows(s, &format!("EXPLAIN {q}"))
        .into_iter()
        .map(|r| r.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The query on the table itself (pushed down) and through the barrier (not pushed down).
fn both(q: &str) -> (String, String) {
    (
        q.replace("{T}", "t"),
        q.replace("{T}", "(SELECT * FROM t OFFSET 0) s"),
    )
}

fn text(r: Option<StatementResult>) -> Vec<Vec<String>> {
    match r {
        Some(StatementResult::Rows { rows, .. }) => rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|v| v.to_pg_text().unwrap_or_else(|| "NULL".into()))
                    .collect()
            })
            .collect(),
        other => panic!("{other:?}"),
    }
}

/// Runs `q` both ways and asserts the same rows in the same order, or the same error.
fn same(s: &mut Session, q: &str) -> Result<(), TestCaseError> {
    let (pushed, whole) = both(q);
    // A filter on the primary key becomes a key-range Index Scan, which is not pushed down.
    let ranged = explain(s, &pushed).contains("Index Scan");
    prop_assert!(
        ranged || explain(s, &pushed).contains("Partial HashAggregate on each shard"),
        "{} not pushed down:\n{}",
        pushed,
        explain(s, &pushed)
    );
    prop_assert!(!explain(s, &whole).contains("Partial"), "{}", whole);
    match (block_on(s.execute(&pushed)), block_on(s.execute(&whole))) {
        (Ok(mut a), Ok(mut b)) => prop_assert_eq!(text(a.pop()), text(b.pop()), "{}", q),
        (Err(a), Err(b)) => prop_assert_eq!(a.sqlstate, b.sqlstate, "{}", q),
        (a, b) => prop_assert!(false, "{q}: pushed {a:?} whole-table {b:?}"),
    }
    Ok(())
}

const COLS: &str =
    "k int PRIMARY KEY, g int, h text, x int, y bigint, n numeric, f double precision";

fn fill(s: &mut Session, rows: &[RowData]) {
    for chunk in rows.chunks(50) {
        let values = chunk
            .iter()
            .map(|(k, g, h, x, y, n)| {
                let o = |v: &Option<i32>| v.map_or("NULL".to_string(), |v| v.to_string());
                format!(
                    "({k}, {}, {}, {}, {y}, {n}.25, {}.5)",
                    o(g),
                    h.as_ref().map_or("NULL".to_string(), |h| format!("'{h}'")),
                    o(x),
                    n % 7
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        run(s, &format!("INSERT INTO t VALUES {values}"));
    }
}

type RowData = (i32, Option<i32>, Option<String>, Option<i32>, i64, i32);

fn data() -> impl Strategy<Value = Vec<RowData>> {
    prop::collection::btree_map(
        -500i32..500,
        (
            prop::option::weighted(0.8, 0i32..6),
            prop::option::weighted(0.8, "[a-c]{0,2}"),
            prop::option::weighted(0.9, -1000i32..1000),
            -(1i64 << 40)..(1i64 << 40),
            -50i32..50,
        ),
        0..300,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(k, (g, h, x, y, n))| (k, g, h, x, y, n))
            .collect()
    })
}

fn query() -> impl Strategy<Value = String> {
    let aggs = prop::sample::subsequence(
        vec![
            "count(*)",
            "count(x)",
            "count(h)",
            "sum(x)",
            "sum(y)",
            "sum(n)",
            "avg(x)",
            "avg(n)",
            "min(x)",
            "max(x)",
            "min(h)",
            "max(h)",
            "min(f)",
            "max(f)",
            "sum(x * 2 + k)",
            "max(CASE WHEN x > 0 THEN h END)",
        ],
        1..5,
    );
    let group = prop::sample::select(vec!["", "g", "h", "g, h", "x % 3", "g IS NULL", "k"]);
    let filter = prop::sample::select(vec![
        "",
        "WHERE x > 0",
        "WHERE g = 2 OR h LIKE 'a%'",
        "WHERE k < 0 AND x IS NOT NULL",
        "WHERE y > 0",
        "WHERE k > 10000",
    ]);
    (aggs, group, filter).prop_map(|(aggs, group, filter)| {
        if group.is_empty() {
            format!("SELECT {} FROM {{T}} {filter}", aggs.join(", "))
        } else {
            format!(
                "SELECT {group}, {} FROM {{T}} {filter} GROUP BY {group}",
                aggs.join(", ")
            )
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn pushed_down_equals_whole_table(rows in data(), queries in prop::collection::vec(query(), 1..10)) {
        let (_e, sql, _sim) = setup(2);
        let mut s = sql.session();
        run(&mut s, &format!("CREATE TABLE t ({COLS})"));
        fill(&mut s, &rows);
        for q in &queries {
            same(&mut s, q)?;
        }
    }
}

#[test]
fn empty_table_null_groups_and_every_aggregate_kind() {
    let (_e, sql, _sim) = setup(3);
    let mut s = sql.session();
    run(&mut s, &format!("CREATE TABLE t ({COLS})"));
    assert_eq!(
        rows(
            &mut s,
            "SELECT count(*), count(x), sum(x), avg(x), min(h), max(h) FROM t"
        ),
        vec![vec!["0", "0", "NULL", "NULL", "NULL", "NULL"]]
    );
    assert!(rows(&mut s, "SELECT g, count(*) FROM t GROUP BY g").is_empty());
    run(
        &mut s,
        "INSERT INTO t VALUES (1, NULL, 'b', 5, 10, 1.5, 1), (2, 1, NULL, NULL, 20, 2.5, 2), \
         (3, NULL, 'a', 7, 30, NULL, 3), (4, 1, 'c', 1, 40, 0.5, 4)",
    );
    // Groups in the order the whole-table path meets them: NULL first (key 1), then 1.
    assert_eq!(
        rows(
            &mut s,
            "SELECT g, count(*), count(x), sum(x), avg(x), min(h), max(h), sum(y), sum(n), avg(n), min(n), max(n) FROM t GROUP BY g"
        ),
        vec![
            vec!["NULL", "2", "2", "12", "6", "a", "b", "40", "1.5", "1.5", "1.5", "1.5"],
            vec!["1", "2", "1", "1", "1", "c", "c", "60", "3.0", "1.5", "0.5", "2.5"],
        ]
    );
    for q in [
        "SELECT g, count(*), count(x), sum(x), avg(x), min(h), max(h), sum(y), sum(n), avg(n) FROM {T} GROUP BY g",
        "SELECT h, min(f), max(f), min(k), max(k) FROM {T} WHERE x > 1 GROUP BY h",
        "SELECT count(*) FROM {T} WHERE x IS NULL",
        "SELECT g, sum(x) FROM {T} GROUP BY g HAVING sum(x) > 5",
    ] {
        same(&mut s, q).unwrap();
    }
}

#[test]
fn pending_writes_of_the_transaction_are_aggregated() {
    let (_e, sql, _sim) = setup(2);
    let mut s = sql.session();
    run(&mut s, &format!("CREATE TABLE t ({COLS})"));
    run(
        &mut s,
        "INSERT INTO t SELECT g, g % 3, NULL, g, g, g, g FROM generate_series(1, 200) AS g",
    );
    run(&mut s, "BEGIN");
    run(&mut s, "INSERT INTO t VALUES (500, 7, 'new', 1, 1, 1, 1)");
    run(&mut s, "UPDATE t SET g = 9, x = 1000 WHERE k = 10");
    run(&mut s, "DELETE FROM t WHERE k > 150 AND k < 500");
    let q = "SELECT g, count(*), sum(x), min(h) FROM {T} GROUP BY g";
    same(&mut s, q).unwrap();
    assert_eq!(
        rows(&mut s, "SELECT count(*), sum(x) FROM t"),
        vec![vec![
            "151",
            (150 * 151 / 2 - 10 + 1000 + 1).to_string().as_str()
        ]]
    );
    run(&mut s, "ROLLBACK");
    assert_eq!(
        rows(&mut s, "SELECT count(*), sum(x) FROM t"),
        vec![vec!["200", "20100"]]
    );
}

#[test]
fn errors_and_what_stays_on_the_whole_table_path() {
    let (_e, sql, _sim) = setup(2);
    let mut s = sql.session();
    run(&mut s, &format!("CREATE TABLE t ({COLS})"));
    run(
        &mut s,
        "INSERT INTO t VALUES (1, 1, 'a', 0, 1, 1, 1), (2, 2, 'b', 2, 2, 2, 2)",
    );
    let (pushed, _) = both("SELECT count(*) FROM {T} WHERE 10 / x > 1");
    assert_eq!(err(&mut s, &pushed), "22012");
    same(&mut s, "SELECT count(*) FROM {T} WHERE 10 / x > 1").unwrap();
    // DISTINCT, floating-point sums and subqueries stay on the whole-table path.
    for q in [
        "SELECT count(DISTINCT g) FROM t",
        "SELECT sum(f) FROM t",
        "SELECT avg(f) FROM t GROUP BY g",
        "SELECT count(*) FROM t WHERE x IN (SELECT x FROM t)",
    ] {
        let plan = explain(&mut s, q);
        assert!(!plan.contains("Partial"), "{q}: {plan}");
        assert!(plan.contains("HashAggregate"), "{q}: {plan}");
    }
    assert_eq!(
        rows(&mut s, "SELECT count(DISTINCT g), sum(f) FROM t"),
        vec![vec!["2", "3"]]
    );
    let plan = explain(&mut s, "SELECT g, count(*) FROM t WHERE x > $1 GROUP BY g");
    assert!(
        plan.contains("-> Final HashAggregate group=(#1) aggs=1"),
        "{plan}"
    );
    assert!(
        plan.contains("  -> Partial HashAggregate on each shard"),
        "{plan}"
    );
    assert!(plan.contains("    -> Seq Scan on t"), "{plan}");
}
