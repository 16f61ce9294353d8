//! Writes to benchmark databases done by the harness itself with rusqlite:
//! the row changes between incremental backups ([`mutate`]) and the
//! application-like write workload of the change-capture scenario
//! ([`run_workload`]).
//!
//! Both run in a child process of the harness (`coffer-bench mutate` and
//! `coffer-bench workload`), not in the harness: a child's peak RSS as
//! `wait4` reports it starts from the harness's own peak, so the harness
//! must stay small.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OptionalExtension, params};

use crate::generate::BIG_TABLE_SCHEMA;
use crate::rng::{Rng, mix};

/// What [`mutate`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub updated: u64,
    pub inserted: u64,
    pub deleted: u64,
}

impl Changes {
    pub fn total(&self) -> u64 {
        self.updated + self.inserted + self.deleted
    }

    /// `updated U inserted I deleted D`, as `coffer-bench mutate` prints it.
    pub fn line(&self) -> String {
        format!(
            "updated {} inserted {} deleted {}",
            self.updated, self.inserted, self.deleted
        )
    }

    pub fn parse(line: &str) -> Option<Changes> {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["updated", u, "inserted", i, "deleted", d] => Some(Changes {
                updated: u.parse().ok()?,
                inserted: i.parse().ok()?,
                deleted: d.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// How [`mutate`] touches one table of the generated schema.
struct TableOps {
    name: &'static str,
    /// `rowid`-like integer key; None for `sessions` (WITHOUT ROWID, text key).
    int_key: Option<&'static str>,
    update: &'static str,
    /// Inserts a new row made from the row with key ?1 (?2: a unique tag).
    insert_copy: &'static str,
    delete: &'static str,
}

const TABLES: &[TableOps] = &[
    TableOps {
        name: "users",
        int_key: Some("id"),
        update: "UPDATE users SET created_at = created_at + 1 WHERE id = ?1",
        insert_copy: "INSERT INTO users (name, email, created_at, score, bio) \
                      SELECT name, ?2 || email, created_at, score, bio FROM users WHERE id = ?1",
        delete: "DELETE FROM users WHERE id = ?1",
    },
    TableOps {
        name: "orders",
        int_key: Some("rowid"),
        update: "UPDATE orders SET status = (status + 1) % 5, quantity = quantity + 1 \
                 WHERE rowid = ?1",
        insert_copy: "INSERT INTO orders SELECT * FROM orders WHERE rowid = ?1 AND ?2 IS NOT NULL",
        delete: "DELETE FROM orders WHERE rowid = ?1",
    },
    TableOps {
        name: "events",
        int_key: Some("id"),
        update: "UPDATE events SET ts = ts + 1 WHERE id = ?1",
        insert_copy: "INSERT INTO events (user_id, kind, ts, payload) \
                      SELECT user_id, kind, ts, payload FROM events WHERE id = ?1 AND ?2 IS NOT NULL",
        delete: "DELETE FROM events WHERE id = ?1",
    },
    TableOps {
        name: "sessions",
        int_key: None,
        update: "UPDATE sessions SET expires = expires + 3600 WHERE token = ?1",
        insert_copy: "INSERT INTO sessions (token, user_id, expires) \
                      SELECT ?2, user_id, expires FROM sessions WHERE token = ?1",
        delete: "DELETE FROM sessions WHERE token = ?1",
    },
];

/// A query per table whose result changes with every kind of change
/// [`mutate`] makes (row count and a sum over the updated column), to check
/// restored databases against the source.
pub const FINGERPRINT: &[(&str, &str)] = &[
    ("users", "SELECT count(*), sum(created_at) FROM users"),
    ("orders", "SELECT count(*), sum(quantity) FROM orders"),
    ("events", "SELECT count(*), sum(ts) FROM events"),
    ("sessions", "SELECT count(*), sum(expires) FROM sessions"),
];

/// [`FINGERPRINT`] of the database at `path`, one `table count sum` per table.
pub fn fingerprint(path: &Path) -> Result<Vec<(String, i64, i64)>> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", path.display()))?;
    FINGERPRINT
        .iter()
        .map(|(table, sql)| {
            let (n, sum): (i64, Option<i64>) = conn
                .query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
                .with_context(|| format!("{sql} in {}", path.display()))?;
            Ok((table.to_string(), n, sum.unwrap_or(0)))
        })
        .collect()
}

/// Changes about `fraction` of the rows of each table of a generated
/// database (at least one per table): 90% of them updated, 5% deleted, and
/// as many rows inserted as 5% of them, all distinct rows chosen at random,
/// in one transaction. Deterministic for a database and a seed.
pub fn mutate(path: &Path, fraction: f64, seed: u64) -> Result<Changes> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        bail!("the fraction of rows to change must be in (0, 1], got {fraction}");
    }
    let mut conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(30))?;
    // As in the sqlite3 shell (rusqlite's bundled SQLite enforces them by
    // default): a deleted user may leave orders pointing at it.
    conn.execute_batch("PRAGMA foreign_keys=OFF;")?;
    let tx = conn.transaction()?;
    let mut rng = Rng::stream(seed, 0x4D55_7A7E);
    let mut changes = Changes::default();
    for (ti, ops) in TABLES.iter().enumerate() {
        let count: u64 = tx.query_row(&format!("SELECT count(*) FROM {}", ops.name), [], |r| {
            r.get(0)
        })?;
        if count == 0 {
            continue;
        }
        let k = ((count as f64 * fraction).ceil() as u64).clamp(1, count);
        let deletes = k / 20;
        let inserts = k / 20;
        let updates = k - deletes - inserts;
        let mut picker = Picker::new(&tx, ops, count)?;
        let mut update = tx.prepare(ops.update)?;
        let mut insert = tx.prepare(ops.insert_copy)?;
        let mut delete = tx.prepare(ops.delete)?;
        for _ in 0..updates {
            let key = picker.pick(&tx, &mut rng)?;
            changes.updated += key.run(&mut update, None)? as u64;
        }
        for _ in 0..deletes {
            let key = picker.pick(&tx, &mut rng)?;
            changes.deleted += key.run(&mut delete, None)? as u64;
        }
        for n in 0..inserts {
            // A copy of a random row (not one changed above), made unique.
            let key = picker.pick(&tx, &mut rng)?;
            let tag = format!(
                "{:016x}{:016x}",
                mix(seed ^ ((ti as u64) << 56) ^ n),
                rng.next_u64()
            );
            changes.inserted += key.run(&mut insert, Some(&tag))? as u64;
        }
    }
    tx.commit()?;
    Ok(changes)
}

