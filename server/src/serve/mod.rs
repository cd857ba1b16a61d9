//! `heimdall serve`: the database server. One engine, served over gRPC (ingest
//! `heimdall.v1.Ingest` and Arrow Flight, on one address) and HTTP (health,
//! readiness, Prometheus metrics, JSON-lines insert, on another), with a background
//! flusher. SIGTERM or SIGINT: stop accepting, let in-flight requests finish, flush
//! the memtable to segments and sync the WAL, exit 0.

pub(crate) mod config;
pub(crate) mod flight;
mod http;
mod ingest;
pub(crate) mod kafka;
mod metrics;
use heimdall_server::nice;
mod put;
pub(crate) mod refusal;
mod tiering;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use engine::engine::{CompactStats, Engine, EngineConfig, EngineError, FlushStats, Ingested};
use engine::model::{Record, Tenant};
use tokio::net::TcpListener;
use tonic::Status;

pub(crate) use nice::{lower_priority, spawn_thread};
pub(crate) use refusal::Refusal;

pub(crate) use config::{Config, Overrides};

pub(crate) use heimdall_server::pb;

pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A running server's shared state.
pub(crate) struct Node {
    pub(crate) engine: Engine,
    pub(crate) cfg: Config,
    pub(crate) metrics: metrics::Metrics,
    /// Set once recovered and serving; cleared at shutdown.
    pub(crate) ready: AtomicBool,
    pub(crate) flush_wake: Arc<tokio::sync::Notify>,
    /// The node's background tasks (flush, offload, retention, lease).
    pub(crate) tasks: engine::tasks::Supervisor,
    /// Kafka sources consumed by this node.
    pub(crate) sources: kafka::Sources,
    /// The object-store and retention task's state.
    pub(crate) tiering: tiering::TierStatus,
    /// Slots of running queries ([`Config`] `limits.queries_max`).
    pub(crate) query_slots: Arc<tokio::sync::Semaphore>,
    /// The reserve slots of needle queries (`[limits] query_reserve`).
    pub(crate) query_reserve: Arc<tokio::sync::Semaphore>,
}

/// A running query's slot; gives it back (and counts) when dropped.
pub(crate) struct QuerySlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    node: Arc<Node>,
    /// How long the query may run in this slot.
    pub(crate) deadline: Duration,
}

