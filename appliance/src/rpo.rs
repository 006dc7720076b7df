//! Issue 10: the `[rpo]` config section, the WAL archiver the daemon runs for it, the
//! `mantis_rpo_*` metrics and `GET /api/v1/rpo`.
//!
//! The archiver (crate `mantis-backup`, a std thread) ships each shard's WAL to the
//! destination at the level's interval and measures the exposure; the gauges are copied
//! from its status whenever the registry refreshes (scrapes and alert evaluation), so the
//! built-in `rpo_breached` / `rpo_backlog` alerts see current values.

use std::sync::{Mutex, OnceLock};

use mantis_backup::archive::{Archiver, ArchiverConfig, RpoLevel, RpoStatus, ShardLink};
use mantis_backup::{DestinationSpec, S3Config};
use mantis_engine::EngineHandle;
use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};
use serde::Deserialize;

/// `[rpo]` in the config file. Archiving is off unless `level` is set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpoConfig {
    /// "zero" | "minimal" | "low" | "medium" | "high".
    pub level: Option<String>,
    /// A path or `s3://bucket/prefix` (credentials from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY).
    pub destination: Option<String>,
    /// For level zero: "sync_local" (acknowledged writes are fdatasynced locally — the WAL's
    /// own guarantee — and archived every tick). "remote" (acknowledge only once archived) is
    /// not built yet and refused.
    pub mode: String,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    /// WAL bytes held for the archiver beyond which `rpo_backlog` fires (the data is kept).
    pub archive_backlog_bytes_max: u64,
    pub piece_bytes_max: usize,
    /// Overrides the level's tick (measurements).
    pub tick_ms: Option<u64>,
    /// Issue 8: how long one S3 request of the archiver may take. Short, unlike a backup's:
    /// the archiver retries at its next tick anyway, and a hung request holds every shard's
    /// archiving up.
    pub s3_request_timeout_secs: u64,
    /// Retries inside one S3 request of the archiver (the next tick retries again).
    pub s3_retries_max: u32,
    /// With nothing to upload for this long, the archiver probes the destination, so
    /// `/health` notices one that went away while the daemon was idle.
    pub probe_interval_ms: u64,
}

