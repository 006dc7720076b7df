//! The tamper-evident audit trail: an append-only JSON-lines file (`audit.log`) where every
//! record carries the SHA-256 of the record before it, so that editing, deleting, inserting or
//! reordering any record breaks the chain at that record.
//!
//! Durability: [`AuditWriter::append`] only chains the record into a bounded in-memory batch;
//! [`AuditWriter::flush`] writes the batch and fdatasyncs once. The daemon flushes on a timer
//! (and when the batch is full), so the hot path never waits for a disk sync; a crash loses at
//! most the records of the last unflushed interval, and never leaves a chain that verifies
//! with a record missing in the middle (the file is only ever appended whole lines in order).
//!
//! Retention: [`AuditWriter::cut`] drops the oldest records. Before dropping, it appends a
//! `audit.cut` record (so the cut is itself in the chain and anchored), then writes
//! `audit.cut.json` naming the first kept sequence number and the hash the first kept record
//! must chain to. Verification starts from that hash instead of the genesis hash.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev` of the first record ever written.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
pub const AUDIT_FILE: &str = "audit.log";
pub const CUT_FILE: &str = "audit.cut.json";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit file {path}: record {line} (seq {seq:?}): {reason}")]
    Broken {
        path: PathBuf,
        /// 1-based line number of the first bad record.
        line: u64,
        seq: Option<u64>,
        reason: String,
    },
    #[error("audit batch full: {records_max} records unflushed")]
    BatchFull { records_max: usize },
}

/// What happened, by whom, from where, with which outcome.
///
/// Fields are `Cow<'static, str>`: the front ends name the protocol, the command, the user
/// and the outcome with static strings, so a RESP SET builds its record with two allocations
/// (peer and key) instead of six (issue 8: allocating on the shard and freeing on the audit
/// thread was a visible share of the trail's cost).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Authenticated user, or `anonymous`.
    pub who: Cow<'static, str>,
    /// Peer address or `local`.
    pub from: Cow<'static, str>,
    /// Protocol (`resp`, `http`, `pg`, `admin`).
    pub protocol: Cow<'static, str>,
    /// The operation, e.g. `SET`, `kv_put`, `INSERT`.
    pub what: Cow<'static, str>,
    /// The object, e.g. the key (truncated by the caller).
    pub target: Cow<'static, str>,
    /// `ok` or the error.
    pub outcome: Cow<'static, str>,
}

/// One line of `audit.log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub ts_ms: u64,
    #[serde(flatten)]
    pub event: AuditEvent,
    /// SHA-256 (hex) of the previous record's line content (its `hash`).
    pub prev: String,
    /// SHA-256 (hex) of this record's fields with `prev` (everything but `hash`).
    pub hash: String,
}

/// The hash of a record: over a canonical encoding of every field but `hash`.
pub fn record_hash(seq: u64, ts_ms: u64, event: &AuditEvent, prev: &str) -> String {
    let mut h = Sha256::new();
    // Length-prefixed fields: no two different records encode the same bytes.
    h.update(seq.to_be_bytes());
    h.update(ts_ms.to_be_bytes());
    for field in [
        &event.who,
        &event.from,
        &event.protocol,
        &event.what,
        &event.target,
        &event.outcome,
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.update(prev.as_bytes());
    hex(&h.finalize())
}

/// Lower-case hex by table: formatting each byte through `write!` cost about as much as the
/// SHA-256 itself on the audit thread (issue 8 profile).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Where verification starts after a retention cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutPoint {
    pub first_seq: u64,
    pub prev: String,
}

/// The chain head: the last record's sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_cut(dir: &Path) -> Result<CutPoint, AuditError> {
    let path = dir.join(CUT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AuditError::Broken {
            path: path.clone(),
            line: 1,
            seq: None,
            reason: format!("unreadable cut point: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CutPoint {
            first_seq: 1,
            prev: GENESIS_HASH.into(),
        }),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// Summary of a clean verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub first_seq: u64,
    pub head: Head,
}

