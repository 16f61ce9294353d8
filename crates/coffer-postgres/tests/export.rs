//! `export` of a real PostgreSQL database: every column in its natural
//! logical type, awkward values as misfits, types without a natural mapping
//! as PostgreSQL's own text form, and one consistent snapshot.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Time64MicrosecondType, TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use coffer::datafile::read_part;
use coffer::engine::{DataBatch, PostgresValue, RawValue};
use coffer::manifest::{LogicalType, Manifest, Table};
use coffer::ops::export::{ExportOptions, export};
use coffer::progress::Silent;
use coffer::store::{Store, StoreOptions};
use coffer_testkit::pg;

/// Every row of `table` in the export at `dir`, with its misfits.
async fn read_table(store: &Store, m: &Manifest, name: &str) -> (Table, Vec<DataBatch>) {
    let table = m.table(name).unwrap().clone();
    let mut out = Vec::new();
    for part in &table.parts {
        let data = store.get_opt(&part.file.path).await.unwrap().unwrap();
        let misfits = match &part.misfits {
            Some(f) => Some(store.get_opt(&f.path).await.unwrap().unwrap()),
            None => None,
        };
        read_part(
            &table,
            data,
            misfits.map(|b| (b, "misfits")),
            &part.file.path,
            &mut |b| {
                out.push(b);
                Ok(())
            },
        )
        .unwrap();
    }
    (table, out)
}

fn col<'a>(b: &'a RecordBatch, t: &Table, name: &str) -> &'a dyn Array {
    let i = t.columns.iter().position(|c| c.name == name).unwrap();
    b.column(i).as_ref()
}

/// The ops are async; the test cluster's client is blocking and may not run
/// inside a runtime, so each test drives its own.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