impl Drop for QuerySlot {
    fn drop(&mut self) {
        self.node
            .metrics
            .queries_running
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Node {
    pub(crate) fn rejected(&self) {
        self.metrics.ingest_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Stores a batch (or recognises a retried one), pushing back when the memtable
    /// backlog is over its limit.
    pub(crate) async fn ingest(
        &self,
        tenant: &Tenant,
        records: Vec<Record>,
        dedup: Option<(String, u64)>,
    ) -> Result<Ingested, Refusal> {
        let started = Instant::now();
        let backlog = self.engine.memory().memtable_bytes;
        if backlog > self.cfg.limits.backlog_bytes_max {
            self.rejected();
            self.flush_wake.notify_one();
            return Err(Refusal::overloaded(
                format!(
                    "{backlog} bytes wait to be flushed (limit {}): retry later",
                    self.cfg.limits.backlog_bytes_max
                ),
                Duration::from_millis(500),
            ));
        }
        let n = records.len() as u64;
        let bytes: u64 = records.iter().map(|r| r.msg.len() as u64).sum();
        let res = self
            .engine
            .ingest_with(tenant, records, bytes, dedup)
            .await
            .map_err(|e| {
                self.rejected();
                Refusal::from(e)
            })?;
        let m = &self.metrics;
        m.ingest_batches.fetch_add(1, Ordering::Relaxed);
        if res.duplicate {
            m.ingest_duplicates.fetch_add(1, Ordering::Relaxed);
        } else {
            m.ingested_records.fetch_add(n, Ordering::Relaxed);
            m.ingested_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        m.ingest_latency.observe(started.elapsed());
        if self.engine.wants_flush() {
            self.flush_wake.notify_one();
        }
        Ok(res)
    }

    /// A slot to run a query in: at once when fewer than `queries_max` run; for
    /// a needle (`narrowed`: `query::Filter::narrowed_by_index`) in one of the
    /// `query_reserve` slots when those are all busy, with the shorter deadline
    /// `query_reserve_timeout`; after a wait in the queue otherwise; refused
    /// (RESOURCE_EXHAUSTED, with a retry hint) when the queue is full or the wait
    /// passes `query_queue_timeout`.
    pub(crate) async fn query_slot(self: &Arc<Self>, narrowed: bool) -> Result<QuerySlot, Status> {
        let l = &self.cfg.limits;
        let m = &self.metrics;
        let slot = |permit, deadline| {
            m.queries_running.fetch_add(1, Ordering::Relaxed);
            QuerySlot {
                _permit: permit,
                node: Arc::clone(self),
                deadline,
            }
        };
        let free = Arc::clone(&self.query_slots).try_acquire_owned();
        if free.is_err() && narrowed {
            if let Ok(p) = Arc::clone(&self.query_reserve).try_acquire_owned() {
                m.queries_reserve.fetch_add(1, Ordering::Relaxed);
                return Ok(slot(p, l.query_timeout.min(l.query_reserve_timeout)));
            }
        }
        let refuse = |why: String| {
            m.queries_refused.fetch_add(1, Ordering::Relaxed);
            let mut s = Status::resource_exhausted(why);
            s.metadata_mut().insert(
                "grpc-retry-pushback-ms",
                tonic::metadata::MetadataValue::from(1000u32),
            );
            s
        };
        let permit = match free {
            Ok(p) => p,
            Err(_) => {
                let queued = m.queries_queued.fetch_add(1, Ordering::Relaxed);
                if queued >= l.query_queue_max as u64 {
                    m.queries_queued.fetch_sub(1, Ordering::Relaxed);
                    return Err(refuse(format!(
                        "{} queries running and {queued} waiting (limits.queries_max, limits.query_queue_max): retry later",
                        l.queries_max
                    )));
                }
                let waited = tokio::time::timeout(
                    l.query_queue_timeout,
                    Arc::clone(&self.query_slots).acquire_owned(),
                )
                .await;
                m.queries_queued.fetch_sub(1, Ordering::Relaxed);
                match waited {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(Status::unavailable("the server is stopping")),
                    Err(_) => {
                        return Err(refuse(format!(
                            "waited {:?} for one of {} query slots (limits.query_queue_timeout): retry later",
                            l.query_queue_timeout, l.queries_max
                        )))
                    }
                }
            }
        };
        Ok(slot(permit, l.query_timeout))
    }

    /// Runs a query ticket, handing each record batch to `emit` as it is built;
    /// stops early when `emit` returns false (the client went away).
    pub(crate) fn query_each(
        &self,
        tenant: &Tenant,
        q: &query::ast::Query,
        deadline: Duration,
        emit: impl FnMut(arrow_array::RecordBatch) -> bool,
    ) -> Result<(), Status> {
        let l = &self.cfg.limits;
        let limits = query::Limits {
            deadline,
            max_rows: l.query_rows_max,
            max_groups: l.query_groups_max,
            memory_bytes: l.query_memory_bytes_max,
            ..query::Limits::default()
        };
        // At the server's priority until the query holds its snapshot (the last
        // engine lock it takes), lower after: a query waiting for the CPU never
        // holds a lock that ingest needs.
        let priority = l.query_priority;
        query::run_batches_each_with(
            &self.engine,
            tenant,
            q,
            &limits,
            64 * 1024,
            || lower_priority(priority),
            emit,
        )
        .map_err(query_status)
    }

    /// The schema a query ticket's answer can have, from the query and the stored
    /// columns alone (`query::schema`): no record is read.
    pub(crate) fn planned_schema(
        &self,
        t: &flight::QueryTicket,
    ) -> Result<arrow_schema::SchemaRef, Status> {
        let (tenant, q) = self.parse_ticket(t)?;
        query::schema::planned_schema(&self.engine, &tenant, &q).map_err(query_status)
    }

    /// The `tasks` action's answer: the supervisor's tasks; a Kafka source's
    /// (`kafka:NAME`) says what its consumer is doing in `about`.
    pub(crate) fn tasks_json(&self) -> serde_json::Value {
        let tasks: Vec<serde_json::Value> = self
            .tasks
            .list()
            .iter()
            .map(|t| {
                let mut j = t.json();
                let src = t
                    .name
                    .strip_prefix("kafka:")
                    .and_then(|name| self.sources.status.iter().find(|s| s.name == name));
                if let Some(src) = src {
                    j["about"] = serde_json::json!(format!("{} ({})", t.about, src.state()));
                }
                j
            })
            .collect();
        serde_json::json!({ "tasks": tasks })
    }

    /// A ticket's tenant and parsed query (`INVALID_ARGUMENT` naming the problem).
    pub(crate) fn parse_ticket(
        &self,
        t: &flight::QueryTicket,
    ) -> Result<(Tenant, query::ast::Query), Status> {
        let tenant = Tenant::new(t.tenant.clone().unwrap_or_else(|| "default".into()))
            .map_err(|e| Status::invalid_argument(format!("tenant: {e}")))?;
        let q = query::parse_now(&t.text()).map_err(query_status)?;
        Ok((tenant, q))
    }

    /// Flushes the memtable on a blocking thread (segment writing is CPU work that
    /// must not hold up the async workers).
    pub(crate) async fn flush(self: &Arc<Self>) -> Result<FlushStats, Status> {
        let node = Arc::clone(self);
        self.metrics.flush_running.store(1, Ordering::Relaxed);
        let res = tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(node.engine.flush())
        })
        .await;
        self.metrics.flush_running.store(0, Ordering::Relaxed);
        match res {
            Ok(Ok(s)) => {
                self.metrics.flushes.fetch_add(1, Ordering::Relaxed);
                Ok(s)
            }
            Ok(Err(e)) => {
                self.metrics.flush_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "flush failed");
                Err(engine_status(e))
            }
            Err(e) => Err(Status::internal(format!("flush task failed: {e}"))),
        }
    }

    /// Compacts on a blocking thread.
    pub(crate) async fn compact(self: &Arc<Self>) -> Result<CompactStats, Status> {
        let node = Arc::clone(self);
        let res = tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(node.engine.compact())
        })
        .await
        .map_err(|e| Status::internal(format!("compaction task failed: {e}")))?
        .map_err(engine_status)?;
        self.metrics.compactions.fetch_add(1, Ordering::Relaxed);
        Ok(res)
    }

    /// The `stats` action's answer.
    pub(crate) async fn stats_json(self: &Arc<Self>) -> Result<serde_json::Value, Status> {
        let node = Arc::clone(self);
        let s = tokio::task::spawn_blocking(move || node.engine.stats())
            .await
            .map_err(|e| Status::internal(format!("stats task failed: {e}")))?
            .map_err(engine_status)?;
        Ok(serde_json::json!({
            "records": s.records,
            "segments": s.segments,
            "raw_bytes": s.raw_bytes,
            "column_bytes": s.column_bytes,
            "index_bytes": s.index_bytes,
            "metadata_bytes": s.metadata_bytes,
            "wal_bytes": s.wal_bytes,
            "offloaded_segments": s.offloaded_segments,
            "offloaded_bytes": s.offloaded_bytes,
            "local_segment_bytes": s.local_segment_bytes,
            "object_store": self.tiering.json(self),
            "memtable_bytes": self.engine.memory().memtable_bytes,
            "templates": self.engine.templates_held(),
            "sources": self.sources.status.iter().map(|s| s.json()).collect::<Vec<_>>(),
        }))
    }
}

