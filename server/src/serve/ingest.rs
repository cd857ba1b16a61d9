//! The gRPC ingest service `heimdall.v1.Ingest` (proto/heimdall/v1/ingest.proto).

use std::sync::Arc;

use engine::model::{Labels, Record, Tenant, Value};
use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::pb::ingest_server::Ingest;
use super::pb::{field, PushRequest, PushResponse};
use super::Node;

/// The ingest service of a node.
#[derive(Clone)]
pub(crate) struct IngestService {
    pub(crate) node: Arc<Node>,
}

/// A request turned into what the engine stores.
pub(crate) struct Batch {
    pub(crate) tenant: Tenant,
    pub(crate) records: Vec<Record>,
    pub(crate) dedup: Option<(String, u64)>,
}

/// Validates and converts a push; every problem is `INVALID_ARGUMENT` with the
/// reason and, for a record, its index.
pub(crate) fn convert(req: PushRequest, records_max: usize, now: i64) -> Result<Batch, Status> {
    let bad = |what: String| Status::invalid_argument(what);
    let tenant = if req.tenant.is_empty() {
        Tenant::default()
    } else {
        Tenant::new(req.tenant.as_str()).map_err(|e| bad(format!("tenant: {e}")))?
    };
    if req.records.len() > records_max {
        return Err(bad(format!(
            "{} records in one push, over the limit of {records_max}",
            req.records.len()
        )));
    }
    let dedup = if req.producer_id.is_empty() {
        None
    } else {
        if req.producer_id.len() > 256 {
            return Err(bad("producer_id is longer than 256 bytes".into()));
        }
        Some((req.producer_id, req.sequence))
    };
    check_labels(&req.stream, "stream")?;
    let mut records = Vec::with_capacity(req.records.len());
    for (i, r) in req.records.into_iter().enumerate() {
        check_labels(&r.stream, &format!("record {i}: stream"))?;
        let mut stream: Labels = req.stream.clone().into_iter().collect();
        stream.extend(r.stream);
        if r.fields.len() > engine::model::RECORD_FIELDS_MAX {
            return Err(bad(format!(
                "record {i}: {} fields, over the limit of {} per record",
                r.fields.len(),
                engine::model::RECORD_FIELDS_MAX
            )));
        }
        let mut fields = Vec::with_capacity(r.fields.len());
        for f in r.fields {
            if f.name.is_empty() || f.name.starts_with('_') {
                return Err(bad(format!(
                    "record {i}: field name {:?} is empty or starts with '_' (reserved)",
                    f.name
                )));
            }
            let v = match f.value {
                Some(field::Value::Str(s)) => Value::Str(s),
                Some(field::Value::I64(x)) => Value::I64(x),
                Some(field::Value::F64(x)) => Value::F64(x),
                Some(field::Value::Bool(x)) => Value::Bool(x),
                None => return Err(bad(format!("record {i}: field {:?} has no value", f.name))),
            };
            fields.push((f.name, v));
        }
        records.push(Record {
            time_ns: if r.time_unix_nano == 0 {
                now
            } else {
                r.time_unix_nano
            },
            msg: r.msg,
            stream,
            level: (!r.level.is_empty()).then_some(r.level),
            fields,
        });
    }
    Ok(Batch {
        tenant,
        records,
        dedup,
    })
}

fn check_labels(
    labels: &std::collections::HashMap<String, String>,
    what: &str,
) -> Result<(), Status> {
    for k in labels.keys() {
        if k.is_empty() {
            return Err(Status::invalid_argument(format!(
                "{what}: a label name is empty"
            )));
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let node = &self.node;
        let batch = convert(
            request.into_inner(),
            node.cfg.limits.batch_records_max,
            super::now_ns(),
        )
        .inspect_err(|_| node.rejected())?;
        let n = batch.records.len() as u64;
        let reply = node
            .ingest(&batch.tenant, batch.records, batch.dedup)
            .await?;
        Ok(Response::new(PushResponse {
            first_lsn: reply.range.first,
            last_lsn: reply.range.last,
            records: n,
            batches: 1,
            duplicates: u64::from(reply.duplicate),
        }))
    }

    async fn push_stream(
        &self,
        request: Request<Streaming<PushRequest>>,
    ) -> Result<Response<PushResponse>, Status> {
        let node = &self.node;
        let mut input = request.into_inner();
        let mut out = PushResponse {
            first_lsn: u64::MAX,
            ..PushResponse::default()
        };
        while let Some(req) = input.next().await {
            let batch = convert(req?, node.cfg.limits.batch_records_max, super::now_ns())
                .inspect_err(|_| node.rejected())?;
            out.records += batch.records.len() as u64;
            let reply = node
                .ingest(&batch.tenant, batch.records, batch.dedup)
                .await?;
            if reply.range.first <= reply.range.last {
                out.first_lsn = out.first_lsn.min(reply.range.first);
                out.last_lsn = out.last_lsn.max(reply.range.last);
            }
            out.batches += 1;
            out.duplicates += u64::from(reply.duplicate);
        }
        if out.first_lsn == u64::MAX {
            out.first_lsn = out.last_lsn + 1;
        }
        Ok(Response::new(out))
    }
}
