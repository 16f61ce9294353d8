//! Importing tables from an archive into a new or existing SQLite database.
//!
//! * A target that does not exist (or is an empty file) is built beside it,
//!   in a hidden temporary file with journaling off, and renamed into place
//!   once complete, like a restore.
//! * An existing database is changed in **one transaction** on the database
//!   itself (`BEGIN IMMEDIATE`, so other writers wait while readers go on):
//!   tables are dropped (`--mode replace`) and created, rows inserted,
//!   indexes of the new tables created, then `COMMIT`. Any failure, a
//!   cancellation or a killed process leaves the database as it was (SQLite
//!   rolls the transaction back, at the latest when the database is next
//!   opened).
//!
//! Conflicts are found before anything is written: a table that exists
//! (`--mode create`), a name taken by a view or an index, a column the
//! existing table lacks (`--mode append`).
//!
//! Tables come from the archive's native DDL when it was taken from SQLite
//! (so declared types, constraints, `WITHOUT ROWID`, `STRICT` and virtual
//! tables come back as they were) and from the neutral schema otherwise;
//! indexes only from native DDL. Views and triggers are not imported.
//! Foreign keys are not enforced while importing. Rows keep their rowids,
//! except rows appended to a table that existed before the import, whose
//! hidden rowids (`__coffer_rowid`) are left for SQLite to assign.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::{foreign, portable};
use coffer::engine::{DataBatch, ImportMode, Misfit, Restorer};
use coffer::manifest::{LogicalType, Manifest, SchemaObject, Table};
use coffer::progress::Cancel;
use coffer::{Error, ErrorKind};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::catalog::rowid_alias;
use crate::guard::{Guard, restrict};
use crate::restorer::{create_beside, execute_rows, move_into_place, resolve_target, temp_files};
use crate::{Result, quote, sql_error};

struct Plan {
    sql: String,
    /// The batch column to leave out (an appended table's hidden rowid).
    skip: Option<usize>,
}

/// Imports into one SQLite database (see the module docs).
pub struct SqliteImporter {
    target: PathBuf,
    /// The file being built beside a target that did not exist.
    temp: Option<PathBuf>,
    conn: Option<Connection>,
    guard: Guard,
    mode: ImportMode,
    plans: HashMap<String, Plan>,
    /// Tables this import creates (their indexes are created at the end).
    created: HashSet<String>,
    /// Rows handed to `load` so far, per table (to name a row in errors).
    loaded: HashMap<String, u64>,
    finished: bool,
    /// Values coerced so far, when asked to (`Restorer::coerce`).
    coerced: Option<u64>,
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

impl SqliteImporter {
    /// Open `target` (or a new file beside it) and start the transaction.
    pub fn new(target: &str, mode: ImportMode, cancel: Cancel) -> Result<SqliteImporter> {
        let target = resolve_target(Path::new(target))?;
        if target.is_dir() {
            return Err(Error::invalid(format!(
                "{} is a directory; give the path of a database file",
                target.display()
            )));
        }
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(Error::not_found(format!(
                "the directory {} of {} does not exist; create it first",
                parent.display(),
                target.display()
            )));
        }
        let exists = std::fs::metadata(&target).is_ok_and(|m| m.len() > 0);
        let name = display(&target);
        let (conn, guard, temp) = if exists {
            let conn = Connection::open_with_flags(
                &target,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| sql_error("open", &name, e))?;
            conn.busy_timeout(std::time::Duration::from_secs(60))
                .map_err(|e| sql_error("open", &name, e))?;
            conn.query_row("SELECT count(*) FROM main.sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| sql_error("open", &name, e))?;
            let guard = restrict(&conn, &name)?;
            conn.execute_batch(
                "PRAGMA foreign_keys = OFF;
                 PRAGMA cache_size = -16384;
                 BEGIN IMMEDIATE;",
            )
            .map_err(|e| sql_error("start the import into", &name, e))?;
            (conn, guard, None)
        } else {
            let (temp, conn, guard) = create_beside(&target, "import")?;
            conn.execute_batch("BEGIN")
                .map_err(|e| sql_error("set up", &display(&temp), e))?;
            (conn, guard, Some(temp))
        };
        conn.progress_handler(10_000, Some(move || cancel.is_cancelled()));
        Ok(SqliteImporter {
            target,
            temp,
            conn: Some(conn),
            guard,
            mode,
            plans: HashMap::new(),
            created: HashSet::new(),
            loaded: HashMap::new(),
            finished: false,
            coerced: None,
        })
    }

    fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("connection is open until finish")
    }

    fn name(&self) -> String {
        display(&self.target)
    }

    fn exec(&self, sql: &str, what: &str) -> Result<()> {
        self.conn().execute_batch(sql).map_err(|e| {
            self.guard
                .error("import", &format!("{what} into {}", self.name()), e)
        })
    }

    /// Create the schema object `obj` with `sql` (the manifest's own, or
    /// coffer's neutral DDL), checked by the guard.
    fn create(&self, obj: &SchemaObject, sql: &str) -> Result<()> {
        let what = format!("{} '{}' into {}", obj.kind, obj.name, self.name());
        self.guard.create(self.conn(), obj, sql, &what)
    }

    /// The type and exact name of the table, view or index called `name`
    /// (names are case-insensitive in SQLite), if there is one.
    fn object_named(&self, name: &str) -> Result<Option<(String, String)>> {
        self.conn()
            .query_row(
                "SELECT type, name FROM main.sqlite_schema
                 WHERE type IN ('table', 'view', 'index') AND name = ?1 COLLATE NOCASE",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| sql_error("inspect", &self.name(), e))
    }

    /// The ordinary (not generated, not hidden) columns of an existing table.
    fn columns_of(&self, table: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .conn()
            .prepare(&format!("PRAGMA main.table_xinfo({})", quote(table)))
            .map_err(|e| sql_error("inspect", &self.name(), e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, i64>(6)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| sql_error("inspect", &self.name(), e))?;
        Ok(rows
            .into_iter()
            .filter(|(_, hidden)| *hidden == 0)
            .map(|(n, _)| n)
            .collect())
    }

    fn plan(table: &Table, append_existing: bool) -> Plan {
        let rowid_col = table
            .hidden_key
            .as_ref()
            .and_then(|r| table.columns.iter().position(|c| &c.name == r));
        let names: Vec<String> = table
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != rowid_col)
            .map(|(_, c)| c.name.clone())
            .collect();
        let mut cols = Vec::new();
        for (i, c) in table.columns.iter().enumerate() {
            if Some(i) == rowid_col {
                if !append_existing {
                    cols.push(rowid_alias(&names).unwrap_or("rowid").to_string());
                }
            } else {
                cols.push(quote(&c.name));
            }
        }
        let marks = vec!["?"; cols.len()].join(", ");
        Plan {
            sql: format!(
                "INSERT INTO main.{}({}) VALUES ({marks})",
                quote(&table.name),
                cols.join(", ")
            ),
            skip: if append_existing { rowid_col } else { None },
        }
    }
}

/// `CREATE TABLE` from the neutral schema: columns with SQL types for
/// their logical types, NOT NULL, and the primary key (an `INTEGER PRIMARY
/// KEY` for a single int64 key). The hidden rowid column is not declared.
pub fn neutral_ddl(table: &Table) -> String {
    let single_int_pk = table.primary_key.len() == 1
        && table
            .columns
            .iter()
            .any(|c| c.name == table.primary_key[0] && c.logical_type == LogicalType::Int64);
    let mut defs: Vec<String> = table
        .columns
        .iter()
        .filter(|c| Some(&c.name) != table.hidden_key.as_ref())
        .map(|c| {
            let t = match &c.logical_type {
                LogicalType::Int64 => "INTEGER".to_string(),
                LogicalType::Float64 => "REAL".to_string(),
                LogicalType::Utf8 => "TEXT".to_string(),
                LogicalType::Binary => "BLOB".to_string(),
                LogicalType::Date => "DATE".to_string(),
                LogicalType::Timestamp => "TIMESTAMP".to_string(),
                LogicalType::Decimal { precision, scale } if *precision <= 38 => {
                    format!("DECIMAL({precision},{scale})")
                }
                // Types SQLite has no storage class of their own for (see
                // crate::portable::plain_type): integers and reals, or text
                // in a TEXT column, whose affinity never turns text that
                // looks like a number ('3.0e10' of a json, the digits of a
                // wide decimal) into a number.
                LogicalType::Bool => "BOOLEAN".to_string(),
                LogicalType::Int16 => "SMALLINT".to_string(),
                LogicalType::Int32 => "INT".to_string(),
                LogicalType::Float32 => "REAL".to_string(),
                LogicalType::Decimal { .. }
                | LogicalType::Time
                | LogicalType::TimestampTz
                | LogicalType::DecimalText
                | LogicalType::Interval
                | LogicalType::Uuid
                | LogicalType::Json
                | LogicalType::List(_) => "TEXT".to_string(),
            };
            let mut def = format!("{} {t}", quote(&c.name));
            if single_int_pk && c.name == table.primary_key[0] {
                def.push_str(" PRIMARY KEY");
            }
            if !c.nullable {
                def.push_str(" NOT NULL");
            }
            def
        })
        .collect();
    if !table.primary_key.is_empty() && !single_int_pk {
        let key: Vec<String> = table.primary_key.iter().map(|k| quote(k)).collect();
        defs.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    format!(
        "CREATE TABLE main.{}({})",
        quote(&table.name),
        defs.join(", ")
    )
}

/// `batch` without column `skip` (and its misfits).
fn without_column(batch: &DataBatch, skip: usize) -> DataBatch {
    let mut columns = batch.columns.clone();
    columns.remove_column(skip);
    let misfits = batch
        .misfits
        .iter()
        .filter(|m| m.column as usize != skip)
        .map(|m| Misfit {
            column: if m.column as usize > skip {
                m.column - 1
            } else {
                m.column
            },
            ..m.clone()
        })
        .collect();
    DataBatch { columns, misfits }
}

impl Restorer for SqliteImporter {
    fn coerce(&mut self) {
        self.coerced.get_or_insert(0);
    }

    fn coerced(&self) -> u64 {
        self.coerced.unwrap_or(0)
    }

    fn begin(&mut self, manifest: &Manifest, tables: &[&Table]) -> Result<()> {
        let native = manifest.source.engine == "sqlite";
        let target = self.name();
        let wanted: HashSet<String> = tables.iter().map(|t| t.name.to_lowercase()).collect();
        // Everything is checked before anything is written.
        let mut drop = Vec::new();
        let mut append = HashSet::new();
        for t in tables {
            match self.object_named(&t.name)? {
                None => {}
                Some((kind, name)) if kind != "table" => {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "{target} already has {} named '{name}', so table '{}' cannot be imported there; rename or drop it first (nothing was imported)",
                            if kind == "index" {
                                "an index"
                            } else {
                                "a view"
                            },
                            t.name
                        ),
                    ));
                }
                Some((_, name)) => match self.mode {
                    ImportMode::Create => {
                        return Err(Error::new(
                            ErrorKind::AlreadyExists,
                            format!(
                                "table '{name}' already exists in {target}; pass --mode append to add the rows to it or --mode replace to replace it (nothing was imported)"
                            ),
                        ));
                    }
                    ImportMode::Replace => drop.push(name),
                    ImportMode::Append => {
                        let have: HashSet<String> = self
                            .columns_of(&name)?
                            .into_iter()
                            .map(|c| c.to_lowercase())
                            .collect();
                        if let Some(missing) = t.columns.iter().find(|c| {
                            Some(&c.name) != t.hidden_key.as_ref()
                                && !have.contains(&c.name.to_lowercase())
                        }) {
                            return Err(Error::invalid(format!(
                                "table '{name}' in {target} has no column '{}' to take the archive's rows; add it or import with --mode replace (nothing was imported)",
                                missing.name
                            )));
                        }
                        append.insert(t.name.clone());
                    }
                },
            }
        }
        // Index names must be free (or belong to a table being replaced).
        if native {
            for obj in &manifest.objects {
                if obj.kind != "index"
                    || append.contains(&obj.table)
                    || !wanted.contains(&obj.table.to_lowercase())
                {
                    continue;
                }
                if let Some((kind, name)) = self.object_named(&obj.name)? {
                    let owner: Option<String> = self
                        .conn()
                        .query_row(
                            "SELECT tbl_name FROM main.sqlite_schema WHERE name = ?1",
                            [&name],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(|e| sql_error("inspect", &target, e))?;
                    let replaced = kind == "index"
                        && owner.is_some_and(|o| drop.iter().any(|d| d.eq_ignore_ascii_case(&o)));
                    if !replaced {
                        return Err(Error::new(
                            ErrorKind::AlreadyExists,
                            format!(
                                "{target} already has {kind} '{name}', the name of index '{}' of table '{}' in the archive; rename or drop it first (nothing was imported)",
                                obj.name, obj.table
                            ),
                        ));
                    }
                }
            }
        }
        for name in &drop {
            self.exec(
                &format!("DROP TABLE main.{}", quote(name)),
                &format!("(replacing) table '{name}'"),
            )?;
        }
        for t in tables {
            if append.contains(&t.name) {
                self.plans.insert(t.name.clone(), Self::plan(t, true));
                continue;
            }
            match manifest
                .objects
                .iter()
                .find(|o| native && o.kind == "table" && o.name == t.name)
            {
                Some(obj) => self.create(obj, &obj.sql)?,
                None => {
                    let obj = SchemaObject {
                        kind: "table".into(),
                        name: t.name.clone(),
                        table: t.name.clone(),
                        sql: String::new(),
                    };
                    self.create(&obj, &neutral_ddl(t))?;
                }
            }
            self.created.insert(t.name.clone());
            self.plans.insert(t.name.clone(), Self::plan(t, false));
        }
        Ok(())
    }

