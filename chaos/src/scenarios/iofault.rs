//! Scenario 7: I/O errors and power loss, with the data directory on the fault filesystem
//! ([`crate::faultfs`]).
//!
//! - `fsync failure` (once per run): under load, every fdatasync of a WAL file fails with EIO
//!   (and the device loses what it had not persisted). The shard must turn read-only with the
//!   error surfaced: writes get an error reply, and keep getting one after the disk heals (no
//!   retry-and-forget), reads go on and verify, and after a kill and restart nothing
//!   acknowledged is lost.
//! - `power cut` (every iteration): load, SIGKILL at a random moment, then the filesystem
//!   drops (even iterations) or tears (odd: a random subset of sectors survives) everything
//!   written since each file's last fsync; restart on a fresh mount and verify: nothing
//!   acknowledged may be lost, nothing torn or never written may appear. Every fourth
//!   iteration runs its load with random I/O delays armed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{count_writes, ms, start, start_ready, verify, wait_for, Ctx, Scratch, CLIENT_TIMEOUT};
use crate::daemon::{Daemon, DaemonConfig, Start};
use crate::error::{io_err, Result};
use crate::faultfs::{CutMode, FaultMount, Faults};
use crate::model::{Loss, Outcome};
use crate::report::ScenarioReport;
use crate::resp::{Client, Reply};
use crate::value;
use crate::workload::{self, Load, Shared};

/// How long the harness waits for an event (acknowledgments, the first error reply).
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Acknowledged writes wanted before the fsync fault is armed.
const ACKED_BEFORE_FAULT: u64 = 50;

#[derive(Debug, Clone)]
pub struct IoFaultOpts {
    pub seed: u64,
    /// Power-cut iterations.
    pub iterations: u64,
    /// Longest load phase before a cut, in ms.
    pub load_ms_max: u64,
    /// Run the fsync-failure cycle too.
    pub fsync_failure: bool,
}

pub fn run(ctx: &Ctx, o: &IoFaultOpts) -> Result<ScenarioReport> {
    let mut rep = ScenarioReport::new("io-faults-power-cut", o.seed);
    let started = Instant::now();
    let scratch = Scratch::new(ctx, "iofault", o.seed)?;
    let (backing, mnt) = (scratch.path.join("backing"), scratch.path.join("mnt"));
    for dir in [&backing, &mnt] {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let mut fm = match FaultMount::mount(&backing, &mnt, o.seed) {
        Ok(fm) => fm,
        Err(e) => {
            rep.host_limits.push(format!("no FUSE mount: {e}"));
            rep.fail("the fault filesystem could not be mounted on this host");
            rep.finish(started);
            return Ok(rep);
        }
    };
    let mut cfg = DaemonConfig::new(&ctx.mantisd, &mnt.join("data"), o.seed);
    // A small memtable and WAL segment: flushes, segment rolls and manifest writes are in
    // flight at many cuts, not only WAL appends.
    cfg.memtable_bytes = 256 << 10;
    cfg.wal_segment_bytes = 1 << 20;
    let mut d = Daemon::new(cfg, &scratch.run())?;
    start_ready(&mut d, &mut rep)?;
    let load = Load {
        writers: 4,
        keys_per_writer: 48,
        shards: d.cfg.shards,
        value_bytes_max: 12 << 10,
        seed: o.seed,
    };
    let shared = Shared::new();
    if o.fsync_failure {
        fsync_failure_cycle(&mut d, &mut fm, &load, &shared, &mut rep)?;
    }
    let mut rng = SmallRng::seed_from_u64(o.seed ^ 0x7007);
    for i in 0..o.iterations {
        if !rep.failures.is_empty() {
            break;
        }
        if i % 4 == 3 {
            fm.set_faults(Faults {
                delay_us_max: 2000,
                ..Faults::default()
            });
        }
        shared.stop.store(false, Ordering::Relaxed);
        let handles = workload::start(d.resp, &load, 1000 + i, &shared);
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..=o.load_ms_max)));
        if !d.alive() {
            rep.fail(format!(
                "iteration {i}: mantisd died under load: {}",
                d.log_tail()
            ));
            workload::join(handles);
            break;
        }
        d.kill()?;
        workload::join(handles);
        let mode = if i % 2 == 0 {
            CutMode::Drop
        } else {
            CutMode::Tear
        };
        fm.power_cut(mode)?;
        rep.faults_injected += 1;
        if !restart_and_verify(&mut d, &shared, &mut rep, &format!("cut {i} ({mode:?})")) {
            break;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    if d.alive() {
        d.stop()?;
    }
    let s = fm.stats();
    rep.note(format!(
        "faultfs: {} power cuts; unsynced operations dropped {}, kept {}, torn {} ({} bytes lost); {} syncs, {} failed by injection; {} delayed requests; {} requests of a dead mount refused",
        s.power_cuts, s.cut_ops_dropped, s.cut_ops_kept, s.cut_ops_torn, s.cut_bytes_dropped,
        s.syncs, s.sync_failures_injected, s.delays_injected, s.stale_requests_refused
    ));
    drop(d);
    drop(fm);
    count_writes(&shared, &mut rep);
    rep.finish(started);
    Ok(rep)
}

