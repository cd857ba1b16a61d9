//! Flight `DoPut`: Arrow record batches in, records stored.
//!
//! The first message's descriptor command may be a JSON object:
//! `{"tenant": "t", "stream": {"service": "api"}, "stream_fields": ["host"]}`:
//! the tenant, labels for every record, and columns to store as stream labels
//! instead of fields. Columns: `_time` (timestamp of any unit, or int64
//! nanoseconds; absent or null: when received), `_msg` (string, required), `level`
//! (string); every other column is a field (string, integer, float or boolean; a
//! null is no value). Each batch is stored atomically and acknowledged with a
//! `PutResult` whose metadata is `{"records": n, "first_lsn": a, "last_lsn": b}`.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightData, PutResult};
use arrow_schema::{DataType, TimeUnit};
use engine::model::{Labels, Record, Tenant, Value};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use tonic::{Status, Streaming};

use super::Node;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutCommand {
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    stream: Labels,
    #[serde(default)]
    stream_fields: Vec<String>,
}

/// Stores every batch of a `DoPut` stream; one result per batch.
pub(crate) async fn do_put(
    node: Arc<Node>,
    input: Streaming<FlightData>,
) -> Result<Vec<PutResult>, Status> {
    let mut input = input.map_err(FlightError::from).peekable();
    // The command rides on the first message's descriptor.
    let cmd = match std::pin::Pin::new(&mut input).peek().await {
        Some(Ok(first)) => match &first.flight_descriptor {
            Some(d) if !d.cmd.is_empty() => {
                serde_json::from_slice::<PutCommand>(&d.cmd).map_err(|e| {
                    Status::invalid_argument(format!(
                        "DoPut command is not {{\"tenant\", \"stream\", \"stream_fields\"}}: {e}"
                    ))
                })?
            }
            _ => PutCommand::default(),
        },
        _ => PutCommand::default(),
    };
    let tenant = Tenant::new(cmd.tenant.clone().unwrap_or_else(|| "default".into()))
        .map_err(|e| Status::invalid_argument(format!("tenant: {e}")))?;
    let mut batches = FlightRecordBatchStream::new_from_flight_data(input);
    let mut out = Vec::new();
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| Status::invalid_argument(format!("DoPut data: {e}")))?;
        let max = node.cfg.limits.batch_records_max;
        if batch.num_rows() > max {
            node.rejected();
            return Err(Status::invalid_argument(format!(
                "{} rows in one DoPut record batch, over the limit of {max} (limits.batch_records_max): send smaller batches",
                batch.num_rows()
            )));
        }
        let records = to_records(&batch, &cmd, super::now_ns()).inspect_err(|_| node.rejected())?;
        let reply = node.ingest(&tenant, records, None).await?;
        let meta = serde_json::json!({
            "records": batch.num_rows(),
            "first_lsn": reply.range.first,
            "last_lsn": reply.range.last,
        });
        out.push(PutResult {
            app_metadata: bytes::Bytes::from(meta.to_string()),
        });
    }
    Ok(out)
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

fn to_records(batch: &RecordBatch, cmd: &PutCommand, now: i64) -> Result<Vec<Record>, Status> {
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
        out.push(Record {
            time_ns: time.as_ref().and_then(|t| t(i)).unwrap_or(now),
            msg: msg(i).unwrap_or_default().to_string(),
            stream,
            level: level.as_ref().and_then(|l| l(i)).map(str::to_string),
            fields,
        });
    }
    Ok(out)
}
