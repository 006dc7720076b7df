//! The per-shard half of a pushed-down aggregate: fed the table's entries on the shard that
//! owns them, it decodes only the columns the query reads (into one reused row buffer),
//! applies the filter and folds each row into its group's partial aggregate states. Only
//! the groups travel back.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mantis_engine::ScanVisitor;

use super::ship::{from_ship, unship_agg, ShipAgg, ShipExpr};
use crate::error::{Result, SqlError};
use crate::eval::{eval, truth};
use crate::exec::{accumulate, check_rows, fresh_states, AggState, Ctx, Row};
use crate::keys::encode_value;
use crate::plan::{AggCall, BExpr};
use crate::rowcodec::decode_row_into;
use crate::types::Value;

/// What every shard needs to compute its partial aggregate (all `Send`).
#[derive(Debug, Clone)]
pub struct Spec {
    /// One flag per table column: decode it (a filter, group or aggregate reads it).
    pub needed: Vec<bool>,
    pub filter: Option<ShipExpr>,
    pub group: Vec<ShipExpr>,
    pub aggs: Vec<ShipAgg>,
    pub params: Vec<Value>,
    /// Row keys the statement's own pending writes replace: the shards skip them and the
    /// statement's shard aggregates the pending versions itself.
    pub skip: Arc<HashSet<Vec<u8>>>,
}

/// One group's partial result.
pub struct PartialGroup {
    pub keyvals: Row,
    /// The smallest row key of the group seen: groups are emitted in this order, the order
    /// in which the whole-table path met them.
    pub first_key: Vec<u8>,
    pub states: Vec<AggState>,
}

/// The visitor that runs on each shard.
pub struct PartialAgg {
    needed: Vec<bool>,
    filter: Option<BExpr>,
    group: Vec<BExpr>,
    aggs: Vec<AggCall>,
    ctx: Ctx,
    skip: Arc<HashSet<Vec<u8>>>,
    index: HashMap<Vec<u8>, usize>,
    groups: Vec<PartialGroup>,
    /// Reused across rows: no allocation per row for the row, the key values or the key.
    row: Row,
    keyvals: Row,
    group_key: Vec<u8>,
    error: Option<SqlError>,
}

impl PartialAgg {
    pub fn new(spec: Spec) -> PartialAgg {
        PartialAgg {
            needed: spec.needed,
            filter: spec.filter.map(from_ship),
            group: spec.group.into_iter().map(from_ship).collect(),
            aggs: spec.aggs.into_iter().map(unship_agg).collect(),
            ctx: Ctx::new(spec.params),
            skip: spec.skip,
            index: HashMap::new(),
            groups: Vec::new(),
            row: Vec::new(),
            keyvals: Vec::new(),
            group_key: Vec::new(),
            error: None,
        }
    }

    /// Folds one stored row (`key`, encoded `value`) in.
    pub fn add(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        decode_row_into(value, &self.needed, &mut self.row)?;
        if let Some(f) = &self.filter {
            if truth(&eval(f, &self.row, &self.ctx, &[])?)? != Some(true) {
                return Ok(());
            }
        }
        self.keyvals.clear();
        self.group_key.clear();
        for g in &self.group {
            let v = eval(g, &self.row, &self.ctx, &[])?;
            encode_value(&mut self.group_key, &v);
            self.keyvals.push(v);
        }
        let gi = match self.index.get(self.group_key.as_slice()) {
            Some(i) => *i,
            None => {
                self.groups.push(PartialGroup {
                    keyvals: self.keyvals.clone(),
                    first_key: key.to_vec(),
                    states: fresh_states(&self.aggs),
                });
                check_rows(self.groups.len())?;
                self.index
                    .insert(self.group_key.clone(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let states = &mut self.groups[gi].states;
        for (a, st) in self.aggs.iter().zip(states.iter_mut()) {
            let v = match &a.arg {
                Some(e) => eval(e, &self.row, &self.ctx, &[])?,
                None => Value::Bool(true),
            };
            accumulate(a, st, v)?;
        }
        Ok(())
    }
}

impl ScanVisitor for PartialAgg {
    type Output = Result<Vec<PartialGroup>>;

    fn visit(&mut self, key: &[u8], value: &[u8]) -> bool {
        if self.skip.contains(key) {
            return true;
        }
        match self.add(key, value) {
            Ok(()) => true,
            Err(e) => {
                self.error = Some(e);
                false
            }
        }
    }

    fn finish(self) -> Self::Output {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.groups),
        }
    }
}
