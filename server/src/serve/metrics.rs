//! Server metrics and their Prometheus text exposition (format 0.0.4). The set is
//! small and fixed, so it is written out directly: counters as `_total`, gauges,
//! and histograms as cumulative `_bucket{le=..}` lines with `_sum` and `_count`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use engine::engine::Engine;

/// Upper bounds (seconds) of the request latency histograms.
const LATENCY_BOUNDS_S: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A latency histogram with fixed buckets, updated without locks.
#[derive(Debug, Default)]
pub(crate) struct Latency {
    buckets: [AtomicU64; LATENCY_BOUNDS_S.len() + 1],
    sum_nanos: AtomicU64,
}

impl Latency {
    pub(crate) fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BOUNDS_S.partition_point(|b| *b < s);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    fn counts(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }
}

/// Everything the server counts.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) ingested_records: AtomicU64,
    pub(crate) ingested_bytes: AtomicU64,
    pub(crate) ingest_batches: AtomicU64,
    pub(crate) ingest_duplicates: AtomicU64,
    pub(crate) ingest_rejected: AtomicU64,
    pub(crate) ingest_latency: Latency,
    pub(crate) queries: AtomicU64,
    pub(crate) query_errors: AtomicU64,
    /// Queries refused by admission (queue full or waited too long).
    pub(crate) queries_refused: AtomicU64,
    /// Queries running now.
    pub(crate) queries_running: AtomicU64,
    /// Queries waiting for a slot now.
    pub(crate) queries_queued: AtomicU64,
    /// Queries run in a reserve slot (`[limits] query_reserve`).
    pub(crate) queries_reserve: AtomicU64,
    pub(crate) query_latency: Latency,
    pub(crate) flushes: AtomicU64,
    pub(crate) flush_errors: AtomicU64,
    pub(crate) compactions: AtomicU64,
    /// 1 while a flush runs.
    pub(crate) flush_running: AtomicU64,
}

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// A counter: named with its `_total` suffix (in the TYPE line too, as the
    /// Prometheus text format has it).
    fn counter(&mut self, name: &str, help: &str, v: u64) {
        let name = format!("{name}_total");
        self.head(&name, "counter", help);
        let _ = writeln!(self.out, "{name} {v}");
    }

    fn gauge(&mut self, name: &str, help: &str, v: f64) {
        self.head(name, "gauge", help);
        let _ = writeln!(self.out, "{name} {v}");
    }

    /// `counts` are per bucket (not cumulative), the last one above every bound.
    fn histogram(&mut self, name: &str, help: &str, bounds: &[f64], counts: &[u64], sum: f64) {
        self.head(name, "histogram", help);
        let mut total = 0u64;
        for (i, c) in counts.iter().enumerate() {
            total += c;
            match bounds.get(i) {
                Some(b) => {
                    let _ = writeln!(self.out, "{name}_bucket{{le=\"{b}\"}} {total}");
                }
                None => {
                    let _ = writeln!(self.out, "{name}_bucket{{le=\"+Inf\"}} {total}");
                }
            }
        }
        let _ = writeln!(self.out, "{name}_sum {sum}");
        let _ = writeln!(self.out, "{name}_count {total}");
    }
}