/// Reads and checks the whole trail in `dir`; the error names the first bad record.
pub fn verify(dir: &Path) -> Result<Verified, AuditError> {
    let mut count = 0;
    let cut = read_cut(dir)?;
    let head = for_each_record(dir, |_| {
        count += 1;
        Ok(())
    })?;
    Ok(Verified {
        records: count,
        first_seq: cut.first_seq,
        head,
    })
}

/// Visits every record in order after checking it against the chain; stops at the first bad.
pub fn for_each_record(
    dir: &Path,
    mut visit: impl FnMut(&AuditRecord) -> Result<(), AuditError>,
) -> Result<Head, AuditError> {
    let cut = read_cut(dir)?;
    let path = dir.join(AUDIT_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Head {
                seq: cut.first_seq.saturating_sub(1),
                hash: cut.prev,
            })
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    let mut expected_seq = cut.first_seq;
    let mut prev = cut.prev;
    let mut count_checked = 0u64;
    let broken = |line: u64, seq: Option<u64>, reason: String| AuditError::Broken {
        path: path.clone(),
        line,
        seq,
        reason,
    };
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line_no = index as u64 + 1;
        let line = line.map_err(io_err(&path))?;
        let record: AuditRecord = serde_json::from_str(&line)
            .map_err(|e| broken(line_no, None, format!("not a record: {e}")))?;
        let seq = Some(record.seq);
        if count_checked == 0 && record.seq < expected_seq {
            // Left over from a retention cut interrupted before the shortened file replaced
            // this one: these are the records the cut drops.
            continue;
        }
        count_checked += 1;
        if record.seq != expected_seq {
            return Err(broken(
                line_no,
                seq,
                format!(
                    "sequence gap or reorder: expected seq {expected_seq}, found {}",
                    record.seq
                ),
            ));
        }
        if record.prev != prev {
            return Err(broken(
                line_no,
                seq,
                format!(
                    "chain broken: prev is {}, the previous record hashes to {prev}",
                    record.prev
                ),
            ));
        }
        let recomputed = record_hash(record.seq, record.ts_ms, &record.event, &record.prev);
        if recomputed != record.hash {
            return Err(broken(
                line_no,
                seq,
                format!(
                    "content altered: stored hash {}, recomputed {recomputed}",
                    record.hash
                ),
            ));
        }
        visit(&record)?;
        prev = record.hash;
        expected_seq += 1;
    }
    Ok(Head {
        seq: expected_seq - 1,
        hash: prev,
    })
}

/// Writes the verified trail as JSON lines to `out` (one record per line).
pub fn export(dir: &Path, out: &mut dyn Write) -> Result<u64, AuditError> {
    let mut count = 0;
    for_each_record(dir, |record| {
        let line = serde_json::to_string(record).map_err(|e| AuditError::Io {
            path: dir.join(AUDIT_FILE),
            source: std::io::Error::other(e),
        })?;
        writeln!(out, "{line}").map_err(io_err(Path::new("<export>")))?;
        count += 1;
        Ok(())
    })?;
    Ok(count)
}

/// The single writer of a trail (one per data directory; the daemon runs it on one thread).
pub struct AuditWriter {
    dir: PathBuf,
    file: File,
    head: Head,
    /// Chained but not yet written lines, newline-terminated, in chain order: one buffer so
    /// a flush is one write without joining (issue 8: the writer keeps up with ~100k
    /// records/s on one thread).
    batch: Vec<u8>,
    /// How many records `batch` holds.
    batch_records: usize,
    batch_records_max: usize,
}

