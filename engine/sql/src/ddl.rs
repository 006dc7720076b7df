//! DDL: CREATE/DROP TABLE, INDEX and VIEW. Each validates fully, then writes the catalog
//! change, any data change (index build, dropped rows) and the version bump in one batch.

use mantis_engine::BatchOp;
use sqlparser::ast::{self, ColumnOption, ObjectType, Statement, TableConstraint};

use crate::binder::{ident_name, object_name, Binder};
use crate::catalog::{CatalogEntry, ColumnDef, IndexDef, TableDef, ViewDef};
use crate::error::{state, Result, SqlError};
use crate::keys;
use crate::store::View;
use crate::types::SqlType;
use crate::SqlEngine;

fn tag(t: &str) -> crate::StatementResult {
    crate::StatementResult::Command { tag: t.to_string() }
}

pub async fn create_table(
    engine: &SqlEngine,
    ct: &ast::CreateTable,
) -> Result<crate::StatementResult> {
    let cat = engine.catalog().await?;
    let name = object_name(&ct.name);
    if cat.tables.contains_key(&name) || cat.views.contains_key(&name) {
        if ct.if_not_exists {
            return Ok(tag("CREATE TABLE"));
        }
        return Err(SqlError::new(
            state::DUPLICATE_TABLE,
            format!("relation \"{name}\" already exists"),
        ));
    }
    if ct.query.is_some() || ct.like.is_some() || ct.clone.is_some() {
        return Err(SqlError::unsupported("CREATE TABLE AS / LIKE / CLONE"));
    }
    let mut columns: Vec<ColumnDef> = Vec::new();
    let mut pk: Vec<usize> = Vec::new();
    let mut uniques: Vec<Vec<usize>> = Vec::new();
    for c in &ct.columns {
        let cname = ident_name(&c.name);
        if columns.iter().any(|x| x.name == cname) {
            return Err(SqlError::new(
                state::DUPLICATE_COLUMN,
                format!("column \"{cname}\" specified more than once"),
            ));
        }
        let ty = SqlType::parse(&c.data_type.to_string())?;
        let mut col = ColumnDef {
            name: cname,
            ty,
            nullable: true,
            default: None,
        };
        let pos = columns.len();
        for o in &c.options {
            match &o.option {
                ColumnOption::Null => {}
                ColumnOption::NotNull => col.nullable = false,
                ColumnOption::Default(e) => col.default = Some(e.to_string()),
                ColumnOption::Unique {
                    is_primary: true, ..
                } => {
                    if !pk.is_empty() {
                        return Err(SqlError::new(
                            "42P16",
                            format!("multiple primary keys for table \"{name}\" are not allowed"),
                        ));
                    }
                    pk.push(pos);
                    col.nullable = false;
                }
                ColumnOption::Unique {
                    is_primary: false, ..
                } => uniques.push(vec![pos]),
                other => return Err(SqlError::unsupported(format!("column option {other}"))),
            }
        }
        columns.push(col);
    }
    let find = |i: &ast::Ident, columns: &[ColumnDef]| -> Result<usize> {
        let n = ident_name(i);
        columns.iter().position(|c| c.name == n).ok_or_else(|| {
            SqlError::new(
                state::UNDEFINED_COLUMN,
                format!("column \"{n}\" named in key does not exist"),
            )
        })
    };
    for tc in &ct.constraints {
        match tc {
            TableConstraint::PrimaryKey { columns: cols, .. } => {
                if !pk.is_empty() {
                    return Err(SqlError::new(
                        "42P16",
                        format!("multiple primary keys for table \"{name}\" are not allowed"),
                    ));
                }
                for i in cols {
                    let p = find(i, &columns)?;
                    columns[p].nullable = false;
                    pk.push(p);
                }
            }
            TableConstraint::Unique { columns: cols, .. } => {
                uniques.push(
                    cols.iter()
                        .map(|i| find(i, &columns))
                        .collect::<Result<_>>()?,
                );
            }
            other => return Err(SqlError::unsupported(format!("table constraint {other}"))),
        }
    }
    let storage = crate::columnar::storage_option(&ct.with_options)?;
    if storage == crate::catalog::StorageKind::Columnar && (!pk.is_empty() || !uniques.is_empty()) {
        return Err(SqlError::unsupported(
            "PRIMARY KEY or UNIQUE on a columnar table (rows are keyed by a hidden row id)",
        ));
    }
    // Check every DEFAULT binds and fits its column now, not at the first INSERT.
    for c in &columns {
        if let Some(d) = &c.default {
            default_expr(d, &c.ty)?;
        }
    }
    let (first_id, id_op) = engine
        .next_object_ids(&cat, 1 + uniques.len() as u32)
        .await?;
    let indexes = uniques
        .into_iter()
        .enumerate()
        .map(|(i, cols)| IndexDef {
            id: first_id + 1 + i as u32,
            name: format!(
                "{}_{}_key",
                name,
                cols.iter()
                    .map(|c| columns[*c].name.as_str())
                    .collect::<Vec<_>>()
                    .join("_")
            ),
            columns: cols,
            unique: true,
        })
        .collect();
    let t = TableDef {
        id: first_id,
        name: name.clone(),
        columns,
        primary_key: pk,
        indexes,
        storage,
    };
    engine
        .commit_ddl(vec![(name, Some(CatalogEntry::Table(t)))], vec![id_op])
        .await?;
    Ok(tag("CREATE TABLE"))
}

