//! PostgreSQL: `coffer backup`, `restore` and `export` of a generated
//! database on a throwaway cluster of this machine, against what users
//! would otherwise run: `pg_dump -Fd -j 2`, `pg_dump -Fc`, `pg_restore -j
//! 2`, `psql -f` of a plain dump, and `\copy … to csv` of every table.

use anyhow::{Context, Result, bail};
use coffer_testkit::pg::Cluster;

use crate::bench::{Bench, Ctx, disk_size, mb, remove_path};
use crate::proc::{Cmd, Job};
use crate::report::{ratio, table};

/// Rows at scale 1: about 3 M, 250 MB on disk with their indexes.
const ROWS: f64 = 3_000_000.0;

/// Rows of the benchmark database at the run's `scale` times `factor`
/// (1000 at least).
pub(super) fn rows_at(scale: f64, factor: f64) -> u64 {
    ((ROWS * scale * factor).round() as u64).max(1000)
}

/// Customers among `rows` rows: a tenth.
fn customers_of(rows: u64) -> u64 {
    (rows / 10).max(10)
}

/// Inserts the orders `first..=last`, each of one of `customers` customers.
pub(super) fn insert_orders(customers: u64, first: u64, last: u64) -> String {
    format!(
        "INSERT INTO orders
           SELECT g, 1 + (g * 104729) % {customers},
                  timestamptz '2020-01-01 00:00:00+00' + g * interval '13 seconds' + (g % 1000) * interval '1 microsecond',
                  ((g * 31337) % 100000000) / 100.0, (g % 4)::int2,
                  CASE WHEN g % 3 = 0 THEN NULL ELSE 'order note ' || md5(g::text) END,
                  decode(md5(g::text), 'hex')
           FROM generate_series({first}::bigint, {last}) g;"
    )
}

/// The generated database: customers and their orders, with a foreign key,
/// numeric, timestamptz, text, bytea and jsonb columns and several indexes.
fn generate_sql(rows: u64) -> String {
    let customers = customers_of(rows);
    let orders = rows - customers;
    format!(
        "CREATE TABLE customers (
             id bigint PRIMARY KEY, name text NOT NULL, email text, since timestamptz NOT NULL,
             balance numeric(12,2), profile jsonb);
         INSERT INTO customers
           SELECT g, 'customer ' || g, 'c' || g || '@example.com',
                  timestamptz '2015-01-01 00:00:00+00' + g * interval '97 seconds',
                  ((g * 7919) % 10000000) / 100.0,
                  jsonb_build_object('tier', g % 5, 'tags', jsonb_build_array('t' || (g % 7), g % 3 = 0))
           FROM generate_series(1::bigint, {customers}) g;
         CREATE TABLE orders (
             id bigint PRIMARY KEY, customer bigint NOT NULL REFERENCES customers (id),
             placed timestamptz NOT NULL, amount numeric(12,2) NOT NULL, status int2 NOT NULL,
             note text, receipt bytea);
         {}
         CREATE INDEX orders_customer ON orders (customer);
         CREATE INDEX orders_placed ON orders (placed);
         CREATE UNIQUE INDEX customers_email ON customers (email);",
        insert_orders(customers, 1, orders)
    )
}

/// The PostgreSQL benchmark database, generated on a cluster.
pub(super) struct PgDataset {
    pub db: String,
    pub rows: u64,
    /// `pg_database_size` after generating.
    pub bytes: u64,
    /// Rows of `customers` and `orders`.
    pub counts: (i64, i64),
}

/// (Re)creates `bench_ROWS` on `c` holding the benchmark database of `rows`
/// rows, vacuumed and analyzed.
pub(super) fn generate(c: &Cluster, rows: u64) -> Result<PgDataset> {
    let db = format!("bench_{rows}");
    recreate(c, &db, true)?;
    let started = std::time::Instant::now();
    execute(c, &db, &generate_sql(rows))?;
    execute(c, &db, "VACUUM ANALYZE")?;
    let counts = counts(c, &db)?;
    let bytes = database_bytes(c, &db)?;
    eprintln!(
        "coffer-bench: generated {rows} rows, {:.1} MB, in {:.1} s",
        mb(bytes),
        started.elapsed().as_secs_f64()
    );
    Ok(PgDataset {
        db,
        rows,
        bytes,
        counts,
    })
}

