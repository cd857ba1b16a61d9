//! A blocking facade over an `object_store` backend: its own small tokio runtime
//! (so the embedded CLI, the server's blocking query threads and background tasks
//! can all call it), one retry policy (exponential backoff with full jitter, a
//! timeout per attempt, an overall deadline) and counters for metrics.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{TierConfig, TierError};

/// Counters of the requests made.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Byte ranges fetched (GET requests, but a multi-range fetch may merge nearby
    /// ranges into fewer requests).
    pub gets: AtomicU64,
    /// Bytes they returned.
    pub get_bytes: AtomicU64,
    /// PUT requests (and multipart parts) that succeeded.
    pub puts: AtomicU64,
    /// Bytes they sent.
    pub put_bytes: AtomicU64,
    /// Failed attempts that were retried.
    pub retries: AtomicU64,
    /// Operations that failed after every attempt.
    pub failures: AtomicU64,
}

/// An object listed under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its name relative to the store's prefix.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// Last modified, seconds since the epoch.
    pub modified: i64,
}

/// The object store of a data directory: every name is relative to its prefix.
#[derive(Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: Path,
    /// Always `Some` until dropped (taken to shut it down without blocking).
    rt: Option<tokio::runtime::Runtime>,
    attempt_timeout: Duration,
    read_deadline: Duration,
    write_deadline: Duration,
    multipart_above: u64,
    part_bytes: usize,
    /// Request counters.
    pub counters: StoreCounters,
}

/// Builds the backend named by `cfg.url`: `s3://bucket/prefix` (with `endpoint`,
/// `region`, `allow_http`, ... options and the standard `AWS_*` environment
/// variables), `gs://bucket/prefix` (`GOOGLE_*`), `az://container/prefix`
/// (`AZURE_*`), or `file:///dir` (a local directory).
fn backend(cfg: &TierConfig) -> Result<(Arc<dyn ObjectStore>, Path), TierError> {
    let bad = |what: String| TierError::Config(format!("object store {:?}: {what}", cfg.url));
    let url = url_parts(&cfg.url)
        .ok_or_else(|| bad("not a URL of the form scheme://bucket/prefix".into()))?;
    let (scheme, bucket, prefix) = url;
    // Heimdall retries itself (see `Store::run`); the backend's own retries
    // would multiply the attempts.
    let retry = object_store::RetryConfig {
        max_retries: 0,
        ..Default::default()
    };
    let prefix = Path::parse(prefix).map_err(|e| bad(format!("prefix: {e}")))?;
    let opts = &cfg.options;
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" | "s3a" => {
            use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry);
            for (k, v) in opts {
                let key: AmazonS3ConfigKey = k
                    .parse()
                    .map_err(|_| bad(format!("unknown S3 option {k:?}")))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| bad(e.to_string()))?)
        }
        "gs" => {
            use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry);
            for (k, v) in opts {
                let key: GoogleConfigKey = k
                    .parse()
                    .map_err(|_| bad(format!("unknown GCS option {k:?}")))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| bad(e.to_string()))?)
        }
        "az" | "azure" | "abfs" => {
            use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .with_retry(retry);
            for (k, v) in opts {
                let key: AzureConfigKey = k
                    .parse()
                    .map_err(|_| bad(format!("unknown Azure option {k:?}")))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| bad(e.to_string()))?)
        }
        "file" => {
            // file:///dir: bucket is empty, the whole path is the directory.
            let dir = format!(
                "/{}",
                cfg.url
                    .trim_start_matches("file://")
                    .trim_start_matches('/')
            );
            std::fs::create_dir_all(&dir).map_err(|e| bad(format!("creating {dir}: {e}")))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| bad(e.to_string()))?;
            return Ok((Arc::new(fs), Path::default()));
        }
        other => {
            return Err(bad(format!(
                "unsupported scheme {other:?} (s3, gs, az or file)"
            )))
        }
    };
    Ok((store, prefix))
}

/// `scheme://bucket/prefix` split into its parts.
fn url_parts(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if scheme.is_empty() || (bucket.is_empty() && scheme != "file") {
        return None;
    }
    Some((scheme, bucket, prefix.trim_matches('/')))
}

/// Whether an error is worth another attempt.
fn transient(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotModified { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::UnknownConfigurationKey { .. }
    )
}

