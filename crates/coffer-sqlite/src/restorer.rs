//! Building a SQLite database from an archive, beside the target.
//!
//! The database is built in a hidden temporary file in the target's
//! directory with journaling off (it is not visible to anyone until it is
//! complete), data is loaded before secondary indexes and triggers are
//! created, `PRAGMA integrity_check` must pass, and only then is the file
//! synced and renamed into place — or, where the target is an existing
//! database that another process may have open, written into it through
//! SQLite's locking with the backup API (see [`install`]). Dropping an
//! unfinished restorer removes the temporary file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, BinaryArray, Float64Array, Int64Array, StringArray};
use coffer::engine::{DataBatch, PostgresValue, RawValue, Restorer, Skipped, SqliteValue};
use coffer::manifest::{Manifest, SchemaObject, Table};
use coffer::progress::{Cancel, Progress};
use coffer::{Error, ErrorKind};
use rusqlite::Connection;
use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::catalog::{INTERNAL_TABLES, rowid_alias};
use crate::guard::{Guard, restrict, setting_pragmas};
use crate::{Result, quote, sql_error};

/// Restores into a temporary file and [`install`]s it at the target.
pub struct SqliteRestorer {
    target: PathBuf,
    temp: PathBuf,
    conn: Option<Connection>,
    guard: Guard,
    inserts: HashMap<String, String>,
    internal_rows: Vec<(String, DataBatch)>,
    cancel: Cancel,
    finished: bool,
    phases: Phases,
    skip_missing_collations: bool,
    skipped: Vec<Skipped>,
}

fn is_internal(name: &str) -> bool {
    INTERNAL_TABLES.contains(&name)
}

/// Create the private file in which a database is built beside `target`:
/// `.NAME.coffer-PURPOSE-PID.tmp` in the target's directory, so that the
/// final rename stays on one filesystem. Nobody sees it until it is renamed,
/// so journaling and syncs are off; a 16 MiB page cache and one sorter
/// thread (more only cost memory, see docs/DECISIONS.md); foreign keys off,
/// since rows arrive in table order, not in dependency order. The connection
/// is [`restrict`]ed to the new file for its whole life. A `restore`
/// loads rows as the source holds them, also those that break a CHECK
/// constraint (which SQLite lets `PRAGMA ignore_check_constraints` write):
/// the constraints stay in the schema, unenforced on this connection only.
pub(crate) fn create_beside(target: &Path, purpose: &str) -> Result<(PathBuf, Connection, Guard)> {
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
    let file_name = target
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{} names no file", target.display())))?
        .to_string_lossy()
        .into_owned();
    let temp = parent.join(format!(
        ".{file_name}.coffer-{purpose}-{}.tmp",
        std::process::id()
    ));
    for f in temp_files(&temp) {
        let _ = std::fs::remove_file(f);
    }
    remove_dead_leftovers(&parent);
    let conn =
        Connection::open(&temp).map_err(|e| sql_error("create", &temp.display().to_string(), e))?;
    conn.execute_batch(
        "PRAGMA journal_mode = OFF;
         PRAGMA synchronous = OFF;
         PRAGMA locking_mode = EXCLUSIVE;
         PRAGMA cache_size = -16384;
         PRAGMA threads = 1;
         PRAGMA foreign_keys = OFF;",
    )
    .map_err(|e| sql_error("set up", &temp.display().to_string(), e))?;
    let guard = restrict(&conn, &temp.display().to_string())?;
    if purpose == "restore" {
        conn.execute_batch("PRAGMA ignore_check_constraints = ON;")
            .map_err(|e| sql_error("set up", &temp.display().to_string(), e))?;
    }
    Ok((temp, conn, guard))
}

