//! Raw disk figures with glommio `DmaFile` directly, no engine in between: the yardstick every
//! engine figure is compared with, measured in the same run because this disk's latency moves
//! by a factor of four between runs.
//!
//! - write: a 4 KiB O_DIRECT write followed by fdatasync, queue depth 1, sequentially through a
//!   preallocated and zero-filled file (what the WAL does: no extent conversion, no size change,
//!   so fdatasync has no metadata to commit).
//! - read: a 4 KiB O_DIRECT read at a random block of a large file, queue depth 1.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use glommio::io::{DmaFile, OpenOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tracing::info;

use crate::error::{disk_err, BenchError};
use crate::hist::{LatencyHist, LatencySummary};

/// The I/O unit of every figure: one WAL block, one segment block.
pub const IO_BYTES: usize = mantis_storage::BLOCK_SIZE;
/// Chunk used to fill the files: large enough to be fast, small enough for the DMA pool.
const FILL_CHUNK_BYTES: usize = 1 << 20;
/// Operations run and discarded before measuring, so that first-touch costs are not counted.
pub const WARMUP_OPS: usize = 50;

#[derive(Debug, Clone)]
pub struct DiskConfig {
    pub dir: PathBuf,
    pub write_ops: usize,
    pub read_ops: usize,
    /// Size of the preallocated, zero-filled file the writes cycle through.
    pub write_file_bytes: u64,
    /// Size of the file the random reads land in.
    pub read_file_bytes: u64,
    pub seed: u64,
}

