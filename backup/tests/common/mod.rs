//! Shared scenario of the backup tests: a real engine on O_DIRECT files under a write load,
//! checkpoints, backups to a destination, restores opened and compared key by key, and
//! corrupted / truncated / missing objects refused.
#![allow(dead_code, clippy::unwrap_used)]

pub mod pki;
pub mod servers;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mantis_backup::{
    create_backup, restore, verify, BackupError, BackupManifest, BackupOptions, Destination,
    Progress,
};
use mantis_engine::checkpoint::{self, CheckpointKind, CheckpointMeta};
use mantis_engine::{Engine, EngineConfig, EngineHandle, ScanRange};

pub type Model = BTreeMap<Vec<u8>, Vec<u8>>;
/// The two keys of every 2-shard batch the load issued.
pub type Pairs = Arc<Mutex<Vec<(Vec<u8>, Vec<u8>)>>>;

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

pub fn cfg(dir: &Path) -> EngineConfig {
    EngineConfig {
        data_dir: dir.to_path_buf(),
        shards: 2,
        pin_cpus: false,
        memtable_bytes_max: 512 << 10,
        wal_segment_bytes: 1 << 20,
        segments_max: 64,
        ..EngineConfig::default()
    }
}

pub fn contents(h: &EngineHandle) -> Model {
    block_on(h.scan(ScanRange::all(), 10_000_000))
        .unwrap()
        .into_iter()
        .map(|(k, e)| (k, e.value))
        .collect()
}

/// A value that compresses somewhat, like real data: a counter pattern with noise.
fn value(tag: &str, i: u32) -> Vec<u8> {
    let mut x = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v = format!("{tag}-{i}-").into_bytes();
    for _ in 0..(64 + i % 700) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(if x % 3 == 0 {
            b'a' + (x % 26) as u8
        } else {
            b'.'
        });
    }
    v
}

pub fn put_range(h: &EngineHandle, tag: &str, range: std::ops::Range<u32>, model: &mut Model) {
    for i in range {
        let k = format!("k{i:06}").into_bytes();
        let v = value(tag, i);
        block_on(h.put(k.clone(), v.clone(), None)).unwrap();
        model.insert(k, v);
    }
}

/// Writes from another thread until stopped, recording what was acknowledged. Every fourth
/// write is a 2-shard batch (two-phase commit) putting one value under two keys on different
/// shards: `pairs` lists every such batch issued, acknowledged or not.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub acked: Arc<Mutex<Model>>,
    pub pairs: Pairs,
    pub written: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Two keys of batch `i` on different shards.
fn pair_keys(h: &EngineHandle, i: u32) -> (Vec<u8>, Vec<u8>) {
    let a = format!("txa{i:07}").into_bytes();
    let b = (0u32..)
        .map(|j| format!("txb{i:07}-{j}").into_bytes())
        .find(|b| h.shard_for(b) != h.shard_for(&a))
        .unwrap();
    (a, b)
}

/// Every 2-shard batch of the load is in `restored` whole or not at all.
pub fn assert_batches_whole(restored: &Model, pairs: &[(Vec<u8>, Vec<u8>)]) {
    assert!(!pairs.is_empty(), "the load ran 2-shard batches");
    for (a, b) in pairs {
        assert_eq!(
            restored.get(a),
            restored.get(b),
            "half a batch: {a:?} / {b:?}"
        );
    }
}

