//! `export`: a portable snapshot of chosen tables, for other tools and other
//! databases.
//!
//! An export is a [`backup`](super::backup::backup) with
//! [`ArchiveKind::Export`]: the same consistent snapshot, pipeline and
//! commit protocol, with these differences (all decided here, from the
//! snapshot's own catalog, before any data is written):
//!
//! * by default every table of the database except the engine's own
//!   (SQLite's `sqlite_sequence` and `sqlite_stat*`); `tables` names them
//!   instead, and `exclude` drops the tables whose whole name a pattern
//!   matches;
//! * the manifest's `objects` are only the exported tables and their
//!   indexes (no views or triggers: an import creates tables and indexes);
//! * columns take the types the engine gives an export of the table
//!   ([`Snapshot::export_table`]: SQLite gives a declared date, timestamp
//!   or decimal that type when every value converts losslessly, which
//!   costs it a first pass over those tables);
//! * the data files may be CSV ([`crate::datafile::csv`]);
//! * a table's hidden key column ([`Table::hidden_key`], SQLite's rowid of
//!   a table without an `INTEGER PRIMARY KEY`) is left out, so the files
//!   look like the source table, unless `keep_hidden_key` asks for it.

use std::sync::Arc;

use arrow_array::RecordBatch;

use crate::datafile::WriteOptions;
use crate::engine::{Address, Catalog, DataBatch, Engine, Snapshot};
use crate::error::{Error, Result};
use crate::manifest::{ArchiveKind, DataFormat, SchemaObject, Table, TableKind};
use crate::ops::backup::{ArchiveOptions, BackupReport, Plan, write_archive};
use crate::progress::Run;
use crate::store::Store;

/// Options of an export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Part size, compression and format (Parquet or CSV) of the data files.
    pub write: WriteOptions,
    /// Tables to export; `None` for all but the engine's own.
    pub tables: Option<Vec<String>>,
    /// Leave out the tables whose whole name one of these matches.
    pub exclude: Vec<regex::Regex>,
    /// Only the tables in these schemas (`--schema`), where the engine has
    /// schemas; empty for all.
    pub schemas: Vec<String>,
    /// Parallel encoders (threads turning batches into data files).
    pub encoders: usize,
    /// Parallel table scanners, when the engine can read one moment on
    /// several connections (see [`crate::engine::Snapshot::fork`]).
    pub scanners: usize,
    /// Keep each table's hidden key column ([`Table::hidden_key`], e.g.
    /// SQLite's rowid of a table without an `INTEGER PRIMARY KEY`), so that
    /// an import keeps the keys.
    pub keep_hidden_key: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            write: WriteOptions::default(),
            tables: None,
            exclude: Vec::new(),
            schemas: Vec::new(),
            encoders: 2,
            scanners: 2,
            keep_hidden_key: false,
        }
    }
}

/// Export `db` with `engine` into a new archive at `dest`.
pub async fn export(
    engine: Arc<dyn Engine>,
    db: &Address,
    dest: &Store,
    options: ExportOptions,
    run: impl Into<Run>,
) -> Result<BackupReport> {
    write_archive(engine, db, dest, ArchiveOptions::Export(options), run).await
}

/// Whether `pattern` (a regular expression) matches the whole of `name`,
/// as `--exclude` does: `tmp_.*` matches `tmp_x` but not `my_tmp_x`, and
/// `.` matches any character, a newline too.
pub fn excludes(pattern: &regex::Regex, name: &str) -> bool {
    match regex::Regex::new(&format!("^(?s:{})$", pattern.as_str())) {
        Ok(anchored) => anchored.is_match(name),
        Err(_) => pattern.is_match(name),
    }
}

