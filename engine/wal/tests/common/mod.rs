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
        checksum: mantis_wal::ChecksumAlgorithm::Crc32,
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

/// The simulated disk behind a switch that stops the machine: once `cut` is called, every
/// storage call made afterwards never completes (as at a real power cut, nothing runs on).
/// Without it, tasks that the executor still polls after the test's `crash()` would keep
/// writing to the "crashed" disk. The simulated disk's operations take effect when called,
/// so the switch is checked at call time.
#[derive(Clone)]
pub struct PowerSwitch {
    pub sim: SimStorage,
    off: Rc<std::cell::Cell<bool>>,
    /// Storage calls left before the power goes off by itself (`None`: no limit).
    budget: Rc<std::cell::Cell<Option<u64>>>,
}

impl PowerSwitch {
    pub fn new(sim: &SimStorage) -> Self {
        PowerSwitch {
            sim: sim.clone(),
            off: Rc::default(),
            budget: Rc::default(),
        }
    }

    /// Cuts the power when the `calls`-th storage call from now is made.
    pub fn cut_after(&self, calls: u64) {
        self.budget.set(Some(calls));
    }

    pub fn is_off(&self) -> bool {
        self.off.get()
    }

    /// True when this call must not happen (the power is off, or goes off now).
    fn gate(&self) -> bool {
        match self.budget.get() {
            Some(0) if !self.off.get() => self.cut(),
            Some(n) if n > 0 => self.budget.set(Some(n - 1)),
            _ => {}
        }
        self.off.get()
    }

    /// Power cut: freezes every later I/O, then loses/tears unsynced blocks.
    pub fn cut(&self) {
        self.off.set(true);
        self.sim.crash();
    }

    pub fn handle(&self) -> Rc<dyn Storage> {
        Rc::new(self.clone())
    }
}

fn frozen<'a, T: 'a>() -> mantis_storage::IoFuture<'a, T> {
    Box::pin(std::future::pending())
}

impl Storage for PowerSwitch {
    fn open<'a>(
        &'a self,
        path: &'a Path,
        mode: mantis_storage::OpenMode,
    ) -> mantis_storage::IoFuture<'a, Rc<dyn mantis_storage::File>> {
        if self.gate() {
            return frozen();
        }
        let inner = self.sim.open(path, mode);
        let switch = self.clone();
        Box::pin(async move {
            let f = inner.await?;
            Ok(Rc::new(SwitchedFile { inner: f, switch }) as Rc<dyn mantis_storage::File>)
        })
    }
    fn remove<'a>(&'a self, path: &'a Path) -> mantis_storage::IoFuture<'a, ()> {
        if self.gate() {
            return frozen();
        }
        self.sim.remove(path)
    }
    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> mantis_storage::IoFuture<'a, ()> {
        if self.gate() {
            return frozen();
        }
        self.sim.rename(from, to)
    }
    fn list<'a>(&'a self, dir: &'a Path) -> mantis_storage::IoFuture<'a, Vec<String>> {
        if self.gate() {
            return frozen();
        }
        self.sim.list(dir)
    }
    fn create_dir_all<'a>(&'a self, dir: &'a Path) -> mantis_storage::IoFuture<'a, ()> {
        if self.gate() {
            return frozen();
        }
        self.sim.create_dir_all(dir)
    }
    fn sync_dir<'a>(&'a self, dir: &'a Path) -> mantis_storage::IoFuture<'a, ()> {
        if self.gate() {
            return frozen();
        }
        self.sim.sync_dir(dir)
    }
    fn exists<'a>(&'a self, path: &'a Path) -> mantis_storage::IoFuture<'a, bool> {
        if self.gate() {
            return frozen();
        }
        self.sim.exists(path)
    }
    fn free_bytes<'a>(&'a self, dir: &'a Path) -> mantis_storage::IoFuture<'a, u64> {
        if self.gate() {
            return frozen();
        }
        self.sim.free_bytes(dir)
    }
}

struct SwitchedFile {
    inner: Rc<dyn mantis_storage::File>,
    switch: PowerSwitch,
}

impl mantis_storage::File for SwitchedFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn read_at(&self, offset: u64, len: usize) -> mantis_storage::IoFuture<'_, Vec<u8>> {
        if self.switch.gate() {
            return frozen();
        }
        self.inner.read_at(offset, len)
    }
    fn read_up_to(&self, offset: u64, len: usize) -> mantis_storage::IoFuture<'_, Vec<u8>> {
        if self.switch.gate() {
            return frozen();
        }
        self.inner.read_up_to(offset, len)
    }
    fn write_at<'a>(&'a self, offset: u64, data: &'a [u8]) -> mantis_storage::IoFuture<'a, ()> {
        if self.switch.gate() {
            return frozen();
        }
        self.inner.write_at(offset, data)
    }
    fn sync(&self) -> mantis_storage::IoFuture<'_, ()> {
        if self.switch.gate() {
            return frozen();
        }
        self.inner.sync()
    }
    fn allocate(&self, offset: u64, len: u64) -> mantis_storage::IoFuture<'_, ()> {
        if self.switch.gate() {
            return frozen();
        }
        self.inner.allocate(offset, len)
    }
    fn size(&self) -> mantis_storage::IoFuture<'_, u64> {
        if self.switch.gate() {
            return frozen();
        }
        self.inner.size()
    }
    fn truncate(&self, len: u64) -> mantis_storage::IoFuture<'_, ()> {
        if self.switch.gate() {
            return frozen();
        }
        self.inner.truncate(len)
    }
    fn close(self: Rc<Self>) -> mantis_storage::IoFuture<'static, ()> {
        if self.switch.gate() {
            return frozen();
        }
        self.inner.clone().close()
    }
}
