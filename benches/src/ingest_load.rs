//! `ingest-load`: pushes log lines to a running `heimdall serve` over gRPC from N
//! concurrent clients and reports sustained MB/s and lines/s, the acknowledgement
//! latency (p50 / p99 / max of every push: an answer means durable in the WAL) and,
//! with `--server-pid`, the server's peak RSS. `--doget QUERY` then times an Arrow
//! Flight DoGet of the query's result (rows/s).
//!
//! Overload runs: `--rate LINES` offers that many lines a second in all (paced;
//! behind schedule, a client sends at once, so the offered load never relaxes),
//! `--seconds S` pushes for S seconds (the input, at most `--lines`, parsed once
//! and its batches sent round and round), and
//! `--timeline` prints one JSON line a second (lines taken, pushbacks, the server's
//! RSS). A push refused with `RESOURCE_EXHAUSTED` is retried after the server's
//! `grpc-retry-pushback-ms` hint (counted: refusals without a hint are reported).
//!
//! ```sh
//! target/release/heimdall serve --data-dir /tmp/hd-load &
//! target/release/ingest-load --connect 127.0.0.1:7400 --input /tmp/gen10m.log \
//!     --clients 8 --server-pid $! --doget '* | limit 1000000'
//! ```

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arrow_flight::{FlightClient, Ticket};
use clap::Parser;
use engine::ingest::{parse_raw, IngestContext};
use futures::TryStreamExt;
use heimdall_benches::mem::{peak_rss_mb, status_mb};
use heimdall_server::convert::to_pb;
use heimdall_server::pb;

