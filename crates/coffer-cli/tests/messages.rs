//! What a user reads when something is wrong: one sentence that names the
//! thing at fault and says what to do (issue 'Hardening', item 7).

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Output};

/// Run `coffer` with the AWS_* variables of this environment removed and
/// `env` set, so a test sees only the credentials it gives.
fn coffer_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.args(args).env_remove("RUST_BACKTRACE");
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn one_error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    stderr
}

fn small_db(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("small.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO users (name) VALUES ('a'), ('b');
         CREATE VIEW user_names AS SELECT name FROM users;",
    )
    .unwrap();
    db
}

#[test]
fn a_full_disk_during_a_backup_or_export_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    create_big_db(&db, 20_000);
    let mount = dir.path().join("tiny");
    std::fs::create_dir(&mount).unwrap();
    // A 1 MiB filesystem in a mount namespace of its own, gone when the
    // shell exits; it needs root (CI runs as root).
    let probe = Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: cannot make a mount namespace here (needs root and unshare)");
        return;
    }
    for command in ["backup", "export"] {
        let archive = mount.join(command);
        let script = format!(
            "mount -t tmpfs -o size=1m tmpfs '{m}' && '{bin}' {command} '{db}' '{a}'; status=$?; ls -A '{m}' >&2; exit $status",
            m = mount.display(),
            bin = env!("CARGO_BIN_EXE_coffer"),
            db = db.display(),
            a = archive.display(),
        );
        let out = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: could not write "),
            "{command}: {stderr}"
        );
        assert!(
            first.contains(archive.to_str().unwrap()),
            "{command}: {stderr}"
        );
        assert!(
            first.contains("the disk is full; free some space"),
            "{command}: {stderr}"
        );
        assert!(!stderr.contains("LocalFileSystem"), "{command}: {stderr}");
        // Nothing of the failed run is left on that filesystem.
        assert_eq!(stderr.lines().count(), 1, "{command} left: {stderr}");
    }
}

#[test]
fn permission_denied_says_so_and_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let db = small_db(dir.path());
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let archive = dir.path().join("archive");
    ok(&["backup", s(&db), s(&archive)]);
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    mode(dir.path(), 0o755);
    mode(&locked, 0o555);
    std::fs::create_dir(dir.path().join("open")).unwrap();
    mode(&dir.path().join("open"), 0o777);
    mode(&archive.join("tables/users/part-00000.parquet"), 0o600);
    // Root passes every permission check: run as nobody then.
    let as_user = |args: &[&str]| -> Output {
        let bin = env!("CARGO_BIN_EXE_coffer");
        let mut cmd = if running_as_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin]);
            c
        } else {
            Command::new(bin)
        };
        cmd.args(args).output().unwrap()
    };
    let usable = as_user(&["--version"]);
    if !usable.status.success() {
        eprintln!("skipped: cannot run coffer as an unprivileged user here");
        return;
    }
    let (new_dir, in_locked, beside) = (
        locked.join("new"),
        locked.join("r.db"),
        dir.path().join("open/r.db"),
    );
    let cases: [(&[&str], &Path); 3] = [
        (&["backup", s(&db), s(&new_dir)], &new_dir),
        (&["restore", s(&archive), s(&in_locked)], &locked),
        (&["restore", s(&archive), s(&beside)], &archive),
    ];
    for (args, named) in cases {
        let err = one_error_line(&as_user(args));
        assert!(err.contains("permission denied"), "{args:?}: {err}");
        assert!(err.contains(s(named)), "{args:?}: {err}");
    }
}

/// Whether this process runs as root (the owner of `/proc/self` is 0).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[test]
fn a_table_option_naming_a_view_or_nothing_says_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let db = small_db(dir.path());
    for command in ["backup", "export"] {
        let dest = dir.path().join(format!("{command}-out"));
        let err = fails(&[command, s(&db), s(&dest), "--table", "user_names"]);
        assert!(
            err.contains("'user_names'") && err.contains("is a view, not a table"),
            "{err}"
        );
        let err = fails(&[command, s(&db), s(&dest), "--table", "nobody"]);
        assert!(err.contains("its tables are 'users'"), "{err}");
        assert!(!err.contains("coffer ls"), "{err}");
        assert!(!dest.exists(), "{command} left {}", dest.display());
    }
}

