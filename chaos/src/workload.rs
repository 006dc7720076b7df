//! The mixed write load: several connections, each owning its own keys, sending SET, SET EX
//! (24 h to 1 year) and single-shard MSET batches, one at a time, recording every attempt and
//! its outcome in the shared model. A writer stops at the first connection error (the daemon
//! was killed under it): its last write stays "unknown".

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::model::{Model, Outcome};
use crate::resp::{Client, Reply};
use crate::value;

pub const TTL_SECS_MIN: u64 = 24 * 3600;
pub const TTL_SECS_MAX: u64 = 365 * 24 * 3600;
/// Distinct error replies remembered (by their first word).
const ERROR_KINDS_MAX: usize = 32;

#[derive(Debug, Clone)]
pub struct Load {
    pub writers: usize,
    pub keys_per_writer: usize,
    pub shards: usize,
    pub value_bytes_max: usize,
    pub seed: u64,
}

#[derive(Default)]
pub struct Shared {
    pub model: Mutex<Model>,
    pub version: AtomicU64,
    pub stop: AtomicBool,
    pub error_replies: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            version: AtomicU64::new(1),
            ..Shared::default()
        })
    }

    pub fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count_error(&self, e: &str) {
        let kind = e.split(' ').next().unwrap_or("").to_string();
        let mut m = self
            .error_replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if m.len() < ERROR_KINDS_MAX || m.contains_key(&kind) {
            *m.entry(kind).or_default() += 1;
        }
    }

    pub fn errors_of(&self, kind: &str) -> u64 {
        let m = self
            .error_replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        m.get(kind).copied().unwrap_or(0)
    }
}

pub fn key(writer: usize, n: usize) -> Vec<u8> {
    format!("w{writer:03}:k{n:04}").into_bytes()
}

/// Starts the writers; join the handles after setting `shared.stop` or killing the daemon.
pub fn start(
    addr: SocketAddr,
    load: &Load,
    round: u64,
    shared: &Arc<Shared>,
) -> Vec<JoinHandle<()>> {
    (0..load.writers)
        .map(|w| {
            let load = load.clone();
            let shared = Arc::clone(shared);
            std::thread::spawn(move || writer(addr, &load, w, round, &shared))
        })
        .collect()
}

fn writer(addr: SocketAddr, load: &Load, w: usize, round: u64, shared: &Shared) {
    let Ok(mut client) = Client::connect(addr, Duration::from_secs(30)) else {
        return;
    };
    let mut rng =
        SmallRng::seed_from_u64(load.seed ^ (round << 20) ^ (w as u64).wrapping_mul(0x9e37_79b9));
    let keys: Vec<Vec<u8>> = (0..load.keys_per_writer).map(|n| key(w, n)).collect();
    let mut by_shard: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
    for k in &keys {
        by_shard
            .entry(value::shard_of(k, load.shards))
            .or_default()
            .push(k.clone());
    }
    let groups: Vec<Vec<Vec<u8>>> = by_shard.into_values().filter(|g| g.len() >= 2).collect();
    while !shared.stop.load(Ordering::Relaxed) {
        let version = shared.version.fetch_add(1, Ordering::Relaxed);
        let roll: f64 = rng.gen();
        let size = if rng.gen_bool(0.05) {
            rng.gen_range(0..=load.value_bytes_max)
        } else {
            rng.gen_range(0..=load.value_bytes_max.min(512))
        };
        let (batch_keys, cmd) = if roll < 0.2 && !groups.is_empty() {
            let g = &groups[rng.gen_range(0..groups.len())];
            let n = rng.gen_range(2..=g.len().min(6));
            let start = rng.gen_range(0..=g.len() - n);
            let ks: Vec<Vec<u8>> = g[start..start + n].to_vec();
            let mut cmd = vec![b"MSET".to_vec()];
            for k in &ks {
                cmd.push(k.clone());
                cmd.push(value::encode(k, version, false, size));
            }
            (ks, cmd)
        } else {
            let k = keys[rng.gen_range(0..keys.len())].clone();
            let ttl = roll < 0.45;
            let mut cmd = vec![
                b"SET".to_vec(),
                k.clone(),
                value::encode(&k, version, ttl, size),
            ];
            if ttl {
                cmd.push(b"EX".to_vec());
                cmd.push(
                    rng.gen_range(TTL_SECS_MIN..=TTL_SECS_MAX)
                        .to_string()
                        .into_bytes(),
                );
            }
            (vec![k], cmd)
        };
        shared.model().attempt(&batch_keys, version);
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
        match client.call(&args) {
            Ok(r) if r.is_ok() => shared.model().resolve(&batch_keys, version, Outcome::Acked),
            Ok(Reply::Error(e)) => {
                shared.count_error(&e);
                shared
                    .model()
                    .resolve(&batch_keys, version, Outcome::Refused);
            }
            Ok(other) => {
                shared.count_error(&format!("UNEXPECTED {}", other.describe()));
                return;
            }
            Err(_) => return,
        }
    }
}

/// Joins writers (they end when the daemon dies or `stop` is set).
pub fn join(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.join();
    }
}
