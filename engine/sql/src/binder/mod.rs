//! The binder: resolves names against the catalog and scopes, checks and infers types, and
//! turns a parsed query into a logical plan (`plan::Plan`). Expression binding lives in
//! `expr`, SELECT / set operations in `query`.

mod expr;
mod json;
mod query;

use std::collections::HashMap;
use std::rc::Rc;

use sqlparser::ast::{self, Ident, ObjectName, Query};

use crate::catalog::{Catalog, TableDef};
use crate::error::{state, Result, SqlError};
use crate::plan::BExpr;
use crate::types::SqlType;

/// One column visible in a scope.
#[derive(Debug, Clone)]
pub struct ScopeCol {
    pub table: Option<String>,
    pub name: String,
    pub ty: SqlType,
}

#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub cols: Vec<ScopeCol>,
}

impl Scope {
    pub fn of_table(t: &TableDef, alias: &str) -> Scope {
        Scope {
            cols: t
                .columns
                .iter()
                .map(|c| ScopeCol {
                    table: Some(alias.to_string()),
                    name: c.name.clone(),
                    ty: c.ty.clone(),
                })
                .collect(),
        }
    }
}

pub struct Binder<'a> {
    pub catalog: &'a Catalog,
    /// Parameter types: given by the client or inferred from their use.
    pub params: Vec<Option<SqlType>>,
    scopes: Vec<Scope>,
    /// Per scope level: a column of an enclosing level was referenced.
    corr: Vec<bool>,
    ctes: Vec<HashMap<String, (Query, Vec<String>)>>,
    /// Whether aggregates may appear in the expression being bound.
    agg_allowed: bool,
    /// Views being expanded (to refuse recursion).
    view_depth: usize,
}

/// Nesting of views inside views, at most.
pub const VIEW_DEPTH_MAX: usize = 16;

pub fn ident_name(i: &Ident) -> String {
    // Unquoted identifiers fold to lower case, as in PostgreSQL.
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// The last part of a possibly schema-qualified name (`public.t` is `t`).
pub fn object_name(n: &ObjectName) -> String {
    n.0.last()
        .and_then(|p| p.as_ident())
        .map(ident_name)
        .unwrap_or_default()
}

impl<'a> Binder<'a> {
    pub fn new(catalog: &'a Catalog, params: Vec<Option<SqlType>>) -> Binder<'a> {
        Binder {
            catalog,
            params,
            scopes: Vec::new(),
            corr: Vec::new(),
            ctes: Vec::new(),
            agg_allowed: false,
            view_depth: 0,
        }
    }

    pub fn push_scope(&mut self, s: Scope) {
        self.scopes.push(s);
        self.corr.push(false);
    }

    /// Pops the innermost scope; true if it referenced an enclosing one.
    pub fn pop_scope(&mut self) -> bool {
        self.scopes.pop();
        self.corr.pop().unwrap_or(false)
    }

    pub fn mark_correlated(&mut self) {
        if let Some(c) = self.corr.last_mut() {
            *c = true;
        }
    }

    pub fn table(&self, name: &ObjectName) -> Result<Rc<TableDef>> {
        // Reads of collections are bound in FROM; every other use is a write or DDL.
        if crate::docs::collection_of(name).is_some() {
            return Err(crate::docs::read_only(name));
        }
        let n = object_name(name);
        self.catalog.table(&n).cloned().ok_or_else(|| {
            SqlError::new(
                state::UNDEFINED_TABLE,
                format!("relation \"{n}\" does not exist"),
            )
        })
    }

    /// Resolves a column reference through the scopes, innermost first.
    fn resolve(&mut self, parts: &[Ident]) -> Result<(BExpr, SqlType)> {
        let names: Vec<String> = parts.iter().map(ident_name).collect();
        let (qual, col) = match names.as_slice() {
            [c] => (None, c.clone()),
            [.., t, c] => (Some(t.clone()), c.clone()),
            [] => return Err(SqlError::syntax("empty column reference")),
        };
        let top = self.scopes.len();
        for level in (0..top).rev() {
            let scope = &self.scopes[level];
            let hits: Vec<usize> = scope
                .cols
                .iter()
                .enumerate()
                .filter(|(_, c)| c.name == col && (qual.is_none() || c.table == qual))
                .map(|(i, _)| i)
                .collect();
            if hits.len() > 1 {
                return Err(SqlError::new(
                    state::AMBIGUOUS_COLUMN,
                    format!("column reference \"{col}\" is ambiguous"),
                ));
            }
            if let Some(&i) = hits.first() {
                let ty = scope.cols[i].ty.clone();
                if level + 1 == top {
                    return Ok((BExpr::Col(i), ty));
                }
                for c in &mut self.corr[level + 1..top] {
                    *c = true;
                }
                return Ok((BExpr::Outer(top - 1 - level, i), ty));
            }
        }
        let shown = names.join(".");
        if let Some(q) = &qual {
            let known = self
                .scopes
                .iter()
                .any(|s| s.cols.iter().any(|c| c.table.as_ref() == Some(q)));
            if !known {
                return Err(SqlError::new(
                    state::UNDEFINED_TABLE,
                    format!("missing FROM-clause entry for table \"{q}\""),
                ));
            }
        }
        Err(SqlError::new(
            state::UNDEFINED_COLUMN,
            format!("column \"{shown}\" does not exist"),
        ))
    }

    pub fn cte(&self, name: &str) -> Option<(Query, Vec<String>)> {
        self.ctes.iter().rev().find_map(|m| m.get(name).cloned())
    }

    /// Binds a standalone expression over one table's row (UPDATE SET, DEFAULT, CHECK...).
    pub fn bind_in_scope(&mut self, scope: Scope, e: &ast::Expr) -> Result<(BExpr, SqlType)> {
        self.push_scope(scope);
        let r = self.expr(e);
        self.pop_scope();
        r
    }

    /// The parameter types after binding, unknown ones as text.
    pub fn param_types(&self) -> Vec<SqlType> {
        self.params
            .iter()
            .map(|t| match t {
                Some(SqlType::Unknown) | None => SqlType::Text,
                Some(t) => t.clone(),
            })
            .collect()
    }
}
