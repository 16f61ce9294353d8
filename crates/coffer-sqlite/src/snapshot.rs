//! A consistent read-only view of a SQLite database, scanned into batches.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use coffer::datafile::arrow_schema;
use coffer::engine::{Catalog, DataBatch, Misfit, Snapshot, SnapshotPoint, SqliteValue};
use coffer::manifest::{LogicalType, Table};
use coffer::progress::Cancel;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::catalog::{ScanPlan, read_catalog};
use crate::portable;
use crate::{Error, Result, quote, sql_error};

/// Rows per batch at most.
const BATCH_ROWS: usize = 16 * 1024;
/// A batch is handed on once its values reach about this many bytes, so
/// memory stays bounded whatever the row width.
const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// A read transaction on one connection: everything read through it
/// reflects one moment.
pub struct SqliteSnapshot {
    conn: Connection,
    catalog: Catalog,
    plans: Vec<ScanPlan>,
    path: String,
    /// When the read transaction began.
    time: jiff::Timestamp,
}

/// Open `path` read-only and start the read transaction that every later
/// read shares.
pub fn open_snapshot(path: &str) -> Result<SqliteSnapshot> {
    let p = Path::new(path);
    if !p.exists() {
        return Err(Error::not_found(format!(
            "database {path} does not exist; check the path"
        )));
    }
    if p.is_dir() {
        return Err(Error::invalid(format!(
            "{path} is a directory, not a SQLite database file"
        )));
    }
    let conn = open_connection(path)?;
    let time = start_reading(&conn, path)?;
    let database = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string());
    let (catalog, plans) = read_catalog(&conn, &database).map_err(|e| {
        if e.message().contains("not a database") {
            Error::invalid(format!(
                "{path} is not a SQLite database (or it is encrypted); check the path"
            ))
        } else {
            e
        }
    })?;
    Ok(SqliteSnapshot {
        conn,
        catalog,
        plans,
        path: path.to_string(),
        time,
    })
}

/// A read-only connection with a deferred transaction begun: the first read
/// starts the read transaction (a WAL snapshot, or a SHARED lock in
/// rollback-journal mode).
fn open_connection(path: &str) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql_error("open", path, e))?;
    conn.busy_timeout(LOCK_WAIT)
        .map_err(|e| sql_error("open", path, e))?;
    conn.execute_batch("BEGIN")
        .map_err(|e| sql_error("open", path, e))?;
    Ok(conn)
}

/// How long a backup waits for another connection's lock on the database.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Start the read transaction; when another connection's lock holds it
/// back (a writer in rollback-journal mode), say that the backup waits,
/// then wait up to [`LOCK_WAIT`].
fn start_reading(conn: &Connection, path: &str) -> Result<jiff::Timestamp> {
    let first_read = |c: &Connection| {
        c.query_row("SELECT count(*) FROM main.sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
    };
    conn.busy_timeout(std::time::Duration::ZERO)
        .map_err(|e| sql_error("open", path, e))?;
    let first = first_read(conn);
    conn.busy_timeout(LOCK_WAIT)
        .map_err(|e| sql_error("open", path, e))?;
    match first {
        Ok(_) => Ok(jiff::Timestamp::now()),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
            tracing::warn!(
                "waiting for {path}: another connection holds a lock on it (waiting up to {} s)",
                LOCK_WAIT.as_secs()
            );
            first_read(conn)
                .map(|_| jiff::Timestamp::now())
                .map_err(|e| sql_error("read", path, e))
        }
        Err(e) => Err(sql_error("read", path, e)),
    }
}

