//! `collection restore`: rebuild a collection's tables as of one backup
//! point, from the repository alone — the chain's full backup, then each
//! incremental in order.

use std::sync::Arc;
use std::time::Instant;

use super::repo;
use super::{CollectionRestoreOptions, CollectionRestoreReport, RestorePoint, capture_of};
use crate::engine::{Address, Engine};
use crate::error::{Error, Result};
use crate::manifest::{ArchiveKind, Manifest, Table, TableKind};
use crate::ops::pipeline::{Archive, Entry, read_entries};
use crate::progress::Run;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Rows of the full backup.
    Load,
    /// Keys deleted by an incremental.
    Delete,
    /// Rows inserted or changed by an incremental.
    Upsert,
}

/// One table entry of one archive of the chain, applied in order.
#[derive(Debug, Clone)]
struct Step {
    /// Index into the chain.
    archive: usize,
    /// Index into that archive's `tables`.
    entry: usize,
    /// Index into the selected tables of the full backup.
    table: usize,
    action: Action,
}

/// Choose the backup to restore.
async fn choose_point(store: &Store, name: &str, point: &RestorePoint) -> Result<String> {
    let listing = repo::list_backups(store).await?;
    let show = format!(
        "`coffer collection show {name} --repo {}` lists its backups",
        store
            .url()
            .trim_end_matches(&format!("/collections/{name}"))
    );
    match point {
        RestorePoint::Latest => listing.committed.last().cloned().ok_or_else(|| {
            Error::not_found(format!(
                "collection '{name}' has no backup in {} yet; take one with `coffer collection backup`",
                store.url()
            ))
        }),
        RestorePoint::Backup(id) => {
            if listing.committed.contains(id) {
                Ok(id.clone())
            } else {
                Err(Error::not_found(format!(
                    "collection '{name}' has no backup {id}; {show}"
                )))
            }
        }
        RestorePoint::At(time) => {
            // Backups of a collection run one at a time, so backup points
            // grow with the ids: the newest at or before `time` wins.
            for id in listing.committed.iter().rev() {
                let m = repo::read_backup(store, id).await?;
                let at: jiff::Timestamp = m.backup_point.parse().map_err(|_| {
                    Error::corrupt(format!(
                        "{} has an unreadable backup point; the repository is damaged",
                        store.url_of(id)
                    ))
                })?;
                if at <= *time {
                    return Ok(id.clone());
                }
            }
            Err(Error::not_found(format!(
                "collection '{name}' has no backup at or before {time}; {show}"
            )))
        }
    }
}

