//! Hostile and broken clients: each gets a clear error or a closed connection, the server keeps
//! serving everybody else, and nothing is written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{encode, require_tool, Daemon, Options, RespClient};

fn small_limits(extra: &[&str]) -> Daemon {
    require_tool("redis-cli");
    let mut args: Vec<String> = [
        "--value-bytes-max",
        "1024",
        "--http-body-bytes-max",
        "4096",
        "--idle-timeout-secs",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    Daemon::start(Options {
        extra_args: args,
        ..Options::default()
    })
}

/// Sends `bytes`, expects exactly `reply` back and then the connection closed.
fn expect_error_and_close(d: &Daemon, bytes: &[u8], reply: &str) {
    let mut c = d.resp_client();
    // The server may close while a large request is still being written: ignore that.
    let _ = c.stream.write_all(bytes);
    let got = c.read_to_close();
    assert_eq!(
        String::from_utf8_lossy(&got),
        reply,
        "request {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
    );
}

fn assert_absent(d: &Daemon, key: &str) {
    assert_eq!(
        d.cli(&["EXISTS", key]),
        "0",
        "{key} must not have been written"
    );
}

#[test]
fn malformed_frames_close_the_connection_and_write_nothing() {
    let d = small_limits(&[]);
    expect_error_and_close(
        &d,
        b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n:1\r\n",
        "-ERR Protocol error: expected '$', got ':'\r\n",
    );
    assert_absent(&d, "k1");
    expect_error_and_close(
        &d,
        b"*3\r\n$3\r\nSET\r\n$2\r\nk2\r\n$x\r\nv\r\n",
        "-ERR Protocol error: invalid bulk length\r\n",
    );
    assert_absent(&d, "k2");
    expect_error_and_close(
        &d,
        b"*3\r\n$3\r\nSET\r\n$2\r\nk3\r\n$1\r\nvXX",
        "-ERR Protocol error: bulk string not terminated by CRLF\r\n",
    );
    assert_absent(&d, "k3");
    expect_error_and_close(
        &d,
        b"*abc\r\n",
        "-ERR Protocol error: invalid multibulk length\r\n",
    );
    expect_error_and_close(
        &d,
        b"SET k4 \"unterminated\r\n",
        "-ERR Protocol error: unbalanced quotes in request\r\n",
    );
    assert_absent(&d, "k4");
    // A command before the garbage in the same write is executed and answered first.
    let mut first = encode(&[b"SET", b"k5", b"v"]);
    first.extend_from_slice(b"*1\r\n#\r\n");
    expect_error_and_close(
        &d,
        &first,
        "+OK\r\n-ERR Protocol error: expected '$', got '#'\r\n",
    );
    assert_eq!(d.cli(&["GET", "k5"]), "v");
}

#[test]
fn oversized_requests_are_refused_before_they_arrive() {
    let d = small_limits(&[]);
    // A bulk length over the limit: refused from the header alone.
    expect_error_and_close(
        &d,
        b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$999999999\r\n",
        "-ERR Protocol error: invalid bulk length\r\n",
    );
    assert_absent(&d, "big");
    // A 1 MiB inline command without a newline.
    let mut inline = b"SET huge ".to_vec();
    inline.extend(std::iter::repeat_n(b'a', 1 << 20));
    expect_error_and_close(
        &d,
        &inline,
        "-ERR Protocol error: too big inline request\r\n",
    );
    assert_absent(&d, "huge");
    // A multibulk count over the limit.
    expect_error_and_close(
        &d,
        b"*99999999\r\n",
        "-ERR Protocol error: invalid multibulk length\r\n",
    );
    // Over the engine's value limit but within the protocol's slack: an error, not a close.
    let mut c = d.resp_client();
    c.command(&[b"SET", b"v", &[b'x'; 1500]]);
    let reply = c.read_reply();
    assert!(
        reply.starts_with(b"-ERR string exceeds maximum allowed size"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    c.command(&[b"PING"]);
    assert_eq!(c.read_reply(), b"+PONG\r\n");
    assert_absent(&d, "v");
}

#[test]
fn unknown_commands_and_wrong_arity_keep_the_connection() {
    let d = small_limits(&[]);
    let mut c = d.resp_client();
    c.command(&[b"FLUSHEVERYTHING", b"now"]);
    assert_eq!(
        c.read_reply(),
        b"-ERR unknown command 'FLUSHEVERYTHING', with args beginning with: 'now' \r\n"
    );
    c.command(&[b"GET"]);
    assert_eq!(
        c.read_reply(),
        b"-ERR wrong number of arguments for 'get' command\r\n"
    );
    c.command(&[b"SET", b"k"]);
    assert_eq!(
        c.read_reply(),
        b"-ERR wrong number of arguments for 'set' command\r\n"
    );
    c.command(&[b"GET", b"a", b"b"]);
    assert_eq!(
        c.read_reply(),
        b"-ERR wrong number of arguments for 'get' command\r\n"
    );
    c.command(&[b"SET", b"k", b"v", b"BOGUS"]);
    assert_eq!(c.read_reply(), b"-ERR syntax error\r\n");
    c.command(&[b"PING"]);
    assert_eq!(c.read_reply(), b"+PONG\r\n");
    assert_absent(&d, "k");
    // An empty key is refused with an error (the engine does not store empty keys).
    c.command(&[b"SET", b"", b"v"]);
    assert!(c.read_reply().starts_with(b"-ERR"));
}

#[test]
fn a_stalled_client_does_not_block_others_and_is_closed_when_idle() {
    let d = small_limits(&[]);
    let mut stalled = d.resp_client();
    // Half a frame, then silence.
    stalled.send(b"*3\r\n$3\r\nSET\r\n$7\r\nstalled\r\n$5\r\nab");
    // Others are served meanwhile, on every shard.
    for i in 0..20 {
        let key = format!("other{i}");
        assert_eq!(d.cli(&["SET", &key, "v"]), "OK");
        assert_eq!(d.cli(&["GET", &key]), "v");
    }
    // The idle timeout (2 s) closes the stalled connection; nothing was written for it.
    let started = Instant::now();
    let rest = stalled.read_to_close();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_absent(&d, "stalled");
}

#[test]
fn the_connection_limit_refuses_extra_clients() {
    let d = small_limits(&["--connections-max", "3"]);
    let mut held: Vec<RespClient> = (0..3).map(|_| d.resp_client()).collect();
    for c in &mut held {
        c.command(&[b"PING"]);
        assert_eq!(c.read_reply(), b"+PONG\r\n");
    }
    let mut extra = d.resp_client();
    assert_eq!(
        String::from_utf8_lossy(&extra.read_to_close()),
        "-ERR max number of clients reached\r\n"
    );
    drop(held.pop());
    // The freed slot is reusable once the server noticed the close.
    common::eventually(Duration::from_secs(10), "a slot frees up", || {
        let mut c = d.resp_client();
        c.command(&[b"PING"]);
        c.read_reply() == b"+PONG\r\n"
    });
}

#[test]
fn oversize_http_bodies_and_headers() {
    let d = small_limits(&[]);
    let r = d.http("PUT", "/api/v1/kv/body", &[], &[b'x'; 5000]);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.error_code(), "payload_too_large");
    // Chunked body without a length: counted while reading.
    let mut s = TcpStream::connect(d.http).unwrap();
    s.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    let mut req = b"PUT /api/v1/kv/chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        req.extend(b"400\r\n");
        req.extend([b'y'; 1024]);
        req.extend(b"\r\n");
    }
    req.extend(b"0\r\n\r\n");
    let _ = s.write_all(&req);
    let r = common::read_http_response(&mut s);
    assert_eq!(r.status, 413);
    // A value the body limit allows but the engine does not.
    let r = d.http("PUT", "/api/v1/kv/value", &[], &[b'x'; 2000]);
    assert_eq!(r.status, 413);
    assert_eq!(r.error_code(), "value_too_large");
    // Headers over http_header_bytes_max (16 KiB).
    let big = "h".repeat(40_000);
    let r = d.http("PUT", "/api/v1/kv/headers", &[("X-Big", &big)], b"v");
    assert_eq!(r.status, 431);
    for key in ["body", "chunked", "value", "headers"] {
        assert_eq!(
            d.http("GET", &format!("/api/v1/kv/{key}"), &[], b"").status,
            404
        );
    }
    // Garbage instead of HTTP: 400 and closed, server fine.
    let mut s = TcpStream::connect(d.http).unwrap();
    s.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    s.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    let r = common::read_http_response(&mut s);
    assert_eq!(r.status, 400);
    assert_eq!(d.http("GET", "/health/live", &[], b"").status, 200);
}
