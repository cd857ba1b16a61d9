//! Command-line interface: argument definitions and dispatch.

mod data;
mod query_cmd;
mod remote;
mod templates_cmd;
mod wal_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Heimdall: a self-hosted log database.
#[derive(Parser, Debug)]
#[command(name = "heimdall", version, about, long_about = None)]
pub(crate) struct Cli {
    /// TOML config file (docs/server.md): `serve` runs by it; the embedded
    /// commands take its `[object_store]` to read offloaded segments.
    #[arg(long, global = true, env = "HEIMDALL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Store log lines from files (or stdin) in a data directory: durable through the
    /// WAL, in segments on exit.
    Ingest {
        /// Data directory.
        #[arg(long, default_value = "./heimdall-data", env = "HEIMDALL_DATA_DIR")]
        data_dir: PathBuf,
        /// Input format.
        #[arg(long, value_enum, default_value_t = FormatArg::Raw)]
        format: FormatArg,
        /// Tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Stream labels for every record: `key=value,key=value`.
        #[arg(long, default_value = "")]
        stream: String,
        /// What to do with a bad line (malformed JSON, invalid UTF-8, over the size limit).
        #[arg(long, value_enum, default_value_t = OnError::Abort)]
        on_error: OnError,
        /// Send the records to the server at this gRPC address (host:port) instead
        /// of storing them in a data directory.
        #[arg(long)]
        connect: Option<String>,
        /// Input files; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Records whose message contains all the words, newest first.
    Search {
        /// Data directory.
        #[arg(long, default_value = "./heimdall-data", env = "HEIMDALL_DATA_DIR")]
        data_dir: PathBuf,
        /// Tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Most records to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Output: `text` (time, tab, message) or `jsonl` (one JSON object per record).
        #[arg(long, value_enum, default_value_t = OutputArg::Text)]
        output: OutputArg,
        /// Words (ASCII case is ignored).
        #[arg(required = true)]
        words: Vec<String>,
    },
    /// Merge each day's small segments into one (per tenant).
    Compact {
        /// Data directory.
        #[arg(long, default_value = "./heimdall-data", env = "HEIMDALL_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Flush, then move every local segment of a data directory to the object store
    /// of `--config FILE` (its `[object_store]`): upload, verify, list, delete.
    Offload {
        /// Data directory.
        #[arg(long, default_value = "./heimdall-data", env = "HEIMDALL_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Check a data directory without changing it: the manifest, every listed
    /// segment's checksums and counts, the template file, the WAL files. Exits 1
    /// when something is wrong.
    Verify {
        /// Data directory.
        #[arg(long, default_value = "./heimdall-data", env = "HEIMDALL_DATA_DIR")]
        data_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a missing or damaged manifest from the segments' own footers and the
    /// WAL (the server must be stopped). Damaged or superseded segment files are
    /// moved to `quarantine/`, never deleted.
    Repair {
        /// Data directory.
        #[arg(long, default_value = "./heimdall-data", env = "HEIMDALL_DATA_DIR")]
        data_dir: PathBuf,
        /// Rebuild even when the manifest is present and parses.
        #[arg(long)]
        force: bool,
    },
    /// Records, segments and bytes on disk of a data directory.
    Stats {
        /// Data directory.
        #[arg(long, default_value = "./heimdall-data", env = "HEIMDALL_DATA_DIR")]
        data_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a query (docs/query-language.md) over a data directory.
    Query {
        /// Data directory.
        #[arg(long, default_value = "./heimdall-data", env = "HEIMDALL_DATA_DIR")]
        data_dir: PathBuf,
        /// Tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = query_cmd::QueryOutput::Table)]
        output: query_cmd::QueryOutput,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
        /// Most matching records a query that returns records may hold before its
        /// pipes (`| limit N` first is not bound by it).
        #[arg(long, default_value_t = 1_000_000)]
        max_rows: usize,
        /// Ask the server at this gRPC address (host:port) over Arrow Flight instead
        /// of reading a data directory (its limits apply, not --max-rows).
        #[arg(long)]
        connect: Option<String>,
        /// The query, e.g. `error _time:1h | stats count() by (level)`.
        query: String,
    },
    /// The log templates mined from a tenant's messages (`_template` values), most
    /// frequent first: id, count, first and last seen, text (`<*>` marks a
    /// variable part).
    Templates {
        /// Data directory.
        #[arg(long, default_value = "./heimdall-data", env = "HEIMDALL_DATA_DIR")]
        data_dir: PathBuf,
        /// Tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Most templates to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print the JSON the `templates` Flight action returns.
        #[arg(long)]
        json: bool,
        /// Ask the server at this gRPC address (host:port) instead of reading a
        /// data directory.
        #[arg(long)]
        connect: Option<String>,
    },
    /// A running server's background tasks (flush, offload, retention, lease, Kafka
    /// sources): state, runs, failures, last duration and error. Tasks run in a
    /// server only; this asks one (default: the local default address).
    Tasks {
        /// The server's gRPC address (host:port).
        #[arg(long, default_value = "127.0.0.1:7400", env = "HEIMDALL_CONNECT")]
        connect: String,
        /// Print the JSON the `tasks` Flight action returns.
        #[arg(long)]
        json: bool,
    },
    /// Run the server: gRPC ingest and Arrow Flight queries on one address, HTTP
    /// (health, metrics, JSON-lines insert) on another. Defaults: data in
    /// ./heimdall-data, gRPC 127.0.0.1:7400, HTTP 127.0.0.1:7401.
    Serve {
        /// Data directory.
        #[arg(long, env = "HEIMDALL_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// gRPC (ingest + Flight) listen address, host:port (port 0: any free port).
        #[arg(long, env = "HEIMDALL_GRPC_ADDR")]
        grpc_addr: Option<String>,
        /// HTTP listen address, host:port.
        #[arg(long, env = "HEIMDALL_HTTP_ADDR")]
        http_addr: Option<String>,
        /// Serve the data in the configured object store, read-only: the manifest
        /// comes from the bucket (a node with an empty data directory answers
        /// queries); nothing is ingested, offloaded or deleted.
        #[arg(long)]
        read_only: bool,
    },
    /// Work with the write-ahead log of a data directory directly.
    #[command(subcommand)]
    Wal(WalCommand),
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum FormatArg {
    Raw,
    Jsonl,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum OnError {
    Skip,
    Abort,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum OutputArg {
    Text,
    Jsonl,
}

/// Options shared by the `wal` subcommands.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct WalOpts {
    /// Data directory; the WAL lives in its `wal/` subdirectory.
    #[arg(long, default_value = "./heimdall-data", env = "HEIMDALL_DATA_DIR")]
    data_dir: PathBuf,
    /// I/O backend: io_uring when available (auto), or forced.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum BackendArg {
    Auto,
    IoUring,
    Pwrite,
}

#[derive(Subcommand, Debug)]
enum WalCommand {
    /// Print the WAL's record batches from an LSN on, one JSON line per record:
    /// `{"lsn":..,"tenant":..,"record":{..}}` (what recovery would replay).
    Dump {
        #[command(flatten)]
        opts: WalOpts,
        /// First LSN to print (default: the oldest retained).
        #[arg(long)]
        from: Option<u64>,
        /// Print at most this many records.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Open (recovering if needed) and print what the WAL holds.
    Stats {
        #[command(flatten)]
        opts: WalOpts,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Parses stream labels written `key=value,key=value`.
pub(crate) fn parse_labels(s: &str) -> anyhow::Result<engine::model::Labels> {
    data::parse_stream(s)
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    data::set_config_file(config.clone());
    match cli.command {
        Command::Ingest {
            data_dir,
            format,
            tenant,
            stream,
            on_error,
            connect,
            files,
        } => {
            let args = data::IngestArgs {
                data_dir: &data_dir,
                files: &files,
                format,
                tenant: &tenant,
                stream: &stream,
                on_error,
            };
            match connect {
                Some(addr) => remote::ingest(&addr, args),
                None => data::ingest(args),
            }
        }
        Command::Search {
            data_dir,
            tenant,
            limit,
            output,
            words,
        } => data::search(
            &data_dir,
            &tenant,
            limit,
            matches!(output, OutputArg::Jsonl),
            &words,
        ),
        Command::Stats { data_dir, json } => data::stats(&data_dir, json),
        Command::Query {
            data_dir,
            tenant,
            output,
            timeout,
            max_rows,
            connect,
            query,
        } => query_cmd::run(query_cmd::QueryArgs {
            connect: connect.as_deref(),
            data_dir: &data_dir,
            tenant: &tenant,
            output,
            timeout: std::time::Duration::try_from_secs_f64(timeout)
                .map_err(|_| anyhow::anyhow!("--timeout {timeout}: not a number of seconds"))?,
            max_rows,
            text: &query,
        }),
        Command::Templates {
            data_dir,
            tenant,
            limit,
            json,
            connect,
        } => templates_cmd::run(&data_dir, connect.as_deref(), &tenant, limit, json),
        Command::Tasks { connect, json } => templates_cmd::tasks(&connect, json),
        Command::Compact { data_dir } => data::compact(&data_dir),
        Command::Verify { data_dir, json } => data::verify(&data_dir, json),
        Command::Repair { data_dir, force } => data::repair(&data_dir, force),
        Command::Offload { data_dir } => data::offload(&data_dir),
        Command::Serve {
            data_dir,
            grpc_addr,
            http_addr,
            read_only,
        } => {
            let cfg = crate::serve::Config::load(
                config.as_deref(),
                &crate::serve::Overrides {
                    data_dir,
                    grpc_addr,
                    http_addr,
                    read_only,
                },
            )?;
            crate::serve::run(cfg)
        }
        Command::Wal(WalCommand::Dump { opts, from, limit }) => wal_cmd::dump(&opts, from, limit),
        Command::Wal(WalCommand::Stats { opts, json }) => wal_cmd::stats(&opts, json),
    }
}
