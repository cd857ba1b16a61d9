//! Kafka sources: each `[[sources.kafka]]` is consumed by a supervised task (its own
//! thread, a librdkafka consumer in the source's consumer group), exactly once into
//! the WAL. The guarantee, its protocol and its limits are in docs/kafka.md; in
//! short:
//!
//! - A batch of one partition's messages is stored as one WAL record that also
//!   moves the partition's position (`kafka/GROUP/TOPIC/PARTITION` -> next offset,
//!   [`Engine::ingest_positioned`]): records and offset are durable together.
//! - On every assignment the consumer starts each partition at the offset recovered
//!   from Heimdall's own data, unless another node consumed the partition since (the
//!   ledger, [`ledger`]); then at the broker's committed offset.
//! - After storing a batch the offsets are committed to the broker (synchronously,
//!   while flushes wait), so the next owner of the partition starts after it.
//! - A node killed between storing a batch and committing it finds, at its next
//!   start, the batch uncommitted: it takes it back ([`Engine::retract`]) unless
//!   it can tell the commit went through; whoever owns the partition next reads it
//!   again from the broker.

pub(crate) mod decode;
pub(crate) mod ledger;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use engine::engine::{Position, Retract};
use engine::model::{Tenant, Value};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::Headers;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Message as _, Offset, TopicPartitionList};

use self::decode::{Decoder, Message, OFFSET_FIELD, PARTITION_FIELD, TOPIC_FIELD};
use self::ledger::{claim_key, Claims, Ledger};
use super::config::KafkaSource;
use super::Node;

/// How long a broker request may take before the source retries.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// The engine key of a partition's position.
pub(crate) fn position_key(group: &str, topic: &str, partition: i32) -> String {
    format!("kafka/{group}/{topic}/{partition}")
}

/// (topic, partition) of a position key of `group`.
fn parse_position_key(group: &str, key: &str) -> Option<(String, i32)> {
    let rest = key
        .strip_prefix("kafka/")?
        .strip_prefix(group)?
        .strip_prefix('/')?;
    let (topic, p) = rest.rsplit_once('/')?;
    Some((topic.to_string(), p.parse().ok()?))
}

/// What one partition of a source has done, for metrics and `stats`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct PartitionStatus {
    pub(crate) assigned: bool,
    /// Next offset to store (from Heimdall's data).
    pub(crate) position: i64,
    /// The broker's high watermark, as of the last statistics (-1: unknown).
    pub(crate) high_watermark: i64,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) errors: u64,
    /// Times the partition stored nothing for a while though the broker held
    /// messages from its next offset on, and was sought back ([`unstall`]).
    pub(crate) stalls: u64,
    /// Records per second over the last statistics interval.
    pub(crate) records_per_s: f64,
    pub(crate) bytes_per_s: f64,
    #[serde(skip)]
    window: (u64, u64, Option<Instant>),
}

impl PartitionStatus {
    /// Messages the broker holds that are not stored yet.
    pub(crate) fn lag(&self) -> Option<i64> {
        (self.high_watermark >= 0).then(|| (self.high_watermark - self.position).max(0))
    }
}

/// A source's shared state: what the task is doing and per-partition counts.
#[derive(Debug)]
pub(crate) struct SourceStatus {
    pub(crate) name: String,
    state: Mutex<String>,
    pub(crate) partitions: Mutex<BTreeMap<(String, i32), PartitionStatus>>,
    pub(crate) errors: AtomicU64,
    pub(crate) restarts: AtomicU64,
    pub(crate) retracted: AtomicU64,
    /// Times the source paused its partitions for backpressure.
    pub(crate) pauses: AtomicU64,
}

impl SourceStatus {
    pub(crate) fn new(name: String) -> SourceStatus {
        SourceStatus {
            name,
            state: Mutex::new("starting".into()),
            partitions: Mutex::new(BTreeMap::new()),
            errors: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            retracted: AtomicU64::new(0),
            pauses: AtomicU64::new(0),
        }
    }

