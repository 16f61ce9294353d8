//! `coffer export` and `coffer import` through the real binary, against the
//! in-process S3 server: exact round trips (Parquet and CSV), bad
//! credentials and buckets, damaged and half-written exports, import modes,
//! and imports that fail part-way.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use coffer_testkit::S3Server;
use coffer_testkit::compare::{assert_same_tables, database_digest};
use coffer_testkit::nasty::{create_nasty_db, create_small_db};

const BUCKET: &str = "exports";

/// The S3 server with its bucket, and the flags that reach it.
struct S3 {
    server: S3Server,
}

impl S3 {
    fn start() -> S3 {
        let server = S3Server::start();
        server.create_bucket(BUCKET);
        S3 { server }
    }

    fn url(&self, prefix: &str) -> String {
        self.server.url(BUCKET, prefix)
    }

    /// `args` followed by the flags that reach the server.
    fn with_flags<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = args.to_vec();
        v.extend([
            "--s3-endpoint",
            self.server.endpoint.as_str(),
            "--access-key",
            self.server.access_key.as_str(),
            "--secret-key",
            self.server.secret_key.as_str(),
        ]);
        v
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(&self.with_flags(args))
    }

    fn fails(&self, args: &[&str]) -> String {
        fails(&self.with_flags(args))
    }

    /// The file behind object `key` of the bucket.
    fn object(&self, key: &str) -> PathBuf {
        self.server.bucket_path(BUCKET).join(key)
    }
}

/// The names of the tables an export holds, from `coffer ls --json`.
fn exported_tables(s3: &S3, url: &str, read: &[&str]) -> Vec<String> {
    let ls: serde_json::Value =
        serde_json::from_str(&s3.ok(&[&["ls", url, "--json"], read].concat())).unwrap();
    ls["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

fn manifest_of(s3: &S3, prefix: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(s3.object(&format!("{prefix}/manifest.json"))).unwrap())
        .unwrap()
}

/// The path of the first part of `table` in the manifest of `prefix`.
fn part_of(s3: &S3, prefix: &str, table: &str, n: usize) -> String {
    let m = manifest_of(s3, prefix);
    let t = m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == table)
        .unwrap_or_else(|| panic!("no table {table} in {m}"));
    t["parts"][n]["path"].as_str().unwrap().to_string()
}

fn nasty_round_trip(extra: &[&str]) {
    nasty_round_trip_reading_with(extra, &[]);
}

/// [`nasty_round_trip`], with `read` added to the commands that read it.
fn nasty_round_trip_reading_with(extra: &[&str], read: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nasty.db");
    create_nasty_db(&db).unwrap();
    let s3 = S3::start();
    let url = s3.url("nasty/2025-06-01");
    let mut args = vec!["export", s(&db), &url, "--part-size", "64KiB"];
    args.extend_from_slice(extra);
    s3.ok(&args);
    s3.ok(&[&["verify", &url], read].concat());
    let tables = exported_tables(&s3, &url, read);
    assert!(tables.len() > 30, "{tables:?}");
    assert!(
        !tables.iter().any(|t| t.starts_with("sqlite_")),
        "SQLite's own tables are not exported: {tables:?}"
    );
    let out = dir.path().join("imported.db");
    s3.ok(&[&["import", &url, s(&out)], read].concat());
    let names: Vec<&str> = tables.iter().map(String::as_str).collect();
    assert_same_tables(&db, &out, &names);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("coffer-import")),
        "an import left a temporary file"
    );
}

// `--keep-rowid` keeps the hidden rowids of tables without an INTEGER
// PRIMARY KEY, which the nasty database's exact comparison includes.

#[test]
fn nasty_tables_round_trip_through_s3_exactly_encrypted_as_csv() {
    let keys = tempfile::tempdir().unwrap();
    let (identity, recipient) = coffer_testkit::keys::identity(keys.path(), "me.key");
    nasty_round_trip_reading_with(
        &[
            "--format",
            "csv",
            "--keep-rowid",
            "--encrypt-to",
            &recipient,
        ],
        &["--identity", s(&identity)],
    );
}

#[test]
fn nasty_tables_round_trip_through_s3_exactly_as_parquet() {
    nasty_round_trip(&["--keep-rowid"]);
}

