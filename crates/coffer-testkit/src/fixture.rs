//! Engine fixtures: what the [engine conformance suite](crate::engines)
//! needs from an engine beyond the [`Engine`] trait itself.
//!
//! A fixture makes databases from a neutral [`Description`] (tables with
//! neutral column types and rows of [`Value`]s), reads databases back as
//! [`Image`]s, applies seeded random changes from a connection of its own
//! ([`Writer`]), and changes a table's schema. [`SqliteFixture`] is the
//! SQLite engine's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coffer::engine::{Address, Engine};
use rusqlite::Connection;

use crate::image::{Image, Value};
use crate::sqlite::{quote_ident, read_image};

/// A column type every engine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// A 64-bit signed integer.
    Integer,
    /// A 64-bit IEEE-754 float.
    Real,
    /// UTF-8 text (without NUL characters, which PostgreSQL refuses).
    Text,
    /// Bytes.
    Blob,
}

/// One column of a described table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDesc {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: ColumnType,
    /// Whether it takes NULL.
    pub nullable: bool,
}

/// A table to create, with its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDesc {
    /// Its name.
    pub name: String,
    /// Its columns, in order.
    pub columns: Vec<ColumnDesc>,
    /// The names of its primary-key columns, in key order; empty for a
    /// table without a primary key.
    pub primary_key: Vec<String>,
    /// Its rows, one value per column. Every value has its column's type
    /// (or is NULL in a nullable column).
    pub rows: Vec<Vec<Value>>,
}

impl TableDesc {
    /// A table `name` with `columns` given as (name, type, nullable).
    pub fn new(
        name: &str,
        columns: &[(&str, ColumnType, bool)],
        primary_key: &[&str],
    ) -> TableDesc {
        TableDesc {
            name: name.to_string(),
            columns: columns
                .iter()
                .map(|(n, ty, nullable)| ColumnDesc {
                    name: n.to_string(),
                    ty: *ty,
                    nullable: *nullable,
                })
                .collect(),
            primary_key: primary_key.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// The same table with `rows`.
    pub fn with_rows(mut self, rows: Vec<Vec<Value>>) -> TableDesc {
        self.rows = rows;
        self
    }

    /// Positions of the primary-key columns.
    pub fn key_positions(&self) -> Vec<usize> {
        self.primary_key
            .iter()
            .map(|k| {
                self.columns
                    .iter()
                    .position(|c| &c.name == k)
                    .unwrap_or_else(|| panic!("table {}: no key column {k}", self.name))
            })
            .collect()
    }
}

/// A database to create: its tables, in creation order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Description {
    /// The tables.
    pub tables: Vec<TableDesc>,
}

impl Description {
    /// The table `name`.
    pub fn table(&self, name: &str) -> &TableDesc {
        self.tables
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("the description has no table {name}"))
    }

    /// The names of the tables.
    pub fn names(&self) -> Vec<&str> {
        self.tables.iter().map(|t| t.name.as_str()).collect()
    }
}

/// A second connection that commits random changes to some tables of a
/// database.
///
/// Step `i` of a writer made with seed `s` always does the same thing to
/// the same state: replaying steps `0..n` of seed `s` on a database made
/// from the same [`Description`] reproduces the state after `n` steps.
pub trait Writer: Send {
    /// Commit one transaction of random inserts, updates (key changes
    /// included) and deletes.
    fn step(&mut self) -> Result<(), String>;
}

/// A change to a table's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChange {
    /// Add a nullable text column and set it in one row.
    AddColumn,
    /// Add a unique index on these columns (what an upsert replaces
    /// changes, though the columns do not).
    AddUniqueIndex(Vec<String>),
}

/// What the engine conformance suite needs from an engine.
///
/// Every database a fixture makes is its own, at an address no other
/// fixture call returns; the fixture removes them when dropped.
pub trait EngineFixture: Send + Sync {
    /// The engine under test.
    fn engine(&self) -> Arc<dyn Engine>;

    /// An address where no database exists yet, for a restore or an import
    /// to create.
    fn fresh(&self, label: &str) -> Address;

    /// Create a database from `description` at a fresh address.
    fn create(&self, label: &str, description: &Description) -> Address;

    /// The engine's own nastiest database at a fresh address: every kind
    /// of schema object and value the engine keeps, beyond what a
    /// [`Description`] can say (SQLite: storage classes that differ from
    /// the declared type, text that is not UTF-8, rowids, statistics).
    fn create_nasty(&self, label: &str) -> Option<Address> {
        let _ = label;
        None
    }

