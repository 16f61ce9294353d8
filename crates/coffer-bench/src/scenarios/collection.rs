//! Backup collections: full and incremental backups, chain restore, and the
//! cost of change capture to an application's writes.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::bench::{Bench, Ctx, disk_size, mb, median, remove_db, remove_path};
use crate::proc::{self, Cmd, Job};
use crate::report::{ratio, table};
use crate::rng::mix;
use crate::workload::{self, Changes, ROWS_PER_TX, WorkloadTimes};

const COLLECTION: &str = "bench";

/// Fractions of rows changed before each measured incremental backup.
pub const LEVELS: &[f64] = &[0.0001, 0.001, 0.01, 0.1];

/// The fraction the incremental targets are stated for (0.1%).
const TARGET_LEVEL: f64 = 0.001;

/// Incrementals in the chain that is restored.
const CHAIN_LEN: usize = 10;

/// Rows the capture workload inserts (and then updates) at scale 1.
pub const WORKLOAD_ROWS: u64 = 200_000;

/// The workload's rows at the run's scale (200k at scale 1, 1000 at least).
pub fn workload_rows(scale: f64) -> u64 {
    ((WORKLOAD_ROWS as f64 * scale).round() as u64).max(1000)
}

/// `0.01%`, `0.1%`, `1%`, `10%`.
pub fn percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    let s = format!("{p:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// The backups of the collection in `repo`: directory names, in name (and
/// so time) order.
fn backup_names(repo: &Path) -> Result<BTreeSet<String>> {
    let dir = repo.join("collections").join(COLLECTION);
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            names.insert(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names)
}

/// The one backup that appeared in `repo` since `seen` (which it joins), and
/// its size on disk. Fails unless it is exactly one of kind `kind` (`full`
/// or `incremental`).
fn new_backup(repo: &Path, seen: &mut BTreeSet<String>, kind: &str) -> Result<(String, u64)> {
    let now = backup_names(repo)?;
    let new: Vec<&String> = now.difference(seen).collect();
    let [name] = new.as_slice() else {
        bail!(
            "expected one new backup in {}, found {new:?}",
            repo.display()
        );
    };
    if !name.ends_with(&format!("_{kind}")) {
        bail!("expected a {kind} backup, found {name}");
    }
    let name = (*name).clone();
    let bytes = disk_size(&repo.join("collections").join(COLLECTION).join(&name))?;
    *seen = now;
    Ok((name, bytes))
}

/// Runs `coffer-bench mutate` on `db` (a child: keeps this process small).
fn mutate(db: &Path, fraction: f64, seed: u64) -> Result<Changes> {
    let exe = std::env::current_exe().context("locating this program")?;
    let out = proc::capture(
        &exe,
        &[
            "mutate",
            &db.to_string_lossy(),
            "--fraction",
            &fraction.to_string(),
            "--seed",
            &seed.to_string(),
        ],
    )?;
    out.lines()
        .last()
        .and_then(Changes::parse)
        .with_context(|| format!("unexpected output of coffer-bench mutate: {out:?}"))
}

fn check_fingerprint(db: &Path, expected: &[(String, i64, i64)], what: &str) -> Result<()> {
    let got = workload::fingerprint(db)?;
    if got != expected {
        bail!(
            "{what}: {} does not hold the source's rows: (table, rows, sum) {got:?}, \
             expected {expected:?}",
            db.display()
        );
    }
    Ok(())
}

/// `1 run`, `3 runs`.
pub fn runs_phrase(n: usize) -> String {
    format!("{n} run{}", if n == 1 { "" } else { "s" })
}

pub(super) fn median_u64(v: &[u64]) -> f64 {
    median(&v.iter().map(|&x| x as f64).collect::<Vec<_>>())
}

/// The columns of a table of a full backup and the incrementals after it.
pub(super) const BACKUP_COLUMNS: [&str; 8] = [
    "backup",
    "rows changed",
    "median s",
    "runs s",
    "÷ full time",
    "MB written",
    "÷ full bytes",
    "peak RSS MB",
];

/// The full backup's row of that table: `rows` backed up, `bytes` written.
pub(super) fn full_row(rows: u64, bench: &Bench, bytes: f64) -> Vec<String> {
    vec![
        "full".to_string(),
        rows.to_string(),
        format!("{:.3}", bench.median_secs()),
        bench.all_secs(),
        "—".into(),
        format!("{:.2}", mb(bytes as u64)),
        "—".into(),
        format!("{:.1}", bench.peak_rss_mb()),
    ]
}

/// An incremental's row: after `fraction` of the rows changed (`changed`
/// of them), `bytes` written; the ratios to the full's time and bytes;
/// MB with `digits` decimals.
pub(super) fn incremental_row(
    fraction: f64,
    changed: f64,
    bench: &Bench,
    bytes: f64,
    (time_ratio, bytes_ratio): (f64, f64),
    digits: usize,
) -> Vec<String> {
    vec![
        format!("incremental after {}", percent(fraction)),
        format!("{changed:.0}"),
        format!("{:.3}", bench.median_secs()),
        bench.all_secs(),
        ratio(time_ratio),
        format!("{:.digits$}", mb(bytes as u64)),
        ratio(bytes_ratio),
        format!("{:.1}", bench.peak_rss_mb()),
    ]
}

pub(super) fn collection(ctx: &mut Ctx) -> Result<String> {
    let ds = ctx.dataset(1.0)?;
    let dir = ctx.out_dir("collection", &ds)?;
    let db = dir.join("copy.db");
    let repo = dir.join("repo");
    remove_db(&db)?;
    remove_path(&repo)?;
    fs::copy(&ds.path, &db)
        .with_context(|| format!("copying {} to {}", ds.path.display(), db.display()))?;
    let tables = ds.counts.by_table();
    let mut create = ctx
        .coffer()
        .arg("collection")
        .arg("create")
        .arg(COLLECTION)
        .arg("--db")
        .arg(&db)
        .arg("--repo")
        .arg(&repo);
    for (t, _) in &tables {
        create = create.arg("--table").arg(t);
    }
    ctx.prepare("collection create", create.into())?;

    let backup = |ctx: &Ctx, incremental: bool| -> Job {
        let cmd = ctx
            .coffer()
            .arg("collection")
            .arg("backup")
            .arg(COLLECTION)
            .arg("--db")
            .arg(&db);
        if incremental {
            cmd.arg("--incremental").into()
        } else {
            cmd.into()
        }
    };
    let runs = ctx.opts.runs;
    let seed = ctx.opts.seed;
    let mut seen = backup_names(&repo)?;

    // Full backups: each one starts a chain; the incrementals build on the last.
    let mut full_bytes = Vec::new();
    let job = backup(ctx, false);
    let full = ctx.measure_each(
        "coffer collection backup (full)",
        job,
        runs,
        |_| Ok(()),
        |_, _| {
            full_bytes.push(new_backup(&repo, &mut seen, "full")?.1);
            Ok(())
        },
    )?;
    let full_secs = full.median_secs();
    let mut rows = vec![full_row(ds.counts.total(), &full, median_u64(&full_bytes))];
    for (li, &fraction) in LEVELS.iter().enumerate() {
        let mut changed = Vec::new();
        let mut bytes = Vec::new();
        let job = backup(ctx, true);
        let label = format!(
            "coffer collection backup --incremental, {} changed",
            percent(fraction)
        );
        let bench = ctx.measure_each(
            &label,
            job,
            runs,
            |i| {
                let c = mutate(&db, fraction, mix(seed ^ ((li as u64) << 40) ^ i as u64))?;
                changed.push(c.total());
                Ok(())
            },
            |_, _| {
                bytes.push(new_backup(&repo, &mut seen, "incremental")?.1);
                Ok(())
            },
        )?;
        let time_ratio = bench.median_secs() / full_secs;
        let bytes_ratio = median_u64(&bytes) / median_u64(&full_bytes);
        if fraction == TARGET_LEVEL {
            ctx.record_target("incremental_time", time_ratio, "");
            ctx.record_target("incremental_bytes", bytes_ratio, "");
        }
        rows.push(incremental_row(
            fraction,
            median_u64(&changed),
            &bench,
            median_u64(&bytes),
            (time_ratio, bytes_ratio),
            2,
        ));
    }

    // A new chain for the chain restore: a full, then CHAIN_LEN incrementals
    // after 0.1% each (untimed), restored whole and full alone.
    ctx.prepare("collection backup (chain's full)", backup(ctx, false))?;
    let (full_id, _) = new_backup(&repo, &mut seen, "full")?;
    let full_fp = workload::fingerprint(&db)?;
    let mut chain_bytes = 0;
    for k in 0..CHAIN_LEN {
        mutate(&db, TARGET_LEVEL, mix(seed ^ 0xC4A1_0000 ^ k as u64))?;
        ctx.prepare("collection backup (chain)", backup(ctx, true))?;
        chain_bytes += new_backup(&repo, &mut seen, "incremental")?.1;
    }
    let chain_fp = workload::fingerprint(&db)?;
    let restored = dir.join("restored.db");
    let restore = |ctx: &Ctx| {
        ctx.coffer()
            .arg("collection")
            .arg("restore")
            .arg(COLLECTION)
            .arg("--repo")
            .arg(&repo)
            .arg("--into")
            .arg(&restored)
    };
    let job = restore(ctx).into();
    let chain = ctx.measure_each(
        &format!("coffer collection restore (full + {CHAIN_LEN} incrementals)"),
        job,
        runs,
        |_| remove_db(&restored),
        |_, _| Ok(()),
    )?;
    check_fingerprint(&restored, &chain_fp, "chain restore")?;
    let job = restore(ctx).arg("--backup").arg(&full_id).into();
    let full_alone = ctx.measure_each(
        "coffer collection restore --backup FULL (full alone)",
        job,
        runs,
        |_| remove_db(&restored),
        |_, _| Ok(()),
    )?;
    check_fingerprint(&restored, &full_fp, "restore of the full")?;
    let chain_ratio = chain.median_secs() / full_alone.median_secs();
    ctx.record_target("chain_restore", chain_ratio, "");
    remove_db(&restored)?;
    remove_path(&repo)?;
    remove_db(&db)?;

    let mut s = format!(
        "Dataset: a copy of scale {} ({:.1} MB, {} rows), with a collection of its four \
         tables in a local repository. Before each incremental backup, the given fraction of \
         each table's rows is changed at random (untimed, by `coffer-bench mutate`: 90% \
         updates, 5% deletes, as many inserts as deletes); each line is the median over \
         {}, each backup after its own changes. MB written is the backup's directory in the \
         repository (data, manifest, checksums).\n\n",
        ds.scale,
        ds.mb(),
        ds.counts.total(),
        runs_phrase(runs)
    );
    s.push_str(&table(&BACKUP_COLUMNS, rows));
    s.push_str(&format!(
        "\nChain restore: a new full backup, then {CHAIN_LEN} incrementals each after {} of \
         the rows changed ({:.2} MB in all), restored whole (the latest backup) and as the \
         full alone (`--backup {full_id}`); each restored database is checked against the \
         source's row counts and column sums at that backup.\n\n",
        percent(TARGET_LEVEL),
        mb(chain_bytes)
    ));
    s.push_str(&table(
        &[
            "restore",
            "median s",
            "runs s",
            "peak RSS MB",
            "÷ full alone",
        ],
        [&chain, &full_alone]
            .iter()
            .map(|b| {
                vec![
                    b.label.clone(),
                    format!("{:.3}", b.median_secs()),
                    b.all_secs(),
                    format!("{:.1}", b.peak_rss_mb()),
                    ratio(b.median_secs() / full_alone.median_secs()),
                ]
            })
            .collect(),
    ));
    s.push_str("\nCommands:\n\n```sh\n");
    for b in [&full, &chain, &full_alone] {
        s.push_str(&b.command);
        s.push('\n');
    }
    s.push_str(&format!(
        "{} --incremental   # after coffer-bench mutate COPY --fraction F\n```\n",
        full.command
    ));
    Ok(s)
}

/// One variant of the capture workload.
struct Variant {
    name: &'static str,
    collection: bool,
    times: Vec<WorkloadTimes>,
}

pub(super) fn capture(ctx: &mut Ctx) -> Result<String> {
    let rows = workload_rows(ctx.opts.scale);
    let runs = ctx.opts.runs;
    let dir = ctx.scratch_dir().join("out").join("capture");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let exe = std::env::current_exe().context("locating this program")?;
    let mut variants = [
        Variant {
            name: "without a collection",
            collection: false,
            times: Vec::new(),
        },
        Variant {
            name: "with a collection on the table",
            collection: true,
            times: Vec::new(),
        },
    ];
    let mut rss_kib = [0u64; 2];
    for i in 0..runs {
        // Alternate the order, so that drift in the machine's load hits both.
        let order: [usize; 2] = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for v in order {
            let variant = &mut variants[v];
            let db = dir.join(format!("{v}.db"));
            let repo = dir.join(format!("{v}.repo"));
            remove_db(&db)?;
            remove_path(&repo)?;
            workload::init_workload_db(&db)?;
            let backup = |incremental: bool| -> Cmd {
                let cmd = Cmd::new(&ctx.opts.coffer)
                    .arg("collection")
                    .arg("backup")
                    .arg("capture")
                    .arg("--db")
                    .arg(&db)
                    .arg("--json");
                if incremental {
                    cmd.arg("--incremental")
                } else {
                    cmd
                }
            };
            if variant.collection {
                let create = ctx
                    .coffer()
                    .arg("collection")
                    .arg("create")
                    .arg("capture")
                    .arg("--db")
                    .arg(&db)
                    .arg("--table")
                    .arg(workload::WORKLOAD_TABLE)
                    .arg("--repo")
                    .arg(&repo);
                ctx.prepare("capture: collection create", create.into())?;
                ctx.prepare("capture: full backup", backup(false).into())?;
            }
            let times_file = dir.join("times.txt");
            let job: Job = Cmd::new(&exe)
                .arg("workload")
                .arg(&db)
                .arg("--rows")
                .arg(rows.to_string())
                .arg("--seed")
                .arg(mix(ctx.opts.seed ^ i as u64).to_string())
                .stdout(&times_file)
                .into();
            let m = proc::run(&job, &ctx.log_path("capture workload"))?;
            let text = fs::read_to_string(&times_file)?;
            let t = text
                .lines()
                .last()
                .and_then(WorkloadTimes::parse)
                .with_context(|| format!("unexpected workload output: {text:?}"))?;
            eprintln!(
                "coffer-bench: capture workload {}: run {}/{runs}: {:.3} s inserts, {:.3} s updates",
                variant.name,
                i + 1,
                t.insert.as_secs_f64(),
                t.update.as_secs_f64()
            );
            variant.times.push(t);
            rss_kib[v] = rss_kib[v].max(m.max_rss_kib);
            if variant.collection {
                // The capture really saw the writes: an incremental backup
                // (untimed) holds every row inserted.
                let out = dir.join("incremental.json");
                ctx.prepare(
                    "capture: incremental backup",
                    backup(true).stdout(&out).into(),
                )?;
                let json = fs::read_to_string(&out)?;
                if !json.contains(&format!("\"rows\":{rows}")) {
                    bail!(
                        "the incremental backup after the workload does not hold its {rows} \
                         rows: {json}"
                    );
                }
            }
            remove_db(&db)?;
            remove_path(&repo)?;
        }
    }
    let med = |v: &Variant, f: fn(&WorkloadTimes) -> f64| -> f64 {
        median(&v.times.iter().map(f).collect::<Vec<_>>())
    };
    let ins = |t: &WorkloadTimes| t.insert.as_secs_f64();
    let upd = |t: &WorkloadTimes| t.update.as_secs_f64();
    let insert_ratio = med(&variants[1], ins) / med(&variants[0], ins);
    let update_ratio = med(&variants[1], upd) / med(&variants[0], upd);
    ctx.record_target("capture_insert", insert_ratio, "");
    ctx.record_target("capture_update", update_ratio, "");

    let mut s = format!(
        "An application's writes, run by the harness with rusqlite (bundled SQLite {}) in \
         a child process: {rows} inserts into an empty table shaped as `orders` (with its \
         index), then {rows} updates of random existing rows by rowid; one prepared \
         statement executed per row, {ROWS_PER_TX} rows per transaction, WAL, \
         `synchronous=NORMAL`. Once on a database without a collection and once on an \
         identical one with `coffer collection create` (and a full backup) done on the table \
         beforehand; the runs alternate between the two. Each time is the phase's own, \
         measured in the process; the median over {}. After each run with capture, \
         an incremental backup checks that every inserted row was captured.\n\n",
        rusqlite::version(),
        runs_phrase(runs)
    );
    s.push_str(&table(
        &[
            "database",
            "inserts median s",
            "runs s",
            "inserts/s",
            "updates median s",
            "runs s",
            "updates/s",
            "peak RSS MB",
        ],
        variants
            .iter()
            .enumerate()
            .map(|(v, var)| {
                let all = |f: fn(&WorkloadTimes) -> f64| {
                    var.times
                        .iter()
                        .map(|t| format!("{:.3}", f(t)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                vec![
                    var.name.to_string(),
                    format!("{:.3}", med(var, ins)),
                    all(ins),
                    format!("{:.0}", rows as f64 / med(var, ins)),
                    format!("{:.3}", med(var, upd)),
                    all(upd),
                    format!("{:.0}", rows as f64 / med(var, upd)),
                    format!("{:.1}", rss_kib[v] as f64 / 1024.0),
                ]
            })
            .collect(),
    ));
    s.push_str(&format!(
        "\nWith capture ÷ without: inserts {}, updates {}.\n",
        ratio(insert_ratio),
        ratio(update_ratio)
    ));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percents() {
        assert_eq!(percent(0.0001), "0.01%");
        assert_eq!(percent(0.001), "0.1%");
        assert_eq!(percent(0.01), "1%");
        assert_eq!(percent(0.1), "10%");
    }

    #[test]
    fn workload_rows_follow_the_scale() {
        assert_eq!(workload_rows(1.0), 200_000);
        assert_eq!(workload_rows(0.002), 1000);
    }

    #[test]
    fn finds_the_one_new_backup() {
        let dir = tempfile::tempdir().unwrap();
        let coll = dir.path().join("collections").join(COLLECTION);
        fs::create_dir_all(coll.join("20260101T000000Z_full")).unwrap();
        fs::write(coll.join("collection.json"), "{}").unwrap();
        let mut seen = backup_names(dir.path()).unwrap();
        assert_eq!(seen.len(), 1);
        assert!(new_backup(dir.path(), &mut seen, "incremental").is_err());
        fs::create_dir_all(coll.join("20260101T000001Z_incremental")).unwrap();
        fs::write(coll.join("20260101T000001Z_incremental/m"), [0u8; 7]).unwrap();
        assert!(new_backup(dir.path(), &mut seen.clone(), "full").is_err());
        let (name, bytes) = new_backup(dir.path(), &mut seen, "incremental").unwrap();
        assert_eq!((name.as_str(), bytes), ("20260101T000001Z_incremental", 7));
        assert_eq!(seen.len(), 2);
    }
}
