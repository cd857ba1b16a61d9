//! `ingest-under-query`: do heavy queries slow ingest down? Against a running
//! `heimdall serve`:
//! 1. preload `--preload` lines (batches of 1,000) from `--input`, each record with
//!    a `session` field of `--sessions` distinct values (a high-cardinality field);
//! 2. *alone*: one gRPC client pushes `--batch` lines `--pushes` times a second for
//!    `--seconds`, timing every acknowledgement (an answer means durable in the WAL);
//! 3. *under queries*: the same, while `--query-clients` Arrow Flight clients run the
//!    `--query` texts in turn, each as soon as its last answer is in (by default a
//!    regex over `_msg` and `top 10 by (session)`).
//!
//! Prints one JSON report: acknowledgement p50/p99/max per phase, the p99's rise in
//! percent, and the queries' count and latency.
//!
//! ```sh
//! target/release/heimdall serve --config heimdall.toml &
//! target/release/ingest-under-query --connect 127.0.0.1:7400 --input /tmp/gen.log
//! ```

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arrow_flight::{FlightClient, Ticket};
use clap::Parser;
use engine::ingest::{parse_raw, IngestContext};
use futures::TryStreamExt;
use heimdall_benches::mem::peak_rss_mb;
use heimdall_server::convert::to_pb;
use heimdall_server::pb;

#[derive(Parser, Debug)]
#[command(about = "Time gRPC ingest acknowledgements alone and while heavy queries run")]
struct Args {
    /// gRPC (and Arrow Flight) address of the server.
    #[arg(long, default_value = "127.0.0.1:7400")]
    connect: String,
    /// Raw log lines (e.g. from heimdall-gen).
    #[arg(long)]
    input: PathBuf,
    /// Lines stored before the timed phases.
    #[arg(long, default_value_t = 200_000)]
    preload: usize,
    /// Distinct values of the `session` field.
    #[arg(long, default_value_t = 50_000)]
    sessions: u64,
    /// Seconds per timed phase.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Pushes a second in the timed phases.
    #[arg(long, default_value_t = 50)]
    pushes: u32,
    /// Lines per timed push.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Query clients in the second phase.
    #[arg(long, default_value_t = 4)]
    query_clients: usize,
    /// Query texts the clients run in turn (repeat the flag; default: a regex and a
    /// top 10 by `session`).
    #[arg(long)]
    query: Vec<String>,
    /// Server process id, to report its peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The CPU time slice this client's threads ask for, in microseconds (0: the
    /// kernel's default), as the server's `[limits] latency_slice`: the client
    /// shares the cores with the server's queries here, which a client on another
    /// host would not.
    #[arg(long, default_value_t = 0)]
    latency_slice_us: u64,
}

/// A timed phase: every acknowledgement's latency, and the slowest five as
/// (seconds into the phase, milliseconds).
type Phase = (Vec<Duration>, Vec<(f64, f64)>);

/// p50, p90, p99 and max of `lat`, in milliseconds.
fn summary(mut lat: Vec<Duration>) -> serde_json::Value {
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    serde_json::json!({
        "n": lat.len(),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    })
}

