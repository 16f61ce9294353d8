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

/// An archive of another engine with the types SQLite has no storage class
/// for imports with each value in SQLite's nearest form: booleans and
/// narrower integers as integers, singles as the same reals, everything
/// else as its exact text (in TEXT columns, so that no affinity turns a
/// number-like text into a number).
#[tokio::test(flavor = "multi_thread")]
async fn an_archive_of_other_types_imports_as_integers_reals_and_exact_text() {
    use LogicalType::*;
    use arrow_array::builder::{Int32Builder, ListBuilder};
    use arrow_array::{
        ArrayRef, BooleanArray, Decimal256Array, FixedSizeBinaryArray, Float32Array, Int16Array,
        Int32Array, Int64Array, RecordBatch, StringArray, StructArray, Time64MicrosecondArray,
        TimestampMicrosecondArray,
    };
    use coffer::datafile::{TableWriter, WriteOptions, arrow_field, arrow_schema, interval_fields};
    use coffer::engine::DataBatch;
    use coffer::manifest::{
        ArchiveKind, Column, DataFormat, FORMAT_NAME, FORMAT_VERSION, Source, Table, TableKind,
        Tool,
    };

    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("export");
    let store = Store::create(location.to_str().unwrap(), &StoreOptions::default()).unwrap();
    let types = [
        ("b", Bool),
        ("s", Int16),
        ("i", Int32),
        ("f", Float32),
        ("t", Time),
        ("tz", TimestampTz),
        ("n", DecimalText),
        (
            "w",
            Decimal {
                precision: 60,
                scale: 2,
            },
        ),
        ("u", Uuid),
        ("j", Json),
        ("iv", Interval),
        ("l", List(Box::new(Int32))),
    ];
    let mut table = Table {
        name: "other".into(),
        kind: TableKind::Table,
        columns: types
            .iter()
            .map(|(n, t)| Column {
                name: n.to_string(),
                logical_type: t.clone(),
                declared_type: String::new(),
                nullable: true,
                text_format: None,
            })
            .collect(),
        primary_key: vec![],
        hidden_key: None,
        rows: 0,
        parts: vec![],
    };
    let wide = arrow_buffer::i256::from_string(&format!("-{}", "9".repeat(60))).unwrap();
    let mut list =
        ListBuilder::new(Int32Builder::new()).with_field(Arc::new(arrow_field("item", &Int32)));
    list.values().append_value(1);
    list.values().append_null();
    list.append(true);
    list.append_null();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(BooleanArray::from(vec![Some(true), None])),
        Arc::new(Int16Array::from(vec![Some(i16::MIN), None])),
        Arc::new(Int32Array::from(vec![Some(i32::MAX), None])),
        Arc::new(Float32Array::from(vec![Some(0.1f32), None])),
        Arc::new(Time64MicrosecondArray::from(vec![
            Some(86_400_000_000),
            None,
        ])),
        Arc::new(TimestampMicrosecondArray::from(vec![Some(1), None]).with_timezone("UTC")),
        Arc::new(StringArray::from(vec![Some("-0.000100"), None])),
        Arc::new(
            Decimal256Array::from(vec![Some(wide), None])
                .with_precision_and_scale(60, 2)
                .unwrap(),
        ),
        Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                [Some([0xabu8; 16]), None].into_iter(),
                16,
            )
            .unwrap(),
        ),
        Arc::new(StringArray::from(vec![Some("3.0e10"), None])),
        Arc::new(
            StructArray::try_new(
                interval_fields(),
                vec![
                    Arc::new(Int32Array::from(vec![14, 0])),
                    Arc::new(Int32Array::from(vec![-3, 0])),
                    Arc::new(Int64Array::from(vec![1, 0])),
                ],
                Some(vec![true, false].into()),
            )
            .unwrap(),
        ),
        Arc::new(list.finish()),
    ];
    let batch = RecordBatch::try_new(arrow_schema(&table), columns).unwrap();
    let handle = tokio::runtime::Handle::current();
    let (s, t) = (store.clone(), table.clone());
    let parts = tokio::task::spawn_blocking(move || {
        let mut w = TableWriter::new(s, handle, &t, WriteOptions::default());
        w.write(DataBatch {
            columns: batch,
            misfits: vec![],
        })?;
        w.finish_table()
    })
    .await
    .unwrap()
    .unwrap();
    table.rows = 2;
    table.parts = parts;
    let mut manifest = Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        tool: Tool {
            name: "coffer".into(),
            version: "test".into(),
        },
        kind: ArchiveKind::Export,
        data_format: DataFormat::Parquet,
        created_at: "2026-12-01T00:00:00Z".into(),
        backup_point: "2026-12-01T00:00:00Z".into(),
        parent: None,
        source: Source {
            engine: "postgres".into(),
            engine_version: "17".into(),
            database: "shop".into(),
            position: None,
        },
        settings: Default::default(),
        objects: vec![],
        tables: vec![table],
        checksum: None,
    };
    coffer::archive::commit(&store, &mut manifest)
        .await
        .unwrap();

    let target = dir.path().join("target.db");
    let engine: Arc<dyn Engine> = Arc::new(SqliteEngine);
    import(
        engine,
        &store,
        &coffer_sqlite::address(&target).unwrap(),
        ImportOptions::default(),
        Arc::new(Silent),
    )
    .await
    .unwrap();
    use rusqlite::types::Value::{Integer, Null, Real, Text};
    let got = rows(
        &target,
        "SELECT b, s, i, f, t, tz, n, w, u, j, iv, l FROM other ORDER BY rowid",
    );
    assert_eq!(
        got,
        vec![
            vec![
                Integer(1),
                Integer(i64::from(i16::MIN)),
                Integer(i64::from(i32::MAX)),
                Real(f64::from(0.1f32)),
                Text("24:00:00".into()),
                Text("1970-01-01 00:00:00.000001+00:00".into()),
                Text("-0.000100".into()),
                Text(format!("-{}.99", "9".repeat(58))),
                Text("abababab-abab-abab-abab-abababababab".into()),
                Text("3.0e10".into()),
                Text("P1Y2M-3DT0.000001S".into()),
                Text("{1,NULL}".into()),
            ],
            vec![Null; 12],
        ]
    );
}
