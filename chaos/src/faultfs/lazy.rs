//! The unsynced writes of one file (the LazyFS idea): the backing file holds what is durable,
//! the writes and size changes since the last fsync live here in memory, in order. Reads see
//! the backing bytes with the pending operations replayed over them; an fsync applies them to
//! the backing file and syncs it; a power cut applies none, or (torn) a random subset of them,
//! sector by sector, as a disk with a volatile write cache may have persisted them in any order.

use std::fs::File;
use std::os::unix::fs::FileExt;

use rand::Rng;

/// What a power cut may persist of a write: whole aligned sectors of this size (the atomic
/// write unit of the disks this models; 4 KiB is also mantisd's block size).
pub const TEAR_SECTOR_BYTES: u64 = 4096;
/// Unsynced bytes kept per file; past it the oldest are written back (a cache writes back on
/// its own too), so memory stays bounded whatever the daemon does.
pub const PENDING_BYTES_PER_FILE_MAX: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

/// How a power cut treats the unsynced operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutMode {
    /// Nothing unsynced survives.
    Drop,
    /// Each unsynced operation survives whole, not at all, or (writes) in a random subset of
    /// its sectors.
    Tear,
}

/// What a power cut did to one file.
#[derive(Debug, Default, Clone, Copy)]
pub struct CutStats {
    pub ops_dropped: u64,
    pub ops_kept: u64,
    pub ops_torn: u64,
    pub bytes_dropped: u64,
}

#[derive(Debug, Default)]
pub struct LazyFile {
    /// Length of the backing file (only this module changes it).
    durable_len: u64,
    /// Length as the daemon sees it.
    len: u64,
    ops: Vec<Op>,
    pending_bytes: u64,
}

