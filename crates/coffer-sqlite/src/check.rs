//! `PRAGMA integrity_check` of a finished database, on every core.
//!
//! A whole-database `PRAGMA integrity_check` runs on one thread, and most of
//! its time goes to one step: looking up every row of every table in each of
//! its indexes. The same checks are split here into independent statements
//! run on several read connections at once:
//!
//! - `PRAGMA quick_check`, once: the b-tree structure of every table and
//!   index, the page accounting (each page used exactly once, the freelist)
//!   and the column constraints;
//! - `PRAGMA integrity_check(T)` for every table `T`: its b-trees again, and
//!   the cross-check of its rows against its indexes (entries present, entry
//!   counts, `UNIQUE`, `WITHOUT ROWID` key order, virtual tables' own
//!   checks).
//!
//! Together they make every check the single statement makes. The largest
//! jobs start first, so the slowest table does not start last.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use coffer::progress::Cancel;
use rusqlite::{Connection, OpenFlags};

use crate::{Result, sql_error};

/// At most this many connections check at once (each has its own cache).
const MAX_CHECKERS: usize = 4;

/// Check the committed, unlocked database at `path`. `rows` gives the row
/// count of tables where known, to start the largest first. Returns `None`
/// when every check answers `ok`, or the first problem found.
pub(crate) fn integrity_check(
    path: &Path,
    rows: &HashMap<String, u64>,
    cancel: &Cancel,
) -> Result<Option<String>> {
    let what = path.display().to_string();
    let jobs = match jobs(&open(path, cancel)?, rows) {
        Ok(jobs) => jobs,
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            return Ok(Some(e.to_string()));
        }
        Err(e) => return Err(sql_error("check", &what, e)),
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_CHECKERS)
        .min(jobs.len());
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let outcome: Mutex<Result<Option<String>>> = Mutex::new(Ok(None));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let run = || -> Result<Option<String>> {
                    let conn = open(path, cancel)?;
                    loop {
                        cancel.check()?;
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= jobs.len() || failed.load(Ordering::Relaxed) {
                            return Ok(None);
                        }
                        let started = std::time::Instant::now();
                        let answer = run_check(&conn, &jobs[i].0)
                            .map_err(|e| sql_error("check", &what, e))?;
                        tracing::debug!(
                            check = jobs[i].0,
                            seconds = started.elapsed().as_secs_f64(),
                            "checked"
                        );
                        if answer.is_some() {
                            return Ok(answer);
                        }
                    }
                };
                let result = run();
                if !matches!(result, Ok(None)) {
                    failed.store(true, Ordering::Relaxed);
                    let mut out = outcome.lock().expect("no checker panics");
                    // A problem found wins over an error (an interruption).
                    if !matches!(*out, Ok(Some(_))) {
                        *out = result;
                    }
                }
            });
        }
    });
    outcome.into_inner().expect("no checker panics")
}

fn open(path: &Path, cancel: &Cancel) -> Result<Connection> {
    let what = path.display().to_string();
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql_error("open", &what, e))?;
    crate::guard::restrict(&conn, &what)?;
    // CHECK constraints are not checked: a restore holds the rows its source
    // holds, which may break them (see docs/DECISIONS.md).
    conn.execute_batch("PRAGMA cache_size = -16384; PRAGMA ignore_check_constraints = ON;")
        .map_err(|e| sql_error("open", &what, e))?;
    let cancel = cancel.clone();
    conn.progress_handler(10_000, Some(move || cancel.is_cancelled()));
    Ok(conn)
}

/// The checks, largest first: a table's cost grows with its rows times its
/// b-trees; `quick_check` reads everything once without lookups.
fn jobs(conn: &Connection, rows: &HashMap<String, u64>) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare(
        "SELECT t.name, (SELECT count(*) FROM main.sqlite_schema i
                          WHERE i.type = 'index' AND i.tbl_name = t.name)
           FROM main.sqlite_schema t WHERE t.type = 'table'",
    )?;
    let tables = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let total: u64 = rows.values().sum();
    let mut jobs: Vec<(String, u64)> = tables
        .into_iter()
        .map(|(name, indexes)| {
            let weight = rows.get(&name).copied().unwrap_or(0) * (1 + indexes);
            let sql = format!(
                "PRAGMA main.integrity_check('{}')",
                name.replace('\'', "''")
            );
            (sql, weight)
        })
        .collect();
    jobs.push(("PRAGMA main.quick_check".to_string(), total));
    jobs.sort_by_key(|job| std::cmp::Reverse(job.1));
    Ok(jobs)
}

