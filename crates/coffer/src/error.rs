//! The one public error type of coffer.
//!
//! Every error carries a [`ErrorKind`] that callers can branch on and a
//! message that is one sentence naming the thing at fault (a file, a table, a
//! URL) and, where there is one, what to do about it. Lower-level causes are
//! kept as the error's source so that `--verbose` output can show them.

use std::fmt;

/// What went wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller asked for something that cannot be done as asked
    /// (a bad location, an unknown table, conflicting options).
    InvalidInput,
    /// The thing named does not exist (a database, an archive, a bucket).
    NotFound,
    /// The target exists and the caller did not ask to replace it.
    AlreadyExists,
    /// Stored data does not match what its manifest promises.
    Corrupt,
    /// Credentials were refused by the storage service.
    Auth,
    /// The storage service or filesystem failed.
    Storage,
    /// The database engine failed.
    Engine,
    /// The operation was cancelled (Ctrl-C).
    Interrupted,
    /// One stage of an operation's pipeline stopped because the stage it
    /// feeds went away; that stage's own error says why. Operations replace
    /// it with that error, so users never see it.
    Stopped,
    /// A bug in coffer.
    Internal,
}

/// An error from a coffer operation. `Display` prints one sentence.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Result alias used throughout coffer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a one-sentence `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the lower-level cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The one-sentence message, without the cause chain.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::Corrupt`].
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Shorthand for [`ErrorKind::Stopped`]: the next stage went away.
    pub fn stopped() -> Self {
        Self::new(
            ErrorKind::Stopped,
            "stopped because the next stage of the operation failed",
        )
    }

    /// Whether this is [`Error::stopped`].
    pub fn is_stopped(&self) -> bool {
        self.kind == ErrorKind::Stopped
    }

    /// Shorthand for [`ErrorKind::Interrupted`].
    pub fn interrupted() -> Self {
        Self::new(ErrorKind::Interrupted, "interrupted; nothing was committed")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)?;
        if let Some(source) = &self.source {
            write!(f, " (caused by: {source})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}