/// Remove the temporary files that runs killed while building a database
/// in `dir` left behind, whatever the database's name:
/// `.NAME.coffer-PURPOSE-PID.tmp` (PURPOSE `restore` or `import`, and its
/// journal, WAL and shared-memory files) whose process is no longer
/// running. Where that cannot be told (no `/proc`), they are left alone.
fn remove_dead_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = leftover_pid(&name) else {
            continue;
        };
        if !coffer::lock::process_alive(pid) {
            tracing::info!(file = %entry.path().display(), "removing the leftover of a killed run");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The pid in the name of a temporary file of [`create_beside`]
/// (`.NAME.coffer-PURPOSE-PID.tmp`, perhaps with `-journal`, `-wal` or
/// `-shm`), if it is one.
fn leftover_pid(name: &str) -> Option<u32> {
    let (head, rest) = name.rsplit_once(".coffer-")?;
    if !head.starts_with('.') || head.len() < 2 {
        return None;
    }
    let rest = ["-journal", "-wal", "-shm"]
        .iter()
        .find_map(|s| rest.strip_suffix(s))
        .unwrap_or(rest);
    let rest = rest.strip_suffix(".tmp")?;
    let (purpose, pid) = rest.split_once('-')?;
    if !["restore", "import"].contains(&purpose) || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// The file that `target` names: symbolic links are followed (also to a
/// file that does not exist yet), so that a restore or import writes the
/// database a link points to and never replaces the link itself.
pub fn resolve_target(target: &Path) -> Result<PathBuf> {
    let mut path = target.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&path)
                    .map_err(|e| io_error("read the symbolic link", &path, e))?;
                path = match path.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            _ => return Ok(path),
        }
    }
    Err(Error::invalid(format!(
        "{} is a loop of symbolic links; give the path of the database file",
        target.display()
    )))
}

pub(crate) fn temp_files(temp: &Path) -> Vec<PathBuf> {
    let mut out = vec![temp.to_path_buf()];
    for suffix in ["-journal", "-wal", "-shm"] {
        let mut p = temp.as_os_str().to_owned();
        p.push(suffix);
        out.push(PathBuf::from(p));
    }
    out
}

