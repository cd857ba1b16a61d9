//! Kafka messages as records: the message value read as a raw line or a JSON
//! object, with its topic, partition and offset as fields (`kafka.topic`,
//! `kafka.partition`, `kafka.offset`, first among the fields so they win over a
//! same-named field of the message); optionally its key and headers. A message that
//! cannot be read (no value, not UTF-8, bad JSON, over the size limit) becomes a
//! dead letter: a record in the dead-letter stream with the error, its size and the
//! first bytes of the value, at the same offset, so it is never lost and never
//! stops the partition.

use engine::ingest::{parse_json, parse_raw, IngestContext};
use engine::model::{Labels, Record, Value};

use crate::serve::config::{KafkaSource, SourceFormat};

/// Field holding a record's topic.
pub(crate) const TOPIC_FIELD: &str = "kafka.topic";
/// Field holding a record's partition.
pub(crate) const PARTITION_FIELD: &str = "kafka.partition";
/// Field holding a record's offset.
pub(crate) const OFFSET_FIELD: &str = "kafka.offset";
/// Bytes of an unreadable value kept in its dead letter.
const DEAD_LETTER_PREVIEW: usize = 4096;

/// A message as read from the broker.
#[derive(Debug, Clone, Default)]
pub(crate) struct Message {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) key: Option<Vec<u8>>,
    /// Broker or producer time, milliseconds since the epoch.
    pub(crate) timestamp_ms: Option<i64>,
    pub(crate) headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Turns a source's messages into records.
#[derive(Debug, Clone)]
pub(crate) struct Decoder {
    format: SourceFormat,
    stream: Labels,
    dead_stream: Labels,
    key_field: Option<String>,
    header_fields: Vec<(String, String)>,
    bytes_max: usize,
}

impl Decoder {
    pub(crate) fn new(cfg: &KafkaSource) -> Decoder {
        Decoder {
            format: cfg.format,
            stream: cfg.stream.clone(),
            dead_stream: cfg.dead_letter_stream.clone(),
            key_field: cfg.key_field.clone(),
            header_fields: cfg
                .header_fields
                .iter()
                .map(|(h, f)| (h.clone(), f.clone()))
                .collect(),
            bytes_max: cfg.message_bytes_max,
        }
    }

    /// The record of `m`, and whether it is a dead letter.
    pub(crate) fn decode(&self, m: &Message, now_ns: i64) -> (Record, bool) {
        let time_ns = m
            .timestamp_ms
            .filter(|t| *t > 0)
            .map_or(now_ns, |t| t.saturating_mul(1_000_000));
        let ctx = IngestContext {
            stream: self.stream.clone(),
            now_ns: time_ns,
        };
        let read = match &m.value {
            None => Err("message has no value".to_string()),
            Some(v) if v.len() > self.bytes_max => Err(format!(
                "message of {} bytes exceeds the limit of {} bytes",
                v.len(),
                self.bytes_max
            )),
            Some(v) => match std::str::from_utf8(v) {
                Err(e) => Err(format!(
                    "message is not valid UTF-8 (first bad byte at offset {})",
                    e.valid_up_to()
                )),
                Ok(text) => {
                    let text = text.trim_end_matches(['\n', '\r']);
                    match self.format {
                        SourceFormat::Raw => Ok(parse_raw(text, &ctx)),
                        SourceFormat::Jsonl => parse_json(text, &ctx).map_err(|e| e.to_string()),
                    }
                }
            },
        };
        let (mut rec, dead) = match read {
            Ok(r) => (r, false),
            Err(error) => (self.dead_letter(m, time_ns, error), true),
        };
        let mut fields = vec![
            (TOPIC_FIELD.to_string(), Value::Str(m.topic.clone())),
            (
                PARTITION_FIELD.to_string(),
                Value::I64(i64::from(m.partition)),
            ),
            (OFFSET_FIELD.to_string(), Value::I64(m.offset)),
        ];
        if let (Some(f), Some(k)) = (&self.key_field, &m.key) {
            fields.push((
                f.clone(),
                Value::Str(String::from_utf8_lossy(k).into_owned()),
            ));
        }
        for (header, field) in &self.header_fields {
            if let Some((_, Some(v))) = m.headers.iter().find(|(h, _)| h == header) {
                fields.push((
                    field.clone(),
                    Value::Str(String::from_utf8_lossy(v).into_owned()),
                ));
            }
        }
        let total = fields.len() + rec.fields.len();
        if total > engine::model::RECORD_FIELDS_MAX {
            // The source's own fields took it over the limit: the engine would
            // refuse the whole batch, so this message alone becomes a dead letter.
            let why = format!(
                "{total} fields with the source's, over the limit of {} per record",
                engine::model::RECORD_FIELDS_MAX
            );
            let mut dead = self.dead_letter(m, time_ns, why);
            fields.append(&mut dead.fields);
            dead.fields = fields;
            return (dead, true);
        }
        fields.append(&mut rec.fields);
        rec.fields = fields;
        (rec, dead)
    }

