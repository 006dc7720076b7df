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

use super::piece::{encode_piece, piece_object};
use super::reader::{held_bytes, read_pending, Cursor, Pending};
use super::rpo::{Compliance, RpoLevel};
use crate::dest::Destination;

pub const PIECE_BYTES_MAX_DEFAULT: usize = 16 << 20;
pub const BACKLOG_BYTES_MAX_DEFAULT: u64 = 4 << 30;

#[derive(Debug, Clone)]
pub struct ArchiverConfig {
    pub level: RpoLevel,
    /// Raw WAL bytes in one piece at most (a larger backlog goes as several pieces).
    pub piece_bytes_max: usize,
    /// WAL bytes kept for the archiver beyond which the backlog is reported over its limit.
    pub backlog_bytes_max: u64,
    /// Overrides the level's tick (tests, measurements).
    pub tick_ms: Option<u64>,
}

impl ArchiverConfig {
    pub fn new(level: RpoLevel) -> ArchiverConfig {
        ArchiverConfig {
            level,
            piece_bytes_max: PIECE_BYTES_MAX_DEFAULT,
            backlog_bytes_max: BACKLOG_BYTES_MAX_DEFAULT,
            tick_ms: None,
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

    pub fn status(&self) -> RpoStatus {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
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

fn run(
    cfg: ArchiverConfig,
    dest: Box<dyn Destination>,
    mut shards: Vec<ShardState>,
    status: Arc<Mutex<RpoStatus>>,
    stop: Arc<AtomicBool>,
    woken: std::sync::mpsc::Receiver<()>,
) {
    let tick = Duration::from_millis(cfg.tick_ms.unwrap_or(cfg.level.tick_ms()));
    loop {
        let stopping = stop.load(Ordering::Acquire);
        for s in &mut shards {
            tick_shard(&cfg, dest.as_ref(), s, stopping);
        }
        publish(&cfg, &shards, &status);
        if stopping {
            break;
        }
        // Waiting for the next tick, or for stop().
        let _ = woken.recv_timeout(tick);
    }
}

fn tick_shard(cfg: &ArchiverConfig, dest: &dyn Destination, s: &mut ShardState, flush: bool) {
    let now = now_ms();
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
        // What is left after a shipped piece (if anything) is measured at the next tick.
        if due && ship(dest, s, p, now) {
            exposure_from = None;
            s.pending_since_ms = None;
        }
    } else if durable <= archived {
        s.pending_since_ms = None;
    }
    s.report.exposure_ms = exposure_from.map_or(0, |t| now.saturating_sub(t));
    s.report.compliant = s.report.exposure_ms < cfg.level.target_ms();
    s.report.backlog_bytes = held_bytes(&s.link.wal_dir, s.cursor);
}

/// Uploads one piece; on success advances the cursor and the gate. Returns whether it did.
fn ship(dest: &dyn Destination, s: &mut ShardState, p: Pending, now: u64) -> bool {
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
            true
        }
        Err(e) => {
            s.report.upload_failures += 1;
            tracing::warn!(shard = s.report.shard, object, error = %e, "archiving a WAL piece failed; retrying at the next tick");
            s.report.last_error = Some(e.to_string());
            false
        }
    }
}

fn publish(cfg: &ArchiverConfig, shards: &[ShardState], status: &Mutex<RpoStatus>) {
    let now = now_ms();
    let exposure_max_ms = shards
        .iter()
        .map(|s| s.report.exposure_ms)
        .max()
        .unwrap_or(0);
    let backlog: u64 = shards.iter().map(|s| s.report.backlog_bytes).sum();
    let mut st = match status.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
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
