//! Backup collections: named sets of tables backed up as chains of one full
//! backup and incrementals, restorable to any backup point.
//!
//! A collection lives in two places. The database records it and captures
//! its changes (see [`ChangeCapture`]); the repository holds
//! `collections/<name>/collection.json` and one archive per backup, named
//! by time (`20261124T101500Z_full`, `20261124T111500Z_incremental`). An
//! incremental archive lists, per table, the rows upserted since its parent
//! (a table entry like any other) and the keys deleted (an entry of kind
//! `deleted` whose columns are the table's key, under `deleted/`). See
//! `docs/COLLECTIONS.md`.
//!
//! * [`create`] records the collection and installs change capture;
//! * [`backup::backup`] takes a full or incremental backup;
//! * [`restore::restore`] rebuilds the tables as of any backup;
//! * [`list`], [`show`] describe a repository's collections;
//! * [`prune::prune`] deletes old chains; [`drop_collection`] removes capture
//!   (and with `purge` the backups).

pub mod backup;
pub use crate::lock;
pub mod prune;
pub mod repo;
pub mod restore;

use crate::datafile::WriteOptions;
use crate::engine::{Address, ChangeCapture, CollectionRecord, Engine};
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{ArchiveKind, Manifest, Table, TableKind};
use crate::store::{Store, StoreOptions, is_local};

use self::lock::{LockInfo, RepoLock};
use self::repo::{CollectionInfo, collection_store};

/// Which kind of backup `collection backup` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackupMode {
    /// A full backup: whole tables; starts a new chain.
    #[default]
    Full,
    /// An incremental on top of the latest backup; fails, saying why, when
    /// there is none, the log does not continue from it, or a table's
    /// schema changed.
    Incremental,
    /// An incremental when one can be taken, a full backup otherwise.
    Auto,
}

/// Options of a collection backup.
#[derive(Debug, Clone)]
pub struct CollectionBackupOptions {
    /// Full, incremental or whichever fits.
    pub mode: BackupMode,
    /// How data files are written.
    pub write: WriteOptions,
    /// Threads that encode data files.
    pub encoders: usize,
    /// Parallel table readers, when the engine can read one moment on
    /// several connections (see [`crate::engine::ChangeSnapshot::fork_changes`]).
    pub scanners: usize,
    /// How to reach the repository.
    pub store: StoreOptions,
}

impl Default for CollectionBackupOptions {
    fn default() -> Self {
        CollectionBackupOptions {
            mode: BackupMode::Full,
            write: WriteOptions::default(),
            encoders: 2,
            scanners: 2,
            store: StoreOptions::default(),
        }
    }
}

/// What a collection backup did.
#[derive(Debug, Clone)]
pub struct CollectionBackupReport {
    /// The collection.
    pub collection: String,
    /// The new backup's id.
    pub id: String,
    /// The collection's directory in the repository.
    pub repository: String,
    /// The committed manifest.
    pub manifest: Manifest,
    /// Its size in the repository, as `show` and `list` count it
    /// ([`repo::Listing::size_of`]).
    pub bytes: u64,
    /// Whether the change log was trimmed (if not, the next backup does it).
    pub trimmed: bool,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Rows upserted (or, in a full backup, all rows) and keys deleted by one
/// backup, per table.
pub fn table_changes(m: &Manifest) -> Vec<(String, u64, u64)> {
    let mut out: Vec<(String, u64, u64)> = Vec::new();
    for t in &m.tables {
        let i = match out.iter().position(|(n, _, _)| n == &t.name) {
            Some(i) => i,
            None => {
                out.push((t.name.clone(), 0, 0));
                out.len() - 1
            }
        };
        if t.kind == TableKind::Deleted {
            out[i].2 += t.rows;
        } else {
            out[i].1 += t.rows;
        }
    }
    out
}

/// Where restore takes the tables to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RestorePoint {
    /// The latest backup.
    #[default]
    Latest,
    /// A backup by id.
    Backup(String),
    /// The latest backup whose backup point is at or before this time.
    At(jiff::Timestamp),
}

/// Options of a collection restore.
#[derive(Debug, Clone, Default)]
pub struct CollectionRestoreOptions {
    /// Which backup point.
    pub point: RestorePoint,
    /// Tables to restore; empty for all of the collection's.
    pub tables: Vec<String>,
    /// Replace tables that exist in the target.
    pub replace: bool,
}

