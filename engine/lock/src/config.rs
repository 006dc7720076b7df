//! Lock manager configuration. Every queue and table has a declared maximum.

use serde::{Deserialize, Serialize};

/// Which transaction of a deadlock cycle is aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VictimStrategy {
    /// The most recently started transaction (highest start sequence): it has done the least
    /// and aborting it lets older transactions make progress (no starvation of old work).
    #[default]
    Youngest,
    /// The transaction holding the fewest locks (summed over shards).
    FewestLocks,
    /// The transaction that has done the least work (engine-reported units: rows touched).
    LeastWork,
    /// Minimum of a weighted cost of locks held, work done and age.
    CostBased,
}

/// How cycles are searched in the wait-for graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DetectAlgorithm {
    /// Iterative depth-first search, stopping at the first back edge of each tree.
    Dfs,
    /// Breadth-first peeling (Kahn): remove nodes with no waiters or no holders until only
    /// cycles remain, then walk one.
    Bfs,
    /// Tarjan's strongly connected components: every non-trivial SCC holds a deadlock.
    Tarjan,
    /// DFS for small graphs (lowest constant), Tarjan above `adaptive_small_edges_max`.
    #[default]
    Adaptive,
}

/// Weights of `VictimStrategy::CostBased`: cost = locks × w_locks + work × w_work +
/// age_rank × w_age; the transaction with the lowest cost is aborted.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostWeights {
    pub locks: f64,
    pub work: f64,
    pub age: f64,
}

impl Default for CostWeights {
    fn default() -> Self {
        CostWeights {
            locks: 1.0,
            work: 1.0,
            age: 0.5,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockConfig {
    /// Shard number, carried into errors and stats.
    pub shard: u32,
    /// Lock requests (granted or waiting) in the shard at once.
    pub requests_max: usize,
    /// Locked resources in the shard at once.
    pub resources_max: usize,
    /// Transactions known to the shard's lock manager at once.
    pub txns_max: usize,
    /// Lock-wait timeout before any wait was observed.
    pub timeout_initial_us: u64,
    pub timeout_min_us: u64,
    pub timeout_max_us: u64,
    /// The timeout follows p99 of observed waits × this factor, clamped to [min, max].
    pub timeout_p99_factor: f64,
    /// Waits observed between two recomputations of the timeout.
    pub timeout_update_every_waits: u64,
    pub victim: VictimStrategy,
    pub algorithm: DetectAlgorithm,
    pub adaptive_small_edges_max: usize,
    pub cost_weights: CostWeights,
    /// Period of the shard's detection pass (also run when a wait exceeds half the timeout).
    pub detect_interval_ms: u64,
    /// Hold times are measured on one grant in this many (a clock read costs ~20 ns, a fifth
    /// of the uncontended budget, and a sampled hold reads it twice). Only the hold-time
    /// histogram is sampled: every counter (acquires, releases, waits…) and the wait-time
    /// histogram count every event. 1 measures every hold.
    pub hold_sample_every: u32,
    /// Resources whose history is kept (only resources that saw a wait get one).
    pub profiled_resources_max: usize,
    pub events_per_resource_max: usize,
    pub hotspots_max: usize,
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig {
            shard: 0,
            requests_max: 1 << 20,
            resources_max: 1 << 20,
            txns_max: 1 << 16,
            timeout_initial_us: 5_000_000,
            timeout_min_us: 100_000,
            timeout_max_us: 30_000_000,
            timeout_p99_factor: 10.0,
            timeout_update_every_waits: 64,
            victim: VictimStrategy::Youngest,
            algorithm: DetectAlgorithm::Adaptive,
            adaptive_small_edges_max: 256,
            cost_weights: CostWeights::default(),
            detect_interval_ms: 100,
            hold_sample_every: 64,
            profiled_resources_max: 1024,
            events_per_resource_max: 64,
            hotspots_max: 10,
        }
    }
}
