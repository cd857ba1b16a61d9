//! Server configuration: defaults, then a TOML file, then `HEIMDALL_*` environment
//! variables, then command-line flags (each later source wins).
//!
//! ```toml
//! data_dir = "./heimdall-data"
//! grpc_addr = "127.0.0.1:7400"     # gRPC ingest + Arrow Flight
//! http_addr = "127.0.0.1:7401"     # health, metrics, JSON-lines insert
//!
//! [limits]
//! message_bytes_max = 16777216     # one gRPC message / HTTP body
//! batch_records_max = 100000       # records in one push
//! query_timeout = "30s"
//! query_rows_max = 1000000
//! query_groups_max = 1000000
//! query_memory_bytes_max = 1073741824  # records and aggregation state per query
//! queries_max = 4                  # queries running at once; more wait
//! query_queue_max = 64             # queries waiting; more are refused at once
//! query_queue_timeout = "10s"      # longest wait before RESOURCE_EXHAUSTED
//! query_reserve = 2                # more slots, only for needle queries when all are busy
//! query_reserve_timeout = "2s"     # a query's deadline in a reserve slot
//! query_priority = "low"           # queries' CPU priority: low, idle or normal
//! latency_slice = "0s"             # the server's threads' CPU time slice ("0s": the kernel's)
//! flush_interval = "10s"           # flush records at most this old ("0s": by size only)
//! memtable_bytes_max = 67108864    # flush once the memtable holds this much
//! disk_reserve_bytes = 268435456   # refuse writes while less is free on the disk
//! flush_threads = 2                # segment writers (default: the cores)
//! backlog_bytes_max = 268435456    # refuse writes (RESOURCE_EXHAUSTED) above this
//!
//! [templates]                      # log-template mining (the `_template` field)
//! enabled = true
//! max = 100000                     # per tenant; beyond, new kinds get id 0
//!
//! [compaction]                     # merging small segments in the background
//! enabled = true
//! interval = "30s"                 # how often it looks for small segments
//! small_bytes = 4194304            # segments smaller than this (file bytes) are merged
//! min_segments = 4                 # once a tenant has this many to merge together
//! memory_bytes_max = 67108864      # records one merge holds in memory
//! bytes_per_s = 8388608            # input merged per second at most (0: unpaced)
//!
//! [object_store]                   # optional; see docs/object-storage.md
//! url = "s3://bucket/prefix"       # or gs://, az://, file:///dir
//! endpoint = "http://127.0.0.1:9000"   # S3-compatible servers; omitted for AWS
//! allow_http = true
//! offload_after = "1h"             # "0s": every sealed segment
//!
//! [[retention]]                    # any number; tenant "*" is the default rule
//! tenant = "*"
//! max_age = "30d"
//!
//! [[sources.kafka]]                # any number of these; see docs/kafka.md
//! brokers = "127.0.0.1:9092"
//! topics = ["logs"]
//! group = "heimdall"
//! format = "jsonl"                 # or "raw"
//! tenant = "default"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Default gRPC (ingest + Flight) address.
pub(crate) const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:7400";
/// Default HTTP address.
pub(crate) const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:7401";

/// The whole server configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    pub(crate) data_dir: PathBuf,
    pub(crate) grpc_addr: SocketAddr,
    pub(crate) http_addr: SocketAddr,
    pub(crate) limits: Limits,
    pub(crate) sources: Sources,
    pub(crate) object_store: Option<ObjectStoreConfig>,
    pub(crate) retention: Vec<Retention>,
    pub(crate) templates: TemplatesConfig,
    pub(crate) compaction: CompactionConfig,
    /// Serve the object store's data read-only (`serve --read-only`).
    #[serde(skip)]
    pub(crate) read_only: bool,
}

/// `[compaction]`: merging small segments in the background (docs/server.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CompactionConfig {
    /// Run the background compaction task.
    pub(crate) enabled: bool,
    /// How often it looks for small segments.
    #[serde(with = "duration_text")]
    pub(crate) interval: Duration,
    /// Local segments with fewer file bytes than this are merged.
    pub(crate) small_bytes: u64,
    /// A tenant's small segments are merged once this many can go together.
    pub(crate) min_segments: usize,
    /// Records one merge holds in memory at most (about the most an output holds).
    pub(crate) memory_bytes_max: u64,
    /// Input segment bytes merged per second at most (0: unpaced).
    pub(crate) bytes_per_s: u64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        let p = engine::engine::CompactionPolicy::background();
        CompactionConfig {
            enabled: true,
            interval: Duration::from_secs(30),
            small_bytes: p.small_bytes,
            min_segments: p.min_inputs,
            memory_bytes_max: p.memory_bytes_max,
            bytes_per_s: p.bytes_per_s,
        }
    }
}