/// What a collection restore did.
#[derive(Debug, Clone)]
pub struct CollectionRestoreReport {
    /// The collection.
    pub collection: String,
    /// The collection's directory in the repository.
    pub repository: String,
    /// The backups applied, full first.
    pub chain: Vec<String>,
    /// The manifest of the backup restored to.
    pub point: Manifest,
    /// The tables restored.
    pub tables: Vec<String>,
    /// Rows of the full backup loaded.
    pub rows_loaded: u64,
    /// Rows upserted by incrementals.
    pub rows_upserted: u64,
    /// Rows deleted by incrementals.
    pub rows_deleted: u64,
    /// Bytes of data files read.
    pub bytes: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// The engine's change capture, or a clear error.
pub(crate) fn capture_of(engine: &dyn Engine) -> Result<&dyn ChangeCapture> {
    engine.capture().ok_or_else(|| {
        Error::invalid(format!(
            "the {} engine does not support backup collections",
            engine.name()
        ))
    })
}

/// The repository of a collection of `db`, recorded or default.
pub(crate) fn repository(
    db: &Address,
    recorded: Option<&str>,
    options: &StoreOptions,
    create: bool,
) -> Result<Store> {
    let location = recorded
        .map(str::to_string)
        .unwrap_or_else(|| db.default_repository().to_string());
    if create {
        Store::create(&location, options)
    } else {
        Store::open(&location, options)
    }
}

/// The repository location that the collections of `db` back up to, as
/// recorded in the database (so `--db` can stand for `--repo`): the one of
/// collection `name`, or, with no name, the one all of its collections
/// share. Fails with a sentence when `db` has no such collection or its
/// collections use several repositories.
pub fn repository_of_database(
    engine: &dyn Engine,
    db: &Address,
    name: Option<&str>,
) -> Result<String> {
    let records = capture_of(engine)?.collections(db.location())?;
    let location = |r: &CollectionRecord| {
        r.repo
            .clone()
            .unwrap_or_else(|| db.default_repository().to_string())
    };
    match name {
        Some(name) => records
            .iter()
            .find(|r| r.name == name)
            .map(location)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "{db} has no collection named '{}'; give the repository with --repo, or `coffer collection list --db {db}` lists its collections",
                    name.escape_debug()
                ))
            }),
        None => {
            let mut locations: Vec<String> = records.iter().map(location).collect();
            locations.sort();
            locations.dedup();
            match locations.len() {
                0 => Ok(db.default_repository().to_string()),
                1 => Ok(locations.remove(0)),
                _ => Err(Error::invalid(format!(
                    "the collections of {db} use {} repositories ({}); name one with --repo",
                    locations.len(),
                    locations.join(", ")
                ))),
            }
        }
    }
}

/// Options of [`create`].
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The repository; the directory `<db>.backups` beside the database
    /// when `None`.
    pub repo: Option<String>,
    /// How to reach the repository.
    pub store: StoreOptions,
}

/// What [`create`] did.
#[derive(Debug, Clone)]
pub struct CreateReport {
    /// The collection as recorded.
    pub info: CollectionInfo,
    /// The collection's directory in the repository.
    pub repository: String,
}

/// Create collection `name` of `tables` in the database `db`: install
/// change capture (all or nothing) and write `collection.json` to the
/// repository.
pub async fn create(
    engine: &dyn Engine,
    db: &Address,
    name: &str,
    tables: &[String],
    options: &CreateOptions,
) -> Result<CreateReport> {
    repo::check_name(name)?;
    let capture = capture_of(engine)?;
    if tables.is_empty() {
        return Err(Error::invalid(format!(
            "collection '{name}' needs at least one table; name them with --table"
        )));
    }
    // A relative local repository is recorded as an absolute path: later
    // commands may run from another directory.
    let recorded = match &options.repo {
        Some(r) if is_local(r) && !r.starts_with("file://") => Some(
            std::path::absolute(r)
                .map_err(|e| Error::invalid(format!("cannot resolve the path {r}: {e}")))?
                .to_string_lossy()
                .into_owned(),
        ),
        other => other.clone(),
    };
    // An encrypted collection has its own key pair; its public half is part
    // of the id recorded in the database, so that every backup is encrypted
    // to it whatever the repository says (see repo::SealedCollection).
    let sealed =
        (options.store.sealing.clone()).map(|sealing| (sealing, crate::crypt::DataKey::generate()));
    let id = match &sealed {
        Some((_, key)) => format!("{}:{}", crate::crypt::secret_token(), key.recipient()),
        None => lock::random_token(),
    };
    let record = CollectionRecord {
        name: name.to_string(),
        id,
        tables: tables.to_vec(),
        repo: recorded.clone(),
        created_at: jiff::Timestamp::now().to_string(),
        last_backup: None,
        pending: None,
    };
    capture.install(db.location(), &record)?;
    let info = CollectionInfo::of(&record, engine.name(), db.database());
    let written = async {
        let repo = repository(db, recorded.as_deref(), &options.store, true)?;
        let store = collection_store(&repo, name);
        if repo::read_head(&store).await?.is_some()
            && !repo::list_backups(&store).await?.committed.is_empty()
        {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{} already holds a collection named '{name}' with backups; choose another name, or delete it with `coffer collection drop {name} --purge` from its database",
                    repo.url()
                ),
            ));
        }
        match &sealed {
            Some((sealing, key)) => repo::write_sealed(&store, &info, key, sealing).await?,
            None => repo::write_info(&store, &info).await?,
        }
        Ok(store.url().to_string())
    }
    .await;
    match written {
        Ok(url) => Ok(CreateReport {
            info,
            repository: url,
        }),
        Err(e) => {
            if let Err(undo) = capture.remove(db.location(), name) {
                tracing::warn!(error = %undo, "could not undo the change capture just installed");
            }
            Err(e)
        }
    }
}

