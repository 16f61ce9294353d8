//! Client-side encryption with [age](https://age-encryption.org): who an
//! archive is encrypted to, the keys that open it, and the layout of an
//! encrypted archive (docs/FORMAT.md, "Encrypted archives").
//!
//! Every encrypted archive has its own data key, a fresh X25519 key pair.
//! The data files, `SHA256SUMS`, the manifest and the index (which opaque
//! file is which plain path) are age files encrypted to the data key's
//! public half; the data key's secret half is a small age identity file,
//! `key.age`, encrypted to the user's recipients or passphrase. So the host
//! that writes an archive needs only public keys, `age -d` alone opens
//! it, and a change of recipients rewrites only the key file.
//!
//! There is no cryptography here beyond calling the `age` crate.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use age::secrecy::{ExposeSecret, SecretString};
use age::x25519;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{
    ArchiveKind, FileRef, check_relative_path, format_of, json_bytes, sums_text,
};
use crate::store::Store;

/// A random token from the operating system's generator (through age's key
/// generation): 32 hex digits, for secrets such as a collection's id.
pub fn secret_token() -> String {
    let key = x25519::Identity::generate();
    hex::encode(&Sha256::digest(key.to_string().expose_secret().as_bytes())[..16])
}

/// The public key in a collection id `token:age1…`, if it is encrypted.
pub fn collection_recipient(id: &str) -> Result<Option<x25519::Recipient>> {
    match id.split_once(':') {
        None => Ok(None),
        Some((_, r)) => parse_recipient(r, "the collection's record").map(Some),
    }
}

/// The `format` of the `manifest.json` of an encrypted archive.
pub const ENVELOPE_FORMAT: &str = "coffer-encrypted-archive";
/// Its version.
pub const ENVELOPE_VERSION: u32 = 1;
/// The key file of a newly written archive (a rekey writes `key-<token>.age`).
pub const KEY_FILE: &str = "key.age";
/// The encrypted index: one line `opaque-path<TAB>plain-path` per file.
pub const INDEX_FILE: &str = "index.age";
/// The directory of the encrypted files.
pub const DATA_DIR: &str = "data";
/// The only value of [`Encryption::scheme`].
pub const SCHEME: &str = "age";

/// Who can open what coffer encrypts: age X25519 recipients (public keys),
/// or a passphrase. age allows no mix of the two in one file.
#[derive(Clone)]
pub enum Sealing {
    /// Public keys (`age1…`); any matching identity opens the archive.
    Recipients(Vec<x25519::Recipient>),
    /// A passphrase (age's scrypt recipient).
    Passphrase(SecretString),
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sealing::Recipients(r) => f
                .debug_tuple("Recipients")
                .field(&r.iter().map(|r| r.to_string()).collect::<Vec<_>>())
                .finish(),
            Sealing::Passphrase(_) => f.write_str("Passphrase(<hidden>)"),
        }
    }
}

impl Sealing {
    /// Recipients parsed from `age1…` strings; `origin` names where they came
    /// from in errors (a flag, a file and line).
    pub fn recipients(list: &[(String, String)]) -> Result<Sealing> {
        let mut out = Vec::new();
        for (text, origin) in list {
            out.push(parse_recipient(text, origin)?);
        }
        if out.is_empty() {
            return Err(Error::invalid(
                "no recipient to encrypt to; give an age public key (age1…) with --encrypt-to",
            ));
        }
        Ok(Sealing::Recipients(out))
    }

    /// The public description of this sealing for a manifest, with the key
    /// file at `key`.
    pub fn describe(&self, key: &str) -> Encryption {
        let (recipients, passphrase) = match self {
            Sealing::Recipients(r) => (r.iter().map(|r| r.to_string()).collect(), false),
            Sealing::Passphrase(_) => (Vec::new(), true),
        };
        Encryption {
            scheme: SCHEME.to_string(),
            recipients,
            passphrase,
            key: key.to_string(),
        }
    }

    /// Encrypt `plain` (a key file) to these recipients.
    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>> {
        let encryptor = match self {
            Sealing::Recipients(r) => {
                age::Encryptor::with_recipients(r.iter().map(|r| r as &dyn age::Recipient))
                    .map_err(|e| Error::internal(format!("could not encrypt a key file: {e}")))?
            }
            Sealing::Passphrase(p) => age::Encryptor::with_user_passphrase(p.clone()),
        };
        encrypt_with(encryptor, plain)
    }
}

