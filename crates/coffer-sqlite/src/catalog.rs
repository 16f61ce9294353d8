//! Reading a SQLite database's schema and settings into a [`Catalog`].

use coffer::engine::Catalog;
use coffer::manifest::{Column, LogicalType, SchemaObject, Table};
use rusqlite::{Connection, OptionalExtension};

use crate::{Result, quote, sql_error};

/// Tables SQLite maintains itself whose content a backup keeps.
pub const INTERNAL_TABLES: &[&str] = &[
    "sqlite_sequence",
    "sqlite_stat1",
    "sqlite_stat2",
    "sqlite_stat3",
    "sqlite_stat4",
];

/// Settings restored by `PRAGMA`, in the order they must be applied.
pub const SETTINGS: &[&str] = &[
    "page_size",
    "auto_vacuum",
    "encoding",
    "user_version",
    "application_id",
    "journal_mode",
];

/// The name of the data column that carries a hidden rowid.
pub const ROWID_COLUMN: &str = "__coffer_rowid";

/// The affinity-derived logical type of a declared column type, following
/// SQLite's rules (section 3.1 of "Datatypes In SQLite"); `None` for a
/// column without a declared type, whose values decide.
pub fn logical_type(declared: &str) -> Option<LogicalType> {
    let t = declared.to_ascii_uppercase();
    if t.is_empty() || t == "ANY" {
        None
    } else if t.contains("INT") {
        Some(LogicalType::Int64)
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        Some(LogicalType::Utf8)
    } else if t.contains("BLOB") {
        Some(LogicalType::Binary)
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        Some(LogicalType::Float64)
    } else if t.contains("DATE") || t.contains("TIME") {
        // NUMERIC affinity, but dates are nearly always stored as ISO text.
        Some(LogicalType::Utf8)
    } else if t.contains("DEC") || t.contains("NUM") || t.contains("MONEY") {
        Some(LogicalType::Float64)
    } else {
        Some(LogicalType::Int64)
    }
}

/// The SQL alias through which a table's rowid can be read and written, if
/// one is not shadowed by a column of that name.
pub fn rowid_alias(columns: &[String]) -> Option<&'static str> {
    ["rowid", "_rowid_", "oid"]
        .into_iter()
        .find(|alias| !columns.iter().any(|c| c.eq_ignore_ascii_case(alias)))
}

/// How a table's rows are read: the SQL expression of every data column.
#[derive(Debug, Clone)]
pub struct ScanPlan {
    /// One SQL expression per data column, in data column order.
    pub exprs: Vec<String>,
    /// Why the table's rows cannot be read exactly, as one sentence naming
    /// it; a scan of it fails with this, while the rest of the database
    /// can still be read.
    pub refusal: Option<String>,
}

/// The virtual table module named in `CREATE VIRTUAL TABLE ... USING m(...)`,
/// lowercased.
pub fn vtab_module(sql: &str) -> Option<String> {
    module_as_written(sql).map(|m| m.to_ascii_lowercase())
}

