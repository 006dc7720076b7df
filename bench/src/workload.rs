//! The YCSB core workloads (A–F) plus write-only, and the generator of their operations.
//!
//! Keys are item indexes turned into 20-byte keys by `keys::key` (hashed, so the hot items of a
//! zipfian land all over the key space); values are incompressible bytes of `value_bytes`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::Rng;
use serde::Serialize;

use crate::engine::keys;
use crate::keydist::{Distribution, KeyChooser};

/// The key prefix of every harness key ("user" as in YCSB's `user1234`).
pub const KEY_PREFIX: &[u8; 4] = b"user";
/// Longest scan of workload E (YCSB's default maxscanlength).
pub const SCAN_LENGTH_MAX: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// 50 % read, 50 % update (zipfian).
    A,
    /// 95 % read, 5 % update (zipfian).
    B,
    /// 100 % read (zipfian).
    C,
    /// 95 % read, 5 % insert; reads favour the newest keys (latest).
    D,
    /// 95 % short scans, 5 % insert (zipfian start keys, 1–100 keys per scan).
    E,
    /// 50 % read, 50 % read-modify-write (zipfian).
    F,
    /// 100 % update of loaded keys: the durable SET figure (uniform).
    Write,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::A => "ycsb-a",
            Workload::B => "ycsb-b",
            Workload::C => "ycsb-c",
            Workload::D => "ycsb-d",
            Workload::E => "ycsb-e",
            Workload::F => "ycsb-f",
            Workload::Write => "write-only",
        }
    }

    pub fn default_distribution(self) -> Distribution {
        match self {
            Workload::D => Distribution::Latest,
            Workload::Write => Distribution::Uniform,
            _ => Distribution::Zipfian,
        }
    }

    /// The operation mix: (kind, weight in percent); weights sum to 100.
    pub fn mix(self) -> &'static [(OpKind, u32)] {
        match self {
            Workload::A => &[(OpKind::Read, 50), (OpKind::Update, 50)],
            Workload::B => &[(OpKind::Read, 95), (OpKind::Update, 5)],
            Workload::C => &[(OpKind::Read, 100)],
            Workload::D => &[(OpKind::Read, 95), (OpKind::Insert, 5)],
            Workload::E => &[(OpKind::Scan, 95), (OpKind::Insert, 5)],
            Workload::F => &[(OpKind::Read, 50), (OpKind::ReadModifyWrite, 50)],
            Workload::Write => &[(OpKind::Update, 100)],
        }
    }
}

/// What one operation is, for recording: each kind has its own histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    Read,
    Update,
    Insert,
    Scan,
    ReadModifyWrite,
}

impl OpKind {
    pub const ALL: [OpKind; 5] = [
        OpKind::Read,
        OpKind::Update,
        OpKind::Insert,
        OpKind::Scan,
        OpKind::ReadModifyWrite,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Update => "update",
            OpKind::Insert => "insert",
            OpKind::Scan => "scan",
            OpKind::ReadModifyWrite => "rmw",
        }
    }
}

/// One request, protocol-neutral; drivers turn it into GET / SET / SCAN / GET+SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Get(Vec<u8>),
    Set(Vec<u8>, Vec<u8>),
    /// Up to `count` keys from `start` on, in key order.
    Scan(Vec<u8>, usize),
    /// Read the key, then write the new value.
    ReadModifyWrite(Vec<u8>, Vec<u8>),
}

/// Everything a generator needs; shared (cloned) by every connection of a run.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadSpec {
    pub workload: Workload,
    pub distribution: Distribution,
    /// Items the operations pick from (0..key_count).
    pub key_count: u64,
    /// Items loaded before the run (0..record_count).
    pub record_count: u64,
    pub value_bytes: usize,
}

/// The next index workload D/E inserts; shared by every connection and thread of a run.
#[derive(Debug, Clone)]
pub struct InsertCounter {
    next: Arc<AtomicU64>,
    /// Indexes below this were loaded before the run.
    first: u64,
    /// Inserts that may be in flight (connections × pipeline): the newest of them may not be
    /// stored yet, so reads aim below them rather than count misses that are not the server's.
    in_flight_max: u64,
}

