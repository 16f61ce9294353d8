//! `collection backup`: a full or incremental backup of a collection.

use std::sync::Arc;
use std::time::Instant;

use tokio::runtime::Handle;

use super::lock::RepoLock;
use super::repo::{self, CollectionInfo};
use super::{BackupMode, CollectionBackupOptions, CollectionBackupReport, capture_of, repository};
use crate::archive;
use crate::crypt::{self, Sealing};
use crate::engine::{Address, ChangeCapture, ChangeSnapshot, Engine};
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{
    ArchiveKind, DataFormat, FORMAT_NAME, FORMAT_VERSION, Manifest, Source, Table, TableKind, Tool,
};
use crate::ops::pipeline::{Encoding, ReadStream, Stream, scan_encode, scanners};
use crate::progress::Run;
use crate::store::Store;

/// The directory, inside an incremental backup, of the deleted keys.
pub const DELETED_DIR: &str = "deleted";

/// Back up collection `name` of the database `db`.
///
/// Takes the collection's lock in its repository, settles a backup a
/// previous run left pending, decides between full and incremental (see
/// [`BackupMode`]), writes the data, commits the manifest, and only then
/// trims the change log of what the backup covered.
pub async fn backup(
    engine: Arc<dyn Engine>,
    db: &Address,
    name: &str,
    options: CollectionBackupOptions,
    run: impl Into<Run>,
) -> Result<CollectionBackupReport> {
    let run = run.into();
    let started = Instant::now();
    let capture = capture_of(engine.as_ref())?;
    repo::check_name(name)?;
    let record = capture
        .collections(db.location())?
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| {
            Error::not_found(format!(
                "{db} has no collection named '{name}'; `coffer collection create` sets one up"
            ))
        })?;
    let repo = repository(db, record.repo.as_deref(), &options.store, true)?;
    let store = repo::collection_store(&repo, name);
    // An encrypted collection's backups are encrypted to the public key
    // its record holds, never to what the repository says.
    let sealed_to = crypt::collection_recipient(&record.id)?;
    let different = || {
        Error::invalid(format!(
            "{} holds a different collection named '{name}' (from another database); give this one its own repository or name",
            store.url()
        ))
    };
    match (repo::read_head(&store).await?, &sealed_to) {
        (None, None) => {
            // The repository lost it (emptied, or a new location): describe
            // the collection again; the backup will be a full one.
            let info = CollectionInfo::of(&record, engine.name(), db.database());
            repo::write_info(&store, &info).await?;
        }
        (None, Some(_)) => {
            return Err(Error::not_found(format!(
                "{} is missing, and collection '{name}' is encrypted: its key file cannot be written again without a key; put back collection.json, {} and {} from a copy, or drop the collection and create it anew",
                store.url_of(repo::COLLECTION_FILE),
                crypt::KEY_FILE,
                repo::SEALED_INFO_FILE
            )));
        }
        (Some(head), _) if head.belongs_to(&record.id) => {}
        _ => return Err(different()),
    }
    let sealing = sealed_to.map(|to| Sealing::Recipients(vec![to]));
    let store = match &sealing {
        Some(_) => store.with_keys(crypt::Keys::none()),
        None => store,
    };
    let lock = RepoLock::acquire(&store, "backup").await?;
    let sealed = sealing.map(|s| (s, shape_key(&record.id)));
    let result = locked_backup(engine, db, name, &options, run, &store, sealed, &lock).await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the collection lock; it lapses by itself");
    }
    let mut report = result?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn locked_backup(
    engine: Arc<dyn Engine>,
    db: &Address,
    name: &str,
    options: &CollectionBackupOptions,
    run: Run,
    store: &Store,
    sealed: Option<(Sealing, String)>,
    lock: &RepoLock,
) -> Result<CollectionBackupReport> {
    let capture = capture_of(engine.as_ref())?;
    let listing = repo::list_backups(store).await?;
    // Directories without a manifest are what killed runs left; nothing
    // else writes here while we hold the lock.
    for id in &listing.incomplete {
        tracing::info!(id, "removing the leftovers of an interrupted backup");
        for e in store.list(id).await? {
            store.delete(&e.path).await?;
        }
    }
    // A backup that stopped between its commit and its trim is finished
    // now; one that never committed is forgotten (its log entries stay).
    let record = find(capture, db, name)?;
    if let Some((pending, horizon)) = &record.pending {
        if listing.committed.contains(pending) {
            tracing::info!(id = %pending, "trimming the change log for a backup committed earlier");
            capture.trim(db.location(), name, pending, horizon)?;
        } else {
            capture.set_pending(db.location(), name, None)?;
        }
    }
    let record = find(capture, db, name)?;
    let latest = listing.committed.last().cloned();

    // Can the log continue the latest chain?
    let chain_full = match (&latest, options.mode) {
        (_, BackupMode::Full) => None,
        (None, mode) => refuse_or_full(
            mode,
            format!(
                "collection '{name}' has no backup yet in {}; take a full backup first",
                store.url()
            ),
        )?,
        (Some(latest), mode) if record.last_backup.as_ref() != Some(latest) => refuse_or_full(
            mode,
            format!(
                "the change log of {db} does not continue from {latest}, the latest backup of collection '{name}' (the database was restored, or another database wrote that backup); take a full backup"
            ),
        )?,
        (Some(latest), _) => {
            let chain = repo::chain_to(store, latest).await?;
            Some((chain[0].0.clone(), chain[0].2.clone(), latest.clone()))
        }
    };

    let mut snapshot = capture.begin(db.location(), name, chain_full.is_none())?;
    let mut point = snapshot.point();
    let mut parent = None;
    if let Some((full_id, full, latest)) = chain_full {
        let blocker = match &sealed {
            None => incremental_blocker(engine.as_ref(), snapshot.as_ref(), &full, &full_id),
            Some((_, key)) => {
                let recorded = match archive::read_head(&store.child(&full_id)).await? {
                    archive::Head::Encrypted(e) => e.shape,
                    archive::Head::Plain(_) => None,
                };
                sealed_blocker(engine.as_ref(), snapshot.as_ref(), recorded, key, &full_id)
            }
        };
        match blocker {
            None => parent = Some(latest),
            Some(why) => {
                refuse_or_full::<()>(options.mode, why)?;
                drop(snapshot);
                snapshot = capture.begin(db.location(), name, true)?;
                point = snapshot.point();
            }
        }
    }
    let kind = if parent.is_some() {
        ArchiveKind::Incremental
    } else {
        ArchiveKind::Full
    };
    let (id, backup_point) = repo::next_id(kind, point.time, &listing.committed);
    let dest = match &sealed {
        None => store.child(&id),
        Some((sealing, key)) => {
            let dest = store
                .child(&id)
                .with_sealing(Some(sealing.clone()))
                .begin_sealed();
            let digest = shape_digest(engine.as_ref(), snapshot.catalog(), key);
            dest.sealer().expect("sealed").set_shape(digest);
            dest
        }
    };
    let horizon = snapshot.horizon();
    tracing::info!(%id, %horizon, "collection backup");

    let handle = Handle::current();
    let opts = options.clone();
    let target = dest.clone();
    let prog = run.clone();
    let engine_name = engine.name();
    let mut manifest = tokio::task::spawn_blocking(move || {
        write_backup(snapshot, kind, target, handle, &opts, &prog, engine_name)
    })
    .await
    .map_err(|e| Error::internal(format!("the backup worker failed: {e}")))??;
    manifest.parent = parent;
    manifest.backup_point = backup_point.to_string();
    manifest.source.position = point.position;

    capture.set_pending(db.location(), name, Some((&id, &horizon)))?;
    lock.check().await?;
    let now = repo::list_backups(store).await?;
    if now.committed.last() != latest.as_ref() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "another backup of collection '{name}' was committed to {} while this one ran; nothing was committed, run it again",
                store.url()
            ),
        ));
    }
    manifest.created_at = jiff::Timestamp::now().to_string();
    archive::commit(&dest, &mut manifest).await?;
    let trimmed = match capture.trim(db.location(), name, &id, &horizon) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "backup {id} is committed but the change log was not trimmed; the next backup trims it");
            false
        }
    };
    Ok(CollectionBackupReport {
        collection: name.to_string(),
        id,
        repository: store.url().to_string(),
        bytes: match dest.sealer() {
            // Encrypted: what is stored, as `show` and `list` count it (the
            // backup is committed: a failed listing only loses the figure).
            Some(_) => dest
                .list("")
                .await
                .map(|all| all.iter().map(|e| e.size).sum())
                .unwrap_or_else(|_| repo::committed_size(&manifest)),
            None => repo::committed_size(&manifest),
        },
        manifest,
        trimmed,
        seconds: 0.0,
    })
}

