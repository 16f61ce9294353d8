//! Archives of format versions 1 and 2 still verify, restore and import
//! exactly. Version 1 is what coffer 0.1 wrote before the misfit side file
//! changed meaning (format 2); version 2 is what coffer wrote before the
//! side file named the engine of each value (format 3). The fixtures are
//! committed under `crates/coffer-testkit/fixtures/v1/` and `.../v2/` with
//! the SQL of their source database, which this test rebuilds to compare
//! against.

mod common;
use common::*;

use std::path::{Path, PathBuf};

use coffer_testkit::compare::{assert_same_database, assert_same_tables};

fn fixtures() -> PathBuf {
    fixtures_of(1)
}

fn fixtures_of(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../coffer-testkit/fixtures/v{version}"))
}

/// The source database of the fixtures, built from its SQL.
fn source(dir: &Path) -> PathBuf {
    source_of(1, dir, "source.db", &["source.sql"])
}

/// The database of version `version`'s fixtures built at `dir/name` from
/// the SQL files `scripts`, in order.
fn source_of(version: u32, dir: &Path, name: &str, scripts: &[&str]) -> PathBuf {
    let db = dir.join(name);
    let c = rusqlite::Connection::open(&db).unwrap();
    for script in scripts {
        let sql = std::fs::read_to_string(fixtures_of(version).join(script)).unwrap();
        c.execute_batch(&sql).unwrap();
    }
    db
}

/// Copy the directory tree `from` to `to` (a collection repository, which
/// a restore may lock: the committed fixture must stay as it is).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

const TABLES: [&str; 4] = ["Order Details", "notes", "invoices", "empty_one"];

#[test]
fn a_version_2_backup_verifies_restores_and_imports_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_of(2, dir.path(), "source.db", &["source.sql"]);
    let archive = fixtures_of(2).join("backup");
    assert_eq!(format_version(&archive), 2);
    ok(&["verify", s(&archive)]);
    let restored = dir.path().join("restored.db");
    ok(&["restore", s(&archive), s(&restored)]);
    assert_same_database(&src, &restored);
    let imported = dir.path().join("imported.db");
    ok(&["import", s(&archive), s(&imported)]);
    assert_same_tables(&src, &imported, &TABLES);
}

#[test]
fn version_2_exports_in_parquet_and_csv_verify_and_import_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_of(2, dir.path(), "source.db", &["source.sql"]);
    for name in ["export-parquet", "export-csv"] {
        let archive = fixtures_of(2).join(name);
        assert_eq!(format_version(&archive), 2, "{name}");
        ok(&["verify", s(&archive)]);
        let imported = dir.path().join(format!("{name}.db"));
        ok(&["import", s(&archive), s(&imported)]);
        assert_same_tables(&src, &imported, &TABLES);
    }
}

#[test]
fn a_version_2_collection_restores_its_full_and_incremental_backups_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let tables = ["Order Details", "notes", "invoices"];
    let before = source_of(2, dir.path(), "before.db", &["source.sql"]);
    let after = source_of(2, dir.path(), "after.db", &["source.sql", "changes.sql"]);
    let repo = dir.path().join("repo");
    copy_tree(&fixtures_of(2).join("collection"), &repo);
    let backups = repo.join("collections/c");
    let mut ids: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with("_full") || n.ends_with("_incremental"))
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 2, "{ids:?}");
    for id in &ids {
        let archive = backups.join(id);
        assert_eq!(format_version(&archive), 2, "{id}");
        ok(&["verify", s(&archive)]);
    }
    let latest = dir.path().join("latest.db");
    ok(&[
        "collection",
        "restore",
        "c",
        "--repo",
        s(&repo),
        "--into",
        s(&latest),
    ]);
    assert_same_tables(&after, &latest, &tables);
    let first = dir.path().join("first.db");
    ok(&[
        "collection",
        "restore",
        "c",
        "--repo",
        s(&repo),
        "--into",
        s(&first),
        "--backup",
        &ids[0],
    ]);
    assert_same_tables(&before, &first, &tables);
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
