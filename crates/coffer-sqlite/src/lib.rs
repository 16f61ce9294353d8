//! The SQLite engine of coffer.
//!
//! [`SqliteEngine`] reads one consistent snapshot of a database (a single
//! read transaction, in WAL and rollback-journal mode alike) and restores
//! archives into new database files exactly: every schema object, rowids,
//! each value's storage class, `sqlite_sequence`, `sqlite_stat1`,
//! `user_version` and `application_id`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use coffer::engine::Engine;
//! let engine: Arc<dyn Engine> = Arc::new(coffer_sqlite::SqliteEngine);
//! let snapshot = engine.snapshot("app.db")?;
//! println!("{} tables", snapshot.catalog().tables.len());
//! # Ok::<(), coffer::Error>(())
//! ```
#![warn(missing_docs)]

pub mod apply;
pub mod capture;
pub mod catalog;
mod check;
pub mod foreign;
mod guard;
pub mod importer;
pub mod portable;
pub mod restorer;
pub mod snapshot;

use std::path::Path;

use coffer::engine::{Address, ChangeCapture, Engine, Restorer, Snapshot};
use coffer::manifest::SchemaObject;
use coffer::progress::Cancel;
pub use coffer::{Error, Result};

/// The SQLite engine.
#[derive(Debug, Default, Clone, Copy)]
pub struct SqliteEngine;

/// The SQLite engine, for a [`coffer::engine::Registry`].
pub fn engine() -> std::sync::Arc<dyn Engine> {
    std::sync::Arc::new(SqliteEngine)
}

/// The address of the SQLite database file at `path`, as
/// [`Engine::address`] parses a path.
pub fn address(path: impl AsRef<Path>) -> Result<Address> {
    SqliteEngine.resolve(&path.as_ref().to_string_lossy())
}

impl Engine for SqliteEngine {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn address(&self, text: &str) -> Option<Result<Address>> {
        let path = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("sqlite") => rest,
            Some(_) => return None,
            None => text,
        };
        if path.is_empty() {
            return Some(Err(Error::invalid(
                "the database path is empty; give a file path or sqlite://PATH",
            )));
        }
        let name = Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.to_string());
        Some(Ok(Address::new(
            path,
            path,
            name,
            format!("{path}.backups"),
        )
        .with_file(path)))
    }

    fn address_forms(&self) -> &'static str {
        "a file path or sqlite://PATH"
    }

    fn export_objects(&self, objects: &[SchemaObject], tables: &[&str]) -> Vec<SchemaObject> {
        objects
            .iter()
            .filter(|o| is_shape(o) && tables.contains(&o.table.as_str()))
            .cloned()
            .collect()
    }

    fn shape(&self, objects: &[SchemaObject], table: &str) -> Vec<SchemaObject> {
        let mut shape: Vec<SchemaObject> = objects
            .iter()
            .filter(|o| o.table == table && is_shape(o))
            .cloned()
            .collect();
        shape.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        shape
    }

    fn snapshot(&self, db: &str) -> Result<Box<dyn Snapshot>> {
        Ok(Box::new(snapshot::open_snapshot(db)?))
    }

    fn restorer(&self, target: &str, replace: bool, cancel: Cancel) -> Result<Box<dyn Restorer>> {
        Ok(Box::new(restorer::SqliteRestorer::new(
            target, replace, cancel,
        )?))
    }

    fn capture(&self) -> Option<&dyn ChangeCapture> {
        Some(self)
    }

    fn importer(
        &self,
        target: &str,
        mode: coffer::engine::ImportMode,
        cancel: Cancel,
    ) -> Result<Box<dyn Restorer>> {
        importer::importer(target, mode, cancel)
    }
}

/// Whether a schema object is part of its table's shape: the table's own
/// definition or one of its indexes (views and triggers are not).
fn is_shape(object: &SchemaObject) -> bool {
    matches!(object.kind.as_str(), "table" | "index")
}

/// Quote an identifier for SQL.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQLite error while doing `what` to `thing`, as one sentence.
pub fn sql_error(what: &str, thing: &str, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    if e.sqlite_error_code() == Some(ErrorCode::OperationInterrupted) {
        return Error::interrupted();
    }
    let (kind, hint) = match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => (
            coffer::ErrorKind::Storage,
            "; the disk is full, free some space and try again",
        ),
        Some(ErrorCode::NotADatabase) => (
            coffer::ErrorKind::InvalidInput,
            "; it is not a SQLite database (or it is encrypted)",
        ),
        Some(ErrorCode::CannotOpen) => {
            if let Some(reason) = why_not_openable(Path::new(thing)) {
                return Error::new(
                    coffer::ErrorKind::Engine,
                    format!("could not {what} {thing}: {reason}"),
                )
                .with_source(e);
            }
            (coffer::ErrorKind::Engine, "")
        }
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => (
            coffer::ErrorKind::Engine,
            "; another process holds a lock on it, try again when it is done",
        ),
        _ => (coffer::ErrorKind::Engine, ""),
    };
    Error::new(kind, format!("could not {what} {thing}: {e}{hint}")).with_source(e)
}

/// Why SQLite could not open `path`, when the filesystem can tell: SQLite
/// says only "unable to open database file".
fn why_not_openable(path: &Path) -> Option<&'static str> {
    use std::io::ErrorKind;
    let denied = "permission denied; check the permissions of that path or choose another one";
    let read_only = "the file system is read-only; choose another path";
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let classify = |e: std::io::Error| match e.kind() {
        ErrorKind::PermissionDenied => Some(denied),
        ErrorKind::ReadOnlyFilesystem => Some(read_only),
        ErrorKind::StorageFull => Some("the disk is full; free some space and try again"),
        _ => None,
    };
    if path.exists() {
        return std::fs::OpenOptions::new()
            .read(true)
            .open(path)
            .err()
            .and_then(classify);
    }
    let dir = dir.unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Some("its directory does not exist; create it first");
    }
    // SQLite creates the file and its journal in that directory.
    let probe = dir.join(format!(".coffer-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e) => classify(e),
    }
}