/// Parse one `age1…` public key.
pub fn parse_recipient(text: &str, origin: &str) -> Result<x25519::Recipient> {
    text.trim().parse::<x25519::Recipient>().map_err(|_| {
        let shown: String = text.trim().chars().take(12).collect();
        Error::invalid(format!(
            "{origin}: '{}…' is not an age X25519 public key; give one as `age-keygen -y` prints it (age1…)",
            shown.escape_debug()
        ))
    })
}

/// The recipients of a recipients file: one `age1…` key per line, `#`
/// comments and blank lines ignored (the `age -R` format).
pub fn read_recipients_file(path: &Path) -> Result<Vec<(String, String)>> {
    let list = key_lines(
        path,
        "recipients file",
        "a file of age public keys, one per line",
    )?;
    if list.is_empty() {
        return Err(Error::invalid(format!(
            "the recipients file {} holds no public key; put one age public key (age1…) per line",
            path.display()
        )));
    }
    Ok(list)
}

/// The lines of a key file (age's format: `#` comments and blank lines
/// ignored), each with `PATH line N` for messages.
fn key_lines(path: &Path, what: &str, hint: &str) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(format!(
            "cannot read the {what} {}: {e}; give {hint}",
            path.display()
        ))
    })?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            (
                l.trim().to_string(),
                format!("{} line {}", path.display(), i + 1),
            )
        })
        .collect())
}

/// What a reader opens encrypted archives with: age X25519 identities
/// and a passphrase. Never printed.
#[derive(Clone, Default)]
pub struct Keys {
    identities: Vec<x25519::Identity>,
    passphrase: Option<SecretString>,
    /// Where the identities came from, for messages.
    sources: Vec<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("identities", &self.sources)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Keys {
    /// No keys.
    pub fn none() -> Keys {
        Keys::default()
    }

    /// Whether there is nothing to decrypt with.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty() && self.passphrase.is_none()
    }

    /// Read the X25519 identities of an age identity file (`age-keygen`
    /// output: `AGE-SECRET-KEY-1…` lines, `#` comments). Warns when others
    /// than its owner can read it.
    pub fn read_identity_file(&mut self, path: &Path) -> Result<()> {
        warn_if_readable_by_others(path, "identity file");
        let lines = key_lines(path, "identity file", "a file as `age-keygen` writes it")?;
        for (line, origin) in &lines {
            let id = line.parse::<x25519::Identity>().map_err(|_| {
                Error::invalid(format!(
                    "{origin} is not an age X25519 identity (AGE-SECRET-KEY-1…); give a file as `age-keygen` writes it"
                ))
            })?;
            self.identities.push(id);
        }
        if lines.is_empty() {
            return Err(Error::invalid(format!(
                "the identity file {} holds no identity; give a file as `age-keygen` writes it",
                path.display()
            )));
        }
        self.sources.push(path.display().to_string());
        Ok(())
    }

    /// Add an identity held in memory (a collection's key).
    pub fn add(&mut self, identity: x25519::Identity, source: &str) {
        self.identities.push(identity);
        self.sources.push(source.to_string());
    }

    /// Use `passphrase` too.
    pub fn set_passphrase(&mut self, passphrase: SecretString) {
        self.passphrase = Some(passphrase);
    }

    /// Decrypt the key file `bytes` (read from `url`) of an archive
    /// encrypted as `enc` says; the data key inside.
    pub fn open_key(&self, bytes: &[u8], url: &str, enc: &Encryption) -> Result<DataKey> {
        if self.is_empty() {
            return Err(missing_keys(url, enc));
        }
        let decryptor = age::Decryptor::new_buffered(bytes).map_err(|e| damaged(url, e))?;
        let plain = if decryptor.is_scrypt() {
            let Some(p) = &self.passphrase else {
                return Err(missing_keys(url, enc));
            };
            let identity = age::scrypt::Identity::new(p.clone());
            read_all(decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity)))
        } else {
            read_all(decryptor.decrypt(self.identities.iter().map(|i| i as &dyn age::Identity)))
        };
        let plain = plain.map_err(|e| match e {
            age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed
                if enc.passphrase =>
            {
                Error::new(
                    ErrorKind::Auth,
                    format!("the passphrase does not open {url}; give the passphrase the archive was encrypted with"),
                )
            }
            age::DecryptError::NoMatchingKeys => Error::new(
                ErrorKind::Auth,
                format!(
                    "no identity given ({}) opens {url}, which is encrypted to {}; give the identity of one of those recipients",
                    if self.sources.is_empty() { "none".to_string() } else { self.sources.join(", ") },
                    recipients_text(enc)
                ),
            ),
            age::DecryptError::ExcessiveWork { .. } => Error::corrupt(format!(
                "{url} asks for more passphrase work than this machine allows; the key file is damaged or was not written by coffer"
            )),
            other => damaged(url, other),
        })?;
        DataKey::from_file_text(&plain, url)
    }
}

