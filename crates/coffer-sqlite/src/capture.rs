//! Change capture for SQLite: trigger-maintained change logs.
//!
//! For every captured table `T` the database holds:
//!
//! * a change log `_coffer_log_T` keyed like the table — `k0 INTEGER PRIMARY
//!   KEY` holding the rowid of a rowid table, or `k0, k1, …` with the
//!   primary key's collations for a `WITHOUT ROWID` table — plus the `epoch`
//!   of the last change to that key. One entry per key, whatever the number
//!   of changes (an upsert on the key);
//! * triggers `_coffer_ins_T`, `_coffer_upd_T`, `_coffer_updk_T` (only when
//!   the key itself changes: logs the old key) and `_coffer_del_T`, each one
//!   statement that records the key with the current epoch. Row images are
//!   never copied: a backup reads the current row of each logged key.
//!
//! and, once per database, `_coffer_epoch` (one row: the current epoch),
//! `_coffer_collections` (one row per collection: its identity, tables,
//! repository and where the log continues from) and `_coffer_capture`
//! (which table belongs to which collection, so a table is in at most one).
//!
//! A backup commits `epoch = epoch + 1` and only then opens its read
//! transaction, so every entry with an epoch up to the old value is visible
//! to it; entries written meanwhile carry the new epoch and survive
//! [`trim`](coffer::engine::ChangeCapture::trim), which removes only the
//! epochs the committed backup covered.
//!
//! `VACUUM` may renumber implicit rowids (a table without an `INTEGER
//! PRIMARY KEY`) and raises the schema cookie: each committed backup records
//! the cookie it saw, and an incremental is refused for a collection with
//! such a table once the cookie moved.

use std::collections::HashMap;
use std::path::Path;

use coffer::engine::{
    Catalog, ChainRestorer, ChangeCapture, ChangeSnapshot, CollectionRecord, DataBatch, Snapshot,
};
use coffer::manifest::{Column, Table};
use coffer::progress::Cancel;
use coffer::{Error, ErrorKind};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::catalog::{read_catalog, rowid_alias};
use crate::snapshot::{SqliteSnapshot, open_snapshot};
use crate::{Result, SqliteEngine, quote, sql_error};

/// Every name coffer creates in a database starts with this.
pub const PREFIX: &str = "_coffer_";
/// The one-row table holding the current epoch.
pub const EPOCH_TABLE: &str = "_coffer_epoch";
/// One row per collection.
pub const COLLECTIONS_TABLE: &str = "_coffer_collections";
/// One row per captured table.
pub const CAPTURE_TABLE: &str = "_coffer_capture";

/// The change log of `table`.
pub fn log_name(table: &str) -> String {
    format!("{PREFIX}log_{table}")
}

/// The triggers of `table`: insert, update, key update, delete, and for
/// tables with unique constraints besides their key the two that log the
/// rows an `INSERT OR REPLACE` or `UPDATE OR REPLACE` would remove.
pub fn trigger_names(table: &str) -> [String; 6] {
    ["ins", "upd", "updk", "del", "insu", "updu"].map(|k| format!("{PREFIX}{k}_{table}"))
}

/// A captured table: its key, and the columns of each unique constraint
/// other than the key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableCapture {
    key: Key,
    uniques: Vec<Vec<String>>,
}

impl TableCapture {
    /// `CREATE TRIGGER` of each trigger this table needs, with its name.
    fn trigger_sql(&self, table: &str) -> Vec<(String, String)> {
        let names = trigger_names(table);
        let mut out: Vec<(String, String)> = names
            .iter()
            .cloned()
            .zip(self.key.trigger_sql(table))
            .filter_map(|(name, sql)| Some((name, sql?)))
            .collect();
        if self.uniques.is_empty() {
            return out;
        }
        // REPLACE removes the rows that conflict on a unique constraint
        // without firing delete triggers (unless the application turned on
        // recursive_triggers): log them before the write. A row logged in
        // vain (the write did not replace it) costs only a little space.
        let t = quote(table);
        let log = quote(&log_name(table));
        let cols = self.key.log_columns();
        let key_exprs: Vec<String> = self
            .key
            .pairs()
            .iter()
            .map(|(e, _)| format!("t.{e}"))
            .collect();
        let record = |cond: String| {
            format!(
                "INSERT INTO {log}({cols}, epoch) SELECT {}, e.epoch FROM {t} AS t, {EPOCH_TABLE} AS e WHERE {cond} \
                 ON CONFLICT({cols}) DO UPDATE SET epoch = excluded.epoch WHERE epoch <> excluded.epoch;",
                key_exprs.join(", ")
            )
        };
        let body: Vec<String> = self
            .uniques
            .iter()
            .map(|u| {
                record(
                    u.iter()
                        .map(|c| format!("t.{} = NEW.{}", quote(c), quote(c)))
                        .collect::<Vec<_>>()
                        .join(" AND "),
                )
            })
            .collect();
        let mut of: Vec<String> = self.uniques.iter().flatten().map(|c| quote(c)).collect();
        of.sort();
        of.dedup();
        out.push((
            names[4].clone(),
            format!(
                "CREATE TRIGGER {} BEFORE INSERT ON {t} BEGIN {} END",
                quote(&names[4]),
                body.join(" ")
            ),
        ));
        out.push((
            names[5].clone(),
            format!(
                "CREATE TRIGGER {} BEFORE UPDATE OF {} ON {t} BEGIN {} END",
                quote(&names[5]),
                of.join(", "),
                body.join(" ")
            ),
        ));
        out
    }
}

/// How the rows of a captured table are identified.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    /// A rowid table: `expr` reads the rowid (`rowid`, or the `INTEGER
    /// PRIMARY KEY` column), `column` is the data column that carries it.
    Rowid { expr: String, column: String },
    /// A `WITHOUT ROWID` table: its primary-key columns with their
    /// collations.
    Columns(Vec<(String, String)>),
}

