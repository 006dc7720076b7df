//! The storage interface, exercised the same way on both implementations: the real O_DIRECT
//! files (on ext4 under /var/tmp, never tmpfs: glommio silently drops O_DIRECT there) and the
//! simulated disk. Then the simulation's faults, one by one.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::rc::Rc;

use mantis_storage::{
    DmaStorage, OpenMode, SimFaults, SimStorage, Storage, StorageError, BLOCK_SIZE,
};

fn run<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) {
    mantis_storage::rt::raise_memlock_limit().unwrap();
    mantis_storage::rt::run_local(f).unwrap();
}

fn block(fill: u8, n: usize) -> Vec<u8> {
    vec![fill; BLOCK_SIZE * n]
}

/// The contract every implementation keeps.
async fn contract(storage: Rc<dyn Storage>, dir: &Path) {
    storage.create_dir_all(dir).await.unwrap();
    let path = dir.join("a.dat");
    assert!(!storage.exists(&path).await.unwrap());
    assert!(matches!(storage.open(&path, OpenMode::Read).await, Err(e) if e.is_not_found()));

    let f = storage.open(&path, OpenMode::Create).await.unwrap();
    f.allocate(0, 4 * BLOCK_SIZE as u64).await.unwrap();
    f.write_at(0, &block(1, 2)).await.unwrap();
    f.write_at(2 * BLOCK_SIZE as u64, &block(2, 1))
        .await
        .unwrap();
    f.sync().await.unwrap();
    assert_eq!(f.size().await.unwrap(), 3 * BLOCK_SIZE as u64);
    // Unaligned reads are fine; short reads are errors.
    assert_eq!(f.read_at(100, 10).await.unwrap(), vec![1; 10]);
    assert_eq!(
        f.read_at(2 * BLOCK_SIZE as u64 - 3, 6).await.unwrap(),
        vec![1, 1, 1, 2, 2, 2]
    );
    assert!(matches!(
        f.read_at(3 * BLOCK_SIZE as u64 - 1, 2).await.unwrap_err(),
        StorageError::ShortRead { .. }
    ));
    assert_eq!(
        f.read_up_to(3 * BLOCK_SIZE as u64 - 1, 2).await.unwrap(),
        vec![2]
    );
    // Misaligned writes are refused before they reach the disk.
    assert!(matches!(
        f.write_at(10, &block(3, 1)).await.unwrap_err(),
        StorageError::Misaligned { .. }
    ));
    assert!(matches!(
        f.write_at(0, &[1, 2, 3]).await.unwrap_err(),
        StorageError::Misaligned { .. }
    ));
    f.truncate(BLOCK_SIZE as u64).await.unwrap();
    assert_eq!(f.size().await.unwrap(), BLOCK_SIZE as u64);
    f.close().await.unwrap();

    assert!(storage.open(&path, OpenMode::CreateNew).await.is_err());
    let to = dir.join("b.dat");
    storage.rename(&path, &to).await.unwrap();
    storage.sync_dir(dir).await.unwrap();
    let names = storage.list(dir).await.unwrap();
    assert!(
        names.contains(&"b.dat".to_string()) && !names.contains(&"a.dat".to_string()),
        "{names:?}"
    );
    let f = storage.open(&to, OpenMode::Read).await.unwrap();
    assert_eq!(f.read_at(0, BLOCK_SIZE).await.unwrap(), block(1, 1));
    f.close().await.unwrap();
    storage.remove(&to).await.unwrap();
    assert!(!storage.exists(&to).await.unwrap());
    assert!(storage.free_bytes(dir).await.unwrap() > 0);
}

#[test]
fn dma_storage_keeps_the_contract() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let dir = tmp.path().to_path_buf();
    run(|| async move {
        let s: Rc<dyn Storage> = Rc::new(DmaStorage::new(&dir).await.unwrap());
        contract(s, &dir.join("d")).await;
    });
}

#[test]
fn sim_storage_keeps_the_contract() {
    run(|| async {
        contract(SimStorage::new(1).handle(), &PathBuf::from("/d")).await;
    });
}

