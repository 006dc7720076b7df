//! Every RESP command of the issue, driven with the real redis-cli against the real mantisd.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{encode, eventually, require_tool, Daemon, Options};

fn daemon() -> Daemon {
    require_tool("redis-cli");
    Daemon::start(Options::default())
}

#[test]
fn strings_and_counters() {
    let d = daemon();
    assert_eq!(d.cli(&["PING"]), "PONG");
    assert_eq!(d.cli(&["PING", "hi"]), "hi");
    assert_eq!(d.cli(&["ECHO", "hello world"]), "hello world");
    assert_eq!(d.cli(&["SET", "k", "v1"]), "OK");
    assert_eq!(d.cli(&["GET", "k"]), "v1");
    assert_eq!(d.cli(&["GET", "missing"]), "");
    assert_eq!(d.cli(&["SET", "k", "v2", "NX"]), "");
    assert_eq!(d.cli(&["GET", "k"]), "v1");
    assert_eq!(d.cli(&["SET", "k", "v2", "XX", "GET"]), "v1");
    assert_eq!(d.cli(&["SET", "nx-new", "a", "XX"]), "");
    assert_eq!(d.cli(&["EXISTS", "nx-new"]), "0");
    assert_eq!(d.cli(&["SET", "nx-new", "a", "NX", "GET"]), "");
    assert_eq!(d.cli(&["GET", "nx-new"]), "a");
    assert_eq!(d.cli(&["SETNX", "k", "x"]), "0");
    assert_eq!(d.cli(&["SETNX", "fresh", "x"]), "1");
    assert_eq!(d.cli(&["GETSET", "fresh", "y"]), "x");
    assert_eq!(d.cli(&["GETDEL", "fresh"]), "y");
    assert_eq!(d.cli(&["GETDEL", "fresh"]), "");
    assert_eq!(d.cli(&["STRLEN", "k"]), "2");
    assert_eq!(d.cli(&["STRLEN", "missing"]), "0");
    assert_eq!(d.cli(&["APPEND", "k", "345"]), "5");
    assert_eq!(d.cli(&["APPEND", "new-app", "ab"]), "2");
    assert_eq!(d.cli(&["GET", "k"]), "v2345");

    assert_eq!(d.cli(&["INCR", "n"]), "1");
    assert_eq!(d.cli(&["INCRBY", "n", "41"]), "42");
    assert_eq!(d.cli(&["DECR", "n"]), "41");
    assert_eq!(d.cli(&["DECRBY", "n", "50"]), "-9");
    assert_eq!(d.cli(&["INCRBYFLOAT", "n", "1.5"]), "-7.5");
    assert_eq!(d.cli(&["INCRBYFLOAT", "f", "10.5"]), "10.5");
    assert_eq!(d.cli(&["INCRBYFLOAT", "f", "0.1"]), "10.6");
    assert!(d
        .cli(&["INCR", "k"])
        .starts_with("ERR value is not an integer or out of range"));
    assert!(d
        .cli(&["INCRBY", "n2", "abc"])
        .starts_with("ERR value is not an integer"));
    assert_eq!(d.cli(&["SET", "big", "9223372036854775807"]), "OK");
    assert!(d
        .cli(&["INCR", "big"])
        .starts_with("ERR increment or decrement would overflow"));
    assert_eq!(d.cli(&["GET", "big"]), "9223372036854775807");
    assert!(d
        .cli(&["INCRBYFLOAT", "k", "1"])
        .starts_with("ERR value is not a valid float"));

    assert_eq!(d.cli(&["MSET", "m1", "a", "m2", "b", "m3", "c"]), "OK");
    assert_eq!(d.cli(&["MGET", "m1", "nope", "m3"]), "a\n\nc");
    assert_eq!(d.cli(&["MSETNX", "m1", "z", "m4", "d"]), "0");
    assert_eq!(d.cli(&["EXISTS", "m4"]), "0");
    assert_eq!(d.cli(&["MSETNX", "m4", "d", "m5", "e"]), "1");
    assert_eq!(d.cli(&["MGET", "m4", "m5"]), "d\ne");
    assert!(d
        .cli(&["MSET", "a", "1", "b"])
        .starts_with("ERR wrong number of arguments for 'mset'"));

    assert_eq!(d.cli(&["EXISTS", "m1", "m1", "nope"]), "2");
    assert_eq!(d.cli(&["TYPE", "m1"]), "string");
    assert_eq!(d.cli(&["TYPE", "nope"]), "none");
    assert_eq!(d.cli(&["DEL", "m1", "m2", "nope"]), "2");
    assert_eq!(d.cli(&["UNLINK", "m3", "m3"]), "1");
    assert_eq!(d.cli(&["EXISTS", "m1", "m2", "m3"]), "0");
}

