//! `coffer collection ...`: create, back up, restore, list, show, drop and
//! prune backup collections.

use coffer::manifest::{ArchiveKind, DataFormat};
use coffer::ops::collection::{
    self, BackupMode, CollectionBackupOptions, CollectionRestoreOptions, CreateOptions,
    DropOptions, RestorePoint, backup::backup, prune::prune, restore::restore, table_changes,
};
use coffer::store::{Store, StoreOptions};
use coffer::{Error, Result};
use serde::Serialize;

use super::{
    absent_local_dirs, emit, emit_json, engine_for, remove_empty_dirs, run_until_stopped,
    until_stop_signal,
};
use crate::cli::OutputArgs;
use crate::cli::collection::{
    CollectionBackupArgs, CollectionCommand, CollectionDropArgs, CollectionListArgs,
    CollectionPruneArgs, CollectionRestoreArgs, CollectionShowArgs, CreateArgs, RepoChoice,
};
use crate::format::{human_bytes, human_count, human_seconds, human_time, plural};
use crate::progress;

/// Run one `coffer collection` command.
pub async fn run(
    command: &CollectionCommand,
    store_options: &StoreOptions,
    out: &OutputArgs,
) -> Result<()> {
    match command {
        CollectionCommand::Create(args) => run_create(args, store_options, out).await,
        CollectionCommand::Backup(args) => run_backup(args, store_options, out).await,
        CollectionCommand::Restore(args) => run_restore(args, store_options, out).await,
        CollectionCommand::List(args) => run_list(args, store_options, out).await,
        CollectionCommand::Show(args) => run_show(args, store_options, out).await,
        CollectionCommand::Drop(args) => run_drop(args, store_options, out).await,
        CollectionCommand::Prune(args) => run_prune(args, store_options, out).await,
    }
}

fn kind_name(kind: ArchiveKind) -> &'static str {
    match kind {
        ArchiveKind::Incremental => "incremental",
        _ => "full",
    }
}

/// Left-aligned text columns, right-aligned numbers (`right[i]`).
fn columns<const N: usize>(
    header: [&str; N],
    rows: &[[String; N]],
    right: [bool; N],
) -> Vec<String> {
    let width: Vec<usize> = (0..N)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain(std::iter::once(header[i].len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if right[i] {
                    format!("{c:>w$}", w = width[i])
                } else {
                    format!("{c:<w$}", w = width[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    std::iter::once(line(header.to_vec()))
        .chain(
            rows.iter()
                .map(|r| line(r.iter().map(String::as_str).collect())),
        )
        .collect()
}

#[derive(Serialize)]
struct CreateJson<'a> {
    ok: bool,
    command: &'static str,
    collection: &'a str,
    id: &'a str,
    database: &'a str,
    tables: &'a [String],
    repository: &'a str,
}

pub(super) async fn run_create(
    args: &CreateArgs,
    store: &StoreOptions,
    out: &OutputArgs,
) -> Result<()> {
    let (engine, db) = engine_for(&args.db)?;
    let location = args
        .repo
        .clone()
        .unwrap_or_else(|| db.default_repository().to_string());
    let created = absent_local_dirs(&location);
    let report = collection::create(
        engine.as_ref(),
        &db,
        &args.name,
        &args.tables,
        &CreateOptions {
            repo: args.repo.clone(),
            store: store.clone(),
        },
    )
    .await;
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            remove_empty_dirs(&created);
            return Err(e);
        }
    };
    if out.json {
        emit_json(&CreateJson {
            ok: true,
            command: "collection create",
            collection: &report.info.name,
            id: &report.info.id,
            database: db.display(),
            tables: &report.info.tables,
            repository: &report.repository,
        })
    } else if out.quiet {
        Ok(())
    } else {
        emit(&format!(
            "created collection '{}' of {} ({}) in {db}; its backups go to {}",
            report.info.name,
            plural(report.info.tables.len() as u64, "table", "tables"),
            report.info.tables.join(", "),
            report.repository
        ))
    }
}

#[derive(Serialize)]
struct TableChangeJson<'a> {
    name: &'a str,
    /// All rows for a full backup; rows inserted or changed for an incremental.
    rows: u64,
    deleted: u64,
}

fn changes_json(list: &[(String, u64, u64)]) -> Vec<TableChangeJson<'_>> {
    list.iter()
        .map(|(name, rows, deleted)| TableChangeJson {
            name,
            rows: *rows,
            deleted: *deleted,
        })
        .collect()
}

#[derive(Serialize)]
struct BackupJson<'a> {
    ok: bool,
    command: &'static str,
    collection: &'a str,
    backup: &'a str,
    kind: &'static str,
    parent: Option<&'a str>,
    backup_point: &'a str,
    repository: &'a str,
    tables: Vec<TableChangeJson<'a>>,
    rows: u64,
    deleted: u64,
    bytes: u64,
    seconds: f64,
}

