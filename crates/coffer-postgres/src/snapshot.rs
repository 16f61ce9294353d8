//! One consistent moment shared by several connections, as `pg_dump -j`
//! does: a `REPEATABLE READ READ ONLY` transaction exports its snapshot
//! (`pg_export_snapshot()`), and every worker connection imports it
//! (`SET TRANSACTION SNAPSHOT`) before reading anything. The exporting
//! transaction must stay open until every worker has imported the snapshot;
//! [`ExportedSnapshot`] keeps it open for as long as it lives.

use coffer::{Error, ErrorKind, Result};

use crate::address::Address;
use crate::catalog::quote_ident;
use crate::connect::{Connection, query_error};

/// When the snapshot was taken, by the server's clock, and where its WAL was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMoment {
    /// `now()` in the exporting transaction: its start, the backup point.
    pub at: jiff::Timestamp,
    /// `clock_timestamp()` right after the export.
    pub clock: jiff::Timestamp,
    /// `pg_current_wal_lsn()` (on a primary) or `pg_last_wal_replay_lsn()`
    /// (on a standby), as PostgreSQL writes it (`16/B374D848`); None on a
    /// standby that has replayed nothing yet.
    pub wal_lsn: Option<String>,
    /// The server is a standby (in recovery).
    pub standby: bool,
}

/// The leader: the transaction whose snapshot the workers import.
pub struct ExportedSnapshot {
    address: Address,
    connection: Connection,
    id: String,
    moment: SnapshotMoment,
}

impl std::fmt::Debug for ExportedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedSnapshot")
            .field("address", &self.address.to_string())
            .field("id", &self.id)
            .field("moment", &self.moment)
            .finish()
    }
}

/// Microseconds since the Unix epoch of a timestamptz expression, exactly
/// (extract() is a float before PostgreSQL 14).
fn micros(expr: &str) -> String {
    format!(
        "(extract(epoch from date_trunc('second', {expr}))::int8 * 1000000 \
         + extract(microseconds from {expr})::int8 % 1000000)"
    )
}

fn timestamp(us: i64) -> Result<jiff::Timestamp> {
    jiff::Timestamp::from_microsecond(us)
        .map_err(|e| Error::internal(format!("the server's clock reads {us} µs: {e}")))
}

impl ExportedSnapshot {
    /// Connect and begin the exporting transaction.
    pub fn begin(address: &Address) -> Result<ExportedSnapshot> {
        ExportedSnapshot::begin_locked(address, &[], 0)
    }

    /// Connect, lock `tables` (`(schema, name)`) in `ACCESS SHARE` mode
    /// (waiting at most `timeout_ms` for each) and only then take the
    /// snapshot: no `TRUNCATE` or rewrite of them can commit between the
    /// snapshot and the locks (those are not MVCC-safe: a snapshot taken
    /// before one commits sees the table empty after it).
    pub fn begin_locked(
        address: &Address,
        tables: &[(String, String)],
        timeout_ms: u32,
    ) -> Result<ExportedSnapshot> {
        let mut connection = address.connect()?;
        let doing = "exporting a snapshot";
        connection
            .client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .map_err(|e| query_error(address, doing, &e))?;
        if !tables.is_empty() {
            lock(&mut connection.client, address, tables, timeout_ms)?;
        }
        let sql = format!(
            "SELECT pg_export_snapshot(), {}, {}, pg_is_in_recovery(), \
             CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END",
            micros("now()"),
            micros("clock_timestamp()")
        );
        let row = connection
            .client
            .query_one(&sql, &[])
            .map_err(|e| query_error(address, doing, &e))?;
        let moment = SnapshotMoment {
            at: timestamp(row.get(1))?,
            clock: timestamp(row.get(2))?,
            standby: row.get(3),
            wal_lsn: row.get(4),
        };
        Ok(ExportedSnapshot {
            address: address.clone(),
            connection,
            id: row.get(0),
            moment,
        })
    }

    /// The snapshot's identifier (what `SET TRANSACTION SNAPSHOT` takes).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// When and where the snapshot was taken.
    pub fn moment(&self) -> &SnapshotMoment {
        &self.moment
    }

    /// The address it was taken from.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The leader's own client, inside the snapshot (read the catalog with it).
    pub fn client(&mut self) -> &mut postgres::Client {
        &mut self.connection.client
    }

    /// `server_version_num`.
    pub fn server_version(&self) -> u32 {
        self.connection.server_version
    }

    /// Take `ACCESS SHARE` locks on these tables (`(schema, name)`), as
    /// pg_dump does, so that nobody drops or rewrites them before they are
    /// read; waits at most `timeout_ms` for each and names the one it could
    /// not lock.
    pub fn lock_tables(&mut self, tables: &[(String, String)], timeout_ms: u32) -> Result<()> {
        let address = self.address.clone();
        lock(&mut self.connection.client, &address, tables, timeout_ms)
    }

