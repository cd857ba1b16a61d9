//! The gRPC ingest service `heimdall.v1.Ingest` (proto/heimdall/v1/ingest.proto).

use std::sync::Arc;

use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::Node;
use heimdall_server::convert;
use heimdall_server::pb::ingest_server::Ingest;
use heimdall_server::pb::{PushRequest, PushResponse};

/// The ingest service of a node.
#[derive(Clone)]
pub(crate) struct IngestService {
    pub(crate) node: Arc<Node>,
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let node = &self.node;
        let batch = convert::push(
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
            let batch = convert::push(req?, node.cfg.limits.batch_records_max, super::now_ns())
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
