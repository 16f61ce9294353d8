//! The storage conformance suite: what every [`Store`] backend must do.
//!
//! Each check is a plain `async fn` taking a `&Store` rooted at a fresh,
//! empty location; it panics with a message naming the check and the store
//! on failure. [`run_all`] runs every check, each on its own fresh store.
//!
//! The checks that stream through [`Upload`] run it on a blocking thread
//! with [`Handle::block_on`](tokio::runtime::Handle::block_on), so run the
//! suite on a multi-threaded tokio runtime
//! (`#[tokio::test(flavor = "multi_thread")]`).
//!
//! Conditional writes: [`put_new_refuses_existing`] requires
//! [`Store::put_new`] to refuse an existing object without touching it. The
//! local filesystem does so atomically; the in-process S3 server (s3s-fs
//! 0.14.1) honours `If-None-Match: *` but checks and writes non-atomically.
//! Stores that ignore conditional writes entirely would fail that check; for
//! them [`put_new_never_corrupts`] is the weaker property that must hold
//! regardless: after two `put_new` calls the object is one of the two
//! payloads, whole.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use coffer::ErrorKind;
use coffer::store::Store;
use coffer::upload::Upload;
use sha2::{Digest, Sha256};

use crate::nasty::pseudo_random_bytes;

/// Size of the object written by [`large_object_via_upload`]: more than two
/// upload chunks of any store, so S3 stores use a multipart upload.
pub const LARGE_OBJECT_LEN: usize = 2 * coffer::upload::REMOTE_CHUNK + 3 * 1024 * 1024;

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

async fn paths(store: &Store, rel: &str) -> Vec<String> {
    store
        .list(rel)
        .await
        .unwrap_or_else(|e| panic!("{}: list {rel:?} failed: {e:?}", store.url()))
        .into_iter()
        .map(|e| e.path)
        .collect()
}

async fn assert_empty(store: &Store, check: &str) {
    let listed = paths(store, "").await;
    assert!(
        listed.is_empty(),
        "{check}: the store {} is not empty to begin with: {listed:?}",
        store.url()
    );
}

/// `put` then `get` returns the same bytes (all 256 byte values); a second
/// `put` replaces the object.
pub async fn put_get_round_trip(store: &Store) {
    assert_empty(store, "put_get_round_trip").await;
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    store
        .put("obj.bin", Bytes::from(data.clone()))
        .await
        .unwrap();
    assert_eq!(
        store.get("obj.bin").await.unwrap(),
        data,
        "put_get_round_trip on {}",
        store.url()
    );
    store
        .put("obj.bin", Bytes::from_static(b"replaced"))
        .await
        .unwrap();
    assert_eq!(
        store.get_opt("obj.bin").await.unwrap().as_deref(),
        Some(&b"replaced"[..]),
        "put must replace the object on {}",
        store.url()
    );
    store
        .put("nested/dir/obj", Bytes::from_static(b"n"))
        .await
        .unwrap();
    assert_eq!(store.get("nested/dir/obj").await.unwrap(), &b"n"[..]);
}

/// An empty object is stored, listed with size 0 and read back empty.
pub async fn empty_object(store: &Store) {
    assert_empty(store, "empty_object").await;
    store.put("empty", Bytes::new()).await.unwrap();
    assert_eq!(store.get_opt("empty").await.unwrap(), Some(Bytes::new()));
    assert_eq!(store.size_of("empty").await.unwrap(), Some(0));
    let listed = store.list("").await.unwrap();
    assert_eq!(
        listed.len(),
        1,
        "empty_object on {}: {listed:?}",
        store.url()
    );
    assert_eq!((listed[0].path.as_str(), listed[0].size), ("empty", 0));
}

/// `get_opt` of a missing object is `None`; `get` fails with
/// [`ErrorKind::NotFound`] and a message naming the object's URL.
pub async fn get_missing(store: &Store) {
    assert!(store.get_opt("missing").await.unwrap().is_none());
    assert!(
        store
            .get_opt("no/such/dir/missing")
            .await
            .unwrap()
            .is_none()
    );
    let err = store.get("no/such/object").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    let url = store.url_of("no/such/object");
    assert!(
        err.to_string().contains(&url),
        "the error for a missing object should name {url}: {err}"
    );
}

