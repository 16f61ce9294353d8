//! `PRAGMA integrity_check` of a finished database, on every core, reading
//! every b-tree sequentially.
//!
//! A whole-database `PRAGMA integrity_check` runs on one thread, and most of
//! its time goes to one step: looking up every row of every table in each of
//! its indexes, one random b-tree descent per row and index. The same checks
//! are made here by independent jobs run on several read connections at
//! once:
//!
//! - `PRAGMA quick_check`, once: the b-tree structure of every table and
//!   index, the page accounting (each page used exactly once, the freelist)
//!   and the column constraints (`NOT NULL`, `CHECK`, types);
//! - for every table with indexes (or `WITHOUT ROWID`), one sequential scan
//!   of its table b-tree computing, for each index, an order-independent
//!   digest of the entries the index must hold: the indexed values and
//!   expressions, then the rowid (or the primary key of a `WITHOUT ROWID`
//!   table), for the rows a partial index covers; the same scan checks that
//!   a `WITHOUT ROWID` table's rows are in primary key order;
//! - for every index, one sequential scan of the index b-tree alone (a
//!   covering `INDEXED BY` scan, its bytecode verified to open no other
//!   cursor and to filter nothing), computing the same digest of the entries
//!   it holds and checking that they are in the index's order (its
//!   collations and `DESC` columns) and, for a `UNIQUE` index, that no two
//!   entries without NULLs share a key.
//!
//! Equal digests mean the index holds exactly the entries its table calls
//! for (the digest is two independent 64-bit sums of keyed SipHash values of
//! the typed values, with the count of entries); with the order check this
//! is what `PRAGMA integrity_check(T)` verifies with its lookups (entries
//! present, entry counts, values exact under non-binary collations,
//! `UNIQUE`, primary key order). A table whose indexes can not all be
//! checked this way (an unknown collation, a virtual table, UTF-16 text, an
//! index the planner will not scan alone) gets `PRAGMA integrity_check(T)` instead, so
//! the check is never weaker. The largest jobs start first, so the slowest
//! table does not start last.

use std::cmp::Ordering as Cmp;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use coffer::progress::Cancel;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::{Result, sql_error};

/// At most this many connections check at once (each has its own cache).
const MAX_CHECKERS: usize = 4;

/// Check the committed, unlocked database at `path`. `rows` gives the row
/// count of tables where known, to start the largest first. Returns `None`
/// when every check passes, or the first problem found.
pub(crate) fn integrity_check(
    path: &Path,
    rows: &HashMap<String, u64>,
    cancel: &Cancel,
) -> Result<Option<String>> {
    let what = path.display().to_string();
    let plan = match plan(&open(path, cancel)?, rows) {
        Ok(plan) => plan,
        Err(e) if is_corrupt(&e) => return Ok(Some(e.to_string())),
        Err(e) => return Err(sql_error("check", &what, e)),
    };
    run(path, &plan, cancel)
}

fn is_corrupt(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseCorrupt)
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

/// What to check and how.
struct Plan {
    /// The jobs, largest first, with their weights.
    jobs: Vec<(Job, u64)>,
    tables: Vec<TablePlan>,
    /// The keys of the two hashes of the digests.
    keys: (RandomState, RandomState),
}

enum Job {
    /// A pragma answering `ok` or its problems.
    Pragma(String),
    /// The scan of `tables[t]`'s table b-tree.
    Table(usize),
    /// The scan of `tables[t].indexes[i]`'s b-tree.
    Index(usize, usize),
}

/// A table checked by sequential scans.
struct TablePlan {
    name: String,
    /// A scan of the table b-tree selecting the primary key columns of a
    /// `WITHOUT ROWID` table (`pk`), then for each index its columns and,
    /// for a partial index, 1 when the row belongs in it.
    sql: String,
    /// The order of a `WITHOUT ROWID` table's primary key; empty for a
    /// rowid table.
    pk: Vec<Key>,
    indexes: Vec<IndexPlan>,
}

/// An index checked by a scan of its b-tree.
struct IndexPlan {
    name: String,
    /// A scan of the index b-tree alone selecting every column of its
    /// entries (key columns, then the rowid or primary key), in its order.
    sql: String,
    /// The order of each selected column.
    keys: Vec<Key>,
    /// The number of key columns of a `UNIQUE` index.
    unique: Option<usize>,
    partial: bool,
}

/// The order of one column of an index.
#[derive(Clone, Copy, Debug)]
struct Key {
    desc: bool,
    coll: Coll,
}

/// The built-in collations.
#[derive(Clone, Copy, Debug)]
enum Coll {
    Binary,
    Nocase,
    Rtrim,
}

/// Why a table is left to `PRAGMA integrity_check(T)`.
enum Skip {
    Sql(rusqlite::Error),
    Unsupported(String),
}

impl From<rusqlite::Error> for Skip {
    fn from(e: rusqlite::Error) -> Self {
        Skip::Sql(e)
    }
}

