//! Backup and restore through the real binary compare equal, value by value
//! and object by object, on a deliberately nasty database.

mod common;
use common::*;

use coffer_testkit::compare::assert_same_database;
use coffer_testkit::nasty::create_nasty_db;

fn round_trip(journal_mode: &str, extra: &[&str]) {
    round_trip_reading_with(journal_mode, extra, &[]);
}

/// [`round_trip`], with `read` added to the commands that read the archive.
fn round_trip_reading_with(journal_mode: &str, extra: &[&str], read: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nasty.db");
    create_nasty_db(&db).unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(&format!("PRAGMA journal_mode = {journal_mode}"))
        .unwrap();
    let archive = dir.path().join("archive");
    let mut args = vec!["backup", s(&db), s(&archive)];
    args.extend_from_slice(extra);
    ok(&args);
    ok(&[&["verify", s(&archive)], read].concat());
    let out = dir.path().join("restored.db");
    ok(&[&["restore", s(&archive), s(&out)], read].concat());
    assert_same_database(&db, &out);
    assert!(restore_leftovers(dir.path()).is_empty());
}

#[test]
fn nasty_database_round_trips_exactly_encrypted() {
    let keys = tempfile::tempdir().unwrap();
    let (identity, recipient) = coffer_testkit::keys::identity(keys.path(), "me.key");
    round_trip_reading_with(
        "WAL",
        &["--encrypt-to", &recipient, "--part-size", "16KiB"],
        &["--identity", s(&identity)],
    );
}

#[test]
fn nasty_database_round_trips_exactly_in_wal_mode() {
    round_trip("WAL", &[]);
}

#[test]
fn nasty_database_round_trips_exactly_in_rollback_mode() {
    round_trip("DELETE", &[]);
}

#[test]
fn nasty_database_round_trips_with_tiny_parts_and_no_compression() {
    // Many parts per table: misfit rows must be placed in the right part.
    round_trip("WAL", &["--part-size", "4096", "--compression", "none"]);
}

#[test]
fn example_database_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let db = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/shop.db");
    let archive = dir.path().join("a");
    ok(&["backup", db, s(&archive)]);
    let out = dir.path().join("shop.db");
    ok(&["restore", s(&archive), &format!("sqlite://{}", s(&out))]);
    assert_same_database(std::path::Path::new(db), &out);
}

#[test]
fn sha256sums_checks_with_the_standard_tool() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nasty.db");
    create_nasty_db(&db).unwrap();
    let archive = dir.path().join("archive");
    ok(&["backup", s(&db), s(&archive)]);
    let status = std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&archive)
        .status();
    if let Ok(status) = status {
        assert!(status.success(), "sha256sum -c failed");
    }
}

/// Issue 'Hardening' item 6: a legal table name whose encoded directory
/// would exceed the filesystem's 255-byte segment limit is backed up,
/// exported and restored; two such names that differ only at the end get
/// distinct directories.
#[test]
fn tables_with_very_long_names_back_up_export_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("long.db");
    let a = "表".repeat(100);
    let b = format!("{a}二");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        for name in [&a, &b] {
            conn.execute_batch(&format!(
                "CREATE TABLE \"{name}\" (id INTEGER PRIMARY KEY, v TEXT);
                 INSERT INTO \"{name}\" (v) VALUES ('x'), ('{name}');"
            ))
            .unwrap();
        }
    }
    let archive = dir.path().join("archive");
    ok(&["backup", s(&db), s(&archive)]);
    ok(&["verify", s(&archive)]);
    let out = dir.path().join("restored.db");
    ok(&["restore", s(&archive), s(&out)]);
    assert_same_database(&db, &out);
    let dirs: Vec<_> = std::fs::read_dir(archive.join("tables"))
        .unwrap()
        .map(|e| e.unwrap().file_name().len())
        .collect();
    assert_eq!(dirs.len(), 2);
    assert!(dirs.iter().all(|&n| n <= 255), "{dirs:?}");
    for format in ["parquet", "csv"] {
        let export = dir.path().join(format!("export-{format}"));
        ok(&["export", s(&db), s(&export), "--format", format]);
        let copy = dir.path().join(format!("copy-{format}.db"));
        ok(&["import", s(&export), s(&copy)]);
        let conn = rusqlite::Connection::open(&copy).unwrap();
        for name in [&a, &b] {
            let n: i64 = conn
                .query_row(&format!("SELECT count(*) FROM \"{name}\""), [], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(n, 2, "{format}");
        }
    }
}

