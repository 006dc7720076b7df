//! Load generation: a few OS threads, each a glommio executor driving several connections as
//! tasks; closed loop (each connection sends its next request when the last is answered,
//! optionally pipelined) or open loop (each connection follows an [`OpenLoopSchedule`] and
//! latency is charged from the intended send time).

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::Serialize;

use crate::driver::{Conn, Endpoint};
use crate::error::BenchError;
use crate::keydist::KeyChooser;
use crate::recorder::{Outcome, Recorded, Recorder};
use crate::schedule::OpenLoopSchedule;
use crate::signals;
use crate::workload::{self, InsertCounter, OpGen, OpKind, Request, WorkloadSpec};

/// Most connections one run opens.
pub const CONNECTIONS_MAX: usize = 10_000;
/// Deepest pipeline a connection sends.
pub const PIPELINE_MAX: usize = 1024;
/// Records per load request (MSET / batch POST / write batch).
pub const LOAD_BATCH_RECORDS: usize = 100;
/// Connections the load phase uses at most: loading is about throughput, not latency.
const LOAD_CONNECTIONS_MAX: usize = 16;
/// Time given to every thread to connect before the first intended send time.
const STARTUP: Duration = Duration::from_millis(300);
/// Runs at least this long get a progress bar.
const PROGRESS_MIN: Duration = Duration::from_secs(3);
/// How often the progress bar and the stop flag are looked at.
const TICK: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub spec: WorkloadSpec,
    pub connections: usize,
    /// Load-generator threads (glommio executors), each with connections / threads connections.
    pub threads: usize,
    /// Requests per batch in closed loop (1: no pipelining).
    pub pipeline: usize,
    /// Open loop at this many requests per second (all connections together); None: closed loop.
    pub rate_per_sec: Option<f64>,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Width of one latency-over-time interval.
    pub interval_s: f64,
    pub seed: u64,
}

impl RunConfig {
    pub fn mode(&self) -> String {
        match self.rate_per_sec {
            None if self.pipeline > 1 => format!(
                "closed, {} conns, pipeline {}",
                self.connections, self.pipeline
            ),
            None => format!("closed, {} conns", self.connections),
            Some(r) => format!("open {r:.0}/s, {} conns", self.connections),
        }
    }

    fn check(&self) {
        assert!(
            (1..=CONNECTIONS_MAX).contains(&self.connections),
            "connections {}",
            self.connections
        );
        assert!(
            (1..=PIPELINE_MAX).contains(&self.pipeline),
            "pipeline {}",
            self.pipeline
        );
        assert!(self.duration_s > 0.0 && self.warmup_s >= 0.0 && self.interval_s > 0.0);
        assert!(self.spec.key_count > 0);
    }
}

/// The shared clock of a run: every thread measures against the same instants.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

/// Runs `f(thread)` on `threads` fresh unpinned executors and collects the results, calling
/// `tick` (progress display) every [`TICK`] while they run.
fn on_executors<T, F, Fut>(
    threads: usize,
    name: &str,
    f: F,
    tick: &dyn Fn(),
) -> Result<Vec<T>, BenchError>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = Result<T, BenchError>> + 'static,
{
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let (f, tx) = (f.clone(), tx.clone());
        let handle = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("{name}-{t}"))
            .io_memory(mantis_storage::rt::IO_MEMORY_BYTES)
            .spawn(move || async move {
                let _ = tx.send((t, f(t).await));
            })
            .map_err(|e| BenchError::Executor(crate::error::glommio_io_error(e)))?;
        handles.push(handle);
    }
    drop(tx);
    let mut results: Vec<Option<Result<T, BenchError>>> = (0..threads).map(|_| None).collect();
    let mut received = 0;
    while received < threads {
        match rx.recv_timeout(TICK) {
            Ok((t, r)) => {
                results[t] = Some(r);
                received += 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Every sender gone: a thread ended without answering (it panicked).
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        tick();
    }
    for h in handles {
        let _ = h.join();
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(BenchError::Engine {
                    phase: "load generator",
                    cause: "a load-generator thread ended without a result".to_string(),
                })
            })
        })
        .collect()
}

