//! `mantis-bench locks`: the lock manager's own figures (issue 9), in-process, no I/O.
//! - uncontended acquire + release per lock (goal ≤ 100 ns): one transaction takes locks on
//!   distinct rows and releases them at its end, as a transaction under strict 2PL does;
//! - deadlock detection over a 10,000-edge wait-for graph (goal ≤ 1 ms) for each algorithm,
//!   from per-shard edge lists to the victims (merge included).

use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use mantis_lock::{
    DetectAlgorithm, LockConfig, LockManager, LockMode, ResourceId, ShardWaitGraph, TxnCost, TxnId,
    VictimStrategy, WaitEdge, WaitForGraph,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::error::BenchError;

#[derive(clap::Args, Debug, Clone)]
pub struct LocksArgs {
    /// Transactions run for the uncontended figure.
    #[arg(long, default_value_t = 200_000)]
    txns: u64,
    /// Edges of the wait-for graph.
    #[arg(long, default_value_t = 10_000)]
    edges: usize,
    /// Detection passes per algorithm (the median is reported).
    #[arg(long, default_value_t = 51)]
    passes: usize,
    /// Write the figures as JSON here.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[derive(Serialize, Debug)]
struct UncontendedFigure {
    case: String,
    locks_per_txn: u64,
    ns_per_lock: f64,
    /// The same in this thread's CPU time: not inflated by time spent waiting for a core on
    /// a shared machine (wall time is).
    cpu_ns_per_lock: f64,
}

#[derive(Serialize, Debug)]
struct DetectFigure {
    algorithm: String,
    graph: String,
    nodes: usize,
    edges: usize,
    victims: usize,
    median_us: f64,
    p90_us: f64,
    /// Median in this thread's CPU time.
    cpu_median_us: f64,
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is always supported
    // on Linux. On failure `ts` stays zero and the figure reads as 0 (visible, not silent).
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[derive(Serialize, Debug)]
struct LocksReport {
    uncontended: Vec<UncontendedFigure>,
    detection: Vec<DetectFigure>,
}

fn row(key: u64) -> ResourceId {
    ResourceId::Row {
        database: 1,
        table: 1,
        key_hash: key,
    }
}

/// (wall, CPU) ns per lock of `txns` transactions each locking `per_txn` rows (hierarchically
/// or not).
fn uncontended(txns: u64, per_txn: u64, hierarchical: bool) -> (f64, f64) {
    let m = LockManager::new(LockConfig::default());
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut run = |count: u64| {
        let started = (Instant::now(), thread_cpu());
        for txn in 0..count {
            let id = TxnId(txn);
            for k in 0..per_txn {
                let r = row(txn.wrapping_mul(per_txn) + k);
                if hierarchical {
                    let mut fut = std::pin::pin!(m.lock_hierarchical(id, r, LockMode::X));
                    let done = fut.as_mut().poll(&mut cx);
                    assert!(done.is_ready(), "uncontended lock waited");
                } else {
                    let granted = matches!(
                        m.try_lock(id, r, LockMode::X),
                        Ok(mantis_lock::Acquire::Granted)
                    );
                    assert!(granted, "uncontended lock waited");
                }
            }
            black_box(m.end_txn(id));
        }
        (started.0.elapsed(), thread_cpu().saturating_sub(started.1))
    };
    run(txns / 10); // warm the pools and the maps
    let (wall, cpu) = run(txns);
    let locks = (txns * per_txn * if hierarchical { 3 } else { 1 }) as f64;
    (
        wall.as_nanos() as f64 / locks,
        cpu.as_nanos() as f64 / locks,
    )
}

/// A wait-for graph as `shards` per-shard parts: random edges from older to younger
/// transactions (no cycle), plus `cycles` planted cycles of 2..=8 transactions.
fn graph_parts(edges: usize, cycles: usize, shards: u32, seed: u64) -> Vec<ShardWaitGraph> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let nodes = (edges / 2).max(16) as u64;
    let mut parts: Vec<ShardWaitGraph> = (0..shards)
        .map(|shard| ShardWaitGraph {
            shard,
            ..ShardWaitGraph::default()
        })
        .collect();
    let mut push = |rng: &mut SmallRng, waiter: u64, holder: u64| {
        let shard = rng.gen_range(0..shards);
        parts[shard as usize].edges.push(WaitEdge {
            waiter: TxnId(waiter),
            holder: TxnId(holder),
            shard,
            resource: row(holder),
        });
    };
    let mut planted = 0;
    for c in 0..cycles {
        let len = 2 + (c % 7) as u64;
        let base = rng.gen_range(0..nodes - len);
        for i in 0..len {
            let next = if i + 1 == len { base } else { base + i + 1 };
            push(&mut rng, base + i, next);
            planted += 1;
        }
    }
    for _ in planted..edges {
        let a = rng.gen_range(0..nodes - 1);
        let b = rng.gen_range(a + 1..nodes);
        // Younger waits for older only: these edges alone never close a cycle.
        push(&mut rng, b, a);
    }
    for (i, part) in parts.iter_mut().enumerate() {
        part.txns = (0..nodes)
            .filter(|n| n % u64::from(shards) == i as u64)
            .map(|n| TxnCost {
                txn: TxnId(n),
                start_seq: n,
                locks_held: n % 7,
                work: n % 13,
            })
            .collect();
    }
    parts
}

fn detect_figure(
    parts: &[ShardWaitGraph],
    algorithm: DetectAlgorithm,
    label: &str,
    passes: usize,
) -> DetectFigure {
    let config = LockConfig::default();
    let mut times: Vec<Duration> = Vec::with_capacity(passes);
    let mut cpu_times: Vec<Duration> = Vec::with_capacity(passes);
    let mut last = None;
    // One graph for every pass, as a detector keeps it: its buffers are reused.
    let mut graph = WaitForGraph::new();
    for _ in 0..passes.max(1) {
        let started = Instant::now();
        let cpu_started = thread_cpu();
        graph.rebuild(parts);
        let resolution = graph.resolve(
            algorithm,
            config.adaptive_small_edges_max,
            VictimStrategy::CostBased,
            &config.cost_weights,
        );
        times.push(started.elapsed());
        cpu_times.push(thread_cpu().saturating_sub(cpu_started));
        last = Some(resolution);
    }
    times.sort();
    cpu_times.sort();
    let resolution = last.unwrap_or_default();
    DetectFigure {
        algorithm: format!("{algorithm:?}"),
        graph: label.to_owned(),
        nodes: resolution.nodes,
        edges: resolution.edges,
        victims: resolution.victims.len(),
        median_us: times[times.len() / 2].as_nanos() as f64 / 1e3,
        p90_us: times[times.len() * 9 / 10].as_nanos() as f64 / 1e3,
        cpu_median_us: cpu_times[cpu_times.len() / 2].as_nanos() as f64 / 1e3,
    }
}

pub fn run(args: &LocksArgs) -> Result<(), BenchError> {
    let mut report = LocksReport {
        uncontended: Vec::new(),
        detection: Vec::new(),
    };
    for (case, per_txn, hierarchical) in [
        ("row X, 1 lock per txn", 1, false),
        ("row X, 8 locks per txn", 8, false),
        (
            "row X with IX on table and database (3 locks), 8 rows per txn",
            8,
            true,
        ),
    ] {
        let (ns_per_lock, cpu_ns_per_lock) = uncontended(args.txns, per_txn, hierarchical);
        println!("uncontended acquire+release: {case}: {ns_per_lock:.1} ns per lock wall, {cpu_ns_per_lock:.1} ns CPU (goal <= 100)");
        report.uncontended.push(UncontendedFigure {
            case: case.to_owned(),
            locks_per_txn: per_txn * if hierarchical { 3 } else { 1 },
            ns_per_lock,
            cpu_ns_per_lock,
        });
    }
    let graphs = [
        ("acyclic", graph_parts(args.edges, 0, 4, 9)),
        ("20 planted cycles", graph_parts(args.edges, 20, 4, 9)),
    ];
    for (label, parts) in &graphs {
        for algorithm in [
            DetectAlgorithm::Dfs,
            DetectAlgorithm::Bfs,
            DetectAlgorithm::Tarjan,
            DetectAlgorithm::Adaptive,
        ] {
            let f = detect_figure(parts, algorithm, label, args.passes);
            println!(
                "deadlock detection, {} edges / {} txns over 4 shards, {label}: {:?}: median {:.0} us wall ({:.0} us CPU), p90 {:.0} us, {} victims (goal <= 1000 us)",
                f.edges, f.nodes, algorithm, f.median_us, f.cpu_median_us, f.p90_us, f.victims
            );
            report.detection.push(f);
        }
    }
    if let Some(path) = &args.out {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).map_err(|source| BenchError::ResultFile {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}
