//! CPU priority of the daemon's bulk background threads.
//!
//! A backup's upload thread reads every checkpoint file, compresses it with ZSTD, hashes it
//! (SHA-256 for the manifest, MD5 for each part's Content-MD5) and sends it: seconds of CPU
//! per GiB, on a host whose cores belong to the shards (one pinned executor per core). At the
//! default priority the scheduler shares a core evenly between the upload and the shard
//! pinned there, and every request that shard serves meanwhile waits its turn (issue 10's
//! goal: a backup under load may raise the foreground p99 by at most 10%). So the upload
//! runs at nice 19: the kernel gives a shard that wakes the core at once, and the backup
//! takes what the shards leave. Its reads of checkpoint files go in the idle I/O class for
//! the same reason: the block layer's scheduler (mq-deadline, bfq) dispatches them only when
//! the shards' WAL writes and flushes are not waiting, instead of queueing a commit's
//! fdatasync behind megabytes of readahead. The WAL archiver is not lowered: its lag is the
//! RPO exposure.

/// Niceness of a backup's upload thread (19: the lowest priority an unprivileged thread can
/// choose; SCHED_IDLE would starve the upload entirely on a saturated host).
pub const BACKUP_UPLOAD_NICE: i32 = 19;

/// `IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT` (linux/ioprio.h): the idle I/O class.
const IOPRIO_IDLE: libc::c_long = 3 << 13;
/// `IOPRIO_WHO_PROCESS`: with a thread id, that one thread.
const IOPRIO_WHO_PROCESS: libc::c_long = 1;

/// Sets the calling thread's niceness (Linux applies `setpriority(PRIO_PROCESS, tid)` to the
/// one thread). A failure is logged and otherwise ignored: the work still runs, only at the
/// default priority.
pub fn lower_this_thread(what: &str, nice: i32) {
    assert!((0..=19).contains(&nice), "only lowering is asked for");
    let tid = nix::unistd::gettid().as_raw();
    let Ok(who) = libc::id_t::try_from(tid) else {
        return;
    };
    // SAFETY: setpriority reads its three integer arguments and touches no memory of ours.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, who, nice) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(thread = what, nice, error = %e, "could not lower the thread's priority");
    }
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            libc::c_long::from(tid),
            IOPRIO_IDLE,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(thread = what, error = %e, "could not move the thread to the idle I/O class");
    }
}

/// The calling thread's I/O priority (`ioprio_get`), as the kernel encodes it.
pub fn this_thread_io_priority() -> std::io::Result<libc::c_long> {
    let tid = nix::unistd::gettid().as_raw();
    // SAFETY: ioprio_get takes two integers and touches no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_ioprio_get,
            IOPRIO_WHO_PROCESS,
            libc::c_long::from(tid),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(rc)
}

#[cfg(test)]
mod tests {
    type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

    /// The niceness of the calling thread, from field 19 of `/proc/thread-self/stat`.
    fn own_nice() -> TestResult<i32> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
        // The command name (field 2) may hold spaces: count fields after its ')'.
        let name_end = stat.rfind(')').ok_or("no ')' in stat")?;
        let field = stat[name_end + 2..]
            .split(' ')
            .nth(16)
            .ok_or("short stat")?;
        Ok(field.parse()?)
    }

    #[test]
    fn lowers_only_the_calling_thread() -> TestResult {
        let before = own_nice()?;
        let io_before = super::this_thread_io_priority()?;
        let (nice, io) = std::thread::spawn(|| -> Result<(i32, libc::c_long), String> {
            super::lower_this_thread("test", super::BACKUP_UPLOAD_NICE);
            let nice = own_nice().map_err(|e| e.to_string())?;
            let io = super::this_thread_io_priority().map_err(|e| e.to_string())?;
            Ok((nice, io))
        })
        .join()
        .map_err(|_| "the lowered thread panicked")??;
        assert_eq!(nice, super::BACKUP_UPLOAD_NICE);
        assert_eq!(io, super::IOPRIO_IDLE, "the idle I/O class");
        assert_eq!(
            own_nice()?,
            before,
            "the spawning thread keeps its priority"
        );
        assert_eq!(super::this_thread_io_priority()?, io_before);
        Ok(())
    }
}