#[test]
fn nasty_tables_round_trip_through_s3_exactly_as_csv() {
    nasty_round_trip(&["--format", "csv", "--keep-rowid"]);
}

#[test]
fn nasty_tables_round_trip_through_s3_exactly_as_compressed_csv() {
    nasty_round_trip(&["--format", "csv", "--compression", "zstd", "--keep-rowid"]);
}

fn read_manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn column_names(table: &serde_json::Value) -> Vec<&str> {
    table["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

/// Rows of `table` in `db` as `rowid` and text, in rowid order.
fn rows_with_rowids(db: &Path, table: &str) -> Vec<(i64, String)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut stmt = c
        .prepare(&format!(
            "SELECT rowid, quote(a) || ',' || quote(b) FROM \"{table}\" ORDER BY rowid"
        ))
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn exports_have_the_tables_own_columns_and_keep_rowid_brings_the_rowid_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE \"Order Details\"(a INTEGER, b TEXT, PRIMARY KEY (a, b));
         INSERT INTO \"Order Details\"(rowid, a, b) VALUES (5, 1, 'x'), (9, 2, 'y'), (10, 3, 'z');
         CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO users VALUES (3, 'ada'), (7, 'grace');",
    )
    .unwrap();
    drop(c);
    for format in ["parquet", "csv"] {
        // By default the files hold exactly the table's columns ...
        let plain = dir.path().join(format!("plain-{format}"));
        ok(&["export", s(&db), s(&plain), "--format", format]);
        let m = read_manifest(&plain);
        for t in m["tables"].as_array().unwrap() {
            assert!(t.get("rowid_column").is_none(), "{t}");
            assert!(!column_names(t).iter().any(|n| n.contains("coffer")), "{t}");
        }
        assert_eq!(column_names(&m["tables"][0]), ["a", "b"]);
        if format == "csv" {
            let text = std::fs::read_to_string(plain.join("tables/Order@20Details/part-00000.csv"))
                .unwrap();
            assert!(text.starts_with("a,b\r\n1,x\r\n"), "{text}");
        }
        // ... and an import keeps every value and the row order, with new
        // rowids; an INTEGER PRIMARY KEY is a column, so it is kept.
        let imported = dir.path().join(format!("plain-{format}.db"));
        ok(&["import", s(&plain), s(&imported)]);
        assert_same_tables(&db, &imported, &["users"]);
        let rows: Vec<String> = rows_with_rowids(&imported, "Order Details")
            .into_iter()
            .map(|(rowid, row)| format!("{rowid}:{row}"))
            .collect();
        assert_eq!(rows, ["1:1,'x'", "2:2,'y'", "3:3,'z'"]);

        // --keep-rowid: the rowid is a leading column, and an import is exact.
        let kept = dir.path().join(format!("kept-{format}"));
        ok(&[
            "export",
            s(&db),
            s(&kept),
            "--format",
            format,
            "--keep-rowid",
        ]);
        let m = read_manifest(&kept);
        assert_eq!(m["tables"][0]["rowid_column"], "__coffer_rowid");
        assert_eq!(column_names(&m["tables"][0]), ["__coffer_rowid", "a", "b"]);
        assert_eq!(column_names(&m["tables"][1]), ["id", "name"]);
        let imported = dir.path().join(format!("kept-{format}.db"));
        ok(&["import", s(&kept), s(&imported)]);
        assert_same_tables(&db, &imported, &["Order Details", "users"]);
    }
    // A backup always keeps the rowids.
    let backup = dir.path().join("backup");
    ok(&["backup", s(&db), s(&backup)]);
    assert_eq!(
        read_manifest(&backup)["tables"][0]["rowid_column"],
        "__coffer_rowid"
    );
}

