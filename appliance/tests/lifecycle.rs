//! The process lifecycle: configuration sources, refusing unsafe or impossible starts,
//! sd_notify (READY, WATCHDOG, STOPPING), SIGTERM drain and flush, restart with data intact,
//! and the systemd unit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{encode, require_tool, Daemon, Options, BIN};
use nix::sys::signal::Signal;

#[test]
fn help_documents_every_option() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--data-dir",
        "--shards",
        "--resp-addr",
        "--pg-addr",
        "--http-addr",
        "--password",
        "--password-file",
        "--connections-max",
        "--idle-timeout-secs",
        "--drain-timeout-secs",
        "--log-format",
        "--value-bytes-max",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    for env in [
        "MANTIS_DATA_DIR",
        "MANTIS_RESP_ADDR",
        "MANTIS_HTTP_ADDR",
        "MANTIS_PASSWORD",
    ] {
        assert!(help.contains(env), "--help lacks {env}");
    }
    assert!(help.contains("127.0.0.1:6380") && help.contains("127.0.0.1:8080"));
}

#[test]
fn with_no_configuration_it_stores_in_dot_data_on_loopback() {
    require_tool("redis-cli");
    let mut d = Daemon::start(Options {
        bare: true,
        ..Options::default()
    });
    assert_eq!(d.cli(&["SET", "k", "v"]), "OK");
    assert!(d.data_dir.join("shard-0").is_dir(), "{}", d.log());
    assert!(d.log().contains(&format!("{}", d.data_dir.display())));
    assert_eq!(d.cli(&["CONFIG", "GET", "bind"]), "bind\n127.0.0.1");
    assert!(d.stop().success());
}

#[test]
fn refuses_a_public_bind_without_password_and_a_busy_port() {
    let dir = common::data_tempdir();
    let out = Command::new(BIN)
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--resp-addr",
            "0.0.0.0:0",
        ])
        .env_remove("MANTIS_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("password"),
        "{err}"
    );

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = Command::new(BIN)
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--resp-addr",
            &format!("127.0.0.1:{port}"),
            "--http-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already in use"), "{err}");
}

#[test]
fn flags_win_over_environment_over_file() {
    require_tool("redis-cli");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mantisdb.toml");
    std::fs::write(
        &file,
        "connections_max = 100\nidle_timeout_secs = 7\nvalue_bytes_max = 2048\n",
    )
    .unwrap();
    let d = Daemon::start(Options {
        extra_args: vec![
            "--config".into(),
            file.to_str().unwrap().into(),
            "--connections-max".into(),
            "300".into(),
        ],
        env: vec![
            ("MANTIS_IDLE_TIMEOUT_SECS".into(), "5".into()),
            ("MANTIS_CONNECTIONS_MAX".into(), "200".into()),
        ],
        ..Options::default()
    });
    assert_eq!(d.cli(&["CONFIG", "GET", "maxclients"]), "maxclients\n300");
    assert_eq!(d.cli(&["CONFIG", "GET", "timeout"]), "timeout\n5");
    assert_eq!(
        d.cli(&["CONFIG", "GET", "proto-max-bulk-len"]),
        "proto-max-bulk-len\n2048"
    );
}

#[test]
fn sd_notify_ready_watchdog_stopping() {
    let mut d = Daemon::start(Options {
        env: vec![("WATCHDOG_USEC".into(), "400000".into())],
        ..Options::default()
    });
    assert!(
        d.notifications.iter().any(|n| n.contains("STATUS=serving")),
        "{:?}",
        d.notifications
    );
    d.wait_for_notification("WATCHDOG=1", Duration::from_secs(10));
    d.signal(Signal::SIGTERM);
    d.wait_for_notification("STOPPING=1", Duration::from_secs(10));
    let status = d.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status}: {}", d.log());
}

