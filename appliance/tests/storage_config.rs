//! Issue 7's config sections reach the engine of a real mantisd: a `[[compression_keyspace]]`
//! rule puts its keys in zstd blocks while the rest stay lz4, and `[cold] epoch_secs` drives
//! the access epochs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{eventually, Daemon, Options};

const CONFIG: &str = r#"
compression = "lz4"
[scrub]
enabled = true
interval_secs = 3600
rate_bytes_per_sec = 1048576
[cold]
epoch_secs = 1
cold_after_epochs = 1000
[[compression_keyspace]]
prefix = "logs:"
codec = "zstd"
"#;

fn stats(d: &Daemon) -> serde_json::Value {
    let r = d.http("GET", "/api/v1/compression/stats", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[test]
fn keyspace_codec_and_cold_epochs_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mantisdb.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut d = Daemon::start(Options {
        extra_args: vec!["--config".into(), config.to_str().unwrap().into()],
        ..Options::default()
    });
    for i in 0..300 {
        let doc = format!(r#"{{"id":{i},"level":"info","msg":"request served in {i} ms"}}"#);
        for key in [format!("logs:{i:05}"), format!("user:{i:05}")] {
            let r = d.http("PUT", &format!("/api/v1/kv/{key}"), &[], doc.as_bytes());
            assert_eq!(r.status, 204, "{}", r.text());
        }
    }
    // A clean stop flushes the memtables into segments.
    d.restart();
    let v = stats(&d);
    let by_codec = &v["total"]["by_codec"];
    assert!(by_codec["zstd"]["blocks"].as_u64().unwrap() >= 2, "{v}");
    assert!(by_codec["lz4"]["blocks"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(by_codec["snappy"]["blocks"], 0, "{v}");
    for i in [0, 150, 299] {
        let r = d.http("GET", &format!("/api/v1/kv/logs:{i:05}"), &[], b"");
        assert_eq!(r.status, 200);
        assert!(r.text().contains(&format!("served in {i} ms")));
    }
    // epoch_secs = 1 (the default is an hour): epochs close within seconds.
    eventually(Duration::from_secs(30), "access epochs advance", || {
        stats(&d)["total"]["access_epoch"].as_u64().unwrap() >= 2
    });
}

#[test]
fn bad_keyspace_flag_refuses_to_start() {
    let data = common::data_tempdir();
    let out = std::process::Command::new(common::BIN)
        .args(["--data-dir", data.path().to_str().unwrap()])
        .args(["--compression-keyspace", "logs:=brotli"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("compression_keyspace"), "{err}");
}

/// Issue 7: `block_checksum` chooses the algorithm of the segment files written from then on,
/// and each file records it (footer byte 72: 1 CRC32, 3 SHA-256). Files of both algorithms
/// live side by side and read back.
#[test]
fn block_checksum_is_chosen_by_config_and_recorded_per_file() {
    let data = common::data_tempdir();
    let dir = data.path().join("data");
    let algorithms_on_disk = |dir: &std::path::Path| -> Vec<u8> {
        let mut found = Vec::new();
        for shard in std::fs::read_dir(dir).unwrap() {
            let seg_dir = shard.unwrap().path().join("seg");
            let Ok(files) = std::fs::read_dir(&seg_dir) else {
                continue;
            };
            for f in files {
                let bytes = std::fs::read(f.unwrap().path()).unwrap();
                let footer = &bytes[bytes.len() - 128..];
                assert_eq!(&footer[120..], b"MSEGMENT");
                assert_eq!(footer[112..116], 3u32.to_le_bytes());
                found.push(footer[72]);
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    };
    let write = |d: &Daemon, from: usize| {
        for i in from..from + 200 {
            let r = d.http(
                "PUT",
                &format!("/api/v1/kv/k{i:04}"),
                &[],
                format!("v{i}").as_bytes(),
            );
            assert_eq!(r.status, 204, "{}", r.text());
        }
    };
    let mut d = Daemon::start_in(&dir, Options::default());
    write(&d, 0);
    d.stop(); // a clean stop flushes the memtables into segments
    assert_eq!(algorithms_on_disk(&dir), vec![1], "default is CRC32");

    let mut d = Daemon::start_in(
        &dir,
        Options {
            extra_args: vec!["--block-checksum".into(), "sha256".into()],
            ..Options::default()
        },
    );
    write(&d, 200);
    d.stop();
    assert_eq!(algorithms_on_disk(&dir), vec![1, 3], "old files keep CRC32");

    let d = Daemon::start_in(&dir, Options::default());
    for i in [0, 199, 200, 399] {
        let r = d.http("GET", &format!("/api/v1/kv/k{i:04}"), &[], b"");
        assert_eq!(r.status, 200, "k{i:04}");
        assert_eq!(r.text(), format!("v{i}"));
    }
}
