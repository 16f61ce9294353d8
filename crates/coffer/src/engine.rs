//! The interface between operations and database engines.
//!
//! An [`Engine`] opens a consistent [`Snapshot`] of a database and builds a
//! new database through a [`Restorer`]. Data crosses the boundary as
//! [`DataBatch`]es: an Arrow `RecordBatch` whose columns have the plain
//! logical types of the table's neutral schema, plus the rare values that do
//! not fit those types ([`Misfit`]s), so that restores are exact without
//! degrading every column to strings. Engines never see files; formats never
//! see databases.

use arrow_array::RecordBatch;

use crate::error::Result;
use crate::manifest::{Manifest, SchemaObject, Table};
use crate::progress::Cancel;

/// A value in its engine-native storage class, for values that do not fit
/// their column's logical type.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// A 64-bit integer.
    Integer(i64),
    /// A double.
    Real(f64),
    /// Text, as bytes: it need not be valid UTF-8.
    Text(Vec<u8>),
    /// Bytes.
    Blob(Vec<u8>),
}

/// A value that does not fit its column's logical type. The column holds
/// NULL at that position; the misfit carries the real value.
#[derive(Debug, Clone, PartialEq)]
pub struct Misfit {
    /// Row index within its batch (or its part, in a data file).
    pub row: u64,
    /// Column index in the table's data columns.
    pub column: u32,
    /// The exact value.
    pub value: RawValue,
}

/// Rows of one table: typed columns plus misfits sorted by (row, column).
#[derive(Debug, Clone)]
pub struct DataBatch {
    /// The typed columns, in the order of the table's `columns`.
    pub columns: RecordBatch,
    /// Values that do not fit their column's type, sorted by (row, column).
    pub misfits: Vec<Misfit>,
}

impl DataBatch {
    /// Rows in the batch.
    pub fn num_rows(&self) -> usize {
        self.columns.num_rows()
    }

    /// Approximate bytes of memory the batch holds.
    pub fn memory_size(&self) -> usize {
        self.columns.get_array_memory_size()
            + self
                .misfits
                .iter()
                .map(|m| match &m.value {
                    RawValue::Text(b) | RawValue::Blob(b) => b.len() + 24,
                    _ => 24,
                })
                .sum::<usize>()
    }
}

/// What an engine reads about a database before any data.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Engine version, e.g. `3.50.2`.
    pub engine_version: String,
    /// The database's name for the manifest (no credentials, no directories).
    pub database: String,
    /// Engine-specific settings to restore.
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Every schema object with its native DDL, in creation order.
    pub objects: Vec<SchemaObject>,
    /// Every table with data, with empty `parts` and `rows` 0.
    pub tables: Vec<Table>,
}

/// One consistent read-only view of a database.
///
/// Everything read through one snapshot — the catalog and every table —
/// reflects a single moment, whatever other connections write meanwhile.
pub trait Snapshot: Send {
    /// The schema and settings at the snapshot's moment.
    fn catalog(&self) -> &Catalog;

    /// The number of rows in `table` (for progress totals).
    fn count_rows(&mut self, table: &Table) -> Result<u64>;

    /// Read every row of `table` in storage order, in batches of bounded
    /// memory, handing each to `sink`. An error from `sink` stops the scan.
    fn scan(&mut self, table: &Table, sink: &mut dyn FnMut(DataBatch) -> Result<()>) -> Result<()>;

    /// Another snapshot of exactly the same moment on a separate connection,
    /// so that tables can be scanned in parallel; `Ok(None)` when the engine
    /// cannot promise the same moment right now (callers then scan serially).
    fn fork(&self) -> Result<Option<Box<dyn Snapshot>>> {
        Ok(None)
    }
}

/// Builds a database from an archive, beside its final location.
///
/// Nothing is visible at the target until [`Restorer::finish`] succeeds;
/// dropping a restorer without finishing removes everything it built.
pub trait Restorer: Send {
    /// Create the tables (without secondary indexes or triggers) for the
    /// given tables of `manifest`.
    fn begin(&mut self, manifest: &Manifest, tables: &[&Table]) -> Result<()>;

    /// Insert one batch of rows into `table`.
    fn load(&mut self, table: &Table, batch: &DataBatch) -> Result<()>;

    /// Create indexes, triggers and the remaining objects, check the result,
    /// and move it into place.
    fn finish(self: Box<Self>, manifest: &Manifest, tables: &[&Table]) -> Result<()>;
}

/// A database engine.
pub trait Engine: Send + Sync {
    /// The engine's name as recorded in manifests, e.g. `sqlite`.
    fn name(&self) -> &'static str;

    /// Open a consistent snapshot of the database at `db`.
    fn snapshot(&self, db: &str) -> Result<Box<dyn Snapshot>>;

    /// Prepare to restore into `target`. Fails, naming it, when the target
    /// exists and is not empty unless `replace` is set. Long steps stop
    /// with [`crate::ErrorKind::Interrupted`] once `cancel` is set.
    fn restorer(&self, target: &str, replace: bool, cancel: Cancel) -> Result<Box<dyn Restorer>>;
}
