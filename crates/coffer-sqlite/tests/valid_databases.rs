//! Valid databases that SQLite accepts back up and restore exactly: rows
//! that break a CHECK constraint, application collations, columns that
//! shadow the rowid, virtual tables of modules coffer does not have.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use coffer::ops::backup::{BackupOptions, BackupReport, backup};
use coffer::ops::restore::{RestoreOptions, restore};
use coffer::progress::Silent;
use coffer::store::{Store, StoreOptions};
use coffer_sqlite::SqliteEngine;

fn db_with(dir: &Path, sql: &str) -> PathBuf {
    let db = dir.join("src.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(sql).unwrap();
    db
}

fn store(dir: &Path, name: &str) -> Store {
    Store::create(dir.join(name).to_str().unwrap(), &StoreOptions::default()).unwrap()
}

async fn back_up(
    db: &Path,
    dest: &Store,
    tables: Option<Vec<String>>,
) -> coffer::Result<BackupReport> {
    let options = BackupOptions {
        tables,
        ..BackupOptions::default()
    };
    backup(
        Arc::new(SqliteEngine),
        &coffer_sqlite::address(db).unwrap(),
        dest,
        options,
        Arc::new(Silent),
    )
    .await
}

async fn restore_to(
    src: &Store,
    out: &Path,
) -> coffer::Result<coffer::ops::restore::RestoreReport> {
    restore(
        Arc::new(SqliteEngine),
        src,
        &coffer_sqlite::address(out).unwrap(),
        RestoreOptions::default(),
        Arc::new(Silent),
    )
    .await
}

fn dump(db: &Path, sql: &str) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut s = c.prepare(sql).unwrap();
    let n = s.column_count();
    s.query_map([], |r| {
        Ok((0..n)
            .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
            .collect::<Vec<_>>()
            .join("|"))
    })
    .unwrap()
    .map(|x| x.unwrap())
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_that_break_a_check_constraint_restore_as_the_source_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_with(
        dir.path(),
        "CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER CHECK (n > 0), s TEXT, CHECK (length(s) < 3));
         CREATE INDEX t_s ON t(s);
         INSERT INTO t VALUES(1, 5, 'ok');
         PRAGMA ignore_check_constraints = ON;
         INSERT INTO t VALUES(2, -1, 'too long');
         PRAGMA ignore_check_constraints = OFF;",
    );
    let dest = store(dir.path(), "bk");
    back_up(&db, &dest, None).await.unwrap();
    let out = dir.path().join("out.db");
    restore_to(&dest, &out).await.unwrap();
    let q = "SELECT id, n, s FROM t ORDER BY id";
    assert_eq!(dump(&db, q), dump(&out, q));
    // The constraint is still there: a new bad row is refused.
    let c = rusqlite::Connection::open(&out).unwrap();
    assert!(c.execute("INSERT INTO t VALUES(3, -2, 'x')", []).is_err());
    assert_eq!(
        dump(&out, "SELECT sql FROM sqlite_schema WHERE name = 't'"),
        dump(&db, "SELECT sql FROM sqlite_schema WHERE name = 't'")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_whose_columns_shadow_every_rowid_alias_is_refused_not_renumbered() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_with(
        dir.path(),
        "CREATE TABLE t(rowid TEXT, oid TEXT, _rowid_ TEXT);
         INSERT INTO t VALUES('a','b','c'),('d','e','f'),('g','h','i');
         DELETE FROM t WHERE rowid = 'a';
         CREATE TABLE other(x);
         INSERT INTO other VALUES(1);",
    );
    let dest = store(dir.path(), "bk");
    let e = back_up(&db, &dest, None).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("'t'"), "{msg}");
    assert!(msg.contains("rowid"), "{msg}");
    // The other tables can still be backed up on their own.
    let dest = store(dir.path(), "bk2");
    back_up(&db, &dest, Some(vec!["other".into()]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shadowed_rowid_is_kept_through_an_unshadowed_alias() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_with(
        dir.path(),
        "CREATE TABLE t(rowid TEXT, _rowid_ TEXT, v);
         INSERT INTO t VALUES('a','b',1),('d','e',2),('g','h',3);
         DELETE FROM t WHERE v = 1;",
    );
    let dest = store(dir.path(), "bk");
    back_up(&db, &dest, None).await.unwrap();
    let out = dir.path().join("out.db");
    restore_to(&dest, &out).await.unwrap();
    let q = "SELECT oid, rowid, _rowid_, v FROM t ORDER BY oid";
    assert_eq!(dump(&db, q), dump(&out, q));
}

/// A database with a virtual table of a module SQLite does not have, as a
/// SpatiaLite database has its `VirtualSpatialIndex`.
fn with_unknown_module(dir: &Path) -> PathBuf {
    let db = db_with(
        dir,
        "CREATE TABLE spatial_ref_sys(srid INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO spatial_ref_sys VALUES(4326, 'WGS 84'), (3857, 'Pseudo-Mercator');
         CREATE TABLE places(id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO places VALUES(1, 'here');",
    );
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA writable_schema = ON;
         INSERT INTO sqlite_schema(type, name, tbl_name, rootpage, sql)
           VALUES('table', 'SpatialIndex', 'SpatialIndex', 0,
                  'CREATE VIRTUAL TABLE SpatialIndex USING VirtualSpatialIndex()');
         PRAGMA writable_schema = OFF;",
    )
    .unwrap();
    db
}

#[tokio::test(flavor = "multi_thread")]
async fn a_virtual_table_of_an_unknown_module_does_not_block_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let db = with_unknown_module(dir.path());
    // One ordinary table.
    let dest = store(dir.path(), "one");
    let r = back_up(&db, &dest, Some(vec!["spatial_ref_sys".into()]))
        .await
        .unwrap();
    assert_eq!(r.manifest.total_rows(), 2);
    // The whole database: its definition is kept, its rows are not read.
    let dest = store(dir.path(), "all");
    let r = back_up(&db, &dest, None).await.unwrap();
    assert!(r.manifest.objects.iter().any(|o| o.name == "SpatialIndex"));
    assert!(r.manifest.table("SpatialIndex").is_none());
    assert_eq!(r.manifest.total_rows(), 3);
    // The restore recreates what it can and keeps the definition.
    let out = dir.path().join("out.db");
    restore_to(&dest, &out).await.unwrap();
    let q = "SELECT srid, name FROM spatial_ref_sys ORDER BY srid";
    assert_eq!(dump(&db, q), dump(&out, q));
    assert_eq!(
        dump(
            &out,
            "SELECT sql FROM sqlite_schema WHERE name = 'SpatialIndex'"
        ),
        dump(
            &db,
            "SELECT sql FROM sqlite_schema WHERE name = 'SpatialIndex'"
        )
    );
    // An export of the whole database too.
    let dest = store(dir.path(), "export");
    let r = coffer::ops::export::export(
        Arc::new(SqliteEngine),
        &coffer_sqlite::address(&db).unwrap(),
        &dest,
        coffer::ops::export::ExportOptions::default(),
        Arc::new(Silent),
    )
    .await
    .unwrap();
    assert_eq!(r.manifest.total_rows(), 3);
    // Selecting it by name says why it cannot be read.
    let dest = store(dir.path(), "vt");
    let e = back_up(&db, &dest, Some(vec!["SpatialIndex".into()]))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("VirtualSpatialIndex") || msg.contains("virtualspatialindex"),
        "{msg}"
    );
}

