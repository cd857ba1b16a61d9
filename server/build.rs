//! Generates the gRPC ingest API (`proto/heimdall/v1/ingest.proto`) at build time.
//! The .proto is compiled by `protox` (a protobuf compiler written in Rust), so no
//! `protoc` has to be installed: `cargo build` is the only step.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/heimdall/v1/ingest.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Malformed requests are INVALID_ARGUMENT (src/codec.rs).
        .codec_path("crate::codec::StrictCodec")
        .compile_fds(fds)?;
    Ok(())
}
