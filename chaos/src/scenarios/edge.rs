//! Scenario 10: values of 1 to 10 MiB (checksummed, read back whole), TTLs from 24 hours to 1
//! year (PTTL checked), and TTL overflow rejected without writing anything; then a crash and
//! the same checks after recovery.

use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{count_writes, verify, Ctx, Scratch, CLIENT_TIMEOUT};
use crate::daemon::{Daemon, DaemonConfig};
use crate::error::Result;
use crate::model::{Loss, Outcome};
use crate::report::ScenarioReport;
use crate::resp::{Client, Reply};
use crate::value;
use crate::workload::{Shared, TTL_SECS_MAX, TTL_SECS_MIN};

pub fn run(ctx: &Ctx, seed: u64, values: u64) -> Result<ScenarioReport> {
    let mut rep = ScenarioReport::new("edge-cases", seed);
    let started = Instant::now();
    let scratch = Scratch::new(ctx, "edge", seed)?;
    let mut cfg = DaemonConfig::new(&ctx.mantisd, &scratch.data(), seed);
    cfg.wal_segment_bytes = 32 << 20;
    cfg.memtable_bytes = 32 << 20;
    let mut d = Daemon::new(cfg, &scratch.run())?;
    super::start_ready(&mut d, &mut rep)?;
    let shared = Shared::new();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut c = match Client::connect(d.resp, CLIENT_TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            rep.fail(format!("connect: {e}"));
            rep.finish(started);
            return Ok(rep);
        }
    };
    for i in 0..values {
        let key = format!("big:{i}").into_bytes();
        let size = rng.gen_range((1 << 20)..=(10 << 20));
        let ttl = rng.gen_range(TTL_SECS_MIN..=TTL_SECS_MAX);
        let version = i + 1;
        let val = value::encode(&key, version, true, size);
        shared.model().attempt(std::slice::from_ref(&key), version);
        match c.call(&[b"SET", &key, &val, b"EX", ttl.to_string().as_bytes()]) {
            Ok(r) if r.is_ok() => {
                shared
                    .model()
                    .resolve(std::slice::from_ref(&key), version, Outcome::Acked)
            }
            other => rep.fail(format!("SET of {size} bytes: {other:?}")),
        }
        match c.call(&[b"PTTL", &key]) {
            Ok(Reply::Int(ms))
                if ms > 0 && ms <= (ttl * 1000) as i64 && ms > (ttl as i64 - 60) * 1000 => {}
            other => rep.fail(format!("PTTL after SET EX {ttl}: {other:?}")),
        }
    }
    verify(&d, &shared, Loss::Forbidden, &mut rep);
    for (what, args) in [
        (
            "EX overflow",
            vec!["SET", "ovf", "x", "EX", "9223372036854775807"],
        ),
        (
            "EX past year 9999",
            vec!["SET", "ovf", "x", "EX", "300000000000"],
        ),
        (
            "EXAT past year 9999",
            vec!["SET", "ovf", "x", "EXAT", "253402300800"],
        ),
        (
            "PX overflow",
            vec!["SET", "ovf", "x", "PX", "9223372036854775807"],
        ),
        (
            "EXPIRE overflow",
            vec!["EXPIRE", "big:0", "9223372036854775807"],
        ),
    ] {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        rep.faults_injected += 1;
        match c.call(&a) {
            Ok(Reply::Error(e)) if e.contains("invalid expire time") => rep.faults_detected += 1,
            other => rep.fail(format!(
                "{what} not rejected as invalid expire time: {other:?}"
            )),
        }
    }
    // Nothing of the rejected commands was written ("ovf" would be an unknown key), and the
    // TTL of big:0 is unchanged (the verify checks PTTL > 0).
    drop(c);
    d.kill()?;
    super::start_ready(&mut d, &mut rep)?;
    rep.iterations += 1;
    verify(&d, &shared, Loss::Forbidden, &mut rep);
    d.stop()?;
    count_writes(&shared, &mut rep);
    rep.finish(started);
    Ok(rep)
}
