//! `heimdall-gen`: writes a deterministic scale-up of the Loghub samples (see
//! `heimdall_benches::gen`). Example: 10M lines to a file, needle counts to stderr:
//!
//! `cargo run --release -p heimdall-benches --bin heimdall-gen -- --lines 10000000 --out /tmp/10m.log`

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use heimdall_benches::gen::{self, Format, Spec};

#[derive(ValueEnum, Debug, Clone, Copy)]
enum FormatArg {
    Raw,
    Jsonl,
}

#[derive(Parser, Debug)]
#[command(about = "Generate N log lines from the Loghub samples, deterministically")]
struct Args {
    /// Lines to generate.
    #[arg(long, default_value_t = 10_000_000)]
    lines: u64,
    /// RNG seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output form.
    #[arg(long, value_enum, default_value_t = FormatArg::Raw)]
    format: FormatArg,
    /// Output file (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Days of log time the run covers.
    #[arg(long, default_value_t = 7)]
    days: i64,
    /// The Loghub sample directory (default: ../shared/data/loghub).
    #[arg(long, default_value = "../shared/data/loghub")]
    loghub: PathBuf,
    /// Instead of the Loghub scale-up: a load balancer's log with many distinct
    /// hosts, addresses, ports and ids (`heimdall_benches::corpus::high_cardinality`;
    /// raw lines; `--days` and `--format` do not apply).
    #[arg(long)]
    high_cardinality: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.high_cardinality {
        let text = heimdall_benches::corpus::high_cardinality(args.lines as usize, args.seed);
        match &args.out {
            Some(path) => std::fs::write(path, &text)
                .with_context(|| format!("writing {}", path.display()))?,
            None => std::io::stdout().write_all(text.as_bytes())?,
        }
        eprintln!(
            "heimdall-gen: {} high-cardinality lines, {:.1} MB",
            args.lines,
            text.len() as f64 / 1e6
        );
        return Ok(());
    }
    let mut systems = gen::load_all(&args.loghub)
        .with_context(|| format!("loading Loghub samples from {}", args.loghub.display()))?;
    let spec = Spec {
        lines: args.lines,
        seed: args.seed,
        span_secs: args.days * 86_400,
        format: match args.format {
            FormatArg::Raw => Format::Raw,
            FormatArg::Jsonl => Format::Jsonl,
        },
    };
    let started = Instant::now();
    let summary = match &args.out {
        Some(path) => {
            let f = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut w = BufWriter::with_capacity(1 << 20, f);
            let s = gen::generate(&mut systems, &spec, &mut w)?;
            w.flush()?;
            s
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = BufWriter::with_capacity(1 << 20, stdout.lock());
            let s = gen::generate(&mut systems, &spec, &mut w)?;
            w.flush()?;
            s
        }
    };
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "heimdall-gen: {} lines, {:.1} MB in {secs:.1} s ({:.0} MB/s); needles: {}",
        summary.lines,
        summary.bytes as f64 / 1e6,
        summary.bytes as f64 / 1e6 / secs,
        summary
            .needles
            .iter()
            .map(|(n, c)| format!("{n}={c}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}