impl Key {
    /// `(expression on the table, log column)` pairs.
    fn pairs(&self) -> Vec<(String, String)> {
        match self {
            Key::Rowid { expr, .. } => vec![(expr.clone(), "k0".to_string())],
            Key::Columns(cols) => cols
                .iter()
                .enumerate()
                .map(|(i, (name, _))| (quote(name), format!("k{i}")))
                .collect(),
        }
    }

    fn log_columns(&self) -> String {
        self.pairs()
            .iter()
            .map(|(_, k)| k.clone())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `CREATE TABLE` of the log.
    fn log_sql(&self, table: &str) -> String {
        let log = quote(&log_name(table));
        match self {
            Key::Rowid { .. } => {
                format!("CREATE TABLE {log}(k0 INTEGER PRIMARY KEY, epoch INTEGER NOT NULL)")
            }
            Key::Columns(cols) => {
                let defs: Vec<String> = cols
                    .iter()
                    .enumerate()
                    .map(|(i, (_, coll))| format!("k{i} COLLATE {}", quote(coll)))
                    .collect();
                format!(
                    "CREATE TABLE {log}({}, epoch INTEGER NOT NULL, PRIMARY KEY({})) WITHOUT ROWID",
                    defs.join(", "),
                    self.log_columns()
                )
            }
        }
    }

    /// `CREATE TRIGGER` of each trigger, in [`trigger_names`] order.
    /// `None` for the key-update trigger of a table whose key is its bare
    /// rowid: no `UPDATE OF` can name it, so its update trigger logs the old
    /// key itself (one trigger call per update instead of two).
    fn trigger_sql(&self, table: &str) -> [Option<String>; 4] {
        let names = trigger_names(table).map(|n| quote(&n));
        let t = quote(table);
        let log = quote(&log_name(table));
        let cols = self.log_columns();
        let record_if = |row: &str, cond: &str| {
            let vals: Vec<String> = self
                .pairs()
                .iter()
                .map(|(e, _)| format!("{row}.{e}"))
                .collect();
            // An upsert, not INSERT OR REPLACE: the conflict clause of the
            // statement that fires a trigger (INSERT OR IGNORE, UPDATE OR
            // ROLLBACK, ...) overrides the one in the trigger's body, which
            // would drop the new epoch or fail the application's write.
            format!(
                "INSERT INTO {log}({cols}, epoch) SELECT {}, epoch FROM {EPOCH_TABLE} WHERE {cond} \
                 ON CONFLICT({cols}) DO UPDATE SET epoch = excluded.epoch WHERE epoch <> excluded.epoch",
                vals.join(", ")
            )
        };
        let record = |row: &str| record_if(row, "true");
        let changed: Vec<String> = self
            .pairs()
            .iter()
            .map(|(e, _)| format!("OLD.{e} IS NOT NEW.{e}"))
            .collect();
        let of = match self {
            Key::Rowid { column, .. } if self.pairs()[0].0 == quote(column) => {
                Some(format!(" OF {}", quote(column)))
            }
            Key::Rowid { .. } => None,
            Key::Columns(cols) => Some(format!(
                " OF {}",
                cols.iter()
                    .map(|(c, _)| quote(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        let changed = changed.join(" OR ");
        // A rowid table's new rows above its watermark (rowids are handed
        // out upwards) are found by a range scan at the next backup, so
        // only inserts at or below it are logged: inserts cost less.
        let when_logged = match self {
            Key::Rowid { expr, .. } => format!(
                " WHEN NEW.{expr} <= coalesce((SELECT watermark FROM {CAPTURE_TABLE} WHERE table_name = {}), 9223372036854775807)",
                sql_string(table)
            ),
            Key::Columns(_) => String::new(),
        };
        let (update, key_update) = match &of {
            Some(of) => (
                format!(
                    "CREATE TRIGGER {} AFTER UPDATE ON {t} BEGIN {}; END",
                    names[1],
                    record("NEW")
                ),
                Some(format!(
                    "CREATE TRIGGER {} AFTER UPDATE{of} ON {t} WHEN {changed} BEGIN {}; END",
                    names[2],
                    record("OLD")
                )),
            ),
            None => (
                format!(
                    "CREATE TRIGGER {} AFTER UPDATE ON {t} BEGIN {}; {}; END",
                    names[1],
                    record("NEW"),
                    record_if("OLD", &changed)
                ),
                None,
            ),
        };
        [
            Some(format!(
                "CREATE TRIGGER {} AFTER INSERT ON {t}{when_logged} BEGIN {}; END",
                names[0],
                record("NEW")
            )),
            Some(update),
            key_update,
            Some(format!(
                "CREATE TRIGGER {} AFTER DELETE ON {t} BEGIN {}; END",
                names[3],
                record("OLD")
            )),
        ]
    }

    /// `ON` condition joining the table (`t`) to its log (`l`).
    fn join(&self) -> String {
        self.pairs()
            .iter()
            .map(|(e, k)| format!("t.{e} = l.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

/// How `table` (a table of `catalog`) is captured, or why it cannot be.
fn table_key(conn: &Connection, db: &str, catalog: &Catalog, table: &str) -> Result<TableCapture> {
    let key = key_of(conn, db, catalog, table)?;
    let without_rowid = matches!(key, Key::Columns(_));
    let err = |e| sql_error("read the indexes of", table, e);
    let indexes: Vec<(String, String)> = conn
        .prepare(&format!(
            "SELECT name, origin FROM pragma_index_list({}) WHERE \"unique\" = 1 ORDER BY name",
            sql_string(table)
        ))
        .and_then(|mut st| {
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(err)?;
    let mut uniques = Vec::new();
    for (index, origin) in indexes {
        if without_rowid && origin == "pk" {
            continue; // the key itself
        }
        let cols: Vec<Option<String>> = conn
            .prepare(&format!(
                "SELECT name FROM pragma_index_info({}) ORDER BY seqno",
                sql_string(&index)
            ))
            .and_then(|mut st| {
                st.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(err)?;
        match cols.into_iter().collect::<Option<Vec<String>>>() {
            Some(cols) if !cols.is_empty() => uniques.push(cols),
            _ => {
                return Err(Error::invalid(format!(
                    "table '{table}' in {db} cannot be captured: its unique index '{index}' is on an expression, and rows that INSERT OR REPLACE removes through it would be missed"
                )));
            }
        }
    }
    Ok(TableCapture { key, uniques })
}

/// The key of `table` (a table of `catalog`), or why it cannot be captured.
fn key_of(conn: &Connection, db: &str, catalog: &Catalog, table: &str) -> Result<Key> {
    let listed: Option<(String, bool)> = conn
        .query_row(
            "SELECT type, wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
            [table],
            |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)),
        )
        .optional()
        .map_err(|e| sql_error("read the schema of", db, e))?;
    let cannot =
        |why: &str| Error::invalid(format!("table '{table}' in {db} cannot be captured: {why}"));
    let (kind, without_rowid) = match listed {
        None => {
            return Err(Error::invalid(format!(
                "table '{table}' does not exist in {db}; check the name"
            )));
        }
        Some(found) => found,
    };
    if table.starts_with(PREFIX) || table.starts_with("sqlite_") {
        return Err(cannot("it is an internal table of coffer or SQLite"));
    }
    match kind.as_str() {
        "table" => {}
        "virtual" => return Err(cannot("it is a virtual table, which cannot have triggers")),
        other => return Err(cannot(&format!("it is a {other}, not a table"))),
    }
    let info = catalog
        .tables
        .iter()
        .find(|t| t.name == table)
        .ok_or_else(|| cannot("it is not in the database's catalog"))?;
    if without_rowid {
        let pk_index: String = conn
            .query_row(
                &format!(
                    "SELECT name FROM pragma_index_list({}) WHERE origin = 'pk'",
                    sql_string(table)
                ),
                [],
                |r| r.get(0),
            )
            .map_err(|e| sql_error("read the primary key of", table, e))?;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT name, coll FROM pragma_index_xinfo({}) WHERE key = 1 ORDER BY seqno",
                sql_string(&pk_index)
            ))
            .map_err(|e| sql_error("read the primary key of", table, e))?;
        let cols = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| sql_error("read the primary key of", table, e))?;
        if cols.is_empty() {
            return Err(cannot("its primary key could not be read"));
        }
        return Ok(Key::Columns(cols));
    }
    if let Some(column) = &info.hidden_key {
        let names: Vec<String> = conn
            .prepare(&format!(
                "SELECT name FROM pragma_table_xinfo({})",
                sql_string(table)
            ))
            .and_then(|mut s| {
                s.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(|e| sql_error("read the schema of", table, e))?;
        let alias = rowid_alias(&names)
            .ok_or_else(|| cannot("columns named rowid, _rowid_ and oid hide its rowid"))?;
        return Ok(Key::Rowid {
            expr: alias.to_string(),
            column: column.clone(),
        });
    }
    // An INTEGER PRIMARY KEY is the rowid, unless declared DESC (a SQLite
    // quirk), in which case SQLite gives it an index of its own.
    let pk_index: Option<String> = conn
        .query_row(
            &format!(
                "SELECT name FROM pragma_index_list({}) WHERE origin = 'pk'",
                sql_string(table)
            ),
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| sql_error("read the primary key of", table, e))?;
    match info.primary_key.as_slice() {
        [pk] if pk_index.is_none() => Ok(Key::Rowid {
            expr: quote(pk),
            column: pk.clone(),
        }),
        _ => Err(cannot(
            "its INTEGER PRIMARY KEY is not its rowid (declared DESC?); give it a rowid or make it WITHOUT ROWID",
        )),
    }
}

/// A string literal for SQL.
fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The key of `table` as a table of its own (the columns deleted keys are
/// written with).
fn key_table_of(table: &Table, key: &Key) -> Table {
    let names: Vec<&str> = match key {
        Key::Rowid { column, .. } => vec![column.as_str()],
        Key::Columns(cols) => cols.iter().map(|(name, _)| name.as_str()).collect(),
    };
    // Every key column is a data column of the table (the rowid is carried
    // by `hidden_key` or is the INTEGER PRIMARY KEY).
    let columns: Vec<Column> = names
        .iter()
        .filter_map(|name| table.columns.iter().find(|c| c.name == *name).cloned())
        .collect();
    Table {
        name: table.name.clone(),
        kind: coffer::manifest::TableKind::Deleted,
        primary_key: columns.iter().map(|c| c.name.clone()).collect(),
        hidden_key: match key {
            Key::Rowid { column, .. } if table.hidden_key.as_ref() == Some(column) => {
                Some(column.clone())
            }
            _ => None,
        },
        columns,
        rows: 0,
        parts: Vec::new(),
    }
}

fn open_rw(path: &str) -> Result<Connection> {
    let p = Path::new(path);
    if !p.is_file() {
        return Err(Error::not_found(format!(
            "database {path} does not exist; check the path"
        )));
    }
    let conn = Connection::open_with_flags(
        p,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql_error("open", path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(60))
        .map_err(|e| sql_error("open", path, e))?;
    Ok(conn)
}

/// Run `f` in an immediate write transaction; roll back on error.
fn write_txn<T>(
    conn: &mut Connection,
    db: &str,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| sql_error("write to", db, e))?;
    let out = f(&tx)?;
    tx.commit().map_err(|e| sql_error("write to", db, e))?;
    Ok(out)
}

fn table_exists(conn: &Connection, name: &str) -> Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM main.sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(|e| sql_error("read the schema of", "the database", e))
}

/// The collections recorded in the database `conn` has open.
fn read_records(conn: &Connection, db: &str) -> Result<Vec<CollectionRecord>> {
    if !table_exists(conn, COLLECTIONS_TABLE)? {
        return Ok(Vec::new());
    }
    let err = |e| sql_error("read the collections of", db, e);
    let mut stmt = conn
        .prepare(&format!(
            "SELECT name, id, tables, repo, created_at, last_backup, pending_backup, pending_epoch \
             FROM main.{COLLECTIONS_TABLE} ORDER BY name"
        ))
        .map_err(err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<i64>>(7)?,
            ))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(err)?;
    rows.into_iter()
        .map(|(name, id, tables, repo, created_at, last, pending, pending_epoch)| {
            let tables: Vec<String> = serde_json::from_str(&tables).map_err(|_| {
                Error::corrupt(format!(
                    "the record of collection '{name}' in {db} is damaged; drop the collection and create it again"
                ))
            })?;
            Ok(CollectionRecord {
                name,
                id,
                tables,
                repo,
                created_at,
                last_backup: last,
                pending: pending.zip(pending_epoch.map(|e| e.to_string())),
            })
        })
        .collect()
}

fn find_record(conn: &Connection, db: &str, name: &str) -> Result<CollectionRecord> {
    read_records(conn, db)?
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| {
            Error::not_found(format!(
                "{db} has no collection named '{name}'; `coffer collection create` sets one up"
            ))
        })
}

/// Create the per-database tables if absent.
fn ensure_meta(tx: &Connection, db: &str) -> Result<()> {
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS main.{EPOCH_TABLE}(epoch INTEGER NOT NULL);
         INSERT INTO main.{EPOCH_TABLE}(epoch) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM main.{EPOCH_TABLE});
         CREATE TABLE IF NOT EXISTS main.{COLLECTIONS_TABLE}(
             name TEXT PRIMARY KEY NOT NULL,
             id TEXT NOT NULL,
             tables TEXT NOT NULL,
             repo TEXT,
             created_at TEXT NOT NULL,
             last_backup TEXT,
             pending_backup TEXT,
             pending_epoch INTEGER,
             cookie INTEGER,
             begun_cookie INTEGER
         );
         CREATE TABLE IF NOT EXISTS main.{CAPTURE_TABLE}(
             table_name TEXT PRIMARY KEY NOT NULL,
             collection TEXT NOT NULL,
             watermark INTEGER,
             covered INTEGER
         ) WITHOUT ROWID;"
    ))
    .map_err(|e| sql_error("set up change capture in", db, e))?;
    ensure_cookie_columns(tx, db)
}

/// Add the schema-cookie columns to a `_coffer_collections` made before
/// they existed (they start empty: the next backup of a collection with an
/// implicit rowid is a full one).
fn ensure_cookie_columns(tx: &Connection, db: &str) -> Result<()> {
    let err = |e| sql_error("set up change capture in", db, e);
    let has: i64 = tx
        .query_row(
            &format!(
                "SELECT count(*) FROM pragma_table_info('{COLLECTIONS_TABLE}') WHERE name = 'cookie'"
            ),
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    if has == 0 {
        tx.execute_batch(&format!(
            "ALTER TABLE main.{COLLECTIONS_TABLE} ADD COLUMN cookie INTEGER;
             ALTER TABLE main.{COLLECTIONS_TABLE} ADD COLUMN begun_cookie INTEGER;"
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// The database's schema cookie (`PRAGMA schema_version`), as seen by the
/// transaction `conn` has open. SQLite raises it with every schema change,
/// and `VACUUM` raises it too.
fn schema_cookie(conn: &Connection, db: &str) -> Result<i64> {
    conn.query_row("PRAGMA main.schema_version", [], |r| r.get(0))
        .map_err(|e| sql_error("read the schema version of", db, e))
}

/// After coffer's own schema changes in this transaction (capture installed
/// or removed): a recorded cookie equal to `before` saw no change since it
/// was read but these, none of which renumbers a rowid, so it moves to the
/// new value and no collection needs a full backup because of coffer.
fn carry_cookies(tx: &Connection, db: &str, before: i64) -> Result<()> {
    if !table_exists(tx, COLLECTIONS_TABLE)? {
        return Ok(());
    }
    let after = schema_cookie(tx, db)?;
    if after == before {
        return Ok(());
    }
    tx.execute(
        &format!(
            "UPDATE main.{COLLECTIONS_TABLE} SET \
             cookie = CASE WHEN cookie = ?1 THEN ?2 ELSE cookie END, \
             begun_cookie = CASE WHEN begun_cookie = ?1 THEN ?2 ELSE begun_cookie END"
        ),
        (before, after),
    )
    .map(|_| ())
    .map_err(|e| sql_error("record the collections in", db, e))
}

/// Create the log and triggers of `table` (dropping stale ones first).
fn install_table(tx: &Connection, table: &str, capture: &TableCapture) -> Result<()> {
    drop_table_capture(tx, table)?;
    let err = |e| sql_error("set up change capture for table", &format!("'{table}'"), e);
    let key = &capture.key;
    tx.execute_batch(&key.log_sql(table)).map_err(err)?;
    for (_, sql) in capture.trigger_sql(table) {
        tx.execute_batch(&sql).map_err(err)?;
    }
    // Nothing is covered until a backup is committed.
    tx.execute(
        &format!("UPDATE main.{CAPTURE_TABLE} SET covered = NULL WHERE table_name = ?1"),
        [table],
    )
    .map_err(err)?;
    raise_watermark(tx, table, key)
}

/// Raise a rowid table's watermark to its largest rowid: inserts above it
/// are not logged from now on, the next backup's range scan finds them.
/// It never goes down: a backup that fails after raising it must not leave
/// rows between a lower new mark and the last committed one unlogged.
fn raise_watermark(tx: &Connection, table: &str, key: &Key) -> Result<()> {
    let Key::Rowid { expr, .. } = key else {
        return Ok(());
    };
    tx.execute(
        &format!(
            "UPDATE main.{CAPTURE_TABLE} SET watermark = max(coalesce(watermark, -9223372036854775808), (SELECT coalesce(max({expr}), 0) FROM main.{})) WHERE table_name = ?1",
            quote(table)
        ),
        [table],
    )
    .map(|_| ())
    .map_err(|e| sql_error("set up change capture for table", &format!("'{table}'"), e))
}

/// The key of `table` without reading the whole catalog (for the short
/// write transaction that starts a backup): only whether it is a rowid
/// table and how its rowid is read.
fn quick_key(conn: &Connection, table: &str) -> Result<Option<Key>> {
    let err = |e| sql_error("read the schema of", table, e);
    let wr: Option<i64> = conn
        .query_row(
            "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1 AND type = 'table'",
            [table],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)?;
    if wr != Some(0) {
        return Ok(None);
    }
    let cols: Vec<(String, String, i64)> = conn
        .prepare("SELECT name, type, pk FROM pragma_table_xinfo(?1)")
        .and_then(|mut st| {
            st.query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(err)?;
    let names: Vec<String> = cols.iter().map(|c| c.0.clone()).collect();
    let expr = match rowid_alias(&names) {
        Some(alias) => alias.to_string(),
        None => match cols
            .iter()
            .filter(|c| c.2 > 0)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [pk] if pk.1.eq_ignore_ascii_case("INTEGER") => quote(&pk.0),
            _ => return Ok(None),
        },
    };
    Ok(Some(Key::Rowid {
        expr,
        column: String::new(),
    }))
}

fn drop_table_capture(tx: &Connection, table: &str) -> Result<()> {
    let err = |e| sql_error("remove change capture of table", &format!("'{table}'"), e);
    for t in trigger_names(table) {
        tx.execute_batch(&format!("DROP TRIGGER IF EXISTS main.{}", quote(&t)))
            .map_err(err)?;
    }
    tx.execute_batch(&format!(
        "DROP TABLE IF EXISTS main.{}",
        quote(&log_name(table))
    ))
    .map_err(err)
}

/// What is wrong with the capture of `table` as found in `catalog`, if
/// anything: every trigger and the log must exist exactly as `key` makes
/// them.
fn capture_problem(catalog: &Catalog, table: &str, capture: &TableCapture) -> Option<String> {
    let sql_of = |kind: &str, name: &str| {
        catalog
            .objects
            .iter()
            .find(|o| o.kind == kind && o.name == name)
            .map(|o| o.sql.as_str())
    };
    let expected = capture.trigger_sql(table);
    let ours = trigger_names(table);
    let intact = sql_of("table", &log_name(table)) == Some(capture.key.log_sql(table).as_str())
        && expected
            .iter()
            .all(|(name, sql)| sql_of("trigger", name) == Some(sql.as_str()))
        && ours
            .iter()
            .filter(|n| sql_of("trigger", n).is_some())
            .count()
            == expected.len();
    (!intact).then(|| {
        format!(
            "the change capture of table '{table}' is missing or out of date (was the table re-created, or its key or unique constraints changed?)"
        )
    })
}

impl ChangeCapture for SqliteEngine {
    fn install(&self, db: &str, collection: &CollectionRecord) -> Result<()> {
        let path = db;
        let mut conn = open_rw(path)?;
        write_txn(&mut conn, path, |tx| {
            let cookie = schema_cookie(tx, path)?;
            let (catalog, _) = read_catalog(tx, path)?;
            let mut keys = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for table in &collection.tables {
                if !seen.insert(table.as_str()) {
                    return Err(Error::invalid(format!(
                        "table '{table}' is named twice; name each table once"
                    )));
                }
                keys.push((table, table_key(tx, path, &catalog, table)?));
            }
            ensure_meta(tx, path)?;
            if read_records(tx, path)?
                .iter()
                .any(|r| r.name == collection.name)
            {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{path} already has a collection named '{}'; choose another name or drop that one first",
                        collection.name
                    ),
                ));
            }
            for (table, key) in &keys {
                let owner: Option<String> = tx
                    .query_row(
                        &format!(
                            "SELECT collection FROM main.{CAPTURE_TABLE} WHERE table_name = ?1"
                        ),
                        [table],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| sql_error("read the collections of", path, e))?;
                if let Some(owner) = owner {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "table '{table}' already belongs to collection '{owner}' in {path}; a table can be in one collection only"
                        ),
                    ));
                }
                tx.execute(
                    &format!(
                        "INSERT INTO main.{CAPTURE_TABLE}(table_name, collection) VALUES (?1, ?2)"
                    ),
                    (table, &collection.name),
                )
                .map_err(|e| sql_error("record the collection in", path, e))?;
                install_table(tx, table, key)?;
            }
            let tables = serde_json::to_string(&collection.tables).expect("names serialize");
            tx.execute(
                &format!(
                    "INSERT INTO main.{COLLECTIONS_TABLE}(name, id, tables, repo, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)"
                ),
                (
                    &collection.name,
                    &collection.id,
                    &tables,
                    &collection.repo,
                    &collection.created_at,
                ),
            )
            .map_err(|e| sql_error("record the collection in", path, e))?;
            carry_cookies(tx, path, cookie)
        })
    }

    fn collections(&self, db: &str) -> Result<Vec<CollectionRecord>> {
        let path = db;
        let conn = open_rw(path)?;
        read_records(&conn, path)
    }

    fn remove(&self, db: &str, name: &str) -> Result<bool> {
        let path = db;
        let mut conn = open_rw(path)?;
        write_txn(&mut conn, path, |tx| {
            let Some(record) = read_records(tx, path)?.into_iter().find(|r| r.name == name) else {
                return Ok(false);
            };
            let cookie = schema_cookie(tx, path)?;
            for table in &record.tables {
                drop_table_capture(tx, table)?;
            }
            let err = |e| sql_error("remove the collection from", path, e);
            tx.execute(
                &format!("DELETE FROM main.{CAPTURE_TABLE} WHERE collection = ?1"),
                [name],
            )
            .map_err(err)?;
            tx.execute(
                &format!("DELETE FROM main.{COLLECTIONS_TABLE} WHERE name = ?1"),
                [name],
            )
            .map_err(err)?;
            let left: i64 = tx
                .query_row(
                    &format!("SELECT count(*) FROM main.{COLLECTIONS_TABLE}"),
                    [],
                    |r| r.get(0),
                )
                .map_err(err)?;
            if left == 0 {
                tx.execute_batch(&format!(
                    "DROP TABLE main.{CAPTURE_TABLE};
                     DROP TABLE main.{COLLECTIONS_TABLE};
                     DROP TABLE IF EXISTS main.{EPOCH_TABLE};"
                ))
                .map_err(err)?;
            } else {
                carry_cookies(tx, path, cookie)?;
            }
            Ok(true)
        })
    }

    fn begin(&self, db: &str, name: &str, full: bool) -> Result<Box<dyn ChangeSnapshot>> {
        let path = db;
        let mut conn = open_rw(path)?;
        let epoch = write_txn(&mut conn, path, |tx| {
            let record = find_record(tx, path, name)?;
            let cookie = schema_cookie(tx, path)?;
            ensure_cookie_columns(tx, path)?;
            if full {
                // A full backup reads whole tables, so it can also mend a
                // capture that was lost: later changes are logged again.
                let (catalog, _) = read_catalog(tx, path)?;
                for table in &record.tables {
                    let key = table_key(tx, path, &catalog, table).map_err(|e| gone(e, name))?;
                    if capture_problem(&catalog, table, &key).is_some() {
                        tracing::info!(table, "re-installing change capture");
                        install_table(tx, table, &key)?;
                    }
                }
            }
            for table in &record.tables {
                if let Some(key) = quick_key(tx, table)? {
                    raise_watermark(tx, table, &key)?;
                }
            }
            let next: i64 = tx
                .query_row(
                    &format!("UPDATE main.{EPOCH_TABLE} SET epoch = epoch + 1 RETURNING epoch"),
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| sql_error("advance the change log epoch of", path, e))?;
            // What this backup will record as the cookie it saw once it is
            // committed (`trim`); read before its snapshot, so a VACUUM in
            // between shows as a change at the next backup.
            carry_cookies(tx, path, cookie)?;
            tx.execute(
                &format!("UPDATE main.{COLLECTIONS_TABLE} SET begun_cookie = ?1 WHERE name = ?2"),
                (schema_cookie(tx, path)?, name),
            )
            .map_err(|e| sql_error("record the backup in", path, e))?;
            Ok((next - 1) as u64)
        })?;
        drop(conn);
        let inner = open_snapshot(path)?;
        let record = find_record(inner.connection(), path, name)?;
        let mut keys = HashMap::new();
        let mut problems = HashMap::new();
        let covered: HashMap<String, Option<i64>> = inner
            .connection()
            .prepare(&format!(
                "SELECT table_name, covered FROM main.{CAPTURE_TABLE} WHERE collection = ?1"
            ))
            .and_then(|mut st| {
                st.query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<HashMap<_, _>>>()
            })
            .map_err(|e| sql_error("read the change capture of", path, e))?;
        // VACUUM renumbers implicit rowids and raises the schema cookie: if
        // the cookie moved since the last committed backup, the log of a
        // table keyed by an implicit rowid may name the wrong rows.
        let recorded: Option<i64> = inner
            .connection()
            .query_row(
                &format!("SELECT cookie FROM main.{COLLECTIONS_TABLE} WHERE name = ?1"),
                [name],
                |r| r.get(0),
            )
            .map_err(|e| sql_error("read the change capture of", path, e))?;
        let cookie_moved = recorded != Some(schema_cookie(inner.connection(), path)?);
        for table in &record.tables {
            let key = table_key(inner.connection(), path, inner.catalog(), table)
                .map_err(|e| gone(e, name))?;
            let implicit_rowid = inner
                .catalog()
                .tables
                .iter()
                .any(|t| &t.name == table && t.hidden_key.is_some());
            let problem = capture_problem(inner.catalog(), table, &key).or_else(|| {
                if matches!(key.key, Key::Rowid { .. })
                    && covered.get(table).copied().flatten().is_none()
                {
                    Some(format!("no committed backup covers the new rows of table '{table}'"))
                } else if implicit_rowid && cookie_moved {
                    Some(format!(
                        "table '{table}' has no INTEGER PRIMARY KEY and the schema of {path} changed since the last backup (a VACUUM does that, and renumbers such a table's rowids), so its change log may name the wrong rows"
                    ))
                } else {
                    None
                }
            });
            if let Some(p) = problem {
                problems.insert(table.clone(), p);
            }
            keys.insert(table.clone(), key.key);
        }
        let catalog = collection_catalog(&inner, &record)?;
        Ok(Box::new(CaptureSnapshot {
            inner,
            catalog,
            epoch,
            record,
            keys,
            covered,
            problems,
        }))
    }

    fn set_pending(&self, db: &str, name: &str, pending: Option<(&str, &str)>) -> Result<()> {
        let path = db;
        let pending = pending
            .map(|(id, h)| epoch_of(h).map(|e| (id, e)))
            .transpose()?;
        let mut conn = open_rw(path)?;
        write_txn(&mut conn, path, |tx| {
            find_record(tx, path, name)?;
            tx.execute(
                &format!(
                    "UPDATE main.{COLLECTIONS_TABLE} SET pending_backup = ?1, pending_epoch = ?2 WHERE name = ?3"
                ),
                (
                    pending.map(|p| p.0),
                    pending.map(|p| p.1 as i64),
                    name,
                ),
            )
            .map_err(|e| sql_error("record the backup in", path, e))?;
            Ok(())
        })
    }

    fn trim(&self, db: &str, name: &str, id: &str, horizon: &str) -> Result<()> {
        let path = db;
        let epoch = epoch_of(horizon)?;
        let mut conn = open_rw(path)?;
        write_txn(&mut conn, path, |tx| {
            let record = find_record(tx, path, name)?;
            ensure_cookie_columns(tx, path)?;
            for table in &record.tables {
                let log = log_name(table);
                if table_exists(tx, &log)? {
                    tx.execute(
                        &format!("DELETE FROM main.{} WHERE epoch <= ?1", quote(&log)),
                        [epoch as i64],
                    )
                    .map_err(|e| {
                        sql_error("trim the change log of table", &format!("'{table}'"), e)
                    })?;
                }
            }
            tx.execute(
                &format!(
                    "UPDATE main.{CAPTURE_TABLE} SET covered = watermark WHERE collection = ?1"
                ),
                [name],
            )
            .map_err(|e| sql_error("record the backup in", path, e))?;
            tx.execute(
                &format!(
                    "UPDATE main.{COLLECTIONS_TABLE} SET last_backup = ?1, pending_backup = NULL, pending_epoch = NULL, cookie = begun_cookie WHERE name = ?2"
                ),
                (id, name),
            )
            .map_err(|e| sql_error("record the backup in", path, e))?;
            Ok(())
        })
    }

    fn chain_restorer(
        &self,
        target: &str,
        replace: bool,
        cancel: Cancel,
    ) -> Result<Box<dyn ChainRestorer>> {
        Ok(Box::new(crate::apply::SqliteChainRestorer::new(
            target, replace, cancel,
        )?))
    }
}

/// A table of the collection that cannot be read any more.
fn gone(e: Error, collection: &str) -> Error {
    if e.kind() == ErrorKind::InvalidInput {
        Error::invalid(format!(
            "{}; collection '{collection}' cannot be backed up until it is dropped and created again",
            e.message().trim_end_matches("; check the name")
        ))
    } else {
        e
    }
}

/// The catalog restricted to the collection: its tables (in collection
/// order), their DDL, indexes and triggers (not coffer's own), and the
/// settings plus the `AUTOINCREMENT` counters of its tables.
fn collection_catalog(inner: &SqliteSnapshot, record: &CollectionRecord) -> Result<Catalog> {
    let full = inner.catalog();
    let ours = |t: &str| record.tables.iter().any(|x| x == t);
    let objects = full
        .objects
        .iter()
        .filter(|o| match o.kind.as_str() {
            "table" => ours(&o.name),
            "index" | "trigger" => ours(&o.table) && !o.name.starts_with(PREFIX),
            _ => false,
        })
        .cloned()
        .collect();
    let tables = record
        .tables
        .iter()
        .filter_map(|n| full.tables.iter().find(|t| &t.name == n).cloned())
        .collect();
    let mut settings = full.settings.clone();
    if table_exists(inner.connection(), "sqlite_sequence")? {
        let mut seqs = serde_json::Map::new();
        let mut stmt = inner
            .connection()
            .prepare("SELECT name, seq FROM main.sqlite_sequence")
            .map_err(|e| sql_error("read", "sqlite_sequence", e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| sql_error("read", "sqlite_sequence", e))?;
        for (name, seq) in rows {
            if ours(&name) {
                seqs.insert(name, seq.into());
            }
        }
        if !seqs.is_empty() {
            settings.insert("sqlite_sequence".to_string(), seqs.into());
        }
    }
    Ok(Catalog {
        engine_version: full.engine_version.clone(),
        database: full.database.clone(),
        settings,
        objects,
        tables,
        unreadable: full.unreadable.clone(),
        backup_refusal: None,
    })
}

/// A snapshot of a collection's tables and change logs.
pub struct CaptureSnapshot {
    inner: SqliteSnapshot,
    catalog: Catalog,
    epoch: u64,
    record: CollectionRecord,
    keys: HashMap<String, Key>,
    /// Per rowid table: the watermark of the last committed backup; rows
    /// above it are new since then.
    covered: HashMap<String, Option<i64>>,
    problems: HashMap<String, String>,
}

impl CaptureSnapshot {
    fn covered_of(&self, table: &Table) -> Option<i64> {
        self.covered.get(&table.name).copied().flatten()
    }

    fn key(&self, table: &Table) -> Result<&Key> {
        self.keys.get(&table.name).ok_or_else(|| {
            Error::invalid(format!(
                "table '{}' is not in collection '{}'",
                table.name, self.record.name
            ))
        })
    }
}

impl Snapshot for CaptureSnapshot {
    fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn point(&self) -> coffer::engine::SnapshotPoint {
        self.inner.point()
    }

    fn count_rows(&mut self, table: &Table) -> Result<u64> {
        self.inner.count_rows(table)
    }

    fn scan(&mut self, table: &Table, sink: &mut dyn FnMut(DataBatch) -> Result<()>) -> Result<()> {
        self.inner.scan(table, sink)
    }
}

/// The epoch a SQLite snapshot's horizon names (its decimal form).
fn epoch_of(horizon: &str) -> Result<u64> {
    horizon
        .parse()
        .map_err(|_| Error::internal(format!("'{horizon}' is not a SQLite capture epoch")))
}

impl ChangeSnapshot for CaptureSnapshot {
    /// Every entry tagged with this epoch or an earlier one: SQLite
    /// serialises writers, so all of them committed before the snapshot.
    fn horizon(&self) -> String {
        self.epoch.to_string()
    }

    fn record(&self) -> &CollectionRecord {
        &self.record
    }

    fn fork_changes(&self) -> Result<Option<Box<dyn ChangeSnapshot>>> {
        Ok(self.inner.same_moment()?.map(|inner| {
            Box::new(CaptureSnapshot {
                inner,
                catalog: self.catalog.clone(),
                epoch: self.epoch,
                record: self.record.clone(),
                keys: self.keys.clone(),
                covered: self.covered.clone(),
                problems: self.problems.clone(),
            }) as Box<dyn ChangeSnapshot>
        }))
    }

    fn capture_problem(&self, table: &Table) -> Option<String> {
        self.problems.get(&table.name).cloned()
    }

    fn key_table(&self, table: &Table) -> Table {
        match self.keys.get(&table.name) {
            Some(key) => key_table_of(table, key),
            None => key_table_of(
                table,
                &Key::Columns(
                    table
                        .primary_key
                        .iter()
                        .map(|c| (c.clone(), "BINARY".to_string()))
                        .collect(),
                ),
            ),
        }
    }

    fn count_changes(&mut self, table: &Table) -> Result<u64> {
        let key = self.key(table)?.clone();
        let err = |e| {
            sql_error(
                "read the change log of table",
                &format!("'{}'", table.name),
                e,
            )
        };
        let logged: i64 = self
            .inner
            .connection()
            .query_row(
                &format!(
                    "SELECT count(*) FROM main.{}",
                    quote(&log_name(&table.name))
                ),
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        let above: i64 = match (&key, self.covered_of(table)) {
            (Key::Rowid { expr, .. }, Some(w)) => self
                .inner
                .connection()
                .query_row(
                    &format!(
                        "SELECT count(*) FROM main.{} WHERE {expr} > ?1",
                        quote(&table.name)
                    ),
                    [w],
                    |r| r.get(0),
                )
                .map_err(err)?,
            _ => 0,
        };
        Ok((logged + above) as u64)
    }

    fn scan_upserts(
        &mut self,
        table: &Table,
        sink: &mut dyn FnMut(DataBatch) -> Result<()>,
    ) -> Result<()> {
        let key = self.key(table)?.clone();
        let covered = self.covered_of(table);
        let plan = self.inner.plan(&table.name).ok_or_else(|| {
            Error::invalid(format!("table '{}' is not in the database", table.name))
        })?;
        let exprs: Vec<String> = plan.exprs.iter().map(|e| format!("t.{e}")).collect();
        let order: Vec<String> = key.pairs().iter().map(|(_, k)| format!("l.{k}")).collect();
        // The logged keys, and for a rowid table the rows above the
        // watermark of the last backup (inserted since, not logged); each
        // part in key order, the logged keys at or below the watermark.
        let (logged_filter, range) = match (&key, covered) {
            (Key::Rowid { expr, .. }, Some(w)) => (
                format!(" WHERE l.k0 <= {w}"),
                Some(format!(
                    "SELECT {} FROM main.{} AS t WHERE t.{expr} > {w} ORDER BY t.{expr}",
                    exprs.join(", "),
                    quote(&table.name)
                )),
            ),
            _ => (String::new(), None),
        };
        let sql = format!(
            "SELECT {} FROM main.{} AS l CROSS JOIN main.{} AS t ON {}{logged_filter} ORDER BY {}",
            exprs.join(", "),
            quote(&log_name(&table.name)),
            quote(&table.name),
            key.join(),
            order.join(", ")
        );
        self.inner.scan_sql(table, &sql, sink)?;
        if let Some(range) = range {
            self.inner.scan_sql(table, &range, sink)?;
        }
        Ok(())
    }

    fn scan_deletes(
        &mut self,
        table: &Table,
        sink: &mut dyn FnMut(DataBatch) -> Result<()>,
    ) -> Result<()> {
        let key = self.key(table)?.clone();
        let keys = key_table_of(table, &key);
        let cols: Vec<String> = key.pairs().iter().map(|(_, k)| format!("l.{k}")).collect();
        let sql = format!(
            "SELECT {cols} FROM main.{} AS l WHERE NOT EXISTS (SELECT 1 FROM main.{} AS t WHERE {}) ORDER BY {cols}",
            quote(&log_name(&table.name)),
            quote(&table.name),
            key.join(),
            cols = cols.join(", "),
        );
        self.inner.scan_sql(&keys, &sql, sink)
    }
}

/// After a whole-database restore: the restored change logs no longer
/// continue from any collection backup (the database went back in time), so
/// forget where they did; the next backup of each collection must be full.
pub(crate) fn forget_log_positions(conn: &Connection) -> Result<()> {
    if table_exists(conn, COLLECTIONS_TABLE)? {
        conn.execute_batch(&format!(
            "UPDATE main.{COLLECTIONS_TABLE} SET last_backup = NULL, pending_backup = NULL, pending_epoch = NULL"
        ))
        .map_err(|e| sql_error("restore", COLLECTIONS_TABLE, e))?;
    }
    if table_exists(conn, CAPTURE_TABLE)? {
        conn.execute_batch(&format!("UPDATE main.{CAPTURE_TABLE} SET covered = NULL"))
            .map_err(|e| sql_error("restore", CAPTURE_TABLE, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_sql_for_rowid_and_composite_keys() {
        let k = Key::Rowid {
            expr: "\"id\"".into(),
            column: "id".into(),
        };
        let [ins, _, updk, del] = k.trigger_sql("t").map(Option::unwrap);
        assert_eq!(
            ins,
            "CREATE TRIGGER \"_coffer_ins_t\" AFTER INSERT ON \"t\" WHEN NEW.\"id\" <= coalesce((SELECT watermark FROM _coffer_capture WHERE table_name = 't'), 9223372036854775807) BEGIN INSERT INTO \"_coffer_log_t\"(k0, epoch) SELECT NEW.\"id\", epoch FROM _coffer_epoch WHERE true ON CONFLICT(k0) DO UPDATE SET epoch = excluded.epoch WHERE epoch <> excluded.epoch; END"
        );
        assert!(updk.contains("AFTER UPDATE OF \"id\" ON \"t\" WHEN OLD.\"id\" IS NOT NEW.\"id\""));
        assert!(del.contains("SELECT OLD.\"id\""));
        // A bare rowid: the update trigger logs the old key too.
        let k = Key::Rowid {
            expr: "rowid".into(),
            column: "__coffer_rowid".into(),
        };
        let [_, upd, updk, _] = k.trigger_sql("t");
        assert!(updk.is_none());
        assert!(upd.unwrap().contains(
            "SELECT OLD.rowid, epoch FROM _coffer_epoch WHERE OLD.rowid IS NOT NEW.rowid"
        ));
        let k = Key::Columns(vec![
            ("a".into(), "NOCASE".into()),
            ("b".into(), "BINARY".into()),
        ]);
        assert_eq!(
            k.log_sql("x y"),
            "CREATE TABLE \"_coffer_log_x y\"(k0 COLLATE \"NOCASE\", k1 COLLATE \"BINARY\", epoch INTEGER NOT NULL, PRIMARY KEY(k0, k1)) WITHOUT ROWID"
        );
        assert_eq!(k.join(), "t.\"a\" = l.k0 AND t.\"b\" = l.k1");
    }
}
