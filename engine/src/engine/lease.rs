//! The writer's lease on a bucket prefix: one writable node per prefix.
//!
//! Two writable nodes on one prefix (a lost-disk restore started while the old node
//! still runs) would delete each other's objects in the store sweep and overwrite
//! each other's `MANIFEST`. So a writable node holds the object `LEASE`: a JSON
//! document naming its holder (the data directory's node id, kept in `NODE_ID`)
//! and when it expires. It is taken with a conditional put (create when absent;
//! update-if-match when it expired or is already ours, as after a restart) and
//! renewed the same way, so of two nodes racing for it exactly one wins, and a
//! holder that lost it learns so at its next renewal. Every write to the bucket
//! checks the lease first and renews it when less than half of it is left.
//!
//! A backend without conditional updates (a local directory, `file://`) is renewed
//! by check-then-overwrite: still one node per prefix at start, without the race
//! guarantee (such a store lives on one machine anyway). Expiry is judged on wall
//! clocks: nodes' clocks must agree within a quarter of the lease time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::{PutMode, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::{EngineError, Result};
use crate::tier::Tier;

/// Name of the lease object under the prefix.
pub const LEASE_OBJECT: &str = "LEASE";
/// File of the data directory holding its node id.
pub const NODE_ID_FILE: &str = "NODE_ID";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Doc {
    /// Node id of the holder.
    holder: String,
    /// Where it runs (host and data directory), for error messages.
    node: String,
    /// Wall-clock expiry, nanoseconds since the epoch (0: released).
    expires_ns: i64,
    /// Random per write: recognises our own write after a lost answer.
    nonce: u64,
}

#[derive(Debug)]
struct State {
    /// Whether the lease was taken (at open, or at the first bucket write when
    /// the store could not be reached at open).
    taken: bool,
    version: UpdateVersion,
    /// Until when this node may write, by its own monotonic clock.
    valid_until: Instant,
    /// Why it was lost, once it was.
    lost: Option<String>,
}

/// A held lease; see the module docs.
#[derive(Debug)]
pub(super) struct Lease {
    id: String,
    node: String,
    ttl: Duration,
    held: Mutex<State>,
}

fn now_ns() -> i64 {
    super::offload::now_ns()
}

fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// The node id of the data directory `dir`, made (durably) on first use.
pub(super) fn node_id(fs: &dyn crate::fs::Fs, dir: &std::path::Path) -> Result<String> {
    let path = dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(EngineError::Io {
                op: "read",
                path,
                source,
            })
        }
    }
    let id = format!(
        "{:016x}{:016x}",
        nonce(),
        nonce().rotate_left(17) ^ u64::from(std::process::id())
    );
    crate::fs::write_atomic(fs, &path, id.as_bytes())?;
    Ok(id)
}

impl Lease {
    /// The lease of `tier`'s prefix for node `id` (running as `node`), not taken
    /// yet.
    pub(super) fn new(tier: &Tier, id: String, node: String) -> Lease {
        Lease {
            id,
            node,
            ttl: tier.cfg.lease_ttl.max(Duration::from_secs(1)),
            held: Mutex::new(State {
                taken: false,
                version: UpdateVersion {
                    e_tag: None,
                    version: None,
                },
                valid_until: Instant::now(),
                lost: None,
            }),
        }
    }