/// Options of [`drop_collection`].
#[derive(Debug, Clone, Default)]
pub struct DropOptions {
    /// Also delete the collection's backups from its repository.
    pub purge: bool,
    /// How to reach the repository.
    pub store: StoreOptions,
}

/// What [`drop_collection`] did.
#[derive(Debug, Clone)]
pub struct DropReport {
    /// The tables whose capture was removed.
    pub tables: Vec<String>,
    /// The repository directory, when purged.
    pub purged: Option<String>,
    /// Backups deleted by the purge.
    pub backups_deleted: usize,
}

/// Remove collection `name` from `db` (its triggers, change logs and
/// record); with `purge`, first delete its backups and `collection.json`
/// from the repository.
pub async fn drop_collection(
    engine: &dyn Engine,
    db: &Address,
    name: &str,
    options: &DropOptions,
) -> Result<DropReport> {
    repo::check_name(name)?;
    let capture = capture_of(engine)?;
    let record = capture
        .collections(db.location())?
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| {
            Error::not_found(format!(
                "{db} has no collection named '{name}'; nothing was dropped"
            ))
        })?;
    let mut purged = None;
    let mut backups_deleted = 0;
    if options.purge {
        let repo = repository(db, record.repo.as_deref(), &options.store, false);
        let repo = match repo {
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            other => Some(other?),
        };
        if let Some(repo) = repo {
            let store = collection_store(&repo, name);
            if let Some(head) = repo::read_head(&store).await? {
                if !head.belongs_to(&record.id) {
                    return Err(Error::invalid(format!(
                        "{} holds a different collection named '{name}' (from another database); it was not purged and nothing was dropped",
                        store.url()
                    )));
                }
                let lock = RepoLock::acquire(&store, "drop").await?;
                let deleted = purge(&store).await;
                let released = lock.release().await;
                backups_deleted = deleted?;
                released?;
                store.delete(repo::COLLECTION_FILE).await?;
                if let repo::InfoHead::Encrypted(h) = head {
                    for f in &h.files {
                        store.delete(&f.path).await?;
                    }
                }
                purged = Some(store.url().to_string());
            }
        }
    }
    capture.remove(db.location(), name)?;
    Ok(DropReport {
        tables: record.tables,
        purged,
        backups_deleted,
    })
}

/// Delete every backup of the collection at `store`, newest first, each
/// manifest before its files.
async fn purge(store: &Store) -> Result<usize> {
    let listing = repo::list_backups(store).await?;
    for id in listing.committed.iter().rev() {
        delete_archive(store, id).await?;
    }
    for id in &listing.incomplete {
        delete_archive(store, id).await?;
    }
    Ok(listing.committed.len())
}

/// Delete one archive: its manifest first (from then on it does not
/// exist), then its other files.
pub(crate) async fn delete_archive(store: &Store, id: &str) -> Result<()> {
    let archive = store.child(id);
    archive.delete(crate::manifest::MANIFEST).await?;
    for e in archive.list("").await? {
        archive.delete(&e.path).await?;
    }
    Ok(())
}

/// One collection of a repository, as [`list`] shows it.
#[derive(Debug, Clone)]
pub struct CollectionSummary {
    /// Its `collection.json`.
    pub info: CollectionInfo,
    /// Committed backups.
    pub backups: usize,
    /// Chains (full backups).
    pub chains: usize,
    /// The latest backup.
    pub latest: Option<String>,
    /// Bytes stored: its backups and leftovers
    /// ([`repo::Listing::total_size`], as [`show`] counts them).
    pub bytes: u64,
    /// How it is encrypted, if it is. Listed without a key, its `info` has
    /// only its name.
    pub encrypted: Option<crate::crypt::Encryption>,
}

