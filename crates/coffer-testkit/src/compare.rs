//! Exact comparison of two SQLite databases.
//!
//! [`assert_same_database`] panics with a precise message at the first
//! difference; [`compare_databases`] returns that message instead;
//! [`database_digest`] hashes the same content so a database can be checked
//! against a recorded state.
//!
//! These are the SQLite face of the engine-neutral [images](crate::image):
//! each reads both files with [`crate::sqlite::read_image`] and compares the
//! images with [`crate::image::diff`]. What counts as "the same" is what
//! that reader puts into an image: the header pragmas, every row of
//! `sqlite_schema` (shadow tables and automatic indexes by name only), the
//! rows of every table with their rowids, value by value **including
//! storage class** (integers, reals by bit pattern so `-0.0 != 0.0`, text as
//! bytes, blobs and NULL are all distinct), and the internal tables
//! `sqlite_sequence` and `sqlite_stat*`.
//!
//! Both databases are opened read-only and never modified.

use std::path::Path;

use crate::image::{diff, diff_tables};
use crate::sqlite::read_image;

pub use crate::image::Value as Val;
pub use crate::sqlite::{COMPARED_PRAGMAS, quote_ident};

/// Compare two databases; `Err` carries a message describing the first
/// difference found (pragmas, then schema, then tables in name order, then
/// internal tables).
pub fn compare_databases(a: &Path, b: &Path) -> Result<(), String> {
    let ia = read_image(a).map_err(|e| format!("database a: {e}"))?;
    let ib = read_image(b).map_err(|e| format!("database b: {e}"))?;
    diff(&ia, &ib)
}

/// Compare only the tables named in `names` of two databases: each
/// table's own schema objects (the table and its indexes, by SQL) and its
/// rows, value by value with storage classes, as [`compare_databases`]
/// does. Pragmas, other tables, views and triggers are not compared. `Err`
/// carries a message describing the first difference.
pub fn compare_tables(a: &Path, b: &Path, names: &[&str]) -> Result<(), String> {
    let ia = read_image(a).map_err(|e| format!("database a: {e}"))?;
    let ib = read_image(b).map_err(|e| format!("database b: {e}"))?;
    diff_tables(&ia, &ib, names)
}

/// Panic at the first difference [`compare_tables`] finds.
#[track_caller]
pub fn assert_same_tables(a: &Path, b: &Path, names: &[&str]) {
    if let Err(msg) = compare_tables(a, b, names) {
        panic!("{msg}");
    }
}

/// Panic with a precise message at the first difference between the
/// databases at `a` and `b` (see the [module docs](self) for what is
/// compared).
#[track_caller]
pub fn assert_same_database(a: &Path, b: &Path) {
    if let Err(msg) = compare_databases(a, b) {
        panic!("{msg}");
    }
}

