//! The storage conformance suite against the local filesystem and the
//! in-process S3 server, plus the error cases of S3 access.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use coffer::ErrorKind;
use coffer::store::Store;
use coffer_testkit::S3Server;
use coffer_testkit::{conformance, stores};

#[tokio::test(flavor = "multi_thread")]
async fn conformance_local_directory() {
    let base = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    conformance::run_all(|| {
        let dir = base
            .path()
            .join(format!("loc{}", n.fetch_add(1, Ordering::Relaxed)));
        Store::create(dir.to_str().unwrap(), &Default::default()).unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_local_file_url() {
    let base = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    conformance::run_all(|| {
        let dir = base
            .path()
            .join(format!("url{}", n.fetch_add(1, Ordering::Relaxed)));
        Store::create(&format!("file://{}", dir.display()), &Default::default()).unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_s3() {
    let server = S3Server::start();
    server.create_bucket("conformance");
    let options = server.store_options();
    let n = AtomicUsize::new(0);
    conformance::run_all(|| {
        let url = server.url(
            "conformance",
            &format!("run{}/p", n.fetch_add(1, Ordering::Relaxed)),
        );
        Store::create(&url, &options).unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_s3_bucket_root() {
    // A store at the root of a bucket (no prefix), one bucket per check.
    let server = S3Server::start();
    let options = server.store_options();
    let n = AtomicUsize::new(0);
    conformance::run_all(|| {
        let bucket = format!("root-{}", n.fetch_add(1, Ordering::Relaxed));
        server.create_bucket(&bucket);
        Store::create(&server.url(&bucket, ""), &options).unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_wrong_secret_is_an_auth_error_without_the_secret() {
    let server = S3Server::start();
    server.create_bucket("bkt");
    let mut options = server.store_options();
    let wrong = "definitely-not-the-secret-1234";
    options.secret_key = Some(wrong.to_string());
    let store = Store::create(&server.url("bkt", "arch"), &options).unwrap();
    let put = store.put("x", Bytes::from_static(b"x")).await.unwrap_err();
    let get = store.get_opt("x").await.unwrap_err();
    let list = store.list("").await.unwrap_err();
    let probe = store.probe().await.unwrap_err();
    for (op, err) in [("put", put), ("get", get), ("list", list), ("probe", probe)] {
        eprintln!("{op}: {err} | {err:?}");
        assert_eq!(err.kind(), ErrorKind::Auth, "{op}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("s3://bkt/arch"),
            "{op}: the message should name the URL: {msg}"
        );
        assert!(
            !msg.contains(wrong),
            "{op}: the message leaks the secret: {msg}"
        );
        assert!(
            !format!("{err:?}").contains(wrong),
            "{op}: the debug form leaks the secret"
        );
        assert!(!msg.contains(&server.secret_key));
    }
    // Nothing was written.
    assert!(!server.bucket_path("bkt").join("arch/x").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_wrong_access_key_is_an_auth_error() {
    let server = S3Server::start();
    server.create_bucket("bkt");
    let mut options = server.store_options();
    options.access_key = Some("NOSUCHKEY".to_string());
    let store = Store::create(&server.url("bkt", ""), &options).unwrap();
    let err = store.probe().await.unwrap_err();
    eprintln!("{err} | {err:?}");
    assert_eq!(err.kind(), ErrorKind::Auth, "{err:?}");
    assert!(err.to_string().contains("s3://bkt"), "{err}");
    assert!(!err.to_string().contains(&server.secret_key));
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_missing_bucket_is_not_found_naming_the_bucket() {
    let server = S3Server::start();
    let store = Store::create(&server.url("no-such-bucket", "p"), &server.store_options()).unwrap();
    // Only listing is checked: s3s-fs creates a missing bucket's directory
    // on PutObject (real S3 answers NoSuchBucket), and a GET of an object in
    // a missing bucket is a plain 404 that `get_opt` turns into `None`.
    let probe = store.probe().await.unwrap_err();
    let list = store.list("").await.unwrap_err();
    let dirs = store.list_dirs("").await.unwrap_err();
    for (op, err) in [("probe", probe), ("list", list), ("list_dirs", dirs)] {
        eprintln!("{op}: {err} | {err:?}");
        assert_eq!(err.kind(), ErrorKind::NotFound, "{op}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains("s3://no-such-bucket/p"), "{op}: {msg}");
        assert!(msg.contains("bucket"), "{op}: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_objects_can_be_corrupted_behind_the_servers_back() {
    let server = S3Server::start();
    let dir = server.create_bucket("ccc");
    let store = Store::create(&server.url("ccc", "a"), &server.store_options()).unwrap();
    store
        .put("data/f.bin", Bytes::from_static(b"good"))
        .await
        .unwrap();
    let file = dir.join("a/data/f.bin");
    std::fs::write(&file, b"evil").unwrap();
    assert_eq!(store.get("data/f.bin").await.unwrap(), &b"evil"[..]);
    std::fs::remove_file(&file).unwrap();
    assert!(store.get_opt("data/f.bin").await.unwrap().is_none());
}

/// A store over a fresh local directory below `base`, wrapped by `wrap`.
fn wrapped<T: object_store::ObjectStore>(
    base: &std::path::Path,
    n: &AtomicUsize,
    wrap: impl Fn(object_store::local::LocalFileSystem) -> T,
) -> Store {
    let dir = base.join(format!("w{}", n.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&dir).unwrap();
    let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir).unwrap();
    stores::store_over(wrap(fs), &format!("test://{}", dir.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_store_that_ignores_create_only_writes() {
    let base = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    conformance::run_all_but_create_only(|| wrapped(base.path(), &n, stores::IgnoresCreateOnly))
        .await;
    // The wrapper really overwrites: the check it is spared fails on it.
    let store = wrapped(base.path(), &n, stores::IgnoresCreateOnly);
    store
        .put_new("x", Bytes::from_static(b"one"))
        .await
        .unwrap();
    store
        .put_new("x", Bytes::from_static(b"two"))
        .await
        .unwrap();
    assert_eq!(store.get("x").await.unwrap(), &b"two"[..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_store_that_stalls() {
    let base = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    let faults = stores::Faults {
        period: 3,
        fail_at: None,
        stall_at: Some(1),
        stall: std::time::Duration::from_millis(30),
    };
    conformance::run_all(|| wrapped(base.path(), &n, |fs| stores::Faulty::new(fs, faults))).await;
}

/// Two runs take one lock at once on a store that ignores create-only
/// writes: both writes "succeed", the read-back decides, one wins.
#[tokio::test(flavor = "multi_thread")]
async fn the_lock_holds_on_a_store_that_ignores_create_only_writes() {
    let base = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    let store = wrapped(base.path(), &n, stores::IgnoresCreateOnly);
    let (a, b) = tokio::join!(
        coffer::lock::RepoLock::acquire(&store, "backup"),
        coffer::lock::RepoLock::acquire(&store, "prune"),
    );
    let won = [a.is_ok(), b.is_ok()];
    assert_eq!(
        won.iter().filter(|w| **w).count(),
        1,
        "{:?} {:?}",
        a.as_ref().err(),
        b.as_ref().err()
    );
    let lost = a.as_ref().err().or(b.as_ref().err()).unwrap();
    assert_eq!(lost.kind(), ErrorKind::AlreadyExists, "{lost:?}");
    let holder = a.ok().or(b.ok()).unwrap();
    holder.check().await.unwrap();
    holder.release().await.unwrap();
}

fn small_db(dir: &std::path::Path) -> std::path::PathBuf {
    let db = dir.join("small.db");
    coffer_testkit::create_small_db(&db).unwrap();
    db
}

async fn backup_into(db: &std::path::Path, store: &Store) -> coffer::Result<()> {
    let engine: std::sync::Arc<dyn coffer::engine::Engine> =
        std::sync::Arc::new(coffer_sqlite::SqliteEngine);
    coffer::ops::backup::backup(
        engine,
        &coffer_sqlite::address(db).unwrap(),
        store,
        Default::default(),
        std::sync::Arc::new(coffer::progress::Silent),
    )
    .await
    .map(|_| ())
}

/// The archive commit on a store that ignores create-only writes: a second
/// backup into a location holding an archive is refused, and the first
/// archive still verifies.
#[tokio::test(flavor = "multi_thread")]
async fn the_archive_commit_holds_on_a_store_that_ignores_create_only_writes() {
    let base = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    let db = small_db(base.path());
    let store = wrapped(base.path(), &n, stores::IgnoresCreateOnly);
    backup_into(&db, &store).await.unwrap();
    let first = coffer::archive::read_manifest(&store).await.unwrap();
    let err = backup_into(&db, &store).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err:?}");
    let report = coffer::ops::verify::verify(&store, &coffer::progress::Silent)
        .await
        .unwrap();
    assert!(report.is_ok());
    assert_eq!(
        coffer::archive::read_manifest(&store)
            .await
            .unwrap()
            .created_at,
        first.created_at
    );
}

/// Under injected faults a backup either commits an archive that verifies
/// or fails and leaves no archive: never a manifest over missing or wrong
/// files.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_under_faults_commits_a_whole_archive_or_none() {
    let base = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    let db = small_db(base.path());
    let (mut committed, mut failed) = (0, 0);
    // A small backup makes a few dozen requests: a fault at each of the
    // first ones, and some late enough that the backup commits first.
    for fail_at in 0..30 {
        let faults = stores::Faults {
            period: 30,
            fail_at: Some(fail_at),
            stall_at: Some((fail_at + 5) % 30),
            stall: std::time::Duration::from_millis(20),
        };
        let store = wrapped(base.path(), &n, |fs| stores::Faulty::new(fs, faults));
        let result = backup_into(&db, &store).await;
        // Read back through a store without faults.
        let plain = Store::open(&store.url().replace("test://", ""), &Default::default()).unwrap();
        match result {
            Ok(()) => {
                committed += 1;
                let report = coffer::ops::verify::verify(&plain, &coffer::progress::Silent)
                    .await
                    .unwrap();
                assert!(
                    report.is_ok(),
                    "fault at {fail_at}: a committed archive is damaged"
                );
            }
            Err(e) => {
                failed += 1;
                assert!(
                    e.to_string().contains("injected fault"),
                    "fault at {fail_at}: {e}"
                );
                let read = coffer::archive::read_manifest(&plain).await;
                assert!(
                    read.is_err(),
                    "fault at {fail_at}: a failed backup left a manifest"
                );
            }
        }
    }
    assert!(failed > 0, "no injected fault stopped a backup");
    assert!(committed > 0, "no backup got past its faults");
    eprintln!("{committed} backups committed, {failed} failed cleanly");
}