/// Binds a DEFAULT expression (no columns allowed) and checks its type.
pub fn default_expr(sql: &str, ty: &SqlType) -> Result<crate::plan::BExpr> {
    let e = sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| SqlError::syntax(format!("bad DEFAULT expression: {e}")))?;
    let cat = crate::catalog::Catalog::default();
    let mut b = Binder::new(&cat, Vec::new());
    let (be, bt) = b.bind_in_scope(crate::binder::Scope::default(), &e)?;
    crate::dml::check_assignable(&bt, ty, "DEFAULT")?;
    let be = b.coerce(be, ty)?;
    Ok(crate::optimizer::fold(&be))
}

pub async fn drop(engine: &SqlEngine, stmt: &Statement) -> Result<crate::StatementResult> {
    let Statement::Drop {
        object_type,
        if_exists,
        names,
        ..
    } = stmt
    else {
        return Err(SqlError::internal("not a DROP"));
    };
    let cat = engine.catalog().await?;
    let mut changes = Vec::new();
    let mut ops = Vec::new();
    let view = View {
        handle: engine.handle(),
        layers: [None, None],
    };
    for n in names {
        let name = object_name(n);
        match object_type {
            ObjectType::Table => {
                let Some(t) = cat.table(&name) else {
                    if *if_exists {
                        continue;
                    }
                    return Err(SqlError::new(
                        state::UNDEFINED_TABLE,
                        format!("table \"{name}\" does not exist"),
                    ));
                };
                delete_prefix(&view, keys::row_prefix(t.id), &mut ops).await?;
                delete_prefix(&view, crate::columnar::keys::table_prefix(t.id), &mut ops).await?;
                for i in &t.indexes {
                    delete_prefix(&view, keys::index_prefix(i.id), &mut ops).await?;
                }
                changes.push((name, None));
            }
            ObjectType::View => {
                if !cat.views.contains_key(&name) {
                    if *if_exists {
                        continue;
                    }
                    return Err(SqlError::new(
                        state::UNDEFINED_TABLE,
                        format!("view \"{name}\" does not exist"),
                    ));
                }
                changes.push((name, None));
            }
            ObjectType::Index => {
                let Some((t, ix)) = cat.find_index(&name) else {
                    if *if_exists {
                        continue;
                    }
                    return Err(SqlError::new(
                        state::UNDEFINED_OBJECT,
                        format!("index \"{name}\" does not exist"),
                    ));
                };
                delete_prefix(&view, keys::index_prefix(ix.id), &mut ops).await?;
                let mut t2 = (*t).clone();
                t2.indexes.retain(|i| i.id != ix.id);
                changes.push((t2.name.clone(), Some(CatalogEntry::Table(t2))));
            }
            other => return Err(SqlError::unsupported(format!("DROP {other}"))),
        }
    }
    let what = match object_type {
        ObjectType::Table => "DROP TABLE",
        ObjectType::View => "DROP VIEW",
        _ => "DROP INDEX",
    };
    if !changes.is_empty() {
        engine.commit_ddl(changes, ops).await?;
    }
    Ok(tag(what))
}

async fn delete_prefix(view: &View<'_>, prefix: Vec<u8>, ops: &mut Vec<BatchOp>) -> Result<()> {
    let end = keys::prefix_end(&prefix);
    for (key, _) in view.scan(prefix, end).await? {
        ops.push(BatchOp::Delete { key });
    }
    Ok(())
}

