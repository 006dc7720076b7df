//! [`SimStorage`]: a seeded, fault-injecting disk in memory.
//!
//! It models what a real disk under Linux does to a database:
//! - writes land in a volatile view; only `sync` makes a file's dirty blocks durable;
//! - at a simulated power cut ([`SimStorage::crash`]) every unsynced 4 KiB block of every file is
//!   independently kept, lost, or torn (a prefix of its 512-byte sectors kept) — in any order, as
//!   io_uring completes writes out of order;
//! - a failed fsync (injected) marks the dirty blocks clean without persisting them, so reads
//!   still see the data but a later crash loses it (the fsyncgate behaviour);
//! - a capacity limit makes writes that need new space fail with ENOSPC, whole; writes into
//!   space reserved by `allocate` still succeed;
//! - bits can be flipped in durable data to test checksums.
//!
//! Directory operations (create, rename, remove) are durable at once: a simplification the
//! engine does not rely on in the other direction (it always syncs the directory anyway).
//! Every decision comes from one seeded RNG, so a failing run is replayed from its seed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::{
    check_write_alignment, File, IoFuture, OpenMode, Result, Storage, StorageError, BLOCK_SIZE,
};

const SECTOR_SIZE: usize = 512;

/// Faults to inject. Probabilities are per operation, drawn from the seeded RNG.
#[derive(Debug, Clone, Default)]
pub struct SimFaults {
    /// Total bytes the disk holds (allocated file space); `None` is unlimited.
    pub capacity_bytes: Option<u64>,
    /// Probability that an fdatasync fails (and loses the dirty blocks it covered).
    pub sync_failure_probability: f64,
    /// Fail every sync whose path contains this string, or one of its `|`-separated
    /// alternatives (deterministic fsync failure).
    pub fail_sync_path_contains: Option<String>,
    /// Probability that a read fails with EIO.
    pub read_failure_probability: f64,
    /// Issue 9: a failed sync (either fault above) still made its blocks durable. WHY: an
    /// EIO from fdatasync does not say the data is absent; code that treats a failed sync as
    /// "not written" must be caught (e.g. two-phase commit's Prepare under parallel commit).
    pub failed_sync_persists: bool,
}

#[derive(Debug, Default, Clone)]
struct SimFile {
    /// What a reader sees now.
    data: Vec<u8>,
    /// What survives a power cut.
    durable: Vec<u8>,
    /// Blocks written since the last sync.
    dirty: BTreeSet<u64>,
    /// Bytes reserved by `allocate` (counts against capacity even before it is written).
    allocated: u64,
}

impl SimFile {
    fn footprint(&self) -> u64 {
        (self.data.len() as u64).max(self.allocated)
    }
}

#[derive(Debug)]
struct SimDisk {
    files: BTreeMap<PathBuf, SimFile>,
    dirs: BTreeSet<PathBuf>,
    rng: SmallRng,
    faults: SimFaults,
    syncs: u64,
    failed_syncs: u64,
}

impl SimDisk {
    fn used_bytes(&self) -> u64 {
        self.files.values().map(SimFile::footprint).sum()
    }

    fn file_mut(&mut self, path: &Path) -> Result<&mut SimFile> {
        self.files
            .get_mut(path)
            .ok_or_else(|| StorageError::NotFound {
                path: path.to_path_buf(),
            })
    }
}

/// The simulated disk. Cheap to clone; clones share the disk (also across threads, so that an
/// engine can be "restarted" on the same disk after a simulated crash).
#[derive(Debug, Clone)]
pub struct SimStorage {
    disk: Arc<Mutex<SimDisk>>,
}

impl SimStorage {
    pub fn new(seed: u64) -> Self {
        Self::with_faults(seed, SimFaults::default())
    }

