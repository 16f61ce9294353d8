use std::sync::Arc;

use coffer::ops::backup::{BackupOptions, backup};
use coffer::ops::restore::{RestoreOptions, restore};
use coffer::progress::Silent;
use coffer::store::{Store, StoreOptions};
use coffer_sqlite::SqliteEngine;

#[tokio::test(flavor = "multi_thread")]
async fn smoke_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, x REAL, b BLOB, u);
         INSERT INTO t VALUES(1,'a',1.5,x'00',1),(2,'abc',2.5,NULL,'t'),(3,5,'z',x'',2.5);
         INSERT INTO t VALUES(9223372036854775807, CAST(x'ff00fe' AS TEXT), 9e999, 'blobtext', x'01');
         CREATE INDEX ti ON t(name);
         CREATE TABLE h(a, b);
         INSERT INTO h VALUES(1,2),(3,'x');
         DELETE FROM h WHERE a = 1;",
    )
    .unwrap();
    drop(c);
    let dest = Store::create(
        dir.path().join("bk").to_str().unwrap(),
        &StoreOptions::default(),
    )
    .unwrap();
    let engine = Arc::new(SqliteEngine);
    let r = backup(
        engine.clone(),
        &coffer_sqlite::address(&db).unwrap(),
        &dest,
        BackupOptions::default(),
        Arc::new(Silent),
    )
    .await
    .unwrap();
    assert_eq!(r.manifest.total_rows(), 5);
    let out = dir.path().join("b.db");
    restore(
        engine,
        &dest,
        &coffer_sqlite::address(&out).unwrap(),
        RestoreOptions::default(),
        Arc::new(Silent),
    )
    .await
    .unwrap();
    let q = "SELECT rowid, quote(id), quote(name), quote(x), quote(b), quote(u), typeof(name) FROM t ORDER BY rowid";
    let dump = |p: &std::path::Path| -> Vec<String> {
        let c = rusqlite::Connection::open(p).unwrap();
        let mut s = c.prepare(q).unwrap();
        let mut v: Vec<String> = s
            .query_map([], |r| {
                Ok((0..7)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .map(|x| x.unwrap())
            .collect();
        let mut s = c
            .prepare("SELECT rowid, quote(a), quote(b) FROM h")
            .unwrap();
        v.extend(
            s.query_map([], |r| {
                Ok(format!(
                    "{:?}",
                    (
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?
                    )
                ))
            })
            .unwrap()
            .map(|x| x.unwrap()),
        );
        v
    };
    assert_eq!(dump(&db), dump(&out));
    println!("{:#?}", dump(&out));
}

/// A snapshot's moment is when its read transaction began, not when it was
/// asked for later: a backup records it as its backup point.
#[test]
fn the_snapshot_point_is_taken_when_reading_begins() {
    use coffer::engine::Engine;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let before = jiff::Timestamp::now();
    let snapshot = SqliteEngine.snapshot(db.to_str().unwrap()).unwrap();
    let after = jiff::Timestamp::now();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let point = snapshot.point();
    assert!(before <= point.time && point.time <= after, "{point:?}");
    assert_eq!(point.position, None);
}

/// An archive's value of another engine that no SQLite column can take
/// (PostgreSQL's numeric NaN) stops a restore with one sentence naming the
/// table and row; nothing is guessed.
#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_value_is_refused_by_name_not_guessed() {
    use coffer::engine::{DataBatch, Engine, Misfit, PostgresValue};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, x REAL); INSERT INTO t VALUES (1, 1.5);",
    )
    .unwrap();
    drop(c);
    let dest = Store::create(
        dir.path().join("bk").to_str().unwrap(),
        &StoreOptions::default(),
    )
    .unwrap();
    let engine = Arc::new(SqliteEngine);
    let r = backup(
        engine.clone(),
        &coffer_sqlite::address(&db).unwrap(),
        &dest,
        BackupOptions::default(),
        Arc::new(Silent),
    )
    .await
    .unwrap();
    let manifest = r.manifest;
    let table = manifest.table("t").unwrap().clone();
    let out = dir.path().join("b.db");
    let mut restorer = engine
        .restorer(out.to_str().unwrap(), false, Default::default())
        .unwrap();
    restorer.begin(&manifest, &[&table]).unwrap();
    let columns = arrow_array::RecordBatch::try_new(
        coffer::datafile::arrow_schema(&table),
        vec![
            Arc::new(arrow_array::Int64Array::from(vec![1, 2])),
            Arc::new(arrow_array::Float64Array::from(vec![None, Some(2.5)])),
        ],
    )
    .unwrap();
    let batch = DataBatch {
        columns,
        misfits: vec![Misfit {
            row: 0,
            column: 1,
            value: PostgresValue::NaN.into(),
        }],
    };
    let err = restorer.load(&table, &batch).unwrap_err();
    assert!(
        err.message()
            .contains("could not load rows into t: row 1 holds a PostgreSQL value that no SQLite column can take (NaN)"),
        "{err}"
    );
    drop(restorer);
    assert!(!out.exists(), "nothing at the target");
}
