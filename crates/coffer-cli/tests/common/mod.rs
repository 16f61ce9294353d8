//! Helpers shared by the CLI tests: run the real `coffer` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Run `coffer` with `args`; returns its output.
pub fn coffer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run coffer")
}

/// The `coffer` binary as a command to add arguments to.
pub fn coffer_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
    c.env_remove("RUST_BACKTRACE");
    c
}

/// Run `coffer` (with `--json` among `args`) and insist that it
/// succeeds; returns the JSON it printed.
pub fn ok_json(args: &[&str]) -> serde_json::Value {
    let out = ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("coffer {args:?}: not JSON ({e}): {out}"))
}

/// Run `coffer` and insist that it succeeds; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = coffer(args);
    assert!(
        out.status.success(),
        "coffer {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Run `coffer`, insist that it fails with status 1 and a one-line error
/// without a panic or backtrace; returns stderr.
pub fn fails(args: &[&str]) -> String {
    let out = coffer(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "coffer {args:?} should fail with status 1: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "not an error line: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(!stderr.contains("backtrace"), "backtrace: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "more than one line: {stderr}"
    );
    stderr
}

/// A path as &str.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Files in `dir` (not recursive) whose names start with `.` and contain
/// `coffer-restore`: leftovers of a restore.
pub fn restore_leftovers(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .contains("coffer-restore")
        })
        .collect()
}

/// Whether `dir` holds a restore's temporary file of more than 100 kB: a
/// restore well under way, to be killed or interrupted.
pub fn big_restore_leftover(dir: &Path) -> bool {
    restore_leftovers(dir).iter().any(|p| {
        std::fs::metadata(p)
            .map(|m| m.len() > 100_000)
            .unwrap_or(false)
    })
}

/// Every file and directory below `dir`, sorted.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// No file under `dir`, nor its path, shows any of `secrets` (an
/// encrypted archive's or repository's).
pub fn assert_in_no_file(dir: &Path, secrets: &[&str]) {
    for path in walk(dir).into_iter().filter(|p| p.is_file()) {
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        for secret in secrets {
            assert!(
                !text.contains(secret) && !path.to_string_lossy().contains(secret),
                "{} shows '{secret}'",
                path.display()
            );
        }
    }
}

/// A database big enough that backing it up or restoring it takes a
/// noticeable time: `rows` rows of 1 KiB of text with an index.
pub fn create_big_db(path: &Path, rows: u64) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE big(id INTEGER PRIMARY KEY, body TEXT, n INTEGER, r REAL);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {rows})
         INSERT INTO big SELECT i, hex(randomblob(512)), i * 7, i / 3.0 FROM s;
         CREATE INDEX big_n ON big(n);"
    ))
    .unwrap();
}

/// Start `coffer` with `args` in the background (stdout discarded, stderr
/// piped), to be killed or interrupted mid-way.
pub fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait until `cond` holds (true) or the child exits (false); panics after
/// two minutes.
pub fn wait_for(child: &mut Child, cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("timed out waiting");
}

/// Rewrite the manifest at `path` with `edit` and seal it again, as anyone
/// who can write to an archive's location can: its checksum detects damage,
/// not intent.
pub fn reseal(path: &Path, edit: impl FnOnce(&mut coffer::manifest::Manifest)) {
    let mut m = coffer::manifest::Manifest::from_bytes(&std::fs::read(path).unwrap(), "manifest")
        .expect("a sound manifest to tamper with");
    edit(&mut m);
    m.seal();
    std::fs::write(path, m.to_bytes()).unwrap();
}

/// Append `tail` to the SQL of schema object `name` in the manifest at
/// `path`, and reseal it.
pub fn append_to_sql(path: &Path, name: &str, tail: &str) {
    reseal(path, |m| {
        let obj = m
            .objects
            .iter_mut()
            .find(|o| o.name == name)
            .unwrap_or_else(|| panic!("no object {name}"));
        obj.sql.push_str(tail);
    });
}

/// A database unrelated to a restore, for it to attack: `other.db` in
/// `dir` with a table `precious`. Returns its path and its bytes.
pub fn bystander(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("other.db");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("CREATE TABLE precious(x); INSERT INTO precious VALUES (1), (2), (3);")
        .unwrap();
    drop(c);
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// SQL that, appended to a schema object's, attacks `other` (deletes from
/// `precious`, then drops it) and creates the file `stray`.
pub fn attack(other: &Path, stray: &Path) -> String {
    format!(
        "; ATTACH '{}' AS v; DELETE FROM v.precious; DROP TABLE v.precious; ATTACH '{}' AS w; CREATE TABLE w.t(x)",
        s(other),
        s(stray)
    )
}

/// `other` still holds exactly `bytes` and `stray` was not created.
pub fn untouched(other: &Path, bytes: &[u8], stray: &Path) {
    assert_eq!(
        std::fs::read(other).unwrap(),
        bytes,
        "{} was changed",
        other.display()
    );
    let c = rusqlite::Connection::open(other).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM precious", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
    assert!(!stray.exists(), "{} was created", stray.display());
}

/// Wait until another session of `client`'s database waits for a lock
/// while running a query `LIKE like`; panics after a minute or when
/// `child` (the process expected to wait) ends first.
pub fn wait_for_lock_wait(client: &mut postgres::Client, like: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND pid <> pg_backend_pid() AND query LIKE $1",
                &[&like],
            )
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no session waited for a lock running {like}"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the process ended before it waited"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
