//! The data model: what a log record is, independent of how it arrives or is stored.
//!
//! A record has a time (`_time`, nanoseconds since the Unix epoch, UTC), a message
//! (`_msg`), a stream (a small set of labels such as `service` and `host`, whose hash
//! with the tenant is the stream id), an optional level, and flat typed fields (nested
//! JSON is flattened with dots before it gets here). Every record belongs to a tenant.

use std::collections::BTreeMap;
use std::fmt;

/// Longest tenant name.
pub const TENANT_BYTES_MAX: usize = 64;
/// Tenant used when none is given.
pub const DEFAULT_TENANT: &str = "default";
/// Longest field or label name.
pub const FIELD_NAME_BYTES_MAX: usize = 256;

/// Why a record cannot be stored. Every ingest path (gRPC, Flight `DoPut`, HTTP
/// and CLI JSON lines, Kafka) checks records with [`check_record`], and the engine
/// checks every batch with it again before the WAL, so they all accept and refuse
/// the same records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// More fields than [`RECORD_FIELDS_MAX`].
    #[error("{count} fields, over the limit of {max} per record")]
    TooManyFields {
        /// Its fields.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A field name that is empty, starts with `_` (reserved: `_time`, `_msg`,
    /// `_stream`, `_template`...) or is longer than [`FIELD_NAME_BYTES_MAX`].
    #[error("field name {0:?} is empty, starts with '_' (reserved) or is longer than 256 bytes")]
    FieldName(String),
    /// A stream label name that is empty or longer than [`FIELD_NAME_BYTES_MAX`].
    #[error("stream label name {0:?} is empty or longer than 256 bytes")]
    LabelName(String),
}

/// Checks a record against the rules every ingest path shares (see
/// [`RecordError`]).
pub fn check_record(r: &Record) -> Result<(), RecordError> {
    if r.fields.len() > RECORD_FIELDS_MAX {
        return Err(RecordError::TooManyFields {
            count: r.fields.len(),
            max: RECORD_FIELDS_MAX,
        });
    }
    for (name, _) in &r.fields {
        if name.is_empty() || name.starts_with('_') || name.len() > FIELD_NAME_BYTES_MAX {
            return Err(RecordError::FieldName(name.clone()));
        }
    }
    for name in r.stream.keys() {
        if name.is_empty() || name.len() > FIELD_NAME_BYTES_MAX {
            return Err(RecordError::LabelName(name.clone()));
        }
    }
    Ok(())
}
/// Most fields one record may carry: every ingest path refuses more (a Kafka
/// message with more becomes a dead letter). A segment gives at most
/// [`crate::segment::SEGMENT_FIELDS_MAX`] names columns of their own.
pub const RECORD_FIELDS_MAX: usize = 1000;

/// A tenant name: 1 to 64 ASCII letters, digits, `_` or `-`. It becomes part of storage
/// paths, hence the strict alphabet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tenant(String);

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Empty name.
    #[error("{what} must not be empty")]
    Empty {
        /// Which kind of name.
        what: &'static str,
    },
    /// Name too long.
    #[error("{what} is {len} bytes, the limit is {max}")]
    TooLong {
        /// Which kind of name.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A character outside the allowed set.
    #[error("{what} {name:?} has a character outside [A-Za-z0-9_-]")]
    BadChar {
        /// Which kind of name.
        what: &'static str,
        /// The name.
        name: String,
    },
}

