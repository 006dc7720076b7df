//! `mantisctl verify`: checks a stopped data directory end to end (layout file, and per shard
//! the manifest, every live segment read whole, and the WAL) without changing anything.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use mantis_storage::format::{SEGMENT_DIR, SEGMENT_FILE_SUFFIX, WAL_DIR};
use mantis_storage::Storage;
use mantis_table::{BlockCache, CachePolicy, Segment};

use super::{manifest_check, Finding, Severity, Site};
use crate::shard::segment_path;

/// Segments are opened only to be read once; their blocks need no cache.
const VERIFY_CACHE_BYTES: usize = 1 << 20;

/// What `verify_data_dir` checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataDirReport {
    pub shards: usize,
    pub manifest_records: u64,
    pub segments_checked: u64,
    pub blocks_checked: u64,
    pub bytes_checked: u64,
    pub wal_records_checked: u64,
    pub findings: Vec<Finding>,
}

impl DataDirReport {
    /// No damage (notes allowed).
    pub fn is_clean(&self) -> bool {
        !self.findings.iter().any(Finding::is_problem)
    }

    pub fn problems(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.is_problem())
    }
}

/// Verifies every shard of the data directory `dir`. Must run on a glommio executor.
pub async fn verify_data_dir(storage: &Rc<dyn Storage>, dir: &Path) -> DataDirReport {
    let mut report = DataDirReport::default();
    let Some(shards) = crate::layout::read_shards(dir) else {
        report.findings.push(Finding {
            shard: 0,
            site: Site::Layout,
            severity: Severity::Problem,
            file: dir.join(mantis_storage::format::LAYOUT_FILE_NAME),
            offset: 0,
            detail: "missing or unreadable layout file: not a MantisDB data directory".into(),
        });
        return report;
    };
    report.shards = shards;
    for shard in 0..shards {
        let shard_dir = dir.join(format!("shard-{shard}"));
        verify_shard_dir(storage, &shard_dir, shard, &mut report).await;
    }
    report
}

/// Verifies one shard directory, adding to `report`.
pub async fn verify_shard_dir(
    storage: &Rc<dyn Storage>,
    dir: &Path,
    shard: usize,
    report: &mut DataDirReport,
) {
    let mut manifest = manifest_check::check(storage.as_ref(), dir, shard).await;
    report.manifest_records += manifest.records;
    report.findings.append(&mut manifest.findings);
    if let Some(state) = &manifest.state {
        verify_segments(storage, dir, shard, state, report).await;
    }
    verify_wal(storage.as_ref(), &dir.join(WAL_DIR), shard, report).await;
}

async fn verify_segments(
    storage: &Rc<dyn Storage>,
    dir: &Path,
    shard: usize,
    state: &crate::manifest::ManifestState,
    report: &mut DataDirReport,
) {
    let finding = |severity, file: PathBuf, offset, detail| Finding {
        shard,
        site: Site::Segment,
        severity,
        file,
        offset,
        detail,
    };
    let listed: HashSet<PathBuf> = state
        .segments
        .iter()
        .map(|s| segment_path(dir, s.id))
        .collect();
    let seg_dir = dir.join(SEGMENT_DIR);
    match storage.list(&seg_dir).await {
        Ok(names) => {
            for name in names.iter().filter(|n| n.ends_with(SEGMENT_FILE_SUFFIX)) {
                let path = seg_dir.join(name);
                if !listed.contains(&path) {
                    let detail = "not listed in the manifest (left by a crashed flush or compaction, or by a manifest that lost a record); startup deletes it".into();
                    report
                        .findings
                        .push(finding(Severity::Note, path, 0, detail));
                }
            }
        }
        Err(e) => report.findings.push(finding(
            Severity::Problem,
            seg_dir.clone(),
            0,
            format!("cannot list: {e}"),
        )),
    }
    let cache = Rc::new(BlockCache::new(VERIFY_CACHE_BYTES, CachePolicy::Lru));
    for r in &state.segments {
        let path = segment_path(dir, r.id);
        let checked = match Segment::open(storage, &path, r.id, cache.clone()).await {
            Ok(seg) => seg.verify().await.map(|v| (seg, v)),
            Err(e) => Err(e),
        };
        match checked {
            Ok((seg, v)) => {
                report.segments_checked += 1;
                report.blocks_checked += v.blocks_checked;
                report.bytes_checked += v.bytes_checked;
                if seg.meta().file_size_bytes != r.size_bytes {
                    report.findings.push(finding(
                        Severity::Problem,
                        path,
                        0,
                        format!(
                            "size {} bytes, the manifest records {}",
                            seg.meta().file_size_bytes,
                            r.size_bytes
                        ),
                    ));
                }
            }
            Err(e) => {
                let offset = table_error_offset(&e);
                report
                    .findings
                    .push(finding(Severity::Problem, path, offset, e.to_string()));
            }
        }
    }
}

/// The offset a table error names, when it names one.
pub(crate) fn table_error_offset(e: &mantis_table::TableError) -> u64 {
    match e {
        mantis_table::TableError::ChecksumMismatch { offset, .. }
        | mantis_table::TableError::DigestMismatch { offset, .. }
        | mantis_table::TableError::Corrupt { offset, .. } => *offset,
        _ => 0,
    }
}

async fn verify_wal(
    storage: &dyn Storage,
    wal_dir: &Path,
    shard: usize,
    report: &mut DataDirReport,
) {
    let finding = |severity, file: PathBuf, offset, detail| Finding {
        shard,
        site: Site::Wal,
        severity,
        file,
        offset,
        detail,
    };
    match mantis_wal::verify(storage, wal_dir, shard).await {
        Ok(v) => {
            report.wal_records_checked += v.records_ok;
            for p in &v.problems {
                let detail = format!("{} (LSN {})", p.reason, p.lsn);
                report
                    .findings
                    .push(finding(Severity::Problem, p.file.clone(), p.offset, detail));
            }
            if let Some((first, last)) = v.lost_lsns {
                let detail = format!("a repair would cut LSNs {first}..={last}");
                report
                    .findings
                    .push(finding(Severity::Problem, wal_dir.to_path_buf(), 0, detail));
            }
            if let Some(t) = v.torn_tail {
                let detail = format!(
                    "torn tail of {} bytes (normal after a crash; startup zeroes it)",
                    t.bytes
                );
                report
                    .findings
                    .push(finding(Severity::Note, t.file, t.offset, detail));
            }
        }
        Err(e) => report.findings.push(finding(
            Severity::Problem,
            wal_dir.to_path_buf(),
            0,
            e.to_string(),
        )),
    }
}