    pub(crate) fn state(&self) -> String {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn set_state(&self, s: impl Into<String>) {
        if let Ok(mut st) = self.state.lock() {
            *st = s.into();
        }
    }

    fn with_partition(&self, topic: &str, p: i32, f: impl FnOnce(&mut PartitionStatus)) {
        if let Ok(mut m) = self.partitions.lock() {
            let e = m
                .entry((topic.to_string(), p))
                .or_insert_with(|| PartitionStatus {
                    high_watermark: -1,
                    ..PartitionStatus::default()
                });
            f(e);
        }
    }

    /// The whole status as JSON (the `stats` action, `/readyz`).
    pub(crate) fn json(&self) -> serde_json::Value {
        let parts: Vec<serde_json::Value> = self
            .partitions
            .lock()
            .map(|m| {
                m.iter()
                    .map(|((t, p), s)| {
                        let mut v = serde_json::to_value(s).unwrap_or_default();
                        if let Some(o) = v.as_object_mut() {
                            o.insert("topic".into(), t.clone().into());
                            o.insert("partition".into(), (*p).into());
                            o.insert("lag".into(), s.lag().into());
                        }
                        v
                    })
                    .collect()
            })
            .unwrap_or_default();
        serde_json::json!({
            "source": self.name,
            "kind": "kafka",
            "state": self.state(),
            "errors": self.errors.load(Ordering::Relaxed),
            "restarts": self.restarts.load(Ordering::Relaxed),
            "retracted_records": self.retracted.load(Ordering::Relaxed),
            "backpressure_pauses": self.pauses.load(Ordering::Relaxed),
            "partitions": parts,
        })
    }
}

/// The persistent id of this node (a file in the data directory), which names it
/// in the ledger.
pub(crate) fn node_id(data_dir: &std::path::Path) -> Result<String> {
    let path = data_dir.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim().to_string();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    let id = format!("{:016x}", h.finish());
    // Durably (temp, fsync, rename, fsync the directory): the ledger's claims
    // are under this name, and a node that came back under another would not
    // find them.
    engine::fs::write_atomic(&engine::fs::RealFs, &path, format!("{id}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// The librdkafka settings shared by a source's clients.
fn base_config(cfg: &KafkaSource) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    c.set("client.id", "heimdall");
    for (k, v) in &cfg.options {
        c.set(k, v);
    }
    c
}

/// The retraction of `topic`/`partition`'s records from offset `from` on.
fn tail(group: &str, topic: &str, partition: i32, from: i64) -> Retract {
    Retract {
        key: position_key(group, topic, partition),
        next: from.max(0) as u64,
        equals: vec![
            (TOPIC_FIELD.into(), Value::Str(topic.to_string())),
            (PARTITION_FIELD.into(), Value::I64(i64::from(partition))),
        ],
        field: OFFSET_FIELD.into(),
        from,
    }
}

/// Offsets by (topic, partition).
type Offsets = BTreeMap<(String, i32), i64>;

/// The broker's committed offsets of `parts` for the source's group (-1: none).
fn committed(
    consumer: &BaseConsumer<impl ConsumerContext>,
    parts: &[(String, i32)],
) -> Result<Offsets> {
    let mut tpl = TopicPartitionList::new();
    for (t, p) in parts {
        tpl.add_partition(t, *p);
    }
    let got = consumer
        .committed_offsets(tpl, BROKER_TIMEOUT)
        .context("fetching the committed offsets")?;
    Ok(got
        .elements()
        .iter()
        .map(|e| {
            let o = match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            };
            ((e.topic().to_string(), e.partition()), o)
        })
        .collect())
}

/// Start-up: for each partition this node stored records of, takes back the last
/// batch's records that were not handed over (see the module docs). Run before
/// any flush, so those records are still in the memtable.
pub(crate) async fn resolve(
    node: &Arc<Node>,
    cfg: &KafkaSource,
    status: &SourceStatus,
) -> Result<()> {
    status.set_state("resolving the last batches");
    let me = node_id(&node.cfg.data_dir)?;
    let tenant = Tenant::new(cfg.tenant.as_str())?;
    let prefix = format!("kafka/{}/", cfg.group);
    let mine: Vec<((String, i32), engine::manifest::SourcePosition)> = node
        .engine
        .positions(&prefix)
        .into_iter()
        .filter_map(|(k, p)| parse_position_key(&cfg.group, &k).map(|tp| (tp, p)))
        .filter(|((t, _), _)| cfg.topics.contains(t))
        .collect();
    if mine.is_empty() {
        return Ok(());
    }
    let base = base_config(cfg);
    let (claims, committed) = {
        let cfg = cfg.clone();
        let parts: Vec<(String, i32)> = mine.iter().map(|(tp, _)| tp.clone()).collect();
        tokio::task::spawn_blocking(move || -> Result<(Claims, Offsets)> {
            let ledger = Ledger::new(&base, &cfg.ledger_topic)?;
            let claims = ledger.read(BROKER_TIMEOUT)?;
            let consumer: BaseConsumer = base
                .clone()
                .set("group.id", &cfg.group)
                .set("enable.auto.commit", "false")
                .create()
                .context("creating a consumer")?;
            let committed = committed(&consumer, &parts)?;
            Ok((claims, committed))
        })
        .await
        .context("resolution task")??
    };
    for ((topic, p), pos) in mine {
        let key = claim_key(&cfg.group, &topic, p);
        let list = claims.get(&key).map(Vec::as_slice).unwrap_or_default();
        let c = committed.get(&(topic.clone(), p)).copied().unwrap_or(-1);
        let next = pos.next as i64;
        let first = pos.first as i64;
        if first >= next {
            continue;
        }
        // Claims by other nodes after this node's last one: they started where the
        // broker's committed offset was then.
        let after_mine = list
            .iter()
            .rposition(|cl| cl.node == me)
            .map_or(list, |i| list.get(i + 1..).unwrap_or_default());
        let foreign = after_mine.iter().map(|cl| cl.from).min();
        let mut cut: Option<i64> = foreign.filter(|s| *s < next);
        if c >= 0 && c < next {
            cut = Some(cut.map_or(c, |x| x.min(c)));
        } else if c < 0 && !list.is_empty() {
            // Nothing committed, ever, though the ledger knows the partition: this
            // node's first batch was never handed over.
            cut = Some(cut.map_or(first, |x| x.min(first)));
        }
        let Some(cut) = cut else { continue };
        let from = cut.max(first);
        if from >= next {
            continue;
        }
        let removed = node
            .engine
            .retract(&tenant, &tail(&cfg.group, &topic, p, from))
            .await?;
        status.retracted.fetch_add(removed, Ordering::Relaxed);
        tracing::warn!(
            source = %status.name, topic = %topic, partition = p, from, to = next,
            committed = c, removed,
            "took back a batch stored but not handed over before the last stop; it will be read again from the broker"
        );
    }
    Ok(())
}

/// Runs a source as the node's task `kafka:NAME`, a service of the supervisor:
/// each run is one life of its consumer, on a thread of its own, until `stop`
/// (the run then ends well) or an error (the supervisor restarts it after its
/// back-off). Each life's thread is kept in `lives` for [`Sources::stop`].
fn supervise(
    node: &Arc<Node>,
    cfg: KafkaSource,
    status: Arc<SourceStatus>,
    stop: Arc<AtomicBool>,
    lives: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
) {
    let about = format!(
        "consume Kafka topics {} into tenant {:?}",
        cfg.topics.join(", "),
        cfg.tenant
    );
    let n = Arc::clone(node);
    node.tasks.spawn(
        &format!("kafka:{}", status.name),
        &about,
        engine::tasks::Schedule::service(),
        move || {
            let (node, cfg, status, stop, lives) = (
                Arc::clone(&n),
                cfg.clone(),
                Arc::clone(&status),
                Arc::clone(&stop),
                Arc::clone(&lives),
            );
            async move {
                if stop.load(Ordering::Acquire) {
                    return Ok(());
                }
                let (tx, rx) = tokio::sync::oneshot::channel();
                let rt = tokio::runtime::Handle::current();
                let st = Arc::clone(&status);
                let life = std::thread::Builder::new()
                    .name(format!("kafka-{}", cfg.group))
                    .spawn(move || {
                        let _ = tx.send(run(&node, &cfg, &st, &stop, &rt));
                    })
                    .map_err(|e| {
                        engine::tasks::TaskError::Retry(format!("cannot start a thread: {e}"))
                    })?;
                if let Ok(mut v) = lives.lock() {
                    v.retain(|t| !t.is_finished());
                    v.push(life);
                }
                let failed = match rx.await {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(_) => "the consumer's thread ended without an answer (a panic)".into(),
                };
                status.errors.fetch_add(1, Ordering::Relaxed);
                status.restarts.fetch_add(1, Ordering::Relaxed);
                status.set_state(format!("restarting after an error: {failed}"));
                Err(engine::tasks::TaskError::Retry(failed))
            }
        },
    );
}

/// The consumer's context: decides where each assigned partition starts.
struct Ctx {
    node: Arc<Node>,
    cfg: KafkaSource,
    me: String,
    status: Arc<SourceStatus>,
    ledger: Ledger,
    rt: tokio::runtime::Handle,
    /// The partitions assigned now and where each stands.
    parts: Mutex<BTreeMap<(String, i32), PartState>>,
    /// Bumped by every rebalance: a batch collected across one is dropped (its
    /// partitions start again where the new assignment decides).
    epoch: AtomicU64,
    /// Held while a batch is stored and committed: a rebalance waits for it, so a
    /// partition is never handed to another node before its last batch's offsets
    /// are committed.
    writing: Mutex<()>,
}

/// An assigned partition.
#[derive(Debug, Clone, Copy, Default)]
struct PartState {
    /// Claimed in the ledger and fetched from its start: its messages may be stored.
    claimed: bool,
    /// The offset of the next message to store.
    expected: i64,
    /// A message past `expected` was read: (its offset, how far before `expected`
    /// the partition was then sought). See [`accept`].
    gap: (i64, i64),
    /// Its next message was taken since the last [`unstall`] round.
    advanced: bool,
    /// Time spent polling (not paused, not waiting on the writer) since the
    /// partition last took a message or was checked; see [`unstall`].
    idle: Duration,
    /// Checks in a row that found the partition stalled and sought it back
    /// without its next message coming: each seeks further back and doubles the
    /// wait before the next check.
    tries: u32,
}

impl PartState {
    /// A partition that starts (again) at `expected`.
    fn at(claimed: bool, expected: i64) -> PartState {
        PartState {
            claimed,
            expected,
            gap: (-1, 0),
            ..PartState::default()
        }
    }
}

impl ClientContext for Ctx {
    /// librdkafka's own log, through `tracing` (target `rdkafka`).
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "rdkafka", source = %self.status.name, fac, "{msg}")
            }
            L::Warning => {
                tracing::warn!(target: "rdkafka", source = %self.status.name, fac, "{msg}")
            }
            L::Notice | L::Info => {
                tracing::info!(target: "rdkafka", source = %self.status.name, fac, "{msg}")
            }
            L::Debug => {
                tracing::debug!(target: "rdkafka", source = %self.status.name, fac, "{msg}")
            }
        }
    }

    fn stats(&self, s: Statistics) {
        for (topic, t) in &s.topics {
            for (p, ps) in &t.partitions {
                if *p < 0 {
                    continue;
                }
                self.status.with_partition(topic, *p, |st| {
                    st.high_watermark = ps.hi_offset;
                    let now = Instant::now();
                    if let (r0, b0, Some(t0)) = st.window {
                        let dt = now.duration_since(t0).as_secs_f64().max(1e-3);
                        st.records_per_s = (st.records - r0) as f64 / dt;
                        st.bytes_per_s = (st.bytes - b0) as f64 / dt;
                    }
                    st.window = (st.records, st.bytes, Some(now));
                });
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let _writing = self.writing.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut parts = match self.parts.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        };
        for (t, p) in parts.keys() {
            self.status.with_partition(t, *p, |s| s.assigned = false);
        }
        parts.clear();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Each partition starts where Heimdall's data (or, after another
                // node, the broker) says, and is claimed in the ledger before any of
                // its messages is stored. A partition whose start or claim failed
                // is assigned at Heimdall's own position but stores nothing until
                // the consumer loop claims and seeks it ([`retry_claims`]).
                let list: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                let starts = self.starts(consumer, &list);
                for (t, p) in list {
                    let start = starts.get(&(t.clone(), p)).copied().flatten();
                    let claimed = match start {
                        Some(s) => match self.claim(&t, p, s) {
                            Ok(()) => true,
                            Err(e) => {
                                tracing::warn!(topic = %t, partition = p, error = %format!("{e:#}"), "writing a claim; retrying");
                                false
                            }
                        },
                        None => false,
                    };
                    let own = self
                        .node
                        .engine
                        .position(&position_key(&self.cfg.group, &t, p))
                        .map(|s| s.next as i64);
                    let at = start.or(own);
                    let offset = at.map_or(Offset::Invalid, Offset::Offset);
                    if let Err(e) = tpl.set_partition_offset(&t, p, offset) {
                        tracing::error!(topic = %t, partition = p, error = %e, "setting a start offset");
                    }
                    self.status.with_partition(&t, p, |s| {
                        s.assigned = true;
                        if let Some(x) = at {
                            s.position = x;
                        }
                    });
                    parts.insert(
                        (t, p),
                        PartState::at(claimed && start.is_some(), at.unwrap_or(0)),
                    );
                }
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "assigning partitions");
                }
                tracing::info!(source = %self.status.name, partitions = tpl.count(), "partitions assigned");
            }
            _ => {
                if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    tracing::warn!(source = %self.status.name, error = ?err, "rebalance error");
                }
                let _ = consumer.unassign();
            }
        }
    }
}