impl Store {
    /// Connects to the store `cfg.url` names (no request is made yet).
    pub fn open(cfg: &TierConfig) -> Result<Store, TierError> {
        let (inner, prefix) = match &cfg.backend {
            Some(b) => (Arc::clone(b), Path::default()),
            None => backend(cfg)?,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("heimdall-objstore")
            .enable_all()
            .build()
            .map_err(|e| TierError::Config(format!("starting the object store runtime: {e}")))?;
        Ok(Store {
            inner,
            prefix,
            rt: Some(rt),
            attempt_timeout: cfg.attempt_timeout,
            read_deadline: cfg.read_deadline,
            write_deadline: cfg.write_deadline,
            multipart_above: cfg.multipart_above,
            part_bytes: cfg.part_bytes.max(1),
            counters: StoreCounters::default(),
        })
    }

    /// The full path of `name`.
    fn path(&self, name: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in name.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    /// Runs `op` on the runtime until it succeeds, fails for good, or `deadline`
    /// passes: each attempt limited to the attempt timeout, attempts separated by
    /// exponential backoff (100 ms doubling to 5 s) with full jitter.
    fn run<T, F, Fut>(
        &self,
        what: &'static str,
        name: &str,
        deadline: Duration,
        op: F,
    ) -> Result<T, TierError>
    where
        T: Send + 'static,
        F: Fn(Arc<dyn ObjectStore>, Path) -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>> + Send + 'static,
    {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let fut = op(Arc::clone(&self.inner), self.path(name));
            let timeout = self.attempt_timeout.min(
                deadline
                    .saturating_sub(started.elapsed())
                    .max(Duration::from_millis(1)),
            );
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            if let Some(rt) = &self.rt {
                rt.spawn(async move {
                    let r = tokio::time::timeout(timeout, fut).await;
                    let _ = tx.send(r);
                });
            }
            let err = match rx.recv() {
                Ok(Ok(Ok(v))) => return Ok(v),
                Ok(Ok(Err(e))) if !transient(&e) => {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    return Err(TierError::Store {
                        op: what,
                        object: name.to_string(),
                        attempts: attempt,
                        source: Box::new(e),
                    });
                }
                Ok(Ok(Err(e))) => e.to_string(),
                Ok(Err(_)) => format!("no answer within {timeout:?}"),
                Err(_) => "the object store runtime stopped".to_string(),
            };
            let pause = Duration::from_millis(jitter(backoff.as_millis() as u64));
            if started.elapsed() + pause >= deadline {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                return Err(TierError::Unavailable {
                    op: what,
                    object: name.to_string(),
                    attempts: attempt,
                    after: started.elapsed(),
                    last: err,
                });
            }
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(op = what, object = name, attempt, error = %err, "object store request failed; retrying");
            std::thread::sleep(pause);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Several byte ranges of object `name` (fetched concurrently by the backend).
    pub fn get_ranges(&self, name: &str, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, TierError> {
        let ranges = ranges.to_vec();
        let v = self.run("get", name, self.read_deadline, move |s, p| {
            let r = ranges.clone();
            async move { s.get_ranges(&p, &r).await }
        })?;
        self.counters
            .gets
            .fetch_add(v.len() as u64, Ordering::Relaxed);
        let n: u64 = v.iter().map(|b| b.len() as u64).sum();
        self.counters.get_bytes.fetch_add(n, Ordering::Relaxed);
        Ok(v)
    }

    /// The whole object `name`; `None` when there is none.
    pub fn get(&self, name: &str) -> Result<Option<Bytes>, TierError> {
        let r = self.run("get", name, self.read_deadline, |s, p| async move {
            s.get(&p).await?.bytes().await
        });
        match r {
            Ok(b) => {
                self.counters.gets.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .get_bytes
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(Some(b))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The whole object `name` with its version (for [`Self::put_if`]); `None`
    /// when there is none.
    pub fn get_versioned(
        &self,
        name: &str,
    ) -> Result<Option<(Bytes, object_store::UpdateVersion)>, TierError> {
        let r = self.run("get", name, self.read_deadline, |s, p| async move {
            let got = s.get_opts(&p, object_store::GetOptions::default()).await?;
            let version = object_store::UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            Ok((got.bytes().await?, version))
        });
        match r {
            Ok(v) => {
                self.counters.gets.fetch_add(1, Ordering::Relaxed);
                Ok(Some(v))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores `bytes` as `name` only if `mode` holds (`Create`: there is no such
    /// object; `Update`: it is still at that version); the new version. A lost
    /// race is an error for which [`TierError::is_conflict`] holds.
    pub fn put_if(
        &self,
        name: &str,
        bytes: Bytes,
        mode: object_store::PutMode,
    ) -> Result<object_store::UpdateVersion, TierError> {
        let n = bytes.len() as u64;
        let v = self.run("conditional put", name, self.write_deadline, move |s, p| {
            let b = bytes.clone();
            let opts = object_store::PutOptions {
                mode: mode.clone(),
                ..Default::default()
            };
            async move {
                s.put_opts(&p, PutPayload::from(b), opts)
                    .await
                    .map(object_store::UpdateVersion::from)
            }
        })?;
        self.counters.puts.fetch_add(1, Ordering::Relaxed);
        self.counters.put_bytes.fetch_add(n, Ordering::Relaxed);
        Ok(v)
    }

    /// Stores `bytes` as `name` (atomically: readers see the old or the new object).
    pub fn put(&self, name: &str, bytes: Bytes) -> Result<(), TierError> {
        let n = bytes.len() as u64;
        self.run("put", name, self.write_deadline, move |s, p| {
            let b = bytes.clone();
            async move { s.put(&p, PutPayload::from(b)).await.map(|_| ()) }
        })?;
        self.counters.puts.fetch_add(1, Ordering::Relaxed);
        self.counters.put_bytes.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Uploads `bytes` as `name`: in one request when small, in parts (8 MiB by
    /// default) when larger than the multipart threshold (16 MiB); a failed part
    /// fails the attempt, which aborts the upload and starts again.
    pub fn upload(&self, name: &str, bytes: Bytes) -> Result<(), TierError> {
        let len = bytes.len() as u64;
        if len <= self.multipart_above {
            return self.put(name, bytes);
        }
        let parts: Vec<Bytes> = (0..bytes.len())
            .step_by(self.part_bytes)
            .map(|at| bytes.slice(at..(at + self.part_bytes).min(bytes.len())))
            .collect();
        let n = parts.len() as u64;
        self.run(
            "multipart upload",
            name,
            self.write_deadline,
            move |s, p| {
                let parts = parts.clone();
                async move {
                    let mut up = s.put_multipart(&p).await?;
                    for part in parts {
                        if let Err(e) = up.put_part(PutPayload::from(part)).await {
                            let _ = up.abort().await;
                            return Err(e);
                        }
                    }
                    match up.complete().await {
                        Ok(_) => Ok(()),
                        Err(e) => {
                            let _ = up.abort().await;
                            Err(e)
                        }
                    }
                }
            },
        )?;
        self.counters.puts.fetch_add(n, Ordering::Relaxed);
        self.counters.put_bytes.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// The size of object `name`; `None` when there is none.
    pub fn size(&self, name: &str) -> Result<Option<u64>, TierError> {
        match self.run("head", name, self.read_deadline, |s, p| async move {
            s.head(&p).await
        }) {
            Ok(m) => Ok(Some(m.size)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes object `name` (no error when there is none).
    pub fn delete(&self, name: &str) -> Result<(), TierError> {
        match self.run("delete", name, self.write_deadline, |s, p| async move {
            s.delete(&p).await
        }) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every object under `name/`, with names relative to the store's prefix.
    pub fn list(&self, name: &str) -> Result<Vec<Listed>, TierError> {
        let base = self.prefix.clone();
        self.run("list", name, self.read_deadline, move |s, p| {
            let base = base.clone();
            async move {
                use futures_util::TryStreamExt;
                let metas: Vec<object_store::ObjectMeta> = s.list(Some(&p)).try_collect().await?;
                Ok(metas
                    .into_iter()
                    .filter_map(|m| {
                        let rel: Vec<String> = m
                            .location
                            .prefix_match(&base)?
                            .map(|p| p.as_ref().to_string())
                            .collect();
                        Some(Listed {
                            name: rel.join("/"),
                            size: m.size,
                            modified: m.last_modified.timestamp(),
                        })
                    })
                    .collect())
            }
        })
    }
}

impl Drop for Store {
    /// Without waiting for requests in flight: the store may be dropped inside
    /// another runtime (the server's), where blocking is not allowed.
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A random duration in `[0, ms]` ("full jitter").
fn jitter(ms: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() % (ms + 1)
}

#[cfg(test)]
mod tests {
    use super::url_parts;

    #[test]
    fn urls_split_into_scheme_bucket_and_prefix() {
        assert_eq!(url_parts("s3://b/p/q/"), Some(("s3", "b", "p/q")));
        assert_eq!(url_parts("s3://b"), Some(("s3", "b", "")));
        assert_eq!(url_parts("file:///tmp/x"), Some(("file", "", "tmp/x")));
        assert_eq!(url_parts("s3:///p"), None);
        assert_eq!(url_parts("bucket/p"), None);
    }
}
