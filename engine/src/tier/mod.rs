//! The cold tier: sealed segments offloaded to an object store (S3 and compatible,
//! GCS, Azure, a local directory) through `object_store`, read back through ranged
//! GETs and two caches ([`cache`]), with a copy of the manifest in the store so a
//! node with an empty disk can open the bucket.
//!
//! Objects, relative to the configured prefix:
//! - `segments/<tenant>/<day>/<seq>.seg`: the segment file, byte for byte (the same
//!   relative path as in the data directory);
//! - `MANIFEST`: the manifest's offloaded segments (JSON, `docs/format/manifest.md`).
//!
//! What happens when is in [`crate::engine::Engine::offload`].

mod cache;
pub mod faults;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use cache::{Cache, CacheCounters};
pub use store::{Listed, Store, StoreCounters};

/// Name of the manifest object.
pub const REMOTE_MANIFEST: &str = "MANIFEST";

/// Object-store settings.
#[derive(Debug, Clone)]
pub struct TierConfig {
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or
    /// `file:///directory`.
    pub url: String,
    /// Backend options (`endpoint`, `region`, `allow_http`, `access_key_id`, ... as
    /// `object_store` names them); credentials otherwise come from the standard
    /// environment variables.
    pub options: Vec<(String, String)>,
    /// Offload sealed segments whose newest record is older than this.
    pub offload_after: Duration,
    /// Also offload (oldest first) while local segments take more than this.
    pub local_bytes_max: Option<u64>,
    /// Refuse ingest while local segments take more than this (the store is
    /// unreachable and the disk budget is used up).
    pub local_bytes_hard_max: Option<u64>,
    /// Directory of the disk cache.
    pub cache_dir: PathBuf,
    /// Bytes the disk cache may hold.
    pub cache_bytes_max: u64,
    /// Bytes of footers and index frames kept in memory: by the memory cache, and
    /// again (shared, not copied) by the open readers of offloaded segments.
    pub memory_cache_bytes_max: u64,
    /// Limit on one request.
    pub attempt_timeout: Duration,
    /// A read (a query's fetch) gives up after this long, retries included.
    pub read_deadline: Duration,
    /// A write (upload, manifest, delete) gives up after this long.
    pub write_deadline: Duration,
    /// Open the store read-only: the manifest comes from the store, nothing is
    /// ingested, offloaded or deleted.
    pub read_only: bool,
    /// Files larger than this are uploaded in parts.
    pub multipart_above: u64,
    /// Size of those parts (S3 wants at least 5 MiB but for the last).
    pub part_bytes: usize,
    /// Use this backend instead of the one `url` names (tests: a fault-injecting
    /// wrapper).
    pub backend: Option<Arc<dyn object_store::ObjectStore>>,
    /// How long the writer's lease on the bucket prefix lasts unless renewed
    /// (`docs/object-storage.md`): a second writable node refuses to start while
    /// another holds it.
    pub lease_ttl: Duration,
}

impl TierConfig {
    /// Defaults for `url`, caching under `cache_dir`.
    pub fn new(url: impl Into<String>, cache_dir: impl Into<PathBuf>) -> TierConfig {
        TierConfig {
            url: url.into(),
            options: Vec::new(),
            offload_after: Duration::from_secs(3600),
            local_bytes_max: None,
            local_bytes_hard_max: None,
            cache_dir: cache_dir.into(),
            cache_bytes_max: 1 << 30,
            memory_cache_bytes_max: 64 << 20,
            attempt_timeout: Duration::from_secs(10),
            read_deadline: Duration::from_secs(30),
            write_deadline: Duration::from_secs(120),
            read_only: false,
            multipart_above: 16 << 20,
            part_bytes: 8 << 20,
            backend: None,
            lease_ttl: Duration::from_secs(60),
        }
    }
}

