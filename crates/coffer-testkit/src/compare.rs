//! Exact comparison of two SQLite databases.
//!
//! [`assert_same_database`] panics with a precise message at the first
//! difference; [`compare_databases`] returns that message instead;
//! [`database_digest`] hashes the same content so a database can be checked
//! against a recorded state.
//!
//! What counts as "the same":
//!
//! * **header pragmas** — `user_version`, `application_id`, `page_size`,
//!   `encoding`, `auto_vacuum`, `journal_mode`;
//! * **schema** — every row of `sqlite_schema` as `(type, name, tbl_name,
//!   sql)`, compared as sets (the `rootpage` is not compared); shadow tables
//!   of virtual tables and `sqlite_autoindex_*` indexes are compared by name
//!   only, since their SQL (if any) is produced by SQLite;
//! * **rows** of every table in the `main` schema, virtual tables (FTS5,
//!   R*Tree) included and shadow tables excluded: `SELECT rowid, *` ordered
//!   by rowid for rowid tables (using `_rowid_` or `oid` when a column is
//!   named `rowid`) and `SELECT *` ordered by primary key for WITHOUT ROWID
//!   tables, compared value by value **including storage class**: integers,
//!   reals (by bit pattern, so `-0.0 != 0.0`), text (as bytes, never decoded:
//!   it may be invalid UTF-8), blobs and NULL are all distinct;
//! * the **internal tables** `sqlite_sequence` and `sqlite_stat1` (and
//!   `sqlite_stat4` and friends when present), all columns, in a canonical
//!   order.
//!
//! Both databases are opened read-only and never modified.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Statement};
use sha2::{Digest, Sha256};

/// The header pragmas that are compared, in order.
pub const COMPARED_PRAGMAS: &[&str] = &[
    "user_version",
    "application_id",
    "page_size",
    "encoding",
    "auto_vacuum",
    "journal_mode",
];

/// An owned SQLite value that keeps its storage class and exact bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Val {
    /// NULL.
    Null,
    /// INTEGER.
    Integer(i64),
    /// REAL, as its IEEE-754 bit pattern.
    Real(u64),
    /// TEXT, as the stored bytes (not necessarily valid UTF-8).
    Text(Vec<u8>),
    /// BLOB.
    Blob(Vec<u8>),
}

impl Val {
    /// Copy a borrowed value.
    pub fn from_ref(v: ValueRef<'_>) -> Val {
        match v {
            ValueRef::Null => Val::Null,
            ValueRef::Integer(i) => Val::Integer(i),
            ValueRef::Real(r) => Val::Real(r.to_bits()),
            ValueRef::Text(t) => Val::Text(t.to_vec()),
            ValueRef::Blob(b) => Val::Blob(b.to_vec()),
        }
    }

    fn hash_into(&self, h: &mut Sha256) {
        match self {
            Val::Null => h.update([0u8]),
            Val::Integer(i) => {
                h.update([1u8]);
                h.update(i.to_be_bytes());
            }
            Val::Real(bits) => {
                h.update([2u8]);
                h.update(bits.to_be_bytes());
            }
            Val::Text(t) => {
                h.update([3u8]);
                hash_bytes(h, t);
            }
            Val::Blob(b) => {
                h.update([4u8]);
                hash_bytes(h, b);
            }
        }
    }
}

fn hash_bytes(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn hash_str(h: &mut Sha256, s: &str) {
    hash_bytes(h, s.as_bytes());
}

/// Shows the storage class and a readable, bounded rendering of the value.
impl fmt::Debug for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        match self {
            Val::Null => write!(f, "NULL"),
            Val::Integer(i) => write!(f, "INTEGER {i}"),
            Val::Real(bits) => write!(f, "REAL {:?} (bits {bits:#018x})", f64::from_bits(*bits)),
            Val::Text(t) => {
                let valid = std::str::from_utf8(t).is_ok();
                let shown = &t[..t.len().min(SHOWN)];
                write!(
                    f,
                    "TEXT of {} bytes {:?}",
                    t.len(),
                    String::from_utf8_lossy(shown)
                )?;
                if t.len() > SHOWN {
                    write!(f, "…")?;
                }
                if !valid || t.contains(&0) {
                    write!(f, " (hex {})", hex::encode(shown))?;
                }
                Ok(())
            }
            Val::Blob(b) => {
                write!(
                    f,
                    "BLOB of {} bytes x'{}'",
                    b.len(),
                    hex::encode(&b[..b.len().min(SHOWN)])
                )?;
                if b.len() > SHOWN {
                    write!(f, "…")?;
                }
                Ok(())
            }
        }
    }
}

