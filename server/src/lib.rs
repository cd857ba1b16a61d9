//! The wire side of the `heimdall` binary as a library: the generated gRPC ingest
//! API (`pb`), its strict codec, the conversions of client input into the
//! engine's records (`convert`) and the CPU scheduling of threads (`nice`). The
//! binary uses them from here (the load tools in `benches/` too); the fuzz targets
//! (`fuzz/`) reach the same code without building the server or Kafka (build with
//! `default-features = false`).

pub mod codec;
pub mod convert;
pub mod nice;

/// The generated gRPC ingest API (`proto/heimdall/v1/ingest.proto`).
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]
pub mod pb {
    tonic::include_proto!("heimdall.v1");
}