impl Ctx {
    /// Where each of `parts` starts: Heimdall's own position when this node was
    /// the last to claim the partition (or nobody did), else the broker's
    /// committed offset (or the last claim's start, if nothing was committed
    /// since). `None`: unknown (the broker did not answer).
    fn starts(
        &self,
        consumer: &BaseConsumer<Self>,
        parts: &[(String, i32)],
    ) -> BTreeMap<(String, i32), Option<i64>> {
        let claims = self.ledger.read(BROKER_TIMEOUT);
        let committed = committed(consumer, parts);
        let mut out = BTreeMap::new();
        for (t, p) in parts {
            let own = self
                .node
                .engine
                .position(&position_key(&self.cfg.group, t, *p))
                .map(|s| s.next as i64);
            let start = match (&claims, &committed) {
                (Ok(claims), Ok(committed)) => {
                    let c = committed.get(&(t.clone(), *p)).copied().unwrap_or(-1);
                    let last = claims
                        .get(&claim_key(&self.cfg.group, t, *p))
                        .and_then(|l| l.last());
                    Some(match (own, last) {
                        (Some(o), None) => o,
                        (Some(o), Some(l)) if l.node == self.me => o,
                        (_, Some(l)) => c.max(l.from),
                        (None, None) => c.max(0),
                    })
                }
                _ => None,
            };
            out.insert((t.clone(), *p), start);
        }
        if let Err(e) = &claims {
            tracing::warn!(error = %format!("{e:#}"), "reading the ledger");
        }
        if let Err(e) = &committed {
            tracing::warn!(error = %format!("{e:#}"), "fetching committed offsets");
        }
        out
    }

