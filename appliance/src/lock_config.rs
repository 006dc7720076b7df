//! Issue 9: the `[locks]` section (lock manager of every shard: deadlock victim strategy,
//! detection algorithm and interval, lock-wait timeout floor and ceiling), with its flags and
//! `MANTIS_LOCKS_*` variables, resolved into the `mantis_lock::LockConfig` that
//! `mantis_sql::txlock::configure` hands to every shard (SQL row locks and the RESP/HTTP
//! transaction locks share those managers).

use clap::{Args, ValueEnum};
use mantis_lock::{DetectAlgorithm, LockConfig, VictimStrategy};
use serde::Deserialize;

use crate::config::ConfigError;

/// Detection interval bounds: below 1 ms the shard would spend its time detecting; above a
/// minute a deadlock would sit until the lock timeout anyway.
const DETECT_INTERVAL_MS_MIN: u64 = 1;
const DETECT_INTERVAL_MS_MAX: u64 = 60_000;

/// Deadlock victim strategy, as written in the file and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum VictimName {
    Youngest,
    FewestLocks,
    LeastWork,
    CostBased,
}

/// Cycle search algorithm, as written in the file and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum AlgorithmName {
    Dfs,
    Bfs,
    Tarjan,
    Adaptive,
}

impl From<VictimName> for VictimStrategy {
    fn from(v: VictimName) -> Self {
        match v {
            VictimName::Youngest => VictimStrategy::Youngest,
            VictimName::FewestLocks => VictimStrategy::FewestLocks,
            VictimName::LeastWork => VictimStrategy::LeastWork,
            VictimName::CostBased => VictimStrategy::CostBased,
        }
    }
}

impl From<AlgorithmName> for DetectAlgorithm {
    fn from(a: AlgorithmName) -> Self {
        match a {
            AlgorithmName::Dfs => DetectAlgorithm::Dfs,
            AlgorithmName::Bfs => DetectAlgorithm::Bfs,
            AlgorithmName::Tarjan => DetectAlgorithm::Tarjan,
            AlgorithmName::Adaptive => DetectAlgorithm::Adaptive,
        }
    }
}

/// Flags (and their `MANTIS_LOCKS_*` variables), flattened into `Cli`.
#[derive(Debug, Default, Clone, Args)]
pub struct LockFlags {
    /// Which transaction of a deadlock is aborted. [default: youngest]
    #[arg(long, env = "MANTIS_LOCKS_VICTIM", value_enum)]
    pub locks_victim: Option<VictimName>,
    /// Cycle search of deadlock detection. [default: adaptive]
    #[arg(long, env = "MANTIS_LOCKS_ALGORITHM", value_enum)]
    pub locks_algorithm: Option<AlgorithmName>,
    /// Period of deadlock detection, per shard and across shards, in ms. [default: 100]
    #[arg(long, env = "MANTIS_LOCKS_DETECT_INTERVAL_MS", value_name = "MS")]
    pub locks_detect_interval_ms: Option<u64>,
    /// Floor of the adaptive lock-wait timeout, in µs. [default: 2000000]
    #[arg(long, env = "MANTIS_LOCKS_TIMEOUT_MIN_US", value_name = "US")]
    pub locks_timeout_min_us: Option<u64>,
    /// Ceiling of the adaptive lock-wait timeout, in µs. [default: 30000000]
    #[arg(long, env = "MANTIS_LOCKS_TIMEOUT_MAX_US", value_name = "US")]
    pub locks_timeout_max_us: Option<u64>,
    /// Lock-wait timeout before any wait was observed, in µs (clamped to [min, max]).
    /// [default: 5000000]
    #[arg(long, env = "MANTIS_LOCKS_TIMEOUT_INITIAL_US", value_name = "US")]
    pub locks_timeout_initial_us: Option<u64>,
}

/// `[locks]` in the file.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LockSection {
    pub victim: Option<VictimName>,
    pub algorithm: Option<AlgorithmName>,
    pub detect_interval_ms: Option<u64>,
    pub timeout_min_us: Option<u64>,
    pub timeout_max_us: Option<u64>,
    pub timeout_initial_us: Option<u64>,
    /// Graphs up to this many edges use DFS under `adaptive`, larger ones Tarjan.
    pub adaptive_small_edges_max: Option<usize>,
    /// Weights of `cost_based`: locks held, work done (rows), age.
    pub cost_weight_locks: Option<f64>,
    pub cost_weight_work: Option<f64>,
    pub cost_weight_age: Option<f64>,
}