impl LazyFile {
    pub fn new(durable_len: u64) -> LazyFile {
        LazyFile {
            durable_len,
            len: durable_len,
            ..LazyFile::default()
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    pub fn has_pending(&self) -> bool {
        !self.ops.is_empty()
    }

    /// Records a write; writes back everything first when the pending budget would overflow.
    pub fn write(&mut self, backing: &File, offset: u64, data: &[u8]) -> std::io::Result<()> {
        if self.pending_bytes + data.len() as u64 > PENDING_BYTES_PER_FILE_MAX {
            self.sync(backing)?;
        }
        self.ops.push(Op::Write {
            offset,
            data: data.to_vec(),
        });
        self.pending_bytes += data.len() as u64;
        self.len = self.len.max(offset + data.len() as u64);
        Ok(())
    }

    pub fn set_len(&mut self, len: u64) {
        self.ops.push(Op::SetLen(len));
        self.len = len;
    }

    /// Reads `[offset, offset + size)` as the daemon sees it (short at the end of the file).
    pub fn read(&self, backing: &File, offset: u64, size: usize) -> std::io::Result<Vec<u8>> {
        let end = self.len.min(offset.saturating_add(size as u64));
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        let from_backing = self.durable_len.min(end).saturating_sub(offset) as usize;
        read_full(backing, &mut buf[..from_backing], offset)?;
        for op in &self.ops {
            match op {
                Op::SetLen(l) => {
                    // Bytes at or past a truncation read as zero until rewritten.
                    let cut = (*l).clamp(offset, end) - offset;
                    buf[cut as usize..].fill(0);
                }
                Op::Write { offset: w, data } => {
                    let lo = (*w).max(offset);
                    let hi = (w + data.len() as u64).min(end);
                    if lo < hi {
                        buf[(lo - offset) as usize..(hi - offset) as usize]
                            .copy_from_slice(&data[(lo - w) as usize..(hi - w) as usize]);
                    }
                }
            }
        }
        Ok(buf)
    }

    /// fsync: everything pending becomes durable.
    pub fn sync(&mut self, backing: &File) -> std::io::Result<()> {
        let ops = std::mem::take(&mut self.ops);
        for op in &ops {
            apply(backing, op)?;
        }
        self.finish(backing)
    }

    /// A failed fsync: the device lost what it had not persisted (with O_DIRECT there is no
    /// page cache holding it either), so the pending operations are gone for good. A later
    /// fsync that succeeds does not bring them back: the "fsyncgate" behaviour a daemon must
    /// not paper over by retrying.
    pub fn lose_pending(&mut self) -> CutStats {
        let stats = CutStats {
            ops_dropped: self.ops.len() as u64,
            bytes_dropped: self.pending_bytes,
            ..CutStats::default()
        };
        self.ops.clear();
        self.pending_bytes = 0;
        self.len = self.durable_len;
        stats
    }

    /// A power cut: persists nothing (Drop) or a random subset (Tear), then forgets the rest.
    pub fn power_cut(
        &mut self,
        backing: &File,
        mode: CutMode,
        rng: &mut impl Rng,
    ) -> std::io::Result<CutStats> {
        let mut stats = CutStats::default();
        let ops = std::mem::take(&mut self.ops);
        for op in ops {
            let roll = if mode == CutMode::Drop {
                0
            } else {
                rng.gen_range(0..3u8)
            };
            match (roll, op) {
                (0, op) => {
                    stats.ops_dropped += 1;
                    if let Op::Write { data, .. } = &op {
                        stats.bytes_dropped += data.len() as u64;
                    }
                }
                (1, op) => {
                    stats.ops_kept += 1;
                    apply(backing, &op)?;
                }
                (_, Op::SetLen(l)) => {
                    stats.ops_kept += 1;
                    apply(backing, &Op::SetLen(l))?;
                }
                (_, Op::Write { offset, data }) => {
                    stats.ops_torn += 1;
                    stats.bytes_dropped += tear(backing, offset, &data, rng)?;
                }
            }
        }
        self.finish(backing)?;
        Ok(stats)
    }

    fn finish(&mut self, backing: &File) -> std::io::Result<()> {
        backing.sync_data()?;
        self.pending_bytes = 0;
        self.durable_len = backing.metadata()?.len();
        self.len = self.durable_len;
        Ok(())
    }
}

fn apply(backing: &File, op: &Op) -> std::io::Result<()> {
    match op {
        Op::Write { offset, data } => backing.write_all_at(data, *offset),
        Op::SetLen(l) => backing.set_len(*l),
    }
}

/// Persists a random subset of the sectors a write touched; returns the bytes not persisted.
fn tear(backing: &File, offset: u64, data: &[u8], rng: &mut impl Rng) -> std::io::Result<u64> {
    let end = offset + data.len() as u64;
    let mut lost = 0u64;
    let mut at = offset;
    while at < end {
        let next = ((at / TEAR_SECTOR_BYTES) + 1) * TEAR_SECTOR_BYTES;
        let hi = next.min(end);
        let piece = &data[(at - offset) as usize..(hi - offset) as usize];
        if rng.gen_bool(0.5) {
            backing.write_all_at(piece, at)?;
        } else {
            lost += piece.len() as u64;
        }
        at = hi;
    }
    Ok(lost)
}

fn read_full(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    let mut done = 0usize;
    while done < buf.len() {
        let n = f.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            // The backing file is shorter than recorded: the rest reads as zeros.
            buf[done..].fill(0);
            return Ok(());
        }
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn backing(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, bytes).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        (dir, f)
    }

    #[test]
    fn reads_overlay_pending_writes_and_truncations() {
        let (_d, f) = backing(b"aaaaaaaaaa");
        let mut l = LazyFile::new(10);
        l.write(&f, 8, b"bbbb").unwrap();
        assert_eq!(l.len(), 12);
        assert_eq!(l.read(&f, 0, 100).unwrap(), b"aaaaaaaabbbb");
        l.set_len(4);
        l.write(&f, 6, b"c").unwrap();
        assert_eq!(l.read(&f, 0, 100).unwrap(), b"aaaa\0\0c");
        assert_eq!(l.read(&f, 5, 1).unwrap(), b"\0");
        // Nothing reached the backing file.
        assert_eq!(std::fs::read(_d.path().join("f")).unwrap(), b"aaaaaaaaaa");
        l.sync(&f).unwrap();
        assert_eq!(std::fs::read(_d.path().join("f")).unwrap(), b"aaaa\0\0c");
        assert!(!l.has_pending());
    }

    #[test]
    fn power_cut_drop_keeps_only_synced_bytes() {
        let (d, f) = backing(b"");
        let mut l = LazyFile::new(0);
        l.write(&f, 0, &[1u8; 8192]).unwrap();
        l.sync(&f).unwrap();
        l.write(&f, 8192, &[2u8; 4096]).unwrap();
        l.write(&f, 0, &[3u8; 10]).unwrap();
        let s = l
            .power_cut(&f, CutMode::Drop, &mut SmallRng::seed_from_u64(1))
            .unwrap();
        assert_eq!(s.ops_dropped, 2);
        assert_eq!(std::fs::read(d.path().join("f")).unwrap(), vec![1u8; 8192]);
        assert_eq!(l.len(), 8192);
    }

    #[test]
    fn torn_power_cut_persists_whole_sectors_only() {
        for seed in 0..20 {
            let (d, f) = backing(&[0u8; 16384]);
            let mut l = LazyFile::new(16384);
            l.write(&f, 0, &[7u8; 16384]).unwrap();
            l.power_cut(&f, CutMode::Tear, &mut SmallRng::seed_from_u64(seed))
                .unwrap();
            let bytes = std::fs::read(d.path().join("f")).unwrap();
            for sector in bytes.chunks(TEAR_SECTOR_BYTES as usize) {
                assert!(
                    sector.iter().all(|b| *b == 7) || sector.iter().all(|b| *b == 0),
                    "seed {seed}: a sector is mixed"
                );
            }
        }
    }

    #[test]
    fn failed_sync_loses_pending_for_good() {
        let (d, f) = backing(b"xy");
        let mut l = LazyFile::new(2);
        l.write(&f, 2, b"zz").unwrap();
        let s = l.lose_pending();
        assert_eq!(s.bytes_dropped, 2);
        assert_eq!(l.read(&f, 0, 10).unwrap(), b"xy");
        l.sync(&f).unwrap();
        assert_eq!(std::fs::read(d.path().join("f")).unwrap(), b"xy");
    }
}