    fn dead_letter(&self, m: &Message, time_ns: i64, error: String) -> Record {
        let value = m.value.as_deref().unwrap_or_default();
        let mut cut = value.len().min(DEAD_LETTER_PREVIEW);
        // Keep the preview valid text where the value is: cut at a char boundary.
        while cut > 0 && cut < value.len() && std::str::from_utf8(&value[..cut]).is_err() {
            cut -= 1;
        }
        let preview = String::from_utf8_lossy(&value[..cut]).into_owned();
        Record {
            time_ns,
            msg: preview,
            stream: self.dead_stream.clone(),
            level: Some("ERROR".into()),
            fields: vec![
                ("error".into(), Value::Str(error)),
                ("kafka.value_bytes".into(), Value::I64(value.len() as i64)),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(format: &str) -> KafkaSource {
        let text = format!(
            "[[sources.kafka]]\nbrokers = \"b\"\ntopics = [\"t\"]\ngroup = \"g\"\nformat = \"{format}\"\nkey_field = \"key\"\nmessage_bytes_max = 2048\n[sources.kafka.stream]\napp = \"x\"\n[sources.kafka.header_fields]\ntrace = \"trace_id\"\n"
        );
        crate::serve::config::Config::parse(&text)
            .unwrap()
            .sources
            .kafka
            .remove(0)
    }

    fn msg(value: Option<&[u8]>) -> Message {
        Message {
            topic: "t".into(),
            partition: 2,
            offset: 41,
            value: value.map(<[u8]>::to_vec),
            key: Some(b"k1".to_vec()),
            timestamp_ms: Some(1_700_000_000_000),
            headers: vec![("trace".into(), Some(b"abc".to_vec()))],
        }
    }

    fn field<'a>(r: &'a Record, k: &str) -> Option<&'a Value> {
        r.fields.iter().find(|(n, _)| n == k).map(|(_, v)| v)
    }

    #[test]
    fn json_messages_keep_their_fields_and_get_kafka_ones_first() {
        let d = Decoder::new(&cfg("jsonl"));
        let (r, dead) = d.decode(
            &msg(Some(
                br#"{"_msg": "hello", "kafka.offset": 7, "user": "ann"}"#,
            )),
            5,
        );
        assert!(!dead);
        assert_eq!(r.msg, "hello");
        assert_eq!(
            r.time_ns, 1_700_000_000_000_000_000,
            "the message's Kafka time"
        );
        assert_eq!(r.stream.get("app").map(String::as_str), Some("x"));
        assert_eq!(field(&r, OFFSET_FIELD), Some(&Value::I64(41)), "ours win");
        assert_eq!(field(&r, PARTITION_FIELD), Some(&Value::I64(2)));
        assert_eq!(field(&r, "user"), Some(&Value::Str("ann".into())));
        assert_eq!(field(&r, "key"), Some(&Value::Str("k1".into())));
        assert_eq!(field(&r, "trace_id"), Some(&Value::Str("abc".into())));
    }

    #[test]
    fn unreadable_messages_become_dead_letters() {
        let d = Decoder::new(&cfg("jsonl"));
        let big = vec![b'a'; 5000];
        for (value, why) in [
            (None, "no value"),
            (Some(&b"not json"[..]), "malformed JSON"),
            (Some(&b"\xff\xfe"[..]), "not valid UTF-8"),
            (Some(&big[..]), "exceeds the limit"),
        ] {
            let (r, dead) = d.decode(&msg(value), 5);
            assert!(dead, "{why}");
            assert_eq!(
                r.stream.get("source").map(String::as_str),
                Some("kafka-dead-letter")
            );
            match field(&r, "error") {
                Some(Value::Str(e)) => assert!(e.contains(why), "{e} vs {why}"),
                other => panic!("{other:?}"),
            }
            assert_eq!(field(&r, OFFSET_FIELD), Some(&Value::I64(41)));
            assert!(r.msg.len() <= DEAD_LETTER_PREVIEW);
        }
        // Raw messages only fail on size, UTF-8 or a missing value.
        let d = Decoder::new(&cfg("raw"));
        let (r, dead) = d.decode(&msg(Some(b"not json\n")), 5);
        assert!(!dead);
        assert_eq!(r.msg, "not json");
    }
}
