//! The FUSE request handlers: a passthrough over the backing directory where file data goes
//! through [`LazyFile`](super::lazy::LazyFile) (unsynced writes stay in memory) and the armed
//! faults fire. Metadata operations (create, mkdir, unlink, rename) reach the backing
//! directory at once: this filesystem models a disk that loses data, not directory entries.

use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    FileAttr, FileType, Filesystem, KernelConfig, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};
use libc::{c_int, EINVAL, EIO, EOPNOTSUPP};

use super::state::{Inner, ROOT_INO};

/// Attributes are never cached by the kernel: sizes change with every write and power cut.
const TTL: Duration = Duration::ZERO;
/// Largest write the kernel may send in one request.
const WRITE_BYTES_MAX: u32 = 1 << 20;

pub struct FaultFs {
    /// The mount generation this session serves; stale once a power cut bumps the shared one.
    pub generation: u64,
    pub inner: Arc<Mutex<Inner>>,
}

fn errno(e: &std::io::Error) -> c_int {
    e.raw_os_error().unwrap_or(EIO)
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    let d = Duration::new(secs.unsigned_abs(), nsecs.clamp(0, 999_999_999) as u32);
    if secs >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

fn attr_of(ino: u64, md: &std::fs::Metadata, size: u64) -> FileAttr {
    let kind = if md.is_dir() {
        FileType::Directory
    } else if md.file_type().is_symlink() {
        FileType::Symlink
    } else {
        FileType::RegularFile
    };
    FileAttr {
        ino,
        size,
        blocks: size.div_ceil(512),
        atime: time(md.atime(), md.atime_nsec()),
        mtime: time(md.mtime(), md.mtime_nsec()),
        ctime: time(md.ctime(), md.ctime_nsec()),
        crtime: time(md.ctime(), md.ctime_nsec()),
        kind,
        perm: (md.mode() & 0o7777) as u16,
        nlink: md.nlink() as u32,
        uid: md.uid(),
        gid: md.gid(),
        rdev: md.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}

impl FaultFs {
    /// The shared state, or None (after counting it) when a power cut ended this mount.
    fn lock(&self) -> Option<MutexGuard<'_, Inner>> {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if g.generation != self.generation {
            g.stats.stale_requests_refused += 1;
            return None;
        }
        Some(g)
    }

    /// Sleeps the armed random delay (outside the lock: other requests wait on the session
    /// thread anyway, as they would behind a stalled disk queue).
    fn delay(&self) {
        let us = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .draw_delay_us();
        if us > 0 {
            std::thread::sleep(Duration::from_micros(us));
        }
    }

    fn attr(g: &mut Inner, ino: u64) -> std::io::Result<FileAttr> {
        let root = g.root.clone();
        let node = g.node(ino)?;
        let md = match &node.file {
            Some(f) => f.metadata()?,
            None => std::fs::symlink_metadata(root.join(&node.rel))?,
        };
        let size = if md.is_file() {
            node.lazy.len()
        } else {
            md.len()
        };
        Ok(attr_of(ino, &md, size))
    }

    fn entry(g: &mut Inner, rel: &Path) -> std::io::Result<FileAttr> {
        let md = std::fs::symlink_metadata(g.full(rel))?;
        let ino = g.ino_of(rel, &md)?;
        Self::attr(g, ino)
    }
}