impl SqliteRestorer {
    /// Check the target and open the temporary database beside it.
    pub fn new(target: &str, replace: bool, cancel: Cancel) -> Result<SqliteRestorer> {
        let target = resolve_target(Path::new(target))?;
        if target.is_dir() {
            return Err(Error::invalid(format!(
                "{} is a directory; give the path of the database file to create",
                target.display()
            )));
        }
        if let Ok(meta) = std::fs::metadata(&target)
            && meta.len() > 0
            && !replace
        {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{} already exists and is not empty; pass --force to replace it",
                    target.display()
                ),
            ));
        }
        let (temp, conn, guard) = create_beside(&target, "restore")?;
        // Long statements (index builds) stop when the user asks.
        let stop = cancel.clone();
        conn.progress_handler(10_000, Some(move || stop.is_cancelled()));
        Ok(SqliteRestorer {
            target,
            temp,
            conn: Some(conn),
            guard,
            inserts: HashMap::new(),
            internal_rows: Vec::new(),
            cancel,
            finished: false,
            phases: Phases::default(),
            skip_missing_collations: false,
            skipped: Vec::new(),
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

    /// Create the schema object `obj` of the manifest, checked by the guard.
    fn create(&self, obj: &SchemaObject) -> Result<()> {
        let what = format!("{} '{}'", obj.kind, obj.name);
        self.guard.create(self.conn(), obj, &obj.sql, &what)
    }

    fn table_exists(&self, name: &str) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT count(*) FROM main.sqlite_schema WHERE type = 'table' AND name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| sql_error("inspect", "the new database", e))
    }

    pub(crate) fn insert_sql(table: &Table) -> String {
        let names: Vec<String> = table
            .columns
            .iter()
            .filter(|c| Some(&c.name) != table.hidden_key.as_ref())
            .map(|c| c.name.clone())
            .collect();
        let cols: Vec<String> = table
            .columns
            .iter()
            .map(|c| {
                if Some(&c.name) == table.hidden_key.as_ref() {
                    rowid_alias(&names).unwrap_or("rowid").to_string()
                } else {
                    quote(&c.name)
                }
            })
            .collect();
        let marks = vec!["?"; cols.len()].join(", ");
        format!(
            "INSERT INTO main.{}({}) VALUES ({marks})",
            quote(&table.name),
            cols.join(", ")
        )
    }

    /// Recreate a virtual table of the archive that has no rows in it: the
    /// backup found no module for it. Where this SQLite has the module it is
    /// created; where it does not, its definition is written into the
    /// schema as the source had it (it works where the module is loaded),
    /// with a warning naming it. Anything but one `CREATE VIRTUAL TABLE`
    /// statement is refused as a damaged archive.
    fn recreate_virtual(&self, obj: &coffer::manifest::SchemaObject) -> Result<()> {
        let upper = obj.sql.trim_start().to_ascii_uppercase();
        let module = crate::catalog::vtab_module(&obj.sql);
        // One statement: SQLite reads only the first of a schema row's SQL.
        let single = !obj.sql.trim_end().trim_end_matches(';').contains(';');
        if !upper.starts_with("CREATE VIRTUAL TABLE") || module.is_none() || !single {
            return Err(Error::corrupt(format!(
                "the archive lists table '{}' without its rows, which only a virtual table may be; the archive is damaged",
                obj.name.escape_debug()
            )));
        }
        let what = format!("virtual table '{}'", obj.name);
        // Asked first: with journaling off, a CREATE that fails for want of
        // its module is not undone.
        let known: bool = self
            .conn()
            .query_row(
                "SELECT count(*) > 0 FROM pragma_module_list WHERE name = ?1 COLLATE NOCASE",
                [module.as_deref().unwrap_or_default()],
                |r| r.get(0),
            )
            .map_err(|e| sql_error("restore", &what, e))?;
        if known {
            return self.create(obj);
        }
        self.guard.record_virtual_table(self.conn(), obj)?;
        tracing::warn!(
            "{what} uses the module {}, which coffer does not have: its definition was restored, its rows were not in the archive; it works where that module is loaded",
            crate::catalog::module_as_written(&obj.sql).unwrap_or_default()
        );
        Ok(())
    }

    fn is_skipped(&self, kind: &str, name: &str) -> bool {
        self.skipped
            .iter()
            .any(|s| s.kind == kind && s.name == name)
    }

    /// The collation sequences that `sql` names and this connection does
    /// not have.
    fn missing_collations(&self, sql: &str) -> Result<Vec<String>> {
        let mut missing = Vec::new();
        for c in crate::catalog::collations_in(sql) {
            let known: bool = self
                .conn()
                .query_row(
                    "SELECT count(*) > 0 FROM pragma_collation_list WHERE name = ?1 COLLATE NOCASE",
                    [&c],
                    |r| r.get(0),
                )
                .map_err(|e| sql_error("inspect", "the new database", e))?;
            if !known {
                missing.push(c);
            }
        }
        Ok(missing)
    }

    /// Find the tables and indexes to restore that need a collation
    /// sequence this SQLite does not have (one the source's application
    /// defined), which cannot be built. Unless told to skip them, refuse
    /// the restore naming them; else record them, and the indexes and
    /// triggers of the tables among them, in `skipped`. Views and triggers
    /// that name such a collation are restored: SQLite needs it only when
    /// they run.
    fn leave_out_missing_collations(&mut self, manifest: &Manifest, wanted: &[&str]) -> Result<()> {
        let mut needs: Vec<(String, String, Vec<String>)> = Vec::new();
        let mut all_missing: Vec<String> = Vec::new();
        for obj in &manifest.objects {
            let buildable = match obj.kind.as_str() {
                "table" | "index" => wanted.contains(&obj.table.as_str()),
                _ => false,
            };
            if !buildable {
                continue;
            }
            let missing = self.missing_collations(&obj.sql)?;
            if missing.is_empty() {
                continue;
            }
            for c in &missing {
                if !all_missing.contains(c) {
                    all_missing.push(c.clone());
                }
            }
            needs.push((obj.kind.clone(), obj.name.clone(), missing));
        }
        if needs.is_empty() {
            return Ok(());
        }
        let quoted = |v: &[String]| {
            v.iter()
                .map(|c| format!("'{}'", c.escape_debug()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.skip_missing_collations {
            let objects: Vec<String> = needs
                .iter()
                .map(|(kind, name, _)| format!("{kind} '{}'", name.escape_debug()))
                .collect();
            return Err(Error::invalid(format!(
                "the archive's database uses the collation sequence(s) {}, which its application defines and coffer does not have, so {} cannot be built; pass --skip-missing-collations to restore everything else (what is left out is listed)",
                quoted(&all_missing),
                objects.join(", ")
            )));
        }
        for (kind, name, missing) in needs {
            self.skipped.push(Skipped {
                holds_rows: kind == "table",
                kind,
                name,
                reason: format!("needs the collation sequence(s) {}", quoted(&missing)),
            });
        }
        for obj in &manifest.objects {
            if matches!(obj.kind.as_str(), "index" | "trigger")
                && obj.name != obj.table
                && self.is_skipped("table", &obj.table)
                && !self.is_skipped(&obj.kind, &obj.name)
            {
                self.skipped.push(Skipped {
                    holds_rows: false,
                    kind: obj.kind.clone(),
                    name: obj.name.clone(),
                    reason: format!("its table '{}' was left out", obj.table.escape_debug()),
                });
            }
        }
        for s in &self.skipped {
            tracing::warn!(
                "left out {} '{}': it {}",
                s.kind,
                s.name.escape_debug(),
                s.reason
            );
        }
        Ok(())
    }

    fn insert_rows(&self, table: &Table, sql: &str, batch: &DataBatch) -> Result<()> {
        execute_rows(self.conn(), &table.name, sql, batch)
    }
}

/// Run `sql` once per row of `batch`, binding the row's values (misfits
/// included, with their exact storage class) to its parameters in order.
/// Errors name `table`.
pub(crate) fn execute_rows(
    conn: &Connection,
    table: &str,
    sql: &str,
    batch: &DataBatch,
) -> Result<()> {
    let err = |e| sql_error("load rows into", table, e);
    let mut stmt = conn.prepare_cached(sql).map_err(err)?;
    let columns: Vec<Column<'_>> = batch
        .columns
        .columns()
        .iter()
        .map(|a| Column::of(a.as_ref()))
        .collect::<Result<_>>()?;
    let mut misfits = batch.misfits.iter().peekable();
    for row in 0..batch.num_rows() {
        for (i, col) in columns.iter().enumerate() {
            let value = match misfits.next_if(|m| m.row == row as u64 && m.column == i as u32) {
                Some(m) => match &m.value {
                    RawValue::Sqlite(SqliteValue::Integer(v)) => ValueRef::Integer(*v),
                    RawValue::Sqlite(SqliteValue::Real(v)) => ValueRef::Real(*v),
                    RawValue::Sqlite(SqliteValue::Text(v)) => ValueRef::Text(v),
                    RawValue::Sqlite(SqliteValue::Blob(v)) => ValueRef::Blob(v),
                    RawValue::Postgres(v) => {
                        let what = match v {
                            PostgresValue::NaN => "NaN",
                            PostgresValue::Infinity => "infinity",
                            PostgresValue::NegInfinity => "-infinity",
                            PostgresValue::Text(_) => "a value in its text form",
                        };
                        return Err(Error::invalid(format!(
                            "could not load rows into {table}: row {} holds a PostgreSQL value that no SQLite column can take ({what}); restore the archive into PostgreSQL",
                            row + 1
                        )));
                    }
                },
                None => col.value(row),
            };
            stmt.raw_bind_parameter(i + 1, ToSqlOutput::Borrowed(value))
                .map_err(err)?;
        }
        stmt.raw_execute().map_err(err)?;
    }
    Ok(())
}

/// A typed view of one Arrow column.
enum Column<'a> {
    Int(&'a Int64Array),
    Float(&'a Float64Array),
    Text(&'a StringArray),
    Bin(&'a BinaryArray),
}

impl<'a> Column<'a> {
    fn of(a: &'a dyn Array) -> Result<Column<'a>> {
        let any = a.as_any();
        if let Some(x) = any.downcast_ref::<Int64Array>() {
            Ok(Column::Int(x))
        } else if let Some(x) = any.downcast_ref::<Float64Array>() {
            Ok(Column::Float(x))
        } else if let Some(x) = any.downcast_ref::<StringArray>() {
            Ok(Column::Text(x))
        } else if let Some(x) = any.downcast_ref::<BinaryArray>() {
            Ok(Column::Bin(x))
        } else {
            Err(Error::internal(format!(
                "unexpected column type {}",
                a.data_type()
            )))
        }
    }

    fn value(&self, row: usize) -> ValueRef<'a> {
        match self {
            Column::Int(a) if a.is_valid(row) => ValueRef::Integer(a.value(row)),
            Column::Float(a) if a.is_valid(row) => ValueRef::Real(a.value(row)),
            Column::Text(a) if a.is_valid(row) => ValueRef::Text(a.value(row).as_bytes()),
            Column::Bin(a) if a.is_valid(row) => ValueRef::Blob(a.value(row)),
            _ => ValueRef::Null,
        }
    }
}

impl Restorer for SqliteRestorer {
    fn set_progress(&mut self, progress: Arc<dyn Progress>) {
        self.phases = Phases(Some(progress));
    }

    fn begin(&mut self, manifest: &Manifest, tables: &[&Table]) -> Result<()> {
        // Those set at the end are checked before anything is built.
        setting_pragmas(manifest, false)?;
        // Settings that must precede the first table.
        for pragma in setting_pragmas(manifest, true)? {
            self.exec(&pragma, "the settings")?;
        }
        self.exec("BEGIN", "the new database")?;
        let wanted: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        self.leave_out_missing_collations(manifest, &wanted)?;
        for obj in &manifest.objects {
            if obj.kind == "table"
                && !is_internal(&obj.name)
                && wanted.contains(&obj.name.as_str())
                && !self.is_skipped("table", &obj.name)
            {
                self.create(obj)?;
            }
        }
        for t in tables {
            if !is_internal(&t.name) && !self.is_skipped("table", &t.name) {
                self.inserts.insert(t.name.clone(), Self::insert_sql(t));
            }
        }
        Ok(())
    }

    fn skip_missing_collations(&mut self) {
        self.skip_missing_collations = true;
    }

    fn skipped(&self) -> Vec<Skipped> {
        self.skipped.clone()
    }

    fn load(&mut self, table: &Table, batch: &DataBatch) -> Result<()> {
        if self.is_skipped("table", &table.name) {
            return Ok(());
        }
        if is_internal(&table.name) {
            self.internal_rows.push((table.name.clone(), batch.clone()));
            return Ok(());
        }
        let sql = self
            .inserts
            .get(&table.name)
            .ok_or_else(|| Error::internal(format!("table '{}' was not begun", table.name)))?
            .clone();
        self.insert_rows(table, &sql, batch)
    }

    fn finish(mut self: Box<Self>, manifest: &Manifest, tables: &[&Table]) -> Result<()> {
        let started = std::time::Instant::now();
        let wanted: Vec<&str> = tables
            .iter()
            .map(|t| t.name.as_str())
            .filter(|t| !self.is_skipped("table", t))
            .collect();
        let all = tables.len() == manifest.tables.len();
        self.phases.begin("indexes");
        for obj in &manifest.objects {
            let on_view = manifest
                .objects
                .iter()
                .any(|o| o.kind == "view" && o.name == obj.table);
            let keep = match obj.kind.as_str() {
                "index" => wanted.contains(&obj.table.as_str()),
                "trigger" if on_view => all,
                // Change capture needs coffer's own tables: restored whole or not at all.
                "trigger" if obj.name.starts_with(crate::capture::PREFIX) => all,
                "trigger" => wanted.contains(&obj.table.as_str()),
                "view" => all,
                "table" if all && manifest.table(&obj.name).is_none() => {
                    // A virtual table whose rows the backup could not read.
                    self.recreate_virtual(obj)?;
                    false
                }
                _ => false,
            } && !self.is_skipped(&obj.kind, &obj.name);
            if keep {
                self.phases
                    .note(&format!("creating {} {}", obj.kind, obj.name));
                self.create(obj)?;
            }
        }
        // SQLite's own tables: the AUTOINCREMENT counters, and the planner's
        // statistics (ANALYZE of nothing creates every statistics table this
        // SQLite supports; those the source did not have are dropped).
        let had = |name: &str| manifest.objects.iter().any(|o| o.name == name);
        if had("sqlite_stat1") || had("sqlite_stat4") {
            self.exec("ANALYZE sqlite_schema", "the planner statistics")?;
            for stat in ["sqlite_stat1", "sqlite_stat4"] {
                if !had(stat) {
                    self.exec(&format!("DROP TABLE IF EXISTS main.{stat}"), stat)?;
                }
            }
        }
        for name in INTERNAL_TABLES {
            if self.table_exists(name)? {
                self.exec(&format!("DELETE FROM main.{}", quote(name)), name)?;
            }
        }
        for (name, batch) in std::mem::take(&mut self.internal_rows) {
            let table = manifest
                .table(&name)
                .ok_or_else(|| Error::internal(format!("no table '{name}'")))?;
            let left_out = self.skipped.iter().any(|s| s.kind == "table");
            let batch = keep_rows_for(&batch, &wanted, all && !left_out);
            if batch.num_rows() > 0 {
                self.insert_rows(table, &Self::insert_sql(table), &batch)?;
            }
        }
        crate::capture::forget_log_positions(self.conn())?;
        tracing::debug!(
            seconds = started.elapsed().as_secs_f64(),
            "indexes, views, triggers and SQLite's own tables created"
        );
        self.exec("COMMIT", "the new database")?;
        for pragma in setting_pragmas(manifest, false)? {
            self.exec(&pragma, "the settings")?;
        }
        let conn = self.conn.take().expect("open");
        self.phases.begin("checking");
        complete_beside(conn, &self.temp, &self.target, manifest, &self.cancel)?;
        tracing::debug!(
            seconds = started.elapsed().as_secs_f64(),
            "integrity check done, moved into place"
        );
        self.finished = true;
        Ok(())
    }
}

/// Keep only the rows of SQLite's own tables that belong to restored tables
/// (their first column names the table).
fn keep_rows_for(batch: &DataBatch, wanted: &[&str], all: bool) -> DataBatch {
    if all {
        return batch.clone();
    }
    let col = batch.columns.column(0);
    let names = col.as_any().downcast_ref::<StringArray>();
    let keep: Vec<bool> = (0..batch.num_rows())
        .map(|i| names.is_some_and(|n| n.is_valid(i) && wanted.contains(&n.value(i))))
        .collect();
    let mask = arrow_array::BooleanArray::from(keep.clone());
    let columns = arrow_select::filter::filter_record_batch(&batch.columns, &mask)
        .expect("a mask of the batch's length");
    let mut new_index = Vec::with_capacity(keep.len());
    let mut n = 0u64;
    for k in &keep {
        new_index.push(n);
        if *k {
            n += 1;
        }
    }
    let misfits = batch
        .misfits
        .iter()
        .filter(|m| keep[m.row as usize])
        .map(|m| coffer::engine::Misfit {
            row: new_index[m.row as usize],
            ..m.clone()
        })
        .collect();
    DataBatch { columns, misfits }
}

/// Where a restore's finishing steps are reported: each step (`indexes`,
/// `checking`) a phase of its own, with a note of what it works on.
#[derive(Default)]
pub(crate) struct Phases(pub(crate) Option<Arc<dyn Progress>>);

impl Phases {
    /// A step begins; its length is not known.
    pub(crate) fn begin(&self, phase: &str) {
        if let Some(p) = &self.0 {
            p.begin(phase, None, None);
        }
    }

    /// What the step works on now.
    pub(crate) fn note(&self, what: &str) {
        if let Some(p) = &self.0 {
            p.note(what);
        }
    }
}

/// Complete a database built by [`create_beside`] whose last transaction
/// `conn` has committed: close it, check the file (`PRAGMA integrity_check`,
/// split over the cores by [`crate::check`]) and [`install`] it at `target`
/// in WAL mode if the source of `manifest` was. Nothing at `target` changes
/// unless every check passes.
pub(crate) fn complete_beside(
    conn: Connection,
    temp: &Path,
    target: &Path,
    manifest: &Manifest,
    cancel: &Cancel,
) -> Result<()> {
    let what = temp.display().to_string();
    conn.close()
        .map_err(|(_, e)| sql_error("close", &what, e))?;
    let rows = manifest
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.rows))
        .collect();
    if let Some(problem) = crate::check::integrity_check(temp, &rows, cancel)? {
        return Err(Error::corrupt(format!(
            "the restored database failed its integrity check ({problem}); {} was left unchanged",
            target.display()
        )));
    }
    let wal = manifest
        .settings
        .get("journal_mode")
        .and_then(|v| v.as_str())
        == Some("wal");
    install(temp, target, wal, cancel)
}

/// How long writing into an existing database waits for the locks that
/// other connections to it hold before it refuses.
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Pages copied per step of the backup API (between two checks for Ctrl-C).
const STEP_PAGES: std::ffi::c_int = 4096;

/// Make the finished, checked database at `temp` the database at `target`
/// (in WAL mode if `wal`), and remove `temp`.
///
/// * Where `target` does not exist, or is a file that is not a SQLite
///   database, `temp` is renamed over it ([`move_into_place`]).
/// * Where `target` is a SQLite database, another process may have it open,
///   and a file renamed over it would take that process's later commits
///   into the old, unlinked file: so `temp` is written into it through
///   SQLite's own locking, by the online backup API, in one write
///   transaction. Other connections see the restored database at their
///   next transaction. When another connection holds a lock on it for more
///   than [`BUSY_TIMEOUT`], or it is in WAL mode, open elsewhere and of
///   another page size (SQLite cannot change the page size of a WAL
///   database), or its text encoding differs (connections that have it
///   open could not read it any more), the restore is refused naming it
///   and `target` is left unchanged. A WAL target in use keeps WAL mode.
pub fn install(temp: &Path, target: &Path, wal: bool, cancel: &Cancel) -> Result<()> {
    if target.exists()
        && let Some(dest) = open_database(target)?
    {
        copy_into(temp, dest, target, wal, cancel)?;
        for f in temp_files(temp) {
            let _ = std::fs::remove_file(f);
        }
        return Ok(());
    }
    if wal {
        let what = temp.display().to_string();
        let conn = Connection::open(temp).map_err(|e| sql_error("open", &what, e))?;
        restrict(&conn, &what)?;
        conn.execute_batch("PRAGMA journal_mode = WAL;")
            .map_err(|e| sql_error("set the journal mode of", &what, e))?;
        conn.close()
            .map_err(|(_, e)| sql_error("close", &what, e))?;
    }
    move_into_place(temp, target)
}

fn in_use(target: &Path) -> Error {
    let name = target.display();
    Error::new(
        ErrorKind::Engine,
        format!(
            "{name} is in use: another connection held a lock on it for {} s, so nothing was restored into it; try again when that connection is done",
            BUSY_TIMEOUT.as_secs()
        ),
    )
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Open the existing `target` as SQLite opens it for any process, waiting up
/// to [`BUSY_TIMEOUT`] for locks; `None` when it is not a SQLite database.
fn open_database(target: &Path) -> Result<Option<Connection>> {
    let name = target.display().to_string();
    let conn = Connection::open_with_flags(
        target,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql_error("open", &name, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| sql_error("open", &name, e))?;
    match conn.query_row("SELECT count(*) FROM main.sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => Ok(Some(conn)),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => Ok(None),
        Err(e) if is_busy(&e) => Err(in_use(target)),
        Err(e) => Err(sql_error("open", &name, e)),
    }
}

fn page_size(conn: &Connection, name: &str) -> Result<i64> {
    conn.query_row("PRAGMA main.page_size", [], |r| r.get(0))
        .map_err(|e| sql_error("inspect", name, e))
}

/// The journal mode of `target` (open on `conn`), after setting it to `set`
/// if that can be done.
fn journal_mode(conn: &Connection, set: Option<&str>, target: &Path) -> Result<String> {
    let sql = match set {
        Some(mode) => format!("PRAGMA main.journal_mode = {mode}"),
        None => "PRAGMA main.journal_mode".to_string(),
    };
    match conn.query_row(&sql, [], |r| r.get::<_, String>(0)) {
        Ok(mode) => Ok(mode.to_lowercase()),
        // Not changed: another connection has the database open.
        Err(e) if is_busy(&e) && set.is_some() => journal_mode(conn, None, target),
        Err(e) if is_busy(&e) => Err(in_use(target)),
        Err(e) => Err(sql_error(
            "set the journal mode of",
            &target.display().to_string(),
            e,
        )),
    }
}

/// Write the database at `temp` into the database `dest` (open on `target`)
/// with the backup API, in one transaction (see [`install`]).
fn copy_into(
    temp: &Path,
    mut dest: Connection,
    target: &Path,
    wal: bool,
    cancel: &Cancel,
) -> Result<()> {
    use rusqlite::backup::{Backup, StepResult};
    let name = target.display().to_string();
    let what = temp.display().to_string();
    let src = Connection::open_with_flags(
        temp,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql_error("open", &what, e))?;
    let (new_page, old_page) = (page_size(&src, &what)?, page_size(&dest, &name)?);
    let encoding = |c: &Connection, n: &str| {
        c.query_row("PRAGMA main.encoding", [], |r| r.get::<_, String>(0))
            .map_err(|e| sql_error("inspect", n, e))
    };
    let (new_enc, old_enc) = (encoding(&src, &what)?, encoding(&dest, &name)?);
    if new_enc != old_enc {
        // A connection keeps the text encoding it first read: none that has
        // the target open could read it any more.
        return Err(Error::invalid(format!(
            "{name} has the text encoding {old_enc} and the archive's database {new_enc}, which SQLite cannot change in a database that may be in use; nothing was restored into it, remove it (or restore to a new file) and try again"
        )));
    }
    let mut dest_wal = journal_mode(&dest, None, target)? == "wal";
    if dest_wal && (new_page != old_page || !wal) {
        // Leaving WAL mode works only when no other connection has it open.
        dest_wal = journal_mode(&dest, Some("DELETE"), target)? == "wal";
        if dest_wal && new_page != old_page {
            return Err(Error::new(
                ErrorKind::Engine,
                format!(
                    "{name} is in use by another connection and in WAL mode, and SQLite cannot change its page size ({old_page} bytes) to the archive's ({new_page} bytes) while it is; nothing was restored into it, close the other connections and try again"
                ),
            ));
        }
        if dest_wal {
            tracing::info!(target = %name, "the database is in use, so it stays in WAL mode");
        }
    }
    {
        let backup =
            Backup::new(&src, &mut dest).map_err(|e| sql_error("restore into", &name, e))?;
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            // Giving up drops the backup, which rolls its transaction back.
            cancel.check()?;
            match backup.step(STEP_PAGES) {
                Ok(StepResult::Done) => break,
                Ok(StepResult::More) => {}
                Ok(StepResult::Busy | StepResult::Locked) => {
                    if std::time::Instant::now() >= deadline {
                        return Err(in_use(target));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Ok(_) => return Err(Error::internal("unknown backup step result")),
                Err(e) if is_busy(&e) => return Err(in_use(target)),
                Err(e) => return Err(sql_error("restore into", &name, e)),
            }
        }
    }
    // The restored data is committed: what follows cannot undo it.
    if wal && !dest_wal {
        match journal_mode(&dest, Some("WAL"), target) {
            Ok(mode) if mode == "wal" => {}
            Ok(_) => {
                tracing::info!(target = %name, "the database is in use, so it stays in rollback-journal mode")
            }
            Err(e) => {
                tracing::warn!(error = %e, "the restored database stays in rollback-journal mode")
            }
        }
    }
    dest.close()
        .map_err(|(_, e)| sql_error("close", &name, e))?;
    Ok(())
}

/// Make a finished database at `temp` the database at `target`: sync it,
/// retire the target's WAL, rename it over the target, and sync the
/// directory so the rename itself survives a crash.
pub(crate) fn move_into_place(temp: &Path, target: &Path) -> Result<()> {
    std::fs::File::open(temp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error("sync", temp, e))?;
    retire_target(target)?;
    std::fs::rename(temp, target).map_err(|e| io_error("move into place", target, e))?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Before a replacing rename: fold an existing target's WAL into it (or,
/// failing that, remove it) so that no stale `-wal` file is applied to the
/// new database.
pub(crate) fn retire_target(target: &Path) -> Result<()> {
    if !target.exists() {
        return Ok(());
    }
    let sidecar = |s: &str| {
        let mut p = target.as_os_str().to_owned();
        p.push(s);
        PathBuf::from(p)
    };
    if sidecar("-wal").exists()
        && let Ok(c) = Connection::open(target)
    {
        let _ = c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;");
        let _ = c.close();
    }
    for s in ["-wal", "-shm", "-journal"] {
        let p = sidecar(s);
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| io_error("remove", &p, e))?;
        }
    }
    Ok(())
}

pub(crate) fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    let msg = if e.raw_os_error() == Some(28) {
        format!(
            "could not {what} {}: the disk is full; free some space and try again",
            path.display()
        )
    } else {
        format!("could not {what} {}: {e}", path.display())
    };
    Error::new(ErrorKind::Storage, msg).with_source(e)
}

impl Drop for SqliteRestorer {
    fn drop(&mut self) {
        if !self.finished {
            drop(self.conn.take());
            for f in temp_files(&self.temp) {
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_leftovers_of_dead_runs_in_the_directory_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let names = [
            format!(".t.db.coffer-restore-{dead}.tmp"),
            format!(".t.db.coffer-import-{dead}.tmp-journal"),
            format!(".other.db.coffer-restore-{dead}.tmp-wal"),
            ".t.db.coffer-restore-1.tmp".to_string(), // pid 1 runs
            format!("t.db.coffer-restore-{dead}.tmp"),
            format!(".t.db.coffer-restore-{dead}.tmpx"),
            format!(".t.db.coffer-backup-{dead}.tmp"),
            "t.db".to_string(),
        ];
        for n in &names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        remove_dead_leftovers(dir.path());
        let left: Vec<bool> = names.iter().map(|n| dir.path().join(n).exists()).collect();
        assert_eq!(left, [false, false, false, true, true, true, true, true]);
    }
}