/// Restore collection `name` from the repository `repo` into `target`.
pub async fn restore(
    engine: Arc<dyn Engine>,
    repo: &Store,
    name: &str,
    target: &Address,
    options: CollectionRestoreOptions,
    run: impl Into<Run>,
) -> Result<CollectionRestoreReport> {
    let run = run.into();
    let started = Instant::now();
    crate::ops::refuse_target_inside(repo, target.file(), "restored")?;
    capture_of(engine.as_ref())?;
    let (store, info) = repo::require_info(repo, name).await?;
    if info.engine != engine.name() {
        return Err(Error::invalid(format!(
            "collection '{name}' at {} holds {} tables and cannot be restored as {}",
            repo.url(),
            info.engine,
            engine.name()
        )));
    }
    let point = choose_point(&store, name, &options.point).await?;
    let chain = repo::chain_to(&store, &point).await?;
    let full = &chain[0].2;
    if full.kind != ArchiveKind::Full {
        return Err(Error::corrupt(format!(
            "{} does not start with a full backup; the repository is damaged",
            store.url_of(&point)
        )));
    }
    let base: Vec<&Table> = full
        .tables
        .iter()
        .filter(|t| t.kind != TableKind::Deleted)
        .collect();
    for n in &options.tables {
        if !base.iter().any(|t| &t.name == n) {
            return Err(Error::invalid(format!(
                "table '{n}' is not in collection '{name}'; its tables are {}",
                base.iter()
                    .map(|t| format!("'{}'", t.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let selected: Vec<Table> = base
        .into_iter()
        .filter(|t| options.tables.is_empty() || options.tables.contains(&t.name))
        .cloned()
        .collect();
    let steps = plan(&chain, &selected, &store)?;
    let chain_ids: Vec<String> = chain.iter().map(|(id, ..)| id.clone()).collect();
    let archives: Vec<Archive> = chain
        .into_iter()
        .map(|(_, store, manifest)| Archive {
            store,
            manifest: Arc::new(manifest),
        })
        .collect();
    let point = archives
        .last()
        .expect("a chain has a backup")
        .manifest
        .clone();
    let target_owned = target.location().to_string();
    let tables = selected.clone();
    let handle = tokio::runtime::Handle::current();
    let applied = tokio::task::spawn_blocking(move || {
        apply(
            engine.as_ref(),
            &handle,
            &target_owned,
            &archives,
            &steps,
            &tables,
            &options,
            run,
        )
    })
    .await
    .map_err(|e| Error::internal(format!("the restore worker failed: {e}")))?;
    let counts = applied?;
    Ok(CollectionRestoreReport {
        collection: name.to_string(),
        repository: store.url().to_string(),
        chain: chain_ids,
        point: Arc::unwrap_or_clone(point),
        tables: selected.iter().map(|t| t.name.clone()).collect(),
        rows_loaded: counts.0,
        rows_upserted: counts.1,
        rows_deleted: counts.2,
        bytes: counts.3,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The steps that rebuild `selected` from `chain`: the full backup's rows,
/// then per incremental each table's deletes and upserts.
fn plan(
    chain: &[(String, Store, Manifest)],
    selected: &[Table],
    store: &Store,
) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for (a, (id, _, m)) in chain.iter().enumerate() {
        for (t, table) in selected.iter().enumerate() {
            let url = store.url_of(id);
            let entries = m
                .tables
                .iter()
                .enumerate()
                .filter(|(_, e)| e.name == table.name);
            let mut rows_entry = false;
            for (entry, e) in entries {
                let action = match (a, e.kind == TableKind::Deleted) {
                    (0, false) => Action::Load,
                    (0, true) => {
                        return Err(Error::corrupt(format!(
                            "{url} is a full backup but lists deleted keys; the repository is damaged"
                        )));
                    }
                    (_, true) => Action::Delete,
                    (_, false) => Action::Upsert,
                };
                let names =
                    |t: &Table| t.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
                let fits = match action {
                    Action::Delete => e
                        .columns
                        .iter()
                        .all(|c| table.columns.iter().any(|x| x.name == c.name)),
                    _ => names(e) == names(table),
                };
                if !fits {
                    return Err(Error::corrupt(format!(
                        "{url} holds table '{}' with other columns than the chain's full backup; the repository is damaged",
                        table.name
                    )));
                }
                rows_entry |= action != Action::Delete;
                steps.push(Step {
                    archive: a,
                    entry,
                    table: t,
                    action,
                });
            }
            if !rows_entry {
                return Err(Error::corrupt(format!(
                    "{url} does not hold table '{}' of the collection; the repository is damaged",
                    table.name
                )));
            }
        }
    }
    // Within one archive a table's deletes come before its upserts.
    steps.sort_by_key(|s| (s.archive, s.table, s.action != Action::Delete));
    Ok(steps)
}

/// Read the steps' data files and apply them in order; returns rows loaded,
/// upserted and deleted, and bytes read.
#[allow(clippy::too_many_arguments)]
fn apply(
    engine: &dyn Engine,
    handle: &tokio::runtime::Handle,
    target: &str,
    archives: &[Archive],
    steps: &[Step],
    selected: &[Table],
    options: &CollectionRestoreOptions,
    run: Run,
) -> Result<(u64, u64, u64, u64)> {
    let progress = run.progress.as_ref();
    let capture = capture_of(engine)?;
    let full = &archives[0].manifest;
    let tables: Vec<&Table> = selected.iter().collect();
    let mut restorer = capture.chain_restorer(target, options.replace, run.cancel.clone())?;
    restorer.begin(full, &tables)?;
    let entry = |s: &Step| &archives[s.archive].manifest.tables[s.entry];
    let total_rows: u64 = steps.iter().map(|s| entry(s).rows).sum();
    let total_bytes: u64 = steps
        .iter()
        .flat_map(|s| &entry(s).parts)
        .map(|p| p.file.size + p.misfits.as_ref().map_or(0, |m| m.size))
        .sum();
    progress.begin("restore", Some(total_rows), Some(total_bytes));
    let entries: Vec<Entry> = steps.iter().map(|s| (s.archive, s.entry)).collect();
    let mut counts = (0u64, 0u64, 0u64);
    let mut changing = false;
    // The (archive, table) whose changes are being given, to say when they
    // are all given.
    let mut group: Option<(usize, usize)> = None;
    let read = read_entries(
        handle,
        archives,
        &entries,
        &run.cancel,
        progress,
        &mut |s, batch| {
            let step = &steps[s];
            let table = &selected[step.table];
            let n = batch.num_rows() as u64;
            if step.action != Action::Load && !changing {
                changing = true;
                progress.note("building indexes");
                restorer.begin_changes(full, &tables)?;
            }
            if step.action != Action::Load {
                let now = (step.archive, step.table);
                if let Some(before) = group.filter(|g| *g != now) {
                    restorer.end_changes(&selected[before.1])?;
                }
                group = Some(now);
            }
            match step.action {
                Action::Load => {
                    counts.0 += n;
                    restorer.load(table, &batch)?;
                }
                Action::Delete => {
                    counts.2 += n;
                    restorer.delete(table, entry(step), &batch)?;
                }
                Action::Upsert => {
                    counts.1 += n;
                    restorer.upsert(table, &batch)?;
                }
            }
            progress.advance(n, 0);
            Ok(())
        },
    );
    let bytes = read
        .and_then(|bytes| {
            if !changing {
                progress.note("building indexes");
                restorer.begin_changes(full, &tables)?;
            }
            if let Some((_, table)) = group {
                restorer.end_changes(&selected[table])?;
            }
            Ok(bytes)
        })
        .inspect_err(|_| progress.end())?;
    progress.begin("finishing", None, None);
    restorer.set_progress(run.progress.clone());
    let finished = restorer.finish(&archives.last().expect("a chain").manifest, &tables);
    progress.end();
    finished?;
    Ok((counts.0, counts.1, counts.2, bytes))
}
