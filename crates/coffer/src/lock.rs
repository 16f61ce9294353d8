//! One operation at a time on a location: a collection's repository
//! directory (`lock.json`), or a new archive's destination while a backup or
//! export writes it (`.coffer-lock.json`).
//!
//! The lock object names its holder by a random token. Many S3-compatible
//! stores ignore conditional writes, so taking the lock never rests on
//! them: the lock is written (create-only where the store honours it), then
//! — after a pause longer than the gap between another process's read and
//! write — read back, and held only if it still carries our token. The
//! holder rewrites it every [`HEARTBEAT`] with a new expiry; a lock whose
//! expiry has passed, or whose holder on this host is no longer running,
//! is stale and may be taken over. Before committing, an operation checks
//! that it still holds the lock ([`RepoLock::check`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::store::Store;

/// The lock's object, in the collection's directory.
pub const LOCK_FILE: &str = "lock.json";
/// The lock's object in the destination of a backup or export being written.
pub const ARCHIVE_LOCK_FILE: &str = ".coffer-lock.json";
/// How long a lock lives without being renewed.
pub const TTL: Duration = Duration::from_secs(120);
/// How often the holder renews it.
pub const HEARTBEAT: Duration = Duration::from_secs(20);

/// What `lock.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Random; identifies the holder.
    pub token: String,
    /// What the holder does (`backup`, `prune`, `drop`).
    pub operation: String,
    /// The holder's host name.
    pub host: String,
    /// The holder's process id.
    pub pid: u32,
    /// When it was taken (RFC 3339).
    pub acquired_at: String,
    /// When it lapses unless renewed (RFC 3339).
    pub expires_at: String,
}

impl LockInfo {
    fn is_stale(&self) -> bool {
        let expired = self
            .expires_at
            .parse::<jiff::Timestamp>()
            .map(|t| t < jiff::Timestamp::now())
            .unwrap_or(true);
        expired || (self.host == host_name() && !process_alive(self.pid))
    }

    fn describe(&self) -> String {
        let article = if self.operation.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        format!(
            "{article} {} on {} (pid {}) since {}",
            self.operation, self.host, self.pid, self.acquired_at
        )
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// Whether process `pid` of this host may still be running: true unless
/// `/proc` shows it is gone (and true where there is no `/proc` to ask).
pub fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = std::path::Path::new("/proc");
    if !proc.join("self").exists() {
        return true; // no way to tell
    }
    proc.join(pid.to_string()).exists()
}

/// A random token.
pub fn random_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// A held lock. Release it with [`RepoLock::release`]; if the process dies
/// instead, the lock goes stale.
pub struct RepoLock {
    store: Store,
    file: &'static str,
    info: LockInfo,
    lost: Arc<AtomicBool>,
    heartbeat: tokio::task::JoinHandle<()>,
}

async fn read_lock(store: &Store, file: &str) -> Result<Option<LockInfo>> {
    Ok(store
        .get_opt(file)
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

fn lock_bytes(info: &LockInfo) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(info).expect("lock serializes"))
}

fn locked(store: &Store, holder: &LockInfo) -> Error {
    Error::new(
        ErrorKind::AlreadyExists,
        format!(
            "{} is locked by {}; wait for it to finish (a lock left by a process that died lapses at {})",
            store.url(),
            holder.describe(),
            holder.expires_at
        ),
    )
}

impl RepoLock {
    /// Take the lock of the collection directory `store` for `operation`,
    /// or fail, naming the holder, if another process holds it.
    pub async fn acquire(store: &Store, operation: &str) -> Result<RepoLock> {
        // Local directories honour create-only writes atomically; elsewhere
        // wait long enough that a racing writer's overwrite is visible.
        let settle = if store.local_dir().is_some() {
            Duration::ZERO
        } else {
            Duration::from_millis(1500)
        };
        Self::acquire_with(store, LOCK_FILE, operation, settle).await
    }

    /// Take the lock object `file` in `store` for `operation`, pausing
    /// `settle` before the read-back.
    pub async fn acquire_with(
        store: &Store,
        file: &'static str,
        operation: &str,
        settle: Duration,
    ) -> Result<RepoLock> {
        let now = jiff::Timestamp::now();
        let info = LockInfo {
            token: random_token(),
            operation: operation.to_string(),
            host: host_name(),
            pid: std::process::id(),
            acquired_at: now.to_string(),
            expires_at: (now + TTL).to_string(),
        };
        match read_lock(store, file).await? {
            Some(holder) if !holder.is_stale() => return Err(locked(store, &holder)),
            Some(stale) => {
                tracing::warn!(
                    "taking over the lock of {}: it was left by {} and lapsed at {}",
                    store.url(),
                    stale.describe(),
                    stale.expires_at
                );
                store.put(file, lock_bytes(&info)).await?;
            }
            None => match store.put_new(file, lock_bytes(&info)).await {
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    return Err(match read_lock(store, file).await? {
                        Some(holder) => locked(store, &holder),
                        None => e,
                    });
                }
                other => other?,
            },
        }
        if !settle.is_zero() {
            tokio::time::sleep(settle).await;
        }
        match read_lock(store, file).await? {
            Some(held) if held.token == info.token => {}
            Some(other) => return Err(locked(store, &other)),
            None => {
                return Err(Error::new(
                    ErrorKind::Storage,
                    format!(
                        "the lock {} vanished as it was taken; another coffer is working there, try again later",
                        store.url_of(file)
                    ),
                ));
            }
        }
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(renew(store.clone(), file, info.clone(), lost.clone()));
        Ok(RepoLock {
            store: store.clone(),
            file,
            info,
            lost,
            heartbeat,
        })
    }