#[test]
fn s3_without_credentials_says_none_were_found() {
    let out = coffer_env(
        &["ls", "s3://some-bucket/x"],
        &[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")],
    );
    let err = one_error_line(&out);
    assert!(
        err.contains("no S3 credentials were found for s3://some-bucket/x"),
        "{err}"
    );
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
}

#[test]
fn a_refused_s3_endpoint_is_one_sentence_naming_it() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let out = coffer_env(
        &["ls", "s3://some-bucket/x", "--s3-endpoint", &endpoint],
        &[
            ("AWS_ACCESS_KEY_ID", "key"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("COFFER_S3_MAX_RETRIES", "1"),
        ],
    );
    let err = one_error_line(&out);
    assert!(
        err.contains(&format!(
            "could not reach {endpoint} for s3://some-bucket/x"
        )),
        "{err}"
    );
    assert!(err.contains("the connection was refused"), "{err}");
    assert!(err.len() < 300, "{err}");
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn an_invalid_bucket_name_says_so() {
    for url in ["s3://Bad_Bucket/x", "s3://ab/x", "s3://-x-/y"] {
        let out = coffer_env(
            &["ls", url],
            &[
                ("AWS_ACCESS_KEY_ID", "key"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
            ],
        );
        let err = one_error_line(&out);
        assert!(
            err.contains("is not a valid S3 bucket name"),
            "{url}: {err}"
        );
    }
}

#[test]
fn with_json_a_failure_is_one_json_object_on_stdout_too() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let out = coffer(&["ls", s(&missing), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["kind"], "not_found");
    assert!(v["error"].as_str().unwrap().contains(s(&missing)), "{v}");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));

    // A command that printed its own JSON before failing prints no second.
    let db = small_db(dir.path());
    let archive = dir.path().join("archive");
    ok(&["backup", s(&db), s(&archive)]);
    std::fs::write(archive.join("tables/users/part-00000.parquet"), b"damaged").unwrap();
    let out = coffer(&["verify", s(&archive), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
}

#[test]
fn control_characters_in_names_are_escaped_in_human_output() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("evil.db");
    let evil = "evil\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202e}name";
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE \"{evil}\" (id INTEGER PRIMARY KEY); INSERT INTO \"{evil}\" VALUES (1);"
        ))
        .unwrap();
    let archive = dir.path().join("archive");
    ok(&["backup", s(&db), s(&archive)]);
    let listing = ok(&["ls", s(&archive)]);
    assert!(listing.contains("evil\\u{1b}[2J"), "{listing}");
    for bad in ['\u{1b}', '\u{7}', '\u{202e}'] {
        assert!(!listing.contains(bad), "raw {bad:?} in: {listing}");
    }
    let unknown = format!("{evil}x");
    let err = fails(&[
        "restore",
        s(&archive),
        s(&dir.path().join("r.db")),
        "--table",
        &unknown,
    ]);
    assert!(err.contains("evil\\u{1b}[2J"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err}");
    // JSON carries the name exactly (escaped by JSON itself).
    let v: serde_json::Value = serde_json::from_str(&ok(&["ls", s(&archive), "--json"])).unwrap();
    assert!(v.to_string().contains("evil\\u001b[2J"), "{v}");
}

/// Issue 'Hardening' item 9: a backup that waits for another connection's
/// lock says so instead of looking hung.
#[test]
fn a_backup_waiting_for_a_locked_database_says_it_waits() {
    let dir = tempfile::tempdir().unwrap();
    let db = small_db(dir.path());
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder
        .execute_batch(
            "PRAGMA journal_mode = DELETE; BEGIN EXCLUSIVE; INSERT INTO users (name) VALUES ('c');",
        )
        .unwrap();
    let archive = dir.path().join("archive");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["backup", s(&db), s(&archive)])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    holder.execute_batch("COMMIT").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "warning: waiting for {}: another connection holds a lock on it",
            s(&db)
        )),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&["ls", s(&archive), "--json"])).unwrap();
    assert_eq!(
        v["tables"][0]["rows"], 3,
        "the backup read after the commit: {v}"
    );
}

/// Issue 'Hardening' item 9: on a terminal, the restore display names each
/// phase — loading a table, building indexes, checking — and never goes
/// blank while work goes on.
#[test]
fn the_restore_display_names_its_phases_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    create_big_db(&db, 60_000);
    let archive = dir.path().join("archive");
    ok(&["backup", s(&db), s(&archive)]);
    let target = dir.path().join("restored.db");
    // `script` gives the command a terminal and records what it drew.
    let typescript = dir.path().join("typescript");
    let command = format!(
        "'{}' restore '{}' '{}'",
        env!("CARGO_BIN_EXE_coffer"),
        s(&archive),
        s(&target)
    );
    let run = Command::new("script")
        .args(["-q", "-e", "-c", &command, s(&typescript)])
        .env("COLUMNS", "200")
        .output();
    if !run.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: no `script` to give the restore a terminal ({run:?})");
        return;
    }
    let drawn = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
    for phase in [
        "restore",
        "loading big",
        "indexes",
        "creating index big_n",
        "checking",
    ] {
        assert!(drawn.contains(phase), "no '{phase}' in: {drawn}");
    }
}

/// A database URL that carries a password never shows it: not in the
/// error sentence, not in verbose logs, not in `--json` output, whatever
/// command is given it and wherever it stands (issue 'Engine-neutral core',
/// item 3).
#[test]
fn a_password_in_a_database_url_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let db = small_db(dir.path());
    let archive = dir.path().join("archive");
    let ok = coffer_env(
        &["backup", db.to_str().unwrap(), archive.to_str().unwrap()],
        &[],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let url = "postgres://alice:hunter2-secret@db.example:5432/app?sslmode=require";
    let (a, out) = (archive.to_str().unwrap(), dir.path().join("out"));
    let out = out.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["backup", url, out],
        vec!["export", url, out],
        vec!["restore", a, url],
        vec!["import", a, url],
        vec!["collection", "create", "c", "--db", url, "--table", "users"],
        vec!["collection", "backup", "c", "--db", url],
        vec!["collection", "list", "--db", url],
        vec!["collection", "restore", "c", "--repo", out, "--into", url],
        vec!["collection", "drop", "c", "--db", url],
    ];
    for args in commands {
        for extra in [&["-vv"][..], &["--json"][..]] {
            let mut all = args.clone();
            all.extend_from_slice(extra);
            let run = coffer_env(&all, &[("RUST_LOG", "trace")]);
            let printed = format!(
                "{}{}",
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            );
            assert!(!run.status.success(), "{all:?}: {printed}");
            assert!(
                !printed.contains("hunter2"),
                "{all:?} printed the password: {printed}"
            );
        }
    }
    assert!(
        !Path::new(out).exists(),
        "nothing is written for a refused database"
    );
}
