//! Collections end to end on a simulated disk: CRUD, patches, indexes, queries, explain,
//! large documents with checksums, and corruption detection.
#![allow(clippy::unwrap_used)]

mod common;

use common::{block_on, open, sim_config};
use mantis_doc::{DocError, DocStore, PatchOp, Query};
use mantis_engine::BatchOp;
use mantis_storage::SimStorage;
use serde_json::json;

fn q(v: serde_json::Value) -> Query {
    Query::parse(&v).unwrap()
}

#[test]
fn insert_get_replace_patch_delete() {
    let sim = SimStorage::new(1);
    let engine = open(&sim_config(&sim, 2));
    let s = DocStore::new(engine.handle());
    let text = "{\"_id\": \"u1\", \"n\": 1.0, \"big\": 1e400, \"s\": \"\\u00e9\"}";
    assert_eq!(block_on(s.insert("users", None, text)).unwrap(), "u1");
    assert_eq!(
        block_on(s.get("users", "u1")).unwrap().as_deref(),
        Some(text)
    );
    assert!(matches!(
        block_on(s.insert("users", Some("u1"), "{}")),
        Err(DocError::Exists { .. })
    ));
    let gen = block_on(s.insert("users", None, "{\"x\": [1, 2]}")).unwrap();
    assert_eq!(
        block_on(s.get("users", &gen)).unwrap().unwrap(),
        "{\"x\": [1, 2]}"
    );
    block_on(s.replace("users", "u1", "{\"n\": 2}")).unwrap();
    assert_eq!(
        block_on(s.get("users", "u1")).unwrap().unwrap(),
        "{\"n\": 2}"
    );
    assert!(matches!(
        block_on(s.replace("users", "nobody", "{}")),
        Err(DocError::NotFound { .. })
    ));
    let ops = PatchOp::parse_list(
        r#"[{"op":"set","path":"a.b","value":10.50},{"op":"unset","path":"n"},{"op":"set","path":"c","value":"x"}]"#,
    )
    .unwrap();
    let patched = block_on(s.patch("users", "u1", ops)).unwrap();
    assert_eq!(patched, "{\"a\":{\"b\":10.50},\"c\":\"x\"}");
    assert_eq!(block_on(s.get("users", "u1")).unwrap().unwrap(), patched);
    // A patch that fails part-way changes nothing (atomic).
    let ops = PatchOp::parse_list(
        r#"[{"op":"set","path":"d","value":1},{"op":"set","path":"c.x","value":1}]"#,
    )
    .unwrap();
    assert!(matches!(
        block_on(s.patch("users", "u1", ops)),
        Err(DocError::BadPatch(_))
    ));
    assert_eq!(block_on(s.get("users", "u1")).unwrap().unwrap(), patched);
    assert!(block_on(s.delete("users", "u1")).unwrap());
    assert!(!block_on(s.delete("users", "u1")).unwrap());
    assert_eq!(block_on(s.get("users", "u1")).unwrap(), None);
    for bad in ["[1]", "1", "{", "{\"a\":1,}"] {
        assert!(
            block_on(s.insert("users", Some("b"), bad)).is_err(),
            "{bad}"
        );
    }
    assert!(matches!(
        block_on(s.insert("_sys", None, "{}")),
        Err(DocError::BadCollection { .. })
    ));
    assert!(matches!(
        block_on(s.insert("users", Some(""), "{}")),
        Err(DocError::BadId { .. })
    ));
    engine.shutdown().unwrap();
}

#[test]
fn indexes_answer_queries_and_explain_says_so() {
    let sim = SimStorage::new(2);
    let engine = open(&sim_config(&sim, 2));
    let s = DocStore::new(engine.handle());
    for i in 0..60 {
        let doc = json!({"age": i % 20, "name": format!("n{i:02}"), "tag": if i % 2 == 0 { "even" } else { "odd" }});
        block_on(s.insert("people", Some(&format!("p{i:02}")), &doc.to_string())).unwrap();
    }
    let eq = q(json!({"filter": {"path": "age", "op": "eq", "value": 7}}));
    assert_eq!(block_on(s.explain("people", &eq)).unwrap().access, "scan");
    let before = block_on(s.query("people", &eq)).unwrap();
    assert_eq!(before.documents.len(), 3);
    assert_eq!(before.plan.documents_examined, 60);
    // Created on a full collection: back-filled.
    block_on(s.create_index("people", "age")).unwrap();
    let plan = block_on(s.explain("people", &eq)).unwrap();
    assert_eq!(
        (plan.access.as_str(), plan.index.as_deref()),
        ("index", Some("age"))
    );
    let after = block_on(s.query("people", &eq)).unwrap();
    assert_eq!(after.documents, before.documents);
    assert_eq!(after.plan.documents_examined, 3);
    let range = q(json!({
        "filter": {"and": [{"path": "age", "op": "ge", "value": 15}, {"path": "tag", "op": "eq", "value": "odd"}]},
        "sort": [{"path": "age", "order": "desc"}, "name"],
        "limit": 4
    }));
    let r = block_on(s.query("people", &range)).unwrap();
    assert_eq!(r.plan.index_condition.as_deref(), Some("range"));
    let ids: Vec<&str> = r.documents.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["p19", "p39", "p59", "p17"]);
    // Writes keep the index exact.
    block_on(s.replace("people", "p07", "{\"age\": 100}")).unwrap();
    block_on(s.delete("people", "p27")).unwrap();
    let ops = PatchOp::parse_list(r#"[{"op":"set","path":"age","value":7}]"#).unwrap();
    block_on(s.patch("people", "p08", ops)).unwrap();
    let ids: Vec<String> = block_on(s.query("people", &eq))
        .unwrap()
        .documents
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["p08", "p47"]);
    let report = block_on(s.verify("people")).unwrap();
    assert_eq!(report.documents, 59);
    assert_eq!(report.index_entries, 59);
    let idx = block_on(s.list_indexes("people")).unwrap();
    assert_eq!(idx.len(), 1);
    engine.shutdown().unwrap();
}

