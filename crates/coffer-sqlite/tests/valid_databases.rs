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
        db.to_str().unwrap(),
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
        out.to_str().unwrap(),
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
        db.to_str().unwrap(),
        &dest,
        BackupOptions::default(),
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
