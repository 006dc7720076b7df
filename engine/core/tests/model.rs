//! Model-based test: random sequences of put / get / delete / scan / TTL / flush / compact /
//! restart / crash against a `BTreeMap`, checked after every step. Every operation is awaited
//! before the next, so each was acknowledged: after a crash the engine must hold exactly the
//! model's state.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{block_on, open, sim_config};
use mantis_engine::{now_ms, BatchOp, ScanRange};
use mantis_storage::SimStorage;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u16),
    PutTtlLong(u8, u16),
    PutExpired(u8),
    Delete(u8),
    Batch(Vec<(u8, Option<u16>)>),
    Get(u8),
    ScanPrefix(u8),
    Flush,
    Compact,
    Restart,
    Crash,
}

fn key(k: u8) -> Vec<u8> {
    // Keys share prefixes so that prefix scans select subsets.
    format!("k{}:{:03}", k % 4, k).into_bytes()
}

fn value(k: u8, v: u16) -> Vec<u8> {
    // Values of varied size, some larger than a block.
    let len = (v as usize * 37) % 3000;
    let mut out = format!("v{k}-{v}-").into_bytes();
    out.resize(out.len() + len, b'x');
    out
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..40, any::<u16>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..40, any::<u16>()).prop_map(|(k, v)| Op::PutTtlLong(k, v)),
        1 => (0u8..40).prop_map(Op::PutExpired),
        3 => (0u8..40).prop_map(Op::Delete),
        2 => proptest::collection::vec((0u8..40, proptest::option::of(any::<u16>())), 1..6).prop_map(Op::Batch),
        6 => (0u8..40).prop_map(Op::Get),
        2 => (0u8..4).prop_map(Op::ScanPrefix),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Restart),
        1 => Just(Op::Crash),
    ]
}

fn check_all(
    h: &mantis_engine::EngineHandle,
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
    seed: u64,
    step: usize,
) {
    let all = block_on(h.scan(ScanRange::all(), 10_000)).unwrap();
    let got: BTreeMap<Vec<u8>, Vec<u8>> = all.into_iter().map(|(k, e)| (k, e.value)).collect();
    assert_eq!(
        &got, model,
        "seed {seed} step {step}: full scan differs from the model"
    );
}

fn run(seed: u64, ops: Vec<Op>) {
    let sim = SimStorage::new(seed);
    let cfg = sim_config(&sim, 2);
    let mut engine = open(&cfg);
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (step, op) in ops.into_iter().enumerate() {
        let h = engine.handle();
        match op {
            Op::Put(k, v) => {
                block_on(h.put(key(k), value(k, v), None)).unwrap();
                model.insert(key(k), value(k, v));
            }
            Op::PutTtlLong(k, v) => {
                block_on(h.put(
                    key(k),
                    value(k, v),
                    Some(Duration::from_secs(365 * 24 * 3600)),
                ))
                .unwrap();
                model.insert(key(k), value(k, v));
            }
            Op::PutExpired(k) => {
                block_on(h.put_expiring_at(key(k), b"gone".to_vec(), Some(now_ms() - 1))).unwrap();
                model.remove(&key(k));
            }
            Op::Delete(k) => {
                let existed = block_on(h.delete(key(k))).unwrap();
                assert_eq!(
                    existed,
                    model.remove(&key(k)).is_some(),
                    "seed {seed} step {step}: delete result"
                );
            }
            Op::Batch(items) => {
                let mut ops = Vec::new();
                let mut next = model.clone();
                for (k, v) in items {
                    match v {
                        Some(v) => {
                            ops.push(BatchOp::Put {
                                key: key(k),
                                value: value(k, v),
                                expires_at_ms: None,
                            });
                            next.insert(key(k), value(k, v));
                        }
                        None => {
                            ops.push(BatchOp::Delete { key: key(k) });
                            next.remove(&key(k));
                        }
                    }
                }
                block_on(h.write_batch(ops)).unwrap();
                model = next;
            }
            Op::Get(k) => {
                let got = block_on(h.get(&key(k))).unwrap();
                assert_eq!(
                    got.as_ref(),
                    model.get(&key(k)),
                    "seed {seed} step {step}: get {k}"
                );
            }
            Op::ScanPrefix(p) => {
                let prefix = format!("k{p}:").into_bytes();
                let got: Vec<Vec<u8>> = block_on(h.scan(ScanRange::prefix(&prefix), 1000))
                    .unwrap()
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                let want: Vec<Vec<u8>> = model
                    .keys()
                    .filter(|k| k.starts_with(&prefix))
                    .cloned()
                    .collect();
                assert_eq!(got, want, "seed {seed} step {step}: prefix scan");
            }
            Op::Flush => block_on(h.flush()).unwrap(),
            Op::Compact => block_on(h.compact()).unwrap(),
            Op::Restart => {
                engine.shutdown().unwrap();
                engine = open(&cfg);
            }
            Op::Crash => {
                engine.abandon();
                sim.crash();
                engine = open(&cfg);
            }
        }
        if step % 16 == 0 {
            check_all(&engine.handle(), &model, seed, step);
        }
    }
    check_all(&engine.handle(), &model, seed, usize::MAX);
    engine.shutdown().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn engine_agrees_with_model(seed in any::<u64>(), ops in proptest::collection::vec(op(), 1..300)) {
        run(seed, ops);
    }
}

#[test]
fn long_run_with_many_flushes_and_compactions() {
    // A deterministic long sequence: thousands of writes through a 32 KiB memtable.
    let mut ops = Vec::new();
    for i in 0..3000u32 {
        let k = (i * 7919 % 40) as u8;
        ops.push(match i % 50 {
            0 => Op::Crash,
            25 => Op::Restart,
            7 | 17 => Op::Delete(k),
            _ => Op::Put(k, i as u16),
        });
    }
    run(42, ops);
}

/// Regression: the benchmark found that an explicit `compact()` while the background
/// compactor was merging panicked ("compaction run is not contiguous"): both picked runs from
/// the same list. Writers, flushes and explicit compactions now run side by side.
#[test]
fn explicit_compactions_race_background_ones() {
    use std::sync::Arc;
    let sim = SimStorage::new(77);
    let cfg = sim_config(&sim, 2);
    let engine = open(&cfg);
    let h = engine.handle();
    let writers: Vec<_> = (0..3u8)
        .map(|w| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..1500u16 {
                    block_on(h.put(key(w * 40 + (i % 40) as u8), value(w, i), None)).unwrap();
                }
            })
        })
        .collect();
    let compactor = {
        let h = h.clone();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        (
            std::thread::spawn(move || {
                while !d.load(std::sync::atomic::Ordering::Relaxed) {
                    block_on(h.compact()).unwrap();
                    block_on(h.flush()).unwrap();
                }
            }),
            done,
        )
    };
    for w in writers {
        w.join().unwrap();
    }
    compactor
        .1
        .store(true, std::sync::atomic::Ordering::Relaxed);
    compactor.0.join().unwrap();
    for w in 0..3u8 {
        for k in 0..40u8 {
            let last = (0..1500u16).rev().find(|i| (i % 40) as u8 == k).unwrap();
            let got = block_on(h.get(&key(w * 40 + k))).unwrap();
            assert_eq!(got, Some(value(w, last)), "writer {w} key {k}");
        }
    }
    engine.shutdown().unwrap();
}
