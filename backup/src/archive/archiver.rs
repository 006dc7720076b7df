//! The archiver: one std thread (uploads block; never on a shard) that, every tick of the
//! RPO level, reads each shard's durable-but-unarchived WAL chunks, ships them as a piece
//! when the oldest is `ship_after_ms` old (or the piece is full), publishes the archived
//! LSN to the shard's gate (which releases the WAL segments for recycling), and measures the
//! exposure: the age of the oldest committed write not yet archived.
//!
//! A failed upload is retried at the next tick; nothing is dropped. The WAL keeps every
//! segment holding unarchived records, so a destination that stays away makes the WAL grow:
//! past `backlog_bytes_max` the status says so (`backlog_over_max`, its own alert) but the
//! data stays — dropping it would silently turn an RPO breach into data loss.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mantis_wal::ArchiveGate;
use serde::Serialize;

use super::dest_health::DestinationHealth;
use super::piece::{encode_piece, piece_object};
use super::reader::{held_bytes, read_pending, Cursor, Pending};
use super::rpo::{Compliance, RpoLevel};
use crate::dest::Destination;

pub const PIECE_BYTES_MAX_DEFAULT: usize = 16 << 20;
pub const BACKLOG_BYTES_MAX_DEFAULT: u64 = 4 << 30;
/// With nothing to upload for this long, the archiver probes the destination (issue 8: an
/// idle daemon still notices a destination that went away).
pub const PROBE_INTERVAL_MS_DEFAULT: u64 = 5_000;
/// What the probe asks for: an object nobody writes, so "not found" means "answering".
pub const PROBE_OBJECT: &str = "wal/probe";

#[derive(Debug, Clone)]
pub struct ArchiverConfig {
    pub level: RpoLevel,
    /// Raw WAL bytes in one piece at most (a larger backlog goes as several pieces).
    pub piece_bytes_max: usize,
    /// WAL bytes kept for the archiver beyond which the backlog is reported over its limit.
    pub backlog_bytes_max: u64,
    /// Overrides the level's tick (tests, measurements).
    pub tick_ms: Option<u64>,
    /// Probe the destination after this long without an upload attempt.
    pub probe_interval_ms: u64,
}

impl ArchiverConfig {
    pub fn new(level: RpoLevel) -> ArchiverConfig {
        ArchiverConfig {
            level,
            piece_bytes_max: PIECE_BYTES_MAX_DEFAULT,
            backlog_bytes_max: BACKLOG_BYTES_MAX_DEFAULT,
            tick_ms: None,
            probe_interval_ms: PROBE_INTERVAL_MS_DEFAULT,
        }
    }
}

/// One shard as the archiver sees it.
pub struct ShardLink {
    pub gate: Arc<ArchiveGate>,
    pub wal_dir: PathBuf,
}

/// One shard's archiving state, as reported.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShardRpo {
    pub shard: usize,
    pub exposure_ms: u64,
    /// Commit time (or first sighting) of the oldest record not archived yet: the exposure
    /// is measured from here whenever the status is read, so it keeps growing while an
    /// upload hangs.
    pub oldest_unarchived_at_ms: Option<u64>,
    pub compliant: bool,
    pub durable_lsn: u64,
    pub archived_lsn: u64,
    /// Bytes of WAL segment files kept because they hold unarchived records.
    pub backlog_bytes: u64,
    pub pieces_archived: u64,
    pub bytes_archived: u64,
    pub upload_failures: u64,
    pub last_archived_at_ms: Option<u64>,
    pub last_error: Option<String>,
    /// The archive misses LSNs from here (recycled before archiving started).
    pub gap_from_lsn: Option<u64>,
}

/// What `GET /api/v1/rpo` answers.
#[derive(Debug, Clone, Serialize)]
pub struct RpoStatus {
    pub level: RpoLevel,
    pub target_ms: u64,
    pub destination: String,
    /// "compliant" or "breached".
    pub state: &'static str,
    pub exposure_max_ms: u64,
    pub backlog_over_max: bool,
    pub shards: Vec<ShardRpo>,
    pub compliance: Compliance,
    /// Issue 8: the archive destination as `/health` reports it.
    pub destination_health: DestinationHealth,
}

impl RpoStatus {
    /// Re-measures the exposure at `now_ms` from each shard's oldest unarchived record and
    /// records it in the compliance history: the status stays current even while the
    /// archiver thread waits on a hung upload.
    fn refresh(&mut self, now_ms: u64) {
        for sh in &mut self.shards {
            if let Some(from) = sh.oldest_unarchived_at_ms {
                sh.exposure_ms = sh.exposure_ms.max(now_ms.saturating_sub(from));
                sh.compliant = sh.exposure_ms < self.target_ms;
            }
        }
        self.exposure_max_ms = self.shards.iter().map(|s| s.exposure_ms).max().unwrap_or(0);
        self.compliance.observe(now_ms, self.exposure_max_ms);
        self.state = if self.compliance.breached() {
            "breached"
        } else {
            "compliant"
        };
    }
}

