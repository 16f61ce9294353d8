//! Progress reporting and cancellation, shared by every operation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// Receives progress from a running operation. All methods have empty
/// defaults, so a reporter implements only what it shows.
pub trait Progress: Send + Sync {
    /// Whether totals are wanted; computing them can cost a count query.
    fn wants_totals(&self) -> bool {
        false
    }
    /// A phase begins (`"backup"`, `"restore"`, `"verify"`), with its total
    /// rows and bytes when known.
    fn begin(&self, _phase: &str, _total_rows: Option<u64>, _total_bytes: Option<u64>) {}
    /// Rows and bytes done since the last call.
    fn advance(&self, _rows: u64, _bytes: u64) {}
    /// A short note on what is being worked on (a table name).
    fn note(&self, _what: &str) {}
    /// The phase is over.
    fn end(&self) {}
}

/// A reporter that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {}

/// What an operation reports to and listens to while it runs, passed beside
/// its options (which stay plain data).
#[derive(Clone)]
pub struct Run {
    /// Where progress goes.
    pub progress: Arc<dyn Progress>,
    /// Set to stop the operation; nothing is committed then.
    pub cancel: Cancel,
}

impl Run {
    /// Progress to `progress`, stopped by `cancel`.
    pub fn new(progress: Arc<dyn Progress>, cancel: Cancel) -> Run {
        Run { progress, cancel }
    }

    /// No progress shown, never cancelled.
    pub fn silent() -> Run {
        Run::new(Arc::new(Silent), Cancel::new())
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run").field("cancel", &self.cancel).finish()
    }
}

/// A reporter alone: never cancelled.
impl<P: Progress + 'static> From<Arc<P>> for Run {
    fn from(progress: Arc<P>) -> Run {
        Run::new(progress, Cancel::new())
    }
}

impl From<Arc<dyn Progress>> for Run {
    fn from(progress: Arc<dyn Progress>) -> Run {
        Run::new(progress, Cancel::new())
    }
}

/// A shared flag that asks a running operation to stop at its next check.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the operation to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether stopping was asked.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(Interrupted)` once stopping was asked.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::interrupted())
        } else {
            Ok(())
        }
    }
}