    fn load(&mut self, table: &Table, batch: &DataBatch) -> Result<()> {
        let plan = self
            .plans
            .get(&table.name)
            .ok_or_else(|| Error::internal(format!("table '{}' was not begun", table.name)))?;
        let what = format!("table '{}' of {}", table.name, self.name());
        let origin = format!("table '{}'", table.name);
        let seen = self.loaded.entry(table.name.clone()).or_default();
        let first_row = *seen;
        *seen += batch.num_rows() as u64;
        let foreign;
        let mut batch = batch;
        if foreign::needed(batch) {
            let name = self.name();
            foreign = foreign::to_sqlite(batch, table, &name, first_row, self.coerced.as_mut())?;
            batch = &foreign;
        }
        let converted;
        if portable::has_portable_columns(table) {
            converted = portable::to_plain(batch, table, &origin)?;
            batch = &converted;
        }
        let projected;
        if let Some(skip) = plan.skip {
            projected = without_column(batch, skip);
            batch = &projected;
        }
        execute_rows(self.conn(), &what, &plan.sql, batch)
    }

    fn finish(mut self: Box<Self>, manifest: &Manifest, _tables: &[&Table]) -> Result<()> {
        if manifest.source.engine == "sqlite" {
            for obj in &manifest.objects {
                if obj.kind == "index" && self.created.contains(&obj.table) && !obj.sql.is_empty() {
                    self.create(obj, &obj.sql)?;
                }
            }
        }
        self.exec("COMMIT", "the rows")?;
        let conn = self.conn.take().expect("open");
        conn.close()
            .map_err(|(_, e)| sql_error("close", &self.name(), e))?;
        if let Some(temp) = self.temp.clone() {
            move_into_place(&temp, &self.target)?;
        }
        self.finished = true;
        Ok(())
    }
}