/// The collections of the repository at `repo`.
pub async fn list(repo: &Store) -> Result<Vec<CollectionSummary>> {
    repo.probe().await?;
    let mut out = Vec::new();
    for dir in repo.list_dirs("collections").await? {
        let store = repo.child(&format!("collections/{dir}"));
        let (info, encrypted) = match repo::read_head(&store).await? {
            None => continue,
            Some(repo::InfoHead::Plain(info)) => (*info, None),
            Some(repo::InfoHead::Encrypted(head)) if store.keys().is_empty() => {
                // Without a key: what collection.json shows.
                let info = CollectionInfo {
                    format: repo::COLLECTION_FORMAT.to_string(),
                    format_version: 1,
                    name: head.name.clone(),
                    id: String::new(),
                    engine: String::new(),
                    database: String::new(),
                    tables: Vec::new(),
                    created_at: String::new(),
                };
                (info, Some(head.encryption.clone()))
            }
            Some(repo::InfoHead::Encrypted(head)) => {
                let enc = head.encryption.clone();
                (repo::open_sealed(&store, &head).await?.1, Some(enc))
            }
        };
        let listing = repo::list_backups(&store).await?;
        out.push(CollectionSummary {
            backups: listing.committed.len(),
            chains: listing
                .committed
                .iter()
                .filter(|id| id.ends_with("_full"))
                .count(),
            latest: listing.committed.last().cloned(),
            bytes: listing.total_size(),
            info,
            encrypted,
        });
    }
    Ok(out)
}

/// One backup as [`show`] describes it.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// Its id.
    pub id: String,
    /// Full or incremental.
    pub kind: ArchiveKind,
    /// The backup it builds on.
    pub parent: Option<String>,
    /// Its backup point.
    pub backup_point: String,
    /// Per table: name, rows upserted (all rows for a full), keys deleted.
    pub tables: Vec<(String, u64, u64)>,
    /// Its size in the repository ([`repo::Listing::size_of`]: every file,
    /// what pruning it frees).
    pub bytes: u64,
}

/// A full backup and the incrementals on top of it.
#[derive(Debug, Clone)]
pub struct ChainSummary {
    /// The backups, full first; a chain whose full backup is missing (a
    /// damaged repository) starts with an incremental.
    pub backups: Vec<BackupSummary>,
}

/// A collection in detail.
#[derive(Debug, Clone)]
pub struct CollectionDetails {
    /// Its `collection.json`.
    pub info: CollectionInfo,
    /// Its directory in the repository.
    pub repository: String,
    /// Chains, oldest first.
    pub chains: Vec<ChainSummary>,
    /// Directories of backups that never committed.
    pub incomplete: Vec<String>,
    /// Bytes stored: its backups and leftovers, as [`list`] counts them.
    pub bytes: u64,
    /// Who holds its lock, if anyone.
    pub locked_by: Option<LockInfo>,
}

/// Group backups into chains by their parents, oldest first.
pub(crate) fn chains_of(backups: Vec<(String, Manifest)>) -> Vec<Vec<(String, Manifest)>> {
    let mut chains: Vec<Vec<(String, Manifest)>> = Vec::new();
    let mut chain_of = std::collections::HashMap::new();
    for (id, m) in backups {
        let at = match (&m.kind, m.parent.as_ref().and_then(|p| chain_of.get(p))) {
            (ArchiveKind::Incremental, Some(&i)) => i,
            _ => {
                chains.push(Vec::new());
                chains.len() - 1
            }
        };
        chain_of.insert(id.clone(), at);
        chains[at].push((id, m));
    }
    chains
}

/// Describe collection `name` of the repository `repo`: every chain and
/// backup.
pub async fn show(repo: &Store, name: &str) -> Result<CollectionDetails> {
    let (store, info) = repo::require_info(repo, name).await?;
    let listing = repo::list_backups(&store).await?;
    let backups = repo::read_backups(&store, &listing.committed).await?;
    let chains = chains_of(backups)
        .into_iter()
        .map(|chain| ChainSummary {
            backups: chain
                .into_iter()
                .map(|(id, m)| BackupSummary {
                    kind: m.kind,
                    parent: m.parent.clone(),
                    backup_point: m.backup_point.clone(),
                    tables: table_changes(&m),
                    bytes: listing.size_of(&id),
                    id,
                })
                .collect(),
        })
        .collect();
    let locked_by = store
        .get_opt(lock::LOCK_FILE)
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok());
    Ok(CollectionDetails {
        info,
        repository: store.url().to_string(),
        chains,
        bytes: listing.total_size(),
        incomplete: listing.incomplete,
        locked_by,
    })
}

/// The tables of a collection's full backup (without deleted-key entries).
pub fn data_tables(m: &Manifest) -> impl Iterator<Item = &Table> {
    m.tables.iter().filter(|t| t.kind != TableKind::Deleted)
}