    /// Fail unless the lock is still ours (call before committing).
    pub async fn check(&self) -> Result<()> {
        let held = read_lock(&self.store, self.file).await?;
        if self.lost.load(Ordering::SeqCst)
            || held.as_ref().map(|h| &h.token) != Some(&self.info.token)
        {
            let url = self.store.url_of(self.file);
            let message = if self.lost.load(Ordering::SeqCst) {
                // Our heartbeat could not renew the lock before it lapsed.
                format!(
                    "the lock {url} could not be renewed before it lapsed, so another run may have taken it; nothing was committed, run this again"
                )
            } else {
                // Both runs wrote the lock at once on a store that does not
                // honour create-only writes, and the other one won.
                let other = held.map_or_else(
                    || "another run, which has since finished,".to_string(),
                    |h| format!("another run ({})", h.describe()),
                );
                format!(
                    "{other} took the lock {url} at the same moment as this one; nothing was committed, run this again when it is done"
                )
            };
            return Err(Error::new(ErrorKind::AlreadyExists, message));
        }
        Ok(())
    }

    /// Give the lock up (only if it is still ours).
    pub async fn release(self) -> Result<()> {
        self.heartbeat.abort();
        if read_lock(&self.store, self.file).await?.map(|h| h.token)
            == Some(self.info.token.clone())
        {
            self.store.delete(self.file).await?;
        }
        Ok(())
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

async fn renew(store: Store, file: &'static str, mut info: LockInfo, lost: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        match read_lock(&store, file).await {
            Ok(Some(held)) if held.token == info.token => {}
            Ok(_) => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not check the lock");
                continue;
            }
        }
        info.expires_at = (jiff::Timestamp::now() + TTL).to_string();
        if let Err(e) = store.put(file, lock_bytes(&info)).await {
            tracing::warn!(error = %e, "could not renew the lock");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_is_refused_and_stale_locks_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let first = RepoLock::acquire(&store, "backup").await.unwrap();
        let err = RepoLock::acquire(&store, "backup").await.err().unwrap();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert!(err.to_string().contains("locked by a backup"), "{err}");
        first.check().await.unwrap();
        first.release().await.unwrap();
        assert!(store.get_opt(LOCK_FILE).await.unwrap().is_none());

        // A lock whose holder died (expired) is taken over.
        let dead = LockInfo {
            token: "dead".into(),
            operation: "backup".into(),
            host: "elsewhere".into(),
            pid: 1,
            acquired_at: "2000-01-01T00:00:00Z".into(),
            expires_at: "2000-01-01T00:02:00Z".into(),
        };
        store.put(LOCK_FILE, lock_bytes(&dead)).await.unwrap();
        let taken = RepoLock::acquire(&store, "prune").await.unwrap();
        // The old holder, come back, finds it has lost the lock.
        store.put(LOCK_FILE, lock_bytes(&dead)).await.unwrap();
        assert!(taken.check().await.is_err());
    }

    #[tokio::test]
    async fn an_overwritten_lock_is_not_ours() {
        // A store that ignores create-only writes: both writers "succeed";
        // the read-back decides.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let other = LockInfo {
            token: "other".into(),
            operation: "backup".into(),
            host: "elsewhere".into(),
            pid: 1,
            acquired_at: jiff::Timestamp::now().to_string(),
            expires_at: (jiff::Timestamp::now() + TTL).to_string(),
        };
        let s2 = store.clone();
        let racer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            s2.put(LOCK_FILE, lock_bytes(&other)).await.unwrap();
        });
        let err = RepoLock::acquire_with(&store, LOCK_FILE, "backup", Duration::from_millis(300))
            .await
            .err()
            .unwrap();
        racer.await.unwrap();
        assert!(err.to_string().contains("elsewhere"), "{err}");
    }

    /// Issue 'Hardening' item 7: on a store that ignores create-only
    /// writes, the run that loses the race for a destination's lock learns
    /// it at its commit check; it must say another run holds the lock, not
    /// that the lock was "taken over by nobody … past its expiry".
    #[tokio::test]
    async fn losing_a_race_for_the_lock_says_another_run_took_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let ours = RepoLock::acquire_with(&store, LOCK_FILE, "backup", Duration::ZERO)
            .await
            .unwrap();
        let winner = LockInfo {
            token: "winner".into(),
            operation: "export".into(),
            host: "elsewhere".into(),
            pid: 7,
            acquired_at: jiff::Timestamp::now().to_string(),
            expires_at: (jiff::Timestamp::now() + TTL).to_string(),
        };
        // The other run's write landed over ours.
        store.put(LOCK_FILE, lock_bytes(&winner)).await.unwrap();
        let err = ours.check().await.unwrap_err().to_string();
        assert!(
            err.contains("another run (an export on elsewhere (pid 7)")
                && err.contains("at the same moment"),
            "{err}"
        );
        assert!(!err.contains("expiry") && !err.contains("nobody"), "{err}");
        // The other run finished and removed its lock before our check.
        store.delete(LOCK_FILE).await.unwrap();
        let err = ours.check().await.unwrap_err().to_string();
        assert!(
            err.contains("another run, which has since finished,"),
            "{err}"
        );
        assert!(!err.contains("nobody"), "{err}");
    }
}
