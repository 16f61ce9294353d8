//! `import`: load the tables of an archive (an export, or a backup) into a
//! new or existing database.
//!
//! The archive's files are checked before the target is touched: every
//! data file of the chosen tables must be listed at the location with the
//! size the manifest gives. Then parts are fetched (one ahead of the
//! decoder), each checked against its SHA-256 before it is decoded, and
//! loaded through the engine's [importer](crate::engine::Engine::importer),
//! which makes the whole import one unit: a failure or a cancellation at
//! any point leaves the target as it was.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::load::load_archive;
use crate::archive;
use crate::engine::{Address, Engine, ImportMode};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, TableKind};
use crate::progress::Run;
use crate::store::Store;

/// Options of an import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Tables to import; empty for all (except an engine's own tables).
    pub tables: Vec<String>,
    /// What to do with tables that already exist in the target.
    pub mode: ImportMode,
    /// Store values the target cannot hold exactly in their documented
    /// nearest form, counted in [`ImportReport::coerced`], instead of
    /// failing.
    pub coerce: bool,
}

/// What a finished import did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// The archive's manifest.
    pub manifest: Manifest,
    /// Names of the tables imported.
    pub tables: Vec<String>,
    /// Rows imported.
    pub rows: u64,
    /// Bytes of data files read.
    pub bytes: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Values stored in their nearest form (with [`ImportOptions::coerce`]).
    pub coerced: u64,
}

/// The indexes of the tables to import: those named (in archive order), or
/// all but the engine's own bookkeeping tables.
pub fn select_tables(manifest: &Manifest, names: &[String], url: &str) -> Result<Vec<usize>> {
    for n in names {
        match manifest.table(n) {
            None => {
                return Err(Error::invalid(format!(
                    "table '{n}' is not in the archive at {url}; `coffer ls {url}` lists its tables"
                )));
            }
            Some(t) if t.kind == TableKind::Internal => {
                return Err(Error::invalid(format!(
                    "table '{n}' in the archive at {url} is the database engine's own bookkeeping and cannot be imported"
                )));
            }
            Some(_) => {}
        }
    }
    let selected: Vec<usize> = manifest
        .tables
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            if names.is_empty() {
                t.kind != TableKind::Internal
            } else {
                names.contains(&t.name)
            }
        })
        .map(|(i, _)| i)
        .collect();
    if selected.is_empty() {
        return Err(Error::invalid(format!(
            "the archive at {url} holds no table to import"
        )));
    }
    Ok(selected)
}

/// Check, with one listing, that every data file of the chosen tables is at
/// the location with the size the manifest gives.
async fn check_present(src: &Store, manifest: &Manifest, selected: &[usize]) -> Result<()> {
    let listed: HashMap<String, u64> = src
        .list("")
        .await?
        .into_iter()
        .map(|e| (e.path, e.size))
        .collect();
    for &i in selected {
        for part in &manifest.tables[i].parts {
            for file in std::iter::once(&part.file).chain(part.misfits.as_ref()) {
                // In an encrypted archive: the file that holds it.
                let file = src
                    .opened()
                    .and_then(|o| o.stored(&file.path))
                    .unwrap_or(file);
                let url = src.url_of(&file.path);
                match listed.get(&file.path) {
                    None => {
                        return Err(Error::corrupt(format!(
                            "{url} is missing from the archive, so nothing was imported; restore the file from another copy"
                        )));
                    }
                    Some(&size) if size != file.size => {
                        return Err(Error::corrupt(format!(
                            "{url} is damaged (it has {size} bytes but the manifest says {}), so nothing was imported",
                            file.size
                        )));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    Ok(())
}

/// Import the tables of the archive at `src` into `target` with `engine`.
pub async fn import(
    engine: Arc<dyn Engine>,
    src: &Store,
    target: &Address,
    options: ImportOptions,
    run: impl Into<Run>,
) -> Result<ImportReport> {
    let Run { progress, cancel } = run.into();
    let started = Instant::now();
    super::refuse_target_inside(src, target.file(), "imported")?;
    let (src, manifest) = archive::open(src).await?;
    let src = &src;
    if manifest.kind == crate::manifest::ArchiveKind::Incremental {
        return Err(Error::invalid(format!(
            "the archive at {} is an incremental backup of a collection and holds only changes; restore the collection instead",
            src.url()
        )));
    }
    let selected = select_tables(&manifest, &options.tables, src.url())?;
    check_present(src, &manifest, &selected).await?;
    let manifest = Arc::new(manifest);
    let open = {
        let target = target.location().to_string();
        let (mode, cancel, coerce) = (options.mode, cancel.clone(), options.coerce);
        move || {
            let mut r = engine.importer(&target, mode, cancel)?;
            if coerce {
                r.coerce();
            }
            Ok(r)
        }
    };
    let loaded = load_archive(
        src,
        manifest.clone(),
        selected.clone(),
        "import",
        open,
        cancel,
        progress,
    )
    .await?;
    let manifest = Arc::try_unwrap(manifest).unwrap_or_else(|m| (*m).clone());
    let tables = selected
        .iter()
        .map(|&i| manifest.tables[i].name.clone())
        .collect();
    Ok(ImportReport {
        manifest,
        tables,
        rows: loaded.rows,
        bytes: loaded.bytes,
        seconds: started.elapsed().as_secs_f64(),
        coerced: loaded.coerced,
    })
}
