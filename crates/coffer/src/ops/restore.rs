//! `restore`: build a database from an archive beside the target, check it,
//! and move it into place.

use std::sync::Arc;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::archive;
use crate::datafile::read_part;
use crate::engine::{DataBatch, Engine};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, Table};
use crate::progress::{Cancel, Progress};
use crate::store::Store;

/// Options of a restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Replace a target that exists and is not empty.
    pub replace: bool,
    /// Tables to restore; empty for all.
    pub tables: Vec<String>,
    /// Set to stop the restore; the target is left as it was.
    pub cancel: Cancel,
}

/// What a finished restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The archive's manifest.
    pub manifest: Manifest,
    /// Names of the tables restored.
    pub tables: Vec<String>,
    /// Rows restored.
    pub rows: u64,
    /// Bytes of data files read.
    pub bytes: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// The tables of `manifest` named in `names` (all when empty), in archive
/// order; an unknown name is an error naming it and the archive.
pub fn select_tables<'m>(
    manifest: &'m Manifest,
    names: &[String],
    url: &str,
) -> Result<Vec<&'m Table>> {
    for n in names {
        if manifest.table(n).is_none() {
            return Err(Error::invalid(format!(
                "table '{n}' is not in the archive at {url}; `coffer ls {url}` lists its tables"
            )));
        }
    }
    Ok(manifest
        .tables
        .iter()
        .filter(|t| names.is_empty() || names.contains(&t.name))
        .collect())
}

struct Fetched {
    table: usize,
    part: usize,
    data: Bytes,
    misfits: Option<Bytes>,
    origin: String,
    misfit_origin: String,
}

/// Restore the archive at `src` into `target` with `engine`.
pub async fn restore(
    engine: Arc<dyn Engine>,
    src: &Store,
    target: &str,
    options: RestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let manifest = archive::read_manifest(src).await?;
    if manifest.kind == crate::manifest::ArchiveKind::Export {
        return Err(Error::invalid(format!(
            "the archive at {} is an export, not a backup; load it with `coffer import {} DB`",
            src.url(),
            src.url()
        )));
    }
    if manifest.source.engine != engine.name() {
        return Err(Error::invalid(format!(
            "the archive at {} holds a {} database and cannot be restored as {}",
            src.url(),
            manifest.source.engine,
            engine.name()
        )));
    }
    let selected: Vec<usize> = {
        let tables = select_tables(&manifest, &options.tables, src.url())?;
        tables
            .iter()
            .map(|t| {
                manifest
                    .tables
                    .iter()
                    .position(|x| x.name == t.name)
                    .expect("selected")
            })
            .collect()
    };
    let manifest = Arc::new(manifest);

    let (tx, mut rx) = mpsc::channel::<Result<Fetched>>(1);
    let fetcher = {
        let (src, manifest, selected, cancel) = (
            src.clone(),
            manifest.clone(),
            selected.clone(),
            options.cancel.clone(),
        );
        tokio::spawn(async move {
            for &i in &selected {
                for (n, part) in manifest.tables[i].parts.iter().enumerate() {
                    if cancel.is_cancelled() {
                        return;
                    }
                    // Fetch only once the decoder has room: at most two
                    // parts are in memory (one decoding, one waiting).
                    let Ok(permit) = tx.reserve().await else {
                        return;
                    };
                    let fetched = async {
                        let data = fetch(&src, &part.file.path).await?;
                        let misfits = match &part.misfits {
                            Some(m) => Some(fetch(&src, &m.path).await?),
                            None => None,
                        };
                        Ok(Fetched {
                            table: i,
                            part: n,
                            data,
                            misfits,
                            origin: src.url_of(&part.file.path),
                            misfit_origin: part
                                .misfits
                                .as_ref()
                                .map(|m| src.url_of(&m.path))
                                .unwrap_or_default(),
                        })
                    }
                    .await;
                    let failed = fetched.is_err();
                    permit.send(fetched);
                    if failed {
                        return;
                    }
                }
            }
        })
    };

    let target = target.to_string();
    let opts = options.clone();
    let m = manifest.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        load(
            engine.as_ref(),
            &m,
            &selected,
            &target,
            &opts,
            progress.as_ref(),
            &mut rx,
        )
    })
    .await
    .map_err(|e| Error::internal(format!("the restore worker failed: {e}")))?;
    fetcher.abort();
    let (rows, bytes) = loaded?;
    let manifest = Arc::try_unwrap(manifest).unwrap_or_else(|m| (*m).clone());
    let tables = select_tables(&manifest, &options.tables, src.url())?
        .iter()
        .map(|t| t.name.clone())
        .collect();
    Ok(RestoreReport {
        manifest,
        tables,
        rows,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
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

fn load(
    engine: &dyn Engine,
    manifest: &Manifest,
    selected: &[usize],
    target: &str,
    options: &RestoreOptions,
    progress: &dyn Progress,
    fetched: &mut mpsc::Receiver<Result<Fetched>>,
) -> Result<(u64, u64)> {
    let tables: Vec<&Table> = selected.iter().map(|&i| &manifest.tables[i]).collect();
    let mut restorer = engine.restorer(target, options.replace, options.cancel.clone())?;
    restorer.begin(manifest, &tables)?;
    let total_rows: u64 = tables.iter().map(|t| t.rows).sum();
    let total_bytes: u64 = tables
        .iter()
        .flat_map(|t| &t.parts)
        .map(|p| p.file.size + p.misfits.as_ref().map_or(0, |m| m.size))
        .sum();
    progress.begin("restore", Some(total_rows), Some(total_bytes));
    let (batch_tx, batch_rx) = sync_channel::<(usize, DataBatch)>(4);
    let parts: usize = tables.iter().map(|t| t.parts.len()).sum();
    let outcome = std::thread::scope(|scope| {
        let decoder = scope.spawn(move || -> Result<u64> {
            let mut bytes = 0;
            for _ in 0..parts {
                let f = fetched
                    .blocking_recv()
                    .ok_or_else(|| Error::internal("the archive reader stopped early"))??;
                let table = &manifest.tables[f.table];
                let part = &table.parts[f.part];
                archive::check_bytes(&f.data, &part.file, &f.origin)?;
                bytes += part.file.size;
                let misfits = match (&f.misfits, &part.misfits) {
                    (Some(b), Some(m)) => {
                        archive::check_bytes(b, m, &f.misfit_origin)?;
                        bytes += m.size;
                        Some((b.clone(), f.misfit_origin.as_str()))
                    }
                    _ => None,
                };
                let rows = read_part(table, f.data, misfits, &f.origin, &mut |batch| {
                    batch_tx
                        .send((f.table, batch))
                        .map_err(|_| Error::internal("the loader stopped"))
                })?;
                progress.advance(
                    0,
                    part.file.size + part.misfits.as_ref().map_or(0, |m| m.size),
                );
                if rows != part.rows {
                    return Err(Error::corrupt(format!(
                        "{} holds {rows} rows but the manifest says {}",
                        f.origin, part.rows
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
                .and_then(|()| restorer.load(&manifest.tables[i], &batch))
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
            (Err(e), _) if e.message() != "the loader stopped" => Err(e),
            (_, Err(e)) => Err(e),
            (Err(e), Ok(())) => Err(e),
            (Ok(bytes), Ok(())) => Ok((rows, bytes)),
        }
    });
    progress.end();
    let (rows, bytes) = outcome?;
    options.cancel.check()?;
    tracing::debug!(rows, "rows loaded");
    restorer.finish(manifest, &tables)?;
    Ok((rows, bytes))
}
