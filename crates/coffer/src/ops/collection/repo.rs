//! A collection's place in its repository: `collection.json`, the backups
//! named by time, and the chains they form.
//!
//! ```text
//! <repo>/collections/<name>/collection.json
//! <repo>/collections/<name>/lock.json                      while an operation runs
//! <repo>/collections/<name>/20261124T101500Z_full/         an archive (manifest.json, ...)
//! <repo>/collections/<name>/20261124T111500Z_incremental/
//! ```

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::archive;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{ArchiveKind, FileRef, MANIFEST, Manifest, collection_segment};
use crate::store::Store;

/// The name of a collection's description in the repository.
pub const COLLECTION_FILE: &str = "collection.json";
/// The value of `format` in `collection.json`.
pub const COLLECTION_FORMAT: &str = "coffer-collection";

/// What `collection.json` holds: the collection as the repository knows it,
/// enough to restore it without the source database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionInfo {
    /// Always [`COLLECTION_FORMAT`].
    pub format: String,
    /// `1`.
    pub format_version: u32,
    /// The collection's name.
    pub name: String,
    /// Its identity, also recorded in the source database.
    pub id: String,
    /// The engine of the source database.
    pub engine: String,
    /// The source database's file name (never a path or credentials).
    pub database: String,
    /// The tables it backs up.
    pub tables: Vec<String>,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
}

impl CollectionInfo {
    /// The description of the collection `record` of the database named
    /// `database` (as [`crate::engine::Address::database`] gives it).
    pub fn of(
        record: &crate::engine::CollectionRecord,
        engine: &str,
        database: &str,
    ) -> CollectionInfo {
        CollectionInfo {
            format: COLLECTION_FORMAT.to_string(),
            format_version: 1,
            name: record.name.clone(),
            id: record.id.clone(),
            engine: engine.to_string(),
            database: database.to_string(),
            tables: record.tables.clone(),
            created_at: record.created_at.clone(),
        }
    }
}

/// Check a collection name: it becomes a directory of the repository and
/// a word on the command line, so it is kept plain.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "'{}' is not a valid collection name; use up to 100 letters, digits, '_', '-' and '.', not starting with '.'",
            name.escape_debug()
        )))
    }
}

/// The store of collection `name` inside the repository `repo`.
pub fn collection_store(repo: &Store, name: &str) -> Store {
    repo.child(&format!("collections/{}", collection_segment(name)))
}

/// Read `collection.json` of the collection at `store`; `None` if absent.
/// An encrypted collection is opened with the store's keys.
pub async fn read_info(store: &Store) -> Result<Option<CollectionInfo>> {
    Ok(match read_head(store).await? {
        None => None,
        Some(InfoHead::Plain(info)) => Some(*info),
        Some(InfoHead::Encrypted(head)) => Some(open_sealed(store, &head).await?.1),
    })
}

fn parse_info(bytes: &[u8], url: &str) -> Result<CollectionInfo> {
    let info: CollectionInfo = serde_json::from_slice(bytes).map_err(|e| {
        Error::corrupt(format!(
            "{url} is not a valid collection description ({e}); the repository is damaged"
        ))
    })?;
    if info.format != COLLECTION_FORMAT || info.format_version != 1 {
        return Err(Error::invalid(format!(
            "{url} is not a collection this coffer reads (format {} version {}); use a matching coffer release",
            info.format, info.format_version
        )));
    }
    Ok(info)
}

/// Read `collection.json`, failing clearly when the repository has no such
/// collection. An encrypted collection is opened with the store's keys,
/// and the store returned opens its backups (it holds the collection's key).
pub async fn require_info(repo: &Store, name: &str) -> Result<(Store, CollectionInfo)> {
    let (store, head) = require_head(repo, name).await?;
    match head {
        InfoHead::Plain(info) => Ok((store, *info)),
        InfoHead::Encrypted(head) => {
            let opening = store.clone().with_keys(repo.keys().clone());
            let (key, info) = open_sealed(&opening, &head).await?;
            let mut keys = crate::crypt::Keys::none();
            keys.add(key.identity(), &opening.url_of(&head.encryption.key));
            Ok((store.with_keys(keys), info))
        }
    }
}

