//! Helpers shared by the engine's test binaries.
#![allow(dead_code)]

use engine::model::Record;

/// A record at `t` with message `msg` and nothing else.
pub(crate) fn rec(t: i64, msg: &str) -> Record {
    Record {
        time_ns: t,
        msg: msg.to_string(),
        stream: Default::default(),
        level: None,
        fields: vec![],
    }
}

/// A current-thread runtime for the engine's async calls.
pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