/// A key of one row.
enum Key {
    Int(i64),
    Text(String),
}

impl Key {
    fn run(&self, stmt: &mut rusqlite::Statement, tag: Option<&str>) -> Result<usize> {
        Ok(match (self, tag) {
            (Key::Int(k), None) => stmt.execute([k])?,
            (Key::Text(k), None) => stmt.execute([k])?,
            (Key::Int(k), Some(t)) => stmt.execute(params![k, t])?,
            (Key::Text(k), Some(t)) => stmt.execute(params![k, t])?,
        })
    }
}

/// Picks distinct existing rows of a table at random.
struct Picker {
    int_key: Option<&'static str>,
    table: &'static str,
    max_rowid: i64,
    count: u64,
    taken_int: HashSet<i64>,
    taken_text: HashSet<String>,
}

impl Picker {
    fn new(conn: &Connection, ops: &TableOps, count: u64) -> Result<Picker> {
        let max_rowid = match ops.int_key {
            Some(key) => conn.query_row(
                &format!("SELECT coalesce(max({key}), 0) FROM {}", ops.name),
                [],
                |r| r.get(0),
            )?,
            None => 0,
        };
        Ok(Picker {
            int_key: ops.int_key,
            table: ops.name,
            max_rowid,
            count,
            taken_int: HashSet::new(),
            taken_text: HashSet::new(),
        })
    }