#[test]
fn an_empty_table_has_a_data_file_with_its_columns() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE \"empty one\"(a INTEGER, \"b c\" TEXT);
         CREATE TABLE full(x INTEGER);
         INSERT INTO full VALUES (1);",
    )
    .unwrap();
    drop(c);
    for (command, format, file) in [
        ("export", "parquet", "part-00000.parquet"),
        ("export", "csv", "part-00000.csv"),
        ("backup", "parquet", "part-00000.parquet"),
    ] {
        let out = dir.path().join(format!("{command}-{format}"));
        let mut args = vec![command, s(&db), s(&out)];
        if command == "export" {
            args.extend(["--format", format]);
        }
        ok(&args);
        let m = read_manifest(&out);
        let empty = &m["tables"][0];
        assert_eq!(empty["name"], "empty one");
        assert_eq!(empty["rows"], 0);
        let parts = empty["parts"].as_array().unwrap();
        assert_eq!(parts.len(), 1, "{command} {format}: {empty}");
        assert_eq!(parts[0]["rows"], 0);
        assert_eq!(parts[0]["path"], format!("tables/empty@20one/{file}"));
        let bytes = std::fs::read(out.join(parts[0]["path"].as_str().unwrap())).unwrap();
        if format == "csv" {
            assert_eq!(bytes, b"a,b c\r\n");
        } else {
            assert!(bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"));
        }
        ok(&["verify", s(&out)]);
        let back = dir.path().join(format!("{command}-{format}.db"));
        ok(&["import", s(&out), s(&back)]);
        assert_same_tables(&db, &back, &["empty one", "full"]);
    }
}

#[test]
fn csv_is_plain_by_default_keeps_null_and_empty_apart_and_writes_bytes_as_hex() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT, b BLOB);
         INSERT INTO t VALUES (1, NULL, NULL), (2, '', x''), (3, 'a,\"b\"', x'00ff');",
    )
    .unwrap();
    drop(c);
    let out = dir.path().join("csv");
    ok(&["export", s(&db), s(&out), "--format", "csv"]);
    let text = std::fs::read_to_string(out.join("tables/t/part-00000.csv")).unwrap();
    assert_eq!(
        text,
        "id,s,b\r\n1,,\r\n2,\"\",\\x\r\n3,\"a,\"\"b\"\"\",\\x00ff\r\n"
    );
    // Other readers see every value as it is: nothing is left to a side file.
    let m = read_manifest(&out);
    assert!(m["tables"][0]["parts"][0].get("misfits").is_none(), "{m}");
    let back = dir.path().join("back.db");
    ok(&["import", s(&out), s(&back)]);
    assert_same_tables(&db, &back, &["t"]);

    // Compression only when asked for.
    let zst = dir.path().join("zst");
    ok(&[
        "export",
        s(&db),
        s(&zst),
        "--format",
        "csv",
        "--compression",
        "zstd",
    ]);
    let bytes = std::fs::read(zst.join("tables/t/part-00000.csv.zst")).unwrap();
    assert!(bytes.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]));
    let back = dir.path().join("back-zst.db");
    ok(&["import", s(&zst), s(&back)]);
    assert_same_tables(&db, &back, &["t"]);
}

#[test]
fn a_value_the_column_type_can_hold_is_in_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    // SQLite stores 18.0 in a NUMERIC column as the integer 18.
    c.execute_batch(
        "CREATE TABLE d(id INTEGER PRIMARY KEY, price NUMERIC, day DATE, tag BLOB);
         INSERT INTO d VALUES (1, 18.0, 20240131, 'text'), (2, 9.8, '2024-01-31', x'01'),
             (3, 'n/a', 2460340.5, NULL), (4, 9007199254740993, NULL, NULL);",
    )
    .unwrap();
    let classes: String = c
        .query_row("SELECT group_concat(typeof(price)) FROM d", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(classes, "integer,real,text,integer");
    drop(c);
    let out = dir.path().join("csv");
    ok(&["export", s(&db), s(&out), "--format", "csv"]);
    let text = std::fs::read_to_string(out.join("tables/d/part-00000.csv")).unwrap();
    // 18 as 18.0; numbers in a text column as their text; text in a blob
    // column as its bytes; only 'n/a' and 2^53 + 1 (no double) are NULL.
    assert_eq!(
        text,
        "id,price,day,tag\r\n1,18.0,20240131,\\x74657874\r\n2,9.8,2024-01-31,\\x01\r\n\
         3,,2460340.5,\r\n4,,,\r\n"
    );
    for format in ["csv", "parquet"] {
        let out = dir.path().join(format!("x-{format}"));
        ok(&["export", s(&db), s(&out), "--format", format]);
        let back = dir.path().join(format!("back-{format}.db"));
        ok(&["import", s(&out), s(&back)]);
        assert_same_tables(&db, &back, &["d"]);
        let backup = dir.path().join(format!("backup-{format}"));
        ok(&["backup", s(&db), s(&backup)]);
        let restored = dir.path().join(format!("restored-{format}.db"));
        ok(&["restore", s(&backup), s(&restored)]);
        coffer_testkit::compare::assert_same_database(&db, &restored);
    }
}

