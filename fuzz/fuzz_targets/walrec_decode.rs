//! Fuzz the WAL payload decoder (`engine::walrec`): a record batch, a batch of a
//! producer, a positioned batch, a retraction. Two inputs per run: the raw bytes,
//! and a batch built from them, encoded, then cut or damaged as they say.
//!
//! Decoding never panics; a valid encoding decodes to exactly what was encoded; a
//! truncated one is an error; whatever decodes re-encodes to a batch that decodes
//! the same (replay relies on it).
#![no_main]

use engine::model::{Record, Tenant, Value};
use engine::walrec::{decode, encode_retract, encode_with, Position, Retract};
use libfuzzer_sys::fuzz_target;

fn text(data: &[u8], at: &mut usize, n: usize) -> String {
    let start = (*at).min(data.len());
    let end = (start + n).min(data.len());
    *at = end;
    String::from_utf8_lossy(&data[start..end]).into_owned()
}

fn build(data: &[u8]) -> (Vec<Record>, Option<(String, u64)>, Vec<Position>) {
    let mut at = 0;
    let byte = |at: &mut usize| -> u8 {
        let b = data.get(*at).copied().unwrap_or(0);
        *at += 1;
        b
    };
    let n = usize::from(byte(&mut at) % 16);
    let mut records = Vec::new();
    for i in 0..n {
        let len = usize::from(byte(&mut at) % 24);
        let msg = text(data, &mut at, len);
        let mut fields = Vec::new();
        for j in 0..byte(&mut at) % 4 {
            let v = match byte(&mut at) % 4 {
                0 => Value::Str(text(data, &mut at, 5)),
                1 => Value::I64(i64::from(byte(&mut at)) << 40),
                2 => Value::F64(f64::from(byte(&mut at)) / 3.0),
                _ => Value::Bool(byte(&mut at) % 2 == 0),
            };
            fields.push((format!("f{j}"), v));
        }
        records.push(Record {
            time_ns: (i64::from(byte(&mut at)) - 128) * 1_000_000_007 * i as i64,
            msg,
            stream: [("k".to_string(), text(data, &mut at, 3))].into(),
            level: (byte(&mut at) % 2 == 0).then(|| "INFO".to_string()),
            fields,
        });
    }
    let producer =
        (byte(&mut at) % 2 == 0).then(|| (text(data, &mut at, 6), u64::from(byte(&mut at))));
    let positions = (0..byte(&mut at) % 3)
        .map(|k| Position {
            key: format!("kafka/g/t/{k}"),
            first: u64::from(byte(&mut at)),
            next: u64::from(byte(&mut at)) + 300,
        })
        .collect();
    (records, producer, positions)
}

fuzz_target!(|data: &[u8]| {
    // 1. Any bytes.
    if let Ok(b) = decode(data) {
        let again = match &b.retract {
            Some(r) => encode_retract(&b.tenant, r),
            None => encode_with(
                &b.tenant,
                &b.records,
                b.producer.as_ref().map(|(p, s)| (p.as_str(), *s)),
                &b.positions,
            ),
        };
        let b2 = decode(&again).expect("a re-encoded batch decodes");
        assert_eq!(b2.records.len(), b.records.len());
        assert_eq!(b2.producer, b.producer);
    }
    // 2. A valid batch, then damaged.
    let (records, producer, positions) = build(data);
    let t = Tenant::default();
    let bytes = encode_with(
        &t,
        &records,
        producer.as_ref().map(|(p, s)| (p.as_str(), *s)),
        &positions,
    );
    let b = decode(&bytes).expect("a valid batch decodes");
    assert_eq!(b.records.len(), records.len());
    for (x, y) in b.records.iter().zip(&records) {
        assert_eq!(x.msg, y.msg);
        assert_eq!(x.time_ns, y.time_ns);
    }
    assert_eq!(b.positions, positions);
    let cut = data.first().map_or(0, |c| usize::from(*c)) % bytes.len().max(1);
    if cut < bytes.len() {
        assert!(decode(&bytes[..cut]).is_err(), "a truncated batch decoded");
    }
    let mut damaged = bytes.clone();
    if let (Some(at), Some(x)) = (data.get(1), data.get(2)) {
        let i = usize::from(*at) % damaged.len();
        damaged[i] ^= x | 1;
        let _ = decode(&damaged);
    }
    let r = Retract {
        key: "kafka/g/t/0".into(),
        next: 7,
        equals: vec![("kafka.topic".into(), Value::Str("t".into()))],
        field: "kafka.offset".into(),
        from: 3,
    };
    let rb = encode_retract(&t, &r);
    assert_eq!(decode(&rb).expect("a retraction decodes").retract, Some(r));
});
