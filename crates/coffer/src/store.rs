//! Storage locations: every place an archive can live, behind one type.
//!
//! A location string is a plain path, a `file://` URL or an `s3://bucket/prefix`
//! URL. [`Store`] wraps an [`ObjectStore`] rooted at that location and speaks
//! in paths relative to it, so the operations never see where the bytes go.
//! Errors name the full location (`s3://bucket/prefix/manifest.json`) and never
//! the credentials used to reach it.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, ErrorKind, Result};

/// How to reach S3-compatible stores. Every field falls back to the standard
/// AWS environment variable (`AWS_ENDPOINT_URL`, `AWS_REGION`,
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_ALLOW_HTTP`) when unset.
#[derive(Clone, Default)]
pub struct StoreOptions {
    /// Endpoint URL of an S3-compatible service, e.g. `http://127.0.0.1:9000`.
    pub s3_endpoint: Option<String>,
    /// Region; defaults to `us-east-1` when neither this nor `AWS_REGION` is set.
    pub s3_region: Option<String>,
    /// Access key id.
    pub access_key: Option<String>,
    /// Secret access key. Never printed.
    pub secret_key: Option<String>,
    /// Use virtual-hosted-style requests (`bucket.host`) instead of path style.
    pub virtual_hosted: bool,
    /// Allow plain `http://` endpoints.
    pub allow_http: bool,
    /// The identities and passphrase that open encrypted archives.
    pub keys: crate::crypt::Keys,
    /// What new archives written there are encrypted to; `None` for none.
    pub sealing: Option<crate::crypt::Sealing>,
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_region", &self.s3_region)
            .field("access_key", &self.access_key.as_ref().map(|_| "<set>"))
            .field("secret_key", &self.secret_key.as_ref().map(|_| "<set>"))
            .field("virtual_hosted", &self.virtual_hosted)
            .field("allow_http", &self.allow_http)
            .field("keys", &self.keys)
            .field("sealing", &self.sealing)
            .finish()
    }
}

/// Metadata of one stored object, with its path relative to the store's root.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path relative to the location, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// A storage location: an object store plus a root prefix.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
    local_dir: Option<PathBuf>,
    crypt: Crypt,
}

/// What a store knows of encryption: the keys its readers open archives
/// with, what new archives are encrypted to, and the state of the
/// encrypted archive being written or read there. Child stores share it.
#[derive(Clone, Default)]
struct Crypt {
    keys: Arc<crate::crypt::Keys>,
    sealing: Option<Arc<crate::crypt::Sealing>>,
    sealer: Option<Arc<crate::crypt::Sealer>>,
    opened: Option<Arc<crate::crypt::Opened>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

/// Whether a location string names a local path (a plain path or `file://`).
pub fn is_local(location: &str) -> bool {
    !location.contains("://") || location.starts_with("file://")
}

impl Store {
    /// Open the location for reading: a local directory must exist.
    pub fn open(location: &str, options: &StoreOptions) -> Result<Store> {
        Self::build(location, options, false)
    }

    /// Open the location for writing: a local directory is created if absent.
    pub fn create(location: &str, options: &StoreOptions) -> Result<Store> {
        Self::build(location, options, true)
    }

    fn build(location: &str, options: &StoreOptions, create: bool) -> Result<Store> {
        if location.is_empty() {
            return Err(Error::invalid(
                "the location is empty; give a directory path, a file:// URL or an s3://bucket/prefix URL",
            ));
        }
        if let Some(rest) = location.strip_prefix("s3://") {
            return Self::s3(location, rest, options);
        }
        let path = if let Some(rest) = location.strip_prefix("file://") {
            PathBuf::from(rest)
        } else if location.contains("://") {
            let scheme = location.split("://").next().unwrap_or_default();
            return Err(Error::invalid(format!(
                "unsupported location scheme '{scheme}://' in {location}; use a path, file:// or s3://"
            )));
        } else {
            PathBuf::from(location)
        };
        Ok(Self::local(location, &path, create)?.with_crypt(options))
    }