#[test]
fn uncompressed_csv_is_plain_rfc4180_with_a_header() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("small.db");
    create_small_db(&db).unwrap();
    let out = dir.path().join("csv");
    ok(&[
        "export",
        s(&db),
        s(&out),
        "--format",
        "csv",
        "--compression",
        "none",
        "--table",
        "customers",
    ]);
    let text = std::fs::read_to_string(out.join("tables/customers/part-00000.csv")).unwrap();
    let mut lines = text.split("\r\n");
    assert_eq!(lines.next(), Some("id,name,email"));
    assert_eq!(lines.next(), Some("1,Ada,ada@example.com"));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["data_format"], "csv");
    assert_eq!(m["kind"], "export");
    assert_eq!(m["tables"][0]["columns"][0]["type"], "int64");
    let listing = ok(&["ls", s(&out)]);
    assert!(listing.contains("export (csv"), "{listing}");
    let target = dir.path().join("back.db");
    ok(&["import", s(&out), s(&target)]);
    assert_same_tables(&db, &target, &["customers"]);
}

#[test]
fn declared_dates_timestamps_and_decimals_get_natural_types() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typed.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE sales(
             id INTEGER PRIMARY KEY,
             day DATE NOT NULL,
             at DATETIME,
             price DECIMAL(10,2),
             odd_day DATE,
             odd_price NUMERIC(6,2)
         );
         INSERT INTO sales VALUES
             (1, '2024-02-29', '2024-02-29 23:59:59', 12.5, '2024-01-01', 1.5),
             (2, '1999-12-31', NULL, 3, 'yesterday', 1.234),
             (3, '0001-01-01', '1970-01-01 00:00:00', NULL, NULL, 2),
             (4, '9999-12-31', '2038-01-19 03:14:08', -0.07, '2024-01-01', NULL);",
    )
    .unwrap();
    drop(c);
    let out = dir.path().join("x");
    for format in ["parquet", "csv"] {
        let _ = std::fs::remove_dir_all(&out);
        ok(&["export", s(&db), s(&out), "--format", format]);
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
        let types: Vec<&str> = m["tables"][0]["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "int64",
                "date",
                "timestamp",
                "decimal(10,2)",
                "utf8",
                "float64"
            ],
            "{format}"
        );
        assert_eq!(
            m["tables"][0]["columns"][2]["text_format"],
            "%Y-%m-%d %H:%M:%S"
        );
        let target = dir.path().join(format!("{format}.db"));
        ok(&["import", s(&out), s(&target)]);
        assert_same_tables(&db, &target, &["sales"]);
    }
}

#[test]
fn a_wrong_secret_key_is_an_authentication_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("small.db");
    create_small_db(&db).unwrap();
    let s3 = S3::start();
    let url = s3.url("x");
    let wrong = "not-the-secret-key";
    let flags = [
        "--s3-endpoint",
        s3.server.endpoint.as_str(),
        "--access-key",
        s3.server.access_key.as_str(),
        "--secret-key",
        wrong,
    ];
    let mut export = vec!["export", s(&db), &url];
    export.extend(flags);
    let err = fails(&export);
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(err.contains(&url), "{err}");
    assert!(!err.contains(wrong), "the secret was printed: {err}");
    // Through the environment too, for import.
    s3.ok(&["export", s(&db), &url]);
    let target = dir.path().join("t.db");
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["import", &url, s(&target)])
        .env("AWS_ENDPOINT_URL", &s3.server.endpoint)
        .env("AWS_ACCESS_KEY_ID", &s3.server.access_key)
        .env("AWS_SECRET_ACCESS_KEY", wrong)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(!target.exists());
}

