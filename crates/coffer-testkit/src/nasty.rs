//! Fixture databases.
//!
//! [`create_nasty_db`] builds a SQLite database that holds everything a
//! lossless backup has to keep: odd rowids, every storage class in every kind
//! of column, values SQLite itself treats specially, names that need quoting,
//! every kind of schema object, triggers whose effects must not be replayed,
//! statistics, header fields and WAL mode. [`create_small_db`] builds a tidy
//! few-table database for quick end-to-end and CLI tests.
//!
//! Both functions replace an existing file at the path (and its `-wal` and
//! `-shm` companions), so callers can rebuild a fixture in place.

use std::path::Path;

use rusqlite::{Connection, params};

/// Size of the single large blob value in the nasty database (5 MiB).
pub const BIG_BLOB_LEN: usize = 5 * 1024 * 1024;
/// Size in bytes of the single large text value in the nasty database (3 MiB).
pub const BIG_TEXT_LEN: usize = 3 * 1024 * 1024;
/// Number of rows in the nasty database's `many` table, enough to span
/// several batches of any reasonable reader.
pub const MANY_ROWS: i64 = 50_000;
/// `PRAGMA user_version` of the nasty database.
pub const NASTY_USER_VERSION: i64 = 42;
/// `PRAGMA application_id` of the nasty database.
pub const NASTY_APPLICATION_ID: i64 = 0x1234_5678;
/// `PRAGMA page_size` of the nasty database (not SQLite's default 4096, so a
/// restore that forgets it is caught).
pub const NASTY_PAGE_SIZE: i64 = 8192;