#[test]
fn expiry_commands_and_ttl_expiry() {
    let d = daemon();
    assert_eq!(d.cli(&["SET", "t", "v", "EX", "100"]), "OK");
    let ttl: i64 = d.cli(&["TTL", "t"]).parse().unwrap();
    assert!((99..=100).contains(&ttl), "ttl {ttl}");
    let pttl: i64 = d.cli(&["PTTL", "t"]).parse().unwrap();
    assert!((90_000..=100_000).contains(&pttl), "pttl {pttl}");
    assert_eq!(d.cli(&["PERSIST", "t"]), "1");
    assert_eq!(d.cli(&["PERSIST", "t"]), "0");
    assert_eq!(d.cli(&["TTL", "t"]), "-1");
    assert_eq!(d.cli(&["TTL", "nope"]), "-2");
    assert_eq!(d.cli(&["EXPIRE", "t", "50"]), "1");
    assert_eq!(d.cli(&["EXPIRE", "t", "10", "GT"]), "0");
    assert_eq!(d.cli(&["EXPIRE", "t", "10", "LT"]), "1");
    assert_eq!(d.cli(&["EXPIRE", "t", "10", "NX"]), "0");
    assert_eq!(d.cli(&["EXPIRE", "nope", "10"]), "0");
    assert_eq!(d.cli(&["PEXPIRE", "t", "200000"]), "1");
    let ttl: i64 = d.cli(&["TTL", "t"]).parse().unwrap();
    assert!((199..=200).contains(&ttl), "ttl {ttl}");
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(d.cli(&["EXPIREAT", "t", &(now_s + 1000).to_string()]), "1");
    assert_eq!(d.cli(&["EXPIRETIME", "t"]), (now_s + 1000).to_string());
    assert_eq!(
        d.cli(&["PEXPIREAT", "t", &((now_s + 2000) * 1000).to_string()]),
        "1"
    );
    assert_eq!(
        d.cli(&["PEXPIRETIME", "t"]),
        ((now_s + 2000) * 1000).to_string()
    );
    assert!(d
        .cli(&["EXPIRE", "t", "99999999999999999"])
        .starts_with("ERR invalid expire time in 'expire' command"));
    assert!(d
        .cli(&["SET", "x", "v", "EX", "0"])
        .starts_with("ERR invalid expire time in 'set' command"));
    assert!(d
        .cli(&["SET", "x", "v", "EX", "1", "PX", "5"])
        .starts_with("ERR syntax error"));
    assert!(d
        .cli(&["SETEX", "x", "-5", "v"])
        .starts_with("ERR invalid expire time in 'setex' command"));

    // SETEX / PSETEX / GETEX, KEEPTTL.
    assert_eq!(d.cli(&["SETEX", "s", "100", "v"]), "OK");
    assert_eq!(d.cli(&["SET", "s", "w", "KEEPTTL"]), "OK");
    assert!(d.cli(&["TTL", "s"]).parse::<i64>().unwrap() > 90);
    assert_eq!(d.cli(&["SET", "s", "w"]), "OK");
    assert_eq!(d.cli(&["TTL", "s"]), "-1", "a plain SET clears the TTL");
    assert_eq!(d.cli(&["GETEX", "s", "EX", "300"]), "w");
    assert!(d.cli(&["TTL", "s"]).parse::<i64>().unwrap() > 290);
    assert_eq!(d.cli(&["GETEX", "s", "PERSIST"]), "w");
    assert_eq!(d.cli(&["TTL", "s"]), "-1");
    assert_eq!(d.cli(&["GETEX", "nope", "EX", "5"]), "");

    // Expiry actually happens: short TTLs through three different commands.
    assert_eq!(d.cli(&["PSETEX", "e1", "300", "v"]), "OK");
    assert_eq!(d.cli(&["SET", "e2", "v", "PX", "300"]), "OK");
    assert_eq!(d.cli(&["SET", "e3", "v"]), "OK");
    assert_eq!(d.cli(&["PEXPIRE", "e3", "300"]), "1");
    assert_eq!(d.cli(&["EXISTS", "e1", "e2", "e3"]), "3");
    eventually(Duration::from_secs(10), "keys expire", || {
        d.cli(&["EXISTS", "e1", "e2", "e3"]) == "0"
    });
    assert_eq!(d.cli(&["GET", "e1"]), "");
    assert_eq!(d.cli(&["TTL", "e2"]), "-2");
    // A negative EXPIRE deletes at once.
    assert_eq!(d.cli(&["SET", "gone", "v"]), "OK");
    assert_eq!(d.cli(&["EXPIRE", "gone", "-1"]), "1");
    assert_eq!(d.cli(&["EXISTS", "gone"]), "0");
}

