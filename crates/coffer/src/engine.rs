//! The interface between operations and database engines.
//!
//! An [`Engine`] opens a consistent [`Snapshot`] of a database and builds a
//! new database through a [`Restorer`]. Data crosses the boundary as
//! [`DataBatch`]es: an Arrow `RecordBatch` whose columns have the plain
//! logical types of the table's neutral schema, plus the rare values that do
//! not fit those types ([`Misfit`]s), so that restores are exact without
//! degrading every column to strings. Engines never see files; formats never
//! see databases.

use std::sync::Arc;

use arrow_array::RecordBatch;

use crate::error::Result;
use crate::manifest::{Manifest, SchemaObject, Table};
use crate::progress::{Cancel, Progress};

/// A value that does not fit its column's logical type, in the value
/// class of the engine it came from: the misfit side file records the
/// engine and the class (see [`crate::datafile`]), so that every engine's
/// awkward values travel exactly and a restore into another engine knows
/// what it is given.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// A value in one of SQLite's storage classes.
    Sqlite(SqliteValue),
    /// A PostgreSQL value that its column's logical type cannot hold.
    Postgres(PostgresValue),
}

/// A value in one of SQLite's four storage classes.
#[derive(Debug, Clone, PartialEq)]
pub enum SqliteValue {
    /// A 64-bit integer.
    Integer(i64),
    /// A double.
    Real(f64),
    /// Text, as bytes: it need not be valid UTF-8.
    Text(Vec<u8>),
    /// Bytes.
    Blob(Vec<u8>),
}

/// A PostgreSQL value that its column's logical type cannot hold. Which
/// type it is a value of is the column's: `Infinity` in a `date` column is
/// the date `infinity`, in a `decimal` column the numeric `Infinity`.
#[derive(Debug, Clone, PartialEq)]
pub enum PostgresValue {
    /// `NaN` of `numeric`.
    NaN,
    /// `infinity` of `numeric`, `date`, `timestamp` or `timestamptz`.
    Infinity,
    /// `-infinity` of `numeric`, `date`, `timestamp` or `timestamptz`.
    NegInfinity,
    /// Any other value as PostgreSQL's text output of it (what `COPY ... TO`
    /// writes), which its input function reads back as the same value.
    Text(Vec<u8>),
}

impl From<SqliteValue> for RawValue {
    fn from(v: SqliteValue) -> RawValue {
        RawValue::Sqlite(v)
    }
}

impl From<PostgresValue> for RawValue {
    fn from(v: PostgresValue) -> RawValue {
        RawValue::Postgres(v)
    }
}

impl RawValue {
    /// The value as a SQLite value, if it is one.
    pub fn as_sqlite(&self) -> Option<&SqliteValue> {
        match self {
            RawValue::Sqlite(v) => Some(v),
            RawValue::Postgres(_) => None,
        }
    }

    /// The name of the engine whose value this is, as manifests name
    /// engines (`sqlite`, `postgres`).
    pub fn engine(&self) -> &'static str {
        match self {
            RawValue::Sqlite(_) => "sqlite",
            RawValue::Postgres(_) => "postgres",
        }
    }

    /// Bytes the value holds on the heap (for memory accounting).
    pub fn heap_size(&self) -> usize {
        match self {
            RawValue::Sqlite(SqliteValue::Text(b) | SqliteValue::Blob(b))
            | RawValue::Postgres(PostgresValue::Text(b)) => b.len(),
            _ => 0,
        }
    }
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
                .map(|m| m.value.heap_size() + 24)
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
    /// Tables in the schema whose rows the engine cannot read, each with
    /// why as a phrase ("a virtual table of the module X, which coffer does
    /// not have"): a backup keeps their definitions, and naming one for an
    /// export says why it cannot be.
    pub unreadable: std::collections::BTreeMap<String, String>,
    /// Why a backup of this database would not keep all of it, as one
    /// sentence naming what and saying what to do (PostgreSQL large
    /// objects, which coffer does not copy): a backup refuses; an export of
    /// chosen tables is unaffected.
    pub backup_refusal: Option<String>,
}