/// The gRPC status for an engine error ([`Refusal`]'s mapping).
pub(crate) fn engine_status(e: EngineError) -> Status {
    Refusal::from(e).status()
}

/// The gRPC status for a query error: the query's fault or the server's.
fn query_status(e: query::QueryError) -> Status {
    use query::QueryError as Q;
    match e {
        Q::Parse(_) | Q::Regex(_) => Status::invalid_argument(e.to_string()),
        Q::Deadline(_) => Status::deadline_exceeded(e.to_string()),
        Q::Segment(engine::segment::SegmentError::Remote { .. })
        | Q::Engine(EngineError::Segment(engine::segment::SegmentError::Remote { .. }))
        | Q::Engine(EngineError::Tier(_)) => Status::unavailable(e.to_string()),
        Q::TooManyRows(_) | Q::TooManyGroups(_) | Q::Memory(_) => {
            Status::resource_exhausted(e.to_string())
        }
        other => Status::internal(other.to_string()),
    }
}

/// Opens the engine, serves until SIGTERM/SIGINT, shuts down cleanly.
pub(crate) fn run(cfg: Config) -> Result<()> {
    // Before any thread starts: they all inherit it.
    nice::set_latency_slice(cfg.limits.latency_slice);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("heimdall-worker")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(cfg))
}