/// The sentence describing the dataset, for a section.
pub(super) fn dataset_line(ds: &PgDataset) -> String {
    format!(
        "Dataset: {} rows in two tables (`customers`, `orders` with a foreign key, \
         numeric, timestamptz, text, bytea, jsonb; four indexes), {:.1} MB on disk \
         (`pg_database_size`), on a throwaway PostgreSQL cluster of this machine \
         (fsync off), client and server sharing its cores.\n\n",
        ds.rows,
        mb(ds.bytes)
    )
}

/// The ratio column of coffer against the alternatives.
const COFFER_RATIO: &str = "coffer ÷ this";

fn row(b: &Bench, reference: &Bench) -> Vec<String> {
    vec![
        b.label.clone(),
        format!("{:.3}", b.median_secs()),
        b.all_secs(),
        format!("{:.1}", b.peak_rss_mb()),
        if std::ptr::eq(b, reference) {
            "—".to_string()
        } else {
            ratio(reference.median_secs() / b.median_secs())
        },
    ]
}

/// A `#### title` section: `intro`, a table of `benches` with the first's
/// median time over each other's (column `ratio_header`), their commands.
pub(super) fn section(title: &str, intro: &str, benches: &[&Bench], ratio_header: &str) -> String {
    let reference = benches[0];
    let mut s = format!("#### {title}\n\n{intro}");
    s.push_str(&table(
        &["command", "median s", "runs s", "peak RSS MB", ratio_header],
        benches.iter().map(|b| row(b, reference)).collect(),
    ));
    s.push_str("\nCommands:\n\n```sh\n");
    for b in benches {
        s.push_str(&b.command);
        s.push('\n');
    }
    s.push_str("```\n\n");
    s
}

/// Run `sql` on `db` of `c`, failing with its error.
pub(super) fn execute(c: &Cluster, db: &str, sql: &str) -> Result<()> {
    c.client(db)
        .and_then(|mut client| client.batch_execute(sql))
        .with_context(|| format!("running SQL on {db}"))
}

fn database_bytes(c: &Cluster, db: &str) -> Result<u64> {
    let mut client = c.client(db)?;
    let n: i64 = client
        .query_one("SELECT pg_database_size(current_database())", &[])?
        .get(0);
    Ok(n as u64)
}

/// Drops `db` if it exists, and with `create` makes it anew (empty).
pub(super) fn recreate(c: &Cluster, db: &str, create: bool) -> Result<()> {
    execute(
        c,
        "postgres",
        &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
    )?;
    if create {
        execute(c, "postgres", &format!("CREATE DATABASE \"{db}\""))?;
    }
    Ok(())
}

/// Rows of `db`'s tables, to check a restore.
fn counts(c: &Cluster, db: &str) -> Result<(i64, i64)> {
    let mut client = c.client(db)?;
    let a: i64 = client
        .query_one("SELECT count(*) FROM customers", &[])?
        .get(0);
    let b: i64 = client.query_one("SELECT count(*) FROM orders", &[])?.get(0);
    Ok((a, b))
}

