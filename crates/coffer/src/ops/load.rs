//! The pipeline that `restore` and `import` share: fetch the parts of the
//! chosen tables, check each against its SHA-256, decode it, and hand the
//! batches to the engine's [`Restorer`].
//!
//! Three stages overlap: a fetcher task reads a part only once the decoder
//! has room for it (so at most two parts are held whole in memory, one
//! decoding and one waiting), a decoder thread checks and decodes, and the
//! calling thread loads the rows.

use std::sync::Arc;
use std::sync::mpsc::sync_channel;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::archive;
use crate::datafile::read_part_as;
use crate::engine::{DataBatch, Restorer};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, Table};
use crate::progress::{Cancel, Progress};
use crate::store::Store;

/// The decoder's marker when the loader went away (its error explains why).
const LOADER_GONE: &str = "the loader stopped";

struct Fetched {
    table: usize,
    part: usize,
    data: Bytes,
    misfits: Option<Bytes>,
}

/// What was loaded.
pub(crate) struct Loaded {
    /// Rows loaded.
    pub rows: u64,
    /// Bytes of data files read.
    pub bytes: u64,
    /// What the restorer left out ([`Restorer::skipped`]).
    pub skipped: Vec<crate::engine::Skipped>,
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
    let (tx, mut rx) = mpsc::channel::<Result<Fetched>>(1);
    let fetcher = {
        let (src, manifest, selected, cancel) = (
            src.clone(),
            manifest.clone(),
            selected.clone(),
            cancel.clone(),
        );
        tokio::spawn(async move {
            for &t in &selected {
                for (p, part) in manifest.tables[t].parts.iter().enumerate() {
                    if cancel.is_cancelled() {
                        return;
                    }
                    // Fetch only once the decoder has room.
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
                            table: t,
                            part: p,
                            data,
                            misfits,
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
    let src = src.clone();
    let loaded = tokio::task::spawn_blocking(move || -> Result<Loaded> {
        let tables: Vec<&Table> = selected.iter().map(|&i| &manifest.tables[i]).collect();
        let mut restorer = open()?;
        restorer.begin(&manifest, &tables)?;
        let skipped = restorer.skipped();
        // Tables left out: their parts are still read and checked, their
        // rows not loaded.
        let left_out: Vec<bool> = manifest
            .tables
            .iter()
            .map(|t| skipped.iter().any(|s| s.holds_rows && s.name == t.name))
            .collect();
        let total_rows: u64 = tables.iter().map(|t| t.rows).sum();
        let total_bytes: u64 = tables
            .iter()
            .flat_map(|t| &t.parts)
            .map(|p| p.file.size + p.misfits.as_ref().map_or(0, |m| m.size))
            .sum();
        progress.begin(label, Some(total_rows), Some(total_bytes));
        let parts: usize = tables.iter().map(|t| t.parts.len()).sum();
        let job = Job {
            manifest: &manifest,
            src: &src,
            progress: progress.as_ref(),
        };
        let outcome = std::thread::scope(|scope| {
            let (batch_tx, batch_rx) = sync_channel::<(usize, DataBatch)>(4);
            let decoder = scope.spawn(move || decode(&job, parts, &mut rx, &batch_tx));
            let mut rows = 0u64;
            let mut load_result = Ok(());
            let mut current = None;
            for (i, batch) in batch_rx.iter() {
                if left_out[i] {
                    progress.advance(batch.num_rows() as u64, 0);
                    continue;
                }
                if current != Some(i) {
                    current = Some(i);
                    progress.note(&format!("loading {}", manifest.tables[i].name));
                }
                if let Err(e) = cancel
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
                (Err(e), _) if e.message() != LOADER_GONE => Err(e),
                (_, Err(e)) => Err(e),
                (Err(e), Ok(())) => Err(e),
                (Ok(bytes), Ok(())) => Ok(Loaded {
                    rows,
                    bytes,
                    skipped: Vec::new(),
                }),
            }
        });
        // Once stopping was asked, the fetcher and decoder stop too: say why.
        let loaded = cancel
            .check()
            .and(outcome)
            .inspect_err(|_| progress.end())?;
        tracing::debug!(rows = loaded.rows, "rows loaded");
        // The rest (indexes, checks) shows as phases of its own.
        progress.begin("finishing", None, None);
        restorer.set_progress(progress.clone());
        let finished = restorer.finish(&manifest, &tables);
        progress.end();
        finished?;
        Ok(Loaded { skipped, ..loaded })
    })
    .await
    .map_err(|e| Error::internal(format!("the {label} worker failed: {e}")));
    fetcher.abort();
    loaded?
}

struct Job<'a> {
    manifest: &'a Manifest,
    src: &'a Store,
    progress: &'a dyn Progress,
}

/// Check and decode `parts` fetched parts, in order, sending their batches
/// on; returns the bytes read.
fn decode(
    job: &Job<'_>,
    parts: usize,
    fetched: &mut mpsc::Receiver<Result<Fetched>>,
    batches: &std::sync::mpsc::SyncSender<(usize, DataBatch)>,
) -> Result<u64> {
    let mut bytes = 0;
    for _ in 0..parts {
        let f = fetched
            .blocking_recv()
            .ok_or_else(|| Error::internal("the archive reader stopped early"))??;
        let table = &job.manifest.tables[f.table];
        let part = &table.parts[f.part];
        let origin = job.src.url_of(&part.file.path);
        archive::check_bytes(&f.data, &part.file, &origin)?;
        bytes += part.file.size;
        let misfit_origin = part
            .misfits
            .as_ref()
            .map(|m| job.src.url_of(&m.path))
            .unwrap_or_default();
        let misfits = match (&f.misfits, &part.misfits) {
            (Some(b), Some(m)) => {
                archive::check_bytes(b, m, &misfit_origin)?;
                bytes += m.size;
                Some((b.clone(), misfit_origin.as_str()))
            }
            _ => None,
        };
        let (format, version) = (job.manifest.data_format, job.manifest.format_version);
        let rows = read_part_as(
            format,
            version,
            table,
            f.data,
            misfits,
            &origin,
            &mut |batch| {
                batches
                    .send((f.table, batch))
                    .map_err(|_| Error::internal(LOADER_GONE))
            },
        )?;
        job.progress.advance(
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
