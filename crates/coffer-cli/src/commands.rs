//! The commands: each turns its arguments into a library call and prints
//! the outcome.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use coffer::archive::read_manifest;
use coffer::engine::{Address, Engine, Registry};
use coffer::manifest::{DataFormat, Manifest, SHA256SUMS};
use coffer::ops::backup::{
    ArchiveOptions, BackupOptions, BackupReport, write_archive as ops_write_archive,
};
use coffer::ops::restore::{RestoreOptions, restore};
use coffer::ops::verify::{FileStatus, verify};
use coffer::progress::{Cancel, Run};
use coffer::store::{Store, StoreOptions, is_local};
use coffer::{Error, ErrorKind, Result};
use serde::Serialize;

use crate::cli::{BackupArgs, Cli, Command, LsArgs, OutputArgs, RestoreArgs, VerifyArgs};
use crate::format::{human_bytes, human_count, human_seconds, human_time, plural};
use crate::progress;
use crate::report::{
    self, BackupJson, LsJson, RestoreJson, RestoredTable, TableSummary, VerifyJson,
};
use crate::signals::{cancel_on_stop_signal, until_stop_signal};

mod collection;
mod keys;
mod transfer;

/// Run the command line's command.
pub async fn run(cli: Cli) -> Result<()> {
    let mut store_options = cli.s3.store_options();
    store_options.keys = keys::keys(&cli.keys)?;
    let out = &cli.output;
    // What a new archive or collection is encrypted to.
    let sealed = |args: &crate::cli::EncryptArgs| -> Result<StoreOptions> {
        Ok(keys::writing(
            &store_options,
            keys::sealing(args, &cli.keys)?,
        ))
    };
    match &cli.command {
        Command::Backup(args) => run_backup(args, &sealed(&args.encrypt)?, out).await,
        Command::Export(args) => transfer::run_export(args, &sealed(&args.encrypt)?, out).await,
        Command::Collection(crate::cli::collection::CollectionCommand::Create(args)) => {
            collection::run_create(args, &sealed(&args.encrypt)?, out).await
        }
        Command::Rekey(args) => keys::run_rekey(args, &store_options, out).await,
        Command::Restore(args) => run_restore(args, &store_options, out).await,
        Command::Verify(args) => run_verify(args, &store_options, out).await,
        Command::Ls(args) => run_ls(args, &store_options, out).await,
        Command::Import(args) => transfer::run_import(args, &store_options, out).await,
        Command::Collection(command) => collection::run(command, &store_options, out).await,
    }
}

/// The engines this coffer knows, asked in this order.
fn engines() -> Registry {
    Registry::new()
        .with(coffer_postgres::engine())
        .with(coffer_sqlite::engine())
}

/// The engine for a database argument, with the address it parsed.
fn engine_for(db: &str) -> Result<(Arc<dyn Engine>, Address)> {
    engines().resolve(db)
}

/// The directories that creating the local location would create, deepest
/// first; empty when it exists or is not local.
fn absent_local_dirs(location: &str) -> Vec<PathBuf> {
    if !is_local(location) {
        return Vec::new();
    }
    let path = Path::new(location.strip_prefix("file://").unwrap_or(location));
    path.ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .take_while(|p| !p.exists())
        .map(Path::to_path_buf)
        .collect()
}

/// Remove the directories a failed backup created, as far as they are empty.
fn remove_empty_dirs(dirs: &[PathBuf]) {
    for dir in dirs {
        if std::fs::remove_dir(dir).is_err() {
            break;
        }
    }
}

/// What a long command reports to (a progress display on a terminal,
/// unless `--json` or `--quiet`) and what stops it (Ctrl-C, SIGTERM,
/// SIGHUP): the run to hand the operation, and the signal watcher to abort
/// once it is done.
fn run_until_stopped(out: &OutputArgs) -> (Run, tokio::task::JoinHandle<()>) {
    let cancel = Cancel::new();
    let ctrl_c = cancel_on_stop_signal(cancel.clone());
    let run = Run::new(progress::reporter(!out.json && !out.quiet), cancel);
    (run, ctrl_c)
}

/// Print a line to stdout; a closed pipe (`coffer ls | head`) ends quietly.
pub(crate) fn emit(text: &str) -> Result<()> {
    emit_exactly(&crate::format::printable(text, true))
}

/// Print a line to stdout as it is (JSON, which escapes on its own).
fn emit_exactly(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(Error::new(
            ErrorKind::Internal,
            format!("could not write to standard output: {e}"),
        )),
    }
}