    /// The value that a column of type `ty` holds after `value` is
    /// written to it, where the engine itself changes it (SQLite stores a
    /// REAL `-0.0` as `0.0`); by default `value` itself.
    fn stored_as(&self, ty: ColumnType, value: &Value) -> Value {
        let _ = ty;
        value.clone()
    }

    /// The database at `db` as an image; `Err` when there is none (or it
    /// cannot be read).
    fn image(&self, db: &Address) -> Result<Image, String>;

    /// Whether a database exists at `db`.
    fn exists(&self, db: &Address) -> bool;

    /// What a restore or import into `db` left beside it (temporary files,
    /// half-built databases), by name; empty when nothing.
    fn leftovers(&self, db: &Address) -> Vec<String>;

    /// A writer on its own connection that changes the tables `tables`
    /// (described by `description`) with random choices seeded by `seed`.
    fn writer(
        &self,
        db: &Address,
        description: &Description,
        tables: &[&str],
        seed: u64,
    ) -> Box<dyn Writer>;

    /// Change the schema of `table` as `change` says, in one transaction.
    fn change_schema(&self, db: &Address, table: &str, change: SchemaChange);

    /// Whether the engine's change capture takes tables without a key
    /// (SQLite's rowid tables); the capture checks then use one.
    fn captures_keyless(&self) -> bool {
        true
    }
}

/// The SQLite engine's fixture: databases are files in a temporary
/// directory, each in a directory of its own (so that anything a restore
/// leaves beside it is seen).
pub struct SqliteFixture {
    dir: tempfile::TempDir,
    next: AtomicU64,
}

impl Default for SqliteFixture {
    fn default() -> Self {
        SqliteFixture::new()
    }
}

impl SqliteFixture {
    /// A fixture over a new temporary directory.
    pub fn new() -> SqliteFixture {
        SqliteFixture {
            dir: tempfile::tempdir().expect("a temporary directory"),
            next: AtomicU64::new(0),
        }
    }

    fn path_of(db: &Address) -> PathBuf {
        db.file()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(db.location()))
    }

    fn new_path(&self, label: &str) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let safe: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = self.dir.path().join(format!("{n:03}-{safe}"));
        std::fs::create_dir(&dir).expect("a database directory");
        dir.join("db.sqlite")
    }

    fn connect(path: &Path) -> Connection {
        let c = Connection::open(path)
            .unwrap_or_else(|e| panic!("could not open {}: {e}", path.display()));
        c.busy_timeout(Duration::from_secs(60)).unwrap();
        c
    }
}

fn sqlite_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Integer => "INTEGER",
        ColumnType::Real => "REAL",
        ColumnType::Text => "TEXT",
        ColumnType::Blob => "BLOB",
    }
}

