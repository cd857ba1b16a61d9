//! What every ingest conversion target checks of the records it accepted: the
//! limits the engine and replay enforce hold, and the WAL payload the engine would
//! write decodes to the same records (floats compared by their bits: a NaN must
//! come back as the NaN that was sent).

use engine::model::{Record, Tenant, Value};
use engine::walrec;

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// Panics unless `records` are storable and survive the WAL payload round trip.
pub fn check_accepted(tenant: &Tenant, records: &[Record], producer: Option<(&str, u64)>) {
    for r in records {
        assert!(r.fields.len() <= engine::model::RECORD_FIELDS_MAX);
        for (name, _) in &r.fields {
            assert!(!name.is_empty() && !name.starts_with('_'), "field {name:?} accepted");
        }
        assert!(r.stream.keys().all(|k| !k.is_empty()), "an empty label name accepted");
    }
    let bytes = walrec::encode_with(tenant, records, producer, &[]);
    let back = walrec::decode(&bytes).expect("an accepted batch's WAL payload decodes");
    assert_eq!(&back.tenant, tenant);
    assert_eq!(back.records.len(), records.len());
    for (x, y) in back.records.iter().zip(records) {
        assert_eq!(x.time_ns, y.time_ns);
        assert_eq!(x.msg, y.msg);
        assert_eq!(x.stream, y.stream);
        assert_eq!(x.level, y.level);
        assert_eq!(x.fields.len(), y.fields.len());
        for ((n1, v1), (n2, v2)) in x.fields.iter().zip(&y.fields) {
            assert_eq!(n1, n2);
            assert!(same_value(v1, v2), "{n1}: {v1:?} came back as {v2:?}");
        }
    }
}