/// The tables and schema objects an archive records, from the tables the
/// backup selected (all, or those named): applies `exclude`, and for an
/// export drops the engine's own tables unless named, keeps only the
/// exported tables' own objects and settles the portable column types.
pub(crate) fn prepare(
    engine: &dyn Engine,
    snapshot: &mut dyn Snapshot,
    catalog: &Catalog,
    mut tables: Vec<Table>,
    options: &Plan,
    db: &str,
) -> Result<(Vec<Table>, Vec<SchemaObject>)> {
    let export = options.kind == ArchiveKind::Export;
    if options.write.data_format == DataFormat::Csv && !export {
        return Err(Error::invalid(
            "CSV data files are for exports only; use `coffer export --format csv`",
        ));
    }
    if export && options.tables.is_none() {
        tables.retain(|t| t.kind != TableKind::Internal);
    }
    for pattern in &options.exclude {
        if let Some(named) = options
            .tables
            .iter()
            .flatten()
            .find(|n| excludes(pattern, n))
        {
            return Err(Error::invalid(format!(
                "table '{named}' is both named with --table and excluded by --exclude '{pattern}'; drop one of the two"
            )));
        }
    }
    tables.retain(|t| !options.exclude.iter().any(|p| excludes(p, &t.name)));
    if !options.schemas.is_empty() {
        if engine.schema_of("x").is_none() {
            return Err(Error::invalid(format!(
                "{db} is a {} database, which has no schemas; choose tables with --table or --exclude",
                engine.name()
            )));
        }
        tables.retain(|t| {
            engine
                .schema_of(&t.name)
                .is_some_and(|s| options.schemas.contains(&s))
        });
        if tables.is_empty() {
            return Err(Error::invalid(format!(
                "{db} has no table in the schema(s) {}; check the names",
                options.schemas.join(", ")
            )));
        }
    }
    if !export {
        return Ok((tables, catalog.objects.clone()));
    }
    if tables.is_empty() {
        return Err(Error::invalid(format!(
            "there is no table to export from {db}: it has none, or --exclude leaves none"
        )));
    }
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let objects = engine.export_objects(&catalog.objects, &names);
    let mut refined = Vec::with_capacity(tables.len());
    for table in tables {
        refined.push(snapshot.export_table(&table, &options.cancel)?);
    }
    Ok((refined, objects))
}

/// `table` without its hidden key column, and that column's index, when
/// it has one.
pub(crate) fn without_hidden_key(table: &Table) -> Option<(Table, usize)> {
    let name = table.hidden_key.as_ref()?;
    let index = table.columns.iter().position(|c| &c.name == name)?;
    let mut t = table.clone();
    t.columns.remove(index);
    t.hidden_key = None;
    Some((t, index))
}

/// `batch` without its column `index` (and that column's misfits).
pub(crate) fn drop_column(batch: DataBatch, index: usize) -> Result<DataBatch> {
    let mut columns = batch.columns.columns().to_vec();
    let mut fields: Vec<_> = batch.columns.schema().fields().iter().cloned().collect();
    columns.remove(index);
    fields.remove(index);
    let schema = Arc::new(arrow_schema::Schema::new(fields));
    let columns = RecordBatch::try_new(schema, columns)
        .map_err(|e| Error::internal(format!("could not build a batch: {e}")))?;
    let misfits = batch
        .misfits
        .into_iter()
        .filter(|m| m.column as usize != index)
        .map(|mut m| {
            if m.column as usize > index {
                m.column -= 1;
            }
            m
        })
        .collect();
    Ok(DataBatch { columns, misfits })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusion_matches_whole_names() {
        let re = |s: &str| regex::Regex::new(s).unwrap();
        assert!(excludes(&re("tmp_.*"), "tmp_x"));
        assert!(!excludes(&re("tmp_.*"), "my_tmp_x"));
        assert!(excludes(&re("a|ab"), "ab"));
        assert!(!excludes(&re("log"), "catalog"));
        assert!(excludes(&re("sqlite_.*"), "sqlite_stat1"));
        assert!(excludes(&re(".*"), "line\nbreak"));
    }
}