impl CompactionConfig {
    /// The engine's policy.
    pub(crate) fn policy(&self) -> engine::engine::CompactionPolicy {
        engine::engine::CompactionPolicy {
            small_bytes: self.small_bytes,
            min_inputs: self.min_segments,
            memory_bytes_max: self.memory_bytes_max,
            bytes_per_s: self.bytes_per_s,
        }
    }
}

/// `[templates]`: log-template mining on ingest (docs/templates.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TemplatesConfig {
    /// Mine templates (each record gets `_template`).
    pub(crate) enabled: bool,
    /// Most templates kept per tenant; beyond, a message of a new kind gets id 0.
    pub(crate) max: usize,
}

impl Default for TemplatesConfig {
    fn default() -> Self {
        let d = engine::template::MinerConfig::default();
        TemplatesConfig {
            enabled: true,
            max: d.templates_max,
        }
    }
}

impl TemplatesConfig {
    /// The engine's setting.
    pub(crate) fn miner(&self) -> Option<engine::template::MinerConfig> {
        self.enabled.then(|| engine::template::MinerConfig {
            templates_max: self.max,
            ..Default::default()
        })
    }
}

/// `[object_store]`: where sealed segments are offloaded (docs/object-storage.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ObjectStoreConfig {
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or
    /// `file:///directory`.
    pub(crate) url: String,
    /// S3-compatible endpoint (`http://127.0.0.1:9000`); omitted for AWS itself.
    #[serde(default)]
    pub(crate) endpoint: Option<String>,
    #[serde(default)]
    pub(crate) region: Option<String>,
    /// Allow plain HTTP (local test servers).
    #[serde(default)]
    pub(crate) allow_http: bool,
    /// Path-style requests (`endpoint/bucket/key`), which most S3-compatible
    /// servers want; `false` for virtual-hosted style.
    #[serde(default = "yes")]
    pub(crate) path_style: bool,
    /// Offload sealed segments whose newest record is older than this.
    #[serde(default = "default_offload_after", with = "duration_text")]
    pub(crate) offload_after: Duration,
    /// How often the offload and retention task runs.
    #[serde(default = "default_offload_interval", with = "duration_text")]
    pub(crate) offload_interval: Duration,
    /// Offload the oldest local segments while they take more than this.
    #[serde(default)]
    pub(crate) local_bytes_max: Option<u64>,
    /// Refuse ingest (RESOURCE_EXHAUSTED) while local segments take more than
    /// this; default twice `local_bytes_max`.
    #[serde(default)]
    pub(crate) local_bytes_hard_max: Option<u64>,
    /// Disk cache of fetched segment bytes (default `<data_dir>/cache`).
    #[serde(default)]
    pub(crate) cache_dir: Option<PathBuf>,
    #[serde(default = "default_cache_bytes_max")]
    pub(crate) cache_bytes_max: u64,
    /// Footers and index frames kept in memory.
    #[serde(default = "default_memory_cache_bytes_max")]
    pub(crate) memory_cache_bytes_max: u64,
    /// Limit on one request.
    #[serde(default = "default_request_timeout", with = "duration_text")]
    pub(crate) request_timeout: Duration,
    /// Reads give up after this long, retries included (default: the query timeout).
    #[serde(default, with = "opt_duration_text")]
    pub(crate) read_deadline: Option<Duration>,
    /// Uploads, manifest writes and deletes give up after this long.
    #[serde(default = "default_write_deadline", with = "duration_text")]
    pub(crate) write_deadline: Duration,
    /// The writer's lease on the prefix lasts this long unless renewed.
    #[serde(default = "default_lease_ttl", with = "duration_text")]
    pub(crate) lease_ttl: Duration,
    /// Any other `object_store` option (`access_key_id`, `secret_access_key`,
    /// `token`, `service_account`, ...); credentials also come from the standard
    /// environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
    #[serde(default)]
    pub(crate) options: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}