/// The checks of the database on `conn`: `rows` weighs the jobs.
fn plan(conn: &Connection, rows: &HashMap<String, u64>) -> rusqlite::Result<Plan> {
    let mut stmt = conn.prepare("PRAGMA main.table_list")?;
    let listed = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>("schema")?,
                r.get::<_, String>("name")?,
                r.get::<_, String>("type")?,
                r.get::<_, bool>("wr")?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut plan = Plan {
        jobs: Vec::new(),
        tables: Vec::new(),
        keys: (RandomState::new(), RandomState::new()),
    };
    // The order of text is checked as UTF-8 bytes; UTF-16 text sorts by its
    // UTF-16 bytes, so a UTF-16 database is left to integrity_check(T).
    let encoding: String = conn.query_row("PRAGMA main.encoding", [], |r| r.get(0))?;
    let mut total = 0;
    for (schema, name, kind, without_rowid) in listed {
        if schema != "main" || kind == "view" || name.eq_ignore_ascii_case("sqlite_schema") {
            continue;
        }
        let n = rows.get(&name).copied().unwrap_or(0);
        total += n;
        let planned = if kind == "virtual" {
            Err(Skip::Unsupported("a virtual table".into()))
        } else if encoding != "UTF-8" {
            Err(Skip::Unsupported(format!("text in {encoding}")))
        } else {
            table_plan(conn, &name, without_rowid)
        };
        match planned {
            Ok(None) => {}
            Ok(Some(table)) => {
                let t = plan.tables.len();
                plan.jobs.push((Job::Table(t), n));
                for i in 0..table.indexes.len() {
                    plan.jobs.push((Job::Index(t, i), n));
                }
                plan.tables.push(table);
            }
            Err(Skip::Sql(e)) if is_corrupt(&e) => return Err(e),
            Err(skip) => {
                let why = match skip {
                    Skip::Sql(e) => e.to_string(),
                    Skip::Unsupported(why) => why,
                };
                tracing::debug!(table = name, why, "checked by integrity_check");
                let indexes: u64 = conn.query_row(
                    "SELECT count(*) FROM main.sqlite_schema WHERE type = 'index' AND tbl_name = ?1",
                    [&name],
                    |r| r.get(0),
                )?;
                let sql = format!("PRAGMA main.integrity_check({})", literal(&name));
                plan.jobs.push((Job::Pragma(sql), n * (1 + indexes)));
            }
        }
    }
    plan.jobs
        .push((Job::Pragma("PRAGMA main.quick_check".to_string()), total));
    plan.jobs.sort_by_key(|job| std::cmp::Reverse(job.1));
    Ok(plan)
}

