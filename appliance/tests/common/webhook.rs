//! A real webhook receiver for the alerting tests: an HTTP server on loopback that answers
//! 200 to every request and passes each JSON body on.
#![allow(clippy::unwrap_used, dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Starts the sink; returns its port and the bodies received, in order.
pub fn sink() -> (u16, mpsc::Receiver<serde_json::Value>) {
    let (port, with_paths) = sink_with_paths();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (_, body) in with_paths {
            if tx.send(body).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

/// Starts the sink; returns its port and `(request path, body)` of each request, in order
/// (the monitor crate's tests tell the webhook and Slack deliveries apart by path).
pub fn sink_with_paths() -> (u16, mpsc::Receiver<(String, serde_json::Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap_or(0);
            let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = reader
                .into_inner()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            let _ = tx.send((path, serde_json::from_slice(&body).unwrap()));
        }
    });
    (port, rx)
}

/// Waits up to `within` for an alert event of `rule` and `kind` (`fired`, `resolved`, ...),
/// passing other events over.
pub fn wait_event(
    hook: &mpsc::Receiver<serde_json::Value>,
    rule: &str,
    kind: &str,
    within: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = hook
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no {rule} {kind} at the webhook: {e}"));
        if event["alert"]["rule"] == rule && event["alert"]["kind"] == kind {
            return event;
        }
    }
}