/// Run one check; `None` when it answers `ok`, else its first lines. Damage
/// bad enough to stop the check itself is a problem found, not an error.
fn run_check(conn: &Connection, sql: &str) -> rusqlite::Result<Option<String>> {
    let lines = conn.prepare(sql).and_then(|mut stmt| {
        stmt.query_map([], |r| r.get::<_, String>(0))?
            .take(5)
            .collect::<rusqlite::Result<Vec<_>>>()
    });
    match lines {
        Ok(lines) if lines.len() == 1 && lines[0] == "ok" => Ok(None),
        Ok(lines) => Ok(Some(lines.join("; "))),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            Ok(Some(e.to_string()))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE a(x INTEGER PRIMARY KEY, y TEXT UNIQUE, z);
             CREATE INDEX a_z ON a(z);
             CREATE TABLE b(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
             CREATE TABLE c(n);
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 5000)
             INSERT INTO a SELECT i, 'y' || i, i % 7 FROM s;
             INSERT INTO b SELECT y, z FROM a;
             INSERT INTO c SELECT z FROM a;",
        )
        .unwrap();
        path
    }

    #[test]
    fn rows_that_break_a_check_constraint_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE t(n CHECK (n > 0));
             PRAGMA ignore_check_constraints = ON;
             INSERT INTO t VALUES(-1);",
        )
        .unwrap();
        drop(conn);
        let plain = Connection::open(&path).unwrap();
        let q = |sql: &str| plain.query_row(sql, [], |r| r.get::<_, String>(0)).unwrap();
        assert_ne!(q("PRAGMA quick_check"), "ok", "SQLite reports the row");
        assert_eq!(
            integrity_check(&path, &HashMap::new(), &Cancel::new()).unwrap(),
            None
        );
    }

    #[test]
    fn a_sound_database_passes() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(dir.path());
        let rows = HashMap::from([("a".to_string(), 5000)]);
        assert_eq!(integrity_check(&path, &rows, &Cancel::new()).unwrap(), None);
    }

    #[test]
    fn an_index_missing_entries_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(dir.path());
        // Drop rows from the index b-tree behind SQLite's back: the table
        // and the index disagree, which only the cross-check notices.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA writable_schema = ON;
             UPDATE sqlite_schema SET sql = 'CREATE INDEX a_z ON a(x)' WHERE name = 'a_z';",
        )
        .unwrap();
        drop(conn);
        assert_eq!(
            Connection::open(&path)
                .unwrap()
                .query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0))
                .unwrap(),
            "ok",
            "quick_check alone must not see this damage"
        );
        let found = integrity_check(&path, &HashMap::new(), &Cancel::new())
            .unwrap()
            .expect("the damage is found");
        assert!(found.contains("a_z"), "{found}");
    }

    #[test]
    fn a_damaged_page_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(dir.path());
        let conn = Connection::open(&path).unwrap();
        let root: i64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_schema WHERE name = 'c'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        drop(conn);
        // Overwrite table c's root page.
        let mut bytes = std::fs::read(&path).unwrap();
        let page = 4096 * (root as usize - 1);
        for b in &mut bytes[page..page + 4096] {
            *b = 0xA5;
        }
        std::fs::write(&path, bytes).unwrap();
        let found = integrity_check(&path, &HashMap::new(), &Cancel::new()).unwrap();
        assert!(found.is_some());
    }

    #[test]
    fn a_cancelled_check_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(dir.path());
        let cancel = Cancel::new();
        cancel.cancel();
        let err = integrity_check(&path, &HashMap::new(), &cancel).unwrap_err();
        assert_eq!(err.kind(), coffer::ErrorKind::Interrupted);
    }
}
