//! `kafka-load`: the Kafka -> Heimdall ingest benchmark. Produces lines of a file
//! (e.g. `heimdall-gen` output) to a topic with librdkafka, as fast as the broker
//! takes them, and watches a Heimdall node consume them through its `/readyz`
//! (per-partition records, bytes and lag of its Kafka sources): the consume rate,
//! and the lag sampled every 100 ms. One JSON object on stdout.
//!
//! `--phase produce` only produces (to measure consumption alone afterwards with
//! `--phase watch`); `--phase both` produces while the node consumes.

use std::io::BufRead;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    Produce,
    Watch,
    Both,
    /// Read the topic with a bare librdkafka consumer (no Heimdall): what the
    /// broker and client deliver at most on this machine.
    Consume,
}

#[derive(Parser, Debug)]
#[command(about = "Produce lines to Kafka and watch a Heimdall node consume them")]
struct Args {
    /// Bootstrap brokers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, default_value = "logs")]
    topic: String,
    /// Lines to produce, one message each.
    #[arg(long)]
    input: Option<std::path::PathBuf>,
    /// Stop after this many lines (default: the whole file).
    #[arg(long)]
    lines: Option<u64>,
    /// The Heimdall node's HTTP address (for `watch` and `both`).
    #[arg(long)]
    http: Option<String>,
    /// Messages the node must have stored in all (`watch`: the total produced).
    #[arg(long)]
    expect: Option<u64>,
    #[arg(long, value_enum, default_value = "both")]
    phase: Phase,
    /// Extra librdkafka property for the bare consumer, `key=value` (repeatable).
    #[arg(long = "option")]
    options: Vec<String>,
}

/// Records, bytes and lag summed over a node's Kafka partitions.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    records: u64,
    bytes: u64,
    lag: i64,
}

fn progress(http: &str) -> Result<Progress> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(http).context("connect to the node's HTTP address")?;
    write!(c, "GET /readyz HTTP/1.0\r\nHost: {http}\r\n\r\n")?;
    let mut text = String::new();
    c.read_to_string(&mut text)?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: serde_json::Value = serde_json::from_str(body).context("readyz JSON")?;
    let mut p = Progress::default();
    for s in v["sources"].as_array().into_iter().flatten() {
        for part in s["partitions"].as_array().into_iter().flatten() {
            p.records += part["records"].as_u64().unwrap_or(0);
            p.bytes += part["bytes"].as_u64().unwrap_or(0);
            p.lag += part["lag"].as_i64().unwrap_or(0);
        }
    }
    Ok(p)
}

fn produce(a: &Args) -> Result<(u64, u64, f64)> {
    let Some(input) = &a.input else {
        bail!("--input is required to produce")
    };
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("acks", "all")
        .create()
        .context("creating the producer")?;
    let f = std::fs::File::open(input).with_context(|| format!("open {}", input.display()))?;
    let started = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    for line in std::io::BufReader::with_capacity(1 << 20, f).lines() {
        let line = line?;
        if a.lines.is_some_and(|l| n >= l) {
            break;
        }
        let mut rec = BaseRecord::<(), str>::to(&a.topic).payload(line.as_str());
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    // The local queue is full: let deliveries drain.
                    producer.poll(Duration::from_millis(5));
                    rec = r;
                }
            }
        }
        n += 1;
        bytes += line.len() as u64;
        if n % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .context("flushing the producer")?;
    Ok((n, bytes, started.elapsed().as_secs_f64()))
}

/// Reads `expect` messages of every partition of the topic from the start.
fn consume(a: &Args) -> Result<serde_json::Value> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &a.brokers)
        .set("group.id", "kafka-load-consume")
        .set("enable.auto.commit", "false");
    for o in &a.options {
        let (k, v) = o.split_once('=').context("--option wants key=value")?;
        cc.set(k, v);
    }
    let c: BaseConsumer = cc.create()?;
    let md = c.fetch_metadata(Some(&a.topic), Duration::from_secs(10))?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(&a.topic, p.id(), rdkafka::Offset::Beginning)?;
        }
    }
    c.assign(&tpl)?;
    let want = a.expect.unwrap_or(u64::MAX);
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut t0 = None;
    while n < want {
        match c.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                t0.get_or_insert_with(Instant::now);
                n += 1;
                bytes += m.payload().map_or(0, |p| p.len() as u64);
            }
            Some(Err(e)) => bail!("consume: {e}"),
            None => break,
        }
    }
    let secs = t0.map_or(0.0, |t| t.elapsed().as_secs_f64()).max(1e-3);
    Ok(serde_json::json!({
        "bare_consumed": n,
        "bare_lines_per_s": n as f64 / secs,
        "bare_mb_per_s": bytes as f64 / secs / 1e6,
    }))
}

fn main() -> Result<()> {
    let a = Args::parse();
    if a.phase == Phase::Consume {
        println!("{}", consume(&a)?);
        return Ok(());
    }
    let mut out = serde_json::Map::new();
    let watcher = match a.phase {
        Phase::Produce | Phase::Consume => None,
        Phase::Watch | Phase::Both => {
            let Some(http) = a.http.clone() else {
                bail!("--http is required to watch the node")
            };
            let expect = a.expect;
            Some(std::thread::spawn(move || -> Result<serde_json::Value> {
                // Counts are the node's totals: start the watcher before the node
                // (it waits for the address to answer), on a fresh data directory.
                let mut first: Option<(Instant, Progress)> = None;
                let mut lags = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(1800);
                loop {
                    std::thread::sleep(Duration::from_millis(100));
                    let p = match progress(&http) {
                        Ok(p) => p,
                        Err(e) if first.is_none() && Instant::now() < deadline => {
                            let _ = e; // not up yet
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let got = p.records;
                    if got > 0 && first.is_none() {
                        first = Some((Instant::now(), p));
                    }
                    if first.is_some() {
                        lags.push(p.lag);
                    }
                    if expect.is_some_and(|e| got >= e) {
                        let (t0, p0) = first.unwrap_or((Instant::now(), p));
                        let secs = t0.elapsed().as_secs_f64().max(1e-3);
                        let (records, bytes) = (p.records - p0.records, p.bytes - p0.bytes);
                        lags.sort_unstable();
                        let pct = |q: f64| {
                            lags.get(((lags.len() as f64 - 1.0) * q) as usize)
                                .copied()
                                .unwrap_or(0)
                        };
                        return Ok(serde_json::json!({
                            "consumed_records": got,
                            "consume_seconds": secs,
                            "consume_lines_per_s": records as f64 / secs,
                            "consume_mb_per_s": bytes as f64 / secs / 1e6,
                            "lag_p50": pct(0.5),
                            "lag_p99": pct(0.99),
                            "lag_max": lags.last().copied().unwrap_or(0),
                        }));
                    }
                    if Instant::now() > deadline {
                        bail!("the node stored {got} of {expect:?} within 30 minutes");
                    }
                }
            }))
        }
    };
    if a.phase != Phase::Watch {
        let (n, bytes, secs) = produce(&a)?;
        out.insert("produced_lines".into(), n.into());
        out.insert("produced_mb".into(), (bytes as f64 / 1e6).into());
        out.insert("produce_seconds".into(), secs.into());
        out.insert(
            "produce_mb_per_s".into(),
            (bytes as f64 / secs / 1e6).into(),
        );
    }
    if let Some(w) = watcher {
        let v = w
            .join()
            .map_err(|_| anyhow::anyhow!("watcher panicked"))??;
        if let serde_json::Value::Object(m) = v {
            out.extend(m);
        }
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
