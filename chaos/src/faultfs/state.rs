//! The fault filesystem's state, shared by the FUSE session thread and the harness: the inode
//! table (paths under the backing directory), each file's unsynced writes, the faults armed
//! and the counters. One mutex; every FUSE request takes it once, briefly.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::lazy::{CutMode, CutStats, LazyFile};

pub const ROOT_INO: u64 = 1;
/// Inodes remembered between power cuts (a cut forgets them all: the new mount starts over).
pub const NODES_MAX: usize = 1 << 20;

/// Faults armed by the harness. Probabilities are drawn from the seeded generator, so a run
/// replays from its seed (given the same sequence of requests).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Faults {
    /// Chance that an fsync/fdatasync of a matching file fails with EIO (its unsynced writes
    /// are then lost for good).
    pub sync_fail_probability: f64,
    /// Chance that a write to a matching file fails with EIO (nothing of it is recorded).
    pub write_fail_probability: f64,
    /// Each read, write and sync waits a random 0..=this many µs (a slow or stalling disk).
    pub delay_us_max: u64,
    /// Only paths (relative to the mount) containing this fail; empty: every file.
    pub path_filter: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FsStats {
    pub reads: u64,
    pub writes: u64,
    pub syncs: u64,
    pub write_failures_injected: u64,
    pub sync_failures_injected: u64,
    pub delays_injected: u64,
    /// Bytes the failed syncs threw away.
    pub bytes_lost_at_failed_sync: u64,
    /// Requests of a mount generation that a power cut ended (the dead daemon's last I/O).
    pub stale_requests_refused: u64,
    pub power_cuts: u64,
    pub cut_ops_dropped: u64,
    pub cut_ops_kept: u64,
    pub cut_ops_torn: u64,
    pub cut_bytes_dropped: u64,
}

pub struct Node {
    /// Path relative to the backing root ("" for the root).
    pub rel: PathBuf,
    pub is_dir: bool,
    /// Opened on first use, read-write; kept so an unlinked open file stays readable.
    pub file: Option<File>,
    pub lazy: LazyFile,
}

pub struct Inner {
    /// Bumped by every power cut; requests from an older mount are refused.
    pub generation: u64,
    pub root: PathBuf,
    pub nodes: HashMap<u64, Node>,
    pub by_path: HashMap<PathBuf, u64>,
    next_ino: u64,
    pub faults: Faults,
    pub rng: SmallRng,
    pub stats: FsStats,
}

impl Inner {
    pub fn new(root: &Path, seed: u64) -> Inner {
        let mut s = Inner {
            generation: 0,
            root: root.to_path_buf(),
            nodes: HashMap::new(),
            by_path: HashMap::new(),
            next_ino: ROOT_INO + 1,
            faults: Faults::default(),
            rng: SmallRng::seed_from_u64(seed),
            stats: FsStats::default(),
        };
        s.reset_nodes();
        s
    }

    fn reset_nodes(&mut self) {
        self.nodes.clear();
        self.by_path.clear();
        self.next_ino = ROOT_INO + 1;
        self.nodes.insert(
            ROOT_INO,
            Node {
                rel: PathBuf::new(),
                is_dir: true,
                file: None,
                lazy: LazyFile::default(),
            },
        );
        self.by_path.insert(PathBuf::new(), ROOT_INO);
    }

    pub fn full(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// The inode of `rel`, created from the backing file's metadata on first sight.
    pub fn ino_of(&mut self, rel: &Path, md: &std::fs::Metadata) -> std::io::Result<u64> {
        if let Some(ino) = self.by_path.get(rel) {
            return Ok(*ino);
        }
        if self.nodes.len() >= NODES_MAX {
            return Err(std::io::Error::from_raw_os_error(libc::ENFILE));
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(
            ino,
            Node {
                rel: rel.to_path_buf(),
                is_dir: md.is_dir(),
                file: None,
                lazy: LazyFile::new(if md.is_file() { md.len() } else { 0 }),
            },
        );
        self.by_path.insert(rel.to_path_buf(), ino);
        Ok(ino)
    }

    pub fn node(&mut self, ino: u64) -> std::io::Result<&mut Node> {
        self.nodes
            .get_mut(&ino)
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT))
    }

