//! The narrow storage interface every byte of MantisDB goes through.
//!
//! The engine never touches files directly: it asks a [`Storage`] for [`File`]s and reads,
//! writes, syncs and allocates through them. In production the implementation is
//! [`DmaStorage`] (O_DIRECT files on glommio's io_uring reactor); tests and the chaos harness
//! swap in [`SimStorage`], a seeded in-memory disk that loses unsynced blocks at a simulated
//! power cut, fails fsync the way Linux does, and runs out of space on demand.
//!
//! Writes are in whole [`BLOCK_SIZE`] units at block-aligned offsets (what O_DIRECT needs);
//! reads may be at any offset and length.

pub mod dma;
pub mod error;
pub mod format;
pub mod rt;
pub mod sim;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;

pub use dma::DmaStorage;
pub use error::{Result, StorageError};
pub use sim::{SimFaults, SimStorage};

/// The unit of every write: O_DIRECT needs it, and a torn write can only tear along it.
pub const BLOCK_SIZE: usize = 4096;

/// A future returned by the storage layer. Not `Send`: it runs on the shard's own executor.
pub type IoFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + 'a>>;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write; created empty if missing (an existing file is kept as it is).
    Create,
    /// Read and write; a new empty file, failing if one exists.
    CreateNew,
}

/// A filesystem as the engine sees it.
pub trait Storage {
    fn open<'a>(&'a self, path: &'a Path, mode: OpenMode) -> IoFuture<'a, Rc<dyn File>>;
    fn remove<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> IoFuture<'a, ()>;
    /// The names (not paths) of the files in `dir`, sorted.
    fn list<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, Vec<String>>;
    fn create_dir_all<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()>;
    /// Makes creations, removals and renames in `dir` durable.
    fn sync_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()>;
    fn exists<'a>(&'a self, path: &'a Path) -> IoFuture<'a, bool>;
    /// Bytes free on the filesystem that holds `dir`.
    fn free_bytes<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, u64>;
}

/// An open file.
pub trait File {
    fn path(&self) -> &Path;
    /// Reads exactly `len` bytes at `offset` (any alignment); a short read is an error.
    fn read_at(&self, offset: u64, len: usize) -> IoFuture<'_, Vec<u8>>;
    /// Reads up to `len` bytes at `offset`; fewer at the end of the file.
    fn read_up_to(&self, offset: u64, len: usize) -> IoFuture<'_, Vec<u8>>;
    /// Writes `data` at `offset`; both must be multiples of [`BLOCK_SIZE`].
    fn write_at<'a>(&'a self, offset: u64, data: &'a [u8]) -> IoFuture<'a, ()>;
    /// fdatasync. A failure must never be retried and trusted: see [`StorageError::SyncFailed`].
    fn sync(&self) -> IoFuture<'_, ()>;
    /// Reserves `len` bytes from `offset` (fallocate, keeping the size), so that later writes
    /// into the range cannot fail for lack of space.
    fn allocate(&self, offset: u64, len: u64) -> IoFuture<'_, ()>;
    fn size(&self) -> IoFuture<'_, u64>;
    fn truncate(&self, len: u64) -> IoFuture<'_, ()>;
    fn close(self: Rc<Self>) -> IoFuture<'static, ()>;
}

/// A shared storage handle, one per shard.
pub type StorageRef = Rc<dyn Storage>;

/// Checks the alignment rules of [`File::write_at`] before the kernel (or the simulation) sees it.
pub fn check_write_alignment(path: &Path, offset: u64, len: usize) -> Result<()> {
    if !offset.is_multiple_of(BLOCK_SIZE as u64) || !len.is_multiple_of(BLOCK_SIZE) {
        return Err(StorageError::Misaligned {
            op: "write",
            path: PathBuf::from(path),
            offset,
            len,
            alignment: BLOCK_SIZE,
        });
    }
    Ok(())
}

/// Rounds `n` up to a multiple of [`BLOCK_SIZE`].
pub const fn align_up(n: usize) -> usize {
    n.div_ceil(BLOCK_SIZE) * BLOCK_SIZE
}
