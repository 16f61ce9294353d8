//! Restoring a collection's chain of backups: a full backup, then each
//! incremental's deletes and upserts, in one transaction.
//!
//! Into a new (or empty) target the database is built beside it, with
//! journaling off, and renamed into place when complete and checked, as
//! [`crate::restorer`] does. Into an existing database the tables are added
//! in place in one write transaction: SQLite's journal makes it atomic, a
//! failure or a kill rolls it back, and other connections to the database
//! keep working (a file renamed over a live database would lose their
//! writes).
//!
//! Changes are applied with the tables' indexes in place, so an upsert
//! (`INSERT OR REPLACE`) removes the rows that conflict with it on a unique
//! constraint — the rows an `INSERT OR REPLACE` removed in the source
//! without firing a delete trigger.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use coffer::engine::{ChainRestorer, DataBatch};
use coffer::manifest::{Manifest, Table};
use coffer::progress::{Cancel, Progress};
use coffer::{Error, ErrorKind};
use rusqlite::{Connection, OpenFlags};

use crate::catalog::rowid_alias;
use crate::guard::{Guard, restrict, setting_pragmas};
use crate::restorer::{
    Phases, SqliteRestorer, complete_beside, create_beside, execute_rows, temp_files,
};
use crate::{Result, quote, sql_error};

enum Mode {
    /// Built in `temp` beside the target, renamed over it at the end.
    Fresh { temp: PathBuf },
    /// Written into the existing target in one transaction.
    InPlace,
}

/// Restores a chain of collection backups into a SQLite database.
pub struct SqliteChainRestorer {
    target: PathBuf,
    mode: Mode,
    conn: Option<Connection>,
    guard: Guard,
    replace: bool,
    inserts: HashMap<String, String>,
    upserts: HashMap<String, String>,
    deletes: HashMap<String, String>,
    cancel: Cancel,
    finished: bool,
    phases: Phases,
}

impl SqliteChainRestorer {
    /// Check the target and open the database to write.
    pub fn new(target: &str, replace: bool, cancel: Cancel) -> Result<SqliteChainRestorer> {
        let target = crate::restorer::resolve_target(std::path::Path::new(target))?;
        if target.is_dir() {
            return Err(Error::invalid(format!(
                "{} is a directory; give the path of a database file",
                target.display()
            )));
        }
        let existing = std::fs::metadata(&target)
            .map(|m| m.len() > 0)
            .unwrap_or(false);
        let (mode, conn, guard) = if existing {
            let conn = Connection::open_with_flags(
                &target,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| sql_error("open", &target.display().to_string(), e))?;
            conn.busy_timeout(std::time::Duration::from_secs(60))
                .map_err(|e| sql_error("open", &target.display().to_string(), e))?;
            // Fails here, naming the file, when it is not a database.
            conn.query_row("SELECT count(*) FROM main.sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| sql_error("open", &target.display().to_string(), e))?;
            let guard = restrict(&conn, &target.display().to_string())?;
            (Mode::InPlace, conn, guard)
        } else {
            let (temp, conn, guard) = create_beside(&target, "restore")?;
            (Mode::Fresh { temp }, conn, guard)
        };
        // Rows are restored as they were: no foreign-key checks, and above
        // all no ON DELETE actions when an upsert replaces a row; rows that
        // break a CHECK constraint as the source holds them (the in-place
        // check then does not test CHECK constraints either).
        conn.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA ignore_check_constraints = ON;")
            .map_err(|e| sql_error("set up", &target.display().to_string(), e))?;
        let stop = cancel.clone();
        conn.progress_handler(10_000, Some(move || stop.is_cancelled()));
        Ok(SqliteChainRestorer {
            target,
            mode,
            conn: Some(conn),
            guard,
            replace,
            inserts: HashMap::new(),
            upserts: HashMap::new(),
            deletes: HashMap::new(),
            cancel,
            finished: false,
            phases: Phases::default(),
        })
    }

    fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("connection is open until finish")
    }

    fn exec(&self, sql: &str, what: &str) -> Result<()> {
        self.conn()
            .execute_batch(sql)
            .map_err(|e| self.guard.error("restore", what, e))
    }

    fn table_exists(&self, name: &str) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT count(*) FROM main.sqlite_schema WHERE type IN ('table', 'view') AND name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| sql_error("inspect", &self.target.display().to_string(), e))
    }

    fn objects(&self, manifest: &Manifest, kind: &str, tables: &[&Table]) -> Result<()> {
        for obj in &manifest.objects {
            if obj.kind == kind && tables.iter().any(|t| t.name == obj.table) {
                let what = format!("{kind} '{}'", obj.name);
                self.guard.create(self.conn(), obj, &obj.sql, &what)?;
            }
        }
        Ok(())
    }

    fn sql<'a>(map: &'a HashMap<String, String>, table: &Table) -> Result<&'a str> {
        map.get(&table.name)
            .map(String::as_str)
            .ok_or_else(|| Error::internal(format!("table '{}' was not begun", table.name)))
    }

    /// Set the `AUTOINCREMENT` counters recorded at the backup point.
    fn sequences(&self, point: &Manifest, tables: &[&Table]) -> Result<()> {
        let Some(seqs) = point
            .settings
            .get("sqlite_sequence")
            .and_then(|v| v.as_object())
        else {
            return Ok(());
        };
        if !self.table_exists("sqlite_sequence")? {
            return Ok(());
        }
        let err = |e| sql_error("restore", "sqlite_sequence", e);
        for t in tables {
            let Some(seq) = seqs.get(&t.name).and_then(|v| v.as_i64()) else {
                continue;
            };
            let updated = self
                .conn()
                .execute(
                    "UPDATE main.sqlite_sequence SET seq = max(seq, ?1) WHERE name = ?2",
                    (seq, &t.name),
                )
                .map_err(err)?;
            if updated == 0 {
                self.conn()
                    .execute(
                        "INSERT INTO main.sqlite_sequence(name, seq) VALUES (?1, ?2)",
                        (&t.name, seq),
                    )
                    .map_err(err)?;
            }
        }
        Ok(())
    }

    /// Check the restored tables in place, inside the write transaction.
    fn check(&self, tables: &[&Table]) -> Result<()> {
        for t in tables {
            let sql = format!("PRAGMA main.integrity_check({})", quote(&t.name));
            let answer: String = self
                .conn()
                .query_row(&sql, [], |r| r.get(0))
                .map_err(|e| sql_error("check", "the restored tables", e))?;
            if answer != "ok" {
                return Err(Error::corrupt(format!(
                    "the restored tables failed their integrity check ({answer}); {} was left unchanged",
                    self.target.display()
                )));
            }
        }
        Ok(())
    }
}

