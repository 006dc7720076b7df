//! Issue 10: WAL archiving, RPO compliance and point-in-time recovery, on a real engine
//! (O_DIRECT files on ext4) archiving to a real local directory.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{block_on, cfg, contents, Model};
use mantis_backup::archive::{Archiver, ArchiverConfig, RpoLevel, RpoStatus, ShardLink};
use mantis_backup::pitr::{restore_to_point, PitrTarget};
use mantis_backup::{create_backup, BackupOptions, Destination, LocalDir};
use mantis_engine::checkpoint::{self, CheckpointKind};
use mantis_engine::{Engine, EngineHandle};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Polls (no sleeping on a guess) until the wall clock has passed `t_ms`.
fn wait_clock_past(t_ms: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while now_ms() <= t_ms {
        assert!(Instant::now() < deadline, "clock did not advance");
        std::thread::yield_now();
    }
}

fn wait_status(a: &Archiver, what: &str, ok: impl Fn(&RpoStatus) -> bool) -> RpoStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = a.status();
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {s:#?}");
        std::thread::yield_now();
    }
}

/// Every record the engine has made durable so far is archived.
fn wait_caught_up(a: &Archiver, h: &EngineHandle, what: &str) -> RpoStatus {
    let last: Vec<u64> = block_on(h.stats())
        .unwrap()
        .iter()
        .map(|s| s.last_lsn)
        .collect();
    wait_status(a, what, |s| {
        s.shards
            .iter()
            .zip(&last)
            .all(|(sh, &lsn)| lsn > 0 && sh.archived_lsn >= lsn && sh.exposure_ms == 0)
    })
}

fn start_archiver(h: &EngineHandle, dest: Box<dyn Destination>, level: RpoLevel) -> Archiver {
    let archived: Vec<u64> = (0..h.shard_count())
        .map(|s| mantis_backup::archive::archived_lsn(dest.as_ref(), s).unwrap())
        .collect();
    let links = block_on(h.attach_archive_gates(&archived))
        .unwrap()
        .into_iter()
        .map(|(gate, wal_dir)| ShardLink { gate, wal_dir })
        .collect();
    let mut c = ArchiverConfig::new(level);
    c.tick_ms = Some(20);
    Archiver::start(c, dest, links).unwrap()
}

fn put_keys(h: &EngineHandle, tag: &str, n: u32, model: &mut Model) {
    for i in 0..n {
        let (k, v) = (
            format!("{tag}{i:04}").into_bytes(),
            format!("{tag}-value-{i}").into_bytes(),
        );
        block_on(h.put(k.clone(), v.clone(), None)).unwrap();
        model.insert(k, v);
    }
}

fn full_backup(h: &EngineHandle, data_dir: &Path, dest: &dyn Destination) -> u64 {
    let root = checkpoint::checkpoints_dir(data_dir);
    let cp = block_on(h.checkpoint(&root, CheckpointKind::Full, None)).unwrap();
    let m = create_backup(dest, &root, &cp, &BackupOptions::default(), &mut |_| {}).unwrap();
    m.created_at_ms
}

fn open_read(dir: &Path) -> Model {
    let engine = Engine::open(cfg(dir)).unwrap();
    let got = contents(&engine.handle());
    engine.shutdown().unwrap();
    got
}