#[test]
fn scan_dbsize_and_server_commands() {
    let d = daemon();
    for i in 0..25 {
        assert_eq!(d.cli(&["SET", &format!("user:{i:02}"), "x"]), "OK");
    }
    for i in 0..5 {
        assert_eq!(d.cli(&["SET", &format!("other:{i}"), "x"]), "OK");
    }
    assert_eq!(d.cli(&["DBSIZE"]), "30");
    // redis-cli --scan follows the cursor to the end.
    let mut keys: Vec<String> = d
        .cli(&["--scan", "--pattern", "user:*"])
        .lines()
        .map(String::from)
        .collect();
    keys.sort();
    let expected: Vec<String> = (0..25).map(|i| format!("user:{i:02}")).collect();
    assert_eq!(keys, expected);
    let all = d.cli(&["--scan"]);
    assert_eq!(all.lines().count(), 30);
    let page = d.cli(&["SCAN", "0", "MATCH", "other:*", "COUNT", "100"]);
    let mut lines = page.lines();
    assert_eq!(lines.next(), Some("0"), "one page holds everything");
    assert_eq!(lines.count(), 5);
    assert!(d.cli(&["SCAN", "12345"]).starts_with("ERR invalid cursor"));
    assert!(d
        .cli(&["SCAN", "0", "COUNT", "0"])
        .starts_with("ERR syntax error"));

    let info = d.cli(&["INFO"]);
    assert!(info.contains("redis_version:"), "{info}");
    assert!(info.contains("db0:keys=30"), "{info}");
    assert!(d.cli(&["INFO", "server"]).contains("shards:2"));
    assert_eq!(d.cli(&["CONFIG", "GET", "appendonly"]), "appendonly\nyes");
    assert_eq!(
        d.cli(&["CONFIG", "GET", "save"]),
        "save",
        "an empty value: no snapshots"
    );
    assert!(d.cli(&["CONFIG", "SET", "save", ""]).starts_with("ERR"));
    assert_eq!(d.cli(&["CLIENT", "GETNAME"]), "");
    // One connection: SETNAME then GETNAME.
    let out = d.cli_raw(
        &[],
        Some(b"CLIENT SETNAME app-1\nCLIENT GETNAME\nCLIENT ID\n"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "OK");
    assert_eq!(lines[1], "app-1");
    assert!(lines[2].parse::<u64>().is_ok());
    let count: usize = d.cli(&["COMMAND", "COUNT"]).parse().unwrap();
    assert!(count >= 40);
    assert!(d.cli(&["COMMAND", "INFO", "get"]).contains("get"));
    assert_eq!(d.cli(&["SELECT", "0"]), "OK");
    assert!(d
        .cli(&["SELECT", "1"])
        .starts_with("ERR DB index is out of range"));
    assert_eq!(d.cli(&["TIME"]).lines().count(), 2);
    // RESP3 through HELLO; redis-cli -3 speaks it from the start.
    let hello = d.cli(&["HELLO", "3"]);
    assert!(hello.contains("proto") && hello.contains('3'), "{hello}");
    assert_eq!(d.cli(&["-3", "GET", "missing"]), "");
    assert_eq!(d.cli(&["-3", "SET", "r3", "v"]), "OK");
    assert_eq!(d.cli(&["-3", "GET", "r3"]), "v");
    assert!(d.cli(&["HELLO", "4"]).starts_with("NOPROTO"));
}

#[test]
fn quit_closes_after_reply_and_resp3_nulls() {
    let d = daemon();
    let mut c = d.resp_client();
    c.command(&[b"HELLO", b"3"]);
    let hello = c.read_reply();
    assert!(
        hello.starts_with(b"%7\r\n"),
        "{}",
        String::from_utf8_lossy(&hello)
    );
    c.command(&[b"GET", b"missing"]);
    assert_eq!(c.read_reply(), b"_\r\n");
    c.command(&[b"HELLO", b"2"]);
    c.read_reply();
    c.command(&[b"GET", b"missing"]);
    assert_eq!(c.read_reply(), b"$-1\r\n");
    c.command(&[b"QUIT"]);
    assert_eq!(c.read_reply(), b"+OK\r\n");
    assert!(c.is_closed());
}

#[test]
fn pipelining_answers_in_order() {
    let d = daemon();
    let mut c = d.resp_client();
    // 500 commands in one write: SET, INCR and GET interleaved, spread over both shards.
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..100 {
        let key = format!("p{i}");
        batch.extend(encode(&[b"SET", key.as_bytes(), b"10"]));
        expected.extend_from_slice(b"+OK\r\n");
        batch.extend(encode(&[b"INCR", key.as_bytes()]));
        expected.extend_from_slice(b":11\r\n");
        batch.extend(encode(&[b"GET", key.as_bytes()]));
        expected.extend_from_slice(b"$2\r\n11\r\n");
        batch.extend(encode(&[b"NOSUCH"]));
        expected
            .extend_from_slice(b"-ERR unknown command 'NOSUCH', with args beginning with: \r\n");
        batch.extend(b"PING\r\n");
        expected.extend_from_slice(b"+PONG\r\n");
    }
    c.send(&batch);
    let got = c.read_exact_len(expected.len());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected)
    );

    // redis-cli --pipe: the mass-insertion path.
    let mut input = Vec::new();
    for i in 0..1000 {
        input.extend(encode(&[b"SET", format!("bulk:{i}").as_bytes(), b"v"]));
    }
    let out = d.cli_raw(&["--pipe"], Some(&input));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("errors: 0, replies: 1000"), "{text}");
    assert_eq!(d.cli(&["GET", "bulk:999"]), "v");
}

