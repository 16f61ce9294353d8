//! `backup` and `export`: one consistent snapshot of a database written as
//! an archive.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::archive;
use crate::datafile::{TableWriter, WriteOptions};
use crate::engine::{Address, DataBatch, Engine};
use crate::error::{Error, Result};
use crate::lock::{ARCHIVE_LOCK_FILE, RepoLock};
use crate::manifest::{ArchiveKind, FORMAT_NAME, FORMAT_VERSION, Manifest, Source, Table, Tool};
use crate::progress::{Cancel, Progress};
use crate::store::Store;

/// Options of a backup.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Part size and compression of the data files.
    pub write: WriteOptions,
    /// What kind of archive to record.
    pub kind: ArchiveKind,
    /// Tables to include; `None` for all.
    pub tables: Option<Vec<String>>,
    /// Leave out the tables whose whole name one of these matches.
    pub exclude: Vec<regex::Regex>,
    /// Parallel encoders (threads turning batches into Parquet).
    pub encoders: usize,
    /// Parallel table scanners, when the engine can read one moment on
    /// several connections (see [`crate::engine::Snapshot::fork`]).
    pub scanners: usize,
    /// Exports only: keep each table's hidden key column
    /// ([`Table::hidden_key`], e.g. SQLite's rowid of a table without an
    /// `INTEGER PRIMARY KEY`), so that an import keeps the keys. Backups
    /// always keep it.
    pub keep_hidden_key: bool,
    /// Set to stop the backup; nothing is committed then.
    pub cancel: Cancel,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            write: WriteOptions::default(),
            kind: ArchiveKind::Backup,
            tables: None,
            exclude: Vec::new(),
            encoders: 2,
            scanners: 2,
            keep_hidden_key: false,
            cancel: Cancel::new(),
        }
    }
}

/// What a committed backup holds.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The committed manifest.
    pub manifest: Manifest,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Back up `db` with `engine` into a new archive at `dest`.