/// The moment a snapshot shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPoint {
    /// When the snapshot's transaction began to see the database: every
    /// change committed before is in it, none committed after.
    pub time: jiff::Timestamp,
    /// The engine's own position of that moment, where it has one (a
    /// PostgreSQL WAL location), recorded in the manifest beside the time.
    pub position: Option<String>,
}

/// One consistent read-only view of a database.
///
/// Everything read through one snapshot — the catalog and every table —
/// reflects a single moment, whatever other connections write meanwhile.
pub trait Snapshot: Send {
    /// The schema and settings at the snapshot's moment.
    fn catalog(&self) -> &Catalog;

    /// The snapshot's moment: a backup of it records this as its backup
    /// point, never the clock after reading.
    fn point(&self) -> SnapshotPoint;

    /// The number of rows in `table` (for progress totals).
    fn count_rows(&mut self, table: &Table) -> Result<u64>;

    /// Read every row of `table` in storage order, in batches of bounded
    /// memory, handing each to `sink`. An error from `sink` stops the scan.
    /// The batches have the column types of the `table` passed: one of the
    /// catalog's, or what [`Snapshot::export_table`] made of it.
    fn scan(&mut self, table: &Table, sink: &mut dyn FnMut(DataBatch) -> Result<()>) -> Result<()>;

    /// `table` (one of the catalog's) with the column types an export of
    /// it has. By default the catalog's; an engine whose catalog types are
    /// plainer than its values (SQLite keeps dates as text) may read the
    /// table to find finer ones that every value converts to exactly.
    /// Long reads stop with [`crate::ErrorKind::Interrupted`] once
    /// `cancel` is set.
    fn export_table(&mut self, table: &Table, cancel: &Cancel) -> Result<Table> {
        let _ = cancel;
        Ok(table.clone())
    }

    /// Into how many pieces `table` is read when `wanted` scanners could
    /// read it at once: 1 (the default) when the engine does not split it.
    /// The pieces, read by [`Snapshot::scan_piece`] on any snapshot of the
    /// same moment and put together in order, hold every row once.
    fn pieces(&mut self, table: &Table, wanted: usize) -> Result<usize> {
        let _ = (table, wanted);
        Ok(1)
    }

    /// Read piece `piece` of the `pieces` that [`Snapshot::pieces`] gave
    /// for `table`, as [`Snapshot::scan`] reads the whole.
    fn scan_piece(
        &mut self,
        table: &Table,
        piece: usize,
        pieces: usize,
        sink: &mut dyn FnMut(DataBatch) -> Result<()>,
    ) -> Result<()> {
        if (piece, pieces) != (0, 1) {
            return Err(crate::Error::internal(format!(
                "the engine was asked for piece {piece} of {pieces} of table '{}' but does not split tables",
                table.name
            )));
        }
        self.scan(table, sink)
    }

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

    /// Where [`Restorer::finish`] reports its steps (building indexes,
    /// checking), each as a phase of its own, so a long finish never looks
    /// hung. The caller ends the last phase. By default nothing is reported
    /// beyond the phase the caller began.
    fn set_progress(&mut self, _progress: Arc<dyn Progress>) {}

    /// Where the archive's database needs collation sequences that its
    /// application defines and this engine does not have, restore what
    /// does not need them instead of refusing: [`Restorer::begin`] then
    /// leaves out the objects that need them (listed by
    /// [`Restorer::skipped`]). Call before `begin`; by default a no-op.
    fn skip_missing_collations(&mut self) {}

    /// The schema objects that [`Restorer::begin`] decided to leave out,
    /// each with why; the rows of a table left out are not loaded.
    fn skipped(&self) -> Vec<Skipped> {
        Vec::new()
    }

    /// Store a value that the target cannot hold exactly in its documented
    /// nearest form instead of refusing the import (FORMAT.md, "Coercions"),
    /// counting each in [`Restorer::coerced`]. Call before `begin`; a no-op
    /// for engines that coerce nothing.
    fn coerce(&mut self) {}