/// The `format` of the `collection.json` of an encrypted collection.
pub const SEALED_FORMAT: &str = "coffer-encrypted-collection";
/// The encrypted [`CollectionInfo`] of an encrypted collection.
pub const SEALED_INFO_FILE: &str = "collection.age";

/// The `collection.json` of an encrypted collection: what is readable
/// without a key. The collection has its own key pair: every backup's key
/// file is encrypted to its public half ([`SealedCollection::recipient`]),
/// so taking a backup needs no secret, and its secret half is the key file
/// here, encrypted to the user's recipients. `collection.age` holds the
/// [`CollectionInfo`], encrypted to the collection's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedCollection {
    /// Always [`SEALED_FORMAT`].
    pub format: String,
    /// `1`.
    pub format_version: u32,
    /// The collection's name (also its directory's).
    pub name: String,
    /// Who opens it: the user's recipients, and the collection's key file.
    pub encryption: crate::crypt::Encryption,
    /// The collection's public key, which its backups are encrypted to.
    pub recipient: String,
    /// SHA-256 of the collection's id, to tell its database from another
    /// one without revealing the id.
    pub id_sha256: String,
    /// The key file and `collection.age`, with sizes and checksums.
    pub files: Vec<FileRef>,
}

/// What `collection.json` is.
#[derive(Debug, Clone)]
pub enum InfoHead {
    /// An unencrypted collection's description.
    Plain(Box<CollectionInfo>),
    /// An encrypted collection's public part.
    Encrypted(Box<SealedCollection>),
}

impl InfoHead {
    /// Whether this is the collection whose record in its database has id
    /// `id` (an encrypted one shows only the id's digest, and its public
    /// key, which is part of the id).
    pub fn belongs_to(&self, id: &str) -> bool {
        match self {
            InfoHead::Plain(info) => info.id == id,
            InfoHead::Encrypted(h) => {
                h.id_sha256 == id_digest(id)
                    && id.split_once(':').map(|(_, r)| r) == Some(h.recipient.as_str())
            }
        }
    }
}

/// Read `collection.json` of the collection at `store` without decrypting
/// anything; `None` if absent.
pub async fn read_head(store: &Store) -> Result<Option<InfoHead>> {
    let Some(bytes) = store.get_opt(COLLECTION_FILE).await? else {
        return Ok(None);
    };
    let url = store.url_of(COLLECTION_FILE);
    let sealed = crate::manifest::format_of(&bytes).as_deref() == Some(SEALED_FORMAT);
    if !sealed {
        return parse_info(&bytes, &url).map(|i| Some(InfoHead::Plain(Box::new(i))));
    }
    let head: SealedCollection = serde_json::from_slice(&bytes).map_err(|e| {
        Error::corrupt(format!(
            "{url} is not a valid collection description ({e}); the repository is damaged"
        ))
    })?;
    if head.format_version != 1 {
        return Err(Error::invalid(format!(
            "{url} is an encrypted collection of version {}, which this coffer does not read; use a newer coffer release",
            head.format_version
        )));
    }
    for f in &head.files {
        crate::manifest::check_relative_path(&f.path, &url)?;
    }
    if !head.files.iter().any(|f| f.path == head.encryption.key)
        || !head.files.iter().any(|f| f.path == SEALED_INFO_FILE)
    {
        return Err(Error::corrupt(format!(
            "{url} does not list its key file and {SEALED_INFO_FILE}; the repository is damaged"
        )));
    }
    Ok(Some(InfoHead::Encrypted(Box::new(head))))
}

/// Write the `collection.json` of an encrypted collection.
pub async fn write_head(store: &Store, head: &SealedCollection) -> Result<()> {
    store
        .put(
            COLLECTION_FILE,
            Bytes::from(crate::manifest::json_bytes(head)),
        )
        .await
}

/// The `collection.json` of collection `name` in `repo`, failing clearly
/// when there is none. For an encrypted collection the store returned has
/// no keys: what it reads of a backup is its envelope.
pub async fn require_head(repo: &Store, name: &str) -> Result<(Store, InfoHead)> {
    check_name(name)?;
    let store = collection_store(repo, name);
    match read_head(&store).await? {
        Some(head @ InfoHead::Encrypted(_)) => {
            Ok((store.with_keys(crate::crypt::Keys::none()), head))
        }
        Some(head) => Ok((store, head)),
        None => Err(no_collection(repo, name).await),
    }
}

