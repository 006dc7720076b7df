//! Scenario 8: clients reset (RST) mid-pipeline and mid-batch. Each round pipelines complete
//! MSETs (one shard and cross-shard) then a frame of a further MSET cut at a random byte, and
//! resets the connection, sometimes after reading part of the replies. Afterwards: acknowledged
//! MSETs are fully there, every MSET is all-or-nothing per shard (mantisd's documented
//! guarantee), and no key of the cut frame exists.

use std::collections::BTreeMap;
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{count_writes, verify, Ctx, Scratch, CLIENT_TIMEOUT};
use crate::daemon::{Daemon, DaemonConfig};
use crate::error::Result;
use crate::model::{Loss, Outcome};
use crate::report::ScenarioReport;
use crate::resp::{encode, Client};
use crate::value;
use crate::workload::Shared;

pub fn run(ctx: &Ctx, seed: u64, iterations: u64) -> Result<ScenarioReport> {
    let mut rep = ScenarioReport::new("client-faults", seed);
    let started = Instant::now();
    let scratch = Scratch::new(ctx, "client", seed)?;
    let mut d = Daemon::new(
        DaemonConfig::new(&ctx.mantisd, &scratch.data(), seed),
        &scratch.run(),
    )?;
    super::start_ready(&mut d, &mut rep)?;
    let shared = Shared::new();
    let mut rng = SmallRng::seed_from_u64(seed);
    let shards = d.cfg.shards;
    for i in 0..iterations {
        let Ok(mut c) = Client::connect(d.resp, CLIENT_TIMEOUT) else {
            rep.fail(format!("round {i}: cannot connect"));
            break;
        };
        let mut wire = Vec::new();
        let mut sent: Vec<(u64, Vec<Vec<u8>>)> = Vec::new();
        for b in 0..rng.gen_range(1..=6) {
            let version = shared
                .version
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let keys: Vec<Vec<u8>> = (0..rng.gen_range(2..=8))
                .map(|n| format!("cf:{i}:{b}:{n}").into_bytes())
                .collect();
            let size = rng.gen_range(0..6000);
            let mut args: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
            for k in &keys {
                args.push(k.clone());
                args.push(value::encode(k, version, false, size));
            }
            let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            encode(&refs, &mut wire);
            let mut by_shard: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
            for k in &keys {
                by_shard
                    .entry(value::shard_of(k, shards))
                    .or_default()
                    .push(k.clone());
            }
            for group in by_shard.values() {
                shared.model().attempt(group, version);
            }
            sent.push((version, keys));
        }
        // The frame that is cut: its keys are never registered, so any of them found is an
        // unknown key.
        let mut cut = Vec::new();
        let ck: Vec<Vec<u8>> = (0..4)
            .map(|n| format!("cut:{i}:{n}").into_bytes())
            .collect();
        let mut args: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
        for k in &ck {
            args.push(k.clone());
            args.push(value::encode(k, 0, false, 3000));
        }
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        encode(&refs, &mut cut);
        let cut_at = rng.gen_range(1..cut.len() - 1);
        wire.extend_from_slice(&cut[..cut_at]);
        if c.send_raw(&wire).is_err() {
            rep.fail(format!("round {i}: send failed"));
            break;
        }
        let read = rng.gen_range(0..=sent.len());
        for (version, keys) in sent.iter().take(read) {
            match c.read_reply() {
                Ok(r) if r.is_ok() => shared.model().resolve(keys, *version, Outcome::Acked),
                Ok(r) => rep.fail(format!("round {i}: MSET answered {}", r.describe())),
                Err(e) => rep.fail(format!("round {i}: reply lost before the reset: {e}")),
            }
        }
        let _ = socket2::SockRef::from(c.socket()).set_linger(Some(std::time::Duration::ZERO));
        drop(c);
        rep.faults_injected += 1;
        rep.iterations += 1;
        if i % 10 == 9 || i + 1 == iterations {
            super::wait_connections_closed(&d, &mut rep);
            verify(&d, &shared, Loss::Forbidden, &mut rep);
        }
    }
    // And after a crash.
    d.kill()?;
    super::start_ready(&mut d, &mut rep)?;
    verify(&d, &shared, Loss::Forbidden, &mut rep);
    d.stop()?;
    count_writes(&shared, &mut rep);
    rep.finish(started);
    Ok(rep)
}
