//! Vectorized kernels over decoded columns: comparison filters that produce selection
//! vectors (row indices), projection by selection, and hash aggregation with GROUP BY whose
//! partial states merge (chunk into shard, shard into the statement's result).

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::column::{float_cmp, Column, PhysType, Scalar, Values};
use crate::error::{ColumnarError, Result};
use crate::groups::local_codes;
use crate::vector::Vector;

/// Groups one aggregation may hold, at most (a GROUP BY on a unique column of a huge table
/// fails instead of exhausting the shard's memory).
pub const AGG_GROUPS_MAX: usize = 1 << 22;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl CmpOp {
    pub fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Eq => ord == Ordering::Equal,
            CmpOp::NotEq => ord != Ordering::Equal,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::LtEq => ord != Ordering::Greater,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::GtEq => ord != Ordering::Less,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::NotEq => "<>",
            CmpOp::Lt => "<",
            CmpOp::LtEq => "<=",
            CmpOp::Gt => ">",
            CmpOp::GtEq => ">=",
        }
    }
}

/// Row indices of `col` (among `sel`, or among all rows) where `col op constant` is true;
/// NULLs never pass. Ints compare with a float constant as floats.
pub fn filter_cmp(
    col: &Column,
    op: CmpOp,
    constant: &Scalar,
    sel: Option<&[u32]>,
) -> Result<Vec<u32>> {
    fn run(n: usize, sel: Option<&[u32]>, keep: impl Fn(usize) -> bool) -> Vec<u32> {
        match sel {
            Some(s) => s.iter().copied().filter(|i| keep(*i as usize)).collect(),
            None => (0..n as u32).filter(|i| keep(*i as usize)).collect(),
        }
    }
    let n = col.len();
    let valid = |i: usize| col.is_valid(i);
    Ok(match (&col.values, constant) {
        (_, Scalar::Null) => Vec::new(),
        (Values::Int(v), Scalar::Int(c)) => {
            let c = *c;
            match (op, &col.validity) {
                // The common case, without per-row validity or ordering dispatch.
                (CmpOp::Eq, None) => run(n, sel, |i| v[i] == c),
                (CmpOp::Lt, None) => run(n, sel, |i| v[i] < c),
                (CmpOp::Gt, None) => run(n, sel, |i| v[i] > c),
                _ => run(n, sel, |i| valid(i) && op.holds(v[i].cmp(&c))),
            }
        }
        (Values::Int(v), Scalar::Float(c)) => {
            run(n, sel, |i| valid(i) && op.holds(float_cmp(v[i] as f64, *c)))
        }
        (Values::Float(v), Scalar::Float(c)) => {
            run(n, sel, |i| valid(i) && op.holds(float_cmp(v[i], *c)))
        }
        (Values::Float(v), Scalar::Int(c)) => {
            run(n, sel, |i| valid(i) && op.holds(float_cmp(v[i], *c as f64)))
        }
        (Values::Bytes(v), Scalar::Bytes(c)) => {
            run(n, sel, |i| valid(i) && op.holds(v[i].as_slice().cmp(c)))
        }
        (vals, c) => {
            return Err(ColumnarError::Type(format!(
                "compare a {:?} column with {c:?}",
                vals.phys()
            )))
        }
    })
}

/// The rows `sel` of `col`, as a new column (projection after a filter).
pub fn take(col: &Column, sel: &[u32]) -> Column {
    let idx = || sel.iter().map(|i| *i as usize);
    let values = match &col.values {
        Values::Int(v) => Values::Int(idx().map(|i| v[i]).collect()),
        Values::Float(v) => Values::Float(idx().map(|i| v[i]).collect()),
        Values::Bytes(v) => Values::Bytes(idx().map(|i| v[i].clone()).collect()),
    };
    let validity = col.validity.as_ref().map(|v| idx().map(|i| v[i]).collect());
    Column::new(values, validity)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    CountStar,
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggSpec {
    pub kind: AggKind,
    /// The argument column (position in the batch); `None` only for COUNT(*).
    pub column: Option<usize>,
}

/// A mergeable partial aggregate. SUM and AVG keep the sum and the count of non-NULL inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum AggState {
    Count(i64),
    SumInt { sum: i128, count: i64 },
    SumFloat { sum: f64, count: i64 },
    Min(Option<Scalar>),
    Max(Option<Scalar>),
}

