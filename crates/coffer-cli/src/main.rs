//! `coffer`: back up, restore, verify and list database archives.

mod cli;
mod commands;
mod format;
mod progress;
mod report;
mod signals;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU8, Ordering};

use clap::Parser;
use coffer::ErrorKind;
use tracing_subscriber::EnvFilter;

use crate::cli::Cli;

/// Exit status when an error stopped the command.
const EXIT_FAILURE: i32 = 1;
/// Exit status after a bug (a panic).
const EXIT_BUG: i32 = 101;

/// The `-v` count, for the panic hook.
static VERBOSITY: AtomicU8 = AtomicU8::new(0);

/// Keep glibc from holding on to freed part buffers.
///
/// glibc serves allocations above a threshold with their own `mmap` and
/// returns them on `free`, but raises the threshold each time such a block
/// is freed, up to 32 MiB: after the first data part is freed, later parts
/// (up to 32 MiB each) come from the heap, and the heap keeps their memory,
/// fragmented, after they are freed. A fixed threshold turns that off, so
/// peak memory follows what is in use. At 4 MiB (1 MiB made Parquet's page
/// buffers costly) peak RSS at 4x the benchmark scale fell from 150 to
/// 123 MB for a restore and from 170 to 130-140 MB for a backup, in the
/// same time.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fix_mmap_threshold() {
    // SAFETY: mallopt only changes allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fix_mmap_threshold() {}

#[tokio::main]
async fn main() {
    fix_mmap_threshold();
    install_panic_hook();
    let cli = Cli::parse();
    VERBOSITY.store(cli.output.verbose, Ordering::Relaxed);
    init_logging(cli.output.verbose);
    let verbose = cli.output.verbose > 0;
    let json = cli.output.json;
    let code = match commands::run(cli).await {
        Ok(()) => 0,
        Err(e) => {
            progress::clear();
            report_error(&e, verbose);
            if json && !commands::JSON_PRINTED.load(Ordering::Relaxed) {
                report_error_json(&e);
            }
            if e.kind() == ErrorKind::Interrupted {
                signals::interrupted_status()
            } else {
                EXIT_FAILURE
            }
        }
    };
    std::process::exit(code);
}

/// `error: <message>` on stderr, and with `--verbose` each cause below it.
fn report_error(e: &coffer::Error, verbose: bool) {
    let mut text = format!("error: {}", format::printable(&e.to_string(), false));
    if verbose {
        let mut last = e.to_string();
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            let msg = c.to_string();
            // Causes often repeat the tail of the one above; skip those.
            if !msg.is_empty() && !last.contains(&msg) {
                let shown = format::printable(&msg, true).replace('\n', "\n    ");
                text.push_str(&format!("\n  caused by: {shown}"));
                last = msg;
            }
            cause = c.source();
        }
    }
    eprintln!("{text}");
}

/// With `--json`, a failure is also one JSON object on stdout, so a
/// script that reads stdout learns what went wrong:
/// `{"ok": false, "error": "<the sentence>", "kind": "not_found"}`.
fn report_error_json(e: &coffer::Error) {
    let kind = match e.kind() {
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::NotFound => "not_found",
        ErrorKind::AlreadyExists => "already_exists",
        ErrorKind::Corrupt => "corrupt",
        ErrorKind::Auth => "auth",
        ErrorKind::Storage => "storage",
        ErrorKind::Engine => "engine",
        ErrorKind::Interrupted => "interrupted",
        _ => "internal",
    };
    let value = serde_json::json!({ "ok": false, "error": e.message(), "kind": kind });
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{value}").and_then(|()| stdout.flush());
}

/// Logs on stderr: warnings only by default, more with each `-v`;
/// `COFFER_LOG` overrides the filter.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "coffer=warn,coffer_sqlite=warn,coffer_cli=warn",
        1 => "warn,coffer=debug,coffer_sqlite=debug,coffer_cli=debug",
        2 => "info,coffer=trace,coffer_sqlite=trace,coffer_cli=trace",
        _ => "trace",
    };
    let filter = std::env::var("COFFER_LOG")
        .ok()
        .filter(|f| !f.trim().is_empty())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(progress::LogWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbose >= 2);
    let _ = if verbose == 0 {
        builder.event_format(PlainLine).try_init()
    } else {
        builder.try_init()
    };
}

/// Without `-v`, a warning is one plain line (`warning: what happened:
/// why`), as a person reads it, not a log record with time and fields.
struct PlainLine;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for PlainLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = PlainFields::default();
        event.record(&mut fields);
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            _ => "note",
        };
        let text = |t: &str| format::printable(t, false).into_owned();
        write!(writer, "{level}: {}", text(&fields.message))?;
        for (name, value) in &fields.others {
            if name == "error" {
                write!(writer, ": {}", text(value))?;
            } else {
                write!(writer, " ({name}: {})", text(value))?;
            }
        }
        writeln!(writer)
    }
}

/// The message and the other fields of an event, as text.
#[derive(Default)]
struct PlainFields {
    message: String,
    others: Vec<(String, String)>,
}

impl tracing::field::Visit for PlainFields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.others
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.others
                .push((field.name().to_string(), value.to_string()));
        }
    }
}

/// A panic is a bug: say so in one line, without a backtrace, and exit 101.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        progress::clear_for_panic();
        let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "unknown panic".to_string()
        };
        let place = match info.location() {
            Some(l) if VERBOSITY.load(Ordering::Relaxed) > 0 => {
                format!(" (at {}:{})", l.file(), l.line())
            }
            _ => String::new(),
        };
        eprintln!("error: internal error: {msg}{place}; please report this");
        std::process::exit(EXIT_BUG);
    }));
}
