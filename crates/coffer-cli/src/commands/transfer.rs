//! `export` and `import`: portable snapshots of tables, in and out.

use coffer::Result;
use coffer::engine::ImportMode;
use coffer::manifest::{ArchiveKind, DataFormat, Source};
use coffer::ops::backup::ArchiveOptions;
use coffer::ops::export::ExportOptions;
use coffer::ops::import::{ImportOptions, import};
use coffer::store::{Store, StoreOptions};
use serde::Serialize;

use super::{emit, emit_json, engine_for, run_until_stopped, write_archive};
use crate::cli::{ExportArgs, FormatArg, ImportArgs, ModeArg, OutputArgs};
use crate::format::{human_bytes, human_seconds, plural};
use crate::progress;
use crate::report::{RestoredTable, TableSummary};

/// `coffer export --json`.
#[derive(Debug, Serialize)]
struct ExportJson<'a> {
    ok: bool,
    command: &'static str,
    archive: &'a str,
    kind: ArchiveKind,
    data_format: DataFormat,
    created_at: &'a str,
    backup_point: &'a str,
    source: &'a Source,
    tables: Vec<TableSummary<'a>>,
    total_rows: u64,
    total_bytes: u64,
    files: usize,
    seconds: f64,
}

/// `coffer import --json`.
#[derive(Debug, Serialize)]
struct ImportJson<'a> {
    ok: bool,
    command: &'static str,
    archive: &'a str,
    database: &'a str,
    mode: &'static str,
    source: &'a Source,
    backup_point: &'a str,
    tables: Vec<RestoredTable<'a>>,
    rows: u64,
    bytes: u64,
    seconds: f64,
    /// Values stored in their nearest form (`--coerce`).
    coerced: u64,
}

fn format_name(f: DataFormat) -> &'static str {
    match f {
        DataFormat::Parquet => "Parquet",
        DataFormat::Csv => "CSV",
    }
}

pub(super) async fn run_export(
    args: &ExportArgs,
    store_options: &StoreOptions,
    out: &OutputArgs,
) -> Result<()> {
    let options = ArchiveOptions::Export(ExportOptions {
        write: args.write.options(match args.format {
            FormatArg::Parquet => DataFormat::Parquet,
            FormatArg::Csv => DataFormat::Csv,
        }),
        keep_hidden_key: args.keep_hidden_key,
        tables: (!args.tables.is_empty()).then(|| args.tables.clone()),
        exclude: args.exclude.clone(),
        schemas: args.schemas.clone(),
        encoders: args.write.encoders(),
        scanners: usize::from(args.scanners),
    });
    let (store, report) = write_archive(&args.db, &args.dest, store_options, out, options).await?;
    let m = &report.manifest;
    if out.json {
        emit_json(&ExportJson {
            ok: true,
            command: "export",
            archive: store.url(),
            kind: m.kind,
            data_format: m.data_format,
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
            "exported {}, {}, {} of {} in {} to {}",
            plural(m.tables.len() as u64, "table", "tables"),
            plural(m.total_rows(), "row", "rows"),
            human_bytes(m.total_bytes()),
            format_name(m.data_format),
            human_seconds(report.seconds),
            store.url()
        ))
    }
}

pub(super) async fn run_import(
    args: &ImportArgs,
    store_options: &StoreOptions,
    out: &OutputArgs,
) -> Result<()> {
    let (engine, db) = engine_for(&args.db)?;
    let store = Store::open(&args.src, store_options)?;
    let (mode, mode_name) = match args.mode {
        ModeArg::Create => (ImportMode::Create, "create"),
        ModeArg::Append => (ImportMode::Append, "append"),
        ModeArg::Replace => (ImportMode::Replace, "replace"),
    };
    let options = ImportOptions {
        tables: args.tables.clone(),
        mode,
        coerce: args.coerce,
    };
    tracing::info!(src = %store.url(), db = %db, ?options, "import");
    let (run, ctrl_c) = run_until_stopped(out);
    let result = import(engine, &store, &db, options, run).await;
    ctrl_c.abort();
    progress::clear();
    let report = result?;
    let m = &report.manifest;
    if out.json {
        emit_json(&ImportJson {
            ok: true,
            command: "import",
            archive: store.url(),
            database: db.display(),
            mode: mode_name,
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
            coerced: report.coerced,
        })
    } else if out.quiet {
        Ok(())
    } else {
        let coerced = if report.coerced > 0 {
            format!(
                "; {} stored in their nearest form (--coerce)",
                plural(report.coerced, "value", "values")
            )
        } else {
            String::new()
        };
        emit(&format!(
            "imported {}, {} ({} read) in {} from {} into {}{coerced}",
            plural(report.tables.len() as u64, "table", "tables"),
            plural(report.rows, "row", "rows"),
            human_bytes(report.bytes),
            human_seconds(report.seconds),
            store.url(),
            db
        ))
    }
}
