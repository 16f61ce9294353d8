//! The real binary killed mid-way: a killed backup leaves nothing that `ls`
//! lists or `restore` accepts; a killed restore leaves no file at the
//! target; Ctrl-C, SIGTERM and SIGHUP stop cleanly with status 128 + N.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn has_files(dir: &Path) -> bool {
    ["tables", "data"]
        .iter()
        .any(|d| dir.join(d).exists() && walk(&dir.join(d)).iter().any(|p| p.is_file()))
}

#[test]
fn killed_backup_leaves_no_archive() {
    killed_backups_leave_no_archive(&[], &[]);
}

#[test]
fn killed_encrypted_backup_leaves_no_archive() {
    let keys = tempfile::tempdir().unwrap();
    let (id, to) = coffer_testkit::keys::identity(keys.path(), "me.key");
    killed_backups_leave_no_archive(&["--encrypt-to", &to], &["--identity", s(&id)]);
}

/// Backups with `extra` killed at several moments; `read` opens the
/// archives.
fn killed_backups_leave_no_archive(extra: &[&str], read: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    create_big_db(&db, 150_000);
    let mut killed_mid_way = 0;
    // Kill at several moments: before any file, while parts are written.
    for (i, delay_ms) in [0u64, 30, 120, 400].into_iter().enumerate() {
        let archive = dir.path().join(format!("archive-{i}"));
        let backup = [
            &["backup", s(&db), s(&archive), "--part-size", "1MiB"],
            extra,
        ]
        .concat();
        let mut child = spawn(&backup);
        if delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(delay_ms));
        }
        if wait_for(&mut child, || has_files(&archive)) {
            killed_mid_way += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if archive.join("manifest.json").exists() {
            continue; // finished before the kill: a complete archive is fine
        }
        let err = fails(&[&["ls", s(&archive)], read].concat());
        assert!(err.contains("no archive"), "{err}");
        let target = dir.path().join(format!("out-{i}.db"));
        fails(&[&["restore", s(&archive), s(&target)], read].concat());
        assert!(!target.exists());
        // A new backup into the same place cleans up and succeeds.
        ok(&backup);
        ok(&[&["verify", s(&archive)], read].concat());
    }
    assert!(
        killed_mid_way > 0,
        "no kill landed while the backup was writing"
    );
}

#[test]
fn killed_restore_leaves_no_target() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    create_big_db(&db, 150_000);
    let archive = dir.path().join("archive");
    ok(&["backup", s(&db), s(&archive)]);
    let target = dir.path().join("restored.db");
    let mut child = spawn(&["restore", s(&archive), s(&target)]);
    assert!(
        wait_for(&mut child, || big_restore_leftover(dir.path())),
        "the restore finished before it could be killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !target.exists(),
        "a killed restore left a file at the target"
    );
    assert!(!restore_leftovers(dir.path()).is_empty());
    // A later restore succeeds and removes the dead run's temporary file.
    ok(&["restore", s(&archive), s(&target)]);
    coffer_testkit::compare::assert_same_database(&db, &target);
    assert!(
        restore_leftovers(dir.path()).is_empty(),
        "left: {:?}",
        restore_leftovers(dir.path())
    );
}

#[test]
fn killed_forced_restore_keeps_the_old_target() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    create_big_db(&db, 150_000);
    let archive = dir.path().join("archive");
    ok(&["backup", s(&db), s(&archive)]);
    let target = dir.path().join("old.db");
    std::fs::write(&target, b"the old database").unwrap();
    let mut child = spawn(&["restore", s(&archive), s(&target), "--force"]);
    assert!(wait_for(&mut child, || big_restore_leftover(dir.path())));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"the old database");
}

/// The stop signals and the exit status each one ends a command with:
/// Ctrl-C, `kill`/systemd/container runtimes, a closed terminal.
const STOP_SIGNALS: [(&str, i32); 3] = [("INT", 130), ("TERM", 143), ("HUP", 129)];

fn send_signal(child: &std::process::Child, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[test]
fn a_stop_signal_stops_a_restore_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    create_big_db(&db, 150_000);
    let archive = dir.path().join("archive");
    ok(&["backup", s(&db), s(&archive)]);
    for (signal, status) in STOP_SIGNALS {
        let target = dir.path().join("restored.db");
        let mut child = spawn(&["restore", s(&archive), s(&target)]);
        assert!(wait_for(&mut child, || big_restore_leftover(dir.path())));
        send_signal(&child, signal);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "SIG{signal}: {stderr}");
        assert!(stderr.contains("interrupted"), "SIG{signal}: {stderr}");
        assert!(!target.exists(), "SIG{signal} left a target");
        assert!(
            restore_leftovers(dir.path()).is_empty(),
            "SIG{signal} left a temporary file"
        );
    }
}

#[test]
fn a_stop_signal_stops_a_backup_and_removes_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    create_big_db(&db, 150_000);
    for (signal, status) in STOP_SIGNALS {
        let archive = dir.path().join(format!("archive-{signal}"));
        let mut child = spawn(&["backup", s(&db), s(&archive), "--part-size", "1MiB"]);
        assert!(wait_for(&mut child, || has_files(&archive)));
        send_signal(&child, signal);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "SIG{signal}: {stderr}");
        assert!(stderr.contains("interrupted"), "SIG{signal}: {stderr}");
        // The directory the backup created is gone with the parts and the lock.
        assert!(
            !archive.exists(),
            "SIG{signal} left behind: {:?}",
            walk(&archive)
        );
    }
}

#[test]
fn a_second_backup_into_a_location_being_written_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    create_big_db(&db, 150_000);
    let archive = dir.path().join("archive");
    let mut first = spawn(&["backup", s(&db), s(&archive), "--part-size", "1MiB"]);
    assert!(wait_for(&mut first, || has_files(&archive)));
    let err = fails(&["backup", s(&db), s(&archive)]);
    assert!(
        err.contains(s(&archive)) && err.contains("is locked by a backup"),
        "{err}"
    );
    // The refused backup removed nothing: the first one commits intact.
    assert!(first.wait().unwrap().success());
    ok(&["verify", s(&archive)]);
    assert!(!archive.join(".coffer-lock.json").exists());
}
