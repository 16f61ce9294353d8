//! `verify`: re-read every file of an archive and check it against the
//! manifest.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};

use crate::archive::{self, Head};
use crate::crypt::Encryption;
use crate::error::Result;
use crate::manifest::{FileRef, Manifest, SHA256SUMS};
use crate::progress::Progress;
use crate::store::{Store, storage_error};

/// The state of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    /// Size and SHA-256 match the manifest.
    Ok,
    /// The file is absent.
    Missing,
    /// The file has another size than the manifest says.
    WrongSize {
        /// Size in the manifest.
        expected: u64,
        /// Size found.
        actual: u64,
    },
    /// The size matches but the contents do not.
    WrongChecksum,
    /// The encrypted file matches its checksum but does not decrypt with
    /// the archive's key, or decrypts to other contents than the manifest
    /// says (it was replaced, checksums and all).
    WrongContents,
}

/// One file checked.
#[derive(Debug, Clone)]
pub struct FileCheck {
    /// Path relative to the archive.
    pub path: String,
    /// Its size in the manifest.
    pub size: u64,
    /// What was found.
    pub status: FileStatus,
}

/// The outcome of a verify.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The archive's (valid) manifest; `None` for an encrypted archive
    /// checked without a key.
    pub manifest: Option<Manifest>,
    /// How the archive is encrypted, if it is.
    pub encryption: Option<Encryption>,
    /// Every file as stored, in manifest order (for an encrypted archive:
    /// its encrypted files, then, with a key, every plain file decrypted).
    pub files: Vec<FileCheck>,
    /// Whether `SHA256SUMS` agrees with the manifest (both of them, in an
    /// encrypted archive opened with a key).
    pub sums_match: bool,
    /// Bytes checked.
    pub bytes: u64,
}

impl VerifyReport {
    /// Whether every file matches and `SHA256SUMS` agrees.
    pub fn is_ok(&self) -> bool {
        self.sums_match && self.files.iter().all(|f| f.status == FileStatus::Ok)
    }

    /// Whether the contents were checked (not so for an encrypted archive
    /// checked without a key).
    pub fn contents_checked(&self) -> bool {
        self.manifest.is_some()
    }
}

/// Check every file of the archive at `src`. A manifest that is missing,
/// edited or invalid is an error; damaged files are reported, not errors.
///
/// An encrypted archive's stored files are checked against the checksums
/// of its `manifest.json` without any key; with the store's keys
/// ([`Store::keys`]) it is opened too, and every file is decrypted and
/// checked against the manifest inside.
pub async fn verify(src: &Store, progress: &dyn Progress) -> Result<VerifyReport> {
    let envelope = match archive::read_head(src).await? {
        Head::Plain(manifest) => {
            progress.begin("verify", None, Some(manifest.total_bytes()));
            let files = check_files(src, manifest.files(), progress).await?;
            progress.end();
            let sums = src.get_opt(SHA256SUMS).await?;
            let sums_match = sums.is_some_and(|b| b.as_ref() == manifest.sha256sums().as_bytes());
            return Ok(VerifyReport {
                bytes: manifest.total_bytes(),
                manifest: Some(*manifest),
                encryption: None,
                files,
                sums_match,
            });
        }
        Head::Encrypted(envelope) => envelope,
    };
    let stored_bytes: u64 = envelope.files.iter().map(|f| f.size).sum();
    let sums = src.get_opt(SHA256SUMS).await?;
    let sums_match = sums.is_some_and(|b| b.as_ref() == envelope.sha256sums().as_bytes());
    let stored_only = || async {
        progress.begin("verify", None, Some(stored_bytes));
        let files = check_files(src, envelope.files.iter(), progress).await?;
        progress.end();
        Ok::<_, crate::Error>(VerifyReport {
            manifest: None,
            encryption: Some(envelope.encryption.clone()),
            files,
            sums_match,
            bytes: stored_bytes,
        })
    };
    if src.keys().is_empty() {
        return stored_only().await;
    }
    let (opened, manifest) = match archive::open_envelope(src, &envelope).await {
        Ok(opened) => opened,
        // A damaged key file, index or manifest: say which stored file it is.
        Err(e) if e.kind() == crate::ErrorKind::Corrupt => {
            let report = stored_only().await?;
            return if report.is_ok() { Err(e) } else { Ok(report) };
        }
        Err(e) => return Err(e),
    };
    progress.begin("verify", None, Some(manifest.total_bytes()));
    let mut files = Vec::new();
    // The plain files, each read once: its stored bytes checked against the
    // envelope, then decrypted and checked against the manifest inside.
    for file in manifest.files() {
        let status = match archive::fetch_checked(&opened, file).await {
            Ok(_) => FileStatus::Ok,
            Err(e) if e.kind() == crate::ErrorKind::Corrupt => {
                stored_status(src, &opened, file).await?
            }
            Err(e) => return Err(e),
        };
        progress.advance(0, file.size);
        files.push(FileCheck {
            path: file.path.clone(),
            size: file.size,
            status,
        });
    }
    let plain_sums = archive::fetch_stored(&opened, SHA256SUMS)
        .await
        .and_then(|b| archive::reveal(&opened, SHA256SUMS, b));
    let sums_match =
        sums_match && plain_sums.is_ok_and(|b| b.as_ref() == manifest.sha256sums().as_bytes());
    progress.end();
    Ok(VerifyReport {
        bytes: manifest.total_bytes(),
        manifest: Some(manifest),
        encryption: Some(envelope.encryption.clone()),
        files,
        sums_match,
    })
}

/// What is wrong with the stored file that holds plain `file`, which did
/// not read back as the manifest says.
async fn stored_status(src: &Store, opened: &Store, file: &FileRef) -> Result<FileStatus> {
    let Some(stored) = opened.opened().and_then(|o| o.stored(&file.path)).cloned() else {
        return Ok(FileStatus::Missing);
    };
    let checks = check_files(src, std::iter::once(&stored), &crate::progress::Silent).await?;
    Ok(match checks.into_iter().next().map(|c| c.status) {
        Some(FileStatus::Ok) | None => FileStatus::WrongContents,
        Some(other) => other,
    })
}

/// Check each of `files` at `src` against its size and SHA-256, streaming.
async fn check_files<'a>(
    src: &Store,
    list: impl Iterator<Item = &'a FileRef>,
    progress: &dyn Progress,
) -> Result<Vec<FileCheck>> {
    let mut files = Vec::new();
    for file in list {
        let (store, path) = src.raw(&file.path);
        let url = src.url_of(&file.path);
        let status = match store.get(&path).await {
            Err(object_store::Error::NotFound { .. }) => FileStatus::Missing,
            Err(e) => return Err(storage_error("read", &url, e)),
            Ok(result) => {
                let mut hasher = Sha256::new();
                let mut size = 0u64;
                let mut stream = result.into_stream();
                while let Some(chunk) = stream
                    .try_next()
                    .await
                    .map_err(|e| storage_error("read", &url, e))?
                {
                    hasher.update(&chunk);
                    size += chunk.len() as u64;
                    progress.advance(0, chunk.len() as u64);
                }
                if size != file.size {
                    FileStatus::WrongSize {
                        expected: file.size,
                        actual: size,
                    }
                } else if hex::encode(hasher.finalize()) != file.sha256 {
                    FileStatus::WrongChecksum
                } else {
                    FileStatus::Ok
                }
            }
        };
        files.push(FileCheck {
            path: file.path.clone(),
            size: file.size,
            status,
        });
    }
    Ok(files)
}
