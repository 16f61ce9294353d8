//! The storage conformance suite against the local filesystem and the
//! in-process S3 server, plus the error cases of S3 access.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use coffer::ErrorKind;
use coffer::store::Store;
use coffer_testkit::S3Server;
use coffer_testkit::conformance;

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
