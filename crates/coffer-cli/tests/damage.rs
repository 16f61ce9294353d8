//! Damaged archives and bad input: `verify` and `restore` fail with one
//! sentence naming the thing at fault, and leave nothing behind.

mod common;
use common::*;

use std::path::{Path, PathBuf};

use coffer_testkit::nasty::create_small_db;

struct Fixture {
    dir: tempfile::TempDir,
    db: PathBuf,
    archive: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("small.db");
    create_small_db(&db).unwrap();
    let archive = dir.path().join("archive");
    ok(&["backup", s(&db), s(&archive)]);
    Fixture { dir, db, archive }
}

fn first_part(archive: &Path) -> (String, PathBuf) {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(archive.join("manifest.json")).unwrap()).unwrap();
    let rel = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|t| t["parts"].as_array().unwrap().first())
        .expect("a part")["path"]
        .as_str()
        .unwrap()
        .to_string();
    let path = archive.join(&rel);
    (rel, path)
}

/// Both verify and restore refuse, naming `name`; restore leaves no target.
fn refused(f: &Fixture, name: &str) {
    let err = fails(&["verify", s(&f.archive)]);
    assert!(err.contains(name), "verify does not name {name}: {err}");
    let target = f.dir.path().join("out.db");
    let err = fails(&["restore", s(&f.archive), s(&target)]);
    assert!(err.contains(name), "restore does not name {name}: {err}");
    assert!(
        !target.exists(),
        "a failed restore left {}",
        target.display()
    );
    assert!(restore_leftovers(f.dir.path()).is_empty());
}

#[test]
fn truncated_data_file_is_refused() {
    let f = fixture();
    let (rel, path) = first_part(&f.archive);
    let data = std::fs::read(&path).unwrap();
    std::fs::write(&path, &data[..data.len() / 2]).unwrap();
    refused(&f, &rel);
}

#[test]
fn corrupted_data_file_is_refused() {
    let f = fixture();
    let (rel, path) = first_part(&f.archive);
    let mut data = std::fs::read(&path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x40;
    std::fs::write(&path, &data).unwrap();
    refused(&f, &rel);
}

#[test]
fn missing_data_file_is_refused() {
    let f = fixture();
    let (rel, path) = first_part(&f.archive);
    std::fs::remove_file(&path).unwrap();
    refused(&f, &rel);
}

#[test]
fn edited_manifest_is_refused() {
    let f = fixture();
    let path = f.archive.join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    // A plausible edit that keeps the JSON valid: change a row count.
    let edited = text.replacen("\"rows\": ", "\"rows\": 1", 1);
    assert_ne!(text, edited);
    std::fs::write(&path, edited).unwrap();
    refused(&f, "manifest.json");
}

#[test]
fn manifest_naming_a_path_outside_the_archive_is_refused() {
    let f = fixture();
    // Sealed again, so that the path itself is what is refused.
    reseal(&f.archive.join("manifest.json"), |m| {
        m.tables[0].parts[0].file.path = "../../etc/passwd".into();
    });
    refused(&f, "the path '../../etc/passwd' outside its archive");
}

#[test]
fn a_location_without_manifest_is_no_archive() {
    let f = fixture();
    std::fs::remove_file(f.archive.join("manifest.json")).unwrap();
    let err = fails(&["ls", s(&f.archive)]);
    assert!(err.contains("no archive"), "{err}");
    refused(&f, s(&f.archive));
}

#[test]
fn restore_refuses_an_existing_target_unless_forced() {
    let f = fixture();
    let target = f.dir.path().join("existing.db");
    std::fs::write(&target, b"precious").unwrap();
    let err = fails(&["restore", s(&f.archive), s(&target)]);
    assert!(err.contains(s(&target)) && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    ok(&["restore", s(&f.archive), s(&target), "--force"]);
    coffer_testkit::compare::assert_same_database(&f.db, &target);
}

#[test]
fn forced_restore_over_a_wal_database_does_not_replay_its_wal() {
    let f = fixture();
    let target = f.dir.path().join("live.db");
    let c = rusqlite::Connection::open(&target).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE other(x); INSERT INTO other VALUES (1);",
    )
    .unwrap();
    // Keep the WAL: the connection is still open when coffer replaces the file.
    ok(&["restore", s(&f.archive), s(&target), "--force"]);
    drop(c);
    // A WAL database in use cannot leave WAL mode: it keeps it.
    let c = rusqlite::Connection::open(&target).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    drop(c);
    coffer_testkit::compare::assert_same_database(&f.db, &target);
}

#[test]
fn backup_refuses_a_location_holding_an_archive_or_other_files() {
    let f = fixture();
    let err = fails(&["backup", s(&f.db), s(&f.archive)]);
    assert!(
        err.contains(s(&f.archive)) && err.contains("already holds an archive"),
        "{err}"
    );
    let other = f.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"mine").unwrap();
    let err = fails(&["backup", s(&f.db), s(&other)]);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read(other.join("notes.txt")).unwrap(), b"mine");
}

