//! `mantis-lock`: the per-shard lock manager of MantisDB.
//!
//! Everything inside a shard runs on one thread, so the lock table is a plain data structure
//! behind one `RefCell`: no atomics, no mutexes. Modes IS/IX/S/SIX/X over database → table →
//! row; FIFO queues with upgrades first; pooled records; adaptive timeouts; wait-for graphs per
//! shard merged into a global graph for deadlock detection; profiling; a task registry.

mod config;
mod error;
mod graph;
mod hash;
mod manager;
mod mode;
mod pool;
mod profile;
mod resource;
mod state;
mod table;
mod tasks;

pub use config::{CostWeights, DetectAlgorithm, LockConfig, VictimStrategy};
pub use error::LockError;
pub use graph::{Resolution, ShardWaitGraph, TxnCost, Victim, WaitEdge, WaitForGraph};
pub use manager::{
    Acquire, LockManager, LockStats, LockWait, ResourceView, TickReport, WAIT_BUCKETS_US,
};
pub use mode::{LockMode, MODE_COUNT};
pub use profile::{HistogramSummary, Hotspot, LockEvent, LockEventKind};
pub use resource::{key_hash, ResourceId, TxnId};
pub use tasks::{
    GroupDrained, GroupStats, LeakedTask, ShutdownSignal, TaskError, TaskGuard, TaskRegistry,
};
