//! Issue 11: COPY FROM STDIN data and the bulk row API against a real engine: rows land in
//! row and columnar tables (bulk chunks and delta), INSERT's checks and SQLSTATEs apply, a
//! bad row anywhere writes nothing, and COPY refuses to run inside BEGIN.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mantis_sql::{Session, Value};

fn copy(s: &mut Session, sql: &str, chunks: &[&[u8]]) -> Result<u64, mantis_sql::SqlError> {
    let mut c = block_on(s.copy_in(sql))?;
    for ch in chunks {
        c.feed(ch)?;
    }
    block_on(s.copy_in_finish(c))
}

fn count(s: &mut Session, t: &str) -> String {
    rows(s, &format!("SELECT count(*) FROM {t}"))[0][0].clone()
}

#[test]
fn text_and_csv_into_a_row_table_with_defaults_and_nulls() {
    let (_e, sql, _sim) = setup(2);
    let mut s = sql.session();
    run(
        &mut s,
        "CREATE TABLE t (id int PRIMARY KEY, name text, score double precision, tag text DEFAULT 'd')",
    );
    let n = copy(
        &mut s,
        "COPY t (id, name, score) FROM STDIN",
        &[b"1\tann\t1.5\n2\t\\N\t", b"2.5\n3\ttab\\there\t\\N\n\\.\n"],
    )
    .unwrap();
    assert_eq!(n, 3);
    let n = copy(
        &mut s,
        "COPY t FROM STDIN WITH (FORMAT csv, HEADER)",
        &[b"id,name,score,tag\n4,\"a,b\",,x\n5,\"say \"\"hi\"\"\",0,\"\"\n"],
    )
    .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        rows(&mut s, "SELECT id, name, score, tag FROM t ORDER BY id"),
        vec![
            vec!["1", "ann", "1.5", "d"],
            vec!["2", "NULL", "2.5", "d"],
            vec!["3", "tab\there", "NULL", "d"],
            vec!["4", "a,b", "NULL", "x"],
            vec!["5", "say \"hi\"", "0", ""],
        ]
    );
}

#[test]
fn a_bad_row_anywhere_writes_nothing() {
    let (_e, sql, _sim) = setup(2);
    let mut s = sql.session();
    run(
        &mut s,
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)",
    );
    run(&mut s, "INSERT INTO t VALUES (100, 1)");
    let cases: [(&[u8], &str, &str); 6] = [
        (b"1\t1\n2\tx\n3\t3\n", "22P02", "line 2, column v: \"x\""),
        (b"1\t1\n2\n", "22P04", "line 2"),
        (b"1\t1\t9\n", "22P04", "line 1"),
        (b"1\t1\n2\t\\N\n", "23502", "line 2"),
        (b"1\t1\n1\t2\n", "23505", "row 2"),
        (b"1\t1\n100\t2\n", "23505", "Key (id)=(100) already exists."),
    ];
    for (data, state, detail) in cases {
        let e = copy(&mut s, "COPY t FROM STDIN", &[data]).unwrap_err();
        assert_eq!(e.sqlstate, state, "{e}");
        let d = e.detail.clone().unwrap_or_default();
        assert!(d.contains(detail), "{d:?} lacks {detail:?}");
        assert_eq!(
            count(&mut s, "t"),
            "1",
            "nothing of a failed COPY is written"
        );
    }
}

#[test]
fn columnar_bulk_and_delta_paths_and_row_table_without_key() {
    let (_e, sql, _sim) = setup(2);
    let mut s = sql.session();
    let cols = "id bigint, g int, cat text";
    run(
        &mut s,
        &format!("CREATE TABLE c ({cols}) WITH (storage = 'columnar')"),
    );
    run(&mut s, &format!("CREATE TABLE r ({cols})"));
    run(&mut s, "CREATE INDEX r_g ON r (g)");
    let make = |from: i64, n: i64| -> Vec<Vec<Value>> {
        (from..from + n)
            .map(|i| {
                vec![
                    Value::Int64(i),
                    Value::Int32((i % 7) as i32),
                    Value::Text(format!("c{}", i % 3)),
                ]
            })
            .collect()
    };
    // 20,000 rows: the bulk path into chunks; then 10 rows through the delta.
    assert_eq!(
        block_on(s.copy_rows("c", &[], make(0, 20_000))).unwrap(),
        20_000
    );
    assert_eq!(
        block_on(s.copy_rows("c", &[], make(20_000, 10))).unwrap(),
        10
    );
    assert_eq!(
        block_on(s.copy_rows("r", &[], make(0, 5_000))).unwrap(),
        5_000
    );
    let q = "SELECT g, count(*), sum(id) FROM T GROUP BY g ORDER BY g";
    let c = rows(&mut s, &q.replace(" T", " c"));
    assert_eq!(c.len(), 7);
    assert_eq!(count(&mut s, "c"), "20010");
    assert_eq!(
        rows(&mut s, "SELECT sum(id) FROM c")[0][0],
        (0..20_010i64).sum::<i64>().to_string()
    );
    assert_eq!(
        rows(&mut s, "SELECT count(*) FROM r WHERE g = 3")[0][0],
        "714"
    );
    // Text data into the columnar table: the same checks.
    let e = copy(&mut s, "COPY c FROM STDIN", &[b"1\t2\tx\nbad\t2\tx\n"]).unwrap_err();
    assert_eq!(e.sqlstate, "22P02");
    assert_eq!(count(&mut s, "c"), "20010");
    // Wrong typed values are refused as INSERT refuses them.
    let e = block_on(s.copy_rows("r", &["id"], vec![vec![Value::Text("x".into())]])).unwrap_err();
    assert_eq!(e.sqlstate, "22P02");
}

#[test]
fn copy_inside_a_transaction_is_refused() {
    let (_e, sql, _sim) = setup(1);
    let mut s = sql.session();
    run(&mut s, "CREATE TABLE t (id int)");
    run(&mut s, "BEGIN");
    let e = block_on(s.copy_in("COPY t FROM STDIN")).err().unwrap();
    assert_eq!(e.sqlstate, "25001");
    run(&mut s, "ROLLBACK");
    let e = block_on(s.copy_in("COPY nope FROM STDIN")).err().unwrap();
    assert_eq!(e.sqlstate, "42P01");
    let e = block_on(s.copy_in("COPY t (zz) FROM STDIN")).err().unwrap();
    assert_eq!(e.sqlstate, "42703");
    assert_eq!(copy(&mut s, "COPY t FROM STDIN", &[b"7\n"]).unwrap(), 1);
}