#[test]
fn an_export_has_natural_types_and_exact_awkward_values() {
    let c = pg::cluster();
    let db = c.create_database("export");
    c.execute(
        &db,
        r#"
        CREATE TYPE mood AS ENUM ('sad', 'ok');
        CREATE TABLE t (
            id int4 PRIMARY KEY,
            b bool, s int2, big int8, r float4, d float8,
            n numeric(12,3), nx numeric, txt text, ch char(4), bin bytea,
            day date, tod time, ts timestamp, tstz timestamptz, iv interval,
            u uuid, j jsonb, ints int4[], m mood, net inet
        );
        INSERT INTO t VALUES
          (1, true, -32768, 9223372036854775807, 'NaN', '-0',
           -123456789.125, 1e-40, 'naïve ✓', 'ab', '\x00ff',
           '2024-02-29', '24:00:00', '1999-12-31 23:59:59.999999', '2000-01-01 00:00:00+00',
           '-1 mon 2 days -00:00:00.000001', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
           '{"b": 1, "a": [true, null]}', '{1,NULL,3}', 'ok', '::1/128'),
          (2, NULL, NULL, NULL, 'Infinity', '-Infinity',
           'NaN', 'Infinity', '', NULL, '\x',
           'infinity', NULL, '-infinity', 'infinity', NULL,
           NULL, 'null', '[0:1]={7,8}', NULL, NULL),
          (3, false, 0, -1, 1.5, 1e308,
           0, '-0.000', NULL, '', NULL,
           '0044-03-15 BC', '00:00:00', '4713-01-01 00:00:00 BC', NULL, '0',
           NULL, '[]', '{{1,2},{3,4}}', 'sad', '10.0.0.0/8');
        CREATE SCHEMA other;
        CREATE TABLE other.x (id int8);
        INSERT INTO other.x VALUES (42);
        "#,
    );
    let engine = coffer_postgres::engine();
    let address = engine.resolve(&c.url(&db)).unwrap();
    assert!(!address.display().contains(c.password()) || c.password().is_empty());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
    let report = block_on(export(
        engine.clone(),
        &address,
        &store,
        ExportOptions::default(),
        Arc::new(Silent),
    ))
    .unwrap();
    let m = report.manifest;
    assert_eq!(m.source.engine, "postgres");
    assert!(m.source.position.is_some(), "the WAL position is recorded");
    assert_eq!(m.table("other.x").unwrap().rows, 1);

    let (t, batches) = block_on(read_table(&store, &m, "t"));
    let types: Vec<(&str, &LogicalType)> = t
        .columns
        .iter()
        .map(|c| (c.name.as_str(), &c.logical_type))
        .collect();
    use LogicalType::*;
    assert_eq!(
        types,
        vec![
            ("id", &Int32),
            ("b", &Bool),
            ("s", &Int16),
            ("big", &Int64),
            ("r", &Float32),
            ("d", &Float64),
            (
                "n",
                &Decimal {
                    precision: 12,
                    scale: 3
                }
            ),
            ("nx", &DecimalText),
            ("txt", &Utf8),
            ("ch", &Utf8),
            ("bin", &Binary),
            ("day", &Date),
            ("tod", &Time),
            ("ts", &Timestamp),
            ("tstz", &TimestampTz),
            ("iv", &Interval),
            ("u", &Uuid),
            ("j", &Json),
            ("ints", &List(Box::new(Int32))),
            ("m", &Utf8),
            ("net", &Utf8),
        ]
    );
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    let rows = &b.columns;
    assert_eq!(rows.num_rows(), 3);
    // Row 1.
    assert!(col(rows, &t, "b").as_boolean().value(0));
    assert_eq!(
        col(rows, &t, "s").as_primitive::<Int16Type>().value(0),
        -32768
    );
    assert_eq!(
        col(rows, &t, "big").as_primitive::<Int64Type>().value(0),
        i64::MAX
    );
    assert!(
        col(rows, &t, "r")
            .as_primitive::<Float32Type>()
            .value(0)
            .is_nan()
    );
    let neg_zero = col(rows, &t, "d").as_primitive::<Float64Type>().value(0);
    assert_eq!(neg_zero.to_bits(), (-0.0f64).to_bits());
    assert_eq!(
        col(rows, &t, "n").as_primitive::<Decimal128Type>().value(0),
        -123456789125
    );
    assert_eq!(
        col(rows, &t, "nx").as_string::<i32>().value(0),
        "0.0000000000000000000000000000000000000001"
    );
    assert_eq!(col(rows, &t, "txt").as_string::<i32>().value(0), "naïve ✓");
    assert_eq!(col(rows, &t, "ch").as_string::<i32>().value(0), "ab  ");
    assert_eq!(
        col(rows, &t, "bin").as_binary::<i32>().value(0),
        &[0u8, 0xff]
    );
    assert_eq!(
        col(rows, &t, "day").as_primitive::<Date32Type>().value(0),
        19782
    );
    assert_eq!(
        col(rows, &t, "tod")
            .as_primitive::<Time64MicrosecondType>()
            .value(0),
        86_400_000_000
    );
    assert_eq!(
        col(rows, &t, "ts")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        946_684_799_999_999
    );
    assert_eq!(
        col(rows, &t, "tstz")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        946_684_800_000_000
    );
    let iv = col(rows, &t, "iv").as_struct();
    assert_eq!(iv.column(0).as_primitive::<Int32Type>().value(0), -1);
    assert_eq!(iv.column(1).as_primitive::<Int32Type>().value(0), 2);
    assert_eq!(iv.column(2).as_primitive::<Int64Type>().value(0), -1);
    assert_eq!(
        col(rows, &t, "u").as_fixed_size_binary().value(0)[..2],
        [0xa0, 0xee]
    );
    assert_eq!(
        col(rows, &t, "j").as_string::<i32>().value(0),
        r#"{"a": [true, null], "b": 1}"#
    );
    let ints = col(rows, &t, "ints").as_list::<i32>().value(0);
    let ints = ints.as_primitive::<Int32Type>();
    assert_eq!(ints.len(), 3);
    assert!(ints.is_null(1));
    assert_eq!((ints.value(0), ints.value(2)), (1, 3));
    assert_eq!(col(rows, &t, "m").as_string::<i32>().value(0), "ok");
    assert_eq!(col(rows, &t, "net").as_string::<i32>().value(0), "::1/128");
    // Row 2: NULLs, empty values and the awkward ones.
    assert!(col(rows, &t, "b").is_null(1));
    assert!(col(rows, &t, "ch").is_null(1));
    assert_eq!(col(rows, &t, "txt").as_string::<i32>().value(1), "");
    assert!(col(rows, &t, "bin").is_valid(1));
    assert_eq!(col(rows, &t, "bin").as_binary::<i32>().value(1), b"");
    assert_eq!(col(rows, &t, "j").as_string::<i32>().value(1), "null");
    // Row 3: BC dates, zero values.
    assert_eq!(
        col(rows, &t, "day").as_primitive::<Date32Type>().value(2),
        -735_160
    );
    assert_eq!(col(rows, &t, "ch").as_string::<i32>().value(2), "    ");

    let misfit = |row: u64, name: &str| {
        let column = t.columns.iter().position(|c| c.name == name).unwrap() as u32;
        b.misfits
            .iter()
            .find(|m| m.row == row && m.column == column)
            .map(|m| m.value.clone())
    };
    use PostgresValue as P;
    assert_eq!(misfit(1, "n"), Some(RawValue::Postgres(P::NaN)));
    assert_eq!(misfit(1, "nx"), Some(RawValue::Postgres(P::Infinity)));
    assert_eq!(misfit(1, "day"), Some(RawValue::Postgres(P::Infinity)));
    assert_eq!(misfit(1, "ts"), Some(RawValue::Postgres(P::NegInfinity)));
    assert_eq!(misfit(1, "tstz"), Some(RawValue::Postgres(P::Infinity)));
    assert_eq!(
        misfit(1, "ints"),
        Some(RawValue::Postgres(P::Text(b"[0:1]={7,8}".to_vec())))
    );
    assert_eq!(
        misfit(2, "ints"),
        Some(RawValue::Postgres(P::Text(b"{{1,2},{3,4}}".to_vec())))
    );
    for (row, name) in [(1, "n"), (1, "day"), (1, "ints"), (2, "ints")] {
        let i = t.columns.iter().position(|c| c.name == name).unwrap();
        assert!(
            rows.column(i).is_null(row),
            "{name} holds NULL where a misfit is"
        );
    }
    assert_eq!(b.misfits.len(), 7, "{:?}", b.misfits);
    // Row 1's float infinities fit their columns.
    assert_eq!(
        col(rows, &t, "r").as_primitive::<Float32Type>().value(1),
        f32::INFINITY
    );
    assert_eq!(
        col(rows, &t, "d").as_primitive::<Float64Type>().value(1),
        f64::NEG_INFINITY
    );
}

