//! Backups to a local directory: the whole scenario (see common/mod.rs).
#![allow(clippy::unwrap_used)]

mod common;

use mantis_backup::{Destination, LocalDir};

#[test]
fn backup_verify_restore_and_refusals_on_a_local_dir() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let dest = LocalDir::new(dir.path());
    common::scenario(&dest);
    // Nothing half-written is left under a real name.
    let names = dest.list("").unwrap();
    assert!(names.iter().all(|n| !n.contains("tmp-upload")), "{names:?}");
}