/// `put_new` creates a missing object and refuses an existing one with
/// [`ErrorKind::AlreadyExists`], leaving it untouched. Also holds on stores
/// whose conditional writes are not atomic (s3s-fs), as long as writers do
/// not race.
pub async fn put_new_refuses_existing(store: &Store) {
    store
        .put_new("lock", Bytes::from_static(b"first"))
        .await
        .unwrap_or_else(|e| panic!("put_new of a new object failed on {}: {e:?}", store.url()));
    let err = store
        .put_new("lock", Bytes::from_static(b"second"))
        .await
        .expect_err("put_new must refuse an existing object");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err:?}");
    assert!(err.to_string().contains(&store.url_of("lock")), "{err}");
    assert_eq!(store.get("lock").await.unwrap(), &b"first"[..]);
    // An object written by plain put counts too.
    store.put("plain", Bytes::from_static(b"p")).await.unwrap();
    assert!(
        store
            .put_new("plain", Bytes::from_static(b"q"))
            .await
            .is_err()
    );
    assert_eq!(store.get("plain").await.unwrap(), &b"p"[..]);
}

/// The weaker property for stores without conditional writes: whatever
/// `put_new` returns, the object afterwards is one of the payloads, whole,
/// and if the second call failed the first payload is intact.
pub async fn put_new_never_corrupts(store: &Store) {
    let first = Bytes::from(pseudo_random_bytes(100_000, 1));
    let second = Bytes::from(pseudo_random_bytes(50_000, 2));
    store.put_new("obj", first.clone()).await.unwrap();
    let refused = store.put_new("obj", second.clone()).await.is_err();
    let now = store.get("obj").await.unwrap();
    if refused {
        assert_eq!(now, first, "a refused put_new changed the object");
    } else {
        assert!(now == first || now == second, "put_new left a mixed object");
    }
    assert_eq!(store.size_of("obj").await.unwrap(), Some(now.len() as u64));
}

/// Deleting a missing object (in a missing "directory" too) is not an error.
pub async fn delete_missing_is_ok(store: &Store) {
    store.delete("never-written").await.unwrap();
    store.delete("no/such/dir/object").await.unwrap();
}

/// Deleting removes the object and nothing else.
pub async fn delete_removes(store: &Store) {
    store.put("a/1", Bytes::from_static(b"1")).await.unwrap();
    store.put("a/2", Bytes::from_static(b"2")).await.unwrap();
    store.delete("a/1").await.unwrap();
    assert!(store.get_opt("a/1").await.unwrap().is_none());
    assert_eq!(store.size_of("a/1").await.unwrap(), None);
    assert_eq!(paths(store, "").await, ["a/2"]);
    store.delete("a/1").await.unwrap();
}

/// `list` is recursive, gives paths relative to the store's root (also when
/// listing below it), is sorted, reports sizes, does not treat a prefix
/// as a string prefix (`a` does not match `ab/…`), and is empty for a
/// missing prefix.
pub async fn list_is_recursive_relative_sorted(store: &Store) {
    let objects = [
        ("c", 3usize),
        ("b/2", 2),
        ("a/sub/deeper/4", 4),
        ("a/1", 1),
        ("ab/5", 5),
        ("a/sub/3", 3),
        ("a-b", 6),
    ];
    for (p, n) in objects {
        store.put(p, Bytes::from(vec![b'x'; n])).await.unwrap();
    }
    let listed = store.list("").await.unwrap();
    let got: Vec<(&str, u64)> = listed.iter().map(|e| (e.path.as_str(), e.size)).collect();
    let mut want: Vec<(&str, u64)> = objects.iter().map(|(p, n)| (*p, *n as u64)).collect();
    want.sort();
    assert_eq!(got, want, "list(\"\") on {}", store.url());
    assert_eq!(
        paths(store, "a").await,
        ["a/1", "a/sub/3", "a/sub/deeper/4"],
        "list(\"a\") on {}",
        store.url()
    );
    assert_eq!(
        paths(store, "a/").await,
        ["a/1", "a/sub/3", "a/sub/deeper/4"]
    );
    assert_eq!(paths(store, "a/sub").await, ["a/sub/3", "a/sub/deeper/4"]);
    assert!(paths(store, "zzz").await.is_empty());
    assert!(paths(store, "a/nothing/here").await.is_empty());
}

/// `list_dirs` gives the immediate sub-"directories", sorted, by name only.
pub async fn list_dirs(store: &Store) {
    for p in ["x/1", "x/y/2", "w/3", "top", "v/u/t/4"] {
        store.put(p, Bytes::from_static(b"d")).await.unwrap();
    }
    assert_eq!(store.list_dirs("").await.unwrap(), ["v", "w", "x"]);
    assert_eq!(store.list_dirs("x").await.unwrap(), ["y"]);
    assert_eq!(store.list_dirs("v").await.unwrap(), ["u"]);
    assert!(store.list_dirs("w").await.unwrap().is_empty());
    assert!(store.list_dirs("missing").await.unwrap().is_empty());
}

