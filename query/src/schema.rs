//! The Arrow schema a query's answer can have, worked out from the query and the
//! stored columns' names and kinds ([`engine::engine::Engine::columns`]) without
//! reading a record: what Flight's `GetSchema` and `GetFlightInfo` answer, so that
//! asking for a schema never costs a query.
//!
//! It names the columns the answer may have, typed as [`crate::arrow`] would type
//! them when every value fits its column's kind: `stats`, `top` and `uniq` give
//! their key and aggregate columns (keys as text, `_time` keys as timestamps,
//! `count()` and `count_uniq()` as integers, other aggregates as floats); `fields`
//! gives the names it lists; records give `_time`, `_stream`, `_msg`, `level` and
//! every stored field. The record batches of `DoGet` carry the schema of the rows
//! actually found, which may be a subset (a field no returned row has is left out,
//! an empty answer has text columns).

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use engine::engine::{Engine, StoredColumns};
use engine::model::Tenant;
use engine::segment::ColumnKind;

use crate::ast::{Agg, GroupKey, Pipe, Query};
use crate::exec::QueryError;

fn time() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The type of a stored field from the kinds its values have.
fn field_type(kinds: &std::collections::BTreeSet<ColumnKind>) -> DataType {
    let has = |k| kinds.contains(&k);
    match kinds.len() {
        1 if has(ColumnKind::I64) => DataType::Int64,
        1 if has(ColumnKind::F64) => DataType::Float64,
        1 if has(ColumnKind::Bool) => DataType::Boolean,
        2 if has(ColumnKind::I64) && has(ColumnKind::F64) => DataType::Float64,
        _ => DataType::Utf8,
    }
}

/// The columns of a records answer.
fn record_columns(stored: &StoredColumns) -> Vec<(String, DataType)> {
    let mut cols = vec![
        ("_time".to_string(), time()),
        ("_stream".to_string(), DataType::Utf8),
        ("_msg".to_string(), DataType::Utf8),
    ];
    if stored.level {
        cols.push(("level".into(), DataType::Utf8));
    }
    for (name, kinds) in &stored.fields {
        let fixed = matches!(name.as_str(), "_time" | "_stream" | "_msg")
            || (stored.level && name == "level")
            || crate::table::hidden(name);
        if !fixed {
            cols.push((name.clone(), field_type(kinds)));
        }
    }
    cols
}

/// The type of column `name` of a records answer named by a pipe.
fn named_type(stored: &StoredColumns, name: &str) -> DataType {
    match name {
        "_time" => time(),
        "_stream" | "_msg" => DataType::Utf8,
        "level" if stored.level => DataType::Utf8,
        _ => stored.fields.get(name).map_or(DataType::Utf8, field_type),
    }
}

fn key_column(k: &GroupKey) -> (String, DataType) {
    match k {
        GroupKey::TimeBucket(_) => ("_time".into(), time()),
        GroupKey::Field(f) if f == "_time" => (f.clone(), time()),
        GroupKey::Field(f) => (f.clone(), DataType::Utf8),
    }
}

fn agg_type(a: &Agg) -> DataType {
    match a {
        Agg::Count | Agg::CountUniq(_) => DataType::Int64,
        _ => DataType::Float64,
    }
}

/// The schema `q`'s answer can have over `tenant`'s data; see the module docs.
pub fn planned_schema(
    engine: &Engine,
    tenant: &Tenant,
    q: &Query,
) -> Result<SchemaRef, QueryError> {
    let stored = engine.columns(tenant)?;
    // Before the first pipe, and after pipes that keep the records' columns.
    let mut records = true;
    let mut cols: Vec<(String, DataType)> = Vec::new();
    for p in &q.pipes {
        match p {
            Pipe::Sort(_) | Pipe::Limit(_) => {}
            Pipe::Fields(names) => {
                cols = names
                    .iter()
                    .map(|n| {
                        let t = if records {
                            named_type(&stored, n)
                        } else {
                            cols.iter()
                                .find(|(c, _)| c == n)
                                .map_or(DataType::Utf8, |(_, t)| t.clone())
                        };
                        (n.clone(), t)
                    })
                    .collect();
                records = false;
            }
            Pipe::Stats { funcs, by } => {
                cols = by.iter().map(key_column).collect();
                cols.extend(funcs.iter().map(|f| (f.name(), agg_type(f))));
                records = false;
            }
            Pipe::Top { by, .. } => {
                cols = by.iter().map(|f| (f.clone(), DataType::Utf8)).collect();
                cols.push(("count()".into(), DataType::Int64));
                records = false;
            }
            Pipe::Uniq(by) => {
                cols = by.iter().map(|f| (f.clone(), DataType::Utf8)).collect();
                records = false;
            }
        }
    }
    if records {
        cols = record_columns(&stored);
    }
    Ok(Arc::new(Schema::new(
        cols.into_iter()
            .map(|(n, t)| Field::new(n, t, true))
            .collect::<Vec<_>>(),
    )))
}