    pub fn with_faults(seed: u64, faults: SimFaults) -> Self {
        SimStorage {
            disk: Arc::new(Mutex::new(SimDisk {
                files: BTreeMap::new(),
                dirs: BTreeSet::new(),
                rng: SmallRng::seed_from_u64(seed),
                faults,
                syncs: 0,
                failed_syncs: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SimDisk> {
        // A panic while holding the lock is a test failure already; keep going to report it.
        match self.disk.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn set_faults(&self, faults: SimFaults) {
        self.lock().faults = faults;
    }

    /// A power cut: every unsynced block is kept, lost or torn at random.
    /// Call it while nothing runs on the disk (the engine abandoned), then reopen.
    pub fn crash(&self) {
        let mut disk = self.lock();
        let SimDisk { files, rng, .. } = &mut *disk;
        for file in files.values_mut() {
            let dirty: Vec<u64> = std::mem::take(&mut file.dirty).into_iter().collect();
            for block in dirty {
                let start = block as usize * BLOCK_SIZE;
                let end = (start + BLOCK_SIZE).min(file.data.len());
                if start >= end {
                    continue;
                }
                let keep_bytes = match rng.gen_range(0..3) {
                    0 => 0,
                    1 => end - start,
                    _ => {
                        (rng.gen_range(0..=BLOCK_SIZE / SECTOR_SIZE) * SECTOR_SIZE).min(end - start)
                    }
                };
                if keep_bytes == 0 {
                    continue;
                }
                if file.durable.len() < start + keep_bytes {
                    file.durable.resize(start + keep_bytes, 0);
                }
                file.durable[start..start + keep_bytes]
                    .copy_from_slice(&file.data[start..start + keep_bytes]);
            }
            file.data = file.durable.clone();
        }
    }

    /// Flips one bit of a file, in what readers see and in what is durable.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> Result<()> {
        let mut disk = self.lock();
        let file = disk.file_mut(path)?;
        let off = offset as usize;
        if off >= file.data.len() {
            return Err(StorageError::ShortRead {
                path: path.to_path_buf(),
                offset,
                wanted: 1,
                got: 0,
            });
        }
        file.data[off] ^= 1 << (bit % 8);
        if off < file.durable.len() {
            file.durable[off] ^= 1 << (bit % 8);
        }
        Ok(())
    }

    /// Cuts a file (volatile and durable) to `len` bytes, as a torn tail would.
    pub fn truncate_file(&self, path: &Path, len: u64) -> Result<()> {
        let mut disk = self.lock();
        let file = disk.file_mut(path)?;
        file.data.truncate(len as usize);
        file.durable.truncate(len as usize);
        Ok(())
    }

    /// The paths of all files, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        self.lock().files.keys().cloned().collect()
    }

    /// A file's current (volatile) contents.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        self.lock().files.get(path).map(|f| f.data.clone())
    }

    pub fn used_bytes(&self) -> u64 {
        self.lock().used_bytes()
    }

    /// (syncs attempted, syncs failed).
    pub fn sync_counts(&self) -> (u64, u64) {
        let d = self.lock();
        (d.syncs, d.failed_syncs)
    }

    /// A handle usable as a shard's [`Storage`].
    pub fn handle(&self) -> Rc<dyn Storage> {
        Rc::new(self.clone())
    }
}

struct SimFileHandle {
    disk: SimStorage,
    path: PathBuf,
}

fn ready<'a, T: 'a>(r: Result<T>) -> IoFuture<'a, T> {
    Box::pin(async move {
        // Yield so that concurrent tasks interleave as they would around real I/O.
        futures_lite::future::yield_now().await;
        r
    })
}

impl Storage for SimStorage {
    fn open<'a>(&'a self, path: &'a Path, mode: OpenMode) -> IoFuture<'a, Rc<dyn File>> {
        let mut disk = self.lock();
        let exists = disk.files.contains_key(path);
        let r = match (mode, exists) {
            (OpenMode::Read | OpenMode::ReadWrite, false) => Err(StorageError::NotFound {
                path: path.to_path_buf(),
            }),
            (OpenMode::CreateNew, true) => Err(StorageError::Io {
                op: "create",
                path: path.to_path_buf(),
                offset: 0,
                source: std::io::Error::from_raw_os_error(libc::EEXIST),
            }),
            (OpenMode::Create | OpenMode::CreateNew, false) => {
                disk.files.insert(path.to_path_buf(), SimFile::default());
                Ok(())
            }
            _ => Ok(()),
        };
        drop(disk);
        ready(r.map(|()| {
            Rc::new(SimFileHandle {
                disk: self.clone(),
                path: path.to_path_buf(),
            }) as Rc<dyn File>
        }))
    }

    fn remove<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        let r = match self.lock().files.remove(path) {
            Some(_) => Ok(()),
            None => Err(StorageError::NotFound {
                path: path.to_path_buf(),
            }),
        };
        ready(r)
    }

    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> IoFuture<'a, ()> {
        let mut disk = self.lock();
        let r = match disk.files.remove(from) {
            Some(f) => {
                disk.files.insert(to.to_path_buf(), f);
                Ok(())
            }
            None => Err(StorageError::NotFound {
                path: from.to_path_buf(),
            }),
        };
        ready(r)
    }