/// `size_of` is the object's size, `None` when absent.
pub async fn size_of(store: &Store) {
    store
        .put("s", Bytes::from(vec![7u8; 12_345]))
        .await
        .unwrap();
    assert_eq!(store.size_of("s").await.unwrap(), Some(12_345));
    assert_eq!(store.size_of("nope").await.unwrap(), None);
    assert_eq!(store.size_of("no/such/dir").await.unwrap(), None);
}

/// A child store sees the objects below its prefix, relative to it, and its
/// writes appear below the prefix in the parent.
pub async fn child_store(store: &Store) {
    let child = store.child("kid");
    assert_eq!(child.url(), store.url_of("kid"));
    child
        .put("inner/x", Bytes::from_static(b"c"))
        .await
        .unwrap();
    store
        .put("outside", Bytes::from_static(b"o"))
        .await
        .unwrap();
    assert_eq!(paths(&child, "").await, ["inner/x"]);
    assert_eq!(paths(store, "").await, ["kid/inner/x", "outside"]);
    assert_eq!(store.get("kid/inner/x").await.unwrap(), &b"c"[..]);
    assert_eq!(child.list_dirs("").await.unwrap(), ["inner"]);
    if let (Some(parent), Some(kid)) = (store.local_dir(), child.local_dir()) {
        assert_eq!(kid, parent.join("kid"));
    }
}

/// Object names a database can produce from table names: spaces, unicode,
/// quotes, `%`, `+`, `=`, `&`, `#`, `~`, `^`, `..` inside a name.
pub const AWKWARD_NAMES: &[&str] = &[
    "with space/a b.txt",
    "ünïcødé/表 🦀.bin",
    "pct%41.txt",
    "plus+eq=amp&.txt",
    "quote'dq\"s.txt",
    "hash#tilde~caret^.txt",
    "dots..in..name.txt",
];

async fn put_awkward(store: &Store) {
    for (i, n) in AWKWARD_NAMES.iter().enumerate() {
        store
            .put(n, Bytes::from(vec![i as u8; i + 1]))
            .await
            .unwrap_or_else(|e| panic!("put {n:?} to {}: {e:?}", store.url()));
    }
}

/// Objects with [`AWKWARD_NAMES`] are stored, read back by the same name,
/// sized, listed (one entry each) and deleted.
pub async fn awkward_names_read_back(store: &Store) {
    put_awkward(store).await;
    for (i, n) in AWKWARD_NAMES.iter().enumerate() {
        let got = store
            .get_opt(n)
            .await
            .unwrap_or_else(|e| panic!("get {n:?} from {}: {e:?}", store.url()));
        assert_eq!(got.as_deref(), Some(&vec![i as u8; i + 1][..]), "{n:?}");
        assert_eq!(store.size_of(n).await.unwrap(), Some(i as u64 + 1), "{n:?}");
    }
    assert_eq!(store.list("").await.unwrap().len(), AWKWARD_NAMES.len());
    for n in AWKWARD_NAMES {
        store.delete(n).await.unwrap();
    }
    assert!(paths(store, "").await.is_empty());
}

/// `list` gives back objects with [`AWKWARD_NAMES`] under exactly the names
/// they were written with.
///
/// Not part of [`run_all`]: `coffer::store::Store` (over object_store 0.14)
/// percent-encodes path segments when writing (`%` → `%25`, `"` → `%22`,
/// every non-ASCII byte → `%XX`) and `list` returns the encoded form, so
/// `pct%41.txt` is listed as `pct%2541.txt` and `ünïcødé/…` as
/// `%C3%BCn%C3%AFc%C3%B8d%C3%A9/…`, on every backend.
pub async fn awkward_names_listed_verbatim(store: &Store) {
    put_awkward(store).await;
    let mut want: Vec<String> = AWKWARD_NAMES.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        paths(store, "").await,
        want,
        "list must give back the names objects were written with, on {}",
        store.url()
    );
    let dirs = store.list_dirs("").await.unwrap();
    assert_eq!(
        dirs,
        ["with space", "ünïcødé"],
        "list_dirs on {}",
        store.url()
    );
}

