//! Integrity: the offline verifier finds damage at every site (segment block, index, filter,
//! footer, manifest, WAL record); reads of damaged data raise corruption events; the
//! background scrubber finds damage nobody read.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{block_on, files_with, manifest_files, open, sim_config};
use mantis_engine::scrub::{verify_shard_dir, DataDirReport, ScrubConfig, Site};
use mantis_engine::EngineConfig;
use mantis_storage::{SimStorage, Storage};
use mantis_table::{BlockCache, CachePolicy, Segment, SegmentMeta};

const SHARD_DIR: &str = "/sim/shard-0";

/// Writes `n` keys through a one-shard engine and shuts it down cleanly (every memtable flushed).
fn load(sim: &SimStorage, n: usize) -> EngineConfig {
    let mut cfg = sim_config(sim, 1);
    cfg.memtable_bytes_max = 8 << 20;
    let engine = open(&cfg);
    let h = engine.handle();
    for i in 0..n {
        block_on(h.put(key(i), value(i), None)).unwrap();
    }
    engine.shutdown().unwrap();
    cfg
}

fn key(i: usize) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    vec![b'a' + (i % 26) as u8; 200]
}

fn verify(sim: &SimStorage) -> DataDirReport {
    let storage = sim.handle();
    mantis_storage::rt::run_local(|| async move {
        let mut report = DataDirReport::default();
        verify_shard_dir(&storage, Path::new(SHARD_DIR), 0, &mut report).await;
        report
    })
    .unwrap()
}

fn segment_meta(sim: &SimStorage, path: &Path) -> SegmentMeta {
    let storage: Rc<dyn Storage> = sim.handle();
    let path = path.to_path_buf();
    mantis_storage::rt::run_local(|| async move {
        let cache = Rc::new(BlockCache::new(1 << 20, CachePolicy::Lru));
        Segment::open(&storage, &path, 1, cache)
            .await
            .unwrap()
            .meta()
            .clone()
    })
    .unwrap()
}

/// Asserts the report has a problem at `site` naming `file`.
fn assert_problem(report: &DataDirReport, site: Site, file: &Path) {
    assert!(
        report.problems().any(|f| f.site == site && f.file == file),
        "no {site:?} problem for {}: {:#?}",
        file.display(),
        report.findings
    );
}

#[test]
fn clean_directory_verifies_clean() {
    let sim = SimStorage::new(11);
    load(&sim, 2000);
    let report = verify(&sim);
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert!(report.segments_checked >= 1);
    assert!(report.blocks_checked > 1);
    assert!(report.manifest_records >= 1);
}

#[test]
fn every_segment_site_is_detected() {
    // (what, offset chooser)
    type Pick = fn(&SegmentMeta) -> u64;
    let sites: [(&str, Pick); 5] = [
        ("data block", |_| 100),
        ("index", |m| m.index_handle.offset + 20),
        ("filter", |m| m.filter_handle.offset + 20),
        ("properties", |m| m.properties_handle.offset + 10),
        ("footer", |m| m.file_size_bytes - 20),
    ];
    for (i, (what, pick)) in sites.iter().enumerate() {
        let sim = SimStorage::new(20 + i as u64);
        load(&sim, 2000);
        let seg = files_with(&sim, "seg").pop().unwrap();
        let at = pick(&segment_meta(&sim, &seg));
        sim.flip_bit(&seg, at, 2).unwrap();
        let report = verify(&sim);
        assert!(!report.is_clean(), "{what}: flip at {at} not detected");
        assert_problem(&report, Site::Segment, &seg);
    }
}

#[test]
fn damaged_manifest_records_are_detected() {
    for (seed, which) in [(30u64, "first"), (31, "last")] {
        let sim = SimStorage::new(seed);
        let mut cfg = sim_config(&sim, 1);
        cfg.memtable_bytes_max = 64 << 10;
        let engine = open(&cfg);
        let h = engine.handle();
        for i in 0..3000 {
            block_on(h.put(key(i), value(i), None)).unwrap();
        }
        engine.shutdown().unwrap();
        let manifest = manifest_files(&sim).pop().unwrap();
        let data = sim.contents(&manifest).unwrap();
        let records: Vec<u64> = (0..data.len() / 4096)
            .filter(|b| data[b * 4096..b * 4096 + 4] == 0x4d4d_414e_u32.to_le_bytes())
            .map(|b| (b * 4096) as u64)
            .collect();
        assert!(
            records.len() >= 2,
            "want several manifest records, got {records:?}"
        );
        let at = if which == "first" {
            records[0]
        } else {
            *records.last().unwrap()
        };
        sim.flip_bit(&manifest, at + 40, 1).unwrap();
        let report = verify(&sim);
        assert_problem(&report, Site::Manifest, &manifest);
        let p = report
            .problems()
            .find(|f| f.site == Site::Manifest)
            .unwrap();
        assert_eq!(p.offset, at, "{p}");
    }
}

