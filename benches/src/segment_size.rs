//! Segment size on the Loghub samples (or any line files): bytes of columns, index and
//! footer per system, beside zstd -3 / -19 of the same raw text.
//!
//! `cargo run --release -p heimdall-benches --bin segment-size -- [--block-rows N] [--level L] [LOGHUB_DIR]`

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use engine::ingest::{parse_raw, IngestContext};
use engine::model::Tenant;
use engine::segment::{write_segment, SegmentOptions};

#[derive(Parser, Debug)]
struct Args {
    /// Rows per block.
    #[arg(long, default_value_t = 8192)]
    block_rows: usize,
    /// zstd level for column and index codecs.
    #[arg(long, default_value_t = 3)]
    level: i32,
    /// Loghub sample directory.
    #[arg(default_value = "../shared/data/loghub")]
    loghub: PathBuf,
}

const SYSTEMS: [&str; 10] = [
    "Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "Linux", "OpenSSH", "Spark", "Windows",
];

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let ctx = IngestContext {
        now_ns: 1_764_115_200_000_000_000,
        ..Default::default()
    };
    println!("| system | raw | zstd -3 | zstd -19 | segment | columns | _msg | index | (terms / integers / templates / directory) | footer+frame | segment / zstd -3 |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|");
    let mut all_text = String::new();
    let mut rows: Vec<(String, String)> = Vec::new();
    for s in SYSTEMS {
        let text = std::fs::read_to_string(args.loghub.join(s).join(format!("{s}_2k.log")))
            .with_context(|| format!("reading {s}"))?;
        all_text.push_str(&text);
        rows.push((s.to_string(), text));
    }
    rows.push(("all ten".to_string(), all_text));
    for (name, text) in rows {
        let records: Vec<_> = text.lines().map(|l| parse_raw(l, &ctx)).collect();
        let path = dir.path().join(format!("{name}.seg"));
        let opts = SegmentOptions {
            block_rows: args.block_rows,
            zstd_level: args.level,
            ..SegmentOptions::default()
        };
        let footer = write_segment(&path, &Tenant::default(), &records, &opts)?;
        let total = std::fs::metadata(&path)?.len();
        let columns: u64 = footer
            .columns
            .iter()
            .flat_map(|c| c.chunks.iter())
            .map(|c| u64::from(c.len))
            .sum();
        let msg: u64 = footer
            .columns
            .iter()
            .filter(|c| c.name == "_msg")
            .flat_map(|c| c.chunks.iter())
            .map(|c| u64::from(c.len))
            .sum();
        let index = footer.index.map_or(0, |i| i.len);
        let ix = engine::segment::SegmentReader::open(&path)?.index_sizes();
        let z3 = zstd::bulk::compress(text.as_bytes(), 3)?.len();
        let z19 = zstd::bulk::compress(text.as_bytes(), 19)?.len();
        println!(
            "| {name} | {} | {z3} | {z19} | {total} | {columns} | {msg} | {index} | {} / {} / {} ({}) / {} | {} | {:.2} |",
            text.len(),
            ix.terms,
            ix.integers,
            ix.templates,
            ix.template_count,
            ix.directory,
            total - columns - index,
            total as f64 / z3 as f64
        );
    }
    Ok(())
}