fn default_offload_after() -> Duration {
    Duration::from_secs(3600)
}
fn default_offload_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_cache_bytes_max() -> u64 {
    1 << 30
}
fn default_memory_cache_bytes_max() -> u64 {
    64 << 20
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_write_deadline() -> Duration {
    Duration::from_secs(120)
}
fn default_lease_ttl() -> Duration {
    Duration::from_secs(60)
}

/// `[[retention]]`: how long (and how much) a tenant's data is kept, both tiers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Retention {
    /// The tenant, or `*` for every tenant without a rule of its own.
    pub(crate) tenant: String,
    /// Only the records of streams with these labels (`stream = { app = "nginx" }`):
    /// their records older than `max_age` go, segments are rewritten without them.
    #[serde(default)]
    pub(crate) stream: Option<BTreeMap<String, String>>,
    #[serde(default, with = "opt_duration_text")]
    pub(crate) max_age: Option<Duration>,
    #[serde(default)]
    pub(crate) max_bytes: Option<u64>,
}

/// Sources Heimdall consumes itself.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Sources {
    pub(crate) kafka: Vec<KafkaSource>,
}

/// How a source's messages become records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SourceFormat {
    /// The message is the record's `_msg` (a leading timestamp is its `_time`).
    #[default]
    Raw,
    /// The message is a JSON object, read like `heimdall ingest --format jsonl`.
    Jsonl,
}

/// One `[[sources.kafka]]`: topics consumed by a consumer group, exactly once
/// into the WAL (docs/kafka.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KafkaSource {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub(crate) brokers: String,
    pub(crate) topics: Vec<String>,
    /// Consumer group: nodes with the same group share the partitions.
    pub(crate) group: String,
    #[serde(default)]
    pub(crate) format: SourceFormat,
    #[serde(default = "default_tenant")]
    pub(crate) tenant: String,
    /// Stream labels of every record (beside the `kafka.*` fields).
    #[serde(default)]
    pub(crate) stream: BTreeMap<String, String>,
    /// Store the message key (as text) in this field.
    #[serde(default)]
    pub(crate) key_field: Option<String>,
    /// Store these message headers (name -> field name).
    #[serde(default)]
    pub(crate) header_fields: BTreeMap<String, String>,
    /// Stream labels of dead letters (undecodable or oversized messages).
    #[serde(default = "default_dead_letter_stream")]
    pub(crate) dead_letter_stream: BTreeMap<String, String>,
    /// A message larger than this is a dead letter (its first bytes are kept).
    #[serde(default = "default_message_bytes_max")]
    pub(crate) message_bytes_max: usize,
    /// Most messages in one WAL batch.
    #[serde(default = "default_batch_records_max")]
    pub(crate) batch_records_max: usize,
    /// Most message bytes in one WAL batch.
    #[serde(default = "default_batch_bytes_max")]
    pub(crate) batch_bytes_max: usize,
    /// How long a batch waits for more messages.
    #[serde(default = "default_linger", with = "duration_text")]
    pub(crate) linger: Duration,
    /// The topic where nodes record which node consumes which partition from
    /// which offset on (created when missing).
    #[serde(default = "default_ledger_topic")]
    pub(crate) ledger_topic: String,
    /// Join the group as a static member named after this node (Kafka's
    /// `group.instance.id`): a restarted node takes its partitions back at once,
    /// without a rebalance of the group. Its partitions move to another node only
    /// once the session times out (and never on brokers that do not expire static
    /// members, such as tansu 0.6).
    #[serde(default)]
    pub(crate) static_membership: bool,
    /// Extra librdkafka consumer properties (e.g. `"session.timeout.ms"`).
    #[serde(default)]
    pub(crate) options: BTreeMap<String, String>,
}

fn default_tenant() -> String {
    "default".into()
}
fn default_dead_letter_stream() -> BTreeMap<String, String> {
    [("source".to_string(), "kafka-dead-letter".to_string())].into()
}
fn default_message_bytes_max() -> usize {
    1 << 20
}
fn default_batch_records_max() -> usize {
    10_000
}
fn default_batch_bytes_max() -> usize {
    8 << 20
}
fn default_linger() -> Duration {
    Duration::from_millis(20)
}
fn default_ledger_topic() -> String {
    "heimdall-ledger".into()
}

impl KafkaSource {
    /// A short name for logs and metrics: `GROUP/TOPIC,TOPIC`.
    pub(crate) fn name(&self) -> String {
        format!("{}/{}", self.group, self.topics.join(","))
    }