async fn no_collection(repo: &Store, name: &str) -> Error {
    if let Err(e) = repo.probe().await {
        return e;
    }
    Error::not_found(format!(
        "{} holds no collection named '{name}'; `coffer collection list --repo {}` shows those it holds",
        repo.url(),
        repo.url()
    ))
}

/// Open an encrypted collection with the store's keys: its own key, and
/// its description.
pub async fn open_sealed(
    store: &Store,
    head: &SealedCollection,
) -> Result<(crate::crypt::DataKey, CollectionInfo)> {
    let enc = &head.encryption;
    let file = |path: &str| {
        head.files
            .iter()
            .find(|f| f.path == path)
            .expect("validated")
    };
    let key_url = store.url_of(&enc.key);
    let bytes = archive::fetch_checked(store, file(&enc.key)).await?;
    let key = store.keys().open_key(&bytes, &key_url, enc)?;
    let info_url = store.url_of(SEALED_INFO_FILE);
    let bytes = archive::fetch_checked(store, file(SEALED_INFO_FILE)).await?;
    let info = parse_info(&key.decrypt(&bytes, &info_url)?, &info_url)?;
    if info.name != head.name || key.recipient().to_string() != head.recipient {
        return Err(Error::corrupt(format!(
            "{} does not match {info_url}; the repository is damaged",
            store.url_of(COLLECTION_FILE)
        )));
    }
    Ok((key, info))
}

/// Write an encrypted collection's key file, description and
/// `collection.json` (last), for a new collection whose key is `key`.
pub async fn write_sealed(
    store: &Store,
    info: &CollectionInfo,
    key: &crate::crypt::DataKey,
    sealing: &crate::crypt::Sealing,
) -> Result<()> {
    use crate::crypt::{KEY_FILE, put_encrypted};
    let key_file = put_encrypted(store, KEY_FILE, &key.key_file(sealing)?).await?;
    let json = crate::manifest::json_bytes(info);
    let info_file = put_encrypted(store, SEALED_INFO_FILE, &key.encrypt(&json)?).await?;
    let head = SealedCollection {
        format: SEALED_FORMAT.to_string(),
        format_version: 1,
        name: info.name.clone(),
        encryption: sealing.describe(KEY_FILE),
        recipient: key.recipient().to_string(),
        id_sha256: id_digest(&info.id),
        files: vec![key_file, info_file],
    };
    write_head(store, &head).await
}

/// The SHA-256 of a collection id, as [`SealedCollection::id_sha256`].
pub fn id_digest(id: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("coffer collection id {id}")))
}

/// The names of the collections in the repository `repo`.
pub async fn collection_names(repo: &Store) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for dir in repo.list_dirs("collections").await? {
        let store = repo.child(&format!("collections/{dir}"));
        match read_head(&store).await? {
            Some(InfoHead::Plain(i)) => names.push(i.name),
            Some(InfoHead::Encrypted(h)) => names.push(h.name),
            None => {}
        }
    }
    Ok(names)
}

/// Write `collection.json`.
pub async fn write_info(store: &Store, info: &CollectionInfo) -> Result<()> {
    store
        .put(
            COLLECTION_FILE,
            Bytes::from(crate::manifest::json_bytes(info)),
        )
        .await
}

/// A backup id: `YYYYMMDDTHHMMSSZ_full` or `..._incremental`; the name
/// order is the time order.
pub fn backup_id(time: jiff::Timestamp, kind: ArchiveKind) -> String {
    let stamp = time.strftime("%Y%m%dT%H%M%SZ");
    match kind {
        ArchiveKind::Incremental => format!("{stamp}_incremental"),
        _ => format!("{stamp}_full"),
    }
}

