//! The engine's WAL payloads: a batch of records of one tenant, encoded as one WAL
//! record so the batch is atomic (the WAL guarantees whole records only).
//!
//! Layout (little-endian, varints are LEB128, signed ones zigzag):
//!
//! ```text
//! u8  version (1)
//! u8  kind    (1 = record batch, 2 = record batch of an identified producer,
//!              3 = record batch with source positions, 4 = retraction)
//! str tenant
//! [kind 2: str producer, varint sequence]
//! [kind 3: u8 has_producer, [str producer, varint sequence],
//!          varint n_positions, n x (str source key, varint first, varint next)]
//! [kind 4: str source key, varint next, varint n_equals, n x (str name, value),
//!          str offset field, zigzag-varint from; no records follow]
//! varint count
//! count x record:
//!   zigzag-varint time_ns delta from the previous record (first: from 0)
//!   str msg
//!   varint n_labels, n x (str name, str value)      sorted by name
//!   u8 has_level, [str level]
//!   varint n_fields, n x (str name, u8 tag, value)  tag: 0 str, 1 i64 (zigzag varint),
//!                                                        2 f64 (8 bytes), 3 bool (u8)
//! value = u8 tag, then as for a field
//! str = varint length + UTF-8 bytes
//! ```
//!
//! Decoding never panics; every failure is a [`DecodeError`] with the byte offset.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::model::{Labels, Record, Tenant, Value};
use crate::wire::{put_str, put_varint, unzigzag, zigzag, Reader};

/// Version byte written by this build.
pub const WALREC_VERSION: u8 = 1;
const KIND_RECORDS: u8 = 1;
const KIND_PRODUCER_RECORDS: u8 = 2;
const KIND_POSITIONED_RECORDS: u8 = 3;
const KIND_RETRACT: u8 = 4;
/// Most source positions one batch may carry.
pub const BATCH_POSITIONS_MAX: usize = 1 << 16;
/// Most records one batch may hold.
pub const BATCH_RECORDS_MAX: usize = 1 << 20;

pub use crate::wire::DecodeError;

/// A decoded batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Tenant of every record.
    pub tenant: Tenant,
    /// The records, in ingest order.
    pub records: Vec<Record>,
    /// The producer that sent the batch and its sequence number, for idempotent
    /// retries ([`crate::dedup`]).
    pub producer: Option<(String, u64)>,
    /// Source positions the batch moves (e.g. a Kafka partition's offsets).
    /// Written in the same WAL record as the records, so both are durable together.
    pub positions: Vec<Position>,
    /// A retraction (a kind 4 payload, which carries no records).
    pub retract: Option<Retract>,
}

/// Where a batch leaves a numbered source (a Kafka partition): the batch holds its
/// records from position `first` up to, not including, `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The source, e.g. `kafka/GROUP/TOPIC/PARTITION`.
    pub key: String,
    /// The source position of the batch's first record.
    pub first: u64,
    /// The source position after the batch's last record.
    pub next: u64,
}

/// Takes back the records of a source from a position on (records stored but whose
/// hand-over was not confirmed): every record of `tenant` stored by a batch that
/// moved source `key`, whose fields equal `equals` and whose integer field `field`
/// is at least `from`, is removed, and the source's position goes back to `next`.
/// Records stored any other way (another source, a client's push carrying the
/// same fields) are never taken.
#[derive(Debug, Clone, PartialEq)]
pub struct Retract {
    /// The source.
    pub key: String,
    /// The source position after the retraction.
    pub next: u64,
    /// Fields that identify the source's records (e.g. topic and partition).
    pub equals: Vec<(String, Value)>,
    /// The integer field holding a record's source position (e.g. its offset).
    pub field: String,
    /// Records at this source position and later are removed.
    pub from: i64,
}

impl Retract {
    /// Whether `r` is one of the records this retraction removes.
    pub fn matches(&self, r: &Record) -> bool {
        let field = |name: &str| r.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        self.equals.iter().all(|(k, v)| field(k) == Some(v))
            && matches!(field(&self.field), Some(Value::I64(x)) if *x >= self.from)
    }
}

/// Encodes a retraction of `tenant`'s records.
pub fn encode_retract(tenant: &Tenant, r: &Retract) -> Vec<u8> {
    let mut out = vec![WALREC_VERSION, KIND_RETRACT];
    put_str(&mut out, tenant.as_str());
    put_str(&mut out, &r.key);
    put_varint(&mut out, r.next);
    put_varint(&mut out, r.equals.len() as u64);
    for (k, v) in &r.equals {
        put_str(&mut out, k);
        put_value(&mut out, v);
    }
    put_str(&mut out, &r.field);
    put_varint(&mut out, zigzag(r.from));
    out
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Str(s) => {
            out.push(0);
            put_str(out, s);
        }
        Value::I64(i) => {
            out.push(1);
            put_varint(out, zigzag(*i));
        }
        Value::F64(x) => {
            out.push(2);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Value::Bool(b) => {
            out.push(3);
            out.push(u8::from(*b));
        }
    }
}

