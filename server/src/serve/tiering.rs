//! The object-store and retention task: every `offload_interval`, offload what
//! is due and apply retention (a writable node; the first round also sweeps
//! objects no manifest lists), or reload the store's manifest (a read-only node).
//! The `offload` and `retention` actions run the same steps now.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::engine::{OffloadStats, RetentionStats};
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

/// The task; returns when `stop` changes.
pub(crate) async fn run(node: Arc<Node>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let tier = node.engine.tier().map(|t| t.cfg.read_only);
    let interval = node
        .cfg
        .object_store
        .as_ref()
        .map_or(Duration::from_secs(60), |o| o.offload_interval);
    if tier.is_none() && node.cfg.retention.is_empty() {
        return;
    }
    let mut swept = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if tier == Some(true) {
            let n = Arc::clone(&node);
            match tokio::task::spawn_blocking(move || n.engine.refresh_from_store()).await {
                Ok(Ok(true)) => tracing::info!("reloaded the object store's manifest"),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "reloading the object store's manifest"),
                Err(e) => tracing::warn!(error = %e, "manifest reload task failed"),
            }
            continue;
        }
        if tier == Some(false) {
            if !swept {
                let n = Arc::clone(&node);
                match tokio::task::spawn_blocking(move || n.engine.sweep_store()).await {
                    Ok(Ok(k)) => {
                        swept = true;
                        node.tiering
                            .swept_objects
                            .fetch_add(k as u64, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "sweeping the object store; trying again later")
                    }
                    Err(e) => tracing::warn!(error = %e, "sweep task failed"),
                }
            }
            match node.offload(false).await {
                Ok(s) if s.segments > 0 || s.failed > 0 => tracing::info!(
                    segments = s.segments,
                    bytes = s.bytes,
                    failed = s.failed,
                    local_bytes = s.local_bytes,
                    "offload round"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e.message(), "offload round failed");
                    node.tiering.set_error(Some(e.message().to_string()));
                }
            }
        }
        if !node.cfg.retention.is_empty() {
            if let Err(e) = node.retain().await {
                tracing::warn!(error = %e.message(), "retention round failed");
                node.tiering.set_error(Some(e.message().to_string()));
            }
        }
    }
}

/// Renews the object store lease a few times per lease time (a writable node with
/// an object store); returns when `stop` changes.
pub(crate) async fn renew_lease(node: Arc<Node>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some(ttl) = node
        .engine
        .tier()
        .filter(|t| !t.cfg.read_only)
        .map(|t| t.cfg.lease_ttl)
    else {
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ttl / 4) => {}
            _ = stop.changed() => return,
        }
        let n = Arc::clone(&node);
        match tokio::task::spawn_blocking(move || n.engine.renew_lease()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "renewing the object store lease");
                node.tiering.set_error(Some(e.to_string()));
            }
            Err(e) => tracing::warn!(error = %e, "lease task failed"),
        }
    }
}
