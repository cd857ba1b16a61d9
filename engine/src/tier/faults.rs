//! A fault-injecting [`ObjectStore`] wrapper, for tests and drills: it passes every
//! request to a real store, after optional latency, unless the plan says the
//! request fails (the next N requests, one in N, every request while "down", or
//! the next N multipart parts).

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

/// What to break; change it at any time, from any thread.
#[derive(Debug, Default)]
pub struct FaultPlan {
    /// Fail this many of the next requests.
    pub fail_next: AtomicU32,
    /// Fail one request in this many (0: none).
    pub fail_one_in: AtomicU32,
    /// Fail every request.
    pub down: AtomicBool,
    /// Fail this many of the next multipart parts.
    pub fail_parts: AtomicU32,
    /// Delay every request by this many milliseconds.
    pub latency_ms: AtomicU64,
    /// Requests seen.
    pub requests: AtomicU64,
    /// Requests failed on purpose.
    pub injected: AtomicU64,
}

impl FaultPlan {
    /// Whether this request fails (counting it).
    fn fails(&self) -> bool {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let one_in = u64::from(self.fail_one_in.load(Ordering::Relaxed));
        let fail = self.down.load(Ordering::Relaxed)
            || take_one(&self.fail_next)
            || (one_in > 0 && n.is_multiple_of(one_in));
        if fail {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        fail
    }

    async fn delay(&self) {
        let ms = self.latency_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    async fn check(&self) -> object_store::Result<()> {
        self.delay().await;
        if self.fails() {
            return Err(injected("request"));
        }
        Ok(())
    }
}

/// Decrements `a` if positive; whether it did.
fn take_one(a: &AtomicU32) -> bool {
    a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
        .is_ok()
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "faults",
        source: format!("injected fault: {what} failed").into(),
    }
}

/// The wrapper.
#[derive(Debug)]
pub struct Faulty {
    inner: Arc<dyn ObjectStore>,
    /// The plan, shared with whoever breaks things.
    pub plan: Arc<FaultPlan>,
}

impl Faulty {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Faulty {
        Faulty {
            inner,
            plan: Arc::new(FaultPlan::default()),
        }
    }
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    plan: Arc<FaultPlan>,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        if take_one(&self.plan.fail_parts) || self.plan.fails() {
            self.plan.injected.fetch_add(1, Ordering::Relaxed);
            return Box::pin(async { Err(injected("multipart part")) });
        }
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.plan.check().await?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.plan.check().await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.plan.check().await?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            inner,
            plan: Arc::clone(&self.plan),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.plan.check().await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.plan.check().await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        if self.plan.fails() {
            return locations.map(|_| Err(injected("delete"))).boxed();
        }
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if self.plan.fails() {
            return futures_util::stream::once(async { Err(injected("list")) }).boxed();
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.plan.check().await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.plan.check().await?;
        self.inner.copy_opts(from, to, options).await
    }
}
