//! Issue 10: point-in-time recovery. Restores the newest backup taken before the target,
//! then writes the archived WAL records that follow each shard's `flushed_lsn` — up to the
//! target and not one record past it — as that shard's WAL, so `Engine::open` replays them.
//! Finally the result is opened once (every record replayed, every segment read) and closed.
//!
//! Targets: a time (unix ms; a record is in when its `committed_at_ms` ≤ the target; kind-1
//! records carry no time and predate timed ones, so they are always in) or an LSN (applied to
//! every shard: LSNs are per shard, so this is mostly for one-shard installations).
//! A gap in a shard's archive before the target fails the restore; an archive that ends
//! before the target is restored as far as it goes and said so (`reached_target`).

use std::io::Write;
use std::path::Path;

use mantis_engine::record::committed_at_ms;
use mantis_wal::{encode_chunk, WalRecord};
use serde::Serialize;

use crate::archive::piece::{list_pieces, read_piece};
use crate::dest::Destination;
use crate::error::{BackupError, Result};
use crate::manifest::{list_backups, BackupManifest};
use crate::progress::Progress;

/// Payload bytes per chunk written into the restored WAL.
const CHUNK_PAYLOAD_BYTES_MAX: usize = 1 << 20;
/// A WAL segment is at least this large (the WAL's minimum: 4 blocks).
const SEGMENT_BYTES_MIN: u64 = 4 * 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PitrTarget {
    TimeMs(u64),
    Lsn(u64),
}

#[derive(Debug, Clone, Serialize)]
pub struct PitrShard {
    pub shard: usize,
    pub base_flushed_lsn: u64,
    pub replayed_records: u64,
    /// The last LSN in the restored shard.
    pub last_lsn: u64,
    pub last_commit_ms: Option<u64>,
    /// A record past the target was seen (so the archive covers the target).
    pub reached_target: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PitrReport {
    pub backup: String,
    pub backup_created_at_ms: u64,
    pub target: PitrTarget,
    pub shards: Vec<PitrShard>,
}

impl PitrReport {
    pub fn reached_target(&self) -> bool {
        self.shards.iter().all(|s| s.reached_target)
    }
}

/// Restores `data_dir` (absent or empty) to `target`; see the module docs.
pub fn restore_to_point(
    dest: &dyn Destination,
    target: PitrTarget,
    data_dir: &Path,
    progress: &mut dyn FnMut(&Progress),
) -> Result<PitrReport> {
    let base = pick_base(dest, target)?;
    let m = crate::restore::restore(dest, Some(&base.id), data_dir, progress)?;
    let replayed = (0..m.shard_count)
        .map(|shard| replay_shard(dest, &m, shard, target, data_dir))
        .collect::<Result<Vec<_>>>();
    let shards = match replayed.and_then(|s| validate(data_dir, &m, s)) {
        Ok(s) => s,
        Err(e) => {
            crate::restore::remove_contents(data_dir);
            return Err(e);
        }
    };
    Ok(PitrReport {
        backup: m.id.clone(),
        backup_created_at_ms: m.created_at_ms,
        target,
        shards,
    })
}

/// The newest backup wholly before the target.
fn pick_base(dest: &dyn Destination, target: PitrTarget) -> Result<BackupManifest> {
    list_backups(dest)?
        .into_iter()
        .rev()
        .find(|m| match target {
            PitrTarget::TimeMs(t) => m.created_at_ms <= t,
            PitrTarget::Lsn(n) => m.shards.iter().all(|s| s.flushed_lsn <= n),
        })
        .ok_or_else(|| {
            BackupError::Invalid(format!(
                "{}: no backup taken before {target:?}: point-in-time recovery starts from one",
                dest.describe()
            ))
        })
}

fn past_target(target: PitrTarget, rec: &WalRecord) -> bool {
    match target {
        PitrTarget::Lsn(n) => rec.lsn > n,
        PitrTarget::TimeMs(t) => committed_at_ms(rec.kind, &rec.payload).is_some_and(|c| c > t),
    }
}

fn replay_shard(
    dest: &dyn Destination,
    m: &BackupManifest,
    shard: usize,
    target: PitrTarget,
    data_dir: &Path,
) -> Result<PitrShard> {
    let base_flushed_lsn = m
        .shards
        .iter()
        .find(|s| s.shard == shard)
        .map(|s| s.flushed_lsn)
        .ok_or_else(|| BackupError::Invalid(format!("backup {} has no shard {shard}", m.id)))?;
    let wal_dir = mantis_wal::wal_dir(&data_dir.join(format!("shard-{shard}")));
    let mut out = WalWriter::new(&wal_dir, base_flushed_lsn + 1)?;
    let mut report = PitrShard {
        shard,
        base_flushed_lsn,
        replayed_records: 0,
        last_lsn: base_flushed_lsn,
        last_commit_ms: None,
        reached_target: false,
    };
    'pieces: for p in list_pieces(dest, shard)? {
        if p.last_lsn <= report.last_lsn {
            continue;
        }
        for rec in read_piece(dest, &p)? {
            if rec.lsn <= report.last_lsn {
                continue; // pieces may overlap by a chunk after a restart
            }
            if past_target(target, &rec) {
                report.reached_target = true;
                break 'pieces;
            }
            if rec.lsn != report.last_lsn + 1 {
                return Err(BackupError::Invalid(format!(
                    "shard {shard}: the WAL archive misses LSNs {}..={} (object {})",
                    report.last_lsn + 1,
                    rec.lsn - 1,
                    p.object
                )));
            }
            report.last_commit_ms =
                committed_at_ms(rec.kind, &rec.payload).or(report.last_commit_ms);
            report.last_lsn = rec.lsn;
            report.replayed_records += 1;
            out.push(rec)?;
        }
    }
    if let PitrTarget::Lsn(n) = target {
        report.reached_target |= report.last_lsn >= n;
    }
    out.finish()?;
    Ok(report)
}

