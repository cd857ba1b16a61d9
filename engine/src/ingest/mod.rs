//! Ingest formats: turning input lines into [`Record`]s.
//!
//! - raw: the whole line is `_msg`; a leading timestamp in a recognised form
//!   ([`time::leading_timestamp`]) becomes `_time`, else the ingest time does.
//! - JSON lines: `_time` / `timestamp` / `@timestamp` (first present wins) become
//!   `_time`; `_msg` / `message` / `msg` become `_msg`; `level` becomes the level;
//!   every other key is a field, nested objects flattened with dots
//!   (`{"a":{"b":1}}` -> `a.b = 1`), arrays kept as their JSON text.

pub mod time;

use crate::model::{Labels, Record, Value};

/// Longest accepted input line, in bytes.
pub const LINE_BYTES_MAX: usize = 4 << 20;
/// Deepest accepted JSON nesting.
pub const JSON_DEPTH_MAX: usize = 32;

/// What every record of one ingest run shares.
#[derive(Debug, Clone, Default)]
pub struct IngestContext {
    /// Stream labels given for the run (`--stream key=value,...`).
    pub stream: Labels,
    /// Ingest time, nanoseconds since the epoch: the `_time` of records without one.
    pub now_ns: i64,
}

/// Why a line could not be ingested.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// Longer than [`LINE_BYTES_MAX`].
    #[error("line of {len} bytes exceeds the limit of {max} bytes")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not valid UTF-8.
    #[error("line is not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// Not a JSON object.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// A `_time` value that is not a timestamp.
    #[error("unrecognised time value {0:?}")]
    BadTime(String),
    /// Nesting deeper than [`JSON_DEPTH_MAX`].
    #[error("JSON nested deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// A record the shared rules refuse ([`crate::model::check_record`]: too many
    /// fields after flattening, a reserved or overlong name).
    #[error("{0}")]
    Record(#[from] crate::model::RecordError),
}

/// Checks the generic line limits and returns the text.
pub fn line_text(line: &[u8]) -> Result<&str, LineError> {
    if line.len() > LINE_BYTES_MAX {
        return Err(LineError::TooLong {
            len: line.len(),
            max: LINE_BYTES_MAX,
        });
    }
    std::str::from_utf8(line).map_err(|e| LineError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })
}

/// A raw line as a record.
pub fn parse_raw(line: &str, ctx: &IngestContext) -> Record {
    Record {
        time_ns: time::leading_timestamp(line, ctx.now_ns).unwrap_or(ctx.now_ns),
        msg: line.to_string(),
        stream: ctx.stream.clone(),
        level: None,
        fields: Vec::new(),
    }
}

const TIME_KEYS: [&str; 3] = ["_time", "timestamp", "@timestamp"];
const MSG_KEYS: [&str; 3] = ["_msg", "message", "msg"];

/// A JSON line as a record.
pub fn parse_json(line: &str, ctx: &IngestContext) -> Result<Record, LineError> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| LineError::Json(e.to_string()))?;
    let serde_json::Value::Object(obj) = value else {
        return Err(LineError::Json("a JSON line must be an object".into()));
    };
    let time_key = TIME_KEYS.iter().find(|k| obj.contains_key(**k)).copied();
    let msg_key = MSG_KEYS.iter().find(|k| obj.contains_key(**k)).copied();
    let mut rec = Record {
        time_ns: ctx.now_ns,
        msg: String::new(),
        stream: ctx.stream.clone(),
        level: None,
        fields: Vec::new(),
    };
    for (key, v) in obj {
        if Some(key.as_str()) == time_key {
            rec.time_ns = json_time(&v, ctx.now_ns)?;
        } else if Some(key.as_str()) == msg_key {
            rec.msg = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
        } else if key == "level" && v.is_string() {
            rec.level = v.as_str().map(str::to_string);
        } else {
            flatten(&key, v, 1, &mut rec.fields)?;
        }
    }
    crate::model::check_record(&rec)?;
    Ok(rec)
}

fn json_time(v: &serde_json::Value, now_ns: i64) -> Result<i64, LineError> {
    match v {
        serde_json::Value::String(s) => {
            time::leading_timestamp(s, now_ns).ok_or_else(|| LineError::BadTime(s.clone()))
        }
        serde_json::Value::Number(n) => {
            let bad = || LineError::BadTime(n.to_string());
            if let Some(i) = n.as_i64() {
                // Integers exactly, unit by magnitude as below.
                let unit: i64 = match i.unsigned_abs() {
                    a if a < 100_000_000_000 => 1_000_000_000,
                    a if a < 100_000_000_000_000 => 1_000_000,
                    a if a < 100_000_000_000_000_000 => 1_000,
                    _ => 1,
                };
                return i.checked_mul(unit).ok_or_else(bad);
            }
            let x = n.as_f64().ok_or_else(bad)?;
            // Unit by magnitude: seconds, milliseconds, microseconds, nanoseconds.
            let ns = match x.abs() {
                a if a < 1e11 => x * 1e9,
                a if a < 1e14 => x * 1e6,
                a if a < 1e17 => x * 1e3,
                _ => x,
            };
            if !ns.is_finite() || ns.abs() >= 9.2e18 {
                return Err(bad());
            }
            Ok(ns as i64)
        }
        other => Err(LineError::BadTime(other.to_string())),
    }
}

