//! Locks through the appliance: `GET /api/v1/locks` shows where a transaction holds its row
//! locks, and a deadlock whose two edges lie on different shards is broken by the periodic
//! global pass — the victim gets 40P01 (deadlock_detected) long before the 5 s lock timeout
//! would have failed it with 55P03.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Options};

fn client(d: &Daemon) -> postgres::Client {
    let url = format!(
        "host=127.0.0.1 port={} user=mantis dbname=mantis connect_timeout=10",
        d.pg.port()
    );
    postgres::Client::connect(&url, postgres::NoTls).unwrap()
}

fn locks(d: &Daemon) -> serde_json::Value {
    let r = d.http("GET", "/api/v1/locks", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The shard holding row locks right now (exactly one must).
fn shard_with_granted_locks(d: &Daemon) -> u64 {
    let v = locks(d);
    let holding: Vec<u64> = v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["granted_now"].as_u64().unwrap() > 0)
        .map(|s| s["shard"].as_u64().unwrap())
        .collect();
    assert_eq!(holding.len(), 1, "{v}");
    holding[0]
}

/// Two ids whose rows live on different shards, found through `/api/v1/locks`.
fn ids_on_two_shards(d: &Daemon, c: &mut postgres::Client) -> (i32, i32) {
    let mut seen: Vec<(i32, u64)> = Vec::new();
    for id in 1..=40 {
        c.batch_execute(&format!("BEGIN; UPDATE x SET n = n WHERE id = {id}"))
            .unwrap();
        let shard = shard_with_granted_locks(d);
        c.batch_execute("ROLLBACK").unwrap();
        if let Some(&(other, _)) = seen.iter().find(|(_, s)| *s != shard) {
            return (other, id);
        }
        seen.push((id, shard));
    }
    panic!("40 rows all on one shard: {seen:?}");
}

/// Updates row `id` (blocking while another transaction holds it), then commits or rolls
/// back: the SQLSTATE of a failure and when the statement ended.
fn second_update_then_end(
    mut c: postgres::Client,
    id: i32,
    started: Instant,
) -> (Option<String>, Duration) {
    let r = c.batch_execute(&format!("UPDATE x SET n = n + 1 WHERE id = {id}"));
    let ended = started.elapsed();
    let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
    c.batch_execute(end).unwrap();
    (
        r.err().and_then(|e| e.code().map(|c| c.code().to_string())),
        ended,
    )
}

#[test]
fn cross_shard_deadlock_is_broken_by_the_periodic_global_pass() {
    let d = Daemon::start(Options::default());
    let mut a = client(&d);
    let mut b = client(&d);
    a.batch_execute("CREATE TABLE x (id INT PRIMARY KEY, n INT)")
        .unwrap();
    let values: Vec<String> = (1..=40).map(|i| format!("({i}, 0)")).collect();
    a.batch_execute(&format!("INSERT INTO x VALUES {}", values.join(", ")))
        .unwrap();
    let (r1, r2) = ids_on_two_shards(&d, &mut a);

    a.batch_execute(&format!("BEGIN; UPDATE x SET n = n + 1 WHERE id = {r1}"))
        .unwrap();
    b.batch_execute(&format!("BEGIN; UPDATE x SET n = n + 1 WHERE id = {r2}"))
        .unwrap();
    let started = Instant::now();
    let ta = std::thread::spawn(move || second_update_then_end(a, r2, started));
    let tb = std::thread::spawn(move || second_update_then_end(b, r1, started));
    let (ea, da) = ta.join().unwrap();
    let (eb, db) = tb.join().unwrap();
    let failures: Vec<String> = [ea, eb].into_iter().flatten().collect();
    assert_eq!(
        failures,
        vec!["40P01".to_string()],
        "one victim, by deadlock detection; log:\n{}",
        d.log()
    );
    // The lock timeout is 5 s: a victim chosen by the detector fails well before that.
    let victim_after = da.min(db);
    assert!(
        victim_after < Duration::from_millis(4000),
        "victim failed after {victim_after:?}: timeout, not detection"
    );
    let v = locks(&d);
    assert!(
        v["global_detector"]["victims_total"].as_u64().unwrap() >= 1,
        "the global pass chose no victim: {v}"
    );
    assert!(v["global_detector"]["passes_total"].as_u64().unwrap() >= 1);
    assert_eq!(v["totals"]["granted_now"].as_u64().unwrap(), 0, "{v}");
    // The survivor's increments of both rows committed; the victim's rolled back.
    let mut c = client(&d);
    let sum: i64 = c
        .query_one(
            &format!("SELECT CAST(SUM(n) AS BIGINT) FROM x WHERE id IN ({r1}, {r2})"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(sum, 2);
}

#[test]
fn lock_routes_answer_and_refuse_bad_input() {
    let d = Daemon::start(Options::default());
    let mut c = client(&d);
    c.batch_execute("CREATE TABLE y (id INT PRIMARY KEY)")
        .unwrap();
    c.batch_execute("INSERT INTO y VALUES (1)").unwrap();
    let v = locks(&d);
    assert_eq!(v["shards"].as_array().unwrap().len(), 2, "{v}");
    assert!(v["totals"]["acquires_total"].as_u64().unwrap() >= 1, "{v}");
    let r = d.http("GET", "/api/v1/locks/resource/db:0", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["resource"], "db:0");
    let r = d.http("GET", "/api/v1/locks/resource/db:zero", &[], b"");
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "bad_resource");
    let r = d.http("POST", "/api/v1/locks/detect", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["victims"].as_array().unwrap().len(), 0);
    let r = d.http("DELETE", "/api/v1/locks", &[], b"");
    assert_eq!(r.status, 405);
}