    fn claim(&self, topic: &str, p: i32, from: i64) -> Result<()> {
        self.rt
            .block_on(self.ledger.claim(&self.me, &self.cfg.group, topic, p, from))
    }
}

/// One life of the consumer: resolve, subscribe, consume until `stop` or an error.
fn run(
    node: &Arc<Node>,
    cfg: &KafkaSource,
    status: &Arc<SourceStatus>,
    stop: &AtomicBool,
    rt: &tokio::runtime::Handle,
) -> Result<()> {
    let me = node_id(&node.cfg.data_dir)?;
    let base = base_config(cfg);
    let ledger = Ledger::new(&base, &cfg.ledger_topic)?;
    status.set_state("connecting");
    rt.block_on(ledger.ensure_topic())?;
    let instance = me.clone();
    let ctx = Ctx {
        node: Arc::clone(node),
        cfg: cfg.clone(),
        me,
        status: Arc::clone(status),
        ledger,
        rt: rt.clone(),
        parts: Mutex::new(BTreeMap::new()),
        epoch: AtomicU64::new(0),
        writing: Mutex::new(()),
    };
    let mut cc = base;
    cc.set("group.id", &cfg.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "5000")
        // Some brokers (tansu) hold a fetch for this long even when they have
        // data: librdkafka's default of 500 ms caps a consumer at about 21 MB/s
        // there; 50 ms measured 30 MB/s through Heimdall (docs/benchmarks.md).
        .set("fetch.wait.max.ms", "50");
    if cfg.static_membership {
        cc.set("group.instance.id", format!("heimdall-{instance}"));
    }
    for (k, v) in &cfg.options {
        cc.set(k, v);
    }
    let consumer: BaseConsumer<Ctx> = cc
        .create_with_context(ctx)
        .context("creating the consumer")?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).context("subscribing")?;
    status.set_state("running");
    let tenant = Tenant::new(cfg.tenant.as_str())?;
    let decoder = Decoder::new(cfg);
    let mut paused = false;
    // Two stages: this thread collects and decodes batch k+1 while a writer
    // thread stores batch k (WAL append and fsync, offset commit). At most one
    // batch waits between them.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Prepared>(1);
    let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let consumer = &consumer;
    std::thread::scope(|scope| -> Result<()> {
        let writer = scope.spawn(|| {
            for p in rx {
                let ctx = consumer.context();
                let _writing = ctx.writing.lock();
                if ctx.epoch.load(Ordering::Acquire) != p.epoch {
                    continue; // a rebalance or a retraction since: sought again
                }
                if let Err(e) = write(node, cfg, status, consumer, &tenant, rt, p) {
                    if let Ok(mut f) = failed.lock() {
                        *f = Some(e);
                    }
                    return;
                }
            }
        });
        let res = (|| -> Result<()> {
            while !stop.load(Ordering::Acquire) {
                if failed.lock().map_or(true, |f| f.is_some()) {
                    break;
                }
                retry_claims(consumer);
                // Backpressure: over the node's backlog limit, pause every
                // partition (the consumer keeps polling, so it stays in the group)
                // until flushes catch up.
                let over = node.engine.memory().memtable_bytes > node.cfg.limits.backlog_bytes_max;
                if over != paused {
                    let a = consumer.assignment()?;
                    if over {
                        consumer.pause(&a)?;
                        status.pauses.fetch_add(1, Ordering::Relaxed);
                        status.set_state("paused: the node's write backlog is full");
                        node.flush_wake.notify_one();
                    } else {
                        consumer.resume(&a)?;
                        reseek_after_pause(consumer);
                        status.set_state("running");
                    }
                    paused = over;
                }
                let epoch = consumer.context().epoch.load(Ordering::Acquire);
                let polling = Instant::now();
                let batch = collect(consumer, cfg)?;
                if !paused {
                    unstall(consumer, polling.elapsed());
                }
                if consumer.context().epoch.load(Ordering::Acquire) != epoch {
                    // A rebalance happened while collecting: what was collected
                    // may belong to partitions no longer ours. Dropped; each
                    // partition is sought again once claimed.
                    continue;
                }
                if let Some(p) = prepare(node, cfg, &decoder, batch, epoch) {
                    if tx.send(p).is_err() {
                        break; // the writer failed
                    }
                    skip_ahead_point(consumer);
                }
            }
            Ok(())
        })();
        drop(tx);
        let _ = writer.join();
        res?;
        match failed.lock().ok().and_then(|mut f| f.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })?;
    consumer.unsubscribe();
    Ok(())
}