/// Object-store errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TierError {
    /// Bad settings.
    #[error("{0}")]
    Config(String),
    /// The store refused the request (not worth retrying).
    #[error("object store {op} of {object:?} failed after {attempts} attempt(s): {source}")]
    Store {
        /// The operation.
        op: &'static str,
        /// The object.
        object: String,
        /// Attempts made.
        attempts: u32,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// The store did not answer successfully within the deadline.
    #[error(
        "object store unavailable: {op} of {object:?} failed {attempts} time(s) in {after:?}; last error: {last}"
    )]
    Unavailable {
        /// The operation.
        op: &'static str,
        /// The object.
        object: String,
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        after: Duration,
        /// The last error.
        last: String,
    },
    /// An uploaded object is not what was uploaded.
    #[error("verifying {object:?}: {what}")]
    Verify {
        /// The object.
        object: String,
        /// The difference.
        what: String,
    },
    /// Local I/O.
    #[error("{op} failed on {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl TierError {
    /// Whether the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, TierError::Store { source, .. } if matches!(**source, object_store::Error::NotFound { .. }))
    }

    /// Whether a conditional put lost: the object exists already, or changed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, TierError::Store { source, .. } if matches!(
            **source,
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
        ))
    }

    /// Whether the backend does not offer the operation (e.g. a conditional
    /// update on a local directory).
    pub fn is_not_implemented(&self) -> bool {
        matches!(self, TierError::Store { source, .. } if matches!(
            **source,
            object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }
        ))
    }
}

/// The store and its caches.
#[derive(Debug)]
pub struct Tier {
    /// Settings.
    pub cfg: TierConfig,
    /// The store.
    pub store: Store,
    /// The caches.
    pub cache: Cache,
}

impl Tier {
    /// Connects (no request yet) and opens the disk cache.
    pub fn open(cfg: TierConfig) -> Result<Tier, TierError> {
        let store = Store::open(&cfg)?;
        let cache = Cache::open(
            &cfg.cache_dir,
            cfg.memory_cache_bytes_max,
            cfg.cache_bytes_max,
        )
        .map_err(|source| TierError::Io {
            op: "open the cache",
            path: cfg.cache_dir.clone(),
            source,
        })?;
        Ok(Tier { cfg, store, cache })
    }

    /// Several ranges of `object` (`(start, len)`), from the caches or the store, the
    /// missing ones fetched concurrently; kept like [`Self::read`] keeps them.
    pub fn read_many(
        &self,
        object: &str,
        ranges: &[(u64, u64)],
        memory: bool,
    ) -> Result<Vec<Bytes>, TierError> {
        let keys: Vec<String> = ranges
            .iter()
            .map(|(s, l)| format!("{object}@{s}+{l}"))
            .collect();
        let mut out: Vec<Option<Bytes>> = keys.iter().map(|k| self.cache.get(k, memory)).collect();
        let missing: Vec<usize> = (0..ranges.len()).filter(|i| out[*i].is_none()).collect();
        if !missing.is_empty() {
            let want: Vec<std::ops::Range<u64>> = missing
                .iter()
                .map(|i| ranges[*i].0..ranges[*i].0 + ranges[*i].1)
                .collect();
            let got = self.store.get_ranges(object, &want)?;
            for (i, b) in missing.into_iter().zip(got) {
                if b.len() as u64 != ranges[i].1 {
                    return Err(TierError::Verify {
                        object: object.to_string(),
                        what: format!(
                            "asked for {} bytes at {}, got {}",
                            ranges[i].1,
                            ranges[i].0,
                            b.len()
                        ),
                    });
                }
                self.cache.put(&keys[i], &b, memory);
                out[i] = Some(b);
            }
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// Fetches into the disk cache those of `ranges` of `object` it does not hold,
    /// in one go (the backend merges nearby ranges into few requests).
    pub fn prefetch(&self, object: &str, ranges: &[(u64, u64)]) -> Result<(), TierError> {
        let missing: Vec<(u64, u64)> = ranges
            .iter()
            .copied()
            .filter(|(s, l)| !self.cache.contains(&format!("{object}@{s}+{l}")))
            .collect();
        if missing.len() < 2 {
            return Ok(());
        }
        let want: Vec<std::ops::Range<u64>> = missing.iter().map(|(s, l)| *s..s + l).collect();
        let got = self.store.get_ranges(object, &want)?;
        for ((s, l), b) in missing.into_iter().zip(got) {
            if b.len() as u64 == l {
                self.cache.put(&format!("{object}@{s}+{l}"), &b, false);
            }
        }
        Ok(())
    }

    /// Bytes `[start, start + len)` of `object`, from the caches or the store; with
    /// `memory`, also kept in the memory cache (footers, index frames).
    pub fn read(
        &self,
        object: &str,
        start: u64,
        len: u64,
        memory: bool,
    ) -> Result<Bytes, TierError> {
        Ok(self
            .read_many(object, &[(start, len)], memory)?
            .pop()
            .unwrap_or_default())
    }
}
