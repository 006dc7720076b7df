//! MantisDB's SQL engine: `parser` (sqlparser, PostgreSQL dialect) → `binder` (names and
//! types against the `catalog`) → `plan` → `optimizer` → `access` (fetch rows through the
//! KV engine) → `exec`/`eval`, with `ddl`/`dml` for writes and `session` for transactions.
//! Tables live in the KV engine under an order-preserving key encoding (`keys`, `rowcodec`);
//! see docs/sql.md.

pub mod access;
mod aggscan;
pub mod binary;
pub mod binder;
pub mod cast;
pub mod catalog;
pub mod columnar;
pub mod copy;
pub mod datetime;
mod ddl;
mod dml;
pub mod docs;
pub mod error;
pub mod eval;
pub mod exec;
pub mod explain;
pub mod funcs;
pub mod isolation;
pub mod keys;
pub mod optimizer;
pub mod parser;
pub mod plan;
pub mod rowagg;
pub mod rowcodec;
mod session;
pub mod store;
pub mod txlock;
pub mod types;

use std::cell::RefCell;
use std::rc::Rc;

use mantis_engine::{BatchOp, EngineHandle};

pub use error::SqlError;
pub use isolation::Isolation;
pub use session::{Prepared, Session};
pub use types::{SqlType, Value};

use catalog::{Catalog, CatalogEntry};
use error::Result;

/// A result column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
}

