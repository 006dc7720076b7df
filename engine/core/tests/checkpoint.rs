//! Checkpoints on real O_DIRECT files: every write acknowledged before the call is in the
//! image, the image survives a compaction that deletes the originals, incremental chains
//! resolve to the same state as a full checkpoint, and the shards' orphan sweep leaves
//! checkpoints alone.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::block_on;
use mantis_engine::checkpoint::{self, CheckpointKind};
use mantis_engine::{Engine, EngineConfig, EngineHandle, ScanRange};

fn cfg(dir: &Path) -> EngineConfig {
    EngineConfig {
        data_dir: dir.to_path_buf(),
        shards: 2,
        pin_cpus: false,
        memtable_bytes_max: 256 << 10,
        wal_segment_bytes: 1 << 20,
        segments_max: 64,
        ..EngineConfig::default()
    }
}

fn contents(h: &EngineHandle) -> BTreeMap<Vec<u8>, Vec<u8>> {
    block_on(h.scan(ScanRange::all(), 1_000_000))
        .unwrap()
        .into_iter()
        .map(|(k, e)| (k, e.value))
        .collect()
}

fn put_range(h: &EngineHandle, tag: &str, range: std::ops::Range<u32>) {
    for i in range {
        let k = format!("k{i:06}").into_bytes();
        let v = format!("{tag}-{i}-{}", "v".repeat((i % 200) as usize)).into_bytes();
        block_on(h.put(k, v, None)).unwrap();
    }
}

/// Opens the materialized image and returns everything in it.
fn open_image(root: &Path, id: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let target = tempfile::tempdir_in("/var/tmp").unwrap();
    let restored = target.path().join("data");
    checkpoint::materialize(root, id, &restored).unwrap();
    let engine = Engine::open(cfg(&restored)).unwrap();
    let got = contents(&engine.handle());
    // The restored engine takes writes after the cut (its WAL starts past flushed_lsn).
    block_on(engine.handle().put(b"after".to_vec(), b"x".to_vec(), None)).unwrap();
    engine.shutdown().unwrap();
    let engine = Engine::open(cfg(&restored)).unwrap();
    assert_eq!(
        block_on(engine.handle().get(b"after")).unwrap(),
        Some(b"x".to_vec())
    );
    engine.shutdown().unwrap();
    got
}

#[test]
fn acknowledged_writes_are_in_a_checkpoint_taken_under_load() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let engine = Engine::open(cfg(tmp.path())).unwrap();
    let h = engine.handle();
    put_range(&h, "a", 0..2000);
    // A writer keeps going while the checkpoint is taken; it records what was acknowledged.
    let acked: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (h, acked, stop, written) = (h.clone(), acked.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || {
            let mut i = 0u32;
            while !stop.load(Ordering::Acquire) {
                let k = format!("w{i:07}").into_bytes();
                let v = format!("load-{i}").into_bytes();
                block_on(h.put(k.clone(), v.clone(), None)).unwrap();
                acked.lock().unwrap().insert(k, v);
                written.fetch_add(1, Ordering::Release);
                i += 1;
            }
        })
    };
    while written.load(Ordering::Acquire) < 200 {
        std::thread::yield_now();
    }
    let before_cut = acked.lock().unwrap().clone();
    let root = checkpoint::checkpoints_dir(tmp.path());
    let meta = block_on(h.checkpoint(&root, CheckpointKind::Full, None)).unwrap();
    let written_at_cut = written.load(Ordering::Acquire);
    while written.load(Ordering::Acquire) < written_at_cut + 200 {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Release);
    writer.join().unwrap();
    assert_eq!(meta.shard_count, 2);
    assert!(meta.shards.iter().all(|s| s.durable_lsn >= s.flushed_lsn));
    assert!(meta.total_bytes() > 0);
    assert_eq!(meta.own_bytes(), meta.total_bytes());
    let image = open_image(&root, &meta.id);
    for i in 0..2000u32 {
        let k = format!("k{i:06}").into_bytes();
        assert!(image.contains_key(&k), "key {i} missing");
    }
    for (k, v) in &before_cut {
        assert_eq!(image.get(k), Some(v), "acknowledged write {k:?} missing");
    }
    let all_acked = acked.lock().unwrap().len();
    assert!(
        all_acked > before_cut.len() + 199,
        "the load went on during the cut"
    );
    engine.shutdown().unwrap();
}