/// Decides where each unclaimed assigned partition starts (one whose claim failed
/// at assignment, or taken back), writes its claim and seeks it there; from then
/// on its messages are stored.
fn retry_claims(consumer: &BaseConsumer<Ctx>) {
    let ctx = consumer.context();
    let epoch = ctx.epoch.load(Ordering::Acquire);
    let pending: Vec<(String, i32)> = ctx
        .parts
        .lock()
        .map(|m| {
            m.iter()
                .filter(|(_, s)| !s.claimed)
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    if pending.is_empty() {
        return;
    }
    let starts = ctx.starts(consumer, &pending);
    for (t, p) in pending {
        let Some(Some(s)) = starts.get(&(t.clone(), p)).copied() else {
            continue;
        };
        if let Err(e) = ctx.claim(&t, p, s) {
            tracing::warn!(topic = %t, partition = p, error = %format!("{e:#}"), "writing a claim; retrying");
            continue;
        }
        if let Err(e) = consumer.seek(&t, p, Offset::Offset(s), BROKER_TIMEOUT) {
            tracing::warn!(topic = %t, partition = p, error = %e, "seeking to the start offset; retrying");
            continue;
        }
        let Ok(mut parts) = ctx.parts.lock() else {
            return;
        };
        if ctx.epoch.load(Ordering::Acquire) != epoch {
            return; // reassigned meanwhile: decided again
        }
        if let Some(st) = parts.get_mut(&(t.clone(), p)) {
            *st = PartState::at(true, s);
        }
        drop(parts);
        ctx.status.with_partition(&t, p, |st| st.position = s);
        tracing::info!(source = %ctx.status.name, topic = %t, partition = p, from = s, "consuming a partition");
    }
}

/// librdkafka restarts a paused partition from the last message it delivered (plus
/// one), forgetting any seek made since: a gap's seek-back (see [`accept`]) issued
/// just before a pause would be lost, and with no later message to notice the gap
/// again the partition would wait forever. So after a resume every claimed
/// partition is sought to its next expected offset.
fn reseek_after_pause(consumer: &BaseConsumer<Ctx>) {
    let ctx = consumer.context();
    let targets: Vec<((String, i32), i64)> = ctx
        .parts
        .lock()
        .map(|mut m| {
            m.iter_mut()
                .filter(|(_, st)| st.claimed)
                .map(|(k, st)| {
                    st.gap = (-1, 0);
                    st.idle = Duration::ZERO;
                    (k.clone(), st.expected)
                })
                .collect()
        })
        .unwrap_or_default();
    for ((t, p), at) in targets {
        seek_or_decide_again(consumer, &t, p, at, "seeking after a pause");
    }
}

/// Seeks a claimed partition to `offset`; if the seek fails, the partition is
/// unclaimed, so that [`retry_claims`] decides its start, claims and seeks it again.
fn seek_or_decide_again(
    consumer: &BaseConsumer<Ctx>,
    topic: &str,
    p: i32,
    offset: i64,
    doing: &str,
) {
    if let Err(e) = consumer.seek(topic, p, Offset::Offset(offset), BROKER_TIMEOUT) {
        tracing::warn!(topic, partition = p, error = %e, "{doing}; deciding again");
        if let Ok(mut parts) = consumer.context().parts.lock() {
            if let Some(st) = parts.get_mut(&(topic.to_string(), p)) {
                st.claimed = false;
            }
        }
    }
}

/// How long a claimed partition may poll without taking its next message before
/// the broker is asked whether it holds that message.
const STALL_AFTER: Duration = Duration::from_secs(10);

/// The longest wait between checks of a partition that stays stalled.
const STALL_AFTER_MAX: Duration = Duration::from_secs(320);

/// The safety net under every seek: a claimed partition that has taken no
/// message for [`STALL_AFTER`] of polling (`polled` is this round's) while the
/// broker's high watermark is past its expected offset is *stalled*. Seen
/// causes: a broker (tansu) that answers a fetch from inside a record batch with
/// the next batch, so a partition sought or started inside its last batch gets
/// nothing, and no later message shows the gap; librdkafka dropping a seek or a
/// resume that races with a pause. The partition is resumed and sought back,
/// further each time it stays stalled (256, 2,048, ... messages before the
/// expected offset, down to 0; what comes before it is dropped), and checked less
/// and less often, up to [`STALL_AFTER_MAX`] (a high watermark past the last
/// message, as transaction markers leave, is not a stall that seeking ends). The
/// high watermark is the larger of the broker's answer to a ListOffsets request
/// and the last fetch's (librdkafka's statistics): tansu answers the former with
/// the first offset of the last record batch.
fn unstall(consumer: &BaseConsumer<Ctx>, polled: Duration) {
    let ctx = consumer.context();
    let due: Vec<((String, i32), i64, u32)> = {
        let Ok(mut parts) = ctx.parts.lock() else {
            return;
        };
        parts
            .iter_mut()
            .filter_map(|(k, st)| {
                if !st.claimed || std::mem::take(&mut st.advanced) {
                    st.idle = Duration::ZERO;
                    st.tries = 0;
                    return None;
                }
                st.idle += polled;
                let wait = STALL_AFTER
                    .saturating_mul(1 << st.tries.min(5))
                    .min(STALL_AFTER_MAX);
                if st.idle < wait {
                    return None;
                }
                st.idle = Duration::ZERO;
                Some((k.clone(), st.expected, st.tries))
            })
            .collect()
    };
    for ((t, p), expected, tries) in due {
        let listed = match consumer.fetch_watermarks(&t, p, BROKER_TIMEOUT) {
            Ok((_, high)) => high,
            Err(e) => {
                tracing::debug!(topic = %t, partition = p, error = %e, "asking an idle partition's high watermark");
                -1
            }
        };
        let fetched = ctx
            .status
            .partitions
            .lock()
            .ok()
            .and_then(|m| m.get(&(t.clone(), p)).map(|s| s.high_watermark))
            .unwrap_or(-1);
        let high = listed.max(fetched);
        if high <= expected {
            continue; // nothing to take: idle, not stalled
        }
        let back = 256i64
            .saturating_mul(8i64.saturating_pow(tries.min(6)))
            .min(expected);
        {
            let Ok(mut parts) = ctx.parts.lock() else {
                return;
            };
            match parts.get_mut(&(t.clone(), p)) {
                Some(st) if st.claimed && st.expected == expected && !st.advanced => {
                    st.tries = tries + 1;
                    st.gap = (-1, 0);
                }
                _ => continue, // moved on meanwhile
            }
        }
        ctx.status.with_partition(&t, p, |s| s.stalls += 1);
        let from = expected - back;
        if tries == 0 {
            tracing::warn!(topic = %t, partition = p, expected, high_watermark = high, from, idle = ?STALL_AFTER,
                "a partition took nothing though the broker holds messages from its next offset on: seeking it back");
        } else {
            tracing::debug!(topic = %t, partition = p, expected, high_watermark = high, from, tries, "the partition is still stalled: seeking further back");
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&t, p);
        if let Err(e) = consumer.resume(&tpl) {
            tracing::debug!(topic = %t, partition = p, error = %e, "resuming a stalled partition");
        }
        seek_or_decide_again(consumer, &t, p, from, "seeking a stalled partition back");
    }
}

/// Whether a message at `offset` of a partition is the next one to store: claimed
/// and exactly the expected offset. Behind it: read before a seek, or from before
/// the start; dropped. Past it: either the fetch skipped messages (some brokers
/// answer a fetch from inside a record batch with the next batch) or the broker
/// has no messages in between (deleted, or offsets of transaction markers). The
/// partition is sought further and further back (256, 2048, ... messages before
/// the expected offset, down to 0) and what comes before the expected offset is
/// dropped; only when even a fetch from offset 0 jumps over the expected offset to
/// this same message is the gap taken as real. Nothing is ever skipped.
fn accept(consumer: &BaseConsumer<Ctx>, topic: &str, p: i32, offset: i64) -> bool {
    let ctx = consumer.context();
    let Ok(mut parts) = ctx.parts.lock() else {
        return false;
    };
    let Some(st) = parts.get_mut(&(topic.to_string(), p)) else {
        return false;
    };
    if !st.claimed || offset < st.expected {
        return false;
    }
    let real_gap = st.gap.0 == offset && st.gap.1 >= st.expected;
    if offset == st.expected || real_gap {
        if real_gap {
            tracing::warn!(
                topic,
                partition = p,
                from = st.expected,
                to = offset,
                "the broker has no messages in this offset range; going on after it"
            );
        }
        st.expected = offset + 1;
        st.gap = (-1, 0);
        st.advanced = true;
        return true;
    }
    let back = if st.gap.0 == offset {
        (st.gap.1 * 8).min(st.expected)
    } else {
        256.min(st.expected)
    };
    st.gap = (offset, back);
    let to = st.expected - back;
    drop(parts);
    tracing::debug!(
        topic,
        partition = p,
        got = offset,
        seek = to,
        "offset gap: seeking back"
    );
    seek_or_decide_again(consumer, topic, p, to, "seeking back over a gap");
    false
}

type Batch = BTreeMap<(String, i32), Vec<Message>>;

/// Polls messages until a batch is full or the linger time has passed.
fn collect(consumer: &BaseConsumer<Ctx>, cfg: &KafkaSource) -> Result<Batch> {
    let mut batch = Batch::new();
    let mut count = 0usize;
    let mut bytes = 0usize;
    let started = Instant::now();
    let mut wait = Duration::from_millis(100);
    while count < cfg.batch_records_max && bytes < cfg.batch_bytes_max {
        let Some(m) = consumer.poll(wait) else {
            // Nothing more for now (the loop around also needs its turn: claims
            // to retry, backpressure to check, a stop to notice).
            break;
        };
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                // Transient broker errors are retried by librdkafka; count them.
                consumer
                    .context()
                    .status
                    .errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "consumer error");
                continue;
            }
        };
        if !accept(consumer, m.topic(), m.partition(), m.offset()) {
            continue;
        }
        let msg = Message {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            value: m.payload().map(<[u8]>::to_vec),
            key: m.key().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis(),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| (x.key.to_string(), x.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        };
        count += 1;
        bytes += msg.value.as_ref().map_or(0, Vec::len);
        batch
            .entry((msg.topic.clone(), msg.partition))
            .or_default()
            .push(msg);
        let left = cfg.linger.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        wait = left;
    }
    Ok(batch)
}

