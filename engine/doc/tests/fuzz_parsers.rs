//! Client input never panics the parsers: arbitrary JSON as queries/filters, arbitrary text
//! as patches, arbitrary patches applied to documents.
#![allow(clippy::unwrap_used)]

use mantis_doc::{patch, PatchOp, Query};
use proptest::prelude::*;
use serde_json::{json, Value};

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec![
            "path", "op", "value", "values", "and", "or", "eq", "in", "exists", "lt", "a", "a.b",
            "", "a..b", "\\", "limit", "sort", "filter", "desc"
        ])
        .prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "path", "op", "value", "values", "and", "or", "filter", "sort", "limit",
                        "order", "x"
                    ]),
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn query_and_filter_parsers_never_panic(v in value()) {
        let _ = Query::parse(&v);
        let _ = Query::parse(&json!({ "filter": v }));
        let _ = mantis_doc::Filter::parse(&v);
    }

    #[test]
    fn patches_never_panic(ops in value(), doc in value()) {
        let text = ops.to_string();
        if let Ok(list) = PatchOp::parse_list(&text) {
            let doc = json!({ "d": doc }).to_string();
            if let Ok(out) = patch::apply(&doc, &list) {
                // What a patch produces is valid JSON.
                prop_assert!(serde_json::from_str::<Value>(&out).is_ok(), "{out}");
            }
        }
        let _ = PatchOp::parse_list(&format!("[{{\"op\":\"set\",\"path\":{},\"value\":1}}]", ops));
    }
}