    fn list<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, Vec<String>> {
        let disk = self.lock();
        let mut names: Vec<String> = disk
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect();
        names.sort();
        ready(Ok(names))
    }

    fn create_dir_all<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()> {
        self.lock().dirs.insert(dir.to_path_buf());
        ready(Ok(()))
    }

    fn sync_dir<'a>(&'a self, _dir: &'a Path) -> IoFuture<'a, ()> {
        ready(Ok(()))
    }

    fn exists<'a>(&'a self, path: &'a Path) -> IoFuture<'a, bool> {
        let disk = self.lock();
        let e = disk.files.contains_key(path) || disk.dirs.contains(path);
        ready(Ok(e))
    }

    fn free_bytes<'a>(&'a self, _dir: &'a Path) -> IoFuture<'a, u64> {
        let disk = self.lock();
        let free = match disk.faults.capacity_bytes {
            Some(cap) => cap.saturating_sub(disk.used_bytes()),
            None => u64::MAX / 2,
        };
        ready(Ok(free))
    }
}

impl SimFileHandle {
    fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        check_write_alignment(&self.path, offset, data.len())?;
        let mut disk = self.disk.lock();
        let cap = disk.faults.capacity_bytes;
        let used = disk.used_bytes();
        let file = disk.file_mut(&self.path)?;
        let end = offset as usize + data.len();
        let growth = (end as u64).saturating_sub(file.footprint());
        if let Some(cap) = cap {
            if growth > 0 && used + growth > cap {
                return Err(StorageError::DiskFull {
                    op: "write",
                    path: self.path.clone(),
                    offset,
                });
            }
        }
        if file.data.len() < end {
            file.data.resize(end, 0);
        }
        file.data[offset as usize..end].copy_from_slice(data);
        let first = offset / BLOCK_SIZE as u64;
        let last = (end as u64 - 1) / BLOCK_SIZE as u64;
        file.dirty.extend(first..=last);
        Ok(())
    }

    fn fdatasync(&self) -> Result<()> {
        let mut disk = self.disk.lock();
        disk.syncs += 1;
        let p = disk.faults.sync_failure_probability;
        let mut fail = p > 0.0 && disk.rng.gen_bool(p.min(1.0));
        if let Some(pat) = &disk.faults.fail_sync_path_contains {
            let path = self.path.to_string_lossy();
            if pat.split('|').any(|alt| path.contains(alt)) {
                fail = true;
            }
        }
        if fail {
            disk.failed_syncs += 1;
        }
        let persists = disk.faults.failed_sync_persists;
        let file = disk.file_mut(&self.path)?;
        let dirty = std::mem::take(&mut file.dirty);
        if fail && persists {
            if file.durable.len() != file.data.len() {
                file.durable.resize(file.data.len(), 0);
            }
            for &block in &dirty {
                let start = block as usize * BLOCK_SIZE;
                let end = (start + BLOCK_SIZE).min(file.data.len());
                if start < end {
                    file.durable[start..end].copy_from_slice(&file.data[start..end]);
                }
            }
        }
        if fail {
            // fsyncgate: the kernel drops the dirty state; the data never reaches the disk
            // (unless `failed_sync_persists`: it did, and the error says nothing of it).
            return Err(StorageError::SyncFailed {
                path: self.path.clone(),
                source: std::io::Error::from_raw_os_error(libc::EIO),
            });
        }
        if file.durable.len() != file.data.len() {
            file.durable.resize(file.data.len(), 0);
        }
        for block in dirty {
            let start = block as usize * BLOCK_SIZE;
            let end = (start + BLOCK_SIZE).min(file.data.len());
            if start < end {
                file.durable[start..end].copy_from_slice(&file.data[start..end]);
            }
        }
        Ok(())
    }

    fn read(&self, offset: u64, len: usize, exact: bool) -> Result<Vec<u8>> {
        let mut disk = self.disk.lock();
        let p = disk.faults.read_failure_probability;
        if p > 0.0 && disk.rng.gen_bool(p.min(1.0)) {
            return Err(StorageError::Io {
                op: "read",
                path: self.path.clone(),
                offset,
                source: std::io::Error::from_raw_os_error(libc::EIO),
            });
        }
        let file = disk.file_mut(&self.path)?;
        let start = (offset as usize).min(file.data.len());
        let end = (offset as usize).saturating_add(len).min(file.data.len());
        let out = file.data[start..end].to_vec();
        if exact && out.len() != len {
            return Err(StorageError::ShortRead {
                path: self.path.clone(),
                offset,
                wanted: len,
                got: out.len(),
            });
        }
        Ok(out)
    }
}