impl InsertCounter {
    pub fn new(first: u64, in_flight_max: u64) -> Self {
        InsertCounter {
            next: Arc::new(AtomicU64::new(first)),
            first,
            in_flight_max,
        }
    }
    fn take(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
    /// The newest index certainly stored: the last loaded one, or an insert older than every
    /// insert that may still be in flight.
    fn latest(&self) -> u64 {
        let next = self.next.load(Ordering::Relaxed);
        next.saturating_sub(1 + self.in_flight_max)
            .max(self.first.saturating_sub(1))
    }
}

/// Generates operations of one connection: its own seeded RNG, the run's shared insert counter.
pub struct OpGen {
    spec: WorkloadSpec,
    chooser: KeyChooser,
    inserts: InsertCounter,
    rng: SmallRng,
    /// Bumped on every write so that updates change the stored bytes.
    version: u64,
}

impl OpGen {
    pub fn new(
        spec: WorkloadSpec,
        chooser: KeyChooser,
        inserts: InsertCounter,
        rng: SmallRng,
    ) -> Self {
        OpGen {
            spec,
            chooser,
            inserts,
            rng,
            version: 0,
        }
    }

    pub fn next_op(&mut self) -> (OpKind, Request) {
        let kind = self.pick_kind();
        let request = match kind {
            OpKind::Read => Request::Get(self.existing_key()),
            OpKind::Update => {
                let key = self.existing_key();
                Request::Set(key, self.value())
            }
            OpKind::Insert => {
                let i = self.inserts.take();
                Request::Set(keys::key(KEY_PREFIX, i), self.value())
            }
            OpKind::Scan => {
                let count = self.rng.gen_range(1..=SCAN_LENGTH_MAX);
                Request::Scan(self.existing_key(), count)
            }
            OpKind::ReadModifyWrite => {
                let key = self.existing_key();
                Request::ReadModifyWrite(key, self.value())
            }
        };
        (kind, request)
    }

    fn pick_kind(&mut self) -> OpKind {
        let mix = self.spec.workload.mix();
        let mut roll = self.rng.gen_range(0..100u32);
        for &(kind, weight) in mix {
            if roll < weight {
                return kind;
            }
            roll -= weight;
        }
        // The weights sum to 100 (checked by a test), so the loop always returns.
        mix[mix.len() - 1].0
    }

    fn existing_key(&mut self) -> Vec<u8> {
        let i = self.chooser.next(&mut self.rng, self.inserts.latest());
        keys::key(KEY_PREFIX, i)
    }

    fn value(&mut self) -> Vec<u8> {
        self.version += 1;
        keys::value(self.rng.gen::<u64>() ^ self.version, self.spec.value_bytes)
    }
}

/// The records of the load phase: index `i` with its initial value.
pub fn record(i: u64, value_bytes: usize) -> (Vec<u8>, Vec<u8>) {
    (keys::key(KEY_PREFIX, i), keys::value(i, value_bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng;

    fn gen(workload: Workload) -> OpGen {
        let spec = WorkloadSpec {
            workload,
            distribution: workload.default_distribution(),
            key_count: 1000,
            record_count: 1000,
            value_bytes: 32,
        };
        let chooser = KeyChooser::new(spec.distribution, spec.key_count);
        OpGen::new(
            spec,
            chooser,
            InsertCounter::new(1000, 1),
            SmallRng::seed_from_u64(5),
        )
    }

    #[test]
    fn mixes_sum_to_one_hundred_and_are_followed() {
        for w in [
            Workload::A,
            Workload::B,
            Workload::C,
            Workload::D,
            Workload::E,
            Workload::F,
            Workload::Write,
        ] {
            assert_eq!(w.mix().iter().map(|m| m.1).sum::<u32>(), 100, "{w:?}");
            let mut g = gen(w);
            let mut counts = [0u32; 5];
            for _ in 0..20_000 {
                counts[g.next_op().0.index()] += 1;
            }
            for &(kind, weight) in w.mix() {
                let share = f64::from(counts[kind.index()]) / 200.0;
                assert!(
                    (share - f64::from(weight)).abs() < 2.0,
                    "{w:?} {kind:?} {share}"
                );
            }
        }
    }

    #[test]
    fn inserts_take_fresh_keys_and_values_have_the_size() {
        let mut g = gen(Workload::D);
        let mut inserted = std::collections::HashSet::new();
        for _ in 0..2_000 {
            match g.next_op() {
                (OpKind::Insert, Request::Set(k, v)) => {
                    assert_eq!(v.len(), 32);
                    assert!(inserted.insert(k));
                }
                (OpKind::Read, Request::Get(k)) => assert_eq!(k.len(), keys::KEY_BYTES),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(!inserted.is_empty());
        assert!(!inserted.contains(&keys::key(KEY_PREFIX, 999)));
    }
}
