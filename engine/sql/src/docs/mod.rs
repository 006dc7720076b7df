//! Document collections seen from SQL (issue 11): `documents.<collection>` is a read-only
//! table with columns `id text` and `doc jsonb`, one row per document, read through the
//! document store's own query path (`mantis_doc::DocStore::select`), never from its keys.
//!
//! - `json`: PostgreSQL's jsonb operators.
//! - `pushdown`: the part of a WHERE clause the document store can answer (through a path
//!   index when one is ready), as a document filter that matches a superset of the rows; the
//!   full WHERE clause still runs on every row it returns, so results equal a full scan.
//!
//! See docs/documents.md ("SQL").

pub mod json;
pub mod pushdown;
pub mod write;

use std::collections::HashMap;
use std::rc::Rc;

use mantis_doc::DocStore;
use mantis_engine::EngineHandle;
use sqlparser::ast::ObjectName;

use crate::binder::ident_name;
use crate::catalog::{ColumnDef, StorageKind, TableDef};
use crate::error::{state, Result, SqlError};
use crate::exec::Row;
use crate::plan::{BExpr, Plan};
use crate::types::{SqlType, Value};

/// The schema that holds the collections: `SELECT doc FROM documents.books`.
pub const SCHEMA: &str = "documents";
/// Most documents one table read may return: every row is held in memory until the
/// statement ends (16 MiB documents make this the memory bound of a query).
pub const SCAN_ROWS_MAX: usize = 1_000_000;
/// Column positions of the table's rows.
pub const COL_ID: usize = 0;
pub const COL_DOC: usize = 1;
/// Table ids of collection tables have this bit set: they are never stored, and never equal
/// the id of a catalog table (those count up from 1).
const TABLE_ID_BIT: u32 = 1 << 31;

/// The collection a table name refers to: `documents.<name>` (the schema part is required,
/// so a row table and a collection may share a name).
pub fn collection_of(name: &ObjectName) -> Option<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(ident_name).unwrap_or_default())
        .collect();
    match parts.as_slice() {
        [schema, coll] if schema == SCHEMA => Some(coll.clone()),
        _ => None,
    }
}

/// The table a collection appears as.
pub fn table_of(collection: &str) -> Result<TableDef> {
    mantis_doc::store::check_collection(collection).map_err(|e| {
        SqlError::new(
            state::UNDEFINED_TABLE,
            format!("relation \"{SCHEMA}.{collection}\" does not exist"),
        )
        .with_detail(e.to_string())
    })?;
    let column = |name: &str, ty| ColumnDef {
        name: name.into(),
        ty,
        nullable: false,
        default: None,
    };
    Ok(TableDef {
        id: TABLE_ID_BIT | (crc32fast::hash(collection.as_bytes()) & !TABLE_ID_BIT),
        name: format!("{SCHEMA}.{collection}"),
        columns: vec![column("id", SqlType::Text), column("doc", SqlType::Jsonb)],
        primary_key: Vec::new(),
        indexes: Vec::new(),
        storage: StorageKind::Document,
    })
}

/// The collection name of a collection table.
pub fn collection_name(table: &TableDef) -> &str {
    debug_assert!(table.is_document());
    table
        .name
        .strip_prefix(SCHEMA)
        .and_then(|n| n.strip_prefix('.'))
        .unwrap_or(&table.name)
}

/// The error for writes and DDL on a collection table.
pub fn read_only(name: &ObjectName) -> SqlError {
    SqlError::new(
        state::FEATURE_NOT_SUPPORTED,
        format!("cannot change \"{name}\": document collections are read-only from SQL"),
    )
    .with_detail("Write documents through the HTTP API under /api/v1/documents/{collection}.")
}

fn doc_error(collection: &str, e: mantis_doc::DocError) -> SqlError {
    let sqlstate = match &e {
        mantis_doc::DocError::TooManyResults { .. } => state::PROGRAM_LIMIT_EXCEEDED,
        mantis_doc::DocError::Checksum { .. }
        | mantis_doc::DocError::Corrupt(_)
        | mantis_doc::DocError::Stored { .. }
        | mantis_doc::DocError::IndexInconsistent { .. } => state::DATA_CORRUPTED,
        e if e.is_client_error() => state::INVALID_PARAMETER_VALUE,
        _ => state::IO_ERROR,
    };
    SqlError::new(
        sqlstate,
        format!("reading collection \"{collection}\": {e}"),
    )
}

/// Reads the rows of a collection table scan: the documents matching the pushed-down part
/// of `filter` (`konst` evaluates its constants), each as (id, doc).
pub async fn fetch(
    handle: &EngineHandle,
    table: &TableDef,
    filter: Option<&BExpr>,
    konst: &dyn Fn(&BExpr) -> Option<Value>,
) -> Result<Vec<Row>> {
    let collection = collection_name(table);
    let pushed = pushdown::doc_filter(filter, konst);
    let store = DocStore::new(handle.clone());
    let found = store
        .select(collection, &pushed, SCAN_ROWS_MAX)
        .await
        .map_err(|e| doc_error(collection, e))?;
    let mut rows = Vec::with_capacity(found.documents.len());
    for (id, text) in found.documents {
        let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            SqlError::new(
                state::INVALID_TEXT_REPRESENTATION,
                format!("document \"{id}\" of collection \"{collection}\" is not representable as jsonb: {e}"),
            )
        })?;
        rows.push(vec![Value::Text(id), Value::Jsonb(doc)]);
    }
    Ok(rows)
}

/// What EXPLAIN says about each collection scan in `plan`, by node address: the access the
/// document store chooses for the pushed-down filter (the same choice `fetch` makes).
pub async fn explain_notes(handle: &EngineHandle, plan: &Plan) -> Result<HashMap<usize, String>> {
    let mut nodes = Vec::new();
    crate::access::access_nodes(plan, &mut nodes);
    let mut notes = HashMap::new();
    let store = DocStore::new(handle.clone());
    for node in nodes {
        let Plan::Scan { table, filter } = node else {
            continue;
        };
        if !table.is_document() {
            continue;
        }
        let collection = collection_name(table);
        let konst = |e: &BExpr| match e {
            BExpr::Lit(v) => Some(v.clone()),
            _ => None,
        };
        let pushed = pushdown::doc_filter(filter.as_ref(), &konst);
        let query = mantis_doc::Query {
            filter: pushed,
            sort: Vec::new(),
            limit: 1,
        };
        let p = store
            .explain(collection, &query)
            .await
            .map_err(|e| doc_error(collection, e))?;
        let how = match (&p.index, &p.index_condition) {
            (Some(path), Some(cond)) => format!("using path index {path} ({cond})"),
            (Some(path), None) => format!("using path index {path}"),
            _ => "full scan of the collection".to_string(),
        };
        notes.insert(
            node as *const Plan as usize,
            format!("Document Scan on {} {how}, {} shards", table.name, p.shards),
        );
    }
    Ok(notes)
}

/// A collection table for the binder.
pub fn table_rc(collection: &str) -> Result<Rc<TableDef>> {
    table_of(collection).map(Rc::new)
}