#[test]
fn a_missing_bucket_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("small.db");
    create_small_db(&db).unwrap();
    let s3 = S3::start();
    let url = s3.server.url("no-such-bucket", "x");
    let err = s3.fails(&["export", s(&db), &url]);
    assert!(
        err.contains("no-such-bucket") && err.contains("does not exist"),
        "{err}"
    );
    let err = s3.fails(&["import", &url, s(&dir.path().join("t.db"))]);
    assert!(
        err.contains("no-such-bucket") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!dir.path().join("t.db").exists());
}

/// An existing database the imports below must leave alone when they fail.
fn existing_target(dir: &Path) -> (PathBuf, String) {
    let target = dir.join("target.db");
    let c = rusqlite::Connection::open(&target).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE keep(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO keep VALUES (1, 'precious'), (2, 'also');",
    )
    .unwrap();
    drop(c);
    let digest = database_digest(&target);
    (target, digest)
}

#[test]
fn a_missing_or_corrupted_part_in_the_bucket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nasty.db");
    create_nasty_db(&db).unwrap();
    let s3 = S3::start();
    let (target, digest) = existing_target(dir.path());

    // A missing part: refused before the target is touched.
    let url = s3.url("missing");
    s3.ok(&[
        "export",
        s(&db),
        &url,
        "--table",
        "many",
        "--part-size",
        "64KiB",
    ]);
    let part = part_of(&s3, "missing", "many", 3);
    std::fs::remove_file(s3.object(&format!("missing/{part}"))).unwrap();
    let err = s3.fails(&["import", &url, s(&target)]);
    assert!(err.contains(&part), "{err}");
    assert_eq!(database_digest(&target), digest);

    // A corrupted part (same size): found when it is read, after earlier
    // parts were loaded; the import is undone.
    let url = s3.url("corrupt");
    s3.ok(&[
        "export",
        s(&db),
        &url,
        "--table",
        "many",
        "--part-size",
        "64KiB",
    ]);
    let part = part_of(&s3, "corrupt", "many", 3);
    let file = s3.object(&format!("corrupt/{part}"));
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&file, bytes).unwrap();
    let err = s3.fails(&["import", &url, s(&target)]);
    assert!(err.contains(&part) && err.contains("SHA-256"), "{err}");
    assert_eq!(database_digest(&target), digest);

    // And into a new database: nothing is left behind.
    let fresh = dir.path().join("fresh.db");
    s3.fails(&["import", &url, s(&fresh)]);
    assert!(!fresh.exists());
}

fn has_files(dir: &Path) -> bool {
    fn walk(dir: &Path) -> bool {
        std::fs::read_dir(dir).is_ok_and(|rd| {
            rd.flatten().any(|e| {
                let p = e.path();
                if p.is_dir() { walk(&p) } else { true }
            })
        })
    }
    walk(&dir.join("tables"))
}

#[test]
fn an_export_killed_mid_way_is_invisible_to_ls_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    create_big_db(&db, 150_000);
    let s3 = S3::start();
    let mut killed_mid_way = 0;
    for (i, delay_ms) in [0u64, 50, 200].into_iter().enumerate() {
        let prefix = format!("killed-{i}");
        let url = s3.url(&prefix);
        let mut child = spawn(&s3.with_flags(&["export", s(&db), &url, "--part-size", "1MiB"]));
        std::thread::sleep(Duration::from_millis(delay_ms));
        let objects = s3.object(&prefix);
        if wait_for(&mut child, || has_files(&objects)) {
            killed_mid_way += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if s3.object(&format!("{prefix}/manifest.json")).exists() {
            continue; // it finished first: a complete export is fine
        }
        let err = s3.fails(&["ls", &url]);
        assert!(err.contains("no archive"), "{err}");
        let target = dir.path().join(format!("t{i}.db"));
        let err = s3.fails(&["import", &url, s(&target)]);
        assert!(err.contains("no archive"), "{err}");
        assert!(!target.exists());
        // A new export into the same place cleans up and succeeds.
        s3.ok(&["export", s(&db), &url]);
        s3.ok(&["import", &url, s(&target)]);
        assert_same_tables(&db, &target, &["big"]);
    }
    assert!(
        killed_mid_way > 0,
        "no kill landed while the export was writing"
    );
}

