//! WAL durable-throughput benchmark: N concurrent appenders, each appending batches of
//! small records with fsync on (SyncPolicy::PerGroup), for each backend. Reports
//! records/s, MB/s and p50/p99 batch-append latency, beside the disk's own sequential
//! write + fdatasync bandwidth measured with `dd` in the same run.
//!
//! `cargo run --release -p heimdall-benches --bin wal-throughput -- --help`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use wal::{BackendChoice, Wal, WalConfig};

#[derive(Parser, Debug)]
#[command(about = "Durable WAL throughput for 1..N concurrent appenders, both backends")]
struct Args {
    /// Directory to write in (on the disk being measured); emptied before each run.
    #[arg(long, default_value = "target/wal-bench")]
    dir: PathBuf,
    /// Appender counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    appenders: Vec<usize>,
    /// Backends to measure.
    #[arg(long, value_delimiter = ',', default_value = "pwrite,io_uring")]
    backends: Vec<String>,
    /// Records per append batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Bytes per record payload.
    #[arg(long, default_value_t = 200)]
    record_bytes: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// dd runs (the median is the reference bandwidth); 0 skips dd.
    #[arg(long, default_value_t = 3)]
    dd_runs: usize,
    /// Checkpoint modes to measure: `none` (the log only grows) and/or `steady`
    /// (everything durable is checkpointed every 50 ms, as the engine does after each
    /// memtable flush, so files get recycled).
    #[arg(long, value_delimiter = ',', default_value = "steady,none")]
    checkpoint: Vec<String>,
    /// Seconds of appends before measuring (lets a steady state form).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

struct Sample {
    mode: String,
    backend: String,
    appenders: usize,
    records_per_s: f64,
    mb_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn dd_bandwidth(dir: &Path) -> Result<f64> {
    let file = dir.join("dd.tmp");
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .args(["bs=1M", "count=1000", "conv=fdatasync"])
        .output()
        .context("running dd")?;
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&out.stderr);
    // "1048576000 bytes (1.0 GB, 1000 MiB) copied, 0.868277 s, 1.2 GB/s"
    let line = text
        .lines()
        .find(|l| l.contains("copied"))
        .context("dd output")?;
    let bytes: f64 = line.split(' ').next().unwrap_or("0").parse()?;
    let secs: f64 = line
        .split(", ")
        .find(|p| p.ends_with(" s"))
        .and_then(|p| p.trim_end_matches(" s").parse().ok())
        .context("dd seconds")?;
    Ok(bytes / secs / 1e6)
}

fn measure(args: &Args, mode: &str, backend: &str, appenders: usize) -> Result<Sample> {
    let choice = match backend {
        "pwrite" => BackendChoice::Pwrite,
        "io_uring" => BackendChoice::IoUring,
        other => bail!("unknown backend {other}"),
    };
    let dir = args.dir.join(format!("{backend}-{appenders}"));
    let _ = std::fs::remove_dir_all(&dir);
    let wal = Arc::new(Wal::open(
        &dir,
        WalConfig {
            backend: choice,
            ..WalConfig::default()
        },
    )?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let batch: Vec<Bytes> = (0..args.batch)
        .map(|i| Bytes::from(vec![b'a' + (i % 26) as u8; args.record_bytes]))
        .collect();
    let warmup = Duration::from_secs_f64(args.warmup);
    let deadline = warmup + Duration::from_secs_f64(args.seconds);
    let start = Instant::now();
    let checkpointer = (mode == "steady").then(|| {
        let wal = Arc::clone(&wal);
        rt.spawn(async move {
            while start.elapsed() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                wal.checkpoint(wal.durable_lsn()).await?;
            }
            Ok::<_, wal::WalError>(())
        })
    });
    let tasks: Vec<_> = (0..appenders)
        .map(|_| {
            let wal = Arc::clone(&wal);
            let batch = batch.clone();
            rt.spawn(async move {
                let mut lat = Vec::new();
                while start.elapsed() < deadline {
                    let t = Instant::now();
                    wal.append_batch(batch.clone()).await?;
                    if start.elapsed() > warmup {
                        lat.push(t.elapsed());
                    }
                }
                Ok::<_, wal::WalError>(lat)
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(rt.block_on(t)??);
    }
    let elapsed = (start.elapsed() - warmup).as_secs_f64();
    if let Some(c) = checkpointer {
        rt.block_on(c)??;
    }
    let st = wal.stats();
    eprintln!(
        "  {mode} {backend} x{appenders}: groups {} syncs {} avg group {:.0} KiB, avg write {:.2} ms, avg sync {:.2} ms",
        st.groups,
        st.syncs,
        st.bytes as f64 / st.groups.max(1) as f64 / 1024.0,
        st.write_nanos as f64 / st.groups.max(1) as f64 / 1e6,
        st.sync_nanos as f64 / st.syncs.max(1) as f64 / 1e6
    );
    drop(wal);
    let _ = std::fs::remove_dir_all(&dir);
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let records = (lat.len() * args.batch) as f64;
    Ok(Sample {
        mode: mode.to_string(),
        backend: backend.to_string(),
        appenders,
        records_per_s: records / elapsed,
        mb_per_s: records * args.record_bytes as f64 / elapsed / 1e6,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let mut dd = Vec::new();
    for _ in 0..args.dd_runs {
        dd.push(dd_bandwidth(&args.dir)?);
    }
    dd.sort_by(f64::total_cmp);
    let dd_median = dd.get(dd.len() / 2).copied();
    if let Some(m) = dd_median {
        let runs: Vec<String> = dd.iter().map(|v| format!("{v:.0}")).collect();
        println!(
            "dd bs=1M count=1000 conv=fdatasync: median {m:.0} MB/s (runs: {})",
            runs.join(", ")
        );
    }
    println!(
        "\n| checkpoints | backend | appenders | records/s | MB/s (payload) | vs dd | p50 batch ms | p99 batch ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for mode in &args.checkpoint {
        for backend in &args.backends {
            for &n in &args.appenders {
                let s = measure(&args, mode, backend, n)?;
                let ratio = dd_median.map_or("-".to_string(), |m| format!("{:.2}", s.mb_per_s / m));
                println!(
                    "| {} | {} | {} | {:.0} | {:.1} | {} | {:.2} | {:.2} |",
                    s.mode,
                    s.backend,
                    s.appenders,
                    s.records_per_s,
                    s.mb_per_s,
                    ratio,
                    s.p50_ms,
                    s.p99_ms
                );
            }
        }
    }
    // dd again after the run: the disk's bandwidth drifts, so bracket the measurement.
    let mut after = Vec::new();
    for _ in 0..args.dd_runs {
        after.push(dd_bandwidth(&args.dir)?);
    }
    if !after.is_empty() {
        let runs: Vec<String> = after.iter().map(|v| format!("{v:.0}")).collect();
        println!("\ndd after the run: {} MB/s", runs.join(", "));
    }
    Ok(())
}