#[test]
fn bad_sources_get_one_clear_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let err = fails(&["backup", s(&missing), s(&dir.path().join("a"))]);
    assert!(
        err.contains(s(&missing)) && err.contains("does not exist"),
        "{err}"
    );

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 8192]).unwrap();
    let err = fails(&["backup", s(&junk), s(&dir.path().join("b"))]);
    assert!(
        err.contains(s(&junk)) && err.contains("not a SQLite database"),
        "{err}"
    );
    assert!(!dir.path().join("b").join("manifest.json").exists());

    let err = fails(&[
        "restore",
        s(&dir.path().join("nowhere")),
        s(&dir.path().join("x.db")),
    ]);
    assert!(err.contains("nowhere"), "{err}");

    let err = fails(&[
        "backup",
        "postgres://localhost:1/db",
        s(&dir.path().join("c")),
    ]);
    assert!(err.contains("PostgreSQL server at localhost:1"), "{err}");
    assert!(!dir.path().join("c").exists());
}

#[test]
fn restore_of_an_unknown_table_names_it() {
    let f = fixture();
    let err = fails(&[
        "restore",
        s(&f.archive),
        s(&f.dir.path().join("t.db")),
        "--table",
        "no_such_table",
    ]);
    assert!(err.contains("no_such_table"), "{err}");
}

#[test]
fn ls_and_verify_speak_json() {
    let f = fixture();
    let ls: serde_json::Value =
        serde_json::from_str(&ok(&["ls", s(&f.archive), "--json"])).unwrap();
    assert_eq!(ls["kind"], "backup");
    assert_eq!(ls["source"]["engine"], "sqlite");
    assert!(ls["tables"].as_array().unwrap().len() >= 2, "{ls}");
    assert!(ls["total_rows"].as_u64().unwrap() > 0);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["verify", s(&f.archive), "--json"])).unwrap();
    assert_eq!(v["ok"], true, "{v}");

    let (_, path) = first_part(&f.archive);
    std::fs::write(&path, b"garbage").unwrap();
    let out = coffer(&["verify", s(&f.archive), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
}

#[test]
fn a_resealed_manifest_cannot_reach_outside_the_restored_database() {
    let f = fixture();
    let (other, bytes) = bystander(f.dir.path());
    let stray = f.dir.path().join("stray.db");
    append_to_sql(
        &f.archive.join("manifest.json"),
        "order_totals",
        &attack(&other, &stray),
    );
    let target = f.dir.path().join("out.db");
    let err = fails(&["restore", s(&f.archive), s(&target)]);
    assert!(
        err.contains("manifest.json") && err.contains("view 'order_totals'"),
        "{err}"
    );
    untouched(&other, &bytes, &stray);
    assert!(
        !target.exists(),
        "a refused restore left {}",
        target.display()
    );
    assert!(restore_leftovers(f.dir.path()).is_empty());
}

#[test]
fn a_resealed_manifest_with_a_bad_setting_is_refused() {
    let f = fixture();
    reseal(&f.archive.join("manifest.json"), |m| {
        m.settings.insert("page_size".into(), 1000.into());
    });
    let target = f.dir.path().join("out.db");
    let err = fails(&["restore", s(&f.archive), s(&target)]);
    assert!(
        err.contains("manifest.json") && err.contains("page_size"),
        "{err}"
    );
    assert!(!target.exists());
    assert!(restore_leftovers(f.dir.path()).is_empty());
}
