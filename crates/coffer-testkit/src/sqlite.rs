//! The SQLite reader of database [images](crate::image).
//!
//! [`read_image`] opens a database file read-only and describes it as an
//! [`Image`]:
//!
//! * **settings** — the header pragmas [`COMPARED_PRAGMAS`], named
//!   `PRAGMA user_version` and so on;
//! * **schema** — every row of `sqlite_schema` as `(type, name, tbl_name,
//!   sql)` (the `rootpage` is left out); shadow tables of virtual tables and
//!   `sqlite_autoindex_*` indexes by name only, since SQLite writes their SQL
//!   (if any); tables and indexes are [part of their
//!   table](crate::image::SchemaItem::part_of_table);
//! * **rows** of every table in the `main` schema, virtual tables (FTS5,
//!   R*Tree) included and shadow tables excluded: `SELECT rowid, *` ordered
//!   by rowid for rowid tables (through `_rowid_` or `oid` when a column is
//!   named `rowid`) and `SELECT *` ordered by primary key for WITHOUT ROWID
//!   tables, each value with its storage class;
//! * the **internal tables** `sqlite_sequence` and `sqlite_stat1` (and
//!   `sqlite_stat4` and friends when present), all columns, in a canonical
//!   order.
//!
//! Rows are read when the image is compared or digested, on a connection
//! of their own per table (a thread feeding a bounded channel), so the
//! database must not change in between unless the image was
//! [loaded](Image::loaded).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::sync_channel;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::image::{Image, RowIter, RowSource, SchemaItem, TableImage, Value};

/// The header pragmas that are compared, in order.
pub const COMPARED_PRAGMAS: &[&str] = &[
    "user_version",
    "application_id",
    "page_size",
    "encoding",
    "auto_vacuum",
    "journal_mode",
];

impl Value {
    /// Copy a borrowed SQLite value, keeping its storage class.
    pub fn from_ref(v: ValueRef<'_>) -> Value {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(r) => Value::Real(r.to_bits()),
            ValueRef::Text(t) => Value::Text(t.to_vec()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

/// Binds the value with its storage class; text keeps its exact bytes
/// (valid UTF-8 or not). A [`Value::Typed`] has no SQLite class and fails.
impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput::Borrowed;
        Ok(match self {
            Value::Null => Borrowed(ValueRef::Null),
            Value::Integer(i) => Borrowed(ValueRef::Integer(*i)),
            Value::Real(bits) => Borrowed(ValueRef::Real(f64::from_bits(*bits))),
            Value::Text(t) => Borrowed(ValueRef::Text(t)),
            Value::Blob(b) => Borrowed(ValueRef::Blob(b)),
            Value::Typed { type_name, .. } => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    format!("SQLite has no storage class for a value of type {type_name}").into(),
                ));
            }
        })
    }
}

/// Quote an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Reads rows of one database file, a connection per table.
struct FileRows {
    path: PathBuf,
}

impl RowSource for FileRows {
    fn rows(&self, table: &TableImage) -> Result<RowIter, String> {
        let conn = open_read_only(&self.path)?;
        let query = table.read.clone();
        let n = table.columns.len();
        let (tx, rx) = sync_channel::<Result<Vec<Value>, String>>(256);
        std::thread::spawn(move || {
            let run = || -> rusqlite::Result<()> {
                let mut stmt = conn.prepare(&query)?;
                let mut rows = stmt.query([])?;
                while let Some(r) = rows.next()? {
                    let row = (0..n)
                        .map(|i| r.get_ref(i).map(Value::from_ref))
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    if tx.send(Ok(row)).is_err() {
                        return Ok(()); // nobody reads any more
                    }
                }
                Ok(())
            };
            if let Err(e) = run() {
                let _ = tx.send(Err(e.to_string()));
            }
        });
        Ok(Box::new(rx.into_iter()))
    }
}

fn open_read_only(path: &Path) -> Result<Connection, String> {
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("could not open {}: {e}", path.display()))
}