    /// Opens the backing file of `ino` (read-write) if not open yet.
    pub fn open_file(&mut self, ino: u64) -> std::io::Result<()> {
        let root = self.root.clone();
        let node = self.node(ino)?;
        if node.file.is_none() && !node.is_dir {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(root.join(&node.rel))?;
            node.file = Some(f);
        }
        Ok(())
    }

    pub fn rel_of(&self, parent: u64, name: &std::ffi::OsStr) -> std::io::Result<PathBuf> {
        let p = self
            .nodes
            .get(&parent)
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT))?;
        Ok(p.rel.join(name))
    }

    /// The path is gone from the namespace (unlinked or replaced): forget the mapping, keep
    /// the node (an open handle may still use it).
    pub fn unlinked(&mut self, rel: &Path) {
        if let Some(ino) = self.by_path.remove(rel) {
            if let Some(n) = self.nodes.get_mut(&ino) {
                if n.file.is_none() {
                    self.nodes.remove(&ino);
                }
            }
        }
    }

    /// Moves `from` (and, for a directory, everything under it) to `to`.
    pub fn renamed(&mut self, from: &Path, to: &Path) {
        self.unlinked(to);
        let moved: Vec<(PathBuf, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (old, ino) in moved {
            self.by_path.remove(&old);
            let Ok(rest) = old.strip_prefix(from) else {
                continue;
            };
            let new = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.rel = new.clone();
            }
            self.by_path.insert(new, ino);
        }
    }

    /// Whether an armed fault with probability `p` fires for the file `ino`.
    pub fn fires(&mut self, ino: u64, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let matches = self.faults.path_filter.is_empty()
            || self
                .nodes
                .get(&ino)
                .is_some_and(|n| n.rel.to_string_lossy().contains(&self.faults.path_filter));
        matches && self.rng.gen_bool(p.min(1.0))
    }

    /// A random delay for one I/O request, if delays are armed.
    pub fn draw_delay_us(&mut self) -> u64 {
        if self.faults.delay_us_max == 0 {
            return 0;
        }
        self.stats.delays_injected += 1;
        self.rng.gen_range(0..=self.faults.delay_us_max)
    }

    /// The power cut: requests of the current mount are refused from now on, every file's
    /// unsynced writes are dropped or torn, and the inode table starts over (the next mount
    /// is a new boot).
    pub fn power_cut(&mut self, mode: CutMode) -> std::io::Result<CutStats> {
        self.generation += 1;
        self.stats.power_cuts += 1;
        let mut total = CutStats::default();
        let mut rng = SmallRng::seed_from_u64(self.rng.gen());
        for node in self.nodes.values_mut() {
            let (Some(f), true) = (&node.file, node.lazy.has_pending()) else {
                continue;
            };
            let s = node.lazy.power_cut(f, mode, &mut rng)?;
            total.ops_dropped += s.ops_dropped;
            total.ops_kept += s.ops_kept;
            total.ops_torn += s.ops_torn;
            total.bytes_dropped += s.bytes_dropped;
        }
        self.stats.cut_ops_dropped += total.ops_dropped;
        self.stats.cut_ops_kept += total.ops_kept;
        self.stats.cut_ops_torn += total.ops_torn;
        self.stats.cut_bytes_dropped += total.bytes_dropped;
        self.reset_nodes();
        Ok(total)
    }

    /// Unsynced bytes over all files.
    pub fn pending_bytes(&self) -> u64 {
        self.nodes.values().map(|n| n.lazy.pending_bytes()).sum()
    }
}
