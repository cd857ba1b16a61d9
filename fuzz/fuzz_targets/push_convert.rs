//! Fuzz the gRPC ingest path: protobuf bytes decoded as a `heimdall.v1.PushRequest`
//! (prost, as the server's codec does), then validated and converted by
//! `heimdall_server::convert::push`, the function the server runs.
//!
//! Nothing panics; an accepted push keeps every record, within the limits, and
//! its WAL payload decodes to the same records; a push over the record limit is
//! refused.
#![no_main]

mod common;

use heimdall_server::convert;
use heimdall_server::pb::PushRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message;

const RECORDS_MAX: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = PushRequest::decode(data) else {
        return;
    };
    let n = req.records.len();
    match convert::push(req, RECORDS_MAX, 42) {
        Ok(batch) => {
            assert!(n <= RECORDS_MAX, "{n} records accepted over the limit");
            assert_eq!(batch.records.len(), n);
            let producer = batch.dedup.as_ref().map(|(p, s)| (p.as_str(), *s));
            common::check_accepted(&batch.tenant, &batch.records, producer);
        }
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(!status.message().is_empty());
        }
    }
});