impl Tenant {
    /// Validates and wraps a tenant name.
    pub fn new(name: impl Into<String>) -> Result<Tenant, NameError> {
        let name = name.into();
        let what = "tenant";
        if name.is_empty() {
            return Err(NameError::Empty { what });
        }
        if name.len() > TENANT_BYTES_MAX {
            return Err(NameError::TooLong {
                what,
                len: name.len(),
                max: TENANT_BYTES_MAX,
            });
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(NameError::BadChar { what, name });
        }
        Ok(Tenant(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Tenant {
    fn default() -> Self {
        Tenant(DEFAULT_TENANT.to_string())
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text.
    Str(String),
    /// Signed 64-bit integer.
    I64(i64),
    /// 64-bit float (finite; JSON has no NaN or infinity).
    F64(f64),
    /// Boolean.
    Bool(bool),
}

impl Value {
    /// The value as the text a `field:value` query matches against.
    pub fn to_text(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::I64(i) => i.to_string(),
            Value::F64(x) => x.to_string(),
            Value::Bool(b) => b.to_string(),
        }
    }

    /// The length of [`Value::to_text`], without building it for integers,
    /// booleans and strings.
    pub fn text_len(&self) -> usize {
        match self {
            Value::Str(s) => s.len(),
            Value::I64(i) => {
                let digits = i
                    .unsigned_abs()
                    .checked_ilog10()
                    .map_or(1, |d| d as usize + 1);
                digits + usize::from(*i < 0)
            }
            Value::F64(_) => self.to_text().len(),
            Value::Bool(b) => {
                if *b {
                    4
                } else {
                    5
                }
            }
        }
    }

    /// [`Value::to_text`] appended to `out` (no allocation of its own).
    pub fn write_text(&self, out: &mut String) {
        use std::fmt::Write;
        // Writing to a String cannot fail.
        let _ = match self {
            Value::Str(s) => {
                out.push_str(s);
                Ok(())
            }
            Value::I64(i) => write!(out, "{i}"),
            Value::F64(x) => write!(out, "{x}"),
            Value::Bool(b) => write!(out, "{b}"),
        };
    }
}

/// Stream labels, sorted by name (so equal label sets compare and hash equal).
pub type Labels = BTreeMap<String, String>;

/// The id of a stream: a stable 64-bit hash of the tenant and the sorted labels
/// (FNV-1a, fixed here because it is stored on disk and must never change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64);

impl StreamId {
    /// Computes the id of `labels` under `tenant`.
    pub fn of(tenant: &Tenant, labels: &Labels) -> StreamId {
        let mut h = Fnv1a::new();
        h.write(tenant.as_str().as_bytes());
        h.write(&[0xff]);
        for (k, v) in labels {
            h.write(k.as_bytes());
            h.write(&[0xfe]);
            h.write(v.as_bytes());
            h.write(&[0xff]);
        }
        StreamId(h.finish())
    }
}

struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// One log record as ingested.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Nanoseconds since the Unix epoch, UTC.
    pub time_ns: i64,
    /// The message.
    pub msg: String,
    /// Stream labels.
    pub stream: Labels,
    /// Level (`INFO`, `error`, ...), as given.
    pub level: Option<String>,
    /// Other fields, flat, in input order.
    pub fields: Vec<(String, Value)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_len_is_the_texts_length() {
        let mut vals = vec![Value::Bool(true), Value::Bool(false), Value::F64(-1.25)];
        for i in [0i64, 9, 10, -1, -10, 99, 100, i64::MAX, i64::MIN, 123_456] {
            vals.push(Value::I64(i));
        }
        vals.push(Value::Str("héllo".into()));
        for v in vals {
            assert_eq!(v.text_len(), v.to_text().len(), "{v:?}");
            let mut s = String::from("x");
            v.write_text(&mut s);
            assert_eq!(s, format!("x{}", v.to_text()));
        }
    }

    #[test]
    fn tenant_names_are_validated() {
        assert!(Tenant::new("acme-prod_1").is_ok());
        assert_eq!(Tenant::new(""), Err(NameError::Empty { what: "tenant" }));
        assert!(matches!(Tenant::new("a/b"), Err(NameError::BadChar { .. })));
        assert!(matches!(
            Tenant::new("x".repeat(65)),
            Err(NameError::TooLong { .. })
        ));
        assert_eq!(Tenant::default().as_str(), "default");
    }

    #[test]
    fn stream_id_is_stable_and_order_independent() {
        let t = Tenant::default();
        let a: Labels = [
            ("service".into(), "api".into()),
            ("host".into(), "h1".into()),
        ]
        .into();
        let b: Labels = [
            ("host".into(), "h1".into()),
            ("service".into(), "api".into()),
        ]
        .into();
        assert_eq!(StreamId::of(&t, &a), StreamId::of(&t, &b));
        // Pinned (computed independently): this value is stored on disk and must
        // never change.
        assert_eq!(StreamId::of(&t, &a).0, 0x4272_ed6c_4a57_d28d);
        let other = Tenant::new("other").unwrap();
        assert_ne!(StreamId::of(&t, &a), StreamId::of(&other, &a));
        // Label boundaries matter: {a="bc"} differs from {ab="c"}.
        let x: Labels = [("a".into(), "bc".into())].into();
        let y: Labels = [("ab".into(), "c".into())].into();
        assert_ne!(StreamId::of(&t, &x), StreamId::of(&t, &y));
    }
}