/// The time in a backup id, if it is one.
pub fn id_time(id: &str) -> Option<jiff::Timestamp> {
    let (stamp, kind) = id.split_once('_')?;
    if kind != "full" && kind != "incremental" {
        return None;
    }
    let t = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", stamp).ok()?;
    t.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// The id and the backup point of a backup whose snapshot was opened at
/// `snapshot`: the same whole second, the first at or after `snapshot`
/// and later than every id in `existing` (so that name order stays time
/// order even within one second). Rounding up, never down, keeps the
/// promise of `--at TIME` (a backup at or before TIME holds no change made
/// after TIME), and `--at` the time in an id selects that backup.
pub fn next_id(
    kind: ArchiveKind,
    snapshot: jiff::Timestamp,
    existing: &[String],
) -> (String, jiff::Timestamp) {
    let second = jiff::TimestampRound::new()
        .smallest(jiff::Unit::Second)
        .mode(jiff::RoundMode::Ceil);
    let mut time = snapshot.round(second).unwrap_or(snapshot);
    if let Some(last) = existing.iter().filter_map(|id| id_time(id)).max()
        && time < last + jiff::SignedDuration::from_secs(1)
    {
        time = last + jiff::SignedDuration::from_secs(1);
    }
    (backup_id(time, kind), time)
}

/// The backups of a collection directory: committed ones (with a manifest),
/// and leftovers of runs that never committed.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Ids of committed backups, oldest first.
    pub committed: Vec<String>,
    /// Ids of directories without a manifest.
    pub incomplete: Vec<String>,
    /// Bytes stored per id (all its files).
    pub bytes: std::collections::HashMap<String, u64>,
}

impl Listing {
    /// The size of backup (or leftover) `id`: the bytes of every file in
    /// its directory — data files, `SHA256SUMS`, `manifest.json` — which is
    /// what deleting it frees. `show`, `list` and `prune` all report this.
    pub fn size_of(&self, id: &str) -> u64 {
        self.bytes.get(id).copied().unwrap_or(0)
    }

    /// The size of several backups, each counted once.
    pub fn size_of_all<'a>(&self, ids: impl IntoIterator<Item = &'a String>) -> u64 {
        let ids: std::collections::BTreeSet<&String> = ids.into_iter().collect();
        ids.into_iter().map(|id| self.size_of(id)).sum()
    }

    /// The size of the collection's backups and leftovers together.
    pub fn total_size(&self) -> u64 {
        self.size_of_all(self.committed.iter().chain(&self.incomplete))
    }
}

/// The size, as [`Listing::size_of`] counts it, of the backup `manifest`
/// describes once [`archive::commit`] has written it: its data files,
/// `SHA256SUMS` and `manifest.json` (for the report of the backup that
/// wrote it, without listing the repository again).
pub fn committed_size(manifest: &Manifest) -> u64 {
    manifest.total_bytes() + manifest.sha256sums().len() as u64 + manifest.to_bytes().len() as u64
}

/// List the backups of the collection at `store` (one recursive listing).
pub async fn list_backups(store: &Store) -> Result<Listing> {
    let mut listing = Listing::default();
    let mut seen = std::collections::BTreeMap::<String, bool>::new();
    for entry in store.list("").await? {
        let Some((top, rest)) = entry.path.split_once('/') else {
            continue;
        };
        if id_time(top).is_none() {
            continue;
        }
        *listing.bytes.entry(top.to_string()).or_default() += entry.size;
        let has = seen.entry(top.to_string()).or_default();
        *has |= rest == MANIFEST;
    }
    for (id, has_manifest) in seen {
        if has_manifest {
            listing.committed.push(id);
        } else {
            listing.incomplete.push(id);
        }
    }
    Ok(listing)
}

/// Read the manifest of backup `id`, checking that it is a collection
/// backup. Of an encrypted backup read without a key (the store of
/// [`require_head`]) it is the outline its envelope gives: kind, parent
/// and times, no tables.
pub async fn read_backup(store: &Store, id: &str) -> Result<Manifest> {
    Ok(open_backup(store, id).await?.1)
}

/// [`read_backup`], with the store that reads backup `id`'s files (for an
/// encrypted backup opened with a key: the store that decrypts them).
pub async fn open_backup(store: &Store, id: &str) -> Result<(Store, Manifest)> {
    let child = store.child(id);
    let (child, m) = match archive::read_head(&child).await? {
        archive::Head::Plain(m) => (child, *m),
        archive::Head::Encrypted(e) if child.keys().is_empty() => (child, outline(&e)),
        archive::Head::Encrypted(e) => archive::open_envelope(&child, &e).await?,
    };
    let url = store.url_of(id);
    match (m.kind, &m.parent) {
        (ArchiveKind::Full, None) => Ok((child, m)),
        (ArchiveKind::Incremental, Some(parent)) if parent.as_str() < id => Ok((child, m)),
        _ => Err(Error::corrupt(format!(
            "{url} is not a valid collection backup (kind {:?}, parent {:?}); the repository is damaged",
            m.kind, m.parent
        ))),
    }
}

