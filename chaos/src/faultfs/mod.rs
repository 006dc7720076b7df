//! Scenario 7's fault injector: a FUSE filesystem over a backing directory (these kernels have
//! no dm-error or dm-flakey) that, on command and from a seed, fails fsync/fdatasync or writes
//! with EIO, delays I/O, and at a simulated power cut drops or tears everything written since
//! each file's last fsync (the LazyFS idea: unsynced writes live in memory and reach the
//! backing file only at fsync).
//!
//! A power cut ends the mount and starts a new one on the same mount point, like a reboot:
//! whatever the killed daemon still had in flight goes to the dead mount and is refused, so
//! nothing it did after the cut can land.

pub mod control;
pub mod fs;
pub mod lazy;
pub mod state;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use fuser::{BackgroundSession, MountOption};

use crate::error::{io_err, ChaosError, Result};
pub use lazy::{CutMode, CutStats};
use state::Inner;
pub use state::{Faults, FsStats};

/// A mounted fault filesystem; unmounted on drop.
pub struct FaultMount {
    pub backing: PathBuf,
    pub mountpoint: PathBuf,
    inner: Arc<Mutex<Inner>>,
    session: Option<BackgroundSession>,
}

impl FaultMount {
    /// Mounts a fault filesystem showing `backing` at `mountpoint` (both must exist; root
    /// needed: the mount is made with mount(2) directly, no fusermount).
    pub fn mount(backing: &Path, mountpoint: &Path, seed: u64) -> Result<FaultMount> {
        let backing = backing.canonicalize().map_err(io_err(backing))?;
        let mountpoint = mountpoint.canonicalize().map_err(io_err(mountpoint))?;
        if mountpoint.starts_with(&backing) {
            return Err(ChaosError::Host {
                what: "faultfs".into(),
                detail: format!(
                    "mount point {} lies inside the backing directory {}",
                    mountpoint.display(),
                    backing.display()
                ),
            });
        }
        let mut m = FaultMount {
            inner: Arc::new(Mutex::new(Inner::new(&backing, seed))),
            backing,
            mountpoint,
            session: None,
        };
        m.start_session()?;
        Ok(m)
    }

    fn start_session(&mut self) -> Result<()> {
        let generation = self.lock().generation;
        let fs = fs::FaultFs {
            generation,
            inner: Arc::clone(&self.inner),
        };
        let opts = [
            MountOption::FSName("mantis-faultfs".into()),
            MountOption::Subtype("faultfs".into()),
            MountOption::RW,
        ];
        let session =
            fuser::spawn_mount2(fs, &self.mountpoint, &opts).map_err(|e| ChaosError::Host {
                what: format!("FUSE mount at {}", self.mountpoint.display()),
                detail: e.to_string(),
            })?;
        self.session = Some(session);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Arms (or, with `Faults::default()`, disarms) the faults.
    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    pub fn stats(&self) -> FsStats {
        self.lock().stats
    }

    /// Unsynced bytes held in memory right now.
    pub fn pending_bytes(&self) -> u64 {
        self.lock().pending_bytes()
    }

    /// The power cut. Call it after the daemon is dead (SIGKILLed and reaped): the current
    /// mount's requests are refused from now on, unsynced data is dropped or torn, faults are
    /// disarmed, and a fresh mount (a new boot) takes the mount point.
    pub fn power_cut(&mut self, mode: CutMode) -> Result<CutStats> {
        let stats = {
            let mut g = self.lock();
            g.faults = Faults::default();
            g.power_cut(mode).map_err(io_err(&self.backing))?
        };
        self.unmount();
        self.start_session()?;
        Ok(stats)
    }
}

impl FaultMount {
    /// Detaches the mount, then ends its session. fuser's own unmount is a plain umount(2),
    /// which fails with EBUSY while the killed daemon's files are still being closed (its
    /// io_uring teardown runs after the process is reaped); the mount would stay, and the next
    /// mount's first request would reach this dead generation and get EIO. A lazy detach
    /// always succeeds; the old connection ends once its last file is closed.
    fn unmount(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH) {
            eprintln!(
                "faultfs: lazy unmount of {} failed: {e}",
                self.mountpoint.display()
            );
        }
        drop(self.session.take());
    }
}

impl Drop for FaultMount {
    fn drop(&mut self) {
        if self.session.is_some() {
            self.unmount();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::FileExt;

    /// Mounts over a temp dir on the real filesystem (FUSE needs /dev/fuse and root).
    fn mounted(seed: u64) -> (tempfile::TempDir, FaultMount) {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let (b, m) = (dir.path().join("backing"), dir.path().join("mnt"));
        std::fs::create_dir_all(&b).unwrap();
        std::fs::create_dir_all(&m).unwrap();
        let fm = FaultMount::mount(&b, &m, seed).unwrap();
        (dir, fm)
    }

    #[test]
    fn unsynced_writes_are_lost_at_a_power_cut_and_synced_ones_kept() {
        let (_d, mut fm) = mounted(1);
        let p = fm.mountpoint.join("sub/f");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        f.write_all_at(&[1u8; 4096], 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(&[2u8; 4096], 4096).unwrap();
        assert_eq!(std::fs::read(&p).unwrap().len(), 8192);
        assert_eq!(fm.pending_bytes(), 4096);
        drop(f);
        let s = fm.power_cut(CutMode::Drop).unwrap();
        assert_eq!(s.ops_dropped, 1);
        assert_eq!(std::fs::read(&p).unwrap(), vec![1u8; 4096]);
        assert_eq!(
            std::fs::read(fm.backing.join("sub/f")).unwrap(),
            vec![1u8; 4096]
        );
    }

    #[test]
    fn armed_sync_failure_returns_eio_and_loses_the_data() {
        let (_d, fm) = mounted(2);
        let p = fm.mountpoint.join("wal.log");
        let f = std::fs::File::create(&p).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        fm.set_faults(Faults {
            sync_fail_probability: 1.0,
            path_filter: "wal".into(),
            ..Faults::default()
        });
        let err = f.sync_data().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        fm.set_faults(Faults::default());
        f.sync_data().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"");
        assert_eq!(fm.stats().sync_failures_injected, 1);
    }

    #[test]
    fn armed_write_failure_returns_eio() {
        let (_d, fm) = mounted(3);
        let p = fm.mountpoint.join("x");
        let f = std::fs::File::create(&p).unwrap();
        fm.set_faults(Faults {
            write_fail_probability: 1.0,
            ..Faults::default()
        });
        let err = f.write_all_at(b"abc", 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        fm.set_faults(Faults::default());
        f.write_all_at(b"abc", 0).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
    }

    #[test]
    fn rename_and_unlink_reach_the_backing_directory() {
        let (_d, fm) = mounted(4);
        std::fs::write(fm.mountpoint.join("a"), b"1").unwrap();
        std::fs::rename(fm.mountpoint.join("a"), fm.mountpoint.join("b")).unwrap();
        assert!(fm.backing.join("b").exists());
        assert!(!fm.backing.join("a").exists());
        let names: Vec<_> = std::fs::read_dir(&fm.mountpoint)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("b")]);
        std::fs::remove_file(fm.mountpoint.join("b")).unwrap();
        assert!(!fm.backing.join("b").exists());
    }
}