/// A stable SHA-256 (hex) over everything [`assert_same_database`] compares:
/// two databases have the same digest exactly when they compare equal
/// (barring hash collisions). Panics if the database cannot be read.
pub fn database_digest(path: &Path) -> String {
    match read_image(path).and_then(|i| i.digest()) {
        Ok(d) => d,
        Err(e) => panic!("could not digest {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nasty::{create_nasty_db, create_small_db};
    use rusqlite::Connection;

    struct Pair {
        _dir: tempfile::TempDir,
        a: std::path::PathBuf,
        b: std::path::PathBuf,
    }

    fn small_pair() -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.db");
        let b = dir.path().join("b.db");
        create_small_db(&a).unwrap();
        create_small_db(&b).unwrap();
        Pair { _dir: dir, a, b }
    }

    fn modify(path: &Path, sql: &str) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(sql).unwrap();
    }

    fn differs(p: &Pair, sql: &str) -> String {
        modify(&p.b, sql);
        let msg = compare_databases(&p.a, &p.b).expect_err("the change went unnoticed");
        assert_ne!(database_digest(&p.a), database_digest(&p.b), "{sql}");
        msg
    }

    #[test]
    fn identical_databases_compare_equal() {
        let p = small_pair();
        assert_same_database(&p.a, &p.b);
        assert_eq!(database_digest(&p.a), database_digest(&p.b));
        assert_eq!(database_digest(&p.a).len(), 64);
    }

    #[test]
    fn nasty_database_equals_itself_and_a_copy() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.db");
        let b = dir.path().join("b.db");
        create_nasty_db(&a).unwrap();
        create_nasty_db(&b).unwrap();
        assert_same_database(&a, &a);
        assert_same_database(&a, &b);
        assert_eq!(database_digest(&a), database_digest(&b));
        // SQLite's own copy is identical too.
        let c = dir.path().join("c.db");
        Connection::open(&a)
            .unwrap()
            .execute("VACUUM INTO ?1", [c.to_str().unwrap()])
            .unwrap();
        // VACUUM INTO writes a rollback-journal database.
        modify(&c, "PRAGMA journal_mode = WAL;");
        assert_same_database(&a, &c);
    }

    #[test]
    fn storage_class_differences_are_caught() {
        let p = small_pair();
        // TEXT affinity leaves blobs alone: same bytes, other storage class.
        let msg = differs(
            &p,
            "UPDATE customers SET email = CAST(email AS BLOB) WHERE id = 2;",
        );
        assert!(msg.contains("table \"customers\""), "{msg}");
        assert!(msg.contains("row 1 (rowid = INTEGER 2)"), "{msg}");
        assert!(msg.contains("column \"email\""), "{msg}");
        assert!(
            msg.contains("a has TEXT of 17 bytes \"grace@example.com\""),
            "{msg}"
        );
        assert!(msg.contains("b has BLOB of 17 bytes"), "{msg}");

        let p = small_pair();
        modify(&p.a, "CREATE TABLE n(v); INSERT INTO n VALUES (42.0);");
        modify(&p.b, "CREATE TABLE n(v); INSERT INTO n VALUES (42);");
        let msg = compare_databases(&p.a, &p.b).unwrap_err();
        assert!(
            msg.contains("a has REAL 42.0") && msg.contains("b has INTEGER 42"),
            "{msg}"
        );
    }

    #[test]
    fn negative_zero_differs_from_zero() {
        let p = small_pair();
        modify(&p.a, "CREATE TABLE z(v); INSERT INTO z VALUES (0.0);");
        modify(&p.b, "CREATE TABLE z(v);");
        Connection::open(&p.b)
            .unwrap()
            .execute("INSERT INTO z VALUES (?1)", [-0.0f64])
            .unwrap();
        let msg = compare_databases(&p.a, &p.b).unwrap_err();
        assert!(msg.contains("0x8000000000000000"), "{msg}");
    }

    #[test]
    fn text_and_blob_differ_even_with_equal_bytes() {
        let p = small_pair();
        modify(
            &p.a,
            "CREATE TABLE t(v); INSERT INTO t VALUES (CAST(x'ff00' AS TEXT));",
        );
        modify(&p.b, "CREATE TABLE t(v); INSERT INTO t VALUES (x'ff00');");
        let msg = compare_databases(&p.a, &p.b).unwrap_err();
        assert!(
            msg.contains("TEXT of 2 bytes") && msg.contains("BLOB of 2 bytes x'ff00'"),
            "{msg}"
        );
    }

    #[test]
    fn hidden_rowid_differences_are_caught() {
        let p = small_pair();
        modify(
            &p.a,
            "CREATE TABLE h(v); INSERT INTO h(rowid, v) VALUES (5, 'x');",
        );
        modify(
            &p.b,
            "CREATE TABLE h(v); INSERT INTO h(rowid, v) VALUES (6, 'x');",
        );
        let msg = compare_databases(&p.a, &p.b).unwrap_err();
        assert!(msg.contains("\"h\"") && msg.contains("\"rowid\""), "{msg}");
    }

    #[test]
    fn shadowed_rowid_is_read_through_an_alias() {
        let p = small_pair();
        modify(
            &p.a,
            "CREATE TABLE s(rowid, v); INSERT INTO s(_rowid_, rowid, v) VALUES (5, 1, 'x');",
        );
        modify(
            &p.b,
            "CREATE TABLE s(rowid, v); INSERT INTO s(_rowid_, rowid, v) VALUES (6, 1, 'x');",
        );
        let msg = compare_databases(&p.a, &p.b).unwrap_err();
        assert!(msg.contains("\"_rowid_\""), "{msg}");
    }

    #[test]
    fn row_count_differences_are_caught() {
        let p = small_pair();
        let msg = differs(&p, "DELETE FROM orders WHERE id = 5;");
        assert!(msg.contains("a has more rows than b"), "{msg}");
    }

    #[test]
    fn schema_differences_are_caught() {
        let p = small_pair();
        let msg = differs(&p, "CREATE INDEX extra ON customers(name);");
        assert!(msg.contains("b has index \"extra\""), "{msg}");
        let p = small_pair();
        let msg = differs(
            &p,
            "DROP VIEW order_totals; CREATE VIEW order_totals AS SELECT 1;",
        );
        assert!(msg.contains("order_totals"), "{msg}");
    }

    #[test]
    fn pragma_differences_are_caught() {
        let p = small_pair();
        let msg = differs(&p, "PRAGMA user_version = 7;");
        assert!(msg.contains("PRAGMA user_version"), "{msg}");
        let p = small_pair();
        let msg = differs(&p, "PRAGMA journal_mode = WAL;");
        assert!(msg.contains("PRAGMA journal_mode"), "{msg}");
    }

    #[test]
    fn internal_tables_are_compared() {
        let p = small_pair();
        modify(&p.a, "ANALYZE;");
        modify(
            &p.b,
            "ANALYZE; UPDATE sqlite_stat1 SET stat = '99 1' WHERE idx = 'orders_customer';",
        );
        let msg = compare_databases(&p.a, &p.b).unwrap_err();
        assert!(msg.contains("sqlite_stat1"), "{msg}");

        let p = small_pair();
        let seq =
            "CREATE TABLE s(id INTEGER PRIMARY KEY AUTOINCREMENT); INSERT INTO s DEFAULT VALUES;";
        modify(&p.a, seq);
        modify(&p.b, &format!("{seq} UPDATE sqlite_sequence SET seq = 10;"));
        let msg = compare_databases(&p.a, &p.b).unwrap_err();
        assert!(msg.contains("sqlite_sequence"), "{msg}");
    }

    #[test]
    fn virtual_table_rows_are_compared_but_not_shadow_tables() {
        let p = small_pair();
        let sql =
            "CREATE VIRTUAL TABLE f USING fts5(x); INSERT INTO f(rowid, x) VALUES (1, 'hello');";
        modify(&p.a, sql);
        modify(&p.b, sql);
        assert_same_database(&p.a, &p.b);
        let msg = differs(&p, "UPDATE f SET x = 'world' WHERE rowid = 1;");
        assert!(msg.contains("table \"f\""), "{msg}");
    }

    #[test]
    fn without_rowid_tables_are_ordered_by_primary_key() {
        let p = small_pair();
        let sql = "CREATE TABLE w(k TEXT, n INT, v, PRIMARY KEY (k, n)) WITHOUT ROWID;";
        modify(
            &p.a,
            &format!("{sql} INSERT INTO w VALUES ('a', 1, 1), ('b', 0, 2);"),
        );
        // Same rows inserted in the other order.
        modify(
            &p.b,
            &format!("{sql} INSERT INTO w VALUES ('b', 0, 2), ('a', 1, 1);"),
        );
        assert_same_database(&p.a, &p.b);
        let msg = differs(&p, "UPDATE w SET v = 3 WHERE k = 'b';");
        assert!(
            msg.contains("k = TEXT of 1 bytes \"b\", n = INTEGER 0"),
            "{msg}"
        );
    }

    #[test]
    fn missing_file_is_reported() {
        let p = small_pair();
        let missing = p.a.with_file_name("nope.db");
        let msg = compare_databases(&p.a, &missing).unwrap_err();
        assert!(msg.contains("nope.db does not exist"), "{msg}");
        assert!(!missing.exists());
    }

    #[test]
    #[should_panic(expected = "PRAGMA user_version")]
    fn assert_panics_on_difference() {
        let p = small_pair();
        modify(&p.b, "PRAGMA user_version = 1;");
        assert_same_database(&p.a, &p.b);
    }

    #[test]
    fn val_debug_is_bounded_and_shows_bytes() {
        let v = Val::Text(vec![b'a'; 1000]);
        assert!(format!("{v:?}").len() < 200);
        let v = Val::Text(vec![0xff, 0x00]);
        assert!(format!("{v:?}").contains("hex ff00"));
    }
}
