//! The SQLite engine of coffer (work in progress).
use coffer::engine::{Engine, Restorer, Snapshot};
use coffer::Result;

/// The SQLite engine.
#[derive(Debug, Default, Clone, Copy)]
pub struct SqliteEngine;

impl SqliteEngine {
    /// The database path inside a location string: `sqlite://PATH` or a plain path.
    pub fn path_of(db: &str) -> &str {
        db.strip_prefix("sqlite://").unwrap_or(db)
    }
}

impl Engine for SqliteEngine {
    fn name(&self) -> &'static str {
        "sqlite"
    }
    fn snapshot(&self, _db: &str) -> Result<Box<dyn Snapshot>> {
        todo!()
    }
    fn restorer(&self, _target: &str, _replace: bool) -> Result<Box<dyn Restorer>> {
        todo!()
    }
}
