//! Restore and import targets: a database in use by another connection, a
//! symlink, a target inside its own archive, and the clean-up of what killed
//! or failed runs leave behind.

mod common;
use common::*;

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// A small source database and its backup; the archive's tables are `t`
/// (rows 1..=3) and `u`.
fn source_archive(dir: &Path, page_size: u32) -> std::path::PathBuf {
    let db = dir.join(format!("src-{page_size}.db"));
    let c = Connection::open(&db).unwrap();
    c.execute_batch(&format!(
        "PRAGMA page_size = {page_size};
         CREATE TABLE t(x INTEGER PRIMARY KEY, s TEXT);
         INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');
         CREATE TABLE u(y);
         INSERT INTO u VALUES ('kept');"
    ))
    .unwrap();
    drop(c);
    let archive = dir.join(format!("archive-{page_size}"));
    ok(&["backup", s(&db), s(&archive)]);
    archive
}

/// A database that another connection holds open: created in `mode`
/// (`wal` or `delete`), with a table `t` whose rows differ from the archive's.
fn live_target(path: &Path, mode: &str) -> Connection {
    let c = Connection::open(path).unwrap();
    c.execute_batch(&format!(
        "PRAGMA journal_mode = {mode};
         CREATE TABLE t(x INTEGER PRIMARY KEY, s TEXT);
         INSERT INTO t VALUES (50, 'old');
         CREATE TABLE old_only(z);"
    ))
    .unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    c
}

fn rows_of(path: &Path) -> Vec<i64> {
    let c = Connection::open(path).unwrap();
    let mut st = c.prepare("SELECT x FROM t ORDER BY x").unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn forced_restore_keeps_the_commits_of_a_connection_in_use(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let archive = source_archive(dir.path(), 4096);
    let target = dir.path().join("live.db");
    let other = live_target(&target, mode);
    ok(&["restore", s(&archive), s(&target), "--force"]);
    // The connection that was open all along writes after the restore: its
    // commit lands in the restored database, not in a file nobody sees.
    other
        .execute("INSERT INTO t VALUES (100, 'after')", [])
        .unwrap();
    drop(other);
    assert_eq!(rows_of(&target), [1, 2, 3, 100], "journal mode {mode}");
    let c = Connection::open(&target).unwrap();
    let old: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'old_only'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old, 0, "the old database's tables are gone");
    let ok_: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok_, "ok");
}

#[test]
fn forced_restore_over_a_wal_database_in_use_loses_no_commit() {
    forced_restore_keeps_the_commits_of_a_connection_in_use("wal");
}

#[test]
fn forced_restore_over_a_rollback_database_in_use_loses_no_commit() {
    forced_restore_keeps_the_commits_of_a_connection_in_use("delete");
}

#[test]
fn forced_restore_over_a_database_locked_by_a_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let archive = source_archive(dir.path(), 4096);
    for mode in ["wal", "delete"] {
        let target = dir.path().join(format!("busy-{mode}.db"));
        let other = live_target(&target, mode);
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (60, 'pending');")
            .unwrap();
        let started = Instant::now();
        let err = fails(&["restore", s(&archive), s(&target), "--force"]);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the wait is bounded"
        );
        assert!(
            err.contains(s(&target)) && err.contains("in use"),
            "{mode}: {err}"
        );
        // The writer commits: nothing of it is lost, nothing was restored.
        other.execute_batch("COMMIT").unwrap();
        drop(other);
        assert_eq!(rows_of(&target), [50, 60], "{mode}");
        assert!(restore_leftovers(dir.path()).is_empty());
    }
}

#[test]
fn forced_restore_changes_the_page_size_of_a_wal_database_not_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let archive = source_archive(dir.path(), 8192);
    let target = dir.path().join("wal.db");
    drop(live_target(&target, "wal"));
    ok(&["restore", s(&archive), s(&target), "--force"]);
    let src = dir.path().join("src-8192.db");
    coffer_testkit::compare::assert_same_database(&src, &target);
    let c = Connection::open(&target).unwrap();
    let page: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    assert_eq!(page, 8192);
}

#[test]
fn forced_restore_with_another_page_size_over_a_wal_database_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let archive = source_archive(dir.path(), 8192);
    let target = dir.path().join("wal.db");
    let other = live_target(&target, "wal");
    let err = fails(&["restore", s(&archive), s(&target), "--force"]);
    assert!(
        err.contains(s(&target)) && err.contains("page size"),
        "{err}"
    );
    other.execute("INSERT INTO t VALUES (70, 'x')", []).unwrap();
    drop(other);
    assert_eq!(rows_of(&target), [50, 70]);
}

