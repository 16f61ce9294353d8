//! Streaming writes of one object from a blocking thread, hashing on the way.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::buffered::BufWriter;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::runtime::Handle;

use crate::crypt::Sealer;
use crate::error::{Error, Result};
use crate::manifest::FileRef;
use crate::store::{Store, io_storage_error, storage_error};

/// Bytes buffered before they are handed to the store; objects smaller than
/// this are written with one request, larger ones as multipart uploads.
pub const CHUNK: usize = 8 * 1024 * 1024;
/// The same for object stores: a data part of the default size (32 MiB)
/// goes up in one `PUT` rather than as a multipart upload of four chunks
/// (six requests, and on some servers a copy to assemble them). It made
/// an export to the benchmark's S3 server about 12% faster.
pub const REMOTE_CHUNK: usize = 33 * 1024 * 1024;

/// A `std::io::Write` that streams to an object in a [`Store`] and computes
/// the SHA-256 and size of what it wrote. Use it from a blocking thread only.
///
/// In a store writing an encrypted archive ([`Store::sealer`]) the object
/// is stored encrypted under an opaque name (`data/NNNNNN.age`); the entry
/// returned is still the plain file's, and the stored one is recorded for
/// the archive's index.
pub struct Upload {
    out: Out,
    /// Sealed objects only: the plain bytes' hash and size, the path
    /// relative to the store written (what the caller's entry says) and to
    /// the archive (what its index says).
    plain: Option<(Sha256, u64, String, String, Arc<Sealer>)>,
    failure: Arc<Mutex<Option<Error>>>,
}

enum Out {
    Plain(Box<Sink>),
    Sealed(Box<age::stream::StreamWriter<Sink>>),
    Failed,
}

/// The object's bytes on their way to the store.
struct Sink {
    rel: String,
    url: String,
    writer: BufWriter,
    chunk: usize,
    hasher: Sha256,
    size: u64,
    buf: Vec<u8>,
    handle: Handle,
    failure: Arc<Mutex<Option<Error>>>,
}

impl Upload {
    /// Start writing `rel` in `store`.
    pub fn new(store: &Store, rel: &str, handle: Handle) -> Upload {
        let failure = Arc::new(Mutex::new(None));
        let Some(sealer) = store.sealer().cloned() else {
            return Upload {
                out: Out::Plain(Box::new(Sink::new(store, rel, handle, failure.clone()))),
                plain: None,
                failure,
            };
        };
        let plain = sealer.plain_path(store, rel);
        let stored = sealer.next_name();
        let sink = Sink::new(sealer.root(), &stored, handle, failure.clone());
        let out = match sealer.key().encryptor().wrap_output(sink) {
            Ok(w) => Out::Sealed(Box::new(w)),
            Err(e) => {
                *failure.lock().expect("upload lock") = Some(Error::internal(format!(
                    "could not start encrypting {}: {e}",
                    store.url_of(rel)
                )));
                Out::Failed
            }
        };
        Upload {
            out,
            plain: Some((Sha256::new(), 0, rel.to_string(), plain, sealer)),
            failure,
        }
    }

    /// Complete the object and return its entry for the manifest.
    pub fn finish(self) -> Result<FileRef> {
        self.finish_later()?.wait()
    }

    /// Hand the last bytes to the store and complete the object in the
    /// background (the final part and, for multipart uploads, the completion
    /// request), so the caller can go on encoding; [`Pending::wait`] returns
    /// its manifest entry once the store has it.
    pub fn finish_later(mut self) -> Result<Pending> {
        if let Some(e) = self.take_failure() {
            return Err(e);
        }
        let sink = match self.out {
            Out::Plain(sink) => *sink,
            Out::Sealed(w) => match w.finish() {
                Ok(sink) => sink,
                Err(e) => {
                    let failure = self.failure.lock().expect("upload lock").take();
                    return Err(failure
                        .unwrap_or_else(|| Error::internal(format!("could not encrypt: {e}"))));
                }
            },
            Out::Failed => return Err(Error::internal("an upload failed to start")),
        };
        let mut pending = sink.finish_later()?;
        if let Some((hasher, size, path, in_archive, sealer)) = self.plain {
            let stored = std::mem::replace(
                &mut pending.file,
                FileRef {
                    path,
                    size,
                    sha256: hex::encode(hasher.finalize()),
                },
            );
            pending.sealed = Some((sealer, in_archive, stored));
        }
        Ok(pending)
    }