    /// Takes the lease, or fails with [`EngineError::LeaseHeld`] when another
    /// live node holds it (or with the store's error when it cannot be reached).
    pub(super) fn take(&self, tier: &Tier) -> Result<()> {
        let lease = self;
        // A few rounds: each lost race re-reads who won.
        for _ in 0..4 {
            let current = tier.store.get_versioned(LEASE_OBJECT)?;
            let mode = match &current {
                None => PutMode::Create,
                Some((bytes, version)) => {
                    let doc: Option<Doc> = serde_json::from_slice(bytes).ok();
                    match doc {
                        Some(d) if d.holder != lease.id && d.expires_ns > now_ns() => {
                            let left = Duration::from_nanos((d.expires_ns - now_ns()) as u64);
                            return Err(EngineError::LeaseHeld {
                                url: tier.cfg.url.clone(),
                                node: d.node,
                                left,
                            });
                        }
                        // Ours (a restart), expired, released or unreadable.
                        _ => PutMode::Update(version.clone()),
                    }
                }
            };
            match lease.write(tier, mode) {
                Ok(()) => {
                    self.held.lock().unwrap_or_else(|p| p.into_inner()).taken = true;
                    return Ok(());
                }
                Err(EngineError::Tier(e)) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(EngineError::LeaseLost(format!(
            "could not take the lease of {} (other nodes kept changing it)",
            tier.cfg.url
        )))
    }

    /// Writes the lease document (expiring a lease time from now) with `mode`.
    fn write(&self, tier: &Tier, mode: PutMode) -> Result<()> {
        self.write_doc(tier, mode, now_ns() + self.ttl.as_nanos() as i64)
    }

    fn write_doc(&self, tier: &Tier, mode: PutMode, expires_ns: i64) -> Result<()> {
        let started = Instant::now();
        let doc = Doc {
            holder: self.id.clone(),
            node: self.node.clone(),
            expires_ns,
            nonce: nonce(),
        };
        let body = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
        let mut mode = mode;
        // Twice at most: once more after finding an earlier write of ours.
        let mut again = true;
        let version = loop {
            match tier.store.put_if(LEASE_OBJECT, body.clone(), mode.clone()) {
                Ok(v) => break v,
                // The store cannot update conditionally: overwrite what we just saw.
                Err(e) if e.is_not_implemented() && matches!(mode, PutMode::Update(_)) => {
                    tier.store.put(LEASE_OBJECT, body.clone())?;
                    break UpdateVersion {
                        e_tag: None,
                        version: None,
                    };
                }
                Err(e) if e.is_conflict() => {
                    let current = tier.store.get_versioned(LEASE_OBJECT)?;
                    let seen = current
                        .as_ref()
                        .and_then(|(b, _)| serde_json::from_slice::<Doc>(b).ok());
                    match (current, seen) {
                        // A retried request whose first attempt went through: this
                        // very write.
                        (Some((_, v)), Some(d)) if d.nonce == doc.nonce => break v,
                        // An earlier write of this process that timed out here but
                        // reached the store later (a stall, a slow network): still
                        // ours, so write again over it.
                        (Some((_, v)), Some(d))
                            if again && d.holder == doc.holder && d.node == doc.node =>
                        {
                            again = false;
                            mode = PutMode::Update(v);
                        }
                        _ => return Err(EngineError::Tier(e)),
                    }
                }
                Err(e) => return Err(EngineError::Tier(e)),
            }
        };
        let mut h = self.held.lock().unwrap_or_else(|p| p.into_inner());
        h.version = version;
        // A quarter of the lease kept back for clock differences between nodes.
        h.valid_until = started + self.ttl - self.ttl / 4;
        Ok(())
    }

    /// Renews the lease; after a lost race the lease is lost for good.
    pub(super) fn renew(&self, tier: &Tier) -> Result<()> {
        let (taken, version, lost) = {
            let h = self.held.lock().unwrap_or_else(|p| p.into_inner());
            (h.taken, h.version.clone(), h.lost.clone())
        };
        if let Some(why) = lost {
            return Err(EngineError::LeaseLost(why));
        }
        if !taken {
            return self.take(tier);
        }
        let mode = if version.e_tag.is_none() && version.version.is_none() {
            // No conditional updates here: check the holder, then overwrite.
            let current = tier.store.get(LEASE_OBJECT)?;
            let doc = current.and_then(|b| serde_json::from_slice::<Doc>(&b).ok());
            match doc {
                Some(d) if d.holder == self.id => PutMode::Overwrite,
                other => {
                    return Err(self.lose(tier, other.map(|d| d.node)));
                }
            }
        } else {
            PutMode::Update(version)
        };
        match self.write(tier, mode) {
            Err(EngineError::Tier(e)) if e.is_conflict() => Err(self.lose(tier, None)),
            r => r,
        }
    }

    fn lose(&self, tier: &Tier, by: Option<String>) -> EngineError {
        let by = by.or_else(|| {
            tier.store
                .get(LEASE_OBJECT)
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice::<Doc>(&b).ok())
                .map(|d| d.node)
        });
        let why = format!(
            "another node took the lease of {} ({}): this node no longer writes to the object store",
            tier.cfg.url,
            by.unwrap_or_else(|| "unknown".into())
        );
        tracing::error!("{why}");
        self.held.lock().unwrap_or_else(|p| p.into_inner()).lost = Some(why.clone());
        EngineError::LeaseLost(why)
    }

    /// Before a write to the bucket: fails when the lease was lost, renews it when
    /// less than half of it is left.
    pub(super) fn check(&self, tier: &Tier) -> Result<()> {
        let (taken, valid_until, lost) = {
            let h = self.held.lock().unwrap_or_else(|p| p.into_inner());
            (h.taken, h.valid_until, h.lost.clone())
        };
        if let Some(why) = lost {
            return Err(EngineError::LeaseLost(why));
        }
        if !taken {
            return self.take(tier);
        }
        if valid_until.saturating_duration_since(Instant::now()) < self.ttl / 2 {
            self.renew(tier)?;
        }
        Ok(())
    }

    /// Gives the lease up (a clean stop): the next node need not wait it out.
    pub(super) fn release(&self, tier: &Tier) {
        let (version, keep) = {
            let h = self.held.lock().unwrap_or_else(|p| p.into_inner());
            (h.version.clone(), h.lost.is_some() || !h.taken)
        };
        if keep {
            return;
        }
        let mode = if version.e_tag.is_none() && version.version.is_none() {
            PutMode::Overwrite
        } else {
            PutMode::Update(version)
        };
        if let Err(e) = self.write_doc(tier, mode, 0) {
            tracing::warn!(error = %e, "could not release the object store lease; the next node waits for it to expire");
        }
    }
}

/// A lease and its store: given up when dropped.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) lease: Lease,
    tier: std::sync::Arc<Tier>,
}

impl Held {
    pub(super) fn new(lease: Lease, tier: std::sync::Arc<Tier>) -> Held {
        Held { lease, tier }
    }
}

impl Held {
    /// Gives the lease up (once).
    pub(super) fn release(&self) {
        self.lease.release(&self.tier);
        self.lease
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .taken = false;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}