/// What one statement returns.
#[derive(Debug, Clone, PartialEq)]
pub enum StatementResult {
    Rows {
        columns: Vec<Column>,
        rows: Vec<Vec<Value>>,
    },
    Command {
        tag: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IndexInfo {
    pub name: String,
    pub columns: Vec<String>,
    pub unique: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    pub name: String,
    pub columns: Vec<ColumnInfo>,
    pub primary_key: Vec<String>,
    pub indexes: Vec<IndexInfo>,
    /// "row" or "columnar".
    pub storage: String,
}

/// Catalog version keys probed when looking for one key per shard.
const VERSION_KEY_PROBES_MAX: u32 = 1 << 16;

struct Inner {
    handle: EngineHandle,
    catalog: RefCell<Rc<Catalog>>,
    /// For each shard, a version key that shard owns: a statement checks the local one.
    version_keys: Vec<Vec<u8>>,
}

/// The SQL engine of one shard thread; cheap to clone.
#[derive(Clone)]
pub struct SqlEngine {
    inner: Rc<Inner>,
}

impl SqlEngine {
    /// Opens the engine over `handle` and loads the catalog.
    pub async fn open(handle: EngineHandle) -> Result<SqlEngine> {
        let shards = handle.shard_count();
        let mut version_keys: Vec<Option<Vec<u8>>> = vec![None; shards];
        let mut missing = shards;
        let mut n = 0u32;
        while missing > 0 && n < VERSION_KEY_PROBES_MAX {
            let k = keys::version_key(n);
            let s = handle.shard_for(&k);
            if version_keys[s].is_none() {
                version_keys[s] = Some(k);
                missing -= 1;
            }
            n += 1;
        }
        let version_keys = version_keys
            .into_iter()
            .map(|k| k.ok_or_else(|| SqlError::internal("no catalog version key for a shard")))
            .collect::<Result<Vec<_>>>()?;
        let engine = SqlEngine {
            inner: Rc::new(Inner {
                handle,
                catalog: RefCell::new(Rc::new(Catalog {
                    version: u64::MAX,
                    ..Catalog::default()
                })),
                version_keys,
            }),
        };
        engine.catalog().await?;
        Ok(engine)
    }

    pub fn session(&self) -> Session {
        Session::new(self.clone())
    }

    pub fn handle(&self) -> &EngineHandle {
        &self.inner.handle
    }

    pub async fn list_tables(&self) -> Result<Vec<String>> {
        Ok(self.catalog().await?.tables.keys().cloned().collect())
    }

    pub async fn describe_table(&self, name: &str) -> Result<Option<TableInfo>> {
        let cat = self.catalog().await?;
        let Some(t) = cat.table(name) else {
            return Ok(None);
        };
        let col_names = |cols: &[usize]| {
            cols.iter()
                .map(|c| t.columns[*c].name.clone())
                .collect::<Vec<_>>()
        };
        let mut indexes = Vec::new();
        if t.has_pk() {
            indexes.push(IndexInfo {
                name: format!("{}_pkey", t.name),
                columns: col_names(&t.primary_key),
                unique: true,
            });
        }
        for i in &t.indexes {
            indexes.push(IndexInfo {
                name: i.name.clone(),
                columns: col_names(&i.columns),
                unique: i.unique,
            });
        }
        Ok(Some(TableInfo {
            name: t.name.clone(),
            columns: t
                .columns
                .iter()
                .map(|c| ColumnInfo {
                    name: c.name.clone(),
                    ty: c.ty.clone(),
                    nullable: c.nullable,
                    default: c.default.clone(),
                })
                .collect(),
            primary_key: col_names(&t.primary_key),
            indexes,
            storage: t.storage.name().to_string(),
        }))
    }

    fn local_version_key(&self) -> &[u8] {
        let shard = EngineHandle::current_shard().unwrap_or(0);
        let keys = &self.inner.version_keys;
        &keys[shard.min(keys.len() - 1)]
    }

    /// The current catalog: one local `get` of the version key, and a reload only when
    /// another statement (on any shard) changed it.
    pub async fn catalog(&self) -> Result<Rc<Catalog>> {
        let raw = self
            .inner
            .handle
            .get(self.local_version_key())
            .await
            .map_err(|e| SqlError::storage("catalog version check", e))?;
        let version = raw
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_le_bytes);
        let cached = self.inner.catalog.borrow().clone();
        if cached.version == version {
            return Ok(cached);
        }
        let loaded = Rc::new(self.load_catalog(version).await?);
        *self.inner.catalog.borrow_mut() = loaded.clone();
        Ok(loaded)
    }

    async fn load_catalog(&self, version: u64) -> Result<Catalog> {
        let view = store::View {
            handle: &self.inner.handle,
            layers: [None, None],
        };
        let prefix = keys::catalog_prefix();
        let end = keys::prefix_end(&prefix);
        let mut cat = Catalog {
            version,
            ..Catalog::default()
        };
        for (k, v) in view.scan(prefix, end).await? {
            let entry: CatalogEntry = serde_json::from_slice(&v).map_err(|e| {
                SqlError::internal(format!(
                    "corrupt catalog entry {}: {e}",
                    String::from_utf8_lossy(&k)
                ))
            })?;
            match entry {
                CatalogEntry::Table(t) => {
                    cat.tables.insert(t.name.clone(), Rc::new(t));
                }
                CatalogEntry::View(v) => {
                    cat.views.insert(v.name.clone(), Rc::new(v));
                }
            }
        }
        Ok(cat)
    }

    /// Writes catalog changes (and any data ops) and bumps the version on every shard, so
    /// the next statement anywhere reloads.
    async fn commit_ddl(
        &self,
        changes: Vec<(String, Option<CatalogEntry>)>,
        mut ops: Vec<BatchOp>,
    ) -> Result<()> {
        for (name, entry) in changes {
            let key = keys::catalog_key(&name);
            match entry {
                Some(e) => {
                    let value = serde_json::to_vec(&e)
                        .map_err(|e| SqlError::internal(format!("catalog encode: {e}")))?;
                    ops.push(BatchOp::Put {
                        key,
                        value,
                        expires_at_ms: None,
                    });
                }
                None => ops.push(BatchOp::Delete { key }),
            }
        }
        let old = self.inner.catalog.borrow().version;
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let version = now_us.max(old.wrapping_add(1)).max(1);
        for k in &self.inner.version_keys {
            ops.push(BatchOp::Put {
                key: k.clone(),
                value: version.to_le_bytes().to_vec(),
                expires_at_ms: None,
            });
        }
        self.inner
            .handle
            .write_batch(ops)
            .await
            .map_err(|e| SqlError::storage("catalog write", e))
    }

    /// `count` fresh object ids starting at the returned one (tables and indexes share the
    /// space), and the write that persists the counter with the DDL.
    async fn next_object_ids(&self, cat: &Catalog, count: u32) -> Result<(u32, BatchOp)> {
        let key = keys::meta_key("next_object_id");
        let stored = self
            .inner
            .handle
            .get(&key)
            .await
            .map_err(|e| SqlError::storage("object id", e))?
            .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
            .map_or(1, u32::from_le_bytes);
        let id = stored.max(cat.max_object_id() + 1);
        Ok((
            id,
            BatchOp::Put {
                key,
                value: (id + count).to_le_bytes().to_vec(),
                expires_at_ms: None,
            },
        ))
    }
}