#[test]
fn import_modes_create_append_and_replace() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.db");
    let c = rusqlite::Connection::open(&src).unwrap();
    c.execute_batch(
        "CREATE TABLE log(at INTEGER, msg TEXT);
         CREATE INDEX log_at ON log(at);
         INSERT INTO log VALUES (1, 'one'), (2, 'two'), (3, NULL);
         CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO users VALUES (1, 'ada'), (2, 'grace');",
    )
    .unwrap();
    drop(c);
    let s3 = S3::start();
    let url = s3.url("modes");
    s3.ok(&["export", s(&src), &url]);

    // Into a database that has other tables: they stay.
    let (target, _) = existing_target(dir.path());
    s3.ok(&["import", &url, s(&target)]);
    assert_same_tables(&src, &target, &["log", "users"]);
    let keep: i64 = rusqlite::Connection::open(&target)
        .unwrap()
        .query_row("SELECT count(*) FROM keep", [], |r| r.get(0))
        .unwrap();
    assert_eq!(keep, 2);

    // create (the default): the existing table is named, nothing changes.
    let before = database_digest(&target);
    let err = s3.fails(&["import", &url, s(&target)]);
    assert!(
        err.contains("'log'") && err.contains("already exists") && err.contains("--mode"),
        "{err}"
    );
    assert_eq!(database_digest(&target), before);

    // append: rows are added (hidden rowids are assigned anew) ...
    s3.ok(&[
        "import",
        &url,
        s(&target),
        "--mode",
        "append",
        "--table",
        "log",
    ]);
    let c = rusqlite::Connection::open(&target).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 6);
    drop(c);
    // ... and a key conflict part-way undoes the whole import: `log` is
    // loaded before `users` fails.
    let before = database_digest(&target);
    let err = s3.fails(&["import", &url, s(&target), "--mode", "append"]);
    assert!(err.contains("users") && err.contains("UNIQUE"), "{err}");
    assert_eq!(database_digest(&target), before);

    // replace: the tables are as in the export again.
    s3.ok(&["import", &url, s(&target), "--mode", "replace"]);
    assert_same_tables(&src, &target, &["log", "users"]);

    // append into a table that lacks a column: refused before writing.
    let c = rusqlite::Connection::open(&target).unwrap();
    c.execute_batch("DROP TABLE log; CREATE TABLE log(at INTEGER);")
        .unwrap();
    drop(c);
    let before = database_digest(&target);
    let err = s3.fails(&["import", &url, s(&target), "--mode", "append"]);
    assert!(err.contains("'msg'"), "{err}");
    assert_eq!(database_digest(&target), before);
}