fn flatten(
    prefix: &str,
    v: serde_json::Value,
    depth: usize,
    out: &mut Vec<(String, Value)>,
) -> Result<(), LineError> {
    if depth > JSON_DEPTH_MAX {
        return Err(LineError::TooDeep {
            max: JSON_DEPTH_MAX,
        });
    }
    match v {
        serde_json::Value::Null => {}
        serde_json::Value::Bool(b) => out.push((prefix.to_string(), Value::Bool(b))),
        serde_json::Value::Number(n) => {
            let value = match n.as_i64() {
                Some(i) => Value::I64(i),
                None => Value::F64(n.as_f64().unwrap_or(f64::NAN)),
            };
            out.push((prefix.to_string(), value));
        }
        serde_json::Value::String(s) => out.push((prefix.to_string(), Value::Str(s))),
        serde_json::Value::Array(a) => out.push((
            prefix.to_string(),
            Value::Str(serde_json::Value::Array(a).to_string()),
        )),
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                flatten(&format!("{prefix}.{k}"), v, depth + 1, out)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> IngestContext {
        IngestContext {
            stream: [("service".to_string(), "api".to_string())].into(),
            now_ns: 42,
        }
    }

    #[test]
    fn raw_lines_keep_the_whole_line_as_message() {
        let r = parse_raw("2015-10-18 18:01:47,978 INFO [main] started", &ctx());
        assert_eq!(r.msg, "2015-10-18 18:01:47,978 INFO [main] started");
        assert_eq!(r.time_ns, 1_445_191_307_978_000_000);
        assert_eq!(r.stream["service"], "api");
        assert_eq!(parse_raw("no time here", &ctx()).time_ns, 42);
    }

    #[test]
    fn json_lines_map_known_keys_and_flatten_the_rest() {
        let r = parse_json(
            r#"{"@timestamp":"2015-10-18T18:01:47Z","message":"disk full","level":"ERROR","host":{"name":"h1","cpu":{"n":4}},"ok":true,"ratio":0.5,"tags":["a","b"],"gone":null,"msg":"kept as field"}"#,
            &ctx(),
        )
        .unwrap();
        assert_eq!(r.time_ns, 1_445_191_307_000_000_000);
        assert_eq!(r.msg, "disk full");
        assert_eq!(r.level.as_deref(), Some("ERROR"));
        assert_eq!(
            r.fields,
            vec![
                ("host.name".to_string(), Value::Str("h1".into())),
                ("host.cpu.n".to_string(), Value::I64(4)),
                ("ok".to_string(), Value::Bool(true)),
                ("ratio".to_string(), Value::F64(0.5)),
                ("tags".to_string(), Value::Str("[\"a\",\"b\"]".into())),
                ("msg".to_string(), Value::Str("kept as field".into())),
            ]
        );
    }

    #[test]
    fn json_numeric_times_by_magnitude() {
        let t = |j: &str| parse_json(j, &ctx()).unwrap().time_ns;
        assert_eq!(t(r#"{"_time":1445191307}"#), 1_445_191_307_000_000_000);
        assert_eq!(t(r#"{"_time":1445191307978}"#), 1_445_191_307_978_000_000);
        assert_eq!(
            t(r#"{"_time":1445191307978000}"#),
            1_445_191_307_978_000_000
        );
        assert_eq!(
            t(r#"{"_time":1445191307978000000}"#),
            1_445_191_307_978_000_000
        );
    }

    #[test]
    fn bad_json_lines_are_typed_errors() {
        assert!(matches!(parse_json("{", &ctx()), Err(LineError::Json(_))));
        assert!(matches!(parse_json("[1]", &ctx()), Err(LineError::Json(_))));
        assert!(matches!(
            parse_json(r#"{"_time":"yesterday"}"#, &ctx()),
            Err(LineError::BadTime(_))
        ));
        let deep = format!("{}1{}", "{\"a\":".repeat(40), "}".repeat(40));
        assert!(matches!(
            parse_json(&deep, &ctx()),
            Err(LineError::TooDeep { .. }) | Err(LineError::Json(_))
        ));
        assert!(matches!(
            line_text(b"ok \xff"),
            Err(LineError::InvalidUtf8 { offset: 3 })
        ));
        // The names every ingest path refuses (gRPC and DoPut refused them while
        // JSON lines and Kafka stored them).
        for line in [r#"{"_msg":"m","_id":"x"}"#, r#"{"msg":"m","":1}"#] {
            assert!(
                matches!(
                    parse_json(line, &ctx()),
                    Err(LineError::Record(crate::model::RecordError::FieldName(_)))
                ),
                "{line}"
            );
        }
        let long = format!(r#"{{"msg":"m","{}":1}}"#, "k".repeat(300));
        assert!(parse_json(&long, &ctx()).is_err());
    }
}