    fn local(location: &str, path: &FsPath, create: bool) -> Result<Store> {
        if create {
            std::fs::create_dir_all(path).map_err(|e| {
                io_storage_error("create", &format!("directory {}", path.display()), e)
            })?;
        } else if !path.exists() {
            return Err(Error::not_found(format!(
                "{location} does not exist; check the path"
            )));
        }
        if !path.is_dir() {
            return Err(Error::invalid(format!(
                "{location} is not a directory; an archive location is a directory"
            )));
        }
        let dir = path.canonicalize().map_err(|e| {
            Error::new(
                ErrorKind::Storage,
                format!("could not resolve {}: {e}", path.display()),
            )
        })?;
        let fs = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| storage_error("open", location, e))?
            .with_automatic_cleanup(true);
        Ok(Store {
            inner: Arc::new(fs),
            root: Path::default(),
            url: location.trim_end_matches('/').to_string(),
            local_dir: Some(dir),
            crypt: Crypt::default(),
        })
    }

    fn s3(location: &str, rest: &str, options: &StoreOptions) -> Result<Store> {
        let (bucket, prefix) = match rest.split_once('/') {
            Some((b, p)) => (b, p.trim_matches('/')),
            None => (rest, ""),
        };
        if bucket.is_empty() {
            return Err(Error::invalid(format!(
                "{location} names no bucket; write s3://BUCKET/PREFIX"
            )));
        }
        check_bucket_name(bucket, location)?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let env_endpoint = std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok());
        let endpoint = options.s3_endpoint.clone().or(env_endpoint);
        if let Some(endpoint) = &endpoint {
            builder = builder.with_endpoint(endpoint);
            if endpoint.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
        }
        if options.allow_http {
            builder = builder.with_allow_http(true);
        }
        let region = options
            .s3_region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_string());
        builder = builder.with_region(region);
        if let Some(key) = &options.access_key {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &options.secret_key {
            builder = builder.with_secret_access_key(secret);
        }
        if !has_credential_source(&builder) {
            return Err(Error::new(
                ErrorKind::Auth,
                format!(
                    "no S3 credentials were found for {location}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or --access-key and --secret-key), or AWS_SKIP_SIGNATURE=true for a public bucket"
                ),
            ));
        }
        builder = builder.with_virtual_hosted_style_request(options.virtual_hosted);
        builder = builder.with_retry(retry_config());
        let s3 = builder.build().map_err(|e| {
            Error::invalid(format!(
                "could not configure S3 access for {location}: {}",
                short_cause(&e)
            ))
        })?;
        Ok(Store {
            inner: Arc::new(s3),
            root: Path::from(prefix),
            url: location.trim_end_matches('/').to_string(),
            local_dir: None,
            crypt: Crypt::default(),
        }
        .with_crypt(options))
    }

    /// A store over any [`ObjectStore`] — a wrapper that adds behaviour
    /// (tests use ones that ignore create-only writes or inject faults) or
    /// a backend coffer does not build itself. `url` names the location in
    /// messages. Such a store is treated as remote: uploads go in large
    /// chunks and locks wait before their read-back.
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, url: &str) -> Store {
        Store {
            inner,
            root: Path::default(),
            url: url.trim_end_matches('/').to_string(),
            local_dir: None,
            crypt: Crypt::default(),
        }
    }

    fn with_crypt(mut self, options: &StoreOptions) -> Store {
        self.crypt.keys = Arc::new(options.keys.clone());
        self.crypt.sealing = options.sealing.clone().map(Arc::new);
        self
    }

    /// The same store with `keys` to open encrypted archives.
    pub fn with_keys(mut self, keys: crate::crypt::Keys) -> Store {
        self.crypt.keys = Arc::new(keys);
        self
    }

    /// The same store, writing new archives encrypted as `sealing` says
    /// (`None`: not encrypted).
    pub fn with_sealing(mut self, sealing: Option<crate::crypt::Sealing>) -> Store {
        self.crypt.sealing = sealing.map(Arc::new);
        self
    }

    /// The keys readers open encrypted archives with.
    pub fn keys(&self) -> &crate::crypt::Keys {
        &self.crypt.keys
    }

    /// The encrypted archive being written here, if any.
    pub fn sealer(&self) -> Option<&Arc<crate::crypt::Sealer>> {
        self.crypt.sealer.as_ref()
    }

    /// The same store writing one new encrypted archive (with a fresh data
    /// key) when it has a sealing; itself otherwise.
    pub(crate) fn begin_sealed(&self) -> Store {
        let mut out = self.clone();
        if let Some(sealing) = &self.crypt.sealing {
            let mut root = self.clone();
            root.crypt.sealer = None;
            root.crypt.opened = None;
            out.crypt.sealer = Some(Arc::new(crate::crypt::Sealer::new(sealing.clone(), root)));
        }
        out
    }

    /// The encrypted archive opened here, if any.
    pub fn opened(&self) -> Option<&Arc<crate::crypt::Opened>> {
        self.crypt.opened.as_ref()
    }

    pub(crate) fn with_opened(mut self, opened: crate::crypt::Opened) -> Store {
        self.crypt.opened = Some(Arc::new(opened));
        self
    }

    /// The location as the user wrote it, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The full location of `rel`, for messages.
    pub fn url_of(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.url.clone()
        } else {
            format!("{}/{}", self.url, rel)
        }
    }

    /// The local directory behind this store, when it is one.
    pub fn local_dir(&self) -> Option<&FsPath> {
        self.local_dir.as_deref()
    }

    /// A store rooted at `rel` below this one.
    pub fn child(&self, rel: &str) -> Store {
        Store {
            inner: self.inner.clone(),
            root: self.path(rel),
            url: self.url_of(rel),
            local_dir: self.local_dir.as_ref().map(|d| d.join(rel)),
            crypt: self.crypt.clone(),
        }
    }

    /// The underlying object store and the absolute path of `rel` in it.
    pub fn raw(&self, rel: &str) -> (Arc<dyn ObjectStore>, Path) {
        (self.inner.clone(), self.path(rel))
    }

    fn path(&self, rel: &str) -> Path {
        let mut parts: Vec<_> = self.root.parts().collect();
        parts.extend(rel.split('/').filter(|s| !s.is_empty()).map(Into::into));
        Path::from_iter(parts)
    }

    /// Read a whole object; `Ok(None)` when it does not exist.
    pub async fn get_opt(&self, rel: &str) -> Result<Option<Bytes>> {
        match self.inner.get(&self.path(rel)).await {
            Ok(r) => r
                .bytes()
                .await
                .map(Some)
                .map_err(|e| storage_error("read", &self.url_of(rel), e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error("read", &self.url_of(rel), e)),
        }
    }

    /// Read a whole object, failing with a message naming it if absent.
    pub async fn get(&self, rel: &str) -> Result<Bytes> {
        match self.get_opt(rel).await? {
            Some(b) => Ok(b),
            None => Err(Error::not_found(format!("{} is missing", self.url_of(rel)))),
        }
    }

    /// Size of an object, `None` when absent.
    pub async fn size_of(&self, rel: &str) -> Result<Option<u64>> {
        match self.inner.head(&self.path(rel)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => {
                let err = storage_error("inspect", &self.url_of(rel), e);
                // A refused HEAD has no body to say why; a listing does (bad
                // credentials, a missing bucket), so ask one for the reason.
                if err.kind() == ErrorKind::Auth {
                    self.probe().await?;
                }
                Err(err)
            }
        }
    }

    /// Write an object, replacing any previous one.
    pub async fn put(&self, rel: &str, data: Bytes) -> Result<()> {
        self.inner
            .put(&self.path(rel), PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(|e| storage_error("write", &self.url_of(rel), e))
    }

    /// Write an object only if none exists at that path.
    ///
    /// Stores that ignore conditional writes silently overwrite instead; so
    /// callers that rely on ownership read the object back afterwards.
    pub async fn put_new(&self, rel: &str, data: Bytes) -> Result<()> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .inner
            .put_opts(&self.path(rel), PutPayload::from(data), opts)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{} already exists", self.url_of(rel)),
            )),
            Err(e) => Err(storage_error("write", &self.url_of(rel), e)),
        }
    }

    /// Delete an object; deleting an absent one is not an error.
    pub async fn delete(&self, rel: &str) -> Result<()> {
        match self.inner.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_error("delete", &self.url_of(rel), e)),
        }
    }

    /// Every object below `rel` (recursively), with paths relative to this
    /// store's root, sorted by path.
    pub async fn list(&self, rel: &str) -> Result<Vec<Entry>> {
        let prefix = self.path(rel);
        let root_parts = self.root.parts().count();
        let listed: Vec<_> = self
            .inner
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| storage_error("list", &self.url_of(rel), e))?;
        let mut out: Vec<Entry> = listed
            .into_iter()
            .map(|m| Entry {
                path: m
                    .location
                    .parts()
                    .skip(root_parts)
                    .map(|p| decode_part(p.as_ref()))
                    .collect::<Vec<_>>()
                    .join("/"),
                size: m.size,
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Remove what killed runs leave below `rel` of a local store that no
    /// listing shows, so that clean-up after a failed or killed run is
    /// complete: the staging files of uploads in progress (`NAME#N`, which
    /// the local store renames to `NAME` once an upload completes) and
    /// directories left empty (`rel` too, unless it is the store's root).
    /// Call it holding the location's lock. Object stores have neither, so
    /// there it does nothing.
    pub async fn remove_unlisted(&self, rel: &str) -> Result<()> {
        let Some(dir) = self.local_dir.clone() else {
            return Ok(());
        };
        let start = dir.join(rel.trim_matches('/'));
        let remove_start = !rel.trim_matches('/').is_empty();
        let url = self.url_of(rel);
        tokio::task::spawn_blocking(move || sweep(&start, remove_start))
            .await
            .map_err(|e| Error::internal(format!("the clean-up of {url} failed: {e}")))?
            .map_err(|e| {
                Error::new(ErrorKind::Storage, format!("could not clean up {url}: {e}"))
                    .with_source(e)
            })
    }

    /// The immediate "directories" below `rel`.
    pub async fn list_dirs(&self, rel: &str) -> Result<Vec<String>> {
        let prefix = self.path(rel);
        let listed = self
            .inner
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| storage_error("list", &self.url_of(rel), e))?;
        let mut out: Vec<String> = listed
            .common_prefixes
            .into_iter()
            .filter_map(|p| p.filename().map(decode_part))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Check that the store can be reached and the bucket exists, with a
    /// clear error (bad credentials, missing bucket) if not.
    pub async fn probe(&self) -> Result<()> {
        let mut stream = self.inner.list(Some(&self.root));
        match stream.try_next().await {
            Ok(_) => Ok(()),
            Err(e) => Err(storage_error("reach", &self.url, e)),
        }
    }
}

/// Check a bucket name against S3's rules (3 to 63 characters: lowercase
/// letters, digits, `.` and `-`, starting and ending with a letter or
/// digit), so a typo is one clear sentence rather than a refused request.
fn check_bucket_name(bucket: &str, location: &str) -> Result<()> {
    let b = bucket.as_bytes();
    let allowed = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-';
    let edge = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid = (3..=63).contains(&b.len())
        && b.iter().all(allowed)
        && edge(b.first())
        && edge(b.last())
        && !bucket.contains("..");
    if valid {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "'{}' in {} is not a valid S3 bucket name; a bucket name has 3 to 63 lowercase letters, digits, '.' and '-', and starts and ends with a letter or digit",
        bucket.escape_debug(),
        location.escape_debug()
    )))
}

