//! The `heimdall` binary. Today it is the embedded CLI over a data directory; the
//! server (gRPC ingest, Arrow Flight queries, HTTP) joins it in later issues. This is the
//! only crate that uses `anyhow` and owns process concerns (exit codes, logging setup).

mod cli;
mod serve;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's allocator: ingest allocates every message on the
/// reading thread and frees it on a flush thread; glibc serialises those cross-thread
/// frees on its arena lock (measured in `docs/benchmarks.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HEIMDALL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heimdall: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
