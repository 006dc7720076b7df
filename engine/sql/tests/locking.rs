//! Row locks of SQL transactions (issue 9): strict 2PL through the shards' lock managers.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use futures::future::join;

/// Two sessions incrementing one row concurrently, many times, lose no increment: the second
/// UPDATE waits for the first one's X lock and re-reads the row once it has it.
#[test]
fn concurrent_increments_of_one_row_lose_no_update() {
    for shards in [1, 2] {
        let (_engine, sql, _sim) = setup(shards);
        let mut a = sql.session();
        let mut b = sql.session();
        run(&mut a, "CREATE TABLE t (k INT PRIMARY KEY, v INT)");
        run(&mut a, "INSERT INTO t VALUES (1, 0)");
        let rounds = 100;
        let inc = |explicit: bool| {
            if explicit {
                "BEGIN; UPDATE t SET v = v + 1 WHERE k = 1; COMMIT"
            } else {
                "UPDATE t SET v = v + 1 WHERE k = 1"
            }
        };
        block_on(join(
            async {
                for i in 0..rounds {
                    a.execute(inc(i % 2 == 0)).await.unwrap();
                }
            },
            async {
                for i in 0..rounds {
                    b.execute(inc(i % 3 == 0)).await.unwrap();
                }
            },
        ));
        assert_eq!(
            rows(&mut a, "SELECT v FROM t WHERE k = 1"),
            vec![vec![(2 * rounds).to_string()]],
            "{shards} shards"
        );
    }
}

/// A transaction holds its row lock until COMMIT: the other session's UPDATE waits, then
/// sees the committed value.
#[test]
fn row_lock_is_held_until_commit() {
    let (_engine, sql, _sim) = setup(2);
    let mut a = sql.session();
    let mut b = sql.session();
    run(&mut a, "CREATE TABLE acct (id INT PRIMARY KEY, bal INT)");
    run(&mut a, "INSERT INTO acct VALUES (1, 100), (2, 100)");
    run(&mut a, "BEGIN");
    run(&mut a, "UPDATE acct SET bal = bal - 30 WHERE id = 1");
    // b is polled first: it sends its lock request and waits while a still holds row 1.
    // Without the lock b would double the committed 100 and a's commit would then write 70.
    block_on(join(
        async {
            b.execute("UPDATE acct SET bal = bal * 2 WHERE id = 1")
                .await
                .unwrap();
        },
        async {
            a.execute("UPDATE acct SET bal = bal + 30 WHERE id = 2; COMMIT")
                .await
                .unwrap();
        },
    ));
    // b doubled the committed 70, not the old 100.
    assert_eq!(
        rows(&mut a, "SELECT bal FROM acct ORDER BY id"),
        vec![vec!["140".to_string()], vec!["130".to_string()]]
    );
}

/// Two transactions updating two rows in opposite order deadlock; one gets 40P01 and, after
/// its ROLLBACK, the other commits.
#[test]
fn deadlock_victim_gets_40p01() {
    let (_engine, sql, _sim) = setup(1);
    let mut a = sql.session();
    let mut b = sql.session();
    run(&mut a, "CREATE TABLE d (id INT PRIMARY KEY, n INT)");
    run(&mut a, "INSERT INTO d VALUES (1, 0), (2, 0)");
    run(&mut a, "BEGIN; UPDATE d SET n = n + 1 WHERE id = 1");
    run(&mut b, "BEGIN; UPDATE d SET n = n + 1 WHERE id = 2");
    let (ra, rb) = block_on(join(
        async {
            let r = a.execute("UPDATE d SET n = n + 1 WHERE id = 2").await;
            let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
            a.execute(end).await.unwrap();
            r
        },
        async {
            let r = b.execute("UPDATE d SET n = n + 1 WHERE id = 1").await;
            let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
            b.execute(end).await.unwrap();
            r
        },
    ));
    let states: Vec<&str> = [&ra, &rb]
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.sqlstate))
        .collect();
    assert_eq!(states, vec!["40P01"], "exactly one victim: {ra:?} {rb:?}");
    // The survivor's two increments are in, the victim's none.
    assert_eq!(
        rows(&mut a, "SELECT sum(n) FROM d"),
        vec![vec!["2".to_string()]]
    );
}

