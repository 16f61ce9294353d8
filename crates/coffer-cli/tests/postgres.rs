//! The `coffer` binary against a real PostgreSQL cluster: an export is one
//! consistent snapshot however many connections read it, a password in the
//! URL is never printed or stored, and the export imports into SQLite.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use coffer_testkit::pg::{self, PASSWORD_USER};

fn coffer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(args)
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every file under `dir`, as text where it is text.
fn everything_written(dir: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.push_str(&everything_written(&path));
        } else {
            all.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    all
}

#[test]
fn an_export_is_one_moment_while_a_writer_commits() {
    let c = pg::cluster();
    let db = c.create_database("moment");
    // Every transaction adds one row to each table: a snapshot that mixed
    // moments would see different counts.
    c.execute(
        &db,
        "CREATE TABLE a (id bigserial PRIMARY KEY, pad text);
         CREATE TABLE b (id bigserial PRIMARY KEY, pad text);
         CREATE SCHEMA s; CREATE TABLE s.c (id bigserial PRIMARY KEY, pad text);
         INSERT INTO a (pad) SELECT repeat('x', 200) FROM generate_series(1, 20000);
         INSERT INTO b (pad) SELECT repeat('x', 200) FROM generate_series(1, 20000);
         INSERT INTO s.c (pad) SELECT repeat('x', 200) FROM generate_series(1, 20000);",
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, mut client) = (stop.clone(), c.client(&db).unwrap());
        std::thread::spawn(move || {
            let mut commits = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                client
                    .batch_execute(
                        "BEGIN; INSERT INTO a (pad) VALUES ('w'); INSERT INTO b (pad) VALUES ('w');
                         INSERT INTO s.c (pad) VALUES ('w'); COMMIT;",
                    )
                    .unwrap();
                commits += 1;
            }
            commits
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let mut counts = Vec::new();
    for (i, scanners) in ["1", "3"].iter().enumerate() {
        let dest = dir.path().join(format!("export-{i}"));
        let out = coffer(&[
            "export",
            &c.url(&db),
            dest.to_str().unwrap(),
            "--scanners",
            scanners,
            "--json",
        ]);
        let report = ok(&out);
        let rows: Vec<u64> = ["a", "b", "s.c"]
            .iter()
            .map(|t| {
                report["tables"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["name"] == *t)
                    .unwrap_or_else(|| panic!("no table {t} in {report}"))["rows"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert!(
            rows.iter().all(|&r| r == rows[0]),
            "one moment means one count: {rows:?}"
        );
        counts.push(rows[0]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let commits = writer.join().unwrap();
    assert!(commits > 0, "the writer committed while the exports ran");
    assert!(counts.iter().all(|&n| n >= 20_000));
}

#[test]
fn a_password_in_the_url_is_never_printed_or_stored() {
    let c = pg::cluster();
    let db = c.create_database("secret");
    c.execute(
        &db,
        &format!(
            "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one');
             GRANT SELECT ON t TO {PASSWORD_USER};"
        ),
    );
    let password = c.password();
    let url = format!(
        "postgres://{PASSWORD_USER}:{password}@127.0.0.1:{}/{db}?sslmode=disable",
        c.port
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("export");
    let out = coffer(&["export", &url, dest.to_str().unwrap(), "-vv"]);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains(&format!("{PASSWORD_USER}@127.0.0.1")),
        "{printed}"
    );
    assert!(
        !printed.contains(password),
        "the password was printed: {printed}"
    );
    assert!(
        !everything_written(&dest).contains(password),
        "the password was stored in the export"
    );
    // A wrong one: one sentence naming the server, no password.
    let wrong = url.replace(password, "not-the-password-xyz");
    let out = coffer(&["export", &wrong, dir.path().join("x").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("not-the-password-xyz"), "{stderr}");
    assert!(!dir.path().join("x").exists());
}

#[test]
fn a_backup_of_a_database_with_large_objects_is_refused_naming_them() {
    let c = pg::cluster();
    let db = c.create_database("refused");
    c.execute(
        &db,
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1); SELECT lo_from_bytea(0, '\\x00ff');",
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("b");
    let out = coffer(&["backup", &c.url(&db), dest.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("1 large object") && stderr.contains("coffer export"),
        "{stderr}"
    );
    assert!(!dest.exists(), "nothing is left behind");
    // An export of its tables is unaffected.
    let export = dir.path().join("e");
    ok(&coffer(&[
        "export",
        &c.url(&db),
        export.to_str().unwrap(),
        "--json",
    ]));
}

#[test]
fn a_postgres_export_imports_into_sqlite() {
    let c = pg::cluster();
    let db = c.create_database("tosqlite");
    c.execute(
        &db,
        "CREATE TABLE items (id int8 PRIMARY KEY, name text NOT NULL, price numeric(10,2),
                             seen timestamp, day date, weight float8, raw bytea);
         INSERT INTO items VALUES
           (1, 'ä ✓', 12.50, '2024-01-02 03:04:05.678901', '2024-02-29', -0.5, '\\x00ff'),
           (2, '', NULL, NULL, NULL, NULL, '\\x'),
           (3, 'x''y', -0.01, '1999-12-31 23:59:59', '0001-01-01', 1e300, NULL);
         CREATE TABLE events (id int8 PRIMARY KEY, at timestamptz);
         INSERT INTO events VALUES (1, now());",
    );
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    ok(&coffer(&[
        "export",
        &c.url(&db),
        export.to_str().unwrap(),
        "--json",
    ]));
    let target = dir.path().join("copy.db");
    let (e, t) = (export.to_str().unwrap(), target.to_str().unwrap());
    ok(&coffer(&["import", e, t, "--table", "items", "--json"]));
    let conn = rusqlite::Connection::open(&target).unwrap();
    type Row = (
        i64,
        String,
        Option<f64>,
        Option<String>,
        Option<String>,
        Option<f64>,
        Option<Vec<u8>>,
    );
    let rows: Vec<Row> = conn
        .prepare("SELECT id, name, price, seen, day, weight, raw FROM items ORDER BY id")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                1,
                "ä ✓".to_string(),
                Some(12.5),
                Some("2024-01-02 03:04:05.678901".to_string()),
                Some("2024-02-29".to_string()),
                Some(-0.5),
                Some(vec![0, 0xff])
            ),
            (2, String::new(), None, None, None, None, Some(Vec::new())),
            (
                3,
                "x'y".to_string(),
                Some(-0.01),
                Some("1999-12-31 23:59:59".to_string()),
                Some("0001-01-01".to_string()),
                Some(1e300),
                None
            ),
        ]
    );
    drop(conn);
    // Types SQLite has no storage for are stored exactly as integers, reals
    // or text (in TEXT columns, which SQLite never turns into numbers).
    c.execute(
        &db,
        "CREATE TABLE typed (id int8 PRIMARY KEY, ok bool, small int2, mid int4, f real,
                             at timestamptz, t time, iv interval, u uuid, j jsonb,
                             n numeric, day date, tags text[], m money);
         INSERT INTO typed VALUES
           (1, true, -32768, 7, 0.1, '2024-01-02 03:04:05.5+02', '24:00:00',
            '1 mon -2 days 00:00:00.5', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
            '{\"a\": 1}', 123456789012345678901234567890.5, 'infinity',
            '{a,\"b c\",NULL}', 12.34),
           (2, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '1', '-Infinity', NULL, '{}', NULL);
         CREATE TABLE bad (id int8 PRIMARY KEY, n numeric);
         INSERT INTO bad VALUES (1, 1), (2, 'NaN');",
    );
    let export = dir.path().join("export2");
    let e = export.to_str().unwrap();
    ok(&coffer(&["export", &c.url(&db), e, "--json"]));
    ok(&coffer(&["import", e, t, "--table", "typed", "--json"]));
    let conn = rusqlite::Connection::open(&target).unwrap();
    let got: Vec<Vec<rusqlite::types::Value>> = conn
        .prepare("SELECT * FROM typed ORDER BY id")
        .unwrap()
        .query_map([], |r| (0..14).map(|i| r.get(i)).collect())
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    use rusqlite::types::Value::{Integer as I, Null, Real as R, Text as T};
    let text = |s: &str| T(s.to_string());
    assert_eq!(
        got,
        vec![
            vec![
                I(1),
                I(1),
                I(-32768),
                I(7),
                R(f64::from(0.1f32)),
                text("2024-01-02 01:04:05.500000+00:00"),
                text("24:00:00"),
                text("P1M-2DT0.5S"),
                text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                text(r#"{"a": 1}"#),
                text("123456789012345678901234567890.5"),
                text("infinity"),
                text(r#"{a,"b c",NULL}"#),
                text("$12.34"),
            ],
            vec![
                I(2),
                I(0),
                Null,
                Null,
                Null,
                Null,
                Null,
                Null,
                Null,
                text("1"),
                text("-Infinity"),
                Null,
                text("{}"),
                Null,
            ],
        ]
    );
    drop(conn);
    // NaN has no exact SQLite value: one sentence naming table, column and
    // row, and the target as it was.
    let before = std::fs::read(&target).unwrap();
    let out = coffer(&["import", e, t, "--table", "bad"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("row 2 of table 'bad'") && stderr.contains("'n'"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), before);
}

#[test]
fn bad_postgres_input_gets_one_sentence() {
    let c = pg::cluster();
    let db = c.create_database("badinput");
    c.execute(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); CREATE SCHEMA s; CREATE TABLE s.u (x int);",
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("x");
    let d = dest.to_str().unwrap();
    // A port nothing listens on: the server is named, nothing is written.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let unreachable = format!("postgres://someone@127.0.0.1:{port}/db?sslmode=disable");
    let missing = c.url("no_such_database");
    for (args, expect) in [
        (
            vec!["export", unreachable.as_str(), d],
            format!("127.0.0.1:{port}"),
        ),
        (
            vec!["export", missing.as_str(), d],
            "no_such_database".to_string(),
        ),
        (
            vec!["export", &c.url(&db), d, "--table", "nosuch"],
            "'nosuch'".to_string(),
        ),
    ] {
        let out = coffer(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(1 | 2)),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(&expect), "{args:?}: {stderr}");
        assert!(!dest.exists(), "{args:?} left {d}");
    }
    // The tables of another schema are named schema.name and can be chosen.
    let out = coffer(&["export", &c.url(&db), d, "--table", "s.u", "--json"]);
    let report = ok(&out);
    assert_eq!(report["tables"][0]["name"], "s.u", "{report}");
    let ls = ok(&coffer(&["ls", d, "--json"]));
    assert_eq!(ls["source"]["engine"], "postgres", "{ls}");
    assert!(
        ls["source"]["position"].is_string(),
        "the WAL position: {ls}"
    );
    ok(&coffer(&["verify", d, "--json"]));
    // A restore into PostgreSQL says it cannot be done yet, and why.
    let sqlite = dir.path().join("small.db");
    rusqlite::Connection::open(&sqlite)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    let backup = dir.path().join("backup");
    let b = backup.to_str().unwrap();
    ok(&coffer(&["backup", sqlite.to_str().unwrap(), b, "--json"]));
    let out = coffer(&["restore", b, &c.url(&db)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("sqlite database and cannot be restored as postgres")
            || stderr.contains("PostgreSQL"),
        "{stderr}"
    );
}

#[test]
fn a_large_table_is_read_in_pieces_on_several_connections() {
    let c = pg::cluster();
    let db = c.create_database("pieces");
    // About 6,000 pages (48 MB): more than two pieces' minimum.
    c.execute(
        &db,
        "CREATE TABLE big (id int8 PRIMARY KEY, pad text);
         INSERT INTO big SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 48000) g;",
    );
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    let e = export.to_str().unwrap();
    ok(&coffer(&[
        "export",
        &c.url(&db),
        e,
        "--scanners",
        "3",
        "--json",
    ]));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(export.join("manifest.json")).unwrap()).unwrap();
    let table = &manifest["tables"][0];
    assert_eq!(table["rows"], 48000);
    let paths: Vec<&str> = table["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with("part-100000.parquet")),
        "the table was read in pieces: {paths:?}"
    );
    // Every row once: the pieces neither overlap nor leave a gap.
    let target = dir.path().join("copy.db");
    ok(&coffer(&["import", e, target.to_str().unwrap(), "--json"]));
    let conn = rusqlite::Connection::open(&target).unwrap();
    let (n, distinct, sum): (i64, i64, i64) = conn
        .query_row(
            "SELECT count(*), count(DISTINCT id), sum(id) FROM big",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((n, distinct, sum), (48000, 48000, 48000 * 48001 / 2));
}

/// A TRUNCATE that commits just as a backup starts is in it whole or not
/// at all. TRUNCATE is not MVCC-safe: a snapshot taken before it commits
/// sees the table empty afterwards, beside the other tables as they were,
/// unless the tables are locked before the snapshot is taken.
#[test]
fn a_truncate_committing_as_a_backup_starts_is_in_it_whole_or_not_at_all() {
    let c = pg::cluster();
    let db = c.create_database("truncated");
    c.execute(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 1000);
         CREATE TABLE u (id int PRIMARY KEY);",
    );
    // Truncate t and add a row to u, together: a backup holds both or neither.
    let mut truncating = c.client(&db).unwrap();
    truncating
        .batch_execute("BEGIN; TRUNCATE t; INSERT INTO u VALUES (1);")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("backup");
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["backup", &c.url(&db), out.to_str().unwrap(), "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Commit once the backup waits for the truncate's lock.
    common::wait_for_lock_wait(&mut c.client(&db).unwrap(), "%", &mut child);
    truncating.batch_execute("COMMIT").unwrap();
    let r = ok(&child.wait_with_output().unwrap());
    let rows = |name: &str| {
        r["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{r}"))["rows"]
            .as_u64()
            .unwrap()
    };
    assert_eq!((rows("t"), rows("u")), (0, 1), "{r}");
}
