#![allow(clippy::unwrap_used)]
#![allow(clippy::type_complexity)]
//! Property tests: every encoding round-trips every type on random data (with NULLs), the
//! chooser picks the smallest, corrupt chunks are refused, stats never skip a matching
//! chunk, and the kernels agree with a row-at-a-time reference.

use std::collections::BTreeMap;

use mantis_columnar::chunk::encode_column_as;
use mantis_columnar::column::{ColumnBuilder, PhysType};
use mantis_columnar::encoding::{choose, decode, encode, Encoding};
use mantis_columnar::kernels::{filter_cmp, take};
use mantis_columnar::*;
use proptest::prelude::*;

fn scalar_for(phys: PhysType) -> BoxedStrategy<Scalar> {
    let v = match phys {
        PhysType::Int => prop_oneof![
            any::<i64>().prop_map(Scalar::Int),
            (-5i64..5).prop_map(Scalar::Int),
            (0i64..3).prop_map(|x| Scalar::Int(1_700_000_000_000_000 + x * 1000)),
        ]
        .boxed(),
        PhysType::Float => prop_oneof![
            any::<f64>().prop_map(Scalar::Float),
            (-3i32..3).prop_map(|x| Scalar::Float(f64::from(x) * 0.5)),
            Just(Scalar::Float(-0.0)),
            Just(Scalar::Float(f64::NAN)),
        ]
        .boxed(),
        PhysType::Bytes => prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Scalar::Bytes),
            "[ab]{0,3}".prop_map(|s| Scalar::Bytes(s.into_bytes())),
        ]
        .boxed(),
    };
    prop_oneof![1 => Just(Scalar::Null), 6 => v].boxed()
}

fn phys() -> impl Strategy<Value = PhysType> {
    prop_oneof![
        Just(PhysType::Int),
        Just(PhysType::Float),
        Just(PhysType::Bytes)
    ]
}

/// A column of one type; runs are made likely by repeating values.
fn column() -> impl Strategy<Value = Column> {
    phys().prop_flat_map(|p| {
        proptest::collection::vec((scalar_for(p), 1usize..6), 0..120).prop_map(move |runs| {
            let mut b = ColumnBuilder::new(p, 0);
            for (s, n) in runs {
                for _ in 0..n {
                    b.push(&s).unwrap();
                }
            }
            b.finish()
        })
    })
}