/// A deadlock over rows on two shards is invisible to each shard alone; the global pass
/// (per-shard edges merged) finds it and the victim gets 40P01.
#[test]
fn cross_shard_deadlock_is_broken_by_the_global_pass() {
    let (engine, sql, _sim) = setup(2);
    let handle = engine.handle();
    let mut a = sql.session();
    let mut b = sql.session();
    run(&mut a, "CREATE TABLE x (id INT PRIMARY KEY, n INT)");
    // Two ids whose rows live on different shards.
    let mut ids = Vec::new();
    for id in 1..100i64 {
        let key = mantis_sql::keys::row_key(
            match block_on(sql.catalog()).unwrap().table("x") {
                Some(t) => t.id,
                None => panic!("table x missing"),
            },
            &[mantis_sql::Value::Int32(id as i32)],
        );
        let shard = handle.shard_for(&key);
        if ids.iter().all(|(_, s)| *s != shard) {
            ids.push((id, shard));
        }
        if ids.len() == 2 {
            break;
        }
    }
    let (r1, r2) = (ids[0].0, ids[1].0);
    run(
        &mut a,
        &format!("INSERT INTO x VALUES ({r1}, 0), ({r2}, 0)"),
    );
    run(
        &mut a,
        &format!("BEGIN; UPDATE x SET n = n + 1 WHERE id = {r1}"),
    );
    run(
        &mut b,
        &format!("BEGIN; UPDATE x SET n = n + 1 WHERE id = {r2}"),
    );
    let detector = async {
        // Poll with a deadline: run global passes until one finds the cycle.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let res = mantis_sql::txlock::detect_global(&handle).await.unwrap();
            if !res.victims.is_empty() {
                return res.victims.len();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no cross-shard deadlock found"
            );
            futures::future::ready(()).await;
        }
    };
    let ((ra, rb), victims) = block_on(async {
        futures::join!(
            join(
                async {
                    let r = a
                        .execute(&format!("UPDATE x SET n = n + 1 WHERE id = {r2}"))
                        .await;
                    let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
                    a.execute(end).await.unwrap();
                    r
                },
                async {
                    let r = b
                        .execute(&format!("UPDATE x SET n = n + 1 WHERE id = {r1}"))
                        .await;
                    let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
                    b.execute(end).await.unwrap();
                    r
                },
            ),
            detector
        )
    });
    assert_eq!(victims, 1);
    let states: Vec<&str> = [&ra, &rb]
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.sqlstate))
        .collect();
    assert_eq!(states, vec!["40P01"], "{ra:?} {rb:?}");
    assert_eq!(
        rows(&mut a, "SELECT sum(n) FROM x"),
        vec![vec!["2".to_string()]]
    );
    let stats = block_on(mantis_sql::txlock::lock_stats(&handle)).unwrap();
    assert_eq!(stats.len(), 2);
    assert_eq!(
        stats.iter().map(|s| s.deadlock_victims_total).sum::<u64>(),
        1
    );
    assert_eq!(
        stats.iter().map(|s| s.granted_now).sum::<u64>(),
        0,
        "every lock released"
    );
}

/// The story: an UPDATE by full primary key under SERIALIZABLE asked the row's shard for the
/// same X lock twice (once as a read lock before reading, once as the write lock after
/// reading), and under any level read the row, locked it, then read it again: three or four
/// messages to a remote row's shard inside TPC-B's branch-row hold, where two do. Now the point
/// target is locked first (once) and read once. Observable: no re-entrant lock request.
#[test]
fn a_point_update_locks_its_row_once_at_every_level() {
    for shards in [1, 2] {
        let (engine, sql, _sim) = setup(shards);
        let handle = engine.handle();
        let mut a = sql.session();
        run(&mut a, "CREATE TABLE t (k INT PRIMARY KEY, v INT)");
        run(&mut a, "INSERT INTO t VALUES (1, 0), (2, 0), (3, 0)");
        let reentrant = || reentrant_requests(&handle);
        for level in ["SERIALIZABLE", "READ COMMITTED"] {
            for k in 1..=3 {
                let before = reentrant();
                run(
                    &mut a,
                    &format!(
                        "BEGIN ISOLATION LEVEL {level}; UPDATE t SET v = v + 1 WHERE k = {k}; COMMIT"
                    ),
                );
                assert_eq!(reentrant(), before, "{level}, key {k}, {shards} shards");
            }
        }
        assert_eq!(
            rows(&mut a, "SELECT k, v FROM t ORDER BY k"),
            vec![
                vec!["1".to_string(), "2".to_string()],
                vec!["2".to_string(), "2".to_string()],
                vec!["3".to_string(), "2".to_string()],
            ]
        );
    }
}