#[test]
fn damaged_wal_record_is_detected_and_torn_tail_is_only_a_note() {
    let sim = SimStorage::new(40);
    let mut cfg = sim_config(&sim, 1);
    cfg.memtable_bytes_max = 8 << 20;
    let engine = open(&cfg);
    let h = engine.handle();
    for i in 0..200 {
        block_on(h.put(key(i), vec![b'q'; 3000], None)).unwrap();
    }
    engine.abandon();
    assert!(verify(&sim).is_clean());
    let wal = files_with(&sim, "wal").into_iter().min().unwrap();
    sim.flip_bit(&wal, 4096 * 3 + 200, 5).unwrap();
    let report = verify(&sim);
    assert_problem(&report, Site::Wal, &wal);
}

/// Polls the shard's stats until `done` holds, for at most 20 s.
fn wait_stats(
    h: &mantis_engine::EngineHandle,
    done: impl Fn(&mantis_engine::ShardStats) -> bool,
) -> mantis_engine::ShardStats {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = block_on(h.stats()).unwrap().remove(0);
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out: {s:#?}");
        std::thread::yield_now();
    }
}

#[test]
fn scrubber_finds_damage_nobody_read() {
    let sim = SimStorage::new(50);
    let mut cfg = load(&sim, 2000);
    cfg.scrub = ScrubConfig {
        interval_secs: 0,
        rate_bytes_per_sec: 0,
    };
    let engine = open(&cfg);
    let h = engine.handle();
    block_on(h.request_scrub()).unwrap();
    let clean = wait_stats(&h, |s| s.scrub.passes_completed >= 1 && !s.scrub.running);
    assert_eq!(clean.scrub.corruptions_found, 0);
    assert_eq!(clean.corruption_events, 0);
    assert!(clean.scrub.blocks_scrubbed_total > 1);
    assert!(clean.scrub.bytes_scrubbed_total >= clean.segment_bytes / 2);
    assert!(clean.scrub.last_full_pass_end_unix_ms > 0);

    let seg = files_with(&sim, "seg").pop().unwrap();
    sim.flip_bit(&seg, 100, 6).unwrap();
    block_on(h.request_scrub()).unwrap();
    let s = wait_stats(&h, |s| s.scrub.passes_completed >= 2 && !s.scrub.running);
    assert_eq!(s.scrub.corruptions_found, 1, "{s:#?}");
    assert_eq!(s.corruption_events, 1);
    let ev = s.last_corruption.unwrap();
    assert_eq!(ev.file, seg);
    assert_eq!(ev.site, Site::Segment);
    assert!(ev.expected_crc.is_some() && ev.found_crc.is_some() && ev.expected_crc != ev.found_crc);
    engine.shutdown().unwrap();
}

#[test]
fn corrupt_read_is_an_error_and_an_event_never_data() {
    let sim = SimStorage::new(60);
    let cfg = load(&sim, 2000);
    let seg = files_with(&sim, "seg").pop().unwrap();
    sim.flip_bit(&seg, 100, 3).unwrap();
    let engine = open(&cfg);
    let h = engine.handle();
    let mut errors = 0;
    for i in 0..2000 {
        match block_on(h.get(&key(i))) {
            Ok(v) => assert_eq!(v, Some(value(i))),
            Err(e) => {
                assert!(e.is_corruption(), "{e}");
                errors += 1;
            }
        }
    }
    assert!(errors > 0);
    let s = block_on(h.stats()).unwrap().remove(0);
    assert_eq!(s.corruption_events, errors);
    let ev = s.last_corruption.unwrap();
    assert_eq!((ev.file, ev.site), (seg, Site::Segment));
    engine.shutdown().unwrap();
}