#[test]
fn forced_restore_over_an_idle_database_takes_the_archive_s_settings() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.db");
    let c = Connection::open(&src).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE t(x INTEGER PRIMARY KEY, s TEXT);
         INSERT INTO t VALUES (1, 'é'), (2, 'ß');
         PRAGMA user_version = 7;",
    )
    .unwrap();
    drop(c);
    let archive = dir.path().join("archive");
    ok(&["backup", s(&src), s(&archive)]);
    let target = dir.path().join("old.db");
    let other = live_target(&target, "delete");
    ok(&["restore", s(&archive), s(&target), "--force"]);
    other.execute("INSERT INTO t VALUES (3, 'ñ')", []).unwrap();
    drop(other);
    assert_eq!(rows_of(&target), [1, 2, 3]);
    let c = Connection::open(&target).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    let enc: String = c.query_row("PRAGMA encoding", [], |r| r.get(0)).unwrap();
    let s3: String = c
        .query_row("SELECT s FROM t WHERE x = 3", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        (mode.as_str(), enc.as_str(), s3.as_str()),
        ("wal", "UTF-8", "ñ")
    );
    c.execute("DELETE FROM t WHERE x = 3", []).unwrap();
    drop(c);
    coffer_testkit::compare::assert_same_database(&src, &target);
}

#[test]
fn forced_restore_of_another_text_encoding_over_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.db");
    let c = Connection::open(&src).unwrap();
    c.execute_batch(
        "PRAGMA encoding = 'UTF-16le';
         CREATE TABLE t(x INTEGER PRIMARY KEY, s TEXT);
         INSERT INTO t VALUES (1, 'é');",
    )
    .unwrap();
    drop(c);
    let archive = dir.path().join("archive");
    ok(&["backup", s(&src), s(&archive)]);
    let target = dir.path().join("old.db");
    let other = live_target(&target, "delete");
    let err = fails(&["restore", s(&archive), s(&target), "--force"]);
    assert!(
        err.contains(s(&target)) && err.contains("encoding"),
        "{err}"
    );
    other.execute("INSERT INTO t VALUES (51, 'x')", []).unwrap();
    drop(other);
    assert_eq!(rows_of(&target), [50, 51]);
    assert!(restore_leftovers(dir.path()).is_empty());
}

#[test]
fn restore_onto_a_symlink_restores_the_database_it_points_to() {
    let dir = tempfile::tempdir().unwrap();
    let archive = source_archive(dir.path(), 4096);
    let src = dir.path().join("src-4096.db");
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    // A link to a file that does not exist yet, one to a file that is not a
    // database, and one to a database.
    let cases = [("new", None), ("junk", Some("not a db")), ("db", Some(""))];
    for (name, content) in cases {
        let pointee = real.join(format!("{name}.db"));
        match content {
            Some("") => drop(live_target(&pointee, "wal")),
            Some(text) => std::fs::write(&pointee, text).unwrap(),
            None => {}
        }
        let link = dir.path().join(format!("{name}-link.db"));
        std::os::unix::fs::symlink(format!("real/{name}.db"), &link).unwrap();
        ok(&["restore", s(&archive), s(&link), "--force"]);
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{name}: the link was replaced"
        );
        coffer_testkit::compare::assert_same_tables(&src, &pointee, &["t", "u"]);
        assert!(restore_leftovers(dir.path()).is_empty());
        assert!(restore_leftovers(&real).is_empty());
    }
    // An import through a link to a file that does not exist yet.
    let link = dir.path().join("import-link.db");
    std::os::unix::fs::symlink("real/imported.db", &link).unwrap();
    ok(&["import", s(&archive), s(&link)]);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    coffer_testkit::compare::assert_same_tables(&src, &real.join("imported.db"), &["t", "u"]);
}

#[test]
fn a_target_inside_its_own_archive_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let archive = source_archive(dir.path(), 4096);
    let before: Vec<_> = walk(&archive);
    for (cmd, target) in [
        ("restore", archive.join("x.db")),
        ("restore", archive.join("tables").join("x.db")),
        ("import", archive.join("y.db")),
    ] {
        let err = fails(&[cmd, s(&archive), s(&target)]);
        assert!(
            err.contains(s(&target)) && err.contains("inside the archive"),
            "{cmd}: {err}"
        );
        assert!(!target.exists());
    }
    // Also through a symlinked directory and a relative path.
    let link = dir.path().join("alias");
    std::os::unix::fs::symlink(&archive, &link).unwrap();
    let err = fails(&["restore", s(&archive), s(&link.join("z.db"))]);
    assert!(err.contains("inside the archive"), "{err}");
    assert_eq!(walk(&archive), before, "the archive was changed");
    ok(&["verify", s(&archive)]);
    // A collection restore into its own repository.
    let db = dir.path().join("src-4096.db");
    ok(&["collection", "create", "c", "--db", s(&db), "--table", "t"]);
    ok(&["collection", "backup", "c", "--db", s(&db)]);
    let repo = dir.path().join("src-4096.db.backups");
    let into = repo.join("collections").join("c").join("x.db");
    let err = fails(&[
        "collection",
        "restore",
        "c",
        "--repo",
        s(&repo),
        "--into",
        s(&into),
    ]);
    assert!(err.contains("inside the archive"), "{err}");
    assert!(!into.exists());
}

