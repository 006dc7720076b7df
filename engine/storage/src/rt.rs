//! The thin layer between MantisDB and glommio's executors: placement of executors on the CPUs
//! this process may use, and the locked-memory limit io_uring needs. Everything else that
//! starts an executor goes through here, so that a glommio upgrade touches one file.

use std::io;

use glommio::{LocalExecutorBuilder, Placement};

/// io_uring registers a buffer area with the kernel per executor; glommio only warns (and runs
/// slower) when RLIMIT_MEMLOCK is too small for it, so we raise the soft limit to the hard one
/// at start and check the result.
pub fn raise_memlock_limit() -> io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_MEMLOCK).map_err(io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard).map_err(io::Error::from)?;
    }
    Ok(hard)
}

/// Bytes of io_uring-registered memory each executor asks for. Small enough that a few
/// executors (shards, plus tests running side by side) fit in an 8 MiB locked-memory limit.
pub const IO_MEMORY_BYTES: usize = 512 * 1024;

/// The CPUs this process is allowed to run on, in order. `glommio::CpuSet::online()` ignores
/// the affinity mask (systemd CPUAffinity, cgroups, taskset), so we ask the kernel directly.
pub fn allowed_cpus() -> Vec<usize> {
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

/// A builder for the executor of shard `shard`, pinned to the shard's CPU when `pin` is set
/// (shard i runs on the i-th allowed CPU, wrapping around when there are more shards).
pub fn shard_executor_builder(shard: usize, pin: bool) -> LocalExecutorBuilder {
    let cpus = allowed_cpus();
    let placement = if pin && !cpus.is_empty() {
        Placement::Fixed(cpus[shard % cpus.len()])
    } else {
        Placement::Unbound
    };
    LocalExecutorBuilder::new(placement)
        .name(&format!("shard-{shard}"))
        .io_memory(IO_MEMORY_BYTES)
        .ring_depth(256)
        .preempt_timer(std::time::Duration::from_millis(10))
}

/// Runs `f` on a fresh unpinned executor on this thread and returns its result. For tools and
/// tests that need one executor for a moment (recovery checks, offline verification).
pub fn run_local<F, Fut, T>(f: F) -> io::Result<T>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(IO_MEMORY_BYTES)
        .make()
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(ex.run(f()))
}