/// How to check table `name` by scans; `None` when `quick_check` checks
/// all there is (a rowid table without indexes).
fn table_plan(
    conn: &Connection,
    name: &str,
    without_rowid: bool,
) -> std::result::Result<Option<TablePlan>, Skip> {
    let root: i64 = conn.query_row(
        "SELECT rootpage FROM main.sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get(0),
    )?;
    let columns = conn
        .prepare("SELECT name FROM pragma_table_xinfo(?1, 'main')")?
        .query_map([name], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // The name that selects the rowid, unless columns took them all.
    let rowid = ["rowid", "_rowid_", "oid"]
        .into_iter()
        .find(|alias| !columns.iter().any(|c| c.eq_ignore_ascii_case(alias)));
    let listed = conn
        .prepare(
            "SELECT l.name, l.\"unique\", l.origin, l.partial, s.rootpage, s.sql
               FROM pragma_index_list(?1, 'main') l
               LEFT JOIN main.sqlite_schema s ON s.type = 'index' AND s.name = l.name",
        )?
        .query_map([name], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let table = ident(name);
    let mut table_items: Vec<String> = Vec::new();
    let mut pk = Vec::new();
    // A WITHOUT ROWID table is scanned by its primary key's b-tree (with
    // `NOT INDEXED`, the planner scans a covering index instead).
    let mut scan_by = "NOT INDEXED".to_string();
    let mut indexes = Vec::new();
    for (index, unique, origin, partial, index_root, sql) in listed {
        let columns = index_columns(conn, &index)?;
        if without_rowid && origin == "pk" && index_root.is_none() {
            // The primary key of a WITHOUT ROWID table is its table b-tree.
            for c in columns.iter().filter(|c| c.key) {
                let Some(column) = &c.name else {
                    return Err(Skip::Unsupported("an expression in a primary key".into()));
                };
                pk.push(c.order);
                table_items.insert(pk.len() - 1, ident(column));
            }
            scan_by = format!("INDEXED BY {}", ident(&index));
            continue;
        }
        if index_root.is_none() {
            return Err(Skip::Unsupported(format!("index {index} has no b-tree")));
        }
        let (expressions, condition) = match &sql {
            Some(sql) => index_parts(sql)
                .ok_or_else(|| Skip::Unsupported(format!("index {index}'s definition")))?,
            None => (Vec::new(), None),
        };
        if partial != condition.is_some() {
            return Err(Skip::Unsupported(format!("index {index}'s WHERE clause")));
        }
        let keys = columns.iter().filter(|c| c.key).count();
        if sql.is_some() && expressions.len() != keys {
            return Err(Skip::Unsupported(format!("index {index}'s columns")));
        }
        let mut items = Vec::new();
        for (k, c) in columns.iter().enumerate() {
            items.push(match (&c.name, c.cid) {
                (Some(column), _) => ident(column),
                (None, -1) => rowid
                    .ok_or_else(|| Skip::Unsupported("no name left for the rowid".into()))?
                    .to_string(),
                (None, _) if c.key && k < expressions.len() => expressions[k].to_string(),
                _ => return Err(Skip::Unsupported(format!("index {index}'s columns"))),
            });
        }
        let list = items.join(", ");
        let scan = match condition {
            Some(condition) => format!(
                "SELECT {list} FROM main.{table} INDEXED BY {} WHERE {condition}",
                ident(&index)
            ),
            None => format!(
                "SELECT {list} FROM main.{table} INDEXED BY {}",
                ident(&index)
            ),
        };
        let stored = if without_rowid {
            columns.len()
        } else {
            columns.len() - 1
        };
        if !reads_only(
            conn,
            &scan,
            index_root.unwrap_or(0),
            Some((root, partial, stored)),
        )? {
            return Err(Skip::Unsupported(format!(
                "index {index} can not be scanned alone"
            )));
        }
        table_items.extend(items);
        if let Some(condition) = condition {
            table_items.push(format!("CASE WHEN ({condition}) THEN 1 ELSE 0 END"));
        }
        indexes.push(IndexPlan {
            name: index,
            sql: scan,
            keys: columns.iter().map(|c| c.order).collect(),
            unique: unique.then_some(keys),
            partial,
        });
    }
    if indexes.is_empty() && pk.is_empty() {
        return Ok(None);
    }
    if without_rowid && pk.is_empty() {
        return Err(Skip::Unsupported("no primary key found".into()));
    }
    let sql = format!(
        "SELECT {} FROM main.{table} {scan_by}",
        table_items.join(", ")
    );
    if !reads_only(conn, &sql, root, None)? {
        return Err(Skip::Unsupported(format!(
            "the table can not be scanned alone: {sql}"
        )));
    }
    Ok(Some(TablePlan {
        name: name.to_string(),
        sql,
        pk,
        indexes,
    }))
}

/// One column of an index (`PRAGMA index_xinfo`).
struct IndexColumn {
    /// The table column, -1 for the rowid, -2 for an expression.
    cid: i64,
    /// The table column's name.
    name: Option<String>,
    order: Key,
    /// A key column, not the rowid or primary key appended to it.
    key: bool,
}

fn index_columns(conn: &Connection, index: &str) -> std::result::Result<Vec<IndexColumn>, Skip> {
    let listed = conn
        .prepare("SELECT cid, name, \"desc\", coll, \"key\" FROM pragma_index_xinfo(?1, 'main')")?
        .query_map([index], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, bool>(4)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    listed
        .into_iter()
        .map(|(cid, name, desc, coll, key)| {
            let coll = match coll.as_deref().map(str::to_ascii_uppercase).as_deref() {
                None | Some("BINARY") => Coll::Binary,
                Some("NOCASE") => Coll::Nocase,
                Some("RTRIM") => Coll::Rtrim,
                Some(other) => {
                    return Err(Skip::Unsupported(format!("collation {other}")));
                }
            };
            Ok(IndexColumn {
                cid,
                name: if cid >= 0 { name } else { None },
                order: Key { desc, coll },
                key,
            })
        })
        .collect()
}

/// Whether the bytecode of `sql` scans the b-tree at `root` of the main
/// database, from its first entry on, and reads no other b-tree.
///
/// For the scan of an index (`index`: the table's root page, whether the
/// index is partial, how many of its columns the scan must read as stored,
/// the rest being the rowid), also that it only copies out the index's
/// columns, reading each of them: the table may be opened but only for a
/// deferred seek, which reads nothing unless a table column is read, and
/// none is. (A column the planner takes from the rowid instead, such as an
/// `INTEGER PRIMARY KEY`, is not read as stored, and fails this.) A
/// partial index may also have what its `WHERE` clause needs: a seek and
/// comparisons of the index's own columns, which skip, like
/// `integrity_check`, only entries that do not satisfy it.
fn reads_only(
    conn: &Connection,
    sql: &str,
    root: i64,
    index: Option<(i64, bool, usize)>,
) -> rusqlite::Result<bool> {
    /// Opcodes that only move values between registers and rows.
    const COPY: &[&str] = &[
        "Init",
        "Transaction",
        "TableLock",
        "ColumnsUsed",
        "Explain",
        "RealAffinity",
        "ResultRow",
        "Halt",
        "Goto",
        "Noop",
        "Copy",
        "SCopy",
    ];
    /// Opcodes that test values, for a partial index's condition.
    const TEST: &[&str] = &[
        "Integer", "Int64", "Real", "String8", "String", "Null", "Blob", "Affinity", "Eq", "Ne",
        "Lt", "Le", "Gt", "Ge", "IsNull", "NotNull", "If", "IfNot", "Once", "Jump", "ElseEq",
    ];
    /// Opcodes reading the scanned cursor (its P1).
    const SCAN: &[&str] = &["Rewind", "Column", "Rowid", "IdxRowid", "Next"];
    /// Opcodes seeking in an index, for a partial index's condition.
    const SEEK: &[&str] = &[
        "SeekGE", "SeekGT", "SeekLE", "SeekLT", "IdxGE", "IdxGT", "IdxLE", "IdxLT",
    ];
    let mut stmt = conn.prepare(&format!("EXPLAIN {sql}"))?;
    let ops = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut cursor = None;
    let mut table = None;
    let mut rewound = false;
    let partial = matches!(index, Some((_, true, _)));
    let mut read = vec![false; index.map_or(0, |(_, _, n)| n)];
    for (op, p1, p2, p3) in ops {
        let op = op.as_str();
        if op == "Column"
            && cursor == Some(p1)
            && let Some(r) = usize::try_from(p2).ok().and_then(|c| read.get_mut(c))
        {
            *r = true;
        }
        match op {
            "OpenRead" if p3 == 0 && p2 == root && cursor.is_none() => cursor = Some(p1),
            "OpenRead" if p3 == 0 && index.is_some_and(|(t, ..)| p2 == t) && table.is_none() => {
                table = Some(p1)
            }
            "DeferredSeek" if cursor == Some(p1) && table == Some(p3) => {}
            "Rewind" if cursor == Some(p1) => rewound = true,
            "SeekGE" | "SeekGT" if partial && cursor == Some(p1) => rewound = true,
            _ if SCAN.contains(&op) || (partial && SEEK.contains(&op)) => {
                if cursor != Some(p1) {
                    return Ok(false);
                }
            }
            _ if COPY.contains(&op) || (partial && TEST.contains(&op)) => {}
            // Anything else, on the table's side: expressions, conditions.
            _ if index.is_none()
                && !op.starts_with("Open")
                && !op.starts_with("Seek")
                && !op.starts_with("Sorter")
                && !matches!(op, "Last" | "Prev" | "NotExists" | "Found" | "NotFound") => {}
            _ => return Ok(false),
        }
    }
    Ok(cursor.is_some() && rewound && read.iter().all(|&r| r))
}

/// The text of the indexed expressions of a `CREATE INDEX` statement (each
/// column or expression without its `ASC`/`DESC`) and the condition of its
/// `WHERE` clause; `None` when it does not read as one.
fn index_parts(sql: &str) -> Option<(Vec<&str>, Option<&str>)> {
    let toks = tokens(sql)?;
    let text = |k: usize| &sql[toks[k].0..toks[k].1];
    let open = (0..toks.len()).find(|&k| text(k) == "(")?;
    let mut depth = 0;
    let mut start = open + 1;
    let mut items = Vec::new();
    let mut close = None;
    for k in open..toks.len() {
        match text(k) {
            "(" => depth += 1,
            ")" => {
                depth -= 1;
                if depth == 0 {
                    items.push(start..k);
                    close = Some(k);
                    break;
                }
            }
            "," if depth == 1 => {
                items.push(start..k);
                start = k + 1;
            }
            _ => {}
        }
    }
    let close = close?;
    let mut exprs = Vec::new();
    for mut item in items {
        if item.end > item.start {
            let last = text(item.end - 1);
            if last.eq_ignore_ascii_case("ASC") || last.eq_ignore_ascii_case("DESC") {
                item.end -= 1;
            }
        }
        if item.end <= item.start {
            return None;
        }
        exprs.push(&sql[toks[item.start].0..toks[item.end - 1].1]);
    }
    let rest = &toks[close + 1..];
    let condition = match rest {
        [] => None,
        [first, second, ..] if sql[first.0..first.1].eq_ignore_ascii_case("WHERE") => {
            Some(&sql[second.0..rest[rest.len() - 1].1])
        }
        _ => return None,
    };
    Some((exprs, condition))
}

/// The byte spans of the tokens of `sql`, without blanks and comments;
/// `None` when a quote or comment is not closed.
fn tokens(sql: &str) -> Option<Vec<(usize, usize)>> {
    let b = sql.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2 + sql[i + 2..].find("*/")? + 2;
            continue;
        }
        let start = i;
        match c {
            b'\'' | b'"' | b'`' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return None,
                        Some(&q) if q == c && b.get(i + 1) == Some(&c) => i += 2,
                        Some(&q) if q == c => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'[' => i += sql[i..].find(']')? + 1,
            c if word(c) => {
                while i < b.len() && word(b[i]) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
        out.push((start, i));
    }
    Some(out)
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(name: &str) -> String {
    format!("'{}'", name.replace('\'', "''"))
}

/// What a job found: its digests, or a problem.
type Found<T> = std::result::Result<T, String>;

/// The digests of the jobs: `(t, None)` for table `t`'s scan (one per
/// index), `(t, Some(i))` for its index `i`'s.
type Digests = HashMap<(usize, Option<usize>), Vec<Digest>>;

/// An order-independent digest of a multiset of entries.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct Digest {
    entries: u64,
    a: u64,
    b: u64,
}

impl Plan {
    /// Add the entry made of columns `cols` of `row` to `digest`.
    fn add(
        &self,
        digest: &mut Digest,
        row: &rusqlite::Row<'_>,
        cols: std::ops::Range<usize>,
    ) -> rusqlite::Result<()> {
        let mut a = self.keys.0.build_hasher();
        let mut b = self.keys.1.build_hasher();
        for c in cols {
            let value = row.get_ref(c)?;
            feed(&mut a, value);
            feed(&mut b, value);
        }
        digest.entries += 1;
        digest.a = digest.a.wrapping_add(a.finish());
        digest.b = digest.b.wrapping_add(b.finish());
        Ok(())
    }
}

/// Hash `value` with its storage class, so that values SQLite holds equal
/// (with the binary collation) hash equal: an integral real as the integer.
fn feed(h: &mut impl Hasher, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => h.write_u8(0),
        ValueRef::Integer(i) => {
            h.write_u8(1);
            h.write_i64(i);
        }
        ValueRef::Real(r)
            if r.fract() == 0.0
                && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&r) =>
        {
            h.write_u8(1);
            h.write_i64(r as i64);
        }
        ValueRef::Real(r) => {
            h.write_u8(2);
            h.write_u64(r.to_bits());
        }
        ValueRef::Text(t) => {
            h.write_u8(3);
            h.write_usize(t.len());
            h.write(t);
        }
        ValueRef::Blob(t) => {
            h.write_u8(4);
            h.write_usize(t.len());
            h.write(t);
        }
    }
}

/// A value kept from the previous entry, its buffer reused.
#[derive(Debug)]
enum Kept {
    Null,
    Integer(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl Kept {
    fn set(&mut self, value: ValueRef<'_>) {
        match (value, &mut *self) {
            (ValueRef::Text(t), Kept::Text(buf)) | (ValueRef::Blob(t), Kept::Blob(buf)) => {
                buf.clear();
                buf.extend_from_slice(t);
            }
            (ValueRef::Null, _) => *self = Kept::Null,
            (ValueRef::Integer(i), _) => *self = Kept::Integer(i),
            (ValueRef::Real(r), _) => *self = Kept::Real(r),
            (ValueRef::Text(t), _) => *self = Kept::Text(t.to_vec()),
            (ValueRef::Blob(t), _) => *self = Kept::Blob(t.to_vec()),
        }
    }

    fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Kept::Null => ValueRef::Null,
            Kept::Integer(i) => ValueRef::Integer(*i),
            Kept::Real(r) => ValueRef::Real(*r),
            Kept::Text(t) => ValueRef::Text(t),
            Kept::Blob(t) => ValueRef::Blob(t),
        }
    }
}

/// The previous entry of a scan, to check the order of the next.
struct Previous {
    values: Vec<Kept>,
    any: bool,
}

impl Previous {
    fn new(n: usize) -> Self {
        Previous {
            values: (0..n).map(|_| Kept::Null).collect(),
            any: false,
        }
    }

    /// Compare the first `n` columns of `row` with the previous entry's
    /// (`Greater` when there is none) under `keys`.
    fn compare(&self, row: &rusqlite::Row<'_>, keys: &[Key]) -> rusqlite::Result<Cmp> {
        if !self.any {
            return Ok(Cmp::Greater);
        }
        for (c, key) in keys.iter().enumerate() {
            let ord = compare(row.get_ref(c)?, self.values[c].as_ref(), key.coll);
            let ord = if key.desc { ord.reverse() } else { ord };
            if ord != Cmp::Equal {
                return Ok(ord);
            }
        }
        Ok(Cmp::Equal)
    }

    fn keep(&mut self, row: &rusqlite::Row<'_>) -> rusqlite::Result<()> {
        for (c, kept) in self.values.iter_mut().enumerate() {
            kept.set(row.get_ref(c)?);
        }
        self.any = true;
        Ok(())
    }
}

/// SQLite's order of two values: NULL, numbers, text by `coll`, blobs.
fn compare(a: ValueRef<'_>, b: ValueRef<'_>, coll: Coll) -> Cmp {
    fn class(v: &ValueRef<'_>) -> u8 {
        match v {
            ValueRef::Null => 0,
            ValueRef::Integer(_) | ValueRef::Real(_) => 1,
            ValueRef::Text(_) => 2,
            ValueRef::Blob(_) => 3,
        }
    }
    match (a, b) {
        (ValueRef::Integer(x), ValueRef::Integer(y)) => x.cmp(&y),
        (ValueRef::Real(x), ValueRef::Real(y)) => x.partial_cmp(&y).unwrap_or(Cmp::Equal),
        (ValueRef::Integer(x), ValueRef::Real(y)) => int_real(x, y),
        (ValueRef::Real(x), ValueRef::Integer(y)) => int_real(y, x).reverse(),
        (ValueRef::Text(x), ValueRef::Text(y)) => match coll {
            Coll::Binary => x.cmp(y),
            Coll::Nocase => nocase(x, y),
            Coll::Rtrim => trim_end(x).cmp(trim_end(y)),
        },
        (ValueRef::Blob(x), ValueRef::Blob(y)) => x.cmp(y),
        (a, b) => class(&a).cmp(&class(&b)),
    }
}

/// SQLite's `NOCASE`: ASCII letters folded, the comparison stopping at the
/// shorter length or at a NUL byte of `x`, then the longer text last.
fn nocase(x: &[u8], y: &[u8]) -> Cmp {
    for (&a, &b) in x.iter().zip(y) {
        let (la, lb) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
        if a == 0 || la != lb {
            return la.cmp(&lb).then(x.len().cmp(&y.len()));
        }
    }
    x.len().cmp(&y.len())
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s.iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1);
    &s[..n]
}

