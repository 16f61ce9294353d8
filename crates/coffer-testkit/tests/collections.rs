//! Backup collections end to end on real SQLite files: change capture,
//! full and incremental backups, restores to every backup point, schema
//! changes, locks, drop, purge and prune, on a local repository and on the
//! in-process S3 server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer::ErrorKind;
use coffer::engine::Engine;
use coffer::manifest::ArchiveKind;
use coffer::ops::collection::{
    self, BackupMode, CollectionBackupOptions, CollectionBackupReport, CollectionRestoreOptions,
    CreateOptions, DropOptions, RestorePoint, backup::backup, prune::prune, restore::restore,
};
use coffer::progress::Silent;
use coffer::store::{Store, StoreOptions};
use coffer_sqlite::SqliteEngine;
use coffer_testkit::S3Server;
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};

fn engine() -> Arc<dyn Engine> {
    Arc::new(SqliteEngine)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A hash of a table's rows (with rowids for rowid tables), storage classes
/// included.
fn table_digest(conn: &Connection, table: &str) -> String {
    let wr: i64 = conn
        .query_row(
            "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("table {table}: {e}"));
    let sql = if wr == 0 {
        format!("SELECT _rowid_, * FROM \"{table}\" ORDER BY _rowid_")
    } else {
        format!("SELECT * FROM \"{table}\" ORDER BY 1, 2")
    };
    let mut stmt = conn.prepare(&sql).unwrap();
    let n = stmt.column_count();
    let mut rows = stmt.query([]).unwrap();
    let mut h = Sha256::new();
    while let Some(r) = rows.next().unwrap() {
        for i in 0..n {
            match r.get_ref(i).unwrap() {
                ValueRef::Null => h.update([0]),
                ValueRef::Integer(v) => {
                    h.update([1]);
                    h.update(v.to_le_bytes());
                }
                ValueRef::Real(v) => {
                    h.update([2]);
                    h.update(v.to_bits().to_le_bytes());
                }
                ValueRef::Text(t) => {
                    h.update([3]);
                    h.update((t.len() as u64).to_le_bytes());
                    h.update(t);
                }
                ValueRef::Blob(b) => {
                    h.update([4]);
                    h.update((b.len() as u64).to_le_bytes());
                    h.update(b);
                }
            }
        }
        h.update([0xff]);
    }
    hex::encode(h.finalize())
}

fn digests(conn: &Connection, tables: &[&str]) -> BTreeMap<String, String> {
    tables
        .iter()
        .map(|t| (t.to_string(), table_digest(conn, t)))
        .collect()
}

fn digests_of(path: &Path, tables: &[&str]) -> BTreeMap<String, String> {
    digests(&Connection::open(path).unwrap(), tables)
}

const TABLES: &[&str] = &["items", "tags", "events"];

fn create_db(path: &Path) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE items(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, qty INTEGER, note);
         CREATE TABLE tags(item INTEGER, tag TEXT COLLATE NOCASE, weight REAL, PRIMARY KEY(item, tag)) WITHOUT ROWID;
         CREATE TABLE events(kind TEXT, payload BLOB);
         CREATE INDEX events_kind ON events(kind);
         CREATE TRIGGER items_audit AFTER DELETE ON items BEGIN INSERT INTO events VALUES('deleted', CAST(OLD.id AS BLOB)); END;
         CREATE TABLE other(x);
         INSERT INTO other VALUES (1), (2);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
         INSERT INTO items(name, qty, note) SELECT 'item' || i, i, CASE WHEN i % 7 = 0 THEN x'00ff' ELSE 'n' || i END FROM n;
         INSERT INTO tags SELECT id, 'Tag' || (id % 5), id / 3.0 FROM items;
         INSERT INTO events SELECT 'made', randomblob(16) FROM items WHERE id % 3 = 0;",
    )
    .unwrap();
}