/// Register the collation `rev` (text compared backwards), as an
/// application would, on `c`.
fn register_rev(c: &rusqlite::Connection) {
    use std::ffi::{c_int, c_void};
    unsafe extern "C" fn rev(
        _: *mut c_void,
        n1: c_int,
        p1: *const c_void,
        n2: c_int,
        p2: *const c_void,
    ) -> c_int {
        // SAFETY: SQLite passes two buffers of the given lengths.
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts(p1 as *const u8, n1 as usize),
                std::slice::from_raw_parts(p2 as *const u8, n2 as usize),
            )
        };
        let a: Vec<u8> = a.iter().rev().copied().collect();
        let b: Vec<u8> = b.iter().rev().copied().collect();
        a.cmp(&b) as c_int
    }
    // SAFETY: a live connection; the callback is a plain function.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_create_collation_v2(
            c.handle(),
            c"rev".as_ptr(),
            rusqlite::ffi::SQLITE_UTF8,
            std::ptr::null_mut(),
            Some(rev),
            None,
        )
    };
    assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
}

fn with_app_collation(dir: &Path) -> PathBuf {
    let db = dir.join("src.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    register_rev(&c);
    c.execute_batch(
        "CREATE TABLE words(id INTEGER PRIMARY KEY AUTOINCREMENT, w TEXT COLLATE rev);
         CREATE INDEX words_w ON words(w);
         CREATE TRIGGER words_t AFTER DELETE ON words BEGIN SELECT 1; END;
         CREATE TABLE plain(x TEXT, y);
         CREATE INDEX plain_x ON plain(x COLLATE rev);
         CREATE INDEX plain_y ON plain(y);
         CREATE VIEW sorted AS SELECT x FROM plain ORDER BY x COLLATE rev;
         INSERT INTO words(w) VALUES('ab'), ('ba');
         INSERT INTO plain VALUES('ab', 1), ('ba', 2), (NULL, x'00');",
    )
    .unwrap();
    db
}

#[tokio::test(flavor = "multi_thread")]
async fn an_application_collation_is_named_at_backup_and_restore_can_skip_what_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = with_app_collation(dir.path());
    let dest = store(dir.path(), "bk");
    let r = back_up(&db, &dest, None).await.unwrap();
    assert_eq!(
        r.manifest.settings.get("collations"),
        Some(&serde_json::json!(["rev"]))
    );
    // Without the option: refused up front, naming the collation and what
    // needs it, nothing left behind.
    let out = dir.path().join("out.db");
    let e = restore_to(&dest, &out).await.unwrap_err();
    let msg = e.to_string();
    for part in [
        "'rev'",
        "table 'words'",
        "index 'plain_x'",
        "--skip-missing-collations",
    ] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "only src.db and bk"
    );
    // With it: everything else, and the list of what was left out.
    let report = restore(
        Arc::new(SqliteEngine),
        &dest,
        &coffer_sqlite::address(&out).unwrap(),
        RestoreOptions {
            skip_missing_collations: true,
            ..RestoreOptions::default()
        },
        Arc::new(Silent),
    )
    .await
    .unwrap();
    let left: Vec<(String, String)> = report
        .skipped
        .iter()
        .map(|s| (s.kind.clone(), s.name.clone()))
        .collect();
    let want: Vec<(String, String)> = [
        ("table", "words"),
        ("index", "words_w"),
        ("index", "plain_x"),
        ("trigger", "words_t"),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    let mut sorted = left.clone();
    sorted.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(sorted, want_sorted);
    assert_eq!(report.tables, ["sqlite_sequence", "plain"]);
    // plain's 3 and sqlite_sequence's 1 (read, then kept only for tables
    // restored); not words' 2.
    assert_eq!(report.rows, 4);
    let q = "SELECT rowid, quote(x), quote(y) FROM plain ORDER BY rowid";
    assert_eq!(dump(&db, q), dump(&out, q));
    let c = rusqlite::Connection::open(&out).unwrap();
    let mut stmt = c
        .prepare("SELECT type || ' ' || name FROM sqlite_schema ORDER BY name")
        .unwrap();
    let objects: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|x| x.unwrap())
        .collect();
    // No sqlite_sequence: only `words` had AUTOINCREMENT.
    assert_eq!(objects, ["table plain", "index plain_y", "view sorted"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_without_rows_that_is_not_one_virtual_table_is_refused() {
    use coffer::manifest::{MANIFEST, Manifest};
    let dir = tempfile::tempdir().unwrap();
    let db = with_unknown_module(dir.path());
    let dest = store(dir.path(), "all");
    back_up(&db, &dest, None).await.unwrap();
    let path = dir.path().join("all").join(MANIFEST);
    let original = std::fs::read(&path).unwrap();
    for sql in [
        "CREATE TABLE SpatialIndex(x)",
        "CREATE VIRTUAL TABLE SpatialIndex USING VirtualSpatialIndex(); CREATE TABLE evil(x)",
    ] {
        let mut m = Manifest::from_bytes(&original, "test").unwrap();
        let o = m
            .objects
            .iter_mut()
            .find(|o| o.name == "SpatialIndex")
            .unwrap();
        o.sql = sql.to_string();
        m.seal();
        std::fs::write(&path, m.to_bytes()).unwrap();
        let out = dir.path().join("out.db");
        let e = restore_to(&dest, &out).await.unwrap_err();
        assert!(e.to_string().contains("'SpatialIndex'"), "{e}");
        assert!(e.to_string().contains("damaged"), "{e}");
        assert!(!out.exists());
    }
}
