//! Command-line interface: argument definitions and dispatch.

mod wal_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Heimdall: a self-hosted log database.
#[derive(Parser, Debug)]
#[command(name = "heimdall", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Work with the write-ahead log of a data directory directly.
    #[command(subcommand)]
    Wal(WalCommand),
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
    /// Append each line of FILEs (or stdin for `-`) as one durable record.
    Append {
        #[command(flatten)]
        opts: WalOpts,
        /// Input files; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Lines per append batch.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// Print records from an LSN on, one per line: `LSN<TAB>payload`.
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

pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Wal(WalCommand::Append { opts, files, batch }) => {
            wal_cmd::append(&opts, &files, batch)
        }
        Command::Wal(WalCommand::Dump { opts, from, limit }) => wal_cmd::dump(&opts, from, limit),
        Command::Wal(WalCommand::Stats { opts, json }) => wal_cmd::stats(&opts, json),
    }
}
