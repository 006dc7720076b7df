//! Path indexes answer exactly what a full scan answers: random documents, random writes
//! (insert, replace, patch, delete), random queries; one collection indexed (some indexes
//! created before the data, some back-filled after), its twin not. Then `verify` checks
//! every entry against its document.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use common::{block_on, open, sim_config};
use mantis_doc::{DocStore, PatchOp, Query};
use mantis_engine::Engine;
use mantis_storage::SimStorage;
use proptest::prelude::*;
use serde_json::{json, Value};

fn store() -> &'static DocStore {
    static ENGINE: OnceLock<(Engine, DocStore)> = OnceLock::new();
    &ENGINE
        .get_or_init(|| {
            let sim = SimStorage::new(7);
            let engine = open(&sim_config(&sim, 3));
            let s = DocStore::new(engine.handle());
            (engine, s)
        })
        .1
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-4i64..5).prop_map(Value::from),
        prop::sample::select(vec![-0.5f64, 0.0, 1.5, 2.0, 1e300]).prop_map(Value::from),
        prop::sample::select(vec!["", "a", "b", "ab", "é", "a\u{0}"]).prop_map(Value::from),
    ]
}

fn field() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        4 => scalar().prop_map(Some),
        1 => Just(None),
        1 => prop::collection::vec(scalar(), 0..3).prop_map(|v| Some(Value::Array(v))),
    ]
}

fn doc() -> impl Strategy<Value = Value> {
    (field(), field(), field()).prop_map(|(a, b, c)| {
        let mut m = serde_json::Map::new();
        if let Some(a) = a {
            m.insert("a".into(), a);
        }
        if let Some(b) = b {
            m.insert("b".into(), b);
        }
        if let Some(c) = c {
            m.insert("n".into(), json!({ "c": c }));
        }
        Value::Object(m)
    })
}

fn condition() -> impl Strategy<Value = Value> {
    let path = prop::sample::select(vec!["a", "b", "n.c"]);
    prop_oneof![
        (
            path.clone(),
            prop::sample::select(vec!["eq", "ne", "lt", "le", "gt", "ge"]),
            scalar()
        )
            .prop_map(|(p, op, v)| json!({"path": p, "op": op, "value": v})),
        (path.clone(), prop::collection::vec(scalar(), 0..4))
            .prop_map(|(p, v)| json!({"path": p, "op": "in", "values": v})),
        (path, any::<bool>()).prop_map(|(p, b)| json!({"path": p, "op": "exists", "value": b})),
    ]
}

fn filter() -> impl Strategy<Value = Value> {
    prop_oneof![
        condition(),
        prop::collection::vec(condition(), 1..4).prop_map(|v| json!({ "and": v })),
        prop::collection::vec(condition(), 1..3).prop_map(|v| json!({ "or": v })),
    ]
}

fn query() -> impl Strategy<Value = Value> {
    (
        filter(),
        prop::option::of((prop::sample::select(vec!["a", "b", "n.c"]), any::<bool>())),
        1usize..30,
    )
        .prop_map(|(f, s, limit)| {
            let sort = s.map_or(
                json!([]),
                |(p, d)| json!([{ "path": p, "order": if d { "desc" } else { "asc" } }]),
            );
            json!({ "filter": f, "sort": sort, "limit": limit })
        })
}

#[derive(Debug, Clone)]
enum Write {
    Replace(usize, Value),
    Patch(usize, &'static str, Value),
    Unset(usize, &'static str),
    Delete(usize),
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        (0usize..40, doc()).prop_map(|(i, d)| Write::Replace(i, d)),
        (
            0usize..40,
            prop::sample::select(vec!["a", "b", "n.c"]),
            scalar()
        )
            .prop_map(|(i, p, v)| Write::Patch(i, p, v)),
        (0usize..40, prop::sample::select(vec!["a", "b", "n"]))
            .prop_map(|(i, p)| Write::Unset(i, p)),
        (0usize..40).prop_map(Write::Delete),
    ]
}

fn apply(s: &DocStore, coll: &str, w: &Write) {
    let id = |i: &usize| format!("d{i}");
    let r = match w {
        Write::Replace(i, d) => block_on(s.replace(coll, &id(i), &d.to_string())),
        Write::Patch(i, p, v) => {
            let ops = vec![PatchOp::Set {
                path: mantis_doc::Path::parse(p).unwrap(),
                value: v.to_string(),
            }];
            block_on(s.patch(coll, &id(i), ops)).map(|_| ())
        }
        Write::Unset(i, p) => {
            let ops = vec![PatchOp::Unset {
                path: mantis_doc::Path::parse(p).unwrap(),
            }];
            block_on(s.patch(coll, &id(i), ops)).map(|_| ())
        }
        Write::Delete(i) => block_on(s.delete(coll, &id(i))).map(|_| ()),
    };
    // Writes to deleted ids are NotFound, and patching "n.c" under a scalar "n" is refused.
    if let Err(e) = r {
        assert!(e.is_client_error(), "{w:?}: {e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn index_answers_equal_scan_answers(
        docs in prop::collection::vec(doc(), 0..40),
        writes in prop::collection::vec(write(), 0..20),
        queries in prop::collection::vec(query(), 1..8),
        early in any::<bool>(),
    ) {
        static CASE: AtomicUsize = AtomicUsize::new(0);
        let n = CASE.fetch_add(1, Ordering::Relaxed);
        let (plain, indexed) = (format!("plain{n}"), format!("indexed{n}"));
        let s = store();
        if early {
            block_on(s.create_index(&indexed, "a")).unwrap();
        }
        for (i, d) in docs.iter().enumerate() {
            for c in [&plain, &indexed] {
                block_on(s.insert(c, Some(&format!("d{i}")), &d.to_string())).unwrap();
            }
        }
        if !early {
            block_on(s.create_index(&indexed, "a")).unwrap();
        }
        for w in &writes {
            apply(s, &plain, w);
            apply(s, &indexed, w);
        }
        block_on(s.create_index(&indexed, "n.c")).unwrap();
        for qv in &queries {
            let q = Query::parse(qv).unwrap();
            let want = block_on(s.query(&plain, &q)).unwrap();
            let got = block_on(s.query(&indexed, &q)).unwrap();
            prop_assert_eq!(&want.plan.access, "scan");
            prop_assert_eq!(&got.documents, &want.documents, "query {}: plan {:?}", qv, got.plan);
        }
        let report = block_on(s.verify(&indexed)).unwrap();
        prop_assert_eq!(report.documents, want_count(s, &plain));
    }
}

fn want_count(s: &DocStore, coll: &str) -> u64 {
    let q = Query::parse(&json!({"limit": 10000})).unwrap();
    block_on(s.query(coll, &q)).unwrap().documents.len() as u64
}

#[test]
fn an_eq_condition_on_an_indexed_path_uses_the_index() {
    let s = store();
    block_on(s.create_index("explained", "a")).unwrap();
    let q = Query::parse(&json!({"filter": {"and": [
        {"path": "b", "op": "gt", "value": 1},
        {"path": "a", "op": "eq", "value": "x"}
    ]}}))
    .unwrap();
    let plan = block_on(s.explain("explained", &q)).unwrap();
    assert_eq!(plan.access, "index");
    assert_eq!(plan.index_condition.as_deref(), Some("eq"));
    let q =
        Query::parse(&json!({"filter": {"or": [{"path": "a", "op": "eq", "value": 1}]}})).unwrap();
    assert_eq!(block_on(s.explain("explained", &q)).unwrap().access, "scan");
}