    /// A new connection reading the same snapshot.
    pub fn worker(&self) -> Result<SnapshotWorker> {
        let mut connection = self.address.connect()?;
        let sql = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
            self.id.replace('\'', "''")
        );
        connection.client.batch_execute(&sql).map_err(|e| {
            query_error(
                &self.address,
                &format!("importing snapshot {}", self.id),
                &e,
            )
        })?;
        Ok(SnapshotWorker {
            connection,
            address: self.address.clone(),
        })
    }
}

/// Lock `tables` in `ACCESS SHARE` mode, waiting at most `timeout_ms` for
/// each; names the one it could not lock.
fn lock(
    client: &mut postgres::Client,
    address: &Address,
    tables: &[(String, String)],
    timeout_ms: u32,
) -> Result<()> {
    let address = address.clone();
    client
        .batch_execute(&format!("SET LOCAL lock_timeout = {timeout_ms}"))
        .map_err(|e| query_error(&address, "setting lock_timeout", &e))?;
    for (schema, name) in tables {
        let sql = format!(
            "LOCK TABLE ONLY {}.{} IN ACCESS SHARE MODE",
            quote_ident(schema),
            quote_ident(name)
        );
        if let Err(e) = client.batch_execute(&sql) {
            if e.code().map(|c| c.code()) == Some("42P01") {
                return Err(Error::not_found(format!(
                    "table {schema}.{name} in {address} was dropped or renamed just now; try again"
                )));
            }
            if e.code().map(|c| c.code()) == Some("55P03") {
                return Err(Error::new(
                    ErrorKind::Engine,
                    format!(
                        "table {schema}.{name} in {address} stayed locked by another session for more than {timeout_ms} ms \
                         (an ALTER, VACUUM FULL or similar): let it finish and try again"
                    ),
                ));
            }
            return Err(query_error(
                &address,
                &format!("locking table {schema}.{name}"),
                &e,
            ));
        }
    }
    Ok(())
}

/// A connection inside an imported snapshot.
pub struct SnapshotWorker {
    connection: Connection,
    address: Address,
}

impl SnapshotWorker {
    /// The worker's client, inside the snapshot.
    pub fn client(&mut self) -> &mut postgres::Client {
        &mut self.connection.client
    }

    /// The address it reads.
    pub fn address(&self) -> &Address {
        &self.address
    }
}

/// A range of a table's pages, `[start, end)`, read by one worker with a
/// `ctid` predicate. `end` None: to the end of the table, whatever its size
/// by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtidRange {
    /// First page.
    pub start: u32,
    /// One past the last page, or None for the rest of the table.
    pub end: Option<u32>,
}

impl CtidRange {
    /// The `WHERE` condition selecting this range (None for the whole table).
    /// PostgreSQL 14 and later read just those pages (a TID range scan);
    /// 12 and 13 scan the whole table and filter.
    pub fn predicate(&self) -> Option<String> {
        match (self.start, self.end) {
            (0, None) => None,
            (s, None) => Some(format!("ctid >= '({s},0)'::tid")),
            (0, Some(e)) => Some(format!("ctid < '({e},0)'::tid")),
            (s, Some(e)) => Some(format!("ctid >= '({s},0)'::tid AND ctid < '({e},0)'::tid")),
        }
    }
}

/// Split a table of `pages` pages into at most `parts` ranges of at least
/// `min_pages` pages each; the last range is open-ended, so rows on pages
/// added since the page count was taken are still read. One range (the
/// whole table) when the table is small.
pub fn split_pages(pages: u64, parts: usize, min_pages: u64) -> Vec<CtidRange> {
    let min_pages = min_pages.max(1);
    let parts = (parts.max(1) as u64).min(pages / min_pages).max(1);
    let pages = pages.min(u32::MAX as u64);
    let mut ranges = Vec::with_capacity(parts as usize);
    for i in 0..parts {
        let start = (pages * i / parts) as u32;
        let end = (i + 1 < parts).then(|| (pages * (i + 1) / parts) as u32);
        ranges.push(CtidRange { start, end });
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting() {
        assert_eq!(
            split_pages(0, 4, 1),
            vec![CtidRange {
                start: 0,
                end: None
            }]
        );
        assert_eq!(
            split_pages(10, 4, 100),
            vec![CtidRange {
                start: 0,
                end: None
            }]
        );
        assert_eq!(
            split_pages(10, 3, 1),
            vec![
                CtidRange {
                    start: 0,
                    end: Some(3)
                },
                CtidRange {
                    start: 3,
                    end: Some(6)
                },
                CtidRange {
                    start: 6,
                    end: None
                },
            ]
        );
        // Never smaller than min_pages.
        assert_eq!(split_pages(250, 8, 100).len(), 2);
        assert_eq!(
            CtidRange {
                start: 0,
                end: None
            }
            .predicate(),
            None
        );
        assert_eq!(
            CtidRange {
                start: 3,
                end: Some(6)
            }
            .predicate()
            .unwrap(),
            "ctid >= '(3,0)'::tid AND ctid < '(6,0)'::tid"
        );
    }
}