/// Whether S3 requests can be signed (or need not be) without asking the
/// cloud's instance metadata service, which only exists on a cloud host:
/// elsewhere it makes a missing key a long wait followed by "access
/// denied". On an EC2 host, or with `AWS_METADATA_ENDPOINT` set, the
/// instance's role is used, unless `AWS_EC2_METADATA_DISABLED=true`.
fn has_credential_source(builder: &AmazonS3Builder) -> bool {
    use object_store::aws::AmazonS3ConfigKey as Key;
    let set = |k: Key| builder.get_config_value(&k).is_some_and(|v| !v.is_empty());
    let on = |k: Key| {
        builder
            .get_config_value(&k)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    };
    if set(Key::AccessKeyId) || set(Key::SecretAccessKey) || on(Key::SkipSignature) {
        return true;
    }
    let web_identity = std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE").is_some()
        && std::env::var_os("AWS_ROLE_ARN").is_some();
    if web_identity
        || set(Key::ContainerCredentialsRelativeUri)
        || set(Key::ContainerCredentialsFullUri)
    {
        return true;
    }
    let metadata_disabled = std::env::var("AWS_EC2_METADATA_DISABLED")
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !metadata_disabled && (std::env::var_os("AWS_METADATA_ENDPOINT").is_some() || on_ec2())
}