    fn validate(&self) -> Result<()> {
        let name = self.name();
        if self.brokers.trim().is_empty() || self.topics.is_empty() || self.group.is_empty() {
            bail!("sources.kafka {name}: brokers, topics and group must be given");
        }
        if self
            .topics
            .iter()
            .any(|t| t.is_empty() || t == &self.ledger_topic)
        {
            bail!("sources.kafka {name}: topic names must be non-empty and not the ledger topic");
        }
        engine::model::Tenant::new(self.tenant.as_str())
            .map_err(|e| anyhow::anyhow!("sources.kafka {name}: tenant: {e}"))?;
        if self.batch_records_max == 0
            || self.batch_bytes_max < 1024
            || self.message_bytes_max < 1024
        {
            bail!("sources.kafka {name}: batch_records_max must be positive, batch_bytes_max and message_bytes_max at least 1024");
        }
        check_batch_records_max(&format!("sources.kafka {name}: "), self.batch_records_max)?;
        Ok(())
    }
}

/// A batch is one WAL record, and replay refuses a record with more records than
/// [`engine::walrec::BATCH_RECORDS_MAX`]: no limit may let more in.
fn check_batch_records_max(what: &str, n: usize) -> Result<()> {
    let max = engine::walrec::BATCH_RECORDS_MAX;
    if n > max {
        bail!(
            "{what}batch_records_max = {n} is over {max}, the most records one WAL record may hold"
        );
    }
    Ok(())
}

/// Request and resource limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Limits {
    pub(crate) message_bytes_max: usize,
    pub(crate) batch_records_max: usize,
    #[serde(with = "duration_text")]
    pub(crate) query_timeout: Duration,
    pub(crate) query_rows_max: usize,
    pub(crate) query_groups_max: usize,
    /// Bytes of matching records and aggregation state one query may hold.
    pub(crate) query_memory_bytes_max: usize,
    /// Queries running at once; more wait in a queue.
    pub(crate) queries_max: usize,
    /// Queries waiting at once; more are refused at once.
    pub(crate) query_queue_max: usize,
    /// How long a query waits in the queue before it is refused.
    #[serde(with = "duration_text")]
    pub(crate) query_queue_timeout: Duration,
    /// Slots beyond `queries_max` for queries narrowed by the index (a needle:
    /// `query::Filter::narrowed_by_index`), used only when every other slot is
    /// busy, so that a storm of heavy queries cannot starve them.
    pub(crate) query_reserve: usize,
    /// The deadline of a query in a reserve slot.
    #[serde(with = "duration_text")]
    pub(crate) query_reserve_timeout: Duration,
    /// How queries run on the CPU beside ingest, once they hold their snapshot
    /// (Linux): `idle` (the CPU ingest leaves idle; a write that wakes up takes it
    /// at once), `low` (10 nice steps lower: queries keep about a tenth of a busy
    /// CPU) or `normal`.
    pub(crate) query_priority: heimdall_server::nice::Priority,
    /// The time slice the server's own threads ask of the scheduler (Linux
    /// 6.12+): a write that wakes up takes the CPU from a query at once instead
    /// of waiting for the query's slice to end. "0s": the kernel's default.
    #[serde(with = "duration_text")]
    pub(crate) latency_slice: Duration,
    pub(crate) memtable_bytes_max: usize,
    /// Flush once the oldest unflushed record is this old ("0s": by size only).
    #[serde(with = "duration_text")]
    pub(crate) flush_interval: Duration,
    /// Free space kept on the data directory's file system (ingest is refused
    /// below it, and resumes by itself when space returns).
    pub(crate) disk_reserve_bytes: u64,
    pub(crate) flush_threads: usize,
    pub(crate) backlog_bytes_max: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./heimdall-data"),
            grpc_addr: DEFAULT_GRPC_ADDR.parse().unwrap_or_else(|_| loopback(7400)),
            http_addr: DEFAULT_HTTP_ADDR.parse().unwrap_or_else(|_| loopback(7401)),
            limits: Limits::default(),
            sources: Sources::default(),
            object_store: None,
            retention: Vec::new(),
            templates: TemplatesConfig::default(),
            compaction: CompactionConfig::default(),
            read_only: false,
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            message_bytes_max: 16 << 20,
            batch_records_max: 100_000,
            query_timeout: Duration::from_secs(30),
            query_rows_max: 1_000_000,
            query_groups_max: 1_000_000,
            query_memory_bytes_max: 1 << 30,
            // Each query scans on every core already: a few at once keep the
            // cores busy; more only share them and hold more memory.
            queries_max: 4,
            query_queue_max: 64,
            query_queue_timeout: Duration::from_secs(10),
            // Two needles at once through any storm; a needle answers in
            // milliseconds, so 2 s cuts only what was not one.
            query_reserve: 2,
            query_reserve_timeout: Duration::from_secs(2),
            // Measured against idle and normal with
            // benches/scripts/ingest-under-query.sh; idle starves queries
            // behind any busy process on the host
            // (docs/decisions/0008-query-cpu-priority.md).
            query_priority: heimdall_server::nice::Priority::Low,
            // The kernel's own until measured otherwise
            // (docs/decisions/0008-query-cpu-priority.md).
            latency_slice: Duration::ZERO,
            // 64 MiB: measured against 32, 128 and 256 under the gRPC load
            // (docs/decisions/0004-server-memtable-and-flush-threads.md).
            memtable_bytes_max: 64 << 20,
            // A record is in a segment at most about this long after it was
            // acknowledged, so a quiet node checkpoints its WAL, offloads, expires.
            flush_interval: Duration::from_secs(10),
            disk_reserve_bytes: 256 << 20,
            // Every core: on the 10M-line load this beat leaving one to ingest
            // (docs/decisions/0004-server-memtable-and-flush-threads.md).
            flush_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            // Four memtables: bounds memory when flushing falls behind (writers are
            // pushed back instead).
            backlog_bytes_max: 256 << 20,
        }
    }
}

