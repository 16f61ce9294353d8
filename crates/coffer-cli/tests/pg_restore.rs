//! `coffer backup` of a real PostgreSQL database and `coffer restore` into a
//! new one on the same server. The oracle is PostgreSQL's own tools: after a
//! restore, `pg_dump --schema-only` of source and target are the same, every
//! table's rows are the same as PostgreSQL prints them, and so are the
//! sequences. A restore that fails for any reason leaves nothing behind.
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use coffer_testkit::pg::{self, Cluster, NASTY_SQL, PASSWORD_USER};
use common::{append_to_sql, coffer_bin, fails, ok_json as ok, reseal};

/// Every table's and materialized view's rows as PostgreSQL prints them,
/// sorted; and every sequence's state.
fn contents(c: &Cluster, db: &str) -> BTreeMap<String, Vec<String>> {
    let mut client = c.client(db).unwrap();
    let relations = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname), c.relkind::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname !~ '^pg_toast' ORDER BY 1",
            &[],
        )
        .unwrap();
    let mut out = BTreeMap::new();
    for r in relations {
        let (name, kind): (String, String) = (r.get(0), r.get(1));
        let sql = match kind.as_str() {
            "S" => format!("SELECT format('%s %s', last_value, is_called) FROM {name}"),
            "m" => {
                let populated: bool = client
                    .query_one(
                        "SELECT relispopulated FROM pg_class WHERE oid = $1::text::regclass",
                        &[&name],
                    )
                    .unwrap()
                    .get(0);
                if !populated {
                    out.insert(name, vec!["unpopulated".into()]);
                    continue;
                }
                format!("SELECT whole_row_::text FROM {name} whole_row_ ORDER BY 1")
            }
            _ => format!("SELECT whole_row_::text FROM ONLY {name} whole_row_ ORDER BY 1"),
        };
        let rows: Vec<String> = client
            .query(&sql, &[])
            .unwrap()
            .iter()
            .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
            .collect();
        out.insert(name, rows);
    }
    out
}

/// Nothing that restores into `target` built or set aside is left.
fn assert_no_leftovers(c: &Cluster, target: &str) {
    let left = leftovers(c, target);
    assert!(left.is_empty(), "{left:?}");
}