impl Default for RpoConfig {
    fn default() -> Self {
        RpoConfig {
            level: None,
            destination: None,
            mode: "sync_local".into(),
            s3_endpoint: None,
            s3_region: None,
            archive_backlog_bytes_max: mantis_backup::archive::archiver::BACKLOG_BYTES_MAX_DEFAULT,
            piece_bytes_max: mantis_backup::archive::archiver::PIECE_BYTES_MAX_DEFAULT,
            tick_ms: None,
            s3_request_timeout_secs: 10,
            s3_retries_max: 1,
            probe_interval_ms: mantis_backup::archive::archiver::PROBE_INTERVAL_MS_DEFAULT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RpoError {
    #[error("[rpo] {0}")]
    Config(String),
    #[error("[rpo] destination: {0}")]
    Destination(#[from] mantis_backup::BackupError),
    #[error("[rpo] attaching the archive to the WAL: {0}")]
    Engine(#[from] mantis_engine::EngineError),
    #[error("[rpo] starting the archiver thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("[rpo] metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl RpoConfig {
    /// The level, or None when archiving is off; refuses what is not built or is unknown.
    pub fn level(&self) -> Result<Option<RpoLevel>, RpoError> {
        let Some(name) = &self.level else {
            return Ok(None);
        };
        let level = RpoLevel::parse(name).ok_or_else(|| {
            RpoError::Config(format!(
                "level {name:?}: one of zero, minimal, low, medium, high"
            ))
        })?;
        match self.mode.as_str() {
            "sync_local" => {}
            "remote" => {
                return Err(RpoError::Config(
                    "mode \"remote\" (acknowledge only once archived) is not built yet; use \"sync_local\"".into(),
                ))
            }
            other => return Err(RpoError::Config(format!("mode {other:?}: \"sync_local\" or \"remote\""))),
        }
        if self.destination.is_none() {
            return Err(RpoError::Config(format!(
                "level {name:?} needs a destination"
            )));
        }
        if self.piece_bytes_max == 0 {
            return Err(RpoError::Config("piece_bytes_max must be positive".into()));
        }
        Ok(Some(level))
    }
}

/// Issue 10: `[rpo]` is refused at start when its level, mode or destination is wrong.
pub fn checked(rpo: &RpoConfig) -> Result<RpoConfig, crate::config::ConfigError> {
    rpo.level()
        .map_err(|e| crate::config::ConfigError::Invalid {
            option: "rpo",
            reason: e.to_string(),
        })?;
    Ok(rpo.clone())
}

struct Running {
    archiver: Archiver,
    gauges: Gauges,
}

static RUNNING: OnceLock<Mutex<Option<Running>>> = OnceLock::new();

struct Gauges {
    exposure_seconds: prometheus::GaugeVec,
    compliant: IntGaugeVec,
    backlog_bytes: IntGaugeVec,
    archived_lsn: IntGaugeVec,
    breached: IntGauge,
    backlog_over_max: IntGauge,
}

impl Gauges {
    fn register(r: &Registry) -> Result<Gauges, prometheus::Error> {
        let shard = &["shard"];
        let g = Gauges {
            exposure_seconds: prometheus::GaugeVec::new(
                Opts::new(
                    "rpo_exposure_seconds",
                    "Age of the oldest committed write not yet archived",
                ),
                shard,
            )?,
            compliant: IntGaugeVec::new(
                Opts::new(
                    "rpo_compliant",
                    "1 while the shard's exposure is under the RPO target",
                ),
                shard,
            )?,
            backlog_bytes: IntGaugeVec::new(
                Opts::new(
                    "rpo_backlog_bytes",
                    "WAL segment bytes kept because they hold unarchived records",
                ),
                shard,
            )?,
            archived_lsn: IntGaugeVec::new(
                Opts::new(
                    "rpo_archived_lsn",
                    "Highest LSN stored at the archive destination",
                ),
                shard,
            )?,
            breached: IntGauge::new(
                "rpo_breached",
                "1 while some shard's exposure is at or above the RPO target",
            )?,
            backlog_over_max: IntGauge::new(
                "rpo_backlog_over_max",
                "1 while the WAL kept for the archiver exceeds archive_backlog_bytes_max",
            )?,
        };
        r.register(Box::new(g.exposure_seconds.clone()))?;
        r.register(Box::new(g.compliant.clone()))?;
        r.register(Box::new(g.backlog_bytes.clone()))?;
        r.register(Box::new(g.archived_lsn.clone()))?;
        r.register(Box::new(g.breached.clone()))?;
        r.register(Box::new(g.backlog_over_max.clone()))?;
        Ok(g)
    }

    fn copy(&self, s: &RpoStatus) {
        for sh in &s.shards {
            let label = sh.shard.to_string();
            self.exposure_seconds
                .with_label_values(&[&label])
                .set(sh.exposure_ms as f64 / 1e3);
            self.compliant
                .with_label_values(&[&label])
                .set(i64::from(sh.compliant));
            self.backlog_bytes
                .with_label_values(&[&label])
                .set(i64::try_from(sh.backlog_bytes).unwrap_or(i64::MAX));
            self.archived_lsn
                .with_label_values(&[&label])
                .set(i64::try_from(sh.archived_lsn).unwrap_or(i64::MAX));
        }
        self.breached.set(i64::from(s.state == "breached"));
        self.backlog_over_max.set(i64::from(s.backlog_over_max));
    }
}

/// Starts archiving when `[rpo]` sets a level. Call once the engine is open.
pub fn start(cfg: &RpoConfig, engine: &EngineHandle, registry: &Registry) -> Result<(), RpoError> {
    let Some(level) = cfg.level()? else {
        return Ok(());
    };
    let spec_text = cfg.destination.clone().unwrap_or_default();
    let spec = DestinationSpec::parse(&spec_text)?;
    let s3 = match (&spec, &cfg.s3_endpoint) {
        (DestinationSpec::S3 { .. }, Some(endpoint)) => {
            let key = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default();
            let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default();
            let mut c = S3Config::new(endpoint, &key, &secret);
            if let Some(region) = &cfg.s3_region {
                c.region = region.clone();
            }
            c.request_timeout_secs = cfg.s3_request_timeout_secs.max(1);
            c.retries_max = cfg.s3_retries_max;
            Some(c)
        }
        _ => None,
    };
    let dest = mantis_backup::open_destination(&spec, s3)?;
    // A destination that is away at start must not keep the daemon down: archiving then
    // starts from the WAL's oldest segment (pieces may overlap what is there; readers skip
    // LSNs already seen) and the exposure shows the outage.
    let archived: Vec<u64> = (0..engine.shard_count())
        .map(|s| {
            mantis_backup::archive::archived_lsn(dest.as_ref(), s).unwrap_or_else(|e| {
                tracing::warn!(shard = s, error = %e, "cannot list the archive: starting from the oldest WAL segment");
                0
            })
        })
        .collect();
    let links = futures::executor::block_on(engine.attach_archive_gates(&archived))?
        .into_iter()
        .map(|(gate, wal_dir)| ShardLink { gate, wal_dir })
        .collect();
    let mut acfg = ArchiverConfig::new(level);
    acfg.backlog_bytes_max = cfg.archive_backlog_bytes_max;
    acfg.piece_bytes_max = cfg.piece_bytes_max;
    acfg.tick_ms = cfg.tick_ms;
    acfg.probe_interval_ms = cfg.probe_interval_ms.max(1);
    let gauges = Gauges::register(registry)?;
    let archiver = Archiver::start(acfg, dest, links)?;
    tracing::info!(?level, destination = %spec_text, ?archived, "WAL archiving started");
    let slot = RUNNING.get_or_init(|| Mutex::new(None));
    if let Ok(mut s) = slot.lock() {
        *s = Some(Running { archiver, gauges });
    }
    Ok(())
}

/// The archiver's status, when archiving runs.
pub fn status() -> Option<RpoStatus> {
    let running = RUNNING.get()?.lock().ok()?;
    running.as_ref().map(|r| r.archiver.status())
}

/// Copies the status into the gauges (called when the registry refreshes).
pub fn export_metrics() {
    let Some(Ok(running)) = RUNNING.get().map(|m| m.lock()) else {
        return;
    };
    if let Some(r) = running.as_ref() {
        r.gauges.copy(&r.archiver.status());
    }
}

/// Ships what is durable and stops the archiver (at shutdown, after the engine flushed).
pub fn stop() {
    let Some(Ok(mut running)) = RUNNING.get().map(|m| m.lock()) else {
        return;
    };
    if let Some(r) = running.take() {
        r.archiver.stop();
    }
}
