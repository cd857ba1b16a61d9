//! Query results: [`Table`]s of [`Cell`]s, records as a table, and the pipes that
//! work on a table (`fields`, `sort`, `limit`, and grouping after another pipe).
//! Shared by the executor and the reference evaluator; the grouping itself is
//! theirs to bring (`GroupFn`).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use engine::model::{Record, Value};

use crate::ast::{GroupKey, Pipe};

/// One value of a result cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// No value.
    Null,
    /// Text.
    Str(String),
    /// Integer.
    I64(i64),
    /// Float.
    F64(f64),
    /// Boolean.
    Bool(bool),
}

impl Cell {
    fn number(&self) -> Option<f64> {
        match self {
            Cell::I64(x) => Some(*x as f64),
            Cell::F64(x) => Some(*x),
            Cell::Str(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
            Cell::Null | Cell::Bool(_) => None,
        }
    }

    /// The value as text (`None` for null).
    pub fn text(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Str(s) => Some(s.clone()),
            Cell::I64(x) => Some(x.to_string()),
            Cell::F64(x) => Some(Value::F64(*x).to_text()),
            Cell::Bool(b) => Some(b.to_string()),
        }
    }

    /// Total order for sorting: nulls last, numbers numerically, then text.
    pub fn cmp_for_sort(&self, other: &Cell) -> Ordering {
        match (self, other) {
            (Cell::Null, Cell::Null) => Ordering::Equal,
            (Cell::Null, _) => Ordering::Greater,
            (_, Cell::Null) => Ordering::Less,
            (a, b) => match (a.number(), b.number()) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => a.text().cmp(&b.text()),
            },
        }
    }
}

impl From<&Value> for Cell {
    fn from(v: &Value) -> Cell {
        match v {
            Value::Str(s) => Cell::Str(s.clone()),
            Value::I64(x) => Cell::I64(*x),
            Value::F64(x) => Cell::F64(*x),
            Value::Bool(b) => Cell::Bool(*b),
        }
    }
}

/// A query result: named columns, rows of cells.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each with one cell per column.
    pub rows: Vec<Vec<Cell>>,
}

/// Records (already filtered and in output order: newest first) as a table:
/// `_time`, `_stream`, `_msg`, `level` when any has one, then every field by name.
pub fn records_table(records: &[Record]) -> Table {
    let mut columns: Vec<String> = vec!["_time".into(), "_stream".into(), "_msg".into()];
    let has_level = records.iter().any(|r| r.level.is_some());
    if has_level {
        columns.push("level".into());
    }
    let fixed: BTreeSet<String> = columns.iter().cloned().collect();
    let fields: BTreeSet<&String> = records
        .iter()
        .flat_map(|r| r.fields.iter().map(|(k, _)| k))
        .filter(|k| !fixed.contains(*k))
        .collect();
    columns.extend(fields.into_iter().cloned());
    let rows = records
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| match c.as_str() {
                    "_time" => Cell::Str(engine::ingest::time::format_rfc3339(r.time_ns)),
                    "_stream" => Cell::Str(serde_json::to_string(&r.stream).unwrap_or_default()),
                    "_msg" => Cell::Str(r.msg.clone()),
                    // (A field named `level` shows when no record has a level.)
                    "level" if has_level => r.level.clone().map_or(Cell::Null, Cell::Str),
                    name => r
                        .fields
                        .iter()
                        .find(|(k, _)| k == name)
                        .map_or(Cell::Null, |(_, v)| Cell::from(v)),
                })
                .collect()
        })
        .collect();
    Table { columns, rows }
}

/// A grouping pipe (`stats`, `top`, `uniq`) over records: its table, or `None` when
/// the pipe does not group. The executor's ([`crate::aggregate::group`]) and the
/// reference's ([`crate::eval::run_naive`]) are separate implementations.
pub(crate) type GroupFn = fn(&Pipe, &[Record]) -> Option<Table>;

/// Applies the pipes to matching records (newest first), grouping with `group`.
pub(crate) fn apply_pipes_with(pipes: &[Pipe], hits: &[Record], group: GroupFn) -> Table {
    // A grouping pipe first reads the records themselves (it may group on any field,
    // `_time` buckets included); every later pipe works on the table.
    let (first, rest) = match pipes.split_first() {
        Some((p, rest)) => match group(p, hits) {
            Some(t) => (t, rest),
            None => return record_pipes(pipes, records_table(hits), group),
        },
        None => return record_pipes(pipes, records_table(hits), group),
    };
    apply_table_pipes_with(rest, first, group)
}

/// Applies pipes to a table (a grouping pipe's result), grouping with `group`.
pub(crate) fn apply_table_pipes_with(pipes: &[Pipe], mut table: Table, group: GroupFn) -> Table {
    for p in pipes {
        table = table_pipe(p, table, group);
    }
    table
}

/// Fields a record shows only when a pipe names them (`| fields _template`,
/// `| stats ... by (_template)`): the template id every record carries.
pub fn hidden(field: &str) -> bool {
    field == engine::engine::TEMPLATE_FIELD
}