impl Filesystem for FaultFs {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), c_int> {
        let _ = config.set_max_write(WRITE_BYTES_MAX);
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let Some(mut g) = self.lock() else {
            return reply.error(EIO);
        };
        match g
            .rel_of(parent, name)
            .and_then(|rel| Self::entry(&mut g, &rel))
        {
            Ok(a) => reply.entry(&TTL, &a, 0),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        let Some(mut g) = self.lock() else {
            return reply.error(EIO);
        };
        match Self::attr(&mut g, ino) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let Some(mut g) = self.lock() else {
            return reply.error(EIO);
        };
        let res = (|| {
            if let Some(m) = mode {
                let rel = g.node(ino)?.rel.clone();
                let p = g.full(&rel);
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(m))?;
            }
            if let Some(len) = size {
                g.open_file(ino)?;
                g.node(ino)?.lazy.set_len(len);
            }
            Self::attr(&mut g, ino)
        })();
        match res {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let Some(mut g) = self.lock() else {
            return reply.error(EIO);
        };
        let res = g.rel_of(parent, name).and_then(|rel| {
            std::fs::create_dir(g.full(&rel))?;
            std::fs::set_permissions(g.full(&rel), std::fs::Permissions::from_mode(mode & !umask))?;
            Self::entry(&mut g, &rel)
        });
        match res {
            Ok(a) => reply.entry(&TTL, &a, 0),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let Some(mut g) = self.lock() else {
            return reply.error(EIO);
        };
        let res = g.rel_of(parent, name).and_then(|rel| {
            std::fs::remove_file(g.full(&rel))?;
            g.unlinked(&rel);
            Ok(())
        });
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let Some(mut g) = self.lock() else {
            return reply.error(EIO);
        };
        let res = g.rel_of(parent, name).and_then(|rel| {
            std::fs::remove_dir(g.full(&rel))?;
            g.unlinked(&rel);
            Ok(())
        });
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        if flags != 0 {
            return reply.error(EINVAL);
        }
        let Some(mut g) = self.lock() else {
            return reply.error(EIO);
        };
        let res = (|| {
            let from = g.rel_of(parent, name)?;
            let to = g.rel_of(newparent, newname)?;
            std::fs::rename(g.full(&from), g.full(&to))?;
            g.renamed(&from, &to);
            Ok::<(), std::io::Error>(())
        })();
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        let Some(mut g) = self.lock() else {
            return reply.error(EIO);
        };
        match g.open_file(ino) {
            // Direct I/O for every open: no page cache between the daemon and the model of
            // the disk, so what a read returns is what the disk holds.
            Ok(()) => reply.opened(ino, fuser::consts::FOPEN_DIRECT_IO),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let Some(mut g) = self.lock() else {
            return reply.error(EIO);
        };
        let res = (|| {
            let rel = g.rel_of(parent, name)?;
            let mut o = std::fs::OpenOptions::new();
            o.read(true).write(true).mode(mode & !umask);
            if flags & libc::O_EXCL != 0 {
                o.create_new(true);
            } else {
                o.create(true);
            }
            let f = o.open(g.full(&rel))?;
            let md = f.metadata()?;
            let ino = g.ino_of(&rel, &md)?;
            let node = g.node(ino)?;
            if node.file.is_none() {
                node.file = Some(f);
            }
            Ok::<_, std::io::Error>((ino, Self::attr(&mut g, ino)?))
        })();
        match res {
            Ok((ino, a)) => reply.created(&TTL, &a, 0, ino, fuser::consts::FOPEN_DIRECT_IO),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        self.delay();
        let Some(mut g) = self.lock() else {
            return reply.error(EIO);
        };
        g.stats.reads += 1;
        let res = (|| {
            g.open_file(ino)?;
            let node = g.node(ino)?;
            let f = node
                .file
                .as_ref()
                .ok_or_else(|| std::io::Error::from_raw_os_error(EIO))?;
            node.lazy.read(f, offset.max(0) as u64, size as usize)
        })();
        match res {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        self.delay();
        let Some(mut g) = self.lock() else {
            return reply.error(EIO);
        };
        g.stats.writes += 1;
        let p = g.faults.write_fail_probability;
        if g.fires(ino, p) {
            g.stats.write_failures_injected += 1;
            return reply.error(EIO);
        }
        let res = (|| {
            g.open_file(ino)?;
            let node = g.node(ino)?;
            let f = node
                .file
                .as_ref()
                .ok_or_else(|| std::io::Error::from_raw_os_error(EIO))?;
            node.lazy.write(f, offset.max(0) as u64, data)
        })();
        match res {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lo: u64, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        self.delay();
        let Some(mut g) = self.lock() else {
            return reply.error(EIO);
        };
        g.stats.syncs += 1;
        let p = g.faults.sync_fail_probability;
        if g.fires(ino, p) {
            g.stats.sync_failures_injected += 1;
            let lost = g.node(ino).map(|n| n.lazy.lose_pending().bytes_dropped);
            g.stats.bytes_lost_at_failed_sync += lost.unwrap_or(0);
            return reply.error(EIO);
        }
        let res = (|| {
            let node = g.node(ino)?;
            match &node.file {
                Some(f) => node.lazy.sync(f),
                None => Ok(()),
            }
        })();
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        let Some(mut g) = self.lock() else {
            return reply.error(EIO);
        };
        g.stats.syncs += 1;
        let p = g.faults.sync_fail_probability;
        if g.fires(ino, p) {
            g.stats.sync_failures_injected += 1;
            return reply.error(EIO);
        }
        reply.ok();
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let Some(mut g) = self.lock() else {
            return reply.error(EIO);
        };
        let res = (|| {
            let rel = g.node(ino)?.rel.clone();
            let parent = rel
                .parent()
                .and_then(|p| g.by_path.get(p).copied())
                .unwrap_or(ROOT_INO);
            let mut entries = vec![
                (ino, FileType::Directory, ".".into()),
                (parent, FileType::Directory, "..".into()),
            ];
            let mut names: Vec<_> = std::fs::read_dir(g.full(&rel))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name())
                .collect();
            names.sort();
            for name in names {
                let child = rel.join(&name);
                let Ok(md) = std::fs::symlink_metadata(g.full(&child)) else {
                    continue;
                };
                let kind = if md.is_dir() {
                    FileType::Directory
                } else {
                    FileType::RegularFile
                };
                entries.push((g.ino_of(&child, &md)?, kind, name));
            }
            Ok::<_, std::io::Error>(entries)
        })();
        match res {
            Ok(entries) => {
                for (i, (ino, kind, name)) in
                    entries.iter().enumerate().skip(offset.max(0) as usize)
                {
                    if reply.add(*ino, (i + 1) as i64, *kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let root = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .root
            .clone();
        match nix::sys::statvfs::statvfs(&root) {
            #[allow(clippy::unnecessary_cast)]
            Ok(s) => reply.statfs(
                s.blocks() as u64,
                s.blocks_free() as u64,
                s.blocks_available() as u64,
                s.files() as u64,
                s.files_free() as u64,
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(e as i32),
        }
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        use nix::fcntl::FallocateFlags;
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            return reply.error(EOPNOTSUPP);
        }
        let Some(mut g) = self.lock() else {
            return reply.error(EIO);
        };
        let res = (|| {
            g.open_file(ino)?;
            let node = g.node(ino)?;
            let f = node
                .file
                .as_ref()
                .ok_or_else(|| std::io::Error::from_raw_os_error(EIO))?;
            // Space is reserved in the backing file at once (keeping its size); a size change
            // is a pending operation like a write.
            nix::fcntl::fallocate(
                f.as_raw_fd(),
                FallocateFlags::FALLOC_FL_KEEP_SIZE,
                offset,
                length,
            )
            .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            let end = (offset + length).max(0) as u64;
            if mode & libc::FALLOC_FL_KEEP_SIZE == 0 && end > node.lazy.len() {
                node.lazy.set_len(end);
            }
            Ok::<(), std::io::Error>(())
        })();
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_before_the_epoch_do_not_panic() {
        assert!(time(-1, 5) < UNIX_EPOCH);
        assert_eq!(time(0, 0), UNIX_EPOCH);
    }

    #[test]
    fn errno_defaults_to_eio() {
        assert_eq!(errno(&std::io::Error::other("x")), EIO);
        assert_eq!(
            errno(&std::io::Error::from_raw_os_error(libc::ENOENT)),
            libc::ENOENT
        );
    }
}
