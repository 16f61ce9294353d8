//! `coffer collection ...` through the real binary: the commands and their
//! errors, and the binary killed during a backup and during a restore.

mod common;
use common::*;

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(&all)).unwrap()
}

fn count(db: &Path, sql: &str) -> i64 {
    Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

/// The rows of `big` as one digest (so restores can be compared).
fn digest(db: &Path) -> String {
    let c = Connection::open(db).unwrap();
    c.query_row(
        "SELECT count(*) || ':' || total(n) || ':' || total(length(body)) || ':' || total(id * n) FROM big",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn collection_commands_work_and_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    create_small_db_file(&db);
    let d = s(&db);
    let repo = format!("{d}.backups");

    let err = fails(&["collection", "create", "c", "--db", d, "--table", "nope"]);
    assert!(err.contains("table 'nope' does not exist"), "{err}");
    let err = fails(&["collection", "backup", "c", "--db", d]);
    assert!(err.contains("no collection named 'c'"), "{err}");

    let created = json(&[
        "collection",
        "create",
        "c",
        "--db",
        d,
        "--table",
        "customers",
        "--table",
        "orders",
    ]);
    assert_eq!(
        created["tables"],
        serde_json::json!(["customers", "orders"])
    );
    assert!(
        Path::new(&repo)
            .join("collections/c/collection.json")
            .exists()
    );

    let err = fails(&["collection", "backup", "c", "--db", d, "--incremental"]);
    assert!(err.contains("take a full backup first"), "{err}");
    let full = json(&["collection", "backup", "c", "--db", d]);
    assert_eq!(full["kind"], "full");
    assert_eq!(full["rows"], 8);

    let c = Connection::open(&db).unwrap();
    c.execute_batch(
        "DELETE FROM orders WHERE id = 4;
         UPDATE customers SET id = 10 WHERE id = 3;
         INSERT INTO orders VALUES (6, 1, 5.5, '2024-04-01');",
    )
    .unwrap();
    let inc = json(&["collection", "backup", "c", "--db", d, "--incremental"]);
    assert_eq!(inc["kind"], "incremental");
    assert_eq!(inc["parent"], full["backup"]);
    assert_eq!(inc["rows"], 2);
    assert_eq!(inc["deleted"], 2);

    let listed = json(&["collection", "list", "--repo", &repo]);
    assert_eq!(listed["collections"][0]["name"], "c");
    assert_eq!(listed["collections"][0]["backups"], 2);
    let shown = json(&["collection", "show", "c", "--repo", &repo]);
    assert_eq!(shown["chains"].as_array().unwrap().len(), 1);
    assert_eq!(shown["chains"][0][1]["deleted"], 2);
    let text = ok(&["collection", "show", "c", "--repo", &repo]);
    assert!(
        text.contains("incremental") && text.contains("chain 1"),
        "{text}"
    );

    // Restore the latest, and the full alone, from the repository only.
    let latest = dir.path().join("latest.db");
    ok(&[
        "collection",
        "restore",
        "c",
        "--repo",
        &repo,
        "--into",
        s(&latest),
    ]);
    assert_eq!(
        count(&latest, "SELECT count(*) FROM customers WHERE id = 10"),
        1
    );
    assert_eq!(count(&latest, "SELECT count(*) FROM orders"), 5);
    let first = dir.path().join("first.db");
    let id = full["backup"].as_str().unwrap();
    ok(&[
        "collection",
        "restore",
        "c",
        "--repo",
        &repo,
        "--into",
        s(&first),
        "--backup",
        id,
    ]);
    assert_eq!(
        count(&first, "SELECT count(*) FROM customers WHERE id = 3"),
        1
    );

    for (args, expect) in [
        (
            vec![
                "collection",
                "restore",
                "c",
                "--repo",
                &repo,
                "--into",
                s(&latest),
            ],
            "table 'customers' already exists",
        ),
        (
            vec![
                "collection",
                "restore",
                "c",
                "--repo",
                &repo,
                "--into",
                s(&first),
                "--force",
                "--backup",
                "20000101T000000Z_full",
            ],
            "has no backup 20000101T000000Z_full",
        ),
        (
            vec![
                "collection",
                "restore",
                "x",
                "--repo",
                &repo,
                "--into",
                s(&first),
            ],
            "holds no collection named 'x'",
        ),
        (
            vec![
                "collection",
                "restore",
                "c",
                "--repo",
                &repo,
                "--into",
                s(&first),
                "--table",
                "zzz",
                "--force",
            ],
            "table 'zzz' is not in collection 'c'",
        ),
    ] {
        let err = fails(&args);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    ok(&[
        "collection",
        "restore",
        "c",
        "--repo",
        &repo,
        "--into",
        s(&latest),
        "--force",
        "--backup",
        id,
    ]);
    assert_eq!(count(&latest, "SELECT count(*) FROM orders"), 5);
    assert_eq!(
        count(&latest, "SELECT count(*) FROM orders WHERE id = 6"),
        0
    );

    let pruned = json(&[
        "collection",
        "prune",
        "c",
        "--repo",
        &repo,
        "--keep-chains",
        "1",
    ]);
    assert_eq!(pruned["deleted"], serde_json::json!([]));
    let dropped = json(&["collection", "drop", "c", "--db", d, "--purge"]);
    assert_eq!(dropped["backups_deleted"], 2);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM sqlite_schema WHERE name LIKE '\\_coffer%' ESCAPE '\\'"
        ),
        0
    );
    let err = fails(&["collection", "show", "c", "--repo", &repo]);
    assert!(err.contains("holds no collection named 'c'"), "{err}");
}

fn create_small_db_file(path: &Path) {
    coffer_testkit::create_small_db(path).unwrap();
}

/// The backup directories of collection `name` in `repo`.
fn backup_dirs(repo: &Path, name: &str) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(repo.join("collections").join(name)) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn has_data_files(dir: &Path) -> bool {
    dir.join("tables").is_dir()
        && std::fs::read_dir(dir.join("tables"))
            .unwrap()
            .flatten()
            .any(|e| {
                std::fs::read_dir(e.path())
                    .map(|mut r| r.next().is_some())
                    .unwrap_or(false)
            })
}

#[test]
fn killed_backups_commit_nothing_and_keep_the_change_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    create_big_db(&db, 150_000);
    let d = s(&db);
    let repo = dir.path().join("big.db.backups");
    ok(&["collection", "create", "big", "--db", d, "--table", "big"]);

    // Killed during the full backup: nothing committed.
    let mut child = spawn(&[
        "collection",
        "backup",
        "big",
        "--db",
        d,
        "--part-size",
        "1MiB",
    ]);
    let mid_way = wait_for(&mut child, || {
        backup_dirs(&repo, "big").iter().any(|p| has_data_files(p))
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let committed = |repo: &Path| {
        backup_dirs(repo, "big")
            .iter()
            .filter(|p| p.join("manifest.json").exists())
            .count()
    };
    if mid_way {
        assert_eq!(committed(&repo), 0, "a killed full backup committed");
    }
    // The lock it left names a dead process: the next backup goes ahead.
    ok(&["collection", "backup", "big", "--db", d]);

    // Change a third of the rows, then kill incrementals at several moments.
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "UPDATE big SET n = -n WHERE id % 3 = 0; DELETE FROM big WHERE id % 1000 = 1;",
        )
        .unwrap();
    let logged = count(&db, "SELECT count(*) FROM \"_coffer_log_big\"");
    // A third updated, 150 deleted, 50 of them among the updated.
    assert_eq!(logged, 50_000 + 150 - 50);
    let before = committed(&repo);
    let mut killed_mid_way = 0;
    for delay in [0u64, 20, 80] {
        let mut child = spawn(&[
            "collection",
            "backup",
            "big",
            "--db",
            d,
            "--incremental",
            "--part-size",
            "256KiB",
        ]);
        std::thread::sleep(Duration::from_millis(delay));
        if wait_for(&mut child, || {
            backup_dirs(&repo, "big")
                .iter()
                .any(|p| !p.join("manifest.json").exists() && has_data_files(p))
        }) {
            killed_mid_way += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if committed(&repo) > before {
            break; // it finished first: a complete backup is fine
        }
        assert_eq!(
            count(&db, "SELECT count(*) FROM \"_coffer_log_big\""),
            logged,
            "a killed backup removed change log entries"
        );
    }
    assert!(
        killed_mid_way > 0,
        "no kill landed while the backup was writing"
    );
    let out = json(&["collection", "backup", "big", "--db", d, "--incremental"]);
    assert_eq!(out["deleted"], 150);
    assert_eq!(out["rows"], 50_000 - 50);
    assert_eq!(count(&db, "SELECT count(*) FROM \"_coffer_log_big\""), 0);
    let shown = json(&["collection", "show", "big", "--repo", s(&repo)]);
    assert_eq!(
        shown["incomplete"],
        serde_json::json!([]),
        "leftovers stayed"
    );
    let target = dir.path().join("restored.db");
    ok(&[
        "collection",
        "restore",
        "big",
        "--repo",
        s(&repo),
        "--into",
        s(&target),
    ]);
    assert_eq!(digest(&target), digest(&db));
}

#[test]
fn killed_restores_leave_the_target_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    create_big_db(&db, 150_000);
    let d = s(&db);
    let repo = dir.path().join("big.db.backups");
    ok(&["collection", "create", "big", "--db", d, "--table", "big"]);
    ok(&["collection", "backup", "big", "--db", d]);
    Connection::open(&db)
        .unwrap()
        .execute_batch("UPDATE big SET n = 0 WHERE id % 5 = 0")
        .unwrap();
    ok(&["collection", "backup", "big", "--db", d, "--incremental"]);

    // A new target: killed while it is built beside, nothing appears.
    let target = dir.path().join("new.db");
    let mut child = spawn(&[
        "collection",
        "restore",
        "big",
        "--repo",
        s(&repo),
        "--into",
        s(&target),
    ]);
    let built = wait_for(&mut child, || {
        restore_leftovers(dir.path()).iter().any(|p| {
            std::fs::metadata(p)
                .map(|m| m.len() > 100_000)
                .unwrap_or(false)
        })
    });
    assert!(built, "the restore finished before it could be killed");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !target.exists(),
        "a killed restore left a file at the target"
    );

    // An existing target: killed inside its transaction, it rolls back.
    let existing = dir.path().join("existing.db");
    let c = Connection::open(&existing).unwrap();
    c.execute_batch("CREATE TABLE mine(x); INSERT INTO mine VALUES (1), (2);")
        .unwrap();
    drop(c);
    let journal = dir.path().join("existing.db-journal");
    let before = std::fs::read(&existing).unwrap();
    let mut child = spawn(&[
        "collection",
        "restore",
        "big",
        "--repo",
        s(&repo),
        "--into",
        s(&existing),
    ]);
    let writing = wait_for(&mut child, || {
        std::fs::metadata(&existing)
            .map(|m| m.len() as usize > before.len() + 1_000_000)
            .unwrap_or(false)
            && journal.exists()
    });
    assert!(writing, "the restore finished before it could be killed");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(count(&existing, "SELECT count(*) FROM mine"), 2);
    assert_eq!(
        count(
            &existing,
            "SELECT count(*) FROM sqlite_schema WHERE name = 'big'"
        ),
        0,
        "a killed restore left a table behind"
    );
    let check: String = Connection::open(&existing)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");

    // Both succeed afterwards.
    ok(&[
        "collection",
        "restore",
        "big",
        "--repo",
        s(&repo),
        "--into",
        s(&target),
    ]);
    ok(&[
        "collection",
        "restore",
        "big",
        "--repo",
        s(&repo),
        "--into",
        s(&existing),
    ]);
    assert_eq!(digest(&target), digest(&db));
    assert_eq!(digest(&existing), digest(&db));
    assert_eq!(count(&existing, "SELECT count(*) FROM mine"), 2);
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            n += if p.is_dir() {
                dir_bytes(&p)
            } else {
                p.metadata().unwrap().len()
            };
        }
    }
    n
}