    /// How many values were coerced so far.
    fn coerced(&self) -> u64 {
        0
    }

    /// Leave out what makes objects owned by the roles of the source
    /// (`--no-owner`): they are owned by whoever restores. Call before
    /// `begin`; a no-op for engines without owners.
    fn no_owner(&mut self) {}

    /// Leave out the source's grants of privileges (`--no-privileges`).
    /// Call before `begin`; a no-op for engines without privileges.
    fn no_privileges(&mut self) {}
}

/// A schema object that a restore left out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// `table`, `index`, `trigger`, ... (the engine's word for it).
    pub kind: String,
    /// Whether it is a table whose rows are therefore not loaded.
    #[serde(skip)]
    pub holds_rows: bool,
    /// Its name.
    pub name: String,
    /// Why, as a phrase ("needs the collation 'rev'").
    pub reason: String,
}

/// A database address as its engine understood it.
///
/// The engine parses what the user wrote (a path, `sqlite://PATH`, a
/// connection URL) into the location it opens, which may carry credentials
/// and is never shown, and the parts the operations need: a display form
/// free of credentials for messages and logs, the database's name, and the
/// default repository of its backup collections. `Debug` and `Display`
/// print only the display form.
#[derive(Clone, PartialEq, Eq)]
pub struct Address {
    location: String,
    display: String,
    database: String,
    default_repository: String,
    file: Option<std::path::PathBuf>,
}

impl Address {
    /// An address: `location` is what the engine's methods are handed (it
    /// may hold a password); `display` is shown in messages (it must not);
    /// `database` is the database's name as a catalog would record it;
    /// `default_repository` is where its collections back up by default.
    pub fn new(
        location: impl Into<String>,
        display: impl Into<String>,
        database: impl Into<String>,
        default_repository: impl Into<String>,
    ) -> Address {
        Address {
            location: location.into(),
            display: display.into(),
            database: database.into(),
            default_repository: default_repository.into(),
            file: None,
        }
    }

    /// The same address, naming the local file that holds the database
    /// (restores and imports refuse a target inside the archive they read).
    pub fn with_file(mut self, file: impl Into<std::path::PathBuf>) -> Address {
        self.file = Some(file.into());
        self
    }

    /// What the engine opens; may hold credentials: never print it.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The address as messages and logs show it, without credentials.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The database's name (a file name, a database name), for manifests.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Where the database's backup collections go unless told otherwise.
    pub fn default_repository(&self) -> &str {
        &self.default_repository
    }

    /// The local file that holds the database, if one does (symbolic links
    /// not yet followed).
    pub fn file(&self) -> Option<&std::path::Path> {
        self.file.as_deref()
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Address").field(&self.display).finish()
    }
}

/// The engines a program knows, choosing one by database address.
#[derive(Clone, Default)]
pub struct Registry {
    engines: Vec<Arc<dyn Engine>>,
}

impl Registry {
    /// A registry without engines.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The registry with `engine` added; earlier engines are asked first.
    pub fn with(mut self, engine: Arc<dyn Engine>) -> Registry {
        self.engines.push(engine);
        self
    }

    /// The engines, in the order they are asked.
    pub fn engines(&self) -> &[Arc<dyn Engine>] {
        &self.engines
    }

    /// The engine recorded in manifests as `name`.
    pub fn by_name(&self, name: &str) -> Option<Arc<dyn Engine>> {
        self.engines.iter().find(|e| e.name() == name).cloned()
    }

    /// The engine that claims the database address `text`, with the address
    /// as it parsed it. Fails with a sentence, never repeating more of an
    /// unknown address than its scheme (the rest may hold a password).
    pub fn resolve(&self, text: &str) -> Result<(Arc<dyn Engine>, Address)> {
        for engine in &self.engines {
            if let Some(address) = engine.address(text) {
                return Ok((engine.clone(), address?));
            }
        }
        let forms: Vec<String> = self
            .engines
            .iter()
            .map(|e| e.address_forms().to_string())
            .collect();
        let what = match text.split_once("://") {
            Some((scheme, _)) => format!("'{}://...'", scheme.escape_debug()),
            None => "this address".to_string(),
        };
        Err(crate::Error::invalid(format!(
            "unsupported database {what}: this coffer supports {}; give {}",
            self.engines
                .iter()
                .map(|e| e.name())
                .collect::<Vec<_>>()
                .join(", "),
            forms.join(", or ")
        )))
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.engines.iter().map(|e| e.name()))
            .finish()
    }
}