/// A 20 MiB object streamed through [`Upload`] from a blocking thread (a
/// multipart upload on S3): the returned entry has the right size and
/// SHA-256, and the object reads back identical.
pub async fn large_object_via_upload(store: &Store) {
    let data = Arc::new(pseudo_random_bytes(LARGE_OBJECT_LEN, 0xB16));
    let handle = tokio::runtime::Handle::current();
    let (s, d) = (store.clone(), data.clone());
    let entry = tokio::task::spawn_blocking(move || {
        let mut up = Upload::new(&s, "large/object.bin", handle);
        // An odd write size, so chunk boundaries never line up.
        for chunk in d.chunks(1_000_003) {
            up.write_all(chunk).expect("write to the upload");
        }
        up.finish()
    })
    .await
    .expect("the upload thread panicked")
    .unwrap_or_else(|e| panic!("large upload to {} failed: {e:?}", store.url()));
    assert_eq!(entry.path, "large/object.bin");
    assert_eq!(entry.size, LARGE_OBJECT_LEN as u64);
    assert_eq!(entry.sha256, sha256_hex(&data));
    assert_eq!(
        store.size_of("large/object.bin").await.unwrap(),
        Some(LARGE_OBJECT_LEN as u64)
    );
    let back = store.get("large/object.bin").await.unwrap();
    assert!(back == data[..], "the large object came back different");
    let listed = store.list("").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].size, LARGE_OBJECT_LEN as u64);
}

/// A small object through [`Upload`] (a single request), including an empty
/// one.
pub async fn small_object_via_upload(store: &Store) {
    let handle = tokio::runtime::Handle::current();
    let s = store.clone();
    let (small, empty) = tokio::task::spawn_blocking(move || {
        let mut up = Upload::new(&s, "small", handle.clone());
        up.write_all(b"tiny").unwrap();
        let small = up.finish();
        let empty = Upload::new(&s, "empty", handle).finish();
        (small, empty)
    })
    .await
    .unwrap();
    let small = small.unwrap();
    assert_eq!(
        (small.size, small.sha256.as_str()),
        (4, sha256_hex(b"tiny").as_str())
    );
    assert_eq!(store.get("small").await.unwrap(), &b"tiny"[..]);
    let empty = empty.unwrap();
    assert_eq!(
        (empty.size, empty.sha256.as_str()),
        (0, sha256_hex(b"").as_str())
    );
    assert_eq!(store.get_opt("empty").await.unwrap(), Some(Bytes::new()));
}

/// An aborted upload (past the first chunk, so a multipart upload is under
/// way on S3) leaves no object behind.
pub async fn aborted_upload_leaves_nothing(store: &Store) {
    let handle = tokio::runtime::Handle::current();
    let s = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut up = Upload::new(&s, "aborted", handle);
        let data = pseudo_random_bytes(coffer::upload::REMOTE_CHUNK + 1024 * 1024, 3);
        up.write_all(&data).unwrap();
        up.abort();
    })
    .await
    .unwrap();
    assert!(store.get_opt("aborted").await.unwrap().is_none());
    let listed = paths(store, "").await;
    assert!(listed.is_empty(), "an aborted upload left {listed:?}");
}

/// `url` has no trailing slash, `url_of` appends the relative path, and a
/// child store's URL is its parent's `url_of`.
pub async fn url_of_names_location(store: &Store) {
    let url = store.url();
    assert!(!url.is_empty());
    assert!(!url.ends_with('/'), "{url}");
    assert_eq!(store.url_of("a/b.txt"), format!("{url}/a/b.txt"));
    assert_eq!(store.child("x").url_of("y"), format!("{url}/x/y"));
    assert_eq!(format!("{store:?}"), format!("Store {{ url: {url:?} }}"));
}

/// Run every check, each on a fresh store from `make` (which must return a
/// store rooted at a new, empty location every time). Prints the name of
/// each check to stderr before running it, so a failure is easy to place.
pub async fn run_all(make: impl Fn() -> Store) {
    let store = make();
    eprintln!("conformance: put_new_refuses_existing on {}", store.url());
    put_new_refuses_existing(&store).await;
    run_all_but_create_only(make).await;
}

/// Every check but [`put_new_refuses_existing`]: what a store that ignores
/// create-only writes (as several S3-compatible services do) must still do.
pub async fn run_all_but_create_only(make: impl Fn() -> Store) {
    macro_rules! run {
        ($($check:ident),* $(,)?) => {$(
            let store = make();
            eprintln!("conformance: {} on {}", stringify!($check), store.url());
            $check(&store).await;
        )*};
    }
    run!(
        put_get_round_trip,
        empty_object,
        get_missing,
        put_new_never_corrupts,
        delete_missing_is_ok,
        delete_removes,
        list_is_recursive_relative_sorted,
        list_dirs,
        size_of,
        child_store,
        awkward_names_read_back,
        awkward_names_listed_verbatim,
        small_object_via_upload,
        large_object_via_upload,
        aborted_upload_leaves_nothing,
        url_of_names_location,
    );
}
