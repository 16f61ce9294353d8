//! Backup and restore through the real binary compare equal, value by value
//! and object by object, on a deliberately nasty database.

mod common;
use common::*;

use coffer_testkit::compare::assert_same_database;
use coffer_testkit::nasty::create_nasty_db;

fn round_trip(journal_mode: &str, extra: &[&str]) {
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
    ok(&["verify", s(&archive)]);
    let out = dir.path().join("restored.db");
    ok(&["restore", s(&archive), s(&out)]);
    assert_same_database(&db, &out);
    assert!(restore_leftovers(dir.path()).is_empty());
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