/// A database engine.
///
/// Its methods take the [`Address::location`] of an address the engine
/// itself parsed ([`Engine::address`]).
pub trait Engine: Send + Sync {
    /// The engine's name as recorded in manifests, e.g. `sqlite`.
    fn name(&self) -> &'static str;

    /// Parse a database address the user wrote: `None` when it is not one
    /// of this engine's (another engine may claim it), an error naming what
    /// is wrong when it is one but malformed.
    fn address(&self, text: &str) -> Option<Result<Address>>;

    /// The address forms this engine takes, for messages (`a file path or
    /// sqlite://PATH`).
    fn address_forms(&self) -> &'static str;

    /// Whether the engine can restore the backups it takes. One that
    /// cannot yet (an engine still being built) only exports: `backup`
    /// refuses rather than write an archive nothing can restore.
    fn restores(&self) -> bool {
        true
    }

    /// [`Engine::address`] for an address that must be this engine's.
    fn resolve(&self, text: &str) -> Result<Address> {
        self.address(text).unwrap_or_else(|| {
            Err(crate::Error::invalid(format!(
                "that is not a {} database address; give {}",
                self.name(),
                self.address_forms()
            )))
        })
    }

    /// Open a consistent snapshot of the database at `db`.
    fn snapshot(&self, db: &str) -> Result<Box<dyn Snapshot>>;

    /// Prepare to restore into `target`. Fails, naming it, when the target
    /// exists and is not empty unless `replace` is set. Long steps stop
    /// with [`crate::ErrorKind::Interrupted`] once `cancel` is set.
    fn restorer(&self, target: &str, replace: bool, cancel: Cancel) -> Result<Box<dyn Restorer>>;

    /// Of the schema objects `objects` (a catalog's or a manifest's), those
    /// that an export of `tables` carries, in creation order: what an import
    /// of the export creates with the tables (their definitions and
    /// indexes), never objects that reach beyond them (views, triggers).
    fn export_objects(&self, objects: &[SchemaObject], tables: &[&str]) -> Vec<SchemaObject>;

    /// The schema objects that make up the shape of `table`: those whose
    /// change makes its change log mean something else (its definition, and
    /// its indexes, since a unique index decides what an upsert replaces).
    /// Ordered so that equal shapes compare equal; an incremental backup of
    /// a collection refuses when a table's shape differs from its full
    /// backup's.
    fn shape(&self, objects: &[SchemaObject], table: &str) -> Vec<SchemaObject>;

    /// The schema (namespace) that the archive table `table` belongs to,
    /// for `--schema`; `None` for engines without schemas (the default).
    fn schema_of(&self, table: &str) -> Option<String> {
        let _ = table;
        None
    }

    /// Change capture for backup collections, when the engine supports it.
    fn capture(&self) -> Option<&dyn ChangeCapture> {
        None
    }

    /// Prepare to import tables into the database at `target`, which is
    /// created when absent. The returned [`Restorer`] is used as for a
    /// restore, with these promises:
    ///
    /// * [`Restorer::begin`] checks every table against `mode` (and, for
    ///   an existing table, that its columns can take the rows) and fails,
    ///   naming the first conflict, before anything is written;
    /// * [`Restorer::load`] takes batches in the manifest's column types,
    ///   `date`, `timestamp` and `decimal(P,S)` of exports included;
    /// * the tables are created from the manifest's native DDL when the
    ///   archive comes from this engine, otherwise from the neutral schema
    ///   (columns, logical types, nullability, primary key);
    /// * nothing changes at the target until [`Restorer::finish`] succeeds;
    ///   dropping the importer unfinished leaves the target as it was.
    fn importer(
        &self,
        target: &str,
        mode: ImportMode,
        cancel: Cancel,
    ) -> Result<Box<dyn Restorer>> {
        let _ = (target, mode, cancel);
        Err(crate::Error::invalid(format!(
            "the {} engine cannot import archives yet",
            self.name()
        )))
    }
}

