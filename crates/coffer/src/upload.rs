//! Streaming writes of one object from a blocking thread, hashing on the way.

use bytes::Bytes;
use object_store::buffered::BufWriter;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::runtime::Handle;

use crate::error::{Error, Result};
use crate::manifest::FileRef;
use crate::store::{Store, storage_error};

/// Bytes buffered before they are handed to the store; objects smaller than
/// this are written with one request, larger ones as multipart uploads.
const CHUNK: usize = 8 * 1024 * 1024;

/// A `std::io::Write` that streams to an object in a [`Store`] and computes
/// the SHA-256 and size of what it wrote. Use it from a blocking thread only.
pub struct Upload {
    rel: String,
    url: String,
    writer: BufWriter,
    hasher: Sha256,
    size: u64,
    buf: Vec<u8>,
    handle: Handle,
    failure: Option<Error>,
}

impl Upload {
    /// Start writing `rel` in `store`.
    pub fn new(store: &Store, rel: &str, handle: Handle) -> Upload {
        let (inner, path) = store.raw(rel);
        Upload {
            rel: rel.to_string(),
            url: store.url_of(rel),
            writer: BufWriter::with_capacity(inner, path, CHUNK).with_max_concurrency(4),
            hasher: Sha256::new(),
            size: 0,
            buf: Vec::with_capacity(CHUNK),
            handle,
            failure: None,
        }
    }

    fn push(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        let url = self.url.clone();
        self.handle
            .block_on(self.writer.put(chunk))
            .map_err(|e| storage_error("write", &url, e))
    }

    /// Complete the object and return its entry for the manifest.
    pub fn finish(mut self) -> Result<FileRef> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        self.push()?;
        let url = self.url.clone();
        self.handle.block_on(self.writer.shutdown()).map_err(|e| {
            Error::new(
                crate::ErrorKind::Storage,
                format!("could not write {url}: {e}"),
            )
        })?;
        Ok(FileRef {
            path: self.rel,
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }

    /// Give up on the object: a multipart upload in progress is aborted.
    pub fn abort(mut self) {
        let _ = self.handle.block_on(self.writer.abort());
    }

    /// The error that made a write fail, if one did.
    pub fn take_failure(&mut self) -> Option<Error> {
        self.failure.take()
    }
}

impl std::io::Write for Upload {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.failure.is_some() {
            return Err(std::io::Error::other("upload failed"));
        }
        self.hasher.update(data);
        self.size += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK
            && let Err(e) = self.push()
        {
            let msg = e.to_string();
            self.failure = Some(e);
            return Err(std::io::Error::other(msg));
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