impl File for SimFileHandle {
    fn path(&self) -> &Path {
        &self.path
    }

    fn read_at(&self, offset: u64, len: usize) -> IoFuture<'_, Vec<u8>> {
        ready(self.read(offset, len, true))
    }

    fn read_up_to(&self, offset: u64, len: usize) -> IoFuture<'_, Vec<u8>> {
        ready(self.read(offset, len, false))
    }

    fn write_at<'a>(&'a self, offset: u64, data: &'a [u8]) -> IoFuture<'a, ()> {
        ready(self.write(offset, data))
    }

    fn sync(&self) -> IoFuture<'_, ()> {
        ready(self.fdatasync())
    }

    fn allocate(&self, offset: u64, len: u64) -> IoFuture<'_, ()> {
        let mut disk = self.disk.lock();
        let cap = disk.faults.capacity_bytes;
        let used = disk.used_bytes();
        let r = disk.file_mut(&self.path).and_then(|file| {
            let want = offset + len;
            let growth = want.saturating_sub(file.footprint());
            if let Some(cap) = cap {
                if growth > 0 && used + growth > cap {
                    return Err(StorageError::DiskFull {
                        op: "fallocate",
                        path: self.path.clone(),
                        offset,
                    });
                }
            }
            file.allocated = file.allocated.max(want);
            Ok(())
        });
        drop(disk);
        ready(r)
    }

    fn size(&self) -> IoFuture<'_, u64> {
        let r = self
            .disk
            .lock()
            .file_mut(&self.path)
            .map(|f| f.data.len() as u64);
        ready(r)
    }

    fn truncate(&self, len: u64) -> IoFuture<'_, ()> {
        let r = self.disk.lock().file_mut(&self.path).map(|f| {
            f.data.resize(len as usize, 0);
            f.allocated = f.allocated.min(len.max(f.data.len() as u64));
            // The new length reaches the disk with the next sync, like the data.
            let first = len / BLOCK_SIZE as u64;
            f.dirty.insert(first);
        });
        ready(r)
    }

    fn close(self: Rc<Self>) -> IoFuture<'static, ()> {
        ready(Ok(()))
    }
}
