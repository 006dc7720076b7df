//! The catalog: table, index and view definitions, persisted in the KV engine under the
//! reserved catalog prefix as JSON, and cached per `SqlEngine` behind a version number.

use std::collections::BTreeMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::types::SqlType;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
    /// The DEFAULT expression as SQL text, re-parsed when used.
    pub default: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexDef {
    pub id: u32,
    pub name: String,
    /// Column positions in the table.
    pub columns: Vec<usize>,
    pub unique: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableDef {
    pub id: u32,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Column positions of the primary key; empty means a hidden row id is the key.
    pub primary_key: Vec<usize>,
    pub indexes: Vec<IndexDef>,
    /// Row (KV records by key) or columnar (column chunks plus a row-wise delta); tables
    /// created before issue 11 have no field and are row tables.
    #[serde(default)]
    pub storage: StorageKind,
}

/// How a table's rows are stored (`CREATE TABLE ... WITH (storage = 'columnar')`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum StorageKind {
    #[default]
    Row,
    Columnar,
    /// A document collection seen as a table (`documents.<collection>`, issue 11): made up
    /// by the binder, never stored in the catalog; rows come from the document store.
    Document,
}

impl StorageKind {
    pub fn name(self) -> &'static str {
        match self {
            StorageKind::Row => "row",
            StorageKind::Columnar => "columnar",
            StorageKind::Document => "document",
        }
    }
}

impl TableDef {
    pub fn is_columnar(&self) -> bool {
        self.storage == StorageKind::Columnar
    }

    pub fn is_document(&self) -> bool {
        self.storage == StorageKind::Document
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn has_pk(&self) -> bool {
        !self.primary_key.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ViewDef {
    pub name: String,
    pub sql: String,
    /// Column names given in CREATE VIEW v(a, b); empty to take the query's.
    pub columns: Vec<String>,
}

/// One consistent snapshot of the catalog.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub version: u64,
    pub tables: BTreeMap<String, Rc<TableDef>>,
    pub views: BTreeMap<String, Rc<ViewDef>>,
}

/// What a catalog key holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CatalogEntry {
    Table(TableDef),
    View(ViewDef),
}

impl Catalog {
    pub fn table(&self, name: &str) -> Option<&Rc<TableDef>> {
        self.tables.get(name)
    }

    /// The index named `name` and the table it belongs to.
    pub fn find_index(&self, name: &str) -> Option<(Rc<TableDef>, IndexDef)> {
        self.tables.values().find_map(|t| {
            t.indexes
                .iter()
                .find(|i| i.name == name)
                .map(|i| (t.clone(), i.clone()))
        })
    }

    pub fn max_object_id(&self) -> u32 {
        self.tables
            .values()
            .flat_map(|t| std::iter::once(t.id).chain(t.indexes.iter().map(|i| i.id)))
            .max()
            .unwrap_or(0)
    }
}
