//! `template-eval`: the template miner (`engine::template`) on the ten Loghub
//! systems: grouping accuracy exactly as the logparser benchmark computes it, each
//! line's `Content` column fed as `_msg`, beside Drain's published numbers; then the
//! miner's speed over the whole corpus (`--repeat` passes, one core) and peak memory.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use engine::template::{grouping_accuracy, Miner, MinerConfig};

/// The server's allocator, so the numbers are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(about = "Template mining accuracy and speed on the Loghub samples")]
struct Args {
    /// The Loghub directory (one subdirectory per system).
    #[arg(long, default_value = "../shared/data/loghub")]
    loghub: PathBuf,
    /// Least share of equal token positions to join a template.
    #[arg(long, default_value_t = 0.75)]
    similarity: f64,
    /// Distinct words a position may hold in sibling templates before they fold.
    #[arg(long, default_value_t = 3)]
    siblings_max: usize,
    /// Passes over the whole corpus for the speed figure.
    #[arg(long, default_value_t = 200)]
    repeat: usize,
    /// Also time one pass over this file's whole lines (what `heimdall ingest`
    /// stores as `_msg` of raw input, headers included), e.g. `heimdall-gen` output.
    #[arg(long)]
    raw: Option<PathBuf>,
}

/// Drain's grouping accuracy (He et al., ICSE-SEIP 2019).
const SYSTEMS: [(&str, f64); 10] = [
    ("HDFS", 0.998),
    ("Hadoop", 0.948),
    ("Spark", 0.920),
    ("BGL", 0.963),
    ("HPC", 0.887),
    ("Windows", 0.997),
    ("Linux", 0.690),
    ("Android", 0.911),
    ("Apache", 1.0),
    ("OpenSSH", 0.788),
];

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let cfg = MinerConfig {
        similarity: a.similarity,
        siblings_max: a.siblings_max,
        ..MinerConfig::default()
    };
    let mut corpus: Vec<String> = Vec::new();
    let mut sum = 0.0;
    let mut worst = f64::MAX;
    println!("| system | Heimdall | Drain (published) | templates | true events |");
    println!("|---|---:|---:|---:|---:|");
    for (system, drain) in SYSTEMS {
        let path = a
            .loghub
            .join(system)
            .join(format!("{system}_2k.log_structured.csv"));
        let mut r =
            csv::Reader::from_path(&path).with_context(|| format!("reading {}", path.display()))?;
        let headers = r.headers()?.clone();
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .with_context(|| format!("no {name} column in {}", path.display()))
        };
        let (content, event) = (col("Content")?, col("EventId")?);
        let mut truth = Vec::new();
        let mut pred = Vec::new();
        let mut m = Miner::new(cfg.clone());
        for rec in r.records() {
            let rec = rec?;
            let msg = rec.get(content).unwrap_or("");
            pred.push(m.mine(msg, 0));
            truth.push(rec.get(event).unwrap_or("").to_string());
            corpus.push(msg.to_string());
        }
        // Ids folded into another template count as that one (as queries resolve them).
        let pred: Vec<u64> = pred.into_iter().map(|id| m.canonical(id)).collect();
        let acc = grouping_accuracy(&truth, &pred);
        let events = truth.iter().collect::<std::collections::HashSet<_>>().len();
        println!(
            "| {system} | {acc:.3} | {drain:.3} | {} | {events} |",
            m.templates().len()
        );
        sum += acc;
        worst = worst.min(acc);
    }
    let mean = sum / SYSTEMS.len() as f64;
    let drain_mean = SYSTEMS.iter().map(|s| s.1).sum::<f64>() / SYSTEMS.len() as f64;
    println!("| **mean** | **{mean:.3}** | {drain_mean:.3} | | |");
    println!("\nlowest system: {worst:.3}");
    // Speed: one miner over the whole corpus, `repeat` times (after the first pass
    // every template exists, as in a long-running server).
    let mut m = Miner::new(cfg);
    let t = Instant::now();
    let mut n = 0u64;
    let mut check = 0u64;
    for pass in 0..a.repeat {
        for (i, msg) in corpus.iter().enumerate() {
            check = check.wrapping_add(m.mine(msg, (pass * corpus.len() + i) as i64));
            n += 1;
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "speed: {n} lines in {s:.2} s = {:.0} lines/s on one core ({} templates, peak RSS {} KiB, checksum {check})",
        n as f64 / s,
        m.templates().len(),
        peak_rss_kib()
    );
    if let Some(path) = &a.raw {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut m = Miner::new(MinerConfig {
            similarity: a.similarity,
            siblings_max: a.siblings_max,
            ..MinerConfig::default()
        });
        let t = Instant::now();
        let (mut n, mut check) = (0u64, 0u64);
        for (i, line) in text.lines().enumerate() {
            check = check.wrapping_add(m.mine(line, i as i64));
            n += 1;
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "raw lines of {}: {n} lines ({:.1} MB) in {s:.2} s = {:.0} lines/s, {:.1} MB/s on one core ({} templates, peak RSS {} KiB, checksum {check})",
            path.display(),
            text.len() as f64 / 1e6,
            n as f64 / s,
            text.len() as f64 / 1e6 / s,
            m.templates().len(),
            peak_rss_kib()
        );
    }
    Ok(())
}
