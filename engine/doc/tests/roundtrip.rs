//! The stored form gives back the original JSON text byte for byte: generated documents
//! (property test) and the named hard cases (numbers, unicode, escapes, nesting, 16 MiB).
#![allow(clippy::unwrap_used)]

use mantis_doc::{decode_text, encode, with_view, DocError, Path, Scalar};
use proptest::prelude::*;

fn ws() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec![" ", "\t", "\n", "\r", ""]), 0..3)
        .prop_map(|v| v.concat())
}

fn number() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::sample::select(vec!["0", "1", "7", "42", "123456789012345678901234567890"]),
        prop::option::of("[0-9]{1,20}"),
        prop::option::of((
            prop::sample::select(vec!["e", "E"]),
            prop::sample::select(vec!["", "+", "-"]),
            "[0-9]{1,3}",
        )),
    )
        .prop_map(|(neg, int, frac, exp)| {
            let mut s = String::new();
            if neg {
                s.push('-');
            }
            s.push_str(int);
            if let Some(f) = frac {
                s.push('.');
                s.push_str(&f);
            }
            if let Some((e, sign, d)) = exp {
                s.push_str(e);
                s.push_str(sign);
                s.push_str(&d);
            }
            s
        })
}

fn string_lit() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9 ]{1,8}",
        "\\PC{1,4}".prop_map(|s| s.replace(['"', '\\'], "")),
        prop::sample::select(vec![
            "\\\"",
            "\\\\",
            "\\/",
            "\\b",
            "\\f",
            "\\n",
            "\\r",
            "\\t",
            "\\u00e9",
            "\\uD83D\\uDE00",
            "\\u0000",
            "é",
            "😀",
            "日本",
            "\u{202e}",
            "e\u{301}",
        ])
        .prop_map(str::to_string),
    ];
    prop::collection::vec(piece, 0..5).prop_map(|v| format!("\"{}\"", v.concat()))
}

fn json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        number(),
        string_lit(),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec((ws(), inner.clone(), ws()), 0..6).prop_map(|v| {
                let items: Vec<String> = v
                    .into_iter()
                    .map(|(a, x, b)| format!("{a}{x}{b}"))
                    .collect();
                format!("[{}]", items.join(","))
            }),
            prop::collection::vec((ws(), string_lit(), ws(), ws(), inner, ws()), 0..6).prop_map(
                |v| {
                    let items: Vec<String> = v
                        .into_iter()
                        .map(|(a, k, b, c, x, d)| format!("{a}{k}{b}:{c}{x}{d}"))
                        .collect();
                    format!("{{{}}}", items.join(","))
                }
            ),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_json_round_trips_exactly(doc in json(), lead in ws(), trail in ws()) {
        let text = format!("{lead}{doc}{trail}");
        // The generator only writes valid JSON: serde_json agrees it is.
        prop_assert!(serde_json_accepts(&text), "{text}");
        let stored = encode(&text).unwrap();
        prop_assert_eq!(decode_text(&stored).unwrap(), text);
    }

    #[test]
    fn scalars_read_as_serde_json_reads_them(s in string_lit(), n in number()) {
        let text = format!("{{\"s\":{s},\"n\":{n}}}");
        let reference: serde_json::Value = serde_json::from_str(&format!("{{\"s\":{s}}}")).unwrap();
        let stored = encode(&text).unwrap();
        with_view(&stored, |v| {
            let got = v.get(&Path::parse("s").unwrap()).unwrap().scalar();
            assert_eq!(got, Some(Scalar::String(reference["s"].as_str().unwrap().to_string())));
            if let Some(Scalar::Number(x)) = v.get(&Path::parse("n").unwrap()).unwrap().scalar() {
                let want: f64 = n.parse().unwrap();
                assert!(x == want || (want == 0.0 && x == 0.0), "{n}: {x} vs {want}");
            } else {
                panic!("n is not a number");
            }
        }).unwrap();
    }

    /// Garbage never panics the parser; what it accepts, serde_json accepts too.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,64}") {
        if encode(&text).is_ok() {
            prop_assert!(serde_json_accepts(&text), "{text:?}");
        }
    }
}

/// serde_json refuses numbers beyond f64 that JSON's grammar allows (1e400): that is a
/// range limit of its reader, not a syntax error.
fn serde_json_accepts(text: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(_) => true,
        Err(e) => e.to_string().contains("number out of range"),
    }
}

fn round_trip(text: &str) {
    let stored = encode(text).unwrap_or_else(|e| panic!("{text:.80}: {e}"));
    assert_eq!(decode_text(&stored).unwrap(), text);
}

#[test]
fn numbers_keep_their_literal_text() {
    for n in [
        "1.0",
        "1e400",
        "-1e400",
        "1E+2",
        "-0",
        "-0.0",
        "0.1",
        "1e-400",
        "123456789012345678901234567890",
        "3.141592653589793238462643383279",
        "9007199254740993",
        "2.5e-3",
    ] {
        round_trip(n);
        round_trip(&format!("{{\"n\": {n}}}"));
        round_trip(&format!("[{n},{n}]"));
    }
}

#[test]
fn unicode_and_escapes_stay_as_written() {
    for s in [
        r#""é""#,
        r#""\u00e9""#,
        r#""😀""#,
        r#""\ud83d\ude00""#,
        r#""\uD83D\uDE00""#,
        r#""\ud800""#,
        r#""a\/b""#,
        r#""\u0000""#,
        "\"日本語 \u{202e} e\u{301}\"",
        r#""\"\\\b\f\n\r\t""#,
    ] {
        round_trip(s);
        round_trip(&format!("{{{s}: {s}}}"));
    }
}

#[test]
fn member_order_duplicates_and_whitespace_survive() {
    round_trip("{\"z\":1,\"a\":2,\"m\":3}");
    round_trip("{\"a\":1,\"a\":2}");
    round_trip(" \n\t{ \"a\" :\r\n [ 1 , 2 ] } \n");
}

#[test]
fn deep_nesting_round_trips_and_deeper_is_refused() {
    let depth = mantis_doc::tape::DEPTH_MAX;
    let arrays = "[".repeat(depth) + "1" + &"]".repeat(depth);
    round_trip(&arrays);
    let objects = "{\"a\":".repeat(depth) + "null" + &"}".repeat(depth);
    round_trip(&objects);
    let path = Path::parse(&vec!["a"; 64].join(".")).unwrap();
    with_view(&encode(&objects).unwrap(), |v| {
        assert!(v.get(&path).is_some())
    })
    .unwrap();
    let deeper = "[".repeat(depth + 1) + &"]".repeat(depth + 1);
    assert!(matches!(encode(&deeper), Err(DocError::TooDeep { .. })));
}

#[test]
fn sixteen_mib_document_round_trips() {
    let target = 16 << 20;
    let mut text = String::with_capacity(target);
    text.push_str("{\"items\":[");
    let mut i = 0u64;
    while text.len() < target - 200 {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!("{{\"n\":{i}.0,\"s\":\"\\u00e9t\u{e9} {i}\"}}"));
        i += 1;
    }
    text.push_str("],\"end\":\"");
    while text.len() < target - 2 {
        text.push('x');
    }
    text.push_str("\"}");
    assert_eq!(text.len(), target);
    let stored = encode(&text).unwrap();
    assert_eq!(decode_text(&stored).unwrap(), text);
    let last = Path::parse(&format!("items.{}.n", i - 1)).unwrap();
    with_view(&stored, |v| {
        assert_eq!(v.get(&last).unwrap().raw(), format!("{}.0", i - 1));
    })
    .unwrap();
}
