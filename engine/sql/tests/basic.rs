//! End-to-end statements through `Session`: DDL, DML, queries, transactions, prepared
//! statements, catalog visibility across shards, and restart.
#![allow(clippy::unwrap_used)]

mod common;

use common::{block_on, err, rows, run, setup};
use mantis_sql::{SqlType, StatementResult, Value};

fn s(v: &[&[&str]]) -> Vec<Vec<String>> {
    v.iter()
        .map(|r| r.iter().map(|x| x.to_string()).collect())
        .collect()
}

#[test]
fn create_insert_select() {
    let (engine, sql, _) = setup(2);
    let mut ses = sql.session();
    let r = run(
        &mut ses,
        "CREATE TABLE t (id INT PRIMARY KEY, name TEXT NOT NULL, score REAL)",
    );
    assert_eq!(
        r,
        vec![StatementResult::Command {
            tag: "CREATE TABLE".into()
        }]
    );
    let r = run(
        &mut ses,
        "INSERT INTO t VALUES (1, 'a', 1.5), (2, 'b', NULL), (3, 'c', 3)",
    );
    assert_eq!(
        r,
        vec![StatementResult::Command {
            tag: "INSERT 0 3".into()
        }]
    );
    assert_eq!(
        rows(&mut ses, "SELECT id, name FROM t ORDER BY id DESC"),
        s(&[&["3", "c"], &["2", "b"], &["1", "a"]])
    );
    assert_eq!(
        rows(&mut ses, "SELECT count(*), sum(id), max(name) FROM t"),
        s(&[&["3", "6", "c"]])
    );
    assert_eq!(
        rows(&mut ses, "SELECT name FROM t WHERE id = 2"),
        s(&[&["b"]])
    );
    assert_eq!(
        rows(&mut ses, "SELECT score FROM t ORDER BY score"),
        s(&[&["1.5"], &["3"], &["NULL"]])
    );
    assert_eq!(
        rows(&mut ses, "SELECT 7 / 2, -7 / 2, 7 % 3, 1 + 2 * 3"),
        s(&[&["3", "-3", "1", "7"]])
    );
    let plan = rows(&mut ses, "EXPLAIN SELECT name FROM t WHERE id = 2");
    assert!(
        plan.iter().any(|l| l[0].contains("Point Get on t")),
        "{plan:?}"
    );
    run(&mut ses, "UPDATE t SET score = score * 2 WHERE id <= 2");
    assert_eq!(
        rows(
            &mut ses,
            "SELECT id, score FROM t WHERE score IS NOT NULL ORDER BY 1"
        ),
        s(&[&["1", "3"], &["3", "3"]])
    );
    run(&mut ses, "DELETE FROM t WHERE name = 'c'");
    assert_eq!(rows(&mut ses, "SELECT count(*) FROM t"), s(&[&["2"]]));
    drop(ses);
    engine.shutdown().unwrap();
}

