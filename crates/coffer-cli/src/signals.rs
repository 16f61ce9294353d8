//! Stop signals: Ctrl-C (SIGINT), SIGTERM (what `kill`, systemd and
//! container runtimes send) and SIGHUP (a closed terminal) all stop a
//! command the same way: cancel, clean up, exit with 128 + the signal's
//! number (130 after Ctrl-C).

use std::future::Future;
use std::sync::atomic::{AtomicI32, Ordering};

use coffer::progress::Cancel;
use coffer::{Error, ErrorKind, Result};

use crate::progress;

/// The first stop signal received, 0 while none was.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// SIGINT's number, the status base when no signal was recorded.
const SIGINT: i32 = 2;

/// The exit status of a command that a stop signal interrupted: 128 plus
/// the signal's number, as shells report it.
pub fn interrupted_status() -> i32 {
    match STOP_SIGNAL.load(Ordering::Relaxed) {
        0 => 128 + SIGINT,
        n => 128 + n,
    }
}

/// Resolves with the number of the next stop signal that arrives. The
/// handlers are installed at the first call, so until a command listens
/// the signals keep their default action.
async fn next_stop_signal() -> i32 {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        // The numbers are POSIX's, the same on every Unix.
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::debug!("cannot listen for stop signals");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => SIGINT,
            _ = term.recv() => 15,
            _ = hup.recv() => 1,
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        SIGINT
    }
}

/// Record the signal that stops the command (the first one wins).
fn record(signal: i32) {
    let _ = STOP_SIGNAL.compare_exchange(0, signal, Ordering::Relaxed, Ordering::Relaxed);
}

/// Set `cancel` on the first stop signal, so the operation stops at its
/// next check and cleans up; a second signal quits at once.
pub fn cancel_on_stop_signal(cancel: Cancel) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let first = next_stop_signal().await;
        record(first);
        cancel.cancel();
        let how = if first == SIGINT {
            "press Ctrl-C again to quit at once"
        } else {
            "send the signal again to quit at once"
        };
        progress::eprint_line(&format!("stopping… ({how})"));
        next_stop_signal().await;
        progress::clear();
        eprintln!("error: interrupted");
        std::process::exit(interrupted_status());
    })
}

/// Run `op` until it ends or a stop signal arrives; for read-only
/// commands, which can simply be dropped.
pub async fn until_stop_signal<T>(op: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        r = op => r,
        signal = next_stop_signal() => {
            record(signal);
            Err(Error::new(ErrorKind::Interrupted, "interrupted"))
        }
    }
}