impl Load {
    pub fn start(h: &EngineHandle) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<Model>> = Arc::default();
        let pairs: Pairs = Arc::default();
        let written = Arc::new(AtomicU64::new(0));
        let thread = {
            let (h, stop, acked, written) =
                (h.clone(), stop.clone(), acked.clone(), written.clone());
            let pairs = pairs.clone();
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Acquire) {
                    let v = value("load", i);
                    if i % 4 == 3 {
                        let (a, b) = pair_keys(&h, i);
                        pairs.lock().unwrap().push((a.clone(), b.clone()));
                        let ops = [&a, &b]
                            .into_iter()
                            .map(|k| mantis_engine::BatchOp::Put {
                                key: k.clone(),
                                value: v.clone(),
                                expires_at_ms: None,
                            })
                            .collect();
                        block_on(h.write_batch(ops)).unwrap();
                        let mut acked = acked.lock().unwrap();
                        acked.insert(a, v.clone());
                        acked.insert(b, v);
                        written.fetch_add(1, Ordering::Release);
                        i += 1;
                        continue;
                    }
                    let k = format!("load{i:07}").into_bytes();
                    block_on(h.put(k.clone(), v.clone(), None)).unwrap();
                    acked.lock().unwrap().insert(k, v);
                    written.fetch_add(1, Ordering::Release);
                    i += 1;
                }
            })
        };
        Load {
            stop,
            acked,
            pairs,
            written,
            thread: Some(thread),
        }
    }

    pub fn wait_for(&self, n: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.written.load(Ordering::Acquire) < n {
            assert!(std::time::Instant::now() < deadline, "load stalled");
            std::thread::yield_now();
        }
    }

    pub fn stop(mut self) -> Model {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}

/// Restores `id` into a new directory, opens it, and returns its contents.
pub fn restore_and_read(dest: &dyn Destination, id: &str) -> Model {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let dir = tmp.path().join("restored");
    let mut last: Option<Progress> = None;
    let m = restore(dest, Some(id), &dir, &mut |p| last = Some(p.clone())).unwrap();
    let last = last.unwrap();
    assert_eq!(last.bytes_done, last.bytes_total);
    assert_eq!(last.files_done, m.files.len() as u64);
    let engine = Engine::open(cfg(&dir)).unwrap();
    let got = contents(&engine.handle());
    engine.shutdown().unwrap();
    got
}

fn backup(
    dest: &dyn Destination,
    root: &Path,
    cp: &CheckpointMeta,
    incremental: bool,
) -> BackupManifest {
    let opts = BackupOptions {
        incremental,
        ..BackupOptions::default()
    };
    let mut calls = 0u64;
    let m = create_backup(dest, root, cp, &opts, &mut |p| {
        calls += 1;
        assert!(p.bytes_done <= p.bytes_total);
    })
    .unwrap();
    assert_eq!(
        calls,
        m.files.len() as u64 + 1,
        "one report per file plus the start"
    );
    m
}

fn assert_refused(
    dest: &dyn Destination,
    id: &str,
    object: &str,
    expect: fn(&BackupError) -> bool,
) {
    let e = verify(dest, Some(id), &mut |_| {}).unwrap_err();
    assert!(expect(&e), "verify: {e}");
    assert_eq!(e.object(), Some(object), "verify names the object: {e}");
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let dir = tmp.path().join("restored");
    let e = restore(dest, Some(id), &dir, &mut |_| {}).unwrap_err();
    assert!(expect(&e), "restore: {e}");
    assert_eq!(e.object(), Some(object), "restore names the object: {e}");
    let left = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "a refused restore leaves nothing behind");
}