/// Whether the command printed its JSON object (then a failure after it,
/// such as the damage `verify --json` reports, prints no second one).
pub static JSON_PRINTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Print one JSON object: indented for a person, one line for a program.
pub(crate) fn emit_json(value: &impl Serialize) -> Result<()> {
    JSON_PRINTED.store(true, std::sync::atomic::Ordering::Relaxed);
    let text = if std::io::stdout().is_terminal() {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .map_err(|e| Error::internal(format!("could not encode the JSON output: {e}")))?;
    emit_exactly(&text)
}

/// Write a new archive of `db` at `dest` (`backup` and `export`): Ctrl-C
/// stops it, progress shows on a terminal, and the directories it created
/// are removed again when it fails.
pub(crate) async fn write_archive(
    db: &str,
    dest: &str,
    store_options: &StoreOptions,
    out: &OutputArgs,
    options: ArchiveOptions,
) -> Result<(Store, BackupReport)> {
    let (engine, db) = engine_for(db)?;
    let created = absent_local_dirs(dest);
    let result = async {
        let store = Store::create(dest, store_options)?;
        tracing::info!(db = %db, dest = %store.url(), ?options, "writing an archive");
        let (run, ctrl_c) = run_until_stopped(out);
        let result = ops_write_archive(engine, &db, &store, options, run).await;
        ctrl_c.abort();
        progress::clear();
        result.map(|report| (store, report))
    }
    .await;
    if result.is_err() {
        // Leave no empty directory behind for an archive that never began
        // (the library removes the tables' directories it made inside).
        remove_empty_dirs(&created);
    }
    result
}

async fn run_backup(
    args: &BackupArgs,
    store_options: &StoreOptions,
    out: &OutputArgs,
) -> Result<()> {
    let options = ArchiveOptions::Backup(BackupOptions {
        write: args.write.options(DataFormat::Parquet),
        tables: (!args.tables.is_empty()).then(|| args.tables.clone()),
        encoders: args.write.encoders(),
        scanners: usize::from(args.scanners),
    });
    let (store, report) = write_archive(&args.db, &args.dest, store_options, out, options).await?;
    let m = &report.manifest;
    if out.json {
        emit_json(&BackupJson {
            ok: true,
            command: "backup",
            archive: store.url(),
            kind: m.kind,
            created_at: &m.created_at,
            backup_point: &m.backup_point,
            source: &m.source,
            tables: m.tables.iter().map(TableSummary::from).collect(),
            total_rows: m.total_rows(),
            total_bytes: m.total_bytes(),
            files: m.files().count(),
            seconds: report.seconds,
        })
    } else if out.quiet {
        Ok(())
    } else {
        emit(&format!(
            "backed up {}, {}, {} in {} to {}",
            plural(m.tables.len() as u64, "table", "tables"),
            plural(m.total_rows(), "row", "rows"),
            human_bytes(m.total_bytes()),
            human_seconds(report.seconds),
            store.url()
        ))
    }
}

async fn run_restore(
    args: &RestoreArgs,
    store_options: &StoreOptions,
    out: &OutputArgs,
) -> Result<()> {
    let (engine, db) = engine_for(&args.db)?;
    let store = Store::open(&args.src, store_options)?;
    let options = RestoreOptions {
        replace: args.force,
        tables: args.tables.clone(),
        skip_missing_collations: args.skip_missing_collations,
        no_owner: args.no_owner,
        no_privileges: args.no_privileges,
    };
    tracing::info!(src = %store.url(), db = %db, ?options, "restore");
    let (run, ctrl_c) = run_until_stopped(out);
    let result = restore(engine, &store, &db, options, run).await;
    ctrl_c.abort();
    progress::clear();
    let report = result?;
    let m = &report.manifest;
    if out.json {
        emit_json(&RestoreJson {
            ok: true,
            command: "restore",
            archive: store.url(),
            database: db.display(),
            source: &m.source,
            backup_point: &m.backup_point,
            tables: report
                .tables
                .iter()
                .map(|name| RestoredTable {
                    name,
                    rows: m.table(name).map_or(0, |t| t.rows),
                })
                .collect(),
            rows: report.rows,
            bytes: report.bytes,
            seconds: report.seconds,
            skipped: &report.skipped,
        })
    } else if out.quiet {
        Ok(())
    } else {
        if !report.skipped.is_empty() {
            let left: Vec<String> = report
                .skipped
                .iter()
                .map(|s| format!("{} '{}' ({})", s.kind, s.name.escape_debug(), s.reason))
                .collect();
            emit(&format!("left out: {}", left.join(", ")))?;
        }
        emit(&format!(
            "restored {}, {} ({} read) in {} from {} into {}",
            plural(report.tables.len() as u64, "table", "tables"),
            plural(report.rows, "row", "rows"),
            human_bytes(report.bytes),
            human_seconds(report.seconds),
            store.url(),
            db
        ))
    }
}

async fn run_verify(
    args: &VerifyArgs,
    store_options: &StoreOptions,
    out: &OutputArgs,
) -> Result<()> {
    let store = Store::open(&args.src, store_options)?;
    let reporter = progress::reporter(!out.json && !out.quiet);
    let result = until_stop_signal(verify(&store, reporter.as_ref())).await;
    progress::clear();
    let report = result?;
    let total = report.files.len();
    let bad: Vec<_> = report
        .files
        .iter()
        .filter(|f| f.status != FileStatus::Ok)
        .collect();
    if out.json {
        emit_json(&VerifyJson::new(store.url(), &report))?;
    } else {
        for f in &bad {
            emit(&format!("{} {}", f.path, problem(&f.status)))?;
        }
        if !report.sums_match {
            emit(&format!(
                "{SHA256SUMS} is missing or does not match the manifest"
            ))?;
        }
        if report.is_ok() {
            if !out.quiet && !report.contents_checked() {
                emit(&format!(
                    "verified {}: all {} encrypted {} ({}) match their checksums; give --identity (or the passphrase) to decrypt and check the contents too",
                    store.url(),
                    human_count(total as u64),
                    if total == 1 { "file" } else { "files" },
                    human_bytes(report.bytes)
                ))?;
            } else if !out.quiet {
                emit(&format!(
                    "verified {}: all {} ({}) match the manifest{}",
                    store.url(),
                    plural(total as u64, "file", "files"),
                    human_bytes(report.bytes),
                    if report.encryption.is_some() {
                        ", decrypted and checked"
                    } else {
                        ""
                    }
                ))?;
            }
        } else {
            let sums = if report.sums_match {
                ""
            } else {
                &format!(", {SHA256SUMS} does not match")
            };
            emit(&format!(
                "verify failed: {} of {total} files damaged{sums}",
                bad.len()
            ))?;
        }
    }
    if report.is_ok() {
        return Ok(());
    }
    // One sentence that names the (first) damaged file.
    let what = match bad.as_slice() {
        [] => format!(
            "{SHA256SUMS} is missing or does not match the manifest (the data files are intact)"
        ),
        [f] => format!("{} {}", f.path, problem(&f.status)),
        [f, ..] => format!(
            "{} of {total} files do not match the manifest, among them {} ({})",
            bad.len(),
            f.path,
            problem(&f.status)
        ),
    };
    Err(Error::corrupt(format!(
        "the archive at {} is damaged: {what}; restore it from another copy",
        store.url()
    )))
}

/// What is wrong with a file, as the predicate of a sentence naming it.
fn problem(status: &FileStatus) -> String {
    match status {
        FileStatus::Ok => "is intact".to_string(),
        FileStatus::Missing => "is missing".to_string(),
        FileStatus::WrongSize { expected, actual } => format!(
            "has the wrong size: {} bytes instead of {}",
            human_count(*actual),
            human_count(*expected)
        ),
        FileStatus::WrongChecksum => "has the wrong checksum: its contents changed".to_string(),
        FileStatus::WrongContents => {
            "matches its checksum but does not decrypt to what the manifest says: it was replaced"
                .to_string()
        }
    }
}

async fn run_ls(args: &LsArgs, store_options: &StoreOptions, out: &OutputArgs) -> Result<()> {
    let store = Store::open(&args.src, store_options)?;
    if store.keys().is_empty()
        && let coffer::archive::Head::Encrypted(e) =
            until_stop_signal(coffer::archive::read_head(&store)).await?
    {
        // Without a key only the envelope can be shown.
        if out.json {
            return emit_json(&report::EncryptedLsJson::new(store.url(), &e));
        }
        for line in encrypted_ls_lines(store.url(), &e) {
            emit(&line)?;
        }
        return Ok(());
    }
    let m = until_stop_signal(read_manifest(&store)).await?;
    if out.json {
        emit_json(&LsJson::new(store.url(), &m))
    } else {
        for line in ls_lines(store.url(), &m) {
            emit(&line)?;
        }
        Ok(())
    }
}

/// What `ls` shows of an encrypted archive without a key.
fn encrypted_ls_lines(url: &str, e: &coffer::crypt::Envelope) -> Vec<String> {
    let to = if e.encryption.passphrase {
        "a passphrase".to_string()
    } else {
        e.encryption.recipients.join(", ")
    };
    let stored: u64 = e.files.iter().map(|f| f.size).sum();
    vec![
        format!("archive       {url}"),
        format!(
            "kind          {} (encrypted)",
            serde_json::to_value(e.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ),
        format!("encrypted     with age, to {to}"),
        format!("created       {}", human_time(&e.created_at)),
        format!("backup point  {}", human_time(&e.backup_point)),
        format!(
            "stored        {} in {}",
            human_bytes(stored),
            plural(e.files.len() as u64, "file", "files")
        ),
        "give --identity (or the passphrase) to list its tables".to_string(),
    ]
}

/// The plural of a schema object type.
fn kinds(n: usize, kind: &str) -> String {
    let many = match kind {
        "index" => "indexes".to_string(),
        k => format!("{k}s"),
    };
    plural(n as u64, kind, &many)
}

/// The human listing of an archive.
fn ls_lines(url: &str, m: &Manifest) -> Vec<String> {
    let kind = serde_json::to_value(m.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", m.kind).to_lowercase());
    let data_format = serde_json::to_value(m.data_format)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", m.data_format).to_lowercase());
    let mut lines = vec![
        format!("archive       {url}"),
        format!(
            "kind          {kind} ({data_format}, archive format {}, written by {} {})",
            m.format_version, m.tool.name, m.tool.version
        ),
        format!("created       {}", human_time(&m.created_at)),
        format!("backup point  {}", human_time(&m.backup_point)),
    ];
    if let Some(parent) = &m.parent {
        lines.push(format!("parent        {parent}"));
    }
    lines.push(format!(
        "source        {} {}, database {}",
        m.source.engine, m.source.engine_version, m.source.database
    ));
    let counts = report::object_counts(m);
    if !counts.is_empty() {
        let schema: Vec<String> = counts.iter().map(|(k, n)| kinds(*n, k)).collect();
        lines.push(format!("schema        {}", schema.join(", ")));
    }
    lines.push(String::new());

    if m.tables.is_empty() {
        lines.push("(no tables)".to_string());
        return lines;
    }
    let rows: Vec<[String; 5]> = m
        .tables
        .iter()
        .map(|t| {
            [
                t.name.clone(),
                t.kind.to_string(),
                human_count(t.rows),
                human_bytes(report::table_bytes(t)),
                human_count(t.parts.len() as u64),
            ]
        })
        .collect();
    let header = ["TABLE", "KIND", "ROWS", "SIZE", "PARTS"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain(std::iter::once(header[i].len()))
            .max()
            .unwrap_or(0)
    };
    let w: Vec<usize> = (0..5).map(width).collect();
    let line = |c: [&str; 5]| {
        format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {:>w4$}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        )
        .trim_end()
        .to_string()
    };
    lines.push(line(header));
    for r in &rows {
        lines.push(line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    lines.push(String::new());
    lines.push(format!(
        "total         {}, {}, {}",
        plural(m.tables.len() as u64, "table", "tables"),
        plural(m.total_rows(), "row", "rows"),
        human_bytes(m.total_bytes())
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_are_chosen_by_scheme() {
        let location = |db: &str| engine_for(db).unwrap().1.location().to_string();
        assert_eq!(location("app.db"), "app.db");
        assert_eq!(location("sqlite://data/app.db"), "data/app.db");
        assert_eq!(location("SQLite:///abs/app.db"), "/abs/app.db");
        let (engine, address) = engine_for("data/app.db").unwrap();
        assert_eq!(engine.name(), "sqlite");
        assert_eq!(address.database(), "app.db");
        assert_eq!(address.default_repository(), "data/app.db.backups");
        let (engine, address) = engine_for("postgres://user:hunter2@db/app").unwrap();
        assert_eq!(engine.name(), "postgres");
        assert_eq!(address.display(), "postgres://user@db:5432/app");
        assert_eq!(address.database(), "app");
        assert!(!format!("{address:?}").contains("hunter2"));
        let err = engine_for("mysql://user:hunter2@db/app").err().unwrap();
        assert!(err.to_string().contains("'mysql://...'"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(engine_for("sqlite://").is_err());
    }

    #[test]
    fn only_directories_a_failed_backup_created_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a/b/c");
        let created = absent_local_dirs(dest.to_str().unwrap());
        assert_eq!(created.len(), 3);
        assert!(absent_local_dirs("s3://bucket/x").is_empty());
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::write(dir.path().join("a/keep"), b"x").unwrap();
        remove_empty_dirs(&created);
        assert!(!dir.path().join("a/b").exists());
        assert!(dir.path().join("a/keep").exists());
    }
}
