//! The two writes SQL may make to a collection, both through the document store:
//!
//! - `INSERT INTO documents.c [(id, doc) | (doc)] VALUES ... | SELECT ...`: one
//!   `DocStore::insert` per row. `doc` is the document's JSON text (an untyped literal keeps
//!   its text byte for byte; a jsonb value is printed); a NULL or absent `id` takes the
//!   document's `_id` or a generated one. Not transactional: refused inside BEGIN ... COMMIT,
//!   and a failing row leaves the rows before it inserted (reported in the error).
//! - `CREATE INDEX [name] ON documents.c ((doc->>'a'))`: `DocStore::create_index` on path
//!   `a` (any `->`/`->>`/`#>`/`#>>` chain from `doc`), back-filled before it returns.

use std::rc::Rc;

use mantis_doc::DocStore;
use mantis_engine::EngineHandle;
use sqlparser::ast::{self, TableObject};

use super::{collection_name, pushdown, table_of};
use crate::binder::{ident_name, Binder, Scope};
use crate::catalog::Catalog;
use crate::error::{state, Result, SqlError};
use crate::plan::Plan;
use crate::types::{SqlType, Value};

/// A bound INSERT into a collection: the rows come from `source`.
#[derive(Debug)]
pub struct DocInsert {
    pub collection: String,
    pub source: Plan,
    /// Positions of `id` and `doc` in the source's rows.
    pub id_col: Option<usize>,
    pub doc_col: usize,
}

/// The collection an INSERT writes to, if it writes to one.
pub fn insert_target(ins: &ast::Insert) -> Option<String> {
    match &ins.table {
        TableObject::TableName(name) => super::collection_of(name),
        _ => None,
    }
}

pub fn bind_insert(b: &mut Binder, ins: &ast::Insert, collection: &str) -> Result<DocInsert> {
    let t = table_of(collection)?;
    if ins.returning.is_some() || ins.on.is_some() || ins.or.is_some() || ins.ignore {
        return Err(SqlError::unsupported(
            "RETURNING / ON CONFLICT / OR on a document collection",
        ));
    }
    let names: Vec<String> = if ins.columns.is_empty() {
        vec!["id".into(), "doc".into()]
    } else {
        ins.columns.iter().map(ident_name).collect()
    };
    let mut id_col = None;
    let mut doc_col = None;
    for (i, n) in names.iter().enumerate() {
        let slot = match n.as_str() {
            "id" => &mut id_col,
            "doc" => &mut doc_col,
            other => {
                return Err(SqlError::new(
                    state::UNDEFINED_COLUMN,
                    format!(
                        "column \"{other}\" of relation \"{}\" does not exist",
                        t.name
                    ),
                ))
            }
        };
        if slot.replace(i).is_some() {
            return Err(SqlError::new(
                state::DUPLICATE_COLUMN,
                format!("column \"{n}\" specified more than once"),
            ));
        }
    }
    let doc_col = doc_col.ok_or_else(|| {
        SqlError::new(
            state::NOT_NULL_VIOLATION,
            format!("null value in column \"doc\" of relation \"{}\"", t.name),
        )
    })?;
    let source = ins
        .source
        .as_ref()
        .ok_or_else(|| SqlError::unsupported("INSERT without VALUES or SELECT"))?;
    let bq = b.query(source)?;
    if bq.types.len() != names.len() {
        return Err(SqlError::syntax(format!(
            "INSERT has {} target columns but {} expressions",
            names.len(),
            bq.types.len()
        )));
    }
    let text_like = |ty: &SqlType| ty.is_text() || *ty == SqlType::Jsonb;
    if !text_like(&bq.types[doc_col]) || id_col.is_some_and(|i| !bq.types[i].is_text()) {
        return Err(SqlError::mismatch(
            "a document row is (id text, doc jsonb or text)".to_string(),
        ));
    }
    Ok(DocInsert {
        collection: collection.to_string(),
        source: crate::optimizer::optimize(bq.plan),
        id_col,
        doc_col,
    })
}

/// Inserts the source rows; returns how many.
pub async fn run_insert(
    handle: &EngineHandle,
    p: &DocInsert,
    rows: Vec<Vec<Value>>,
) -> Result<u64> {
    let store = DocStore::new(handle.clone());
    let mut done = 0u64;
    for row in rows {
        let id = match p.id_col.and_then(|i| row.get(i)) {
            None | Some(Value::Null) => None,
            Some(Value::Text(s)) => Some(s.clone()),
            Some(other) => other.to_pg_text(),
        };
        let text = match row.get(p.doc_col) {
            Some(Value::Text(s)) => s.clone(),
            Some(Value::Jsonb(j)) => j.to_string(),
            _ => {
                return Err(SqlError::new(
                    state::NOT_NULL_VIOLATION,
                    format!(
                        "null value in column \"doc\" of relation \"documents.{}\"",
                        p.collection
                    ),
                ))
            }
        };
        store
            .insert(&p.collection, id.as_deref(), &text)
            .await
            .map_err(|e| insert_error(&p.collection, done, e))?;
        done += 1;
    }
    Ok(done)
}

fn insert_error(collection: &str, done: u64, e: mantis_doc::DocError) -> SqlError {
    use mantis_doc::DocError as D;
    let sqlstate = match &e {
        D::Exists { .. } => state::UNIQUE_VIOLATION,
        D::BadJson { .. } | D::TooDeep { .. } => state::INVALID_TEXT_REPRESENTATION,
        D::TooLarge { .. } => state::PROGRAM_LIMIT_EXCEEDED,
        e if e.is_client_error() => state::INVALID_PARAMETER_VALUE,
        _ => state::IO_ERROR,
    };
    SqlError::new(sqlstate, format!("insert into documents.{collection}: {e}")).with_detail(
        format!("{done} earlier rows of this statement were inserted"),
    )
}

/// `CREATE INDEX ... ON documents.c ((doc->>'path'))`.
pub async fn create_index(
    handle: &EngineHandle,
    catalog: &Catalog,
    ci: &ast::CreateIndex,
    collection: &str,
) -> Result<String> {
    let t = Rc::new(table_of(collection)?);
    if ci.unique || ci.predicate.is_some() || ci.columns.len() != 1 {
        return Err(SqlError::unsupported(
            "document indexes are on one path, not unique, without WHERE",
        ));
    }
    if let Some(using) = &ci.using {
        if ident_name(using) != "btree" {
            return Err(SqlError::unsupported(format!(
                "index method {using} on a document collection (path indexes are btree-like)"
            )));
        }
    }
    let mut b = Binder::new(catalog, Vec::new());
    let (e, _) = b.bind_in_scope(Scope::of_table(&t, collection), &ci.columns[0].expr)?;
    let path = pushdown::index_path(&e).ok_or_else(|| {
        SqlError::unsupported(
            "a document index is on one path: (doc->'a'->>'b') or (doc #>> '{a,b}')",
        )
    })?;
    let store = DocStore::new(handle.clone());
    store
        .create_index(collection_name(&t), path.as_str())
        .await
        .map_err(|e| SqlError::new(state::INVALID_PARAMETER_VALUE, e.to_string()))?;
    Ok(path.as_str().to_string())
}