    fn pick(&mut self, conn: &Connection, rng: &mut Rng) -> Result<Key> {
        if (self.taken_int.len() + self.taken_text.len()) as u64 >= self.count {
            bail!("no rows of {} left to pick", self.table);
        }
        for _ in 0..10_000 {
            match self.int_key {
                Some(key) => {
                    let k = rng.below(self.max_rowid as u64) as i64 + 1;
                    if self.taken_int.contains(&k) {
                        continue;
                    }
                    let exists = conn
                        .query_row(
                            &format!("SELECT 1 FROM {} WHERE {key} = ?1", self.table),
                            [k],
                            |_| Ok(()),
                        )
                        .optional()?
                        .is_some();
                    if exists {
                        self.taken_int.insert(k);
                        return Ok(Key::Int(k));
                    }
                }
                None => {
                    // Tokens begin with 16 uniformly spread hex digits.
                    let from = format!("{:016x}", rng.next_u64());
                    let token: Option<String> = conn
                        .query_row(
                            &format!(
                                "SELECT token FROM {t} WHERE token >= ?1 ORDER BY token LIMIT 1",
                                t = self.table
                            ),
                            [&from],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if let Some(t) = token
                        && self.taken_text.insert(t.clone())
                    {
                        return Ok(Key::Text(t));
                    }
                }
            }
        }
        bail!("could not find a row of {} to change", self.table)
    }
}

// ------------------------------------------------------- capture workload

/// The table of the capture workload.
pub const WORKLOAD_TABLE: &str = "orders";

/// Creates the capture workload's database at `path`: the `orders` table
/// (shaped as the benchmark's, with its index), empty, in WAL mode.
pub fn init_workload_db(path: &Path) -> Result<()> {
    if path.exists() {
        bail!("{} already exists", path.display());
    }
    let conn = Connection::open(path).with_context(|| format!("creating {}", path.display()))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("could not switch {} to WAL", path.display());
    }
    conn.execute_batch(BIG_TABLE_SCHEMA)?;
    conn.execute_batch(crate::generate::BIG_TABLE_INDEXES)?;
    Ok(())
}

/// Timings of one run of the workload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorkloadTimes {
    pub insert: Duration,
    pub update: Duration,
}

impl WorkloadTimes {
    /// `insert_secs X update_secs Y`, as `coffer-bench workload` prints it.
    pub fn line(&self) -> String {
        format!(
            "insert_secs {:.6} update_secs {:.6}",
            self.insert.as_secs_f64(),
            self.update.as_secs_f64()
        )
    }

    pub fn parse(line: &str) -> Option<WorkloadTimes> {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["insert_secs", i, "update_secs", u] => Some(WorkloadTimes {
                insert: Duration::try_from_secs_f64(i.parse().ok()?).ok()?,
                update: Duration::try_from_secs_f64(u.parse().ok()?).ok()?,
            }),
            _ => None,
        }
    }
}

/// Rows per transaction of the workload.
pub const ROWS_PER_TX: u64 = 100;