fn metric_sum(d: &Daemon, name: &str) -> u64 {
    let m = d.http("GET", "/metrics", &[], b"").text();
    m.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn sigterm_drains_in_flight_requests_flushes_and_restart_keeps_data() {
    require_tool("redis-cli");
    let mut d = Daemon::start(Options::default());
    assert_eq!(d.cli(&["SET", "ttl-key", "v", "EX", "1000"]), "OK");
    assert_eq!(
        d.http("PUT", "/api/v1/kv/http-key", &[], b"from http")
            .status,
        204
    );

    // A pipeline of 300 writes is in flight when SIGTERM arrives: every one is answered.
    let mut c = d.resp_client();
    let mut batch = Vec::new();
    for i in 0..300 {
        batch.extend(encode(&[b"SET", format!("drain:{i}").as_bytes(), b"v"]));
    }
    c.send(&batch);
    assert_eq!(
        c.read_reply(),
        b"+OK\r\n",
        "the server started on the pipeline"
    );
    d.signal(Signal::SIGTERM);
    for i in 1..300 {
        assert_eq!(
            c.read_reply(),
            b"+OK\r\n",
            "reply {i} of the drained pipeline"
        );
    }
    assert!(c.is_closed(), "the drained connection is closed");
    let status = d.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{}", d.log());
    assert!(d.log().contains("shut down cleanly"));

    d.restart();
    // Flushed at shutdown: nothing to replay from the WAL.
    assert_eq!(
        metric_sum(&d, "mantis_wal_recovered_records"),
        0,
        "{}",
        d.log()
    );
    assert_eq!(d.cli(&["GET", "drain:0"]), "v");
    assert_eq!(d.cli(&["GET", "drain:299"]), "v");
    assert_eq!(d.cli(&["DBSIZE"]), "302");
    assert_eq!(
        d.http("GET", "/api/v1/kv/http-key", &[], b"").body,
        b"from http"
    );
    let ttl: i64 = d.cli(&["TTL", "ttl-key"]).parse().unwrap();
    assert!(
        (900..=1000).contains(&ttl),
        "the TTL survives a restart: {ttl}"
    );
}

#[test]
fn after_sigterm_new_connections_are_refused() {
    let mut d = Daemon::start(Options::default());
    // An idle connection is closed by the drain rather than holding the shutdown up.
    let mut idle = d.resp_client();
    idle.command(&[b"PING"]);
    assert_eq!(idle.read_reply(), b"+PONG\r\n");
    d.signal(Signal::SIGTERM);
    assert!(idle.is_closed());
    let status = d.wait_exit(Duration::from_secs(60));
    assert!(status.success());
    assert!(
        std::net::TcpStream::connect(d.resp).is_err(),
        "nothing listens any more"
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut d = Daemon::start(Options {
        extra_args: vec!["--drain-timeout-secs".into(), "120".into()],
        ..Options::default()
    });
    // A client that asks for 64 MiB of replies and never reads them holds its connection (and
    // so the drain) up: the server is blocked writing to it.
    let mut c = d.resp_client();
    c.command(&[b"SET", b"big", &vec![b'x'; 1 << 20]]);
    assert_eq!(c.read_reply(), b"+OK\r\n");
    let mut gets = Vec::new();
    for _ in 0..64 {
        gets.extend(encode(&[b"GET", b"big"]));
    }
    c.send(&gets);
    d.signal(Signal::SIGTERM);
    d.wait_for_notification("STOPPING=1", Duration::from_secs(10));
    assert!(
        d.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "still draining"
    );
    d.signal(Signal::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(128 + 15), "{}", d.log());
    assert!(d.log().contains("second signal"));
}

#[test]
fn crash_and_restart_keeps_acknowledged_writes() {
    require_tool("redis-cli");
    let mut d = Daemon::start(Options::default());
    for i in 0..50 {
        assert_eq!(d.cli(&["SET", &format!("k{i}"), &format!("v{i}")]), "OK");
    }
    // SIGKILL: no drain, no flush. Every acknowledged write was fsynced to the WAL.
    d.signal(Signal::SIGKILL);
    d.wait_exit(Duration::from_secs(30));
    d.restart();
    assert!(metric_sum(&d, "mantis_wal_recovered_records") > 0);
    for i in 0..50 {
        assert_eq!(d.cli(&["GET", &format!("k{i}")]), format!("v{i}"));
    }
}

#[test]
fn systemd_unit_verifies() {
    require_tool("systemd-analyze");
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../systemd/mantisdb.service"
    ))
    .unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mantisdb.service");
    // The unit names /usr/bin/mantisd; verify needs the binary to exist, so point at ours.
    std::fs::write(&path, unit.replace("/usr/bin/mantisd", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