fn recipients_text(enc: &Encryption) -> String {
    if enc.passphrase {
        "a passphrase".to_string()
    } else if enc.recipients.is_empty() {
        "unnamed recipients".to_string()
    } else {
        enc.recipients.join(", ")
    }
}

fn missing_keys(url: &str, enc: &Encryption) -> Error {
    let what = if enc.passphrase {
        "it is encrypted with a passphrase; give it with --passphrase-file FILE or COFFER_PASSPHRASE"
            .to_string()
    } else {
        format!(
            "it is encrypted to {}; give the identity of one of them with --identity FILE or COFFER_IDENTITY",
            recipients_text(enc)
        )
    };
    let at = url
        .strip_suffix(&format!("/{}", enc.key))
        .unwrap_or(url)
        .to_string();
    Error::new(
        ErrorKind::InvalidInput,
        format!("{at} is encrypted and no key to open it was given: {what}"),
    )
}

fn damaged(url: &str, e: impl std::fmt::Display) -> Error {
    Error::corrupt(format!(
        "{url} is damaged: it does not decrypt ({e}); restore it from another copy"
    ))
}

/// Read the passphrase in the first line of `path`; warns when others than
/// its owner can read the file.
pub fn read_passphrase_file(path: &Path) -> Result<SecretString> {
    warn_if_readable_by_others(path, "passphrase file");
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(format!(
            "cannot read the passphrase file {}: {e}; give a file whose first line is the passphrase",
            path.display()
        ))
    })?;
    let line = text.lines().next().unwrap_or_default();
    check_passphrase(line, &path.display().to_string())
}

/// Check a passphrase given directly (`origin` names where from).
pub fn check_passphrase(text: &str, origin: &str) -> Result<SecretString> {
    if text.is_empty() {
        return Err(Error::invalid(format!(
            "the passphrase in {origin} is empty; give a passphrase"
        )));
    }
    Ok(SecretString::from(text.to_string()))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "the {what} {} can be read by other users (mode {:o}); `chmod 600` it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path, _what: &str) {}

fn read_all<R: Read>(
    r: std::result::Result<R, age::DecryptError>,
) -> std::result::Result<Vec<u8>, age::DecryptError> {
    let mut out = Vec::new();
    r?.read_to_end(&mut out).map_err(age::DecryptError::Io)?;
    Ok(out)
}

fn encrypt_with(encryptor: age::Encryptor, plain: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(plain.len() + plain.len() / 4096 + 256);
    let mut w = encryptor
        .wrap_output(&mut out)
        .map_err(|e| Error::internal(format!("could not encrypt: {e}")))?;
    w.write_all(plain)
        .and_then(|()| w.finish().map(|_| ()))
        .map_err(|e| Error::internal(format!("could not encrypt: {e}")))?;
    Ok(out)
}

/// One archive's (or one collection's) own key pair; its secret half is
/// what the key file holds.
#[derive(Clone)]
pub struct DataKey(x25519::Identity);

impl DataKey {
    /// A fresh key.
    pub fn generate() -> DataKey {
        DataKey(x25519::Identity::generate())
    }

    /// The key as an age identity file (what `age -d -i` takes).
    pub fn file_text(&self) -> SecretString {
        SecretString::from(format!(
            "# a coffer key (an age identity; keep it secret)\n{}\n",
            self.0.to_string().expose_secret()
        ))
    }

    fn from_file_text(plain: &[u8], url: &str) -> Result<DataKey> {
        let text = std::str::from_utf8(plain).unwrap_or_default();
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .and_then(|l| l.parse::<x25519::Identity>().ok())
            .map(DataKey)
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "{url} decrypts but holds no age identity; the key file is damaged or was not written by coffer"
                ))
            })
    }

    /// The key file: this key encrypted as `sealing` says.
    pub fn key_file(&self, sealing: &Sealing) -> Result<Vec<u8>> {
        sealing.seal(self.file_text().expose_secret().as_bytes())
    }

    /// The public half.
    pub fn recipient(&self) -> x25519::Recipient {
        self.0.to_public()
    }

    /// The secret half, as an identity.
    pub fn identity(&self) -> x25519::Identity {
        self.0.clone()
    }

    /// An encryptor of one file to this key.
    pub fn encryptor(&self) -> age::Encryptor {
        let r = self.recipient();
        age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
            .expect("an X25519 recipient always wraps a key")
    }

    /// Encrypt a small file whole.
    pub fn encrypt(&self, plain: &[u8]) -> Result<Vec<u8>> {
        encrypt_with(self.encryptor(), plain)
    }

    /// Decrypt a file read from `url`.
    pub fn decrypt(&self, bytes: &[u8], url: &str) -> Result<Vec<u8>> {
        let decryptor = age::Decryptor::new_buffered(bytes).map_err(|e| damaged(url, e))?;
        read_all(decryptor.decrypt(std::iter::once(&self.0 as &dyn age::Identity)))
            .map_err(|e| damaged(url, e))
    }
}

