//! Why a request was refused, whatever the transport: every refusal of the
//! ingest paths (engine errors, the server's own limits) is a [`Refusal`] first,
//! mapped once to a gRPC status ([`Refusal::status`]: gRPC ingest, Arrow Flight)
//! and once to an HTTP answer ([`Refusal::http`]: the JSON-lines insert), so the
//! transports cannot disagree on what a refusal means or whether to retry.

use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::engine::EngineError;
use tonic::Status;

/// What kind of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The request itself is wrong (a bad record, a batch over a limit): do not
    /// retry it as it is. gRPC `INVALID_ARGUMENT`, HTTP 400.
    Invalid,
    /// The node is busy or short of room: retry after `retry_after`. gRPC
    /// `RESOURCE_EXHAUSTED` with `grpc-retry-pushback-ms`, HTTP 429 with
    /// `Retry-After`.
    Overloaded,
    /// The node cannot serve it now (a failed flush, the object store down):
    /// retry later, maybe elsewhere. gRPC `UNAVAILABLE`, HTTP 503.
    Unavailable,
    /// The node's state forbids it (read-only, the bucket lease lost, a producer
    /// sequence too old to tell): retrying does not help. gRPC
    /// `FAILED_PRECONDITION`, HTTP 409.
    Precondition,
    /// Another request is doing the same right now (a producer's batch in
    /// flight): retry. gRPC `ABORTED`, HTTP 409.
    Conflict,
    /// A bug or an I/O failure on the node. gRPC `INTERNAL`, HTTP 500.
    Internal,
}

/// A refused request: its kind, the reason, and when to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) kind: Kind,
    pub(crate) message: String,
    pub(crate) retry_after: Option<Duration>,
}

impl Refusal {
    pub(crate) fn new(kind: Kind, message: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Busy: retry after `after`.
    pub(crate) fn overloaded(message: impl Into<String>, after: Duration) -> Refusal {
        Refusal {
            retry_after: Some(after),
            ..Refusal::new(Kind::Overloaded, message)
        }
    }

    /// The gRPC status.
    pub(crate) fn status(&self) -> Status {
        let msg = self.message.clone();
        let mut s = match self.kind {
            Kind::Invalid => Status::invalid_argument(msg),
            Kind::Overloaded => Status::resource_exhausted(msg),
            Kind::Unavailable => Status::unavailable(msg),
            Kind::Precondition => Status::failed_precondition(msg),
            Kind::Conflict => Status::aborted(msg),
            Kind::Internal => Status::internal(msg),
        };
        if let Some(after) = self.retry_after {
            let ms = u32::try_from(after.as_millis()).unwrap_or(u32::MAX);
            s.metadata_mut().insert(
                "grpc-retry-pushback-ms",
                tonic::metadata::MetadataValue::from(ms),
            );
        }
        s
    }

    /// The HTTP answer: the code, `{"error": message}`, and `Retry-After` (whole
    /// seconds, at least 1) when there is a hint.
    pub(crate) fn http(&self) -> Response {
        let code = match self.kind {
            Kind::Invalid => StatusCode::BAD_REQUEST,
            Kind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Precondition | Kind::Conflict => StatusCode::CONFLICT,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = serde_json::json!({ "error": self.message }).to_string();
        let mut resp = (code, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_millis().div_ceil(1000).max(1);
            if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        r.status()
    }
}

impl From<EngineError> for Refusal {
    fn from(e: EngineError) -> Refusal {
        let kind = match &e {
            EngineError::ReadOnly
            | EngineError::LeaseLost(_)
            | EngineError::LeaseHeld { .. }
            | EngineError::SequenceTooOld { .. } => Kind::Precondition,
            EngineError::DiskBudget { .. } | EngineError::DiskFull { .. } => {
                return Refusal::overloaded(e.to_string(), Duration::from_secs(5));
            }
            EngineError::Wal(wal::WalError::QueueFull { .. }) => {
                return Refusal::overloaded(e.to_string(), Duration::from_millis(100));
            }
            EngineError::Tier(_)
            | EngineError::Segment(engine::segment::SegmentError::Remote { .. })
            | EngineError::FlushFailed(_) => Kind::Unavailable,
            EngineError::SequenceInFlight { .. } => Kind::Conflict,
            EngineError::BatchTooLarge { .. }
            | EngineError::InvalidRecord { .. }
            | EngineError::Wal(wal::WalError::RecordTooLarge { .. }) => Kind::Invalid,
            _ => Kind::Internal,
        };
        Refusal::new(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_maps_to_one_grpc_code_and_one_http_code_with_the_same_hint() {
        let cases = [
            (Kind::Invalid, tonic::Code::InvalidArgument, 400),
            (Kind::Overloaded, tonic::Code::ResourceExhausted, 429),
            (Kind::Unavailable, tonic::Code::Unavailable, 503),
            (Kind::Precondition, tonic::Code::FailedPrecondition, 409),
            (Kind::Conflict, tonic::Code::Aborted, 409),
            (Kind::Internal, tonic::Code::Internal, 500),
        ];
        for (kind, grpc, http) in cases {
            let r = Refusal {
                retry_after: Some(Duration::from_millis(1500)),
                ..Refusal::new(kind, "why")
            };
            let s = r.status();
            assert_eq!((s.code(), s.message()), (grpc, "why"));
            assert_eq!(
                s.metadata()
                    .get("grpc-retry-pushback-ms")
                    .map(|v| v.to_str().ok()),
                Some(Some("1500"))
            );
            let h = r.http();
            assert_eq!(h.status().as_u16(), http);
            assert_eq!(
                h.headers()
                    .get(header::RETRY_AFTER)
                    .map(|v| v.to_str().ok()),
                Some(Some("2"))
            );
        }
        // Engine errors: the state's refusals are not "internal".
        assert_eq!(
            Refusal::from(EngineError::ReadOnly).kind,
            Kind::Precondition
        );
        assert_eq!(
            Refusal::from(EngineError::FlushFailed("x".into())).kind,
            Kind::Unavailable
        );
        let full = Refusal::from(EngineError::DiskFull {
            dir: "/d".into(),
            free: 1,
            reserve: 2,
        });
        assert_eq!(
            (full.kind, full.retry_after),
            (Kind::Overloaded, Some(Duration::from_secs(5)))
        );
    }
}