/// Values given on the command line (or their environment variables), which win
/// over the file.
#[derive(Debug, Default, Clone)]
pub(crate) struct Overrides {
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) grpc_addr: Option<String>,
    pub(crate) http_addr: Option<String>,
    pub(crate) read_only: bool,
}

impl Config {
    /// Loads `file` (if any) over the defaults, then applies `over`.
    pub(crate) fn load(file: Option<&Path>, over: &Overrides) -> Result<Config> {
        let mut cfg = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading the config file {}", p.display()))?;
                Config::parse(&text).with_context(|| format!("in {}", p.display()))?
            }
            None => Config::default(),
        };
        if let Some(d) = &over.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(a) = &over.grpc_addr {
            cfg.grpc_addr = a
                .parse()
                .with_context(|| format!("gRPC address {a:?} is not host:port"))?;
        }
        if let Some(a) = &over.http_addr {
            cfg.http_addr = a
                .parse()
                .with_context(|| format!("HTTP address {a:?} is not host:port"))?;
        }
        cfg.read_only = over.read_only;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The engine's object-store settings, if `[object_store]` is given.
    pub(crate) fn tier(&self) -> Option<engine::tier::TierConfig> {
        let o = self.object_store.as_ref()?;
        let cache = o
            .cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("cache"));
        let mut t = engine::tier::TierConfig::new(o.url.clone(), cache);
        let s3 = o.url.starts_with("s3");
        if let Some(e) = &o.endpoint {
            t.options.push(("endpoint".into(), e.clone()));
        }
        if let Some(r) = &o.region {
            t.options.push(("region".into(), r.clone()));
        }
        if o.allow_http {
            t.options.push(("allow_http".into(), "true".into()));
        }
        if s3 {
            t.options.push((
                "virtual_hosted_style_request".into(),
                (!o.path_style).to_string(),
            ));
        }
        t.options
            .extend(o.options.iter().map(|(k, v)| (k.clone(), v.clone())));
        t.offload_after = o.offload_after;
        t.local_bytes_max = o.local_bytes_max;
        t.local_bytes_hard_max = o
            .local_bytes_hard_max
            .or(o.local_bytes_max.map(|m| m.saturating_mul(2)));
        t.cache_bytes_max = o.cache_bytes_max;
        t.memory_cache_bytes_max = o.memory_cache_bytes_max;
        t.attempt_timeout = o.request_timeout;
        t.read_deadline = o.read_deadline.unwrap_or(self.limits.query_timeout);
        t.write_deadline = o.write_deadline;
        t.lease_ttl = o.lease_ttl;
        t.read_only = self.read_only;
        Some(t)
    }

    /// The retention rules.
    pub(crate) fn retention_rules(&self) -> Vec<engine::engine::RetentionRule> {
        self.retention
            .iter()
            .map(|r| engine::engine::RetentionRule {
                tenant: r.tenant.clone(),
                stream: r.stream.clone(),
                max_age: r.max_age,
                max_bytes: r.max_bytes,
            })
            .collect()
    }

    /// Parses a TOML config (unknown keys are errors, so a typo is not ignored).
    pub(crate) fn parse(text: &str) -> Result<Config> {
        let cfg: Config = toml::from_str(text).context("invalid config")?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let l = &self.limits;
        if l.message_bytes_max < 1024 {
            bail!("limits.message_bytes_max must be at least 1024");
        }
        if l.batch_records_max == 0 || l.query_rows_max == 0 || l.query_groups_max == 0 {
            bail!("record, row and group limits must be positive");
        }
        if l.queries_max == 0 || l.query_memory_bytes_max < (1 << 20) {
            bail!("limits.queries_max must be positive and limits.query_memory_bytes_max at least 1 MiB");
        }
        check_batch_records_max("limits.", l.batch_records_max)?;
        if l.flush_threads == 0 || l.memtable_bytes_max < (1 << 20) {
            bail!("limits.flush_threads must be positive and limits.memtable_bytes_max at least 1 MiB");
        }
        if l.backlog_bytes_max < l.memtable_bytes_max {
            bail!("limits.backlog_bytes_max must be at least limits.memtable_bytes_max");
        }
        if self.grpc_addr == self.http_addr && self.grpc_addr.port() != 0 {
            bail!("grpc_addr and http_addr must differ");
        }
        for k in &self.sources.kafka {
            k.validate()?;
        }
        if let Some(o) = &self.object_store {
            if !o.url.contains("://") {
                bail!("object_store.url {:?}: expected s3://bucket/prefix, gs://, az:// or file:///dir", o.url);
            }
            if o.offload_interval < Duration::from_secs(1) {
                bail!("object_store.offload_interval must be at least 1s");
            }
            if o.lease_ttl < Duration::from_secs(2) {
                bail!("object_store.lease_ttl must be at least 2s");
            }
        }
        let c = &self.compaction;
        if c.interval < Duration::from_secs(1)
            || c.min_segments < 2
            || c.memory_bytes_max < (1 << 20)
        {
            bail!("compaction: interval must be at least 1s, min_segments at least 2, memory_bytes_max at least 1 MiB");
        }
        if self.read_only && self.object_store.is_none() {
            bail!("--read-only serves an object store's data: [object_store] must be configured");
        }
        for r in &self.retention {
            if r.tenant != "*" {
                engine::model::Tenant::new(r.tenant.as_str())
                    .map_err(|e| anyhow::anyhow!("retention tenant: {e}"))?;
            }
            if r.max_age.is_none() && r.max_bytes.is_none() {
                bail!("retention for {:?}: give max_age or max_bytes", r.tenant);
            }
            if r.stream.is_some() && (r.max_bytes.is_some() || r.max_age.is_none()) {
                bail!(
                    "retention for {:?} with a stream: give max_age (max_bytes is per tenant)",
                    r.tenant
                );
            }
        }
        Ok(())
    }
}