async fn run_backup(
    args: &CollectionBackupArgs,
    store: &StoreOptions,
    out: &OutputArgs,
) -> Result<()> {
    let (engine, db) = engine_for(&args.db)?;
    let options = CollectionBackupOptions {
        mode: if args.auto {
            BackupMode::Auto
        } else if args.incremental {
            BackupMode::Incremental
        } else {
            BackupMode::Full
        },
        write: args.write.options(DataFormat::Parquet),
        encoders: args.write.encoders(),
        scanners: usize::from(args.scanners),
        store: store.clone(),
    };
    let (run, ctrl_c) = run_until_stopped(out);
    let result = backup(engine, &db, &args.name, options, run).await;
    ctrl_c.abort();
    progress::clear();
    let report = result?;
    let m = &report.manifest;
    let changes = table_changes(m);
    let rows: u64 = changes.iter().map(|c| c.1).sum();
    let deleted: u64 = changes.iter().map(|c| c.2).sum();
    if out.json {
        emit_json(&BackupJson {
            ok: true,
            command: "collection backup",
            collection: &report.collection,
            backup: &report.id,
            kind: kind_name(m.kind),
            parent: m.parent.as_deref(),
            backup_point: &m.backup_point,
            repository: &report.repository,
            tables: changes_json(&changes),
            rows,
            deleted,
            bytes: report.bytes,
            seconds: report.seconds,
        })
    } else if out.quiet {
        Ok(())
    } else if m.kind == ArchiveKind::Incremental {
        emit(&format!(
            "incremental backup {} of collection '{}' on {}: {} upserted, {} deleted, {} in {} to {}",
            report.id,
            report.collection,
            m.parent.as_deref().unwrap_or("?"),
            plural(rows, "row", "rows"),
            plural(deleted, "row", "rows"),
            human_bytes(report.bytes),
            human_seconds(report.seconds),
            report.repository
        ))
    } else {
        emit(&format!(
            "full backup {} of collection '{}': {}, {}, {} in {} to {}",
            report.id,
            report.collection,
            plural(changes.len() as u64, "table", "tables"),
            plural(rows, "row", "rows"),
            human_bytes(report.bytes),
            human_seconds(report.seconds),
            report.repository
        ))
    }
}

#[derive(Serialize)]
struct RestoreJson<'a> {
    ok: bool,
    command: &'static str,
    collection: &'a str,
    backup: &'a str,
    backup_point: &'a str,
    chain: &'a [String],
    database: &'a str,
    tables: &'a [String],
    rows_loaded: u64,
    rows_upserted: u64,
    rows_deleted: u64,
    bytes: u64,
    seconds: f64,
}

async fn run_restore(
    args: &CollectionRestoreArgs,
    store: &StoreOptions,
    out: &OutputArgs,
) -> Result<()> {
    let (engine, db) = engine_for(&args.into)?;
    let point = match (&args.backup, &args.at) {
        (Some(id), _) => RestorePoint::Backup(id.clone()),
        (None, Some(at)) => RestorePoint::At(*at),
        (None, None) => RestorePoint::Latest,
    };
    let repo = open_repository(&args.repo, Some(&args.name), store)?;
    let options = CollectionRestoreOptions {
        point,
        tables: args.tables.clone(),
        replace: args.force,
    };
    let (run, ctrl_c) = run_until_stopped(out);
    let result = restore(engine, &repo, &args.name, &db, options, run).await;
    ctrl_c.abort();
    progress::clear();
    let r = result?;
    let id = r.chain.last().map(String::as_str).unwrap_or_default();
    if out.json {
        emit_json(&RestoreJson {
            ok: true,
            command: "collection restore",
            collection: &r.collection,
            backup: id,
            backup_point: &r.point.backup_point,
            chain: &r.chain,
            database: db.display(),
            tables: &r.tables,
            rows_loaded: r.rows_loaded,
            rows_upserted: r.rows_upserted,
            rows_deleted: r.rows_deleted,
            bytes: r.bytes,
            seconds: r.seconds,
        })
    } else if out.quiet {
        Ok(())
    } else {
        emit(&format!(
            "restored {} of collection '{}' as of {id} ({}; {} applied): {} loaded, {} upserted, {} deleted, {} read in {} into {db}",
            plural(r.tables.len() as u64, "table", "tables"),
            r.collection,
            human_time(&r.point.backup_point),
            plural(r.chain.len() as u64, "backup", "backups"),
            plural(r.rows_loaded, "row", "rows"),
            plural(r.rows_upserted, "row", "rows"),
            plural(r.rows_deleted, "row", "rows"),
            human_bytes(r.bytes),
            human_seconds(r.seconds),
        ))
    }
}

