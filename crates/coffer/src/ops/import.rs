//! `import`: load the tables of an archive (an export, or a backup) into a
//! new or existing database.
//!
//! The archive's files are checked before the target is touched: every
//! data file of the chosen tables must be listed at the location with the
//! size the manifest gives. Then parts are fetched (a few ahead, in
//! parallel), each checked against its SHA-256 before it is decoded, and
//! loaded through the engine's [importer](crate::engine::Engine::importer),
//! which makes the whole import one unit: a failure or a cancellation at
//! any point leaves the target as it was.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::archive;
use crate::datafile::read_part_as;
use crate::engine::{DataBatch, Engine, ImportMode};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, Table};
use crate::progress::{Cancel, Progress};
use crate::store::Store;

/// Parts fetched ahead of the one being decoded (each is held whole in
/// memory, so this bounds memory at about this many parts plus two).
const FETCH_AHEAD: usize = 1;

/// Options of an import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Tables to import; empty for all (except an engine's own tables).
    pub tables: Vec<String>,
    /// What to do with tables that already exist in the target.
    pub mode: ImportMode,
    /// Set to stop the import; the target is left as it was.
    pub cancel: Cancel,
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
            Some(t) if t.kind == "internal" => {
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
                t.kind != "internal"
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

struct Fetched {
    table: usize,
    part: usize,
    data: Bytes,
    misfits: Option<Bytes>,
}

async fn fetch(src: &Store, path: &str) -> Result<Bytes> {
    match src.get_opt(path).await? {
        Some(b) => Ok(b),
        None => Err(Error::corrupt(format!(
            "{} is missing from the archive; restore it from another copy",
            src.url_of(path)
        ))),
    }
}

/// Import the tables of the archive at `src` into `target` with `engine`.
pub async fn import(
    engine: Arc<dyn Engine>,
    src: &Store,
    target: &str,
    options: ImportOptions,
    progress: Arc<dyn Progress>,
) -> Result<ImportReport> {
    let started = Instant::now();
    let manifest = archive::read_manifest(src).await?;
    if manifest.kind == crate::manifest::ArchiveKind::Incremental {
        return Err(Error::invalid(format!(
            "the archive at {} is an incremental backup of a collection and holds only changes; restore the collection instead",
            src.url()
        )));
    }
    let selected = select_tables(&manifest, &options.tables, src.url())?;
    check_present(src, &manifest, &selected).await?;
    let manifest = Arc::new(manifest);

    let (tx, mut rx) = mpsc::channel::<Result<Fetched>>(1);
    let fetcher = {
        let (src, manifest, cancel) = (src.clone(), manifest.clone(), options.cancel.clone());
        let jobs: Vec<(usize, usize)> = selected
            .iter()
            .flat_map(|&t| (0..manifest.tables[t].parts.len()).map(move |p| (t, p)))
            .collect();
        tokio::spawn(async move {
            let mut fetches = futures::stream::iter(jobs)
                .map(|(t, p)| {
                    let (src, manifest) = (src.clone(), manifest.clone());
                    async move {
                        let part = &manifest.tables[t].parts[p];
                        let data = fetch(&src, &part.file.path).await?;
                        let misfits = match &part.misfits {
                            Some(m) => Some(fetch(&src, &m.path).await?),
                            None => None,
                        };
                        Ok(Fetched {
                            table: t,
                            part: p,
                            data,
                            misfits,
                        })
                    }
                })
                .buffered(FETCH_AHEAD);
            while let Some(fetched) = fetches.next().await {
                if cancel.is_cancelled() {
                    return;
                }
                let failed = fetched.is_err();
                if tx.send(fetched).await.is_err() || failed {
                    return;
                }
            }
        })
    };

    let target = target.to_string();
    let opts = options.clone();
    let m = manifest.clone();
    let url = src.clone();
    let sel = selected.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        load(
            engine.as_ref(),
            &m,
            &sel,
            &url,
            &target,
            &opts,
            progress.as_ref(),
            &mut rx,
        )
    })
    .await
    .map_err(|e| Error::internal(format!("the import worker failed: {e}")))?;
    fetcher.abort();
    let (rows, bytes) = loaded?;
    let manifest = Arc::try_unwrap(manifest).unwrap_or_else(|m| (*m).clone());
    let tables = selected
        .iter()
        .map(|&i| manifest.tables[i].name.clone())
        .collect();
    Ok(ImportReport {
        manifest,
        tables,
        rows,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The decoder's marker when the loader went away (its error explains why).
const LOADER_GONE: &str = "the loader stopped";

#[allow(clippy::too_many_arguments)]
fn load(
    engine: &dyn Engine,
    manifest: &Manifest,
    selected: &[usize],
    src: &Store,
    target: &str,
    options: &ImportOptions,
    progress: &dyn Progress,
    fetched: &mut mpsc::Receiver<Result<Fetched>>,
) -> Result<(u64, u64)> {
    let tables: Vec<&Table> = selected.iter().map(|&i| &manifest.tables[i]).collect();
    let mut importer = engine.importer(target, options.mode, options.cancel.clone())?;
    importer.begin(manifest, &tables)?;
    let total_rows: u64 = tables.iter().map(|t| t.rows).sum();
    let total_bytes: u64 = tables
        .iter()
        .flat_map(|t| &t.parts)
        .map(|p| p.file.size + p.misfits.as_ref().map_or(0, |m| m.size))
        .sum();
    progress.begin("import", Some(total_rows), Some(total_bytes));
    let (batch_tx, batch_rx) = sync_channel::<(usize, DataBatch)>(4);
    let parts: usize = tables.iter().map(|t| t.parts.len()).sum();
    let format = manifest.data_format;
    let outcome = std::thread::scope(|scope| {
        let decoder = scope.spawn(move || -> Result<u64> {
            let mut bytes = 0;
            for _ in 0..parts {
                let f = fetched
                    .blocking_recv()
                    .ok_or_else(|| Error::internal("the archive reader stopped early"))??;
                let table = &manifest.tables[f.table];
                let part = &table.parts[f.part];
                let origin = src.url_of(&part.file.path);
                archive::check_bytes(&f.data, &part.file, &origin)?;
                bytes += part.file.size;
                let misfit_origin = part
                    .misfits
                    .as_ref()
                    .map(|m| src.url_of(&m.path))
                    .unwrap_or_default();
                let misfits = match (&f.misfits, &part.misfits) {
                    (Some(b), Some(m)) => {
                        archive::check_bytes(b, m, &misfit_origin)?;
                        bytes += m.size;
                        Some((b.clone(), misfit_origin.as_str()))
                    }
                    _ => None,
                };
                let rows = read_part_as(format, table, f.data, misfits, &origin, &mut |batch| {
                    batch_tx
                        .send((f.table, batch))
                        .map_err(|_| Error::internal(LOADER_GONE))
                })?;
                progress.advance(
                    0,
                    part.file.size + part.misfits.as_ref().map_or(0, |m| m.size),
                );
                if rows != part.rows {
                    return Err(Error::corrupt(format!(
                        "{origin} holds {rows} rows but the manifest says {}",
                        part.rows
                    )));
                }
            }
            Ok(bytes)
        });
        let mut rows = 0u64;
        let mut load_result = Ok(());
        for (i, batch) in batch_rx.iter() {
            if let Err(e) = options
                .cancel
                .check()
                .and_then(|()| importer.load(&manifest.tables[i], &batch))
            {
                load_result = Err(e);
                break;
            }
            rows += batch.num_rows() as u64;
            progress.advance(batch.num_rows() as u64, 0);
        }
        drop(batch_rx);
        let decoded = decoder
            .join()
            .map_err(|_| Error::internal("the archive decoder panicked"))?;
        match (decoded, load_result) {
            (Err(e), _) if e.message() != LOADER_GONE => Err(e),
            (_, Err(e)) => Err(e),
            (Err(e), Ok(())) => Err(e),
            (Ok(bytes), Ok(())) => Ok((rows, bytes)),
        }
    });
    progress.end();
    // Once stopping was asked, the reader and decoder stop too: say why.
    options.cancel.check()?;
    let (rows, bytes) = outcome?;
    importer.finish(manifest, &tables)?;
    Ok((rows, bytes))
}