/// Durations written as text: `"300us"`, `"500ms"`, `"30s"`, `"5m"`, `"1h"`.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// Optional durations written as text.
mod opt_duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses `"300us"`, `"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"7d"`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number then us, ms, s, m or h"))?;
    let us = match unit {
        "us" => n,
        "ms" => n.saturating_mul(1000),
        "s" => n.saturating_mul(1_000_000),
        "m" => n.saturating_mul(60_000_000),
        "h" => n.saturating_mul(3_600_000_000),
        "d" => n.saturating_mul(86_400_000_000),
        _ => return Err(format!("{s:?}: unit must be us, ms, s, m, h or d")),
    };
    Ok(Duration::from_micros(us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback() {
        let c = Config::default();
        assert!(c.grpc_addr.ip().is_loopback());
        assert!(c.http_addr.ip().is_loopback());
        c.validate().unwrap();
    }

    #[test]
    fn file_then_overrides() {
        let c = Config::parse(
            "data_dir = \"/x\"\ngrpc_addr = \"127.0.0.1:1\"\n[limits]\nquery_timeout = \"5s\"\n",
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/x"));
        assert_eq!(c.limits.query_timeout, Duration::from_secs(5));
        assert_eq!(c.http_addr, Config::default().http_addr);
    }

    #[test]
    fn query_priority_and_compaction_settings() {
        let c = Config::parse(
            "[limits]\nquery_priority = \"idle\"\n[compaction]\ninterval = \"2s\"\nmin_segments = 8\n",
        )
        .unwrap();
        assert_eq!(
            c.limits.query_priority,
            heimdall_server::nice::Priority::Idle
        );
        assert_eq!(c.compaction.interval, Duration::from_secs(2));
        assert_eq!(c.compaction.policy().min_inputs, 8);
        assert_eq!(
            Config::default().limits.query_priority,
            heimdall_server::nice::Priority::Low
        );
        assert!(Config::parse("[limits]\nquery_priority = \"fast\"\n").is_err());
        assert!(Config::parse("[compaction]\nmin_segments = 1\n").is_err());
        assert!(Config::parse("[compaction]\ninterval = \"0s\"\n").is_err());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(Config::parse("grpc_adr = \"127.0.0.1:1\"").is_err());
        assert!(Config::parse("[limits]\nquery_timeout = \"5 parsecs\"").is_err());
        assert!(Config::parse("grpc_addr = \"nowhere\"").is_err());
    }

    #[test]
    fn batch_limits_replay_could_not_honour_are_refused() {
        let max = engine::walrec::BATCH_RECORDS_MAX;
        assert!(Config::parse(&format!("[limits]\nbatch_records_max = {max}\n")).is_ok());
        let err = Config::parse(&format!("[limits]\nbatch_records_max = {}\n", max + 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.batch_records_max"), "{err}");
        let kafka = "[[sources.kafka]]\nbrokers = \"b:1\"\ntopics = [\"t\"]\ngroup = \"g\"\n";
        let err = Config::parse(&format!("{kafka}batch_records_max = {}\n", max + 1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sources.kafka g/t: batch_records_max"),
            "{err}"
        );
    }

    #[test]
    fn kafka_sources() {
        let c = Config::parse(
            "[[sources.kafka]]\nbrokers = \"127.0.0.1:9092\"\ntopics = [\"logs\"]\ngroup = \"heimdall\"\nformat = \"jsonl\"\ntenant = \"default\"\n",
        )
        .unwrap();
        let k = &c.sources.kafka[0];
        assert_eq!(k.format, SourceFormat::Jsonl);
        assert_eq!(k.ledger_topic, "heimdall-ledger");
        assert_eq!(k.name(), "heimdall/logs");
        assert!(
            Config::parse("[[sources.kafka]]\nbrokers = \"b\"\ntopics = []\ngroup = \"g\"\n")
                .is_err()
        );
        assert!(Config::parse("[[sources.kafka]]\nbrokers = \"b\"\ntopics = [\"t\"]\ngroup = \"g\"\nformat = \"xml\"\n").is_err());
        assert!(Config::parse("[[sources.kafka]]\nbrokers = \"b\"\ntopics = [\"t\"]\ngroup = \"g\"\ntenant = \"no spaces\"\n").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("m").is_err());
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 86_400)));
        assert!(parse_duration("3w").is_err());
    }

    #[test]
    fn object_store_and_retention() {
        let c = Config::parse(
            "[object_store]\nurl = \"s3://heimdall-test/segments\"\nendpoint = \"http://127.0.0.1:9000\"\nallow_http = true\noffload_after = \"1h\"\n\n[[retention]]\ntenant = \"*\"\nmax_age = \"30d\"\n",
        )
        .unwrap();
        let t = c.tier().unwrap();
        assert_eq!(t.offload_after, Duration::from_secs(3600));
        assert!(t
            .options
            .contains(&("endpoint".into(), "http://127.0.0.1:9000".into())));
        assert!(t.options.contains(&("allow_http".into(), "true".into())));
        assert_eq!(
            c.retention_rules()[0].max_age,
            Some(Duration::from_secs(30 * 86_400))
        );
        assert!(Config::parse("[object_store]\nurl = \"bucket\"\n").is_err());
        assert!(Config::parse("[[retention]]\ntenant = \"*\"\n").is_err());
        let c = Config::parse(
            "[[retention]]\ntenant = \"t\"\nstream = { app = \"nginx\" }\nmax_age = \"7d\"\n",
        )
        .unwrap();
        assert_eq!(
            c.retention_rules()[0].stream.as_ref().unwrap()["app"],
            "nginx"
        );
        assert!(Config::parse(
            "[[retention]]\ntenant = \"t\"\nstream = { app = \"x\" }\nmax_bytes = 5\n"
        )
        .is_err());
    }
}
