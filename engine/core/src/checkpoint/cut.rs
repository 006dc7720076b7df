//! The per-shard part of a checkpoint. Runs on the shard's executor.

use std::path::Path;
use std::rc::Rc;

use mantis_storage::format::{SEGMENT_DIR, SEGMENT_FILE_SUFFIX};

use super::meta::{CheckpointFile, ShardCut};
use super::store::ShardPlan;
use super::CHECKPOINT_MANIFEST_NAME;
use crate::error::{EngineError, Result};
use crate::shard::Shard;

fn cp_err(plan: &ShardPlan, path: &Path, reason: String) -> EngineError {
    EngineError::Checkpoint {
        checkpoint: plan.checkpoint_id.clone(),
        path: path.display().to_string(),
        reason,
    }
}

/// Flushes the shard, then links its live segments and writes its manifest copy into
/// `plan.dir`. The manifest lock is held from reading the file list to the last link, so no
/// compaction can commit (and later delete) a listed file before it is linked.
pub(crate) async fn cut_shard(shard: &Rc<Shard>, plan: ShardPlan) -> Result<ShardCut> {
    if shard.cfg.sim_storage.is_some() {
        return Err(cp_err(
            &plan,
            &plan.dir,
            "checkpoints need on-disk storage (hard links); the simulated disk has none".into(),
        ));
    }
    // A read-only shard (a failed sync) may lack a decided transaction's writes until it
    // restarts (its Commit did not land): an image of it would not be a consistent cut.
    shard.check_writable()?;
    settle_decided(shard, &plan).await?;
    shard.flush_all().await?;
    let _permit = shard
        .manifest_lock
        .acquire_permit(1)
        .await
        .map_err(|e| EngineError::Invalid(format!("manifest lock: {e}")))?;
    let state = shard.state.borrow().manifest.clone();
    let seg_dir = plan.dir.join(SEGMENT_DIR);
    std::fs::create_dir_all(&seg_dir).map_err(|e| cp_err(&plan, &seg_dir, e.to_string()))?;
    let mut files = Vec::with_capacity(state.segments.len());
    for seg in &state.segments {
        let name = format!("{SEGMENT_DIR}/{:016}{SEGMENT_FILE_SUFFIX}", seg.id);
        let stored_in = match plan.parent_files.get(&name) {
            Some((size, holder)) if *size == seg.size_bytes => holder.clone(),
            _ => {
                let from = shard.segment_path(seg.id);
                let to = plan.dir.join(&name);
                // A metadata-only syscall: cheap enough to run on the shard.
                std::fs::hard_link(&from, &to)
                    .map_err(|e| cp_err(&plan, &from, format!("hard link: {e}")))?;
                plan.checkpoint_id.clone()
            }
        };
        files.push(CheckpointFile {
            name,
            size_bytes: seg.size_bytes,
            stored_in,
        });
        glommio::yield_if_needed().await;
    }
    let manifest_path = plan.dir.join(CHECKPOINT_MANIFEST_NAME);
    let record = crate::manifest::encode_record(1, &state);
    write_synced(&manifest_path, &record).map_err(|e| cp_err(&plan, &manifest_path, e))?;
    for dir in [&seg_dir, &plan.dir] {
        sync_dir(dir).map_err(|e| cp_err(&plan, dir, e))?;
    }
    Ok(ShardCut {
        shard: shard.id,
        flushed_lsn: state.flushed_lsn,
        durable_lsn: shard.wal.last_durable_lsn(),
        next_segment_id: state.next_segment_id,
        manifest: CHECKPOINT_MANIFEST_NAME.into(),
        files,
    })
}

pub(crate) fn write_synced(path: &Path, data: &[u8]) -> std::result::Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| format!("create: {e}"))?;
    f.write_all(data).map_err(|e| format!("write: {e}"))?;
    f.sync_all().map_err(|e| format!("fsync: {e}"))
}

pub(crate) fn sync_dir(dir: &Path) -> std::result::Result<(), String> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("sync directory: {e}"))
}

/// Longest wait for decided writes to reach the memtable before a cut gives up.
const DECIDED_SETTLE_MS_MAX: u64 = 10_000;

/// Waits until no decided two-phase-commit write is held only in the decided overlay.
///
/// A multi-shard batch is acknowledged once its Decision is durable; each participant's writes
/// wait in the overlay until its Commit record (deferred up to a few ms) is applied to the
/// memtable. The flush below copies only memtables, so without this wait a checkpoint missed
/// writes acknowledged before the cut (found by `tests/checkpoint_2pc.rs` when the early answer
/// met the global cut). The barrier's gates are closed, so no new decisions arrive meanwhile.
async fn settle_decided(shard: &Rc<Shard>, plan: &ShardPlan) -> Result<()> {
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(DECIDED_SETTLE_MS_MAX);
    while !shard.tpc.decided.is_empty() {
        let now = std::time::Instant::now();
        if now >= deadline {
            return Err(cp_err(
                plan,
                &plan.dir,
                format!(
                    "{} decided writes did not reach the memtable within {DECIDED_SETTLE_MS_MAX} ms",
                    shard.tpc.decided.len()
                ),
            ));
        }
        let changed = shard.changed.wait();
        let timer = glommio::timer::sleep(deadline - now);
        futures::pin_mut!(changed, timer);
        futures::future::select(changed, timer).await;
    }
    Ok(())
}