    /// Give up on the object: a multipart upload in progress is aborted.
    pub fn abort(self) {
        let sink = match self.out {
            Out::Plain(sink) => *sink,
            Out::Sealed(w) => match w.finish() {
                Ok(sink) => sink,
                Err(_) => return,
            },
            Out::Failed => return,
        };
        let mut writer = sink.writer;
        let _ = sink.handle.block_on(writer.abort());
    }

    /// The error that made a write fail, if one did.
    pub fn take_failure(&mut self) -> Option<Error> {
        self.failure.lock().expect("upload lock").take()
    }
}

impl Sink {
    fn new(store: &Store, rel: &str, handle: Handle, failure: Arc<Mutex<Option<Error>>>) -> Sink {
        let (inner, path) = store.raw(rel);
        let chunk = if store.local_dir().is_some() {
            CHUNK
        } else {
            REMOTE_CHUNK
        };
        Sink {
            rel: rel.to_string(),
            url: store.url_of(rel),
            writer: BufWriter::with_capacity(inner, path, chunk).with_max_concurrency(4),
            chunk,
            hasher: Sha256::new(),
            size: 0,
            buf: Vec::with_capacity(chunk),
            handle,
            failure,
        }
    }

    fn push(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let bytes = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(self.chunk),
        ));
        let url = self.url.clone();
        self.handle
            .block_on(self.writer.put(bytes))
            .map_err(|e| storage_error("write", &url, e))
    }

    fn finish_later(mut self) -> Result<Pending> {
        self.push()?;
        let url = self.url.clone();
        let mut writer = self.writer;
        let task = self.handle.spawn(async move {
            writer
                .shutdown()
                .await
                .map_err(|e| io_storage_error("write", &url, e))
        });
        Ok(Pending {
            file: FileRef {
                path: self.rel,
                size: self.size,
                sha256: hex::encode(self.hasher.finalize()),
            },
            sealed: None,
            task,
            handle: self.handle,
        })
    }
}

/// An object whose bytes are all handed to the store and whose upload is
/// completing in the background.
pub struct Pending {
    file: FileRef,
    /// For an encrypted object: the archive's sealer and the stored file.
    sealed: Option<(Arc<Sealer>, String, FileRef)>,
    task: tokio::task::JoinHandle<Result<()>>,
    handle: Handle,
}

impl Pending {
    /// The object's manifest entry (valid once [`Pending::wait`] succeeds).
    pub fn file(&self) -> &FileRef {
        &self.file
    }

    /// Wait until the store has the whole object; its manifest entry.
    pub fn wait(self) -> Result<FileRef> {
        self.handle
            .block_on(self.task)
            .map_err(|e| Error::internal(format!("an upload task failed: {e}")))??;
        if let Some((sealer, in_archive, stored)) = self.sealed {
            sealer.record(in_archive, stored);
        }
        Ok(self.file)
    }
}

impl std::io::Write for Upload {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if let Some((hasher, size, ..)) = &mut self.plain {
            hasher.update(data);
            *size += data.len() as u64;
        }
        match &mut self.out {
            Out::Plain(sink) => sink.write(data),
            Out::Sealed(w) => w.write_all(data).map(|()| data.len()),
            Out::Failed => Err(std::io::Error::other("upload failed")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.failure.lock().expect("upload lock").is_some() {
            return Err(std::io::Error::other("upload failed"));
        }
        self.hasher.update(data);
        self.size += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= self.chunk
            && let Err(e) = self.push()
        {
            let msg = e.to_string();
            *self.failure.lock().expect("upload lock") = Some(e);
            return Err(std::io::Error::other(msg));
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
