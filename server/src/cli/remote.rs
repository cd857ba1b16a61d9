//! Client mode: `heimdall query --connect ADDR` over Arrow Flight and `heimdall
//! ingest --connect ADDR` over gRPC, with the embedded commands' output and errors.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use arrow_flight::error::FlightError;
use arrow_flight::{FlightClient, Ticket};
use engine::ingest::IngestContext;
use futures::TryStreamExt;
use query::Table;
use tonic::transport::{Channel, Endpoint};

use super::data::{parse_stream, read_records, IngestArgs, Progress};
use crate::serve::pb;

/// Records per pushed batch, and the byte bound that closes one early.
const PUSH_RECORDS: usize = 1000;
const PUSH_BYTES: usize = 4 << 20;
/// Pushes in flight at once.
const PUSHES_IN_FLIGHT: usize = 4;
/// Tries of one batch before giving up (retries reuse its idempotency key).
const PUSH_TRIES: u32 = 8;

async fn channel(addr: &str, timeout: Duration) -> Result<Channel> {
    let url = match addr.split_once("://") {
        Some((_, rest)) => format!("http://{rest}"),
        None => format!("http://{addr}"),
    };
    Endpoint::from_shared(url.clone())
        .with_context(|| format!("--connect {addr:?} is not host:port"))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

fn flight_error(e: FlightError) -> anyhow::Error {
    match e {
        FlightError::Tonic(s) => anyhow::anyhow!("{}", s.message()),
        other => anyhow::anyhow!("{other}"),
    }
}

/// Runs `text` on the server at `addr`; the rows as the embedded query returns them.
pub(super) fn query(addr: &str, tenant: &str, text: &str, timeout: Duration) -> Result<Table> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut client = FlightClient::new(channel(addr, timeout).await?);
        let ticket = serde_json::json!({ "query": text, "tenant": tenant }).to_string();
        let batches: Vec<_> = client
            .do_get(Ticket::new(ticket))
            .await
            .map_err(flight_error)?
            .try_collect()
            .await
            .map_err(flight_error)?;
        Ok(query::arrow::from_record_batches(&batches)?)
    })
}

/// Runs the Flight action `kind` with a JSON `body` on the server at `addr`; its
/// (one) JSON result.
pub(super) fn action(
    addr: &str,
    kind: &str,
    body: serde_json::Value,
    timeout: Duration,
) -> Result<serde_json::Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut client = FlightClient::new(channel(addr, timeout).await?);
        let results: Vec<bytes::Bytes> = client
            .do_action(arrow_flight::Action::new(kind, body.to_string()))
            .await
            .map_err(flight_error)?
            .try_collect()
            .await
            .map_err(flight_error)?;
        let first = results
            .first()
            .with_context(|| format!("the server's {kind} action returned nothing"))?;
        serde_json::from_slice(first)
            .with_context(|| format!("the server's {kind} action returned no JSON"))
    })
}

/// Pushes one batch, retrying what may succeed later (the server busy, restarting,
/// or the answer lost) with the same idempotency key, so it is stored once.
async fn push(
    mut client: pb::ingest_client::IngestClient<Channel>,
    req: pb::PushRequest,
) -> Result<u64> {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=PUSH_TRIES {
        match client.push(req.clone()).await {
            Ok(r) => return Ok(r.into_inner().records),
            Err(s) => {
                let retry = matches!(
                    s.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::ResourceExhausted
                        | tonic::Code::Aborted
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Unknown
                );
                if !retry || attempt == PUSH_TRIES {
                    bail!("{}", s.message());
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    bail!("gave up after {PUSH_TRIES} tries")
}

/// Reads the files like the embedded `ingest` and pushes the records to `addr`.
pub(super) fn ingest(addr: &str, a: IngestArgs<'_>) -> Result<()> {
    let ctx = IngestContext {
        stream: parse_stream(a.stream)?,
        now_ns: crate::serve::now_ns(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = rt.block_on(async {
        Ok::<_, anyhow::Error>(
            pb::ingest_client::IngestClient::new(channel(addr, Duration::from_secs(60)).await?)
                .max_encoding_message_size(64 << 20),
        )
    })?;
    // One producer id per run: retries of a batch carry its sequence number.
    let producer = format!(
        "heimdall-ingest-{}-{}",
        std::process::id(),
        crate::serve::now_ns()
    );
    let mut seq = 0u64;
    let mut p = Progress::new();
    let mut batch: Vec<pb::Record> = Vec::with_capacity(PUSH_RECORDS);
    let mut batch_bytes = 0usize;
    let mut in_flight: std::collections::VecDeque<tokio::task::JoinHandle<Result<u64>>> =
        Default::default();
    let mut send = |batch: Vec<pb::Record>,
                    in_flight: &mut std::collections::VecDeque<_>,
                    p: &mut Progress|
     -> Result<()> {
        while in_flight.len() >= PUSHES_IN_FLIGHT {
            if let Some(h) = in_flight.pop_front() {
                p.stored(rt.block_on(h)??);
            }
        }
        seq += 1;
        let req = pb::PushRequest {
            tenant: a.tenant.to_string(),
            producer_id: producer.clone(),
            sequence: seq,
            stream: Default::default(),
            records: batch,
        };
        in_flight.push_back(rt.spawn(push(client.clone(), req)));
        p.tick();
        Ok(())
    };
    let outcome = read_records(&a, &ctx, &mut p, |rec, _, p| {
        batch_bytes += rec.msg.len() + 64;
        batch.push(heimdall_server::convert::to_pb(rec));
        if batch.len() >= PUSH_RECORDS || batch_bytes >= PUSH_BYTES {
            batch_bytes = 0;
            send(std::mem::take(&mut batch), &mut in_flight, p)?;
        }
        Ok(())
    });
    // Whatever happened, send what was read before it, then wait for every answer.
    let mut last = Ok(());
    if !batch.is_empty() {
        last = send(batch, &mut in_flight, &mut p);
    }
    for h in in_flight {
        match rt.block_on(h)? {
            Ok(n) => p.stored(n),
            Err(e) => last = Err(e),
        }
    }
    p.summary();
    outcome?;
    last
}