fn find(
    capture: &dyn ChangeCapture,
    db: &Address,
    name: &str,
) -> Result<crate::engine::CollectionRecord> {
    capture
        .collections(db.location())?
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| Error::not_found(format!("{db} has no collection named '{name}'")))
}

/// With `--incremental`, the reason an incremental cannot be taken is the
/// error; with `--auto` a full backup is taken instead.
fn refuse_or_full<T>(mode: BackupMode, why: String) -> Result<Option<T>> {
    match mode {
        BackupMode::Incremental => Err(Error::invalid(format!(
            "{why} (`--auto` takes one when needed)"
        ))),
        _ => {
            tracing::info!(reason = %why, "taking a full backup");
            Ok(None)
        }
    }
}

/// Why the snapshot cannot be backed up as an incremental on top of the
/// chain whose full backup is `full`, if it cannot.
pub(crate) fn incremental_blocker(
    engine: &dyn Engine,
    snapshot: &dyn ChangeSnapshot,
    full: &Manifest,
    full_id: &str,
) -> Option<String> {
    let catalog = snapshot.catalog();
    for table in &catalog.tables {
        if let Some(problem) = snapshot.capture_problem(table) {
            return Some(format!("{problem}; take a full backup"));
        }
        let Some(before) = full.tables.iter().find(|t| t.name == table.name) else {
            return Some(format!(
                "table '{}' is not in the chain's full backup {full_id}; take a full backup",
                table.name
            ));
        };
        if table_shape(before) != table_shape(table)
            || engine.shape(&full.objects, &table.name)
                != engine.shape(&catalog.objects, &table.name)
        {
            return Some(format!(
                "the schema of table '{}' differs from the chain's full backup {full_id}; take a full backup",
                table.name
            ));
        }
    }
    None
}

