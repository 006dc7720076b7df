//! fsyncgate: a failed fdatasync must never be retried and trusted. The shard turns read-only
//! for good, every later write gets the original cause, reads go on, and what was
//! acknowledged before the failure survives a restart.
#![allow(clippy::unwrap_used)]

mod common;

use common::{block_on, open, sim_config};
use mantis_engine::EngineError;
use mantis_storage::{SimFaults, SimStorage};

#[test]
fn failed_fdatasync_turns_the_shard_read_only_for_good() {
    let sim = SimStorage::new(11);
    let mut cfg = sim_config(&sim, 1);
    cfg.memtable_bytes_max = 8 << 20;
    let engine = open(&cfg);
    let h = engine.handle();
    for i in 0..50 {
        block_on(h.put(format!("k{i}").into_bytes(), b"before".to_vec(), None)).unwrap();
    }
    sim.set_faults(SimFaults {
        fail_sync_path_contains: Some(".wal".into()),
        ..SimFaults::default()
    });
    let err = block_on(h.put(b"doomed".to_vec(), b"x".to_vec(), None)).unwrap_err();
    assert!(err.is_read_only(), "first failure: {err}");
    assert!(
        err.to_string().contains("fdatasync"),
        "names the cause: {err}"
    );
    // The disk is healthy again; the shard still refuses: a retried fsync proves nothing.
    sim.set_faults(SimFaults::default());
    for _ in 0..3 {
        let err = block_on(h.put(b"later".to_vec(), b"x".to_vec(), None)).unwrap_err();
        assert!(matches!(err, EngineError::ReadOnly { .. }), "{err}");
    }
    // Reads go on, and the failed write is not visible.
    assert_eq!(block_on(h.get(b"k7")).unwrap(), Some(b"before".to_vec()));
    assert_eq!(block_on(h.get(b"doomed")).unwrap(), None);
    let stats = block_on(h.stats()).unwrap();
    assert!(stats[0].read_only);
    // A crash and restart: everything acknowledged is there, the shard writes again.
    engine.abandon();
    sim.crash();
    let engine = open(&cfg);
    let h = engine.handle();
    for i in 0..50 {
        assert_eq!(
            block_on(h.get(format!("k{i}").as_bytes())).unwrap(),
            Some(b"before".to_vec())
        );
    }
    assert_eq!(block_on(h.get(b"doomed")).unwrap(), None);
    block_on(h.put(b"after".to_vec(), b"ok".to_vec(), None)).unwrap();
    engine.shutdown().unwrap();
}
