//! Backup collections on a real PostgreSQL cluster, through the real
//! binary: change capture by triggers, incrementals, restores to any
//! backup point, schema changes, drop. The oracle is the database itself:
//! every table's rows as PostgreSQL prints them, recorded at the moments a
//! backup may hold.
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_testkit::pg::{self, Cluster};
use common::{coffer_bin, fails, ok, ok_json};

const SCHEMA: &str = r#"
CREATE SCHEMA "Shop ""x""";
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE "Shop ""x""".orders (
  id bigserial PRIMARY KEY, who text NOT NULL UNIQUE, amount numeric, f float8,
  at timestamptz, tags text[], doc jsonb, raw bytea, m mood,
  twice bigint GENERATED ALWAYS AS (id * 2) STORED);
CREATE INDEX orders_at ON "Shop ""x""".orders (at);
CREATE TABLE items (code text NOT NULL, n int, UNIQUE (code));
CREATE TABLE lines (
  order_id bigint REFERENCES "Shop ""x""".orders (id) ON DELETE CASCADE ON UPDATE CASCADE,
  line int, qty int CHECK (qty >= 0), PRIMARY KEY (order_id, line));
CREATE TABLE nokey (a int);
"#;

const TABLES: [&str; 3] = [r#""Shop ""x""".orders"#, "public.items", "public.lines"];
/// The same tables as coffer names them.
const NAMES: [&str; 3] = [r#"Shop "x".orders"#, "items", "lines"];

/// Text values nobody would pick: quotes, backslashes, control characters,
/// non-ASCII, SQL and CSV syntax, the empty string.
const TEXTS: [&str; 8] = [
    "",
    "plain",
    "it's \"quoted\" \\ back\\slash",
    "tab\tnew\nline\r",
    "ünïcødé ✓ 𝄞",
    "NULL",
    "a,b;c|d",
    "-- not a comment; DROP TABLE x;",
];

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One random row's values for orders (without id).
fn order_values(rng: &mut fastrand::Rng, who: &str) -> String {
    let amount = match rng.u8(0..4) {
        0 => "'NaN'".to_string(),
        1 => "123456789012345678901234567890.000000000000000000001".to_string(),
        2 => "NULL".to_string(),
        _ => format!("{}.{:02}", rng.i64(-100000..100000), rng.u8(0..100)),
    };
    let f = [
        "'Infinity'",
        "'-Infinity'",
        "'NaN'",
        "-0.0",
        "1e308",
        "5e-324",
        "NULL",
        "0.1",
    ][rng.usize(0..8)];
    let at = [
        "'infinity'",
        "'-infinity'",
        "'2000-02-29 12:34:56.789012+05:30'",
        "NULL",
        "now()",
    ][rng.usize(0..5)];
    let t = TEXTS[rng.usize(0..TEXTS.len())];
    let tags = match rng.u8(0..3) {
        0 => "NULL".to_string(),
        1 => "'{}'".to_string(),
        _ => format!("ARRAY[{}, NULL, 'x']", sql_text(t)),
    };
    let doc = match rng.u8(0..3) {
        0 => "NULL".to_string(),
        1 => format!(
            "jsonb_build_object('k', {}, 'n', {})",
            sql_text(t),
            rng.i32(..)
        ),
        _ => "'[1, 2.50, {\"a\": null}]'".to_string(),
    };
    let raw = match rng.u8(0..3) {
        0 => "NULL".to_string(),
        1 => "'\\x00ff00'::bytea".to_string(),
        _ => format!("convert_to({}, 'UTF8')", sql_text(t)),
    };
    let m = ["'sad'", "'ok'", "'happy'", "NULL"][rng.usize(0..4)];
    format!(
        "{}, {amount}, {f}, {at}, {tags}, {doc}, {raw}, {m}",
        sql_text(who)
    )
}

fn setup(c: &Cluster, hint: &str) -> String {
    let db = c.create_database(hint);
    c.execute(&db, SCHEMA);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut sql = String::new();
    for i in 0..60 {
        sql.push_str(&format!(
            "INSERT INTO \"Shop \"\"x\"\"\".orders (who, amount, f, at, tags, doc, raw, m) VALUES ({});\n",
            order_values(&mut rng, &format!("w{i}"))
        ));
    }
    sql.push_str(
        "INSERT INTO items SELECT 'c' || g, g FROM generate_series(1, 50) g;
         INSERT INTO lines SELECT (g % 60) + 1, g, g FROM generate_series(1, 120) g;",
    );
    c.execute(&db, &sql);
    db
}

/// Every collection table's rows as PostgreSQL prints them, sorted; the
/// orders sequence's state.
fn contents(client: &mut postgres::Client, tables: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for t in tables {
        let rows: Vec<String> = client
            .query(&format!("SELECT r::text FROM ONLY {t} r ORDER BY 1"), &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        out.insert(t.to_string(), rows);
    }
    out
}

fn contents_of(c: &Cluster, db: &str, tables: &[&str]) -> BTreeMap<String, Vec<String>> {
    contents(&mut c.client(db).unwrap(), tables)
}

/// What coffer left in the database: its schema, its triggers, its
/// functions.
fn coffer_objects(c: &Cluster, db: &str) -> Vec<String> {
    c.client(db)
        .unwrap()
        .query(
            "SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname LIKE '%coffer%' \
             UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgname LIKE '%coffer%' \
             UNION ALL SELECT 'function ' || proname FROM pg_proc WHERE proname LIKE '%capture%' \
             UNION ALL SELECT 'relation ' || relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                       WHERE nspname LIKE '%coffer%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A new database with what the collection's tables need besides
/// themselves (their enum type), to restore into.
fn target_with_types(c: &Cluster, hint: &str) -> String {
    let db = c.create_database(hint);
    c.execute(&db, "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');");
    db
}

/// The collection's latest backup, restored into a new database with the
/// tables' types, holds what `db` holds now; returns that database.
fn assert_latest_restores_as_source(c: &Cluster, repo: &str, db: &str, hint: &str) -> String {
    let target = target_with_types(c, hint);
    restore(repo, &c.url(&target), &[]);
    assert_eq!(
        contents_of(c, &target, &TABLES),
        contents_of(c, db, &TABLES)
    );
    target
}

fn create(c: &Cluster, db: &str, repo: &str) {
    let mut args = vec!["collection", "create", "main", "--db"];
    let url = c.url(db);
    args.push(&url);
    for n in NAMES {
        args.extend(["--table", n]);
    }
    args.extend(["--repo", repo]);
    ok(&args);
}

fn backup(c: &Cluster, db: &str, mode: &str) -> serde_json::Value {
    ok_json(&[
        "collection",
        "backup",
        "main",
        "--db",
        &c.url(db),
        mode,
        "--json",
    ])
}

fn restore(repo: &str, url: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "collection",
        "restore",
        "main",
        "--repo",
        repo,
        "--into",
        url,
    ];
    args.extend(extra);
    ok(&args)
}

/// The error of an `--incremental` that cannot be taken.
fn refused_incremental(c: &Cluster, db: &str) -> String {
    let url = c.url(db);
    fails(&[
        "collection",
        "backup",
        "main",
        "--db",
        &url,
        "--incremental",
    ])
}

#[test]
fn collections_work_on_postgres_and_restore_every_point_exactly() {
    let c = pg::cluster();
    let db = setup(c, "coll_main");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();

    // A table without a key is refused, and nothing is installed.
    let err = fails(&[
        "collection",
        "create",
        "bad",
        "--db",
        &c.url(&db),
        "--table",
        "items",
        "--table",
        "nokey",
        "--repo",
        repo,
    ]);
    assert!(
        err.contains("'nokey'") && err.contains("primary key"),
        "{err}"
    );
    assert!(
        coffer_objects(c, &db).is_empty(),
        "{:?}",
        coffer_objects(c, &db)
    );
    let create_bad = |table: &str| {
        fails(&[
            "collection",
            "create",
            "bad",
            "--db",
            &c.url(&db),
            "--table",
            table,
            "--repo",
            repo,
        ])
    };
    let err = create_bad("public.items");
    assert!(err.contains("--table 'items'"), "{err}");
    let err = create_bad("nosuch");
    assert!(err.contains("no table 'nosuch'"), "{err}");
    assert!(coffer_objects(c, &db).is_empty());

    create(c, &db, repo);
    let mut points: Vec<(String, BTreeMap<String, Vec<String>>)> = Vec::new();
    let r = backup(c, &db, "--full");
    points.push((
        r["backup"].as_str().unwrap().to_string(),
        contents_of(c, &db, &TABLES),
    ));

    let mut rng = fastrand::Rng::with_seed(11);
    let rounds = [
        // updates, a key change, deletes (one cascading), inserts
        "UPDATE \"Shop \"\"x\"\"\".orders SET amount = amount + 1, m = 'happy' WHERE id % 7 = 0;
         UPDATE \"Shop \"\"x\"\"\".orders SET id = id + 1000 WHERE id = 5;
         UPDATE items SET code = 'renamed' WHERE code = 'c3';
         DELETE FROM \"Shop \"\"x\"\"\".orders WHERE id IN (2, 3);
         DELETE FROM items WHERE n > 45;
         INSERT INTO items VALUES ('c46', -1);",
        // a swap of unique values between two rows, a truncate
        "UPDATE \"Shop \"\"x\"\"\".orders SET who = 'swap' WHERE who = 'w10';
         UPDATE \"Shop \"\"x\"\"\".orders SET who = 'w10' WHERE who = 'w11';
         UPDATE \"Shop \"\"x\"\"\".orders SET who = 'w11' WHERE who = 'swap';
         TRUNCATE lines;
         INSERT INTO lines VALUES (1, 1, 5), (4, 2, 0);",
        // nothing changed at all
        "",
    ];
    for sql in rounds {
        let mut sql = sql.to_string();
        for i in 0..5 {
            sql.push_str(&format!(
                "INSERT INTO \"Shop \"\"x\"\"\".orders (who, amount, f, at, tags, doc, raw, m) VALUES ({});\n",
                order_values(&mut rng, &format!("new{}_{i}", points.len()))
            ));
        }
        c.execute(&db, &sql);
        let r = backup(c, &db, "--incremental");
        assert_eq!(r["kind"], "incremental", "{r}");
        points.push((
            r["backup"].as_str().unwrap().to_string(),
            contents_of(c, &db, &TABLES),
        ));
    }

    // Every backup point restores exactly, into a database that has the
    // tables' type.
    for (id, expected) in &points {
        let target = target_with_types(c, "coll_point");
        restore(repo, &c.url(&target), &["--backup", id]);
        assert_eq!(&contents_of(c, &target, &TABLES), expected, "backup {id}");
        // Secondary indexes, constraints and the sequence came along.
        let mut client = c.client(&target).unwrap();
        let indexes: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_at'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(indexes, 1);
        let fk: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_constraint WHERE contype = 'f'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(fk, 1);
        assert!(coffer_objects(c, &target).is_empty());
    }
    let latest_seq: i64 = c
        .client(&db)
        .unwrap()
        .query_one(
            "SELECT last_value FROM \"Shop \"\"x\"\"\".orders_id_seq",
            &[],
        )
        .unwrap()
        .get(0);
    let target = target_with_types(c, "coll_seq");
    restore(repo, &c.url(&target), &[]);
    let restored_seq: i64 = c
        .client(&target)
        .unwrap()
        .query_one(
            "SELECT last_value FROM \"Shop \"\"x\"\"\".orders_id_seq",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(restored_seq, latest_seq);

    // Some tables, into a database that does not exist yet: created.
    let fresh = format!("{db}_fresh");
    restore(
        repo,
        &c.url(&fresh),
        &["--table", "items", "--backup", &points[1].0],
    );
    assert_eq!(
        contents_of(c, &fresh, &["public.items"])["public.items"],
        points[1].1["public.items"]
    );
    // Over an existing table: refused without --force, replaced with it.
    let err = fails(&[
        "collection",
        "restore",
        "main",
        "--repo",
        repo,
        "--into",
        &c.url(&fresh),
        "--table",
        "items",
    ]);
    assert!(
        err.contains("public.items already exists") && err.contains("--force"),
        "{err}"
    );
    restore(repo, &c.url(&fresh), &["--table", "items", "--force"]);
    assert_eq!(
        contents_of(c, &fresh, &["public.items"])["public.items"],
        points.last().unwrap().1["public.items"]
    );

    // A schema change: an incremental refuses, --auto takes a full.
    c.execute(&db, "ALTER TABLE items ADD COLUMN extra text DEFAULT 'x'");
    let err = refused_incremental(c, &db);
    assert!(
        err.contains("schema of table 'items'") && err.contains("full"),
        "{err}"
    );
    c.execute(&db, "CREATE INDEX lines_qty ON lines (qty)");
    let r = backup(c, &db, "--auto");
    assert_eq!(r["kind"], "full", "{r}");
    // Capture survived the ALTER: the next incremental carries changes.
    c.execute(&db, "UPDATE items SET extra = 'changed' WHERE code = 'c1'");
    let r = backup(c, &db, "--incremental");
    assert_eq!(r["kind"], "incremental");
    assert_latest_restores_as_source(c, repo, &db, "coll_after_alter");

    // A table dropped and created again: an incremental refuses, a full
    // re-installs capture, and incrementals work again.
    c.execute(
        &db,
        "CREATE TABLE items_copy AS SELECT * FROM items; DROP TABLE items; \
         ALTER TABLE items_copy RENAME TO items; ALTER TABLE items ADD PRIMARY KEY (code);",
    );
    let err = refused_incremental(c, &db);
    assert!(
        err.contains("'items'") && err.contains("full backup"),
        "{err}"
    );
    backup(c, &db, "--full");
    c.execute(&db, "DELETE FROM items WHERE code = 'c2'");
    let r = backup(c, &db, "--incremental");
    assert_eq!(r["kind"], "incremental");
    assert_latest_restores_as_source(c, repo, &db, "coll_recreated");

    // An export leaves coffer's own tables out; a whole backup keeps them.
    let out = dir.path().join("export");
    let r = ok_json(&["export", &c.url(&db), out.to_str().unwrap(), "--json"]);
    let names: Vec<&str> = r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"items"), "{r}");
    assert!(!names.iter().any(|n| n.starts_with("_coffer")), "{r}");
    let whole = dir.path().join("whole");
    let r = ok_json(&["backup", &c.url(&db), whole.to_str().unwrap(), "--json"]);
    assert!(
        r["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "_coffer.collections"),
        "{r}"
    );

    // Drop removes everything coffer installed.
    assert!(!coffer_objects(c, &db).is_empty());
    ok(&["collection", "drop", "main", "--db", &c.url(&db)]);
    assert!(
        coffer_objects(c, &db).is_empty(),
        "{:?}",
        coffer_objects(c, &db)
    );
}

/// A transaction open while a backup starts and still open when it
/// commits is invisible to that backup, and so are its log entries: the
/// trim must keep them, or the next incremental loses its changes.
#[test]
fn a_transaction_open_across_a_backup_loses_nothing() {
    let c = pg::cluster();
    let db = setup(c, "coll_straddle");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    create(c, &db, repo);
    backup(c, &db, "--full");
    // Committed changes to c1 and c2 (logged, visible to the next backup).
    c.execute(&db, "UPDATE items SET n = 100 WHERE code IN ('c1', 'c2')");

    // Open when the backup takes its snapshot: `before` commits after the
    // snapshot but before the trim, `after` once the backup is over. Each
    // changes a key the backup sees logged (and trims) and adds a new one.
    let mut before = c.client(&db).unwrap();
    before
        .batch_execute(
            "BEGIN; INSERT INTO items VALUES ('before', 1); UPDATE items SET n = 200 WHERE code = 'c1';",
        )
        .unwrap();
    let mut after = c.client(&db).unwrap();
    after
        .batch_execute(
            "BEGIN; INSERT INTO items VALUES ('after', 1); UPDATE items SET n = 300 WHERE code = 'c2';",
        )
        .unwrap();
    // The collection's record, locked: the backup stops at recording
    // itself as pending — after its snapshot, before its commit and trim.
    let mut holder = c.client(&db).unwrap();
    holder
        .batch_execute("BEGIN; SELECT * FROM _coffer.collections FOR UPDATE")
        .unwrap();
    let mut child = coffer_bin()
        .args([
            "collection",
            "backup",
            "main",
            "--db",
            &c.url(&db),
            "--incremental",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_for_lock_wait(
        &mut c.client(&db).unwrap(),
        "UPDATE _coffer.collections SET pending_backup%",
        &mut child,
    );
    before.batch_execute("COMMIT").unwrap();
    holder.batch_execute("COMMIT").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    after.batch_execute("COMMIT").unwrap();
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id1 = first["backup"].as_str().unwrap().to_string();

    // That backup holds c1 and c2 as committed before it, neither
    // transaction's work.
    let target = target_with_types(c, "coll_straddle_1");
    restore(repo, &c.url(&target), &["--backup", &id1]);
    let items = &contents_of(c, &target, &["public.items"])["public.items"];
    assert!(items.contains(&"(c1,100)".to_string()), "{items:?}");
    assert!(items.contains(&"(c2,100)".to_string()), "{items:?}");
    assert!(
        !items
            .iter()
            .any(|r| r.contains("before") || r.contains("after")),
        "{items:?}"
    );

    // The next incremental carries what both did.
    let r = backup(c, &db, "--incremental");
    assert!(r["rows"].as_u64() >= Some(4), "{r}");
    let target = assert_latest_restores_as_source(c, repo, &db, "coll_straddle_2");
    let items = &contents_of(c, &target, &["public.items"])["public.items"];
    for row in ["(c1,200)", "(c2,300)", "(before,1)", "(after,1)"] {
        assert!(items.contains(&row.to_string()), "{row}: {items:?}");
    }
}

/// Committed states of the tables, in commit order.
type States = Arc<Mutex<Vec<BTreeMap<String, Vec<String>>>>>;

/// One writer connection: random transactions of inserts, updates (key
/// changes included), deletes and truncates. Commits are serialised by the
/// states' lock, and the state is read right after each commit, so the
/// list holds every state the tables were in, in order.
fn writer(c: &Cluster, db: &str, seed: u64, stop: Arc<AtomicBool>, states: States) {
    let mut client = c.client(db).unwrap();
    let mut reader = c.client(db).unwrap();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let mut sql = String::from("BEGIN;");
        for _ in 0..rng.usize(1..6) {
            let id = rng.i64(1..90);
            let code = format!("c{}", rng.u32(1..80));
            sql.push_str(&match rng.u8(0..12) {
                0 | 1 => format!(
                    "INSERT INTO \"Shop \"\"x\"\"\".orders (who, amount, f, at, tags, doc, raw, m) VALUES ({}) ON CONFLICT DO NOTHING;",
                    order_values(&mut rng, &format!("s{seed}_{n}"))
                ),
                2 => format!("UPDATE \"Shop \"\"x\"\"\".orders SET amount = {} WHERE id = {id};", rng.i32(..)),
                3 => format!("UPDATE \"Shop \"\"x\"\"\".orders SET id = {} WHERE id = {id} AND NOT EXISTS (SELECT 1 FROM \"Shop \"\"x\"\"\".orders WHERE id = {0});", rng.i64(100..10000)),
                4 => format!("DELETE FROM \"Shop \"\"x\"\"\".orders WHERE id = {id};"),
                5 => format!("INSERT INTO items VALUES ('{code}', {}) ON CONFLICT (code) DO UPDATE SET n = excluded.n;", rng.i32(..)),
                6 => format!("UPDATE items SET code = '{code}x' WHERE code = '{code}' AND NOT EXISTS (SELECT 1 FROM items WHERE code = '{code}x');"),
                7 => format!("DELETE FROM items WHERE code = '{code}';"),
                8 => format!(
                    "INSERT INTO lines SELECT id, {}, 1 FROM \"Shop \"\"x\"\"\".orders WHERE id = {id} ON CONFLICT DO NOTHING;",
                    rng.i32(0..50)
                ),
                9 => format!("UPDATE lines SET qty = qty + 1 WHERE order_id = {id};"),
                10 => format!("DELETE FROM lines WHERE line = {};", rng.i32(0..50)),
                _ if rng.u8(0..8) == 0 => "TRUNCATE lines;".to_string(),
                _ => format!("UPDATE items SET n = n + 1 WHERE code = '{code}';"),
            });
        }
        // A transaction that truncates holds a lock that the state's reader
        // would wait for: it runs alone.
        let alone = sql.contains("TRUNCATE");
        let early = alone.then(|| states.lock().unwrap());
        if client.batch_execute(&sql).is_err() {
            // A deadlock or a lock timeout between writers: try again.
            let _ = client.batch_execute("ROLLBACK");
            continue;
        }
        let mut guard = early.unwrap_or_else(|| states.lock().unwrap());
        if client.batch_execute("COMMIT").is_ok() {
            guard.push(contents(&mut reader, &TABLES));
        }
        drop(guard);
        std::thread::sleep(Duration::from_micros(rng.u64(0..3000)));
    }
}

#[test]
fn backups_during_concurrent_writes_restore_states_the_database_had() {
    let seed: u64 = std::env::var("COFFER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("seed {seed} (set COFFER_SEED to replay)");
    let c = pg::cluster();
    let db = setup(c, "coll_writers");
    c.execute(
        &db,
        &format!("ALTER DATABASE \"{db}\" SET lock_timeout = '2s'"),
    );
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap().to_string();
    create(c, &db, &repo);
    let states: States = Arc::new(Mutex::new(vec![contents_of(c, &db, &TABLES)]));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|i| {
            let (db, stop, states) = (db.clone(), stop.clone(), states.clone());
            std::thread::spawn(move || writer(pg::cluster(), &db, seed + i, stop, states))
        })
        .collect();
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    let mut taken = Vec::new();
    for i in 0..14 {
        std::thread::sleep(Duration::from_millis(rng.u64(5..80)));
        let mode = if i == 0 || rng.u8(0..5) == 0 {
            "--full"
        } else {
            "--incremental"
        };
        let first = states.lock().unwrap().len() - 1;
        let r = backup(c, &db, mode);
        let last = states.lock().unwrap().len() - 1;
        taken.push((r["backup"].as_str().unwrap().to_string(), first, last));
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    let states = states.lock().unwrap().clone();
    for (id, first, last) in &taken {
        let target = target_with_types(c, "coll_w");
        restore(&repo, &c.url(&target), &["--backup", id]);
        let got = contents_of(c, &target, &TABLES);
        if !states[*first..=*last].contains(&got) {
            for t in TABLES {
                let hit = states[*first..=*last].iter().position(|st| st[t] == got[t]);
                eprintln!("{id}: table {t} matches state {hit:?} of {first}..={last}");
            }
            let o = states[*first..=*last]
                .iter()
                .position(|st| st[TABLES[0]] == got[TABLES[0]])
                .unwrap_or(0);
            let want = &states[*first + o];
            for t in TABLES {
                let extra: Vec<_> = got[t].iter().filter(|r| !want[t].contains(r)).collect();
                let missing: Vec<_> = want[t].iter().filter(|r| !got[t].contains(r)).collect();
                eprintln!("{t}: extra {extra:?} missing {missing:?}");
            }
        }
        assert!(
            states[*first..=*last].contains(&got),
            "seed {seed}: backup {id} restores a state the database never had between states {first} and {last}"
        );
    }
    // After the writers stopped, one more incremental equals the end state.
    backup(c, &db, "--incremental");
    let target = target_with_types(c, "coll_w_end");
    restore(&repo, &c.url(&target), &[]);
    assert_eq!(
        &contents_of(c, &target, &TABLES),
        states.last().unwrap(),
        "seed {seed}"
    );
    assert!(states.len() > 40, "{} states", states.len());
}

/// A database of `setup` with `bulk` more rows in items, its collection
/// `main` created and fully backed up; the temporary directory and the
/// repository's path.
fn backed_up(hint: &str, bulk: u32) -> (&'static Cluster, String, tempfile::TempDir, String) {
    let c = pg::cluster();
    let db = setup(c, hint);
    c.execute(
        &db,
        &format!("INSERT INTO items SELECT 'bulk' || g, g FROM generate_series(1, {bulk}) g;"),
    );
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").to_str().unwrap().to_string();
    create(c, &db, &repo);
    backup(c, &db, "--full");
    (c, db, dir, repo)
}

/// Run the binary with `args`, killing it after `delay_ms`.
fn killed_after(args: &[&str], delay_ms: u64) {
    let mut child = coffer_bin()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(delay_ms));
    let _ = child.kill();
    child.wait().unwrap();
}

/// The real binary killed during a backup commits nothing and loses no
/// change; killed during a restore, the target is absent or complete.
#[test]
fn killed_backups_and_restores_lose_nothing() {
    let (c, db, _dir, repo) = backed_up("coll_killed", 200_000);
    let repo = repo.as_str();
    let mut step = 0;
    for delay_ms in [0u64, 30, 80, 150, 250, 400] {
        step += 1;
        c.execute(
            &db,
            &format!("UPDATE items SET n = n + 1 WHERE code LIKE 'bulk{step}%'; DELETE FROM items WHERE code = 'c{step}';"),
        );
        let mode = if step % 2 == 0 {
            "--full"
        } else {
            "--incremental"
        };
        killed_after(
            &["collection", "backup", "main", "--db", &c.url(&db), mode],
            delay_ms,
        );
    }
    // Whatever the kills left, the next backup settles it and the chain
    // restores the database as it is.
    backup(c, &db, "--auto");
    let target = format!("{db}_restored");
    restore(repo, &c.url(&target), &["--table", "items"]);
    let expected = contents_of(c, &db, &["public.items"]);
    assert_eq!(contents_of(c, &target, &["public.items"]), expected);

    // Restores killed at any instant: the target absent or complete.
    for delay_ms in [0u64, 50, 120, 250, 500, 800] {
        let target = format!("{db}_k{delay_ms}");
        let url = c.url(&target);
        let args = [
            "collection",
            "restore",
            "main",
            "--repo",
            repo,
            "--into",
            &url,
            "--table",
            "items",
        ];
        killed_after(&args, delay_ms);
        if let Ok(mut client) = c.client(&target) {
            let present: bool = client
                .query_one("SELECT to_regclass('public.items') IS NOT NULL", &[])
                .unwrap()
                .get(0);
            assert!(
                present,
                "killed after {delay_ms} ms: an empty database at the target"
            );
            assert_eq!(
                contents(&mut client, &["public.items"]),
                expected,
                "killed after {delay_ms} ms"
            );
        }
    }
}

/// Two backups of one collection at once: one waits its turn or fails
/// clearly, none corrupts the other, and both chains restore.
#[test]
fn two_backups_of_one_collection_at_once() {
    let (c, db, _dir, repo) = backed_up("coll_twice", 100_000);
    let repo = repo.as_str();
    c.execute(&db, "UPDATE items SET n = -n WHERE code LIKE 'bulk1%'");
    let spawn = || {
        coffer_bin()
            .args([
                "collection",
                "backup",
                "main",
                "--db",
                &c.url(&db),
                "--auto",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let succeeded = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert!(succeeded >= 1);
    for o in [&a, &b] {
        if !o.status.success() {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.starts_with("error: ") && err.contains("locked"),
                "{err}"
            );
        }
    }
    let target = format!("{db}_restored");
    restore(repo, &c.url(&target), &["--table", "items"]);
    assert_eq!(
        contents_of(c, &target, &["public.items"]),
        contents_of(c, &db, &["public.items"])
    );
}

/// Capture needs no superuser: the tables' owner sets it up, and a role
/// that may only write the table writes through the triggers.
#[test]
fn capture_needs_no_superuser() {
    let c = pg::cluster();
    let db = c.create_database("coll_owner");
    c.execute(
        &db,
        &format!(
            "CREATE ROLE coll_owner_{db} LOGIN; CREATE ROLE coll_app_{db} LOGIN;
             GRANT CREATE ON DATABASE \"{db}\" TO coll_owner_{db};
             GRANT CREATE ON SCHEMA public TO coll_owner_{db};
             SET ROLE coll_owner_{db};
             CREATE TABLE t (id int PRIMARY KEY, v text);
             GRANT INSERT, UPDATE, DELETE, SELECT ON t TO coll_app_{db};
             INSERT INTO t VALUES (1, 'a');"
        ),
    );
    // Over the Unix socket every role is trusted.
    let socket = c.socket_url(&db);
    let query = socket.split_once('?').unwrap().1.to_string();
    let as_role = |role: &str| format!("postgres://{role}@/{db}?{query}");
    let owner = as_role(&format!("coll_owner_{db}"));
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    ok(&[
        "collection",
        "create",
        "main",
        "--db",
        &owner,
        "--table",
        "t",
        "--repo",
        repo,
    ]);
    ok(&["collection", "backup", "main", "--db", &owner]);
    let param = |k: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let mut client = postgres::Client::connect(
        &format!(
            "host={} port={} user=coll_app_{db} dbname={db}",
            param("host"),
            param("port")
        ),
        postgres::NoTls,
    )
    .unwrap();
    client
        .batch_execute("INSERT INTO t VALUES (2, 'b'); UPDATE t SET v = 'z' WHERE id = 1; DELETE FROM t WHERE id = 2")
        .unwrap();
    let r = ok_json(&[
        "collection",
        "backup",
        "main",
        "--db",
        &owner,
        "--incremental",
        "--json",
    ]);
    assert_eq!(r["kind"], "incremental");
    let target = format!("{db}_restored");
    restore(repo, &c.url(&target), &[]);
    assert_eq!(contents_of(c, &target, &["t"]), contents_of(c, &db, &["t"]));
    ok(&["collection", "drop", "main", "--db", &owner]);
    assert!(coffer_objects(c, &db).is_empty());
}

/// A collection backup whose manifest was rewritten and sealed again (as
/// anyone who can write to the repository can) is refused, naming the
/// object and the file, and creates nothing: neither a new database nor
/// anything in an existing one, nor anything outside them.
#[test]
fn a_tampered_collection_backup_cannot_act_outside_the_database_it_builds() {
    let (c, db, dir, repo) = backed_up("coll_tamper", 10);
    let full = std::fs::read_dir(std::path::Path::new(&repo).join("collections/main"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("_full"))
        .unwrap();
    let manifest = full.join("manifest.json");
    let pristine = std::fs::read(&manifest).unwrap();
    let stray = dir.path().join("stray");
    let existing = c.create_database("coll_tamper_existing");
    c.execute(
        &existing,
        "CREATE TABLE keep (v text); INSERT INTO keep VALUES ('precious');",
    );
    let attacks = [
        (
            "items",
            format!(";\nALTER ROLE {} SUPERUSER;", pg::PASSWORD_USER),
        ),
        ("items", format!(";\nDROP DATABASE \"{db}\";")),
        (
            "items items_code_key",
            format!(";\nCOPY (SELECT 1) TO PROGRAM 'touch {}'", stray.display()),
        ),
        (
            "lines",
            ";\nDO $$ BEGIN RAISE NOTICE 'x'; END $$;".to_string(),
        ),
    ];
    for (i, (object, attack)) in attacks.iter().enumerate() {
        std::fs::write(&manifest, &pristine).unwrap();
        common::append_to_sql(&manifest, object, attack);
        let fresh = format!("{db}_new{i}");
        for target in [&fresh, &existing] {
            let err = fails(&[
                "collection",
                "restore",
                "main",
                "--repo",
                &repo,
                "--into",
                &c.url(target),
                "--table",
                "items",
                "--table",
                "lines",
            ]);
            assert!(
                err.contains(object) && err.contains("manifest.json") && err.contains("altered"),
                "{err}"
            );
        }
        assert!(
            c.client(&fresh).is_err(),
            "a refused restore created {fresh}"
        );
        assert_eq!(
            contents_of(c, &existing, &["keep"])["keep"],
            vec!["(precious)".to_string()]
        );
        let tables: i64 = c
            .client(&existing)
            .unwrap()
            .query_one("SELECT count(*) FROM pg_tables WHERE schemaname <> 'pg_catalog' AND schemaname <> 'information_schema'", &[])
            .unwrap()
            .get(0);
        assert_eq!(tables, 1, "a refused restore left tables in {existing}");
    }
    // A table pointed at another of the target's: with --force that one
    // would be dropped; refused.
    std::fs::write(&manifest, &pristine).unwrap();
    common::reseal(&manifest, |m| {
        m.settings["postgres"]["tables"]["items"] = serde_json::json!(["public", "keep"]);
    });
    let err = fails(&[
        "collection",
        "restore",
        "main",
        "--repo",
        &repo,
        "--into",
        &c.url(&existing),
        "--table",
        "items",
        "--force",
    ]);
    assert!(err.contains("'items'") && err.contains("altered"), "{err}");
    assert_eq!(
        contents_of(c, &existing, &["keep"])["keep"],
        vec!["(precious)".to_string()]
    );
    assert!(c.client(&db).is_ok());
    assert!(!stray.exists());
    // Untampered, into a database without the tables' enum type: said,
    // with what to do, and nothing created.
    std::fs::write(&manifest, &pristine).unwrap();
    let bare = format!("{db}_bare");
    let err = fails(&[
        "collection",
        "restore",
        "main",
        "--repo",
        &repo,
        "--into",
        &c.url(&bare),
    ]);
    assert!(
        err.contains("mood") && err.contains("types, functions and extensions"),
        "{err}"
    );
    assert!(c.client(&bare).is_err());
    let superuser: bool = c
        .client("postgres")
        .unwrap()
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = $1",
            &[&pg::PASSWORD_USER],
        )
        .unwrap()
        .get(0);
    assert!(!superuser);
}

#[test]
fn an_encrypted_collection_backs_up_without_a_key_and_restores_every_point_exactly() {
    let c = pg::cluster();
    let db = setup(c, "sealed");
    let keys = tempfile::tempdir().unwrap();
    let (id, to) = coffer_testkit::keys::identity(keys.path(), "me.key");
    let repo_dir = tempfile::tempdir().unwrap();
    let repo = repo_dir.path().display().to_string();
    let url = c.url(&db);
    let mut args = vec!["collection", "create", "main", "--db", &url];
    for n in NAMES {
        args.extend(["--table", n]);
    }
    args.extend(["--repo", &repo, "--encrypt-to", &to]);
    ok(&args);
    let rounds = [
        "",
        r#"UPDATE "Shop ""x""".orders SET amount = 'NaN', tags = ARRAY[NULL, ''] WHERE id % 5 = 0;
           DELETE FROM "Shop ""x""".orders WHERE id % 7 = 0;
           UPDATE items SET code = code || '!' WHERE n < 10;"#,
        // A swap of unique values and a truncate in one backup.
        r#"UPDATE items SET code = 'swap' WHERE code = 'c20';
           UPDATE items SET code = 'c20' WHERE code = 'c21';
           UPDATE items SET code = 'c21' WHERE code = 'swap';
           TRUNCATE lines;"#,
        // A column added: capture goes on, the next backup is a full one.
        r#"ALTER TABLE items ADD COLUMN extra text DEFAULT 'x';
           INSERT INTO items VALUES ('new', 1, NULL);"#,
        "DELETE FROM items WHERE n > 40;",
    ];
    let mut points = Vec::new();
    for (i, sql) in rounds.iter().enumerate() {
        if !sql.is_empty() {
            c.execute(&db, sql);
        }
        let b = backup(c, &db, "--auto");
        let want = if i == 0 || i == 3 {
            "full"
        } else {
            "incremental"
        };
        assert_eq!(b["kind"], want, "round {i}: {b}");
        points.push((
            b["backup"].as_str().unwrap().to_string(),
            contents_of(c, &db, &TABLES),
        ));
    }
    // Nothing of the schema or the data is readable in the repository.
    common::assert_in_no_file(
        repo_dir.path(),
        &["Shop", "orders", "items", "lines", "happy"],
    );
    let target = target_with_types(c, "sealed_nokey");
    let err = fails(&[
        "collection",
        "restore",
        "main",
        "--repo",
        &repo,
        "--into",
        &c.url(&target),
    ]);
    assert!(err.contains("--identity"), "{err}");
    for (i, (point, want)) in points.iter().enumerate() {
        let target = target_with_types(c, &format!("sealed_{i}"));
        restore(
            &repo,
            &c.url(&target),
            &["--backup", point, "--identity", &id.display().to_string()],
        );
        assert_eq!(&contents_of(c, &target, &TABLES), want, "point {point}");
    }
}