fn progress_bar(total: Duration, label: &str, show: bool) -> Option<indicatif::ProgressBar> {
    if !show || total < PROGRESS_MIN {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
    let style = indicatif::ProgressStyle::with_template(
        "{prefix:>28} [{bar:30}] {elapsed:>4}/{duration} {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    Some(bar)
}

/// Runs the workload against `endpoint` and returns the merged figures of the measured window.
pub fn run(
    endpoint: &Endpoint,
    cfg: &RunConfig,
    label: &str,
    show_progress: bool,
) -> Result<Recorded, BenchError> {
    cfg.check();
    let threads = cfg.threads.clamp(1, cfg.connections);
    let start = Instant::now() + STARTUP;
    let measure_from = start + Duration::from_secs_f64(cfg.warmup_s);
    let window = Window {
        start,
        measure_from,
        end: measure_from + Duration::from_secs_f64(cfg.duration_s),
    };
    let inserts = InsertCounter::new(
        cfg.spec.record_count,
        (cfg.connections * cfg.pipeline) as u64,
    );
    let chooser = KeyChooser::new(cfg.spec.distribution, cfg.spec.key_count);
    let ops_done = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(window.end - Instant::now(), label, show_progress);
    let (endpoint, cfg_c, counter) = (endpoint.clone(), cfg.clone(), ops_done.clone());
    let recorders = on_executors(
        threads,
        "load-gen",
        move |t| {
            let (endpoint, cfg, chooser, inserts, counter) = (
                endpoint.clone(),
                cfg_c.clone(),
                chooser.clone(),
                inserts.clone(),
                counter.clone(),
            );
            async move {
                thread_main(
                    t, threads, &endpoint, &cfg, chooser, inserts, window, counter,
                )
                .await
            }
        },
        &|| {
            if let Some(b) = &bar {
                b.set_message(format!("{} ops", ops_done.load(Ordering::Relaxed)));
                b.set_position(b.elapsed().as_millis() as u64);
            }
        },
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if signals::stopped() {
        return Err(BenchError::Interrupted);
    }
    let mut merged = Recorder::new(window.measure_from, Duration::from_secs_f64(cfg.interval_s));
    for r in &recorders {
        merged.merge(r);
    }
    Ok(merged.finish(cfg.duration_s))
}

#[allow(clippy::too_many_arguments)]
async fn thread_main(
    thread: usize,
    threads: usize,
    endpoint: &Endpoint,
    cfg: &RunConfig,
    chooser: KeyChooser,
    inserts: InsertCounter,
    window: Window,
    counter: Arc<AtomicU64>,
) -> Result<Recorder, BenchError> {
    let recorder = Rc::new(RefCell::new(Recorder::new(
        window.measure_from,
        Duration::from_secs_f64(cfg.interval_s),
    )));
    let mut tasks = Vec::new();
    for conn in (thread..cfg.connections).step_by(threads) {
        let conn_handle = endpoint.connect().await?;
        let rng =
            SmallRng::seed_from_u64(cfg.seed ^ (conn as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let gen = OpGen::new(cfg.spec.clone(), chooser.clone(), inserts.clone(), rng);
        let task = ConnTask {
            endpoint: endpoint.clone(),
            conn: conn_handle,
            gen,
            recorder: recorder.clone(),
            counter: counter.clone(),
            window,
        };
        let cfg = cfg.clone();
        tasks.push(glommio::spawn_local(async move {
            match cfg.rate_per_sec {
                None => task.closed_loop(cfg.pipeline).await,
                Some(rate) => {
                    let schedule =
                        OpenLoopSchedule::for_connection(window.start, rate, conn, cfg.connections);
                    task.open_loop(schedule).await
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let rec = Rc::try_unwrap(recorder).map_err(|_| BenchError::Engine {
        phase: "load generator",
        cause: "a connection task outlived its thread".to_string(),
    })?;
    Ok(rec.into_inner())
}

struct ConnTask {
    endpoint: Endpoint,
    conn: Conn,
    gen: OpGen,
    recorder: Rc<RefCell<Recorder>>,
    counter: Arc<AtomicU64>,
    window: Window,
}

impl ConnTask {
    async fn sleep_until(t: Instant) {
        let now = Instant::now();
        if t > now {
            glommio::timer::sleep(t - now).await;
        }
    }

    async fn closed_loop(mut self, pipeline: usize) -> Result<(), BenchError> {
        Self::sleep_until(self.window.start).await;
        let mut batch: Vec<(OpKind, Request)> = Vec::with_capacity(pipeline);
        while Instant::now() < self.window.end && !signals::stopped() {
            batch.clear();
            batch.extend((0..pipeline).map(|_| self.gen.next_op()));
            let sent = Instant::now();
            self.send(&batch, sent, sent).await?;
            glommio::yield_if_needed().await;
        }
        Ok(())
    }

    async fn open_loop(mut self, mut schedule: OpenLoopSchedule) -> Result<(), BenchError> {
        loop {
            // The schedule, never "now", decides when the next request is due: after a stall the
            // overdue requests go out back to back and each is charged its own wait.
            let intended = schedule.next_intended();
            if intended >= self.window.end || signals::stopped() {
                return Ok(());
            }
            Self::sleep_until(intended).await;
            let op = [self.gen.next_op()];
            self.send(&op, intended, Instant::now()).await?;
        }
    }

    /// Sends one batch and records it; on a broken connection records the batch as errors and
    /// reconnects (failing the run when the server is gone for good).
    async fn send(
        &mut self,
        batch: &[(OpKind, Request)],
        intended: Instant,
        sent: Instant,
    ) -> Result<(), BenchError> {
        let requests: Vec<Request> = batch.iter().map(|(_, r)| r.clone()).collect();
        match self.conn.execute(&requests).await {
            Ok(outcomes) => {
                let mut rec = self.recorder.borrow_mut();
                for ((kind, _), (outcome, done)) in batch.iter().zip(&outcomes) {
                    rec.record(*kind, intended, sent, *done, outcome);
                }
            }
            Err(e) => {
                let done = Instant::now();
                let outcome = Outcome::Error(e.to_string());
                {
                    let mut rec = self.recorder.borrow_mut();
                    for (kind, _) in batch {
                        rec.record(*kind, intended, sent, done, &outcome);
                    }
                }
                self.conn = self.endpoint.connect().await?;
            }
        }
        self.counter
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Loads records `0..spec.record_count` through `endpoint` in batches over a few connections.
/// Returns the load time in seconds.
pub fn load(
    endpoint: &Endpoint,
    spec: &WorkloadSpec,
    threads: usize,
    label: &str,
    show_progress: bool,
) -> Result<f64, BenchError> {
    let started = Instant::now();
    let batches = spec.record_count.div_ceil(LOAD_BATCH_RECORDS as u64);
    let connections = (LOAD_CONNECTIONS_MAX as u64).min(batches.max(1)) as usize;
    let threads = threads.clamp(1, connections);
    let counter = Arc::new(AtomicU64::new(0));
    let bar = show_progress.then(|| {
        let bar = indicatif::ProgressBar::new(spec.record_count);
        bar.set_prefix(format!("load {label}"));
        bar
    });
    let (endpoint, spec_c, counter_c) = (endpoint.clone(), spec.clone(), counter.clone());
    on_executors(
        threads,
        "loader",
        move |t| {
            let (endpoint, spec, counter) = (endpoint.clone(), spec_c.clone(), counter_c.clone());
            async move {
                let mut tasks = Vec::new();
                for conn in (t..connections).step_by(threads) {
                    let (endpoint, spec, counter) =
                        (endpoint.clone(), spec.clone(), counter.clone());
                    tasks.push(glommio::spawn_local(async move {
                        let mut c = endpoint.connect().await?;
                        for b in (conn as u64..batches).step_by(connections) {
                            if signals::stopped() {
                                return Err(BenchError::Interrupted);
                            }
                            let first = b * LOAD_BATCH_RECORDS as u64;
                            let last = (first + LOAD_BATCH_RECORDS as u64).min(spec.record_count);
                            let records: Vec<_> = (first..last)
                                .map(|i| workload::record(i, spec.value_bytes))
                                .collect();
                            c.load(&records).await?;
                            counter.fetch_add(last - first, Ordering::Relaxed);
                        }
                        Ok::<(), BenchError>(())
                    }));
                }
                for task in tasks {
                    task.await?;
                }
                Ok(())
            }
        },
        &|| {
            if let Some(b) = &bar {
                b.set_position(counter.load(Ordering::Relaxed));
            }
        },
    )
    .map(|_| ())
    .inspect_err(|_| {
        if let Some(b) = &bar {
            b.abandon();
        }
    })?;
    if let Some(b) = bar {
        b.set_position(counter.load(Ordering::Relaxed));
        b.finish_and_clear();
    }
    Ok(started.elapsed().as_secs_f64())
}
