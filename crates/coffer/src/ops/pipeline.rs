//! The two pipelines that every operation shares.
//!
//! * [`scan_encode`] writes archives (backup, export, a collection's full
//!   and incremental backups): scanners — one snapshot and its forks, which
//!   read the same moment on connections of their own — each take the next
//!   stream of rows off a shared queue, and encoder threads turn each
//!   stream into data files. A scanner hands a stream to an encoder only
//!   once one is free, and at most two batches wait between them, so memory
//!   stays bounded whatever the table sizes.
//! * [`read_entries`] reads archives (restore, import, collection restore):
//!   a fetcher task reads a data file only once the decoder has room for it
//!   (so at most two are held whole in memory), a decoder thread checks each
//!   against its SHA-256 and decodes it, and the calling thread applies the
//!   batches to the database.
//!
//! A stage whose next stage went away stops with [`Error::stopped`]; the
//! pipeline reports the error of the stage that failed instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::archive;
use crate::datafile::{TableWriter, WriteOptions, read_part_as};
use crate::engine::DataBatch;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, Part, Table};
use crate::progress::{Cancel, Progress};
use crate::store::Store;

/// One stream of rows that becomes one table entry's data files.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    /// The table as its data files hold it (its columns and their types).
    pub table: Table,
    /// Where its data files go.
    pub store: Store,
    /// Whether a stream without rows still gets a data file (tables of
    /// backups and exports do, so that other tools read an empty table; a
    /// collection's deleted keys do not).
    pub empty_file: bool,
    /// The number of the stream's first data file: 0, or where one piece
    /// of a table split across scanners starts ([`PIECE_PARTS`] apart).
    pub first_part: usize,
}

/// How many part numbers each piece of a table split across scanners
/// has to itself: piece `k` numbers its parts from `k * PIECE_PARTS` (at
/// 32 MiB a part, 3 TB a piece).
pub(crate) const PIECE_PARTS: usize = 100_000;

/// What one stream wrote.
#[derive(Debug)]
pub(crate) struct Written {
    /// Its data files, in row order.
    pub parts: Vec<Part>,
    /// Rows written.
    pub rows: u64,
}

/// How [`scan_encode`] encodes, and what it reports to and listens to.
pub(crate) struct Encoding<'a> {
    /// Part size, compression and format of the data files.
    pub write: &'a WriteOptions,
    /// Encoder threads.
    pub encoders: usize,
    /// The runtime that uploads the files.
    pub handle: Handle,
    /// Set to stop.
    pub cancel: &'a Cancel,
    /// Rows and bytes as they are read.
    pub progress: &'a dyn Progress,
}

/// Up to `n` scanners: `first` and the forks of it that `fork` makes (each
/// reading the same moment on a connection of its own), fewer when the
/// engine cannot fork right now.
pub(crate) fn scanners<S: ?Sized>(
    first: Box<S>,
    n: usize,
    fork: impl Fn(&S) -> Result<Option<Box<S>>>,
) -> Result<Vec<Box<S>>> {
    let mut scanners = vec![first];
    while scanners.len() < n.max(1) {
        match fork(&scanners[0])? {
            Some(s) => scanners.push(s),
            None => break,
        }
    }
    tracing::debug!(scanners = scanners.len(), "scanning");
    Ok(scanners)
}

/// A reader of one stream: reads stream `i` through a scanner, handing its
/// batches to the sink.
pub(crate) type ReadStream<'a, S> =
    dyn Fn(&mut S, usize, &mut dyn FnMut(DataBatch) -> Result<()>) -> Result<()> + Sync + 'a;

