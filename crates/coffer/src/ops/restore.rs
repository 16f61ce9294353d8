//! `restore`: build a database from an archive beside the target, check it,
//! and move it into place.

use std::sync::Arc;
use std::time::Instant;

use super::load::load_archive;
use crate::archive;
use crate::engine::{Address, Engine};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, Table};
use crate::progress::Run;
use crate::store::Store;

/// Options of a restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Replace a target that exists and is not empty.
    pub replace: bool,
    /// Tables to restore; empty for all.
    pub tables: Vec<String>,
    /// Where the archive's database needs collation sequences that its
    /// application defines (which coffer cannot have), restore everything
    /// that does not need them instead of refusing; what is left out is in
    /// [`RestoreReport::skipped`].
    pub skip_missing_collations: bool,
    /// Leave out ownership (PostgreSQL's `--no-owner`): whoever restores
    /// owns every object.
    pub no_owner: bool,
    /// Leave out grants of privileges (PostgreSQL's `--no-privileges`).
    pub no_privileges: bool,
}

/// What a finished restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The archive's manifest.
    pub manifest: Manifest,
    /// Names of the tables restored.
    pub tables: Vec<String>,
    /// Rows restored.
    pub rows: u64,
    /// Bytes of data files read.
    pub bytes: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Schema objects left out (with `skip_missing_collations`); the
    /// tables among them are not in `tables` and their rows not in `rows`.
    pub skipped: Vec<crate::engine::Skipped>,
}

/// The tables of `manifest` named in `names` (all when empty), in archive
/// order; an unknown name is an error naming it and the archive.
pub fn select_tables<'m>(
    manifest: &'m Manifest,
    names: &[String],
    url: &str,
) -> Result<Vec<&'m Table>> {
    for n in names {
        if manifest.table(n).is_none() {
            return Err(Error::invalid(format!(
                "table '{n}' is not in the archive at {url}; `coffer ls {url}` lists its tables"
            )));
        }
    }
    Ok(manifest
        .tables
        .iter()
        .filter(|t| names.is_empty() || names.contains(&t.name))
        .collect())
}

/// Restore the archive at `src` into `target` with `engine`.
pub async fn restore(
    engine: Arc<dyn Engine>,
    src: &Store,
    target: &Address,
    options: RestoreOptions,
    run: impl Into<Run>,
) -> Result<RestoreReport> {
    let Run { progress, cancel } = run.into();
    let started = Instant::now();
    super::refuse_target_inside(src, target.file(), "restored")?;
    let (src, manifest) = archive::open(src).await?;
    let src = &src;
    if manifest.kind == crate::manifest::ArchiveKind::Export {
        return Err(Error::invalid(format!(
            "the archive at {} is an export, not a backup; load it with `coffer import {} DB`",
            src.url(),
            src.url()
        )));
    }
    if manifest.source.engine != engine.name() {
        return Err(Error::invalid(format!(
            "the archive at {} holds a {} database and cannot be restored as {}",
            src.url(),
            manifest.source.engine,
            engine.name()
        )));
    }
    let selected: Vec<usize> = {
        let tables = select_tables(&manifest, &options.tables, src.url())?;
        tables
            .iter()
            .map(|t| {
                manifest
                    .tables
                    .iter()
                    .position(|x| x.name == t.name)
                    .expect("selected")
            })
            .collect()
    };
    let manifest = Arc::new(manifest);
    let open = {
        let target = target.location().to_string();
        let (replace, cancel) = (options.replace, cancel.clone());
        let skip = options.skip_missing_collations;
        let (no_owner, no_privileges) = (options.no_owner, options.no_privileges);
        move || {
            let mut r = engine.restorer(&target, replace, cancel)?;
            if skip {
                r.skip_missing_collations();
            }
            if no_owner {
                r.no_owner();
            }
            if no_privileges {
                r.no_privileges();
            }
            Ok(r)
        }
    };
    let loaded = load_archive(
        src,
        manifest.clone(),
        selected.clone(),
        "restore",
        open,
        cancel,
        progress,
    )
    .await?;
    let manifest = Arc::try_unwrap(manifest).unwrap_or_else(|m| (*m).clone());
    let tables = selected
        .iter()
        .map(|&i| manifest.tables[i].name.clone())
        .filter(|n| !loaded.skipped.iter().any(|s| s.holds_rows && &s.name == n))
        .collect();
    Ok(RestoreReport {
        manifest,
        tables,
        rows: loaded.rows,
        bytes: loaded.bytes,
        seconds: started.elapsed().as_secs_f64(),
        skipped: loaded.skipped,
    })
}