#[test]
fn the_next_restore_into_the_directory_removes_a_killed_restore_s_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    create_big_db(&db, 100_000);
    let archive = dir.path().join("archive");
    ok(&["backup", s(&db), s(&archive)]);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut child = spawn(&["restore", s(&archive), s(&out.join("first.db"))]);
    assert!(
        wait_for(&mut child, || big_restore_leftover(&out)),
        "the restore finished before it could be killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!restore_leftovers(&out).is_empty());
    // Another target in the same directory.
    ok(&["restore", s(&archive), s(&out.join("second.db"))]);
    assert!(
        restore_leftovers(&out).is_empty(),
        "left: {:?}",
        restore_leftovers(&out)
    );
}

fn staging_files(dir: &Path) -> Vec<std::path::PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains('#'))
        .collect()
}

#[test]
fn a_killed_backup_s_upload_in_progress_is_removed_with_its_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    create_big_db(&db, 100_000);
    let archive = dir.path().join("archive");
    // Parts larger than one upload chunk go up in several writes, into a
    // staging file `part-….parquet#N` renamed when complete. The kill can
    // land just after the rename: try again then, on a fresh location.
    let mut landed = false;
    for _ in 0..10 {
        let _ = std::fs::remove_dir_all(&archive);
        let mut child = spawn(&["backup", s(&db), s(&archive), "--part-size", "64MiB"]);
        assert!(
            wait_for(&mut child, || !staging_files(&archive).is_empty()),
            "no upload in progress was seen"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        if !staging_files(&archive).is_empty() {
            landed = true;
            break;
        }
    }
    assert!(landed, "no kill left an upload in progress");
    ok(&["backup", s(&db), s(&archive), "--part-size", "64MiB"]);
    assert_eq!(staging_files(&archive), Vec::<std::path::PathBuf>::new());
    ok(&["verify", s(&archive)]);
}

fn empty_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| p.is_dir() && std::fs::read_dir(p).unwrap().next().is_none())
        .collect()
}

#[test]
fn the_next_prune_removes_a_killed_prune_s_empty_directories() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    create_big_db(&db, 20_000);
    let d = s(&db);
    ok(&["collection", "create", "c", "--db", d, "--table", "big"]);
    let repo = format!("{d}.backups");
    let coll = Path::new(&repo).join("collections").join("c");
    for _ in 0..3 {
        ok(&["collection", "backup", "c", "--db", d]);
        std::thread::sleep(Duration::from_millis(1100));
    }
    let mut child = spawn(&[
        "collection",
        "prune",
        "c",
        "--repo",
        &repo,
        "--keep-chains",
        "1",
    ]);
    std::thread::sleep(Duration::from_millis(30));
    child.kill().unwrap();
    child.wait().unwrap();
    // What a kill between removing a backup's last file and its directory
    // leaves: directories without files, which no listing shows.
    std::fs::create_dir_all(coll.join("20260101T000000Z_full/tables/big")).unwrap();
    assert!(!empty_dirs(&coll).is_empty());
    ok(&[
        "collection",
        "prune",
        "c",
        "--repo",
        &repo,
        "--keep-chains",
        "1",
    ]);
    assert_eq!(empty_dirs(&coll), Vec::<std::path::PathBuf>::new());
    let backups: Vec<_> = std::fs::read_dir(&coll)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains('_'))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
}

fn a_failed_append_leaves_the_target_at_its_old_size(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    create_big_db(&db, 8_000);
    let archive = dir.path().join("export");
    ok(&["export", s(&db), s(&archive)]);
    let target = dir.path().join("target.db");
    let c = Connection::open(&target).unwrap();
    c.execute_batch(&format!(
        "PRAGMA journal_mode = {mode};
         CREATE TABLE big(id INTEGER PRIMARY KEY, body TEXT, n INTEGER, r REAL);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 2000)
         INSERT INTO big SELECT i + 100000, hex(randomblob(512)), i, i FROM s;"
    ))
    .unwrap();
    drop(c);
    let size = std::fs::metadata(&target).unwrap().len();
    let digest = coffer_testkit::compare::database_digest(&target);
    // No file may grow past 4 MiB, so the append (about 8 MiB more) fails
    // for want of space. SIGXFSZ is ignored: writes past the limit fail.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f 4096; exec '{}' import '{}' '{}' --mode append",
            env!("CARGO_BIN_EXE_coffer"),
            s(&archive),
            s(&target)
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(s(&target)), "{stderr}");
    for sidecar in ["-journal", "-wal", "-shm"] {
        let p = dir.path().join(format!("target.db{sidecar}"));
        assert!(!p.exists(), "{mode}: {} was left behind", p.display());
    }
    assert_eq!(std::fs::metadata(&target).unwrap().len(), size, "{mode}");
    assert_eq!(
        coffer_testkit::compare::database_digest(&target),
        digest,
        "{mode}"
    );
}

#[test]
fn a_failed_append_leaves_a_rollback_target_at_its_old_size() {
    a_failed_append_leaves_the_target_at_its_old_size("delete");
}

#[test]
fn a_failed_append_leaves_a_wal_target_at_its_old_size() {
    a_failed_append_leaves_the_target_at_its_old_size("wal");
}