/// What an import does with a table that already exists in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportMode {
    /// Fail, naming the table, before anything is written (the default).
    #[default]
    Create,
    /// Add the archive's rows to the existing table.
    Append,
    /// Drop the existing table (with its indexes and triggers) and create
    /// it anew from the archive.
    Replace,
}

/// A backup collection as a database records it.
///
/// The database side of a collection: which tables are captured and where
/// the last backup left the change log. The repository keeps the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionRecord {
    /// The collection's name.
    pub name: String,
    /// A random identity shared with the repository's `collection.json`,
    /// so that two databases never feed one collection by accident.
    pub id: String,
    /// The captured tables, in the order given at creation.
    pub tables: Vec<String>,
    /// The repository location as given at creation; `None` for the default
    /// directory beside the database.
    pub repo: Option<String>,
    /// When the collection was created (RFC 3339, UTC).
    pub created_at: String,
    /// The newest committed backup whose log entries have been removed;
    /// `None` before the first backup, or after the database was restored
    /// from a whole-database backup (the log no longer continues from it).
    pub last_backup: Option<String>,
    /// A backup that was started but not yet settled: its id and its
    /// [`ChangeSnapshot::horizon`]. Left by a run that stopped between
    /// committing the manifest and trimming the log, or before committing
    /// at all.
    pub pending: Option<(String, String)>,
}

/// Change capture: recording which rows of a collection's tables change, so
/// that an incremental backup costs in proportion to the changes.
///
/// The contract every engine keeps:
///
/// * every write to a captured table records the changed row's key (both
///   keys when a key changes);
/// * a snapshot opened by [`ChangeCapture::begin`] has a *horizon*
///   ([`ChangeSnapshot::horizon`]): an engine's own description of exactly
///   which log entries that snapshot sees (SQLite: an epoch, every entry
///   tagged with it or an earlier one; PostgreSQL: the snapshot itself,
///   every entry written by a transaction visible in it);
/// * log entries are removed only by [`ChangeCapture::trim`], which the
///   operations call once a backup's manifest is committed, and it removes
///   only entries within the backup's horizon: a write the snapshot did not
///   see is kept for the next backup.
pub trait ChangeCapture: Send + Sync {
    /// Record `collection` in the database and install change capture for
    /// its tables, all in one transaction: on error nothing is installed.
    /// Fails, naming it, for an unknown table, one that cannot be captured,
    /// or one that already belongs to a collection.
    fn install(&self, db: &str, collection: &CollectionRecord) -> Result<()>;

    /// The collections recorded in the database at `db` (none when the
    /// database has never had one).
    fn collections(&self, db: &str) -> Result<Vec<CollectionRecord>>;

    /// Remove the collection's change capture (triggers, logs) and its
    /// record; `false` when the database does not record it.
    fn remove(&self, db: &str, name: &str) -> Result<bool>;

    /// Start a backup of collection `name`: (for a `full` backup, first
    /// re-install capture for tables that lost it) open a snapshot of the
    /// tables and their logs, with its horizon (SQLite first advances its
    /// epoch, so that the snapshot sees every change logged before).
    fn begin(&self, db: &str, name: &str, full: bool) -> Result<Box<dyn ChangeSnapshot>>;

    /// Record that backup `id`, of the snapshot whose horizon is
    /// `horizon`, is about to be committed (or clear that record with
    /// `None`).
    fn set_pending(&self, db: &str, name: &str, pending: Option<(&str, &str)>) -> Result<()>;

    /// After backup `id` is committed: remove the log entries within
    /// `horizon` (and no others), record `id` as the last backup, clear the
    /// pending record.
    fn trim(&self, db: &str, name: &str, id: &str, horizon: &str) -> Result<()>;

