//! `coffer import` into PostgreSQL: exports of SQLite and of PostgreSQL
//! become tables of natural PostgreSQL types, in one transaction, with
//! `--mode create|append|replace`; a value PostgreSQL cannot hold fails the
//! import naming its table, column and row, and leaves the database as it
//! was.
mod common;
use common::{fails, ok_json as ok};

use std::path::Path;

use coffer_testkit::pg::{self, Cluster, NASTY_SQL};

fn rows(c: &Cluster, db: &str, sql: &str) -> Vec<String> {
    c.client(db)
        .unwrap()
        .query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn tables(c: &Cluster, db: &str) -> Vec<String> {
    rows(
        c,
        db,
        "SELECT format('%s.%s', schemaname, tablename) FROM pg_tables \
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    )
}

fn sqlite_source(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("shop.db");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price DECIMAL(10,2),
                             seen TIMESTAMP, day DATE, weight REAL, raw BLOB);
         INSERT INTO items VALUES
           (1, 'ä ✓ tab\there', 12.50, '2024-01-02 03:04:05', '2024-02-29', -0.5, x'00ff'),
           (2, '', NULL, NULL, NULL, NULL, x''),
           (3, 'x''y\\z', -0.01, '1999-12-31 23:59:59', '0001-01-01', 1e300, NULL);
         CREATE TABLE notes (body TEXT);
         INSERT INTO notes VALUES ('one'), ('two');",
    )
    .unwrap();
    path
}

#[test]
fn a_sqlite_export_imports_into_postgres_with_natural_types() {
    let c = pg::cluster();
    let db = c.create_database("from_sqlite");
    let dir = tempfile::tempdir().unwrap();
    let src = sqlite_source(dir.path());
    let export = dir.path().join("export").display().to_string();
    ok(&["export", src.to_str().unwrap(), &export, "--json"]);
    let report = ok(&["import", &export, &c.url(&db), "--json"]);
    assert_eq!(report["rows"], 5, "{report}");
    assert_eq!(tables(c, &db), ["public.items", "public.notes"]);
    assert_eq!(
        rows(
            c,
            &db,
            "SELECT format('%s|%s|%s|%s|%s|%s|%s', id, name, price, seen, day, weight, encode(raw, 'hex')) \
             FROM items ORDER BY id"
        ),
        [
            "1|ä ✓ tab\there|12.50|2024-01-02 03:04:05|2024-02-29|-0.5|00ff",
            "2|||||| ",
            "3|x'y\\z|-0.01|1999-12-31 23:59:59|0001-01-01|1e+300|",
        ]
        .map(|s| s.trim_end().to_string())
    );
    let types = rows(
        c,
        &db,
        "SELECT format('%s %s', attname, format_type(atttypid, atttypmod)) FROM pg_attribute \
         WHERE attrelid = 'items'::regclass AND attnum > 0 ORDER BY attnum",
    );
    assert_eq!(
        types,
        [
            "id bigint",
            "name text",
            "price numeric(10,2)",
            "seen timestamp without time zone",
            "day date",
            "weight double precision",
            "raw bytea"
        ]
    );

    // create refuses an existing table by name; append adds; replace replaces.
    let err = fails(&["import", &export, &c.url(&db)]);
    assert!(
        err.contains("public.items") && err.contains("--mode"),
        "{err}"
    );
    ok(&[
        "import",
        &export,
        &c.url(&db),
        "--mode",
        "append",
        "--table",
        "notes",
        "--json",
    ]);
    assert_eq!(rows(c, &db, "SELECT body FROM notes ORDER BY 1").len(), 4);
    ok(&[
        "import",
        &export,
        &c.url(&db),
        "--mode",
        "replace",
        "--json",
    ]);
    assert_eq!(rows(c, &db, "SELECT body FROM notes ORDER BY 1").len(), 2);
}

#[test]
fn a_value_postgres_cannot_hold_fails_the_whole_import_naming_it() {
    let c = pg::cluster();
    let db = c.create_database("nul");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nul.db");
    let s = rusqlite::Connection::open(&path).unwrap();
    s.execute_batch(
        "CREATE TABLE first (x INTEGER); INSERT INTO first VALUES (1);
         CREATE TABLE texts (id INTEGER PRIMARY KEY, body TEXT);
         INSERT INTO texts VALUES (1, 'fine'), (2, 'fine'), (3, 'a' || char(0) || 'b');",
    )
    .unwrap();
    drop(s);
    let export = dir.path().join("export").display().to_string();
    ok(&["export", path.to_str().unwrap(), &export, "--json"]);
    let err = fails(&["import", &export, &c.url(&db)]);
    assert!(
        err.contains("row 3")
            && err.contains("'texts'")
            && err.contains("'body'")
            && err.contains("NUL"),
        "{err}"
    );
    // Not even the table that loaded before stays.
    assert!(tables(c, &db).is_empty(), "{:?}", tables(c, &db));

    // Asked to, the import stores the nearest value and says how many.
    let s = rusqlite::Connection::open(&path).unwrap();
    s.execute_batch("CREATE TABLE mixed (t TEXT); INSERT INTO mixed VALUES ('text'), (x'00ff');")
        .unwrap();
    drop(s);
    let export = dir.path().join("export2").display().to_string();
    ok(&["export", path.to_str().unwrap(), &export, "--json"]);
    let err = fails(&["import", &export, &c.url(&db), "--table", "mixed"]);
    assert!(
        err.contains("row 2") && err.contains("'mixed'") && err.contains("--coerce"),
        "{err}"
    );
    let report = ok(&["import", &export, &c.url(&db), "--coerce", "--json"]);
    assert_eq!(report["coerced"], 2, "{report}");
    assert_eq!(rows(c, &db, "SELECT body FROM texts WHERE id = 3"), ["ab"]);
    assert_eq!(
        rows(c, &db, "SELECT t FROM mixed ORDER BY 1"),
        ["\\x00ff", "text"]
    );
}