/// A pipeline mixing runs of single-key commands on distinct keys (run side by side) with
/// repeated keys, multi-key commands, AUTH and errors (which end a run) must answer exactly as
/// the same pipeline run one command at a time (`--pipeline-parallel-max 1`).
#[test]
fn parallel_pipeline_answers_like_sequential() {
    require_tool("redis-cli");
    let mut pipeline = Vec::new();
    pipeline.extend(encode(&[b"GET", b"before-auth"]));
    pipeline.extend(encode(&[b"AUTH", b"pw"]));
    for round in 0..20 {
        for i in 0..24 {
            let key = format!("k{}", (i * 7 + round) % 30);
            let value = format!("{round}.{i}");
            match i % 6 {
                0 => pipeline.extend(encode(&[b"SET", key.as_bytes(), value.as_bytes()])),
                1 => pipeline.extend(encode(&[b"GET", key.as_bytes()])),
                2 => pipeline.extend(encode(&[b"INCR", format!("n{i}").as_bytes()])),
                3 => pipeline.extend(encode(&[b"APPEND", key.as_bytes(), b"+"])),
                4 => pipeline.extend(encode(&[b"DEL", key.as_bytes()])),
                _ => pipeline.extend(encode(&[b"EXISTS", key.as_bytes()])),
            }
        }
        pipeline.extend(encode(&[b"MGET", b"k1", b"k2", b"k3"]));
        pipeline.extend(encode(&[b"SET", b"k1"]));
        pipeline.extend(encode(&[b"INCR", b"k2"]));
    }
    pipeline.extend(encode(&[b"DBSIZE"]));
    let mut answers = Vec::new();
    for parallel in ["16", "1"] {
        let d = Daemon::start(Options {
            password: Some("pw".into()),
            extra_args: vec!["--pipeline-parallel-max".into(), parallel.into()],
            ..Options::default()
        });
        let mut c = d.resp_client();
        c.send(&pipeline);
        let replies: Vec<Vec<u8>> = (0..20 * 27 + 3).map(|_| c.read_reply()).collect();
        assert!(replies[0].starts_with(b"-NOAUTH"), "{:?}", replies[0]);
        assert_eq!(replies[1], b"+OK\r\n");
        answers.push(replies);
    }
    assert_eq!(answers[0], answers[1]);
}