/// The manifest of an encrypted backup as far as its envelope tells.
fn outline(e: &crate::crypt::Envelope) -> Manifest {
    Manifest {
        format: crate::manifest::FORMAT_NAME.to_string(),
        format_version: crate::manifest::FORMAT_VERSION,
        tool: crate::manifest::Tool {
            name: "coffer".to_string(),
            version: String::new(),
        },
        kind: e.kind,
        data_format: Default::default(),
        created_at: e.created_at.clone(),
        backup_point: e.backup_point.clone(),
        parent: e.parent.clone(),
        source: crate::manifest::Source {
            engine: String::new(),
            engine_version: String::new(),
            database: String::new(),
            position: None,
        },
        settings: Default::default(),
        objects: Vec::new(),
        tables: Vec::new(),
        checksum: None,
    }
}

/// Read several manifests, a few at a time.
pub async fn read_backups(store: &Store, ids: &[String]) -> Result<Vec<(String, Manifest)>> {
    futures::stream::iter(ids.iter().cloned())
        .map(|id| async move {
            let m = read_backup(store, &id).await?;
            Ok::<_, Error>((id, m))
        })
        .buffered(8)
        .try_collect()
        .await
}

/// The chain that ends at backup `id`: its full backup first, then each
/// incremental in order, ending with `id`; each with the store that reads
/// its files ([`open_backup`]) and its manifest.
pub async fn chain_to(store: &Store, id: &str) -> Result<Vec<(String, Store, Manifest)>> {
    let mut chain = Vec::new();
    let mut next = Some(id.to_string());
    while let Some(id) = next {
        let (at, m) = match open_backup(store, &id).await {
            Err(e) if e.kind() == ErrorKind::NotFound && !chain.is_empty() => {
                return Err(Error::corrupt(format!(
                    "backup {} needs {id}, which is missing from {}; restore an earlier backup or take a full backup",
                    chain
                        .last()
                        .map(|(i, ..): &(String, Store, Manifest)| i.as_str())
                        .unwrap_or_default(),
                    store.url()
                )));
            }
            other => other?,
        };
        next = m.parent.clone();
        chain.push((id, at, m));
    }
    chain.reverse();
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_parse_back() {
        let t: jiff::Timestamp = "2026-11-24T10:15:00Z".parse().unwrap();
        assert_eq!(backup_id(t, ArchiveKind::Full), "20261124T101500Z_full");
        assert_eq!(
            backup_id(t, ArchiveKind::Incremental),
            "20261124T101500Z_incremental"
        );
        assert_eq!(id_time("20261124T101500Z_full"), Some(t));
        assert_eq!(id_time("20261124T101500Z_other"), None);
        assert_eq!(id_time("collection.json"), None);
        let (later, point) = next_id(
            ArchiveKind::Incremental,
            t,
            &["29991231T235959Z_full".to_string()],
        );
        assert_eq!(later, "30000101T000000Z_incremental");
        assert_eq!(Some(point), id_time(&later));
        assert!(later.as_str() > "29991231T235959Z_full");
        // Rounded up to the second, never down.
        let (id, point) = next_id(
            ArchiveKind::Full,
            "2026-11-24T10:15:00.2Z".parse().unwrap(),
            &[],
        );
        assert_eq!(id, "20261124T101501Z_full");
        assert_eq!(point.to_string(), "2026-11-24T10:15:01Z");
        let (id, _) = next_id(ArchiveKind::Full, t, &[]);
        assert_eq!(id, "20261124T101500Z_full");
    }

    #[test]
    fn names_are_plain() {
        for ok in ["daily", "app.orders", "a-b_c", "X1"] {
            check_name(ok).unwrap();
        }
        for bad in ["", ".hidden", "a/b", "a b", "ä", &"x".repeat(101)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
