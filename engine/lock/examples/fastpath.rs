//! Quick in-crate timing of the uncontended fast path (the same loop as `mantis-bench locks`,
//! without building the bench's dependencies): `cargo run --release -p mantis-lock --example
//! fastpath -- [txns] [locks_per_txn]`.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use mantis_lock::{Acquire, LockConfig, LockManager, LockMode, ResourceId, TxnId};

/// `arg` as a number, `default` when absent, `None` when it is not a number.
fn number_arg(arg: Option<String>, default: u64) -> Option<u64> {
    arg.map_or(Some(default), |a| a.parse().ok())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(txns), Some(per_txn)) =
        (number_arg(args.next(), 400_000), number_arg(args.next(), 1))
    else {
        eprintln!("usage: fastpath [txns] [locks_per_txn] (both whole numbers)");
        std::process::exit(2);
    };
    let m = LockManager::new(LockConfig::default());
    let run = |count: u64| {
        let started = Instant::now();
        for txn in 0..count {
            let id = TxnId(txn);
            for k in 0..per_txn {
                let r = ResourceId::Row {
                    database: 1,
                    table: 1,
                    key_hash: txn.wrapping_mul(per_txn) + k,
                };
                let granted = matches!(m.try_lock(id, r, LockMode::X), Ok(Acquire::Granted));
                assert!(granted, "uncontended lock waited");
            }
            black_box(m.end_txn(id));
        }
        started.elapsed()
    };
    run(txns / 10);
    for _ in 0..3 {
        let wall = run(txns);
        println!(
            "{per_txn} locks per txn: {:.1} ns per lock",
            wall.as_nanos() as f64 / (txns * per_txn) as f64
        );
    }
}