#[test]
fn joins_groups_subqueries() {
    let (engine, sql, _) = setup(2);
    let mut ses = sql.session();
    run(
        &mut ses,
        "CREATE TABLE a (x INT, y TEXT); CREATE TABLE b (x INT, z INT)",
    );
    run(
        &mut ses,
        "INSERT INTO a VALUES (1, 'one'), (2, 'two'), (3, 'three')",
    );
    run(
        &mut ses,
        "INSERT INTO b VALUES (1, 10), (1, 11), (3, 30), (4, 40)",
    );
    assert_eq!(
        rows(
            &mut ses,
            "SELECT a.y, b.z FROM a JOIN b ON a.x = b.x ORDER BY b.z"
        ),
        s(&[&["one", "10"], &["one", "11"], &["three", "30"]])
    );
    assert_eq!(
        rows(
            &mut ses,
            "SELECT a.x, b.z FROM a LEFT JOIN b ON a.x = b.x WHERE b.z IS NULL"
        ),
        s(&[&["2", "NULL"]])
    );
    assert_eq!(
        rows(
            &mut ses,
            "SELECT a.x, b.x FROM a FULL JOIN b ON a.x = b.x ORDER BY 1 NULLS FIRST, 2"
        ),
        s(&[
            &["NULL", "4"],
            &["1", "1"],
            &["1", "1"],
            &["2", "NULL"],
            &["3", "3"]
        ])
    );
    assert_eq!(
        rows(
            &mut ses,
            "SELECT x, count(*), sum(z) FROM b GROUP BY x HAVING count(*) > 1"
        ),
        s(&[&["1", "2", "21"]])
    );
    assert_eq!(
        rows(
            &mut ses,
            "SELECT y FROM a WHERE x IN (SELECT x FROM b) ORDER BY y"
        ),
        s(&[&["one"], &["three"]])
    );
    assert_eq!(
        rows(
            &mut ses,
            "SELECT y, (SELECT max(z) FROM b WHERE b.x = a.x) FROM a ORDER BY x"
        ),
        s(&[&["one", "11"], &["two", "NULL"], &["three", "30"]])
    );
    assert_eq!(
        rows(
            &mut ses,
            "SELECT x FROM a WHERE NOT EXISTS (SELECT 1 FROM b WHERE b.x = a.x)"
        ),
        s(&[&["2"]])
    );
    assert_eq!(
        rows(&mut ses, "SELECT x FROM a UNION SELECT x FROM b ORDER BY 1"),
        s(&[&["1"], &["2"], &["3"], &["4"]])
    );
    assert_eq!(
        rows(&mut ses, "SELECT x FROM a EXCEPT SELECT x FROM b"),
        s(&[&["2"]])
    );
    assert_eq!(
        rows(
            &mut ses,
            "SELECT g, g * 2 FROM generate_series(1, 3) AS g ORDER BY g DESC LIMIT 2"
        ),
        s(&[&["3", "6"], &["2", "4"]])
    );
    assert_eq!(
        rows(
            &mut ses,
            "WITH big AS (SELECT x FROM b WHERE z > 20) SELECT count(*) FROM big"
        ),
        s(&[&["2"]])
    );
    run(&mut ses, "CREATE VIEW v AS SELECT x, z FROM b WHERE z < 35");
    assert_eq!(
        rows(&mut ses, "SELECT count(DISTINCT x) FROM v"),
        s(&[&["2"]])
    );
    drop(ses);
    engine.shutdown().unwrap();
}

#[test]
fn transactions_buffer_and_rollback() {
    let (engine, sql, _) = setup(2);
    let mut ses = sql.session();
    run(&mut ses, "CREATE TABLE t (k INT PRIMARY KEY, v INT)");
    run(&mut ses, "BEGIN");
    assert!(ses.in_transaction());
    run(&mut ses, "INSERT INTO t VALUES (1, 1), (2, 2)");
    assert_eq!(rows(&mut ses, "SELECT count(*) FROM t"), s(&[&["2"]]));
    let mut other = sql.session();
    // Serializable (the default) would wait for ses's locks: this reader asks for less.
    run(
        &mut other,
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
    );
    assert_eq!(rows(&mut other, "SELECT count(*) FROM t"), s(&[&["0"]]));
    run(&mut ses, "ROLLBACK");
    assert_eq!(rows(&mut ses, "SELECT count(*) FROM t"), s(&[&["0"]]));
    run(
        &mut ses,
        "BEGIN; INSERT INTO t VALUES (5, 5); UPDATE t SET v = 6 WHERE k = 5",
    );
    assert_eq!(rows(&mut ses, "SELECT v FROM t WHERE k = 5"), s(&[&["6"]]));
    assert_eq!(err(&mut ses, "SELECT 1/0"), "22012");
    assert_eq!(err(&mut ses, "SELECT 1"), "25P02");
    assert_eq!(
        run(&mut ses, "COMMIT"),
        vec![StatementResult::Command {
            tag: "ROLLBACK".into()
        }]
    );
    run(&mut ses, "BEGIN; INSERT INTO t VALUES (5, 5); COMMIT");
    assert_eq!(rows(&mut other, "SELECT k, v FROM t"), s(&[&["5", "5"]]));
    drop((ses, other));
    engine.shutdown().unwrap();
}