/// Read every stream through `read` on `scanners` and write each as data
/// files; returns what each stream wrote, in the order of `streams`.
pub(crate) fn scan_encode<S: ?Sized + Send>(
    scanners: Vec<Box<S>>,
    streams: &[Stream],
    read: &ReadStream<'_, S>,
    encoding: &Encoding<'_>,
) -> Result<Vec<Written>> {
    type Job = (usize, Receiver<DataBatch>);
    let (job_tx, job_rx) = sync_channel::<Job>(0);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let parts: Mutex<Vec<Option<Result<Vec<Part>>>>> =
        Mutex::new(streams.iter().map(|_| None).collect());
    let rows: Vec<std::sync::atomic::AtomicU64> = streams
        .iter()
        .map(|_| std::sync::atomic::AtomicU64::new(0))
        .collect();
    let next = AtomicUsize::new(0);
    let Encoding {
        write,
        encoders,
        handle,
        cancel,
        progress,
    } = encoding;

    let scanned = std::thread::scope(|scope| {
        for _ in 0..(*encoders).max(1) {
            let job_rx = job_rx.clone();
            let parts = &parts;
            scope.spawn(move || {
                loop {
                    let job = job_rx.lock().expect("job queue").recv();
                    let Ok((i, batches)) = job else { break };
                    let stream = &streams[i];
                    let mut writer = TableWriter::new(
                        stream.store.clone(),
                        handle.clone(),
                        &stream.table,
                        (*write).clone(),
                    )
                    .starting_at(stream.first_part);
                    let mut outcome = Ok(());
                    for batch in batches.iter() {
                        if let Err(e) = writer.write(batch) {
                            outcome = Err(e);
                            break;
                        }
                    }
                    let written = outcome.and_then(|()| {
                        if stream.empty_file {
                            writer.finish_table()
                        } else {
                            writer.finish()
                        }
                    });
                    tracing::debug!(table = %stream.table.name, "encoder done");
                    let failed = written.is_err();
                    parts.lock().expect("parts")[i] = Some(written);
                    if failed {
                        // Dropping `batches` stops this stream's scanner.
                        break;
                    }
                }
            });
        }
        drop(job_rx);
        let scanners: Vec<_> = scanners
            .into_iter()
            .map(|mut scanner| {
                let job_tx: SyncSender<Job> = job_tx.clone();
                let (rows, next) = (&rows, &next);
                scope.spawn(move || {
                    // The scanner goes back with the outcome, to be closed
                    // only when every scanner is done: the first one may
                    // hold what keeps the others' moment whole (PostgreSQL:
                    // the exporting transaction and its table locks).
                    let outcome = (|| -> Result<()> {
                        loop {
                            let i = next.fetch_add(1, Ordering::SeqCst);
                            let Some(stream) = streams.get(i) else {
                                return Ok(());
                            };
                            cancel.check()?;
                            progress.note(&stream.table.name);
                            let (tx, rx) = sync_channel::<DataBatch>(2);
                            job_tx.send((i, rx)).map_err(|_| Error::stopped())?;
                            tracing::debug!(table = %stream.table.name, "scan starts");
                            read(scanner.as_mut(), i, &mut |batch| {
                                cancel.check()?;
                                let n = batch.num_rows() as u64;
                                let bytes = batch.memory_size() as u64;
                                rows[i].fetch_add(n, Ordering::Relaxed);
                                tx.send(batch).map_err(|_| Error::stopped())?;
                                progress.advance(n, bytes);
                                Ok(())
                            })?;
                            tracing::debug!(table = %stream.table.name, "scan ends");
                        }
                    })();
                    (outcome, scanner)
                })
            })
            .collect();
        drop(job_tx);
        let mut outcome: Result<()> = Ok(());
        let mut done = Vec::new();
        for scanner in scanners {
            let r = match scanner.join() {
                Ok((r, scanner)) => {
                    done.push(scanner);
                    r
                }
                Err(_) => Err(Error::internal("a table scanner panicked")),
            };
            // The first real failure; a scanner stopped by a failed encoder
            // leaves the word to that encoder.
            let open = match &outcome {
                Ok(()) => true,
                Err(e) => e.is_stopped(),
            };
            if open && r.is_err() {
                outcome = r;
            }
        }
        drop(done);
        outcome
    });
    let parts = parts.into_inner().expect("parts");
    // An encoder's failure explains a stopped scanner; a scanner's own
    // failure (or a cancel) comes first otherwise.
    if let Err(e) = &scanned
        && !e.is_stopped()
    {
        return Err(scanned.unwrap_err());
    }
    let mut written = Vec::with_capacity(streams.len());
    let mut failure = None;
    for (part, rows) in parts.into_iter().zip(rows) {
        match part {
            Some(Ok(parts)) => written.push(Written {
                parts,
                rows: rows.into_inner(),
            }),
            Some(Err(e)) => {
                failure.get_or_insert(e);
            }
            None => {}
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    scanned?;
    if written.len() != streams.len() {
        return Err(Error::internal("a table's encoder did not report"));
    }
    Ok(written)
}

/// One archive that [`read_entries`] reads from.
#[derive(Debug, Clone)]
pub(crate) struct Archive {
    /// Where it is.
    pub store: Store,
    /// Its manifest.
    pub manifest: Arc<Manifest>,
}

/// A table entry to read: `(archive, table)`, indexes into the archives and
/// that archive's `manifest.tables`.
pub(crate) type Entry = (usize, usize);

struct Fetched {
    entry: usize,
    part: usize,
    data: Bytes,
    misfits: Option<Bytes>,
}

/// Read the data files of `entries` in order, check each against its
/// manifest entry, decode it and hand its batches to `apply` with the index
/// of their entry; returns the bytes read. Call from a blocking thread of
/// the runtime `handle`; `apply` runs on it.
pub(crate) fn read_entries(
    handle: &Handle,
    archives: &[Archive],
    entries: &[Entry],
    cancel: &Cancel,
    progress: &dyn Progress,
    apply: &mut dyn FnMut(usize, DataBatch) -> Result<()>,
) -> Result<u64> {
    let (tx, mut rx) = mpsc::channel::<Result<Fetched>>(1);
    let fetcher = {
        let (archives, entries, cancel) = (archives.to_vec(), entries.to_vec(), cancel.clone());
        handle.spawn(async move {
            for (e, &(a, t)) in entries.iter().enumerate() {
                let archive = &archives[a];
                for (p, part) in archive.manifest.tables[t].parts.iter().enumerate() {
                    if cancel.is_cancelled() {
                        return;
                    }
                    // Fetch only once the decoder has room.
                    let Ok(permit) = tx.reserve().await else {
                        return;
                    };
                    let fetched = async {
                        // Decrypted here, while the decoder works on the
                        // part before.
                        let data = archive::fetch_revealed(&archive.store, &part.file.path).await?;
                        let misfits = match &part.misfits {
                            Some(m) => {
                                Some(archive::fetch_revealed(&archive.store, &m.path).await?)
                            }
                            None => None,
                        };
                        Ok(Fetched {
                            entry: e,
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
    let parts: usize = entries
        .iter()
        .map(|&(a, t)| archives[a].manifest.tables[t].parts.len())
        .sum();
    let outcome = std::thread::scope(|scope| {
        let (batch_tx, batch_rx) = sync_channel::<(usize, DataBatch)>(4);
        let decoder =
            scope.spawn(move || decode(archives, entries, parts, &mut rx, &batch_tx, progress));
        let mut applied = Ok(());
        for (e, batch) in batch_rx.iter() {
            if let Err(err) = cancel.check().and_then(|()| apply(e, batch)) {
                applied = Err(err);
                break;
            }
        }
        drop(batch_rx);
        let decoded = decoder
            .join()
            .map_err(|_| Error::internal("the archive decoder panicked"))?;
        match (decoded, applied) {
            (Err(e), _) if !e.is_stopped() => Err(e),
            (_, Err(e)) => Err(e),
            (Err(e), Ok(())) => Err(e),
            (Ok(bytes), Ok(())) => Ok(bytes),
        }
    });
    fetcher.abort();
    // Once stopping was asked, the fetcher and decoder stop too: say why.
    cancel.check()?;
    outcome
}

/// Check and decode `parts` fetched data files, in order, sending their
/// batches on; returns the bytes read.
fn decode(
    archives: &[Archive],
    entries: &[Entry],
    parts: usize,
    fetched: &mut mpsc::Receiver<Result<Fetched>>,
    batches: &SyncSender<(usize, DataBatch)>,
    progress: &dyn Progress,
) -> Result<u64> {
    let mut bytes = 0;
    for _ in 0..parts {
        let f = fetched
            .blocking_recv()
            .ok_or_else(|| Error::internal("the archive reader stopped early"))??;
        let (a, t) = entries[f.entry];
        let Archive { store, manifest } = &archives[a];
        let table = &manifest.tables[t];
        let part = &table.parts[f.part];
        let origin = store.url_of(&part.file.path);
        let data = f.data;
        archive::check_bytes(&data, &part.file, &origin)?;
        bytes += part.file.size;
        let misfit_origin = part
            .misfits
            .as_ref()
            .map(|m| store.url_of(&m.path))
            .unwrap_or_default();
        let misfits = match (f.misfits, &part.misfits) {
            (Some(b), Some(m)) => {
                archive::check_bytes(&b, m, &misfit_origin)?;
                bytes += m.size;
                Some((b, misfit_origin.as_str()))
            }
            _ => None,
        };
        let rows = read_part_as(
            manifest.data_format,
            manifest.format_version,
            table,
            data,
            misfits,
            &origin,
            &mut |batch| batches.send((f.entry, batch)).map_err(|_| Error::stopped()),
        )?;
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
}
