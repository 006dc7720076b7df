//! Decoded column vectors. Three physical types cover the SQL types: `Int` (integers, bool,
//! date, timestamp), `Float` (real, double) and `Bytes` (text, bytea and anything stored by
//! its text form). A NULL slot holds a zero/empty placeholder and is marked in `validity`.

use std::cmp::Ordering;

use crate::error::{ColumnarError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhysType {
    Int,
    Float,
    Bytes,
}

impl PhysType {
    pub(crate) fn tag(self) -> u8 {
        match self {
            PhysType::Int => 1,
            PhysType::Float => 2,
            PhysType::Bytes => 3,
        }
    }

    pub(crate) fn from_tag(t: u8) -> Option<PhysType> {
        match t {
            1 => Some(PhysType::Int),
            2 => Some(PhysType::Float),
            3 => Some(PhysType::Bytes),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Int(Vec<i64>),
    Float(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::Int(v) => v.len(),
            Values::Float(v) => v.len(),
            Values::Bytes(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn phys(&self) -> PhysType {
        match self {
            Values::Int(_) => PhysType::Int,
            Values::Float(_) => PhysType::Float,
            Values::Bytes(_) => PhysType::Bytes,
        }
    }

    pub fn empty(phys: PhysType) -> Values {
        match phys {
            PhysType::Int => Values::Int(Vec::new()),
            PhysType::Float => Values::Float(Vec::new()),
            PhysType::Bytes => Values::Bytes(Vec::new()),
        }
    }
}

/// One value, as the kernels and statistics see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
}

impl Scalar {
    /// SQL order within one physical type: floats with -0 = 0 and NaN above everything
    /// (PostgreSQL's rule), bytes lexicographically (UTF-8 text in code point order).
    /// `None` across types or with NULL.
    pub fn cmp_same(&self, other: &Scalar) -> Option<Ordering> {
        match (self, other) {
            (Scalar::Int(a), Scalar::Int(b)) => Some(a.cmp(b)),
            (Scalar::Float(a), Scalar::Float(b)) => Some(float_cmp(*a, *b)),
            (Scalar::Bytes(a), Scalar::Bytes(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// Bytes identifying the value for hashing (group keys): equal values, equal bytes.
    pub fn key_bytes(&self, out: &mut Vec<u8>) {
        match self {
            Scalar::Null => out.push(0),
            Scalar::Int(i) => {
                out.push(1);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Scalar::Float(f) => {
                out.push(2);
                out.extend_from_slice(&canonical_float_bits(*f).to_le_bytes());
            }
            Scalar::Bytes(b) => {
                out.push(3);
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

/// -0.0 → 0.0 and every NaN → one NaN, so equal SQL values share their bits.
pub fn canonical_float_bits(f: f64) -> u64 {
    if f == 0.0 {
        0
    } else if f.is_nan() {
        f64::NAN.to_bits()
    } else {
        f.to_bits()
    }
}

pub fn float_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// A column vector: values plus validity (`None` = no NULLs).
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub values: Values,
    pub validity: Option<Vec<bool>>,
}

impl Column {
    pub fn new(values: Values, validity: Option<Vec<bool>>) -> Column {
        if let Some(v) = &validity {
            assert_eq!(v.len(), values.len(), "validity length");
        }
        let validity = validity.filter(|v| v.iter().any(|ok| !ok));
        Column { values, validity }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn phys(&self) -> PhysType {
        self.values.phys()
    }

    pub fn is_valid(&self, i: usize) -> bool {
        self.validity.as_ref().is_none_or(|v| v[i])
    }

    pub fn null_count(&self) -> usize {
        self.validity
            .as_ref()
            .map_or(0, |v| v.iter().filter(|ok| !**ok).count())
    }

    /// The value at row `i`.
    pub fn get(&self, i: usize) -> Scalar {
        if !self.is_valid(i) {
            return Scalar::Null;
        }
        match &self.values {
            Values::Int(v) => Scalar::Int(v[i]),
            Values::Float(v) => Scalar::Float(v[i]),
            Values::Bytes(v) => Scalar::Bytes(v[i].clone()),
        }
    }

    /// Builds a column of type `phys` from scalars (NULLs allowed).
    pub fn from_scalars(phys: PhysType, items: &[Scalar]) -> Result<Column> {
        let mut b = ColumnBuilder::new(phys, items.len());
        for s in items {
            b.push(s)?;
        }
        Ok(b.finish())
    }
}

/// Appends values one at a time (the row-to-column transpose of a merge or of the delta).
pub struct ColumnBuilder {
    values: Values,
    validity: Vec<bool>,
}

impl ColumnBuilder {
    pub fn new(phys: PhysType, capacity: usize) -> ColumnBuilder {
        let values = match phys {
            PhysType::Int => Values::Int(Vec::with_capacity(capacity)),
            PhysType::Float => Values::Float(Vec::with_capacity(capacity)),
            PhysType::Bytes => Values::Bytes(Vec::with_capacity(capacity)),
        };
        ColumnBuilder {
            values,
            validity: Vec::with_capacity(capacity),
        }
    }

    pub fn push(&mut self, s: &Scalar) -> Result<()> {
        let valid = !matches!(s, Scalar::Null);
        match (&mut self.values, s) {
            (Values::Int(v), Scalar::Int(x)) => v.push(*x),
            (Values::Float(v), Scalar::Float(x)) => v.push(*x),
            (Values::Bytes(v), Scalar::Bytes(x)) => v.push(x.clone()),
            (Values::Int(v), Scalar::Null) => v.push(0),
            (Values::Float(v), Scalar::Null) => v.push(0.0),
            (Values::Bytes(v), Scalar::Null) => v.push(Vec::new()),
            (vals, s) => {
                return Err(ColumnarError::Type(format!(
                    "{s:?} in a {:?} column",
                    vals.phys()
                )))
            }
        }
        self.validity.push(valid);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.validity.len()
    }

    pub fn is_empty(&self) -> bool {
        self.validity.is_empty()
    }

    pub fn finish(self) -> Column {
        Column::new(self.values, Some(self.validity))
    }
}
