//! `verify`: re-read every file of an archive and check it against the
//! manifest.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};

use crate::archive;
use crate::error::Result;
use crate::manifest::{Manifest, SHA256SUMS};
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
}

/// One file checked.
#[derive(Debug, Clone)]
pub struct FileCheck {
    /// Path relative to the archive.
    pub path: String,
    /// What was found.
    pub status: FileStatus,
}

/// The outcome of a verify.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The archive's (valid) manifest.
    pub manifest: Manifest,
    /// Every file, in manifest order.
    pub files: Vec<FileCheck>,
    /// Whether `SHA256SUMS` agrees with the manifest.
    pub sums_match: bool,
}

impl VerifyReport {
    /// Whether every file matches and `SHA256SUMS` agrees.
    pub fn is_ok(&self) -> bool {
        self.sums_match && self.files.iter().all(|f| f.status == FileStatus::Ok)
    }
}

/// Check every file of the archive at `src`. A manifest that is missing,
/// edited or invalid is an error; damaged files are reported, not errors.
pub async fn verify(src: &Store, progress: &dyn Progress) -> Result<VerifyReport> {
    let manifest = archive::read_manifest(src).await?;
    progress.begin("verify", None, Some(manifest.total_bytes()));
    let mut files = Vec::new();
    for file in manifest.files() {
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
            status,
        });
    }
    progress.end();
    let sums = src.get_opt(SHA256SUMS).await?;
    let sums_match = sums.is_some_and(|b| b.as_ref() == manifest.sha256sums().as_bytes());
    Ok(VerifyReport {
        manifest,
        files,
        sums_match,
    })
}