/// Applies pipes to a table of records. Unless a pipe names the columns (`fields`,
/// `stats`, `top`, `uniq`), only the field columns some returned row has a value in
/// are kept, so `| limit 2` shows the fields of those two records.
fn record_pipes(pipes: &[Pipe], table: Table, group: GroupFn) -> Table {
    let named = pipes
        .iter()
        .any(|p| !matches!(p, Pipe::Sort(_) | Pipe::Limit(_)));
    let mut table = apply_table_pipes_with(pipes, table, group);
    if !named {
        let keep: Vec<bool> = (0..table.columns.len())
            .map(|i| {
                i < 3
                    || (table.columns.get(i).is_none_or(|c| !hidden(c))
                        && table
                            .rows
                            .iter()
                            .any(|r| r.get(i).is_some_and(|c| *c != Cell::Null)))
            })
            .collect();
        let mut k = keep.iter();
        table.columns.retain(|_| k.next().copied().unwrap_or(true));
        for r in &mut table.rows {
            let mut k = keep.iter();
            r.retain(|_| k.next().copied().unwrap_or(true));
        }
    }
    table
}

fn col(t: &Table, name: &str) -> Option<usize> {
    t.columns.iter().position(|c| c == name)
}

/// A pipe over an already-built table.
fn table_pipe(p: &Pipe, mut t: Table, group: GroupFn) -> Table {
    match p {
        Pipe::Fields(names) => {
            let idx: Vec<Option<usize>> = names.iter().map(|n| col(&t, n)).collect();
            // A name that is no column may be a stream label (as in filters and
            // `stats by`): read from `_stream`.
            let stream = col(&t, "_stream");
            let label = |r: &[Cell], name: &str| -> Cell {
                let Some(Cell::Str(json)) = stream.and_then(|i| r.get(i)) else {
                    return Cell::Null;
                };
                serde_json::from_str::<engine::model::Labels>(json)
                    .ok()
                    .and_then(|l| l.get(name).cloned())
                    .map_or(Cell::Null, Cell::Str)
            };
            Table {
                columns: names.clone(),
                rows: t
                    .rows
                    .into_iter()
                    .map(|r| {
                        idx.iter()
                            .zip(names)
                            .map(|(i, name)| match i {
                                Some(i) => r.get(*i).cloned().unwrap_or(Cell::Null),
                                None => label(&r, name),
                            })
                            .collect()
                    })
                    .collect(),
            }
        }
        Pipe::Sort(keys) => {
            let idx: Vec<(Option<usize>, bool)> =
                keys.iter().map(|k| (col(&t, &k.field), k.desc)).collect();
            t.rows.sort_by(|a, b| {
                for (i, desc) in &idx {
                    let (x, y) = match i {
                        Some(i) => (a.get(*i), b.get(*i)),
                        None => (None, None),
                    };
                    let o = x
                        .unwrap_or(&Cell::Null)
                        .cmp_for_sort(y.unwrap_or(&Cell::Null));
                    let o = if *desc { o.reverse() } else { o };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                Ordering::Equal
            });
            t
        }
        Pipe::Limit(n) => {
            t.rows.truncate(usize::try_from(*n).unwrap_or(usize::MAX));
            t
        }
        // After another pipe, group over the table's own columns.
        Pipe::Stats { .. } | Pipe::Top { .. } | Pipe::Uniq(_) => {
            let recs: Vec<Record> = t
                .rows
                .iter()
                .map(|r| Record {
                    time_ns: col(&t, "_time")
                        .and_then(|i| r.get(i))
                        .and_then(Cell::text)
                        .and_then(|s| engine::ingest::time::parse_rfc3339(&s))
                        .unwrap_or(0),
                    msg: col(&t, "_msg")
                        .and_then(|i| r.get(i))
                        .and_then(Cell::text)
                        .unwrap_or_default(),
                    stream: Default::default(),
                    level: None,
                    fields: t
                        .columns
                        .iter()
                        .zip(r)
                        .filter(|(c, _)| !matches!(c.as_str(), "_time" | "_msg"))
                        .filter_map(|(c, v)| Some((c.clone(), cell_value(v)?)))
                        .collect(),
                })
                .collect();
            apply_pipes_with(std::slice::from_ref(p), &recs, group)
        }
    }
}

fn cell_value(c: &Cell) -> Option<Value> {
    Some(match c {
        Cell::Null => return None,
        Cell::Str(s) => Value::Str(s.clone()),
        Cell::I64(x) => Value::I64(*x),
        Cell::F64(x) => Value::F64(*x),
        Cell::Bool(b) => Value::Bool(*b),
    })
}

/// The column name of a group key.
pub(crate) fn key_name(k: &GroupKey) -> String {
    match k {
        GroupKey::Field(f) => f.clone(),
        GroupKey::TimeBucket(_) => "_time".into(),
    }
}
