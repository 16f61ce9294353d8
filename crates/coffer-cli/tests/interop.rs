//! Other tools read exports as they are: pyarrow and DuckDB (installed
//! from PyPI by this test when absent) read every export's Parquet and CSV
//! files and find the source's columns, in the manifest's types, with every
//! value as the source holds it (see `interop/check.py`), on a typed
//! database and on a generated one with the traits real databases have.
//!
//! If pyarrow or DuckDB cannot be installed the test fails; set
//! COFFER_SKIP_INTEROP=1 to skip it deliberately (e.g. on a machine without
//! network access).

mod common;
use common::*;

use std::path::Path;
use std::process::Command;

const ROWS: i64 = 20_000;

fn create_typed_db(path: &Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE orders(
             id INTEGER PRIMARY KEY,
             customer TEXT NOT NULL,
             note TEXT,
             amount REAL,
             price DECIMAL(12,2),
             placed DATE,
             shipped_at DATETIME,
             payload BLOB
         );
         CREATE INDEX orders_customer ON orders(customer);
         CREATE TABLE tags(name TEXT, weight REAL);
         INSERT INTO tags VALUES ('a,b', 1.5), ('line\nbreak', NULL), ('quote\"d', -0.25), ('Ünïcødé 🦀', 1e300);",
    )
    .unwrap();
    c.execute_batch("BEGIN").unwrap();
    let mut stmt = c
        .prepare("INSERT INTO orders VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
        .unwrap();
    for i in 0..ROWS {
        let note: Option<String> = match i % 4 {
            0 => None,
            1 => Some(format!("note, \"quoted\" {i}")),
            2 => Some(format!("multi\nline {i}")),
            _ => Some(format!("plain {i}")),
        };
        let amount: Option<f64> = (i % 7 != 0).then(|| i as f64 / 3.0);
        let price: Option<rusqlite::types::Value> = match i % 5 {
            0 => None,
            1 => Some(rusqlite::types::Value::Integer(i)),
            _ => Some(rusqlite::types::Value::Real((i * 100 + 25) as f64 / 100.0)),
        };
        let day = format!("20{:02}-{:02}-{:02}", i % 30, i % 12 + 1, i % 28 + 1);
        let shipped = (i % 3 != 0).then(|| {
            format!(
                "20{:02}-{:02}-{:02} {:02}:{:02}:{:02}",
                i % 30,
                i % 12 + 1,
                i % 28 + 1,
                i % 24,
                i % 60,
                (i * 7) % 60
            )
        });
        let payload: Option<Vec<u8>> = (i % 2 == 0).then(|| i.to_le_bytes().to_vec());
        stmt.execute(rusqlite::params![
            i,
            format!("customer {}", i % 100),
            note,
            amount,
            price,
            day,
            shipped,
            payload
        ])
        .unwrap();
    }
    drop(stmt);
    c.execute_batch("COMMIT").unwrap();
}

/// The reader-side check: pyarrow and DuckDB read every table of an
/// export and compare it with the source value by value (see the script).
const CHECK: &str = include_str!("interop/check.py");

