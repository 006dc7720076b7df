//! `mantisctl verify` and `mantisctl wal verify|repair` on real data directories (O_DIRECT on
//! the ext4 root filesystem): clean exits 0, damage exits 1 naming the file, repair cuts only
//! what follows the first bad record and says which LSNs it lost.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use mantis_engine::{Engine, EngineConfig};

fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        data_dir: dir.to_path_buf(),
        shards: 1,
        pin_cpus: false,
        wal_segment_bytes: 1 << 20,
        ..EngineConfig::default()
    }
}

fn put_all(engine: &Engine, n: usize, value_bytes: usize) {
    let h = engine.handle();
    for i in 0..n {
        let key = format!("key{i:05}").into_bytes();
        futures::executor::block_on(h.put(key, vec![b'v'; value_bytes], None)).unwrap();
    }
}

fn ctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mantisctl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn flip_bit(path: &Path, offset: u64) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut b).unwrap();
    b[0] ^= 0x10;
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&b).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn verify_exits_zero_when_clean_and_one_naming_a_damaged_segment() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let dir = tmp.path().join("data");
    let engine = Engine::open(config(&dir)).unwrap();
    put_all(&engine, 3000, 100);
    engine.shutdown().unwrap();
    let d = dir.to_str().unwrap();
    let (code, out, err) = ctl(&["verify", "--data-dir", d]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("problems 0"), "{out}");

    let seg = files(&dir.join("shard-0/seg"), "seg").pop().unwrap();
    flip_bit(&seg, 200);
    let (code, out, err) = ctl(&["verify", "--data-dir", d]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("PROBLEM") && err.contains(&seg.display().to_string()),
        "{err}"
    );
}

#[test]
fn wal_repair_cuts_after_the_first_bad_record_and_reports_lost_lsns() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let dir = tmp.path().join("data");
    let engine = Engine::open(config(&dir)).unwrap();
    put_all(&engine, 100, 3000);
    // Crash: everything is only in the WAL.
    engine.abandon();
    let d = dir.to_str().unwrap();
    let (code, out, err) = ctl(&["wal", "verify", "--data-dir", d]);
    assert_eq!(code, 0, "{out}{err}");

    let wal_dir = dir.join("shard-0/wal");
    let wal = files(&wal_dir, "wal").into_iter().min().unwrap();
    flip_bit(&wal, 4096 * 3 + 200);
    let (code, out, err) = ctl(&["wal", "verify", "--data-dir", d]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("PROBLEM") && err.contains("a repair would cut LSNs"),
        "{err}"
    );
    let (code, _, _) = ctl(&["verify", "--data-dir", d]);
    assert_eq!(code, 1);

    let (code, out, err) = ctl(&["wal", "repair", "--data-dir", d]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("lost") && out.contains("LSNs"), "{out}");
    let lost: Vec<PathBuf> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("lost-")
        })
        .collect();
    assert_eq!(lost.len(), 1, "a copy of the cut bytes is kept");
    let (code, out, err) = ctl(&["wal", "verify", "--data-dir", d]);
    assert_eq!(code, 0, "after repair: {out}{err}");

    // Only what follows the damage is gone: the first keys are there, and every value is right.
    let engine = Engine::open(config(&dir)).unwrap();
    let h = engine.handle();
    let first = futures::executor::block_on(h.get(b"key00000")).unwrap();
    assert_eq!(first, Some(vec![b'v'; 3000]));
    let mut present = 0;
    for i in 0..100 {
        let got = futures::executor::block_on(h.get(format!("key{i:05}").as_bytes())).unwrap();
        if let Some(v) = got {
            assert_eq!(v, vec![b'v'; 3000]);
            present += 1;
        }
    }
    assert!(present > 0 && present < 100, "present {present}");
    engine.shutdown().unwrap();
}
