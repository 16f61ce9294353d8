//! Archives at a location: reading a manifest, checked reads of data files,
//! and the commit protocol (data files, then `SHA256SUMS`, then
//! `manifest.json`, create-only).

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::crypt;
use crate::error::{Error, ErrorKind, Result};
use crate::lock::ARCHIVE_LOCK_FILE;
use crate::manifest::{FileRef, MANIFEST, Manifest, SHA256SUMS};
use crate::store::Store;

/// Top-level names an archive may hold; anything else in a destination
/// means it is not ours to overwrite.
const ARCHIVE_NAMES: &[&str] = &[
    "tables",
    "misfits",
    SHA256SUMS,
    MANIFEST,
    crypt::DATA_DIR,
    crypt::KEY_FILE,
    crypt::INDEX_FILE,
];

/// Whether `top`, a top-level name, is one an archive may hold (a rekey's
/// key file `key-<token>.age` too).
fn is_archive_name(top: &str) -> bool {
    ARCHIVE_NAMES.contains(&top) || (top.starts_with("key-") && top.ends_with(".age"))
}

/// Read and validate the manifest of the archive at `store`, decrypting
/// it when the archive is encrypted (see [`open`]).
pub async fn read_manifest(store: &Store) -> Result<Manifest> {
    Ok(open(store).await?.1)
}

/// What `manifest.json` at `store` is: a plain manifest, or the envelope of
/// an encrypted archive (readable without a key).
pub enum Head {
    /// A plain archive's manifest.
    Plain(Box<Manifest>),
    /// An encrypted archive's envelope.
    Encrypted(Box<crypt::Envelope>),
}

/// Read `manifest.json` at `store` without decrypting anything.
pub async fn read_head(store: &Store) -> Result<Head> {
    let bytes = read_manifest_bytes(store).await?;
    let url = store.url_of(MANIFEST);
    if crypt::is_envelope(&bytes) {
        Ok(Head::Encrypted(Box::new(crypt::Envelope::from_bytes(
            &bytes, &url,
        )?)))
    } else {
        Ok(Head::Plain(Box::new(Manifest::from_bytes(&bytes, &url)?)))
    }
}

/// Open the archive at `store`: its manifest, and the store to read its
/// files from. An encrypted archive is opened with the store's keys
/// ([`Store::keys`]): its key file, index and manifest are decrypted, and
/// the store returned reads (and decrypts) its data files.
pub async fn open(store: &Store) -> Result<(Store, Manifest)> {
    match read_head(store).await? {
        Head::Plain(m) => Ok((store.clone(), *m)),
        Head::Encrypted(envelope) => open_envelope(store, &envelope).await,
    }
}

/// [`open`] of the encrypted archive at `store` whose envelope was read
/// already.
pub async fn open_envelope(store: &Store, envelope: &crypt::Envelope) -> Result<(Store, Manifest)> {
    let (opened, plain) = crypt::open(store, envelope, store.keys()).await?;
    let origin = format!(
        "{} (decrypted from {})",
        store.url_of(MANIFEST),
        store.url_of(&opened.stored(MANIFEST).expect("opened").path)
    );
    let manifest = Manifest::from_bytes(&plain, &origin)?;
    for f in manifest.files() {
        if opened.stored(&f.path).is_none() {
            return Err(Error::corrupt(format!(
                "{} lists {}, which the archive's index does not hold; the archive is damaged",
                origin, f.path
            )));
        }
    }
    Ok((store.clone().with_opened(opened), manifest))
}

async fn read_manifest_bytes(store: &Store) -> Result<Bytes> {
    match store.get_opt(MANIFEST).await? {
        Some(bytes) => Ok(bytes),
        None => {
            // A missing bucket reads as a missing object on some stores; say so.
            store.probe().await?;
            Err(Error::not_found(format!(
                "there is no archive at {}: it has no {MANIFEST} (an interrupted backup leaves none); check the location",
                store.url()
            )))
        }
    }
}

/// Fail, naming the location, if `store` already holds an archive or
/// cannot be reached (a missing bucket reads as a missing manifest).
pub async fn refuse_existing(store: &Store) -> Result<()> {
    refuse_manifest(store).await?;
    store.probe().await
}

async fn refuse_manifest(store: &Store) -> Result<()> {
    if store.size_of(MANIFEST).await?.is_some() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} already holds an archive; choose a new location or delete that one first",
                store.url()
            ),
        ));
    }
    Ok(())
}

/// Check that `store` can take a new archive: it must hold no manifest and
/// nothing but the leftovers of an interrupted coffer run, which are removed.
/// Call it holding the destination's lock ([`ARCHIVE_LOCK_FILE`]), which is
/// kept.
pub async fn prepare_destination(store: &Store) -> Result<()> {
    refuse_manifest(store).await?;
    let entries = store.list("").await?;
    if let Some(foreign) = entries.iter().find(|e| {
        let top = e.path.split('/').next().unwrap_or_default();
        !is_archive_name(top) && !top.starts_with('.')
    }) {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} is not empty (it holds {}); give an empty or new location for the archive",
                store.url(),
                foreign.path
            ),
        ));
    }
    for e in entries.iter().filter(|e| e.path != ARCHIVE_LOCK_FILE) {
        tracing::debug!(path = %e.path, "removing leftover of an interrupted run");
        store.delete(&e.path).await?;
    }
    remove_unlisted(store).await
}