/// The key of an encrypted collection's shape digests: the secret token of
/// its id, which only its database (and its encrypted files) hold.
fn shape_key(id: &str) -> String {
    id.split_once(':')
        .map_or(id, |(token, _)| token)
        .to_string()
}

/// A keyed digest (HMAC-SHA256) of the shape of the snapshot's tables, as
/// [`incremental_blocker`] compares them, for the envelope of an encrypted
/// backup: the next incremental compares digests, without a key to read
/// the full backup's manifest, and the digest reveals nothing of the schema.
fn shape_digest(engine: &dyn Engine, catalog: &crate::engine::Catalog, key: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes())
        .expect("HMAC takes a key of any length");
    let mut tables: Vec<&Table> = catalog.tables.iter().collect();
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    for t in tables {
        let text = format!(
            "{:?}\u{0}{:?}\u{0}{:?}\n",
            t.name,
            table_shape(t),
            engine.shape(&catalog.objects, &t.name)
        );
        mac.update(&(text.len() as u64).to_le_bytes());
        mac.update(text.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

/// [`incremental_blocker`] for an encrypted collection, whose full backup
/// left the digest `recorded` of its shape.
fn sealed_blocker(
    engine: &dyn Engine,
    snapshot: &dyn ChangeSnapshot,
    recorded: Option<String>,
    key: &str,
    full_id: &str,
) -> Option<String> {
    for table in &snapshot.catalog().tables {
        if let Some(problem) = snapshot.capture_problem(table) {
            return Some(format!("{problem}; take a full backup"));
        }
    }
    if recorded.as_deref() != Some(shape_digest(engine, snapshot.catalog(), key).as_str()) {
        return Some(format!(
            "the schema of the collection's tables differs from the chain's full backup {full_id}; take a full backup"
        ));
    }
    None
}

/// What of a table's definition an incremental must share with its full
/// backup.
type Shape = (
    TableKind,
    Vec<String>,
    Option<String>,
    Vec<(String, String, bool)>,
);

fn table_shape(t: &Table) -> Shape {
    (
        t.kind,
        t.primary_key.clone(),
        t.hidden_key.clone(),
        t.columns
            .iter()
            .map(|c| (c.name.clone(), c.declared_type.clone(), c.nullable))
            .collect(),
    )
}

/// Read the snapshot (whole tables for a full backup, the changes for an
/// incremental) and write the archive's data files; returns the manifest,
/// not yet committed.
fn write_backup(
    mut snapshot: Box<dyn ChangeSnapshot>,
    kind: ArchiveKind,
    store: Store,
    handle: Handle,
    options: &CollectionBackupOptions,
    run: &Run,
    engine: &str,
) -> Result<Manifest> {
    let progress = run.progress.as_ref();
    let catalog = snapshot.catalog().clone();
    if let Some(why) = &catalog.backup_refusal {
        return Err(Error::invalid(why.clone()));
    }
    let incremental = kind == ArchiveKind::Incremental;
    // Slots: per table its rows (all, or the upserted ones), and for an
    // incremental its deleted keys.
    let mut slots: Vec<Table> = Vec::new();
    for t in &catalog.tables {
        slots.push(t.clone());
        if incremental {
            slots.push(snapshot.key_table(t));
        }
    }
    let total = if progress.wants_totals() {
        let mut sum = 0;
        for t in &catalog.tables {
            sum += if incremental {
                snapshot.count_changes(t)?
            } else {
                snapshot.count_rows(t)?
            };
        }
        Some(sum)
    } else {
        None
    };
    progress.begin("backup", total, None);

    let scanners = scanners(snapshot, options.scanners, |s| s.fork_changes())?;
    let deleted_store = store.child(DELETED_DIR);
    let streams: Vec<Stream> = slots
        .iter()
        .enumerate()
        .map(|(slot, spec)| Stream {
            table: spec.clone(),
            store: if incremental && slot % 2 == 1 {
                deleted_store.clone()
            } else {
                store.clone()
            },
            empty_file: false,
            first_part: 0,
        })
        .collect();
    let read: &ReadStream<'_, dyn ChangeSnapshot> = &|snapshot, slot, sink| {
        let table = &catalog.tables[if incremental { slot / 2 } else { slot }];
        if !incremental {
            snapshot.scan(table, sink)
        } else if slot % 2 == 1 {
            snapshot.scan_deletes(table, sink)
        } else {
            snapshot.scan_upserts(table, sink)
        }
    };
    let encoding = Encoding {
        write: &options.write,
        encoders: options.encoders,
        handle,
        cancel: &run.cancel,
        progress,
    };
    let written = scan_encode(scanners, &streams, read, &encoding);
    progress.end();
    let written = written?;
    let mut tables = Vec::new();
    for (slot, (w, mut table)) in written.into_iter().zip(slots).enumerate() {
        let mut parts = w.parts;
        table.rows = w.rows;
        if incremental && slot % 2 == 1 {
            if table.rows == 0 {
                continue;
            }
            for p in &mut parts {
                p.file.path = format!("{DELETED_DIR}/{}", p.file.path);
                if let Some(m) = &mut p.misfits {
                    m.path = format!("{DELETED_DIR}/{}", m.path);
                }
            }
            table.kind = TableKind::Deleted;
        }
        table.parts = parts;
        tables.push(table);
    }
    Ok(Manifest {
        format: FORMAT_NAME.to_string(),
        format_version: FORMAT_VERSION,
        tool: Tool {
            name: "coffer".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
        kind,
        data_format: DataFormat::Parquet,
        created_at: String::new(),
        backup_point: String::new(),
        parent: None,
        source: Source {
            engine: engine.to_string(),
            engine_version: catalog.engine_version,
            database: catalog.database,
            position: None,
        },
        settings: catalog.settings,
        objects: catalog.objects,
        tables,
        checksum: None,
    })
}