/// How an encrypted archive is encrypted: what its `manifest.json` says
/// without a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// Always [`SCHEME`].
    pub scheme: String,
    /// The recipients' public keys (empty with a passphrase).
    pub recipients: Vec<String>,
    /// Whether a passphrase opens it instead.
    #[serde(default)]
    pub passphrase: bool,
    /// The key file, relative to the archive.
    pub key: String,
}

/// The `manifest.json` of an encrypted archive: how it is encrypted, what
/// kind of backup it is and when it was taken, and every stored file with
/// its size and SHA-256, so that integrity is checked without a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Always [`ENVELOPE_FORMAT`].
    pub format: String,
    /// Always [`ENVELOPE_VERSION`].
    pub format_version: u32,
    /// How it is encrypted.
    pub encryption: Encryption,
    /// What the archive is.
    pub kind: ArchiveKind,
    /// When it was committed.
    pub created_at: String,
    /// The moment its data represents.
    pub backup_point: String,
    /// The backup an incremental builds on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// A collection backup's keyed digest of its tables' shape, so that
    /// the next incremental can tell, without a key, whether the schema
    /// changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<String>,
    /// Every stored file but `manifest.json` and `SHA256SUMS`.
    pub files: Vec<FileRef>,
    /// SHA-256 of the envelope serialized without this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

impl Envelope {
    fn own_checksum(&self) -> String {
        let unsealed = Envelope {
            checksum: None,
            ..self.clone()
        };
        hex::encode(Sha256::digest(unsealed.to_bytes()))
    }

    /// Set [`Envelope::checksum`].
    pub fn seal(&mut self) {
        self.checksum = None;
        self.checksum = Some(self.own_checksum());
    }

    /// Pretty JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        json_bytes(self)
    }

    /// Parse and check an envelope read from `origin`.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Envelope> {
        let e: Envelope = serde_json::from_slice(bytes).map_err(|err| {
            Error::corrupt(format!(
                "{origin} is not a valid coffer manifest ({err}); the archive is damaged"
            ))
        })?;
        if e.checksum.as_deref() != Some(e.own_checksum().as_str()) {
            return Err(Error::corrupt(format!(
                "{origin} has been modified or damaged: its checksum does not match its contents; restore from another copy of the archive"
            )));
        }
        if e.format_version != ENVELOPE_VERSION || e.encryption.scheme != SCHEME {
            return Err(Error::invalid(format!(
                "{origin} is an encrypted archive of version {} ({}), which this coffer does not read; use a newer coffer release",
                e.format_version, e.encryption.scheme
            )));
        }
        let mut seen = HashSet::new();
        for f in &e.files {
            check_relative_path(&f.path, origin)?;
            if !seen.insert(f.path.as_str()) {
                return Err(Error::corrupt(format!(
                    "{origin} lists {} twice; the manifest is damaged",
                    f.path
                )));
            }
        }
        if !seen.contains(e.encryption.key.as_str()) || !seen.contains(INDEX_FILE) {
            return Err(Error::corrupt(format!(
                "{origin} does not list its key file and index; the manifest is damaged"
            )));
        }
        Ok(e)
    }

    /// The `SHA256SUMS` text of the stored files but the key file (which
    /// a rekey replaces with one write of the envelope; its checksum is in
    /// [`Envelope::files`]).
    pub fn sha256sums(&self) -> String {
        sums_text(self.files.iter().filter(|f| f.path != self.encryption.key))
    }

    /// The entry of stored file `path`.
    pub fn file(&self, path: &str) -> Option<&FileRef> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// Whether the manifest bytes are an envelope (peeking at `format`).