/// One partition's part of a batch.
#[derive(Debug)]
struct Part {
    topic: String,
    partition: i32,
    first: i64,
    next: i64,
    records: u64,
    bytes: u64,
    dead: u64,
}

/// A batch decoded and ready to store.
#[derive(Debug)]
struct Prepared {
    /// The consumer epoch it was collected in.
    epoch: u64,
    records: Vec<engine::model::Record>,
    raw: u64,
    positions: Vec<Position>,
    parts: Vec<Part>,
}

/// Decodes a batch (the messages of every partition collected) into records and
/// each partition's new position.
fn prepare(
    node: &Node,
    cfg: &KafkaSource,
    decoder: &Decoder,
    batch: Batch,
    epoch: u64,
) -> Option<Prepared> {
    let now = super::now_ns();
    let mut out = Prepared {
        epoch,
        records: Vec::new(),
        raw: 0,
        positions: Vec::new(),
        parts: Vec::new(),
    };
    for ((topic, p), msgs) in batch {
        let key = position_key(&cfg.group, &topic, p);
        let own = node.engine.position(&key).map_or(0, |s| s.next as i64);
        // Messages below the stored position are stored already: never twice.
        let msgs: Vec<Message> = msgs.into_iter().filter(|m| m.offset >= own).collect();
        let (Some(first), Some(last)) = (msgs.first(), msgs.last()) else {
            continue;
        };
        let mut part = Part {
            topic: topic.clone(),
            partition: p,
            first: first.offset,
            next: last.offset + 1,
            records: msgs.len() as u64,
            bytes: 0,
            dead: 0,
        };
        for m in &msgs {
            part.bytes += m.value.as_ref().map_or(0, |v| v.len() as u64);
            let (r, d) = decoder.decode(m, now);
            if d {
                part.dead += 1;
                tracing::warn!(
                    topic,
                    partition = p,
                    offset = m.offset,
                    "message stored as a dead letter"
                );
            }
            out.records.push(r);
        }
        out.raw += part.bytes;
        out.positions.push(Position {
            key,
            first: part.first as u64,
            next: part.next as u64,
        });
        out.parts.push(part);
    }
    (!out.parts.is_empty()).then_some(out)
}

