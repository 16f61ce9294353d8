//! `coffer export` and `coffer import`, to a directory and to S3, against
//! the sqlite3 shell's CSV export and `.import`; and their memory on one big
//! table.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags};

use super::{comparison, dataset_line};
use crate::bench::{Bench, Ctx, Dataset, disk_size, mb, remove_db, remove_path};
use crate::proc::{Cmd, Job, shell_quote};
use crate::report::table;
use crate::s3::S3Info;

/// Rows of the `bigtable` scenario's table at scale 1 (the issue's 10M).
pub const BIG_TABLE_ROWS: u64 = 10_000_000;

/// Its rows at the run's scale (10M at scale 1, 20k with --quick).
pub fn big_table_rows(scale: f64) -> u64 {
    ((BIG_TABLE_ROWS as f64 * scale).round() as u64).max(1000)
}

/// Where a dataset's export goes in the S3 bucket.
fn s3_prefix(ds: &Dataset) -> String {
    format!("export-{}", ds.tag())
}

fn export_cmd(ctx: &Ctx, ds: &Dataset, dest: impl AsRef<std::ffi::OsStr>) -> Cmd {
    ctx.coffer().arg("export").arg(&ds.path).arg(dest)
}

fn export_s3_job(ctx: &Ctx, ds: &Dataset, s3: &S3Info) -> Job {
    s3.configure(export_cmd(ctx, ds, s3.url(&s3_prefix(ds))))
        .into()
}

/// The sqlite3 shell's CSV export of every table of `ds` into the directory
/// `out`, one shell invocation per table, as one job.
fn sqlite_csv_job(ctx: &Ctx, ds: &Dataset, out: &Path) -> Job {
    let mut script = format!("mkdir -p {}", shell_quote(&out.to_string_lossy()));
    for (table, _) in ds.counts.by_table() {
        script.push_str(&format!(
            " && {} -csv -header {} {} > {}",
            shell_quote(&ctx.opts.sqlite3.to_string_lossy()),
            shell_quote(&ds.path.to_string_lossy()),
            shell_quote(&format!("SELECT * FROM {table}")),
            shell_quote(&out.join(format!("{table}.csv")).to_string_lossy()),
        ));
    }
    Cmd::new("sh").arg("-c").arg(script).into()
}