impl AggState {
    fn fresh(spec: &AggSpec, phys: Option<PhysType>) -> Result<AggState> {
        Ok(match (spec.kind, phys) {
            (AggKind::CountStar | AggKind::Count, _) => AggState::Count(0),
            (AggKind::Sum | AggKind::Avg, Some(PhysType::Int)) => {
                AggState::SumInt { sum: 0, count: 0 }
            }
            (AggKind::Sum | AggKind::Avg, Some(PhysType::Float)) => {
                AggState::SumFloat { sum: 0.0, count: 0 }
            }
            (AggKind::Min, Some(_)) => AggState::Min(None),
            (AggKind::Max, Some(_)) => AggState::Max(None),
            (k, p) => return Err(ColumnarError::Type(format!("{k:?} over {p:?}"))),
        })
    }

    pub fn merge(&mut self, other: &AggState) -> Result<()> {
        match (self, other) {
            (AggState::Count(a), AggState::Count(b)) => *a += b,
            (AggState::SumInt { sum, count }, AggState::SumInt { sum: s, count: c }) => {
                *sum += s;
                *count += c;
            }
            (AggState::SumFloat { sum, count }, AggState::SumFloat { sum: s, count: c }) => {
                *sum += s;
                *count += c;
            }
            (AggState::Min(a), AggState::Min(Some(b))) => keep(a, b, Ordering::Less),
            (AggState::Max(a), AggState::Max(Some(b))) => keep(a, b, Ordering::Greater),
            (AggState::Min(_), AggState::Min(None)) | (AggState::Max(_), AggState::Max(None)) => {}
            (a, b) => return Err(ColumnarError::Type(format!("merge {a:?} with {b:?}"))),
        }
        Ok(())
    }
}

/// Replaces `cur` with `cand` when `cand` compares `want` to it (or `cur` is empty).
fn keep(cur: &mut Option<Scalar>, cand: &Scalar, want: Ordering) {
    if cur.as_ref().is_none_or(|c| cand.cmp_same(c) == Some(want)) {
        *cur = Some(cand.clone());
    }
}

/// Hash aggregation: groups keyed by the values of `group_cols`, one state per aggregate.
#[derive(Debug, Clone)]
pub struct GroupedAgg {
    group_cols: Vec<usize>,
    specs: Vec<AggSpec>,
    index: HashMap<Vec<u8>, u32>,
    keys: Vec<Vec<Scalar>>,
    /// `states[agg][group]`: aggregate-major so each update loop touches one vector.
    states: Vec<Vec<AggState>>,
    fresh: Vec<AggState>,
}

impl GroupedAgg {
    /// `phys[c]` is the physical type of batch column `c` (used to pick SUM's state).
    pub fn new(group_cols: Vec<usize>, specs: Vec<AggSpec>, phys: &[PhysType]) -> Result<Self> {
        let fresh = specs
            .iter()
            .map(|s| AggState::fresh(s, s.column.and_then(|c| phys.get(c).copied())))
            .collect::<Result<Vec<_>>>()?;
        Ok(GroupedAgg {
            group_cols,
            states: vec![Vec::new(); specs.len()],
            specs,
            index: HashMap::new(),
            keys: Vec::new(),
            fresh,
        })
    }

    pub fn group_count(&self) -> usize {
        self.keys.len()
    }

    fn group_of(&mut self, key: &[u8], scalars: impl FnOnce() -> Vec<Scalar>) -> Result<u32> {
        if let Some(g) = self.index.get(key) {
            return Ok(*g);
        }
        if self.keys.len() >= AGG_GROUPS_MAX {
            return Err(ColumnarError::Limit(format!(
                "more than {AGG_GROUPS_MAX} groups"
            )));
        }
        let g = self.keys.len() as u32;
        self.index.insert(key.to_vec(), g);
        self.keys.push(scalars());
        for (a, f) in self.states.iter_mut().zip(&self.fresh) {
            a.push(f.clone());
        }
        Ok(g)
    }

    fn column(batch: &[Option<Column>], c: usize) -> Result<&Column> {
        batch
            .get(c)
            .and_then(Option::as_ref)
            .ok_or_else(|| ColumnarError::Type(format!("column {c} not loaded")))
    }

    /// Adds the rows `sel` (or all rows) of `batch` (columns by position; `None` = not
    /// loaded) to the groups.
    pub fn update(
        &mut self,
        batch: &[Option<Column>],
        rows: usize,
        sel: Option<&[u32]>,
    ) -> Result<()> {
        let row_ids = selected_rows(sel, rows);
        let group_cols: Vec<&Column> = self
            .group_cols
            .iter()
            .map(|c| Self::column(batch, *c))
            .collect::<Result<_>>()?;
        let mut gids = Vec::with_capacity(row_ids.len());
        let mut key = Vec::new();
        for &r in &row_ids {
            key.clear();
            for c in &group_cols {
                c.get(r as usize).key_bytes(&mut key);
            }
            let g = self.group_of(&key, || {
                group_cols.iter().map(|c| c.get(r as usize)).collect()
            })?;
            gids.push(g);
        }
        for a in 0..self.specs.len() {
            let spec = self.specs[a];
            let col = match spec.column {
                Some(c) => Some(Self::column(batch, c)?),
                None => None,
            };
            update_one(&mut self.states[a], spec.kind, col, &row_ids, &gids)?;
        }
        Ok(())
    }

