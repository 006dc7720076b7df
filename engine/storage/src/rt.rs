//! The thin layer between MantisDB and glommio's executors: placement of executors on the CPUs
//! this process may use, and the locked-memory limit io_uring needs. Everything else that
//! starts an executor goes through here, so that a glommio upgrade touches one file.

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};

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
/// (shard i runs on the i-th allowed CPU, wrapping around when there are more shards), which
/// polls `idle_poll_us` before it parks (0: parks at once; glommio polls pinned executors only).
pub fn shard_executor_builder(shard: usize, pin: bool, idle_poll_us: u64) -> LocalExecutorBuilder {
    let cpus = allowed_cpus();
    let placement = if pin && !cpus.is_empty() {
        Placement::Fixed(cpus[shard % cpus.len()])
    } else {
        Placement::Unbound
    };
    let builder = LocalExecutorBuilder::new(placement)
        .name(&format!("shard-{shard}"))
        .io_memory(IO_MEMORY_BYTES)
        .ring_depth(256)
        .preempt_timer(std::time::Duration::from_millis(10));
    match idle_poll_us {
        0 => builder,
        us => builder.spin_before_park(Duration::from_micros(us)),
    }
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

/// Issue 7: the latency bound of a shard's foreground task queue (requests arriving from other
/// threads and the work they spawn). While that queue has runnable tasks, glommio's preemption
/// timer is this short, so a background task that only calls `yield_if_needed` gives the
/// CPU back within it.
pub const FOREGROUND_LATENCY_BOUND: Duration = Duration::from_millis(1);
/// Glommio's default queue has 1000 shares; the foreground keeps exactly that weight.
pub const FOREGROUND_SHARES: usize = 1000;

/// Runs `f` on the current executor inside a foreground task queue and returns its output.
///
/// Why: glommio processes wake-ups sent from other threads (a flume channel's `send` from a
/// client thread) when it polls for I/O. A task in a `Latency::Matters` queue forces the
/// executor's eventfd write on a foreign wake-up (its read sits in the latency ring), so the
/// next `yield_if_needed` of a running background task sees the preemption request at once;
/// its I/O also goes to the latency ring, ahead of background reads and writes. Measured in
/// docs/benchmarks.md (issue 7; the test `foreground_queue.rs` found the default queue
/// prompt too in isolation, so the benefit is the I/O priority and the tick bound).
pub async fn in_foreground_queue<F>(name: &str, f: F) -> io::Result<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let tq = glommio::executor().create_task_queue(
        Shares::Static(FOREGROUND_SHARES),
        Latency::Matters(FOREGROUND_LATENCY_BOUND),
        name,
    );
    let task = glommio::spawn_local_into(f, tq).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(task.await)
}

/// How long a background task may run between two task-queue yields.
pub const BACKGROUND_STEP_MAX: Duration = Duration::from_micros(250);

/// Paces a long background loop (scrub, recompression, compaction): `step` yields the task
/// queue once `BACKGROUND_STEP_MAX` has passed since the last yield, or at once when glommio
/// wants to preempt. Why not `yield_if_needed` alone: after a preemption the foreground queue
/// re-enters the scheduler with a virtual runtime just above the background queue's, so the
/// background queue is picked again and runs until the next timer tick; yielding the queue
/// after a short step hands the CPU over within `BACKGROUND_STEP_MAX`.
#[derive(Debug)]
pub struct BackgroundPacer {
    step_started: Instant,
    steps_total: u64,
    /// The longest stretch between two yields seen (for the issue-7 measurements).
    step_longest: Duration,
}

impl Default for BackgroundPacer {
    fn default() -> Self {
        Self::new()
    }
}

impl BackgroundPacer {
    pub fn new() -> Self {
        BackgroundPacer {
            step_started: Instant::now(),
            steps_total: 0,
            step_longest: Duration::ZERO,
        }
    }

    /// Called after each unit of background work.
    pub async fn step(&mut self) {
        let ran = self.step_started.elapsed();
        if ran < BACKGROUND_STEP_MAX && !glommio::executor().need_preempt() {
            return;
        }
        self.step_longest = self.step_longest.max(ran);
        self.steps_total += 1;
        glommio::executor().yield_task_queue_now().await;
        self.step_started = Instant::now();
    }

    pub fn step_longest(&self) -> Duration {
        self.step_longest
    }

    pub fn steps_total(&self) -> u64 {
        self.steps_total
    }
}