/// `20261124T101500Z_full` → `2026-11-24T10:15:00Z`.
fn id_as_rfc3339(id: &str) -> String {
    let t = &id[..16];
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &t[0..4],
        &t[4..6],
        &t[6..8],
        &t[9..11],
        &t[11..13],
        &t[13..15]
    )
}

/// A collection `c` of a small database in `dir` with two chains taken
/// back to back (several backups start within one second, so their ids
/// are moved on from their start); returns the database, the repository
/// and the ids, oldest first. Checks that what each backup reports as its
/// size is what the repository holds for it.
fn two_quick_chains(dir: &Path) -> (std::path::PathBuf, String, Vec<String>) {
    let db = dir.join("app.db");
    create_small_db_file(&db);
    let d = s(&db);
    let repo = format!("{d}.backups");
    let col = Path::new(&repo).join("collections/c");
    ok(&[
        "collection",
        "create",
        "c",
        "--db",
        d,
        "--table",
        "customers",
        "--table",
        "orders",
    ]);
    let c = Connection::open(&db).unwrap();
    let mut ids = Vec::new();
    for (i, mode) in ["", "--incremental", "", "--incremental", "--incremental"]
        .iter()
        .enumerate()
    {
        c.execute(
            "UPDATE orders SET total = total + 1 WHERE id = ?1",
            [i as i64 % 5 + 1],
        )
        .unwrap();
        let mut args = vec!["collection", "backup", "c", "--db", d];
        if !mode.is_empty() {
            args.push(mode);
        }
        let b = json(&args);
        ids.push(b["backup"].as_str().unwrap().to_string());
        assert_eq!(b["bytes"], dir_bytes(&col.join(&ids[i])), "{}", ids[i]);
    }
    (db, repo, ids)
}

