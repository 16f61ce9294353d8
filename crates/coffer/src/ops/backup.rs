//! `backup` and `export`: one consistent snapshot of a database written as
//! an archive.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use super::pipeline::{Encoding, PIECE_PARTS, ReadStream, Stream, scan_encode, scanners};
use crate::archive;
use crate::datafile::{TableWriter, WriteOptions};
use crate::engine::{Address, Engine, Snapshot};
use crate::error::{Error, Result};
use crate::lock::{ARCHIVE_LOCK_FILE, RepoLock};
use crate::manifest::{ArchiveKind, FORMAT_NAME, FORMAT_VERSION, Manifest, Source, Table, Tool};
use crate::ops::export::ExportOptions;
use crate::progress::{Cancel, Progress, Run};
use crate::store::Store;

/// Options of a backup.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Part size and compression of the data files.
    pub write: WriteOptions,
    /// Tables to include; `None` for all.
    pub tables: Option<Vec<String>>,
    /// Parallel encoders (threads turning batches into Parquet).
    pub encoders: usize,
    /// Parallel table scanners, when the engine can read one moment on
    /// several connections (see [`crate::engine::Snapshot::fork`]).
    pub scanners: usize,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            write: WriteOptions::default(),
            tables: None,
            encoders: 2,
            scanners: 2,
        }
    }
}

/// A backup or an export with its options: the two archives of one
/// snapshot that [`write_archive`] writes.
#[derive(Debug, Clone)]
pub enum ArchiveOptions {
    /// An exact backup ([`backup`]).
    Backup(BackupOptions),
    /// A portable export ([`crate::ops::export::export`]).
    Export(ExportOptions),
}

/// What the archive writer does: a backup's or an export's options in one
/// shape, with the run's cancel flag.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub write: WriteOptions,
    pub kind: ArchiveKind,
    pub tables: Option<Vec<String>>,
    pub exclude: Vec<regex::Regex>,
    pub schemas: Vec<String>,
    pub encoders: usize,
    pub scanners: usize,
    pub keep_hidden_key: bool,
    pub cancel: Cancel,
}

impl Plan {
    fn new(options: ArchiveOptions, cancel: Cancel) -> Plan {
        match options {
            ArchiveOptions::Backup(o) => Plan {
                write: o.write,
                kind: ArchiveKind::Backup,
                tables: o.tables,
                exclude: Vec::new(),
                schemas: Vec::new(),
                encoders: o.encoders,
                scanners: o.scanners,
                keep_hidden_key: true,
                cancel,
            },
            ArchiveOptions::Export(o) => Plan {
                write: o.write,
                kind: ArchiveKind::Export,
                tables: o.tables,
                exclude: o.exclude,
                schemas: o.schemas,
                encoders: o.encoders,
                scanners: o.scanners,
                keep_hidden_key: o.keep_hidden_key,
                cancel,
            },
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
    run: impl Into<Run>,
) -> Result<BackupReport> {
    write_archive(engine, db, dest, ArchiveOptions::Backup(options), run).await
}

/// Write a backup or an export of `db` with `engine` as a new archive at
/// `dest` ([`backup`] and [`crate::ops::export::export`] in one).
pub async fn write_archive(
    engine: Arc<dyn Engine>,
    db: &Address,
    dest: &Store,
    options: ArchiveOptions,
    run: impl Into<Run>,
) -> Result<BackupReport> {
    let Run { progress, cancel } = run.into();
    let options = Plan::new(options, cancel);
    let started = Instant::now();
    if options.kind == ArchiveKind::Backup && !engine.restores() {
        return Err(Error::invalid(format!(
            "coffer cannot restore {} databases yet, so it takes no backups of {db}: a backup nothing can restore is not a backup; `coffer export` writes its tables as Parquet or CSV",
            engine.name()
        )));
    }
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
    options: Plan,
    progress: Arc<dyn Progress>,
    lock: &RepoLock,
) -> Result<Manifest> {
    archive::prepare_destination(dest).await?;
    // An encrypted archive gets its own data key here.
    let dest = &dest.begin_sealed();
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
    options: &Plan,
    progress: &dyn Progress,
) -> Result<Manifest> {
    let mut snapshot = engine.snapshot(db.location())?;
    let point = snapshot.point();
    let catalog = snapshot.catalog().clone();
    if options.kind != ArchiveKind::Export
        && let Some(why) = &catalog.backup_refusal
    {
        return Err(Error::invalid(why.clone()));
    }
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
            let drop = !options.keep_hidden_key;
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

    let mut scanners = scanners(snapshot, options.scanners, |s| s.fork())?;
    // A table the engine splits is read in pieces, each a stream of its
    // own, so that one large table keeps every scanner busy.
    let mut streams: Vec<Stream> = Vec::new();
    let mut pieces: Vec<(usize, usize, usize)> = Vec::new();
    let wanted = scanners.len();
    for (i, t) in tables.iter().enumerate() {
        let n = if wanted > 1 {
            scanners[0].pieces(&scanned[i], wanted)?.max(1)
        } else {
            1
        };
        for k in 0..n {
            streams.push(Stream {
                table: t.clone(),
                store: store.clone(),
                // A split table gets its empty file below, if it has none.
                empty_file: n == 1,
                first_part: k * PIECE_PARTS,
            });
            pieces.push((i, k, n));
        }
    }
    let read: &ReadStream<'_, dyn Snapshot> = &|snapshot, s, sink| {
        let (i, piece, n) = pieces[s];
        let table = &scanned[i];
        match hidden[i] {
            Some(column) => snapshot.scan_piece(table, piece, n, &mut |batch| {
                sink(super::export::drop_column(batch, column)?)
            }),
            None => snapshot.scan_piece(table, piece, n, sink),
        }
    };
    let encoding = Encoding {
        write: &options.write,
        encoders: options.encoders,
        handle: handle.clone(),
        cancel: &options.cancel,
        progress,
    };
    let written = scan_encode(scanners, &streams, read, &encoding);
    progress.end();
    let mut out_tables = tables;
    for (&(i, _, _), w) in pieces.iter().zip(written?) {
        out_tables[i].parts.extend(w.parts);
        out_tables[i].rows += w.rows;
    }
    for table in &mut out_tables {
        if table.parts.is_empty() {
            // Every table has a data file, an empty one too.
            table.parts =
                TableWriter::new(store.clone(), handle.clone(), table, options.write.clone())
                    .finish_table()?;
        }
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
