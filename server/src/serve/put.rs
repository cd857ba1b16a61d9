//! Flight `DoPut`: Arrow record batches in, records stored.
//!
//! The first message's descriptor command may be a JSON object:
//! `{"tenant": "t", "stream": {"service": "api"}, "stream_fields": ["host"]}`:
//! the tenant, labels for every record, and columns to store as stream labels
//! instead of fields. Columns: `_time` (timestamp of any unit, or int64
//! nanoseconds; absent or null: when received), `_msg` (string, required), `level`
//! (string); every other column is a field (string, integer, float or boolean; a
//! null is no value; `heimdall_server::convert`). Each batch is stored atomically and acknowledged with a
//! `PutResult` whose metadata is `{"records": n, "first_lsn": a, "last_lsn": b}`.

use std::sync::Arc;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightData, PutResult};
use engine::model::Tenant;
use futures::{StreamExt, TryStreamExt};
use heimdall_server::convert::{arrow_records, PutCommand};
use tonic::{Status, Streaming};

use super::Node;

/// Stores every batch of a `DoPut` stream; one result per batch.
pub(crate) async fn do_put(
    node: Arc<Node>,
    input: Streaming<FlightData>,
) -> Result<Vec<PutResult>, Status> {
    let mut input = input.map_err(FlightError::from).peekable();
    // The command rides on the first message's descriptor.
    let cmd = match std::pin::Pin::new(&mut input).peek().await {
        Some(Ok(first)) => match &first.flight_descriptor {
            Some(d) if !d.cmd.is_empty() => {
                serde_json::from_slice::<PutCommand>(&d.cmd).map_err(|e| {
                    Status::invalid_argument(format!(
                        "DoPut command is not {{\"tenant\", \"stream\", \"stream_fields\"}}: {e}"
                    ))
                })?
            }
            _ => PutCommand::default(),
        },
        _ => PutCommand::default(),
    };
    let tenant = Tenant::new(cmd.tenant.clone().unwrap_or_else(|| "default".into()))
        .map_err(|e| Status::invalid_argument(format!("tenant: {e}")))?;
    let mut batches = FlightRecordBatchStream::new_from_flight_data(input);
    let mut out = Vec::new();
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| Status::invalid_argument(format!("DoPut data: {e}")))?;
        let max = node.cfg.limits.batch_records_max;
        if batch.num_rows() > max {
            node.rejected();
            return Err(Status::invalid_argument(format!(
                "{} rows in one DoPut record batch, over the limit of {max} (limits.batch_records_max): send smaller batches",
                batch.num_rows()
            )));
        }
        let records =
            arrow_records(&batch, &cmd, super::now_ns()).inspect_err(|_| node.rejected())?;
        let reply = node.ingest(&tenant, records, None).await?;
        let meta = serde_json::json!({
            "records": batch.num_rows(),
            "first_lsn": reply.range.first,
            "last_lsn": reply.range.last,
        });
        out.push(PutResult {
            app_metadata: bytes::Bytes::from(meta.to_string()),
        });
    }
    Ok(out)
}