#[test]
fn list_show_and_prune_report_the_same_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, repo, ids) = two_quick_chains(dir.path());
    let col = Path::new(&repo).join("collections/c");
    // The leftover of a killed backup.
    let leftover = col.join("20000101T000000Z_full/tables/orders");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("part-00000.parquet"), [7u8; 100]).unwrap();

    let listed = json(&["collection", "list", "--repo", &repo]);
    let shown = json(&["collection", "show", "c", "--repo", &repo]);
    let total: u64 = ids.iter().map(|id| dir_bytes(&col.join(id))).sum::<u64>() + 100;
    assert_eq!(listed["collections"][0]["bytes"], total);
    assert_eq!(shown["bytes"], total);
    let mut seen = Vec::new();
    for chain in shown["chains"].as_array().unwrap() {
        for b in chain.as_array().unwrap() {
            let id = b["id"].as_str().unwrap();
            assert_eq!(b["bytes"], dir_bytes(&col.join(id)), "{id}");
            seen.push(id.to_string());
        }
    }
    assert_eq!(seen, ids);

    // The dry run and the prune report the same bytes: those the deleted
    // backups and the leftover held.
    let prune = |dry: bool| {
        let mut args = vec![
            "collection",
            "prune",
            "c",
            "--repo",
            &repo,
            "--keep-chains",
            "1",
        ];
        if dry {
            args.push("--dry-run");
        }
        json(&args)
    };
    let planned = prune(true);
    let freed: u64 = ids[..2]
        .iter()
        .map(|id| dir_bytes(&col.join(id)))
        .sum::<u64>()
        + 100;
    assert_eq!(planned["bytes"], freed);
    let done = prune(false);
    assert_eq!(done["deleted"], planned["deleted"]);
    assert_eq!(done["bytes"], planned["bytes"]);
    let listed = json(&["collection", "list", "--repo", &repo]);
    assert_eq!(listed["collections"][0]["bytes"], total - freed);
}

