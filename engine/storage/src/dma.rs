//! [`DmaStorage`]: O_DIRECT files on glommio's io_uring reactor, the production implementation.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions};

use crate::{check_write_alignment, File, IoFuture, OpenMode, Result, Storage, StorageError};

/// Unwraps glommio's error into the `io::Error` underneath, keeping the OS error code
/// (glommio's own `From` impl drops it, and we need ENOSPC to stay ENOSPC).
fn io_error(err: glommio::GlommioError<()>) -> std::io::Error {
    match err {
        glommio::GlommioError::IoError(e) => e,
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        other => std::io::Error::other(other.to_string()),
    }
}

fn map_err<'p>(
    op: &'static str,
    path: &'p Path,
    offset: u64,
) -> impl FnOnce(glommio::GlommioError<()>) -> StorageError + 'p {
    move |e| StorageError::from_io(op, path, offset, io_error(e))
}

/// Direct-I/O storage. Must be created and used on a glommio executor thread.
#[derive(Debug, Default)]
pub struct DmaStorage {
    _private: (),
}

impl DmaStorage {
    /// Creates the storage for files under `dir`, which must exist.
    ///
    /// Why the probe file: glommio decides once per thread and device whether the device takes
    /// polled I/O, by reading the first block of the first file it opens. If that file is
    /// empty the probe "succeeds" on a device without poll queues, and every later read fails.
    /// Opening a file that holds a block of data first makes the probe answer truthfully.
    pub async fn new(dir: &Path) -> Result<Self> {
        let probe = dir.join(".io-probe");
        std::fs::write(&probe, [0x5a_u8; crate::BLOCK_SIZE])
            .map_err(|e| StorageError::from_io("write probe", &probe, 0, e))?;
        let file = DmaFile::open(&probe)
            .await
            .map_err(map_err("open probe", &probe, 0))?;
        let _ = file
            .read_at_aligned(0, crate::BLOCK_SIZE)
            .await
            .map_err(map_err("read probe", &probe, 0))?;
        file.close()
            .await
            .map_err(map_err("close probe", &probe, 0))?;
        Ok(DmaStorage { _private: () })
    }
}

struct DmaStorageFile {
    file: DmaFile,
    path: PathBuf,
}

impl Storage for DmaStorage {
    fn open<'a>(&'a self, path: &'a Path, mode: OpenMode) -> IoFuture<'a, Rc<dyn File>> {
        Box::pin(async move {
            let mut opts = OpenOptions::new();
            opts.read(true);
            match mode {
                OpenMode::Read => {}
                OpenMode::ReadWrite => {
                    opts.write(true);
                }
                OpenMode::Create => {
                    opts.write(true).create(true);
                }
                OpenMode::CreateNew => {
                    opts.write(true).create_new(true);
                }
            }
            let file = opts
                .dma_open(path)
                .await
                .map_err(map_err("open", path, 0))?;
            Ok(Rc::new(DmaStorageFile {
                file,
                path: path.to_path_buf(),
            }) as Rc<dyn File>)
        })
    }

    fn remove<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            glommio::io::remove(path)
                .await
                .map_err(map_err("remove", path, 0))
        })
    }

    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            glommio::io::rename(from, to)
                .await
                .map_err(map_err("rename", from, 0))
        })
    }

    fn list<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, Vec<String>> {
        Box::pin(async move {
            // A directory listing is a handful of entries, read at start-up and after
            // compaction: a short blocking call is acceptable here.
            let rd =
                std::fs::read_dir(dir).map_err(|e| StorageError::from_io("list", dir, 0, e))?;
            let mut names = Vec::new();
            for entry in rd {
                let entry = entry.map_err(|e| StorageError::from_io("list", dir, 0, e))?;
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_string());
                }
            }
            names.sort();
            Ok(names)
        })
    }

    fn create_dir_all<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            std::fs::create_dir_all(dir).map_err(|e| StorageError::from_io("create dir", dir, 0, e))
        })
    }

    fn sync_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            let d = glommio::io::Directory::open(dir)
                .await
                .map_err(map_err("open dir", dir, 0))?;
            let res = d.sync().await.map_err(|e| StorageError::SyncFailed {
                path: dir.to_path_buf(),
                source: io_error(e),
            });
            let _ = d.close().await;
            res
        })
    }

    fn exists<'a>(&'a self, path: &'a Path) -> IoFuture<'a, bool> {
        Box::pin(async move {
            match std::fs::metadata(path) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(StorageError::from_io("stat", path, 0, e)),
            }
        })
    }

    fn free_bytes<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, u64> {
        Box::pin(async move {
            let st = nix::sys::statvfs::statvfs(dir).map_err(|e| {
                StorageError::from_io(
                    "statvfs",
                    dir,
                    0,
                    std::io::Error::from_raw_os_error(e as i32),
                )
            })?;
            #[allow(clippy::unnecessary_cast)]
            Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
        })
    }
}