pub fn postgres(ctx: &mut Ctx) -> Result<String> {
    let scale = ctx.opts.scale;
    let cluster = Cluster::start(false);
    let bin = |name: &str| cluster.bindir.join(name);
    let out = ctx.scratch_dir().join("out").join("postgres");
    std::fs::create_dir_all(&out)?;
    let mut text = String::new();
    let mut scaling = Vec::new();
    let factors: &[f64] = if ctx.opts.quick {
        &[1.0]
    } else {
        &[1.0, 2.0, 4.0]
    };
    for &factor in factors {
        let ds = generate(&cluster, rows_at(scale, factor))?;
        let (rows, bytes, expected) = (ds.rows, ds.bytes, ds.counts);
        let db = ds.db.clone();
        let url = cluster.url(&db);
        let archive = out.join(format!("archive-{rows}"));
        let dump_dir = out.join(format!("dump-{rows}.d"));
        let backup = ctx
            .measure(
                &format!("coffer backup ({rows} rows)"),
                ctx.coffer().arg("backup").arg(&url).arg(&archive).into(),
                || remove_path(&archive),
            )?
            .0;
        let restored = format!("{db}_coffer");
        let restore = ctx
            .measure(
                &format!("coffer restore ({rows} rows)"),
                ctx.coffer()
                    .arg("restore")
                    .arg(&archive)
                    .arg(cluster.url(&restored))
                    .into(),
                || recreate(&cluster, &restored, false),
            )?
            .0;
        if counts(&cluster, &restored)? != expected {
            bail!("coffer restore of {db} lost rows");
        }
        ctx.record_target_max(
            "pg_backup_rss",
            backup.peak_rss_mb(),
            format!("largest over scales measured; {rows} rows"),
        );
        ctx.record_target_max(
            "pg_restore_rss",
            restore.peak_rss_mb(),
            format!("largest over scales measured; {rows} rows"),
        );
        if factor == 1.0 {
            let pg_dump_d = ctx
                .measure(
                    "pg_dump -Fd -j 2",
                    Job::from(
                        Cmd::new(bin("pg_dump"))
                            .arg("-Fd")
                            .arg("-j")
                            .arg("2")
                            .arg("-f")
                            .arg(&dump_dir)
                            .arg("--dbname")
                            .arg(&url),
                    ),
                    || remove_path(&dump_dir),
                )?
                .0;
            let custom = out.join("dump.custom");
            let pg_dump_c = ctx
                .measure(
                    "pg_dump -Fc",
                    Cmd::new(bin("pg_dump"))
                        .arg("-Fc")
                        .arg("-f")
                        .arg(&custom)
                        .arg("--dbname")
                        .arg(&url)
                        .into(),
                    || remove_path(&custom),
                )?
                .0;
            let plain = out.join("dump.sql");
            ctx.prepare(
                "pg_dump plain",
                Cmd::new(bin("pg_dump"))
                    .arg("-f")
                    .arg(&plain)
                    .arg("--dbname")
                    .arg(&url)
                    .into(),
            )?;
            let by_pg_restore = format!("{db}_pg_restore");
            let pg_restore = ctx
                .measure(
                    "pg_restore -j 2",
                    Cmd::new(bin("pg_restore"))
                        .arg("-j")
                        .arg("2")
                        .arg("--dbname")
                        .arg(cluster.url(&by_pg_restore))
                        .arg(&dump_dir)
                        .into(),
                    || recreate(&cluster, &by_pg_restore, true),
                )?
                .0;
            let by_psql = format!("{db}_psql");
            let psql = ctx
                .measure(
                    "psql -f (plain dump)",
                    Cmd::new(bin("psql"))
                        .arg("-q")
                        .arg("-X")
                        .arg("-v")
                        .arg("ON_ERROR_STOP=1")
                        .arg("-f")
                        .arg(&plain)
                        .arg(cluster.url(&by_psql))
                        .into(),
                    || recreate(&cluster, &by_psql, true),
                )?
                .0;
            let export_dir = out.join("export");
            let export = ctx
                .measure(
                    "coffer export --format csv",
                    ctx.coffer()
                        .arg("export")
                        .arg(&url)
                        .arg(&export_dir)
                        .arg("--format")
                        .arg("csv")
                        .into(),
                    || remove_path(&export_dir),
                )?
                .0;
            let csv_dir = out.join("copy");
            std::fs::create_dir_all(&csv_dir)?;
            let copy_cmd = format!(
                "\\copy customers to '{0}/customers.csv' csv header\n\\copy orders to '{0}/orders.csv' csv header\n",
                csv_dir.display()
            );
            let script = out.join("copy.sql");
            std::fs::write(&script, copy_cmd)?;
            let copy = ctx
                .measure(
                    "psql \\copy … to csv",
                    Cmd::new(bin("psql"))
                        .arg("-q")
                        .arg("-X")
                        .arg("-f")
                        .arg(&script)
                        .arg(&url)
                        .into(),
                    || Ok(()),
                )?
                .0;
            // Encrypted (issue 14: at most 10% more wall time), in turns
            // with the same command unencrypted, so that both see the same
            // machine.
            let (identity, recipient) = coffer_testkit::keys::identity(&out, "bench.key");
            let sealed_archive = out.join("archive-encrypted");
            let turns = super::encryption::turns(ctx);
            let jobs: [Job; 2] = [
                ctx.coffer().arg("backup").arg(&url).arg(&archive).into(),
                ctx.coffer()
                    .arg("backup")
                    .arg(&url)
                    .arg(&sealed_archive)
                    .arg("--encrypt-to")
                    .arg(&recipient)
                    .into(),
            ];
            let [turn_backup, sealed_backup] = super::encryption::in_turns(
                ctx,
                turns,
                ["coffer backup (in turns)", "coffer backup --encrypt-to"],
                jobs,
                |i| remove_path(if i == 0 { &archive } else { &sealed_archive }),
            )?;
            let jobs: [Job; 2] = [
                ctx.coffer()
                    .arg("restore")
                    .arg(&archive)
                    .arg(cluster.url(&restored))
                    .into(),
                ctx.coffer()
                    .arg("restore")
                    .arg(&sealed_archive)
                    .arg(cluster.url(&restored))
                    .arg("--identity")
                    .arg(&identity)
                    .into(),
            ];
            let [turn_restore, sealed_restore] = super::encryption::in_turns(
                ctx,
                turns,
                ["coffer restore (in turns)", "coffer restore --identity"],
                jobs,
                |_| recreate(&cluster, &restored, false),
            )?;
            if counts(&cluster, &restored)? != expected {
                bail!("coffer restore --identity of {db} lost rows");
            }
            ctx.record_target(
                "pg_encrypt_backup",
                sealed_backup.median_secs() / turn_backup.median_secs(),
                format!("{rows} rows, {turns} runs each in turns"),
            );
            ctx.record_target(
                "pg_encrypt_restore",
                sealed_restore.median_secs() / turn_restore.median_secs(),
                format!("{rows} rows, {turns} runs each in turns"),
            );
            remove_path(&sealed_archive)?;
            let archive_bytes = disk_size(&archive)?;
            let dump_bytes = disk_size(&dump_dir)?;
            ctx.record_target(
                "pg_backup_vs_pg_dump",
                backup.median_secs() / pg_dump_d.median_secs(),
                format!("{rows} rows"),
            );
            ctx.record_target(
                "pg_restore_vs_pg_restore",
                restore.median_secs() / pg_restore.median_secs(),
                format!("{rows} rows"),
            );
            ctx.record_target(
                "pg_archive_vs_dump",
                archive_bytes as f64 / dump_bytes as f64,
                format!("{rows} rows"),
            );
            text.push_str(&dataset_line(&ds));
            text.push_str(&section(
                "Backup",
                "",
                &[
                    &backup,
                    &pg_dump_d,
                    &pg_dump_c,
                    &turn_backup,
                    &sealed_backup,
                ],
                COFFER_RATIO,
            ));
            text.push_str(&section(
                "Restore",
                "",
                &[&restore, &pg_restore, &psql, &turn_restore, &sealed_restore],
                COFFER_RATIO,
            ));
            text.push_str(&section("Export", "", &[&export, &copy], COFFER_RATIO));
            text.push_str(&format!(
                "#### Size\n\n{}\n",
                table(
                    &["what", "MB", "÷ database"],
                    vec![
                        vec![
                            "database".into(),
                            format!("{:.1}", mb(bytes)),
                            "1.00".into()
                        ],
                        vec![
                            "coffer archive".into(),
                            format!("{:.1}", mb(archive_bytes)),
                            ratio(archive_bytes as f64 / bytes as f64),
                        ],
                        vec![
                            "pg_dump -Fd directory".into(),
                            format!("{:.1}", mb(dump_bytes)),
                            ratio(dump_bytes as f64 / bytes as f64),
                        ],
                    ],
                )
            ));
            for p in [&dump_dir, &custom, &plain, &export_dir, &csv_dir] {
                remove_path(p)?;
            }
            for d in [&by_pg_restore, &by_psql] {
                recreate(&cluster, d, false)?;
            }
        }
        scaling.push(vec![
            format!("{factor}×"),
            rows.to_string(),
            format!("{:.1}", mb(bytes)),
            format!("{:.3}", backup.median_secs()),
            format!("{:.1}", backup.peak_rss_mb()),
            format!("{:.3}", restore.median_secs()),
            format!("{:.1}", restore.peak_rss_mb()),
        ]);
        remove_path(&archive)?;
        recreate(&cluster, &restored, false)?;
        recreate(&cluster, &db, false)?;
    }
    text.push_str(&format!(
        "#### Scaling\n\n{}",
        table(
            &[
                "scale",
                "rows",
                "DB MB",
                "backup s",
                "backup RSS MB",
                "restore s",
                "restore RSS MB",
            ],
            scaling,
        )
    ));
    Ok(text)
}