fn get_value(r: &mut Reader<'_>) -> Result<Value, DecodeError> {
    Ok(match r.u8()? {
        0 => Value::Str(r.str()?),
        1 => Value::I64(unzigzag(r.varint()?)),
        2 => {
            let b = r.bytes(8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Value::F64(f64::from_le_bytes(a))
        }
        3 => Value::Bool(r.u8()? != 0),
        other => return r.fail(format!("bad value tag {other}")),
    })
}

/// Encodes a batch of records of `tenant`.
pub fn encode(tenant: &Tenant, records: &[Record]) -> Vec<u8> {
    encode_from(tenant, records, None)
}

/// Encodes a batch of records of `tenant` sent by `producer` (id, sequence).
pub fn encode_from(tenant: &Tenant, records: &[Record], producer: Option<(&str, u64)>) -> Vec<u8> {
    encode_with(tenant, records, producer, &[])
}

/// Encodes a batch of records of `tenant`, from `producer` if given, moving the
/// source `positions` if any.
pub fn encode_with(
    tenant: &Tenant,
    records: &[Record],
    producer: Option<(&str, u64)>,
    positions: &[Position],
) -> Vec<u8> {
    // The decoder refuses more: callers check (the engine's `admit`).
    debug_assert!(records.len() <= BATCH_RECORDS_MAX);
    debug_assert!(positions.len() <= BATCH_POSITIONS_MAX);
    let mut out = Vec::with_capacity(64 + records.iter().map(|r| r.msg.len() + 16).sum::<usize>());
    out.push(WALREC_VERSION);
    out.push(match (producer.is_some(), positions.is_empty()) {
        (_, false) => KIND_POSITIONED_RECORDS,
        (true, true) => KIND_PRODUCER_RECORDS,
        (false, true) => KIND_RECORDS,
    });
    put_str(&mut out, tenant.as_str());
    if !positions.is_empty() {
        out.push(u8::from(producer.is_some()));
    }
    if let Some((id, seq)) = producer {
        put_str(&mut out, id);
        put_varint(&mut out, seq);
    }
    if !positions.is_empty() {
        put_varint(&mut out, positions.len() as u64);
        for p in positions {
            put_str(&mut out, &p.key);
            put_varint(&mut out, p.first);
            put_varint(&mut out, p.next);
        }
    }
    put_varint(&mut out, records.len() as u64);
    let mut prev = 0i64;
    for r in records {
        put_varint(&mut out, zigzag(r.time_ns.wrapping_sub(prev)));
        prev = r.time_ns;
        put_str(&mut out, &r.msg);
        put_varint(&mut out, r.stream.len() as u64);
        for (k, v) in &r.stream {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
        match &r.level {
            Some(l) => {
                out.push(1);
                put_str(&mut out, l);
            }
            None => out.push(0),
        }
        put_varint(&mut out, r.fields.len() as u64);
        for (name, value) in &r.fields {
            put_str(&mut out, name);
            put_value(&mut out, value);
        }
    }
    out
}

/// Decodes a payload written by [`encode`].
pub fn decode(payload: &[u8]) -> Result<Batch, DecodeError> {
    let mut r = Reader::new(payload);
    let version = r.u8()?;
    if version != WALREC_VERSION {
        return r.fail(format!(
            "version {version}, this build reads {WALREC_VERSION}"
        ));
    }
    let kind = r.u8()?;
    if !matches!(
        kind,
        KIND_RECORDS | KIND_PRODUCER_RECORDS | KIND_POSITIONED_RECORDS | KIND_RETRACT
    ) {
        return r.fail(format!("unknown payload kind {kind}"));
    }
    let tenant_at = r.at;
    let tenant = Tenant::new(r.str()?).map_err(|e| DecodeError {
        offset: tenant_at,
        what: e.to_string(),
    })?;
    if kind == KIND_RETRACT {
        let key = r.str()?;
        let next = r.varint()?;
        let mut equals = Vec::new();
        for _ in 0..r.len(payload.len())? {
            let k = r.str()?;
            equals.push((k, get_value(&mut r)?));
        }
        let field = r.str()?;
        let from = unzigzag(r.varint()?);
        if r.at != payload.len() {
            return r.fail(format!("{} trailing bytes", payload.len() - r.at));
        }
        return Ok(Batch {
            tenant,
            records: Vec::new(),
            producer: None,
            positions: Vec::new(),
            retract: Some(Retract {
                key,
                next,
                equals,
                field,
                from,
            }),
        });
    }
    let has_producer = match kind {
        KIND_PRODUCER_RECORDS => true,
        KIND_POSITIONED_RECORDS => match r.u8()? {
            0 => false,
            1 => true,
            other => return r.fail(format!("bad producer flag {other}")),
        },
        _ => false,
    };
    let producer = if has_producer {
        let id = r.str()?;
        Some((id, r.varint()?))
    } else {
        None
    };
    let mut positions = Vec::new();
    if kind == KIND_POSITIONED_RECORDS {
        // Each position takes at least 2 bytes, which bounds the count.
        let n = r.len(BATCH_POSITIONS_MAX.min(payload.len() / 2))?;
        if n == 0 {
            return r.fail("a positioned batch with no positions".to_string());
        }
        for _ in 0..n {
            let key = r.str()?;
            let first = r.varint()?;
            let next = r.varint()?;
            positions.push(Position { key, first, next });
        }
    }
    // Each record takes at least 5 bytes, which bounds the count before allocating.
    let count = r.len(BATCH_RECORDS_MAX.min(payload.len() / 5))?;
    let mut records = Vec::with_capacity(count);
    let mut prev = 0i64;
    for _ in 0..count {
        let time_ns = prev.wrapping_add(unzigzag(r.varint()?));
        prev = time_ns;
        let msg = r.str()?;
        let mut stream = Labels::new();
        for _ in 0..r.len(payload.len())? {
            let k = r.str()?;
            let v = r.str()?;
            stream.insert(k, v);
        }
        let level = match r.u8()? {
            0 => None,
            1 => Some(r.str()?),
            other => return r.fail(format!("bad level flag {other}")),
        };
        let n_fields = r.len(payload.len())?;
        let mut fields = Vec::with_capacity(n_fields.min(1024));
        for _ in 0..n_fields {
            let name = r.str()?;
            fields.push((name, get_value(&mut r)?));
        }
        records.push(Record {
            time_ns,
            msg,
            stream,
            level,
            fields,
        });
    }
    if r.at != payload.len() {
        return r.fail(format!("{} trailing bytes", payload.len() - r.at));
    }
    Ok(Batch {
        tenant,
        records,
        producer,
        positions,
        retract: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            ".{0,12}".prop_map(Value::Str),
            any::<i64>().prop_map(Value::I64),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(Value::F64),
            any::<bool>().prop_map(Value::Bool),
        ]
    }

    fn record() -> impl Strategy<Value = Record> {
        (
            any::<i64>(),
            "\\PC{0,40}",
            proptest::collection::btree_map("[a-z]{1,5}", ".{0,6}", 0..3),
            proptest::option::of("[A-Z]{1,5}"),
            proptest::collection::vec(("[a-z.]{1,8}", value()), 0..4),
        )
            .prop_map(|(time_ns, msg, stream, level, fields)| Record {
                time_ns,
                msg,
                stream,
                level,
                fields,
            })
    }

    proptest! {
        #[test]
        fn round_trips(
            records in proptest::collection::vec(record(), 0..20),
            producer in proptest::option::of(("\\PC{0,12}", any::<u64>())),
            positions in proptest::collection::vec(("\\PC{0,12}", any::<u64>(), any::<u64>()), 0..4),
        ) {
            let positions: Vec<Position> = positions
                .into_iter()
                .map(|(key, first, next)| Position { key, first, next })
                .collect();
            let t = Tenant::new("acme").unwrap();
            let bytes = encode_with(&t, &records, producer.as_ref().map(|(p, s)| (p.as_str(), *s)), &positions);
            let batch = decode(&bytes).unwrap();
            prop_assert_eq!(batch.tenant, t);
            prop_assert_eq!(batch.records, records);
            prop_assert_eq!(batch.producer, producer);
            prop_assert_eq!(batch.positions, positions);
            prop_assert_eq!(batch.retract, None);
        }

        #[test]
        fn retractions_round_trip(
            key in "\\PC{0,12}",
            next in any::<u64>(),
            equals in proptest::collection::vec(("[a-z.]{1,8}", value()), 0..3),
            field in "[a-z.]{1,8}",
            from in any::<i64>(),
        ) {
            let t = Tenant::new("acme").unwrap();
            let r = Retract { key, next, equals, field, from };
            let bytes = encode_retract(&t, &r);
            let batch = decode(&bytes).unwrap();
            prop_assert_eq!(batch.tenant, t);
            prop_assert!(batch.records.is_empty());
            prop_assert_eq!(batch.retract, Some(r));
            for cut in 0..bytes.len() {
                prop_assert!(decode(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn every_truncation_is_an_error(
            records in proptest::collection::vec(record(), 1..5),
            positions in proptest::collection::vec(("[a-z/0-9]{0,12}", any::<u64>()), 0..3),
        ) {
            let positions: Vec<Position> = positions
                .into_iter()
                .map(|(key, next)| Position { key, first: next / 2, next })
                .collect();
            let bytes = encode_with(&Tenant::default(), &records, None, &positions);
            for cut in 0..bytes.len() {
                prop_assert!(decode(&bytes[..cut]).is_err());
            }
        }
    }
}
