//! The gRPC ingest client the load tools share (generated from
//! `server/proto/heimdall/v1/ingest.proto` by `build.rs`), the conversion of a
//! parsed record to its message, and the server's memory from `/proc`.

use engine::model::Value;

/// The generated messages and client.
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]
pub mod pb {
    tonic::include_proto!("heimdall.v1");
}

/// A record as a push message's record.
pub fn to_pb(r: engine::model::Record) -> pb::Record {
    pb::Record {
        time_unix_nano: r.time_ns,
        msg: r.msg,
        stream: r.stream.into_iter().collect(),
        level: r.level.unwrap_or_default(),
        fields: r
            .fields
            .into_iter()
            .map(|(name, v)| pb::Field {
                name,
                value: Some(match v {
                    Value::Str(s) => pb::field::Value::Str(s),
                    Value::I64(x) => pb::field::Value::I64(x),
                    Value::F64(x) => pb::field::Value::F64(x),
                    Value::Bool(x) => pb::field::Value::Bool(x),
                }),
            })
            .collect(),
    }
}

/// A process's peak RSS in MiB.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    status_mb(pid, "VmHWM:")
}

/// A `/proc/PID/status` size line (`VmRSS:`, `VmHWM:`) in MiB.
pub fn status_mb(pid: u32, key: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
