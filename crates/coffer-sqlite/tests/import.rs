//! The library's export and import with the SQLite engine: portable types
//! come back as the source stored them, and an archive from another engine
//! is imported through the neutral schema.

use std::sync::Arc;

use coffer::engine::{Engine, ImportMode};
use coffer::manifest::{LogicalType, MANIFEST, Manifest};
use coffer::ops::export::{ExportOptions, export};
use coffer::ops::import::{ImportOptions, import};
use coffer::progress::Silent;
use coffer::store::{Store, StoreOptions};
use coffer_sqlite::SqliteEngine;
use rusqlite::Connection;

type Row = Vec<rusqlite::types::Value>;

fn rows(db: &std::path::Path, sql: &str) -> Vec<Row> {
    let c = Connection::open(db).unwrap();
    let mut stmt = c.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_from_another_engine_is_imported_through_the_neutral_schema() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE sales(id INTEGER PRIMARY KEY, day DATE NOT NULL, price DECIMAL(8,2), note TEXT);
             INSERT INTO sales VALUES (1, '2024-01-02', 12.5, 'a'), (2, '2024-02-29', 3, NULL),
                                      (3, '1999-12-31', NULL, '');
             CREATE TABLE log(msg TEXT);
             INSERT INTO log VALUES ('x'), ('y');",
        )
        .unwrap();
    let engine: Arc<dyn Engine> = Arc::new(SqliteEngine);
    let location = dir.path().join("export");
    let store = Store::create(location.to_str().unwrap(), &StoreOptions::default()).unwrap();
    let report = export(
        engine.clone(),
        &coffer_sqlite::address(&db).unwrap(),
        &store,
        ExportOptions::default(),
        Arc::new(Silent),
    )
    .await
    .unwrap();
    let sales = report.manifest.table("sales").unwrap();
    assert_eq!(sales.columns[1].logical_type, LogicalType::Date);
    assert_eq!(
        sales.columns[2].logical_type,
        LogicalType::Decimal {
            precision: 8,
            scale: 2
        }
    );

    // Pretend another engine wrote it: no native DDL can be used.
    let path = location.join(MANIFEST);
    let mut m = Manifest::from_bytes(&std::fs::read(&path).unwrap(), "test").unwrap();
    m.source.engine = "postgres".to_string();
    m.seal();
    std::fs::write(&path, m.to_bytes()).unwrap();

    let target = dir.path().join("target.db");
    let report = import(
        engine.clone(),
        &store,
        &coffer_sqlite::address(&target).unwrap(),
        ImportOptions {
            mode: ImportMode::Create,
            ..Default::default()
        },
        Arc::new(Silent),
    )
    .await
    .unwrap();
    assert_eq!(report.rows, 5);
    let ddl = rows(
        &target,
        "SELECT sql FROM sqlite_schema WHERE name = 'sales'",
    );
    let rusqlite::types::Value::Text(ddl) = &ddl[0][0] else {
        panic!("no DDL")
    };
    assert!(
        ddl.contains("\"id\" INTEGER PRIMARY KEY")
            && ddl.contains("\"day\" DATE NOT NULL")
            && ddl.contains("\"price\" DECIMAL(8,2)"),
        "{ddl}"
    );
    let q = "SELECT id, day, typeof(day), price, typeof(price), note, typeof(note) FROM sales ORDER BY id";
    assert_eq!(rows(&db, q), rows(&target, q));
    let q = "SELECT rowid, msg FROM log ORDER BY rowid";
    assert_eq!(rows(&db, q), rows(&target, q));

    // The same import again: the table exists, nothing is written.
    let err = import(
        engine,
        &store,
        &coffer_sqlite::address(&target).unwrap(),
        ImportOptions::default(),
        Arc::new(Silent),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), coffer::ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("'sales'"), "{err}");
}
