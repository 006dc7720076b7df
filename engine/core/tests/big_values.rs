//! Regression: the chaos harness (seed 2, `mantis-chaos edge --values 3`) found that after a
//! crash with multi-MiB values — larger than a WAL segment and than the memtable budget — a
//! restart never finished recovery. Values larger than a WAL segment get a segment sized to
//! fit; values larger than half the memtable budget freeze the memtable at once.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::block_on;
use mantis_engine::{Engine, EngineConfig};

fn value(i: u64, len: usize) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len.div_ceil(8))
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .take(len)
        .collect()
}

#[test]
fn recovery_after_a_crash_with_values_larger_than_a_wal_segment() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let cfg = EngineConfig {
        data_dir: tmp.path().to_path_buf(),
        shards: 2,
        pin_cpus: false,
        memtable_bytes_max: 4 << 20,
        wal_segment_bytes: 4 << 20,
        ..EngineConfig::default()
    };
    let sizes = [1usize << 20, 5 << 20, 10 << 20, 3 << 20, 7 << 20];
    let engine = Engine::open(cfg.clone()).unwrap();
    let h = engine.handle();
    for (i, &len) in sizes.iter().enumerate() {
        let ttl = Some(Duration::from_secs(86_400));
        block_on(h.put(format!("big{i}").into_bytes(), value(i as u64, len), ttl)).unwrap();
    }
    engine.abandon();
    for round in 0..2 {
        let (tx, rx) = std::sync::mpsc::channel();
        let c = cfg.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Engine::open(c));
        });
        let engine = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("round {round}: recovery did not finish in 60 s"))
            .unwrap();
        let h = engine.handle();
        for (i, &len) in sizes.iter().enumerate() {
            let got = block_on(h.get(format!("big{i}").as_bytes())).unwrap();
            assert_eq!(got, Some(value(i as u64, len)), "round {round}: big{i}");
        }
        if round == 0 {
            engine.abandon();
        } else {
            engine.shutdown().unwrap();
        }
    }
}
