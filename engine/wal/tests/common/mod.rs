//! Helpers shared by the WAL integration tests.
#![allow(clippy::unwrap_used, dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use mantis_storage::{SimStorage, Storage};
use mantis_wal::{RecoveryReport, Wal, WalConfig, WalError, WalRecord};

/// Runs `f` on a fresh glommio executor on this thread.
pub fn run<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    mantis_storage::rt::raise_memlock_limit().unwrap();
    mantis_storage::rt::run_local(f).unwrap()
}

pub fn wal_path() -> PathBuf {
    PathBuf::from("/shard-0/wal")
}

pub fn small_cfg() -> WalConfig {
    WalConfig {
        segment_size_bytes: 64 * 1024,
        pending_bytes_max: 32 * 1024,
        spare_segments_max: 2,
        repair: false,
    }
}

/// Opens the WAL and collects what it replays.
pub async fn open_collect(
    storage: Rc<dyn Storage>,
    dir: &Path,
    cfg: WalConfig,
    replay_from: u64,
) -> Result<(Rc<Wal>, Vec<WalRecord>, RecoveryReport), WalError> {
    let mut out = Vec::new();
    let (wal, report) = Wal::open(storage, dir.to_path_buf(), 0, cfg, replay_from, |r| {
        out.push(r);
        Ok(())
    })
    .await?;
    Ok((wal, out, report))
}

/// A payload whose bytes are derived from (seed, id), so any replayed record can be checked
/// for integrity without remembering it: 8 bytes of id, then the pattern.
pub fn payload(seed: u64, id: u64, len: usize) -> Vec<u8> {
    let len = len.max(8);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&id.to_le_bytes());
    let mut x = seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ len as u64;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

/// Checks a payload made by [`payload`]; returns its id.
pub fn check_payload(seed: u64, p: &[u8]) -> Option<u64> {
    if p.len() < 8 {
        return None;
    }
    let id = u64::from_le_bytes(p[..8].try_into().unwrap());
    (payload(seed, id, p.len()) == p).then_some(id)
}

/// Live segment files (`*.wal`) on a simulated disk.
pub fn sim_segments(sim: &SimStorage) -> Vec<PathBuf> {
    sim.files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect()
}

/// Files of the WAL directory on a simulated disk with the given suffix.
pub fn sim_files_with_suffix(sim: &SimStorage, suffix: &str) -> Vec<PathBuf> {
    sim.files()
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect()
}

/// Polls `cond` (yielding to other tasks) until it holds, failing after a deadline.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        futures_lite::future::yield_now().await;
    }
}
