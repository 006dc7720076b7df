//! Offline check of a shard's manifest files: every block of the log must be a valid record
//! or zero. Startup reads records up to the first invalid one and silently uses the state
//! before it, so a damaged record in the middle would roll the shard back: the verifier names
//! it instead.

use std::path::Path;

use mantis_storage::format::MANIFEST_PREFIX;
use mantis_storage::{align_up, Storage, BLOCK_SIZE};

use super::{Finding, Severity, Site};
use crate::manifest::{parse_header, ManifestState, HEADER_BYTES, MANIFEST_RECORD_BYTES_MAX};

/// What the check of one shard's manifest found.
pub(crate) struct ManifestCheck {
    /// The state startup would use (the newest valid record of the newest generation).
    pub state: Option<ManifestState>,
    pub records: u64,
    pub findings: Vec<Finding>,
}

pub(crate) async fn check(storage: &dyn Storage, dir: &Path, shard: usize) -> ManifestCheck {
    let mut out = ManifestCheck {
        state: None,
        records: 0,
        findings: Vec::new(),
    };
    let problem = |file: &Path, offset: u64, detail: String| Finding {
        shard,
        site: Site::Manifest,
        severity: Severity::Problem,
        file: file.to_path_buf(),
        offset,
        detail,
    };
    let names = match storage.list(dir).await {
        Ok(n) => n,
        Err(e) => {
            out.findings.push(problem(
                dir,
                0,
                format!("cannot list the shard directory: {e}"),
            ));
            return out;
        }
    };
    let mut generations: Vec<(u64, String)> = names
        .into_iter()
        .filter_map(|n| Some((n.strip_prefix(MANIFEST_PREFIX)?.parse().ok()?, n)))
        .collect();
    generations.sort_unstable();
    if generations.is_empty() {
        out.findings
            .push(problem(dir, 0, "no manifest file (MANIFEST-*)".into()));
        return out;
    }
    for (_, name) in &generations {
        let path = dir.join(name);
        let (records, state, mut findings) = check_file(storage, &path, shard).await;
        out.records += records;
        out.findings.append(&mut findings);
        // The newest generation with a valid record wins, as at startup.
        if state.is_some() {
            out.state = state;
        }
    }
    if out.state.is_none() {
        out.findings.push(problem(
            dir,
            0,
            "no manifest file holds a valid record".into(),
        ));
    }
    out
}

/// Walks one manifest file record by record; returns (valid records, last state, findings).
async fn check_file(
    storage: &dyn Storage,
    path: &Path,
    shard: usize,
) -> (u64, Option<ManifestState>, Vec<Finding>) {
    let mut findings = Vec::new();
    let mut problem = |offset: u64, detail: String| {
        findings.push(Finding {
            shard,
            site: Site::Manifest,
            severity: Severity::Problem,
            file: path.to_path_buf(),
            offset,
            detail,
        })
    };
    let data = match read_all(storage, path).await {
        Ok(d) => d,
        Err(e) => {
            problem(0, format!("cannot read: {e}"));
            return (0, None, findings);
        }
    };
    let mut offset = 0usize;
    let mut records = 0u64;
    let mut last: Option<(u64, ManifestState)> = None;
    while offset + BLOCK_SIZE <= data.len() {
        let head = &data[offset..offset + BLOCK_SIZE];
        if head.iter().all(|&b| b == 0) {
            break;
        }
        let Some(h) = parse_header(head) else {
            problem(
                offset as u64,
                damaged("bad record header (magic, version or header CRC)", &last),
            );
            break;
        };
        let end = offset + HEADER_BYTES + h.payload_len;
        if h.payload_len > MANIFEST_RECORD_BYTES_MAX || end > data.len() {
            problem(
                offset as u64,
                damaged(
                    &format!("record length {} runs past the file", h.payload_len),
                    &last,
                ),
            );
            break;
        }
        let body = &data[offset + HEADER_BYTES..end];
        let found = crc32fast::hash(body);
        if found != h.payload_crc {
            problem(
                offset as u64,
                damaged(
                    &format!(
                        "payload checksum mismatch: expected crc32 {:08x}, found {found:08x}",
                        h.payload_crc
                    ),
                    &last,
                ),
            );
            break;
        }
        let Some(state) = ManifestState::decode(body) else {
            problem(offset as u64, damaged("payload does not decode", &last));
            break;
        };
        if last.as_ref().is_some_and(|(prev, _)| h.seq <= *prev) {
            // A stale record past the end of the log: startup stops here too, and rightly.
            break;
        }
        records += 1;
        last = Some((h.seq, state));
        offset += align_up(HEADER_BYTES + h.payload_len);
    }
    (records, last.map(|(_, s)| s), findings)
}

/// The detail of a damaged record: what startup would fall back to.
fn damaged(what: &str, last: &Option<(u64, ManifestState)>) -> String {
    match last {
        Some((seq, _)) => {
            format!("{what}; startup would silently use the older state of record {seq}")
        }
        None => format!("{what}; no valid record before it"),
    }
}

async fn read_all(
    storage: &dyn Storage,
    path: &Path,
) -> Result<Vec<u8>, mantis_storage::StorageError> {
    let file = storage.open(path, mantis_storage::OpenMode::Read).await?;
    let size = file.size().await?;
    let len = (size as usize / BLOCK_SIZE) * BLOCK_SIZE;
    if len == 0 {
        return Ok(Vec::new());
    }
    file.read_at(0, len).await
}