/// Starts the daemon after a cut and verifies; false when the run cannot go on.
fn restart_and_verify(
    d: &mut Daemon,
    shared: &Arc<Shared>,
    rep: &mut ScenarioReport,
    what: &str,
) -> bool {
    match start(d, rep) {
        Ok(Start::Ready { recovery }) => rep.recovery_ms.push(ms(recovery)),
        Ok(Start::Refused { status, log_tail }) => {
            rep.fail(format!(
                "{what}: mantisd refused to start after a power cut ({status}): {log_tail}"
            ));
            return false;
        }
        Err(e) => {
            rep.fail(format!("{what}: {e}"));
            return false;
        }
    }
    rep.iterations += 1;
    verify(d, shared, Loss::Forbidden, rep)
}

/// The fsync-failure cycle (see the module comment).
fn fsync_failure_cycle(
    d: &mut Daemon,
    fm: &mut FaultMount,
    load: &Load,
    shared: &Arc<Shared>,
    rep: &mut ScenarioReport,
) -> Result<()> {
    let handles = workload::start(d.resp, load, 0, shared);
    let acked = wait_for(EVENT_TIMEOUT, || {
        shared.model().writes_acked >= ACKED_BEFORE_FAULT || !d.alive()
    });
    fm.set_faults(Faults {
        sync_fail_probability: 1.0,
        path_filter: "wal".into(),
        ..Faults::default()
    });
    rep.faults_injected += 1;
    let refused_before = shared.model().writes_refused;
    let errored = wait_for(EVENT_TIMEOUT, || {
        shared.model().writes_refused > refused_before || !d.alive()
    });
    // The disk heals; a daemon that retried the sync and forgot the failure would now
    // acknowledge writes again.
    fm.set_faults(Faults::default());
    shared.stop.store(true, Ordering::Relaxed);
    workload::join(handles);
    if !acked || !errored {
        rep.fail(format!(
            "fsync failure: no {} (acked {}, refused {})",
            if acked {
                "error reply"
            } else {
                "acknowledgments"
            },
            shared.model().writes_acked,
            shared.model().writes_refused
        ));
        return Ok(());
    }
    if !d.alive() {
        rep.fail(format!(
            "fsync failure: mantisd exited instead of turning read-only: {}",
            d.log_tail()
        ));
        return Ok(());
    }
    rep.faults_detected += 1;
    let errors = shared
        .error_replies
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    rep.note(format!(
        "fsync failure: error replies under load by kind: {errors:?}"
    ));
    let failed_shards = probe_writes(d, shared, rep);
    if failed_shards == 0 {
        rep.fail("fsync failure: after the disk healed every shard accepted writes again (retry-and-forget)");
    }
    // Reads go on, and show nothing that was refused.
    verify(d, shared, Loss::Forbidden, rep);
    match d.http_get("/health") {
        Ok((code, body)) => rep.note(format!(
            "fsync failure: /health {code} {}",
            body.chars().take(200).collect::<String>()
        )),
        Err(e) => rep.fail(format!("fsync failure: /health unreachable: {e}")),
    }
    d.kill()?;
    fm.power_cut(CutMode::Drop)?;
    if !restart_and_verify(d, shared, rep, "fsync failure restart") {
        return Ok(());
    }
    if probe_writes(d, shared, rep) != 0 {
        rep.fail("fsync failure: writes still refused after a restart on a healed disk");
    }
    Ok(())
}

/// One SET per shard (a key routed to it), recorded in the model; returns how many shards
/// refused. The error text goes into the report.
fn probe_writes(d: &Daemon, shared: &Shared, rep: &mut ScenarioReport) -> usize {
    let mut refused = 0;
    let mut client = match Client::connect(d.resp, CLIENT_TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            rep.fail(format!("probe: cannot connect: {e}"));
            return 0;
        }
    };
    for shard in 0..d.cfg.shards {
        let Some(key) = (0..10_000)
            .map(|n| format!("w998:probe{n}").into_bytes())
            .find(|k| value::shard_of(k, d.cfg.shards) == shard)
        else {
            continue;
        };
        let version = shared.version.fetch_add(1, Ordering::Relaxed);
        let keys = std::slice::from_ref(&key);
        shared.model().attempt(keys, version);
        let val = value::encode(&key, version, false, 64);
        match client.call(&[b"SET", &key, &val]) {
            Ok(r) if r.is_ok() => shared.model().resolve(keys, version, Outcome::Acked),
            Ok(Reply::Error(e)) => {
                shared.model().resolve(keys, version, Outcome::Refused);
                rep.note(format!("probe write to shard {shard} refused: {e}"));
                refused += 1;
            }
            Ok(other) => {
                rep.fail(format!(
                    "probe write to shard {shard}: unexpected reply {}",
                    other.describe()
                ));
            }
            Err(e) => {
                rep.fail(format!("probe write to shard {shard}: {e}"));
                return refused;
            }
        }
    }
    refused
}
