//! `collection prune`: delete whole old chains, keeping the newest ones.
//!
//! Only whole chains go: an incremental is never kept without the full
//! backup and the incrementals it builds on. Each backup's manifest is
//! deleted before its files, newest backup first, so an interrupted prune
//! leaves only complete chains (and files without a manifest, which no
//! reader sees and the next prune or backup removes; the next prune also
//! removes the empty directories and unfinished uploads that killed runs
//! leave below backups it does not keep).

use super::lock::RepoLock;
use super::{chains_of, delete_archive, repo};
use crate::error::{Error, Result};
use crate::store::Store;

/// What a prune deletes and keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunePlan {
    /// Backups kept, oldest first.
    pub keep: Vec<String>,
    /// Backups deleted, in deletion order (newest first).
    pub delete: Vec<String>,
    /// Leftovers of backups that never committed, deleted too.
    pub incomplete: Vec<String>,
}

/// What a prune did.
#[derive(Debug, Clone)]
pub struct PruneReport {
    /// The collection's directory.
    pub repository: String,
    /// The plan carried out (or only shown, for a dry run).
    pub plan: PrunePlan,
    /// Bytes freed (or, for a dry run, that would be): the size of the
    /// deleted backups and leftovers as `show` and `list` count it
    /// ([`repo::Listing::size_of`]), the same figure either way.
    pub bytes: u64,
    /// Whether anything was deleted.
    pub dry_run: bool,
}

/// The plan, and the bytes it frees.
async fn make_plan(store: &Store, keep_chains: usize) -> Result<(PrunePlan, u64)> {
    let listing = repo::list_backups(store).await?;
    let backups = repo::read_backups(store, &listing.committed).await?;
    let chains = chains_of(backups);
    let cut = chains.len().saturating_sub(keep_chains);
    let mut plan = PrunePlan {
        incomplete: listing.incomplete.clone(),
        ..Default::default()
    };
    for (i, chain) in chains.into_iter().enumerate() {
        for (id, _) in chain {
            if i < cut {
                plan.delete.push(id);
            } else {
                plan.keep.push(id);
            }
        }
    }
    plan.keep.sort();
    plan.delete.sort();
    plan.delete.reverse();
    let bytes = listing.size_of_all(plan.delete.iter().chain(&plan.incomplete));
    Ok((plan, bytes))
}

/// Plan (and unless `dry_run`, carry out) keeping the newest `keep_chains`
/// chains of collection `name` in `repo`.
pub async fn prune(
    repo: &Store,
    name: &str,
    keep_chains: usize,
    dry_run: bool,
) -> Result<PruneReport> {
    if keep_chains == 0 {
        return Err(Error::invalid(
            "--keep-chains must be at least 1; to delete every backup use `coffer collection drop --purge`",
        ));
    }
    let (store, _) = repo::require_head(repo, name).await?;
    if dry_run {
        let (plan, bytes) = make_plan(&store, keep_chains).await?;
        return Ok(PruneReport {
            repository: store.url().to_string(),
            plan,
            bytes,
            dry_run,
        });
    }
    let lock = RepoLock::acquire(&store, "prune").await?;
    let result = async {
        let (plan, bytes) = make_plan(&store, keep_chains).await?;
        for id in plan.delete.iter().chain(&plan.incomplete) {
            delete_archive(&store, id).await?;
        }
        // What listings do not show: directories a killed prune or backup
        // left empty, and uploads a killed backup left unfinished.
        for dir in store.list_dirs("").await? {
            if repo::id_time(&dir).is_some() && !plan.keep.contains(&dir) {
                store.remove_unlisted(&dir).await?;
            }
        }
        Ok::<_, Error>((plan, bytes))
    }
    .await;
    let released = lock.release().await;
    let (plan, bytes) = result?;
    released?;
    Ok(PruneReport {
        repository: store.url().to_string(),
        plan,
        bytes,
        dry_run,
    })
}