/// A database whose table `words` uses the collation `rev` that only its
/// application defines (written as SQLite would keep it), beside `plain`.
fn db_with_app_collation(db: &std::path::Path) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch(
        "CREATE TABLE words(id INTEGER PRIMARY KEY, w TEXT);
         CREATE TABLE plain(x);
         INSERT INTO words VALUES(1, 'ab');
         INSERT INTO plain VALUES(1), (2);
         PRAGMA writable_schema = ON;
         UPDATE sqlite_schema SET sql = 'CREATE TABLE words(id INTEGER PRIMARY KEY, w TEXT COLLATE rev)'
          WHERE name = 'words';",
    )
    .unwrap();
}

#[test]
fn an_application_collation_is_named_at_backup_and_restore_leaves_out_what_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    db_with_app_collation(&db);
    let archive = dir.path().join("archive");
    let out = coffer(&["backup", s(&db), s(&archive)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("'rev'") && stderr.contains("--skip-missing-collations"),
        "no warning: {stderr}"
    );
    let restored = dir.path().join("restored.db");
    let err = fails(&["restore", s(&archive), s(&restored)]);
    for part in ["'rev'", "table 'words'", "--skip-missing-collations"] {
        assert!(err.contains(part), "{part}: {err}");
    }
    assert!(!restored.exists());
    let json = ok(&[
        "restore",
        s(&archive),
        s(&restored),
        "--skip-missing-collations",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["skipped"][0]["kind"], "table", "{json}");
    assert_eq!(v["skipped"][0]["name"], "words", "{json}");
    assert!(v["tables"].as_array().unwrap().len() == 1, "{json}");
    let text = ok(&[
        "restore",
        s(&archive),
        s(&restored),
        "--skip-missing-collations",
        "--force",
    ]);
    assert!(text.contains("left out: table 'words'"), "{text}");
    let c = rusqlite::Connection::open(&restored).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM plain", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
    // An import of an export says what the table needs, in one sentence,
    // and one without that table succeeds.
    let export = dir.path().join("export");
    ok(&["export", s(&db), s(&export)]);
    let imported = dir.path().join("imported.db");
    let err = fails(&["import", s(&export), s(&imported)]);
    assert!(
        err.contains("table 'words'") && err.contains("needs the collation sequence 'rev'"),
        "{err}"
    );
    assert!(!imported.exists());
    ok(&["import", s(&export), s(&imported), "--table", "plain"]);
}

#[test]
fn a_virtual_table_of_an_unknown_module_is_named_and_does_not_block_backup_or_export() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("geo.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE spatial_ref_sys(srid INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO spatial_ref_sys VALUES(4326, 'WGS 84');
             PRAGMA writable_schema = ON;
             INSERT INTO sqlite_schema(type, name, tbl_name, rootpage, sql)
               VALUES('table', 'SpatialIndex', 'SpatialIndex', 0,
                      'CREATE VIRTUAL TABLE SpatialIndex USING VirtualSpatialIndex()');",
        )
        .unwrap();
    let out = coffer(&["backup", s(&db), s(&dir.path().join("bk"))]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("SpatialIndex"), "no warning: {stderr}");
    ok(&[
        "export",
        s(&db),
        s(&dir.path().join("ex")),
        "--table",
        "spatial_ref_sys",
    ]);
    let restored = dir.path().join("r.db");
    let out = coffer(&["restore", s(&dir.path().join("bk")), s(&restored)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("VirtualSpatialIndex"),
        "no warning: {stderr}"
    );
}