async fn serve(cfg: Config) -> Result<()> {
    let signals = Signals::install()?;
    let grpc = TcpListener::bind(cfg.grpc_addr)
        .await
        .with_context(|| format!("binding the gRPC address {}", cfg.grpc_addr))?;
    let http = TcpListener::bind(cfg.http_addr)
        .await
        .with_context(|| format!("binding the HTTP address {}", cfg.http_addr))?;
    let mut ecfg = EngineConfig::new(&cfg.data_dir);
    ecfg.memtable_bytes_max = cfg.limits.memtable_bytes_max;
    ecfg.flush_interval = Some(cfg.limits.flush_interval).filter(|d| !d.is_zero());
    ecfg.disk_reserve_bytes = cfg.limits.disk_reserve_bytes;
    ecfg.flush_threads = cfg.limits.flush_threads;
    ecfg.tier = cfg.tier();
    ecfg.templates = cfg.templates.miner();
    let started = Instant::now();
    let engine = tokio::task::spawn_blocking(move || Engine::open(ecfg))
        .await
        .context("recovery task")?
        .with_context(|| format!("opening the data directory {}", cfg.data_dir.display()))?;
    let node = Arc::new(Node {
        engine,
        cfg: cfg.clone(),
        metrics: metrics::Metrics::default(),
        ready: AtomicBool::new(false),
        flush_wake: Arc::new(tokio::sync::Notify::new()),
        tasks: engine::tasks::Supervisor::new(),
        sources: kafka::Sources::new(&cfg.sources.kafka),
        tiering: tiering::TierStatus::default(),
        query_slots: Arc::new(tokio::sync::Semaphore::new(cfg.limits.queries_max)),
        query_reserve: Arc::new(tokio::sync::Semaphore::new(cfg.limits.query_reserve)),
    });
    // Before any flush: each Kafka source takes back a last batch stored but not
    // handed over before the last stop (it is still in the memtable).
    for (kcfg, status) in cfg.sources.kafka.iter().zip(&node.sources.status) {
        match tokio::time::timeout(Duration::from_secs(60), kafka::resolve(&node, kcfg, status))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(source = %status.name, error = %format!("{e:#}"),
                "could not check the last Kafka batches against the broker; keeping them"),
            Err(_) => tracing::error!(source = %status.name,
                "the broker did not answer within 60 s; keeping the last Kafka batches"),
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    spawn_flush_task(&node);
    spawn_compaction_task(&node);
    tiering::spawn_tasks(&node);
    let limit = cfg.limits.message_bytes_max;
    let ingest = pb::ingest_server::IngestServer::new(ingest::IngestService {
        node: Arc::clone(&node),
    })
    .max_decoding_message_size(limit);
    let flight = arrow_flight::flight_service_server::FlightServiceServer::new(flight::Flight {
        node: Arc::clone(&node),
    })
    .max_decoding_message_size(limit);
    let grpc_addr = grpc.local_addr()?;
    let http_addr = http.local_addr()?;
    let grpc_task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ingest)
            .add_service(flight)
            .serve_with_incoming_shutdown(
                // Acknowledgements are small: sent at once, not held back by
                // Nagle's algorithm until the client's delayed ACK (40 ms seen in
                // the ingest-under-query benchmark); dead peers found by keepalive.
                tonic::transport::server::TcpIncoming::from(grpc)
                    .with_nodelay(Some(true))
                    .with_keepalive(Some(Duration::from_secs(60))),
                stopped(stop_rx.clone()),
            ),
    );
    let http_task = tokio::spawn(http::serve(
        http,
        Arc::clone(&node),
        stopped(stop_rx.clone()),
    ));
    node.sources.start(&node);
    node.ready.store(true, Ordering::Release);
    tracing::info!(
        grpc = %grpc_addr,
        http = %http_addr,
        recovery_ms = started.elapsed().as_millis() as u64,
        "serving"
    );
    // One machine-readable line, for scripts and tests (the ports may have been 0).
    println!("heimdall: serving grpc={grpc_addr} http={http_addr}");

    signals.wait().await;
    tracing::info!("shutting down: no new requests, finishing the in-flight ones");
    node.ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    {
        let node = Arc::clone(&node);
        let _ = tokio::task::spawn_blocking(move || node.sources.stop()).await;
    }
    let grpc_res = grpc_task.await;
    let http_res = http_task.await;
    node.tasks.stop().await;
    // Everything acknowledged is in the WAL already; flushing leaves nothing to
    // replay at the next start.
    let flushed = node.flush().await;
    let synced = node.engine.sync().await;
    {
        let node = Arc::clone(&node);
        let _ = tokio::task::spawn_blocking(move || node.engine.release_lease()).await;
    }
    match grpc_res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "gRPC server ended with an error"),
        Err(e) => tracing::error!(error = %e, "gRPC server task failed"),
    }
    match http_res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "HTTP server ended with an error"),
        Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
    }
    flushed.map_err(|s| anyhow::anyhow!("final flush: {}", s.message()))?;
    synced.context("final WAL sync")?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT, caught from the moment this is made: made before the
