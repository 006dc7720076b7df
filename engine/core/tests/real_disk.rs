//! The engine on real O_DIRECT files (ext4 under /var/tmp): writes, TTLs, deletes, flushes,
//! compactions and restarts, checked against what was written.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::block_on;
use mantis_engine::{now_ms, Engine, EngineConfig, ScanRange};

fn cfg(dir: &std::path::Path, shards: usize) -> EngineConfig {
    EngineConfig {
        data_dir: dir.to_path_buf(),
        shards,
        pin_cpus: false,
        memtable_bytes_max: 1 << 20,
        wal_segment_bytes: 1 << 20,
        segments_max: 4,
        ..EngineConfig::default()
    }
}

#[test]
fn writes_survive_restarts_flushes_and_compactions_on_real_files() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for round in 0..3u32 {
        let engine = Engine::open(cfg(tmp.path(), 2)).unwrap();
        let h = engine.handle();
        for (k, v) in &model {
            assert_eq!(
                block_on(h.get(k)).unwrap().as_ref(),
                Some(v),
                "round {round}: lost a key"
            );
        }
        for i in 0..3000u32 {
            let k = format!("key{:05}", (i * 31 + round * 7) % 4000).into_bytes();
            if i % 10 == 3 {
                block_on(h.delete(k.clone())).unwrap();
                model.remove(&k);
            } else {
                let v = format!("{round}-{i}-{}", "x".repeat((i % 300) as usize)).into_bytes();
                let ttl = (i % 7 == 0).then(|| Duration::from_secs(86_400));
                block_on(h.put(k.clone(), v.clone(), ttl)).unwrap();
                model.insert(k, v);
            }
        }
        // A value that expired on write is never returned, before or after a flush.
        block_on(h.put_expiring_at(b"expired".to_vec(), b"x".to_vec(), Some(now_ms() - 1)))
            .unwrap();
        assert_eq!(block_on(h.get(b"expired")).unwrap(), None);
        if round == 1 {
            block_on(h.flush()).unwrap();
            block_on(h.compact()).unwrap();
        }
        let all = block_on(h.scan(ScanRange::all(), 100_000)).unwrap();
        let got: BTreeMap<Vec<u8>, Vec<u8>> = all.into_iter().map(|(k, e)| (k, e.value)).collect();
        assert_eq!(got, model, "round {round}: scan differs");
        assert_eq!(block_on(h.count_keys()).unwrap(), model.len() as u64);
        let stats = block_on(h.stats()).unwrap();
        assert_eq!(stats.len(), 2);
        assert!(stats.iter().all(|s| s.wal_syncs > 0 && !s.read_only));
        if round == 1 {
            assert!(
                stats.iter().all(|s| s.segments >= 1 && s.flushes >= 1),
                "{stats:?}"
            );
        }
        engine.shutdown().unwrap();
    }
    // The directory is pinned to two shards.
    let err = match Engine::open(cfg(tmp.path(), 3)) {
        Ok(_) => panic!("opened a 2-shard directory with 3 shards"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("created with 2 shards"), "{err}");
}

#[test]
fn oversized_values_and_keys_and_ttls_are_rejected_cleanly() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut c = cfg(tmp.path(), 1);
    c.value_bytes_max = 1 << 20;
    let engine = Engine::open(c).unwrap();
    let h = engine.handle();
    let e = block_on(h.put(b"k".to_vec(), vec![0; (1 << 20) + 1], None)).unwrap_err();
    assert!(
        e.is_client_error() && e.to_string().contains("exceeds the limit"),
        "{e}"
    );
    let e = block_on(h.put(vec![b'k'; 70_000], b"v".to_vec(), None)).unwrap_err();
    assert!(e.is_client_error(), "{e}");
    let e = block_on(h.put(Vec::new(), b"v".to_vec(), None)).unwrap_err();
    assert!(e.is_client_error(), "{e}");
    // TTLs from one second to ten years work; past year 9999 they are rejected.
    block_on(h.put(
        b"one-second".to_vec(),
        b"v".to_vec(),
        Some(Duration::from_secs(1)),
    ))
    .unwrap();
    let ten_years = Duration::from_secs(10 * 366 * 86_400);
    block_on(h.put(b"ten-years".to_vec(), b"v".to_vec(), Some(ten_years))).unwrap();
    let e = block_on(h.get_entry(b"ten-years")).unwrap().unwrap();
    let expected = now_ms() + ten_years.as_millis() as u64;
    assert!(
        e.expires_at_ms.unwrap().abs_diff(expected) < 5_000,
        "TTL precision"
    );
    let e = block_on(h.put(
        b"k".to_vec(),
        b"v".to_vec(),
        Some(Duration::from_secs(u64::MAX / 2)),
    ))
    .unwrap_err();
    assert!(
        matches!(e, mantis_engine::EngineError::TtlOverflow { .. }),
        "{e}"
    );
    let e = block_on(h.put(b"k".to_vec(), b"v".to_vec(), Some(Duration::ZERO))).unwrap_err();
    assert!(e.is_client_error(), "{e}");
    // Nothing of the rejected writes is there.
    assert_eq!(block_on(h.get(b"k")).unwrap(), None);
    // A 64 MiB value (the default limit) goes through on a default engine.
    engine.shutdown().unwrap();
    let engine = Engine::open(cfg(tmp.path(), 1)).unwrap();
    let h = engine.handle();
    let big: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8).collect();
    block_on(h.put(b"big".to_vec(), big.clone(), None)).unwrap();
    block_on(h.flush()).unwrap();
    assert_eq!(block_on(h.get(b"big")).unwrap().as_ref(), Some(&big));
    engine.shutdown().unwrap();
}