/// The image of the SQLite database file at `path` (see the [module
/// docs](self)); its [`Image::name`] is the path.
pub fn read_image(path: &Path) -> Result<Image, String> {
    let conn = open_read_only(path)?;
    let ctx = |e: rusqlite::Error| format!("could not read {}: {e}", path.display());
    let mut image = Image::new(
        path.display().to_string(),
        Arc::new(FileRows {
            path: path.to_path_buf(),
        }),
    );
    image.settings = COMPARED_PRAGMAS
        .iter()
        .map(|p| {
            conn.query_row(&format!("PRAGMA {p}"), [], |r| {
                Ok(Value::from_ref(r.get_ref(0)?))
            })
            .map(|v| (format!("PRAGMA {p}"), v))
        })
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(ctx)?;

    // (schema, name, type, wr)
    let listed: Vec<(String, String, String, bool)> = conn
        .prepare("SELECT schema, name, type, wr FROM pragma_table_list")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? != 0))
            })?
            .collect()
        })
        .map_err(ctx)?;
    let shadow: BTreeSet<String> = listed
        .iter()
        .filter(|(schema, _, kind, _)| schema == "main" && kind == "shadow")
        .map(|(_, name, _, _)| name.clone())
        .collect();

    {
        let mut stmt = conn
            .prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema")
            .map_err(ctx)?;
        let mut rows = stmt.query([]).map_err(ctx)?;
        while let Some(r) = rows.next().map_err(ctx)? {
            let name: String = r.get(1).map_err(ctx)?;
            let kind: String = r.get(0).map_err(ctx)?;
            let by_name_only = shadow.contains(&name) || name.starts_with("sqlite_autoindex_");
            let sql = match r.get_ref(3).map_err(ctx)? {
                _ if by_name_only => None,
                ValueRef::Null => None,
                ValueRef::Text(t) | ValueRef::Blob(t) => Some(t.to_vec()),
                other => Some(format!("{other:?}").into_bytes()),
            };
            image.objects.insert(SchemaItem {
                part_of_table: kind == "table" || kind == "index",
                kind,
                name,
                table: r.get(2).map_err(ctx)?,
                definition: sql,
                by_name_only,
            });
        }
    }

    for (schema_name, name, kind, wr) in listed {
        if schema_name != "main" || !(kind == "table" || kind == "virtual") {
            continue;
        }
        let lower = name.to_ascii_lowercase();
        if lower == "sqlite_schema" || lower == "sqlite_master" {
            continue;
        }
        if lower.starts_with("sqlite_") {
            let table = internal_table(&conn, &name, &kind).map_err(ctx)?;
            image.internal.insert(name, table);
            continue;
        }
        let table = user_table(&conn, &name, &kind, wr).map_err(|e| match e {
            TableError::Sql(e) => ctx(e),
            TableError::Other(m) => format!("{}: {m}", path.display()),
        })?;
        image.tables.insert(name, table);
    }
    Ok(image)
}

enum TableError {
    Sql(rusqlite::Error),
    Other(String),
}

impl From<rusqlite::Error> for TableError {
    fn from(e: rusqlite::Error) -> Self {
        TableError::Sql(e)
    }
}

/// `(name, pk)` of every column, hidden ones included.
fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<(String, i64)>> {
    conn.prepare("SELECT name, pk FROM pragma_table_xinfo(?1)")?
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

fn result_columns(conn: &Connection, query: &str) -> rusqlite::Result<Vec<String>> {
    let stmt = conn.prepare(query)?;
    Ok(stmt
        .column_names()
        .into_iter()
        .map(str::to_string)
        .collect())
}

fn user_table(
    conn: &Connection,
    name: &str,
    kind: &str,
    wr: bool,
) -> Result<TableImage, TableError> {
    let cols = columns(conn, name)?;
    let q = quote_ident(name);
    if wr {
        let mut pk: Vec<(i64, usize)> = Vec::new();
        // Positions in `SELECT *`: only visible columns count, but tables
        // WITHOUT ROWID have no hidden columns.
        for (i, (_, k)) in cols.iter().enumerate() {
            if *k > 0 {
                pk.push((*k, i));
            }
        }
        pk.sort();
        let order: Vec<String> = if pk.is_empty() {
            (1..=cols.len()).map(|i| i.to_string()).collect()
        } else {
            pk.iter().map(|(_, i)| quote_ident(&cols[*i].0)).collect()
        };
        let key = if pk.is_empty() {
            (0..cols.len()).collect()
        } else {
            pk.iter().map(|(_, i)| *i).collect()
        };
        let read = format!("SELECT * FROM {q} ORDER BY {}", order.join(", "));
        return Ok(TableImage {
            name: name.to_string(),
            kind: kind.to_string(),
            layout: "without rowid".to_string(),
            columns: result_columns(conn, &read)?,
            key,
            hidden_key: None,
            read,
        });
    }
    let alias = ["rowid", "_rowid_", "oid"]
        .into_iter()
        .find(|a| !cols.iter().any(|(c, _)| c.eq_ignore_ascii_case(a)))
        .ok_or_else(|| {
            TableError::Other(format!(
                "table {q} has columns named rowid, _rowid_ and oid, so its rowid cannot be read"
            ))
        })?;
    let read = format!("SELECT {alias} AS {alias}, * FROM {q} ORDER BY {alias}");
    Ok(TableImage {
        name: name.to_string(),
        kind: kind.to_string(),
        layout: "rowid".to_string(),
        columns: result_columns(conn, &read)?,
        key: vec![0],
        hidden_key: Some(0),
        read,
    })
}

fn internal_table(conn: &Connection, name: &str, kind: &str) -> rusqlite::Result<TableImage> {
    let n = columns(conn, name)?.len();
    let order: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let read = format!(
        "SELECT * FROM {} ORDER BY {}",
        quote_ident(name),
        order.join(", ")
    );
    Ok(TableImage {
        name: name.to_string(),
        kind: kind.to_string(),
        layout: "rowid".to_string(),
        columns: result_columns(conn, &read)?,
        key: (0..n.min(2)).collect(),
        hidden_key: None,
        read,
    })
}
