//! What encryption costs: `coffer backup` and `coffer restore` of the
//! benchmark database with `--encrypt-to` / `--identity`, against the same
//! commands without, measured in turns (plain, encrypted, plain, …) so that
//! both see the same machine.

use anyhow::Result;

use super::{comparison, dataset_line};
use crate::bench::{Bench, Ctx, remove_db, remove_path};
use crate::proc::Job;

/// At least this many runs of each: a backup takes under a second, and the
/// difference sought is a few percent.
const MIN_RUNS: usize = 5;

pub fn encryption(ctx: &mut Ctx) -> Result<String> {
    let ds = ctx.dataset(1.0)?;
    let keys = ctx.out_dir("encryption-keys", &ds)?;
    let (identity, recipient) = coffer_testkit::keys::identity(&keys, "bench.key");
    let runs = turns(ctx);
    let out = ctx.out_dir("encryption", &ds)?;
    let (plain, sealed) = (out.join("plain"), out.join("encrypted"));
    let backup = |to: &std::path::Path, extra: &[&str]| -> Job {
        let mut cmd = ctx.coffer().arg("backup").arg(&ds.path).arg(to);
        for a in extra {
            cmd = cmd.arg(a);
        }
        cmd.into()
    };
    let jobs = [
        backup(&plain, &[]),
        backup(&sealed, &["--encrypt-to", &recipient]),
    ];
    let [plain_backup, sealed_backup] = in_turns(
        ctx,
        runs,
        ["coffer backup", "coffer backup --encrypt-to"],
        jobs,
        |i| remove_path(if i == 0 { &plain } else { &sealed }),
    )?;

    let restored = out.join("restored.db");
    let restore = |from: &std::path::Path, extra: &[&str]| -> Job {
        let mut cmd = ctx.coffer().arg("restore").arg(from).arg(&restored);
        for a in extra {
            cmd = cmd.arg(a);
        }
        cmd.into()
    };
    let id = identity.display().to_string();
    let jobs = [restore(&plain, &[]), restore(&sealed, &["--identity", &id])];
    let [plain_restore, sealed_restore] = in_turns(
        ctx,
        runs,
        ["coffer restore", "coffer restore --identity"],
        jobs,
        |_| remove_db(&restored),
    )?;
    ctx.check_restored(&restored, &ds)?;
    remove_db(&restored)?;
    for p in [&plain, &sealed] {
        remove_path(p)?;
    }

    let backup_cost = sealed_backup.median_secs() / plain_backup.median_secs();
    let restore_cost = sealed_restore.median_secs() / plain_restore.median_secs();
    ctx.record_target("encrypt_backup", backup_cost, format!("{runs} runs each"));
    ctx.record_target("encrypt_restore", restore_cost, format!("{runs} runs each"));

    let mut s = dataset_line(&ds);
    s.push_str(&format!(
        "Encryption (age, one X25519 recipient; every file encrypted, the checksums of both \
         the plain and the encrypted files kept) costs {:+.1}% of a backup's wall time and \
         {:+.1}% of a restore's, over {runs} runs of each taken in turns. The encrypted \
         restore checks, decrypts and checks again every file, and the restored database as \
         the plain one does.\n\n#### Backup\n\n",
        (backup_cost - 1.0) * 100.0,
        (restore_cost - 1.0) * 100.0
    ));
    s.push_str(&comparison(
        &[&sealed_backup, &plain_backup],
        &sealed_backup,
        &ds,
    ));
    s.push_str("\n#### Restore\n\n");
    s.push_str(&comparison(
        &[&sealed_restore, &plain_restore],
        &sealed_restore,
        &ds,
    ));
    Ok(s)
}

/// How many runs of each command [`in_turns`] takes.
pub(super) fn turns(ctx: &Ctx) -> usize {
    if ctx.opts.quick {
        1
    } else {
        ctx.opts.runs.max(MIN_RUNS)
    }
}

/// Run each of `jobs` once in turn, `runs` times, calling `before(i)`
/// (untimed) before each run of job `i`.
pub(super) fn in_turns(
    ctx: &mut Ctx,
    runs: usize,
    labels: [&str; 2],
    jobs: [Job; 2],
    mut before: impl FnMut(usize) -> Result<()>,
) -> Result<[Bench; 2]> {
    let mut benches = labels.map(|label| Bench {
        label: label.to_string(),
        command: String::new(),
        runs: Vec::new(),
    });
    for _ in 0..runs {
        for (i, job) in jobs.iter().enumerate() {
            let one = ctx.measure_each(labels[i], job.clone(), 1, |_| before(i), |_, _| Ok(()))?;
            benches[i].command = one.command;
            benches[i].runs.extend(one.runs);
        }
    }
    Ok(benches)
}
