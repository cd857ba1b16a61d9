//! Generates the gRPC ingest client of `server/proto/heimdall/v1/ingest.proto` for
//! the load generator (the same way the server's build does: protox, no protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../server/proto/heimdall/v1/ingest.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["../server/proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