#[test]
fn a_backup_restores_through_the_engine_interface() {
    let c = pg::cluster();
    let db = c.create_database("engine_backup");
    c.execute(
        &db,
        "CREATE TABLE t (id int8 PRIMARY KEY, v numeric, at timestamptz);
         INSERT INTO t SELECT g, g / 7.0, 'epoch'::timestamptz + g * interval '1 day'
           FROM generate_series(1, 5000) g;
         INSERT INTO t VALUES (0, 'NaN', 'infinity');",
    );
    let engine = coffer_postgres::engine();
    assert!(engine.restores());
    let address = engine.resolve(&c.url(&db)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("b");
    let store = Store::create(dest.to_str().unwrap(), &StoreOptions::default()).unwrap();
    let report = block_on(coffer::ops::backup::backup(
        engine.clone(),
        &address,
        &store,
        Default::default(),
        Arc::new(Silent),
    ))
    .unwrap();
    assert_eq!(report.manifest.tables[0].rows, 5001);
    let target = engine.resolve(&c.url(&format!("{db}_copy"))).unwrap();
    let restored = block_on(coffer::ops::restore::restore(
        engine,
        &store,
        &target,
        Default::default(),
        Arc::new(Silent),
    ))
    .unwrap();
    assert_eq!(restored.rows, 5001);
    let sum = |db: &str| -> String {
        c.client(db)
            .unwrap()
            .query_one(
                "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM t",
                &[],
            )
            .unwrap()
            .get(0)
    };
    assert_eq!(sum(&db), sum(&format!("{db}_copy")));
}