/// `DELETE` of one row by the key columns of `keys`.
fn delete_sql(table: &Table, keys: &Table) -> String {
    let names: Vec<String> = table
        .columns
        .iter()
        .filter(|c| Some(&c.name) != table.hidden_key.as_ref())
        .map(|c| c.name.clone())
        .collect();
    let conds: Vec<String> = keys
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let col = if Some(&c.name) == keys.hidden_key.as_ref() {
                rowid_alias(&names).unwrap_or("rowid").to_string()
            } else {
                quote(&c.name)
            };
            format!("{col} = ?{}", i + 1)
        })
        .collect();
    format!(
        "DELETE FROM main.{} WHERE {}",
        quote(&table.name),
        conds.join(" AND ")
    )
}

impl ChainRestorer for SqliteChainRestorer {
    fn begin(&mut self, full: &Manifest, tables: &[&Table]) -> Result<()> {
        match self.mode {
            Mode::Fresh { .. } => {
                for pragma in setting_pragmas(full, true)? {
                    self.exec(&pragma, "the settings")?;
                }
                self.exec("BEGIN", "the new database")?;
            }
            Mode::InPlace => self.exec("BEGIN IMMEDIATE", &self.target.display().to_string())?,
        }
        for t in tables {
            if self.table_exists(&t.name)? {
                if !self.replace {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "table '{}' already exists in {}; pass --force to replace it",
                            t.name,
                            self.target.display()
                        ),
                    ));
                }
                self.exec(
                    &format!("DROP TABLE main.{}", quote(&t.name)),
                    &format!("table '{}'", t.name),
                )?;
            }
        }
        self.objects(full, "table", tables)?;
        for t in tables {
            let insert = SqliteRestorer::insert_sql(t);
            let upsert = insert.replacen("INSERT INTO", "INSERT OR REPLACE INTO", 1);
            self.inserts.insert(t.name.clone(), insert);
            self.upserts.insert(t.name.clone(), upsert);
        }
        Ok(())
    }

    fn load(&mut self, table: &Table, batch: &DataBatch) -> Result<()> {
        let sql = Self::sql(&self.inserts, table)?;
        execute_rows(self.conn(), &table.name, sql, batch)
    }

    fn begin_changes(&mut self, full: &Manifest, tables: &[&Table]) -> Result<()> {
        self.objects(full, "index", tables)
    }

    fn delete(&mut self, table: &Table, keys: &Table, batch: &DataBatch) -> Result<()> {
        let sql = self
            .deletes
            .entry(table.name.clone())
            .or_insert_with(|| delete_sql(table, keys))
            .clone();
        execute_rows(self.conn(), &table.name, &sql, batch)
    }

    fn upsert(&mut self, table: &Table, batch: &DataBatch) -> Result<()> {
        let sql = Self::sql(&self.upserts, table)?;
        execute_rows(self.conn(), &table.name, sql, batch)
    }

    fn set_progress(&mut self, progress: Arc<dyn Progress>) {
        self.phases = Phases(Some(progress));
    }

    fn finish(mut self: Box<Self>, point: &Manifest, tables: &[&Table]) -> Result<()> {
        self.objects(point, "trigger", tables)?;
        self.sequences(point, tables)?;
        self.phases.begin("checking");
        let Mode::Fresh { temp } = &self.mode else {
            // In place: checked before the commit, which a failure rolls back.
            self.check(tables)?;
            self.exec("COMMIT", &self.target.display().to_string())?;
            self.finished = true;
            return Ok(());
        };
        let temp = temp.clone();
        self.exec("COMMIT", &self.target.display().to_string())?;
        let conn = self.conn.take().expect("open");
        complete_beside(conn, &temp, &self.target, point, &self.cancel)?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for SqliteChainRestorer {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(conn) = self.conn.take() {
            if matches!(self.mode, Mode::InPlace) && !conn.is_autocommit() {
                conn.progress_handler(0, None::<fn() -> bool>);
                let _ = conn.execute_batch("ROLLBACK");
            }
            drop(conn);
        }
        if let Mode::Fresh { temp } = &self.mode {
            for f in temp_files(temp) {
                let _ = std::fs::remove_file(f);
            }
        }
    }
}