#[test]
fn checkpoint_files_survive_a_compaction_and_a_restart() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let root = checkpoint::checkpoints_dir(tmp.path());
    let engine = Engine::open(cfg(tmp.path())).unwrap();
    let h = engine.handle();
    for round in 0..3 {
        put_range(&h, &format!("r{round}"), round * 500..round * 500 + 800);
        block_on(h.flush()).unwrap();
    }
    let expected = contents(&h);
    let meta = block_on(h.checkpoint(&root, CheckpointKind::Snapshot, None)).unwrap();
    let linked: Vec<_> = meta
        .shards
        .iter()
        .flat_map(|s| s.files.iter().map(move |f| (s.shard, f.clone())))
        .collect();
    assert!(linked.len() >= 6, "several segments per shard: {linked:?}");
    for (shard, f) in &linked {
        let p = checkpoint::resolve_file(&root, *shard, &f.stored_in, &f.name);
        assert_eq!(
            std::fs::metadata(&p).unwrap().nlink(),
            2,
            "shared, not copied"
        );
    }
    put_range(&h, "after", 0..300);
    block_on(h.compact()).unwrap();
    // Compaction deletes its inputs once no reader holds them (the compactor's next tick).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let originals_left = linked
            .iter()
            .filter(|(shard, f)| {
                tmp.path()
                    .join(format!("shard-{shard}"))
                    .join(&f.name)
                    .exists()
            })
            .count();
        if originals_left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{originals_left} originals never deleted"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for (shard, f) in &linked {
        let p = checkpoint::resolve_file(&root, *shard, &f.stored_in, &f.name);
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!(md.nlink(), 1, "only the checkpoint holds it now");
        assert_eq!(md.len(), f.size_bytes);
    }
    engine.shutdown().unwrap();
    // A restart sweeps orphan segments from shard directories, never from checkpoints.
    let engine = Engine::open(cfg(tmp.path())).unwrap();
    engine.shutdown().unwrap();
    assert_eq!(checkpoint::list(&root).unwrap(), vec![meta.clone()]);
    assert_eq!(open_image(&root, &meta.id), expected);
}

#[test]
fn incremental_chain_equals_a_full_checkpoint_and_pins_its_parent() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let root = checkpoint::checkpoints_dir(tmp.path());
    let engine = Engine::open(cfg(tmp.path())).unwrap();
    let h = engine.handle();
    put_range(&h, "one", 0..1500);
    let base = block_on(h.checkpoint(&root, CheckpointKind::Full, None)).unwrap();
    put_range(&h, "two", 1000..2500);
    block_on(h.delete(b"k000007".to_vec())).unwrap();
    let inc = block_on(h.checkpoint(&root, CheckpointKind::Incremental, None)).unwrap();
    let full = block_on(h.checkpoint(&root, CheckpointKind::Full, None)).unwrap();
    assert_eq!(inc.parent.as_deref(), Some(base.id.as_str()));
    assert!(
        inc.own_bytes() > 0 && inc.own_bytes() < inc.total_bytes(),
        "{inc:?}"
    );
    let inherited = inc
        .shards
        .iter()
        .flat_map(|s| s.files.iter())
        .filter(|f| f.stored_in == base.id)
        .count();
    assert!(inherited > 0);
    let from_chain = open_image(&root, &inc.id);
    let from_full = open_image(&root, &full.id);
    assert_eq!(from_chain, from_full);
    assert!(!from_chain.contains_key(b"k000007".as_slice()));
    assert_eq!(from_chain.len(), 2499);
    // The parent holds files the child uses: deleting it is refused until the child is gone.
    let e = checkpoint::delete(&root, &base.id).unwrap_err();
    assert!(e.to_string().contains(&inc.id), "{e}");
    checkpoint::delete(&root, &inc.id).unwrap();
    checkpoint::delete(&root, &base.id).unwrap();
    let left: Vec<String> = checkpoint::list(&root)
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(left, vec![full.id.clone()]);
    assert!(checkpoint::get(&root, &base.id).is_err());
    assert!(checkpoint::get(&root, "../etc").is_err());
    engine.shutdown().unwrap();
}