#[test]
fn a_killed_import_leaves_an_existing_database_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    create_big_db(&db, 150_000);
    let archive = dir.path().join("export");
    ok(&["export", s(&db), s(&archive), "--part-size", "1MiB"]);
    for journal in ["WAL", "DELETE"] {
        let target = dir.path().join(format!("target-{journal}.db"));
        let c = rusqlite::Connection::open(&target).unwrap();
        c.execute_batch(&format!(
            "PRAGMA journal_mode = {journal};
             CREATE TABLE keep(id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO keep VALUES (1, 'precious');"
        ))
        .unwrap();
        drop(c);
        let digest = database_digest(&target);
        let size = std::fs::metadata(&target).unwrap().len();
        let mut child = spawn(&["import", s(&archive), s(&target)]);
        let grown = |p: &Path| {
            let side = |s: &str| {
                let mut x = p.as_os_str().to_owned();
                x.push(s);
                std::fs::metadata(PathBuf::from(x)).map_or(0, |m| m.len())
            };
            std::fs::metadata(p).map_or(0, |m| m.len()) > size + 4_000_000
                || side("-wal") > 4_000_000
        };
        assert!(
            wait_for(&mut child, || grown(&target)),
            "the import finished before it could be killed"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        // The next connection rolls the unfinished transaction back.
        rusqlite::Connection::open(&target)
            .unwrap()
            .query_row("SELECT count(*) FROM keep", [], |r| r.get::<_, i64>(0))
            .unwrap();
        assert_eq!(database_digest(&target), digest, "{journal}");
        // And a new import succeeds.
        ok(&["import", s(&archive), s(&target)]);
        assert_same_tables(&db, &target, &["big"]);
    }
}

#[test]
fn table_selection_and_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nasty.db");
    create_nasty_db(&db).unwrap();
    let out = dir.path().join("sel");
    ok(&[
        "export",
        s(&db),
        s(&out),
        "--exclude",
        "many|big",
        "--exclude",
        ".* .*",
    ]);
    let ls: serde_json::Value = serde_json::from_str(&ok(&["ls", s(&out), "--json"])).unwrap();
    let names: Vec<&str> = ls["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"many") && !names.contains(&"big"),
        "{names:?}"
    );
    assert!(!names.contains(&"table with spaces"), "{names:?}");
    assert!(
        names.contains(&"people") && names.contains(&"wr"),
        "{names:?}"
    );
    // Only the exported tables' own objects: no views, no triggers.
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    for o in m["objects"].as_array().unwrap() {
        assert!(o["type"] == "table" || o["type"] == "index", "{o}");
        assert!(names.contains(&o["table"].as_str().unwrap()), "{o}");
    }

    let err = fails(&[
        "export",
        s(&db),
        s(&dir.path().join("a")),
        "--table",
        "people",
        "--exclude",
        "peo.*",
    ]);
    assert!(
        err.contains("'people'") && err.contains("--exclude"),
        "{err}"
    );
    let err = fails(&[
        "export",
        s(&db),
        s(&dir.path().join("b")),
        "--table",
        "no_such_table",
    ]);
    assert!(err.contains("no_such_table"), "{err}");
    let err = fails(&[
        "export",
        s(&db),
        s(&dir.path().join("c")),
        "--exclude",
        ".*",
    ]);
    assert!(err.contains("no table to export"), "{err}");
    let err = fails(&[
        "import",
        s(&out),
        s(&dir.path().join("d.db")),
        "--table",
        "many",
    ]);
    assert!(err.contains("'many'"), "{err}");
    // An export is not a backup.
    let err = fails(&["restore", s(&out), s(&dir.path().join("e.db"))]);
    assert!(err.contains("coffer import"), "{err}");
    // A backup can be imported (its tables, without SQLite's own).
    let backup = dir.path().join("backup");
    ok(&["backup", s(&db), s(&backup)]);
    let target = dir.path().join("from-backup.db");
    ok(&[
        "import",
        s(&backup),
        s(&target),
        "--table",
        "people",
        "--table",
        "wr",
    ]);
    assert_same_tables(&db, &target, &["people", "wr"]);
}