/// An application-like write workload on a database made by
/// [`init_workload_db`] (and maybe given a collection since): `rows` inserts,
/// then `rows` updates of random existing rows by rowid, one prepared
/// statement executed per row, [`ROWS_PER_TX`] rows per transaction, WAL with
/// `synchronous=NORMAL`. Each phase is timed on its own.
pub fn run_workload(path: &Path, rows: u64, seed: u64) -> Result<WorkloadTimes> {
    let mut conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("{} is not in WAL mode", path.display());
    }
    conn.execute_batch("PRAGMA synchronous=NORMAL;")?;
    let first_rowid: i64 = conn.query_row(
        &format!("SELECT coalesce(max(rowid), 0) + 1 FROM {WORKLOAD_TABLE}"),
        [],
        |r| r.get(0),
    )?;
    let mut rng = Rng::stream(seed, 0x00C0_FFEE);
    let users = 250_000;

    let start = Instant::now();
    let mut done = 0;
    while done < rows {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO orders (user_id, product_id, quantity, unit_price, discount, total, \
                 status, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for _ in 0..ROWS_PER_TX.min(rows - done) {
                let user_id = rng.mild(users) as i64 + 1;
                let product_id = rng.skewed(50_000) as i64 + 1;
                let quantity = rng.skewed(10) as i64 + 1;
                let unit_price = ((mix(product_id as u64) % 20_000) as f64 + 99.0) / 100.0;
                let discount = if rng.chance(0.8) { 0.0 } else { 0.1 };
                let total =
                    (unit_price * quantity as f64 * (1.0 - discount) * 100.0).round() / 100.0;
                let created_at = 1_700_000_000 + done as i64;
                stmt.execute(params![
                    user_id, product_id, quantity, unit_price, discount, total, 0, created_at
                ])?;
                done += 1;
            }
        }
        tx.commit()?;
    }
    let insert = start.elapsed();

    let start = Instant::now();
    let mut done = 0;
    while done < rows {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE orders SET status = ?1, quantity = ?2, total = ?3 WHERE rowid = ?4",
            )?;
            for _ in 0..ROWS_PER_TX.min(rows - done) {
                let rowid = first_rowid + rng.below(rows) as i64;
                let status = rng.below(5) as i64;
                let quantity = rng.skewed(10) as i64 + 1;
                let total = (rng.unit() * 50_000.0).round() / 100.0;
                if stmt.execute(params![status, quantity, total, rowid])? != 1 {
                    bail!("row {rowid} of {WORKLOAD_TABLE} is missing");
                }
                done += 1;
            }
        }
        tx.commit()?;
    }
    let update = start.elapsed();
    Ok(WorkloadTimes { insert, update })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::generate;

    #[test]
    fn mutate_changes_the_asked_fraction() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("d.db");
        let g = generate(&db, 0.004, 3).unwrap();
        let before = fingerprint(&db).unwrap();
        let c = mutate(&db, 0.1, 1).unwrap();
        let total = g.counts.total();
        // ceil per table: a few more than a tenth.
        assert!(
            c.total() >= total / 10 && c.total() <= total / 10 + 4,
            "{c:?}"
        );
        assert_eq!(c.inserted, c.deleted);
        assert!(c.updated > 8 * c.inserted, "{c:?}");
        let after = fingerprint(&db).unwrap();
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(b.1, a.1, "inserts and deletes balance in {}", b.0);
            assert_ne!(b.2, a.2, "{} changed", b.0);
        }
        // Deterministic for a seed.
        let other = dir.path().join("e.db");
        generate(&other, 0.004, 3).unwrap();
        assert_eq!(mutate(&other, 0.1, 1).unwrap(), c);
        assert_eq!(fingerprint(&other).unwrap(), after);
        // At least one row per table, even for a tiny fraction.
        assert!(mutate(&db, 1e-9, 2).unwrap().updated >= 4);
        assert_eq!(Changes::parse(&c.line()), Some(c));
        let conn = Connection::open(&db).unwrap();
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }

    #[test]
    fn workload_inserts_then_updates() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        init_workload_db(&db).unwrap();
        assert!(init_workload_db(&db).is_err());
        let t = run_workload(&db, 250, 9).unwrap();
        let conn = Connection::open(&db).unwrap();
        let n: u64 = conn
            .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 250);
        let touched: u64 = conn
            .query_row("SELECT count(*) FROM orders WHERE status <> 0", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(touched > 100, "{touched}");
        let parsed = WorkloadTimes::parse(&t.line()).unwrap();
        assert!((parsed.insert.as_secs_f64() - t.insert.as_secs_f64()).abs() < 1e-5);
    }
}
