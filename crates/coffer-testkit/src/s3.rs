//! An in-process S3 server for tests.
//!
//! [`S3Server::start`] serves [`s3s_fs`] over a temporary directory on
//! `127.0.0.1` (a free port), on its own thread with its own tokio runtime,
//! so both sync and async tests can use it. Requests must be signed (SigV4)
//! with [`S3Server::access_key`]/[`S3Server::secret_key`]; requests are
//! path-style (`http://127.0.0.1:PORT/bucket/key`).
//!
//! s3s-fs keeps a bucket as a directory directly below its root and an
//! object as a file at `bucket/key` (its metadata lives in hidden files in
//! the root, not in the bucket). So [`S3Server::bucket_path`] is where a
//! test can corrupt or delete objects behind the server's back.
//!
//! Notes on s3s-fs 0.14.1 as a stand-in for S3:
//!
//! * `If-None-Match: *` on PutObject is honoured, so
//!   [`Store::put_new`](coffer::store::Store::put_new) refuses existing
//!   objects — but the check and the write are not atomic, so two racing
//!   writers can both succeed. Nothing should depend on it for mutual
//!   exclusion.
//! * PutObject into a missing bucket creates the bucket's directory (real
//!   S3 answers `NoSuchBucket`); listing a missing bucket does answer
//!   `NoSuchBucket`.
//! * Bucket names are validated as on AWS (3–63 characters of `a-z`, `0-9`,
//!   `-`, `.`); other names get `InvalidBucketName`.
//! * Objects are plain files: keys that are not valid file paths (a
//!   segment `..`, an empty segment) behave differently from real S3.
//!
//! The server stops and its directory is removed when the [`S3Server`] is
//! dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use coffer::store::StoreOptions;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tempfile::TempDir;
use tokio::sync::oneshot;

/// Region reported in [`S3Server::store_options`]; s3s accepts any region in
/// the signature scope.
pub const REGION: &str = "us-east-1";