///
/// The destination is locked ([`ARCHIVE_LOCK_FILE`]) while the backup
/// writes it, so two backups into one new location cannot mix their files.
/// The data files are written first, then `SHA256SUMS`, then the manifest;
/// a failure or cancellation before the manifest removes what was written
/// and leaves no archive.
pub async fn backup(
    engine: Arc<dyn Engine>,
    db: &Address,
    dest: &Store,
    options: BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupReport> {
    let started = Instant::now();
    archive::refuse_existing(dest).await?;
    let operation = match options.kind {
        ArchiveKind::Export => "export",
        _ => "backup",
    };
    // No pause before the read-back: where the store honours create-only
    // writes (local directories, most S3 services) that alone excludes a
    // second writer, and the lock is checked again before the commit.
    let lock = RepoLock::acquire_with(dest, ARCHIVE_LOCK_FILE, operation, Duration::ZERO).await?;
    let result = write_and_commit(engine, db, dest, options, progress, &lock).await;
    if result.is_err()
        && lock.check().await.is_ok()
        && let Err(e) = archive::discard(dest).await
    {
        tracing::warn!(error = %e, "could not remove the files of the failed run");
    }
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not remove the destination's lock");
    }
    let manifest = result?;
    Ok(BackupReport {
        manifest,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn write_and_commit(
    engine: Arc<dyn Engine>,
    db: &Address,
    dest: &Store,
    options: BackupOptions,
    progress: Arc<dyn Progress>,
    lock: &RepoLock,
) -> Result<Manifest> {
    archive::prepare_destination(dest).await?;
    let handle = Handle::current();
    let db = db.clone();
    let store = dest.clone();
    let mut manifest = tokio::task::spawn_blocking(move || {
        write_tables(
            engine.as_ref(),
            &db,
            store,
            handle,
            &options,
            progress.as_ref(),
        )
    })
    .await
    .map_err(|e| Error::internal(format!("the backup worker failed: {e}")))??;
    manifest.created_at = jiff::Timestamp::now().to_string();
    lock.check().await?;
    archive::commit(dest, &mut manifest).await?;
    Ok(manifest)
}

/// A scanner-side marker: the encoder went away, its own error explains why.
const ENCODER_GONE: &str = "the encoder stopped";

/// Why `--table name` selects nothing in `db`: it names a view (or another
/// object that holds no rows), differs from a table only in case, or is
/// unknown — then the tables there are listed.
pub(crate) fn unknown_table(name: &str, db: &str, catalog: &crate::engine::Catalog) -> Error {
    let shown = name.escape_debug();
    if let Some(why) = catalog.unreadable.get(name) {
        return Error::invalid(format!(
            "'{shown}' in {db} is {why}, so its rows cannot be read; leave it out (a backup of the whole database keeps its definition)"
        ));
    }
    if let Some(o) = catalog.objects.iter().find(|o| o.name == name) {
        return Error::invalid(format!(
            "'{shown}' in {db} is a {}, not a table; only tables have rows to copy (a backup of the whole database keeps every {} as well)",
            o.kind, o.kind
        ));
    }
    if let Some(t) = catalog
        .tables
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(name))
    {
        return Error::invalid(format!(
            "table '{shown}' does not exist in {db}; did you mean '{}'?",
            t.name.escape_debug()
        ));
    }
    let mut names: Vec<String> = catalog
        .tables
        .iter()
        .take(10)
        .map(|t| format!("'{}'", t.name.escape_debug()))
        .collect();
    if catalog.tables.len() > names.len() {
        names.push(format!("and {} more", catalog.tables.len() - names.len()));
    }
    let listed = if names.is_empty() {
        "it has no tables".to_string()
    } else {
        format!("its tables are {}", names.join(", "))
    };
    Error::invalid(format!(
        "table '{shown}' does not exist in {db}; check the name ({listed})"
    ))
}

fn write_tables(
    engine: &dyn Engine,
    db: &Address,
    store: Store,
    handle: Handle,
    options: &BackupOptions,
    progress: &dyn Progress,
) -> Result<Manifest> {
    let mut snapshot = engine.snapshot(db.location())?;
    let point = snapshot.point();
    let catalog = snapshot.catalog().clone();
    let tables: Vec<Table> = match &options.tables {
        None => catalog.tables.clone(),
        Some(names) => names
            .iter()
            .map(|n| {
                catalog
                    .tables
                    .iter()
                    .find(|t| &t.name == n)
                    .cloned()
                    .ok_or_else(|| unknown_table(n, db.display(), &catalog))
            })
            .collect::<Result<_>>()?,
    };
    let (scanned, objects) = super::export::prepare(
        engine,
        snapshot.as_mut(),
        &catalog,
        tables,
        options,
        db.display(),
    )?;
    // What the data files hold: an export leaves out the hidden rowid
    // column unless asked to keep it.
    let (tables, hidden): (Vec<Table>, Vec<Option<usize>>) = scanned
        .iter()
        .map(|t| {
            let drop = options.kind == ArchiveKind::Export && !options.keep_hidden_key;
            match drop.then(|| super::export::without_hidden_key(t)).flatten() {
                Some((t, i)) => (t, Some(i)),
                None => (t.clone(), None),
            }
        })
        .unzip();
    let total = if progress.wants_totals() {
        let mut sum = 0;
        for t in &tables {
            sum += snapshot.count_rows(t)?;
        }
        Some(sum)
    } else {
        None
    };
    let phase = match options.kind {
        ArchiveKind::Export => "export",
        _ => "backup",
    };
    progress.begin(phase, total, None);

    // Scanners: this snapshot plus forks that read the same moment, each
    // taking the next table from a shared queue.
    let mut scanners = vec![snapshot];
    while scanners.len() < options.scanners.max(1) {
        match scanners[0].fork()? {
            Some(s) => scanners.push(s),
            None => break,
        }
    }
    tracing::debug!(scanners = scanners.len(), "scanning");

    type Job = (usize, Receiver<DataBatch>);
    let (job_tx, job_rx) = sync_channel::<Job>(0);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let results: Mutex<Vec<(usize, Result<Vec<crate::manifest::Part>>)>> = Mutex::new(Vec::new());
    let rows: Vec<AtomicU64> = tables.iter().map(|_| AtomicU64::new(0)).collect();
    let next_table = AtomicUsize::new(0);

    let scan_result = std::thread::scope(|scope| {
        for _ in 0..options.encoders.max(1) {
            let job_rx = job_rx.clone();
            let (store, handle, results, tables) = (&store, &handle, &results, &tables);
            scope.spawn(move || {
                loop {
                    let job = job_rx.lock().expect("job queue").recv();
                    let Ok((i, batches)) = job else { break };
                    let mut writer = TableWriter::new(
                        store.clone(),
                        handle.clone(),
                        &tables[i],
                        options.write.clone(),
                    );
                    let mut outcome = Ok(());
                    for batch in batches.iter() {
                        if let Err(e) = writer.write(batch) {
                            outcome = Err(e);
                            break;
                        }
                    }
                    let parts = outcome.and_then(|()| writer.finish_table());
                    tracing::debug!(table = %tables[i].name, "encoder done");
                    let failed = parts.is_err();
                    results.lock().expect("results").push((i, parts));
                    if failed {
                        break;
                    }
                }
            });
        }
        drop(job_rx);
        let handles: Vec<_> = scanners
            .into_iter()
            .map(|mut snapshot| {
                let job_tx: SyncSender<Job> = job_tx.clone();
                let (tables, rows, next_table) = (&scanned, &rows, &next_table);
                let hidden = &hidden;
                scope.spawn(move || -> Result<()> {
                    loop {
                        let i = next_table.fetch_add(1, Ordering::SeqCst);
                        let Some(table) = tables.get(i) else {
                            return Ok(());
                        };
                        options.cancel.check()?;
                        progress.note(&table.name);
                        let (tx, rx) = sync_channel::<DataBatch>(2);
                        job_tx
                            .send((i, rx))
                            .map_err(|_| Error::internal(ENCODER_GONE))?;
                        tracing::debug!(table = %table.name, "scan starts");
                        snapshot.scan(table, &mut |batch| {
                            options.cancel.check()?;
                            let n = batch.num_rows() as u64;
                            rows[i].fetch_add(n, Ordering::Relaxed);
                            let bytes = batch.memory_size() as u64;
                            let batch = match hidden[i] {
                                Some(column) => super::export::drop_column(batch, column)?,
                                None => batch,
                            };
                            tx.send(batch).map_err(|_| Error::internal(ENCODER_GONE))?;
                            progress.advance(n, bytes);
                            Ok(())
                        })?;
                        tracing::debug!(table = %table.name, "scan ends");
                    }
                })
            })
            .collect();
        drop(job_tx);
        let mut outcome = Ok(());
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(Error::internal("a table scanner panicked")));
            if outcome.is_ok() {
                outcome = r;
            }
        }
        outcome
    });
    progress.end();
    let rows: Vec<u64> = rows.into_iter().map(AtomicU64::into_inner).collect();

    let mut results = results.into_inner().expect("results");
    if let Some(pos) = results.iter().position(|(_, r)| r.is_err()) {
        return Err(results.swap_remove(pos).1.unwrap_err());
    }
    scan_result?;
    results.sort_by_key(|(i, _)| *i);
    if results.len() != tables.len() {
        return Err(Error::internal("a table's encoder did not report"));
    }
    let mut out_tables = tables;
    for ((i, parts), table) in results.into_iter().zip(out_tables.iter_mut()) {
        table.parts = parts?;
        table.rows = rows[i];
    }
    Ok(Manifest {
        format: FORMAT_NAME.to_string(),
        format_version: FORMAT_VERSION,
        tool: Tool {
            name: "coffer".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
        kind: options.kind,
        data_format: options.write.data_format,
        created_at: String::new(),
        backup_point: point.time.to_string(),
        parent: None,
        source: Source {
            engine: engine.name().to_string(),
            engine_version: catalog.engine_version,
            database: catalog.database,
            position: point.position,
        },
        settings: catalog.settings,
        objects,
        tables: out_tables,
        checksum: None,
    })
}