/// Stores a prepared batch as one WAL record with each partition's new position,
/// then commits the offsets to the broker while flushes wait; takes back the part
/// of any partition whose commit did not go through.
fn write(
    node: &Arc<Node>,
    cfg: &KafkaSource,
    status: &SourceStatus,
    consumer: &BaseConsumer<Ctx>,
    tenant: &Tenant,
    rt: &tokio::runtime::Handle,
    p: Prepared,
) -> Result<()> {
    let Prepared {
        records,
        raw,
        positions,
        parts,
        ..
    } = p;
    let confirm = |_| {
        crash_point();
        confirm_commit(consumer, cfg, &parts)
    };
    let done = rt.block_on(
        node.engine
            .ingest_positioned(tenant, records, raw, positions, confirm),
    )?;
    let m = &node.metrics;
    m.ingest_batches.fetch_add(1, Ordering::Relaxed);
    if !done.retracted.is_empty() {
        // Batches collected after this one may follow what was taken back: drop
        // them, and decide, claim and seek every partition again.
        let ctx = consumer.context();
        ctx.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut ps) = ctx.parts.lock() {
            for st in ps.values_mut() {
                st.claimed = false;
            }
        }
    }
    for part in &parts {
        let key = position_key(&cfg.group, &part.topic, part.partition);
        if let Some((_, removed)) = done.retracted.iter().find(|(k, _)| *k == key) {
            status.retracted.fetch_add(*removed, Ordering::Relaxed);
            continue;
        }
        m.ingested_records
            .fetch_add(part.records, Ordering::Relaxed);
        m.ingested_bytes.fetch_add(part.bytes, Ordering::Relaxed);
        status.with_partition(&part.topic, part.partition, |s| {
            s.position = part.next;
            s.records += part.records;
            s.bytes += part.bytes;
            s.dead_lettered += part.dead;
        });
    }
    if node.engine.wants_flush() {
        node.flush_wake.notify_one();
    }
    Ok(())
}

/// A fault-injection hook's counter, read once from its environment variable.
type Countdown = std::sync::OnceLock<Option<AtomicU64>>;

/// The counter of a fault-injection hook: the number in environment variable
/// `var`, read on first use (`None`: the variable is not set, the hook is off).
fn countdown<'a>(cell: &'a Countdown, var: &str) -> Option<&'a AtomicU64> {
    cell.get_or_init(|| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .map(AtomicU64::new)
    })
    .as_ref()
}