/// Flags over the file over `mantis_sql::txlock::default_config()`, checked.
pub fn resolve(flags: LockFlags, file: LockSection) -> Result<LockConfig, ConfigError> {
    let mut c = mantis_sql::txlock::default_config();
    if let Some(v) = flags.locks_victim.or(file.victim) {
        c.victim = v.into();
    }
    if let Some(a) = flags.locks_algorithm.or(file.algorithm) {
        c.algorithm = a.into();
    }
    c.detect_interval_ms = flags
        .locks_detect_interval_ms
        .or(file.detect_interval_ms)
        .unwrap_or(c.detect_interval_ms);
    c.timeout_min_us = flags
        .locks_timeout_min_us
        .or(file.timeout_min_us)
        .unwrap_or(c.timeout_min_us);
    c.timeout_max_us = flags
        .locks_timeout_max_us
        .or(file.timeout_max_us)
        .unwrap_or(c.timeout_max_us);
    c.timeout_initial_us = flags
        .locks_timeout_initial_us
        .or(file.timeout_initial_us)
        .unwrap_or(c.timeout_initial_us)
        .clamp(c.timeout_min_us.min(c.timeout_max_us), c.timeout_max_us);
    c.adaptive_small_edges_max = file
        .adaptive_small_edges_max
        .unwrap_or(c.adaptive_small_edges_max);
    c.cost_weights.locks = file.cost_weight_locks.unwrap_or(c.cost_weights.locks);
    c.cost_weights.work = file.cost_weight_work.unwrap_or(c.cost_weights.work);
    c.cost_weights.age = file.cost_weight_age.unwrap_or(c.cost_weights.age);
    check(&c)?;
    Ok(c)
}

fn check(c: &LockConfig) -> Result<(), ConfigError> {
    let invalid = |option: &'static str, reason: String| ConfigError::Invalid { option, reason };
    if !(DETECT_INTERVAL_MS_MIN..=DETECT_INTERVAL_MS_MAX).contains(&c.detect_interval_ms) {
        return Err(invalid(
            "locks.detect_interval_ms",
            format!(
                "{} is outside [{DETECT_INTERVAL_MS_MIN}, {DETECT_INTERVAL_MS_MAX}]",
                c.detect_interval_ms
            ),
        ));
    }
    if c.timeout_min_us == 0 || c.timeout_min_us > c.timeout_max_us {
        return Err(invalid(
            "locks.timeout_min_us",
            format!(
                "must be positive and at most timeout_max_us ({} > {})",
                c.timeout_min_us, c.timeout_max_us
            ),
        ));
    }
    let w = c.cost_weights;
    if ![w.locks, w.work, w.age]
        .iter()
        .all(|x| x.is_finite() && *x >= 0.0)
    {
        return Err(invalid(
            "locks.cost_weight_*",
            "weights must be finite and non-negative".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_are_the_sql_defaults() {
        let c = resolve(LockFlags::default(), LockSection::default()).unwrap();
        assert_eq!(c, mantis_sql::txlock::default_config());
    }

    #[test]
    fn flags_win_over_the_file() {
        let file: LockSection = toml::from_str(
            "victim = \"least_work\"\nalgorithm = \"bfs\"\ndetect_interval_ms = 20\n\
             timeout_min_us = 1000\ntimeout_max_us = 9000\ncost_weight_age = 2.0",
        )
        .unwrap();
        let flags = LockFlags {
            locks_victim: Some(VictimName::FewestLocks),
            ..LockFlags::default()
        };
        let c = resolve(flags, file).unwrap();
        assert_eq!(c.victim, VictimStrategy::FewestLocks);
        assert_eq!(c.algorithm, DetectAlgorithm::Bfs);
        assert_eq!(c.detect_interval_ms, 20);
        assert_eq!((c.timeout_min_us, c.timeout_max_us), (1000, 9000));
        assert_eq!(c.timeout_initial_us, 9000, "initial clamped to the ceiling");
        assert_eq!(c.cost_weights.age, 2.0);
    }

    #[test]
    fn bad_values_are_refused() {
        for text in [
            "detect_interval_ms = 0",
            "timeout_min_us = 10\ntimeout_max_us = 5",
            "cost_weight_locks = -1.0",
        ] {
            let file: LockSection = toml::from_str(text).unwrap();
            assert!(
                resolve(LockFlags::default(), file).is_err(),
                "accepted: {text}"
            );
        }
        assert!(toml::from_str::<LockSection>("victim = \"oldest\"").is_err());
        assert!(toml::from_str::<LockSection>("victims = \"youngest\"").is_err());
    }
}