/// Open the repository given with --repo, or the one recorded in the
/// database given with --db for collection `name` (or for all of its
/// collections).
fn open_repository(choice: &RepoChoice, name: Option<&str>, store: &StoreOptions) -> Result<Store> {
    let location = match (&choice.repo, &choice.db) {
        (Some(repo), _) => repo.clone(),
        (None, Some(db)) => {
            let (engine, db) = engine_for(db)?;
            collection::repository_of_database(engine.as_ref(), &db, name)?
        }
        (None, None) => {
            return Err(Error::invalid(
                "give the repository with --repo or the database with --db",
            ));
        }
    };
    Store::open(&location, store)
}

#[derive(Serialize)]
struct ListedJson<'a> {
    name: &'a str,
    id: &'a str,
    database: &'a str,
    tables: &'a [String],
    backups: usize,
    chains: usize,
    latest: Option<&'a str>,
    bytes: u64,
}

#[derive(Serialize)]
struct ListJson<'a> {
    ok: bool,
    command: &'static str,
    repository: &'a str,
    collections: Vec<ListedJson<'a>>,
}

async fn run_list(args: &CollectionListArgs, store: &StoreOptions, out: &OutputArgs) -> Result<()> {
    let repo = open_repository(&args.repo, None, store)?;
    let listed = until_stop_signal(collection::list(&repo)).await?;
    if out.json {
        return emit_json(&ListJson {
            ok: true,
            command: "collection list",
            repository: repo.url(),
            collections: listed
                .iter()
                .map(|c| ListedJson {
                    name: &c.info.name,
                    id: &c.info.id,
                    database: &c.info.database,
                    tables: &c.info.tables,
                    backups: c.backups,
                    chains: c.chains,
                    latest: c.latest.as_deref(),
                    bytes: c.bytes,
                })
                .collect(),
        });
    }
    if listed.is_empty() {
        return emit(&format!("{} holds no collections", repo.url()));
    }
    let rows: Vec<[String; 6]> = listed
        .iter()
        .map(|c| {
            [
                c.info.name.clone(),
                if c.encrypted.is_some() && c.info.tables.is_empty() {
                    "(encrypted)".to_string()
                } else {
                    c.info.tables.join(",")
                },
                human_count(c.backups as u64),
                human_count(c.chains as u64),
                c.latest.clone().unwrap_or_else(|| "-".to_string()),
                human_bytes(c.bytes),
            ]
        })
        .collect();
    for line in columns(
        [
            "COLLECTION",
            "TABLES",
            "BACKUPS",
            "CHAINS",
            "LATEST",
            "SIZE",
        ],
        &rows,
        [false, false, true, true, false, true],
    ) {
        emit(&line)?;
    }
    Ok(())
}

#[derive(Serialize)]
struct BackupEntryJson<'a> {
    id: &'a str,
    kind: &'static str,
    parent: Option<&'a str>,
    backup_point: &'a str,
    tables: Vec<TableChangeJson<'a>>,
    rows: u64,
    deleted: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct ShowJson<'a> {
    ok: bool,
    command: &'static str,
    collection: &'a str,
    id: &'a str,
    database: &'a str,
    engine: &'a str,
    created_at: &'a str,
    tables: &'a [String],
    repository: &'a str,
    chains: Vec<Vec<BackupEntryJson<'a>>>,
    incomplete: &'a [String],
    /// Backups and leftovers together, as `collection list` counts them.
    bytes: u64,
    locked_by: Option<String>,
}

