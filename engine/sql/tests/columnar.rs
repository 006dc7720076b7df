//! Columnar tables: DDL and refusals, merge into chunks, chunk skipping, results equal to
//! the row engine's on random data and queries, and crashes before and during a merge.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mantis_sql::{SqlEngine, StatementResult};
use proptest::prelude::*;

fn merge_small(
    sql: &SqlEngine,
    table: &str,
    chunk_rows: usize,
) -> mantis_sql::columnar::MergeStats {
    let cat = block_on(sql.catalog()).unwrap();
    let t = cat.table(table).unwrap().clone();
    block_on(mantis_sql::columnar::merge_table_with(sql, &t, chunk_rows)).unwrap()
}

fn sorted(mut r: Vec<Vec<String>>) -> Vec<Vec<String>> {
    r.sort();
    r
}

fn explain(s: &mut mantis_sql::Session, q: &str) -> String {
    rows(s, &format!("EXPLAIN {q}"))
        .into_iter()
        .map(|r| r.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn ddl_storage_kind_and_refusals() {
    let (_e, sql, _sim) = setup(2);
    let mut s = sql.session();
    run(
        &mut s,
        "CREATE TABLE m (k int, v text) WITH (storage = 'columnar')",
    );
    run(&mut s, "CREATE TABLE r (k int, v text)");
    let m = block_on(sql.describe_table("m")).unwrap().unwrap();
    assert_eq!(m.storage, "columnar");
    assert_eq!(
        block_on(sql.describe_table("r")).unwrap().unwrap().storage,
        "row"
    );
    assert_eq!(err(&mut s, "UPDATE m SET v = 'x'"), "0A000");
    assert_eq!(err(&mut s, "DELETE FROM m WHERE k = 1"), "0A000");
    assert_eq!(
        err(
            &mut s,
            "CREATE TABLE p (k int PRIMARY KEY) WITH (storage = 'columnar')"
        ),
        "0A000"
    );
    assert_eq!(
        err(&mut s, "CREATE TABLE q (k int) WITH (storage = 'sideways')"),
        "22023"
    );
    assert_eq!(err(&mut s, "VACUUM nosuch"), "42P01");
    run(&mut s, "INSERT INTO m VALUES (1, 'a'), (2, NULL)");
    assert!(explain(&mut s, "SELECT * FROM m WHERE k > 1").contains("Columnar Scan on m"));
    assert!(explain(&mut s, "SELECT count(*) FROM m WHERE k > 1").contains("Columnar (vectorized"));
    assert!(explain(&mut s, "SELECT * FROM r").contains("Seq Scan on r"));
    run(&mut s, "VACUUM m");
    assert_eq!(
        rows(&mut s, "SELECT k, v FROM m ORDER BY k"),
        vec![vec!["1", "a"], vec!["2", "NULL"]]
    );
    run(&mut s, "DROP TABLE m");
    run(&mut s, "CREATE TABLE m (k int) WITH (storage = 'columnar')");
    assert_eq!(rows(&mut s, "SELECT count(*) FROM m"), vec![vec!["0"]]);
}

#[test]
fn merge_moves_delta_into_chunks_and_scans_skip() {
    let (_e, sql, _sim) = setup(2);
    let mut s = sql.session();
    run(
        &mut s,
        "CREATE TABLE m (id int, g text, v bigint) WITH (storage = 'columnar')",
    );
    for b in 0..10 {
        let vals: Vec<String> = (0..100)
            .map(|i| {
                let id = b * 100 + i;
                format!("({id}, 'g{}', {})", id % 3, id * 10)
            })
            .collect();
        run(&mut s, &format!("INSERT INTO m VALUES {}", vals.join(",")));
    }
    // Sorted ids per chunk, so min/max stats let a range filter skip most chunks.
    let st = merge_small(&sql, "m", 50);
    assert_eq!(st.rows_merged, 1000);
    assert!(st.chunks_written >= 20, "{st:?}");
    assert_eq!(
        rows(&mut s, "SELECT count(*), sum(v), min(id), max(id) FROM m"),
        vec![vec!["1000", "4995000", "0", "999"]]
    );
    let c = mantis_sql::columnar::last_scan();
    assert_eq!(c.delta_rows_read, 0);
    assert_eq!(c.chunks_skipped, 0);
    assert_eq!(c.chunk_rows_read, 1000);
    assert_eq!(
        rows(&mut s, "SELECT count(*) FROM m WHERE id >= 990"),
        vec![vec!["10"]]
    );
    let c = mantis_sql::columnar::last_scan();
    assert!(c.chunks_skipped * 10 >= c.chunks_total * 8, "{c:?}");
    // New rows stay in the delta until the next merge, and are read with the chunks.
    run(
        &mut s,
        "INSERT INTO m VALUES (1000, 'g1', 1), (1001, NULL, NULL)",
    );
    assert_eq!(
        sorted(rows(
            &mut s,
            "SELECT g, count(*), count(v), sum(v) FROM m GROUP BY g"
        )),
        vec![
            vec!["NULL", "1", "0", "NULL"],
            vec!["g0", "334", "334", "1668330"],
            vec!["g1", "334", "334", "1661671"],
            vec!["g2", "333", "333", "1665000"],
        ]
    );
    assert_eq!(mantis_sql::columnar::last_scan().delta_rows_read, 2);
    run(&mut s, "VACUUM m");
    assert_eq!(rows(&mut s, "SELECT count(*) FROM m"), vec![vec!["1002"]]);
    assert_eq!(mantis_sql::columnar::last_scan().delta_rows_read, 0);
    // A row-path query (not pushable) over chunks: LIKE, expressions, joins.
    assert_eq!(
        rows(&mut s, "SELECT count(*) FROM m a JOIN m b ON a.id = b.id WHERE a.g LIKE 'g1%' AND b.v + 1 > 100"),
        vec![vec!["330"]]
    );
    // Inside a transaction, its own uncommitted rows are seen; after rollback they are not.
    run(&mut s, "BEGIN");
    run(&mut s, "INSERT INTO m VALUES (5000, 'tx', 5)");
    assert_eq!(
        rows(&mut s, "SELECT count(*) FROM m WHERE g = 'tx'"),
        vec![vec!["1"]]
    );
    run(&mut s, "ROLLBACK");
    assert_eq!(
        rows(&mut s, "SELECT count(*) FROM m WHERE g = 'tx'"),
        vec![vec!["0"]]
    );
}

#[test]
fn corrupt_chunk_is_an_error_not_a_wrong_answer() {
    let (_e, sql, _sim) = setup(1);
    let mut s = sql.session();
    run(
        &mut s,
        "CREATE TABLE m (id int) WITH (storage = 'columnar')",
    );
    run(&mut s, "INSERT INTO m VALUES (1), (2), (3)");
    run(&mut s, "VACUUM m");
    // Overwrite every chunk column value with a flipped byte through the KV engine.
    let h = sql.handle().clone();
    let cat = block_on(sql.catalog()).unwrap();
    let id = cat.table("m").unwrap().id;
    let prefix = mantis_sql::columnar::keys::table_prefix(id);
    let range = mantis_engine::ScanRange {
        start: std::ops::Bound::Included(prefix.clone()),
        end: std::ops::Bound::Excluded(mantis_sql::keys::prefix_end(&prefix).unwrap()),
    };
    let entries = block_on(h.scan(range, 100)).unwrap();
    let mut flipped = 0;
    for (k, e) in entries {
        if k[prefix.len()] == b'c' {
            let mut v = e.value.clone();
            let mid = v.len() / 2;
            v[mid] ^= 0x10;
            block_on(h.put(k, v, None)).unwrap();
            flipped += 1;
        }
    }
    assert_eq!(flipped, 2); // the id column and the row-id column
    assert_eq!(err(&mut s, "SELECT sum(id) FROM m"), "XX001");
}

#[test]
fn auto_merge_after_threshold_keeps_every_row() {
    let (_e, sql, _sim) = setup(2);
    let mut s = sql.session();
    run(
        &mut s,
        "CREATE TABLE m (id int) WITH (storage = 'columnar')",
    );
    let per = 5000;
    let batches = (mantis_sql::columnar::DELTA_ROWS_MERGE as usize).div_ceil(per) + 1;
    for b in 0..batches {
        let vals: Vec<String> = (0..per).map(|i| format!("({})", b * per + i)).collect();
        run(&mut s, &format!("INSERT INTO m VALUES {}", vals.join(",")));
    }
    let n = (batches * per) as i64;
    // The merge runs in the background: wait for it (with a deadline), not for a time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let m = mantis_sql::columnar::background::background_merges();
        if m.started >= 1 && m.finished == m.started {
            assert_eq!(m.failed, 0, "{m:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "merge never finished: {m:?}"
        );
        std::thread::yield_now();
    }
    assert_eq!(
        rows(&mut s, "SELECT count(*), sum(id) FROM m"),
        vec![vec![n.to_string(), (n * (n - 1) / 2).to_string()]]
    );
    let c = mantis_sql::columnar::last_scan();
    assert!(c.chunks_total >= 1 && c.delta_rows_read < n as u64, "{c:?}");
}

/// Reopens the engine on the same simulated disk after a power cut.
fn crash_and_reopen(
    engine: mantis_engine::Engine,
    sim: &mantis_storage::SimStorage,
    shards: usize,
) -> (mantis_engine::Engine, SqlEngine) {
    engine.abandon();
    sim.crash();
    sim.set_faults(Default::default());
    let engine = mantis_engine::Engine::open(sim_config(sim, shards)).unwrap();
    let sql = block_on(SqlEngine::open(engine.handle())).unwrap();
    (engine, sql)
}

fn check_ids(s: &mut mantis_sql::Session, expect: i64) {
    // Every acknowledged id exactly once: count, distinct count and sum all match.
    let r = rows(s, "SELECT count(*), count(DISTINCT id), sum(id) FROM m");
    assert_eq!(
        r,
        vec![vec![
            expect.to_string(),
            expect.to_string(),
            (expect * (expect - 1) / 2).to_string()
        ]]
    );
}

#[test]
fn crash_before_and_after_merge_loses_and_doubles_nothing() {
    let (engine, sql, sim) = setup(2);
    let mut s = sql.session();
    run(
        &mut s,
        "CREATE TABLE m (id int, t text) WITH (storage = 'columnar')",
    );
    let ins = |s: &mut mantis_sql::Session, from: i64, to: i64| {
        let vals: Vec<String> = (from..to).map(|i| format!("({i}, 'r{i}')")).collect();
        run(s, &format!("INSERT INTO m VALUES {}", vals.join(",")));
    };
    ins(&mut s, 0, 500);
    // Crash with everything in the delta.
    drop(s);
    let (engine, sql) = crash_and_reopen(engine, &sim, 2);
    let mut s = sql.session();
    check_ids(&mut s, 500);
    merge_small(&sql, "m", 64);
    ins(&mut s, 500, 800);
    // Crash with chunks and a delta.
    drop(s);
    let (engine, sql) = crash_and_reopen(engine, &sim, 2);
    let mut s = sql.session();
    check_ids(&mut s, 800);
    assert_eq!(
        rows(&mut s, "SELECT t FROM m WHERE id = 777"),
        vec![vec!["r777"]]
    );
    drop(s);
    drop(sql);
    engine.shutdown().unwrap();
}

#[test]
fn crash_in_the_middle_of_a_merge_loses_and_doubles_nothing() {
    for seed in 0..4u64 {
        let sim = mantis_storage::SimStorage::new(seed);
        let engine = mantis_engine::Engine::open(sim_config(&sim, 2)).unwrap();
        let sql = block_on(SqlEngine::open(engine.handle())).unwrap();
        let mut s = sql.session();
        run(
            &mut s,
            "CREATE TABLE m (id int, t text) WITH (storage = 'columnar')",
        );
        let vals: Vec<String> = (0..1000).map(|i| format!("({i}, 'r{i}')")).collect();
        run(&mut s, &format!("INSERT INTO m VALUES {}", vals.join(",")));
        // Syncs start failing part-way: some merge steps commit, the failing one is lost or
        // kept whole, later ones are refused (the shard turns read-only).
        sim.set_faults(mantis_storage::SimFaults {
            sync_failure_probability: 0.2,
            ..Default::default()
        });
        let cat = block_on(sql.catalog()).unwrap();
        let t = cat.table("m").unwrap().clone();
        let merged = block_on(mantis_sql::columnar::merge_table_with(&sql, &t, 40));
        drop(s);
        drop(sql);
        let (engine, sql) = crash_and_reopen(engine, &sim, 2);
        let mut s = sql.session();
        check_ids(&mut s, 1000);
        // The merge finishes after the restart.
        run(&mut s, "VACUUM m");
        check_ids(&mut s, 1000);
        assert_eq!(
            mantis_sql::columnar::last_scan().delta_rows_read,
            0,
            "seed {seed} {merged:?}"
        );
        drop(s);
        drop(sql);
        engine.shutdown().unwrap();
    }
}

// ------------------------------------------------------------- row vs columnar property

/// (g, h, v, f as halves).
type Row4 = (Option<i32>, Option<&'static str>, Option<i64>, Option<i32>);

#[derive(Debug, Clone)]
struct Data {
    rows: Vec<Row4>,
    merged: usize,
    chunk_rows: usize,
}

fn data() -> impl Strategy<Value = Data> {
    let row = (
        prop::option::weighted(0.9, 0i32..5),
        prop::option::weighted(0.85, prop::sample::select(vec!["a", "b", "c", "ab"])),
        prop::option::weighted(0.9, -1000i64..1000),
        prop::option::weighted(0.9, -40i32..40),
    );
    (
        prop::collection::vec(row, 0..120),
        any::<prop::sample::Index>(),
        3usize..40,
    )
        .prop_map(|(rows, m, chunk_rows)| {
            let merged = if rows.is_empty() {
                0
            } else {
                m.index(rows.len() + 1)
            };
            Data {
                rows,
                merged,
                chunk_rows,
            }
        })
}

const COLS: [&str; 4] = ["g", "h", "v", "f"];

fn literal(col: usize, x: i64) -> String {
    match col {
        0 => (x % 6).to_string(),
        1 => ["'a'", "'b'", "'ab'", "'c'", "'zz'"][(x.unsigned_abs() % 5) as usize].into(),
        2 => (x.wrapping_mul(37) % 1000).to_string(),
        _ => format!("{}", (x % 40) as f64 / 2.0),
    }
}

fn query() -> impl Strategy<Value = String> {
    let op = prop::sample::select(vec!["=", "<>", "<", "<=", ">", ">="]);
    let pred = (0usize..4, op, any::<i64>())
        .prop_map(|(c, op, x)| format!("{} {op} {}", COLS[c], literal(c, x)));
    let filter = prop::collection::vec(pred, 0..3).prop_map(|ps| {
        if ps.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", ps.join(" AND "))
        }
    });
    let agg = prop::sample::select(vec![
        "count(*)", "count(h)", "sum(v)", "sum(g)", "avg(v)", "avg(g)", "min(h)", "max(h)",
        "min(v)", "max(f)", "sum(f)", "avg(f)", "min(g)",
    ]);
    let grouped = (
        prop::sample::subsequence(vec![0usize, 1, 3], 0..3),
        prop::collection::vec(agg, 1..4),
        filter.clone(),
    )
        .prop_map(|(g, aggs, f)| {
            let keys: Vec<&str> = g.iter().map(|c| COLS[*c]).collect();
            let mut sel: Vec<String> = keys.iter().map(|s| s.to_string()).collect();
            sel.extend(aggs.iter().map(|s| s.to_string()));
            let gb = if keys.is_empty() {
                String::new()
            } else {
                format!(" GROUP BY {}", keys.join(", "))
            };
            format!("SELECT {} FROM T{f}{gb}", sel.join(", "))
        });
    let projected = (
        prop::sample::subsequence(vec![0usize, 1, 2, 3], 1..4),
        filter.clone(),
    )
        .prop_map(|(cs, f)| {
            format!(
                "SELECT {} FROM T{f}",
                cs.iter().map(|c| COLS[*c]).collect::<Vec<_>>().join(", ")
            )
        });
    // Not pushable: expressions and LIKE take the row path over decoded chunks.
    let rowpath = prop::sample::select(vec![
        "SELECT g, sum(v + 1) FROM T WHERE h LIKE 'a%' GROUP BY g",
        "SELECT count(DISTINCT h) FROM T",
        "SELECT h, v FROM T WHERE v % 2 = 0 OR g IS NULL",
        "SELECT g, count(*) FROM T GROUP BY g HAVING count(*) > 2",
    ])
    .prop_map(String::from);
    prop_oneof![3 => grouped, 2 => projected, 1 => rowpath]
}

fn fill(s: &mut mantis_sql::Session, table: &str, rows: &[Row4]) {
    if rows.is_empty() {
        return;
    }
    let n = |o: Option<String>| o.unwrap_or_else(|| "NULL".into());
    let vals: Vec<String> = rows
        .iter()
        .map(|(g, h, v, f)| {
            format!(
                "({}, {}, {}, {})",
                n(g.map(|x| x.to_string())),
                n(h.map(|x| format!("'{x}'"))),
                n(v.map(|x| x.to_string())),
                n(f.map(|x| format!("{}", f64::from(x) / 2.0)))
            )
        })
        .collect();
    run(s, &format!("INSERT INTO {table} VALUES {}", vals.join(",")));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn columnar_equals_row_engine(d in data(), queries in prop::collection::vec(query(), 1..12)) {
        let (_e, sql, _sim) = setup(2);
        let mut s = sql.session();
        let cols = "g int, h text, v bigint, f double precision";
        run(&mut s, &format!("CREATE TABLE r ({cols})"));
        run(&mut s, &format!("CREATE TABLE c ({cols}) WITH (storage = 'columnar')"));
        fill(&mut s, "r", &d.rows);
        fill(&mut s, "c", &d.rows[..d.merged]);
        merge_small(&sql, "c", d.chunk_rows);
        fill(&mut s, "c", &d.rows[d.merged..]);
        for q in &queries {
            let on_row = block_on(s.execute(&q.replace(" T", " r")));
            let on_col = block_on(s.execute(&q.replace(" T", " c")));
            match (on_row, on_col) {
                (Ok(mut a), Ok(mut b)) => {
                    let text = |r: Option<StatementResult>| match r {
                        Some(StatementResult::Rows { rows, .. }) => sorted(rows.iter().map(|r| r.iter().map(|v| v.to_pg_text().unwrap_or_else(|| "NULL".into())).collect()).collect()),
                        other => panic!("{other:?}"),
                    };
                    prop_assert_eq!(text(a.pop()), text(b.pop()), "{}", q);
                }
                (Err(a), Err(b)) => prop_assert_eq!(a.sqlstate, b.sqlstate, "{}", q),
                (a, b) => prop_assert!(false, "{q}: row {a:?} columnar {b:?}"),
            }
        }
    }
}

// ------------------------------------------------- issue 11, round 2: bulk path, pending

#[test]
fn big_insert_goes_straight_into_chunks_and_small_ones_into_the_delta() {
    let (_e, sql, _sim) = setup(2);
    let mut s = sql.session();
    run(
        &mut s,
        "CREATE TABLE m (id bigint, g int, t text) WITH (storage = 'columnar')",
    );
    let n = mantis_sql::columnar::bulk::BULK_ROWS_MIN + 500;
    let vals: Vec<String> = (0..n)
        .map(|i| format!("({i}, {}, '{}')", i % 7, ["x", "y", "z"][i % 3]))
        .collect();
    run(&mut s, &format!("INSERT INTO m VALUES {}", vals.join(",")));
    run(&mut s, "INSERT INTO m VALUES (-1, 100, 'small')");
    let n = n as i64;
    assert_eq!(
        rows(&mut s, "SELECT count(*), sum(id) FROM m"),
        vec![vec![(n + 1).to_string(), (n * (n - 1) / 2 - 1).to_string()]]
    );
    let c = mantis_sql::columnar::last_scan();
    // Two shards, one chunk each from the big INSERT; the small one in the delta.
    assert_eq!(c.chunks_total, 2, "{c:?}");
    assert_eq!(c.delta_rows_read, 1, "{c:?}");
    let per_t: Vec<Vec<String>> = sorted(rows(&mut s, "SELECT t, count(*) FROM m GROUP BY t"));
    let third = |r: i64| ((n - r + 2) / 3).to_string();
    assert_eq!(
        per_t,
        vec![
            vec!["small".to_string(), "1".to_string()],
            vec!["x".to_string(), third(0)],
            vec!["y".to_string(), third(1)],
            vec!["z".to_string(), third(2)],
        ]
    );
    assert_eq!(
        rows(&mut s, "SELECT count(*) FROM m WHERE t = 'y' AND g < 3"),
        vec![vec![(0..n)
            .filter(|i| i % 3 == 1 && i % 7 < 3)
            .count()
            .to_string()]]
    );
}

#[test]
fn a_transaction_sees_its_own_pending_rows_in_pushed_down_scans() {
    let (_e, sql, _sim) = setup(2);
    let mut s = sql.session();
    run(
        &mut s,
        "CREATE TABLE m (g int, v bigint) WITH (storage = 'columnar')",
    );
    run(&mut s, "INSERT INTO m VALUES (1, 10), (2, 20), (1, 30)");
    run(&mut s, "VACUUM m");
    run(&mut s, "INSERT INTO m VALUES (2, 5)");
    run(&mut s, "BEGIN");
    run(&mut s, "INSERT INTO m VALUES (1, 100), (3, 7)");
    assert_eq!(
        sorted(rows(&mut s, "SELECT g, count(*), sum(v) FROM m GROUP BY g")),
        vec![
            vec!["1", "3", "140"],
            vec!["2", "2", "25"],
            vec!["3", "1", "7"]
        ]
    );
    assert_eq!(
        sorted(rows(&mut s, "SELECT g, v FROM m WHERE v > 20")),
        vec![vec!["1", "100"], vec!["1", "30"]]
    );
    run(&mut s, "ROLLBACK");
    assert_eq!(
        sorted(rows(&mut s, "SELECT g, sum(v) FROM m GROUP BY g")),
        vec![vec!["1", "40"], vec!["2", "25"]]
    );
}
