//! Fuzz the query parser: any text must parse or give a positioned error, never
//! panic; an error's position lies inside the text (or at its end); whatever parses
//! also evaluates against a record without panicking.
#![no_main]

use engine::model::{Record, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match query::parse(text, 1_700_000_000_000_000_000) {
        Err(e) => {
            assert!(e.pos <= text.len(), "{e} for {text:?}");
            assert!(e.column >= 1);
        }
        Ok(q) => {
            let rec = Record {
                time_ns: 1_700_000_000_000_000_000,
                msg: "error disk full 10.0.0.1 user=bob".into(),
                stream: [("service".to_string(), "api".to_string())].into(),
                level: Some("ERROR".into()),
                fields: vec![
                    ("status".into(), Value::I64(500)),
                    ("host".into(), Value::Str("web-1".into())),
                ],
            };
            let _ = query::eval::run_naive(&q, &[rec]);
        }
    }
});