/// Columns equal bit for bit (NaN and -0.0 included).
fn same(a: &Column, b: &Column) -> bool {
    a.validity == b.validity
        && match (&a.values, &b.values) {
            (Values::Float(x), Values::Float(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
            }
            (x, y) => x == y,
        }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_encoding_round_trips(col in column()) {
        for enc in Encoding::ALL {
            let Some(bytes) = encode(&col.values, enc) else {
                prop_assert!(!enc.applies_to(col.phys()));
                continue;
            };
            let back = decode(&bytes, col.phys(), enc, col.len()).unwrap();
            prop_assert!(same(&Column::new(back, col.validity.clone()), &col), "{enc:?}");
            let blob = encode_column_as(&col, enc).unwrap();
            prop_assert!(same(&decode_column(&blob).unwrap(), &col), "chunk {enc:?}");
        }
    }

    #[test]
    fn chooser_picks_the_smallest(col in column()) {
        let (enc, bytes) = choose(&col.values);
        for other in Encoding::ALL {
            if let Some(b) = encode(&col.values, other) {
                prop_assert!(bytes.len() <= b.len(), "{enc:?} {} > {other:?} {}", bytes.len(), b.len());
            }
        }
        let (blob, info) = encode_column(&col);
        prop_assert_eq!(info.encoding, enc);
        prop_assert!(same(&decode_column(&blob).unwrap(), &col));
    }

    #[test]
    fn any_flipped_bit_is_caught(col in column(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (mut blob, _) = encode_column(&col);
        let i = at.index(blob.len());
        blob[i] ^= 1 << bit;
        prop_assert!(decode_column(&blob).is_err());
    }

    #[test]
    fn stats_never_skip_a_match(col in column(), c in phys().prop_flat_map(scalar_for), op in cmp_op()) {
        let meta = ChunkMeta::of(std::slice::from_ref(&col));
        let back = ChunkMeta::decode(&meta.encode()).unwrap();
        prop_assert_eq!(format!("{back:?}"), format!("{meta:?}"));
        if c.cmp_same(&c).is_none() && !matches!(c, Scalar::Null) { return Ok(()); }
        let hits = filter_cmp(&col, op, &c, None);
        if let Ok(hits) = hits {
            if !hits.is_empty() {
                prop_assert!(meta.columns[0].may_match(meta.rows, op, &c));
            }
        }
    }

    #[test]
    fn filter_matches_reference(col in column(), c in phys().prop_flat_map(scalar_for), op in cmp_op()) {
        let Ok(hits) = filter_cmp(&col, op, &c, None) else {
            prop_assert!(col.phys() == PhysType::Bytes || matches!(c, Scalar::Bytes(_)));
            return Ok(());
        };
        let expect: Vec<u32> = (0..col.len())
            .filter(|i| {
                let v = col.get(*i);
                match (&v, &c) {
                    (Scalar::Int(a), Scalar::Float(f)) => op.holds(mantis_columnar::column::float_cmp(*a as f64, *f)),
                    (Scalar::Float(a), Scalar::Int(b)) => op.holds(mantis_columnar::column::float_cmp(*a, *b as f64)),
                    _ => v.cmp_same(&c).is_some_and(|o| op.holds(o)),
                }
            })
            .map(|i| i as u32)
            .collect();
        prop_assert_eq!(&hits, &expect);
        let t = take(&col, &hits);
        prop_assert_eq!(t.len(), hits.len());
        for (j, i) in hits.iter().enumerate() {
            prop_assert_eq!(format!("{:?}", t.get(j)), format!("{:?}", col.get(*i as usize)));
        }
    }

    #[test]
    fn grouped_aggregate_matches_reference_and_merges(
        rows in proptest::collection::vec((0i64..4, scalar_for(PhysType::Int), scalar_for(PhysType::Bytes)), 0..200),
        split in any::<prop::sample::Index>(),
    ) {
        let build = |rows: &[(i64, Scalar, Scalar)]| {
            let mut g = ColumnBuilder::new(PhysType::Int, 0);
            let mut v = ColumnBuilder::new(PhysType::Int, 0);
            let mut t = ColumnBuilder::new(PhysType::Bytes, 0);
            for (a, b, c) in rows {
                g.push(&Scalar::Int(*a)).unwrap();
                // Keep sums far from i64 overflow, as the reference sums in i128 anyway.
                v.push(&match b { Scalar::Int(x) => Scalar::Int(x % 1_000_000), o => o.clone() }).unwrap();
                t.push(c).unwrap();
            }
            vec![Some(g.finish()), Some(v.finish()), Some(t.finish())]
        };
        let specs = vec![
            AggSpec { kind: AggKind::CountStar, column: None },
            AggSpec { kind: AggKind::Count, column: Some(1) },
            AggSpec { kind: AggKind::Sum, column: Some(1) },
            AggSpec { kind: AggKind::Min, column: Some(2) },
            AggSpec { kind: AggKind::Max, column: Some(1) },
        ];
        let phys = [PhysType::Int, PhysType::Int, PhysType::Bytes];
        let cut = if rows.is_empty() { 0 } else { split.index(rows.len() + 1) };
        let mut a = GroupedAgg::new(vec![0], specs.clone(), &phys).unwrap();
        a.update(&build(&rows[..cut]), cut, None).unwrap();
        let mut b = GroupedAgg::new(vec![0], specs.clone(), &phys).unwrap();
        b.update(&build(&rows[cut..]), rows.len() - cut, None).unwrap();
        a.merge(b).unwrap();
        let got: BTreeMap<i64, Vec<AggState>> = a
            .into_groups()
            .into_iter()
            .map(|(k, s)| (match k[0] { Scalar::Int(x) => x, _ => unreachable!() }, s))
            .collect();
        let mut expect: BTreeMap<i64, (i64, i64, i128, Option<Vec<u8>>, Option<i64>)> = BTreeMap::new();
        for (g, v, t) in &rows {
            let e = expect.entry(*g).or_insert((0, 0, 0, None, None));
            e.0 += 1;
            if let Scalar::Int(x) = v {
                let x = x % 1_000_000;
                e.1 += 1;
                e.2 += i128::from(x);
                e.4 = Some(e.4.map_or(x, |m| m.max(x)));
            }
            if let Scalar::Bytes(b) = t {
                e.3 = Some(e.3.clone().map_or(b.clone(), |m| m.min(b.clone())));
            }
        }
        prop_assert_eq!(got.len(), expect.len());
        for (g, (n, cnt, sum, min, max)) in expect {
            let s = &got[&g];
            prop_assert_eq!(&s[0], &AggState::Count(n));
            prop_assert_eq!(&s[1], &AggState::Count(cnt));
            prop_assert_eq!(&s[2], &AggState::SumInt { sum, count: cnt });
            prop_assert_eq!(&s[3], &AggState::Min(min.map(Scalar::Bytes)));
            prop_assert_eq!(&s[4], &AggState::Max(max.map(Scalar::Int)));
        }
    }
}

fn cmp_op() -> impl Strategy<Value = CmpOp> {
    prop_oneof![
        Just(CmpOp::Eq),
        Just(CmpOp::NotEq),
        Just(CmpOp::Lt),
        Just(CmpOp::LtEq),
        Just(CmpOp::Gt),
        Just(CmpOp::GtEq)
    ]
}

#[test]
fn encodings_win_where_expected() {
    let sorted = Values::Int((0..10_000).map(|i| 1_700_000_000_000 + i * 1000).collect());
    assert_eq!(choose(&sorted).0, Encoding::Delta);
    let small = Values::Int((0..10_000).map(|i| (i * 7919) % 100).collect());
    assert_eq!(choose(&small).0, Encoding::BitPack);
    let runs = Values::Int((0..10_000).map(|i| (i / 1000) * 1_000_000_007).collect());
    assert_eq!(choose(&runs).0, Encoding::RunLength);
    let words = ["alpha", "beta", "gamma"];
    let text = Values::Bytes(
        (0..10_000)
            .map(|i| words[(i * 7) % 3].as_bytes().to_vec())
            .collect(),
    );
    assert_eq!(choose(&text).0, Encoding::Dictionary);
}

#[test]
fn chunk_with_nulls_and_limits() {
    let col = Column::from_scalars(
        PhysType::Int,
        &(0..CHUNK_ROWS_MAX as i64)
            .map(|i| {
                if i % 3 == 0 {
                    Scalar::Null
                } else {
                    Scalar::Int(i)
                }
            })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let (blob, info) = encode_column(&col);
    assert!(info.stored_bytes < CHUNK_ROWS_MAX * 8 / 2, "{info:?}");
    assert_eq!(decode_column(&blob).unwrap(), col);
    let s = ColumnStats::of(&col);
    assert_eq!(s.null_count as usize, CHUNK_ROWS_MAX.div_ceil(3));
    assert_eq!(
        s.min_max,
        Some((Scalar::Int(1), Scalar::Int(CHUNK_ROWS_MAX as i64 - 2)))
    );
    assert!(!s.may_match(
        CHUNK_ROWS_MAX as u32,
        CmpOp::Gt,
        &Scalar::Int(CHUNK_ROWS_MAX as i64)
    ));
    assert!(s.may_match(CHUNK_ROWS_MAX as u32, CmpOp::Eq, &Scalar::Int(7)));
    assert!(!s.may_match(CHUNK_ROWS_MAX as u32, CmpOp::Lt, &Scalar::Int(1)));
    assert!(!s.may_match(CHUNK_ROWS_MAX as u32, CmpOp::Eq, &Scalar::Null));
}

/// The groups of an aggregation, keyed by their key bytes (order-free comparison).
fn by_key(a: GroupedAgg) -> BTreeMap<Vec<u8>, Vec<AggState>> {
    a.into_groups()
        .into_iter()
        .map(|(k, s)| {
            let mut key = Vec::new();
            k.iter().for_each(|x| x.key_bytes(&mut key));
            (key, s)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The vector path (dictionary codes kept, dense group codes, per-chunk sums) gives the
    /// groups and states of the flat row-at-a-time path, for every encoding of the inputs,
    /// any GROUP BY columns and any selection.
    #[test]
    fn vector_aggregate_and_filter_match_the_flat_path(
        rows in proptest::collection::vec(
            (scalar_for(PhysType::Int), scalar_for(PhysType::Bytes), scalar_for(PhysType::Float)), 0..150),
        enc in prop::sample::select(vec![Encoding::Plain, Encoding::Dictionary, Encoding::RunLength]),
        groups in prop::sample::subsequence(vec![0usize, 1, 2], 0..3),
        c in scalar_for(PhysType::Bytes),
        op in cmp_op(),
        every in 1usize..4,
    ) {
        let mut cols = [ColumnBuilder::new(PhysType::Int, 0), ColumnBuilder::new(PhysType::Bytes, 0), ColumnBuilder::new(PhysType::Float, 0)];
        for (a, b, f) in &rows {
            let a = match a { Scalar::Int(x) => Scalar::Int(x % 1_000_000), o => o.clone() };
            cols[0].push(&a).unwrap();
            cols[1].push(b).unwrap();
            // Halves only: float sums are then exact in any order.
            let f = match f { Scalar::Float(x) if x.is_finite() => Scalar::Float((x % 64.0 * 2.0).round() / 2.0), Scalar::Float(_) => Scalar::Float(1.5), o => o.clone() };
            cols[2].push(&f).unwrap();
        }
        let flat: Vec<Column> = cols.into_iter().map(ColumnBuilder::finish).collect();
        let vecs: Vec<Option<Vector>> = flat
            .iter()
            .map(|col| Some(decode_vector(&encode_column_as(col, enc).unwrap_or_else(|| encode_column(col).0)).unwrap()))
            .collect();
        let n = rows.len();
        let sel: Vec<u32> = (0..n as u32).filter(|i| (*i as usize).is_multiple_of(every)).collect();
        let filtered = filter_vector(vecs[1].as_ref().unwrap(), op, &c, Some(&sel)).unwrap();
        prop_assert_eq!(&filtered, &filter_cmp(&flat[1], op, &c, Some(&sel)).unwrap());
        let specs = vec![
            AggSpec { kind: AggKind::CountStar, column: None },
            AggSpec { kind: AggKind::Count, column: Some(1) },
            AggSpec { kind: AggKind::Sum, column: Some(0) },
            AggSpec { kind: AggKind::Avg, column: Some(2) },
            AggSpec { kind: AggKind::Min, column: Some(1) },
            AggSpec { kind: AggKind::Max, column: Some(2) },
        ];
        let phys = [PhysType::Int, PhysType::Bytes, PhysType::Float];
        let mut want = GroupedAgg::new(groups.clone(), specs.clone(), &phys).unwrap();
        let flat_batch: Vec<Option<Column>> = flat.iter().cloned().map(Some).collect();
        want.update(&flat_batch, n, Some(&sel)).unwrap();
        let mut got = GroupedAgg::new(groups, specs, &phys).unwrap();
        got.update_vectors(&vecs, n, Some(&sel)).unwrap();
        prop_assert_eq!(by_key(got), by_key(want));
    }
}