/// A proxy in front of the S3 server that answers `503 Slow Down` to the
/// requests `fail` picks (by request line and by count), and forwards the
/// others, one request per connection.
struct FlakyProxy {
    endpoint: String,
    failed: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FlakyProxy {
    fn start(upstream: std::net::SocketAddr, fail: fn(&str, &[String]) -> bool) -> FlakyProxy {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let failed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (failed2, stop2) = (failed.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((mut client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let failed = failed2.clone();
                std::thread::spawn(move || {
                    // The request head, then its body by Content-Length.
                    let mut buf = Vec::new();
                    let mut byte = [0u8; 1];
                    while !buf.ends_with(b"\r\n\r\n") {
                        if client.read(&mut byte).unwrap_or(0) == 0 {
                            return;
                        }
                        buf.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let line = head.lines().next().unwrap_or_default().to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    let mut body = vec![0u8; len];
                    if client.read_exact(&mut body).is_err() {
                        return;
                    }
                    let fail_it = {
                        let mut f = failed.lock().unwrap();
                        let yes = fail(&line, &f);
                        if yes {
                            f.push(line.clone());
                        }
                        yes
                    };
                    if fail_it {
                        let _ = client.write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        return;
                    }
                    let Ok(mut up) = std::net::TcpStream::connect(upstream) else {
                        return;
                    };
                    let head: String = head
                        .trim_end()
                        .lines()
                        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                        .map(|l| format!("{l}\r\n"))
                        .collect();
                    let _ = up.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
                    let _ = up.write_all(&body);
                    let _ = std::io::copy(&mut up, &mut client);
                });
            }
        });
        FlakyProxy {
            endpoint,
            failed,
            stop,
        }
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn transient_errors_are_retried_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("small.db");
    create_small_db(&db).unwrap();
    let s3 = S3::start();
    // Fail the first request, the first upload of a data file and the first
    // write of the manifest; then the first read of a data file.
    let proxy = FlakyProxy::start(s3.server.addr, |line, failed| {
        let first = |method: &str, path: &str| {
            line.starts_with(method)
                && line.contains(path)
                && !failed
                    .iter()
                    .any(|l| l.starts_with(method) && l.contains(path))
        };
        failed.is_empty()
            || first("PUT", "/tables/")
            || first("PUT", "manifest.json")
            || first("GET", "/tables/")
    });
    let url = s3.url("flaky");
    let flags = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        v.extend(
            [
                "--s3-endpoint",
                proxy.endpoint.as_str(),
                "--access-key",
                s3.server.access_key.as_str(),
                "--secret-key",
                s3.server.secret_key.as_str(),
            ]
            .map(String::from),
        );
        v
    };
    let run = |args: &[&str]| {
        let v = flags(args);
        ok(&v.iter().map(String::as_str).collect::<Vec<_>>())
    };
    run(&["export", s(&db), &url]);
    let target = dir.path().join("t.db");
    run(&["import", &url, s(&target)]);
    assert_same_tables(&db, &target, &["customers", "orders"]);
    let failed = proxy.failed.lock().unwrap().clone();
    assert_eq!(failed.len(), 4, "{failed:?}");
}

#[test]
fn a_killed_or_interrupted_import_leaves_no_new_database_and_ctrl_c_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    create_big_db(&db, 150_000);
    let archive = dir.path().join("export");
    ok(&["export", s(&db), s(&archive), "--part-size", "1MiB"]);
    let building = |dir: &Path| {
        std::fs::read_dir(dir).unwrap().flatten().any(|e| {
            e.file_name().to_string_lossy().contains("coffer-import")
                && e.metadata().is_ok_and(|m| m.len() > 4_000_000)
        })
    };

    // Killed: the new database never appears.
    let target = dir.path().join("new.db");
    let mut child = spawn(&["import", s(&archive), s(&target)]);
    assert!(
        wait_for(&mut child, || building(dir.path())),
        "the import finished before it could be killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!target.exists(), "a killed import left a database");

    // Ctrl-C: status 130, no database, no temporary file of its own.
    let target = dir.path().join("new2.db");
    let mut child = spawn(&["import", s(&archive), s(&target)]);
    let pid = child.id();
    let own_temp = move |dir: &Path| {
        std::fs::read_dir(dir).unwrap().flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.contains("coffer-import") && name.contains(&pid.to_string())
        })
    };
    assert!(wait_for(&mut child, || own_temp(dir.path()) && building(dir.path())));
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!target.exists());
    assert!(!own_temp(dir.path()), "Ctrl-C left a temporary file");

    // A later import succeeds.
    ok(&["import", s(&archive), s(&target)]);
    assert_same_tables(&db, &target, &["big"]);
}

#[test]
fn a_resealed_export_cannot_reach_outside_the_database_it_imports_into() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("small.db");
    create_small_db(&db).unwrap();
    let s3 = S3::start();
    let url = s3.url("small/tampered");
    s3.ok(&["export", s(&db), &url]);
    let (other, bytes) = bystander(dir.path());
    let stray = dir.path().join("stray.db");
    append_to_sql(
        &s3.object("small/tampered/manifest.json"),
        "orders_customer",
        &attack(&other, &stray),
    );
    // Into a new database, built beside it, and into an existing one, in place.
    let new = dir.path().join("new.db");
    let (existing, digest) = existing_target(dir.path());
    for target in [&new, &existing] {
        let err = s3.fails(&["import", &url, s(target)]);
        assert!(
            err.contains("manifest.json") && err.contains("index 'orders_customer'"),
            "{err}"
        );
        untouched(&other, &bytes, &stray);
    }
    assert!(!new.exists(), "a refused import left {}", new.display());
    assert_eq!(database_digest(&existing), digest);
}