/// Read the export at `export` with pyarrow and DuckDB and compare it with
/// `db`; returns the script's summary.
fn check_with_readers(export: &Path, db: &Path, keep_rowid: bool) -> serde_json::Value {
    let out = Command::new("python3")
        .args([
            "-c",
            CHECK,
            s(export),
            s(db),
            if keep_rowid { "1" } else { "0" },
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyarrow or DuckDB did not read {} as the source holds it:\n{}",
        export.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Rows of the generated `Order Details`: enough for several parts.
const DETAILS: u64 = 20_000;

/// A database with the traits real ones have: integer values in NUMERIC
/// money columns (SQLite stores `18.0` there as the integer 18), a value
/// no column type can show, table names with spaces, dates in mixed text
/// formats beside well-formed ones, NULL beside empty text and empty blobs,
/// text in a BLOB column, tables without an INTEGER PRIMARY KEY (one with
/// a gap in its rowids), empty tables, and views over them.
fn create_shop_db(path: &Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        r#"CREATE TABLE "Order Details"(
               OrderID INTEGER NOT NULL,
               ProductID INTEGER NOT NULL,
               UnitPrice NUMERIC NOT NULL DEFAULT 0,
               Quantity INTEGER NOT NULL DEFAULT 1,
               Discount REAL NOT NULL DEFAULT 0,
               PRIMARY KEY (OrderID, ProductID)
           );
           CREATE TABLE "Customer Accounts"(
               id INTEGER PRIMARY KEY,
               name TEXT NOT NULL,
               email TEXT,
               born DATE,
               joined DATE,
               last_seen DATETIME,
               photo BLOB,
               balance NUMERIC,
               note
           );
           CREATE TABLE prices(sku TEXT, amount DECIMAL(10,2), valid_from DATE);
           CREATE TABLE "empty table"(a INTEGER, "b c" TEXT, d NUMERIC, e BLOB, f DATE);
           CREATE TABLE audit_log(at DATETIME, what TEXT);
           CREATE VIEW "big orders" AS SELECT * FROM "Order Details" WHERE Quantity > 20;
           CREATE VIEW empty_view AS SELECT * FROM "empty table";
           CREATE INDEX details_product ON "Order Details"(ProductID);"#,
    )
    .unwrap();
    c.execute_batch("BEGIN").unwrap();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    {
        let mut ins = c
            .prepare(r#"INSERT INTO "Order Details" VALUES (?1, ?2, ?3, ?4, ?5)"#)
            .unwrap();
        for i in 0..DETAILS {
            // Prices as Northwind has them: whole ones stored as integers.
            let cents = 100 + next(9000);
            let price = if i % 3 == 0 {
                format!("{}.0", cents / 10)
            } else {
                format!("{}.{:02}", cents / 100, cents % 100)
            };
            let discount = [0.0, 0.05, 0.1, 0.15, 0.25][next(5) as usize];
            ins.execute(rusqlite::params![
                10248 + i / 3,
                1 + i % 3 + 3 * next(25),
                price,
                1 + next(60),
                discount
            ])
            .unwrap();
        }
        c.execute_batch(
            r#"UPDATE "Order Details" SET UnitPrice = 'n/a' WHERE rowid = 7;
               UPDATE "Order Details" SET UnitPrice = 9007199254740993 WHERE rowid = 8;
               UPDATE "Order Details" SET UnitPrice = -0.0 WHERE rowid = 9;
               UPDATE "Order Details" SET Discount = 9e999 WHERE rowid = 10;
               UPDATE "Order Details" SET UnitPrice = x'00' WHERE rowid = 19990;
               DELETE FROM "Order Details" WHERE rowid BETWEEN 100 AND 110;"#,
        )
        .unwrap();
    }
    {
        let mut ins = c
            .prepare(
                r#"INSERT INTO "Customer Accounts" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"#,
            )
            .unwrap();
        use rusqlite::types::Value as V;
        for i in 1..=500i64 {
            let (y, m, d) = (
                1950 + next(50) as i64,
                1 + next(12) as i64,
                1 + next(28) as i64,
            );
            let joined = match i % 6 {
                0 => V::Text(format!("{y:04}-{m:02}-{d:02}")),
                1 => V::Text(format!("{d:02}/{m:02}/{y:04}")),
                2 => V::Text(format!("{y:04}-{m:02}-{d:02} 10:{:02}:00", next(60))),
                3 => V::Integer(946_684_800 + 86_400 * i),
                4 => V::Real(2_451_545.0 + i as f64 + 0.5),
                _ => V::Null,
            };
            let email = match i % 5 {
                0 => V::Null,
                1 => V::Text(String::new()),
                _ => V::Text(format!("user{i}@example.com")),
            };
            let photo = match i % 7 {
                0 => V::Null,
                1 => V::Blob(Vec::new()),
                2 => V::Text(format!("not a photo {i}")),
                _ => V::Blob((0..(i % 40) as u8).map(|b| b.wrapping_mul(37)).collect()),
            };
            let balance = match i % 4 {
                0 => V::Integer(i * 10),
                1 => V::Real(i as f64 / 8.0),
                2 => V::Null,
                _ => V::Real(i as f64 + 0.5),
            };
            let note = match i % 5 {
                0 => V::Text(format!("a, \"quoted\"\nnote {i}")),
                1 => V::Integer(i),
                2 => V::Real(i as f64 * 1.25),
                3 => V::Blob(vec![0xff, i as u8]),
                _ => V::Text("NULL".into()),
            };
            ins.execute(rusqlite::params![
                i,
                format!("Customer {i} Ünïcødé"),
                email,
                format!("{y:04}-{m:02}-{d:02}"),
                joined,
                format!(
                    "2024-{m:02}-{d:02} {:02}:{:02}:{:02}",
                    next(24),
                    next(60),
                    next(60)
                ),
                photo,
                balance,
                note
            ])
            .unwrap();
        }
    }
    c.execute_batch(
        "INSERT INTO prices VALUES ('A-1', 12.5, '2024-01-01'), ('B 2', 7, '2024-02-29'),
             ('C,3', NULL, NULL), ('', 0.01, '1999-12-31');",
    )
    .unwrap();
    c.execute_batch("COMMIT").unwrap();
}

#[test]
fn pyarrow_and_duckdb_read_every_export_as_the_source_holds_it() {
    if !coffer_testkit::python::ensure_readers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let typed = dir.path().join("typed.db");
    create_typed_db(&typed);
    let shop = dir.path().join("shop.db");
    create_shop_db(&shop);
    for (db, rows, part_size) in [
        (&typed, ROWS as u64 + 4, "64KiB"),
        (&shop, DETAILS - 11 + 500 + 4, "64KiB"),
    ] {
        for format in ["parquet", "csv"] {
            for keep_rowid in [false, true] {
                let stem = db.file_stem().unwrap().to_str().unwrap();
                let export = dir.path().join(format!("{stem}-{format}-{keep_rowid}"));
                let mut args = vec![
                    "export",
                    s(db),
                    s(&export),
                    "--format",
                    format,
                    "--part-size",
                    part_size,
                ];
                if keep_rowid {
                    args.push("--keep-rowid");
                }
                ok(&args);
                let m: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(export.join("manifest.json")).unwrap())
                        .unwrap();
                let parts = |t: &serde_json::Value| t["parts"].as_array().unwrap().len();
                assert!(
                    m["tables"].as_array().unwrap().iter().any(|t| parts(t) > 1),
                    "no table spans several parts: {m}"
                );
                let summary = check_with_readers(&export, db, keep_rowid);
                eprintln!("{stem} {format} {keep_rowid}: {summary}");
                assert_eq!(summary["rows"], rows, "{summary}");
            }
        }
    }
}