impl Metrics {
    /// The Prometheus text exposition of the server and its engine.
    pub(crate) fn render(
        &self,
        engine: &Engine,
        sources: &super::kafka::Sources,
        tiering: &super::tiering::TierStatus,
        tasks: &[engine::tasks::TaskInfo],
    ) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::with_capacity(4096);
        let mut f = Family { out: &mut out };
        f.counter(
            "heimdall_ingested_records",
            "Records acknowledged (durable in the WAL).",
            g(&self.ingested_records),
        );
        f.counter(
            "heimdall_ingested_bytes",
            "Message bytes of the records acknowledged.",
            g(&self.ingested_bytes),
        );
        f.counter(
            "heimdall_ingest_batches",
            "Batches acknowledged (duplicates included).",
            g(&self.ingest_batches),
        );
        f.counter(
            "heimdall_ingest_duplicates",
            "Batches recognised as retries of stored ones and not stored again.",
            g(&self.ingest_duplicates),
        );
        f.counter(
            "heimdall_ingest_rejected",
            "Batches refused (malformed, over a limit, or pushed back).",
            g(&self.ingest_rejected),
        );
        let lat = &self.ingest_latency;
        f.histogram(
            "heimdall_ingest_ack_seconds",
            "Time from receiving a batch to acknowledging it.",
            &LATENCY_BOUNDS_S,
            &lat.counts(),
            g(&lat.sum_nanos) as f64 / 1e9,
        );
        let w = engine.wal_stats();
        let bounds: Vec<f64> = wal::SYNC_BUCKETS_US
            .iter()
            .map(|us| *us as f64 / 1e6)
            .collect();
        f.histogram(
            "heimdall_wal_fsync_seconds",
            "Duration of WAL fdatasync calls.",
            &bounds,
            &w.sync_buckets,
            w.sync_nanos as f64 / 1e9,
        );
        f.counter(
            "heimdall_wal_bytes",
            "Framed bytes written to the WAL.",
            w.bytes,
        );
        let m = engine.memory();
        f.gauge(
            "heimdall_memtable_bytes",
            "Bytes of records in memory, not yet in segments (being flushed included).",
            m.memtable_bytes as f64,
        );
        f.gauge(
            "heimdall_memtable_records",
            "Records in memory, not yet in segments.",
            m.memtable_records as f64,
        );
        f.gauge(
            "heimdall_segments",
            "Segments listed in the manifest.",
            m.segments as f64,
        );
        f.gauge(
            "heimdall_wal_checkpoint_lsn",
            "The WAL position the segments hold everything up to (replay starts after it).",
            m.checkpoint_lsn as f64,
        );
        f.gauge(
            "heimdall_templates",
            "Log templates mined so far, over every tenant (capped per tenant by [templates] max).",
            engine.templates_held() as f64,
        );
        f.counter(
            "heimdall_queries",
            "Queries answered or failed.",
            g(&self.queries),
        );
        f.counter(
            "heimdall_query_errors",
            "Queries that failed.",
            g(&self.query_errors),
        );
        f.counter(
            "heimdall_queries_refused",
            "Queries refused before running: the queue was full or the wait too long.",
            g(&self.queries_refused),
        );
        f.gauge(
            "heimdall_queries_running",
            "Queries running now (at most [limits] queries_max).",
            g(&self.queries_running) as f64,
        );
        f.counter(
            "heimdall_queries_reserve",
            "Needle queries run in a reserve slot while every other slot was busy.",
            g(&self.queries_reserve),
        );
        f.gauge(
            "heimdall_queries_queued",
            "Queries waiting for a slot now (at most [limits] query_queue_max).",
            g(&self.queries_queued) as f64,
        );
        let lat = &self.query_latency;
        f.histogram(
            "heimdall_query_seconds",
            "Query execution time.",
            &LATENCY_BOUNDS_S,
            &lat.counts(),
            g(&lat.sum_nanos) as f64 / 1e9,
        );
        f.counter(
            "heimdall_flushes",
            "Memtable flushes completed.",
            g(&self.flushes),
        );
        f.counter(
            "heimdall_flush_errors",
            "Memtable flushes that failed.",
            g(&self.flush_errors),
        );
        f.counter(
            "heimdall_compactions",
            "Compactions completed.",
            g(&self.compactions),
        );
        f.gauge(
            "heimdall_flush_running",
            "Whether a background flush is running (1) or not (0).",
            g(&self.flush_running) as f64,
        );
        render_sources(&mut f, sources);
        render_tier(&mut f, engine, tiering);
        render_tasks(&mut f, tasks);
        out
    }
}

/// The supervisor's tasks: runs, failures, last duration, state.
fn render_tasks(f: &mut Family<'_>, tasks: &[engine::tasks::TaskInfo]) {
    if tasks.is_empty() {
        return;
    }
    type Pick = fn(&engine::tasks::TaskInfo) -> Option<f64>;
    let families: [(&str, &str, &str, Pick); 3] = [
        (
            "heimdall_task_runs_total",
            "counter",
            "Runs of a background task's work, failed ones included.",
            |t| Some(t.runs as f64),
        ),
        (
            "heimdall_task_failures_total",
            "counter",
            "Failed runs of a background task.",
            |t| Some(t.failures as f64),
        ),
        (
            "heimdall_task_last_duration_seconds",
            "gauge",
            "How long a background task's last run took.",
            |t| t.last_duration.map(|d| d.as_secs_f64()),
        ),
    ];
    for (name, kind, help, pick) in families {
        f.head(name, kind, help);
        for t in tasks {
            if let Some(v) = pick(t) {
                let _ = writeln!(f.out, "{name}{{task=\"{}\"}} {v}", escape(&t.name));
            }
        }
    }
    f.head(
        "heimdall_task_state",
        "gauge",
        "A background task's state: 1 for the state it is in, 0 for the others.",
    );
    for t in tasks {
        for st in engine::tasks::TaskState::ALL {
            let _ = writeln!(
                f.out,
                "heimdall_task_state{{task=\"{}\",state=\"{}\"}} {}",
                escape(&t.name),
                st.name(),
                u8::from(t.state == st)
            );
        }
    }
}

