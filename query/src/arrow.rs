//! Query results as Arrow record batches (what the Flight service will stream).
//!
//! Column types: `_time` is `Timestamp(ns, UTC)`; a column whose values are all
//! integers is `Int64`, all numbers `Float64`, all booleans `Boolean`; anything else
//! (and a column with no values) is `Utf8` of the values' text. Every column is
//! nullable.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use std::collections::{BTreeMap, HashMap};

use engine::model::{Labels, Record, Value};

use crate::table::{Cell, Table};

/// Rows per batch unless the caller asks otherwise.
pub const BATCH_ROWS: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Time,
    Int,
    Float,
    Bool,
    Text,
}

fn kind_of(name: &str, cells: impl Iterator<Item = Cell>) -> Kind {
    let mut k: Option<Kind> = None;
    for c in cells {
        let this = match &c {
            Cell::Null => continue,
            Cell::Str(s) if name == "_time" && engine::ingest::time::parse_rfc3339(s).is_some() => {
                Kind::Time
            }
            Cell::Str(_) => Kind::Text,
            Cell::I64(_) => Kind::Int,
            Cell::F64(_) => Kind::Float,
            Cell::Bool(_) => Kind::Bool,
        };
        k = Some(match (k, this) {
            (None, t) => t,
            (Some(a), b) if a == b => a,
            (Some(Kind::Int), Kind::Float) | (Some(Kind::Float), Kind::Int) => Kind::Float,
            _ => return Kind::Text,
        });
    }
    k.unwrap_or(Kind::Text)
}

/// The Arrow schema of `table` (from its values' types).
pub fn schema(table: &Table) -> SchemaRef {
    schema_of(table, &kinds(table))
}

fn schema_of(table: &Table, kinds: &[Kind]) -> SchemaRef {
    Arc::new(Schema::new(
        table
            .columns
            .iter()
            .zip(kinds)
            .map(|(name, k)| Field::new(name, data_type(*k), true))
            .collect::<Vec<_>>(),
    ))
}

fn kinds(table: &Table) -> Vec<Kind> {
    (0..table.columns.len())
        .map(|i| {
            kind_of(
                table.columns.get(i).map_or("", String::as_str),
                table
                    .rows
                    .iter()
                    .map(|r| r.get(i).cloned().unwrap_or(Cell::Null)),
            )
        })
        .collect()
}

fn data_type(k: Kind) -> DataType {
    match k {
        Kind::Time => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        Kind::Int => DataType::Int64,
        Kind::Float => DataType::Float64,
        Kind::Bool => DataType::Boolean,
        Kind::Text => DataType::Utf8,
    }
}

