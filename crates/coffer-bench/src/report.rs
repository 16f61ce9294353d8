//! The Markdown report.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::bench::Ctx;
use crate::generate::{GENERATOR_VERSION, PAGE_SIZE};
use crate::proc::{capture, shell_quote};
use crate::scenarios::TARGETS;

/// The opening of the report; `run --out docs/BENCHMARKS.md` replaces that
/// file, so this is also the page's introduction.
pub const INTRO: &str = "\
# coffer benchmarks

This page is written by `coffer-bench run` (crate `crates/coffer-bench`): do not edit it by \
hand, re-run the benchmark instead. Each scenario runs `coffer` and what a user would \
otherwise run (the `sqlite3` shell's `.backup`, `VACUUM INTO`, `.dump`, `cp`, CSV export and \
`.import`) as whole processes on the same generated database, and reports the median wall \
time over the runs, the peak resident memory (RSS, from `wait4`) and coffer's time as a ratio \
of each alternative's. Every database that a restore or an import produces is checked for its \
row counts.

The database is made by `coffer-bench generate`: deterministic for a seed and a scale \
(scale 1 ≈ 3 M rows, ≈ 250 MB; page size 4096, rollback journal), with tables `users`, \
`orders` (implicit rowid), `events` (BLOB payloads, partly incompressible) and `sessions` \
(`WITHOUT ROWID`), and four secondary indexes. Data is built from syllables and a word \
list, so it compresses the way real data does rather than not at all or completely. \
The `bigtable` scenario uses a database of one `orders` table of 10 M rows \
(`generate --big-table`). Files are in the page cache during the runs (the database was just \
generated or read): these are warm-cache numbers. MB means 2^20 bytes. Peak RSS comes from \
`wait4`; it can not go below the harness's own few MB, from which each child is spawned (so \
the harness does its own heavy work — the S3 server, row changes, the capture workload — in \
helper processes, to stay small).

## What is measured

| scenario | coffer | compared with | runs (default) |
| --- | --- | --- | --- |
| `backup` | `coffer backup DB DIR` | `sqlite3 DB \".backup OUT\"`, `sqlite3 DB \"VACUUM INTO 'OUT'\"` | 3 |
| `restore` | `coffer restore DIR NEW.db` | `sqlite3 NEW.db < dump.sql` (the restore half of a dump), `sqlite3 DB .dump \\| sqlite3 NEW.db` (both halves), `cp backup.db NEW.db` | 3 |
| `size` | size of the archive directory | the database file, a `.backup` file, a `.dump`, `zstd -3` of the file | — |
| `scaling` | backup and restore at 1×, 2× and 4× the scale | `VACUUM INTO` at each scale | 3 |
| `export` | `coffer export DB DIR`, `coffer export DB s3://…` (an in-process S3 server: s3s-fs on 127.0.0.1), `coffer export --format csv` | `sqlite3 -csv -header DB \"SELECT * FROM T\" > T.csv` for every table, as one job | 3 |
| `import` | `coffer import DIR NEW.db`, `coffer import s3://… NEW.db` | `sqlite3 NEW.db < script`: the schema, `.import --csv --skip 1` of each CSV file, the indexes | 3 |
| `bigtable` | peak RSS of `coffer export --table orders` and `coffer import` of a 10 M-row table | — | 1 |
| `collection` | `coffer collection backup` full, then `--incremental` after 0.01%, 0.1%, 1% and 10% of the rows changed; `coffer collection restore` of a full + 10 incrementals | the full backup; restoring the full alone (`--backup ID`) | 3 |
| `capture` | an application's writes (rusqlite, WAL, one prepared statement per row, 100 rows per transaction): inserts, then updates by rowid, on a table of a collection | the same writes on the same table without a collection | 3 |
| `postgres` | on a throwaway PostgreSQL cluster (fsync off), a generated database of 3 M rows (`customers`, `orders` with a foreign key; numeric, timestamptz, text, bytea, jsonb; four indexes): `coffer backup URL DIR`, `coffer restore DIR URL`, `coffer export URL DIR --format csv`; backup and restore at 1×, 2× and 4×, and with `--encrypt-to` / `--identity` at 1× | `pg_dump -Fd -j 2`, `pg_dump -Fc`; `pg_restore -j 2` of the directory dump, `psql -f` of a plain dump; `psql` `\\copy … to csv` of every table; the size of the `pg_dump -Fd` directory | 3 |
| `pg_collection` | on the `postgres` scenario's database: `coffer collection backup` of `customers` and `orders`, full, then `--incremental` after 0.01%, 0.1%, 1% and 10% of the rows changed; `coffer collection restore` of a full + 10 incrementals into a new database; `pgbench -c 4 -j 2` single-row inserts and updates by key on a table of a collection; pgBackRest full and incremental backups of the cluster when installed | the full backup; restoring the full alone (`--backup ID`); the same pgbench workload on the table without a collection | 3 |
| `encryption` | `coffer backup DB DIR --encrypt-to age1…` and `coffer restore DIR NEW.db --identity KEY` (X25519) on the benchmark database (the `postgres` scenario does the same on PostgreSQL) | the same `coffer backup` and `coffer restore` without encryption | 3 |
| `verify` (not by default) | `coffer verify DIR` | `sqlite3 DB \"PRAGMA integrity_check\"` | 3 |

Targets: coffer restore ≥ 4× faster than `sqlite3 DB .dump | sqlite3 NEW.db`; coffer backup \
≤ 2× the wall time of `VACUUM INTO`; archive ≤ 0.5 × database size; peak RSS of coffer backup \
and restore < 200 MB; export to S3 at ≥ 80% of the speed of exporting to a directory; peak \
RSS < 256 MB exporting and importing a 10 M-row table; an incremental backup after 0.1% of \
the rows changed in ≤ 5% of a full backup's wall time and ≤ 2% of its bytes; restoring a \
chain of a full and 10 incrementals in ≤ 1.5× the time of restoring the full alone; change \
capture slowing inserts by ≤ 40% and updates by ≤ 60%; on PostgreSQL, coffer backup within \
the wall time of `pg_dump -Fd -j 2`, coffer restore within that of `pg_restore -j 2`, the \
archive no larger than the `pg_dump -Fd` directory, peak RSS under 200 MB at every scale; \
and for PostgreSQL collections an incremental after 0.1% of the rows changed in ≤ 5% of a \
full's wall time and ≤ 2% of its bytes, a chain of a full and 10 incrementals restored in \
≤ 1.5× the full alone, and change capture slowing pgbench's inserts by ≤ 40% and updates by \
≤ 60%; and encryption costing ≤ 10% of a backup's and of a restore's wall time, on SQLite and \
on PostgreSQL.

To reproduce (under 15 minutes on 2 cores once the datasets are cached; generating them \
takes a few minutes more the first time):

```sh
cargo build --release -p coffer-cli -p coffer-bench
target/release/coffer-bench run --out docs/BENCHMARKS.md
```

`--quick` (scale 0.002, one run) is the CI smoke test: it checks that every command works, \
not how fast. See `coffer-bench run --help` and `coffer-bench scenarios`.
";

/// The repository holding `exe` (a built binary under `target/`): its
/// first ancestor with a `Cargo.lock`.
pub fn repository_of(exe: &Path) -> Option<PathBuf> {
    exe.ancestors()
        .skip(1)
        .find(|dir| dir.join("Cargo.lock").is_file())
        .map(Path::to_path_buf)
}

/// `text` with the absolute paths under `root` written relative to it, so
/// that a report names no path of the machine it ran on.
pub fn relative_to(text: &str, root: &Path) -> String {
    text.replace(&format!("{}/", root.display()), "")
}

/// A Markdown table.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut s = String::new();
    s.push_str(&format!("| {} |\n", headers.join(" | ")));
    s.push_str(&format!(
        "|{}\n",
        headers
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { " --- |" } else { " ---: |" })
            .collect::<String>()
    ));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
        s.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    s
}