/// Quote an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One row of `sqlite_schema`, as compared.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SchemaRow {
    kind: String,
    name: String,
    tbl_name: String,
    /// `None` for objects compared by name only, or when SQLite stores NULL.
    sql: Option<Vec<u8>>,
    /// Whether `sql` was deliberately left out.
    by_name_only: bool,
}

impl fmt::Display for SchemaRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} on {:?}", self.kind, self.name, self.tbl_name)?;
        match (&self.sql, self.by_name_only) {
            (_, true) => write!(f, " (compared by name only)"),
            (None, false) => write!(f, " with no SQL"),
            (Some(sql), false) => write!(f, " with SQL {:?}", String::from_utf8_lossy(sql)),
        }
    }
}

/// How a table's rows are read.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Table {
    name: String,
    /// `table_list` type: `table` or `virtual`.
    kind: String,
    without_rowid: bool,
    /// The SELECT that reads the rows in canonical order.
    query: String,
    /// Indexes (in the result row) of the columns that identify a row.
    key_columns: Vec<usize>,
}

/// Everything about one database except the rows themselves.
struct Db {
    conn: Connection,
    pragmas: Vec<(String, Val)>,
    schema: BTreeSet<SchemaRow>,
    /// User tables (virtual included, shadow excluded), by name.
    tables: BTreeMap<String, Table>,
    /// `sqlite_sequence`, `sqlite_stat*` that exist, by name.
    internal: BTreeMap<String, Table>,
}

fn open(path: &Path) -> Result<Db, String> {
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("could not open {}: {e}", path.display()))?;
    let ctx = |e: rusqlite::Error| format!("could not read {}: {e}", path.display());
    let pragmas = COMPARED_PRAGMAS
        .iter()
        .map(|p| {
            conn.query_row(&format!("PRAGMA {p}"), [], |r| {
                Ok(Val::from_ref(r.get_ref(0)?))
            })
            .map(|v| (p.to_string(), v))
        })
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(ctx)?;

    // (schema, name, type, ncol, wr, strict)
    let listed: Vec<(String, String, String, bool)> = conn
        .prepare("SELECT schema, name, type, wr FROM pragma_table_list")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? != 0))
            })?
            .collect()
        })
        .map_err(ctx)?;
    let shadow: BTreeSet<String> = listed
        .iter()
        .filter(|(schema, _, kind, _)| schema == "main" && kind == "shadow")
        .map(|(_, name, _, _)| name.clone())
        .collect();

    let mut schema = BTreeSet::new();
    {
        let mut stmt = conn
            .prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema")
            .map_err(ctx)?;
        let mut rows = stmt.query([]).map_err(ctx)?;
        while let Some(r) = rows.next().map_err(ctx)? {
            let name: String = r.get(1).map_err(ctx)?;
            let by_name_only = shadow.contains(&name) || name.starts_with("sqlite_autoindex_");
            let sql = match r.get_ref(3).map_err(ctx)? {
                _ if by_name_only => None,
                ValueRef::Null => None,
                ValueRef::Text(t) | ValueRef::Blob(t) => Some(t.to_vec()),
                other => Some(format!("{other:?}").into_bytes()),
            };
            schema.insert(SchemaRow {
                kind: r.get(0).map_err(ctx)?,
                name,
                tbl_name: r.get(2).map_err(ctx)?,
                sql,
                by_name_only,
            });
        }
    }

    let mut tables = BTreeMap::new();
    let mut internal = BTreeMap::new();
    for (schema_name, name, kind, wr) in listed {
        if schema_name != "main" || !(kind == "table" || kind == "virtual") {
            continue;
        }
        let lower = name.to_ascii_lowercase();
        if lower == "sqlite_schema" || lower == "sqlite_master" {
            continue;
        }
        if lower.starts_with("sqlite_") {
            let table = internal_table(&conn, &name, &kind).map_err(ctx)?;
            internal.insert(name, table);
            continue;
        }
        let table = user_table(&conn, &name, &kind, wr).map_err(|e| match e {
            TableError::Sql(e) => ctx(e),
            TableError::Other(m) => format!("{}: {m}", path.display()),
        })?;
        tables.insert(name, table);
    }
    Ok(Db {
        conn,
        pragmas,
        schema,
        tables,
        internal,
    })
}