impl DiskConfig {
    pub fn new(dir: PathBuf, short: bool) -> Self {
        DiskConfig {
            dir,
            write_ops: if short { 1_000 } else { 5_000 },
            read_ops: if short { 5_000 } else { 20_000 },
            write_file_bytes: 64 << 20,
            read_file_bytes: if short { 256 << 20 } else { 1 << 30 },
            seed: 0x6d61_6e74_6973,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskFigures {
    /// One 4 KiB write plus its fdatasync, end to end: the figure puts are compared with.
    pub write_fdatasync: LatencySummary,
    /// The write part alone.
    pub write_only: LatencySummary,
    /// The fdatasync part alone.
    pub fdatasync_only: LatencySummary,
    pub write_fdatasync_ops_per_sec: f64,
    pub random_read: LatencySummary,
    pub random_read_ops_per_sec: f64,
    pub write_file_bytes: u64,
    pub read_file_bytes: u64,
    pub io_bytes: usize,
}

/// Runs both figures on a fresh executor on this thread (blocking) and removes its files.
pub fn run(cfg: &DiskConfig) -> Result<DiskFigures, BenchError> {
    assert!(cfg.write_file_bytes >= IO_BYTES as u64 && cfg.read_file_bytes >= IO_BYTES as u64);
    check_dir(&cfg.dir)?;
    let cfg = cfg.clone();
    mantis_storage::rt::run_local(move || async move { run_on_executor(&cfg).await })
        .map_err(BenchError::Executor)?
}

/// Refuses directories where an O_DIRECT figure would be fiction.
pub fn check_dir(dir: &Path) -> Result<(), BenchError> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::DataDir {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let fs = crate::machine::fs_type(dir);
    if fs == "tmpfs" {
        return Err(BenchError::DataDir {
            path: dir.to_path_buf(),
            reason: "is on tmpfs, where glommio silently turns O_DIRECT off".to_string(),
        });
    }
    Ok(())
}

async fn run_on_executor(cfg: &DiskConfig) -> Result<DiskFigures, BenchError> {
    // Opens a file holding data first, so glommio's per-device poll probe answers truthfully.
    let _probe = mantis_storage::DmaStorage::new(&cfg.dir).await?;
    let write_path = cfg.dir.join("disk-bench-write.dat");
    let read_path = cfg.dir.join("disk-bench-read.dat");

    let file = create_filled(&write_path, cfg.write_file_bytes, 0).await?;
    let write = bench_write_sync(&file, &write_path, cfg).await;
    close_and_remove(file, &write_path).await?;
    let (write, ops_per_sec) = write?;

    let file = create_filled(&read_path, cfg.read_file_bytes, 0xa5).await?;
    let read = bench_random_read(&file, &read_path, cfg).await;
    close_and_remove(file, &read_path).await?;
    let (read, read_ops_per_sec) = read?;

    let _ = std::fs::remove_file(cfg.dir.join(".io-probe"));
    Ok(DiskFigures {
        write_fdatasync: write.total.summary(),
        write_only: write.write.summary(),
        fdatasync_only: write.sync.summary(),
        write_fdatasync_ops_per_sec: ops_per_sec,
        random_read: read.summary(),
        random_read_ops_per_sec: read_ops_per_sec,
        write_file_bytes: cfg.write_file_bytes,
        read_file_bytes: cfg.read_file_bytes,
        io_bytes: IO_BYTES,
    })
}

/// Creates `path` (replacing it), preallocates `size_bytes` and writes every block, then syncs:
/// afterwards no write into it allocates or converts an extent.
pub async fn create_filled(path: &Path, size_bytes: u64, byte: u8) -> Result<DmaFile, BenchError> {
    let _ = std::fs::remove_file(path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .dma_open(path)
        .await
        .map_err(disk_err("open", path, 0))?;
    file.pre_allocate(size_bytes, false)
        .await
        .map_err(disk_err("fallocate", path, 0))?;
    let started = Instant::now();
    let mut offset = 0u64;
    while offset < size_bytes {
        let len = (size_bytes - offset).min(FILL_CHUNK_BYTES as u64) as usize;
        let len = mantis_storage::align_up(len);
        let mut buf = file.alloc_dma_buffer(len);
        buf.as_bytes_mut().fill(byte);
        // Distinct first bytes per block keep a deduplicating virtual disk honest.
        for (i, block) in buf.as_bytes_mut().chunks_mut(IO_BYTES).enumerate() {
            block[..8].copy_from_slice(&(offset / IO_BYTES as u64 + i as u64).to_le_bytes());
        }
        let written =
            file.write_at(buf, offset)
                .await
                .map_err(disk_err("fill write", path, offset))?;
        assert_eq!(written, len, "short O_DIRECT fill write at {offset}");
        offset += len as u64;
        glommio::yield_if_needed().await;
    }
    file.fdatasync()
        .await
        .map_err(disk_err("fill fdatasync", path, 0))?;
    info!(
        path = %path.display(),
        size_bytes,
        fill_ms = started.elapsed().as_millis() as u64,
        "bench file filled"
    );
    Ok(file)
}

pub async fn close_and_remove(file: DmaFile, path: &Path) -> Result<(), BenchError> {
    file.close().await.map_err(disk_err("close", path, 0))?;
    std::fs::remove_file(path)
        .map_err(|e| BenchError::Disk(mantis_storage::StorageError::from_io("remove", path, 0, e)))
}

/// The two timed halves of one raw write: the write, then its fdatasync.
pub struct WriteSyncTiming {
    pub write: Duration,
    pub sync: Duration,
}

/// One 4 KiB O_DIRECT write of block `block` followed by fdatasync, timed.
pub async fn write_sync_once(
    file: &DmaFile,
    path: &Path,
    block: u64,
    fill: u8,
) -> Result<WriteSyncTiming, BenchError> {
    let offset = block * IO_BYTES as u64;
    let mut buf = file.alloc_dma_buffer(IO_BYTES);
    buf.as_bytes_mut().fill(fill);
    let t0 = Instant::now();
    let written = file
        .write_at(buf, offset)
        .await
        .map_err(disk_err("write", path, offset))?;
    let t1 = Instant::now();
    file.fdatasync()
        .await
        .map_err(disk_err("fdatasync", path, offset))?;
    let t2 = Instant::now();
    assert_eq!(written, IO_BYTES, "short O_DIRECT write at {offset}");
    Ok(WriteSyncTiming {
        write: t1 - t0,
        sync: t2 - t1,
    })
}

/// One 4 KiB O_DIRECT read of block `block` of a file made by [`create_filled`], timed and
/// checked (the fill stamps each block with its number).
pub async fn read_once(file: &DmaFile, path: &Path, block: u64) -> Result<Duration, BenchError> {
    let offset = block * IO_BYTES as u64;
    let t0 = Instant::now();
    let data = file
        .read_at_aligned(offset, IO_BYTES)
        .await
        .map_err(disk_err("read", path, offset))?;
    let elapsed = t0.elapsed();
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&data[..8]);
    assert_eq!(
        u64::from_le_bytes(tag),
        block,
        "read returned the wrong block"
    );
    Ok(elapsed)
}

struct WriteHists {
    total: LatencyHist,
    write: LatencyHist,
    sync: LatencyHist,
}

async fn bench_write_sync(
    file: &DmaFile,
    path: &Path,
    cfg: &DiskConfig,
) -> Result<(WriteHists, f64), BenchError> {
    let blocks = cfg.write_file_bytes / IO_BYTES as u64;
    let mut hists = WriteHists {
        total: LatencyHist::new(),
        write: LatencyHist::new(),
        sync: LatencyHist::new(),
    };
    let mut measured = Duration::ZERO;
    for i in 0..(WARMUP_OPS + cfg.write_ops) {
        let t = write_sync_once(file, path, i as u64 % blocks, i as u8).await?;
        if i >= WARMUP_OPS {
            hists.total.record(t.write + t.sync);
            hists.write.record(t.write);
            hists.sync.record(t.sync);
            measured += t.write + t.sync;
        }
        glommio::yield_if_needed().await;
    }
    let ops_per_sec = cfg.write_ops as f64 / measured.as_secs_f64().max(1e-9);
    Ok((hists, ops_per_sec))
}

async fn bench_random_read(
    file: &DmaFile,
    path: &Path,
    cfg: &DiskConfig,
) -> Result<(LatencyHist, f64), BenchError> {
    let blocks = cfg.read_file_bytes / IO_BYTES as u64;
    let mut rng = SmallRng::seed_from_u64(cfg.seed);
    let mut hist = LatencyHist::new();
    let mut measured = Duration::ZERO;
    for i in 0..(WARMUP_OPS + cfg.read_ops) {
        let elapsed = read_once(file, path, rng.gen_range(0..blocks)).await?;
        if i >= WARMUP_OPS {
            hist.record(elapsed);
            measured += elapsed;
        }
        glommio::yield_if_needed().await;
    }
    let ops_per_sec = cfg.read_ops as f64 / measured.as_secs_f64().max(1e-9);
    Ok((hist, ops_per_sec))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn small_run_on_ext4_gives_plausible_figures() {
        mantis_storage::rt::raise_memlock_limit().unwrap();
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let cfg = DiskConfig {
            dir: dir.path().to_path_buf(),
            write_ops: 20,
            read_ops: 200,
            write_file_bytes: 1 << 20,
            read_file_bytes: 4 << 20,
            seed: 1,
        };
        let f = run(&cfg).unwrap();
        assert_eq!(f.write_fdatasync.count, 20);
        assert_eq!(f.random_read.count, 200);
        assert!(f.write_fdatasync.p50_us >= f.write_only.min_us);
        assert!(f.write_fdatasync.p50_us > 0.0 && f.random_read.p50_us > 0.0);
        // Nothing left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn tmpfs_is_refused() {
        if crate::machine::fs_type(Path::new("/dev/shm")) != "tmpfs" {
            return;
        }
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let err = check_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("tmpfs"), "{err}");
    }
}