#[test]
fn pitr_restores_exactly_the_writes_before_the_target_time() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let data = tmp.path().join("data");
    let archive = tmp.path().join("archive");
    let dest = LocalDir::new(&archive);
    let engine = Engine::open(cfg(&data)).unwrap();
    let h = engine.handle();
    let archiver = start_archiver(&h, Box::new(LocalDir::new(&archive)), RpoLevel::Minimal);

    let mut base = Model::new();
    put_keys(&h, "base", 50, &mut base);
    let backup_at = full_backup(&h, &data, &dest);
    wait_clock_past(backup_at);

    let mut before = base.clone();
    put_keys(&h, "a", 60, &mut before);
    let t_a = now_ms(); // every "a" write was acknowledged (so stamped) by now
    wait_clock_past(t_a);
    let mut after = before.clone();
    put_keys(&h, "b", 60, &mut after);
    wait_caught_up(&archiver, &h, "the archive to catch up");

    // To the time between the two groups: exactly the earlier writes.
    let restored = tmp.path().join("to-time");
    let report = restore_to_point(&dest, PitrTarget::TimeMs(t_a), &restored, &mut |_| {}).unwrap();
    assert!(report.reached_target(), "{report:#?}");
    assert!(report.shards.iter().any(|s| s.replayed_records > 0));
    assert_eq!(open_read(&restored), before);

    // To the newest archived LSN of every shard: everything.
    let last = archiver
        .status()
        .shards
        .iter()
        .map(|s| s.archived_lsn)
        .max()
        .unwrap();
    let restored = tmp.path().join("to-lsn");
    restore_to_point(&dest, PitrTarget::Lsn(last), &restored, &mut |_| {}).unwrap();
    assert_eq!(open_read(&restored), after);

    // Before the backup: refused, nothing left behind.
    let restored = tmp.path().join("too-early");
    let e = restore_to_point(
        &dest,
        PitrTarget::TimeMs(backup_at - 1),
        &restored,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("no backup taken before"), "{e}");
    archiver.stop();
    engine.shutdown().unwrap();
}

#[test]
fn exposure_grows_while_the_destination_is_gone_and_catches_up_after() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let data = tmp.path().join("data");
    let archive = tmp.path().join("archive");
    let engine = Engine::open(cfg(&data)).unwrap();
    let h = engine.handle();
    let archiver = start_archiver(&h, Box::new(LocalDir::new(&archive)), RpoLevel::Minimal);
    let mut model = Model::new();
    put_keys(&h, "x", 20, &mut model);
    let s = wait_caught_up(&archiver, &h, "first pieces archived");
    assert_eq!(s.state, "compliant");

    // The destination goes away: its directory is replaced by a plain file (root ignores
    // permission bits, so this is how a local directory is made unwritable here).
    let away = tmp.path().join("archive.away");
    std::fs::rename(&archive, &away).unwrap();
    std::fs::write(&archive, b"not a directory").unwrap();
    put_keys(&h, "y", 20, &mut model);
    let s = wait_status(&archiver, "a breach", |s| s.state == "breached");
    assert!(s.exposure_max_ms >= RpoLevel::Minimal.target_ms(), "{s:#?}");
    assert!(s
        .shards
        .iter()
        .any(|sh| sh.upload_failures > 0 && sh.last_error.is_some()));
    assert_eq!(s.compliance.breaches_total, 1);
    let grown = wait_status(&archiver, "exposure to grow", |x| {
        x.exposure_max_ms >= s.exposure_max_ms + 200
    });
    assert_eq!(grown.state, "breached");
    // The WAL keeps what is not archived.
    assert!(grown.shards.iter().all(|sh| sh.backlog_bytes > 0));

    // It comes back: the archiver catches up and the breach ends.
    std::fs::remove_file(&archive).unwrap();
    std::fs::rename(&away, &archive).unwrap();
    wait_caught_up(&archiver, &h, "catching up");
    let s = wait_status(&archiver, "the breach to end", |s| s.state == "compliant");
    let b = s.compliance.breaches.back().unwrap();
    assert!(
        b.ended_at_ms.is_some() && b.exposure_max_ms >= 1_000,
        "{b:?}"
    );
    assert!(s.compliance.breached_ms >= 200, "{:?}", s.compliance);
    archiver.stop();

    // Nothing was lost: a backup-less check of the archive itself — every LSN is there.
    let dest = LocalDir::new(&archive);
    for shard in 0..h.shard_count() {
        let mut next = 1;
        for p in mantis_backup::archive::list_pieces(&dest, shard).unwrap() {
            for r in mantis_backup::archive::read_piece(&dest, &p).unwrap() {
                if r.lsn >= next {
                    assert_eq!(r.lsn, next, "shard {shard}: no gap");
                    next += 1;
                }
            }
        }
        assert_eq!(next - 1, s.shards[shard].durable_lsn);
    }
    engine.shutdown().unwrap();
}