#[test]
fn prepared_statements_keep_plans() {
    let (engine, sql, _) = setup(2);
    let mut ses = sql.session();
    run(
        &mut ses,
        "CREATE TABLE acc (id BIGINT PRIMARY KEY, bal INT NOT NULL)",
    );
    run(
        &mut ses,
        "INSERT INTO acc SELECT g, 100 FROM generate_series(1, 50) g",
    );
    let upd = block_on(ses.prepare("UPDATE acc SET bal = bal + $1 WHERE id = $2", &[])).unwrap();
    assert_eq!(upd.param_types, vec![SqlType::Int32, SqlType::Int64]);
    let sel = block_on(ses.prepare("SELECT bal FROM acc WHERE id = $1", &[])).unwrap();
    assert_eq!(sel.columns.len(), 1);
    for i in 1..=10 {
        let r = block_on(ses.execute_prepared(&upd, &[Value::Int32(5), Value::Int64(i)])).unwrap();
        assert_eq!(
            r,
            StatementResult::Command {
                tag: "UPDATE 1".into()
            }
        );
    }
    let r = block_on(ses.execute_prepared(&sel, &[Value::Int64(3)])).unwrap();
    assert_eq!(
        r,
        StatementResult::Rows {
            columns: sel.columns.clone(),
            rows: vec![vec![Value::Int32(105)]]
        }
    );
    // Text parameters are converted to the inferred type.
    let r = block_on(ses.execute_prepared(&sel, &[Value::Text("20".into())])).unwrap();
    assert!(
        matches!(r, StatementResult::Rows { rows, .. } if rows == vec![vec![Value::Int32(100)]])
    );
    drop(ses);
    engine.shutdown().unwrap();
}

#[test]
fn ddl_on_one_session_is_seen_by_an_engine_on_another_thread() {
    let (engine, sql, _) = setup(2);
    let handle = engine.handle();
    // A second SqlEngine, as another shard thread would have, opened before the DDL.
    let other =
        std::thread::spawn(move || block_on(mantis_sql::SqlEngine::open(handle)).map(|_| ()));
    other.join().unwrap().unwrap();
    let mut ses = sql.session();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Vec<Vec<String>>>();
    let handle = engine.handle();
    let t = std::thread::spawn(move || {
        let eng = block_on(mantis_sql::SqlEngine::open(handle)).unwrap();
        let mut s2 = eng.session();
        // Warm its catalog cache before the DDL happens elsewhere.
        assert_eq!(block_on(eng.list_tables()).unwrap(), Vec::<String>::new());
        while let Ok(q) = rx.recv() {
            done_tx.send(rows(&mut s2, &q)).unwrap();
        }
    });
    tx.send("SELECT 1".into()).unwrap();
    done_rx.recv().unwrap();
    run(
        &mut ses,
        "CREATE TABLE shared (a INT); INSERT INTO shared VALUES (42)",
    );
    tx.send("SELECT a FROM shared".into()).unwrap();
    assert_eq!(done_rx.recv().unwrap(), s(&[&["42"]]));
    run(&mut ses, "DROP TABLE shared");
    assert_eq!(err(&mut ses, "SELECT * FROM shared"), "42P01");
    drop(tx);
    t.join().unwrap();
    drop(ses);
    engine.shutdown().unwrap();
}

#[test]
fn catalog_and_rows_survive_restart() {
    let sim = mantis_storage::SimStorage::new(3);
    let cfg = common::sim_config(&sim, 2);
    {
        let engine = mantis_engine::Engine::open(cfg.clone()).unwrap();
        let sql = block_on(mantis_sql::SqlEngine::open(engine.handle())).unwrap();
        let mut ses = sql.session();
        run(&mut ses, "CREATE TABLE p (id INT PRIMARY KEY, name VARCHAR(10) UNIQUE, d DATE DEFAULT '2024-01-02')");
        run(&mut ses, "CREATE INDEX p_d ON p (d)");
        run(
            &mut ses,
            "INSERT INTO p (id, name) VALUES (1, 'x'), (2, 'y')",
        );
        drop(ses);
        engine.shutdown().unwrap();
    }
    let engine = mantis_engine::Engine::open(cfg).unwrap();
    let sql = block_on(mantis_sql::SqlEngine::open(engine.handle())).unwrap();
    let mut ses = sql.session();
    assert_eq!(
        rows(&mut ses, "SELECT id, name, d FROM p ORDER BY id"),
        s(&[&["1", "x", "2024-01-02"], &["2", "y", "2024-01-02"]])
    );
    assert_eq!(err(&mut ses, "INSERT INTO p VALUES (3, 'x')"), "23505");
    let info = block_on(sql.describe_table("p")).unwrap().unwrap();
    assert_eq!(info.primary_key, vec!["id".to_string()]);
    assert_eq!(info.indexes.len(), 3);
    assert_eq!(block_on(sql.list_tables()).unwrap(), vec!["p".to_string()]);
    drop(ses);
    engine.shutdown().unwrap();
}