/// The exact order of an integer and a real (never NaN: SQLite stores NaN
/// as NULL).
fn int_real(i: i64, r: f64) -> Cmp {
    if r < -9.223_372_036_854_776e18 {
        return Cmp::Greater;
    }
    if r >= 9.223_372_036_854_776e18 {
        return Cmp::Less;
    }
    let t = r.trunc();
    i.cmp(&(t as i64)).then(if r > t {
        Cmp::Less
    } else if r < t {
        Cmp::Greater
    } else {
        Cmp::Equal
    })
}

/// Scan `table`'s b-tree: the digest of each index's expected entries.
fn scan_table(
    conn: &Connection,
    plan: &Plan,
    table: &TablePlan,
) -> rusqlite::Result<Found<Vec<Digest>>> {
    let mut stmt = conn.prepare(&table.sql)?;
    let mut rows = stmt.query([])?;
    let mut digests = vec![Digest::default(); table.indexes.len()];
    let mut previous = Previous::new(table.pk.len());
    while let Some(row) = rows.next()? {
        if !table.pk.is_empty() {
            if previous.compare(row, &table.pk)? != Cmp::Greater {
                return Ok(Err(format!(
                    "row not in PRIMARY KEY order for {}",
                    table.name
                )));
            }
            previous.keep(row)?;
        }
        let mut at = table.pk.len();
        for (index, digest) in table.indexes.iter().zip(&mut digests) {
            let n = index.keys.len();
            if !index.partial || row.get_ref(at + n)? == ValueRef::Integer(1) {
                plan.add(digest, row, at..at + n)?;
            }
            at += n + usize::from(index.partial);
        }
    }
    Ok(Ok(digests))
}