/// The virtual table module named in `CREATE VIRTUAL TABLE ... USING m(...)`,
/// as written (for messages).
pub fn module_as_written(sql: &str) -> Option<&str> {
    let upper = sql.to_ascii_uppercase();
    let at = upper.find(" USING ")? + " USING ".len();
    let rest = sql[at..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Whether reading virtual table `table` fails because SQLite does not
/// have its module (an extension's, such as SpatiaLite's
/// `VirtualSpatialIndex`, that is not loaded).
fn module_missing(conn: &Connection, table: &str) -> bool {
    match conn.prepare(&format!("SELECT * FROM main.{} LIMIT 0", quote(table))) {
        Ok(_) => false,
        Err(e) => e.to_string().contains("no such module"),
    }
}

/// The collation sequences SQLite always has.
pub const BUILTIN_COLLATIONS: &[&str] = &["binary", "nocase", "rtrim"];

/// The collation sequences that `sql` names (`COLLATE name`), outside
/// string literals and comments, lowercased (SQLite matches them without
/// regard to case), each once, in order of appearance.
pub fn collations_in(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut words: Vec<String> = Vec::new();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    // A quoted run from `i` (opening quote `q`, closing `close`): its text
    // (doubled closing quotes undone) and the index after it.
    let quoted = |i: usize, close: u8| -> (String, usize) {
        let mut text = Vec::new();
        let mut j = i + 1;
        while j < b.len() {
            if b[j] == close {
                if close != b']' && j + 1 < b.len() && b[j + 1] == close {
                    text.push(close);
                    j += 2;
                    continue;
                }
                return (String::from_utf8_lossy(&text).into_owned(), j + 1);
            }
            text.push(b[j]);
            j += 1;
        }
        (String::from_utf8_lossy(&text).into_owned(), j)
    };
    while i < b.len() {
        let c = b[i];
        let word = if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            None
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                i += 1;
            }
            i += 2;
            None
        } else if c == b'\'' {
            // A string literal: never a name, but `COLLATE 'x'` is allowed.
            let (text, next) = quoted(i, b'\'');
            i = next;
            Some((text, true))
        } else if c == b'"' || c == b'`' || c == b'[' {
            let close = if c == b'[' { b']' } else { c };
            let (text, next) = quoted(i, close);
            i = next;
            Some((text, true))
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 {
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80)
            {
                i += 1;
            }
            Some((String::from_utf8_lossy(&b[start..i]).into_owned(), false))
        } else {
            i += 1;
            if !c.is_ascii_whitespace() {
                words.push(String::new());
            }
            None
        };
        if let Some((text, was_quoted)) = word {
            if words.last().is_some_and(|w| w == "COLLATE") {
                let name = text.to_lowercase();
                if !out.contains(&name) {
                    out.push(name);
                }
            }
            words.push(if was_quoted {
                String::new()
            } else {
                text.to_ascii_uppercase()
            });
        }
    }
    out
}

struct RawColumn {
    name: String,
    declared: String,
    notnull: bool,
    pk: i64,
    hidden: i64,
}

fn table_columns(conn: &Connection, table: &str) -> Result<Vec<RawColumn>> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA main.table_xinfo({})", quote(table)))
        .map_err(|e| sql_error("read the schema of", table, e))?;
    let rows = stmt
        .query_map([], |r| {
            Ok(RawColumn {
                name: r.get(1)?,
                declared: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                notnull: r.get::<_, i64>(3)? != 0,
                pk: r.get(5)?,
                hidden: r.get(6)?,
            })
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| sql_error("read the schema of", table, e))?;
    Ok(rows)
}

/// Pick the logical type of an untyped column from the storage class most
/// common among its first values (binary when it holds no values).
fn sample_type(conn: &Connection, table: &str, column: &str) -> Result<LogicalType> {
    let sql = format!(
        "SELECT typeof(c) FROM (SELECT {} AS c FROM main.{} LIMIT 1000) \
         WHERE c IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
        quote(column),
        quote(table)
    );
    let class: Option<String> = conn
        .query_row(&sql, [], |r| r.get(0))
        .optional()
        .map_err(|e| sql_error("read", table, e))?;
    Ok(match class.as_deref() {
        Some("integer") => LogicalType::Int64,
        Some("real") => LogicalType::Float64,
        Some("text") => LogicalType::Utf8,
        _ => LogicalType::Binary,
    })
}