/// Runs `sql` in a session of a SqlEngine living on shard `shard`'s executor, as the wire
/// protocol does, and returns the rows of its last statement as text (or the SQLSTATE).
fn on_shard(
    handle: &mantis_engine::EngineHandle,
    shard: usize,
    sql: &'static str,
) -> Result<Vec<Vec<String>>, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = handle.clone();
    handle
        .spawn_on(shard, move || async move {
            assert_eq!(mantis_engine::EngineHandle::current_shard(), Some(shard));
            let r = async {
                // One SqlEngine per shard thread, kept between calls (its catalog cache too).
                thread_local!(static ENGINE: std::cell::RefCell<Option<mantis_sql::SqlEngine>> = const { std::cell::RefCell::new(None) });
                let cached = ENGINE.with(|e| e.borrow().clone());
                let eng = match cached {
                    Some(e) => e,
                    None => {
                        let e = mantis_sql::SqlEngine::open(h).await?;
                        ENGINE.with(|c| *c.borrow_mut() = Some(e.clone()));
                        e
                    }
                };
                let mut s = eng.session();
                s.execute(sql).await
            }
            .await;
            let out = r.map_err(|e| e.sqlstate.to_string()).map(|mut v| match v.pop() {
                Some(StatementResult::Rows { rows, .. }) => rows
                    .iter()
                    .map(|r| r.iter().map(|v| v.to_pg_text().unwrap_or_else(|| "NULL".into())).collect())
                    .collect(),
                _ => Vec::new(),
            });
            tx.send(out).unwrap();
        })
        .unwrap();
    rx.recv().unwrap()
}

#[test]
fn ddl_on_shard_0_is_visible_to_the_next_statement_on_shard_1() {
    let (engine, _sql, _) = setup(2);
    let h = engine.handle();
    // Both shards' engines cache the (empty) catalog first.
    assert_eq!(on_shard(&h, 1, "SELECT 1").unwrap(), s(&[&["1"]]));
    on_shard(
        &h,
        0,
        "CREATE TABLE kv (k INT PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'a'), (2, 'b')",
    )
    .unwrap();
    assert_eq!(
        on_shard(&h, 1, "SELECT v FROM kv ORDER BY k").unwrap(),
        s(&[&["a"], &["b"]])
    );
    on_shard(&h, 1, "DROP TABLE kv").unwrap();
    assert_eq!(
        on_shard(&h, 0, "SELECT * FROM kv"),
        Err("42P01".to_string())
    );
    engine.shutdown().unwrap();
}