/// A running in-process S3 server. Dropping it stops the server and deletes
/// its data.
pub struct S3Server {
    /// Endpoint URL, e.g. `http://127.0.0.1:41234`.
    pub endpoint: String,
    /// The one access key id the server accepts.
    pub access_key: String,
    /// Its secret key.
    pub secret_key: String,
    /// The socket address the server listens on.
    pub addr: SocketAddr,
    dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("endpoint", &self.endpoint)
            .field("root", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl S3Server {
    /// Start a server on a free port of 127.0.0.1 over a fresh temporary
    /// directory, with freshly generated credentials. Returns once the port
    /// is bound (connections are accepted from then on). Panics if it cannot
    /// start — this is test support.
    pub fn start() -> S3Server {
        let dir = tempfile::Builder::new()
            .prefix("coffer-s3-")
            .tempdir()
            .expect("create the S3 server's directory");
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1 for the S3 server");
        listener
            .set_nonblocking(true)
            .expect("make the S3 listener non-blocking");
        let addr = listener.local_addr().expect("S3 listener address");
        let nonce = unique_suffix();
        let access_key = format!("COFFERTEST{nonce}");
        let secret_key = format!("coffer-test-secret-{nonce}");

        let fs = s3s_fs::FileSystem::new(dir.path()).expect("start s3s-fs over the directory");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(
            access_key.clone(),
            secret_key.clone(),
        ));
        let service = builder.build();

        let (tx, mut rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("s3-server-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("s3-server-worker")
                    .enable_all()
                    .build()
                    .expect("build the S3 server's runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("register the S3 listener");
                    let http = ConnBuilder::new(TokioExecutor::new());
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            accepted = listener.accept() => {
                                let Ok((socket, _)) = accepted else { continue };
                                // As S3 services do: without it a small
                                // response waits for the client's delayed ACK.
                                let _ = socket.set_nodelay(true);
                                let conn = http
                                    .serve_connection(TokioIo::new(socket), service.clone())
                                    .into_owned();
                                tokio::spawn(async move {
                                    let _ = conn.await;
                                });
                            }
                        }
                    }
                });
                rt.shutdown_timeout(std::time::Duration::from_secs(1));
            })
            .expect("spawn the S3 server thread");

        S3Server {
            endpoint: format!("http://{addr}"),
            access_key,
            secret_key,
            addr,
            dir,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// The directory the server stores everything in.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Create a bucket (s3s-fs models a bucket as a directory in its root)
    /// and return its directory. Creating an existing bucket is fine.
    /// Panics if `name` is not a valid S3 bucket name (s3s rejects requests
    /// to those with `InvalidBucketName`).
    pub fn create_bucket(&self, name: &str) -> PathBuf {
        let valid = (3..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !name.starts_with(['-', '.'])
            && !name.ends_with(['-', '.']);
        assert!(
            valid,
            "{name:?} is not a valid S3 bucket name (3-63 characters: a-z, 0-9, '-', '.'); \
             the server would reject every request to it"
        );
        let path = self.bucket_path(name);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("create bucket directory {}: {e}", path.display()));
        path
    }

    /// The on-disk directory of `bucket`; the object `key` is the file
    /// `bucket_path(bucket).join(key)`.
    pub fn bucket_path(&self, bucket: &str) -> PathBuf {
        self.dir.path().join(bucket)
    }

    /// Options that reach this server: endpoint, keys, region, plain HTTP,
    /// path-style requests.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            s3_endpoint: Some(self.endpoint.clone()),
            s3_region: Some(REGION.to_string()),
            access_key: Some(self.access_key.clone()),
            secret_key: Some(self.secret_key.clone()),
            virtual_hosted: false,
            allow_http: true,
            ..StoreOptions::default()
        }
    }

    /// The `s3://bucket/prefix` location string (prefix may be empty).
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A short string unique to this process and call.
fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:X}{:X}{n:X}", std::process::id(), nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use coffer::store::Store;

    #[test]
    fn serves_a_store_from_sync_code() {
        let server = S3Server::start();
        let bucket_dir = server.create_bucket("sync-bucket");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store =
            Store::create(&server.url("sync-bucket", "p"), &server.store_options()).unwrap();
        rt.block_on(async {
            store
                .put("x/y.txt", Bytes::from_static(b"hello"))
                .await
                .unwrap();
            assert_eq!(
                store.get("x/y.txt").await.unwrap(),
                Bytes::from_static(b"hello")
            );
            let listed = store.list("").await.unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].path, "x/y.txt");
            assert_eq!(listed[0].size, 5);
        });
        // The object is a plain file in the bucket directory.
        let file = bucket_dir.join("p/x/y.txt");
        assert_eq!(std::fs::read(&file).unwrap(), b"hello");
        // Changes behind the server's back are visible through it.
        std::fs::write(&file, b"tampered").unwrap();
        rt.block_on(async {
            assert_eq!(
                store.get("x/y.txt").await.unwrap(),
                Bytes::from_static(b"tampered")
            );
            store.delete("x/y.txt").await.unwrap();
            assert!(store.get_opt("x/y.txt").await.unwrap().is_none());
        });
        assert!(!file.exists());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn serves_a_store_from_async_code_and_stops_on_drop() {
        let server = S3Server::start();
        server.create_bucket("bucket-one");
        let store = Store::create(&server.url("bucket-one", ""), &server.store_options()).unwrap();
        store.probe().await.unwrap();
        store.put("k", Bytes::from_static(b"v")).await.unwrap();
        assert_eq!(store.size_of("k").await.unwrap(), Some(1));
        let addr = server.addr;
        let root = server.root().to_path_buf();
        drop(server);
        assert!(!root.exists());
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[test]
    fn several_servers_coexist() {
        let a = S3Server::start();
        let b = S3Server::start();
        assert_ne!(a.endpoint, b.endpoint);
        assert_ne!(a.access_key, b.access_key);
        assert_ne!(a.root(), b.root());
        let debug = format!("{a:?}");
        assert!(!debug.contains(&a.secret_key));
    }

    #[test]
    fn url_formats_locations() {
        let s = S3Server::start();
        assert_eq!(s.url("bkt", ""), "s3://bkt");
        assert_eq!(s.url("bkt", "/x/y/"), "s3://bkt/x/y");
        assert_eq!(s.bucket_path("bkt"), s.root().join("bkt"));
    }
}