pub async fn create_index(
    engine: &SqlEngine,
    ci: &ast::CreateIndex,
) -> Result<crate::StatementResult> {
    let cat = engine.catalog().await?;
    let tname = object_name(&ci.table_name);
    let t = cat.table(&tname).cloned().ok_or_else(|| {
        SqlError::new(
            state::UNDEFINED_TABLE,
            format!("relation \"{tname}\" does not exist"),
        )
    })?;
    if ci.predicate.is_some() || !ci.include.is_empty() {
        return Err(SqlError::unsupported("partial or covering indexes"));
    }
    let mut cols = Vec::new();
    for o in &ci.columns {
        let ast::Expr::Identifier(i) = &o.expr else {
            return Err(SqlError::unsupported("indexes on expressions"));
        };
        let n = ident_name(i);
        cols.push(t.column_index(&n).ok_or_else(|| {
            SqlError::new(
                state::UNDEFINED_COLUMN,
                format!("column \"{n}\" does not exist"),
            )
        })?);
    }
    let name = match &ci.name {
        Some(n) => object_name(n),
        None => format!(
            "{}_{}_idx",
            tname,
            cols.iter()
                .map(|c| t.columns[*c].name.as_str())
                .collect::<Vec<_>>()
                .join("_")
        ),
    };
    if cat.find_index(&name).is_some() || cat.tables.contains_key(&name) {
        if ci.if_not_exists {
            return Ok(tag("CREATE INDEX"));
        }
        return Err(SqlError::new(
            state::DUPLICATE_TABLE,
            format!("relation \"{name}\" already exists"),
        ));
    }
    let (id, id_op) = engine.next_object_ids(&cat, 1).await?;
    let ix = IndexDef {
        id,
        name,
        columns: cols,
        unique: ci.unique,
    };
    // Build the entries from the current rows; a duplicate fails the whole statement.
    let view = View {
        handle: engine.handle(),
        layers: [None, None],
    };
    let rows = crate::access::scan_table(&t, &view).await?;
    let mut ops = vec![id_op];
    let mut seen = std::collections::HashSet::new();
    for (rk, row) in &rows {
        let (ik, unique_part) = crate::dml::index_key(&ix, row, rk);
        if let Some(u) = unique_part {
            if !seen.insert(u) {
                return Err(SqlError::new(
                    state::UNIQUE_VIOLATION,
                    format!("could not create unique index \"{}\"", ix.name),
                )
                .with_detail("Key is duplicated."));
            }
        }
        ops.push(BatchOp::Put {
            key: ik,
            value: rk.clone(),
            expires_at_ms: None,
        });
    }
    let mut t2 = (*t).clone();
    t2.indexes.push(ix);
    engine
        .commit_ddl(vec![(tname, Some(CatalogEntry::Table(t2)))], ops)
        .await?;
    Ok(tag("CREATE INDEX"))
}

pub async fn create_view(engine: &SqlEngine, stmt: &Statement) -> Result<crate::StatementResult> {
    let Statement::CreateView {
        or_replace,
        materialized,
        name,
        columns,
        query,
        if_not_exists,
        ..
    } = stmt
    else {
        return Err(SqlError::internal("not a CREATE VIEW"));
    };
    if *materialized {
        return Err(SqlError::unsupported("materialized views"));
    }
    let cat = engine.catalog().await?;
    let vname = object_name(name);
    if cat.tables.contains_key(&vname) || (cat.views.contains_key(&vname) && !*or_replace) {
        if *if_not_exists {
            return Ok(tag("CREATE VIEW"));
        }
        return Err(SqlError::new(
            state::DUPLICATE_TABLE,
            format!("relation \"{vname}\" already exists"),
        ));
    }
    // Bind once so a broken view is refused now.
    let mut b = Binder::new(&cat, Vec::new());
    let bq = b.query(query)?;
    let cols: Vec<String> = columns.iter().map(|c| ident_name(&c.name)).collect();
    if cols.len() > bq.names.len() {
        return Err(SqlError::syntax(
            "CREATE VIEW specifies more column names than columns",
        ));
    }
    let v = ViewDef {
        name: vname.clone(),
        sql: query.to_string(),
        columns: cols,
    };
    engine
        .commit_ddl(vec![(vname, Some(CatalogEntry::View(v)))], Vec::new())
        .await?;
    Ok(tag("CREATE VIEW"))
}
