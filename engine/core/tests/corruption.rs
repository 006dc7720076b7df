//! Corruption tests: a flipped bit in a segment block or in a WAL record is reported as a
//! checksum error that names the file and offset — never returned as data.
#![allow(clippy::unwrap_used)]

mod common;

use common::{block_on, open, sim_config};
use mantis_engine::{Engine, EngineError};
use mantis_storage::SimStorage;

fn load(sim: &SimStorage, n: usize) -> mantis_engine::EngineConfig {
    let mut cfg = sim_config(sim, 1);
    cfg.memtable_bytes_max = 8 << 20;
    let engine = open(&cfg);
    let h = engine.handle();
    for i in 0..n {
        block_on(h.put(
            format!("key{i:05}").into_bytes(),
            vec![b'a' + (i % 26) as u8; 200],
            None,
        ))
        .unwrap();
    }
    engine.shutdown().unwrap();
    cfg
}

#[test]
fn flipped_bit_in_a_segment_block_is_a_checksum_error() {
    let sim = SimStorage::new(1);
    let cfg = load(&sim, 2000);
    let seg = sim
        .files()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap_or_else(|| panic!("no segment file after shutdown's flush"));
    // Offset 100 lies inside the first data block.
    sim.flip_bit(&seg, 100, 3).unwrap();
    let engine = open(&cfg);
    let h = engine.handle();
    let mut corrupt = 0;
    for i in 0..2000 {
        match block_on(h.get(format!("key{i:05}").as_bytes())) {
            Ok(Some(v)) => assert_eq!(
                v,
                vec![b'a' + (i % 26) as u8; 200],
                "wrong data returned for key{i:05}"
            ),
            Ok(None) => panic!("key{i:05} vanished instead of failing"),
            Err(e) => {
                assert!(e.is_corruption(), "unexpected error {e}");
                let msg = e.to_string();
                assert!(
                    msg.contains(&seg.display().to_string()),
                    "error names the file: {msg}"
                );
                assert!(msg.contains("offset"), "error names the offset: {msg}");
                corrupt += 1;
            }
        }
    }
    assert!(corrupt > 0, "the flipped block was never reported");
    let stats = block_on(h.stats()).unwrap();
    assert_eq!(stats[0].corruption_errors, corrupt);
    engine.shutdown().unwrap();
}

#[test]
fn flipped_bit_in_a_wal_record_stops_startup_unless_repair() {
    let sim = SimStorage::new(2);
    let mut cfg = sim_config(&sim, 1);
    cfg.memtable_bytes_max = 8 << 20;
    let engine = open(&cfg);
    let h = engine.handle();
    for i in 0..200 {
        block_on(h.put(format!("key{i:05}").into_bytes(), vec![b'q'; 3000], None)).unwrap();
    }
    // Crash: the data is only in the WAL.
    engine.abandon();
    let wal = sim
        .files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .min()
        .unwrap();
    // Flip a bit early in the log: later records exist, so this is not a torn tail.
    sim.flip_bit(&wal, 4096 * 3 + 200, 5).unwrap();
    let err = match Engine::open(cfg.clone()) {
        Ok(_) => panic!("opened over a corrupt WAL"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(matches!(err, EngineError::Wal { .. }), "{msg}");
    assert!(
        msg.contains(&wal.display().to_string()) && msg.contains("offset"),
        "{msg}"
    );

    cfg.repair_wal = true;
    let engine = open(&cfg);
    let h = engine.handle();
    // Everything before the corrupt record is there; nothing returned is wrong.
    let first = block_on(h.get(b"key00000")).unwrap();
    assert_eq!(first, Some(vec![b'q'; 3000]));
    for i in 0..200 {
        if let Some(v) = block_on(h.get(format!("key{i:05}").as_bytes())).unwrap() {
            assert_eq!(v, vec![b'q'; 3000]);
        }
    }
    engine.shutdown().unwrap();
}