/// The whole story against one destination.
pub fn scenario(dest: &dyn Destination) {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let root = checkpoint::checkpoints_dir(tmp.path());
    let engine = Engine::open(cfg(tmp.path())).unwrap();
    let h = engine.handle();
    let mut model = Model::new();
    put_range(&h, "one", 0..4000, &mut model);

    // 1. A full backup under a concurrent write load.
    let load = Load::start(&h);
    load.wait_for(100);
    let acked_before_cut = load.acked.lock().unwrap().clone();
    let cp1 = block_on(h.checkpoint(&root, CheckpointKind::Full, None)).unwrap();
    let b1 = backup(dest, &root, &cp1, false);
    let at_end = load.written.load(Ordering::Acquire);
    load.wait_for(at_end + 50);
    let pairs = load.pairs.clone();
    let acked = load.stop();
    assert!(
        acked.len() > acked_before_cut.len(),
        "writes went on during the backup"
    );
    assert_eq!(b1.kind, "full");
    assert_eq!(b1.shard_count, 2);
    let report = verify(dest, Some(&b1.id), &mut |_| {}).unwrap();
    assert_eq!(report.files, b1.files.len() as u64);
    assert!(
        report.stored_bytes < report.raw_bytes,
        "compressed: {report:?}"
    );
    let restored = restore_and_read(dest, &b1.id);
    // Issue 10: the cut is global: no 2-shard batch is restored half.
    assert_batches_whole(&restored, &pairs.lock().unwrap());
    for (k, v) in model.iter().chain(acked_before_cut.iter()) {
        assert_eq!(
            restored.get(k),
            Some(v),
            "acknowledged before the cut: {k:?}"
        );
    }

    // 2. An incremental chain restores to the same state as a full backup of the same point.
    for (k, v) in &acked {
        model.insert(k.clone(), v.clone());
    }
    put_range(&h, "two", 3000..6000, &mut model);
    for i in (0..500u32).step_by(7) {
        let k = format!("k{i:06}").into_bytes();
        block_on(h.delete(k.clone())).unwrap();
        model.remove(&k);
    }
    let cp2 = block_on(h.checkpoint(&root, CheckpointKind::Full, None)).unwrap();
    let b2 = backup(dest, &root, &cp2, true);
    let b3 = backup(dest, &root, &cp2, false);
    assert_eq!(b2.kind, "incremental");
    assert_eq!(b2.parent.as_deref(), Some(b1.id.as_str()));
    assert!(
        b2.files.iter().any(|f| f.backup == b1.id),
        "inherits from its parent"
    );
    assert!(
        b2.uploaded_bytes() < b3.uploaded_bytes(),
        "uploads less than a full backup"
    );
    let from_chain = restore_and_read(dest, &b2.id);
    let from_full = restore_and_read(dest, &b3.id);
    assert_eq!(from_chain, from_full);
    assert_eq!(from_full, model);
    let listed: Vec<String> = mantis_backup::list_backups(dest)
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(listed, vec![b1.id.clone(), b2.id.clone(), b3.id.clone()]);

    // 3. Refusals: a non-empty target, a corrupted object, a truncated one, a missing one.
    let busy = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::write(busy.path().join("x"), b"x").unwrap();
    let e = restore(dest, Some(&b3.id), busy.path(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, BackupError::TargetNotEmpty { .. }), "{e}");
    let segs: Vec<&mantis_backup::BackupFile> = b3
        .files
        .iter()
        .filter(|f| f.path.ends_with(".seg"))
        .collect();
    assert!(segs.len() >= 2);
    let corrupt = segs[0].object.clone();
    let mut bytes = dest.get(&corrupt).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    dest.put(&corrupt, &bytes).unwrap();
    assert_refused(dest, &b3.id, &corrupt, |e| {
        matches!(e, BackupError::ChecksumMismatch { what: "stored", .. })
    });
    bytes[mid] ^= 0x40;
    dest.put(&corrupt, &bytes).unwrap();
    verify(dest, Some(&b3.id), &mut |_| {}).unwrap();
    let truncated = segs[1].object.clone();
    let bytes = dest.get(&truncated).unwrap();
    dest.put(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    assert_refused(dest, &b3.id, &truncated, |e| {
        matches!(e, BackupError::SizeMismatch { what: "stored", .. })
    });
    // An object the incremental backup inherits goes missing from its parent.
    let inherited = b2
        .files
        .iter()
        .find(|f| f.backup == b1.id)
        .unwrap()
        .object
        .clone();
    dest.delete(&inherited).unwrap();
    assert_refused(dest, &b2.id, &inherited, |e| {
        matches!(e, BackupError::NotFound { .. })
    });
    engine.shutdown().unwrap();
}

/// A short story for the transport tests (issue 10, TLS): a full backup of a small engine,
/// verified, restored and compared key by key.
pub fn round_trip(dest: &dyn Destination) {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let root = checkpoint::checkpoints_dir(tmp.path());
    let engine = Engine::open(cfg(tmp.path())).unwrap();
    let h = engine.handle();
    let mut model = Model::new();
    put_range(&h, "tls", 0..1500, &mut model);
    let cp = block_on(h.checkpoint(&root, CheckpointKind::Full, None)).unwrap();
    let b = backup(dest, &root, &cp, false);
    engine.shutdown().unwrap();
    let report = verify(dest, Some(&b.id), &mut |_| {}).unwrap();
    assert_eq!(report.files, b.files.len() as u64);
    assert_eq!(restore_and_read(dest, &b.id), model);
}
