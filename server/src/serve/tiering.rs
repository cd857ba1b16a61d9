//! The object-store and retention tasks (run by the node's supervisor): every
//! `offload_interval`, offload what is due (a writable node; the first round also
//! sweeps objects no manifest lists) or reload the store's manifest (a read-only
//! node), and apply retention; renew the bucket lease. The `offload` and
//! `retention` actions run the same steps now.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::engine::{OffloadStats, RetentionStats};
use engine::tasks::{Schedule, TaskError};
use tonic::Status;

use super::{engine_status, Node};

/// What the task has done, for `/readyz`, `stats` and `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct TierStatus {
    pub(crate) offload_runs: AtomicU64,
    pub(crate) offloaded_segments: AtomicU64,
    pub(crate) offloaded_bytes: AtomicU64,
    pub(crate) offload_failures: AtomicU64,
    pub(crate) retention_deleted_segments: AtomicU64,
    pub(crate) retention_deleted_bytes: AtomicU64,
    pub(crate) swept_objects: AtomicU64,
    /// The last error of an offload or retention round, cleared by one that
    /// offloaded something without a failure.
    pub(crate) last_error: Mutex<Option<String>>,
}

impl TierStatus {
    fn set_error(&self, e: Option<String>) {
        if let Ok(mut l) = self.last_error.lock() {
            *l = e;
        }
    }

    pub(crate) fn json(&self, node: &Node) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let Some(t) = node.engine.tier() else {
            return serde_json::Value::Null;
        };
        let (mem, disk) = t.cache.bytes();
        serde_json::json!({
            "url": t.cfg.url,
            "read_only": t.cfg.read_only,
            "offload_runs": g(&self.offload_runs),
            "offloaded_segments": g(&self.offloaded_segments),
            "offload_failures": g(&self.offload_failures),
            "retention_deleted_segments": g(&self.retention_deleted_segments),
            "last_error": self.last_error.lock().ok().and_then(|l| l.clone()),
            "cache_memory_bytes": mem,
            "cache_disk_bytes": disk,
            "request_retries": g(&t.store.counters.retries),
            "request_failures": g(&t.store.counters.failures),
        })
    }
}

impl Node {
    /// Offloads on a blocking thread (`force`: every local segment).
    pub(crate) async fn offload(self: &Arc<Self>, force: bool) -> Result<OffloadStats, Status> {
        let node = Arc::clone(self);
        let s = tokio::task::spawn_blocking(move || node.engine.offload(force))
            .await
            .map_err(|e| Status::internal(format!("offload task failed: {e}")))?
            .map_err(engine_status)?;
        let t = &self.tiering;
        t.offload_runs.fetch_add(1, Ordering::Relaxed);
        t.offloaded_segments
            .fetch_add(s.segments as u64, Ordering::Relaxed);
        t.offloaded_bytes.fetch_add(s.bytes, Ordering::Relaxed);
        t.offload_failures
            .fetch_add(s.failed as u64, Ordering::Relaxed);
        // A round that moved nothing and failed nothing says nothing new.
        if s.failed > 0 || s.segments > 0 {
            t.set_error(s.error.clone());
        }
        Ok(s)
    }

    /// Applies the configured retention on a blocking thread.
    pub(crate) async fn retain(self: &Arc<Self>) -> Result<RetentionStats, Status> {
        let node = Arc::clone(self);
        let rules = self.cfg.retention_rules();
        let s = tokio::task::spawn_blocking(move || node.engine.retain(&rules))
            .await
            .map_err(|e| Status::internal(format!("retention task failed: {e}")))?
            .map_err(engine_status)?;
        let t = &self.tiering;
        t.retention_deleted_segments.fetch_add(
            (s.local_segments + s.remote_segments) as u64,
            Ordering::Relaxed,
        );
        t.retention_deleted_bytes
            .fetch_add(s.bytes, Ordering::Relaxed);
        Ok(s)
    }
}