/// A script for `sqlite3 NEW.db`: the schema of `ds`, `.import` of each
/// table's CSV file from `csv_dir`, then the indexes (as coffer import
/// makes them).
fn sqlite_import_script(ds: &Dataset, csv_dir: &Path) -> Result<String> {
    let conn = Connection::open_with_flags(&ds.path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", ds.path.display()))?;
    let rows = |sql: &str| -> Result<Vec<(String, String)>> {
        let mut stmt = conn.prepare(sql)?;
        let v = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    };
    let mut script = String::from(".bail on\n");
    let tables = rows(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid",
    )?;
    for (_, sql) in &tables {
        script.push_str(sql);
        script.push_str(";\n");
    }
    for (name, _) in &tables {
        let file = csv_dir.join(format!("{name}.csv"));
        script.push_str(&format!(
            ".import --csv --skip 1 \"{}\" {name}\n",
            file.display()
        ));
    }
    for (_, sql) in rows(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
         ORDER BY rowid",
    )? {
        script.push_str(&sql);
        script.push_str(";\n");
    }
    Ok(script)
}

fn coffer_export_local(ctx: &mut Ctx, ds: &Dataset) -> Result<Bench> {
    let out = ctx.out_dir("coffer-export", ds)?.join("export");
    let job = export_cmd(ctx, ds, &out).into();
    let (bench, fresh) = ctx.measure("coffer export (local)", job, || remove_path(&out))?;
    if fresh {
        ctx.keep_artifact(ds, "export", &out)?;
    }
    Ok(bench)
}

/// The export of `ds` in the S3 bucket, made (untimed) if not there.
fn s3_export(ctx: &mut Ctx, ds: &Dataset) -> Result<String> {
    let s3 = ctx.s3()?;
    let prefix = s3_prefix(ds);
    let dir = s3.prefix_dir(&prefix);
    if !dir.join("manifest.json").exists() {
        remove_path(&dir)?;
        ctx.prepare("prepare S3 export", export_s3_job(ctx, ds, &s3))?;
    }
    Ok(s3.url(&prefix))
}

pub(super) fn export(ctx: &mut Ctx) -> Result<String> {
    let ds = ctx.dataset(1.0)?;
    let local = coffer_export_local(ctx, &ds)?;

    let s3 = ctx.s3()?;
    let s3_dir = s3.prefix_dir(&s3_prefix(&ds));
    let job = export_s3_job(ctx, &ds, &s3);
    let (to_s3, _) = ctx.measure("coffer export (S3)", job, || remove_path(&s3_dir))?;

    let csv_out = ctx.out_dir("coffer-export-csv", &ds)?.join("export");
    let job = export_cmd(ctx, &ds, &csv_out)
        .arg("--format")
        .arg("csv")
        .into();
    let (csv, _) = ctx.measure("coffer export --format csv", job, || remove_path(&csv_out))?;

    let sqlite_out = ctx.out_dir("sqlite-csv", &ds)?.join("csv");
    let job = sqlite_csv_job(ctx, &ds, &sqlite_out);
    let (sqlite, fresh) = ctx.measure("sqlite3 -csv, every table", job, || {
        remove_path(&sqlite_out)
    })?;
    let sqlite_csv = if fresh {
        ctx.keep_artifact(&ds, "sqlite-csv", &sqlite_out)?
    } else {
        ctx.artifact(&ds, "sqlite-csv", sqlite_csv_job)?
    };
    let export_dir = ctx.artifact(&ds, "export", |ctx, ds, out| {
        export_cmd(ctx, ds, out).into()
    })?;

    let speed = local.median_secs() / to_s3.median_secs();
    ctx.record_target("export_s3_speed", speed, "");

    let mut s = dataset_line(&ds);
    s.push_str(
        "The S3 server is s3s-fs over a local directory, on 127.0.0.1 in a helper process of \
         the harness (so it shares the machine's CPUs with coffer, as a local MinIO would). \
         `coffer export --format csv` and the sqlite3 shell both write plain CSV; the \
         shell cuts BLOBs at their first NUL byte (the `events` payloads): it \
         is not a faithful copy.\n\n",
    );
    s.push_str(&comparison(&[&local, &to_s3, &csv, &sqlite], &local, &ds));
    s.push_str(&format!(
        "\nS3 export speed ÷ local export speed: {speed:.2} (the target is ≥ 0.80).\n\n"
    ));
    let sizes = [
        ("coffer export (Parquet, zstd)", disk_size(&export_dir)?),
        (
            "coffer export to S3 (the bucket's files)",
            disk_size(&s3_dir)?,
        ),
        ("coffer export --format csv (zstd)", disk_size(&csv_out)?),
        ("sqlite3 -csv files", disk_size(&sqlite_csv)?),
    ];
    s.push_str(&table(
        &["output", "MB", "÷ database size"],
        sizes
            .iter()
            .map(|(what, bytes)| {
                vec![
                    what.to_string(),
                    format!("{:.2}", mb(*bytes)),
                    format!("{:.3}", *bytes as f64 / ds.bytes as f64),
                ]
            })
            .collect(),
    ));
    Ok(s)
}

pub(super) fn import(ctx: &mut Ctx) -> Result<String> {
    let ds = ctx.dataset(1.0)?;
    let export_dir = ctx.artifact(&ds, "export", |ctx, ds, out| {
        export_cmd(ctx, ds, out).into()
    })?;
    let url = s3_export(ctx, &ds)?;
    let s3 = ctx.s3()?;
    let csv_dir = ctx.artifact(&ds, "sqlite-csv", sqlite_csv_job)?;

    let out = ctx.out_dir("import", &ds)?;
    let new = out.join("imported.db");
    let job = ctx.coffer().arg("import").arg(&export_dir).arg(&new).into();
    let local = import_with(ctx, &ds, "coffer import (local)", &new, job)?;
    let job = s3
        .configure(ctx.coffer().arg("import").arg(&url).arg(&new))
        .into();
    let from_s3 = import_with(ctx, &ds, "coffer import (S3)", &new, job)?;

    let script = out.join("import-csv.sql");
    fs::write(&script, sqlite_import_script(&ds, &csv_dir)?)
        .with_context(|| format!("writing {}", script.display()))?;
    let job = ctx.sqlite3().arg(&new).stdin(&script).into();
    let sqlite = import_with(ctx, &ds, "sqlite3 NEW.db < import-csv.sql", &new, job)?;

    let mut s = dataset_line(&ds);
    s.push_str(
        "Each import makes a new database with the tables and their indexes, from the \
         exports of the `export` scenario (made beforehand if it did not run); each result \
         is checked for its row counts. `import-csv.sql` creates the tables with the \
         database's own schema, `.import --csv --skip 1`s each table's file made by \
         `sqlite3 -csv -header`, then creates the indexes.\n\n",
    );
    s.push_str(&comparison(&[&local, &from_s3, &sqlite], &local, &ds));
    Ok(s)
}

fn import_with(ctx: &mut Ctx, ds: &Dataset, label: &str, new: &Path, job: Job) -> Result<Bench> {
    let (bench, fresh) = ctx.measure(label, job, || remove_db(new))?;
    if fresh {
        ctx.check_restored(new, ds)?;
    }
    Ok(bench)
}

pub(super) fn bigtable(ctx: &mut Ctx) -> Result<String> {
    let rows = big_table_rows(ctx.opts.scale);
    let ds = ctx.big_table_dataset(rows)?;
    // Peak RSS is the target here, not time: one run is enough.
    let runs = ctx.runs_at_most(1);
    let out = ctx.out_dir("bigtable", &ds)?;
    let export = out.join("export");
    let job = export_cmd(ctx, &ds, &export)
        .arg("--table")
        .arg("orders")
        .into();
    let exp = ctx.measure_each(
        "coffer export --table orders (big table)",
        job,
        runs,
        |_| remove_path(&export),
        |_, _| Ok(()),
    )?;
    let new = out.join("imported.db");
    let job = ctx.coffer().arg("import").arg(&export).arg(&new).into();
    let imp = ctx.measure_each(
        "coffer import (big table)",
        job,
        runs,
        |_| remove_db(&new),
        |_, _| Ok(()),
    )?;
    ctx.check_restored(&new, &ds)?;
    let export_bytes = disk_size(&export)?;
    remove_path(&export)?;
    remove_db(&new)?;

    let note = if rows == BIG_TABLE_ROWS {
        String::new()
    } else {
        format!("{rows} rows, not {BIG_TABLE_ROWS}")
    };
    ctx.record_target("bigtable_export_rss", exp.peak_rss_mb(), note.clone());
    ctx.record_target("bigtable_import_rss", imp.peak_rss_mb(), note);

    let mut s = format!(
        "Dataset: one `orders` table of {rows} rows and its index, {:.1} MB \
         (`coffer-bench generate --big-table {rows}`). {} each: the targets are on peak \
         RSS, which does not need a median. The import is checked for its row count.\n\n",
        ds.mb(),
        super::collection::runs_phrase(runs)
    );
    s.push_str(&table(
        &["command", "median s", "rows/s", "peak RSS MB"],
        [&exp, &imp]
            .iter()
            .map(|b| {
                vec![
                    b.label.clone(),
                    format!("{:.3}", b.median_secs()),
                    format!("{:.0}", rows as f64 / b.median_secs()),
                    format!("{:.1}", b.peak_rss_mb()),
                ]
            })
            .collect(),
    ));
    s.push_str(&format!(
        "\nThe export is {:.1} MB.\n\nCommands:\n\n```sh\n{}\n{}\n```\n",
        mb(export_bytes),
        exp.command,
        imp.command
    ));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{Counts, generate};

    #[test]
    fn big_table_rows_follow_the_scale() {
        assert_eq!(big_table_rows(1.0), 10_000_000);
        assert_eq!(big_table_rows(0.002), 20_000);
        assert_eq!(big_table_rows(1e-9), 1000);
    }

    #[test]
    fn import_script_rebuilds_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("d.db");
        generate(&db, 0.001, 1).unwrap();
        let ds = Dataset {
            path: db,
            scale: 0.001,
            big_table: false,
            bytes: 0,
            counts: Counts::for_scale(0.001),
            generated_secs: None,
        };
        let script = sqlite_import_script(&ds, Path::new("/csv")).unwrap();
        assert!(
            script.starts_with(".bail on\nCREATE TABLE users"),
            "{script}"
        );
        assert!(script.contains(".import --csv --skip 1 \"/csv/sessions.csv\" sessions\n"));
        let import = script.find(".import").unwrap();
        let index = script.find("CREATE INDEX").unwrap();
        assert!(import < index, "indexes come after the data");
        assert_eq!(script.matches("CREATE TABLE").count(), 4);
        assert_eq!(script.matches("INDEX").count(), 4);
    }
}
