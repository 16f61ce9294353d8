//! Other tools read exports as they are: pyarrow (installed from PyPI by
//! this test when absent) reads an export's Parquet files, and its CSV
//! files, and finds the same rows and column types as the database holds.
//!
//! If pyarrow cannot be installed the test fails; set COFFER_SKIP_INTEROP=1
//! to skip it deliberately (e.g. on a machine without network access).

mod common;
use common::*;

use std::path::Path;
use std::process::Command;

/// Make sure `python3` can `import pyarrow`, installing it with pip when it
/// cannot; `false` only when COFFER_SKIP_INTEROP=1.
fn ensure_pyarrow() -> bool {
    if std::env::var("COFFER_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("interop test skipped: COFFER_SKIP_INTEROP=1");
        return false;
    }
    let importable = || {
        Command::new("python3")
            .args(["-c", "import pyarrow, pyarrow.parquet, pyarrow.csv"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if importable() {
        return true;
    }
    for extra in [
        &[][..],
        &["--user"][..],
        &["--user", "--break-system-packages"][..],
    ] {
        let mut args = vec![
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ];
        args.extend_from_slice(extra);
        args.push("pyarrow");
        let installed = Command::new("python3")
            .args(&args)
            .status()
            .is_ok_and(|s| s.success());
        if installed && importable() {
            return true;
        }
    }
    panic!(
        "pyarrow is not installed and `python3 -m pip install pyarrow` failed; \
         install it, or set COFFER_SKIP_INTEROP=1 to skip this test"
    );
}

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

const CHECK: &str = r#"
import datetime, decimal, json, sqlite3, sys, pathlib
import pyarrow as pa, pyarrow.parquet as pq, pyarrow.csv as pacsv

export, db, fmt = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
manifest = json.loads((export / "manifest.json").read_text())
con = sqlite3.connect(db)
con.text_factory = str

def expected_type(col):
    t = col["type"]
    if t.startswith("decimal("):
        p, s = t[len("decimal("):-1].split(",")
        return pa.decimal128(int(p), int(s))
    return {"int64": pa.int64(), "float64": pa.float64(), "utf8": pa.string(),
            "binary": pa.binary(), "date": pa.date32(),
            "timestamp": pa.timestamp("us")}[t]

def from_sqlite(col, v):
    t = col["type"]
    if v is None:
        return None
    if t == "date":
        return datetime.date.fromisoformat(v)
    if t == "timestamp":
        return datetime.datetime.fromisoformat(v)
    if t.startswith("decimal("):
        s = int(t[:-1].split(",")[1])
        return decimal.Decimal(repr(float(v)) if isinstance(v, float) else str(v)).quantize(decimal.Decimal(1).scaleb(-s))
    if t == "float64":
        return float(v)
    return v

checked = 0
for table in manifest["tables"]:
    cols = table["columns"]
    schema = pa.schema([pa.field(c["name"], expected_type(c)) for c in cols])
    parts = [export / p["path"] for p in table["parts"]]
    if fmt == "parquet":
        got = pa.concat_tables([pq.read_table(p) for p in parts])
    else:
        opts = pacsv.ConvertOptions(column_types={c["name"]: (pa.string() if c["type"] == "binary" else expected_type(c)) for c in cols},
                                    strings_can_be_null=True)
        got = pa.concat_tables([pacsv.read_csv(p, convert_options=opts) for p in parts])
        # bytes are hex in CSV
        for i, c in enumerate(cols):
            if c["type"] == "binary":
                arr = pa.array([None if v is None else bytes.fromhex(v) for v in got.column(i).to_pylist()], pa.binary())
                got = got.set_column(i, c["name"], arr)
    assert got.schema.equals(schema), f"{table['name']}: {got.schema} != {schema}"
    assert got.num_rows == table["rows"], (table["name"], got.num_rows, table["rows"])
    names = ", ".join('"' + c["name"].replace('"', '""') + '"' for c in cols)
    order = "rowid" if table.get("rowid_column") is None else "rowid"
    select = names.replace('"__coffer_rowid"', "rowid")
    rows = con.execute(f'SELECT {select} FROM "{table["name"]}" ORDER BY rowid').fetchall()
    want = [tuple(from_sqlite(c, v) for c, v in zip(cols, r)) for r in rows]
    have = [tuple(r[c["name"]] for c in cols) for r in got.to_pylist()]
    for w, h in zip(want, have):
        if fmt == "csv":
            # CSV cannot tell NULL from empty text; coffer keeps that apart
            # in its side file, other readers see NULL.
            w = tuple(None if v == "" else v for v in w)
        assert w == h, f"{table['name']}: {w} != {h}"
    checked += len(want)
print(json.dumps({"rows": checked}))
"#;

fn check_with_pyarrow(export: &Path, db: &Path, format: &str) {
    let out = Command::new("python3")
        .args(["-c", CHECK, s(export), s(db), format])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyarrow did not read the {format} export as expected:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["rows"], ROWS + 4);
}

#[test]
fn pyarrow_reads_parquet_and_csv_exports_with_the_same_rows_and_types() {
    if !ensure_pyarrow() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typed.db");
    create_typed_db(&db);
    for format in ["parquet", "csv"] {
        let export = dir.path().join(format);
        ok(&[
            "export",
            s(&db),
            s(&export),
            "--format",
            format,
            "--part-size",
            "64KiB",
        ]);
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(export.join("manifest.json")).unwrap()).unwrap();
        assert!(m["tables"][0]["parts"].as_array().unwrap().len() > 1);
        check_with_pyarrow(&export, &db, format);
    }
}
