//! Benchmark support: the deterministic data generator used by the benchmark tools,
//! and the gRPC client the load tools share.

pub mod gen;
pub mod grpc;