/// Registers the object-store and retention tasks with the node's supervisor:
/// `offload` (a writable node: the store sweep once, then offloading what is due),
/// `store-refresh` (a read-only node: reloading the store's manifest), `retention`
/// (with retention rules) every `offload_interval`, and `lease` (renewing the
/// writer's lease on the bucket, four times a lease).
pub(crate) fn spawn_tasks(node: &Arc<Node>) {
    let tier = node
        .engine
        .tier()
        .map(|t| (t.cfg.read_only, t.cfg.lease_ttl));
    let interval = node
        .cfg
        .object_store
        .as_ref()
        .map_or(Duration::from_secs(60), |o| o.offload_interval);
    let every = Schedule::every(interval);
    match tier {
        Some((true, _)) => {
            let n = Arc::clone(node);
            node.tasks.spawn(
                "store-refresh",
                "reload the object store's manifest (a read-only node)",
                every.clone(),
                move || {
                    let n = Arc::clone(&n);
                    async move {
                        if blocking(move || n.engine.refresh_from_store()).await? {
                            tracing::info!("reloaded the object store's manifest");
                        }
                        Ok(())
                    }
                },
            );
        }
        Some((false, ttl)) => {
            let n = Arc::clone(node);
            let swept = Arc::new(std::sync::atomic::AtomicBool::new(false));
            node.tasks.spawn(
                "offload",
                "move segments past offload_after to the object store (first, sweep objects no manifest lists)",
                every.clone(),
                move || {
                    let (n, swept) = (Arc::clone(&n), Arc::clone(&swept));
                    async move { offload_round(&n, &swept).await }
                },
            );
            let n = Arc::clone(node);
            node.tasks.spawn(
                "lease",
                "renew this node's writer lease on the bucket prefix",
                Schedule::every(ttl / 4),
                move || {
                    let n = Arc::clone(&n);
                    async move {
                        let node = Arc::clone(&n);
                        blocking_with(
                            move || node.engine.renew_lease(),
                            |e| match e {
                                // Another node holds it now: this one no longer
                                // writes to the bucket until restarted.
                                engine::engine::EngineError::LeaseLost(why) => {
                                    TaskError::Fatal(why)
                                }
                                other => TaskError::Retry(other.to_string()),
                            },
                        )
                        .await
                        .inspect_err(|e| n.tiering.set_error(Some(e.to_string())))
                    }
                },
            );
        }
        None => {}
    }
    if !node.cfg.retention.is_empty() {
        let n = Arc::clone(node);
        node.tasks.spawn(
            "retention",
            "delete segments past their tenant's or stream's retention",
            every,
            move || {
                let n = Arc::clone(&n);
                async move {
                    n.retain().await.map(|_| ()).map_err(|e| {
                        n.tiering.set_error(Some(e.message().to_string()));
                        TaskError::Retry(e.message().to_string())
                    })
                }
            },
        );
    }
}

/// Runs engine work on a blocking thread; its error is the task's.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, engine::engine::EngineError> + Send + 'static,
) -> Result<T, TaskError> {
    blocking_with(f, |e| TaskError::Retry(e.to_string())).await
}

/// [`blocking`], with the engine's error mapped to the task's by `map`.
async fn blocking_with<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, engine::engine::EngineError> + Send + 'static,
    map: impl FnOnce(engine::engine::EngineError) -> TaskError,
) -> Result<T, TaskError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(map),
        Err(e) => Err(TaskError::Retry(format!("the blocking run failed: {e}"))),
    }
}

/// One round of the `offload` task: the sweep until it has succeeded once, then
/// offloading what is due.
async fn offload_round(
    node: &Arc<Node>,
    swept: &std::sync::atomic::AtomicBool,
) -> Result<(), TaskError> {
    if !swept.load(Ordering::Relaxed) {
        let n = Arc::clone(node);
        let k = blocking(move || n.engine.sweep_store()).await?;
        swept.store(true, Ordering::Relaxed);
        node.tiering
            .swept_objects
            .fetch_add(k as u64, Ordering::Relaxed);
    }
    match node.offload(false).await {
        Ok(s) => {
            if s.segments > 0 || s.failed > 0 {
                tracing::info!(
                    segments = s.segments,
                    bytes = s.bytes,
                    failed = s.failed,
                    local_bytes = s.local_bytes,
                    "offload round"
                );
            }
            match (s.failed, s.error) {
                (0, _) => Ok(()),
                (n, e) => Err(TaskError::Retry(format!(
                    "{n} segments not offloaded: {}",
                    e.unwrap_or_default()
                ))),
            }
        }
        Err(e) => {
            node.tiering.set_error(Some(e.message().to_string()));
            Err(TaskError::Retry(e.message().to_string()))
        }
    }
}
