//! `query-latency`: opens a data directory once, the way the server holds it, and
//! times queries against the open engine: the first run (cold reader cache; drop the
//! page cache before for a cold disk) and the p50 of `--runs` more. One JSON object
//! per query on stdout. `benches/query_bench.py` runs it beside chDB and DuckDB.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use engine::engine::{Engine, EngineConfig};
use engine::model::Tenant;
use query::Limits;

/// The server's allocator, so the numbers are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(about = "Time queries against a data directory opened once")]
struct Args {
    /// The data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Tenant.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Warm runs per query (after the first).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Time the query to Arrow record batches (what Flight DoGet streams) instead
    /// of to a table.
    #[arg(long)]
    arrow: bool,
    /// Read offloaded segments from this object store (`s3://bucket/prefix`, ...).
    #[arg(long)]
    store_url: Option<String>,
    /// An object-store option, `key=value` (`endpoint=http://127.0.0.1:9000`,
    /// `allow_http=true`, `access_key_id=...`); repeatable.
    #[arg(long = "store-option")]
    store_options: Vec<String>,
    /// The object store's disk cache (empty it first for a cold run).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Query deadline, seconds.
    #[arg(long, default_value_t = 30)]
    deadline_s: u64,
    /// Queries, run in order.
    #[arg(required = true)]
    queries: Vec<String>,
}

/// Object-store requests and bytes so far (`null` without a store).
fn store_counts(engine: &Engine) -> serde_json::Value {
    use std::sync::atomic::Ordering::Relaxed;
    engine.tier().map_or(serde_json::Value::Null, |t| {
        let c = &t.store.counters;
        serde_json::json!({
            "gets": c.gets.load(Relaxed),
            "get_bytes": c.get_bytes.load(Relaxed),
            "retries": c.retries.load(Relaxed),
        })
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `run` once (the first, cold run) and `runs` more times; the first answer,
/// its time and the p50 of the others, in ms. Every rerun must answer the same.
fn time_runs<T: PartialEq>(
    q: &str,
    runs: usize,
    run: impl Fn() -> Result<T>,
) -> Result<(T, f64, f64)> {
    let t = Instant::now();
    let first = run()?;
    let first_ms = ms(t.elapsed());
    let mut warm = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let again = run()?;
        warm.push(ms(t.elapsed()));
        anyhow::ensure!(
            again == first,
            "query {q:?} answered differently on a rerun"
        );
    }
    warm.sort_by(f64::total_cmp);
    let p50 = warm.get(warm.len() / 2).copied().unwrap_or(first_ms);
    Ok((first, first_ms, p50))
}

fn main() -> Result<()> {
    let a = Args::parse();
    let t0 = Instant::now();
    let mut cfg = EngineConfig::new(&a.data_dir);
    if let Some(url) = &a.store_url {
        let cache = a
            .cache_dir
            .clone()
            .unwrap_or_else(|| a.data_dir.join("cache"));
        let mut t = engine::tier::TierConfig::new(url.clone(), cache);
        for o in &a.store_options {
            let (k, v) = o
                .split_once('=')
                .with_context(|| format!("--store-option {o:?}: expected key=value"))?;
            t.options.push((k.to_string(), v.to_string()));
        }
        cfg.tier = Some(t);
    }
    let engine = Engine::open(cfg).with_context(|| format!("open {}", a.data_dir.display()))?;
    let open_ms = ms(t0.elapsed());
    let tenant = Tenant::new(a.tenant.as_str())?;
    let limits = Limits {
        deadline: Duration::from_secs(a.deadline_s),
        ..Limits::default()
    };
    for q in &a.queries {
        if a.arrow {
            time_arrow(&engine, &tenant, q, &limits, a.runs, open_ms)?;
            continue;
        }
        let (first, first_ms, p50) = time_runs(q, a.runs, || {
            Ok(query::query(&engine, &tenant, q, &limits)?)
        })?;
        let cells: Vec<Vec<String>> = first
            .rows
            .iter()
            .take(20)
            .map(|r| r.iter().map(|c| c.text().unwrap_or_default()).collect())
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "query": q,
                "open_ms": open_ms,
                "first_ms": first_ms,
                "p50_ms": p50,
                "rows": first.rows.len(),
                "head": cells,
                "store": store_counts(&engine),
            })
        );
    }
    Ok(())
}

/// Times `q` to Arrow record batches (Flight's batch size), the way DoGet runs it.
fn time_arrow(
    engine: &Engine,
    tenant: &Tenant,
    q: &str,
    limits: &Limits,
    runs: usize,
    open_ms: f64,
) -> Result<()> {
    let (first, first_ms, p50) = time_runs(q, runs, || {
        Ok(query::query_batches(engine, tenant, q, limits, 64 * 1024)?)
    })?;
    let rows: usize = first.iter().map(|b| b.num_rows()).sum();
    println!(
        "{}",
        serde_json::json!({
            "query": q,
            "arrow": true,
            "open_ms": open_ms,
            "first_ms": first_ms,
            "p50_ms": p50,
            "rows": rows,
        })
    );
    Ok(())
}