struct Fixture {
    dir: tempfile::TempDir,
    db: PathBuf,
    repo: String,
    store: StoreOptions,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        create_db(&db);
        let repo = dir.path().join("repo").to_str().unwrap().to_string();
        Fixture {
            dir,
            db,
            repo,
            store: StoreOptions::default(),
        }
    }

    fn conn(&self) -> Connection {
        let c = Connection::open(&self.db).unwrap();
        c.busy_timeout(Duration::from_secs(30)).unwrap();
        c
    }

    fn repo_store(&self) -> Store {
        Store::open(&self.repo, &self.store).unwrap()
    }

    async fn create(&self, name: &str, tables: &[&str]) {
        collection::create(
            engine().as_ref(),
            &coffer_sqlite::address(&self.db).unwrap(),
            name,
            &tables.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            &CreateOptions {
                repo: Some(self.repo.clone()),
                store: self.store.clone(),
            },
        )
        .await
        .unwrap();
    }

    async fn backup(&self, name: &str, mode: BackupMode) -> coffer::Result<CollectionBackupReport> {
        backup(
            engine(),
            &coffer_sqlite::address(&self.db).unwrap(),
            name,
            CollectionBackupOptions {
                mode,
                store: self.store.clone(),
                ..Default::default()
            },
            Arc::new(Silent),
        )
        .await
    }

    async fn restore_to(&self, name: &str, point: RestorePoint, target: &Path) {
        restore(
            engine(),
            &self.repo_store(),
            name,
            &coffer_sqlite::address(target).unwrap(),
            CollectionRestoreOptions {
                point,
                ..Default::default()
            },
            Arc::new(Silent),
        )
        .await
        .unwrap_or_else(|e| panic!("restore into {}: {e:?}", target.display()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_backup_point_restores_exactly() {
    let f = Fixture::new();
    f.create("main", TABLES).await;
    let mut points = Vec::new();

    let full = f.backup("main", BackupMode::Incremental).await;
    let err = full.expect_err("no full backup yet");
    assert!(err.to_string().contains("take a full backup"), "{err}");
    let r = f.backup("main", BackupMode::Auto).await.unwrap();
    assert_eq!(r.manifest.kind, ArchiveKind::Full);
    assert!(r.id.ends_with("_full"));
    points.push((r.id, digests(&f.conn(), TABLES)));

    // Updates, a primary-key change, deletes, misfit values, NUL bytes,
    // a REPLACE that silently deletes a row with the same unique name, an
    // INSERT OR IGNORE that changes nothing, an UPDATE OR IGNORE.
    f.conn()
        .execute_batch(
            "UPDATE items SET qty = qty + 1000 WHERE id % 10 = 0;
             UPDATE items SET id = 5000 WHERE id = 1;
             DELETE FROM items WHERE id BETWEEN 20 AND 25;
             UPDATE items SET qty = 'not a number', note = CAST(x'610062' AS TEXT) WHERE id = 2;
             INSERT OR REPLACE INTO items(id, name, qty) VALUES (6000, 'item3', -1);
             INSERT OR IGNORE INTO items(id, name, qty) VALUES (4, 'dup', 0);
             UPDATE OR IGNORE items SET qty = 7 WHERE id = 5;
             UPDATE tags SET tag = 'renamed' WHERE item = 7;
             UPDATE tags SET tag = lower(tag) WHERE item = 8;
             DELETE FROM tags WHERE item > 290;
             INSERT INTO events VALUES ('late', NULL), (NULL, x'');",
        )
        .unwrap();
    let r = f.backup("main", BackupMode::Incremental).await.unwrap();
    assert_eq!(r.manifest.kind, ArchiveKind::Incremental);
    assert_eq!(r.manifest.parent.as_deref(), Some(points[0].0.as_str()));
    let changes = collection::table_changes(&r.manifest);
    let items = changes.iter().find(|c| c.0 == "items").unwrap();
    assert!(items.1 < 60 && items.2 >= 6, "{changes:?}");
    points.push((r.id, digests(&f.conn(), TABLES)));

    // Delete everything of one table, re-insert some; insert past the
    // largest id (AUTOINCREMENT), then delete it.
    f.conn()
        .execute_batch(
            "DELETE FROM events;
             INSERT INTO events VALUES ('again', x'01');
             INSERT INTO items(name, qty) VALUES ('newest', 1);
             DELETE FROM items WHERE name = 'newest';
             UPDATE tags SET weight = -0.0 WHERE item = 9;
             INSERT OR REPLACE INTO items(id, name, qty) VALUES (7000, 'item40', 1);
             DELETE FROM items WHERE id = 7000;",
        )
        .unwrap();
    let r = f.backup("main", BackupMode::Auto).await.unwrap();
    assert_eq!(r.manifest.kind, ArchiveKind::Incremental);
    points.push((r.id, digests(&f.conn(), TABLES)));

    // Nothing changed: an empty incremental.
    let r = f.backup("main", BackupMode::Incremental).await.unwrap();
    assert_eq!(r.manifest.total_rows(), 0);
    points.push((r.id.clone(), digests(&f.conn(), TABLES)));

    for (i, (id, expected)) in points.iter().enumerate() {
        let target = f.dir.path().join(format!("point{i}.db"));
        f.restore_to("main", RestorePoint::Backup(id.clone()), &target)
            .await;
        assert_eq!(&digests_of(&target, TABLES), expected, "backup {id}");
    }
    // The latest by default; the schema came along; the AUTOINCREMENT
    // counter too.
    let latest = f.dir.path().join("latest.db");
    f.restore_to("main", RestorePoint::Latest, &latest).await;
    assert_eq!(digests_of(&latest, TABLES), points[3].1);
    let c = Connection::open(&latest).unwrap();
    let objects: Vec<String> = c
        .prepare("SELECT name FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        objects,
        [
            "events",
            "events_kind",
            "items",
            "items_audit",
            "sqlite_sequence",
            "tags"
        ]
    );
    let seq = |c: &Connection| -> i64 {
        c.query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'items'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(seq(&c), seq(&f.conn()));

    // --at: the latest backup at or before a time.
    let m = collection::repo::read_backup(
        &collection::repo::collection_store(&f.repo_store(), "main"),
        &points[1].0,
    )
    .await
    .unwrap();
    let at: jiff::Timestamp = m.backup_point.parse().unwrap();
    let target = f.dir.path().join("at.db");
    f.restore_to("main", RestorePoint::At(at), &target).await;
    assert_eq!(digests_of(&target, TABLES), points[1].1);
    let err = restore(
        engine(),
        &f.repo_store(),
        "main",
        &coffer_sqlite::address(f.dir.path().join("never.db")).unwrap(),
        CollectionRestoreOptions {
            point: RestorePoint::At("2000-01-01T00:00:00Z".parse().unwrap()),
            ..Default::default()
        },
        Arc::new(Silent),
    )
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("no backup at or before"), "{err}");

    // A subset of tables, into an existing database holding other tables.
    let target = f.dir.path().join("existing.db");
    Connection::open(&target)
        .unwrap()
        .execute_batch("CREATE TABLE mine(x); INSERT INTO mine VALUES (42);")
        .unwrap();
    restore(
        engine(),
        &f.repo_store(),
        "main",
        &coffer_sqlite::address(&target).unwrap(),
        CollectionRestoreOptions {
            tables: vec!["tags".into()],
            ..Default::default()
        },
        Arc::new(Silent),
    )
    .await
    .unwrap();
    let c = Connection::open(&target).unwrap();
    assert_eq!(table_digest(&c, "tags"), points[3].1["tags"]);
    assert_eq!(
        c.query_row("SELECT x FROM mine", [], |r| r.get::<_, i64>(0))
            .unwrap(),
        42
    );
    drop(c);
    // Again: the table exists now.
    let repo = f.repo_store();
    let target_address = coffer_sqlite::address(&target).unwrap();
    let again = |replace: bool| {
        restore(
            engine(),
            &repo,
            "main",
            &target_address,
            CollectionRestoreOptions {
                tables: vec!["tags".into()],
                replace,
                point: RestorePoint::Backup(points[0].0.clone()),
            },
            Arc::new(Silent),
        )
    };
    let err = again(false).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(
        err.to_string().contains("table 'tags' already exists")
            && err.to_string().contains("--force"),
        "{err}"
    );
    again(true).await.unwrap();
    let c = Connection::open(&target).unwrap();
    assert_eq!(table_digest(&c, "tags"), points[0].1["tags"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_backup_removes_nothing_and_loses_nothing() {
    let f = Fixture::new();
    f.create("main", TABLES).await;
    f.backup("main", BackupMode::Full).await.unwrap();
    // The newest rows go, then a backup fails after it has begun.
    f.conn()
        .execute_batch("DELETE FROM events WHERE rowid > (SELECT max(rowid) - 20 FROM events); UPDATE tags SET weight = 1 WHERE item < 10;")
        .unwrap();
    let log = |t: &str| {
        f.conn()
            .query_row(
                &format!("SELECT count(*) FROM \"_coffer_log_{t}\""),
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
    };
    let before = (log("events"), log("tags"));
    let cancel = coffer::progress::Cancel::new();
    cancel.cancel();
    let err = backup(
        engine(),
        &coffer_sqlite::address(&f.db).unwrap(),
        "main",
        CollectionBackupOptions {
            mode: BackupMode::Incremental,
            ..Default::default()
        },
        coffer::progress::Run::new(Arc::new(Silent), cancel),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::Interrupted);
    assert_eq!((log("events"), log("tags")), before);
    // New rows take the rowids of the deleted ones.
    f.conn()
        .execute_batch("INSERT INTO events SELECT 'again', randomblob(4) FROM items WHERE id < 30;")
        .unwrap();
    f.backup("main", BackupMode::Incremental).await.unwrap();
    let target = f.dir.path().join("r.db");
    f.restore_to("main", RestorePoint::Latest, &target).await;
    assert_eq!(digests_of(&target, TABLES), digests(&f.conn(), TABLES));
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_changes_need_a_full_backup() {
    let f = Fixture::new();
    f.create("main", TABLES).await;
    f.backup("main", BackupMode::Full).await.unwrap();
    f.conn()
        .execute_batch("ALTER TABLE items ADD COLUMN extra TEXT DEFAULT 'x'; UPDATE items SET extra = 'y' WHERE id = 3;")
        .unwrap();
    let err = f
        .backup("main", BackupMode::Incremental)
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("the schema of table 'items' differs from the chain's full backup")
            && err.to_string().contains("take a full backup"),
        "{err}"
    );
    let r = f.backup("main", BackupMode::Auto).await.unwrap();
    assert_eq!(r.manifest.kind, ArchiveKind::Full);
    // A new index changes what an upsert replaces: a full backup too.
    f.conn()
        .execute_batch("CREATE UNIQUE INDEX items_qty ON items(qty, id);")
        .unwrap();
    assert!(f.backup("main", BackupMode::Incremental).await.is_err());
    f.backup("main", BackupMode::Auto).await.unwrap();
    // Re-creating a table drops its triggers: the capture is repaired by
    // the next full backup, and changes after it are captured again.
    f.conn()
        .execute_batch(
            "DROP TRIGGER items_audit;
             CREATE TABLE events2(kind TEXT, payload BLOB);
             INSERT INTO events2 SELECT * FROM events;
             DROP TABLE events;
             ALTER TABLE events2 RENAME TO events;
             CREATE INDEX events_kind ON events(kind);
             CREATE TRIGGER items_audit AFTER DELETE ON items BEGIN INSERT INTO events VALUES('deleted', CAST(OLD.id AS BLOB)); END;",
        )
        .unwrap();
    let err = f
        .backup("main", BackupMode::Incremental)
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("change capture of table 'events' is missing"),
        "{err}"
    );
    assert_eq!(
        f.backup("main", BackupMode::Auto)
            .await
            .unwrap()
            .manifest
            .kind,
        ArchiveKind::Full
    );
    f.conn()
        .execute_batch("INSERT INTO events VALUES ('after', NULL)")
        .unwrap();
    let r = f.backup("main", BackupMode::Incremental).await.unwrap();
    assert_eq!(
        collection::table_changes(&r.manifest)
            .iter()
            .find(|c| c.0 == "events")
            .unwrap()
            .1,
        1
    );
    let target = f.dir.path().join("r.db");
    f.restore_to("main", RestorePoint::Latest, &target).await;
    assert_eq!(digests_of(&target, TABLES), digests(&f.conn(), TABLES));
}

#[tokio::test(flavor = "multi_thread")]
async fn create_refuses_what_it_cannot_capture_and_installs_nothing() {
    let f = Fixture::new();
    f.conn()
        .execute_batch("CREATE VIRTUAL TABLE docs USING fts5(body); CREATE VIEW v AS SELECT 1;")
        .unwrap();
    let before = schema(&f.db);
    let opts = CreateOptions {
        repo: Some(f.repo.clone()),
        store: StoreOptions::default(),
    };
    for (tables, expect) in [
        (vec!["items", "nope"], "table 'nope' does not exist"),
        (vec!["docs"], "virtual table"),
        (vec!["v"], "view"),
        (vec!["items", "items"], "named twice"),
    ] {
        let tables: Vec<String> = tables.into_iter().map(String::from).collect();
        let err = collection::create(
            engine().as_ref(),
            &coffer_sqlite::address(&f.db).unwrap(),
            "c",
            &tables,
            &opts,
        )
        .await
        .err()
        .unwrap();
        assert!(err.to_string().contains(expect), "{err}");
        assert_eq!(schema(&f.db), before, "something was installed");
    }
    let err = collection::create(
        engine().as_ref(),
        &coffer_sqlite::address(&f.db).unwrap(),
        "bad/name",
        &["items".into()],
        &opts,
    )
    .await
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("not a valid collection name"),
        "{err}"
    );
    f.create("one", &["items"]).await;
    let err = collection::create(
        engine().as_ref(),
        &coffer_sqlite::address(&f.db).unwrap(),
        "two",
        &["tags".into(), "items".into()],
        &opts,
    )
    .await
    .err()
    .unwrap();
    assert!(
        err.to_string()
            .contains("already belongs to collection 'one'"),
        "{err}"
    );
    let err = collection::create(
        engine().as_ref(),
        &coffer_sqlite::address(&f.db).unwrap(),
        "one",
        &["tags".into()],
        &opts,
    )
    .await
    .err()
    .unwrap();
    assert!(
        err.to_string()
            .contains("already has a collection named 'one'"),
        "{err}"
    );
}

fn schema(db: &Path) -> Vec<(String, String)> {
    let c = Connection::open(db).unwrap();
    c.prepare("SELECT type, name FROM sqlite_schema ORDER BY name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_purge_and_prune_remove_exactly_what_they_should() {
    let f = Fixture::new();
    let before = schema(&f.db);
    f.create("a", &["items", "tags"]).await;
    f.create("b", &["events"]).await;
    assert!(schema(&f.db).len() > before.len());
    // Three chains of a: full+inc, full+inc+inc, full.
    let mut ids = Vec::new();
    for mode in [
        BackupMode::Full,
        BackupMode::Incremental,
        BackupMode::Full,
        BackupMode::Incremental,
        BackupMode::Incremental,
        BackupMode::Full,
    ] {
        f.conn()
            .execute("UPDATE items SET qty = qty + 1 WHERE id % 50 = 0", [])
            .unwrap();
        ids.push(f.backup("a", mode).await.unwrap().id);
    }
    f.backup("b", BackupMode::Full).await.unwrap();
    let repo = f.repo_store();
    let details = collection::show(&repo, "a").await.unwrap();
    assert_eq!(details.chains.len(), 3);
    assert_eq!(
        details
            .chains
            .iter()
            .map(|c| c.backups.len())
            .collect::<Vec<_>>(),
        [2, 3, 1]
    );

    // Prune to two chains: exactly the first chain goes.
    let dry = prune(&repo, "a", 2, true).await.unwrap();
    assert_eq!(dry.plan.delete, [ids[1].clone(), ids[0].clone()]);
    assert_eq!(collection::show(&repo, "a").await.unwrap().chains.len(), 3);
    let report = prune(&repo, "a", 2, false).await.unwrap();
    assert_eq!(report.plan.keep, ids[2..].to_vec());
    assert!(report.bytes > 0);
    let a_dir = Path::new(&f.repo).join("collections/a");
    let left: Vec<String> = std::fs::read_dir(&a_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains('_'))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(left, ids[2..].to_vec());
    for id in &ids[2..] {
        assert!(!files_under(&a_dir.join(id)).is_empty());
    }
    // What is kept still restores.
    let target = f.dir.path().join("kept.db");
    f.restore_to("a", RestorePoint::Backup(ids[4].clone()), &target)
        .await;
    assert!(prune(&repo, "a", 0, false).await.is_err());

    // Drop a without purge: its capture goes, b's stays, backups stay.
    let b_files = files_under(&Path::new(&f.repo).join("collections/b"));
    collection::drop_collection(
        engine().as_ref(),
        &coffer_sqlite::address(&f.db).unwrap(),
        "a",
        &DropOptions::default(),
    )
    .await
    .unwrap();
    let names: Vec<String> = schema(&f.db).into_iter().map(|(_, n)| n).collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("items") && n.starts_with("_coffer")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n == "_coffer_log_events"), "{names:?}");
    assert!(!files_under(&a_dir).is_empty());
    // Writes to the tables of a are no longer logged.
    f.conn()
        .execute("DELETE FROM items WHERE id = 3", [])
        .unwrap();

    // Drop b with purge: nothing of coffer is left in the database, and
    // nothing of b in the repository; a's backups are untouched.
    let a_files = files_under(&a_dir);
    collection::drop_collection(
        engine().as_ref(),
        &coffer_sqlite::address(&f.db).unwrap(),
        "b",
        &DropOptions {
            purge: true,
            store: StoreOptions::default(),
        },
    )
    .await
    .unwrap();
    assert_eq!(schema(&f.db), before);
    assert!(!b_files.is_empty());
    assert!(files_under(&Path::new(&f.repo).join("collections/b")).is_empty());
    assert_eq!(files_under(&a_dir), a_files);
    let err = collection::drop_collection(
        engine().as_ref(),
        &coffer_sqlite::address(&f.db).unwrap(),
        "b",
        &DropOptions::default(),
    )
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("no collection named 'b'"), "{err}");
    let listed = collection::list(&repo).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|c| c.info.name.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_backup_at_once_fails_clearly() {
    let f = Fixture::new();
    f.create("main", TABLES).await;
    f.backup("main", BackupMode::Full).await.unwrap();
    let store = collection::repo::collection_store(&f.repo_store(), "main");
    let held = collection::lock::RepoLock::acquire(&store, "backup")
        .await
        .unwrap();
    let err = f.backup("main", BackupMode::Auto).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(
        err.to_string().contains("is locked by a backup on"),
        "{err}"
    );
    let err = prune(&f.repo_store(), "main", 1, false)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("is locked"), "{err}");
    held.release().await.unwrap();
    f.backup("main", BackupMode::Auto).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_database_backup_carries_capture_but_restarts_chains() {
    use coffer::ops::backup::{BackupOptions, backup as whole_backup};
    use coffer::ops::restore::{RestoreOptions, restore as whole_restore};
    let f = Fixture::new();
    f.create("main", TABLES).await;
    f.backup("main", BackupMode::Full).await.unwrap();
    let archive = Store::create(s(&f.dir.path().join("whole")), &StoreOptions::default()).unwrap();
    whole_backup(
        engine(),
        &coffer_sqlite::address(&f.db).unwrap(),
        &archive,
        BackupOptions::default(),
        Arc::new(Silent),
    )
    .await
    .unwrap();
    f.conn()
        .execute("UPDATE items SET qty = 0 WHERE id = 9", [])
        .unwrap();
    f.backup("main", BackupMode::Incremental).await.unwrap();
    // Put the database back as it was before that incremental.
    let back = f.dir.path().join("back.db");
    whole_restore(
        engine(),
        &archive,
        &coffer_sqlite::address(&back).unwrap(),
        RestoreOptions::default(),
        Arc::new(Silent),
    )
    .await
    .unwrap();
    let names: Vec<String> = schema(&back).into_iter().map(|(_, n)| n).collect();
    assert!(
        names.contains(&"_coffer_ins_items".to_string()),
        "{names:?}"
    );
    // Some tables only: without coffer's tables its triggers would break
    // every write, so they are left out.
    let some = f.dir.path().join("some.db");
    whole_restore(
        engine(),
        &archive,
        &coffer_sqlite::address(&some).unwrap(),
        RestoreOptions {
            tables: vec!["items".into()],
            ..Default::default()
        },
        Arc::new(Silent),
    )
    .await
    .unwrap();
    let names: Vec<String> = schema(&some).into_iter().map(|(_, n)| n).collect();
    assert!(!names.iter().any(|n| n.starts_with("_coffer")), "{names:?}");
    Connection::open(&some)
        .unwrap()
        .execute("UPDATE items SET qty = 1 WHERE id = 2", [])
        .unwrap();
    std::fs::rename(&back, &f.db).unwrap();
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", f.db.display()));
    }
    let err = f
        .backup("main", BackupMode::Incremental)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("does not continue from"), "{err}");
    let r = f.backup("main", BackupMode::Auto).await.unwrap();
    assert_eq!(r.manifest.kind, ArchiveKind::Full);
    let target = f.dir.path().join("r.db");
    f.restore_to("main", RestorePoint::Latest, &target).await;
    assert_eq!(digests_of(&target, TABLES), digests(&f.conn(), TABLES));
}

#[tokio::test(flavor = "multi_thread")]
async fn collections_on_s3() {
    let server = S3Server::start();
    server.create_bucket("coffer-coll");
    let mut f = Fixture::new();
    f.repo = server.url("coffer-coll", "repo");
    f.store = server.store_options();
    f.create("main", TABLES).await;
    f.backup("main", BackupMode::Full).await.unwrap();
    f.conn()
        .execute_batch("UPDATE items SET id = 9000 WHERE id = 10; DELETE FROM tags WHERE item < 5;")
        .unwrap();
    let r = f.backup("main", BackupMode::Incremental).await.unwrap();
    assert!(
        r.repository
            .starts_with("s3://coffer-coll/repo/collections/main")
    );
    let target = f.dir.path().join("s3.db");
    f.restore_to("main", RestorePoint::Latest, &target).await;
    assert_eq!(digests_of(&target, TABLES), digests(&f.conn(), TABLES));
    // Two backups at once on a store that may ignore conditional writes:
    // exactly one commits, the other says why it did not.
    f.conn()
        .execute("UPDATE items SET qty = 1 WHERE id = 11", [])
        .unwrap();
    let (a, b) = tokio::join!(
        f.backup("main", BackupMode::Incremental),
        f.backup("main", BackupMode::Incremental)
    );
    assert!(a.is_ok() != b.is_ok(), "{a:?} / {b:?}");
    let err = a.err().or(b.err()).unwrap();
    assert!(err.to_string().contains("locked"), "{err}");
    let listed = collection::list(&f.repo_store()).await.unwrap();
    assert_eq!(listed[0].backups, 3);
    assert_eq!(listed[0].chains, 1);
    let target = f.dir.path().join("s3-again.db");
    f.restore_to("main", RestorePoint::Latest, &target).await;
    assert_eq!(digests_of(&target, TABLES), digests(&f.conn(), TABLES));
}

/// States the writer's tables have been in, in commit order.
type States = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

/// Random inserts, updates (primary-key changes included) and deletes,
/// recording the tables' contents after each transaction (taken inside it,
/// so the recorded states are exactly the committed ones).
fn writer(db: PathBuf, seed: u64, stop: Arc<AtomicBool>, states: States) {
    let c = Connection::open(&db).unwrap();
    c.busy_timeout(Duration::from_secs(60)).unwrap();
    let mut rng = fastrand::Rng::with_seed(seed);
    while !stop.load(Ordering::SeqCst) {
        let tx = c.unchecked_transaction().unwrap();
        for _ in 0..rng.usize(1..8) {
            let id = rng.i64(1..400);
            let other = rng.i64(1..400);
            match rng.u8(0..10) {
                0 => tx.execute("INSERT OR IGNORE INTO items(id, name, qty) VALUES (?1, 'w' || ?1, ?2)", (id, other)),
                1 => tx.execute("UPDATE items SET qty = qty + ?2 WHERE id = ?1", (id, other)),
                2 => tx.execute("UPDATE OR IGNORE items SET id = ?2 WHERE id = ?1", (id, other + 1000)),
                3 => tx.execute("DELETE FROM items WHERE id = ?1", [id]),
                4 => tx.execute("INSERT OR REPLACE INTO items(id, name, qty) VALUES (?1, 'item' || ?2, 0)", (id, other)),
                5 => tx.execute("INSERT OR REPLACE INTO tags VALUES (?1, 'Tag' || ?2, ?2 / 7.0)", (id % 50, other % 9)),
                6 => tx.execute("UPDATE OR REPLACE tags SET tag = 'tag' || ?2 WHERE item = ?1", (id % 50, other % 9)),
                7 => tx.execute("DELETE FROM tags WHERE item = ?1 AND weight > ?2 / 10.0", (id % 50, other % 40)),
                8 => tx.execute("INSERT INTO events VALUES ('w', randomblob(?1 % 20))", [id]),
                _ => tx.execute("DELETE FROM events WHERE rowid IN (SELECT rowid FROM events ORDER BY random() LIMIT 2)", []),
            }
            .unwrap();
        }
        let state = digests(&tx, TABLES);
        // Record before committing, under the lock: a backup that sees the
        // commit sees the state recorded.
        let mut guard = states.lock().unwrap();
        guard.push(state);
        tx.commit().unwrap();
        drop(guard);
        std::thread::sleep(Duration::from_micros(rng.u64(0..2000)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_during_random_writes_restore_states_the_database_had() {
    let seed: u64 = std::env::var("COFFER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("seed {seed} (set COFFER_SEED to replay)");
    let f = Fixture::new();
    f.create("main", TABLES).await;
    let states: States = Arc::new(Mutex::new(vec![digests(&f.conn(), TABLES)]));
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let (db, stop, states) = (f.db.clone(), stop.clone(), states.clone());
        std::thread::spawn(move || writer(db, seed, stop, states))
    };
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    // (backup id, first and last state index it may hold)
    let mut taken = Vec::new();
    for i in 0..24 {
        tokio::time::sleep(Duration::from_millis(rng.u64(5..60))).await;
        let mode = if i == 0 || rng.u8(0..6) == 0 {
            BackupMode::Full
        } else {
            BackupMode::Incremental
        };
        let first = states.lock().unwrap().len() - 1;
        let r = f.backup("main", mode).await.unwrap();
        let last = states.lock().unwrap().len() - 1;
        taken.push((r.id, first, last));
    }
    stop.store(true, Ordering::SeqCst);
    handle.join().unwrap();
    let states = states.lock().unwrap().clone();
    for (id, first, last) in &taken {
        let target = f.dir.path().join(format!("{id}.db"));
        f.restore_to("main", RestorePoint::Backup(id.clone()), &target)
            .await;
        let got = digests_of(&target, TABLES);
        if !states[*first..=*last].contains(&got) {
            for t in TABLES {
                let hit = states[*first..=*last].iter().any(|st| st[*t] == got[*t]);
                eprintln!("{id}: table {t} matches some state: {hit}");
            }
        }
        assert!(
            states[*first..=*last].contains(&got),
            "seed {seed}: backup {id} restores a state the database never had between states {first} and {last}"
        );
    }
    // After the writer stopped, one more incremental equals the end state.
    let r = f.backup("main", BackupMode::Incremental).await.unwrap();
    let target = f.dir.path().join("final.db");
    f.restore_to("main", RestorePoint::Backup(r.id), &target)
        .await;
    assert_eq!(
        &digests_of(&target, TABLES),
        states.last().unwrap(),
        "seed {seed}"
    );
    assert!(
        taken.len() > 10 && states.len() > 50,
        "{} states",
        states.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emptied_repository_starts_a_new_chain() {
    let f = Fixture::new();
    f.create("main", TABLES).await;
    f.backup("main", BackupMode::Full).await.unwrap();
    std::fs::remove_dir_all(&f.repo).unwrap();
    let err = f
        .backup("main", BackupMode::Incremental)
        .await
        .expect_err("nothing to build on");
    assert!(err.to_string().contains("has no backup yet"), "{err}");
    let r = f.backup("main", BackupMode::Auto).await.unwrap();
    assert_eq!(r.manifest.kind, ArchiveKind::Full);
    let target = f.dir.path().join("r.db");
    f.restore_to("main", RestorePoint::Latest, &target).await;
    assert_eq!(digests_of(&target, TABLES), digests(&f.conn(), TABLES));
}

/// VACUUM renumbers the rowids of a table without an `INTEGER PRIMARY
/// KEY`, so a change log of such a table no longer names the right rows:
/// the incremental after a VACUUM is refused, `--auto` takes a full backup,
/// and every restore equals its source. An `INTEGER PRIMARY KEY` keeps its
/// values through a VACUUM and stays incremental; so does a collection
/// whose only schema change since its backup is coffer's own capture of
/// another collection.
#[tokio::test(flavor = "multi_thread")]
async fn vacuum_never_makes_an_incremental_restore_wrong_rows() {
    let f = Fixture::new();
    f.conn()
        .execute_batch(
            "CREATE TABLE plain(a INTEGER, b TEXT);
             CREATE TABLE keyed(code TEXT PRIMARY KEY, v INTEGER);
             CREATE TABLE numbered(id INTEGER PRIMARY KEY, v INTEGER);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
             INSERT INTO plain SELECT i, 'row' || i FROM n;
             INSERT INTO keyed SELECT 'k' || a, a FROM plain;
             INSERT INTO numbered SELECT a, a FROM plain;",
        )
        .unwrap();
    f.create("plain", &["plain"]).await;
    f.create("keyed", &["keyed"]).await;
    f.create("numbered", &["numbered"]).await;
    for name in ["plain", "keyed", "numbered"] {
        f.backup(name, BackupMode::Full).await.unwrap();
    }
    let source = |t: &str| table_digest(&f.conn(), t);
    let fresh = |i: usize| f.dir.path().join(format!("restored{i}.db"));

    // The report: 1,000 rows, delete half, VACUUM, update one, back up.
    f.conn()
        .execute_batch(
            "DELETE FROM plain WHERE a % 2 = 0;
             DELETE FROM keyed WHERE v % 2 = 0;
             DELETE FROM numbered WHERE v % 2 = 0;
             VACUUM;
             UPDATE plain SET b = 'changed' WHERE a = 999;
             UPDATE keyed SET v = -1 WHERE code = 'k999';
             UPDATE numbered SET v = -1 WHERE id = 999;",
        )
        .unwrap();
    let r = f.backup("plain", BackupMode::Auto).await.unwrap();
    assert_eq!(r.manifest.kind, ArchiveKind::Full, "plain after VACUUM");
    f.restore_to("plain", RestorePoint::Latest, &fresh(0)).await;
    let c = Connection::open(fresh(0)).unwrap();
    let rows: i64 = c
        .query_row("SELECT count(*) FROM plain", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 500);
    assert_eq!(table_digest(&c, "plain"), source("plain"));

    let err = f
        .backup("keyed", BackupMode::Incremental)
        .await
        .expect_err("a TEXT PRIMARY KEY table has an implicit rowid too");
    let msg = err.to_string();
    assert!(
        msg.contains("table 'keyed'")
            && msg.contains("INTEGER PRIMARY KEY")
            && msg.contains("VACUUM")
            && msg.contains("take a full backup"),
        "{msg}"
    );
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let r = f.backup("keyed", BackupMode::Auto).await.unwrap();
    assert_eq!(r.manifest.kind, ArchiveKind::Full);

    let r = f.backup("numbered", BackupMode::Incremental).await.unwrap();
    assert_eq!(r.manifest.kind, ArchiveKind::Incremental);
    assert_eq!(
        collection::table_changes(&r.manifest),
        [("numbered".to_string(), 1, 500)]
    );

    // After the full backups, incrementals again; coffer's own schema
    // changes (capture for another collection) force no full backup.
    f.create("main", TABLES).await;
    f.conn()
        .execute_batch(
            "INSERT INTO plain VALUES (2000, 'new');
             UPDATE plain SET b = 'again' WHERE a = 1;
             DELETE FROM plain WHERE a = 3;
             UPDATE keyed SET v = -2 WHERE code = 'k1';",
        )
        .unwrap();
    for name in ["plain", "keyed", "numbered"] {
        let r = f.backup(name, BackupMode::Incremental).await.unwrap();
        assert_eq!(r.manifest.kind, ArchiveKind::Incremental, "{name}");
    }

    // A VACUUM between two incrementals: the next is full again, and every
    // backup point restores exactly.
    let before_vacuum = source("plain");
    f.conn()
        .execute_batch(
            "DELETE FROM plain WHERE a < 100; VACUUM; UPDATE plain SET b = 'late' WHERE a = 501;",
        )
        .unwrap();
    let err = f
        .backup("plain", BackupMode::Incremental)
        .await
        .expect_err("refused after VACUUM");
    assert!(err.to_string().contains("table 'plain'"), "{err}");
    let r = f.backup("plain", BackupMode::Auto).await.unwrap();
    assert_eq!(r.manifest.kind, ArchiveKind::Full);
    let store = collection::repo::collection_store(&f.repo_store(), "plain");
    let ids = collection::repo::list_backups(&store)
        .await
        .unwrap()
        .committed;
    assert_eq!(ids.len(), 4, "{ids:?}");
    f.restore_to("plain", RestorePoint::Backup(ids[2].clone()), &fresh(1))
        .await;
    assert_eq!(
        table_digest(&Connection::open(fresh(1)).unwrap(), "plain"),
        before_vacuum
    );
    f.restore_to("plain", RestorePoint::Latest, &fresh(2)).await;
    assert_eq!(
        table_digest(&Connection::open(fresh(2)).unwrap(), "plain"),
        source("plain")
    );
}

/// A database whose collections were recorded before coffer kept the
/// schema cookie: its backups work, and the first incremental of a table
/// with an implicit rowid waits for a full backup that records one.
#[tokio::test(flavor = "multi_thread")]
async fn collections_recorded_without_a_schema_cookie_keep_working() {
    let f = Fixture::new();
    f.create("main", TABLES).await;
    f.backup("main", BackupMode::Full).await.unwrap();
    f.conn()
        .execute_batch(
            "ALTER TABLE _coffer_collections DROP COLUMN cookie;
             ALTER TABLE _coffer_collections DROP COLUMN begun_cookie;
             INSERT INTO events VALUES ('x', NULL);",
        )
        .unwrap();
    let err = f
        .backup("main", BackupMode::Incremental)
        .await
        .expect_err("no cookie recorded");
    assert!(err.to_string().contains("table 'events'"), "{err}");
    let r = f.backup("main", BackupMode::Auto).await.unwrap();
    assert_eq!(r.manifest.kind, ArchiveKind::Full);
    f.conn()
        .execute_batch("INSERT INTO events VALUES ('y', NULL);")
        .unwrap();
    let r = f.backup("main", BackupMode::Incremental).await.unwrap();
    assert_eq!(r.manifest.kind, ArchiveKind::Incremental);
    let target = f.dir.path().join("r.db");
    f.restore_to("main", RestorePoint::Latest, &target).await;
    assert_eq!(digests_of(&target, TABLES), digests(&f.conn(), TABLES));
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_that_break_a_check_constraint_restore_fresh_and_in_place() {
    let f = Fixture::new();
    f.conn()
        .execute_batch(
            "CREATE TABLE checked(id INTEGER PRIMARY KEY, n INTEGER CHECK (n > 0));
             PRAGMA ignore_check_constraints = ON;
             INSERT INTO checked VALUES (1, -1), (2, 5);",
        )
        .unwrap();
    f.create("main", &["checked"]).await;
    f.backup("main", BackupMode::Full).await.unwrap();
    f.conn()
        .execute_batch(
            "PRAGMA ignore_check_constraints = ON;
             INSERT INTO checked VALUES (3, -3);
             UPDATE checked SET n = -5 WHERE id = 2;",
        )
        .unwrap();
    f.backup("main", BackupMode::Incremental).await.unwrap();
    let fresh = f.dir.path().join("fresh.db");
    f.restore_to("main", RestorePoint::Latest, &fresh).await;
    let want = digests(&f.conn(), &["checked"]);
    assert_eq!(digests_of(&fresh, &["checked"]), want);
    let existing = f.dir.path().join("existing.db");
    Connection::open(&existing)
        .unwrap()
        .execute_batch("CREATE TABLE mine(x); INSERT INTO mine VALUES (42);")
        .unwrap();
    f.restore_to("main", RestorePoint::Latest, &existing).await;
    assert_eq!(digests_of(&existing, &["checked"]), want);
}