pub fn is_envelope(bytes: &[u8]) -> bool {
    format_of(bytes).as_deref() == Some(ENVELOPE_FORMAT)
}

/// The writing side of one encrypted archive: its data key, and which
/// opaque file holds which plain path so far. Shared by every store of the
/// archive (the child stores of an incremental's deleted keys too).
pub struct Sealer {
    sealing: Arc<Sealing>,
    key: DataKey,
    root: Store,
    next: AtomicU64,
    written: Mutex<Vec<(String, FileRef)>>,
    shape: Mutex<Option<String>>,
}

impl Sealer {
    pub(crate) fn new(sealing: Arc<Sealing>, root: Store) -> Sealer {
        Sealer {
            sealing,
            key: DataKey::generate(),
            root,
            next: AtomicU64::new(0),
            written: Mutex::new(Vec::new()),
            shape: Mutex::new(None),
        }
    }

    /// The archive's root store (without the sealer).
    pub(crate) fn root(&self) -> &Store {
        &self.root
    }

    /// The data key.
    pub(crate) fn key(&self) -> &DataKey {
        &self.key
    }

    /// The next opaque name.
    pub(crate) fn next_name(&self) -> String {
        format!(
            "{DATA_DIR}/{:06}.age",
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The plain path, relative to the archive, of `rel` in `store`.
    pub(crate) fn plain_path(&self, store: &Store, rel: &str) -> String {
        let (_, full) = store.raw(rel);
        let (_, root) = self.root.raw("");
        match full.prefix_match(&root) {
            Some(parts) => parts
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/"),
            None => rel.to_string(),
        }
    }

    /// Record that `cipher` holds plain path `plain`.
    pub(crate) fn record(&self, plain: String, cipher: FileRef) {
        self.written
            .lock()
            .expect("sealer lock")
            .push((plain, cipher));
    }

    /// Set the keyed shape digest the envelope carries (collection backups).
    pub fn set_shape(&self, digest: String) {
        *self.shape.lock().expect("sealer lock") = Some(digest);
    }

    /// Write the encrypted `SHA256SUMS`, manifest, index and key file, then
    /// the envelope's `SHA256SUMS` and, create-only, the envelope.
    pub(crate) async fn commit(&self, manifest: &crate::manifest::Manifest) -> Result<()> {
        use crate::manifest::{MANIFEST, SHA256SUMS};
        let root = &self.root;
        let written = self.written.lock().expect("sealer lock").clone();
        let listed: HashSet<&str> = manifest.files().map(|f| f.path.as_str()).collect();
        let mut entries = Vec::new();
        for (plain, cipher) in written {
            if listed.contains(plain.as_str()) {
                entries.push((plain, cipher));
            } else {
                // A file the manifest does not list (none is expected).
                root.delete(&cipher.path).await?;
            }
        }
        if entries.len() != listed.len() {
            return Err(Error::internal(format!(
                "{} of the {} files of the archive at {} were not encrypted",
                listed.len().saturating_sub(entries.len()),
                listed.len(),
                root.url()
            )));
        }
        for (plain, bytes) in [
            (SHA256SUMS, manifest.sha256sums().into_bytes()),
            (MANIFEST, manifest.to_bytes()),
        ] {
            let name = self.next_name();
            let file = put_encrypted(root, &name, &self.key.encrypt(&bytes)?).await?;
            entries.push((plain.to_string(), file));
        }
        let mut index = String::new();
        for (plain, cipher) in &entries {
            index.push_str(&cipher.path);
            index.push('\t');
            index.push_str(plain);
            index.push('\n');
        }
        let index = put_encrypted(root, INDEX_FILE, &self.key.encrypt(index.as_bytes())?).await?;
        let key = put_encrypted(root, KEY_FILE, &self.key.key_file(&self.sealing)?).await?;
        let mut files = vec![key, index];
        files.extend(entries.into_iter().map(|(_, c)| c));
        let mut envelope = Envelope {
            format: ENVELOPE_FORMAT.to_string(),
            format_version: ENVELOPE_VERSION,
            encryption: self.sealing.describe(KEY_FILE),
            kind: manifest.kind,
            created_at: manifest.created_at.clone(),
            backup_point: manifest.backup_point.clone(),
            parent: manifest.parent.clone(),
            shape: self.shape.lock().expect("sealer lock").clone(),
            files,
            checksum: None,
        };
        envelope.seal();
        root.put(SHA256SUMS, bytes::Bytes::from(envelope.sha256sums()))
            .await?;
        root.put_new(MANIFEST, bytes::Bytes::from(envelope.to_bytes()))
            .await
    }
}

/// Write `bytes` at `rel`; its entry.
pub(crate) async fn put_encrypted(store: &Store, rel: &str, bytes: &[u8]) -> Result<FileRef> {
    let file = FileRef {
        path: rel.to_string(),
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
    };
    store.put(rel, bytes::Bytes::copy_from_slice(bytes)).await?;
    Ok(file)
}

/// The reading side of an opened encrypted archive: its data key and where
/// each plain path is stored.
pub struct Opened {
    key: DataKey,
    files: HashMap<String, FileRef>,
}

impl Opened {
    /// The data key.
    pub fn key(&self) -> &DataKey {
        &self.key
    }

    /// The stored file that holds plain path `plain`.
    pub fn stored(&self, plain: &str) -> Option<&FileRef> {
        self.files.get(plain)
    }
}

/// Open the encrypted archive at `store` whose envelope is `envelope`:
/// its key file, index and manifest. Errors name the file at fault.
pub(crate) async fn open(
    store: &Store,
    envelope: &Envelope,
    keys: &Keys,
) -> Result<(Opened, Vec<u8>)> {
    let enc = &envelope.encryption;
    let key_ref = envelope
        .file(&enc.key)
        .expect("validated: the key file is listed");
    if keys.is_empty() {
        return Err(missing_keys(&store.url_of(&enc.key), enc));
    }
    let key_bytes = crate::archive::fetch_checked(store, key_ref).await?;
    let key = keys.open_key(&key_bytes, &store.url_of(&enc.key), enc)?;
    let index_ref = envelope
        .file(INDEX_FILE)
        .expect("validated: the index is listed");
    let index_url = store.url_of(INDEX_FILE);
    let index = key.decrypt(
        &crate::archive::fetch_checked(store, index_ref).await?,
        &index_url,
    )?;
    let index = String::from_utf8(index)
        .map_err(|_| Error::corrupt(format!("{index_url} is damaged: it is not text")))?;
    let listed: HashMap<&str, &FileRef> = envelope
        .files
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    let mut files = HashMap::new();
    for (i, line) in index.lines().enumerate() {
        let bad = || {
            Error::corrupt(format!(
                "{index_url} line {} is not a valid index entry; the archive is damaged",
                i + 1
            ))
        };
        let (stored, plain) = line.split_once('\t').ok_or_else(bad)?;
        check_relative_path(plain, &index_url)?;
        let file = listed
            .get(stored)
            .filter(|_| stored.starts_with(&format!("{DATA_DIR}/")))
            .ok_or_else(bad)?;
        if files.insert(plain.to_string(), (*file).clone()).is_some() {
            return Err(bad());
        }
    }
    let opened = Opened { key, files };
    let stored = opened.stored(crate::manifest::MANIFEST).ok_or_else(|| {
        Error::corrupt(format!(
            "{index_url} names no encrypted manifest; the archive is damaged"
        ))
    })?;
    let bytes = crate::archive::fetch_checked(store, stored).await?;
    let plain = opened.key.decrypt(&bytes, &store.url_of(&stored.path))?;
    Ok((opened, plain))
}