impl Drop for SqliteImporter {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.execute_batch("ROLLBACK");
            drop(conn);
        }
        if let Some(temp) = &self.temp {
            for f in temp_files(temp) {
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

/// The importer the engine hands out.
pub(crate) fn importer(
    target: &str,
    mode: ImportMode,
    cancel: Cancel,
) -> Result<Box<dyn Restorer>> {
    Ok(Box::new(SqliteImporter::new(target, mode, cancel)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer::manifest::Column;

    #[test]
    fn neutral_tables() {
        let col = |n: &str, t: LogicalType, nullable: bool| Column {
            name: n.into(),
            logical_type: t,
            declared_type: String::new(),
            nullable,
            text_format: None,
        };
        let mut t = Table {
            name: "t x".into(),
            kind: coffer::manifest::TableKind::Table,
            columns: vec![
                col("id", LogicalType::Int64, false),
                col(
                    "price",
                    LogicalType::Decimal {
                        precision: 10,
                        scale: 2,
                    },
                    true,
                ),
                col("day", LogicalType::Date, true),
            ],
            primary_key: vec!["id".into()],
            hidden_key: None,
            rows: 0,
            parts: vec![],
        };
        assert_eq!(
            neutral_ddl(&t),
            "CREATE TABLE main.\"t x\"(\"id\" INTEGER PRIMARY KEY NOT NULL, \"price\" DECIMAL(10,2), \"day\" DATE)"
        );
        t.primary_key = vec!["id".into(), "day".into()];
        t.columns
            .insert(0, col("__coffer_rowid", LogicalType::Int64, false));
        t.hidden_key = Some("__coffer_rowid".into());
        assert_eq!(
            neutral_ddl(&t),
            "CREATE TABLE main.\"t x\"(\"id\" INTEGER NOT NULL, \"price\" DECIMAL(10,2), \"day\" DATE, PRIMARY KEY (\"id\", \"day\"))"
        );
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&neutral_ddl(&t)).unwrap();
    }
}
