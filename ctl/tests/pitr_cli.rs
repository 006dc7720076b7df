//! Issue 10: `mantisctl restore --to-time` on a real engine whose WAL is archived to a local
//! directory: restored to an RFC 3339 time between two groups of writes, the directory
//! holds exactly the earlier group; a time before any backup is refused (exit 1).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mantis_backup::archive::{Archiver, ArchiverConfig, RpoLevel, ShardLink};
use mantis_backup::{create_backup, BackupOptions, LocalDir};
use mantis_engine::checkpoint::{self, CheckpointKind};
use mantis_engine::{Engine, EngineConfig, EngineHandle};

fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        data_dir: dir.to_path_buf(),
        shards: 2,
        pin_cpus: false,
        wal_segment_bytes: 1 << 20,
        ..EngineConfig::default()
    }
}

fn ctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mantisctl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn wait_clock_past(t: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while now_ms() <= t {
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    }
}

/// Unix ms as RFC 3339 in UTC with milliseconds (civil-from-days, H. Hinnant).
fn rfc3339(ms: u64) -> String {
    let (secs, millis) = ((ms / 1000) as i64, ms % 1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn put(h: &EngineHandle, k: String) {
    futures::executor::block_on(h.put(k.clone().into_bytes(), k.into_bytes(), None)).unwrap();
}

#[test]
fn restore_to_time_keeps_exactly_the_earlier_writes() {
    let data = tempfile::tempdir_in("/var/tmp").unwrap();
    let dest_dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let dest = dest_dir.path().to_str().unwrap();
    let engine = Engine::open(config(data.path())).unwrap();
    let h = engine.handle();
    let links = futures::executor::block_on(h.attach_archive_gates(&[0, 0]))
        .unwrap()
        .into_iter()
        .map(|(gate, wal_dir)| ShardLink { gate, wal_dir })
        .collect();
    let mut acfg = ArchiverConfig::new(RpoLevel::Zero);
    acfg.tick_ms = Some(10);
    let archiver = Archiver::start(acfg, Box::new(LocalDir::new(dest_dir.path())), links).unwrap();

    for i in 0..30 {
        put(&h, format!("base{i:03}"));
    }
    let root = checkpoint::checkpoints_dir(data.path());
    let cp = futures::executor::block_on(h.checkpoint(&root, CheckpointKind::Full, None)).unwrap();
    let local = LocalDir::new(dest_dir.path());
    let m = create_backup(&local, &root, &cp, &BackupOptions::default(), &mut |_| {}).unwrap();
    wait_clock_past(m.created_at_ms);
    for i in 0..30 {
        put(&h, format!("a{i:03}"));
    }
    let t_a = now_ms();
    wait_clock_past(t_a);
    for i in 0..30 {
        put(&h, format!("b{i:03}"));
    }
    // Stop ships everything durable.
    archiver.stop();
    engine.shutdown().unwrap();

    let target = tempfile::tempdir_in("/var/tmp").unwrap();
    let restored = target.path().join("data");
    let restored_s = restored.to_str().unwrap();
    let when = rfc3339(t_a);
    let (code, out, err) = ctl(&[
        "restore",
        "--from",
        dest,
        "--data-dir",
        restored_s,
        "--to-time",
        &when,
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&m.id) && out.contains("verified"), "{out}");
    assert!(
        !err.contains("warning"),
        "the archive covers the target: {err}"
    );
    let engine = Engine::open(config(&restored)).unwrap();
    let got = |k: String| futures::executor::block_on(engine.handle().get(k.as_bytes())).unwrap();
    for i in 0..30 {
        assert!(got(format!("base{i:03}")).is_some(), "base{i}");
        assert!(
            got(format!("a{i:03}")).is_some(),
            "a{i} was written before {when}"
        );
        assert!(
            got(format!("b{i:03}")).is_none(),
            "b{i} was written after {when}"
        );
    }
    engine.shutdown().unwrap();

    let early = target.path().join("early");
    let (code, _, err) = ctl(&[
        "restore",
        "--from",
        dest,
        "--data-dir",
        early.to_str().unwrap(),
        "--to-time",
        &(m.created_at_ms - 1).to_string(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no backup taken before"), "{err}");
}
