//! The progress bar on stderr, and keeping other stderr output (log lines,
//! the Ctrl-C notice) from tearing it.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer::progress::{Progress, Silent};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::format::{human_bytes, human_count};

/// The bar being shown, if any, so that other output can step around it.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn active() -> Option<ProgressBar> {
    ACTIVE.lock().map(|g| g.clone()).unwrap_or(None)
}

/// Run `f` with the progress bar (if one is shown) cleared from the screen.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    match active() {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// Print a line to stderr without tearing the progress bar.
pub fn eprint_line(line: &str) {
    suspend(|| {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    });
}

/// A `tracing` writer for stderr that steps around the progress bar.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        suspend(|| std::io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// The reporter for a command: a bar when a person is watching stderr,
/// nothing otherwise.
pub fn reporter(show: bool) -> Arc<dyn Progress> {
    if show && std::io::stderr().is_terminal() {
        Arc::new(Bar::new())
    } else {
        Arc::new(Silent)
    }
}

/// Clear the bar from a panic hook, never waiting for a lock.
pub fn clear_for_panic() {
    if let Ok(mut guard) = ACTIVE.try_lock()
        && let Some(bar) = guard.take()
    {
        bar.finish_and_clear();
    }
}

/// Clear whatever bar is still shown (after an error, say).
pub fn clear() {
    if let Ok(mut guard) = ACTIVE.lock()
        && let Some(bar) = guard.take()
    {
        bar.finish_and_clear();
    }
}

#[derive(Debug, Default)]
struct Counters {
    rows: AtomicU64,
    bytes: AtomicU64,
}

/// An indicatif bar: rows or bytes against their total when known, a
/// spinner with running counts otherwise.
struct Bar {
    bar: ProgressBar,
    counters: Arc<Counters>,
    /// Whether the bar's position counts rows (else bytes).
    by_rows: Mutex<bool>,
}

const TICK: Duration = Duration::from_millis(120);
const TICKS: &str = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ";

impl Bar {
    fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner:.cyan} {msg}")
                .expect("valid template")
                .tick_chars(TICKS),
        );
        bar.set_message("starting…");
        bar.enable_steady_tick(TICK);
        if let Ok(mut guard) = ACTIVE.lock() {
            *guard = Some(bar.clone());
        }
        Bar {
            bar,
            counters: Arc::new(Counters::default()),
            by_rows: Mutex::new(true),
        }
    }

    fn style(&self, with_bar: bool, by_rows: bool) -> ProgressStyle {
        let template = match (with_bar, by_rows) {
            (true, true) => {
                "{spinner:.cyan} {prefix:.bold} [{bar:30.cyan/blue}] {human_pos}/{human_len} rows{stats} · ETA {eta} {wide_msg:.dim}"
            }
            (true, false) => {
                "{spinner:.cyan} {prefix:.bold} [{bar:30.cyan/blue}] {bytes_done}{stats} · ETA {eta} {wide_msg:.dim}"
            }
            (false, _) => "{spinner:.cyan} {prefix:.bold}{stats} · {elapsed} {wide_msg:.dim}",
        };
        let counters = self.counters.clone();
        ProgressStyle::with_template(template)
            .expect("valid template")
            .tick_chars(TICKS)
            .progress_chars("=> ")
            .with_key(
                "bytes_done",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let total = state.len().map(human_bytes).unwrap_or_default();
                    let _ = write!(w, "{}/{total}", human_bytes(state.pos()));
                },
            )
            .with_key(
                "stats",
                move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    write_stats(&counters, state, with_bar, by_rows, w);
                },
            )
    }
}

/// The running counts and rates that the bar's own fields do not show.
fn write_stats(
    counters: &Counters,
    state: &ProgressState,
    with_bar: bool,
    by_rows: bool,
    w: &mut dyn std::fmt::Write,
) {
    let rows = counters.rows.load(Ordering::Relaxed);
    let bytes = counters.bytes.load(Ordering::Relaxed);
    let secs = state.elapsed().as_secs_f64();
    let mut parts: Vec<String> = Vec::new();
    // A step that counts nothing (building indexes, checking) shows only
    // its name, its time and what it works on.
    if !with_bar && rows > 0 {
        parts.push(format!("{} rows", human_count(rows)));
    }
    if bytes > 0 && (by_rows || !with_bar) {
        parts.push(human_bytes(bytes));
    }
    if secs >= 0.5 {
        if rows > 0 {
            parts.push(format!(
                "{} rows/s",
                human_count((rows as f64 / secs) as u64)
            ));
        }
        if bytes > 0 {
            parts.push(format!("{}/s", human_bytes((bytes as f64 / secs) as u64)));
        }
    }
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        out.push_str(if i > 0 || with_bar { " · " } else { " " });
        out.push_str(p);
    }
    let _ = w.write_str(&out);
}

impl Progress for Bar {
    fn wants_totals(&self) -> bool {
        true
    }

    fn begin(&self, phase: &str, total_rows: Option<u64>, total_bytes: Option<u64>) {
        self.counters.rows.store(0, Ordering::Relaxed);
        self.counters.bytes.store(0, Ordering::Relaxed);
        let (len, by_rows) = match (total_rows, total_bytes) {
            (Some(r), _) => (Some(r), true),
            (None, Some(b)) => (Some(b), false),
            (None, None) => (None, true),
        };
        if let Ok(mut g) = self.by_rows.lock() {
            *g = by_rows;
        }
        self.bar.set_message("");
        match len {
            Some(len) => self.bar.set_length(len),
            None => self.bar.unset_length(),
        }
        self.bar.set_style(self.style(len.is_some(), by_rows));
        self.bar.set_prefix(phase.to_string());
        self.bar.reset();
        self.bar.enable_steady_tick(TICK);
        if let Ok(mut guard) = ACTIVE.lock() {
            *guard = Some(self.bar.clone());
        }
    }

    fn advance(&self, rows: u64, bytes: u64) {
        self.counters.rows.fetch_add(rows, Ordering::Relaxed);
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
        let by_rows = self.by_rows.lock().map(|g| *g).unwrap_or(true);
        let delta = if by_rows { rows } else { bytes };
        if delta > 0 {
            self.bar.inc(delta);
        }
    }

    fn note(&self, what: &str) {
        self.bar
            .set_message(crate::format::printable(what, false).into_owned());
    }

    fn end(&self) {
        self.bar.finish_and_clear();
        if let Ok(mut guard) = ACTIVE.lock() {
            *guard = None;
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.end();
    }
}