    /// Prepare to restore a chain of backups into `target`. Tables are added
    /// to an existing database; a table that exists there is an error unless
    /// `replace`. Nothing changes at the target until
    /// [`ChainRestorer::finish`] succeeds.
    fn chain_restorer(
        &self,
        target: &str,
        replace: bool,
        cancel: Cancel,
    ) -> Result<Box<dyn ChainRestorer>>;
}

/// One consistent view of a collection's tables and their change logs,
/// opened by [`ChangeCapture::begin`]. The [`Snapshot`] part reads whole
/// tables (for a full backup); the rest reads the changes.
pub trait ChangeSnapshot: Snapshot {
    /// Which log entries this snapshot sees, in the engine's own terms
    /// (recorded with a pending backup, handed back to
    /// [`ChangeCapture::trim`]); a committed backup of it may trim them.
    fn horizon(&self) -> String;

    /// The collection as the database recorded it at the snapshot.
    fn record(&self) -> &CollectionRecord;

    /// Another view of exactly the same moment and change logs on a
    /// separate connection, so that tables can be read in parallel, as
    /// [`Snapshot::fork`]; `Ok(None)` when the engine cannot promise that.
    fn fork_changes(&self) -> Result<Option<Box<dyn ChangeSnapshot>>> {
        Ok(None)
    }

    /// Why the log cannot be trusted for `table` (its capture is missing or
    /// altered, e.g. the table was re-created), if it cannot.
    fn capture_problem(&self, table: &Table) -> Option<String>;

    /// The key of `table` as a table of its own: the columns that deleted
    /// keys are written with (the rowid, or the primary-key columns).
    fn key_table(&self, table: &Table) -> Table;

    /// The number of keys logged for `table` (for progress).
    fn count_changes(&mut self, table: &Table) -> Result<u64>;

    /// The current rows of the logged keys that still exist, in key order.
    fn scan_upserts(
        &mut self,
        table: &Table,
        sink: &mut dyn FnMut(DataBatch) -> Result<()>,
    ) -> Result<()>;

    /// The logged keys whose rows no longer exist, in key order, as rows of
    /// [`ChangeSnapshot::key_table`].
    fn scan_deletes(
        &mut self,
        table: &Table,
        sink: &mut dyn FnMut(DataBatch) -> Result<()>,
    ) -> Result<()>;
}

/// Builds tables from a chain of backups: a full backup, then incrementals
/// in order. Dropping it unfinished leaves the target as it was.
pub trait ChainRestorer: Send {
    /// Create `tables` as the chain's `full` manifest describes them,
    /// without secondary indexes or triggers.
    fn begin(&mut self, full: &Manifest, tables: &[&Table]) -> Result<()>;

    /// Insert rows of the full backup.
    fn load(&mut self, table: &Table, batch: &DataBatch) -> Result<()>;

    /// The full backup is loaded: create the indexes (changes are applied
    /// with every unique constraint in force, as in the source).
    fn begin_changes(&mut self, full: &Manifest, tables: &[&Table]) -> Result<()>;

    /// Delete the rows whose keys (rows of `keys`) are in `batch`.
    fn delete(&mut self, table: &Table, keys: &Table, batch: &DataBatch) -> Result<()>;

    /// Insert or replace rows by key.
    fn upsert(&mut self, table: &Table, batch: &DataBatch) -> Result<()>;

    /// The deletes and upserts of `table` in one incremental are all
    /// given: an engine that holds upserts back (to apply them together,
    /// so that no unique constraint sees half of a swap of values between
    /// rows) applies them now.
    fn end_changes(&mut self, _table: &Table) -> Result<()> {
        Ok(())
    }

    /// Create the triggers and remaining objects as of the restored `point`,
    /// check the result and make it visible at the target.
    fn finish(self: Box<Self>, point: &Manifest, tables: &[&Table]) -> Result<()>;

    /// Where [`ChainRestorer::finish`] reports its steps, as for
    /// [`Restorer::set_progress`].
    fn set_progress(&mut self, _progress: Arc<dyn Progress>) {}
}