    /// Like [`GroupedAgg::update`], over vectors (`vector`): dictionary-coded and
    /// narrow-range integer group columns take the dense path (`groups::local_codes`: one
    /// group lookup per distinct key of the chunk, not per row), and counts and sums
    /// accumulate into per-chunk arrays indexed by group.
    pub fn update_vectors(
        &mut self,
        batch: &[Option<Vector>],
        rows: usize,
        sel: Option<&[u32]>,
    ) -> Result<()> {
        let row_ids = selected_rows(sel, rows);
        if row_ids.is_empty() {
            return Ok(());
        }
        let group_cols: Vec<&Vector> = self
            .group_cols
            .iter()
            .map(|c| vector_of(batch, *c))
            .collect::<Result<_>>()?;
        let gids = self.group_ids(&group_cols, &row_ids)?;
        for a in 0..self.specs.len() {
            let spec = self.specs[a];
            let col = match spec.column {
                Some(c) => Some(vector_of(batch, c)?),
                None => None,
            };
            let states = &mut self.states[a];
            match (spec.kind, col) {
                (AggKind::CountStar, _) => count_into(states, &row_ids, &gids, |_| true),
                (AggKind::Count, Some(v)) => count_into(states, &row_ids, &gids, |r| v.is_valid(r)),
                (kind, Some(v)) => update_one(states, kind, Some(&v.flat()), &row_ids, &gids)?,
                (k, None) => return Err(ColumnarError::Type(format!("{k:?} needs a column"))),
            }
        }
        Ok(())
    }

    /// The group of every row of `rows`, creating groups as keys are first seen.
    fn group_ids(&mut self, cols: &[&Vector], rows: &[u32]) -> Result<Vec<u32>> {
        let mut key = Vec::new();
        let key_of = |r: usize, key: &mut Vec<u8>| {
            key.clear();
            for c in cols {
                c.get(r).key_bytes(key);
            }
        };
        let scalars = |r: usize| cols.iter().map(|c| c.get(r)).collect::<Vec<_>>();
        let mut gids = Vec::with_capacity(rows.len());
        if let Some((codes, card)) = local_codes(cols, rows) {
            let mut slots = vec![u32::MAX; card];
            for (&r, &code) in rows.iter().zip(&codes) {
                let slot = &mut slots[code as usize];
                if *slot == u32::MAX {
                    key_of(r as usize, &mut key);
                    *slot = self.group_of(&key, || scalars(r as usize))?;
                }
                gids.push(*slot);
            }
            return Ok(gids);
        }
        for &r in rows {
            key_of(r as usize, &mut key);
            gids.push(self.group_of(&key, || scalars(r as usize))?);
        }
        Ok(gids)
    }

    /// Folds another partial aggregation (same groups and aggregates) into this one.
    pub fn merge(&mut self, other: GroupedAgg) -> Result<()> {
        if other.specs != self.specs || other.group_cols != self.group_cols {
            return Err(ColumnarError::Type(
                "merge of different aggregations".into(),
            ));
        }
        let mut key = Vec::new();
        for (g, scalars) in other.keys.into_iter().enumerate() {
            key.clear();
            scalars.iter().for_each(|s| s.key_bytes(&mut key));
            let mine = self.group_of(&key, || scalars.clone())? as usize;
            for a in 0..self.specs.len() {
                self.states[a][mine].merge(&other.states[a][g])?;
            }
        }
        Ok(())
    }

    /// Every group's key values and aggregate states, in first-seen order.
    pub fn into_groups(self) -> Vec<(Vec<Scalar>, Vec<AggState>)> {
        let mut per_agg: Vec<std::vec::IntoIter<AggState>> =
            self.states.into_iter().map(Vec::into_iter).collect();
        self.keys
            .into_iter()
            .map(|k| (k, per_agg.iter_mut().filter_map(Iterator::next).collect()))
            .collect()
    }
}

fn vector_of(batch: &[Option<Vector>], c: usize) -> Result<&Vector> {
    batch
        .get(c)
        .and_then(Option::as_ref)
        .ok_or_else(|| ColumnarError::Type(format!("column {c} not loaded")))
}

/// Groups up to which counts and sums accumulate in per-chunk arrays (then fold into the
/// states once per group); beyond, per row into the states.
const DENSE_GROUPS_MAX: usize = 1 << 16;