impl SqliteSnapshot {
    /// A second connection reading the same moment as this one, or `None`.
    ///
    /// In WAL mode the read transaction is opened on this connection's WAL
    /// snapshot (`sqlite3_snapshot_get` / `sqlite3_snapshot_open`). In
    /// rollback-journal mode this connection's SHARED lock already keeps any
    /// writer from committing, so a read transaction begun now sees the same
    /// file; if a writer is waiting for its lock (PENDING), no new reader may
    /// start, and rather than wait on a writer that waits on us, we give up.
    pub(crate) fn same_moment(&self) -> Result<Option<SqliteSnapshot>> {
        let wal = self
            .catalog
            .settings
            .get("journal_mode")
            .and_then(|v| v.as_str())
            == Some("wal");
        let conn = open_connection(&self.path)?;
        let started = if wal {
            use rusqlite::ffi;
            let main = c"main";
            // SAFETY: both handles are live connections used only by this
            // thread; the snapshot object is freed on every path.
            unsafe {
                let mut snap: *mut ffi::sqlite3_snapshot = std::ptr::null_mut();
                let rc = ffi::sqlite3_snapshot_get(self.conn.handle(), main.as_ptr(), &mut snap);
                if rc != ffi::SQLITE_OK {
                    return Ok(None);
                }
                let rc = ffi::sqlite3_snapshot_open(conn.handle(), main.as_ptr(), snap);
                ffi::sqlite3_snapshot_free(snap);
                rc == ffi::SQLITE_OK
            }
        } else {
            conn.busy_timeout(std::time::Duration::ZERO)
                .map_err(|e| sql_error("open", &self.path, e))?;
            conn.query_row("SELECT count(*) FROM main.sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
            .is_ok()
        };
        if !started {
            return Ok(None);
        }
        Ok(Some(SqliteSnapshot {
            conn,
            catalog: self.catalog.clone(),
            plans: self.plans.clone(),
            path: self.path.clone(),
            time: self.time,
        }))
    }
}

enum Builder {
    Int(Int64Builder),
    Float(Float64Builder),
    Text(StringBuilder),
    Bin(BinaryBuilder),
}

impl Builder {
    fn new(t: &LogicalType) -> Builder {
        // SQLite's catalog gives only the four plain types; exports scan
        // with the plain ones (see crate::portable).
        match portable::plain_type(t) {
            LogicalType::Int64 => Builder::Int(Int64Builder::with_capacity(BATCH_ROWS)),
            LogicalType::Float64 => Builder::Float(Float64Builder::with_capacity(BATCH_ROWS)),
            LogicalType::Binary => Builder::Bin(BinaryBuilder::new()),
            // Text, and any type SQLite does not have: every value that is
            // not text then travels as a misfit, exactly.
            _ => Builder::Text(StringBuilder::new()),
        }
    }

    /// Append `v`; returns the bytes added, or the value as a misfit.
    fn append(&mut self, v: ValueRef<'_>) -> std::result::Result<usize, SqliteValue> {
        match (self, v) {
            (Builder::Int(b), ValueRef::Integer(i)) => b.append_value(i),
            (Builder::Float(b), ValueRef::Real(f)) => b.append_value(f),
            (Builder::Text(b), ValueRef::Text(t)) => match std::str::from_utf8(t) {
                Ok(s) => {
                    b.append_value(s);
                    return Ok(t.len());
                }
                Err(_) => {
                    b.append_null();
                    return Err(SqliteValue::Text(t.to_vec()));
                }
            },
            (Builder::Bin(b), ValueRef::Blob(x)) => {
                b.append_value(x);
                return Ok(x.len());
            }
            (b, ValueRef::Null) => b.append_null(),
            (b, other) => {
                b.append_null();
                return Err(match other {
                    ValueRef::Integer(i) => SqliteValue::Integer(i),
                    ValueRef::Real(f) => SqliteValue::Real(f),
                    ValueRef::Text(t) => SqliteValue::Text(t.to_vec()),
                    ValueRef::Blob(x) => SqliteValue::Blob(x.to_vec()),
                    ValueRef::Null => unreachable!("handled above"),
                });
            }
        }
        Ok(8)
    }

    fn append_null(&mut self) {
        match self {
            Builder::Int(b) => b.append_null(),
            Builder::Float(b) => b.append_null(),
            Builder::Text(b) => b.append_null(),
            Builder::Bin(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Bin(b) => Arc::new(b.finish()),
        }
    }
}

impl Snapshot for SqliteSnapshot {
    fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn point(&self) -> SnapshotPoint {
        SnapshotPoint {
            time: self.time,
            position: None,
        }
    }

    fn fork(&self) -> Result<Option<Box<dyn Snapshot>>> {
        Ok(self
            .same_moment()?
            .map(|s| Box::new(s) as Box<dyn Snapshot>))
    }

    fn count_rows(&mut self, table: &Table) -> Result<u64> {
        self.conn
            .query_row(
                &format!("SELECT count(*) FROM main.{}", quote(&table.name)),
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| sql_error("count the rows of", &table.name, e))
    }