#[test]
fn the_time_in_an_id_is_the_backup_point_and_selects_that_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (_, repo, ids) = two_quick_chains(dir.path());
    let shown = json(&["collection", "show", "c", "--repo", &repo]);
    for chain in shown["chains"].as_array().unwrap() {
        for b in chain.as_array().unwrap() {
            let id = b["id"].as_str().unwrap();
            assert_eq!(b["backup_point"], id_as_rfc3339(id), "{id}");
        }
    }
    // --at with the time in an id (either way of writing it) restores
    // exactly that backup.
    for (i, id) in ids.iter().enumerate() {
        for at in [id_as_rfc3339(id), id[..16].to_string()] {
            let target = dir.path().join(format!("at{i}-{}.db", at.len()));
            let r = json(&[
                "collection",
                "restore",
                "c",
                "--repo",
                &repo,
                "--into",
                s(&target),
                "--at",
                &at,
            ]);
            assert_eq!(r["backup"], id.as_str(), "--at {at}");
        }
    }
}

/// Issue 'Hardening' item 10: `collection show/list/restore/prune` find
/// the repository from the database with --db, as `backup` does.
#[test]
fn read_commands_find_the_repository_from_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    create_small_db_file(&db);
    let d = s(&db);
    ok(&[
        "collection",
        "create",
        "c",
        "--db",
        d,
        "--table",
        "customers",
    ]);
    ok(&["collection", "backup", "c", "--db", d]);
    let listed = json(&["collection", "list", "--db", d]);
    assert_eq!(listed["collections"][0]["name"], "c", "{listed}");
    let shown = json(&["collection", "show", "c", "--db", d]);
    assert_eq!(shown["chains"].as_array().unwrap().len(), 1, "{shown}");
    let into = dir.path().join("copy.db");
    ok(&["collection", "restore", "c", "--db", d, "--into", s(&into)]);
    assert_eq!(
        count(&into, "SELECT count(*) FROM customers"),
        count(&db, "SELECT count(*) FROM customers")
    );
    ok(&[
        "collection",
        "prune",
        "c",
        "--db",
        d,
        "--keep-chains",
        "1",
        "--dry-run",
    ]);
    let err = fails(&["collection", "show", "other", "--db", d]);
    assert!(err.contains("has no collection named 'other'"), "{err}");
}

