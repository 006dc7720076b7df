#![allow(clippy::unwrap_used)]
//! The audit trail: a clean trail verifies; every kind of tampering (edit, delete, insert,
//! reorder) is detected, naming the first bad record; a retention cut still verifies.

use std::path::Path;

use mantis_monitor::audit::{self, AuditError, AuditEvent, AuditWriter, AUDIT_FILE};

fn event(i: u64) -> AuditEvent {
    AuditEvent {
        who: "alice".into(),
        from: "127.0.0.1:5000".into(),
        protocol: "resp".into(),
        what: "SET".into(),
        target: format!("key{i}").into(),
        outcome: "ok".into(),
    }
}

fn write_trail(dir: &Path, records: u64) {
    let mut w = AuditWriter::open(dir, 4).unwrap();
    for i in 1..=records {
        if w.is_full() {
            w.flush().unwrap();
        }
        w.append(1_000 + i, event(i)).unwrap();
    }
    w.flush().unwrap();
}

fn lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(AUDIT_FILE))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn put_lines(dir: &Path, lines: &[String]) {
    std::fs::write(dir.join(AUDIT_FILE), lines.join("\n") + "\n").unwrap();
}

/// The 1-based line of the first bad record.
fn first_bad(dir: &Path) -> u64 {
    match audit::verify(dir) {
        Err(AuditError::Broken { line, .. }) => line,
        other => panic!("tampering not detected: {other:?}"),
    }
}

#[test]
fn clean_trail_verifies_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    write_trail(dir.path(), 10);
    let v = audit::verify(dir.path()).unwrap();
    assert_eq!(v.records, 10);
    assert_eq!(v.head.seq, 10);
    let mut out = Vec::new();
    assert_eq!(audit::export(dir.path(), &mut out).unwrap(), 10);
    let text = String::from_utf8(out).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["seq"], 1);
    assert_eq!(first["target"], "key1");
    assert_eq!(first["prev"], audit::GENESIS_HASH);
    // Reopening chains onto the head.
    write_trail(dir.path(), 3);
    assert_eq!(audit::verify(dir.path()).unwrap().head.seq, 13);
}

#[test]
fn edited_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_trail(dir.path(), 10);
    let mut l = lines(dir.path());
    l[4] = l[4].replace("key5", "key6");
    put_lines(dir.path(), &l);
    assert_eq!(first_bad(dir.path()), 5);
    let msg = audit::verify(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("record 5") && msg.contains("content altered"),
        "{msg}"
    );
}

#[test]
fn edit_with_recomputed_hash_breaks_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    write_trail(dir.path(), 10);
    let mut l = lines(dir.path());
    let mut r: audit::AuditRecord = serde_json::from_str(&l[2]).unwrap();
    r.event.outcome = "denied".into();
    r.hash = audit::record_hash(r.seq, r.ts_ms, &r.event, &r.prev);
    l[2] = serde_json::to_string(&r).unwrap();
    put_lines(dir.path(), &l);
    assert_eq!(first_bad(dir.path()), 4);
}

#[test]
fn deleted_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_trail(dir.path(), 10);
    let mut l = lines(dir.path());
    l.remove(6);
    put_lines(dir.path(), &l);
    assert_eq!(first_bad(dir.path()), 7);
}

#[test]
fn inserted_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_trail(dir.path(), 10);
    let mut l = lines(dir.path());
    let forged = l[2].clone();
    l.insert(3, forged);
    put_lines(dir.path(), &l);
    assert_eq!(first_bad(dir.path()), 4);
}

#[test]
fn reordered_records_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_trail(dir.path(), 10);
    let mut l = lines(dir.path());
    l.swap(7, 8);
    put_lines(dir.path(), &l);
    assert_eq!(first_bad(dir.path()), 8);
}

#[test]
fn truncated_first_records_without_a_cut_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    write_trail(dir.path(), 10);
    let l = lines(dir.path());
    put_lines(dir.path(), &l[3..]);
    assert_eq!(first_bad(dir.path()), 1);
}

#[test]
fn retention_cut_verifies_and_keeps_chaining() {
    let dir = tempfile::tempdir().unwrap();
    write_trail(dir.path(), 20);
    let mut w = AuditWriter::open(dir.path(), 8).unwrap();
    let dropped = w.cut(5_000, 15, "admin").unwrap();
    assert_eq!(dropped, 14);
    w.append(6_000, event(99)).unwrap();
    w.flush().unwrap();
    drop(w);
    let v = audit::verify(dir.path()).unwrap();
    assert_eq!(v.first_seq, 15);
    // 15..=20, the cut record (21), and one more (22).
    assert_eq!(v.records, 8);
    assert_eq!(v.head.seq, 22);
    // Removing the first kept record is still detected after the cut.
    let l = lines(dir.path());
    put_lines(dir.path(), &l[1..]);
    assert_eq!(first_bad(dir.path()), 1);
}

#[test]
fn interrupted_cut_leaves_a_verifiable_trail() {
    let dir = tempfile::tempdir().unwrap();
    write_trail(dir.path(), 12);
    let before = std::fs::read(dir.path().join(AUDIT_FILE)).unwrap();
    let mut w = AuditWriter::open(dir.path(), 8).unwrap();
    w.cut(5_000, 6, "admin").unwrap();
    drop(w);
    // A crash after the cut point was renamed but before the shortened file was: the old
    // file with the cut record appended.
    let after = lines(dir.path());
    let mut old: Vec<String> = String::from_utf8(before)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    old.push(after.last().unwrap().clone());
    put_lines(dir.path(), &old);
    assert_eq!(audit::verify(dir.path()).unwrap().head.seq, 13);
}

#[test]
fn a_broken_trail_is_not_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    write_trail(dir.path(), 5);
    let mut l = lines(dir.path());
    l.swap(1, 2);
    put_lines(dir.path(), &l);
    assert!(AuditWriter::open(dir.path(), 4).is_err());
}
