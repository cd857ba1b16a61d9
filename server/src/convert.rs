//! Client input turned into the engine's records, with every check a client's
//! mistake must meet before anything is stored: a gRPC push (`push`) and an Arrow
//! record batch of a Flight `DoPut` (`arrow_records`). Pure functions of their
//! input, so the fuzz targets (`fuzz/fuzz_targets/push_convert.rs`,
//! `arrow_convert.rs`) drive the same code the server runs.
//!
//! `DoPut` columns: `_time` (timestamp of any unit, or int64 nanoseconds; absent or
//! null: when received), `_msg` (string, required), `level` (string); every other
//! column is a field (string, integer, float or boolean, plain or dictionary-encoded;
//! a null is no value), or a stream label when the command's `stream_fields` names it.
//!
//! The other way, for clients (the CLI's `ingest --connect`, the load tools): a
//! record as a push's record (`to_pb`).

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use engine::model::{Labels, Record, Tenant, Value};
use serde::Deserialize;
use tonic::Status;

use crate::pb::{self, field, PushRequest};

/// A push turned into what the engine stores.
#[derive(Debug)]
pub struct Batch {
    pub tenant: Tenant,
    pub records: Vec<Record>,
    pub dedup: Option<(String, u64)>,
}

/// Validates and converts a push; every problem is `INVALID_ARGUMENT` with the
/// reason and, for a record, its index.
pub fn push(req: PushRequest, records_max: usize, now: i64) -> Result<Batch, Status> {
    let bad = |what: String| Status::invalid_argument(what);
    let tenant = if req.tenant.is_empty() {
        Tenant::default()
    } else {
        Tenant::new(req.tenant.as_str()).map_err(|e| bad(format!("tenant: {e}")))?
    };
    if req.records.len() > records_max {
        return Err(bad(format!(
            "{} records in one push, over the limit of {records_max}",
            req.records.len()
        )));
    }
    let dedup = if req.producer_id.is_empty() {
        None
    } else {
        if req.producer_id.len() > 256 {
            return Err(bad("producer_id is longer than 256 bytes".into()));
        }
        Some((req.producer_id, req.sequence))
    };
    let mut records = Vec::with_capacity(req.records.len());
    for (i, r) in req.records.into_iter().enumerate() {
        let mut stream: Labels = req.stream.clone().into_iter().collect();
        stream.extend(r.stream);
        let mut fields = Vec::with_capacity(r.fields.len());
        if r.fields.len() > engine::model::RECORD_FIELDS_MAX {
            // Before converting them.
            let reason = engine::model::RecordError::TooManyFields {
                count: r.fields.len(),
                max: engine::model::RECORD_FIELDS_MAX,
            };
            return Err(bad(format!("record {i}: {reason}")));
        }
        for f in r.fields {
            let v = match f.value {
                Some(field::Value::Str(s)) => Value::Str(s),
                Some(field::Value::I64(x)) => Value::I64(x),
                Some(field::Value::F64(x)) => Value::F64(x),
                Some(field::Value::Bool(x)) => Value::Bool(x),
                None => return Err(bad(format!("record {i}: field {:?} has no value", f.name))),
            };
            fields.push((f.name, v));
        }
        let record = Record {
            time_ns: if r.time_unix_nano == 0 {
                now
            } else {
                r.time_unix_nano
            },
            msg: r.msg,
            stream,
            level: (!r.level.is_empty()).then_some(r.level),
            fields,
        };
        engine::model::check_record(&record).map_err(|e| bad(format!("record {i}: {e}")))?;
        records.push(record);
    }
    Ok(Batch {
        tenant,
        records,
        dedup,
    })
}

/// The JSON command of a `DoPut` descriptor:
/// `{"tenant": "t", "stream": {"service": "api"}, "stream_fields": ["host"]}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutCommand {
    /// The tenant (default: `default`).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Stream labels of every record.
    #[serde(default)]
    pub stream: Labels,
    /// Columns stored as stream labels instead of fields.
    #[serde(default)]
    pub stream_fields: Vec<String>,
}