impl File for DmaStorageFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn read_at(&self, offset: u64, len: usize) -> IoFuture<'_, Vec<u8>> {
        Box::pin(async move {
            let data = self.read_up_to(offset, len).await?;
            if data.len() != len {
                return Err(StorageError::ShortRead {
                    path: self.path.clone(),
                    offset,
                    wanted: len,
                    got: data.len(),
                });
            }
            Ok(data)
        })
    }

    fn read_up_to(&self, offset: u64, len: usize) -> IoFuture<'_, Vec<u8>> {
        Box::pin(async move {
            if len == 0 {
                return Ok(Vec::new());
            }
            // Align the request ourselves: glommio's unaligned `read_at` can hand back bytes
            // past the end of the file when the read starts inside the last block.
            let align = self.file.alignment();
            let start = offset - offset % align;
            let skip = (offset - start) as usize;
            let end = (offset + len as u64).div_ceil(align) * align;
            let res = self
                .file
                .read_at_aligned(start, (end - start) as usize)
                .await
                .map_err(map_err("read", &self.path, offset))?;
            let got = res.len();
            if got <= skip {
                return Ok(Vec::new());
            }
            Ok(res[skip..got.min(skip + len)].to_vec())
        })
    }

    fn write_at<'a>(&'a self, offset: u64, data: &'a [u8]) -> IoFuture<'a, ()> {
        Box::pin(async move {
            check_write_alignment(&self.path, offset, data.len())?;
            let mut buf = self.file.alloc_dma_buffer(data.len());
            buf.as_bytes_mut().copy_from_slice(data);
            let written = self
                .file
                .write_at(buf, offset)
                .await
                .map_err(map_err("write", &self.path, offset))?;
            if written != data.len() {
                // O_DIRECT writes of whole blocks are not split by the kernel short of an
                // error; a short count means the tail did not reach the disk.
                return Err(StorageError::Io {
                    op: "write (short)",
                    path: self.path.clone(),
                    offset,
                    source: std::io::Error::other(format!(
                        "wrote {written} of {} bytes",
                        data.len()
                    )),
                });
            }
            Ok(())
        })
    }

    fn sync(&self) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.file
                .fdatasync()
                .await
                .map_err(|e| StorageError::SyncFailed {
                    path: self.path.clone(),
                    source: io_error(e),
                })
        })
    }

    fn allocate(&self, offset: u64, len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.file
                .pre_allocate(offset + len, true)
                .await
                .map_err(map_err("fallocate", &self.path, offset))
        })
    }

    fn size(&self) -> IoFuture<'_, u64> {
        Box::pin(async move {
            self.file
                .file_size()
                .await
                .map_err(map_err("stat", &self.path, 0))
        })
    }

    fn truncate(&self, len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.file
                .truncate(len)
                .await
                .map_err(map_err("truncate", &self.path, len))
        })
    }

    fn close(self: Rc<Self>) -> IoFuture<'static, ()> {
        Box::pin(async move {
            match Rc::try_unwrap(self) {
                Ok(f) => {
                    let path = f.path;
                    f.file
                        .close()
                        .await
                        .map_err(|e| StorageError::from_io("close", path, 0, io_error(e)))
                }
                // Another holder still uses the file; it closes when the last one drops it.
                Err(_) => Ok(()),
            }
        })
    }
}