async fn run_show(args: &CollectionShowArgs, store: &StoreOptions, out: &OutputArgs) -> Result<()> {
    let repo = open_repository(&args.repo, Some(&args.name), store)?;
    let d = until_stop_signal(collection::show(&repo, &args.name)).await?;
    let locked_by = d.locked_by.as_ref().map(|l| {
        format!(
            "{} on {} (pid {}) since {}",
            l.operation, l.host, l.pid, l.acquired_at
        )
    });
    if out.json {
        return emit_json(&ShowJson {
            ok: true,
            command: "collection show",
            collection: &d.info.name,
            id: &d.info.id,
            database: &d.info.database,
            engine: &d.info.engine,
            created_at: &d.info.created_at,
            tables: &d.info.tables,
            repository: &d.repository,
            chains: d
                .chains
                .iter()
                .map(|c| {
                    c.backups
                        .iter()
                        .map(|b| BackupEntryJson {
                            id: &b.id,
                            kind: kind_name(b.kind),
                            parent: b.parent.as_deref(),
                            backup_point: &b.backup_point,
                            tables: changes_json(&b.tables),
                            rows: b.tables.iter().map(|t| t.1).sum(),
                            deleted: b.tables.iter().map(|t| t.2).sum(),
                            bytes: b.bytes,
                        })
                        .collect()
                })
                .collect(),
            incomplete: &d.incomplete,
            bytes: d.bytes,
            locked_by,
        });
    }
    let backups: usize = d.chains.iter().map(|c| c.backups.len()).sum();
    let mut lines = vec![
        format!("collection  {}", d.info.name),
        format!("repository  {}", d.repository),
        format!(
            "source      {} database {}, created {}",
            d.info.engine,
            d.info.database,
            human_time(&d.info.created_at)
        ),
        format!("tables      {}", d.info.tables.join(", ")),
        format!(
            "backups     {} in {}, {}",
            human_count(backups as u64),
            plural(d.chains.len() as u64, "chain", "chains"),
            human_bytes(d.bytes)
        ),
    ];
    if let Some(l) = &locked_by {
        lines.push(format!("locked by   {l}"));
    }
    if !d.incomplete.is_empty() {
        lines.push(format!(
            "incomplete  {} (interrupted; the next backup or prune removes them)",
            d.incomplete.join(", ")
        ));
    }
    for line in lines {
        emit(&line)?;
    }
    for (i, chain) in d.chains.iter().enumerate() {
        emit("")?;
        emit(&format!("chain {}", i + 1))?;
        let rows: Vec<[String; 6]> = chain
            .backups
            .iter()
            .map(|b| {
                [
                    b.id.clone(),
                    kind_name(b.kind).to_string(),
                    human_time(&b.backup_point),
                    human_count(b.tables.iter().map(|t| t.1).sum()),
                    human_count(b.tables.iter().map(|t| t.2).sum()),
                    human_bytes(b.bytes),
                ]
            })
            .collect();
        for line in columns(
            ["BACKUP", "KIND", "BACKUP POINT", "ROWS", "DELETED", "SIZE"],
            &rows,
            [false, false, false, true, true, true],
        ) {
            emit(&format!("  {line}"))?;
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct DropJson<'a> {
    ok: bool,
    command: &'static str,
    collection: &'a str,
    database: &'a str,
    tables: &'a [String],
    purged: Option<&'a str>,
    backups_deleted: usize,
}

async fn run_drop(args: &CollectionDropArgs, store: &StoreOptions, out: &OutputArgs) -> Result<()> {
    let (engine, db) = engine_for(&args.db)?;
    let r = collection::drop_collection(
        engine.as_ref(),
        &db,
        &args.name,
        &DropOptions {
            purge: args.purge,
            store: store.clone(),
        },
    )
    .await?;
    if out.json {
        emit_json(&DropJson {
            ok: true,
            command: "collection drop",
            collection: &args.name,
            database: db.display(),
            tables: &r.tables,
            purged: r.purged.as_deref(),
            backups_deleted: r.backups_deleted,
        })
    } else if out.quiet {
        Ok(())
    } else {
        let purged = match &r.purged {
            Some(url) => format!(
                "; deleted {} from {url}",
                plural(r.backups_deleted as u64, "backup", "backups")
            ),
            None if args.purge => "; its repository held nothing to purge".to_string(),
            None => "; its backups are kept".to_string(),
        };
        emit(&format!(
            "dropped collection '{}' from {db}: change capture removed from {}{purged}",
            args.name,
            plural(r.tables.len() as u64, "table", "tables"),
        ))
    }
}

#[derive(Serialize)]
struct PruneJson<'a> {
    ok: bool,
    command: &'static str,
    collection: &'a str,
    repository: &'a str,
    dry_run: bool,
    deleted: &'a [String],
    kept: &'a [String],
    incomplete: &'a [String],
    bytes: u64,
}

async fn run_prune(
    args: &CollectionPruneArgs,
    store: &StoreOptions,
    out: &OutputArgs,
) -> Result<()> {
    let repo = open_repository(&args.repo, Some(&args.name), store)?;
    let r = prune(&repo, &args.name, args.keep_chains as usize, args.dry_run).await?;
    if out.json {
        return emit_json(&PruneJson {
            ok: true,
            command: "collection prune",
            collection: &args.name,
            repository: &r.repository,
            dry_run: r.dry_run,
            deleted: &r.plan.delete,
            kept: &r.plan.keep,
            incomplete: &r.plan.incomplete,
            bytes: r.bytes,
        });
    }
    if out.quiet {
        return Ok(());
    }
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    for id in &r.plan.delete {
        emit(&format!("{verb} {id}"))?;
    }
    emit(&format!(
        "{}: {verb} {} ({}), kept {}",
        args.name,
        plural(r.plan.delete.len() as u64, "backup", "backups"),
        human_bytes(r.bytes),
        plural(r.plan.keep.len() as u64, "backup", "backups"),
    ))
}
