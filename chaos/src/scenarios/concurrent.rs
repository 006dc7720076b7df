//! Scenario 9: many clients (10 to 500) writing the same few keys. Every final value must be
//! one some client wrote and had acknowledged, untorn, and not stale: no write that was sent
//! only after the final value's write was acknowledged can have been lost under it. The same
//! values must be there after a SIGKILL and restart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{Ctx, Scratch, CLIENT_TIMEOUT};
use crate::daemon::{Daemon, DaemonConfig};
use crate::error::Result;
use crate::report::ScenarioReport;
use crate::resp::{Client, Reply};
use crate::value;

#[derive(Debug, Clone, Copy)]
struct Write {
    sent: Instant,
    acked: Option<Instant>,
}

type Log = Arc<Mutex<BTreeMap<Vec<u8>, BTreeMap<u64, Write>>>>;

pub fn run(
    ctx: &Ctx,
    seed: u64,
    clients: usize,
    keys: usize,
    ops_per_client: usize,
) -> Result<ScenarioReport> {
    let mut rep = ScenarioReport::new("concurrent-writers", seed);
    let started = Instant::now();
    let scratch = Scratch::new(ctx, "concurrent", seed)?;
    let mut d = Daemon::new(
        DaemonConfig::new(&ctx.mantisd, &scratch.data(), seed),
        &scratch.run(),
    )?;
    super::start_ready(&mut d, &mut rep)?;
    let log: Log = Arc::default();
    let addr = d.resp;
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || client(addr, seed, c, keys, ops_per_client, &log))
        })
        .collect();
    let mut errors = 0u64;
    for h in handles {
        errors += h.join().unwrap_or(1);
    }
    if errors > 0 {
        rep.fail(format!(
            "{errors} client operations failed (connection or error reply)"
        ));
    }
    let log = log.lock().unwrap_or_else(PoisonError::into_inner).clone();
    rep.writes_attempted = log.values().map(|m| m.len() as u64).sum();
    rep.writes_acknowledged = log
        .values()
        .flat_map(|m| m.values())
        .filter(|w| w.acked.is_some())
        .count() as u64;
    let before = check(&d, &log, &mut rep);
    d.kill()?;
    rep.faults_injected += 1;
    super::start_ready(&mut d, &mut rep)?;
    rep.iterations += 1;
    let after = check(&d, &log, &mut rep);
    if before != after {
        rep.verdict.acked_lost += 1;
        rep.fail(format!(
            "values changed across a crash with nothing in flight: {before:?} → {after:?}"
        ));
    }
    d.stop()?;
    rep.note(format!(
        "{clients} clients × {ops_per_client} SETs on {keys} keys"
    ));
    rep.finish(started);
    Ok(rep)
}

fn client(
    addr: std::net::SocketAddr,
    seed: u64,
    c: usize,
    keys: usize,
    ops: usize,
    log: &Log,
) -> u64 {
    let Ok(mut conn) = Client::connect(addr, CLIENT_TIMEOUT) else {
        return ops as u64;
    };
    let mut rng = SmallRng::seed_from_u64(seed ^ (c as u64) << 16);
    let mut errors = 0;
    for n in 0..ops {
        let key = format!("hot:{}", rng.gen_range(0..keys)).into_bytes();
        let version = ((c as u64) << 32) | n as u64;
        let val = value::encode(&key, version, false, rng.gen_range(0..2000));
        let sent = Instant::now();
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .insert(version, Write { sent, acked: None });
        match conn.call(&[b"SET", &key, &val]) {
            Ok(r) if r.is_ok() => {
                let mut l = log.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(w) = l.get_mut(&key).and_then(|m| m.get_mut(&version)) {
                    w.acked = Some(Instant::now());
                }
            }
            _ => errors += 1,
        }
    }
    errors
}

/// Reads every hot key and checks it; returns the versions found.
fn check(
    d: &Daemon,
    log: &BTreeMap<Vec<u8>, BTreeMap<u64, Write>>,
    rep: &mut ScenarioReport,
) -> Vec<Option<u64>> {
    let mut found = Vec::new();
    let Ok(mut c) = Client::connect(d.resp, CLIENT_TIMEOUT) else {
        rep.fail("cannot connect to verify");
        return found;
    };
    for (key, writes) in log {
        rep.verdict.keys_checked += 1;
        let v = match c.call(&[b"GET", key]) {
            Ok(Reply::Bulk(Some(v))) => v,
            other => {
                rep.verdict.acked_lost += 1;
                rep.fail(format!(
                    "key {} read {other:?}",
                    String::from_utf8_lossy(key)
                ));
                found.push(None);
                continue;
            }
        };
        let version = match value::decode(key, &v) {
            Ok(dv) => dv.version,
            Err(why) => {
                rep.verdict.torn_values += 1;
                rep.fail(format!("key {} torn: {why}", String::from_utf8_lossy(key)));
                found.push(None);
                continue;
            }
        };
        found.push(Some(version));
        let Some(w) = writes.get(&version) else {
            rep.verdict.wrong_values += 1;
            rep.fail(format!(
                "key {} holds version {version:#x} nobody wrote",
                String::from_utf8_lossy(key)
            ));
            continue;
        };
        let Some(acked) = w.acked else {
            rep.verdict.wrong_values += 1;
            rep.fail(format!(
                "key {} holds unacknowledged version {version:#x}",
                String::from_utf8_lossy(key)
            ));
            continue;
        };
        if let Some((later, _)) = writes
            .iter()
            .find(|(_, o)| o.sent > acked && o.acked.is_some())
        {
            rep.verdict.acked_lost += 1;
            rep.fail(format!(
                "key {} holds version {version:#x}, but version {later:#x} was sent after it was acknowledged and acknowledged too: lost",
                String::from_utf8_lossy(key)
            ));
        }
    }
    found
}
