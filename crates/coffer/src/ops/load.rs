//! What `restore` and `import` share: the parts of the chosen tables go
//! through the read pipeline ([`super::pipeline::read_entries`]) into the
//! engine's [`Restorer`], which then builds indexes, checks and moves the
//! result into place.

use std::sync::Arc;

use tokio::runtime::Handle;

use super::pipeline::{Archive, Entry, read_entries};
use crate::engine::Restorer;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, Table};
use crate::progress::{Cancel, Progress};
use crate::store::Store;

/// What was loaded.
pub(crate) struct Loaded {
    /// Rows loaded.
    pub rows: u64,
    /// Bytes of data files read.
    pub bytes: u64,
    /// What the restorer left out ([`Restorer::skipped`]).
    pub skipped: Vec<crate::engine::Skipped>,
    /// Values stored in their nearest form ([`Restorer::coerced`]).
    pub coerced: u64,
}

/// Load the tables `selected` (indexes into `manifest.tables`) of the
/// archive at `src` into the restorer that `open` makes, and finish it.
/// `label` names the work in the progress display ("restore", "import").
pub(crate) async fn load_archive(
    src: &Store,
    manifest: Arc<Manifest>,
    selected: Vec<usize>,
    label: &'static str,
    open: impl FnOnce() -> Result<Box<dyn Restorer>> + Send + 'static,
    cancel: Cancel,
    progress: Arc<dyn Progress>,
) -> Result<Loaded> {
    let archives = vec![Archive {
        store: src.clone(),
        manifest: manifest.clone(),
    }];
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || -> Result<Loaded> {
        let tables: Vec<&Table> = selected.iter().map(|&i| &manifest.tables[i]).collect();
        let mut restorer = open()?;
        restorer.begin(&manifest, &tables)?;
        let skipped = restorer.skipped();
        // Tables left out: their parts are still read and checked, their
        // rows not loaded.
        let left_out: Vec<bool> = selected
            .iter()
            .map(|&i| {
                let name = &manifest.tables[i].name;
                skipped.iter().any(|s| s.holds_rows && &s.name == name)
            })
            .collect();
        let total_rows: u64 = tables.iter().map(|t| t.rows).sum();
        let total_bytes: u64 = tables
            .iter()
            .flat_map(|t| &t.parts)
            .map(|p| p.file.size + p.misfits.as_ref().map_or(0, |m| m.size))
            .sum();
        progress.begin(label, Some(total_rows), Some(total_bytes));
        let entries: Vec<Entry> = selected.iter().map(|&t| (0, t)).collect();
        let mut rows = 0u64;
        let mut current = None;
        let read = read_entries(
            &handle,
            &archives,
            &entries,
            &cancel,
            progress.as_ref(),
            &mut |e, batch| {
                let n = batch.num_rows() as u64;
                if !left_out[e] {
                    let table = tables[e];
                    if current != Some(e) {
                        current = Some(e);
                        progress.note(&format!("loading {}", table.name));
                    }
                    restorer.load(table, &batch)?;
                    rows += n;
                }
                progress.advance(n, 0);
                Ok(())
            },
        );
        let bytes = read.inspect_err(|_| progress.end())?;
        let coerced = restorer.coerced();
        tracing::debug!(rows, coerced, "rows loaded");
        // The rest (indexes, checks) shows as phases of its own.
        progress.begin("finishing", None, None);
        restorer.set_progress(progress.clone());
        let finished = restorer.finish(&manifest, &tables);
        progress.end();
        finished?;
        Ok(Loaded {
            rows,
            bytes,
            skipped,
            coerced,
        })
    })
    .await
    .map_err(|e| Error::internal(format!("the {label} worker failed: {e}")))?
}