fn main() -> Result<()> {
    let a = Args::parse();
    // Before the runtime's threads start: they inherit it.
    heimdall_server::nice::set_latency_slice(Duration::from_micros(a.latency_slice_us));
    let queries = if a.query.is_empty() {
        vec![
            r#"~"(?i)(fail|error)\w*\s+\S+\s+\d{3,}""#.to_string(),
            "* | top 10 by (session)".to_string(),
        ]
    } else {
        a.query.clone()
    };
    let ctx = IngestContext {
        now_ns: 0,
        ..IngestContext::default()
    };
    let f = std::fs::File::open(&a.input).with_context(|| format!("open {}", a.input.display()))?;
    let mut records = Vec::new();
    for (i, line) in std::io::BufReader::with_capacity(1 << 20, f)
        .lines()
        .enumerate()
    {
        if records.len() >= a.preload + 100_000 {
            break;
        }
        let mut r = parse_raw(&line?, &ctx);
        // A spread-out id, as request or session ids are.
        let s = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % a.sessions.max(1);
        r.fields.push((
            "session".to_string(),
            engine::model::Value::Str(format!("s{s:06}")),
        ));
        records.push(to_pb(r));
    }
    anyhow::ensure!(
        records.len() > a.preload,
        "the input holds {} lines, need more than --preload {}",
        records.len(),
        a.preload
    );
    let timed = records.split_off(a.preload);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let url = format!("http://{}", a.connect);
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let report = rt.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(url.clone())?
            .connect()
            .await
            .context("connect")?;
        let mut client =
            pb::ingest_client::IngestClient::new(ch).max_encoding_message_size(64 << 20);
        let producer = format!("under-query-{}-{run}", std::process::id());
        let mut seq = 0u64;
        let t = Instant::now();
        for chunk in records.chunks(1000) {
            seq += 1;
            client
                .push(pb::PushRequest {
                    producer_id: producer.clone(),
                    sequence: seq,
                    records: chunk.to_vec(),
                    ..Default::default()
                })
                .await
                .context("preload push")?;
        }
        let preload_s = t.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(2)).await;

        // One timed phase: `--pushes` a second for `--seconds`, paced (behind
        // schedule, at once).
        let mut next = timed.chunks(a.batch.max(1)).cycle();
        let mut phase = async |client: &mut pb::ingest_client::IngestClient<_>,
                               seq: &mut u64|
               -> Result<Phase> {
            let every = Duration::from_secs_f64(1.0 / f64::from(a.pushes.max(1)));
            let start = tokio::time::Instant::now();
            let n = a.seconds * u64::from(a.pushes.max(1));
            let mut lat = Vec::with_capacity(n as usize);
            let mut when = Vec::with_capacity(n as usize);
            for i in 0..n {
                tokio::time::sleep_until(start + every * i as u32).await;
                *seq += 1;
                let req = pb::PushRequest {
                    producer_id: producer.clone(),
                    sequence: *seq,
                    records: next.next().map(<[_]>::to_vec).unwrap_or_default(),
                    ..Default::default()
                };
                let t = Instant::now();
                client.push(req).await.context("timed push")?;
                lat.push(t.elapsed());
                when.push((
                    start.elapsed().as_secs_f64(),
                    t.elapsed().as_secs_f64() * 1e3,
                ));
            }
            // The slowest five, with when they were sent (seconds into the phase).
            when.sort_by(|a, b| b.1.total_cmp(&a.1));
            when.truncate(5);
            Ok((lat, when))
        };
        let alone = phase(&mut client, &mut seq).await?;
        let alone_slowest = alone.1.clone();

        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for c in 0..a.query_clients {
            let (url, stop, queries) = (url.clone(), Arc::clone(&stop), queries.clone());
            clients.push(tokio::spawn(async move {
                let ch = tonic::transport::Endpoint::from_shared(url)?
                    .connect()
                    .await?;
                let mut fc = FlightClient::new(ch);
                let mut done: Vec<(usize, Duration, usize)> = Vec::new();
                let mut k = c;
                while !stop.load(Ordering::Relaxed) {
                    let i = k % queries.len();
                    k += 1;
                    let t = Instant::now();
                    let batches: Vec<_> = fc
                        .do_get(Ticket::new(queries[i].clone()))
                        .await
                        .with_context(|| format!("query {}", queries[i]))?
                        .try_collect()
                        .await?;
                    let rows = batches.iter().map(|b| b.num_rows()).sum();
                    done.push((i, t.elapsed(), rows));
                }
                Ok::<_, anyhow::Error>(done)
            }));
        }
        // Let every client get its first query going.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = phase(&mut client, &mut seq).await?;
        stop.store(true, Ordering::Relaxed);
        let mut per_query: Vec<Vec<Duration>> = vec![Vec::new(); queries.len()];
        let mut rows = vec![0usize; queries.len()];
        for c in clients {
            for (i, d, n) in c.await?? {
                per_query[i].push(d);
                rows[i] = n;
            }
        }
        let (mut alone, busy) = (summary(alone.0), {
            let mut b = summary(busy.0);
            b["slowest"] = serde_json::json!(busy.1);
            b
        });
        alone["slowest"] = serde_json::json!(alone_slowest);
        let rise = |k: &str| {
            let (x, y) = (
                alone[k].as_f64().unwrap_or(0.0),
                busy[k].as_f64().unwrap_or(0.0),
            );
            if x > 0.0 {
                (y / x - 1.0) * 100.0
            } else {
                0.0
            }
        };
        let p99_rise = rise("p99_ms");
        let p50_rise = rise("p50_ms");
        Ok::<_, anyhow::Error>(serde_json::json!({
            "preload_lines": a.preload,
            "preload_seconds": preload_s,
            "pushes_per_s": a.pushes,
            "lines_per_push": a.batch,
            "seconds_per_phase": a.seconds,
            "query_clients": a.query_clients,
            "ack_alone": alone,
            "ack_under_queries": busy,
            "p50_rise_percent": p50_rise,
            "p99_rise_percent": p99_rise,
            "queries": queries.iter().zip(per_query).zip(rows).map(|((q, lat), rows)| {
                let mut s = summary(lat);
                s["query"] = serde_json::json!(q);
                s["rows"] = serde_json::json!(rows);
                s
            }).collect::<Vec<_>>(),
            "server_peak_rss_mb": a.server_pid.and_then(peak_rss_mb),
        }))
    })?;
    println!("{report}");
    Ok(())
}
