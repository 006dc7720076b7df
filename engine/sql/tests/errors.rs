//! Every bad-input SQLSTATE of issue 6: the statement is rejected with the right code and
//! the table is exactly as before (statements are atomic).
#![allow(clippy::unwrap_used)]

mod common;

use common::{block_on, err, rows, run, setup};

const SNAPSHOT: &str = "SELECT id, name, qty, note FROM items ORDER BY id";

fn fixture() -> (mantis_engine::Engine, mantis_sql::Session) {
    let (engine, sql, _) = setup(2);
    let mut s = sql.session();
    run(
        &mut s,
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(5) NOT NULL UNIQUE, qty SMALLINT, note TEXT)",
    );
    run(
        &mut s,
        "INSERT INTO items VALUES (1, 'a', 10, 'x'), (2, 'b', 20, NULL), (3, 'c', 0, 'z')",
    );
    (engine, s)
}

/// Runs `sql`, expects `state`, and checks the table did not change.
fn rejects(sql: &str, state: &str) {
    let (engine, mut s) = fixture();
    let before = rows(&mut s, SNAPSHOT);
    assert_eq!(err(&mut s, sql), state, "{sql}");
    assert_eq!(rows(&mut s, SNAPSHOT), before, "{sql} changed the table");
    drop(s);
    engine.shutdown().unwrap();
}

#[test]
fn syntax_errors_carry_positions() {
    let (engine, sql, _) = setup(1);
    let mut s = sql.session();
    let e = block_on(s.execute("SELECT * FRM items")).unwrap_err();
    assert_eq!(e.sqlstate, "42601");
    // The parser stops at "FRM" (character 10), where the statement stopped making sense.
    assert_eq!(e.position, Some(10), "{e:?}");
    let e = block_on(s.execute("INSERT INTO")).unwrap_err();
    assert_eq!(e.sqlstate, "42601");
    assert!(e.position.is_some());
    drop(s);
    engine.shutdown().unwrap();
    rejects("UPDATE items SET qty = WHERE id = 1", "42601");
}

#[test]
fn type_mismatch_42804() {
    rejects("INSERT INTO items VALUES (4, 'd', true, 'n')", "42804");
    rejects("UPDATE items SET qty = 'abc'::text WHERE id = 1", "42804");
    rejects("SELECT * FROM items WHERE qty", "42804");
    rejects("UPDATE items SET qty = 1 WHERE name", "42804");
}

#[test]
fn unknown_column_42703_and_table_42p01() {
    rejects("SELECT nope FROM items", "42703");
    rejects("UPDATE items SET nope = 1", "42703");
    rejects("INSERT INTO items (id, nope) VALUES (9, 1)", "42703");
    rejects("DELETE FROM items WHERE nope = 1", "42703");
    rejects("SELECT * FROM missing", "42P01");
    rejects("INSERT INTO missing VALUES (1)", "42P01");
    rejects("DROP TABLE missing", "42P01");
}

#[test]
fn division_by_zero_22012() {
    rejects("SELECT qty / 0 FROM items", "22012");
    rejects("UPDATE items SET qty = 10 / qty", "22012");
    rejects("DELETE FROM items WHERE 1 / qty > 0", "22012");
    rejects(
        "INSERT INTO items SELECT id + 10, name || 'z', qty / 0, note FROM items",
        "22012",
    );
}

#[test]
fn unique_violation_23505() {
    rejects("INSERT INTO items VALUES (1, 'q', 1, 'dup pk')", "23505");
    rejects(
        "INSERT INTO items VALUES (4, 'a', 1, 'dup unique')",
        "23505",
    );
    rejects(
        "INSERT INTO items VALUES (4, 'd', 1, NULL), (4, 'e', 1, NULL)",
        "23505",
    );
    rejects("UPDATE items SET id = 3 WHERE id = 1", "23505");
    rejects("UPDATE items SET name = 'c' WHERE id = 2", "23505");
    rejects(
        "CREATE UNIQUE INDEX q_uniq ON items (qty) ; INSERT INTO items VALUES (5, 'e', 10, NULL)",
        "23505",
    );
}

#[test]
fn not_null_violation_23502() {
    rejects("INSERT INTO items (id, qty) VALUES (4, 1)", "23502");
    rejects("INSERT INTO items VALUES (NULL, 'n', 1, NULL)", "23502");
    rejects("UPDATE items SET name = NULL WHERE id = 3", "23502");
    rejects(
        "INSERT INTO items VALUES (4, 'd', 1, NULL), (5, NULL, 1, NULL)",
        "23502",
    );
}

#[test]
fn value_too_long_22001_and_out_of_range_22003() {
    rejects("INSERT INTO items VALUES (4, 'toolong', 1, NULL)", "22001");
    rejects("UPDATE items SET name = name || 'xxxxx'", "22001");
    rejects("INSERT INTO items VALUES (4, 'd', 40000, NULL)", "22003");
    rejects("UPDATE items SET qty = qty * 10000", "22003");
    rejects("SELECT 2147483647 + id FROM items", "22003");
    rejects("INSERT INTO items VALUES (4, 'd', 'x', NULL)", "22P02");
}

#[test]
fn a_failed_statement_inside_a_transaction_changes_nothing() {
    let (engine, mut s) = fixture();
    let before = rows(&mut s, SNAPSHOT);
    run(&mut s, "BEGIN");
    run(&mut s, "INSERT INTO items VALUES (4, 'd', 1, NULL)");
    assert_eq!(
        err(&mut s, "INSERT INTO items VALUES (5, 'a', 1, NULL)"),
        "23505"
    );
    assert_eq!(err(&mut s, "SELECT 1"), "25P02");
    run(&mut s, "ROLLBACK");
    assert_eq!(rows(&mut s, SNAPSHOT), before);
    drop(s);
    engine.shutdown().unwrap();
}