fn big_doc(i: usize, len: usize) -> String {
    let mut t = format!("{{\"i\": {i}, \"blob\": \"");
    let mut x = i as u64 | 1;
    while t.len() < len - 2 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t.push((b'a' + (x % 26) as u8) as char);
    }
    t.push_str("\"}");
    t
}

#[test]
fn documents_from_1_to_10_mib_verify_their_checksums() {
    let sim = SimStorage::new(3);
    let mut cfg = sim_config(&sim, 2);
    cfg.memtable_bytes_max = 32 << 20;
    cfg.wal_segment_bytes = 16 << 20;
    let engine = open(&cfg);
    let s = DocStore::new(engine.handle());
    let sizes = [1usize << 20, 3 << 20, 5 << 20, 10 << 20];
    for (i, &len) in sizes.iter().enumerate() {
        block_on(s.insert("big", Some(&format!("d{i}")), &big_doc(i, len))).unwrap();
    }
    block_on(engine.handle().flush()).unwrap();
    for (i, &len) in sizes.iter().enumerate() {
        let got = block_on(s.get("big", &format!("d{i}"))).unwrap().unwrap();
        assert_eq!(got.len(), len);
        assert!(got == big_doc(i, len), "d{i} differs");
    }
    // Too large: a typed error, nothing stored.
    let huge = big_doc(9, mantis_doc::DOCUMENT_BYTES_MAX + 1);
    assert!(matches!(
        block_on(s.insert("big", Some("huge"), &huge)),
        Err(DocError::TooLarge { .. })
    ));
    // A bit flipped inside a stored record (past the engine's own checks): the document
    // layer's CRC catches it.
    let h = engine.handle();
    let shard = s.shard_of("big", "d0");
    let key = mantis_doc::keys::doc_key("big", "d0");
    let mut raw = block_on(h.get_on(shard, key.clone()))
        .unwrap()
        .unwrap()
        .value;
    let at = raw.len() / 2;
    raw[at] ^= 0x04;
    block_on(h.write_batch_on(
        shard,
        vec![BatchOp::Put {
            key,
            value: raw,
            expires_at_ms: None,
        }],
    ))
    .unwrap();
    match block_on(s.get("big", "d0")) {
        Err(DocError::Stored { source, .. }) => {
            assert!(matches!(*source, DocError::Checksum { .. }), "{source}")
        }
        other => panic!("corruption not detected: {other:?}"),
    }
    engine.shutdown().unwrap();
}

#[test]
fn flipped_bit_on_the_simulated_disk_is_detected() {
    let sim = SimStorage::new(4);
    let mut cfg = sim_config(&sim, 1);
    cfg.memtable_bytes_max = 32 << 20;
    cfg.wal_segment_bytes = 16 << 20;
    let engine = open(&cfg);
    let s = DocStore::new(engine.handle());
    let doc = big_doc(1, 2 << 20);
    block_on(s.insert("big", Some("d"), &doc)).unwrap();
    engine.shutdown().unwrap();
    let seg = sim
        .files()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    sim.flip_bit(&seg, 1 << 20, 2).unwrap();
    let engine = open(&cfg);
    let s = DocStore::new(engine.handle());
    match block_on(s.get("big", "d")) {
        Ok(Some(t)) => panic!(
            "corrupt document returned ({} bytes, equal: {})",
            t.len(),
            t == doc
        ),
        Ok(None) => panic!("document vanished instead of failing"),
        Err(e) => assert!(
            matches!(&e, DocError::Engine(x) if x.is_corruption())
                || matches!(&e, DocError::Stored { source, .. } if matches!(**source, DocError::Checksum { .. })),
            "unexpected error {e}"
        ),
    }
    engine.shutdown().unwrap();
}