/// A column's values, read per row.
enum Col<'a> {
    Str(Box<dyn Fn(usize) -> Option<&'a str> + 'a>),
    I64(Box<dyn Fn(usize) -> Option<i64> + 'a>),
    F64(Box<dyn Fn(usize) -> Option<f64> + 'a>),
    Bool(Box<dyn Fn(usize) -> Option<bool> + 'a>),
}

fn column<'a>(name: &str, a: &'a dyn Array) -> Result<Col<'a>, Status> {
    macro_rules! int {
        ($t:ty) => {{
            let p = a.as_primitive::<$t>();
            Col::I64(Box::new(move |i| {
                (!p.is_null(i))
                    .then(|| p.value(i))
                    .and_then(|v| i64::try_from(v).ok())
            }))
        }};
    }
    Ok(match a.data_type() {
        DataType::Utf8 => {
            let s = a.as_string::<i32>();
            Col::Str(Box::new(move |i| (!s.is_null(i)).then(|| s.value(i))))
        }
        DataType::LargeUtf8 => {
            let s = a.as_string::<i64>();
            Col::Str(Box::new(move |i| (!s.is_null(i)).then(|| s.value(i))))
        }
        DataType::Utf8View => {
            let s = a.as_string_view();
            Col::Str(Box::new(move |i| (!s.is_null(i)).then(|| s.value(i))))
        }
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Float32 => {
            let p = a.as_primitive::<Float32Type>();
            Col::F64(Box::new(move |i| {
                (!p.is_null(i)).then(|| f64::from(p.value(i)))
            }))
        }
        DataType::Float64 => {
            let p = a.as_primitive::<Float64Type>();
            Col::F64(Box::new(move |i| (!p.is_null(i)).then(|| p.value(i))))
        }
        DataType::Boolean => {
            let p = a.as_boolean();
            Col::Bool(Box::new(move |i| (!p.is_null(i)).then(|| p.value(i))))
        }
        // Dictionary-encoded (pandas categoricals, Polars): each row's value is
        // looked up in the dictionary's values.
        DataType::Dictionary(_, _) => {
            let d = a.as_any_dictionary_opt().ok_or_else(|| {
                Status::invalid_argument(format!("column {name:?}: not a dictionary"))
            })?;
            // An empty dictionary holds no value for a key to name (and arrow's
            // `normalized_keys` asserts on it): only null keys are valid there.
            let keys = if d.values().is_empty() {
                if a.null_count() < a.len() {
                    return Err(Status::invalid_argument(format!(
                        "column {name:?}: a dictionary with no values but keys that are not null"
                    )));
                }
                Vec::new()
            } else {
                d.normalized_keys()
            };
            let at = move |i: usize| (!a.is_null(i)).then(|| keys.get(i).copied()).flatten();
            match column(name, d.values().as_ref())? {
                Col::Str(g) => Col::Str(Box::new(move |i| at(i).and_then(&g))),
                Col::I64(g) => Col::I64(Box::new(move |i| at(i).and_then(&g))),
                Col::F64(g) => Col::F64(Box::new(move |i| at(i).and_then(&g))),
                Col::Bool(g) => Col::Bool(Box::new(move |i| at(i).and_then(&g))),
            }
        }
        other => {
            return Err(Status::invalid_argument(format!(
                "column {name:?} has type {other}, which cannot be stored: use a string, \
                 integer, float or boolean column"
            )))
        }
    })
}

/// `_time` as nanoseconds per row.
fn time_column<'a>(a: &'a dyn Array) -> Result<Box<dyn Fn(usize) -> Option<i64> + 'a>, Status> {
    macro_rules! ts {
        ($t:ty, $mul:expr) => {{
            let p = a.as_primitive::<$t>();
            Box::new(move |i| {
                (!p.is_null(i))
                    .then(|| p.value(i))
                    .and_then(|v| v.checked_mul($mul))
            })
        }};
    }
    Ok(match a.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => ts!(TimestampSecondType, 1_000_000_000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => ts!(TimestampMillisecondType, 1_000_000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => ts!(TimestampMicrosecondType, 1_000),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => ts!(TimestampNanosecondType, 1),
        DataType::Int64 => ts!(Int64Type, 1),
        other => {
            return Err(Status::invalid_argument(format!(
                "column \"_time\" has type {other}: use a timestamp or int64 nanoseconds"
            )))
        }
    })
}