impl AuditWriter {
    /// Opens the trail, verifying it first so new records chain onto a sound head. A broken
    /// trail is refused: appending to it would hide where it was broken.
    pub fn open(dir: &Path, batch_records_max: usize) -> Result<AuditWriter, AuditError> {
        assert!(batch_records_max > 0, "batch_records_max must be positive");
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let head = verify(dir)?.head;
        let path = dir.join(AUDIT_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(AuditWriter {
            dir: dir.to_path_buf(),
            file,
            head,
            batch: Vec::new(),
            batch_records: 0,
            batch_records_max,
        })
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    pub fn unflushed(&self) -> usize {
        self.batch_records
    }

    pub fn is_full(&self) -> bool {
        self.batch_records >= self.batch_records_max
    }

    /// Chains one record into the batch (no I/O). Refuses when the batch is full: the caller
    /// flushes first (the daemon's writer thread does so before appending).
    pub fn append(&mut self, ts_ms: u64, event: AuditEvent) -> Result<&Head, AuditError> {
        if self.is_full() {
            return Err(AuditError::BatchFull {
                records_max: self.batch_records_max,
            });
        }
        let seq = self.head.seq + 1;
        let prev = std::mem::take(&mut self.head.hash);
        let hash = record_hash(seq, ts_ms, &event, &prev);
        let record = AuditRecord {
            seq,
            ts_ms,
            event,
            prev,
            hash,
        };
        let line_start = self.batch.len();
        if let Err(e) = write_line(&mut self.batch, &record) {
            // Nothing half-written stays in the batch, and the head is where it was.
            self.batch.truncate(line_start);
            self.head.hash = record.prev;
            return Err(AuditError::Io {
                path: self.dir.join(AUDIT_FILE),
                source: std::io::Error::other(e),
            });
        }
        self.batch.push(b'\n');
        self.batch_records += 1;
        self.head = Head {
            seq,
            hash: record.hash,
        };
        Ok(&self.head)
    }

    /// Writes the batch in one write and syncs it: after this returns, every appended record
    /// is durable.
    pub fn flush(&mut self) -> Result<usize, AuditError> {
        if self.batch_records == 0 {
            return Ok(0);
        }
        let path = self.dir.join(AUDIT_FILE);
        self.file.write_all(&self.batch).map_err(io_err(&path))?;
        self.file.sync_data().map_err(io_err(&path))?;
        let n = self.batch_records;
        self.batch.clear();
        self.batch_records = 0;
        Ok(n)
    }

    /// Retention: keeps only records with `seq >= keep_from_seq`, after chaining an
    /// `audit.cut` record that says so. The cut point is renamed into place before the
    /// shortened file: a crash between the two leaves the old file, whose records before the
    /// cut verification skips (they are what the cut drops).
    pub fn cut(&mut self, ts_ms: u64, keep_from_seq: u64, who: &str) -> Result<u64, AuditError> {
        self.flush()?;
        let last_seq = self.head.seq;
        let keep_from_seq = keep_from_seq.min(last_seq);
        self.append(
            ts_ms,
            AuditEvent {
                who: who.to_owned().into(),
                from: "local".into(),
                protocol: "admin".into(),
                what: "audit.cut".into(),
                target: format!("records before seq {keep_from_seq}").into(),
                outcome: "ok".into(),
            },
        )?;
        self.flush()?;
        let path = self.dir.join(AUDIT_FILE);
        let tmp = self.dir.join("audit.log.tmp");
        let mut kept = Vec::new();
        let mut cut = None;
        let mut dropped = 0;
        let mut last_dropped_hash = read_cut(&self.dir)?.prev;
        for_each_record(&self.dir, |record| {
            if record.seq < keep_from_seq {
                dropped += 1;
                last_dropped_hash = record.hash.clone();
            } else {
                if cut.is_none() {
                    cut = Some(CutPoint {
                        first_seq: record.seq,
                        prev: last_dropped_hash.clone(),
                    });
                }
                kept.push(serde_json::to_string(record).map_err(|e| AuditError::Io {
                    path: path.clone(),
                    source: std::io::Error::other(e),
                })?);
            }
            Ok(())
        })?;
        let Some(cut) = cut else {
            return Ok(0);
        };
        let mut body = kept.join("\n");
        body.push('\n');
        write_synced(&tmp, body.as_bytes())?;
        let cut_tmp = self.dir.join("audit.cut.json.tmp");
        let cut_json = serde_json::to_vec(&cut).map_err(|e| AuditError::Io {
            path: cut_tmp.clone(),
            source: std::io::Error::other(e),
        })?;
        write_synced(&cut_tmp, &cut_json)?;
        std::fs::rename(&cut_tmp, self.dir.join(CUT_FILE)).map_err(io_err(&cut_tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&tmp))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        tracing::info!(target: "audit_anchor", first_seq = cut.first_seq, prev = %cut.prev, dropped, "audit retention cut");
        Ok(dropped)
    }
}

/// Appends `record` as one JSON object, byte for byte what `serde_json::to_writer` makes of
/// an [`AuditRecord`] (a unit test holds the two equal), without serde's generic machinery
/// for the flattened event: the audit thread writes every record of the daemon.
fn write_line(out: &mut Vec<u8>, record: &AuditRecord) -> Result<(), serde_json::Error> {
    use std::io::Write as _;
    let e = &record.event;
    write!(out, "{{\"seq\":{},\"ts_ms\":{}", record.seq, record.ts_ms)
        .map_err(serde_json::Error::io)?;
    for (name, value) in [
        ("who", e.who.as_ref()),
        ("from", e.from.as_ref()),
        ("protocol", e.protocol.as_ref()),
        ("what", e.what.as_ref()),
        ("target", e.target.as_ref()),
        ("outcome", e.outcome.as_ref()),
        ("prev", record.prev.as_str()),
        ("hash", record.hash.as_str()),
    ] {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        push_json_str(out, value)?;
    }
    out.push(b'}');
    Ok(())
}

/// A JSON string literal, byte-identical to serde_json's: most fields (command names, keys,
/// hex hashes) need no escaping and are copied as they are; the rest go through serde_json
/// (issue 8 profile: its escaper was 1.5% of the daemon's samples under `-P 16`).
fn push_json_str(out: &mut Vec<u8>, value: &str) -> Result<(), serde_json::Error> {
    // serde_json escapes exactly the control characters, the quote and the backslash.
    let plain = value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if plain {
        out.reserve(value.len() + 2);
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(&mut *out, value)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), AuditError> {
    let mut f = File::create(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hand_written_line_is_serde_json_line() {
        let event = AuditEvent {
            who: "al\"ice\\".into(),
            from: "client:7\n".into(),
            protocol: "resp".into(),
            what: "set".into(),
            target: "k\u{1}é😀".into(),
            outcome: "ERR \"x\"".into(),
        };
        let prev = GENESIS_HASH.to_string();
        let hash = record_hash(9, 1_234, &event, &prev);
        let record = AuditRecord {
            seq: 9,
            ts_ms: 1_234,
            event,
            prev,
            hash,
        };
        let mut mine = Vec::new();
        write_line(&mut mine, &record).unwrap();
        assert_eq!(
            String::from_utf8(mine).unwrap(),
            serde_json::to_string(&record).unwrap()
        );
    }

    #[test]
    fn plain_strings_skip_the_escaper_and_match_serde_json(
    ) -> Result<(), Box<dyn std::error::Error>> {
        // Every character below 0x100 alone, inside plain text, and a few beyond: the fast
        // path must decide "plain" exactly when serde_json would write the bytes unchanged.
        let mut values: Vec<String> = (0u32..0x100)
            .filter_map(char::from_u32)
            .flat_map(|c| [c.to_string(), format!("key:{c}:1")])
            .collect();
        values.extend(["", "client:12", "\u{7f}\u{2028}é😀", "a\"b"].map(String::from));
        for value in values {
            let mut mine = Vec::new();
            push_json_str(&mut mine, &value)?;
            assert_eq!(
                String::from_utf8(mine)?,
                serde_json::to_string(&value)?,
                "{value:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn hex_is_lower_case_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }
}