    fn scan(&mut self, table: &Table, sink: &mut dyn FnMut(DataBatch) -> Result<()>) -> Result<()> {
        let index = self
            .catalog
            .tables
            .iter()
            .position(|t| t.name == table.name)
            .ok_or_else(|| {
                Error::invalid(format!("table '{}' is not in {}", table.name, self.path))
            })?;
        let plan = &self.plans[index];
        if let Some(refusal) = &plan.refusal {
            return Err(Error::invalid(refusal.clone()));
        }
        let sql = format!(
            "SELECT {} FROM main.{}",
            plan.exprs.join(", "),
            quote(&table.name)
        );
        // SQLite stores the export types `date`, `timestamp` and `decimal`
        // as text and numbers: read those, convert them to the table's.
        if portable::has_portable_columns(table) {
            let plain = portable::plain_table(table);
            return self.scan_sql(&plain, &sql, &mut |batch| {
                sink(portable::to_portable(batch, table)?)
            });
        }
        self.scan_sql(table, &sql, sink)
    }

    fn export_table(&mut self, table: &Table, cancel: &Cancel) -> Result<Table> {
        let Some(mut probe) = portable::TypeProbe::new(table) else {
            return Ok(table.clone());
        };
        let mut settled = false;
        let scanned = self.scan(table, &mut |batch| {
            cancel.check()?;
            probe.feed(&batch);
            if probe.settled() {
                // Nothing left to learn: stop the scan.
                settled = true;
                return Err(Error::internal("the column types are settled"));
            }
            Ok(())
        });
        match scanned {
            Err(e) if !settled => Err(e),
            _ => Ok(probe.refine(table)),
        }
    }
}

impl SqliteSnapshot {
    /// The connection whose read transaction is the snapshot.
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// How `table` of the catalog is read, if it is in the catalog.
    pub(crate) fn plan(&self, table: &str) -> Option<&ScanPlan> {
        let index = self.catalog.tables.iter().position(|t| t.name == table)?;
        self.plans.get(index)
    }

    /// Run `sql`, whose result columns are `table`'s data columns in order,
    /// and hand the rows to `sink` in batches.
    pub(crate) fn scan_sql(
        &mut self,
        table: &Table,
        sql: &str,
        sink: &mut dyn FnMut(DataBatch) -> Result<()>,
    ) -> Result<()> {
        let read_err = |e| sql_error("read table", &table.name, e);
        let mut stmt = self.conn.prepare(sql).map_err(read_err)?;
        let schema = arrow_schema(table);
        let ncols = table.columns.len();
        let mut builders: Vec<Builder> = table
            .columns
            .iter()
            .map(|c| Builder::new(&c.logical_type))
            .collect();
        let mut misfits = Vec::new();
        let mut rows_in_batch = 0usize;
        let mut bytes = 0usize;
        let mut rows = stmt.query([]).map_err(read_err)?;
        let mut flush = |builders: &mut Vec<Builder>, misfits: &mut Vec<Misfit>| -> Result<()> {
            let columns: Vec<ArrayRef> = builders.iter_mut().map(Builder::finish).collect();
            let batch = RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| Error::internal(format!("could not build a batch: {e}")))?;
            sink(DataBatch {
                columns: batch,
                misfits: std::mem::take(misfits),
            })
        };
        while let Some(row) = rows.next().map_err(read_err)? {
            for (i, b) in builders.iter_mut().enumerate().take(ncols) {
                let v = row.get_ref(i).map_err(read_err)?;
                match b.append(v) {
                    Ok(n) => bytes += n,
                    Err(value) => {
                        bytes += match &value {
                            SqliteValue::Text(t) | SqliteValue::Blob(t) => t.len(),
                            _ => 8,
                        };
                        misfits.push(Misfit {
                            row: rows_in_batch as u64,
                            column: i as u32,
                            value: value.into(),
                        });
                    }
                }
            }
            rows_in_batch += 1;
            if rows_in_batch >= BATCH_ROWS || bytes >= BATCH_BYTES {
                flush(&mut builders, &mut misfits)?;
                rows_in_batch = 0;
                bytes = 0;
            }
        }
        if rows_in_batch > 0 {
            flush(&mut builders, &mut misfits)?;
        }
        Ok(())
    }
}