/// The databases that restores into `target` built or set aside and left.
fn leftovers(c: &Cluster, target: &str) -> Vec<String> {
    let [built, aside] = coffer_postgres::restore::temporary_prefixes(target);
    c.client("postgres")
        .unwrap()
        .query(
            "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) OR starts_with(datname, $2)",
            &[&built, &aside],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn exists(c: &Cluster, db: &str) -> bool {
    c.client("postgres")
        .unwrap()
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .unwrap()
        .is_some()
}

fn backup(c: &Cluster, db: &str, dir: &Path) -> String {
    let arch = dir.join(db).display().to_string();
    ok(&["backup", &c.url(db), &arch, "--jobs", "2", "--json"]);
    arch
}

#[test]
fn a_restore_equals_its_source_by_pg_dump_and_by_every_row() {
    let c = pg::cluster();
    let src = c.create_database("nasty");
    c.execute(&src, NASTY_SQL);
    let dir = tempfile::tempdir().unwrap();
    let arch = backup(c, &src, dir.path());
    ok(&["verify", &arch, "--json"]);

    let target = format!("{src}_restored");
    let report = ok(&["restore", &arch, &c.url(&target), "--json"]);
    assert!(report["rows"].as_u64().unwrap() > 150_000, "{report}");
    assert_eq!(c.schema_dump(&src), c.schema_dump(&target));
    let (a, b) = (contents(c, &src), contents(c, &target));
    assert!(a.len() > 10, "{a:?}");
    for (name, rows) in &a {
        assert_eq!(Some(rows), b.get(name), "{name}");
    }
    assert_eq!(a.len(), b.len());
    assert_no_leftovers(c, &target);

    // An existing, non-empty target is refused by name; --force replaces it.
    // (The nasty database's event trigger refuses DDL: a row makes it differ.)
    c.execute(&target, "INSERT INTO scratch VALUES (0)");
    let err = fails(&["restore", &arch, &c.url(&target)]);
    assert!(err.contains(&target) && err.contains("--force"), "{err}");
    ok(&["restore", &arch, &c.url(&target), "--force", "--json"]);
    assert_eq!(c.schema_dump(&src), c.schema_dump(&target));
    assert_eq!(contents(c, &src), contents(c, &target));
    assert_no_leftovers(c, &target);
}

#[test]
fn an_encrypted_backup_restores_exactly_and_shows_nothing_without_the_key() {
    let c = pg::cluster();
    let src = c.create_database("sealed");
    c.execute(&src, NASTY_SQL);
    let dir = tempfile::tempdir().unwrap();
    let (id, to) = coffer_testkit::keys::identity(dir.path(), "me.key");
    let id = id.display().to_string();
    let arch = dir.path().join("a").display().to_string();
    ok(&[
        "backup",
        &c.url(&src),
        &arch,
        "--jobs",
        "2",
        "--encrypt-to",
        &to,
        "--json",
    ]);
    // The schema (every object name is in pg_dump's output) is nowhere in
    // the clear.
    let names: Vec<String> = c
        .client(&src)
        .unwrap()
        .query(
            "SELECT relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND length(relname) > 5",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(names.len() > 5, "{names:?}");
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    common::assert_in_no_file(&dir.path().join("a"), &names);
    let target = format!("{src}_restored");
    let err = fails(&["restore", &arch, &c.url(&target)]);
    assert!(err.contains("--identity"), "{err}");
    assert!(!exists(c, &target));
    ok(&["verify", &arch, "--json", "-i", &id]);
    ok(&["restore", &arch, &c.url(&target), "--json", "-i", &id]);
    assert_eq!(c.schema_dump(&src), c.schema_dump(&target));
    assert_eq!(contents(c, &src), contents(c, &target));
    assert_no_leftovers(c, &target);
}

#[test]
fn without_owners_and_privileges_whoever_restores_owns_everything() {
    let c = pg::cluster();
    let src = c.create_database("owned");
    c.execute(
        &src,
        &format!(
            "CREATE TABLE t (x int); INSERT INTO t VALUES (1);
             ALTER TABLE t OWNER TO {PASSWORD_USER}; GRANT SELECT ON t TO PUBLIC;"
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let arch = backup(c, &src, dir.path());
    let target = format!("{src}_mine");
    ok(&[
        "restore",
        &arch,
        &c.url(&target),
        "--no-owner",
        "--no-privileges",
        "--json",
    ]);
    let mut client = c.client(&target).unwrap();
    let row = client
        .query_one(
            "SELECT pg_get_userbyid(relowner)::text, relacl IS NULL FROM pg_class WHERE relname = 't'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), pg::SUPERUSER);
    assert!(row.get::<_, bool>(1));
    // And with them, the source's.
    let kept = format!("{src}_theirs");
    ok(&["restore", &arch, &c.url(&kept), "--json"]);
    let row = c
        .client(&kept)
        .unwrap()
        .query_one(
            "SELECT pg_get_userbyid(relowner)::text, relacl::text FROM pg_class WHERE relname = 't'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), PASSWORD_USER);
    assert!(row.get::<_, String>(1).contains("=r/"));
}

#[test]
fn a_tampered_archive_cannot_act_outside_the_database_it_builds() {
    let c = pg::cluster();
    let src = c.create_database("tamper");
    c.execute(
        &src,
        "CREATE TABLE t (x int PRIMARY KEY); INSERT INTO t VALUES (1), (2);",
    );
    let dir = tempfile::tempdir().unwrap();
    let arch = backup(c, &src, dir.path());
    let manifest = Path::new(&arch).join("manifest.json");
    let pristine = std::fs::read(&manifest).unwrap();
    for attack in [
        format!(";\nALTER ROLE {PASSWORD_USER} SUPERUSER;"),
        format!(
            ";\nCOPY (SELECT 1) TO PROGRAM 'touch {}/stray'",
            dir.path().display()
        ),
        format!(";\nDROP DATABASE \"{src}\";"),
        ";\nDO $$ BEGIN RAISE NOTICE 'x'; END $$;".to_string(),
        ";\nSELECT pg_catalog.pg_terminate_backend(1);".to_string(),
    ] {
        std::fs::write(&manifest, &pristine).unwrap();
        append_to_sql(&manifest, "t", &attack);
        let target = c.create_database("tamper_target");
        c.execute("postgres", &format!("DROP DATABASE \"{target}\""));
        let err = fails(&["restore", &arch, &c.url(&target)]);
        assert!(err.contains("table t") && err.contains("altered"), "{err}");
        assert!(!exists(c, &target));
        assert_no_leftovers(c, &target);
    }
    // A post-data object too (the primary key), refused before any row loads.
    std::fs::write(&manifest, &pristine).unwrap();
    append_to_sql(
        &manifest,
        "t t_pkey",
        &format!(";\nALTER ROLE {PASSWORD_USER} SUPERUSER;"),
    );
    let target = format!("{src}_post");
    let err = fails(&["restore", &arch, &c.url(&target)]);
    assert!(
        err.contains("constraint t t_pkey") && err.contains("altered"),
        "{err}"
    );
    assert!(!exists(c, &target));
    assert_no_leftovers(c, &target);
    assert!(exists(c, &src));
    assert!(!dir.path().join("stray").exists());
    let superuser: bool = c
        .client("postgres")
        .unwrap()
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = $1",
            &[&PASSWORD_USER],
        )
        .unwrap()
        .get(0);
    assert!(!superuser);

    // A row count the data does not have: the restore fails after loading,
    // and what it built is gone.
    std::fs::write(&manifest, &pristine).unwrap();
    reseal(&manifest, |m| m.tables[0].rows += 1);
    let target = format!("{src}_counted");
    let err = fails(&["restore", &arch, &c.url(&target)]);
    assert!(err.contains("table 't'") && err.contains("rows"), "{err}");
    assert!(!exists(c, &target));
    assert_no_leftovers(c, &target);
}

#[test]
fn a_restore_killed_at_any_instant_leaves_the_target_as_it_was_or_complete() {
    // A cluster of its own: the leftovers it looks for are its own.
    let own = Cluster::start(false);
    let c = &own;
    let src = c.create_database("killed");
    c.execute(
        &src,
        "CREATE TABLE big (id bigint PRIMARY KEY, pad text);
         INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 300000) g;
         CREATE INDEX big_pad ON big (pad);",
    );
    let dir = tempfile::tempdir().unwrap();
    let arch = backup(c, &src, dir.path());
    let expected = contents(c, &src);
    let target = format!("{src}_target");
    let url = c.url(&target);
    let mut cut_short = 0;
    for delay_ms in [0u64, 40, 120, 250, 400, 600, 900, 1300] {
        let mut child = coffer_bin()
            .args(["restore", &arch, &url, "--force"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        cut_short += usize::from(!leftovers(c, &target).is_empty());
        if exists(c, &target) {
            assert_eq!(contents(c, &target), expected, "killed after {delay_ms} ms");
        }
    }
    assert!(
        cut_short > 0,
        "no kill landed while a restore was being built"
    );
    // What the killed runs left is dropped by the next restore, once their
    // sessions have ended on the server.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let busy: i64 = c
            .client("postgres")
            .unwrap()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'coffer\\_re%'",
                &[],
            )
            .unwrap()
            .get(0);
        if busy == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    ok(&["restore", &arch, &url, "--force", "--json"]);
    assert_eq!(contents(c, &target), expected);
    assert_no_leftovers(c, &target);
}

#[test]
fn a_role_the_server_lacks_is_named_with_how_to_restore_without_it() {
    let c = pg::cluster();
    let src = c.create_database("roles");
    let role = format!("gone_{src}");
    c.execute("postgres", &format!("CREATE ROLE {role}"));
    c.execute(
        &src,
        &format!(
            "CREATE TABLE t (x int); ALTER TABLE t OWNER TO {role}; INSERT INTO t VALUES (1);"
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let arch = backup(c, &src, dir.path());
    c.execute("postgres", &format!("DROP DATABASE \"{src}\""));
    c.execute("postgres", &format!("DROP ROLE {role}"));
    let target = format!("{src}_again");
    let err = fails(&["restore", &arch, &c.url(&target)]);
    assert!(err.contains(&role) && err.contains("--no-owner"), "{err}");
    assert!(!exists(c, &target));
    ok(&[
        "restore",
        &arch,
        &c.url(&target),
        "--no-owner",
        "--no-privileges",
        "--json",
    ]);
    assert_eq!(contents(c, &target)["public.t"], ["(1)"]);
}