/// The records of one Arrow record batch of a `DoPut` (columns as described in the
/// module docs); a column that cannot be stored is `INVALID_ARGUMENT` naming it.
/// `now` stands in for a missing or null `_time`.
pub fn arrow_records(
    batch: &RecordBatch,
    cmd: &PutCommand,
    now: i64,
) -> Result<Vec<Record>, Status> {
    let schema = batch.schema();
    let mut time = None;
    let mut msg = None;
    let mut level = None;
    let mut others: Vec<(String, bool, Col<'_>)> = Vec::new();
    for (f, a) in schema.fields().iter().zip(batch.columns()) {
        let name = f.name().as_str();
        match name {
            "_time" => time = Some(time_column(a.as_ref())?),
            "_msg" | "level" => {
                let Col::Str(get) = column(name, a.as_ref())? else {
                    return Err(Status::invalid_argument(format!(
                        "column {name:?} must be a string column"
                    )));
                };
                if name == "_msg" {
                    msg = Some(get);
                } else {
                    level = Some(get);
                }
            }
            _ if name.is_empty() || name.starts_with('_') => {
                return Err(Status::invalid_argument(format!(
                    "column {name:?}: names starting with '_' are reserved (and names must not be empty)"
                )))
            }
            _ => {
                let label = cmd.stream_fields.iter().any(|s| s == name);
                others.push((name.to_string(), label, column(name, a.as_ref())?));
            }
        }
    }
    let msg = msg.ok_or_else(|| Status::invalid_argument("the batch has no \"_msg\" column"))?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let mut stream = cmd.stream.clone();
        let mut fields = Vec::new();
        for (name, label, col) in &others {
            let v = match col {
                Col::Str(g) => g(i).map(|s| Value::Str(s.to_string())),
                Col::I64(g) => g(i).map(Value::I64),
                Col::F64(g) => g(i).map(Value::F64),
                Col::Bool(g) => g(i).map(Value::Bool),
            };
            let Some(v) = v else { continue };
            if *label {
                stream.insert(name.clone(), v.to_text());
            } else {
                fields.push((name.clone(), v));
            }
        }
        let record = Record {
            time_ns: time.as_ref().and_then(|t| t(i)).unwrap_or(now),
            msg: msg(i).unwrap_or_default().to_string(),
            stream,
            level: level.as_ref().and_then(|l| l(i)).map(str::to_string),
            fields,
        };
        engine::model::check_record(&record)
            .map_err(|e| Status::invalid_argument(format!("row {i}: {e}")))?;
        out.push(record);
    }
    Ok(out)
}

/// A record as a push message's record: what a client sends (the CLI's `ingest
/// --connect`, the load tools in `benches/`); `push` turns it back.
pub fn to_pb(r: Record) -> pb::Record {
    pb::Record {
        time_unix_nano: r.time_ns,
        msg: r.msg,
        stream: r.stream.into_iter().collect(),
        level: r.level.unwrap_or_default(),
        fields: r
            .fields
            .into_iter()
            .map(|(name, v)| pb::Field {
                name,
                value: Some(match v {
                    Value::Str(s) => field::Value::Str(s),
                    Value::I64(x) => field::Value::I64(x),
                    Value::F64(x) => field::Value::F64(x),
                    Value::Bool(x) => field::Value::Bool(x),
                }),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray};

    use super::{arrow_records, PutCommand};

    fn batch(field: DictionaryArray<Int32Type>) -> RecordBatch {
        let msg: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        RecordBatch::try_from_iter([("_msg", msg), ("f", Arc::new(field) as ArrayRef)])
            .unwrap_or_else(|e| panic!("batch: {e}"))
    }

    /// Found by the `arrow_convert` fuzz target: a dictionary column with an
    /// empty dictionary made arrow assert (a panic in the DoPut handler).
    #[test]
    fn a_dictionary_with_no_values_is_no_value_or_refused() {
        let cmd = PutCommand::default();
        let empty = || Arc::new(StringArray::from(Vec::<&str>::new())) as ArrayRef;
        let nulls =
            DictionaryArray::<Int32Type>::try_new(Int32Array::from(vec![None, None]), empty())
                .unwrap_or_else(|e| panic!("array: {e}"));
        let recs = arrow_records(&batch(nulls), &cmd, 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(recs.len(), 2);
        assert!(recs.iter().all(|r| r.fields.is_empty()), "{recs:?}");
        // A dictionary with values still reads through it.
        let vals = Arc::new(StringArray::from(vec!["x"])) as ArrayRef;
        let ok = DictionaryArray::<Int32Type>::try_new(Int32Array::from(vec![Some(0), None]), vals)
            .unwrap_or_else(|e| panic!("array: {e}"));
        let recs = arrow_records(&batch(ok), &cmd, 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(recs[0].fields.len(), 1);
        assert!(recs[1].fields.is_empty());
    }
}