/// A fault-injection hook for the crash tests: with
/// `HEIMDALL_TEST_KAFKA_ABORT_BEFORE_COMMIT=N`, the process aborts when its
/// (N+1)-th Kafka batch is durable in the WAL but its offsets are not committed:
/// the one moment a kill -9 rarely hits by chance.
fn crash_point() {
    static LEFT: Countdown = Countdown::new();
    if let Some(n) = countdown(&LEFT, "HEIMDALL_TEST_KAFKA_ABORT_BEFORE_COMMIT") {
        if n.fetch_sub(1, Ordering::AcqRel) == 0 {
            eprintln!("heimdall: HEIMDALL_TEST_KAFKA_ABORT_BEFORE_COMMIT reached: aborting");
            std::process::abort();
        }
    }
}

/// A fault-injection hook for the tests of [`unstall`]: with
/// `HEIMDALL_TEST_KAFKA_SKIP_AHEAD=N`, once N batches are collected every claimed
/// partition's fetch position jumps to its high watermark, as a seek or a resume
/// lost inside librdkafka would leave it: the messages in between are never
/// delivered unless the partition is sought back.
fn skip_ahead_point(consumer: &BaseConsumer<Ctx>) {
    static LEFT: Countdown = Countdown::new();
    let Some(n) = countdown(&LEFT, "HEIMDALL_TEST_KAFKA_SKIP_AHEAD") else {
        return;
    };
    if n.fetch_sub(1, Ordering::AcqRel) != 1 {
        return;
    }
    let claimed: Vec<(String, i32)> = consumer
        .context()
        .parts
        .lock()
        .map(|m| {
            m.iter()
                .filter(|(_, st)| st.claimed)
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    for (t, p) in claimed {
        if let Ok((_, high)) = consumer.fetch_watermarks(&t, p, BROKER_TIMEOUT) {
            eprintln!("heimdall: HEIMDALL_TEST_KAFKA_SKIP_AHEAD: {t}/{p} jumps to offset {high}");
            let _ = consumer.seek(&t, p, Offset::Offset(high), BROKER_TIMEOUT);
        }
    }
}

/// Commits each part's next offset; returns the retractions of the parts to take
/// back: none when the commit went through; after failed retries, those the broker
/// says are not committed (the partition was taken away: its next owner reads them
/// again). When the broker cannot even be asked, everything is kept.
fn confirm_commit(consumer: &BaseConsumer<Ctx>, cfg: &KafkaSource, parts: &[Part]) -> Vec<Retract> {
    let mut tpl = TopicPartitionList::new();
    for p in parts {
        if tpl
            .add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next))
            .is_err()
        {
            return Vec::new();
        }
    }
    let mut last_err = None;
    for attempt in 0..5u32 {
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => return Vec::new(),
            Err(e) => {
                last_err = Some(e);
                std::thread::sleep(Duration::from_millis(100 << attempt));
            }
        }
    }
    let status = &consumer.context().status;
    status.errors.fetch_add(1, Ordering::Relaxed);
    for p in parts {
        status.with_partition(&p.topic, p.partition, |s| s.errors += 1);
    }
    let keys: Vec<(String, i32)> = parts
        .iter()
        .map(|p| (p.topic.clone(), p.partition))
        .collect();
    match committed(consumer, &keys) {
        Ok(c) => parts
            .iter()
            .filter(|p| c.get(&(p.topic.clone(), p.partition)).copied().unwrap_or(-1) < p.next)
            .map(|p| {
                tracing::warn!(topic = %p.topic, partition = p.partition, first = p.first, next = p.next,
                    error = ?last_err, "offset commit refused: taking the batch back for the partition's next owner");
                tail(&cfg.group, &p.topic, p.partition, p.first)
            })
            .collect(),
        Err(e) => {
            // The broker cannot say: keep the batch (never lose it). If another
            // node consumes the partition from before it, it is stored twice
            // (docs/kafka.md, limits).
            tracing::error!(error = %format!("{e:#}"),
                "offset commit failed and the broker cannot be asked; keeping the batch");
            Vec::new()
        }
    }
}

/// Sources of a node, started after recovery.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    pub(crate) status: Vec<Arc<SourceStatus>>,
    stop: Arc<AtomicBool>,
    /// The consumers' threads (one per life of each source).
    lives: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

impl Sources {
    pub(crate) fn new(cfgs: &[KafkaSource]) -> Sources {
        Sources {
            status: cfgs
                .iter()
                .map(|c| Arc::new(SourceStatus::new(c.name())))
                .collect(),
            stop: Arc::new(AtomicBool::new(false)),
            lives: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Starts every source as a task of the node's supervisor.
    pub(crate) fn start(&self, node: &Arc<Node>) {
        for (cfg, status) in node.cfg.sources.kafka.iter().zip(&self.status) {
            supervise(
                node,
                cfg.clone(),
                Arc::clone(status),
                Arc::clone(&self.stop),
                Arc::clone(&self.lives),
            );
        }
    }

    /// Stops every source and waits for its consumer (a batch being stored
    /// finishes). Called before the supervisor stops, so that intake ends first.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let lives = self
            .lives
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        for t in lives {
            let _ = t.join();
        }
        for s in &self.status {
            s.set_state("stopped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_keys_round_trip() {
        let k = position_key("my/group", "logs.app", 12);
        assert_eq!(k, "kafka/my/group/logs.app/12");
        assert_eq!(
            parse_position_key("my/group", &k),
            Some(("logs.app".into(), 12))
        );
        assert_eq!(parse_position_key("other", &k), None);
        assert_eq!(parse_position_key("my/group", "kafka/my/group/x"), None);
    }
}
