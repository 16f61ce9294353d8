//! Archives of format version 1, which coffer 0.1 wrote before the misfit
//! side file changed meaning (format 2), still verify, restore and import
//! exactly. The fixtures are committed under
//! `crates/coffer-testkit/fixtures/v1/` with the SQL of their source
//! database, which this test rebuilds to compare against.

mod common;
use common::*;

use std::path::{Path, PathBuf};

use coffer_testkit::compare::{assert_same_database, assert_same_tables};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../coffer-testkit/fixtures/v1")
}

/// The source database of the fixtures, built from its SQL.
fn source(dir: &Path) -> PathBuf {
    let db = dir.join("source.db");
    let sql = std::fs::read_to_string(fixtures().join("source.sql")).unwrap();
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(&sql).unwrap();
    db
}

fn format_version(archive: &Path) -> u64 {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(archive.join("manifest.json")).unwrap()).unwrap();
    m["format_version"].as_u64().unwrap()
}

#[test]
fn a_version_1_backup_verifies_and_restores_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let archive = fixtures().join("backup");
    assert_eq!(format_version(&archive), 1);
    ok(&["verify", s(&archive)]);
    let restored = dir.path().join("restored.db");
    ok(&["restore", s(&archive), s(&restored)]);
    assert_same_database(&src, &restored);
    // A backup imports too (its tables, as they were).
    let imported = dir.path().join("imported.db");
    ok(&["import", s(&archive), s(&imported)]);
    assert_same_tables(
        &src,
        &imported,
        &["Order Details", "notes", "invoices", "empty_one"],
    );
}

#[test]
fn version_1_exports_in_parquet_and_csv_verify_and_import_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    for name in ["export-parquet", "export-csv"] {
        let archive = fixtures().join(name);
        assert_eq!(format_version(&archive), 1, "{name}");
        ok(&["verify", s(&archive)]);
        let imported = dir.path().join(format!("{name}.db"));
        ok(&["import", s(&archive), s(&imported)]);
        assert_same_tables(
            &src,
            &imported,
            &["Order Details", "notes", "invoices", "empty_one"],
        );
    }
}