/// The object store: requests, caches, offload and retention.
fn render_tier(f: &mut Family<'_>, engine: &Engine, t: &super::tiering::TierStatus) {
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    f.counter(
        "heimdall_offloaded_segments",
        "Segments moved to the object store.",
        g(&t.offloaded_segments),
    );
    f.counter(
        "heimdall_offloaded_bytes",
        "Bytes of segments moved to the object store.",
        g(&t.offloaded_bytes),
    );
    f.counter(
        "heimdall_offload_failures",
        "Segment offloads that failed (the segment stayed local).",
        g(&t.offload_failures),
    );
    f.counter(
        "heimdall_retention_deleted_segments",
        "Segments deleted by retention, both tiers.",
        g(&t.retention_deleted_segments),
    );
    f.counter(
        "heimdall_retention_deleted_bytes",
        "Bytes of segments deleted by retention, both tiers.",
        g(&t.retention_deleted_bytes),
    );
    let Some(tier) = engine.tier() else {
        return;
    };
    let c = &tier.store.counters;
    f.counter(
        "heimdall_object_store_gets",
        "Byte ranges fetched (GET requests; merged read-ahead ranges may take fewer).",
        g(&c.gets),
    );
    f.counter(
        "heimdall_object_store_get_bytes",
        "Bytes fetched.",
        g(&c.get_bytes),
    );
    f.counter(
        "heimdall_object_store_puts",
        "Successful PUT requests and multipart parts.",
        g(&c.puts),
    );
    f.counter(
        "heimdall_object_store_put_bytes",
        "Bytes uploaded.",
        g(&c.put_bytes),
    );
    f.counter(
        "heimdall_object_store_retries",
        "Failed request attempts that were retried.",
        g(&c.retries),
    );
    f.counter(
        "heimdall_object_store_failures",
        "Operations that failed after every attempt.",
        g(&c.failures),
    );
    let k = &tier.cache.counters;
    f.counter(
        "heimdall_object_cache_memory_hits",
        "Footer and index reads served from memory.",
        g(&k.memory_hits),
    );
    f.counter(
        "heimdall_object_cache_disk_hits",
        "Reads served from the disk cache.",
        g(&k.disk_hits),
    );
    f.counter(
        "heimdall_object_cache_misses",
        "Reads fetched from the object store.",
        g(&k.misses),
    );
    let (mem, disk) = tier.cache.bytes();
    f.gauge(
        "heimdall_object_cache_memory_bytes",
        "Bytes in the in-memory cache.",
        mem as f64,
    );
    f.gauge(
        "heimdall_object_cache_disk_bytes",
        "Bytes in the disk cache.",
        disk as f64,
    );
}

/// Per Kafka source and partition: lag, records, bytes, dead letters, errors,
/// stalls.
fn render_sources(f: &mut Family<'_>, sources: &super::kafka::Sources) {
    if sources.status.is_empty() {
        return;
    }
    type Pick = fn(&super::kafka::PartitionStatus) -> Option<f64>;
    let families: [(&str, &str, &str, Pick); 9] = [
        (
            "heimdall_kafka_lag_messages",
            "gauge",
            "Messages on the broker not stored yet (high watermark minus stored position).",
            |s| s.lag().map(|l| l as f64),
        ),
        (
            "heimdall_kafka_records_total",
            "counter",
            "Records stored from the partition (dead letters included).",
            |s| Some(s.records as f64),
        ),
        (
            "heimdall_kafka_bytes_total",
            "counter",
            "Message bytes stored from the partition.",
            |s| Some(s.bytes as f64),
        ),
        (
            "heimdall_kafka_dead_lettered_total",
            "counter",
            "Messages stored as dead letters.",
            |s| Some(s.dead_lettered as f64),
        ),
        (
            "heimdall_kafka_errors_total",
            "counter",
            "Offset commits that failed.",
            |s| Some(s.errors as f64),
        ),
        (
            "heimdall_kafka_stalls_total",
            "counter",
            "Times the partition delivered nothing while the broker held messages from its position on, and was sought there again.",
            |s| Some(s.stalls as f64),
        ),
        (
            "heimdall_kafka_position",
            "gauge",
            "Next offset to store.",
            |s| Some(s.position as f64),
        ),
        (
            "heimdall_kafka_records_per_second",
            "gauge",
            "Records stored per second over the last statistics interval (5 s).",
            |s| Some(s.records_per_s),
        ),
        (
            "heimdall_kafka_bytes_per_second",
            "gauge",
            "Message bytes stored per second over the last statistics interval (5 s).",
            |s| Some(s.bytes_per_s),
        ),
    ];
    for (name, kind, help, pick) in families {
        f.head(name, kind, help);
        for src in &sources.status {
            let Ok(parts) = src.partitions.lock() else {
                continue;
            };
            for ((topic, p), st) in parts.iter() {
                if let Some(v) = pick(st) {
                    let _ = writeln!(
                        f.out,
                        "{name}{{source=\"{}\",topic=\"{topic}\",partition=\"{p}\"}} {v}",
                        escape(&src.name)
                    );
                }
            }
        }
    }
    f.head(
        "heimdall_kafka_source_errors_total",
        "counter",
        "Source failures and restarts.",
    );
    for src in &sources.status {
        let _ = writeln!(
            f.out,
            "heimdall_kafka_source_errors_total{{source=\"{}\"}} {}",
            escape(&src.name),
            src.errors.load(Ordering::Relaxed)
        );
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