enum TableError {
    Sql(rusqlite::Error),
    Other(String),
}

impl From<rusqlite::Error> for TableError {
    fn from(e: rusqlite::Error) -> Self {
        TableError::Sql(e)
    }
}

/// `(name, pk)` of every column, hidden ones included.
fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<(String, i64)>> {
    conn.prepare("SELECT name, pk FROM pragma_table_xinfo(?1)")?
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

fn user_table(conn: &Connection, name: &str, kind: &str, wr: bool) -> Result<Table, TableError> {
    let cols = columns(conn, name)?;
    let q = quote_ident(name);
    if wr {
        let mut pk: Vec<(i64, usize)> = Vec::new();
        // Positions in `SELECT *`: only visible columns count, but tables
        // WITHOUT ROWID have no hidden columns.
        for (i, (_, k)) in cols.iter().enumerate() {
            if *k > 0 {
                pk.push((*k, i));
            }
        }
        pk.sort();
        let order: Vec<String> = if pk.is_empty() {
            (1..=cols.len()).map(|i| i.to_string()).collect()
        } else {
            pk.iter().map(|(_, i)| quote_ident(&cols[*i].0)).collect()
        };
        let key_columns = if pk.is_empty() {
            (0..cols.len()).collect()
        } else {
            pk.iter().map(|(_, i)| *i).collect()
        };
        return Ok(Table {
            name: name.to_string(),
            kind: kind.to_string(),
            without_rowid: true,
            query: format!("SELECT * FROM {q} ORDER BY {}", order.join(", ")),
            key_columns,
        });
    }
    let alias = ["rowid", "_rowid_", "oid"]
        .into_iter()
        .find(|a| !cols.iter().any(|(c, _)| c.eq_ignore_ascii_case(a)))
        .ok_or_else(|| {
            TableError::Other(format!(
                "table {q} has columns named rowid, _rowid_ and oid, so its rowid cannot be read"
            ))
        })?;
    Ok(Table {
        name: name.to_string(),
        kind: kind.to_string(),
        without_rowid: false,
        query: format!("SELECT {alias} AS {alias}, * FROM {q} ORDER BY {alias}"),
        key_columns: vec![0],
    })
}

fn internal_table(conn: &Connection, name: &str, kind: &str) -> rusqlite::Result<Table> {
    let n = columns(conn, name)?.len();
    let order: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    Ok(Table {
        name: name.to_string(),
        kind: kind.to_string(),
        without_rowid: false,
        query: format!(
            "SELECT * FROM {} ORDER BY {}",
            quote_ident(name),
            order.join(", ")
        ),
        key_columns: (0..n.min(2)).collect(),
    })
}

fn column_names(stmt: &Statement<'_>) -> Vec<String> {
    stmt.column_names()
        .into_iter()
        .map(str::to_string)
        .collect()
}

fn describe_key(row: &[Val], key_columns: &[usize], names: &[String]) -> String {
    key_columns
        .iter()
        .filter_map(|&i| Some(format!("{} = {:?}", names.get(i)?, row.get(i)?)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_row(row: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<Vec<Val>> {
    (0..n).map(|i| row.get_ref(i).map(Val::from_ref)).collect()
}

/// Compare the rows of one table in lockstep.
fn compare_rows(a: &Db, b: &Db, ta: &Table, what: &str) -> Result<(), String> {
    let ctx =
        |side: &str, e: rusqlite::Error| format!("{what}: could not read it from {side}: {e}");
    let mut sa = a.conn.prepare(&ta.query).map_err(|e| ctx("a", e))?;
    let mut sb = b.conn.prepare(&ta.query).map_err(|e| ctx("b", e))?;
    let names_a = column_names(&sa);
    let names_b = column_names(&sb);
    if names_a != names_b {
        return Err(format!(
            "{what}: columns differ: a has {names_a:?}, b has {names_b:?}"
        ));
    }
    let n = names_a.len();
    let mut ra = sa.query([]).map_err(|e| ctx("a", e))?;
    let mut rb = sb.query([]).map_err(|e| ctx("b", e))?;
    let mut index = 0u64;
    loop {
        let row_a = ra.next().map_err(|e| ctx("a", e))?;
        let row_b = rb.next().map_err(|e| ctx("b", e))?;
        match (row_a, row_b) {
            (None, None) => return Ok(()),
            (Some(r), None) => {
                let r = read_row(r, n).map_err(|e| ctx("a", e))?;
                return Err(format!(
                    "{what}: a has more rows than b ({index} in common); the first extra row of a has {}",
                    describe_key(&r, &ta.key_columns, &names_a)
                ));
            }
            (None, Some(r)) => {
                let r = read_row(r, n).map_err(|e| ctx("b", e))?;
                return Err(format!(
                    "{what}: b has more rows than a ({index} in common); the first extra row of b has {}",
                    describe_key(&r, &ta.key_columns, &names_a)
                ));
            }
            (Some(x), Some(y)) => {
                for i in 0..n {
                    let va = x.get_ref(i).map_err(|e| ctx("a", e))?;
                    let vb = y.get_ref(i).map_err(|e| ctx("b", e))?;
                    if !same_value(va, vb) {
                        let full_a = read_row(x, n).map_err(|e| ctx("a", e))?;
                        let full_b = read_row(y, n).map_err(|e| ctx("b", e))?;
                        let key_a = describe_key(&full_a, &ta.key_columns, &names_a);
                        let key_b = describe_key(&full_b, &ta.key_columns, &names_a);
                        let at = if key_a == key_b {
                            format!("row {index} ({key_a})")
                        } else {
                            format!("row {index} (a: {key_a}; b: {key_b})")
                        };
                        return Err(format!(
                            "{what}: {at}, column {:?}: a has {:?} but b has {:?}",
                            names_a[i],
                            Val::from_ref(va),
                            Val::from_ref(vb)
                        ));
                    }
                }
            }
        }
        index += 1;
    }
}

fn same_value(a: ValueRef<'_>, b: ValueRef<'_>) -> bool {
    match (a, b) {
        (ValueRef::Null, ValueRef::Null) => true,
        (ValueRef::Integer(x), ValueRef::Integer(y)) => x == y,
        (ValueRef::Real(x), ValueRef::Real(y)) => x.to_bits() == y.to_bits(),
        (ValueRef::Text(x), ValueRef::Text(y)) => x == y,
        (ValueRef::Blob(x), ValueRef::Blob(y)) => x == y,
        _ => false,
    }
}

fn first_only<T: Ord + Clone>(x: &BTreeSet<T>, y: &BTreeSet<T>) -> Option<T> {
    x.difference(y).next().cloned()
}

/// Compare two databases; `Err` carries a message describing the first
/// difference found (pragmas, then schema, then tables in name order, then
/// internal tables).
pub fn compare_databases(a: &Path, b: &Path) -> Result<(), String> {
    let da = open(a).map_err(|e| format!("database a: {e}"))?;
    let db = open(b).map_err(|e| format!("database b: {e}"))?;
    let prefix = format!("{} (a) and {} (b) differ", a.display(), b.display());

    for ((name, va), (_, vb)) in da.pragmas.iter().zip(&db.pragmas) {
        if va != vb {
            return Err(format!(
                "{prefix}: PRAGMA {name}: a has {va:?} but b has {vb:?}"
            ));
        }
    }
    if let Some(row) = first_only(&da.schema, &db.schema) {
        let hint = db
            .schema
            .iter()
            .find(|r| r.name == row.name)
            .map(|r| format!("; b has {r}"))
            .unwrap_or_default();
        return Err(format!("{prefix}: schema: a has {row} which b lacks{hint}"));
    }
    if let Some(row) = first_only(&db.schema, &da.schema) {
        return Err(format!("{prefix}: schema: b has {row} which a lacks"));
    }
    for (label, ma, mb) in [
        ("table", &da.tables, &db.tables),
        ("internal table", &da.internal, &db.internal),
    ] {
        let names_a: BTreeSet<_> = ma.keys().cloned().collect();
        let names_b: BTreeSet<_> = mb.keys().cloned().collect();
        if let Some(n) = first_only(&names_a, &names_b) {
            return Err(format!(
                "{prefix}: {label} {} is in a but not in b",
                quote_ident(&n)
            ));
        }
        if let Some(n) = first_only(&names_b, &names_a) {
            return Err(format!(
                "{prefix}: {label} {} is in b but not in a",
                quote_ident(&n)
            ));
        }
        for (name, ta) in ma {
            let tb = &mb[name];
            let what = format!("{prefix}: {label} {}", quote_ident(name));
            if ta != tb {
                return Err(format!(
                    "{what}: shape differs: a is {} (without rowid: {}), b is {} (without rowid: {})",
                    ta.kind, ta.without_rowid, tb.kind, tb.without_rowid
                ));
            }
            compare_rows(&da, &db, ta, &what)?;
        }
    }
    Ok(())
}

/// Compare only the tables named in `names` of two databases: each
/// table's own schema objects (the table and its indexes, by SQL) and its
/// rows, value by value with storage classes, as [`compare_databases`]
/// does. Pragmas, other tables, views and triggers are not compared. `Err`
/// carries a message describing the first difference.
pub fn compare_tables(a: &Path, b: &Path, names: &[&str]) -> Result<(), String> {
    let da = open(a).map_err(|e| format!("database a: {e}"))?;
    let db = open(b).map_err(|e| format!("database b: {e}"))?;
    let prefix = format!("{} (a) and {} (b) differ", a.display(), b.display());
    for name in names {
        let own = |d: &Db| -> BTreeSet<SchemaRow> {
            d.schema
                .iter()
                .filter(|r| r.tbl_name == *name && (r.kind == "table" || r.kind == "index"))
                .cloned()
                .collect()
        };
        let (sa, sb) = (own(&da), own(&db));
        if let Some(row) = first_only(&sa, &sb) {
            return Err(format!("{prefix}: schema: a has {row} which b lacks"));
        }
        if let Some(row) = first_only(&sb, &sa) {
            return Err(format!("{prefix}: schema: b has {row} which a lacks"));
        }
        let what = format!("{prefix}: table {}", quote_ident(name));
        let (Some(ta), Some(tb)) = (da.tables.get(*name), db.tables.get(*name)) else {
            return Err(format!("{what} is missing from one of them"));
        };
        if ta != tb {
            return Err(format!(
                "{what}: shape differs: a is {} (without rowid: {}), b is {} (without rowid: {})",
                ta.kind, ta.without_rowid, tb.kind, tb.without_rowid
            ));
        }
        compare_rows(&da, &db, ta, &what)?;
    }
    Ok(())
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
    match try_digest(path) {
        Ok(d) => d,
        Err(e) => panic!("could not digest {}: {e}", path.display()),
    }
}

fn try_digest(path: &Path) -> Result<String, String> {
    let db = open(path)?;
    let mut h = Sha256::new();
    h.update(b"coffer-testkit database digest v1\0");
    for (name, v) in &db.pragmas {
        hash_str(&mut h, name);
        v.hash_into(&mut h);
    }
    h.update((db.schema.len() as u64).to_be_bytes());
    for row in &db.schema {
        hash_str(&mut h, &row.kind);
        hash_str(&mut h, &row.name);
        hash_str(&mut h, &row.tbl_name);
        match &row.sql {
            None => h.update([row.by_name_only as u8]),
            Some(sql) => {
                h.update([2u8]);
                hash_bytes(&mut h, sql);
            }
        }
    }
    for (label, tables) in [("tables", &db.tables), ("internal", &db.internal)] {
        hash_str(&mut h, label);
        h.update((tables.len() as u64).to_be_bytes());
        for t in tables.values() {
            hash_str(&mut h, &t.name);
            hash_str(&mut h, &t.kind);
            h.update([t.without_rowid as u8]);
            let err = |e: rusqlite::Error| format!("table {}: {e}", quote_ident(&t.name));
            let mut stmt = db.conn.prepare(&t.query).map_err(err)?;
            let names = column_names(&stmt);
            h.update((names.len() as u64).to_be_bytes());
            for n in &names {
                hash_str(&mut h, n);
            }
            let mut rows = stmt.query([]).map_err(err)?;
            let mut count = 0u64;
            while let Some(r) = rows.next().map_err(err)? {
                h.update([0xAA]);
                for i in 0..names.len() {
                    Val::from_ref(r.get_ref(i).map_err(err)?).hash_into(&mut h);
                }
                count += 1;
            }
            h.update([0x55]);
            h.update(count.to_be_bytes());
        }
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nasty::{create_nasty_db, create_small_db};

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
