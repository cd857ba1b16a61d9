//! The HTTP side: `GET /healthz` (the process is up), `GET /readyz` (recovered and
//! accepting writes), `GET /metrics` (Prometheus text format), and
//! `POST /insert/jsonl?tenant=T&stream=k=v,k=v` (JSON lines, one record each, as
//! `heimdall ingest --format jsonl` reads them; stored as one atomic batch).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use engine::ingest::{line_text, parse_json, IngestContext};
use engine::model::Tenant;
use tokio::net::TcpListener;

use super::Node;

pub(crate) async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limit = node.cfg.limits.message_bytes_max;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/insert/jsonl", post(insert_jsonl))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(node);
    // Small answers go out at once (no Nagle delay waiting for the client's ACK).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

fn json(status: StatusCode, v: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{v}\n"),
    )
        .into_response()
}

async fn readyz(State(node): State<Arc<Node>>) -> Response {
    let ready = node.ready.load(Ordering::Acquire);
    let failed = node.engine.failure();
    let body = serde_json::json!({
        "ready": ready && failed.is_none(),
        "serving": ready,
        "engine_error": failed,
        "memtable_bytes": node.engine.memory().memtable_bytes,
        "backlog_limit_bytes": node.cfg.limits.backlog_bytes_max,
        "sources": node.sources.status.iter().map(|s| s.json()).collect::<Vec<_>>(),
        "object_store": node.tiering.json(&node),
    });
    if ready && failed.is_none() {
        json(StatusCode::OK, body)
    } else {
        json(StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        node.metrics.render(
            &node.engine,
            &node.sources,
            &node.tiering,
            &node.tasks.list(),
        ),
    )
        .into_response()
}

/// `key=value` pairs of a query string (values percent-decoded).
fn query_params(uri: &Uri) -> Vec<(String, String)> {
    let decode = |s: &str| -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while let Some(&c) = b.get(i) {
            let hex = |j: usize| {
                b.get(j)
                    .and_then(|h| (*h as char).to_digit(16))
                    .map(|d| d as u8)
            };
            match c {
                b'%' => match (hex(i + 1), hex(i + 2)) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                    _ => out.push(c),
                },
                b'+' => out.push(b' '),
                _ => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

async fn insert_jsonl(State(node): State<Arc<Node>>, uri: Uri, body: Bytes) -> Response {
    let bad = |msg: String| {
        node.rejected();
        super::Refusal::new(super::refusal::Kind::Invalid, msg).http()
    };
    let mut tenant = Tenant::default();
    let mut ctx = IngestContext {
        now_ns: super::now_ns(),
        ..IngestContext::default()
    };
    for (k, v) in query_params(&uri) {
        match k.as_str() {
            "tenant" => match Tenant::new(v) {
                Ok(t) => tenant = t,
                Err(e) => return bad(format!("tenant: {e}")),
            },
            "stream" => match crate::cli::parse_labels(&v) {
                Ok(l) => ctx.stream = l,
                Err(e) => return bad(format!("stream: {e:#}")),
            },
            other => {
                return bad(format!(
                    "unknown parameter {other:?}: use tenant and stream"
                ))
            }
        }
    }
    let mut records = Vec::new();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let rec = line_text(line).and_then(|t| parse_json(t, &ctx));
        match rec {
            Ok(r) => records.push(r),
            Err(e) => return bad(format!("line {}: {e}", i + 1)),
        }
        if records.len() > node.cfg.limits.batch_records_max {
            return bad(format!(
                "more than {} records in one request",
                node.cfg.limits.batch_records_max
            ));
        }
    }
    let n = records.len();
    match node.ingest(&tenant, records, None).await {
        Ok(r) => json(
            StatusCode::OK,
            serde_json::json!({
                "records": n,
                "first_lsn": r.range.first,
                "last_lsn": r.range.last,
            }),
        ),
        Err(refused) => refused.http(),
    }
}