#[test]
fn binary_keys_and_values() {
    let d = daemon();
    let mut c = d.resp_client();
    let key: &[u8] = b"\xff\xfe\x00key\r\n";
    let value: &[u8] = b"\x00\x01\xff\r\nvalue";
    c.command(&[b"SET", key, value]);
    assert_eq!(c.read_reply(), b"+OK\r\n");
    c.command(&[b"GET", key]);
    let mut expected = format!("${}\r\n", value.len()).into_bytes();
    expected.extend_from_slice(value);
    expected.extend_from_slice(b"\r\n");
    assert_eq!(c.read_reply(), expected);
    c.command(&[b"EXISTS", key]);
    assert_eq!(c.read_reply(), b":1\r\n");
    // Inline commands with quoted escapes reach the same key.
    c.send(b"EXISTS \"\\xff\\xfe\\x00key\\r\\n\"\r\n");
    assert_eq!(c.read_reply(), b":1\r\n");
}

#[test]
fn auth_is_required_when_a_password_is_set() {
    require_tool("redis-cli");
    let d = Daemon::start(Options {
        password: Some("s3cret pass".into()),
        ..Options::default()
    });
    let mut c = d.resp_client();
    c.command(&[b"GET", b"k"]);
    assert_eq!(c.read_reply(), b"-NOAUTH Authentication required.\r\n");
    c.command(&[b"PING"]);
    assert_eq!(c.read_reply(), b"-NOAUTH Authentication required.\r\n");
    c.command(&[b"AUTH", b"wrong"]);
    assert_eq!(
        c.read_reply(),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    c.command(&[b"AUTH", b"someone", b"s3cret pass"]);
    assert!(c.read_reply().starts_with(b"-WRONGPASS"));
    c.command(&[b"AUTH", b"s3cret pass"]);
    assert_eq!(c.read_reply(), b"+OK\r\n");
    c.command(&[b"SET", b"k", b"v"]);
    assert_eq!(c.read_reply(), b"+OK\r\n");

    // HELLO with AUTH authenticates and switches protocol in one step.
    let mut c2 = d.resp_client();
    c2.command(&[b"HELLO", b"3"]);
    assert!(c2.read_reply().starts_with(b"-NOAUTH HELLO must be called"));
    c2.command(&[b"HELLO", b"3", b"AUTH", b"default", b"s3cret pass"]);
    assert!(c2.read_reply().starts_with(b"%7"));
    c2.command(&[b"GET", b"k"]);
    assert_eq!(c2.read_reply(), b"$1\r\nv\r\n");

    // redis-cli with -a (the harness passes the password).
    assert_eq!(d.cli(&["GET", "k"]), "v");

    // Without a password configured, AUTH says so.
    let open = Daemon::start(Options::default());
    assert!(open
        .cli(&["AUTH", "x"])
        .starts_with("ERR AUTH <password> called without any password configured"));
}
