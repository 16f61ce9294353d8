//! Object stores that misbehave as real services do, built by wrapping a
//! real one (as `object_store`'s own `LimitStore` and `ThrottledStore` are),
//! so every check can run against them through [`Store::from_object_store`].
//!
//! * [`IgnoresCreateOnly`] silently overwrites where a create-only write
//!   (`If-None-Match: *`) was asked, as several S3-compatible services do;
//! * [`Faulty`] fails a share of requests and stalls another, as an
//!   overloaded service or a flaky network does.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use coffer::store::Store;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// A store over `inner` that ignores create-only writes: `PutMode::Create`
/// becomes an overwrite, so two writers of one object both "succeed".
#[derive(Debug)]
pub struct IgnoresCreateOnly<T>(pub T);

impl<T: ObjectStore> fmt::Display for IgnoresCreateOnly<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IgnoresCreateOnly({})", self.0)
    }
}

#[async_trait]
impl<T: ObjectStore> ObjectStore for IgnoresCreateOnly<T> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> Result<PutResult> {
        if matches!(opts.mode, PutMode::Create) {
            opts.mode = PutMode::Overwrite;
        }
        self.0.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.0.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.0.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.0.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.0.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.0.rename_opts(from, to, options).await
    }
}

/// What [`Faulty`] does to requests: of every `period` requests (counted
/// across all kinds), the one at `fail_at` fails and the one at `stall_at`
/// waits `stall` first. Deterministic, so a failing test fails again.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Length of the cycle of requests.
    pub period: u64,
    /// Position in the cycle of the request that fails (`None`: none).
    pub fail_at: Option<u64>,
    /// Position in the cycle of the request that stalls (`None`: none).
    pub stall_at: Option<u64>,
    /// How long a stalled request waits before it goes ahead.
    pub stall: Duration,
}

/// A store over `inner` that fails and stalls a share of its requests (see
/// [`Faults`]); a failure is an `object_store` generic error, as a refused
/// or broken connection that exhausted its retries would be.
#[derive(Debug)]
pub struct Faulty<T> {
    inner: T,
    faults: Faults,
    requests: AtomicU64,
    failed: AtomicU64,
}

impl<T> Faulty<T> {
    /// Wrap `inner`.
    pub fn new(inner: T, faults: Faults) -> Self {
        Faulty {
            inner,
            faults,
            requests: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// How many requests failed so far.
    pub fn failures(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Count one request: whether it stalls, and the error it fails with.
    fn decide(&self, what: &str, location: &str) -> (bool, Option<object_store::Error>) {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) % self.faults.period.max(1);
        let error = (self.faults.fail_at == Some(n)).then(|| {
            self.failed.fetch_add(1, Ordering::Relaxed);
            object_store::Error::Generic {
                store: "Faulty",
                source: format!("injected fault: {what} {location} failed").into(),
            }
        });
        (self.faults.stall_at == Some(n), error)
    }

    /// Count one request; fail or stall it as the faults say.
    async fn request(&self, what: &str, location: &str) -> Result<()> {
        let (stall, error) = self.decide(what, location);
        if stall {
            tokio::time::sleep(self.faults.stall).await;
        }
        error.map_or(Ok(()), Err)
    }
}

impl<T: ObjectStore> fmt::Display for Faulty<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl<T: ObjectStore> ObjectStore for Faulty<T> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.request("put", location.as_ref()).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.request("start an upload of", location.as_ref())
            .await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.request("get", location.as_ref()).await?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let shown = prefix.map(|p| p.to_string()).unwrap_or_default();
        // Decided when the call is made; the stall waits in the stream.
        let (stall, error) = self.decide("list", &shown);
        let pause = self.faults.stall;
        let rest = match error {
            None => self.inner.list(prefix),
            Some(e) => futures::stream::once(async move { Err(e) }).boxed(),
        };
        futures::stream::once(async move {
            if stall {
                tokio::time::sleep(pause).await;
            }
        })
        .filter_map(|()| async { None })
        .chain(rest)
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let shown = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.request("list", &shown).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.request("copy", from.as_ref()).await?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.request("rename", from.as_ref()).await?;
        self.inner.rename_opts(from, to, options).await
    }
}

/// A [`Store`] over `inner`, named `url` in messages.
pub fn store_over(inner: impl ObjectStore, url: &str) -> Store {
    Store::from_object_store(Arc::new(inner), url)
}
