#![allow(clippy::unwrap_used)]
//! Alerts delivered to real local sinks started here: an HTTP server receiving the webhook
//! and Slack payloads, and Python's aiosmtpd receiving the email. Suppression (deduplication
//! window), escalation (to critical, which only the email channel takes) and resolution are
//! each observed at the sinks.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "../../appliance/tests/common/webhook.rs"]
mod webhook;

use mantis_monitor::alerts::{Comparison, Engine, EventKind, Level, Rule};
use mantis_monitor::channels::{deliver, Channel, ChannelKind, RetryPolicy};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Python that has aiosmtpd (Debian's python3-aiosmtpd, installed by `.ci/run`).
fn python_with_aiosmtpd() -> &'static str {
    for python in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return python;
        }
    }
    panic!("no python3 with aiosmtpd: install python3-aiosmtpd (.ci/run does)");
}

struct SmtpSink {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smtp_sink() -> SmtpSink {
    let port = free_port();
    let mut child = Command::new(python_with_aiosmtpd())
        .args([
            "-u",
            "-m",
            "aiosmtpd",
            "-n",
            "-c",
            "aiosmtpd.handlers.Debugging",
        ])
        .args(["-l", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "aiosmtpd did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    SmtpSink { child, port, lines }
}

/// Waits for the SMTP sink to print a line containing `needle`.
fn await_mail(sink: &SmtpSink, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match sink.lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return,
            Ok(_) => {}
            Err(_) => panic!("no mail containing {needle:?}"),
        }
    }
}

fn rule() -> Rule {
    Rule {
        name: "disk_full".into(),
        metric: "mantis_shard_disk_full".into(),
        comparison: Comparison::Gt,
        threshold: 0.0,
        for_ms: 1_000,
        level: Level::Warning,
        repeat_ms: 10_000,
        escalate_after_ms: Some(30_000),
        escalate_to: Level::Critical,
        summary: "disk full".into(),
    }
}

#[test]
fn suppression_escalation_and_resolution_reach_real_sinks() {
    let (http_port, http_rx) = webhook::sink_with_paths();
    let smtp = smtp_sink();
    let channels = vec![
        Channel {
            name: "hook".into(),
            kind: ChannelKind::Webhook {
                url: format!("http://127.0.0.1:{http_port}/hook"),
            },
            min_level: Level::Info,
        },
        Channel {
            name: "slack".into(),
            kind: ChannelKind::Slack {
                url: format!("http://127.0.0.1:{http_port}/slack"),
            },
            min_level: Level::Info,
        },
        Channel {
            name: "pager".into(),
            kind: ChannelKind::Email {
                smtp_host: "127.0.0.1".into(),
                smtp_port: smtp.port,
                from: "mantisd@example.com".into(),
                to: vec!["oncall@example.com".into()],
            },
            min_level: Level::Critical,
        },
    ];
    let policy = RetryPolicy {
        attempts_max: 3,
        backoff_initial_ms: 50,
        backoff_max_ms: 200,
        timeout_ms: 5_000,
    };
    let history = tempfile::tempdir().unwrap();
    let history_path = history.path().join("alerts.jsonl");
    let mut engine = Engine::new(vec![rule()], Some(&history_path), 100).unwrap();
    let mut sent = Vec::new();
    let mut step = |engine: &mut Engine, now_ms: u64, value: f64| {
        let events = engine.evaluate(now_ms, &|_| Some(value)).unwrap();
        for e in &events {
            for d in deliver(&channels, &policy, e) {
                d.into_result().unwrap();
            }
        }
        sent.extend(events.iter().map(|e| e.kind));
        events.len()
    };
    // Pending for for_ms, then fires once.
    assert_eq!(step(&mut engine, 0, 1.0), 0);
    assert_eq!(step(&mut engine, 1_000, 1.0), 1);
    let (path, body) = http_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(path, "/hook");
    assert_eq!(body["alert"]["kind"], "fired");
    assert_eq!(body["alert"]["level"], "warning");
    let (path, body) = http_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(path, "/slack");
    assert!(body["text"].as_str().unwrap().contains("FIRING"));
    assert_eq!(body["attachments"][0]["color"], "warning");
    // Suppression: still firing inside the deduplication window: nothing is sent.
    for now_ms in [2_000, 5_000, 10_999] {
        assert_eq!(step(&mut engine, now_ms, 1.0), 0);
    }
    assert!(http_rx.recv_timeout(Duration::from_millis(300)).is_err());
    assert_eq!(engine.active().next().unwrap().suppressed, 3);
    // After the window, one repeat.
    assert_eq!(step(&mut engine, 11_000, 1.0), 1);
    assert_eq!(
        http_rx.recv_timeout(Duration::from_secs(10)).unwrap().1["alert"]["kind"],
        "repeated"
    );
    http_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // Escalation: unresolved 30 s after firing, the level rises to critical and the email
    // channel (critical only) is told.
    assert_eq!(step(&mut engine, 31_000, 1.0), 1);
    let (_, body) = http_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(body["alert"]["kind"], "escalated");
    assert_eq!(body["alert"]["level"], "critical");
    http_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    await_mail(&smtp, "[ESCALATED] Critical disk_full");
    // Resolution: the condition clears; every channel at or below critical hears it.
    assert_eq!(step(&mut engine, 32_000, 0.0), 1);
    let (_, body) = http_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(body["alert"]["kind"], "resolved");
    let (_, body) = http_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(body["attachments"][0]["color"], "good");
    await_mail(&smtp, "[RESOLVED] Critical disk_full");
    assert_eq!(engine.active().count(), 0);
    assert_eq!(
        sent,
        [
            EventKind::Fired,
            EventKind::Repeated,
            EventKind::Escalated,
            EventKind::Resolved
        ]
    );
    // The history survives a restart.
    drop(engine);
    let engine = Engine::new(vec![rule()], Some(&history_path), 100).unwrap();
    let kinds: Vec<EventKind> = engine.history().map(|e| e.kind).collect();
    assert_eq!(kinds, sent);
}

#[test]
fn acknowledged_and_silenced_alerts_stay_quiet() {
    let mut engine = Engine::new(vec![rule()], None, 10).unwrap();
    engine.evaluate(0, &|_| Some(1.0)).unwrap();
    assert_eq!(engine.evaluate(1_000, &|_| Some(1.0)).unwrap().len(), 1);
    engine.acknowledge("disk_full", "bob", 1_500).unwrap();
    // Neither repeats nor escalates once acknowledged.
    assert!(engine.evaluate(60_000, &|_| Some(1.0)).unwrap().is_empty());
    assert_eq!(engine.evaluate(61_000, &|_| Some(0.0)).unwrap().len(), 1);
    engine.silence("disk_full", 200_000, "bob", 62_000).unwrap();
    engine.evaluate(63_000, &|_| Some(1.0)).unwrap();
    let fired = engine.evaluate(64_000, &|_| Some(1.0)).unwrap();
    assert!(fired.is_empty(), "silenced alert notified: {fired:?}");
    let last = engine.history().last().unwrap();
    assert_eq!((last.kind, last.notified), (EventKind::Fired, false));
    assert!(engine.acknowledge("nosuch", "bob", 0).is_err());
    assert!(engine.silence("nosuch", 1, "bob", 0).is_err());
}

#[test]
fn a_dead_webhook_is_retried_with_backoff_then_reported() {
    let port = free_port();
    let channels = [Channel {
        name: "hook".into(),
        kind: ChannelKind::Webhook {
            url: format!("http://127.0.0.1:{port}/hook"),
        },
        min_level: Level::Info,
    }];
    let policy = RetryPolicy {
        attempts_max: 3,
        backoff_initial_ms: 100,
        backoff_max_ms: 1_000,
        timeout_ms: 1_000,
    };
    assert_eq!(policy.backoff(1), Duration::ZERO);
    assert_eq!(policy.backoff(3), Duration::from_millis(200));
    let mut engine = Engine::new(
        vec![Rule {
            for_ms: 0,
            ..rule()
        }],
        None,
        10,
    )
    .unwrap();
    let event = engine.evaluate(0, &|_| Some(1.0)).unwrap().pop().unwrap();
    let started = Instant::now();
    let d = deliver(&channels, &policy, &event).pop().unwrap();
    assert_eq!(d.attempts, 3);
    assert!(d.error.is_some());
    assert!(started.elapsed() >= Duration::from_millis(300));
}