#[test]
fn indexes_are_used_and_agree_with_scans() {
    let (engine, sql, _) = setup(2);
    let mut ses = sql.session();
    run(
        &mut ses,
        "CREATE TABLE m (id INT PRIMARY KEY, g INT, f REAL, t TEXT)",
    );
    run(
        &mut ses,
        "INSERT INTO m SELECT x, x % 7, x / 4.0, 'n' || x FROM generate_series(1, 200) AS x",
    );
    run(&mut ses, "INSERT INTO m VALUES (500, NULL, NULL, NULL)");
    run(
        &mut ses,
        "CREATE INDEX m_g ON m (g); CREATE INDEX m_f ON m (f)",
    );
    let queries = [
        (
            "SELECT id FROM m WHERE g = 3 ORDER BY id",
            "Index Scan using m_g",
        ),
        (
            "SELECT id FROM m WHERE f > 10 AND f <= 12.5 ORDER BY id",
            "Index Scan using m_f",
        ),
        (
            "SELECT id FROM m WHERE f < 2 ORDER BY id",
            "Index Scan using m_f",
        ),
        (
            "SELECT id FROM m WHERE id >= 195 ORDER BY id",
            "Index Scan using primary key",
        ),
        (
            "SELECT id FROM m WHERE g = 3 AND f > 20 ORDER BY id",
            "Index Scan using m_g",
        ),
    ];
    for (q, want) in queries {
        let plan = rows(&mut ses, &format!("EXPLAIN {q}"));
        assert!(plan.iter().any(|l| l[0].contains(want)), "{q}: {plan:?}");
        // The same query without usable indexes (an expression on the column) must agree.
        let scan_q = q
            .replace("WHERE g", "WHERE g + 0")
            .replace("WHERE f", "WHERE f + 0")
            .replace("WHERE id", "WHERE id + 0");
        assert_eq!(rows(&mut ses, q), rows(&mut ses, &scan_q), "{q}");
        assert!(!rows(&mut ses, q).is_empty(), "{q}");
    }
    // Writes keep the index in step.
    run(
        &mut ses,
        "UPDATE m SET g = 100 WHERE id <= 3; DELETE FROM m WHERE id = 10",
    );
    assert_eq!(
        rows(&mut ses, "SELECT id FROM m WHERE g = 100 ORDER BY id"),
        s(&[&["1"], &["2"], &["3"]])
    );
    assert_eq!(
        rows(&mut ses, "SELECT count(*) FROM m WHERE g = 3"),
        rows(&mut ses, "SELECT count(*) FROM m WHERE g + 0 = 3")
    );
    drop(ses);
    engine.shutdown().unwrap();
}

#[test]
fn on_conflict_do_nothing_and_do_update() {
    let (engine, sql, _) = setup(2);
    let mut ses = sql.session();
    run(
        &mut ses,
        "CREATE TABLE c (k INT PRIMARY KEY, n INT DEFAULT 0, u TEXT UNIQUE)",
    );
    run(&mut ses, "INSERT INTO c (k, u) VALUES (1, 'a')");
    let r = run(
        &mut ses,
        "INSERT INTO c VALUES (1, 5, 'b'), (2, 5, 'a'), (3, 5, 'c') ON CONFLICT DO NOTHING",
    );
    assert_eq!(
        r,
        vec![StatementResult::Command {
            tag: "INSERT 0 1".into()
        }]
    );
    run(
        &mut ses,
        "INSERT INTO c VALUES (1, 7, 'a') ON CONFLICT (k) DO UPDATE SET n = c.n + excluded.n",
    );
    assert_eq!(
        rows(&mut ses, "SELECT k, n, u FROM c ORDER BY k"),
        s(&[&["1", "7", "a"], &["3", "5", "c"]])
    );
    drop(ses);
    engine.shutdown().unwrap();
}

#[test]
fn correlated_subqueries_in_aggregate_queries() {
    let (engine, sql, _) = setup(2);
    let mut ses = sql.session();
    run(
        &mut ses,
        "CREATE TABLE a (x INT, y INT); CREATE TABLE b (x INT)",
    );
    run(
        &mut ses,
        "INSERT INTO a VALUES (1, 1), (1, 2), (2, 3), (3, 4); INSERT INTO b VALUES (1), (1), (3)",
    );
    assert_eq!(
        rows(&mut ses, "SELECT x, count(*), (SELECT count(*) FROM b WHERE b.x = a.x) FROM a GROUP BY x ORDER BY x"),
        s(&[&["1", "2", "2"], &["2", "1", "0"], &["3", "1", "1"]])
    );
    assert_eq!(
        rows(
            &mut ses,
            "SELECT x FROM a GROUP BY x HAVING EXISTS (SELECT 1 FROM b WHERE b.x = a.x) ORDER BY x"
        ),
        s(&[&["1"], &["3"]])
    );
    assert_eq!(
        err(
            &mut ses,
            "SELECT x, (SELECT count(*) FROM b WHERE b.x = a.y) FROM a GROUP BY x"
        ),
        "42803"
    );
    assert_eq!(err(&mut ses, "SELECT x, y FROM a GROUP BY x"), "42803");
    drop(ses);
    engine.shutdown().unwrap();
}
