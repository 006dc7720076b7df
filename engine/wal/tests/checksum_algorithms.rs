#![allow(clippy::unwrap_used)]
//! Issue 7: the WAL's record checksum is selectable (`WalConfig::checksum`: CRC32, MD5,
//! SHA-256) and recorded in every chunk header (format v2, byte 6), so a log written under
//! one choice reads under another, and a version-1 log (all CRC32) still reads.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use mantis_storage::{OpenMode, SimStorage, BLOCK_SIZE};
use mantis_wal::frame::ChunkHeader;
use mantis_wal::{
    record_header_bytes, verify, ChecksumAlgorithm, CorruptReason, WalConfig, WalError,
    CHUNK_HEADER_BYTES,
};

const SEED: u64 = 77;
const RECORDS: u64 = 40;

fn cfg(checksum: ChecksumAlgorithm) -> WalConfig {
    WalConfig {
        checksum,
        ..small_cfg()
    }
}

/// Records of varied sizes (empty, tiny, across blocks), one chunk each.
fn record_len(i: u64) -> usize {
    [0usize, 1, 100, 3000, 5000][(i % 5) as usize]
}

fn write_log(sim: &SimStorage, checksum: ChecksumAlgorithm) {
    let sim = sim.clone();
    run(move || async move {
        let (wal, _, _) = open_collect(sim.handle(), &wal_path(), cfg(checksum), 0)
            .await
            .unwrap();
        for i in 0..RECORDS {
            let p = payload(SEED, i, record_len(i).max(8))[..record_len(i)].to_vec();
            assert_eq!(wal.append(4, p).await.unwrap(), i + 1);
        }
        wal.close().await.unwrap();
    });
}

/// Every chunk header in the log: (file, offset, header).
fn chunks(sim: &SimStorage) -> Vec<(PathBuf, u64, ChunkHeader)> {
    let mut out = Vec::new();
    for f in sim_segments(sim) {
        let data = sim.contents(&f).unwrap();
        for (i, b) in data.chunks(BLOCK_SIZE).enumerate() {
            if let Ok(h) = ChunkHeader::decode(b) {
                out.push((f.clone(), (i * BLOCK_SIZE) as u64, h));
            }
        }
    }
    out
}

fn chunk_at_lsn(sim: &SimStorage, lsn: u64) -> (PathBuf, u64) {
    let (f, off, _) = chunks(sim)
        .into_iter()
        .find(|(_, _, h)| h.first_lsn == lsn)
        .unwrap();
    (f, off)
}

fn replay_all(sim: &SimStorage, checksum: ChecksumAlgorithm) -> Result<Vec<Vec<u8>>, WalError> {
    let sim = sim.clone();
    run(move || async move {
        let (wal, replayed, _) = open_collect(sim.handle(), &wal_path(), cfg(checksum), 0).await?;
        wal.close().await.unwrap();
        Ok(replayed.into_iter().map(|r| r.payload).collect())
    })
}

fn expected_payloads() -> Vec<Vec<u8>> {
    (0..RECORDS)
        .map(|i| payload(SEED, i, record_len(i).max(8))[..record_len(i)].to_vec())
        .collect()
}

#[test]
fn each_algorithm_round_trips_and_is_recorded_per_chunk() {
    for alg in ChecksumAlgorithm::ALL {
        let sim = SimStorage::new(SEED);
        write_log(&sim, alg);
        let found = chunks(&sim);
        assert_eq!(found.len() as u64, RECORDS, "{alg}: one chunk per record");
        for (_, _, h) in &found {
            assert_eq!(h.checksum, alg);
            let record_bytes = record_header_bytes(alg) as u64 + record_len(h.first_lsn - 1) as u64;
            assert_eq!(u64::from(h.payload_len), record_bytes, "{alg}: record size");
        }
        // Read back under the same setting and under another: the chunk says which it is.
        assert_eq!(replay_all(&sim, alg).unwrap(), expected_payloads(), "{alg}");
        let other = ChecksumAlgorithm::ALL[(alg.id() as usize) % 3];
        assert_ne!(other, alg);
        assert_eq!(
            replay_all(&sim, other).unwrap(),
            expected_payloads(),
            "{alg} read with {other}"
        );
    }
}

