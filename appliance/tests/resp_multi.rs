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
