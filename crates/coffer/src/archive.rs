//! Archives at a location: reading a manifest, checked reads of data files,
//! and the commit protocol (data files, then `SHA256SUMS`, then
//! `manifest.json`, create-only).

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};
use crate::lock::ARCHIVE_LOCK_FILE;
use crate::manifest::{FileRef, MANIFEST, Manifest, SHA256SUMS};
use crate::store::Store;

/// Top-level names an archive may hold; anything else in a destination
/// means it is not ours to overwrite.
const ARCHIVE_NAMES: &[&str] = &["tables", "misfits", SHA256SUMS, MANIFEST];

/// Read and validate the manifest of the archive at `store`.
pub async fn read_manifest(store: &Store) -> Result<Manifest> {
    let url = store.url_of(MANIFEST);
    match store.get_opt(MANIFEST).await? {
        Some(bytes) => Manifest::from_bytes(&bytes, &url),
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
        !ARCHIVE_NAMES.contains(&top) && !top.starts_with('.')
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
    for dir in ["tables", "misfits"] {
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
        if ARCHIVE_NAMES.contains(&top) {
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
    store
        .put(SHA256SUMS, Bytes::from(manifest.sha256sums()))
        .await?;
    store
        .put_new(MANIFEST, Bytes::from(manifest.to_bytes()))
        .await
}

/// Read a data file whole and check it against its manifest entry; errors
/// name the file and say what is wrong with it.
pub async fn fetch_checked(store: &Store, file: &FileRef) -> Result<Bytes> {
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