#[test]
fn a_numeric_nan_goes_into_sqlite_as_null_only_when_asked() {
    let c = pg::cluster();
    let db = c.create_database("nan");
    c.execute(&db, "CREATE TABLE n (id int PRIMARY KEY, v numeric); INSERT INTO n VALUES (1, 1.5), (2, 'NaN');");
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export").display().to_string();
    ok(&["export", &c.url(&db), &export, "--json"]);
    let target = dir.path().join("n.db");
    let target = target.to_str().unwrap();
    let err = fails(&["import", &export, target]);
    assert!(
        err.contains("NaN") && err.contains("row 2") && err.contains("--coerce"),
        "{err}"
    );
    let report = ok(&["import", &export, target, "--coerce", "--json"]);
    assert_eq!(report["coerced"], 1, "{report}");
    let s = rusqlite::Connection::open(target).unwrap();
    let v: Option<String> = s
        .query_row("SELECT CAST(v AS TEXT) FROM n WHERE id = 2", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(v, None);
}

#[test]
fn a_postgres_export_imports_into_another_postgres_database_exactly() {
    let c = pg::cluster();
    let src = c.create_database("pg_src");
    c.execute(&src, NASTY_SQL);
    let dst = c.create_database("pg_dst");
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export").display().to_string();
    ok(&[
        "export",
        &c.url(&src),
        &export,
        "--table",
        "naturals",
        "--table",
        "wide",
        "--table",
        "shop.orders",
        "--json",
    ]);
    ok(&["import", &export, &c.url(&dst), "--json"]);
    assert_eq!(
        tables(c, &dst),
        ["public.naturals", "public.wide", "shop.orders"]
    );
    for t in ["naturals", "wide"] {
        let sql = format!("SELECT whole_row_::text FROM {t} whole_row_ ORDER BY 1");
        assert_eq!(rows(c, &src, &sql), rows(c, &dst, &sql), "{t}");
    }
    // Declared types stay where they are built in; the rest become text.
    let types = |db: &str| {
        rows(
            c,
            db,
            "SELECT format('%s %s', attname, format_type(atttypid, atttypmod)) FROM pg_attribute \
             WHERE attrelid = 'naturals'::regclass AND attnum > 0 ORDER BY attnum",
        )
    };
    let (a, b) = (types(&src), types(&dst));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        if x.starts_with("pos ") {
            assert_eq!(y, "pos integer");
        } else {
            assert_eq!(x, y);
        }
    }
}

#[test]
fn an_export_of_chosen_schemas_holds_their_tables_only() {
    let c = pg::cluster();
    let db = c.create_database("schemas");
    c.execute(
        &db,
        "CREATE SCHEMA a; CREATE SCHEMA b;
         CREATE TABLE a.t (x int); CREATE TABLE b.t (x int); CREATE TABLE top (x int);
         INSERT INTO a.t VALUES (1); INSERT INTO b.t VALUES (2); INSERT INTO top VALUES (3);",
    );
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("a").display().to_string();
    let report = ok(&["export", &c.url(&db), &export, "--schema", "a", "--json"]);
    let names: Vec<&str> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.t"], "{report}");
    let public = dir.path().join("p").display().to_string();
    let report = ok(&[
        "export",
        &c.url(&db),
        &public,
        "--schema",
        "public",
        "--json",
    ]);
    assert_eq!(report["tables"][0]["name"], "top", "{report}");
    let err = fails(&[
        "export",
        &c.url(&db),
        &dir.path().join("n").display().to_string(),
        "--schema",
        "nope",
    ]);
    assert!(err.contains("nope"), "{err}");
    // SQLite has none.
    let sqlite = sqlite_source(dir.path());
    let err = fails(&[
        "export",
        sqlite.to_str().unwrap(),
        &dir.path().join("s").display().to_string(),
        "--schema",
        "main",
    ]);
    assert!(err.contains("no schemas"), "{err}");
}