/// Uploads in progress (and directories emptied) that no listing shows.
async fn remove_unlisted(store: &Store) -> Result<()> {
    for dir in ["tables", "misfits", crypt::DATA_DIR] {
        store.remove_unlisted(dir).await?;
    }
    Ok(())
}

/// Remove what a failed or cancelled run wrote into `store` before it
/// committed (call it holding the destination's lock). Nothing is removed if
/// the location holds a manifest.
pub async fn discard(store: &Store) -> Result<()> {
    if store.size_of(MANIFEST).await?.is_some() {
        return Ok(());
    }
    for e in store.list("").await? {
        let top = e.path.split('/').next().unwrap_or_default();
        if is_archive_name(top) {
            store.delete(&e.path).await?;
        }
    }
    remove_unlisted(store).await
}

/// Commit an archive whose data files are written: `SHA256SUMS`, then the
/// sealed manifest, written create-only. Until this returns the archive
/// does not exist for any reader.
pub async fn commit(store: &Store, manifest: &mut Manifest) -> Result<()> {
    manifest.seal();
    if let Some(sealer) = store.sealer() {
        return sealer.commit(manifest).await;
    }
    store
        .put(SHA256SUMS, Bytes::from(manifest.sha256sums()))
        .await?;
    store
        .put_new(MANIFEST, Bytes::from(manifest.to_bytes()))
        .await
}

/// Read a data file whole and check it against its manifest entry; errors
/// name the file and say what is wrong with it. In an opened encrypted
/// archive the stored file is checked, decrypted, and checked again.
pub async fn fetch_checked(store: &Store, file: &FileRef) -> Result<Bytes> {
    if store.opened().is_some() {
        let stored = fetch_stored(store, &file.path).await?;
        let plain = reveal(store, &file.path, stored)?;
        check_bytes(&plain, file, &store.url_of(&file.path))?;
        return Ok(plain);
    }
    fetch_plain(store, file).await
}

/// The bytes stored for the archive's file `path`, as they are (in an
/// encrypted archive: the encrypted file, checked against the envelope).
pub async fn fetch_stored(store: &Store, path: &str) -> Result<Bytes> {
    match store.opened() {
        None => match store.get_opt(path).await? {
            Some(b) => Ok(b),
            None => Err(Error::corrupt(format!(
                "{} is missing from the archive; restore it from another copy",
                store.url_of(path)
            ))),
        },
        Some(opened) => {
            let stored = opened.stored(path).ok_or_else(|| {
                Error::corrupt(format!(
                    "{} is not in the index of the encrypted archive at {}; the archive is damaged",
                    path,
                    store.url()
                ))
            })?;
            fetch_plain(store, stored).await
        }
    }
}

/// The plain bytes of file `path` from what [`fetch_stored`] read:
/// decrypted in an encrypted archive (call it on a blocking thread: it
/// decrypts the whole file), as they are otherwise.
pub fn reveal(store: &Store, path: &str, stored: Bytes) -> Result<Bytes> {
    match store.opened() {
        None => Ok(stored),
        Some(opened) => {
            let at = opened.stored(path).map(|f| f.path.as_str()).unwrap_or(path);
            Ok(Bytes::from(
                opened.key().decrypt(&stored, &store.url_of(at))?,
            ))
        }
    }
}

/// [`fetch_stored`] then [`reveal`], decrypting on a blocking thread: the
/// plain bytes of file `path`, not yet checked against the manifest.
pub async fn fetch_revealed(store: &Store, path: &str) -> Result<Bytes> {
    let stored = fetch_stored(store, path).await?;
    if store.opened().is_none() {
        return Ok(stored);
    }
    let (store, path) = (store.clone(), path.to_string());
    tokio::task::spawn_blocking(move || reveal(&store, &path, stored))
        .await
        .map_err(|e| Error::internal(format!("a decryption task failed: {e}")))?
}

async fn fetch_plain(store: &Store, file: &FileRef) -> Result<Bytes> {
    let url = store.url_of(&file.path);
    let bytes = match store.get_opt(&file.path).await? {
        Some(b) => b,
        None => {
            return Err(Error::corrupt(format!(
                "{url} is missing from the archive; restore it from another copy"
            )));
        }
    };
    check_bytes(&bytes, file, &url)?;
    Ok(bytes)
}

/// Check bytes against a manifest entry.
pub fn check_bytes(bytes: &[u8], file: &FileRef, url: &str) -> Result<()> {
    if bytes.len() as u64 != file.size {
        return Err(Error::corrupt(format!(
            "{url} is damaged: it has {} bytes but the manifest says {}",
            bytes.len(),
            file.size
        )));
    }
    if hex::encode(Sha256::digest(bytes)) != file.sha256 {
        return Err(Error::corrupt(format!(
            "{url} is damaged: its SHA-256 does not match the manifest"
        )));
    }
    Ok(())
}