/// Scan `index`'s b-tree: the digest of its entries, checking their order
/// and uniqueness.
fn scan_index(
    conn: &Connection,
    plan: &Plan,
    index: &IndexPlan,
) -> rusqlite::Result<Found<Vec<Digest>>> {
    let mut stmt = conn.prepare(&index.sql)?;
    let mut rows = stmt.query([])?;
    let mut digest = Digest::default();
    let mut previous = Previous::new(index.keys.len());
    while let Some(row) = rows.next()? {
        if previous.compare(row, &index.keys)? != Cmp::Greater {
            return Ok(Err(format!("index {} is out of order", index.name)));
        }
        if let Some(n) = index.unique {
            let no_null = (0..n).all(|c| !matches!(row.get_ref(c), Ok(ValueRef::Null)));
            if no_null && previous.compare(row, &index.keys[..n])? == Cmp::Equal {
                return Ok(Err(format!("non-unique entry in index {}", index.name)));
            }
        }
        previous.keep(row)?;
        plan.add(&mut digest, row, 0..index.keys.len())?;
    }
    Ok(Ok(vec![digest]))
}

/// Run `plan`'s jobs on up to [`MAX_CHECKERS`] connections, then compare
/// the digests of each index and its table.
fn run(path: &Path, plan: &Plan, cancel: &Cancel) -> Result<Option<String>> {
    let what = path.display().to_string();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_CHECKERS)
        .min(plan.jobs.len());
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let outcome: Mutex<Result<Option<String>>> = Mutex::new(Ok(None));
    let digests: Mutex<Digests> = Mutex::new(HashMap::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let run = || -> Result<Option<String>> {
                    let conn = open(path, cancel)?;
                    loop {
                        cancel.check()?;
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= plan.jobs.len() || failed.load(Ordering::Relaxed) {
                            return Ok(None);
                        }
                        let started = std::time::Instant::now();
                        let (found, key) = match &plan.jobs[i].0 {
                            Job::Pragma(sql) => (
                                run_check(&conn, sql).map(|p| p.map_or(Ok(Vec::new()), Err)),
                                None,
                            ),
                            Job::Table(t) => {
                                (scan_table(&conn, plan, &plan.tables[*t]), Some((*t, None)))
                            }
                            Job::Index(t, x) => (
                                scan_index(&conn, plan, &plan.tables[*t].indexes[*x]),
                                Some((*t, Some(*x))),
                            ),
                        };
                        tracing::debug!(
                            job = i,
                            seconds = started.elapsed().as_secs_f64(),
                            "checked"
                        );
                        match found {
                            Ok(Ok(found)) => {
                                if let Some(key) = key {
                                    digests
                                        .lock()
                                        .expect("no checker panics")
                                        .insert(key, found);
                                }
                            }
                            Ok(Err(problem)) => return Ok(Some(problem)),
                            Err(e) if is_corrupt(&e) => return Ok(Some(e.to_string())),
                            Err(e) => return Err(sql_error("check", &what, e)),
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
    let outcome = outcome.into_inner().expect("no checker panics");
    if !matches!(outcome, Ok(None)) {
        return outcome;
    }
    let digests = digests.into_inner().expect("no checker panics");
    Ok(mismatch(plan, &digests))
}

/// The first index whose entries differ from those its table calls for.
fn mismatch(plan: &Plan, digests: &Digests) -> Option<String> {
    for (t, table) in plan.tables.iter().enumerate() {
        let expected = &digests[&(t, None)];
        for (x, index) in table.indexes.iter().enumerate() {
            let held = digests[&(t, Some(x))][0];
            if held != expected[x] {
                return Some(format!(
                    "index {} does not hold the entries of table {} ({} entries for {} rows)",
                    index.name, table.name, held.entries, expected[x].entries
                ));
            }
        }
    }
    None
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
        Err(e) if is_corrupt(&e) => Ok(Some(e.to_string())),
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
        // An index of the INTEGER PRIMARY KEY: a scan would read the rowid,
        // not the stored key, so the table falls back to integrity_check(a).
        assert_eq!(fallbacks(&path), ["PRAGMA main.integrity_check('a')"]);
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

    /// The indexes of `path` that are checked by digests.
    fn digested(path: &Path) -> Vec<String> {
        let plan = plan(&Connection::open(path).unwrap(), &HashMap::new()).unwrap();
        plan.tables
            .iter()
            .flat_map(|t| t.indexes.iter().map(|i| i.name.clone()))
            .collect()
    }

    /// The `integrity_check(T)` fallbacks of `path`'s plan.
    fn fallbacks(path: &Path) -> Vec<String> {
        let plan = plan(&Connection::open(path).unwrap(), &HashMap::new()).unwrap();
        plan.jobs
            .iter()
            .filter_map(|(job, _)| match job {
                Job::Pragma(sql) if sql.contains("integrity_check") => Some(sql.clone()),
                _ => None,
            })
            .collect()
    }

    /// Create a database at `dir/t.db` with `sql`.
    fn make(dir: &Path, sql: &str) -> std::path::PathBuf {
        let path = dir.join("t.db");
        Connection::open(&path).unwrap().execute_batch(sql).unwrap();
        path
    }

    /// Change the schema behind SQLite's back: the b-trees stay as they
    /// are, so they no longer match the schema; `quick_check` still passes.
    fn damage(path: &Path, sql: &str) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(&format!("PRAGMA writable_schema = ON; {sql}"))
            .unwrap();
        drop(conn);
        assert_eq!(
            Connection::open(path)
                .unwrap()
                .query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0))
                .unwrap(),
            "ok",
            "quick_check alone must not see this damage"
        );
    }

    fn found(path: &Path) -> String {
        integrity_check(path, &HashMap::new(), &Cancel::new())
            .unwrap()
            .expect("the damage is found")
    }

    const ROWS: &str =
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 3000)";

    #[test]
    fn every_kind_of_index_of_a_sound_database_is_digested_and_passes() {
        let dir = tempfile::tempdir().unwrap();
        let path = make(
            dir.path(),
            &format!(
                "CREATE TABLE k(id INTEGER PRIMARY KEY, name TEXT COLLATE NOCASE, email TEXT UNIQUE,
                                score REAL, tag TEXT, data BLOB, n NUMERIC, \"rowid\" INT);
                 CREATE INDEX k_expr ON k(lower(tag), score DESC);
                 CREATE INDEX k_partial ON k(score) WHERE tag IS NOT NULL AND score > 10;
                 CREATE INDEX k_rtrim ON k(name COLLATE RTRIM DESC, data);
                 CREATE INDEX k_name ON k(name);
                 CREATE INDEX k_mixed ON k(n, \"rowid\");
                 CREATE TABLE w(a TEXT, b INTEGER, c, PRIMARY KEY(a COLLATE NOCASE, b DESC)) WITHOUT ROWID;
                 CREATE INDEX w_c ON w(c);
                 CREATE UNIQUE INDEX w_cb ON w(c, b) WHERE c IS NOT NULL;
                 CREATE TABLE p(x TEXT PRIMARY KEY, y);
                 CREATE TABLE plain(v);
                 {ROWS} INSERT INTO k SELECT i,
                        CASE i % 4 WHEN 0 THEN 'Name' || (i % 50) WHEN 1 THEN 'name' || (i % 50) || '  '
                                   WHEN 2 THEN NULL ELSE 'NAME' || (i % 50) END,
                        CASE WHEN i % 10 = 0 THEN NULL ELSE 'e' || i END,
                        CASE WHEN i % 3 = 0 THEN (i % 40) * 1.0 WHEN i % 3 = 1 THEN i / 7.0 ELSE NULL END,
                        CASE WHEN i % 5 = 0 THEN NULL ELSE 'T' || (i % 9) END,
                        CASE WHEN i % 2 = 0 THEN randomblob(i % 5) ELSE NULL END,
                        CASE i % 5 WHEN 0 THEN i WHEN 1 THEN i + 0.5 WHEN 2 THEN 'x' || i
                                   WHEN 3 THEN x'00ff' ELSE NULL END,
                        i % 3 FROM s;
                 {ROWS} INSERT INTO w SELECT CASE WHEN i % 2 = 0 THEN 'a' ELSE 'A' END || (i / 2), i % 7,
                        CASE WHEN i % 4 = 0 THEN NULL ELSE i END FROM s;
                 {ROWS} INSERT INTO p SELECT 'p' || i, i FROM s;
                 {ROWS} INSERT INTO plain SELECT i FROM s;"
            ),
        );
        let mut names = digested(&path);
        names.sort();
        assert_eq!(
            names,
            [
                "k_expr",
                "k_mixed",
                "k_name",
                "k_partial",
                "k_rtrim",
                "sqlite_autoindex_k_1",
                "sqlite_autoindex_p_1",
                "w_c",
                "w_cb"
            ]
        );
        assert_eq!(fallbacks(&path), Vec::<String>::new());
        assert_eq!(
            integrity_check(&path, &HashMap::new(), &Cancel::new()).unwrap(),
            None
        );
    }

    #[test]
    fn an_expression_index_holding_other_values_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = make(
            dir.path(),
            &format!(
                "CREATE TABLE e(x INTEGER PRIMARY KEY, y TEXT);
                 CREATE INDEX e_expr ON e(y || 'a');
                 {ROWS} INSERT INTO e SELECT i, 'y' || i FROM s;"
            ),
        );
        damage(
            &path,
            "UPDATE sqlite_schema SET sql = 'CREATE INDEX e_expr ON e(y || ''b'')' WHERE name = 'e_expr';",
        );
        assert_eq!(digested(&path), ["e_expr"]);
        let found = found(&path);
        assert!(found.contains("e_expr"), "{found}");
    }

    #[test]
    fn a_partial_index_missing_entries_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = make(
            dir.path(),
            &format!(
                "CREATE TABLE e(x INTEGER PRIMARY KEY, y);
                 CREATE INDEX e_part ON e(y) WHERE y > 100;
                 {ROWS} INSERT INTO e SELECT i, i FROM s;"
            ),
        );
        damage(
            &path,
            "UPDATE sqlite_schema SET sql = 'CREATE INDEX e_part ON e(y) WHERE y > 50' WHERE name = 'e_part';",
        );
        assert_eq!(digested(&path), ["e_part"]);
        let found = found(&path);
        assert!(found.contains("e_part"), "{found}");
    }

    #[test]
    fn a_partial_index_holding_extra_entries_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = make(
            dir.path(),
            &format!(
                "CREATE TABLE e(x INTEGER PRIMARY KEY, y, z);
                 CREATE INDEX e_part ON e(y);
                 {ROWS} INSERT INTO e SELECT i, i, CASE WHEN i % 2 = 0 THEN i END FROM s;"
            ),
        );
        // The index holds every row, the schema says only those with a z.
        // (`integrity_check(T)` does not count a partial index's entries.)
        damage(
            &path,
            "UPDATE sqlite_schema SET sql = 'CREATE INDEX e_part ON e(y) WHERE z IS NOT NULL'
              WHERE name = 'e_part';",
        );
        assert_eq!(digested(&path), ["e_part"]);
        let found = found(&path);
        assert!(found.contains("e_part"), "{found}");
    }

    #[test]
    fn an_index_of_a_without_rowid_table_holding_other_values_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = make(
            dir.path(),
            &format!(
                "CREATE TABLE w(k TEXT PRIMARY KEY, v INT, u INT) WITHOUT ROWID;
                 CREATE INDEX w_v ON w(v);
                 {ROWS} INSERT INTO w SELECT 'k' || i, i, i + 1 FROM s;"
            ),
        );
        damage(
            &path,
            "UPDATE sqlite_schema SET sql = 'CREATE INDEX w_v ON w(u)' WHERE name = 'w_v';",
        );
        assert_eq!(digested(&path), ["w_v"]);
        let found = found(&path);
        assert!(found.contains("w_v"), "{found}");
    }

    #[test]
    fn a_without_rowid_table_out_of_primary_key_order_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = make(
            dir.path(),
            &format!(
                "CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
                 {ROWS} INSERT INTO w SELECT 'k' || i, i FROM s;"
            ),
        );
        damage(
            &path,
            "UPDATE sqlite_schema SET sql = 'CREATE TABLE w(k TEXT, v, PRIMARY KEY(k DESC)) WITHOUT ROWID'
              WHERE name = 'w';",
        );
        assert_eq!(fallbacks(&path), Vec::<String>::new());
        let found = found(&path);
        assert!(found.contains("PRIMARY KEY order for w"), "{found}");
    }

    #[test]
    fn unique_autoindexes_holding_another_tables_entries_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = make(
            dir.path(),
            &format!(
                "CREATE TABLE u1(x INTEGER PRIMARY KEY, y TEXT UNIQUE);
                 CREATE TABLE u2(x INTEGER PRIMARY KEY, y TEXT UNIQUE);
                 {ROWS} INSERT INTO u1 SELECT i, 'a' || i FROM s;
                 {ROWS} INSERT INTO u2 SELECT i, 'b' || i FROM s;"
            ),
        );
        // Swap the two indexes' b-trees: each is sound, in order and unique.
        damage(
            &path,
            "UPDATE sqlite_schema SET rootpage = (SELECT sum(rootpage) FROM sqlite_schema
                 WHERE name IN ('sqlite_autoindex_u1_1', 'sqlite_autoindex_u2_1')) - rootpage
              WHERE name IN ('sqlite_autoindex_u1_1', 'sqlite_autoindex_u2_1');",
        );
        let mut names = digested(&path);
        names.sort();
        assert_eq!(names, ["sqlite_autoindex_u1_1", "sqlite_autoindex_u2_1"]);
        let found = found(&path);
        assert!(found.contains("sqlite_autoindex_u"), "{found}");
    }

    #[test]
    fn a_unique_index_with_duplicates_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(dir.path());
        damage(
            &path,
            "UPDATE sqlite_schema SET sql = 'CREATE UNIQUE INDEX a_z ON a(z)' WHERE name = 'a_z';",
        );
        assert!(digested(&path).contains(&"a_z".to_string()));
        let found = found(&path);
        assert!(found.contains("non-unique entry in index a_z"), "{found}");
    }

    #[test]
    fn an_index_out_of_order_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(dir.path());
        // The same entries, which the index would now search in the
        // opposite order.
        damage(
            &path,
            "UPDATE sqlite_schema SET sql = 'CREATE INDEX a_z ON a(z DESC)' WHERE name = 'a_z';",
        );
        assert!(digested(&path).contains(&"a_z".to_string()));
        let found = found(&path);
        assert!(found.contains("index a_z is out of order"), "{found}");
    }

    #[test]
    fn a_sound_utf16_database_passes() {
        let dir = tempfile::tempdir().unwrap();
        // UTF-16 text sorts by its UTF-16 bytes: U+10000 (a surrogate pair,
        // D800 DC00) before U+E000, unlike in UTF-8.
        let path = make(
            dir.path(),
            "PRAGMA encoding = 'UTF-16le';
             CREATE TABLE t(x TEXT, y TEXT COLLATE NOCASE);
             CREATE INDEX t_x ON t(x);
             CREATE INDEX t_y ON t(y);
             INSERT INTO t VALUES (char(57344), 'a'), (char(65536), 'B'), ('a', char(65536) || 'c'),
                                  ('b', char(57344));",
        );
        assert_eq!(fallbacks(&path), ["PRAGMA main.integrity_check('t')"]);
        assert_eq!(
            integrity_check(&path, &HashMap::new(), &Cancel::new()).unwrap(),
            None
        );
    }

    #[test]
    fn text_sorts_as_sqlite_sorts_it() {
        let dir = tempfile::tempdir().unwrap();
        // NOCASE stops at a NUL byte: 'a\0c' and 'A\0b' are equal and sort
        // by rowid. RTRIM ignores trailing spaces.
        let path = make(
            dir.path(),
            "CREATE TABLE t(x TEXT COLLATE NOCASE, y TEXT COLLATE RTRIM, z);
             CREATE INDEX t_x ON t(x);
             CREATE INDEX t_y ON t(y, z);
             INSERT INTO t VALUES ('a' || char(0) || 'c', 'b  ', 1), ('A' || char(0) || 'b', 'b', 0),
                                  ('a' || char(0), 'a ', 2), ('a', 'B', 3), ('É', 'é', 4), ('é', 'É', 5);",
        );
        let mut names = digested(&path);
        names.sort();
        assert_eq!(names, ["t_x", "t_y"]);
        assert_eq!(
            integrity_check(&path, &HashMap::new(), &Cancel::new()).unwrap(),
            None
        );
    }

    #[test]
    fn index_definitions_read_as_columns_and_condition() {
        assert_eq!(
            index_parts(
                "CREATE INDEX \"i(\" ON t(a, lower(b) COLLATE NOCASE DESC, [c,d] ASC) WHERE a > ')' -- x"
            ),
            Some((
                vec!["a", "lower(b) COLLATE NOCASE", "[c,d]"],
                Some("a > ')'")
            ))
        );
        assert_eq!(index_parts("CREATE INDEX i ON t(a) garbage"), None);
        assert_eq!(index_parts("CREATE INDEX i ON t(a, 'open"), None);
    }
}