/// The story: pgbench's TPC-B transaction UPDATEs an account, then SELECTs it; under
/// SERIALIZABLE the SELECT asked the row's shard for an S lock on a row the transaction
/// already held X, a message (to a remote shard) granted at once every time. A transaction now
/// remembers what it holds and asks again only for more. Observable: no re-entrant request.
#[test]
fn a_transaction_asks_for_a_lock_it_holds_only_once() {
    for shards in [1, 2] {
        let (engine, sql, _sim) = setup(shards);
        let handle = engine.handle();
        let mut a = sql.session();
        run(&mut a, "CREATE TABLE t (k INT PRIMARY KEY, v INT)");
        run(&mut a, "INSERT INTO t VALUES (1, 0), (2, 0)");
        let reentrant = || reentrant_requests(&handle);
        let before = reentrant();
        run(&mut a, "BEGIN ISOLATION LEVEL SERIALIZABLE");
        run(&mut a, "UPDATE t SET v = v + 1 WHERE k = 1");
        assert_eq!(rows(&mut a, "SELECT v FROM t WHERE k = 1"), vec![vec!["1"]]);
        run(&mut a, "UPDATE t SET v = v + 1 WHERE k = 1");
        assert_eq!(rows(&mut a, "SELECT v FROM t WHERE k = 1"), vec![vec!["2"]]);
        run(&mut a, "COMMIT");
        assert_eq!(reentrant(), before, "{shards} shards");
        // The memory ends with the transaction: the next one locks afresh (and a second
        // session is not blocked by a lock the first only remembers).
        let mut b = sql.session();
        run(&mut b, "UPDATE t SET v = v + 10 WHERE k = 1");
        assert_eq!(
            rows(&mut a, "SELECT v FROM t WHERE k = 1"),
            vec![vec!["12"]]
        );
    }
}

/// Lock requests, on every shard, for something the transaction already held.
fn reentrant_requests(handle: &mantis_engine::EngineHandle) -> u64 {
    block_on(mantis_sql::txlock::lock_stats(handle))
        .unwrap()
        .iter()
        .map(|s| s.reentrant_total)
        .sum()
}

/// The story: pgbench's history INSERT has no primary key, so its row gets a hidden id, and
/// that id used to be drawn for the session's shard alone. A transaction whose account,
/// teller and branch rows all lived on the *other* shard then wrote its history row on the
/// session's, and paid a two-phase commit (a Prepare and two syncs) for nothing. The hidden
/// row now joins a shard the transaction already writes on: such a transaction commits on one
/// shard, with no Prepare record anywhere.
#[test]
fn a_hidden_id_row_joins_the_shard_the_transaction_writes_on() {
    let (engine, sql, _sim) = setup(2);
    let handle = engine.handle();
    let mut a = sql.session();
    run(&mut a, "CREATE TABLE t (k INT PRIMARY KEY, v INT)");
    run(&mut a, "CREATE TABLE h (k INT, note TEXT)");
    run(&mut a, "INSERT INTO t VALUES (1, 0), (2, 0)");
    let prepares = || -> u64 {
        block_on(handle.stats())
            .unwrap()
            .iter()
            .map(|s| s.twopc.prepared_total)
            .sum()
    };
    let before = prepares();
    // 20 transactions: were the hidden id's shard drawn at random, each would be a
    // two-shard commit with probability 1/2.
    for i in 0..20 {
        let k = 1 + i % 2;
        run(&mut a, "BEGIN");
        run(&mut a, &format!("UPDATE t SET v = v + 1 WHERE k = {k}"));
        run(&mut a, &format!("INSERT INTO h VALUES ({k}, 'round {i}')"));
        run(&mut a, "COMMIT");
    }
    assert_eq!(prepares(), before, "every commit stayed on one shard");
    assert_eq!(rows(&mut a, "SELECT count(*) FROM h"), vec![vec!["20"]]);
    assert_eq!(
        rows(&mut a, "SELECT v FROM t ORDER BY k"),
        vec![vec!["10"], vec!["10"]]
    );
    // A transaction writing on both shards still commits on both (and prepares): sixteen
    // rows cannot all hash to one of two shards but with probability 2^-15.
    run(
        &mut a,
        "INSERT INTO t SELECT k, 0 FROM generate_series(3, 16) AS g(k)",
    );
    run(&mut a, "BEGIN");
    run(&mut a, "UPDATE t SET v = v + 1");
    run(&mut a, "INSERT INTO h VALUES (3, 'both')");
    run(&mut a, "COMMIT");
    assert!(prepares() > before, "a two-shard commit prepares");
    assert_eq!(rows(&mut a, "SELECT count(*) FROM h"), vec![vec!["21"]]);
}