fn remove_existing(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// Deterministic pseudo-random bytes (xorshift), so large values do not
/// compress to nothing and are the same on every run.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A large valid UTF-8 string of exactly `len` bytes mixing ASCII and
/// multi-byte characters.
fn big_text(len: usize) -> String {
    let pattern = "The quick brown fox jumps over the lazy dog. Ünïcødé → 表 🦀 שלום\n";
    let mut s = String::with_capacity(len + pattern.len());
    while s.len() + pattern.len() <= len {
        s.push_str(pattern);
    }
    while s.len() < len {
        s.push('x');
    }
    s
}

/// The schema and small data of the nasty database, as one SQL batch.
///
/// Large values, the `many` table and statistics are added separately by
/// [`create_nasty_db`].
const NASTY_SQL: &str = r#"
-- Rowid table without an INTEGER PRIMARY KEY: the rowid is hidden, and has
-- extreme values and gaps.
CREATE TABLE hidden_rowid(v TEXT);
INSERT INTO hidden_rowid(rowid, v) VALUES
    (-9223372036854775808, 'min'),
    (-1, 'minus one'),
    (0, 'zero'),
    (7, 'seven'),
    (1000000, 'gap'),
    (9223372036854775807, 'max');

-- INTEGER PRIMARY KEY: the rowid is the column.
CREATE TABLE ipk(id INTEGER PRIMARY KEY, name TEXT);
INSERT INTO ipk(id, name) VALUES
    (-9223372036854775808, 'min'),
    (-5, 'negative'),
    (0, 'zero'),
    (3, 'three'),
    (1099511627776, 'two to the forty'),
    (9223372036854775807, 'max');

-- A rowid table with a real column called "rowid": the true rowid is only
-- reachable as _rowid_ or oid.
CREATE TABLE shadowed_rowid("rowid" TEXT, v INTEGER);
INSERT INTO shadowed_rowid(_rowid_, "rowid", v) VALUES
    (-3, 'not the rowid', 1),
    (10, '10', 2),
    (11, NULL, 3);

-- WITHOUT ROWID with a composite text+integer primary key.
CREATE TABLE wr(k TEXT NOT NULL, n INTEGER NOT NULL, v, u TEXT UNIQUE, PRIMARY KEY (k, n)) WITHOUT ROWID;
INSERT INTO wr(k, n, u) VALUES ('u', 1, 'unique one'), ('u', 2, 'unique two');
INSERT INTO wr(k, n, v) VALUES
    ('a', 1, 'a1'),
    ('a', -9223372036854775808, 'amin'),
    ('b', 9223372036854775807, x'00ff'),
    ('', 0, NULL),
    ('Z', 2, 2.5),
    ('ü', 3, 3);

-- STRICT table, including an ANY column that keeps every storage class.
CREATE TABLE strict_t(id INTEGER PRIMARY KEY, i INT, r REAL, t TEXT, b BLOB, a ANY) STRICT;
INSERT INTO strict_t(id, i, r, t, b, a) VALUES
    (1, 1, 1.5, 'one', x'01', 1),
    (2, -9223372036854775808, -0.5, '', x'', 'text in ANY'),
    (3, NULL, NULL, NULL, NULL, NULL),
    (4, 9223372036854775807, 1e308, 'max', x'ff', 2.25),
    (5, 0, 3.0, 'three', x'000102', x'cafe');

-- AUTOINCREMENT whose sqlite_sequence is above the largest rowid.
CREATE TABLE auto(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
INSERT INTO auto(v) VALUES ('1'), ('2'), ('3'), ('4'), ('5'), ('6'), ('7'), ('8'), ('9'), ('10');
DELETE FROM auto WHERE id > 5 OR id = 2;

-- Generated columns, virtual and stored.
CREATE TABLE gen(
    a INTEGER,
    b INTEGER,
    v INTEGER GENERATED ALWAYS AS (a + b) VIRTUAL,
    s TEXT GENERATED ALWAYS AS (a || '-' || b) STORED
);
INSERT INTO gen(a, b) VALUES (1, 2), (-1, 1), (NULL, 5), (9223372036854775807, 0);

-- Special values in an untyped column. Negative zero and a few doubles are
-- bound from Rust (see create_nasty_db) so no SQL parsing is involved.
CREATE TABLE vals(id INTEGER PRIMARY KEY, note TEXT NOT NULL, v);
INSERT INTO vals(id, note, v) VALUES
    (1, 'i64 min', -9223372036854775808),
    (2, 'i64 max', 9223372036854775807),
    (3, 'zero', 0),
    (4, '+inf', 9e999),
    (5, '-inf', -9e999),
    (6, 'null', NULL),
    (7, 'empty text', ''),
    (8, 'empty blob', x''),
    (9, 'text with NUL', CAST(x'610062' AS TEXT)),
    (10, 'invalid utf-8 text', CAST(x'fffe80' AS TEXT)),
    (11, 'emoji', '🦀🎉👩‍👩‍👧‍👦'),
    (12, 'rtl', 'שלום עולם مرحبا'),
    (13, 'combining', 'e' || char(769) || ' vs ' || char(233)),
    (14, 'text that looks like a number', '0123'),
    (15, 'text that looks like a real', '1e5'),
    (16, 'blob with NUL', x'00'),
    (17, 'real with integer value', 2.0),
    (18, 'one tenth', 0.1),
    (19, 'leading and trailing spaces', '  padded  '),
    (20, 'line breaks', 'a' || char(10) || 'b' || char(13) || char(10) || 'c'),
    (21, 'max double', 1.7976931348623157e308),
    (22, 'min normal double', 2.2250738585072014e-308),
    (23, 'text with only NUL', CAST(x'00' AS TEXT)),
    (24, 'lone surrogate bytes', CAST(x'eda080' AS TEXT));

-- Storage classes that differ from the declared type.
CREATE TABLE affinity(
    id INTEGER PRIMARY KEY,
    i INTEGER,
    r REAL,
    t TEXT,
    n NUMERIC,
    dt DATETIME,
    dec DECIMAL(10,2),
    flag BOOLEAN,
    b BLOB
);
INSERT INTO affinity(id, i, r, t, n, dt, dec, flag, b) VALUES
    (1, 'abc', x'0102', 123, '42', '2024-01-01 12:00:00', '12.50', 'true', 'text in blob'),
    (2, 1.5, 'not a number', 4.5, 'x', 1700000000, 12.5, 1, 7),
    (3, x'ff', 3, x'74', 1.0, 2460000.5, '1e3', 0, 1.25),
    (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (5, '', '', '', '', '', '', '', ''),
    (6, ' 12 ', '3.0', '', '9223372036854775808', 'now', '0.1', 'FALSE', x'');

-- Every storage class in one untyped table.
CREATE TABLE untyped(a, b);
INSERT INTO untyped(rowid, a, b) VALUES
    (1, 1, 1.0),
    (2, 'one', x'01'),
    (3, NULL, ''),
    (4, x'', 0.0),
    (5, -1, '-1'),
    (6, 1.5, 1);

-- An empty table.
CREATE TABLE empty(a INTEGER, b TEXT);

-- Names that need quoting.
CREATE TABLE "table with spaces"("col with spaces" TEXT, "col""dq" INTEGER, "it's" REAL);
INSERT INTO "table with spaces" VALUES ('a b', 1, 1.5), (NULL, NULL, NULL);
CREATE TABLE "quote""d"("x" INTEGER);
INSERT INTO "quote""d" VALUES (1);
CREATE TABLE "sin'gle"(v TEXT);
INSERT INTO "sin'gle" VALUES ('it''s');
CREATE TABLE "dotted.name"("a.b" TEXT, "main.c" INTEGER);
INSERT INTO "dotted.name" VALUES ('dot', 1);
CREATE TABLE "ünïcødé 表"("列" TEXT, "🦀" INTEGER);
INSERT INTO "ünïcødé 表" VALUES ('値', 1);
CREATE TABLE "select"("from" TEXT, "where" INTEGER, "order" REAL, "group" BLOB);
INSERT INTO "select" VALUES ('f', 1, 2.0, x'03');
CREATE TABLE "../evil"("%41" TEXT);
INSERT INTO "../evil" VALUES ('not a path');
CREATE TABLE "%41"(v TEXT);
INSERT INTO "%41" VALUES ('percent');
CREATE TABLE "a/b"(v TEXT);
INSERT INTO "a/b" VALUES ('slash');
CREATE TABLE "back\slash"(v TEXT);
INSERT INTO "back\slash" VALUES ('backslash');
CREATE TABLE "line
break"("tab	col" TEXT);
INSERT INTO "line
break" VALUES ('newline in the table name');
CREATE INDEX "idx ""weird"" name" ON "table with spaces"("col with spaces", "col""dq");

-- Indexes of every kind.
CREATE TABLE people(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    age INTEGER,
    email TEXT,
    code TEXT UNIQUE,
    x INTEGER
);
CREATE INDEX people_age ON people(age);
CREATE UNIQUE INDEX people_email ON people(email);
CREATE INDEX people_name_age ON people(name, age DESC);
CREATE INDEX people_lower_name ON people(lower(name));
CREATE INDEX people_pos_x ON people(x) WHERE x > 0;
CREATE INDEX people_name_nocase ON people(name COLLATE NOCASE);

-- Views, one depending on another.
CREATE VIEW adults AS SELECT id, name, age FROM people WHERE age >= 18;
CREATE VIEW adult_names AS SELECT name FROM adults ORDER BY name;

-- A trigger that writes to an audit table. After the inserts the audit table
-- is edited, so a restore that fires the trigger produces different content.
CREATE TABLE audit(id INTEGER PRIMARY KEY, tbl TEXT NOT NULL, row_id INTEGER, note TEXT);
CREATE TRIGGER people_audit AFTER INSERT ON people
BEGIN
    INSERT INTO audit(tbl, row_id, note) VALUES ('people', new.id, 'inserted ' || new.name);
END;
CREATE TRIGGER adults_insert INSTEAD OF INSERT ON adults
BEGIN
    INSERT INTO people(name, age) VALUES (new.name, new.age);
END;
INSERT INTO people(id, name, age, email, code, x) VALUES
    (1, 'Alice', 34, 'alice@example.com', 'A1', 5),
    (2, 'bob', 17, 'bob@example.com', 'B2', -1),
    (3, 'Ünal', 51, NULL, 'C3', 0),
    (4, 'ALICE', 34, 'alice2@example.com', NULL, 12),
    (10, 'Zoë', NULL, 'zoe@example.com', 'Z9', NULL);
INSERT INTO adults(name, age) VALUES ('Via View', 40);
DELETE FROM audit WHERE row_id = 2;
UPDATE audit SET note = 'edited by hand' WHERE row_id = 3;
INSERT INTO audit(tbl, row_id, note) VALUES ('manual', NULL, 'written without the trigger');

-- A table guarded by a trigger that rejects every insert, created after the
-- data: a restore that creates triggers before loading rows fails.
CREATE TABLE frozen(id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO frozen(id, v) VALUES (1, 'loaded before the guard'), (2, 'also');
CREATE TRIGGER frozen_guard BEFORE INSERT ON frozen
BEGIN
    SELECT RAISE(ABORT, 'frozen is read-only');
END;

-- Foreign keys: the child is created before its parent and holds an orphan
-- (SQLite does not enforce foreign keys unless asked).
CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE, v TEXT);
CREATE TABLE parent(id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO parent(id, v) VALUES (1, 'p1'), (2, 'p2');
INSERT INTO child(id, parent_id, v) VALUES (1, 1, 'ok'), (2, 2, 'ok'), (3, 99, 'orphan');

-- FTS5 with explicit, gappy rowids.
CREATE VIRTUAL TABLE docs USING fts5(title, body);
INSERT INTO docs(rowid, title, body) VALUES
    (1, 'Backups', 'A backup that cannot be restored is not a backup.'),
    (5, 'Ünïcødé', 'Text with 表 and 🦀 and שלום.'),
    (100, 'Empty body', ''),
    (-7, 'Negative rowid', 'Full-text rows can have any rowid.');

-- R*Tree.
CREATE VIRTUAL TABLE boxes USING rtree(id, minx, maxx, miny, maxy);
INSERT INTO boxes(id, minx, maxx, miny, maxy) VALUES
    (1, 0, 1, 0, 1),
    (2, -10.5, 10.25, -3, 3),
    (77, 100, 200, 300, 400);
"#;

/// Build the nasty database at `path`, replacing any existing file.
///
/// What it holds, table by table:
///
/// * `hidden_rowid` — rowid table without INTEGER PRIMARY KEY, rowids
///   `i64::MIN`, -1, 0, 7, 1000000, `i64::MAX`;
///   `ipk` — INTEGER PRIMARY KEY with extreme ids;
///   `shadowed_rowid` — a rowid table with an ordinary column named `rowid`,
///   so the real rowid is only reachable as `_rowid_`/`oid`;
/// * `wr` — WITHOUT ROWID, composite `(TEXT, INTEGER)` primary key, and a
///   UNIQUE column (an `sqlite_autoindex_*` on a WITHOUT ROWID table);
///   `strict_t` — STRICT, with an `ANY` column;
///   `auto` — AUTOINCREMENT, `sqlite_sequence` = 10 while the largest id is 5;
///   `gen` — VIRTUAL and STORED generated columns;
/// * `vals` — special values in an untyped column: `i64` min/max, 0, -0.0,
///   ±Inf, the smallest subnormal and largest doubles, NULL vs `''` vs `x''`,
///   text with NUL bytes, invalid UTF-8 text, emoji/RTL/combining text;
///   `big` — a 5 MiB blob and a 3 MiB text ([`BIG_BLOB_LEN`],
///   [`BIG_TEXT_LEN`]); `many` — [`MANY_ROWS`] rows of mixed types;
/// * `affinity` — storage classes that differ from the declared type
///   (INTEGER, REAL, TEXT, NUMERIC, DATETIME, DECIMAL(10,2), BOOLEAN, BLOB);
///   `untyped` — `CREATE TABLE untyped(a, b)` with every class; `empty`;
/// * tables and columns whose names need quoting: spaces, `"`, `'`, a dot,
///   unicode, keywords (`select`, `from`), `../evil`, `%41`, `a/b`, a
///   backslash, and a table name containing a newline (column with a tab);
/// * `people` with plain, unique, multi-column, expression, partial and
///   COLLATE indexes plus a `UNIQUE` constraint (an `sqlite_autoindex_*`);
///   views `adults` and `adult_names` (the latter on the former);
/// * triggers: `people_audit` (AFTER INSERT, writes to `audit`, whose content
///   was then edited by hand, so a restore that fires the trigger is caught),
///   `adults_insert` (INSTEAD OF on a view), `frozen_guard` (BEFORE INSERT on
///   `frozen`, raising an error — a restore that creates triggers before
///   loading rows fails);
/// * `child`/`parent` — a foreign key to a table created later, with an
///   orphan row (a restore with `foreign_keys=ON` enforced during load fails);
/// * `docs` — FTS5; `boxes` — R*Tree;
/// * `PRAGMA user_version = 42`, `application_id = 0x12345678`,
///   `page_size = 8192`, `auto_vacuum = INCREMENTAL`; `ANALYZE` run last, so
///   `sqlite_stat1` (and `sqlite_stat4`, which the bundled SQLite builds)
///   exist; the database is left in WAL mode.
pub fn create_nasty_db(path: &Path) -> rusqlite::Result<()> {
    remove_existing(path);
    let conn = Connection::open(path)?;
    // The bundled SQLite enforces foreign keys by default; the orphan row in
    // `child` needs them off, as they are in a stock SQLite.
    conn.execute_batch("PRAGMA foreign_keys = OFF;")?;
    // Header settings that only take effect on an empty database.
    conn.execute_batch(&format!(
        "PRAGMA page_size = {NASTY_PAGE_SIZE}; PRAGMA auto_vacuum = INCREMENTAL;"
    ))?;
    conn.execute_batch("BEGIN;")?;
    conn.execute_batch(NASTY_SQL)?;

    // Doubles bound from Rust so their exact bits are stored.
    let mut stmt = conn.prepare("INSERT INTO vals(id, note, v) VALUES (?1, ?2, ?3)")?;
    let doubles: [(i64, &str, f64); 6] = [
        (30, "negative zero", -0.0),
        (31, "smallest subnormal", f64::from_bits(1)),
        (32, "largest double", f64::MAX),
        (33, "smallest negative", f64::MIN),
        (34, "epsilon", f64::EPSILON),
        (35, "pi", std::f64::consts::PI),
    ];
    for (id, note, v) in doubles {
        stmt.execute(params![id, note, v])?;
    }
    drop(stmt);
    // Negative zero in a REAL column too (REAL affinity may store whole
    // numbers as integers on disk; the sign must survive anyway).
    conn.execute(
        "INSERT INTO strict_t(id, i, r, t, b, a) VALUES (6, 0, ?1, 'negative zero', NULL, ?1)",
        params![-0.0f64],
    )?;

    // Several-megabyte values.
    conn.execute_batch("CREATE TABLE big(id INTEGER PRIMARY KEY, note TEXT, v);")?;
    conn.execute(
        "INSERT INTO big(id, note, v) VALUES (1, '5 MiB blob', ?1)",
        params![pseudo_random_bytes(BIG_BLOB_LEN, 0x5eed)],
    )?;
    conn.execute(
        "INSERT INTO big(id, note, v) VALUES (2, '3 MiB text', ?1)",
        params![big_text(BIG_TEXT_LEN)],
    )?;
    conn.execute(
        "INSERT INTO big(id, note, v) VALUES (3, 'small after big', 'tail')",
        [],
    )?;

    // Many rows of mixed types, with a few gaps.
    conn.execute_batch("CREATE TABLE many(id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, u);")?;
    let mut stmt = conn.prepare("INSERT INTO many(id, i, r, t, u) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for n in 0..MANY_ROWS {
        let id = if n % 1000 == 999 {
            n * 3 + 1_000_000
        } else {
            n
        };
        let u: rusqlite::types::Value = match n % 5 {
            0 => rusqlite::types::Value::Integer(n * 7),
            1 => rusqlite::types::Value::Real(n as f64 / 3.0),
            2 => rusqlite::types::Value::Text(format!("row {n}")),
            3 => rusqlite::types::Value::Blob(n.to_be_bytes().to_vec()),
            _ => rusqlite::types::Value::Null,
        };
        let t = if n % 11 == 0 {
            None
        } else {
            Some(format!("t{n:06}"))
        };
        stmt.execute(params![id, n - MANY_ROWS / 2, n as f64 * 0.5, t, u])?;
    }
    drop(stmt);

    conn.execute_batch(&format!(
        "PRAGMA user_version = {NASTY_USER_VERSION};
         PRAGMA application_id = {NASTY_APPLICATION_ID};
         COMMIT;
         ANALYZE;"
    ))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(format!(
                "could not switch {} to WAL mode (got {mode})",
                path.display()
            )),
        ));
    }
    Ok(())
}

/// Build a tidy small database at `path`, replacing any existing file:
/// `customers` (3 rows), `orders` (5 rows, foreign key to `customers`), an
/// index and a view. Default page size, rollback journal. Meant for CLI
/// tests that want readable output.
pub fn create_small_db(path: &Path) -> rusqlite::Result<()> {
    remove_existing(path);
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "BEGIN;
         CREATE TABLE customers(
             id INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             email TEXT UNIQUE
         );
         CREATE TABLE orders(
             id INTEGER PRIMARY KEY,
             customer_id INTEGER NOT NULL REFERENCES customers(id),
             total REAL NOT NULL,
             placed_at TEXT NOT NULL
         );
         CREATE INDEX orders_customer ON orders(customer_id);
         CREATE VIEW order_totals AS
             SELECT c.name AS name, count(*) AS orders, sum(o.total) AS total
             FROM customers c JOIN orders o ON o.customer_id = c.id
             GROUP BY c.id;
         INSERT INTO customers(id, name, email) VALUES
             (1, 'Ada', 'ada@example.com'),
             (2, 'Grace', 'grace@example.com'),
             (3, 'Linus', NULL);
         INSERT INTO orders(id, customer_id, total, placed_at) VALUES
             (1, 1, 12.5, '2024-01-02'),
             (2, 1, 7.25, '2024-01-05'),
             (3, 2, 100.0, '2024-02-01'),
             (4, 3, 0.99, '2024-02-03'),
             (5, 2, 42.0, '2024-03-09');
         COMMIT;",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::types::ValueRef;

    fn nasty() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nasty.db");
        create_nasty_db(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        (dir, conn)
    }

    fn pragma_i64(conn: &Connection, name: &str) -> i64 {
        conn.pragma_query_value(None, name, |r| r.get(0)).unwrap()
    }

    #[test]
    fn nasty_db_has_header_settings() {
        let (_dir, conn) = nasty();
        assert_eq!(pragma_i64(&conn, "user_version"), NASTY_USER_VERSION);
        assert_eq!(pragma_i64(&conn, "application_id"), NASTY_APPLICATION_ID);
        assert_eq!(pragma_i64(&conn, "page_size"), NASTY_PAGE_SIZE);
        assert_eq!(pragma_i64(&conn, "auto_vacuum"), 2);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let stat1: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_stat1", [], |r| r.get(0))
            .unwrap();
        assert!(stat1 > 0);
    }

    #[test]
    fn nasty_db_keeps_extreme_rowids_and_sequence() {
        let (_dir, conn) = nasty();
        let rowids: Vec<i64> = conn
            .prepare("SELECT rowid FROM hidden_rowid ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rowids, [i64::MIN, -1, 0, 7, 1_000_000, i64::MAX]);
        let seq: i64 = conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'auto'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let max: i64 = conn
            .query_row("SELECT max(id) FROM auto", [], |r| r.get(0))
            .unwrap();
        assert_eq!((seq, max), (10, 5));
        let shadowed: Vec<(i64, Option<String>)> = conn
            .prepare("SELECT _rowid_, rowid FROM shadowed_rowid ORDER BY _rowid_")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(shadowed[0], (-3, Some("not the rowid".to_string())));
    }

    #[test]
    fn nasty_db_keeps_special_values() {
        let (_dir, conn) = nasty();
        let get = |id: i64, f: &mut dyn FnMut(ValueRef<'_>)| {
            conn.query_row("SELECT v FROM vals WHERE id = ?1", [id], |r| {
                f(r.get_ref(0)?);
                Ok(())
            })
            .unwrap();
        };
        get(4, &mut |v| assert_eq!(v, ValueRef::Real(f64::INFINITY)));
        get(5, &mut |v| assert_eq!(v, ValueRef::Real(f64::NEG_INFINITY)));
        get(7, &mut |v| assert_eq!(v, ValueRef::Text(b"")));
        get(8, &mut |v| assert_eq!(v, ValueRef::Blob(b"")));
        get(9, &mut |v| assert_eq!(v, ValueRef::Text(b"a\0b")));
        get(10, &mut |v| assert_eq!(v, ValueRef::Text(b"\xff\xfe\x80")));
        get(30, &mut |v| match v {
            ValueRef::Real(x) => assert_eq!(x.to_bits(), (-0.0f64).to_bits()),
            other => panic!("negative zero came back as {other:?}"),
        });
        get(31, &mut |v| {
            assert_eq!(v, ValueRef::Real(f64::from_bits(1)))
        });
        let (i, r, t): (String, Vec<u8>, i64) = conn
            .query_row(
                "SELECT typeof(i), r, typeof(t) = 'integer' FROM affinity WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((i.as_str(), r.as_slice(), t), ("text", &[1u8, 2][..], 0));
        let blob_len: i64 = conn
            .query_row("SELECT length(v) FROM big WHERE id = 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(blob_len as usize, BIG_BLOB_LEN);
        let text_len: i64 = conn
            .query_row("SELECT octet_length(v) FROM big WHERE id = 2", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(text_len as usize, BIG_TEXT_LEN);
    }

    #[test]
    fn nasty_db_has_every_kind_of_object() {
        let (_dir, conn) = nasty();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(
            count("SELECT count(*) FROM sqlite_schema WHERE type = 'view'"),
            2
        );
        assert_eq!(
            count("SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'"),
            3
        );
        assert!(
            count("SELECT count(*) FROM sqlite_schema WHERE name LIKE 'sqlite_autoindex_%'") >= 2
        );
        assert_eq!(
            count("SELECT count(*) FROM pragma_table_list WHERE type = 'virtual'"),
            2
        );
        assert!(count("SELECT count(*) FROM pragma_table_list WHERE type = 'shadow'") >= 5);
        assert_eq!(
            count("SELECT count(*) FROM docs WHERE docs MATCH 'backup'"),
            1
        );
        assert_eq!(count("SELECT count(*) FROM boxes WHERE minx >= 0"), 2);
        assert_eq!(count("SELECT count(*) FROM \"line\nbreak\""), 1);
        assert_eq!(count("SELECT count(*) FROM many"), MANY_ROWS);
        // The trigger fired and the audit table was edited afterwards.
        assert_eq!(count("SELECT count(*) FROM audit"), 6);
        let err = conn
            .execute("INSERT INTO frozen(v) VALUES ('x')", [])
            .unwrap_err();
        assert!(err.to_string().contains("frozen is read-only"));
        assert_eq!(count("SELECT count(*) FROM pragma_foreign_key_check"), 1);
        assert_eq!(count("SELECT v FROM gen WHERE a = 1"), 3);
    }

    #[test]
    fn create_replaces_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.db");
        std::fs::write(&path, b"not a database").unwrap();
        create_small_db(&path).unwrap();
        create_small_db(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM order_totals", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3);
    }

    #[test]
    fn pseudo_random_bytes_are_deterministic() {
        assert_eq!(pseudo_random_bytes(100, 1), pseudo_random_bytes(100, 1));
        assert_ne!(pseudo_random_bytes(100, 1), pseudo_random_bytes(100, 2));
        assert_eq!(pseudo_random_bytes(13, 9).len(), 13);
    }
}
