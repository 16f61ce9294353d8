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