fn count_into(states: &mut [AggState], rows: &[u32], gids: &[u32], valid: impl Fn(usize) -> bool) {
    if states.len() <= DENSE_GROUPS_MAX {
        let mut n = vec![0i64; states.len()];
        for (r, g) in rows.iter().zip(gids) {
            if valid(*r as usize) {
                n[*g as usize] += 1;
            }
        }
        for (st, add) in states.iter_mut().zip(n) {
            if let AggState::Count(c) = st {
                *c += add;
            }
        }
        return;
    }
    for (r, g) in rows.iter().zip(gids) {
        if valid(*r as usize) {
            if let AggState::Count(c) = &mut states[*g as usize] {
                *c += 1;
            }
        }
    }
}

/// SUM/AVG of an integer or float column into per-chunk arrays; false when the groups are
/// too many for that (the caller then adds per row).
fn sum_dense(states: &mut [AggState], c: &Column, rows: &[u32], gids: &[u32]) -> bool {
    let n = states.len();
    if n > DENSE_GROUPS_MAX {
        return false;
    }
    let mut counts = vec![0i64; n];
    match &c.values {
        Values::Int(v) => {
            let mut sums = vec![0i128; n];
            for (r, g) in rows.iter().zip(gids) {
                let (r, g) = (*r as usize, *g as usize);
                if c.is_valid(r) {
                    sums[g] += i128::from(v[r]);
                    counts[g] += 1;
                }
            }
            for ((st, s), k) in states.iter_mut().zip(sums).zip(counts) {
                if let AggState::SumInt { sum, count } = st {
                    *sum += s;
                    *count += k;
                }
            }
        }
        Values::Float(v) => {
            let mut sums = vec![0f64; n];
            for (r, g) in rows.iter().zip(gids) {
                let (r, g) = (*r as usize, *g as usize);
                if c.is_valid(r) {
                    sums[g] += v[r];
                    counts[g] += 1;
                }
            }
            for ((st, s), k) in states.iter_mut().zip(sums).zip(counts) {
                if let AggState::SumFloat { sum, count } = st {
                    if k > 0 {
                        *sum += s;
                        *count += k;
                    }
                }
            }
        }
        Values::Bytes(_) => return false,
    }
    true
}

fn update_one(
    states: &mut [AggState],
    kind: AggKind,
    col: Option<&Column>,
    rows: &[u32],
    gids: &[u32],
) -> Result<()> {
    let pairs = rows
        .iter()
        .zip(gids)
        .map(|(r, g)| (*r as usize, *g as usize));
    match (kind, col) {
        (AggKind::CountStar, _) => {
            for (_, g) in pairs {
                if let AggState::Count(n) = &mut states[g] {
                    *n += 1;
                }
            }
        }
        (AggKind::Count, Some(c)) => {
            for (_, g) in pairs.filter(|(r, _)| c.is_valid(*r)) {
                if let AggState::Count(n) = &mut states[g] {
                    *n += 1;
                }
            }
        }
        (AggKind::Sum | AggKind::Avg, Some(c)) if sum_dense(states, c, rows, gids) => {}
        (AggKind::Sum | AggKind::Avg, Some(c)) => match &c.values {
            Values::Int(v) => {
                for (r, g) in pairs.filter(|(r, _)| c.is_valid(*r)) {
                    if let AggState::SumInt { sum, count } = &mut states[g] {
                        *sum += i128::from(v[r]);
                        *count += 1;
                    }
                }
            }
            Values::Float(v) => {
                for (r, g) in pairs.filter(|(r, _)| c.is_valid(*r)) {
                    if let AggState::SumFloat { sum, count } = &mut states[g] {
                        *sum += v[r];
                        *count += 1;
                    }
                }
            }
            Values::Bytes(_) => return Err(ColumnarError::Type("SUM over bytes".into())),
        },
        (AggKind::Min | AggKind::Max, Some(c)) => {
            let want = if kind == AggKind::Min {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            for (r, g) in pairs.filter(|(r, _)| c.is_valid(*r)) {
                match (&mut states[g], &c.values) {
                    // Ints without building a Scalar per row.
                    (AggState::Min(cur) | AggState::Max(cur), Values::Int(v)) => match cur {
                        Some(Scalar::Int(x)) if v[r].cmp(x) != want => {}
                        _ => *cur = Some(Scalar::Int(v[r])),
                    },
                    (AggState::Min(cur) | AggState::Max(cur), _) => keep(cur, &c.get(r), want),
                    _ => {}
                }
            }
        }
        (k, None) => return Err(ColumnarError::Type(format!("{k:?} needs a column"))),
    }
    Ok(())
}

/// The rows a kernel visits: the selection vector, or every row of the batch.
fn selected_rows(sel: Option<&[u32]>, rows: usize) -> Vec<u32> {
    match sel {
        Some(s) => s.to_vec(),
        None => (0..rows as u32).collect(),
    }
}