/// The CREATE TABLE statement of a described table: a single INTEGER key
/// becomes the rowid (`INTEGER PRIMARY KEY`), other keys a constraint.
fn create_table_sql(t: &TableDesc) -> String {
    let single_int_key = t.primary_key.len() == 1
        && t.columns
            .iter()
            .any(|c| c.name == t.primary_key[0] && c.ty == ColumnType::Integer);
    let mut parts: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            let mut s = format!("{} {}", quote_ident(&c.name), sqlite_type(c.ty));
            if single_int_key && c.name == t.primary_key[0] {
                s.push_str(" PRIMARY KEY");
            } else if !c.nullable {
                s.push_str(" NOT NULL");
            }
            s
        })
        .collect();
    if !single_int_key && !t.primary_key.is_empty() {
        parts.push(format!(
            "PRIMARY KEY ({})",
            t.primary_key
                .iter()
                .map(|k| quote_ident(k))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    format!(
        "CREATE TABLE {} ({})",
        quote_ident(&t.name),
        parts.join(", ")
    )
}

fn insert_sql(t: &TableDesc, verb: &str) -> String {
    format!(
        "{verb} INTO {} ({}) VALUES ({})",
        quote_ident(&t.name),
        t.columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", "),
        (1..=t.columns.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

impl EngineFixture for SqliteFixture {
    fn engine(&self) -> Arc<dyn Engine> {
        coffer_sqlite::engine()
    }

    fn fresh(&self, label: &str) -> Address {
        coffer_sqlite::address(self.new_path(label)).expect("a SQLite address")
    }

    fn create(&self, label: &str, description: &Description) -> Address {
        let path = self.new_path(label);
        let mut c = Self::connect(&path);
        c.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        let tx = c.transaction().unwrap();
        for t in &description.tables {
            tx.execute_batch(&create_table_sql(t))
                .unwrap_or_else(|e| panic!("create {}: {e}", t.name));
            let mut ins = tx.prepare(&insert_sql(t, "INSERT")).unwrap();
            for row in &t.rows {
                ins.execute(rusqlite::params_from_iter(row.iter()))
                    .unwrap_or_else(|e| panic!("insert into {}: {e}: {row:?}", t.name));
            }
        }
        tx.commit().unwrap();
        coffer_sqlite::address(&path).expect("a SQLite address")
    }

    fn create_nasty(&self, label: &str) -> Option<Address> {
        let path = self.new_path(label);
        crate::nasty::create_nasty_db(&path).expect("the nasty database");
        Some(coffer_sqlite::address(&path).expect("a SQLite address"))
    }

    /// SQLite keeps a REAL that is a whole number as an integer on disk
    /// and reads it back as a REAL: `-0.0` comes back as `0.0` (columns
    /// without affinity keep it; the nasty database has those).
    fn stored_as(&self, ty: ColumnType, value: &Value) -> Value {
        match (ty, value) {
            (ColumnType::Real, Value::Real(bits)) if f64::from_bits(*bits) == 0.0 => {
                Value::real(0.0)
            }
            _ => value.clone(),
        }
    }

    fn image(&self, db: &Address) -> Result<Image, String> {
        read_image(&Self::path_of(db))
    }

    fn exists(&self, db: &Address) -> bool {
        std::fs::metadata(Self::path_of(db)).is_ok_and(|m| m.len() > 0)
    }

    fn leftovers(&self, db: &Address) -> Vec<String> {
        let path = Self::path_of(db);
        let own: Vec<String> = ["", "-wal", "-shm"]
            .iter()
            .map(|s| format!("{}{s}", path.file_name().unwrap().to_string_lossy()))
            .collect();
        let Ok(entries) = std::fs::read_dir(path.parent().unwrap()) else {
            return Vec::new();
        };
        let mut out: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !own.contains(n))
            .collect();
        out.sort();
        out
    }

    fn writer(
        &self,
        db: &Address,
        description: &Description,
        tables: &[&str],
        seed: u64,
    ) -> Box<dyn Writer> {
        Box::new(SqliteWriter {
            conn: Self::connect(&Self::path_of(db)),
            tables: tables
                .iter()
                .map(|t| description.table(t).clone())
                .collect(),
            rng: fastrand::Rng::with_seed(seed),
        })
    }

    fn change_schema(&self, db: &Address, table: &str, change: SchemaChange) {
        let c = Self::connect(&Self::path_of(db));
        let q = quote_ident(table);
        let sql = match &change {
            SchemaChange::AddColumn => format!(
                "BEGIN;
                 ALTER TABLE {q} ADD COLUMN \"added by the suite\" TEXT;
                 UPDATE {q} SET \"added by the suite\" = 'changed' WHERE rowid = (SELECT min(rowid) FROM {q});
                 COMMIT;"
            ),
            SchemaChange::AddUniqueIndex(columns) => format!(
                "CREATE UNIQUE INDEX {} ON {q}({});",
                quote_ident(&format!("{table} unique by the suite")),
                columns
                    .iter()
                    .map(|c| quote_ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        c.execute_batch(&sql)
            .unwrap_or_else(|e| panic!("change the schema of {table} ({change:?}): {e}"));
    }
}

/// Random values of a column type, nasty ones among them.
pub fn random_value(rng: &mut fastrand::Rng, ty: ColumnType, nullable: bool) -> Value {
    if nullable && rng.u8(0..10) == 0 {
        return Value::Null;
    }
    match ty {
        ColumnType::Integer => Value::Integer(match rng.u8(0..10) {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => 0,
            _ => rng.i64(-1_000_000..1_000_000),
        }),
        ColumnType::Real => Value::real(match rng.u8(0..12) {
            0 => -0.0,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => f64::MIN_POSITIVE / 4.0,
            4 => f64::MAX,
            _ => rng.f64() * 1e6 - 5e5,
        }),
        ColumnType::Text => {
            const PIECES: &[&str] = &[
                "a", "Z", " ", "'", "\"", "\\", "\n", "é", "表", "🦀", "\u{202e}", "e\u{301}", ",",
                ";",
            ];
            let n = rng.usize(0..24);
            Value::text(
                &(0..n)
                    .map(|_| PIECES[rng.usize(..PIECES.len())])
                    .collect::<String>(),
            )
        }
        ColumnType::Blob => {
            let n = rng.usize(0..40);
            Value::Blob((0..n).map(|_| rng.u8(..)).collect())
        }
    }
}

struct SqliteWriter {
    conn: Connection,
    tables: Vec<TableDesc>,
    rng: fastrand::Rng,
}

/// A random row of `t` for a writer to insert, its key columns (at
/// `keys`) from [`random_key`].
pub(crate) fn random_row(rng: &mut fastrand::Rng, t: &TableDesc, keys: &[usize]) -> Vec<Value> {
    t.columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if keys.contains(&i) {
                random_key(rng, c.ty)
            } else {
                random_value(rng, c.ty, c.nullable)
            }
        })
        .collect()
}

/// Keys the writer chooses from: small ranges, so that updates and
/// deletes hit rows and inserts collide.
pub(crate) fn random_key(rng: &mut fastrand::Rng, ty: ColumnType) -> Value {
    match ty {
        ColumnType::Integer => Value::Integer(rng.i64(1..400)),
        ColumnType::Real => Value::real(rng.i64(1..50) as f64 / 4.0),
        ColumnType::Text => Value::text(&format!("k{}", rng.u8(0..40))),
        ColumnType::Blob => Value::Blob(vec![rng.u8(0..40)]),
    }
}

impl SqliteWriter {
    fn one_change(
        tx: &rusqlite::Transaction<'_>,
        rng: &mut fastrand::Rng,
        t: &TableDesc,
    ) -> rusqlite::Result<()> {
        let q = quote_ident(&t.name);
        let keys = t.key_positions();
        let row = random_row(rng, t, &keys);
        let non_key: Vec<usize> = (0..t.columns.len()).filter(|i| !keys.contains(i)).collect();
        // Which row an update or delete hits: by key, or (without a key)
        // by position in rowid order, so that the choice is the same on
        // every replay.
        let (cond, params): (String, Vec<Value>) = if keys.is_empty() {
            let offset = rng.i64(0..400);
            (
                format!(
                    "rowid = (SELECT rowid FROM {q} ORDER BY rowid LIMIT 1 OFFSET {offset} % max(1, (SELECT count(*) FROM {q})))"
                ),
                Vec::new(),
            )
        } else {
            let cond = keys
                .iter()
                .enumerate()
                .map(|(n, &k)| format!("{} = ?{}", quote_ident(&t.columns[k].name), n + 2))
                .collect::<Vec<_>>()
                .join(" AND ");
            (
                cond,
                keys.iter()
                    .map(|&k| random_key(rng, t.columns[k].ty))
                    .collect(),
            )
        };
        match rng.u8(0..10) {
            0..=3 => {
                let verb = if rng.bool() {
                    "INSERT OR IGNORE"
                } else {
                    "INSERT OR REPLACE"
                };
                tx.execute(&insert_sql(t, verb), rusqlite::params_from_iter(row.iter()))?;
            }
            4..=6 if !non_key.is_empty() => {
                let c = non_key[rng.usize(..non_key.len())];
                let sql = format!(
                    "UPDATE {q} SET {} = ?1 WHERE {cond}",
                    quote_ident(&t.columns[c].name)
                );
                let mut p = vec![row[c].clone()];
                p.extend(params);
                tx.execute(&sql, rusqlite::params_from_iter(p.iter()))?;
            }
            7 if !keys.is_empty() => {
                // A key change.
                let k = keys[0];
                let sql = format!(
                    "UPDATE OR IGNORE {q} SET {} = ?1 WHERE {cond}",
                    quote_ident(&t.columns[k].name)
                );
                let mut p = vec![random_key(rng, t.columns[k].ty)];
                p.extend(params);
                tx.execute(&sql, rusqlite::params_from_iter(p.iter()))?;
            }
            _ => {
                let sql = format!("DELETE FROM {q} WHERE {cond}");
                let mut p = vec![Value::Null];
                p.extend(params);
                // ?1 is unused in the condition; bind from ?2 on.
                let sql = sql.replace("WHERE ", "WHERE ?1 IS NULL AND ");
                tx.execute(&sql, rusqlite::params_from_iter(p.iter()))?;
            }
        }
        Ok(())
    }
}

impl Writer for SqliteWriter {
    fn step(&mut self) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(|e| e.to_string())?;
        for _ in 0..self.rng.usize(1..6) {
            let t = &self.tables[self.rng.usize(..self.tables.len())];
            Self::one_change(&tx, &mut self.rng, t)
                .map_err(|e| format!("table {}: {e}", t.name))?;
        }
        tx.commit().map_err(|e| e.to_string())
    }
}