fn column(rows: &[Vec<Cell>], i: usize, k: Kind) -> ArrayRef {
    let cells = rows.iter().map(|r| r.get(i).unwrap_or(&Cell::Null));
    match k {
        Kind::Time => {
            let mut b = TimestampNanosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
            for c in cells {
                b.append_option(match c {
                    Cell::Str(s) => engine::ingest::time::parse_rfc3339(s),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        Kind::Int => {
            let mut b = Int64Builder::with_capacity(rows.len());
            for c in cells {
                b.append_option(match c {
                    Cell::I64(x) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        Kind::Float => {
            let mut b = Float64Builder::with_capacity(rows.len());
            for c in cells {
                b.append_option(match c {
                    Cell::I64(x) => Some(*x as f64),
                    Cell::F64(x) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        Kind::Bool => {
            let mut b = BooleanBuilder::with_capacity(rows.len());
            for c in cells {
                b.append_option(match c {
                    Cell::Bool(x) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        Kind::Text => {
            let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
            for c in cells {
                b.append_option(c.text());
            }
            Arc::new(b.finish())
        }
    }
}

/// `table` as record batches of at most `batch_rows` rows (one empty batch for an
/// empty table, so the schema still travels).
pub fn to_record_batches(table: &Table, batch_rows: usize) -> Result<Vec<RecordBatch>, ArrowError> {
    let kinds = kinds(table);
    let schema = schema_of(table, &kinds);
    let mut out = Vec::new();
    let chunks: Vec<&[Vec<Cell>]> = if table.rows.is_empty() {
        vec![&[]]
    } else {
        table.rows.chunks(batch_rows.max(1)).collect()
    };
    for rows in chunks {
        let cols: Vec<ArrayRef> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| column(rows, i, *k))
            .collect();
        // The row count is explicit so a table without columns still converts.
        out.push(RecordBatch::try_new_with_options(
            Arc::clone(&schema),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(rows.len())),
        )?);
    }
    Ok(out)
}

/// Records (newest first) as record batches, the same batches as
/// `to_record_batches(&records_table(records), batch_rows)` without the table:
/// `_time` from its nanoseconds, `_stream` as JSON text (written once per run of
/// equal label sets), `_msg`, `level` when any record has one, then every field by
/// name, typed from its values like a table column.
pub fn records_to_batches(
    records: &[Record],
    batch_rows: usize,
) -> Result<Vec<RecordBatch>, ArrowError> {
    let mut out = Vec::new();
    records_to_batches_each(records, batch_rows, |b| {
        out.push(b);
        true
    })?;
    Ok(out)
}

/// [`records_to_batches`], handing each batch to `emit` as soon as it is built (so a
/// caller can send one while the next is built); stops early when `emit` returns
/// false.
pub fn records_to_batches_each(
    records: &[Record],
    batch_rows: usize,
    mut emit: impl FnMut(RecordBatch) -> bool,
) -> Result<(), ArrowError> {
    const FIXED: [&str; 4] = ["_time", "_stream", "_msg", "level"];
    let has_level = records.iter().any(|r| r.level.is_some());
    // Field columns: name -> kind, from every value the column shows (the first
    // value of a name within a record, as a table cell takes it).
    let mut fields: BTreeMap<&str, Option<Kind>> = BTreeMap::new();
    for r in records {
        for (i, (k, v)) in r.fields.iter().enumerate() {
            let fixed = k == "_time"
                || k == "_stream"
                || k == "_msg"
                || (has_level && k == "level")
                || crate::table::hidden(k);
            if fixed || r.fields.iter().take(i).any(|(k2, _)| k2 == k) {
                continue;
            }
            let this = match v {
                Value::Str(_) => Kind::Text,
                Value::I64(_) => Kind::Int,
                Value::F64(_) => Kind::Float,
                Value::Bool(_) => Kind::Bool,
            };
            let slot = fields.entry(k.as_str()).or_insert(None);
            *slot = Some(match (*slot, this) {
                (None, t) => t,
                (Some(a), b) if a == b => a,
                (Some(Kind::Int), Kind::Float) | (Some(Kind::Float), Kind::Int) => Kind::Float,
                _ => Kind::Text,
            });
        }
    }
    // An empty result has text columns, like an empty table.
    let empty = records.is_empty();
    let fixed_kind = |k: Kind| if empty { Kind::Text } else { k };
    let mut kinds = vec![fixed_kind(Kind::Time), Kind::Text, Kind::Text];
    let mut names: Vec<&str> = FIXED.iter().take(3).copied().collect();
    if has_level {
        names.push("level");
        kinds.push(Kind::Text);
    }
    let index: HashMap<&str, usize> = fields
        .keys()
        .enumerate()
        .map(|(i, k)| (*k, names.len() + i))
        .collect();
    for (name, k) in &fields {
        names.push(name);
        kinds.push(k.unwrap_or(Kind::Text));
    }
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .zip(&kinds)
            .map(|(n, k)| Field::new(*n, data_type(*k), true))
            .collect::<Vec<_>>(),
    ));
    let first_field = names.len() - fields.len();
    let chunks: Vec<&[Record]> = if empty {
        vec![&[]]
    } else {
        records.chunks(batch_rows.max(1)).collect()
    };
    let mut last_stream: Option<(&Labels, String)> = None;
    for rows in chunks {
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(names.len());
        if empty {
            cols.extend(
                (0..first_field).map(|_| Arc::new(StringBuilder::new().finish()) as ArrayRef),
            );
        } else {
            let mut t = TimestampNanosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
            t.append_slice(&rows.iter().map(|r| r.time_ns).collect::<Vec<_>>());
            cols.push(Arc::new(t.finish()));
            let mut st = StringBuilder::with_capacity(rows.len(), rows.len() * 2);
            for r in rows {
                match &last_stream {
                    Some((l, text)) if *l == &r.stream => st.append_value(text),
                    _ => {
                        let text = serde_json::to_string(&r.stream).unwrap_or_default();
                        st.append_value(&text);
                        last_stream = Some((&r.stream, text));
                    }
                }
            }
            cols.push(Arc::new(st.finish()));
            let bytes: usize = rows.iter().map(|r| r.msg.len()).sum();
            let mut m = StringBuilder::with_capacity(rows.len(), bytes);
            for r in rows {
                m.append_value(&r.msg);
            }
            cols.push(Arc::new(m.finish()));
            if has_level {
                let mut l = StringBuilder::with_capacity(rows.len(), rows.len() * 5);
                for r in rows {
                    l.append_option(r.level.as_deref());
                }
                cols.push(Arc::new(l.finish()));
            }
        }
        // Field columns: each record's values in their columns, nulls elsewhere.
        let mut cells: Vec<Vec<(usize, &Value)>> = vec![Vec::new(); fields.len()];
        for (row, r) in rows.iter().enumerate() {
            for (k, v) in &r.fields {
                let Some(c) = index.get(k.as_str()).map(|c| c - first_field) else {
                    continue;
                };
                let Some(col) = cells.get_mut(c) else {
                    continue;
                };
                if col.last().is_some_and(|(at, _)| *at == row) {
                    continue; // a repeated name: the first value counts
                }
                col.push((row, v));
            }
        }
        for (col, k) in cells.iter().zip(kinds.iter().skip(first_field)) {
            cols.push(value_column(col, rows.len(), *k));
        }
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(&schema),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(rows.len())),
        )?;
        if !emit(batch) {
            break;
        }
    }
    Ok(())
}

/// One field column of `rows` rows from its (row, value) pairs, in row order.
fn value_column(cells: &[(usize, &Value)], rows: usize, k: Kind) -> ArrayRef {
    let mut it = cells.iter().peekable();
    let mut at = |row: usize| -> Option<&Value> { it.next_if(|(r, _)| *r == row).map(|(_, v)| *v) };
    match k {
        Kind::Int => {
            let mut b = Int64Builder::with_capacity(rows);
            for row in 0..rows {
                b.append_option(match at(row) {
                    Some(Value::I64(x)) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        Kind::Float => {
            let mut b = Float64Builder::with_capacity(rows);
            for row in 0..rows {
                b.append_option(match at(row) {
                    Some(Value::I64(x)) => Some(*x as f64),
                    Some(Value::F64(x)) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        Kind::Bool => {
            let mut b = BooleanBuilder::with_capacity(rows);
            for row in 0..rows {
                b.append_option(match at(row) {
                    Some(Value::Bool(x)) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        Kind::Time | Kind::Text => {
            let mut b = StringBuilder::with_capacity(rows, rows * 8);
            for row in 0..rows {
                match at(row) {
                    Some(Value::Str(s)) => b.append_value(s),
                    Some(v) => b.append_value(v.to_text()),
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
    }
}

/// The inverse of [`to_record_batches`], for clients: a timestamp becomes its RFC
/// 3339 text (as the executor writes `_time`), integers, floats, booleans and
/// strings their cells, nulls [`Cell::Null`]. Columns of another type are an error.
/// (A column mixing integers and floats arrives as floats: it was one Arrow column.)
pub fn from_record_batches(batches: &[RecordBatch]) -> Result<Table, ArrowError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType};
    use arrow_array::Array;
    let Some(first) = batches.first() else {
        return Ok(Table {
            columns: Vec::new(),
            rows: Vec::new(),
        });
    };
    let schema = first.schema();
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    for b in batches {
        let start = rows.len();
        rows.extend((0..b.num_rows()).map(|_| Vec::with_capacity(columns.len())));
        for (f, a) in schema.fields().iter().zip(b.columns()) {
            let out = rows.get_mut(start..).unwrap_or_default();
            for (i, row) in out.iter_mut().enumerate() {
                if a.is_null(i) {
                    row.push(Cell::Null);
                    continue;
                }
                row.push(match a.data_type() {
                    DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                        Cell::Str(engine::ingest::time::format_rfc3339(
                            a.as_primitive::<TimestampNanosecondType>().value(i),
                        ))
                    }
                    DataType::Int64 => Cell::I64(a.as_primitive::<Int64Type>().value(i)),
                    DataType::Float64 => Cell::F64(a.as_primitive::<Float64Type>().value(i)),
                    DataType::Boolean => Cell::Bool(a.as_boolean().value(i)),
                    DataType::Utf8 => Cell::Str(a.as_string::<i32>().value(i).to_string()),
                    other => {
                        return Err(ArrowError::SchemaError(format!(
                            "column {:?} has type {other}, not one a query answers with",
                            f.name()
                        )))
                    }
                });
            }
        }
    }
    Ok(Table { columns, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_turn_back_into_the_same_table() {
        let t = Table {
            columns: vec![
                "_time".into(),
                "n".into(),
                "f".into(),
                "s".into(),
                "b".into(),
            ],
            rows: (0..20_000)
                .map(|i| {
                    vec![
                        Cell::Str(engine::ingest::time::format_rfc3339(i * 1_000_000_007)),
                        if i % 7 == 0 { Cell::Null } else { Cell::I64(i) },
                        Cell::F64(i as f64 / 4.0),
                        Cell::Str(format!("v{i}")),
                        Cell::Bool(i % 2 == 0),
                    ]
                })
                .collect(),
        };
        let batches = to_record_batches(&t, 4096).unwrap();
        assert!(batches.len() > 1);
        assert_eq!(from_record_batches(&batches).unwrap(), t);
    }
    use arrow_array::{Array, Float64Array, Int64Array, StringArray, TimestampNanosecondArray};

    #[test]
    fn records_convert_like_their_table() {
        use crate::table::records_table;
        let rec = |t: i64,
                   level: Option<&str>,
                   stream: &[(&str, &str)],
                   fields: Vec<(&str, Value)>| Record {
            time_ns: t,
            msg: format!("m{t}"),
            stream: stream
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            level: level.map(str::to_string),
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        };
        let sets: Vec<Vec<Record>> = vec![
            Vec::new(),
            vec![rec(5, None, &[], vec![])],
            vec![
                rec(
                    9,
                    Some("INFO"),
                    &[("app", "a")],
                    vec![("n", Value::I64(1)), ("n", Value::Str("dup".into()))],
                ),
                rec(
                    8,
                    None,
                    &[("app", "a")],
                    vec![("n", Value::F64(2.5)), ("b", Value::Bool(true))],
                ),
                rec(
                    7,
                    None,
                    &[("app", "b")],
                    vec![("s", Value::I64(3)), ("_msg", Value::Str("shadow".into()))],
                ),
                rec(
                    6,
                    Some("WARN"),
                    &[("app", "a")],
                    vec![
                        ("s", Value::Str("x".into())),
                        ("level", Value::Str("f".into())),
                    ],
                ),
                rec(
                    5,
                    None,
                    &[],
                    vec![("b", Value::Bool(false)), ("z", Value::F64(-0.5))],
                ),
            ],
            // A field named `level` with no record level is an ordinary column.
            vec![
                rec(2, None, &[], vec![("level", Value::I64(4))]),
                rec(1, None, &[], vec![]),
            ],
        ];
        for records in &sets {
            for batch_rows in [1, 2, 64] {
                let want = to_record_batches(&records_table(records), batch_rows).unwrap();
                let got = records_to_batches(records, batch_rows).unwrap();
                assert_eq!(got, want, "{records:?} in batches of {batch_rows}");
            }
        }
    }

    #[test]
    fn types_follow_the_values() {
        let t = Table {
            columns: vec![
                "_time".into(),
                "n".into(),
                "x".into(),
                "s".into(),
                "b".into(),
                "none".into(),
            ],
            rows: vec![
                vec![
                    Cell::Str("1970-01-01T00:00:01Z".into()),
                    Cell::I64(1),
                    Cell::I64(2),
                    Cell::Str("a".into()),
                    Cell::Bool(true),
                    Cell::Null,
                ],
                vec![
                    Cell::Str("1970-01-01T00:00:02Z".into()),
                    Cell::Null,
                    Cell::F64(2.5),
                    Cell::I64(7),
                    Cell::Bool(false),
                    Cell::Null,
                ],
            ],
        };
        let batches = to_record_batches(&t, 1).unwrap();
        assert_eq!(batches.len(), 2);
        let s = batches[0].schema();
        let types: Vec<&DataType> = s.fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(
            types,
            vec![
                &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                &DataType::Int64,
                &DataType::Float64,
                &DataType::Utf8,
                &DataType::Boolean,
                &DataType::Utf8,
            ]
        );
        let b = &batches[1];
        let time = b
            .column(0)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .unwrap();
        assert_eq!(time.value(0), 2_000_000_000);
        assert!(b
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .is_null(0));
        assert_eq!(
            b.column(2)
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .value(0),
            2.5
        );
        assert_eq!(
            b.column(3)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(0),
            "7"
        );
        assert_eq!(to_record_batches(&Table::default(), 10).unwrap().len(), 1);
    }
}
