//! The Arrow Flight service: queries (`DoGet`, `GetFlightInfo`), ingest of Arrow
//! record batches (`DoPut`) and operations (`DoAction`: `flush`, `compact`,
//! `stats`, `offload`, `retention`, `templates`).
//!
//! A ticket (and a `GetFlightInfo` command) is either a UTF-8 JSON object
//! `{"query": "...", "tenant": "...", "limit": N}` (only `query` required) or the
//! query text itself.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Deserialize;
use tonic::{Request, Response, Status, Streaming};

use super::Node;

/// What a ticket asks for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueryTicket {
    pub(crate) query: String,
    #[serde(default)]
    pub(crate) tenant: Option<String>,
    #[serde(default)]
    pub(crate) limit: Option<u64>,
}

impl QueryTicket {
    /// Parses ticket bytes: a JSON object, or the query text (which may open
    /// with a stream filter `{...}`).
    pub(crate) fn parse(bytes: &[u8]) -> Result<QueryTicket, Status> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| Status::invalid_argument("the ticket is not UTF-8"))?;
        if text.trim_start().starts_with('{') {
            // A JSON object is a query object; anything else starting with `{` is
            // query text opening with a stream filter (`{service="api"} error`).
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
                if v.is_object() {
                    return serde_json::from_value(v).map_err(|e| {
                        Status::invalid_argument(format!(
                            "the ticket is not a query object {{\"query\": ..., \"tenant\": ..., \"limit\": N}}: {e}"
                        ))
                    });
                }
            }
        }
        Ok(QueryTicket {
            query: text.to_string(),
            tenant: None,
            limit: None,
        })
    }

    /// The query text with the ticket's limit applied as a last pipe.
    pub(crate) fn text(&self) -> String {
        match self.limit {
            Some(n) => format!("{} | limit {n}", self.query),
            None => self.query.clone(),
        }
    }
}

/// The body of a `templates` action (all optional; an empty body is the
/// default tenant's 100 most frequent).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TemplatesRequest {
    #[serde(default)]
    pub(crate) tenant: Option<String>,
    #[serde(default)]
    pub(crate) limit: Option<usize>,
}

/// A tenant's templates as JSON, most frequent first: `{"total": N, "templates":
/// [{"id", "text", "count", "first_seen", "last_seen", "alias_of"}]}` (times
/// RFC 3339); what the `templates` action and `heimdall templates --json` print.
pub(crate) fn templates_json(
    engine: &engine::engine::Engine,
    tenant: &engine::model::Tenant,
    limit: usize,
) -> serde_json::Value {
    let all = engine.templates(tenant);
    let time = engine::ingest::time::format_rfc3339;
    let list: Vec<serde_json::Value> = all
        .iter()
        .take(limit)
        .map(|t| {
            serde_json::json!({
                "id": t.id,
                "text": t.text,
                "count": t.count,
                "first_seen": time(t.first_seen),
                "last_seen": time(t.last_seen),
                "alias_of": t.alias_of,
            })
        })
        .collect();
    serde_json::json!({ "total": all.len(), "templates": list })
}

/// The Flight service of a node.
#[derive(Clone)]
pub(crate) struct Flight {
    pub(crate) node: Arc<Node>,
}

type Stream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send + 'static>>;

impl Flight {
    /// The schema a ticket's answer can have, without running the query.
    async fn schema(&self, t: QueryTicket) -> Result<arrow_schema::SchemaRef, Status> {
        let node = Arc::clone(&self.node);
        tokio::task::spawn_blocking(move || node.planned_schema(&t))
            .await
            .map_err(|e| Status::internal(format!("schema task failed: {e}")))?
    }
}

fn json_result(v: serde_json::Value) -> Stream<arrow_flight::Result> {
    let body = bytes::Bytes::from(v.to_string());
    Box::pin(stream::once(
        async move { Ok(arrow_flight::Result { body }) },
    ))
}

