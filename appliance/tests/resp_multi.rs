//! Issue 9: RESP transactions (MULTI/EXEC/DISCARD/WATCH/UNWATCH) against the real mantisd,
//! compared reply for reply with a real redis-server running the same scripts, plus
//! concurrency: transfers between keys on different shards conserve the total while plain
//! writes hit the same keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{encode, eventually, free_port, require_tool, Daemon, Options, RespClient};

/// A real redis-server on a free loopback port, killed on drop.
struct Redis {
    child: Child,
    addr: SocketAddr,
}

impl Redis {
    fn start() -> Redis {
        require_tool("redis-server");
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let r = Redis { child, addr };
        eventually(Duration::from_secs(20), "redis-server answers PING", || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        r
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn daemon() -> Daemon {
    require_tool("redis-cli");
    Daemon::start(Options::default())
}

/// Sends every command of `script` on one connection and returns each raw reply.
fn run_script(addr: SocketAddr, script: &[&[&str]]) -> Vec<String> {
    let mut c = RespClient::connect(addr);
    script
        .iter()
        .map(|cmd| {
            let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
            c.command(&args);
            String::from_utf8_lossy(&c.read_reply()).into_owned()
        })
        .collect()
}

fn cmd(c: &mut RespClient, args: &[&str]) -> String {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.command(&args);
    String::from_utf8_lossy(&c.read_reply()).into_owned()
}

/// The scripts both servers run; every reply must be byte-identical.
const SCRIPT: &[&[&str]] = &[
    &["EXEC"],
    &["DISCARD"],
    &["MULTI"],
    &["MULTI"],
    &["SET", "a", "1"],
    &["WATCH", "x"],
    &["EXEC"],
    &["MULTI"],
    &["EXEC"],
    // A queuing error (arity, unknown command) discards the whole transaction.
    &["MULTI"],
    &["SET", "a"],
    &["INCR", "a"],
    &["EXEC"],
    &["GET", "a"],
    &["MULTI"],
    &["NOSUCHCOMMAND", "x"],
    &["SET", "a", "2"],
    &["EXEC"],
    &["GET", "a"],
    // Runtime errors are one element each; the other commands still apply (no rollback).
    &["SET", "s", "abc"],
    &["MULTI"],
    &["INCR", "s"],
    &["SET", "t", "1"],
    &["SET", "t", "1", "BADOPT"],
    &["APPEND", "t", "23"],
    &["INCRBY", "t", "7"],
    &["EXEC"],
    &["GET", "t"],
    // Commands see the effects of the earlier ones.
    &["MULTI"],
    &["SET", "m1", "1"],
    &["INCR", "m1"],
    &["MSET", "m2", "a", "m3", "b"],
    &["MGET", "m1", "m2", "m3", "none"],
    &["DEL", "m1", "m2", "nope"],
    &["EXISTS", "m1", "m3", "m3"],
    &["SETNX", "m3", "x"],
    &["GETSET", "m3", "c"],
    &["GETDEL", "m3"],
    &["STRLEN", "m3"],
    &["TYPE", "m3"],
    &["PING"],
    &["ECHO", "hi"],
    &["EXEC"],
    &["MGET", "m1", "m2", "m3"],
    // DISCARD drops the queue.
    &["MULTI"],
    &["SET", "d", "1"],
    &["DISCARD"],
    &["EXISTS", "d"],
    // WATCH: a modification by the same client counts too; UNWATCH forgets.
    &["WATCH", "w"],
    &["SET", "w", "1"],
    &["MULTI"],
    &["GET", "w"],
    &["EXEC"],
    &["WATCH", "w"],
    &["SET", "w", "1"],
    &["UNWATCH"],
    &["MULTI"],
    &["GET", "w"],
    &["EXEC"],
    // Created then deleted again: still modified.
    &["WATCH", "nokey"],
    &["SET", "nokey", "1"],
    &["DEL", "nokey"],
    &["MULTI"],
    &["EXEC"],
    // Refused conditional writes do not modify.
    &["SET", "q", "v"],
    &["WATCH", "q", "q-absent"],
    &["SETNX", "q", "1"],
    &["DEL", "q-absent"],
    &["EXPIRE", "q-absent", "10"],
    &["SET", "q-absent", "x", "XX"],
    &["MULTI"],
    &["INCR", "counter"],
    &["EXEC"],
    // Watching an unrelated key that others modify does not matter.
    &["WATCH", "u1"],
    &["SET", "u2", "1"],
    &["MULTI"],
    &["SET", "u1", "x"],
    &["EXEC"],
    // A second WATCH of a key does not reset it.
    &["WATCH", "zz"],
    &["SETNX", "zz", "1"],
    &["WATCH", "zz"],
    &["MULTI"],
    &["EXEC"],
    // UNWATCH is queued inside MULTI; EXEC forgets the watches anyway.
    &["WATCH", "v"],
    &["MULTI"],
    &["UNWATCH"],
    &["SET", "v", "1"],
    &["EXEC"],
    &["SET", "v", "2"],
    &["MULTI"],
    &["GET", "v"],
    &["EXEC"],
    // Expiry options inside a transaction.
    &["MULTI"],
    &["SET", "e", "1", "EX", "100"],
    &["TTL", "e"],
    &["PERSIST", "e"],
    &["TTL", "e"],
    &["EXPIRE", "e", "50", "NX"],
    &["EXPIRE", "e", "-1"],
    &["EXISTS", "e"],
    &["SETEX", "e2", "0", "x"],
    &["EXEC"],
];

#[test]
fn transactions_answer_exactly_like_redis_server() {
    let d = daemon();
    let redis = Redis::start();
    let ours = run_script(d.resp, SCRIPT);
    let theirs = run_script(redis.addr, SCRIPT);
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(o, t, "command {i}: {:?}", SCRIPT[i]);
    }
    assert_eq!(ours.len(), SCRIPT.len());
}

#[test]
fn redis_cli_drives_a_transaction_and_sees_watch_failures() {
    let d = daemon();
    let redis = Redis::start();
    let script =
        b"SET balance 10\nMULTI\nDECRBY balance 3\nINCR audit\nGET balance\nEXEC\nGET balance\n";
    let ours = d.cli_raw(&[], Some(script));
    let mut theirs_cmd = Command::new("redis-cli");
    theirs_cmd.args(["-p", &redis.addr.port().to_string()]);
    let theirs = run_with_stdin(theirs_cmd, script);
    assert_eq!(String::from_utf8_lossy(&ours.stdout), theirs);
    assert!(theirs.contains("QUEUED"), "{theirs}");
    assert_eq!(d.cli(&["GET", "balance"]), "7");

    // Another client's write between WATCH and EXEC (even of the same value) aborts EXEC.
    let mut a = d.resp_client();
    assert_eq!(cmd(&mut a, &["WATCH", "balance"]), "+OK\r\n");
    assert_eq!(d.cli(&["SET", "balance", "7"]), "OK");
    assert_eq!(cmd(&mut a, &["MULTI"]), "+OK\r\n");
    assert_eq!(cmd(&mut a, &["INCR", "balance"]), "+QUEUED\r\n");
    assert_eq!(cmd(&mut a, &["EXEC"]), "*-1\r\n");
    assert_eq!(d.cli(&["GET", "balance"]), "7");
    // RESP3: the aborted EXEC is a null.
    assert!(cmd(&mut a, &["HELLO", "3"]).starts_with('%'));
    assert_eq!(cmd(&mut a, &["WATCH", "balance"]), "+OK\r\n");
    assert_eq!(d.cli(&["DEL", "balance"]), "1");
    assert_eq!(cmd(&mut a, &["MULTI"]), "+OK\r\n");
    assert_eq!(cmd(&mut a, &["EXEC"]), "_\r\n");
}

fn run_with_stdin(mut cmd: Command, input: &[u8]) -> String {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_watched_key_that_expires_fails_exec() {
    let d = daemon();
    let mut a = d.resp_client();
    assert_eq!(cmd(&mut a, &["SET", "e", "1", "PX", "300"]), "+OK\r\n");
    assert_eq!(cmd(&mut a, &["WATCH", "e", "never"]), "+OK\r\n");
    eventually(Duration::from_secs(10), "e expires", || {
        d.cli(&["EXISTS", "e"]) == "0"
    });
    assert_eq!(cmd(&mut a, &["MULTI"]), "+OK\r\n");
    assert_eq!(cmd(&mut a, &["SET", "x", "1"]), "+QUEUED\r\n");
    assert_eq!(cmd(&mut a, &["EXEC"]), "*-1\r\n");
    assert_eq!(d.cli(&["EXISTS", "x"]), "0");
}

#[test]
fn the_queue_is_bounded_by_multi_queued_commands_max() {
    require_tool("redis-cli");
    let d = Daemon::start(Options {
        extra_args: vec!["--multi-queued-commands-max".into(), "3".into()],
        ..Options::default()
    });
    let mut c = d.resp_client();
    assert_eq!(cmd(&mut c, &["MULTI"]), "+OK\r\n");
    for i in 0..3 {
        assert_eq!(cmd(&mut c, &["SET", &format!("k{i}"), "v"]), "+QUEUED\r\n");
    }
    let full = cmd(&mut c, &["SET", "k3", "v"]);
    assert!(full.starts_with("-ERR transaction queue full"), "{full}");
    assert!(cmd(&mut c, &["EXEC"]).starts_with("-EXECABORT"));
    assert_eq!(d.cli(&["EXISTS", "k0", "k1", "k2", "k3"]), "0");
    // The connection works on, and a transaction within the limit runs.
    assert_eq!(cmd(&mut c, &["MULTI"]), "+OK\r\n");
    assert_eq!(cmd(&mut c, &["SET", "k0", "v"]), "+QUEUED\r\n");
    assert_eq!(cmd(&mut c, &["EXEC"]), "*1\r\n+OK\r\n");
}

#[test]
fn pipelined_transactions_queue_in_order() {
    let d = daemon();
    let mut c = d.resp_client();
    let mut bytes = Vec::new();
    for args in [
        &["SET", "p", "1"][..],
        &["MULTI"],
        &["INCR", "p"],
        &["GET", "p"],
        &["SET", "p2", "x"],
        &["EXEC"],
        &["GET", "p"],
    ] {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        bytes.extend(encode(&a));
    }
    c.send(&bytes);
    let replies: Vec<String> = (0..7)
        .map(|_| String::from_utf8_lossy(&c.read_reply()).into_owned())
        .collect();
    assert_eq!(
        replies,
        [
            "+OK\r\n",
            "+OK\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "*3\r\n:2\r\n$1\r\n2\r\n+OK\r\n",
            "$1\r\n2\r\n"
        ]
    );
}

fn int_of(reply: &str) -> i64 {
    // `$n\r\nVALUE\r\n` or `:n\r\n`
    let line = reply.lines().last().unwrap();
    line.trim_start_matches(':').parse().unwrap()
}

/// Transfers between keys on both shards: WATCH/retry clients, plain MULTI clients and a
/// plain INCR/DECR writer on the same keys. Any write slipping between an EXEC's read and its
/// write would lose an update and change the total.
#[test]
fn concurrent_transfers_across_shards_conserve_the_total() {
    let d = daemon();
    let keys: Vec<String> = (0..4).map(|i| format!("acct:{i}")).collect();
    let initial = 1_000i64;
    for k in &keys {
        assert_eq!(d.cli(&["SET", k, &initial.to_string()]), "OK");
    }
    let addr = d.resp;
    let rounds = 60;
    let mut threads = Vec::new();
    for t in 0..4usize {
        let keys = keys.clone();
        threads.push(std::thread::spawn(move || {
            let mut c = RespClient::connect(addr);
            let mut retries = 0u64;
            for r in 0..rounds {
                let from = &keys[(t + r) % keys.len()];
                let to = &keys[(t + r + 1 + t % 2) % keys.len()];
                let amount = 1 + (r % 7) as i64;
                if t % 2 == 0 {
                    // Optimistic: WATCH, read, check, MULTI, retry on a null EXEC.
                    loop {
                        assert_eq!(cmd(&mut c, &["WATCH", from, to]), "+OK\r\n");
                        let balance = int_of(&cmd(&mut c, &["GET", from]));
                        assert!(balance >= 0);
                        assert_eq!(cmd(&mut c, &["MULTI"]), "+OK\r\n");
                        cmd(&mut c, &["DECRBY", from, &amount.to_string()]);
                        cmd(&mut c, &["INCRBY", to, &amount.to_string()]);
                        let exec = cmd(&mut c, &["EXEC"]);
                        if exec == "*-1\r\n" {
                            retries += 1;
                            continue;
                        }
                        assert!(exec.starts_with("*2\r\n:"), "{exec}");
                        break;
                    }
                } else {
                    assert_eq!(cmd(&mut c, &["MULTI"]), "+OK\r\n");
                    cmd(&mut c, &["DECRBY", from, &amount.to_string()]);
                    cmd(&mut c, &["INCRBY", to, &amount.to_string()]);
                    let exec = cmd(&mut c, &["EXEC"]);
                    assert!(exec.starts_with("*2\r\n:"), "{exec}");
                }
            }
            retries
        }));
    }
    let plain_keys = keys.clone();
    let plain = std::thread::spawn(move || {
        let mut c = RespClient::connect(addr);
        for r in 0..rounds * 2 {
            let k = &plain_keys[r % plain_keys.len()];
            assert!(cmd(&mut c, &["INCR", k]).starts_with(':'));
            assert!(cmd(&mut c, &["DECR", k]).starts_with(':'));
        }
    });
    let retries: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    plain.join().unwrap();
    let mut c = d.resp_client();
    let total: i64 = keys.iter().map(|k| int_of(&cmd(&mut c, &["GET", k]))).sum();
    assert_eq!(total, initial * keys.len() as i64, "retries: {retries}");
    // Both shards took part (keys spread by hash) and no lock is left behind.
    let locks = d.http("GET", "/api/v1/locks", &[], b"").json();
    assert_eq!(locks["totals"]["granted_now"], 0, "{locks}");
    assert!(locks["totals"]["acquires_total"].as_u64().unwrap() > 0);
    let shards_used = locks["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["acquires_total"].as_u64().unwrap() > 0)
        .count();
    assert_eq!(shards_used, 2, "{locks}");
}

#[test]
fn a_disconnect_leaves_no_watch_and_multi_key_plain_writes_are_atomic() {
    let d = daemon();
    {
        let mut a = d.resp_client();
        assert_eq!(cmd(&mut a, &["WATCH", "g1", "g2"]), "+OK\r\n");
        assert_eq!(cmd(&mut a, &["MULTI"]), "+OK\r\n");
        assert_eq!(cmd(&mut a, &["SET", "g1", "1"]), "+QUEUED\r\n");
    }
    let started = Instant::now();
    // MSETNX checks and writes under the keys' locks: exactly one of two overlapping wins.
    assert_eq!(d.cli(&["MSETNX", "g1", "a", "g2", "b"]), "1");
    assert_eq!(d.cli(&["MSETNX", "g2", "c", "g3", "d"]), "0");
    assert_eq!(d.cli(&["MGET", "g1", "g2", "g3"]), "a\nb");
    assert_eq!(d.cli(&["EXISTS", "g3"]), "0");
    assert_eq!(d.cli(&["DEL", "g1", "g2", "g3"]), "2");
    assert!(started.elapsed() < Duration::from_secs(10));
}

// ---- POST /api/v1/txn and lock metrics ----

fn txn(d: &Daemon, body: serde_json::Value) -> common::HttpResponse {
    d.http(
        "POST",
        "/api/v1/txn",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

#[test]
fn http_txn_runs_operations_atomically_with_conditions() {
    let d = daemon();
    assert_eq!(d.cli(&["SET", "h:a", "1"]), "OK");
    let r = txn(
        &d,
        serde_json::json!({"ops": [
            {"op": "expect", "key": "h:a", "equals": "1"},
            {"op": "expect", "key": "h:new", "absent": true},
            {"op": "get", "key": "h:a"},
            {"op": "put", "key": "h:a", "value": "2"},
            {"op": "get", "key": "h:a"},
            {"op": "put", "key": "h:new", "value_base64": "AP8=", "ttl_ms": 60000},
            {"op": "delete", "key": "h:none"},
            {"op": "get", "key": "h:new"}
        ]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let results = j["results"].as_array().unwrap();
    assert_eq!(results.len(), 8);
    assert_eq!(results[2]["value"], "1");
    assert_eq!(results[4]["value"], "2", "operations see earlier ones");
    assert_eq!(results[6]["deleted"], false);
    assert_eq!(results[7]["value_base64"], "AP8=");
    assert!(results[7]["expires_at_ms"].as_u64().unwrap() > 0);
    assert_eq!(j["written"], 2);
    assert_eq!(d.cli(&["GET", "h:a"]), "2");
    let pttl: i64 = d.cli(&["PTTL", "h:new"]).parse().unwrap();
    assert!(pttl > 0 && pttl <= 60_000, "{pttl}");

    // A failed condition writes nothing, even the operations before it.
    let r = txn(
        &d,
        serde_json::json!({"ops": [
            {"op": "put", "key": "h:b", "value": "x"},
            {"op": "expect", "key": "h:a", "equals": "1"},
        ]}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.error_code(), "condition_failed");
    assert_eq!(r.json()["failed_op"], 1);
    assert_eq!(d.cli(&["EXISTS", "h:b"]), "0");
    let r = txn(
        &d,
        serde_json::json!({"ops": [{"op": "expect", "key": "h:a", "absent": true}]}),
    );
    assert_eq!(r.status, 409);

    // Malformed requests.
    for bad in [
        serde_json::json!({"ops": [{"op": "put", "key": "k"}]}),
        serde_json::json!({"ops": [{"op": "frobnicate", "key": "k"}]}),
        serde_json::json!({"ops": [{"op": "expect", "key": "k"}]}),
        serde_json::json!({"nope": []}),
    ] {
        let r = txn(&d, bad.clone());
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    let r = d.http("GET", "/api/v1/txn", &[], b"");
    assert_eq!(r.status, 405);
}

/// Compare-and-set increments over HTTP racing plain RESP INCRs of the same key: a plain write
/// slipping between a transaction's check and its write would lose an increment.
#[test]
fn http_compare_and_set_and_plain_incr_lose_no_update() {
    let d = daemon();
    assert_eq!(d.cli(&["SET", "ctr", "0"]), "OK");
    let per_thread = 25;
    let http = d.http;
    let mut threads = Vec::new();
    for _ in 0..2 {
        threads.push(std::thread::spawn(move || {
            let mut conflicts = 0;
            for _ in 0..per_thread {
                loop {
                    let body = serde_json::json!({"ops": [{"op": "get", "key": "ctr"}]});
                    let r = common::http_request(
                        http,
                        "POST",
                        "/api/v1/txn",
                        &[],
                        body.to_string().as_bytes(),
                    );
                    assert_eq!(r.status, 200, "{}", r.text());
                    let old = r.json()["results"][0]["value"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    let new = (old.parse::<i64>().unwrap() + 1).to_string();
                    let body = serde_json::json!({"ops": [
                        {"op": "expect", "key": "ctr", "equals": old},
                        {"op": "put", "key": "ctr", "value": new},
                    ]});
                    let r = common::http_request(
                        http,
                        "POST",
                        "/api/v1/txn",
                        &[],
                        body.to_string().as_bytes(),
                    );
                    match r.status {
                        200 => break,
                        409 => conflicts += 1,
                        s => panic!("status {s}: {}", r.text()),
                    }
                }
            }
            conflicts
        }));
    }
    let addr = d.resp;
    let plain = std::thread::spawn(move || {
        let mut c = RespClient::connect(addr);
        for _ in 0..per_thread {
            assert!(cmd(&mut c, &["INCR", "ctr"]).starts_with(':'));
        }
    });
    let conflicts: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    plain.join().unwrap();
    assert_eq!(
        d.cli(&["GET", "ctr"]),
        (3 * per_thread).to_string(),
        "conflicts: {conflicts}"
    );
}

#[test]
fn lock_metrics_are_exported_per_shard_and_pass_promtool() {
    require_tool("promtool");
    let d = daemon();
    let mut c = d.resp_client();
    assert_eq!(cmd(&mut c, &["MULTI"]), "+OK\r\n");
    for i in 0..8 {
        cmd(&mut c, &["SET", &format!("mk{i}"), "v"]);
    }
    assert!(cmd(&mut c, &["EXEC"]).starts_with("*8\r\n"));
    let r = d.http("GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    let text = r.text();
    for name in [
        "mantis_lock_acquires_total{shard=\"0\"}",
        "mantis_lock_acquires_total{shard=\"1\"}",
        "mantis_lock_waits_total{shard=\"0\"}",
        "mantis_lock_timeouts_total{shard=\"1\"}",
        "mantis_lock_deadlock_victims_total{shard=\"0\"}",
        "mantis_lock_granted{shard=\"0\"} 0",
        "mantis_lock_waiting{shard=\"1\"} 0",
        "mantis_lock_wait_seconds_bucket{shard=\"0\",le=\"0.001\"}",
        "mantis_lock_wait_seconds_count{shard=\"1\"}",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    let acquires: f64 = text
        .lines()
        .filter(|l| l.starts_with("mantis_lock_acquires_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    // 8 keys, each with its database and table intention locks.
    assert!(acquires >= 24.0, "{acquires}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