/// "serving" line, so a signal sent as soon as a client sees it is a clean stop
/// (once made after it, a SIGTERM in between killed the process by default).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// The `flush` task: flushes when the memtable is full (woken by ingest) or,
/// checked once a second, when its first record is older than `[limits]
/// flush_interval`. A failed flush makes the engine refuse writes until restart:
/// the task is then `failed`.
fn spawn_flush_task(node: &Arc<Node>) {
    let n = Arc::clone(node);
    node.tasks.spawn(
        "flush",
        "write the memtable to segments (by size, and by age: flush_interval)",
        engine::tasks::Schedule::every(Duration::from_secs(1))
            .or_when(Arc::clone(&node.flush_wake)),
        move || {
            let n = Arc::clone(&n);
            async move {
                if !n.engine.wants_flush() {
                    return Ok(());
                }
                // Errors are counted and logged in `flush`.
                n.flush()
                    .await
                    .map(|_| ())
                    .map_err(|e| match n.engine.failure() {
                        Some(why) => engine::tasks::TaskError::Fatal(why),
                        None => engine::tasks::TaskError::Retry(e.message().to_string()),
                    })
            }
        },
    );
}

/// The `compaction` task (`[compaction] enabled`, a writable node): every
/// `[compaction] interval`, merges each tenant's small segments
/// ([`engine::engine::CompactionPolicy`]), paced, on a thread of lower CPU
/// priority so that it does not slow ingest down.
fn spawn_compaction_task(node: &Arc<Node>) {
    let c = &node.cfg.compaction;
    if !c.enabled || node.cfg.read_only {
        return;
    }
    let n = Arc::clone(node);
    let policy = c.policy();
    node.tasks.spawn(
        "compaction",
        "merge small segments (each tenant's, within a memory budget, paced)",
        engine::tasks::Schedule::every(c.interval),
        move || {
            let (n, policy) = (Arc::clone(&n), policy.clone());
            let stopping = n.tasks.stopping();
            async move {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let node = Arc::clone(&n);
                spawn_thread("heimdall-compact", move || {
                    // Low, not idle: a merge publishes under the engine lock,
                    // and must get the CPU back soon to release it.
                    lower_priority(nice::Priority::Low);
                    let res = tokio::runtime::Handle::current()
                        .block_on(node.engine.compact_with(&policy, &stopping));
                    let _ = tx.send(res);
                })
                .map_err(|e| {
                    engine::tasks::TaskError::Retry(format!("cannot start a thread: {e}"))
                })?;
                match rx.await {
                    Ok(Ok(s)) => {
                        if s.merged > 0 {
                            n.metrics.compactions.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(merged = s.merged, written = s.written, "compacted");
                        }
                        Ok(())
                    }
                    Ok(Err(e)) => Err(match n.engine.failure() {
                        Some(why) => engine::tasks::TaskError::Fatal(why),
                        None => engine::tasks::TaskError::Retry(e.to_string()),
                    }),
                    Err(_) => Err(engine::tasks::TaskError::Retry(
                        "the compaction thread ended without an answer".into(),
                    )),
                }
            }
        },
    );
}