/// Issue 'Hardening' item 7: a bad value on the command line is a usage
/// error, exit status 2, as the README says.
#[test]
fn a_bad_collection_name_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    create_small_db_file(&db);
    for args in [
        vec![
            "collection",
            "create",
            "bad name",
            "--db",
            s(&db),
            "--table",
            "customers",
        ],
        vec!["collection", "show", ".hidden", "--repo", "x"],
        vec!["collection", "backup", "a/b", "--db", s(&db)],
    ] {
        let out = coffer(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("is not a valid collection name"),
            "{stderr}"
        );
    }
    let into = dir.path().join("copy.db");
    let out = coffer(&[
        "collection",
        "restore",
        "c",
        "--db",
        s(&db),
        "--into",
        s(&into),
        "--at",
        "yesterday",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'yesterday' is not an RFC 3339 time"),
        "{stderr}"
    );
    assert!(!into.exists());
}

#[test]
fn a_resealed_collection_backup_cannot_reach_outside_the_restored_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    create_small_db_file(&db);
    let d = s(&db);
    let repo = format!("{d}.backups");
    ok(&[
        "collection",
        "create",
        "c",
        "--db",
        d,
        "--table",
        "customers",
        "--table",
        "orders",
    ]);
    ok(&["collection", "backup", "c", "--db", d]);
    let backups = backup_dirs(Path::new(&repo), "c");
    assert_eq!(backups.len(), 1, "{backups:?}");
    let (other, bytes) = bystander(dir.path());
    let stray = dir.path().join("stray.db");
    append_to_sql(
        &backups[0].join("manifest.json"),
        "orders_customer",
        &attack(&other, &stray),
    );
    // Into a new database, built beside it, and into an existing one, in place.
    let new = dir.path().join("new.db");
    let existing = dir.path().join("existing.db");
    Connection::open(&existing)
        .unwrap()
        .execute_batch("CREATE TABLE keep(v); INSERT INTO keep VALUES ('precious');")
        .unwrap();
    let before = coffer_testkit::compare::database_digest(&existing);
    for target in [&new, &existing] {
        let err = fails(&[
            "collection",
            "restore",
            "c",
            "--repo",
            &repo,
            "--into",
            s(target),
        ]);
        assert!(
            err.contains("manifest.json") && err.contains("index 'orders_customer'"),
            "{err}"
        );
        untouched(&other, &bytes, &stray);
    }
    assert!(!new.exists(), "a refused restore left {}", new.display());
    assert!(restore_leftovers(dir.path()).is_empty());
    assert_eq!(coffer_testkit::compare::database_digest(&existing), before);
}
