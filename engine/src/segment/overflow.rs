//! The overflow column: a segment keeps at most [`SegmentOptions::fields_max`]
//! field names as columns of their own (the most used ones); the fields of the
//! other names are kept per row in one string column of kind
//! [`ColumnKind::Overflow`], one row's as a JSON array of `[name, type, value]`
//! triples (`"s"` string, `"i"` integer, `"f"` float as its IEEE bits, `"b"`
//! boolean: exact round trips, NaN included). Readers give them back as ordinary
//! fields, and the index holds their `name=value` terms like any other's, so
//! queries see no difference; the cap bounds the footer (one entry per column and
//! block) and the writer's work per column.
//!
//! [`SegmentOptions::fields_max`]: super::SegmentOptions::fields_max
//! [`ColumnKind::Overflow`]: super::ColumnKind::Overflow
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::model::Value;

/// Name of the overflow column.
pub const OVERFLOW_COLUMN: &str = "_overflow";

/// One row's overflowed fields as stored.
pub(crate) fn encode_row(fields: &[(&str, Value)]) -> String {
    let items: Vec<serde_json::Value> = fields
        .iter()
        .map(|(name, v)| {
            let (t, v) = match v {
                Value::Str(s) => ("s", serde_json::Value::from(s.as_str())),
                Value::I64(x) => ("i", serde_json::Value::from(*x)),
                Value::F64(x) => ("f", serde_json::Value::from(x.to_bits())),
                Value::Bool(b) => ("b", serde_json::Value::from(*b)),
            };
            serde_json::Value::Array(vec![serde_json::Value::from(*name), t.into(), v])
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

/// The fields of a stored row; `Err` says what is wrong.
pub fn decode_row(text: &str) -> Result<Vec<(String, Value)>, String> {
    let items: Vec<(String, String, serde_json::Value)> =
        serde_json::from_str(text).map_err(|e| format!("overflow row: {e}"))?;
    items
        .into_iter()
        .map(|(name, t, v)| {
            let value = match (t.as_str(), &v) {
                ("s", serde_json::Value::String(s)) => Value::Str(s.clone()),
                ("i", _) if v.is_i64() => Value::I64(v.as_i64().unwrap_or_default()),
                ("f", _) if v.is_u64() => {
                    Value::F64(f64::from_bits(v.as_u64().unwrap_or_default()))
                }
                ("b", serde_json::Value::Bool(b)) => Value::Bool(*b),
                _ => return Err(format!("overflow row: bad value {t:?} {v}")),
            };
            Ok((name, value))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_exactly() {
        let fields = vec![
            ("a", Value::Str("x \"y\"".into())),
            ("b", Value::I64(i64::MIN)),
            ("c", Value::F64(f64::NAN)),
            ("d", Value::F64(-0.0)),
            ("e", Value::Bool(true)),
        ];
        let back = decode_row(&encode_row(&fields)).unwrap();
        assert_eq!(back.len(), 5);
        for ((n, v), (m, w)) in fields.iter().zip(&back) {
            assert_eq!(*n, m);
            match (v, w) {
                (Value::F64(x), Value::F64(y)) => assert_eq!(x.to_bits(), y.to_bits()),
                _ => assert_eq!(v, w),
            }
        }
        assert!(decode_row("[[\"a\",\"q\",1]]").is_err());
        assert!(decode_row("{").is_err());
    }
}