#[derive(Parser, Debug)]
#[command(about = "Push log lines to heimdall serve over gRPC and measure")]
struct Args {
    /// gRPC address of the server.
    #[arg(long, default_value = "127.0.0.1:7400")]
    connect: String,
    /// Raw log lines to push (e.g. from heimdall-gen).
    #[arg(long)]
    input: PathBuf,
    /// Concurrent clients (each with its own connection, one push in flight).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Lines per push.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Stop after this many lines (0: the whole input).
    #[arg(long, default_value_t = 0)]
    lines: u64,
    /// Server process id, to report its peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// After the load, time a Flight DoGet of this query.
    #[arg(long)]
    doget: Option<String>,
    /// Lines offered per second in all (0: as fast as the server answers).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Push for this many seconds, sending the input's batches (at most --lines)
    /// round and round (0: once through the input).
    #[arg(long, default_value_t = 0)]
    seconds: u64,
    /// Print one JSON line per second: lines taken, pushbacks, server RSS.
    #[arg(long)]
    timeline: bool,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let url = format!("http://{}", a.connect);
    // Parsing runs on its own thread and hands batches (and their bytes) over.
    let (tx, rx) = async_channel(a.clients * 2);
    let input = a.input.clone();
    let (batch, max_lines) = (a.batch, a.lines);
    let until = (a.seconds > 0).then(|| Instant::now() + Duration::from_secs(a.seconds));
    let reader = std::thread::spawn(move || -> Result<(u64, u64)> {
        let ctx = IngestContext {
            now_ns: 0,
            ..IngestContext::default()
        };
        let (mut lines, mut bytes) = (0u64, 0u64);
        let mut recs = Vec::with_capacity(batch);
        let mut raw = 0u64;
        if let Some(until) = until {
            // Timed runs: the input (at most --lines) is parsed once and its
            // batches sent round and round, so the offered rate is not capped by
            // parsing on the client's side.
            let f =
                std::fs::File::open(&input).with_context(|| format!("open {}", input.display()))?;
            let mut pool = Vec::new();
            for line in std::io::BufReader::with_capacity(1 << 20, f).lines() {
                let line = line?;
                raw += line.len() as u64 + 1;
                recs.push(to_pb(parse_raw(&line, &ctx)));
                if recs.len() >= batch {
                    pool.push((std::mem::take(&mut recs), raw));
                    raw = 0;
                }
                if max_lines > 0 && (pool.len() * batch) as u64 >= max_lines {
                    break;
                }
            }
            recs.clear();
            anyhow::ensure!(!pool.is_empty(), "the input holds less than one batch");
            'timed: loop {
                for (b, r) in &pool {
                    if Instant::now() >= until || tx.send_blocking((b.clone(), *r)).is_err() {
                        break 'timed;
                    }
                    lines += b.len() as u64;
                    bytes += r;
                }
            }
            return Ok((lines, bytes));
        }
        let f = std::fs::File::open(&input).with_context(|| format!("open {}", input.display()))?;
        for line in std::io::BufReader::with_capacity(1 << 20, f).lines() {
            let line = line?;
            raw += line.len() as u64 + 1;
            recs.push(to_pb(parse_raw(&line, &ctx)));
            lines += 1;
            if recs.len() >= batch {
                bytes += raw;
                if tx.send_blocking((std::mem::take(&mut recs), raw)).is_err() {
                    break;
                }
                raw = 0;
            }
            if max_lines > 0 && lines >= max_lines {
                break;
            }
        }
        if !recs.is_empty() {
            bytes += raw;
            let _ = tx.send_blocking((recs, raw));
        }
        Ok((lines, bytes))
    });
    let started = Instant::now();
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let pushbacks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let unhinted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Lines sent, refused sends included (the load the server saw).
    let attempted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let timeline = a.timeline.then(|| {
        let (taken, pushbacks, done) = (
            Arc::clone(&taken),
            Arc::clone(&pushbacks),
            Arc::clone(&done),
        );
        let pid = a.server_pid;
        std::thread::spawn(move || {
            let (mut last_taken, mut last_pb) = (0, 0);
            let mut second = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                second += 1;
                let (t, p) = (
                    taken.load(std::sync::atomic::Ordering::Relaxed),
                    pushbacks.load(std::sync::atomic::Ordering::Relaxed),
                );
                eprintln!(
                    "{}",
                    serde_json::json!({
                        "second": second,
                        "lines_taken": t - last_taken,
                        "pushbacks": p - last_pb,
                        "server_rss_mb": pid.and_then(|p| status_mb(p, "VmRSS:")),
                    })
                );
                (last_taken, last_pb) = (t, p);
            }
        })
    });
    // Per client: one batch every `interval` (paced), or back to back.
    let interval = (a.rate > 0)
        .then(|| Duration::from_secs_f64(a.batch as f64 * a.clients as f64 / a.rate as f64));
    let latencies: Vec<Vec<Duration>> = rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..a.clients {
            let rx = rx.clone();
            let url = url.clone();
            let pushbacks = Arc::clone(&pushbacks);
            let unhinted = Arc::clone(&unhinted);
            let taken = Arc::clone(&taken);
            let attempted = Arc::clone(&attempted);
            tasks.push(tokio::spawn(async move {
                let ch = tonic::transport::Endpoint::from_shared(url)?
                    .connect()
                    .await
                    .context("connect")?;
                let mut client =
                    pb::ingest_client::IngestClient::new(ch).max_encoding_message_size(64 << 20);
                let mut lat = Vec::new();
                let mut seq = 0u64;
                let start = tokio::time::Instant::now();
                while let Ok((records, _)) = rx.recv().await {
                    if let Some(every) = interval {
                        // Behind schedule: at once (the offered load never relaxes).
                        tokio::time::sleep_until(start + every * seq as u32).await;
                    }
                    let n = records.len() as u64;
                    seq += 1;
                    let req = pb::PushRequest {
                        // Unique per run: the server remembers producers across
                        // restarts, and a new run starts its sequences at 1.
                        producer_id: format!("load-{}-{run}-{c}", std::process::id()),
                        sequence: seq,
                        records,
                        ..Default::default()
                    };
                    let t = Instant::now();
                    // Pushed back: wait as told and retry the same batch (same
                    // idempotency key), as a real client does; the latency counts
                    // the whole wait.
                    loop {
                        attempted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                        match client.push(req.clone()).await {
                            Ok(_) => break,
                            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                                pushbacks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let hint = s
                                    .metadata()
                                    .get("grpc-retry-pushback-ms")
                                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                                if hint.is_none() {
                                    unhinted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                                tokio::time::sleep(Duration::from_millis(hint.unwrap_or(50))).await;
                            }
                            Err(s) => return Err(anyhow::anyhow!("push: {}", s.message())),
                        }
                    }
                    lat.push(t.elapsed());
                    taken.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
                Ok::<_, anyhow::Error>(lat)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await??);
        }
        Ok::<_, anyhow::Error>(all)
    })?;
    let secs = started.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(t) = timeline {
        let _ = t.join();
    }
    let (lines, bytes) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    let mut lat: Vec<Duration> = latencies.into_iter().flatten().collect();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let mut report = serde_json::json!({
        "clients": a.clients,
        "batch_lines": a.batch,
        "lines": lines,
        "mb": bytes as f64 / 1e6,
        "seconds": secs,
        "mb_per_s": bytes as f64 / 1e6 / secs,
        "lines_per_s": lines as f64 / secs,
        "ack_ms_p50": pct(0.50),
        "ack_ms_p99": pct(0.99),
        "ack_ms_max": lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        "pushbacks": pushbacks.load(std::sync::atomic::Ordering::Relaxed),
        "pushbacks_without_hint": unhinted.load(std::sync::atomic::Ordering::Relaxed),
        "offered_lines_per_s": a.rate,
        "attempted_lines_per_s": attempted.load(std::sync::atomic::Ordering::Relaxed) as f64 / secs,
        "server_peak_rss_mb": a.server_pid.and_then(peak_rss_mb),
    });
    // The load's numbers first: a failing DoGet must not lose them.
    println!("{report}");
    if let Some(q) = &a.doget {
        let (rows, s) = rt.block_on(async {
            let ch = tonic::transport::Endpoint::from_shared(url.clone())?
                .connect()
                .await?;
            let mut c = FlightClient::new(ch);
            let t = Instant::now();
            let batches: Vec<_> = c
                .do_get(Ticket::new(q.clone()))
                .await?
                .try_collect()
                .await?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            Ok::<_, anyhow::Error>((rows, t.elapsed().as_secs_f64()))
        })?;
        report["doget_query"] = serde_json::json!(q);
        report["doget_rows"] = serde_json::json!(rows);
        report["doget_seconds"] = serde_json::json!(s);
        report["doget_rows_per_s"] = serde_json::json!(rows as f64 / s);
        if let Some(pid) = a.server_pid {
            report["server_peak_rss_mb"] = serde_json::json!(peak_rss_mb(pid));
        }
        println!("{report}");
    }
    Ok(())
}

/// A bounded multi-consumer channel: the reader thread blocks when the clients are
/// behind, so memory stays bounded.
fn async_channel<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = tokio::sync::mpsc::channel(cap);
    (Sender(tx), Receiver(Arc::new(tokio::sync::Mutex::new(rx))))
}

struct Sender<T>(tokio::sync::mpsc::Sender<T>);

impl<T> Sender<T> {
    fn send_blocking(&self, v: T) -> Result<(), ()> {
        self.0.blocking_send(v).map_err(|_| ())
    }
}

struct Receiver<T>(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<T>>>);

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Receiver(Arc::clone(&self.0))
    }
}

impl<T> Receiver<T> {
    async fn recv(&self) -> Result<T, ()> {
        self.0.lock().await.recv().await.ok_or(())
    }
}