/// A ratio with two decimals, three below 0.1, four below 0.01.
pub fn ratio(v: f64) -> String {
    if v.abs() < 0.01 {
        format!("{v:.4}")
    } else if v.abs() < 0.1 {
        format!("{v:.3}")
    } else {
        format!("{v:.2}")
    }
}

pub fn command_line() -> String {
    std::env::args()
        .map(|a| shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `YYYY-MM-DD HH:MM UTC` for now.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Fails early if the baselines' tools are missing.
pub fn check_tools(ctx: &Ctx) -> anyhow::Result<()> {
    use anyhow::Context as _;
    capture(&ctx.opts.sqlite3, &["--version"]).with_context(|| {
        format!(
            "the sqlite3 shell ({}) is needed for the baselines (Debian: apt-get install sqlite3)",
            ctx.opts.sqlite3.display()
        )
    })?;
    Ok(())
}

fn first_line_of(path: &str, key: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn machine_rows(ctx: &Ctx) -> Vec<(String, String)> {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    let cpu = first_line_of("/proc/cpuinfo", "model name").unwrap_or_else(|| "?".into());
    let mem = first_line_of("/proc/meminfo", "MemTotal")
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| std::env::consts::OS.into());
    let sqlite3 = capture(&ctx.opts.sqlite3, &["--version"]).unwrap_or_else(|e| format!("{e}"));
    let coffer = capture(&ctx.opts.coffer, &["--version"]).unwrap_or_else(|e| format!("{e}"));
    vec![
        ("date".into(), utc_now()),
        ("command".into(), format!("`{}`", command_line())),
        ("CPU".into(), format!("{cpu} ({nproc} logical CPUs)")),
        ("memory".into(), mem),
        (
            "OS".into(),
            format!(
                "{} {kernel} ({})",
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
        ),
        (
            "sqlite3".into(),
            format!("{} (`{}`)", sqlite3, ctx.opts.sqlite3.display()),
        ),
        (
            "coffer".into(),
            format!("{} (`{}`)", coffer, ctx.opts.coffer.display()),
        ),
        (
            "runs".into(),
            format!(
                "{} per command, median reported{}",
                ctx.opts.runs,
                if ctx.opts.quick { " (--quick)" } else { "" }
            ),
        ),
        (
            "generator".into(),
            format!(
                "version {GENERATOR_VERSION}, seed {}, page size {PAGE_SIZE}, bundled SQLite {}",
                ctx.opts.seed,
                rusqlite::version()
            ),
        ),
    ]
}

pub struct Section {
    pub name: &'static str,
    pub about: &'static str,
    pub body: Result<String, String>,
}

pub fn render(ctx: &Ctx, sections: &[Section]) -> String {
    let mut s = String::from(INTRO);
    s.push_str("\n## Run\n\n");
    s.push_str(&table(
        &["", ""],
        machine_rows(ctx)
            .into_iter()
            .map(|(k, v)| vec![k, v])
            .collect(),
    ));
    let datasets: Vec<_> = ctx.all_datasets().collect();
    if !datasets.is_empty() {
        s.push_str("\nDatasets:\n\n");
        s.push_str(&table(
            &[
                "scale",
                "MB",
                "users",
                "orders",
                "events",
                "sessions",
                "generated in s",
            ],
            datasets
                .iter()
                .map(|d| {
                    vec![
                        d.kind(),
                        format!("{:.1}", d.mb()),
                        d.counts.users.to_string(),
                        d.counts.orders.to_string(),
                        d.counts.events.to_string(),
                        d.counts.sessions.to_string(),
                        d.generated_secs
                            .map(|t| format!("{t:.1}"))
                            .unwrap_or_else(|| "cached".into()),
                    ]
                })
                .collect(),
        ));
    }
    if ctx.opts.quick {
        s.push_str(
            "\n**Quick mode**: a tiny database and one run. The numbers below only show that \
             every command works; MET / NOT MET means nothing at this scale.\n",
        );
    }

    s.push_str("\n## Targets\n\n");
    s.push_str(&table(
        &["target", "measured", "status"],
        TARGETS
            .iter()
            .map(|t| match ctx.targets.get(t.id) {
                Some(&v) => {
                    let mut shown = (t.show)(v);
                    if let Some(note) = ctx.target_notes.get(t.id) {
                        shown.push_str(&format!(" ({note})"));
                    }
                    let status = if (t.met)(v) { "MET" } else { "NOT MET" };
                    vec![t.what.to_string(), shown, status.to_string()]
                }
                None => vec![t.what.to_string(), "not measured".into(), "—".to_string()],
            })
            .collect(),
    ));

    for sec in sections {
        s.push_str(&format!("\n## {}\n\n{}.\n\n", sec.name, sec.about));
        match &sec.body {
            Ok(body) => s.push_str(body),
            Err(e) => s.push_str(&format!("**FAILED**:\n\n```\n{e}\n```\n")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_markdown() {
        let t = table(&["a", "b"], vec![vec!["x | y".into(), "1".into()]]);
        assert_eq!(t, "| a | b |\n| --- | ---: |\n| x \\| y | 1 |\n");
    }

    #[test]
    fn ratios_keep_their_digits() {
        assert_eq!(ratio(1.234), "1.23");
        assert_eq!(ratio(0.0421), "0.042");
        assert_eq!(ratio(0.00042), "0.0004");
    }

    #[test]
    fn intro_names_every_default_scenario_and_target() {
        for s in crate::scenarios::SCENARIOS {
            assert!(INTRO.contains(&format!("| `{}`", s.name)), "{}", s.name);
        }
        assert_eq!(TARGETS.len(), 27);
    }

    #[test]
    fn paths_in_the_repository_are_relative() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        fs::create_dir_all(root.join("target/release")).unwrap();
        fs::write(root.join("Cargo.lock"), "").unwrap();
        let exe = root.join("target/release/coffer-bench");
        assert_eq!(repository_of(&exe).as_deref(), Some(root.as_path()));
        let text = format!(
            "| coffer | coffer 0.1.0 (`{r}/target/release/coffer`) |\n\
             {r}/target/release/coffer restore '{r}/target/coffer-bench/a b' /elsewhere/x\n",
            r = root.display()
        );
        assert_eq!(
            relative_to(&text, &root),
            "| coffer | coffer 0.1.0 (`target/release/coffer`) |\n\
             target/release/coffer restore 'target/coffer-bench/a b' /elsewhere/x\n"
        );
    }

    #[test]
    fn date_looks_like_a_date() {
        let d = utc_now();
        assert_eq!(d.len(), "2026-01-01 00:00 UTC".len(), "{d}");
        assert!(d.starts_with("20"), "{d}");
    }
}
