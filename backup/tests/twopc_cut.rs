//! Issue 10: a backup taken while a cross-shard batch (two-phase commit) is prepared on both
//! shards but not decided holds none of it; after a restore the batch is absent, while a batch
//! decided before the cut is there whole. The held batch, released after the backup, is
//! acknowledged and whole in the next backup. The batch is held by the engine's test hold
//! (`TpcHoldPoint::BeforeDecision`).
#![allow(clippy::unwrap_used)]

mod common;

use common::{block_on, cfg, restore_and_read};
use mantis_backup::{create_backup, BackupOptions, LocalDir};
use mantis_engine::checkpoint::{self, CheckpointKind};
use mantis_engine::twopc::TpcHoldPoint;
use mantis_engine::{BatchOp, Engine, EngineHandle};

/// Two keys of pair `i`, on different shards.
fn pair(h: &EngineHandle, i: u32) -> (Vec<u8>, Vec<u8>) {
    let a = format!("pair{i}-a").into_bytes();
    let b = (0u32..)
        .map(|j| format!("pair{i}-b{j}").into_bytes())
        .find(|b| h.shard_for(b) != h.shard_for(&a))
        .unwrap();
    (a, b)
}

fn ops(keys: &(Vec<u8>, Vec<u8>), value: &[u8]) -> Vec<BatchOp> {
    [&keys.0, &keys.1]
        .into_iter()
        .map(|k| BatchOp::Put {
            key: k.clone(),
            value: value.to_vec(),
            expires_at_ms: None,
        })
        .collect()
}

#[test]
fn a_backup_cut_while_a_batch_is_prepared_but_undecided_restores_without_it() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let dest_dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let dest = LocalDir::new(dest_dir.path());
    let root = checkpoint::checkpoints_dir(tmp.path());
    let engine = Engine::open(cfg(tmp.path())).unwrap();
    let h = engine.handle();
    let mut model = common::Model::new();
    common::put_range(&h, "base", 0..300, &mut model);
    let (decided, held) = (pair(&h, 0), pair(&h, 1));
    block_on(h.write_batch(ops(&decided, b"decided before the cut"))).unwrap();

    let mut hold = block_on(h.arm_tpc_hold(0, TpcHoldPoint::BeforeDecision)).unwrap();
    let writer = {
        let (h, ops) = (h.clone(), ops(&held, b"held at the cut"));
        std::thread::spawn(move || block_on(h.write_batch(ops)))
    };
    assert!(
        block_on(hold.reached()).is_some(),
        "the batch reached its hold"
    );
    let cp = block_on(h.checkpoint(&root, CheckpointKind::Full, None)).unwrap();
    let during = create_backup(&dest, &root, &cp, &BackupOptions::default(), &mut |_| {}).unwrap();
    hold.release();
    writer.join().unwrap().unwrap();
    let cp = block_on(h.checkpoint(&root, CheckpointKind::Full, None)).unwrap();
    let opts = BackupOptions {
        incremental: true,
        ..BackupOptions::default()
    };
    let after = create_backup(&dest, &root, &cp, &opts, &mut |_| {}).unwrap();
    engine.shutdown().unwrap();

    let restored = restore_and_read(&dest, &during.id);
    for k in [&decided.0, &decided.1] {
        assert_eq!(
            restored.get(k).map(Vec::as_slice),
            Some(&b"decided before the cut"[..]),
            "a batch decided before the cut is whole"
        );
    }
    for k in [&held.0, &held.1] {
        assert_eq!(restored.get(k), None, "an undecided batch is absent");
    }
    for (k, v) in &model {
        assert_eq!(restored.get(k), Some(v));
    }
    let restored = restore_and_read(&dest, &after.id);
    for k in [&held.0, &held.1] {
        assert_eq!(
            restored.get(k).map(Vec::as_slice),
            Some(&b"held at the cut"[..]),
            "decided after the cut: whole in the next backup"
        );
    }
}