/// A flipped bit in a record's payload, and one in the last byte of its checksum field (past
/// the first four bytes for MD5 and SHA-256: the whole digest is compared), is refused at
/// open and named by `verify` as that record's checksum failure.
#[test]
fn record_corruption_is_detected_under_each_algorithm() {
    for alg in ChecksumAlgorithm::ALL {
        for (what, at_in_record) in [
            ("payload", record_header_bytes(alg) as u64 + 50),
            ("checksum field", record_header_bytes(alg) as u64 - 1),
        ] {
            let sim = SimStorage::new(SEED);
            write_log(&sim, alg);
            let bad_lsn = 4; // record_len(3) = 3000 bytes
            let (file, offset) = chunk_at_lsn(&sim, bad_lsn);
            sim.flip_bit(&file, offset + CHUNK_HEADER_BYTES as u64 + at_in_record, 2)
                .unwrap();
            let err = replay_all(&sim, alg).err().unwrap();
            match &err {
                WalError::Corrupt { lsn, reason, .. } => {
                    assert_eq!(*lsn, bad_lsn - 1, "{alg} {what}: {err}");
                    assert!(
                        matches!(reason, CorruptReason::PayloadChecksum { .. }),
                        "{alg} {what}: {err}"
                    );
                }
                other => panic!("{alg} {what}: unexpected {other}"),
            }
            let s = sim.clone();
            let report = run(move || async move {
                verify(s.handle().as_ref(), &wal_path(), 0).await.unwrap()
            });
            assert!(
                report.problems.iter().any(|p| p.lsn == bad_lsn
                    && matches!(p.reason, CorruptReason::RecordChecksum { lsn, .. } if lsn == bad_lsn)),
                "{alg} {what}: {:?}",
                report.problems
            );
        }
    }
}

/// Rewrites every chunk header of the log as format version 1 wrote it: version 1, byte 6
/// zero (CRC32 records are laid out the same in both versions).
fn downgrade_to_v1(sim: &SimStorage) {
    let headers = chunks(sim);
    let s = sim.clone();
    run(move || async move {
        let storage = s.handle();
        for (file, offset, _) in headers {
            let data = s.contents(&file).unwrap();
            let at = offset as usize;
            let mut block = data[at..at + BLOCK_SIZE].to_vec();
            block[4..6].copy_from_slice(&1u16.to_le_bytes());
            block[6] = 0;
            let crc = crc32fast::hash(&block[0..36]);
            block[36..40].copy_from_slice(&crc.to_le_bytes());
            let f = storage
                .open(Path::new(&file), OpenMode::ReadWrite)
                .await
                .unwrap();
            f.write_at(offset, &block).await.unwrap();
            f.sync().await.unwrap();
        }
    });
}

#[test]
fn version_1_log_still_reads_as_crc32() {
    let sim = SimStorage::new(SEED);
    write_log(&sim, ChecksumAlgorithm::Crc32);
    downgrade_to_v1(&sim);
    let found = chunks(&sim);
    assert_eq!(found.len() as u64, RECORDS);
    for (file, offset, h) in &found {
        let data = sim.contents(file).unwrap();
        assert_eq!(
            &data[*offset as usize + 4..*offset as usize + 7],
            &[1, 0, 0]
        );
        assert_eq!(h.checksum, ChecksumAlgorithm::Crc32);
    }
    // Read by a build configured for SHA-256: the old chunks are CRC32 whatever the setting,
    // and new appends go on after them under the new setting.
    assert_eq!(
        replay_all(&sim, ChecksumAlgorithm::Sha256).unwrap(),
        expected_payloads()
    );
    let s = sim.clone();
    run(move || async move {
        let (wal, replayed, _) =
            open_collect(s.handle(), &wal_path(), cfg(ChecksumAlgorithm::Sha256), 0)
                .await
                .unwrap();
        assert_eq!(replayed.len() as u64, RECORDS);
        assert_eq!(
            wal.append(9, b"v2 after v1".to_vec()).await.unwrap(),
            RECORDS + 1
        );
        wal.close().await.unwrap();
    });
    let last = chunks(&sim)
        .into_iter()
        .max_by_key(|c| c.2.first_lsn)
        .unwrap();
    assert_eq!(last.2.checksum, ChecksumAlgorithm::Sha256);
    let mut all = expected_payloads();
    all.push(b"v2 after v1".to_vec());
    assert_eq!(replay_all(&sim, ChecksumAlgorithm::Crc32).unwrap(), all);
    // A version-1 header with a nonzero byte 6 is not something version 1 wrote.
    let (file, offset, _) = chunks(&sim).into_iter().next().unwrap();
    let mut block = sim.contents(&file).unwrap()[offset as usize..offset as usize + 64].to_vec();
    block[4..6].copy_from_slice(&1u16.to_le_bytes());
    block[6] = 3;
    let crc = crc32fast::hash(&block[0..36]);
    block[36..40].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        ChunkHeader::decode(&block),
        Err(CorruptReason::BadVersion { found: 1 })
    ));
}