#[test]
fn crash_keeps_synced_blocks_and_loses_or_tears_unsynced_ones() {
    run(|| async {
        // Across seeds, an unsynced block is sometimes kept, sometimes lost, sometimes torn.
        let (mut kept, mut lost, mut torn) = (0, 0, 0);
        for seed in 0..64 {
            let sim = SimStorage::new(seed);
            let s = sim.handle();
            let p = PathBuf::from("/f");
            let f = s.open(&p, OpenMode::Create).await.unwrap();
            f.write_at(0, &block(7, 1)).await.unwrap();
            f.sync().await.unwrap();
            f.write_at(BLOCK_SIZE as u64, &block(9, 1)).await.unwrap();
            sim.crash();
            let data = sim.contents(&p).unwrap();
            assert_eq!(
                &data[..BLOCK_SIZE],
                &block(7, 1)[..],
                "seed {seed}: a synced block was lost"
            );
            match data.len() - BLOCK_SIZE {
                0 => lost += 1,
                BLOCK_SIZE if data[BLOCK_SIZE..].iter().all(|&b| b == 9) => kept += 1,
                n => {
                    assert_eq!(n % 512, 0, "seed {seed}: tears fall on sector boundaries");
                    torn += 1
                }
            }
        }
        assert!(
            kept > 0 && lost > 0 && torn > 0,
            "kept {kept} lost {lost} torn {torn}"
        );
    });
}

#[test]
fn failed_fsync_drops_the_dirty_data_like_linux() {
    run(|| async {
        let sim = SimStorage::with_faults(
            3,
            SimFaults {
                fail_sync_path_contains: Some("bad".into()),
                ..SimFaults::default()
            },
        );
        let s = sim.handle();
        let p = PathBuf::from("/bad");
        let f = s.open(&p, OpenMode::Create).await.unwrap();
        f.write_at(0, &block(5, 1)).await.unwrap();
        assert!(matches!(
            f.sync().await.unwrap_err(),
            StorageError::SyncFailed { .. }
        ));
        // The page cache still shows the data...
        assert_eq!(f.read_at(0, 4).await.unwrap(), vec![5; 4]);
        // ...a retried fsync "succeeds"...
        sim.set_faults(SimFaults::default());
        f.sync().await.unwrap();
        // ...and yet the data never reached the disk.
        sim.crash();
        let after = sim.contents(&p).unwrap();
        assert!(
            !after.starts_with(&[5; 4]),
            "data acknowledged only by a retried fsync survived"
        );
        assert_eq!(sim.sync_counts(), (2, 1));
    });
}

#[test]
fn capacity_limit_fails_new_space_but_not_allocated_space() {
    run(|| async {
        let sim = SimStorage::with_faults(
            4,
            SimFaults {
                capacity_bytes: Some(8 * BLOCK_SIZE as u64),
                ..SimFaults::default()
            },
        );
        let s = sim.handle();
        let a = s.open(Path::new("/a"), OpenMode::Create).await.unwrap();
        a.allocate(0, 4 * BLOCK_SIZE as u64).await.unwrap();
        let b = s.open(Path::new("/b"), OpenMode::Create).await.unwrap();
        b.write_at(0, &block(1, 4)).await.unwrap();
        // The disk is full: new space fails whole...
        assert!(b
            .write_at(4 * BLOCK_SIZE as u64, &block(1, 1))
            .await
            .unwrap_err()
            .is_disk_full());
        assert_eq!(b.size().await.unwrap(), 4 * BLOCK_SIZE as u64);
        assert!(s.free_bytes(Path::new("/")).await.unwrap() == 0);
        // ...but writes into preallocated space still work.
        a.write_at(0, &block(2, 4)).await.unwrap();
        a.sync().await.unwrap();
        // Freeing space lets new writes through again.
        s.remove(Path::new("/b")).await.unwrap();
        b.close().await.unwrap();
        let c = s.open(Path::new("/c"), OpenMode::Create).await.unwrap();
        c.write_at(0, &block(3, 2)).await.unwrap();
    });
}

#[test]
fn flip_bit_changes_exactly_one_bit() {
    run(|| async {
        let sim = SimStorage::new(5);
        let s = sim.handle();
        let p = PathBuf::from("/x");
        let f = s.open(&p, OpenMode::Create).await.unwrap();
        f.write_at(0, &block(0, 1)).await.unwrap();
        f.sync().await.unwrap();
        sim.flip_bit(&p, 100, 2).unwrap();
        let data = f.read_at(0, BLOCK_SIZE).await.unwrap();
        assert_eq!(data.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
        assert_eq!(data[100], 4);
        sim.crash();
        assert_eq!(sim.contents(&p).unwrap()[100], 4, "the flip is durable");
    });
}