#[tonic::async_trait]
impl FlightService for Flight {
    type HandshakeStream = Stream<HandshakeResponse>;
    type ListFlightsStream = Stream<FlightInfo>;
    type DoGetStream = Stream<FlightData>;
    type DoPutStream = Stream<PutResult>;
    type DoExchangeStream = Stream<FlightData>;
    type DoActionStream = Stream<arrow_flight::Result>;
    type ListActionsStream = Stream<ActionType>;

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented(
            "no authentication yet: call DoGet directly",
        ))
    }

    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented(
            "there are no stored flights: send a query in a DoGet ticket",
        ))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let desc = request.into_inner();
        let ticket = QueryTicket::parse(&desc.cmd)?;
        // From the query and the stored columns, without running it
        // (query::schema): the row count is unknown until DoGet.
        let schema = self.schema(ticket).await?;
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("schema: {e}")))?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(desc.cmd.clone())))
            .with_descriptor(desc)
            .with_total_records(-1);
        Ok(Response::new(info))
    }

    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("use GetFlightInfo"))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let desc = request.into_inner();
        let schema = self.schema(QueryTicket::parse(&desc.cmd)?).await?;
        let options = arrow_ipc::writer::IpcWriteOptions::default();
        let result: SchemaResult = arrow_flight::SchemaAsIpc::new(&schema, &options)
            .try_into()
            .map_err(|e: arrow_schema::ArrowError| Status::internal(e.to_string()))?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let ticket = QueryTicket::parse(&request.into_inner().ticket)?;
        // The query runs on a blocking thread and hands over each batch as soon as
        // it is built, so converting the next batch overlaps encoding and sending
        // this one; the channel holds two, so a slow client slows the query down
        // instead of piling batches up in memory.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<RecordBatch, Status>>(2);
        let node = Arc::clone(&self.node);
        // Parsed before a slot is taken: a bad query costs no slot, and a needle
        // may use the reserve.
        let (tenant, q) = node.parse_ticket(&ticket)?;
        let slot = node.query_slot(q.filter.narrowed_by_index()).await?;
        let timeout = slot.deadline;
        let started = Instant::now();
        // A client that stops reading must not hold its query slot for ever: the
        // query stops at its deadline, and the stream then ends with an error.
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stalled_w = Arc::clone(&stalled);
        let deadline = started + timeout;
        let handle = tokio::runtime::Handle::current();
        super::spawn_thread("heimdall-query", move || {
            let _slot = slot;
            let send = |b: RecordBatch| {
                let left = deadline.saturating_duration_since(Instant::now());
                match handle.block_on(tokio::time::timeout(left, tx.send(Ok(b)))) {
                    Ok(sent) => sent.is_ok(),
                    Err(_) => {
                        stalled_w.store(true, Ordering::Relaxed);
                        false
                    }
                }
            };
            let res = node.query_each(&tenant, &q, timeout, send);
            node.metrics.query_latency.observe(started.elapsed());
            node.metrics.queries.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = res {
                node.metrics.query_errors.fetch_add(1, Ordering::Relaxed);
                let _ = tx.blocking_send(Err(e));
            }
        })
        .map_err(|e| Status::internal(format!("cannot start a query thread: {e}")))?;
        // The first answer decides between an error status and a stream.
        let first = match rx.recv().await {
            Some(Ok(b)) => b,
            Some(Err(e)) => return Err(e),
            None => return Err(Status::internal("query task ended without an answer")),
        };
        let schema = first.schema();
        let rest = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
        let end = stream::once(async move {
            Err(Status::deadline_exceeded(format!(
                "the client did not take the results within the query deadline of {timeout:?}"
            )))
        })
        .filter(move |_| std::future::ready(stalled.load(Ordering::Relaxed)));
        let input = stream::once(async move { Ok(first) })
            .chain(rest)
            .chain(end)
            .map_err(|s| FlightError::Tonic(Box::new(s)));
        let out = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(input)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(out)))
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let results = super::put::do_put(Arc::clone(&self.node), request.into_inner()).await?;
        Ok(Response::new(Box::pin(stream::iter(
            results.into_iter().map(Ok),
        ))))
    }

    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("DoExchange is not supported"))
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        let node = &self.node;
        match action.r#type.as_str() {
            "flush" => {
                let s = node.flush().await?;
                Ok(Response::new(json_result(serde_json::json!({
                    "segments": s.segments,
                    "rows": s.rows,
                }))))
            }
            "compact" => {
                let s = node.compact().await?;
                Ok(Response::new(json_result(serde_json::json!({
                    "merged": s.merged,
                    "written": s.written,
                }))))
            }
            "stats" => Ok(Response::new(json_result(node.stats_json().await?))),
            "tasks" => Ok(Response::new(json_result(node.tasks_json()))),
            "offload" => {
                if node.engine.tier().is_none() {
                    return Err(Status::failed_precondition(
                        "no [object_store] is configured: nothing to offload to",
                    ));
                }
                let f = node.flush().await?;
                let s = node.offload(true).await?;
                Ok(Response::new(json_result(serde_json::json!({
                    "flushed_rows": f.rows,
                    "segments": s.segments,
                    "bytes": s.bytes,
                    "failed": s.failed,
                    "error": s.error,
                    "local_bytes": s.local_bytes,
                    "remote_bytes": s.remote_bytes,
                }))))
            }
            "retention" => {
                let s = node.retain().await?;
                Ok(Response::new(json_result(serde_json::json!({
                    "local_segments": s.local_segments,
                    "remote_segments": s.remote_segments,
                    "rewritten_segments": s.rewritten_segments,
                    "rows": s.rows,
                    "bytes": s.bytes,
                }))))
            }
            "templates" => {
                let req: TemplatesRequest = if action.body.iter().all(u8::is_ascii_whitespace) {
                    TemplatesRequest::default()
                } else {
                    serde_json::from_slice(&action.body).map_err(|e| {
                        Status::invalid_argument(format!(
                            "the templates action takes {{\"tenant\": ..., \"limit\": N}} (both optional): {e}"
                        ))
                    })?
                };
                let tenant = engine::model::Tenant::new(req.tenant.unwrap_or_else(|| "default".into()))
                    .map_err(|e| Status::invalid_argument(format!("tenant: {e}")))?;
                Ok(Response::new(json_result(templates_json(
                    &node.engine,
                    &tenant,
                    req.limit.unwrap_or(100),
                ))))
            }
            other => Err(Status::invalid_argument(format!(
                "unknown action {other:?}: the actions are flush, compact, stats, tasks, offload, retention and templates"
            ))),
        }
    }

    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let actions = [
            (
                "flush",
                "Write the memtable to segments now; returns {segments, rows}.",
            ),
            (
                "compact",
                "Merge each day's segments; returns {merged, written}.",
            ),
            ("stats", "Records, segments, bytes and WAL state, as JSON."),
            (
                "tasks",
                "The node's background tasks: {tasks: [{name, about, state, runs, failures, failures_in_a_row, last_duration_seconds, last_error, retry_in_seconds}]}; a Kafka source is kafka:GROUP/TOPICS (its consumer's state in about).",
            ),
            (
                "offload",
                "Flush, then move every local segment to the object store (upload, verify, list, delete locally); returns {segments, bytes, failed, error, local_bytes, remote_bytes}.",
            ),
            (
                "retention",
                "Apply the [[retention]] rules now; returns {local_segments, remote_segments, rows, bytes}.",
            ),
            (
                "templates",
                "The log templates mined from a tenant's messages, most frequent first; body {\"tenant\", \"limit\"} (optional); returns {total, templates: [{id, text, count, first_seen, last_seen, alias_of}]}.",
            ),
        ];
        let list: Vec<Result<ActionType, Status>> = actions
            .iter()
            .map(|(t, d)| {
                Ok(ActionType {
                    r#type: (*t).to_string(),
                    description: (*d).to_string(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(stream::iter(list))))
    }
}

#[cfg(test)]
mod tests {
    use super::QueryTicket;

    #[test]
    fn a_ticket_is_a_query_object_or_query_text_even_opening_with_a_stream_filter() {
        let t = QueryTicket::parse(br#"{"query": "error", "tenant": "acme", "limit": 5}"#).unwrap();
        assert_eq!(
            (t.text(), t.tenant.as_deref()),
            ("error | limit 5".into(), Some("acme"))
        );
        let t = QueryTicket::parse(br#"{service="api"} error"#).unwrap();
        assert_eq!(t.text(), r#"{service="api"} error"#);
        assert!(t.tenant.is_none());
        let err = QueryTicket::parse(br#"{"qury": "error"}"#).unwrap_err();
        assert!(err.message().contains("query object"), "{err}");
        assert!(QueryTicket::parse(b"\xff").is_err());
    }
}