/// Whether this host is an EC2 instance, as its firmware says.
fn on_ec2() -> bool {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    read("/sys/devices/virtual/dmi/id/sys_vendor").contains("Amazon EC2")
        || read("/sys/devices/virtual/dmi/id/board_vendor").contains("Amazon EC2")
        || read("/sys/hypervisor/uuid").starts_with("ec2")
}

/// Whether `name` is the staging file of a local upload in progress.
fn is_staging(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(head, n)| {
        !head.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Remove staging files and empty directories below `dir` (and `dir` itself
/// when `remove_dir` and it ends up empty).
fn sweep(dir: &FsPath, remove_dir: bool) -> std::io::Result<()> {
    use std::io::ErrorKind as Io;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == Io::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sweep(&entry.path(), true)?;
        } else if is_staging(&entry.file_name().to_string_lossy()) {
            tracing::debug!(file = %entry.path().display(), "removing an unfinished upload");
            match std::fs::remove_file(entry.path()) {
                Err(e) if e.kind() != Io::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    if remove_dir {
        match std::fs::remove_dir(dir) {
            Err(e) if !matches!(e.kind(), Io::NotFound | Io::DirectoryNotEmpty) => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Retries of S3 requests that fail for a transient reason (5xx answers,
/// 429, timeouts, refused connections): up to `COFFER_S3_MAX_RETRIES`
/// (default 10) retries within 3 minutes, waiting 100 ms at first and up to
/// 15 s, doubling (with jitter) each time. Multipart uploads retry each part
/// on its own; authentication errors and missing objects are not retried.
fn retry_config() -> object_store::RetryConfig {
    let max_retries = std::env::var("COFFER_S3_MAX_RETRIES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(10);
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(15),
            base: 2.0,
        },
        max_retries,
        retry_timeout: std::time::Duration::from_secs(180),
    }
}

/// A path segment as written: object_store percent-encodes characters it
/// considers unsafe when a path is built from parts.
fn decode_part(part: &str) -> String {
    percent_encoding::percent_decode_str(part)
        .decode_utf8_lossy()
        .into_owned()
}

/// The innermost message of an error chain, on one line.
fn short_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let m = s.to_string();
        if !m.is_empty() && !msg.contains(&m) {
            msg = format!("{msg}: {m}");
        }
        cur = s.source();
    }
    msg.replace('\n', " ")
}

/// Map an I/O error that wraps an object store error (what a streaming
/// upload's `shutdown` returns) as [`storage_error`] does.
pub fn io_storage_error(op: &str, url: &str, e: std::io::Error) -> Error {
    let generic = |source| object_store::Error::Generic {
        store: "filesystem",
        source,
    };
    let (kind, text) = (e.kind(), e.to_string());
    match e.into_inner() {
        Some(inner) => match inner.downcast::<object_store::Error>() {
            Ok(store_error) => storage_error(op, url, *store_error),
            Err(other) => storage_error(op, url, generic(other)),
        },
        None => storage_error(op, url, generic(Box::new(std::io::Error::new(kind, text)))),
    }
}

/// Map an object store error on `url` during `op` to a coffer error whose
/// message names the URL and, for the common cases, says what to do.
pub fn storage_error(op: &str, url: &str, e: object_store::Error) -> Error {
    const REFUSED: &str =
        "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or --access-key/--secret-key)";
    let cause = short_cause(&e);
    let lower = cause.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    let local = is_local(url);
    // What the filesystem said is the most precise for a local path, and the
    // service's own error code for a store; look at those first.
    let (kind, message) = if local && has(&["no space left", "os error 28", "quota exceeded"]) {
        (
            ErrorKind::Storage,
            format!(
                "could not {op} {url}: the disk is full; free some space or choose another location, and try again"
            ),
        )
    } else if local
        && (has(&["permission denied", "os error 13"])
            || matches!(e, object_store::Error::PermissionDenied { .. }))
    {
        (
            ErrorKind::Storage,
            format!(
                "could not {op} {url}: permission denied; check the permissions of that path or choose another location"
            ),
        )
    } else if local && has(&["read-only file system", "os error 30"]) {
        (
            ErrorKind::Storage,
            format!("could not {op} {url}: the file system is read-only; choose another location"),
        )
    } else if has(&["nosuchbucket", "bucket does not exist"]) {
        (
            ErrorKind::NotFound,
            format!("the bucket of {url} does not exist; create it or fix the URL"),
        )
    } else if has(&[
        "signaturedoesnotmatch",
        "invalidaccesskeyid",
        "invalidtoken",
        "expiredtoken",
    ]) || matches!(e, object_store::Error::Unauthenticated { .. })
    {
        (
            ErrorKind::Auth,
            format!("the storage service refused the credentials for {url}; {REFUSED}"),
        )
    } else if has(&["accessdenied", "403 forbidden"])
        || matches!(e, object_store::Error::PermissionDenied { .. })
    {
        (
            ErrorKind::Auth,
            format!(
                "access to {url} was denied; check the credentials and the bucket's permissions"
            ),
        )
    } else if matches!(e, object_store::Error::NotFound { .. }) {
        (ErrorKind::NotFound, format!("{url} does not exist"))
    } else if let Some(why) = unreachable_reason(&lower) {
        let endpoint = endpoint_in(&cause).unwrap_or("the S3 endpoint");
        (
            ErrorKind::Storage,
            format!(
                "could not reach {endpoint} for {url}: {why}; check --s3-endpoint (or AWS_ENDPOINT_URL) and that the service is running"
            ),
        )
    } else if has(&["no space left", "quota exceeded", "entitytoolarge"]) {
        (
            ErrorKind::Storage,
            format!(
                "could not {op} {url}: the storage is full; free some space or choose another location, and try again"
            ),
        )
    } else {
        (ErrorKind::Storage, format!("could not {op} {url}: {cause}"))
    };
    Error::new(kind, message).with_source(e)
}

/// Why a request never reached the service, from a lower-cased cause.
fn unreachable_reason(lower: &str) -> Option<&'static str> {
    if lower.contains("connection refused") {
        Some("the connection was refused")
    } else if lower.contains("dns error") || lower.contains("failed to lookup address") {
        Some("its host name does not resolve")
    } else if lower.contains("tcp connect error") || lower.contains("network is unreachable") {
        Some("it cannot be connected to")
    } else {
        None
    }
}

/// The `scheme://host[:port]` of the first URL in an HTTP client's message
/// (object_store's say which request failed), to name the endpoint.
fn endpoint_in(cause: &str) -> Option<&str> {
    let start = cause.find("https://").or_else(|| cause.find("http://"))?;
    let rest = &cause[start..];
    let authority = rest.find("://")? + 3;
    let end = rest[authority..]
        .find(|c: char| c == '/' || c.is_whitespace())
        .map_or(rest.len(), |i| authority + i);
    Some(&rest[..end])
}
