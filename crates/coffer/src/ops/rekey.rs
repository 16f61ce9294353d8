//! `rekey`: make other recipients open an encrypted archive or collection,
//! rewriting only its key file.
//!
//! The key file holds the data key (of an archive, or of a collection,
//! whose backups are encrypted to it) encrypted to the recipients. A rekey
//! opens it with the store's keys, writes the same data key encrypted to
//! the new recipients under a new name, switches the manifest (or
//! `collection.json`) to it in one write, and deletes the old key file. A
//! rekey killed at any point leaves the old or the new key in force, never
//! neither; at worst an unused key file, which the next rekey removes.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::archive::{self, Head};
use crate::crypt::{self, Encryption, Sealing};
use crate::error::{Error, Result};
use crate::lock::{ARCHIVE_LOCK_FILE, RepoLock};
use crate::manifest::{FileRef, MANIFEST};

use crate::ops::collection::repo::{self, COLLECTION_FILE, InfoHead};
use crate::store::Store;

/// One archive or collection rekeyed.
#[derive(Debug, Clone, Serialize)]
pub struct Rekeyed {
    /// Its location.
    pub location: String,
    /// The collection's name, for a collection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// How it is encrypted now.
    pub encryption: Encryption,
}

impl Rekeyed {
    /// The new recipients, for a sentence.
    pub fn recipients_text(&self) -> String {
        if self.encryption.passphrase {
            "the new passphrase".to_string()
        } else {
            self.encryption.recipients.join(", ")
        }
    }
}

/// Rekey the encrypted archive at `store`, or (when it holds no archive)
/// the encrypted collections of the repository at `store` (those named in
/// `collections`, or all).
pub async fn rekey(store: &Store, collections: &[String], new: &Sealing) -> Result<Vec<Rekeyed>> {
    if collections.is_empty() && store.size_of(MANIFEST).await?.is_some() {
        return Ok(vec![rekey_archive(store, new).await?]);
    }
    let names = if collections.is_empty() {
        repo::collection_names(store).await?
    } else {
        collections.to_vec()
    };
    let mut done = Vec::new();
    for name in &names {
        let (dir, head) = repo::require_head(store, name).await?;
        // The collection's key file opens with the keys given.
        let dir = dir.with_keys(store.keys().clone());
        match head {
            InfoHead::Encrypted(_) => done.push(rekey_collection(&dir, name, new).await?),
            InfoHead::Plain(_) if !collections.is_empty() => {
                return Err(Error::invalid(format!(
                    "collection '{name}' in {} is not encrypted, so it has no key to change; an encrypted collection is made with `coffer collection create --encrypt-to`",
                    store.url()
                )));
            }
            InfoHead::Plain(_) => {}
        }
    }
    if done.is_empty() {
        store.probe().await?;
        return Err(Error::invalid(format!(
            "{} holds neither an encrypted archive nor an encrypted collection; give the location of one",
            store.url()
        )));
    }
    Ok(done)
}

async fn rekey_archive(store: &Store, new: &Sealing) -> Result<Rekeyed> {
    let Head::Encrypted(envelope) = archive::read_head(store).await? else {
        return Err(Error::invalid(format!(
            "the archive at {} is not encrypted, so it has no key to change; `coffer backup --encrypt-to` writes an encrypted one",
            store.url()
        )));
    };
    let mut envelope = *envelope;
    let lock = RepoLock::acquire_with(store, ARCHIVE_LOCK_FILE, "rekey", Duration::ZERO).await?;
    let result = async {
        let old = rewrite_key(store, &mut envelope.encryption, &mut envelope.files, new).await?;
        envelope.seal();
        lock.check().await?;
        store
            .put(MANIFEST, Bytes::from(envelope.to_bytes()))
            .await?;
        remove_old_keys(store, &envelope.encryption.key, &old).await
    }
    .await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not remove the archive's lock");
    }
    result?;
    Ok(Rekeyed {
        location: store.url().to_string(),
        collection: None,
        encryption: envelope.encryption,
    })
}

async fn rekey_collection(dir: &Store, name: &str, new: &Sealing) -> Result<Rekeyed> {
    let lock = RepoLock::acquire(dir, "rekey").await?;
    let result = async {
        let InfoHead::Encrypted(mut sealed) = repo::read_head(dir)
            .await?
            .ok_or_else(|| Error::not_found(format!("{} is gone", dir.url_of(COLLECTION_FILE))))?
        else {
            return Err(Error::invalid(format!(
                "collection '{name}' is no longer encrypted"
            )));
        };
        let old = rewrite_key(dir, &mut sealed.encryption, &mut sealed.files, new).await?;
        lock.check().await?;
        repo::write_head(dir, &sealed).await?;
        remove_old_keys(dir, &sealed.encryption.key, &old).await?;
        Ok(sealed.encryption)
    }
    .await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the collection lock; it lapses by itself");
    }
    Ok(Rekeyed {
        location: dir.url().to_string(),
        collection: Some(name.to_string()),
        encryption: result?,
    })
}

/// Open the key file `encryption` names with the store's keys, write its
/// data key encrypted as `new` says under a new name, and point
/// `encryption` and `files` at it; the old key file's path.
async fn rewrite_key(
    store: &Store,
    encryption: &mut Encryption,
    files: &mut [FileRef],
    new: &Sealing,
) -> Result<String> {
    let old = encryption.key.clone();
    let url = store.url_of(&old);
    let slot = files.iter_mut().find(|f| f.path == old).ok_or_else(|| {
        Error::corrupt(format!(
            "{url} is not listed in its manifest; the archive is damaged"
        ))
    })?;
    let bytes = archive::fetch_checked(store, slot).await?;
    let key = store.keys().open_key(&bytes, &url, encryption)?;
    let name = format!("key-{}.age", crate::lock::random_token());
    let sealed = key.key_file(new)?;
    *slot = crypt::put_encrypted(store, &name, &sealed).await?;
    *encryption = new.describe(&name);
    Ok(old)
}

/// Delete the key files other than `current` (the one replaced, and those
/// of rekeys killed before they finished).
async fn remove_old_keys(store: &Store, current: &str, old: &str) -> Result<()> {
    let mut stale = vec![old.to_string()];
    for e in store.list("").await? {
        if !e.path.contains('/')
            && e.path.starts_with("key")
            && e.path.ends_with(".age")
            && e.path != current
            && !stale.contains(&e.path)
        {
            stale.push(e.path);
        }
    }
    for path in stale.iter().filter(|p| p.as_str() != current) {
        store.delete(path).await?;
    }
    Ok(())
}
