//! Column vectors as the kernels take them: flat (`Column`), or dictionary-coded. A text
//! chunk stored with a dictionary stays as its dictionary and per-row codes, so a filter
//! compares the constant with each dictionary entry once and then tests codes, and a
//! GROUP BY maps each code to its group once per chunk: no string is built per row.

use std::borrow::Cow;

use crate::column::{Column, PhysType, Scalar, Values};
use crate::error::Result;
use crate::kernels::{filter_cmp, CmpOp};

/// A dictionary-coded column: row `i` is `dict[codes[i]]` unless `validity` says NULL.
#[derive(Debug, Clone, PartialEq)]
pub struct DictColumn {
    /// The distinct values, as a column without NULLs.
    pub dict: Column,
    pub codes: Vec<u32>,
    pub validity: Option<Vec<bool>>,
}

impl DictColumn {
    pub fn new(dict: Values, codes: Vec<u32>, validity: Option<Vec<bool>>) -> DictColumn {
        assert!(
            codes.iter().all(|c| (*c as usize) < dict.len()),
            "code past the dictionary"
        );
        if let Some(v) = &validity {
            assert_eq!(v.len(), codes.len(), "validity length");
        }
        DictColumn {
            dict: Column::new(dict, None),
            codes,
            validity: validity.filter(|v| v.iter().any(|ok| !ok)),
        }
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    pub fn is_valid(&self, i: usize) -> bool {
        self.validity.as_ref().is_none_or(|v| v[i])
    }

    /// The flat column (one value per row): for kernels without a coded form.
    pub fn materialize(&self) -> Column {
        let values = match &self.dict.values {
            Values::Int(d) => Values::Int(self.codes.iter().map(|c| d[*c as usize]).collect()),
            Values::Float(d) => Values::Float(self.codes.iter().map(|c| d[*c as usize]).collect()),
            Values::Bytes(d) => {
                Values::Bytes(self.codes.iter().map(|c| d[*c as usize].clone()).collect())
            }
        };
        Column::new(values, self.validity.clone())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Vector {
    Flat(Column),
    Dict(DictColumn),
}

impl Vector {
    pub fn len(&self) -> usize {
        match self {
            Vector::Flat(c) => c.len(),
            Vector::Dict(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn phys(&self) -> PhysType {
        match self {
            Vector::Flat(c) => c.phys(),
            Vector::Dict(d) => d.dict.phys(),
        }
    }

    pub fn is_valid(&self, i: usize) -> bool {
        match self {
            Vector::Flat(c) => c.is_valid(i),
            Vector::Dict(d) => d.is_valid(i),
        }
    }

    /// The value at row `i`.
    pub fn get(&self, i: usize) -> Scalar {
        match self {
            Vector::Flat(c) => c.get(i),
            Vector::Dict(d) if !d.is_valid(i) => Scalar::Null,
            Vector::Dict(d) => d.dict.get(d.codes[i] as usize),
        }
    }

    /// The flat column, built only for a dictionary-coded vector.
    pub fn flat(&self) -> Cow<'_, Column> {
        match self {
            Vector::Flat(c) => Cow::Borrowed(c),
            Vector::Dict(d) => Cow::Owned(d.materialize()),
        }
    }
}

impl From<Column> for Vector {
    fn from(c: Column) -> Vector {
        Vector::Flat(c)
    }
}

/// Row indices of `v` (among `sel`, or among all rows) where `v op constant` is true;
/// NULLs never pass. A dictionary-coded vector is compared entry by entry, then its codes
/// are tested against that answer.
pub fn filter_vector(
    v: &Vector,
    op: CmpOp,
    constant: &Scalar,
    sel: Option<&[u32]>,
) -> Result<Vec<u32>> {
    let d = match v {
        Vector::Flat(c) => return filter_cmp(c, op, constant, sel),
        Vector::Dict(d) => d,
    };
    let mut pass = vec![false; d.dict.len()];
    for i in filter_cmp(&d.dict, op, constant, None)? {
        pass[i as usize] = true;
    }
    let codes = &d.codes;
    let keep = |i: usize| pass[codes[i] as usize] && d.is_valid(i);
    Ok(match sel {
        Some(s) => s.iter().copied().filter(|i| keep(*i as usize)).collect(),
        None => (0..codes.len() as u32)
            .filter(|i| keep(*i as usize))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::chunk::{decode_column, decode_vector, encode_column_as};
    use crate::encoding::Encoding;

    fn text(rows: &[Option<&str>]) -> Column {
        let items: Vec<Scalar> = rows
            .iter()
            .map(|r| r.map_or(Scalar::Null, |s| Scalar::Bytes(s.as_bytes().to_vec())))
            .collect();
        Column::from_scalars(PhysType::Bytes, &items).unwrap()
    }

    #[test]
    fn dictionary_text_stays_coded_and_filters_like_the_flat_column() {
        let rows = [
            Some("b"),
            None,
            Some("a"),
            Some("b"),
            Some("zz"),
            Some("a"),
            None,
        ];
        let col = text(&rows);
        let blob = encode_column_as(&col, Encoding::Dictionary).unwrap();
        let v = decode_vector(&blob).unwrap();
        assert!(matches!(v, Vector::Dict(_)), "{v:?}");
        assert_eq!(v.flat().into_owned(), decode_column(&blob).unwrap());
        for i in 0..rows.len() {
            assert_eq!(v.get(i), col.get(i));
        }
        let ops = [
            CmpOp::Eq,
            CmpOp::NotEq,
            CmpOp::Lt,
            CmpOp::LtEq,
            CmpOp::Gt,
            CmpOp::GtEq,
        ];
        for op in ops {
            for c in ["a", "b", "c", "zz", ""] {
                let c = Scalar::Bytes(c.as_bytes().to_vec());
                let want = filter_cmp(&col, op, &c, None).unwrap();
                assert_eq!(
                    filter_vector(&v, op, &c, None).unwrap(),
                    want,
                    "{op:?} {c:?}"
                );
                let sel = [0u32, 2, 3, 6];
                assert_eq!(
                    filter_vector(&v, op, &c, Some(&sel)).unwrap(),
                    filter_cmp(&col, op, &c, Some(&sel)).unwrap()
                );
            }
        }
        let plain = encode_column_as(&col, Encoding::Plain).unwrap();
        assert!(matches!(decode_vector(&plain).unwrap(), Vector::Flat(_)));
    }
}