struct ShardState {
    link: ShardLink,
    cursor: Option<Cursor>,
    /// When the archiver first saw the oldest unarchived record (for records without a
    /// commit time).
    pending_since_ms: Option<u64>,
    report: ShardRpo,
}

pub struct Archiver {
    status: Arc<Mutex<RpoStatus>>,
    stop: Arc<AtomicBool>,
    wake: std::sync::mpsc::SyncSender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Archiver {
    /// Starts the archiver thread for `links` (shard `i` is `links[i]`).
    pub fn start(
        cfg: ArchiverConfig,
        dest: Box<dyn Destination>,
        links: Vec<ShardLink>,
    ) -> std::io::Result<Archiver> {
        assert!(cfg.piece_bytes_max > 0, "pieces hold at least one chunk");
        let now = now_ms();
        let shards: Vec<ShardState> = links
            .into_iter()
            .enumerate()
            .map(|(shard, link)| ShardState {
                report: ShardRpo {
                    shard,
                    compliant: true,
                    archived_lsn: link.gate.archived_lsn(),
                    ..ShardRpo::default()
                },
                link,
                cursor: None,
                pending_since_ms: None,
            })
            .collect();
        let status = Arc::new(Mutex::new(RpoStatus {
            level: cfg.level,
            target_ms: cfg.level.target_ms(),
            destination: dest.describe(),
            state: "compliant",
            exposure_max_ms: 0,
            backlog_over_max: false,
            shards: shards.iter().map(|s| s.report.clone()).collect(),
            compliance: Compliance::new(cfg.level.target_ms(), now),
            destination_health: DestinationHealth::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        let thread = {
            let (status, stop) = (status.clone(), stop.clone());
            std::thread::Builder::new()
                .name("mantis-archiver".into())
                .spawn(move || run(cfg, dest, shards, status, stop, woken))?
        };
        Ok(Archiver {
            status,
            stop,
            wake,
            thread: Some(thread),
        })
    }

    /// The status as of now (exposure re-measured; an upload in flight for the RPO target or
    /// longer shows as a failing destination).
    pub fn status(&self) -> RpoStatus {
        let now = now_ms();
        let mut st = lock(&self.status);
        st.refresh(now);
        let mut out = st.clone();
        out.destination_health = st.destination_health.view(now, st.target_ms);
        out
    }

    /// Ships what is durable now and returns (one last tick), then stops the thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.wake.try_send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Archiver {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

fn lock(status: &Mutex<RpoStatus>) -> std::sync::MutexGuard<'_, RpoStatus> {
    match status.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn run(
    cfg: ArchiverConfig,
    dest: Box<dyn Destination>,
    mut shards: Vec<ShardState>,
    status: Arc<Mutex<RpoStatus>>,
    stop: Arc<AtomicBool>,
    woken: std::sync::mpsc::Receiver<()>,
) {
    let tick = Duration::from_millis(cfg.tick_ms.unwrap_or(cfg.level.tick_ms()));
    let mut health = DestinationHealth::new();
    let mut last_attempt_ms = now_ms();
    loop {
        let stopping = stop.load(Ordering::Acquire);
        for (i, shard) in shards.iter_mut().enumerate() {
            let mut link = Link {
                dest: dest.as_ref(),
                health: &mut health,
                status: &status,
            };
            if tick_shard(&cfg, &mut link, shard, i, stopping) {
                last_attempt_ms = now_ms();
            }
        }
        if !stopping && now_ms().saturating_sub(last_attempt_ms) >= cfg.probe_interval_ms {
            probe(dest.as_ref(), &mut health, &status);
            last_attempt_ms = now_ms();
        }
        publish(&cfg, &shards, &health, &status);
        if stopping {
            break;
        }
        // Waiting for the next tick, or for stop().
        let _ = woken.recv_timeout(tick);
    }
}

/// Asks for an object nobody writes: "not found" is an answer, so the destination is up.
fn probe(dest: &dyn Destination, health: &mut DestinationHealth, status: &Mutex<RpoStatus>) {
    let now = now_ms();
    health.started(now);
    // Published first: a probe that hangs shows as an upload in flight.
    lock(status).destination_health = health.clone();
    match dest.get(PROBE_OBJECT) {
        Ok(_) | Err(crate::error::BackupError::NotFound { .. }) => health.succeeded(now_ms()),
        Err(e) => {
            tracing::warn!(destination = %dest.describe(), error = %e, "archive destination probe failed");
            health.failed(now_ms(), e.to_string());
        }
    }
}

/// What a shard's tick talks to besides its own state.
struct Link<'a> {
    dest: &'a dyn Destination,
    health: &'a mut DestinationHealth,
    status: &'a Mutex<RpoStatus>,
}

/// One look at a shard's WAL; ships a piece when due. Returns whether an upload was tried.
fn tick_shard(
    cfg: &ArchiverConfig,
    link: &mut Link<'_>,
    s: &mut ShardState,
    index: usize,
    flush: bool,
) -> bool {
    let now = now_ms();
    let mut attempted = false;
    let gate = &s.link.gate;
    let (durable, archived) = (gate.durable_lsn(), gate.archived_lsn());
    s.report.durable_lsn = durable;
    s.report.archived_lsn = archived;
    let pending = match read_pending(
        &s.link.wal_dir,
        s.cursor,
        archived + 1,
        durable,
        cfg.piece_bytes_max,
    ) {
        Ok(p) => p,
        Err(e) => {
            s.report.last_error = Some(format!("reading {}: {e}", s.link.wal_dir.display()));
            None
        }
    };
    let mut exposure_from = pending.as_ref().map(|p| {
        let since = *s.pending_since_ms.get_or_insert(now);
        p.oldest_commit_ms.unwrap_or(since).min(since)
    });
    if let Some(p) = pending {
        let age = now.saturating_sub(exposure_from.unwrap_or(now));
        let full = p.raw.len() >= cfg.piece_bytes_max;
        let due = flush || full || age >= cfg.level.ship_after_ms();
        if due {
            // Published before the upload: if it hangs, readers of the status still see the
            // exposure grow from here and the upload in flight.
            s.report.oldest_unarchived_at_ms = exposure_from;
            link.health.started(now);
            {
                let mut st = lock(link.status);
                if let Some(slot) = st.shards.get_mut(index) {
                    slot.oldest_unarchived_at_ms = exposure_from;
                }
                st.destination_health = link.health.clone();
            }
            attempted = true;
            // What is left after a shipped piece (if anything) is measured at the next tick.
            match ship(link.dest, s, p, now) {
                Ok(()) => {
                    link.health.succeeded(now_ms());
                    exposure_from = None;
                    s.pending_since_ms = None;
                }
                Err(e) => link.health.failed(now_ms(), e),
            }
        }
    } else if durable <= archived {
        s.pending_since_ms = None;
    }
    let now = now_ms();
    s.report.oldest_unarchived_at_ms = exposure_from;
    s.report.exposure_ms = exposure_from.map_or(0, |t| now.saturating_sub(t));
    s.report.compliant = s.report.exposure_ms < cfg.level.target_ms();
    s.report.backlog_bytes = held_bytes(&s.link.wal_dir, s.cursor);
    attempted
}

/// Uploads one piece; on success advances the cursor and the gate.
fn ship(
    dest: &dyn Destination,
    s: &mut ShardState,
    p: Pending,
    now: u64,
) -> std::result::Result<(), String> {
    let object = piece_object(s.report.shard, p.first_lsn, p.last_lsn);
    let uploaded = encode_piece(&p.raw).and_then(|body| dest.put(&object, &body));
    match uploaded {
        Ok(()) => {
            s.cursor = Some(p.next);
            s.link.gate.set_archived(p.last_lsn);
            s.report.archived_lsn = p.last_lsn;
            s.report.pieces_archived += 1;
            s.report.bytes_archived += p.raw.len() as u64;
            s.report.last_archived_at_ms = Some(now);
            s.report.last_error = None;
            if let Some(gap) = p.gap_from_lsn {
                tracing::warn!(
                    shard = s.report.shard,
                    from_lsn = gap,
                    to_lsn = p.first_lsn - 1,
                    "WAL archive has a gap: those records were recycled before archiving started"
                );
                s.report.gap_from_lsn.get_or_insert(gap);
            }
            Ok(())
        }
        Err(e) => {
            s.report.upload_failures += 1;
            tracing::warn!(shard = s.report.shard, object, error = %e, "archiving a WAL piece failed; retrying at the next tick");
            s.report.last_error = Some(e.to_string());
            Err(e.to_string())
        }
    }
}

fn publish(
    cfg: &ArchiverConfig,
    shards: &[ShardState],
    health: &DestinationHealth,
    status: &Mutex<RpoStatus>,
) {
    let now = now_ms();
    let exposure_max_ms = shards
        .iter()
        .map(|s| s.report.exposure_ms)
        .max()
        .unwrap_or(0);
    let backlog: u64 = shards.iter().map(|s| s.report.backlog_bytes).sum();
    let mut st = lock(status);
    st.destination_health = health.clone();
    st.compliance.observe(now, exposure_max_ms);
    st.state = if st.compliance.breached() {
        "breached"
    } else {
        "compliant"
    };
    st.exposure_max_ms = exposure_max_ms;
    st.backlog_over_max = backlog > cfg.backlog_bytes_max;
    st.shards = shards.iter().map(|s| s.report.clone()).collect();
}