/// Opens the restored directory once: every segment read, every record replayed.
fn validate(data_dir: &Path, m: &BackupManifest, shards: Vec<PitrShard>) -> Result<Vec<PitrShard>> {
    let engine = mantis_engine::Engine::open(mantis_engine::EngineConfig {
        data_dir: data_dir.to_path_buf(),
        shards: m.shard_count,
        pin_cpus: false,
        ..mantis_engine::EngineConfig::default()
    })?;
    let stats = futures::executor::block_on(engine.handle().stats());
    let closed = engine.shutdown();
    let stats = stats?;
    closed?;
    for (s, st) in shards.iter().zip(&stats) {
        if st.recovered_records != s.replayed_records {
            return Err(BackupError::Invalid(format!(
                "shard {}: {} archived records written, the engine replayed {}",
                s.shard, s.replayed_records, st.recovered_records
            )));
        }
    }
    Ok(shards)
}

/// Writes records as one WAL segment named after its first LSN, in chunks.
struct WalWriter {
    path: std::path::PathBuf,
    dir: std::path::PathBuf,
    first_lsn: u64,
    file: Option<std::fs::File>,
    batch: Vec<WalRecord>,
    batch_bytes: usize,
    written_bytes: u64,
}

impl WalWriter {
    fn new(dir: &Path, first_lsn: u64) -> Result<WalWriter> {
        std::fs::create_dir_all(dir).map_err(|e| BackupError::local(dir, e))?;
        Ok(WalWriter {
            path: dir.join(mantis_wal::segment_file_name(first_lsn)),
            dir: dir.to_path_buf(),
            first_lsn,
            file: None,
            batch: Vec::new(),
            batch_bytes: 0,
            written_bytes: 0,
        })
    }

    fn push(&mut self, rec: WalRecord) -> Result<()> {
        self.batch_bytes += rec.payload.len() + 17;
        self.batch.push(rec);
        if self.batch_bytes >= CHUNK_PAYLOAD_BYTES_MAX {
            self.write_batch()?;
        }
        Ok(())
    }

    fn write_batch(&mut self) -> Result<()> {
        let Some(first) = self.batch.first() else {
            return Ok(());
        };
        let records: Vec<(u8, &[u8])> = self
            .batch
            .iter()
            .map(|r| (r.kind, r.payload.as_slice()))
            .collect();
        let chunk = encode_chunk(self.first_lsn, first.lsn, &records);
        if self.file.is_none() {
            let f =
                std::fs::File::create(&self.path).map_err(|e| BackupError::local(&self.path, e))?;
            self.file = Some(f);
        }
        if let Some(f) = &mut self.file {
            f.write_all(&chunk)
                .map_err(|e| BackupError::local(&self.path, e))?;
        }
        self.written_bytes += chunk.len() as u64;
        self.batch.clear();
        self.batch_bytes = 0;
        Ok(())
    }

    /// Pads the segment to the WAL's minimum size, syncs it and its directory.
    fn finish(mut self) -> Result<()> {
        self.write_batch()?;
        let Some(f) = self.file.take() else {
            return Ok(()); // nothing to replay: no segment
        };
        let size = self.written_bytes.max(SEGMENT_BYTES_MIN);
        f.set_len(size)
            .and_then(|()| f.sync_all())
            .map_err(|e| BackupError::local(&self.path, e))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| BackupError::local(&self.dir, e))
    }
}

/// Parses a `--to-time` value: unix milliseconds (all digits) or RFC 3339
/// (`2026-11-28T19:30:00Z`, `2026-11-28T20:30:00.250+01:00`).
pub fn parse_time_ms(s: &str) -> Result<u64> {
    let bad = || BackupError::Invalid(format!("{s:?}: not unix milliseconds or an RFC 3339 time"));
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| bad());
    }
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64> {
        s.get(r)
            .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or_else(bad)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':'
        || b[16] != b':'
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let mut at = 19;
    let mut millis = 0i64;
    if b.get(at) == Some(&b'.') {
        let start = at + 1;
        at = start;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let frac = s.get(start..at).filter(|f| !f.is_empty()).ok_or_else(bad)?;
        let padded: String = frac.chars().chain(std::iter::repeat('0')).take(3).collect();
        millis = padded.parse().map_err(|_| bad())?;
    }
    let offset_s = match s.get(at..) {
        Some("Z" | "z") => 0,
        Some(tz) if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (num(at + 1..at + 3)? * 3600 + num(at + 4..at + 6)? * 60)
        }
        _ => return Err(bad()),
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    u64::try_from(secs * 1000 + millis).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_unix_ms_and_rfc3339() {
        assert_eq!(parse_time_ms("1764343200123").unwrap(), 1_764_343_200_123);
        assert_eq!(parse_time_ms("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_time_ms("2025-11-28T15:20:00.123Z").unwrap(),
            1_764_343_200_123
        );
        assert_eq!(
            parse_time_ms("2025-11-28T16:20:00.123+01:00").unwrap(),
            1_764_343_200_123
        );
        assert_eq!(
            parse_time_ms("2000-03-01T00:00:00.5Z").unwrap(),
            951_868_800_500
        );
        for bad in [
            "",
            "yesterday",
            "2025-13-01T00:00:00Z",
            "2025-11-28T15:20:00",
            "2025-11-28T15:20:00+0100",
        ] {
            assert!(parse_time_ms(bad).is_err(), "{bad}");
        }
    }
}