/// Read the catalog of the `main` schema; call inside the snapshot's read
/// transaction. Also returns, per table, how to scan it.
pub fn read_catalog(conn: &Connection, database: &str) -> Result<(Catalog, Vec<ScanPlan>)> {
    let engine_version: String = conn
        .query_row("SELECT sqlite_version()", [], |r| r.get(0))
        .map_err(|e| sql_error("read", database, e))?;
    let mut settings = serde_json::Map::new();
    for name in SETTINGS {
        let value: rusqlite::types::Value = conn
            .query_row(&format!("PRAGMA main.{name}"), [], |r| r.get(0))
            .map_err(|e| sql_error("read the settings of", database, e))?;
        let json = match value {
            rusqlite::types::Value::Integer(i) => serde_json::Value::from(i),
            rusqlite::types::Value::Text(s) => serde_json::Value::from(s.to_ascii_lowercase()),
            _ => continue,
        };
        settings.insert(name.to_string(), json);
    }

    // Kind of every table-like object: table, view, shadow, virtual.
    let mut kinds = std::collections::HashMap::new();
    {
        let mut stmt = conn
            .prepare("SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main'")
            .map_err(|e| sql_error("read the schema of", database, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    (r.get::<_, String>(1)?, r.get::<_, i64>(2)? != 0),
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| sql_error("read the schema of", database, e))?;
        kinds.extend(rows);
    }

    let mut objects = Vec::new();
    let mut tables = Vec::new();
    let mut unreadable = std::collections::BTreeMap::new();
    let mut plans = Vec::new();
    let schema_rows: Vec<(String, String, String, Option<String>)> = {
        let mut stmt = conn
            .prepare("SELECT type, name, tbl_name, sql FROM main.sqlite_schema ORDER BY rowid")
            .map_err(|e| sql_error("read the schema of", database, e))?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| sql_error("read the schema of", database, e))?
    };
    for (kind, name, table, sql) in schema_rows {
        let (list_kind, without_rowid) = kinds
            .get(&name)
            .cloned()
            .unwrap_or_else(|| (kind.clone(), false));
        if list_kind == "shadow" {
            continue;
        }
        let internal = INTERNAL_TABLES.contains(&name.as_str());
        if let Some(sql) = &sql {
            objects.push(SchemaObject {
                kind: kind.clone(),
                name: name.clone(),
                table: table.clone(),
                sql: sql.clone(),
            });
        }
        if kind != "table" || (name.starts_with("sqlite_") && !internal) {
            continue;
        }
        let is_virtual = list_kind == "virtual";
        let raw = match table_columns(conn, &name) {
            Ok(raw) => raw,
            Err(_) if is_virtual && module_missing(conn, &name) => {
                // Its definition is kept (above); its rows cannot be read.
                let module = sql
                    .as_deref()
                    .and_then(module_as_written)
                    .unwrap_or_default();
                if first_warning(&format!("module of {name}")) {
                    tracing::warn!(
                        "virtual table '{}' uses the module {}, which coffer does not have: its definition is kept, its rows are not read",
                        name.escape_debug(),
                        module
                    );
                }
                unreadable.insert(
                    name.clone(),
                    format!(
                        "a virtual table of the module {}, which coffer does not have",
                        module.escape_debug()
                    ),
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        let names: Vec<String> = raw.iter().map(|c| c.name.clone()).collect();
        let data: Vec<&RawColumn> = raw.iter().filter(|c| c.hidden == 0).collect();
        let pk_cols: Vec<&RawColumn> = {
            let mut v: Vec<&RawColumn> = raw.iter().filter(|c| c.pk > 0).collect();
            v.sort_by_key(|c| c.pk);
            v
        };
        let integer_pk = !without_rowid
            && !is_virtual
            && pk_cols.len() == 1
            && pk_cols[0].declared.eq_ignore_ascii_case("INTEGER");
        let module = sql.as_deref().and_then(vtab_module);
        let wants_rowid = if is_virtual {
            module.as_deref().is_some_and(|m| m.starts_with("fts"))
        } else {
            !without_rowid && !integer_pk && !internal
        };
        let mut columns = Vec::new();
        let mut exprs = Vec::new();
        let mut hidden_key = None;
        let mut refusal = None;
        if wants_rowid && rowid_alias(&names).is_none() {
            refusal = Some(format!(
                "table '{}' has columns named rowid, oid and _rowid_, which hide every name of its rowid, so its rows cannot be copied with their rowids; rename one of those columns (ALTER TABLE ... RENAME COLUMN), or leave the table out with --exclude",
                name.escape_debug()
            ));
        }
        if wants_rowid && let Some(alias) = rowid_alias(&names) {
            let mut col_name = ROWID_COLUMN.to_string();
            while names.iter().any(|n| n.eq_ignore_ascii_case(&col_name)) {
                col_name.push('_');
            }
            columns.push(Column {
                name: col_name.clone(),
                logical_type: LogicalType::Int64,
                declared_type: "INTEGER".to_string(),
                nullable: false,
                text_format: None,
            });
            exprs.push(alias.to_string());
            hidden_key = Some(col_name);
        }
        for c in &data {
            let logical = match logical_type(&c.declared) {
                Some(t) => t,
                None => sample_type(conn, &name, &c.name)?,
            };
            columns.push(Column {
                name: c.name.clone(),
                logical_type: logical,
                declared_type: c.declared.clone(),
                nullable: !c.notnull,
                text_format: None,
            });
            exprs.push(quote(&c.name));
        }
        tables.push(Table {
            name: name.clone(),
            kind: if internal {
                coffer::manifest::TableKind::Internal
            } else if is_virtual {
                coffer::manifest::TableKind::Virtual
            } else {
                coffer::manifest::TableKind::Table
            },
            columns,
            primary_key: pk_cols.iter().map(|c| c.name.clone()).collect(),
            hidden_key,
            rows: 0,
            parts: Vec::new(),
        });
        plans.push(ScanPlan { exprs, refusal });
    }
    let mut collations: Vec<String> = Vec::new();
    for o in &objects {
        for c in collations_in(&o.sql) {
            if !BUILTIN_COLLATIONS.contains(&c.as_str()) && !collations.contains(&c) {
                collations.push(c);
            }
        }
    }
    if !collations.is_empty() && first_warning(&format!("collations {collations:?}")) {
        tracing::warn!(
            "the schema of {database} uses the collation sequence(s) {}, which its application defines and coffer does not have: the backup is complete, but a restore cannot build the tables and indexes that use them, and stops unless given --skip-missing-collations, which leaves those out",
            collations
                .iter()
                .map(|c| format!("'{}'", c.escape_debug()))
                .collect::<Vec<_>>()
                .join(", "),
        );
        settings.insert("collations".to_string(), collations.into());
    }
    Ok((
        Catalog {
            engine_version,
            database: database.to_string(),
            settings,
            objects,
            tables,
            unreadable,
            backup_refusal: None,
        },
        plans,
    ))
}

/// Whether a warning about `what` is the first of this process: every
/// connection of one backup reads the catalog, and says a thing once.
pub(crate) fn first_warning(what: &str) -> bool {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
    if said.iter().any(|s| s == what) {
        return false;
    }
    said.push(what.to_string());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_rules() {
        assert_eq!(logical_type("INTEGER"), Some(LogicalType::Int64));
        assert_eq!(logical_type("bigint"), Some(LogicalType::Int64));
        assert_eq!(logical_type("VARCHAR(20)"), Some(LogicalType::Utf8));
        assert_eq!(logical_type("BLOB"), Some(LogicalType::Binary));
        assert_eq!(logical_type("DOUBLE PRECISION"), Some(LogicalType::Float64));
        assert_eq!(logical_type("DATETIME"), Some(LogicalType::Utf8));
        assert_eq!(logical_type("DECIMAL(10,2)"), Some(LogicalType::Float64));
        assert_eq!(logical_type("BOOLEAN"), Some(LogicalType::Int64));
        assert_eq!(logical_type(""), None);
    }

    #[test]
    fn module_names() {
        assert_eq!(
            vtab_module("CREATE VIRTUAL TABLE t USING fts5(a, b)").as_deref(),
            Some("fts5")
        );
        assert_eq!(
            vtab_module("create virtual table r using rtree(id, x0, x1)").as_deref(),
            Some("rtree")
        );
    }

    #[test]
    fn collations_named_in_sql() {
        assert_eq!(
            collations_in(
                "CREATE TABLE t(a TEXT COLLATE rev, b collate \"Odd \"\"x\"\"\", c COLLATE NOCASE, d DEFAULT 'COLLATE no', -- COLLATE no\n e /* COLLATE no */ COLLATE [br ack], f COLLATE REV)"
            ),
            ["rev", "odd \"x\"", "nocase", "br ack"]
        );
        assert!(collations_in("CREATE TABLE \"COLLATE\"(x)").is_empty());
        assert_eq!(collations_in("CREATE INDEX i ON t(a COLLATE`my`)"), ["my"]);
    }

    #[test]
    fn rowid_aliases_avoid_columns() {
        assert_eq!(rowid_alias(&["a".into()]), Some("rowid"));
        assert_eq!(rowid_alias(&["ROWID".into()]), Some("_rowid_"));
        assert_eq!(
            rowid_alias(&["rowid".into(), "_rowid_".into(), "oid".into()]),
            None
        );
    }
}
