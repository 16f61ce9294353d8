//! Change capture for backup collections on PostgreSQL.
//!
//! Everything coffer installs lives in the schema `_coffer`:
//!
//! * `_coffer.collections`: one row per collection (its record);
//! * `_coffer.captured`: one row per captured table: its collection, the
//!   number `N` of its log, its relation's oid and its key columns;
//! * `_coffer.log_N`: the change log of one table: its key columns, then
//!   `coffer_xid xid8`, the top-level transaction that last logged the key;
//!   one row per key (primary key of the log);
//! * `_coffer.capture_N()`: the trigger function (`SECURITY DEFINER`, so
//!   roles that write the table need no rights on `_coffer`);
//! * on the table, four triggers, `ENABLE ALWAYS` (they fire for logical
//!   replication's apply too): row-level after `INSERT`, `UPDATE` (the old
//!   key too when it changes) and `DELETE`, and statement-level before
//!   `TRUNCATE`, which logs every key the table holds.
//!
//! A backup trims exactly the log rows its own snapshot saw: those whose
//! `coffer_xid` is visible in that snapshot (`pg_visible_in_snapshot`),
//! never "everything older than N". A transaction still open when the
//! backup's snapshot was taken is invisible to the snapshot with its rows
//! and its log rows, so both wait for the next backup. docs/COLLECTIONS.md
//! gives the whole argument.

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer::engine::{
    Catalog, ChainRestorer, ChangeCapture, ChangeSnapshot, CollectionRecord, DataBatch, Snapshot,
    SnapshotPoint,
};
use coffer::manifest::{SchemaObject, Table, TableKind};
use coffer::progress::Cancel;
use coffer::{Error, ErrorKind, Result};

use crate::address::Address;
use crate::catalog::{self, quote_ident};
use crate::connect::query_error;
use crate::ddl::Entry;
use crate::engine::{PgSnapshot, Scope, archive_name};
use crate::snapshot::ExportedSnapshot;

/// The schema of coffer's own objects.
pub const SCHEMA: &str = "_coffer";

/// The kind of the schema objects that record a collection table's shape.
pub const SHAPE_KIND: &str = "shape";

/// The triggers coffer puts on a captured table.
pub const TRIGGERS: [&str; 4] = [
    "coffer_capture_insert",
    "coffer_capture_update",
    "coffer_capture_delete",
    "coffer_capture_truncate",
];

/// How long a backup waits for the lock on one table.
const LOCK_TIMEOUT_MS: u32 = 10_000;

/// The log's column of the transaction that last logged a key.
const XID: &str = "coffer_xid";

/// Whether a pg_dump entry is one of coffer's capture triggers (never part
/// of a backup: the restored tables are not captured).
pub fn is_capture_entry(e: &Entry) -> bool {
    e.kind == "TRIGGER" && TRIGGERS.iter().any(|t| e.name.ends_with(&format!(" {t}")))
}

/// PostgreSQL change capture ([`ChangeCapture`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct PgCapture;

/// A captured table as `_coffer.captured` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Captured {
    table: String,
    schema_name: String,
    rel_name: String,
    log_id: i32,
    relid: u32,
    key: Vec<String>,
}

impl Captured {
    fn log(&self) -> String {
        format!("{SCHEMA}.log_{}", self.log_id)
    }

    fn function(&self) -> String {
        format!("{SCHEMA}.capture_{}", self.log_id)
    }

    fn sql_name(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.schema_name),
            quote_ident(&self.rel_name)
        )
    }
}

/// A connection for managing capture: `search_path` is `pg_catalog`, so
/// types come out schema-qualified.
fn manage(address: &Address) -> Result<postgres::Client> {
    let mut client = address.connect()?.client;
    client
        .batch_execute("SET search_path = pg_catalog, pg_temp; SET lock_timeout = '10s'")
        .map_err(|e| query_error(address, "setting up the session", &e))?;
    Ok(client)
}

fn run(
    client: &mut impl postgres::GenericClient,
    address: &Address,
    sql: &str,
    doing: &str,
) -> Result<()> {
    client
        .batch_execute(sql)
        .map_err(|e| query_error(address, doing, &e))
}

/// Begin a transaction that changes coffer's objects: one at a time.
fn begin_managing<'c>(
    client: &'c mut postgres::Client,
    address: &Address,
) -> Result<postgres::Transaction<'c>> {
    let mut tx = client
        .transaction()
        .map_err(|e| query_error(address, "beginning a transaction", &e))?;
    run(
        &mut tx,
        address,
        "SELECT pg_advisory_xact_lock(hashtext('coffer change capture'))",
        "waiting for another coffer command changing the collections",
    )?;
    Ok(tx)
}

fn has_schema(client: &mut impl postgres::GenericClient, address: &Address) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT to_regclass('_coffer.collections') IS NOT NULL AND to_regclass('_coffer.captured') IS NOT NULL",
            &[],
        )
        .map_err(|e| query_error(address, "looking for coffer's collections", &e))?
        .get(0))
}

fn read_records(
    client: &mut impl postgres::GenericClient,
    address: &Address,
) -> Result<Vec<CollectionRecord>> {
    if !has_schema(client, address)? {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT name, id, tables, repo, created_at, last_backup, pending_backup, pending_horizon \
             FROM _coffer.collections ORDER BY name",
            &[],
        )
        .map_err(|e| query_error(address, "reading coffer's collections", &e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let pending: Option<String> = r.get(6);
            let horizon: Option<String> = r.get(7);
            CollectionRecord {
                name: r.get(0),
                id: r.get(1),
                tables: r.get(2),
                repo: r.get(3),
                created_at: r.get(4),
                last_backup: r.get(5),
                pending: pending.zip(horizon),
            }
        })
        .collect())
}

fn find_record(
    client: &mut impl postgres::GenericClient,
    address: &Address,
    name: &str,
) -> Result<CollectionRecord> {
    read_records(client, address)?
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| Error::not_found(format!("{address} has no collection named '{name}'")))
}

fn read_captured(
    client: &mut impl postgres::GenericClient,
    address: &Address,
    collection: &str,
) -> Result<Vec<Captured>> {
    let rows = client
        .query(
            "SELECT table_name, schema_name, rel_name, log_id, relid, key_columns \
             FROM _coffer.captured WHERE collection = $1 ORDER BY log_id",
            &[&collection],
        )
        .map_err(|e| query_error(address, "reading coffer's captured tables", &e))?;
    Ok(rows
        .iter()
        .map(|r| Captured {
            table: r.get(0),
            schema_name: r.get(1),
            rel_name: r.get(2),
            log_id: r.get(3),
            relid: r.get(4),
            key: r.get(5),
        })
        .collect())
}

/// The key a log is kept by: the primary key, or failing that the first
/// (by name) unique index that is immediate, not partial, on plain
/// columns that are all `NOT NULL`.
fn table_key(
    client: &mut impl postgres::GenericClient,
    address: &Address,
    oid: u32,
) -> Result<Option<Vec<String>>> {
    let rows = client
        .query(
            "SELECT i.indexrelid, array_agg(a.attname::text ORDER BY g.n), bool_and(a.attnotnull) \
             FROM pg_index i \
             CROSS JOIN LATERAL generate_series(0, i.indnkeyatts - 1) AS g(n) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[g.n] \
             JOIN pg_class ic ON ic.oid = i.indexrelid \
             WHERE i.indrelid = $1 AND i.indisunique AND i.indimmediate AND i.indisvalid \
               AND i.indpred IS NULL AND i.indexprs IS NULL \
             GROUP BY i.indexrelid, i.indisprimary, ic.relname \
             ORDER BY i.indisprimary DESC, ic.relname",
            &[&oid],
        )
        .map_err(|e| query_error(address, "reading the table's keys", &e))?;
    Ok(rows
        .iter()
        .find(|r| r.get::<_, bool>(2))
        .map(|r| r.get::<_, Vec<String>>(1)))
}

/// The oid of `schema.name` when it is an ordinary table.
fn relation(
    client: &mut impl postgres::GenericClient,
    address: &Address,
    schema: &str,
    name: &str,
) -> Result<Option<(u32, String)>> {
    Ok(client
        .query_opt(
            "SELECT c.oid, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &name],
        )
        .map_err(|e| query_error(address, "looking for the table", &e))?
        .map(|r| (r.get(0), r.get(1))))
}

/// The table of `tables` (the database's, from [`catalog::read_tables`])
/// that the archive name `table` names: a name that is not a table's is
/// refused, naming it.
fn resolve(tables: &[catalog::Table], address: &Address, table: &str) -> Result<catalog::Table> {
    if let Some(t) = tables.iter().find(|t| archive_name(t) == table) {
        return Ok(t.clone());
    }
    if let Some(t) = tables
        .iter()
        .find(|t| t.schema == "public" && table.strip_prefix("public.") == Some(t.name.as_str()))
    {
        return Err(Error::invalid(format!(
            "coffer names the tables of the schema public without it: give --table '{}'",
            t.name
        )));
    }
    Err(Error::not_found(format!(
        "{address} has no table '{table}' (name a table of another schema as SCHEMA.TABLE)"
    )))
}

/// Install capture for `table` with log number `log_id`.
fn install_table(
    tx: &mut postgres::Transaction<'_>,
    address: &Address,
    collection: &str,
    table: &str,
    t: &catalog::Table,
    log_id: i32,
) -> Result<Captured> {
    let shown = format!("table '{table}' in {address}");
    if t.kind == catalog::TableKind::Partitioned {
        return Err(Error::invalid(format!(
            "{shown} is partitioned and cannot be captured yet; put its partitions in the collection instead"
        )));
    }
    if t.schema == SCHEMA {
        return Err(Error::invalid(format!("{shown} is coffer's own")));
    }
    let key = table_key(tx, address, t.oid)?.ok_or_else(|| {
        Error::invalid(format!(
            "{shown} has neither a primary key nor a unique index on NOT NULL columns, so its changed rows cannot be told apart; add a primary key"
        ))
    })?;
    if key.iter().any(|k| k == XID) {
        return Err(Error::invalid(format!(
            "{shown} has a key column named {XID}, which coffer's change log uses; rename it"
        )));
    }
    let captured = Captured {
        table: table.to_string(),
        schema_name: t.schema.clone(),
        rel_name: t.name.clone(),
        log_id,
        relid: t.oid,
        key: key.clone(),
    };
    // The log's key columns: the table's types and collations.
    let defs: Vec<String> = tx
        .query(
            "SELECT quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod) || \
                    CASE WHEN a.attcollation <> 0 AND a.attcollation <> ty.typcollation \
                         THEN ' COLLATE ' || quote_ident(cn.nspname) || '.' || quote_ident(co.collname) ELSE '' END \
             FROM unnest($2::text[]) WITH ORDINALITY AS k(name, ord) \
             JOIN pg_attribute a ON a.attrelid = $1 AND a.attname = k.name \
             JOIN pg_type ty ON ty.oid = a.atttypid \
             LEFT JOIN pg_collation co ON co.oid = a.attcollation \
             LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace \
             ORDER BY k.ord",
            &[&t.oid, &key],
        )
        .map_err(|e| query_error(address, &format!("reading the key of table '{table}'"), &e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let cols = key
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    let log = captured.log();
    let function = captured.function();
    let upsert = |from: &str| {
        format!(
            "INSERT INTO {log} AS l ({cols}) {from} \
             ON CONFLICT ({cols}) DO UPDATE SET {XID} = excluded.{XID} WHERE l.{XID} <> excluded.{XID};"
        )
    };
    let values = |record: &str| {
        let fields: Vec<String> = key
            .iter()
            .map(|k| format!("{record}.{}", quote_ident(k)))
            .collect();
        fields.join(", ")
    };
    let body = format!(
        "BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    EXECUTE format('{}', TG_TABLE_SCHEMA, TG_TABLE_NAME);
    RETURN NULL;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    {}
  END IF;
  IF TG_OP = 'DELETE' THEN
    {}
  ELSIF TG_OP = 'UPDATE' THEN
    IF ROW({}) IS DISTINCT FROM ROW({}) THEN
      {}
    END IF;
  END IF;
  RETURN NULL;
END",
        upsert(&format!("SELECT {cols} FROM ONLY @TABLE@"))
            .replace('%', "%%")
            .replace("@TABLE@", "%I.%I")
            .replace('\'', "''"),
        upsert(&format!("VALUES ({})", values("NEW"))),
        upsert(&format!("VALUES ({})", values("OLD"))),
        values("OLD"),
        values("NEW"),
        upsert(&format!("VALUES ({})", values("OLD"))),
    );
    let mut tag = format!("coffer_{:08x}", crate::restore::nonce());
    while body.contains(&tag) {
        tag = format!("coffer_{:08x}", crate::restore::nonce());
    }
    let on = captured.sql_name();
    let sql = format!(
        "CREATE TABLE {log} ({}, {XID} xid8 NOT NULL DEFAULT pg_current_xact_id(), PRIMARY KEY ({cols}));
CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp AS ${tag}${body}${tag}$;
REVOKE ALL ON FUNCTION {function}() FROM PUBLIC;
CREATE TRIGGER {} AFTER INSERT ON {on} FOR EACH ROW EXECUTE FUNCTION {function}();
CREATE TRIGGER {} AFTER UPDATE ON {on} FOR EACH ROW EXECUTE FUNCTION {function}();
CREATE TRIGGER {} AFTER DELETE ON {on} FOR EACH ROW EXECUTE FUNCTION {function}();
CREATE TRIGGER {} BEFORE TRUNCATE ON {on} FOR EACH STATEMENT EXECUTE FUNCTION {function}();
ALTER TABLE {on} ENABLE ALWAYS TRIGGER {}, ENABLE ALWAYS TRIGGER {}, ENABLE ALWAYS TRIGGER {}, ENABLE ALWAYS TRIGGER {};",
        defs.join(", "),
        TRIGGERS[0],
        TRIGGERS[1],
        TRIGGERS[2],
        TRIGGERS[3],
        TRIGGERS[0],
        TRIGGERS[1],
        TRIGGERS[2],
        TRIGGERS[3],
    );
    run(
        tx,
        address,
        &sql,
        &format!("installing change capture on table '{table}'"),
    )?;
    tx.execute(
        "INSERT INTO _coffer.captured (table_name, collection, schema_name, rel_name, log_id, relid, key_columns) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &table,
            &collection,
            &t.schema,
            &t.name,
            &log_id,
            &t.oid,
            &key,
        ],
    )
    .map_err(|e| query_error(address, "recording the captured table", &e))?;
    Ok(captured)
}

/// Remove what capture of one table installed (whatever of it is left).
fn uninstall_table(
    tx: &mut postgres::Transaction<'_>,
    address: &Address,
    c: &Captured,
) -> Result<()> {
    let table_now = relation(tx, address, &c.schema_name, &c.rel_name)?;
    let mut sql = String::new();
    if table_now.is_some_and(|(oid, _)| oid == c.relid) {
        for t in TRIGGERS {
            sql.push_str(&format!(
                "DROP TRIGGER IF EXISTS {t} ON {};\n",
                c.sql_name()
            ));
        }
    }
    sql.push_str(&format!(
        "DROP FUNCTION IF EXISTS {}() CASCADE;\nDROP TABLE IF EXISTS {};\n",
        c.function(),
        c.log()
    ));
    run(
        tx,
        address,
        &sql,
        &format!("removing the change capture of table '{}'", c.table),
    )?;
    tx.execute(
        "DELETE FROM _coffer.captured WHERE table_name = $1",
        &[&c.table],
    )
    .map_err(|e| query_error(address, "removing the captured table's record", &e))?;
    Ok(())
}

/// Why the log of `c` cannot be trusted now, if it cannot.
fn problem(
    client: &mut impl postgres::GenericClient,
    address: &Address,
    c: &Captured,
) -> Result<Option<String>> {
    let name = &c.table;
    let Some((oid, _)) = relation(client, address, &c.schema_name, &c.rel_name)? else {
        return Ok(Some(format!("table '{name}' no longer exists")));
    };
    if oid != c.relid {
        return Ok(Some(format!(
            "table '{name}' was dropped and created again (or the database restored from a copy) since coffer began capturing its changes"
        )));
    }
    if table_key(client, address, oid)?.as_ref() != Some(&c.key) {
        return Ok(Some(format!("the key of table '{name}' changed")));
    }
    let row = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL, \
                    (SELECT count(*) FROM pg_trigger WHERE tgrelid = $2 AND tgname = ANY($3) \
                       AND tgenabled = 'A' AND tgfoid = to_regprocedure($4)) ",
            &[
                &c.log(),
                &oid,
                &TRIGGERS.to_vec(),
                &format!("{}()", c.function()),
            ],
        )
        .map_err(|e| query_error(address, "checking the change capture", &e))?;
    if !row.get::<_, bool>(0) {
        return Ok(Some(format!("the change log of table '{name}' is missing")));
    }
    if row.get::<_, i64>(1) != TRIGGERS.len() as i64 {
        return Ok(Some(format!(
            "the change capture triggers of table '{name}' were dropped or disabled"
        )));
    }
    Ok(None)
}

fn next_log_id(tx: &mut postgres::Transaction<'_>, address: &Address) -> Result<i32> {
    Ok(tx
        .query_one(
            "SELECT coalesce(max(log_id), 0) + 1 FROM _coffer.captured",
            &[],
        )
        .map_err(|e| query_error(address, "numbering the change log", &e))?
        .get(0))
}

const SETUP: &str = "CREATE SCHEMA IF NOT EXISTS _coffer;
REVOKE ALL ON SCHEMA _coffer FROM PUBLIC;
CREATE TABLE IF NOT EXISTS _coffer.collections (
  name text PRIMARY KEY, id text NOT NULL, tables text[] NOT NULL, repo text,
  created_at text NOT NULL, last_backup text, pending_backup text, pending_horizon text);
CREATE TABLE IF NOT EXISTS _coffer.captured (
  table_name text PRIMARY KEY,
  collection text NOT NULL REFERENCES _coffer.collections ON DELETE CASCADE,
  schema_name text NOT NULL, rel_name text NOT NULL,
  log_id integer NOT NULL UNIQUE, relid oid NOT NULL, key_columns text[] NOT NULL);";

/// Run `f` off any async runtime: the blocking client may not run on one
/// (the operations call capture from async code).
fn off_runtime<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

impl ChangeCapture for PgCapture {
    fn install(&self, db: &str, collection: &CollectionRecord) -> Result<()> {
        off_runtime(|| install(db, collection))
    }

    fn collections(&self, db: &str) -> Result<Vec<CollectionRecord>> {
        off_runtime(|| {
            let address = Address::parse(db)?;
            let mut client = address.connect()?.client;
            read_records(&mut client, &address)
        })
    }

    fn remove(&self, db: &str, name: &str) -> Result<bool> {
        off_runtime(|| remove(db, name))
    }

    fn begin(&self, db: &str, name: &str, full: bool) -> Result<Box<dyn ChangeSnapshot>> {
        off_runtime(|| begin(db, name, full).map(|s| Box::new(s) as Box<dyn ChangeSnapshot>))
    }

    fn set_pending(&self, db: &str, name: &str, pending: Option<(&str, &str)>) -> Result<()> {
        off_runtime(|| set_pending(db, name, pending))
    }

    fn trim(&self, db: &str, name: &str, id: &str, horizon: &str) -> Result<()> {
        off_runtime(|| trim(db, name, id, horizon))
    }

    fn chain_restorer(
        &self,
        target: &str,
        replace: bool,
        cancel: Cancel,
    ) -> Result<Box<dyn ChainRestorer>> {
        off_runtime(|| {
            let address = Address::parse(target)?;
            Ok(Box::new(crate::chain::PgChainRestorer::open(
                &address, replace, cancel,
            )?) as Box<dyn ChainRestorer>)
        })
    }
}

fn install(db: &str, collection: &CollectionRecord) -> Result<()> {
    let address = Address::parse(db)?;
    let mut client = manage(&address)?;
    let mut tx = begin_managing(&mut client, &address)?;
    run(&mut tx, &address, SETUP, "creating coffer's schema _coffer")?;
    if read_records(&mut tx, &address)?
        .iter()
        .any(|r| r.name == collection.name)
    {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{address} already has a collection named '{}'",
                collection.name
            ),
        ));
    }
    tx.execute(
        "INSERT INTO _coffer.collections (name, id, tables, repo, created_at) VALUES ($1, $2, $3, $4, $5)",
        &[
            &collection.name,
            &collection.id,
            &collection.tables,
            &collection.repo,
            &collection.created_at,
        ],
    )
    .map_err(|e| query_error(&address, "recording the collection", &e))?;
    let tables = catalog::read_tables(&mut tx, &address)?;
    for table in &collection.tables {
        let t = resolve(&tables, &address, table)?;
        if let Some(r) = tx
            .query_opt(
                "SELECT collection FROM _coffer.captured WHERE table_name = $1",
                &[table],
            )
            .map_err(|e| query_error(&address, "reading coffer's captured tables", &e))?
        {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "table '{table}' in {address} already belongs to collection '{}'; a table is in one collection at most",
                    r.get::<_, String>(0)
                ),
            ));
        }
        let id = next_log_id(&mut tx, &address)?;
        install_table(&mut tx, &address, &collection.name, table, &t, id)?;
    }
    tx.commit()
        .map_err(|e| query_error(&address, "committing the collection", &e))
}

fn remove(db: &str, name: &str) -> Result<bool> {
    let address = Address::parse(db)?;
    let mut client = manage(&address)?;
    let mut tx = begin_managing(&mut client, &address)?;
    if !has_schema(&mut tx, &address)? {
        return Ok(false);
    }
    if !read_records(&mut tx, &address)?
        .iter()
        .any(|r| r.name == name)
    {
        return Ok(false);
    }
    for c in read_captured(&mut tx, &address, name)? {
        uninstall_table(&mut tx, &address, &c)?;
    }
    tx.execute("DELETE FROM _coffer.collections WHERE name = $1", &[&name])
        .map_err(|e| query_error(&address, "removing the collection's record", &e))?;
    if read_records(&mut tx, &address)?.is_empty() {
        // The last collection: nothing of coffer's stays.
        run(
            &mut tx,
            &address,
            "DROP TABLE _coffer.captured; DROP TABLE _coffer.collections; DROP SCHEMA _coffer",
            "removing coffer's schema _coffer (it holds objects coffer did not create: move them out)",
        )?;
    }
    tx.commit()
        .map_err(|e| query_error(&address, "committing the removal", &e))?;
    Ok(true)
}

fn begin(db: &str, name: &str, full: bool) -> Result<PgChangeSnapshot> {
    let address = Address::parse(db)?;
    let mut client = manage(&address)?;
    if full {
        // Capture as coffer would install it now, before the snapshot:
        // CREATE TRIGGER waits for every transaction writing the table,
        // so each write is either captured or visible to the snapshot.
        let mut tx = begin_managing(&mut client, &address)?;
        find_record(&mut tx, &address, name)?;
        let mut tables = None;
        for c in read_captured(&mut tx, &address, name)? {
            if let Some(why) = problem(&mut tx, &address, &c)? {
                tracing::warn!(
                    "re-installing the change capture of table '{}': {why}",
                    c.table
                );
                uninstall_table(&mut tx, &address, &c)?;
                if tables.is_none() {
                    tables = Some(catalog::read_tables(&mut tx, &address)?);
                }
                let t = resolve(tables.as_deref().expect("read above"), &address, &c.table)?;
                install_table(&mut tx, &address, name, &c.table, &t, c.log_id)?;
            }
        }
        tx.commit()
            .map_err(|e| query_error(&address, "committing the change capture", &e))?;
    }
    // The tables are locked before the snapshot is taken: a TRUNCATE
    // that committed after the snapshot but before the lock would make
    // a table look empty to it, and its keys' entries be trimmed.
    let captured = read_captured(&mut client, &address, name)?;
    if !full {
        // Fresh statistics of the logs, so that the planner reads a few
        // logged keys by index, not the whole table: a trimmed log keeps
        // dead rows that autovacuum may not have counted yet.
        for c in &captured {
            if let Err(e) = client.batch_execute(&format!("ANALYZE {}", c.log())) {
                tracing::debug!("analyzing the change log of table '{}': {e}", c.table);
            }
        }
    }
    let tables: Vec<(String, String)> = captured
        .into_iter()
        .map(|c| (c.schema_name, c.rel_name))
        .collect();
    drop(client);
    let mut leader = ExportedSnapshot::begin_locked(&address, &tables, LOCK_TIMEOUT_MS)?;
    let horizon: String = leader
        .client()
        .query_one("SELECT pg_current_snapshot()::text", &[])
        .map_err(|e| query_error(&address, "reading the snapshot", &e))?
        .get(0);
    let record = find_record(leader.client(), &address, name)?;
    let captured = read_captured(leader.client(), &address, name)?;
    let mut problems = BTreeMap::new();
    for c in &captured {
        if let Some(p) = problem(leader.client(), &address, c)? {
            problems.insert(c.table.clone(), p);
        }
    }
    for t in &record.tables {
        if !captured.iter().any(|c| &c.table == t) {
            problems.insert(t.clone(), format!("table '{t}' is not captured"));
        }
    }
    let scope = Scope {
        tables: Some(record.tables.clone()),
        dump: full,
    };
    let mut inner = PgSnapshot::open_in(leader, &address, &scope)?;
    let shapes = shapes(&mut inner, &address, &record.tables)?;
    inner.add_objects(shapes);
    inner.set_keys(
        captured
            .iter()
            .map(|c| (c.table.clone(), c.key.clone()))
            .collect(),
    )?;
    let logs = captured
        .into_iter()
        .map(|c| (c.table.clone(), c))
        .collect::<BTreeMap<_, _>>();
    Ok(PgChangeSnapshot {
        inner: Some(inner),
        record,
        horizon,
        logs: Arc::new(logs),
        problems: Arc::new(problems),
    })
}

fn set_pending(db: &str, name: &str, pending: Option<(&str, &str)>) -> Result<()> {
    let address = Address::parse(db)?;
    let mut client = address.connect()?.client;
    let n = client
        .execute(
            "UPDATE _coffer.collections SET pending_backup = $1, pending_horizon = $2 WHERE name = $3",
            &[&pending.map(|p| p.0), &pending.map(|p| p.1), &name],
        )
        .map_err(|e| query_error(&address, "recording the backup", &e))?;
    if n == 0 {
        return Err(Error::not_found(format!(
            "{address} has no collection named '{name}'"
        )));
    }
    Ok(())
}

fn trim(db: &str, name: &str, id: &str, horizon: &str) -> Result<()> {
    let address = Address::parse(db)?;
    let mut client = manage(&address)?;
    let mut tx = client
        .transaction()
        .map_err(|e| query_error(&address, "beginning a transaction", &e))?;
    for c in read_captured(&mut tx, &address, name)? {
        // Exactly the entries the backup's snapshot saw: a log row a
        // later (or then unfinished) transaction wrote or re-wrote
        // carries that transaction's id, not visible in it. Rows a running
        // transaction holds are skipped, not waited for — it is logging
        // them again, and a trim that waited could deadlock with an
        // application's transaction; a kept entry costs a re-read only.
        let sql = format!(
            "DELETE FROM {log} WHERE ctid = ANY(ARRAY(\
               SELECT ctid FROM {log} WHERE pg_visible_in_snapshot({XID}, $1::text::pg_snapshot) \
               FOR UPDATE SKIP LOCKED))",
            log = c.log()
        );
        if relation(&mut tx, &address, SCHEMA, &format!("log_{}", c.log_id))?.is_some() {
            tx.execute(&sql, &[&horizon]).map_err(|e| {
                query_error(
                    &address,
                    &format!("trimming the change log of table '{}'", c.table),
                    &e,
                )
            })?;
        }
    }
    tx.execute(
        "UPDATE _coffer.collections SET last_backup = $1, pending_backup = NULL, pending_horizon = NULL WHERE name = $2",
        &[&id, &name],
    )
    .map_err(|e| query_error(&address, "recording the backup", &e))?;
    tx.commit()
        .map_err(|e| query_error(&address, "committing the trim", &e))
}

/// One object per table (kind [`SHAPE_KIND`]) recording what its change
/// log's meaning depends on, as the catalog has it now: its columns
/// (types, nullability, defaults, identity, generation), constraints,
/// indexes, triggers other than coffer's, policies and rules. An
/// incremental is refused when a table's differs from the chain's full
/// backup's.
fn shapes(
    snapshot: &mut PgSnapshot,
    address: &Address,
    tables: &[String],
) -> Result<Vec<SchemaObject>> {
    let mut out = Vec::new();
    for table in tables {
        let Some(oid) = snapshot.pg_table(table).map(|t| t.oid) else {
            continue;
        };
        let sql: String = snapshot
            .client()
            .query_one(
                "SELECT concat_ws(E'\\n', \
                   (SELECT string_agg(format('column %I %s%s%s%s%s', a.attname, format_type(a.atttypid, a.atttypmod), \
                            CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, \
                            coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), ''), \
                            CASE a.attidentity WHEN '' THEN '' ELSE ' identity ' || a.attidentity::text END, \
                            CASE a.attgenerated WHEN '' THEN '' ELSE ' generated' END), E'\\n' ORDER BY a.attnum) \
                    FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                    WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped), \
                   (SELECT string_agg(format('constraint %I %s', conname, pg_get_constraintdef(oid)), E'\\n' ORDER BY conname) \
                    FROM pg_constraint WHERE conrelid = $1), \
                   (SELECT string_agg('index ' || pg_get_indexdef(indexrelid), E'\\n' ORDER BY pg_get_indexdef(indexrelid)) \
                    FROM pg_index WHERE indrelid = $1), \
                   (SELECT string_agg('trigger ' || pg_get_triggerdef(oid) || ' ' || tgenabled::text, E'\\n' ORDER BY tgname) \
                    FROM pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal AND NOT tgname = ANY($2)), \
                   (SELECT string_agg(format('policy %I %s %s %s', polname, polcmd::text, \
                            coalesce(pg_get_expr(polqual, polrelid), ''), coalesce(pg_get_expr(polwithcheck, polrelid), '')), \
                            E'\\n' ORDER BY polname) FROM pg_policy WHERE polrelid = $1), \
                   (SELECT string_agg('rule ' || pg_get_ruledef(oid), E'\\n' ORDER BY rulename) \
                    FROM pg_rewrite WHERE ev_class = $1))",
                &[&oid, &TRIGGERS.to_vec()],
            )
            .map_err(|e| {
                query_error(address, &format!("reading the shape of table '{table}'"), &e)
            })?
            .get(0);
        out.push(SchemaObject {
            kind: SHAPE_KIND.to_string(),
            name: table.clone(),
            table: table.clone(),
            sql,
        });
    }
    Ok(out)
}

/// The snapshot of a collection's tables and their change logs.
struct PgChangeSnapshot {
    /// `None` only while being dropped.
    inner: Option<PgSnapshot>,
    record: CollectionRecord,
    horizon: String,
    logs: Arc<BTreeMap<String, Captured>>,
    problems: Arc<BTreeMap<String, String>>,
}

impl Drop for PgChangeSnapshot {
    /// Its connections close off any async runtime (the blocking client
    /// cannot close on one, and the operations may drop a snapshot there).
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            std::thread::scope(|s| {
                s.spawn(move || drop(inner));
            });
        }
    }
}

impl PgChangeSnapshot {
    fn inner(&self) -> &PgSnapshot {
        self.inner
            .as_ref()
            .expect("a snapshot is open until dropped")
    }

    fn inner_mut(&mut self) -> &mut PgSnapshot {
        self.inner
            .as_mut()
            .expect("a snapshot is open until dropped")
    }

    /// The logged keys' rows of `table`, or with `deleted` the logged keys
    /// without one.
    fn scan_log(
        &mut self,
        table: &Table,
        deleted: bool,
        sink: &mut dyn FnMut(DataBatch) -> Result<()>,
    ) -> Result<()> {
        let log = self.log(table)?.log();
        let keys = self.key_table(table);
        self.inner_mut()
            .scan_logged(table, &keys, &log, deleted, sink)
    }

    fn log(&self, table: &Table) -> Result<&Captured> {
        self.logs.get(&table.name).ok_or_else(|| {
            Error::invalid(format!(
                "table '{}' of collection '{}' is not captured; take a full backup",
                table.name, self.record.name
            ))
        })
    }
}

impl Snapshot for PgChangeSnapshot {
    fn catalog(&self) -> &Catalog {
        self.inner().catalog()
    }

    fn point(&self) -> SnapshotPoint {
        self.inner().point()
    }

    fn count_rows(&mut self, table: &Table) -> Result<u64> {
        self.inner_mut().count_rows(table)
    }

    fn scan(&mut self, table: &Table, sink: &mut dyn FnMut(DataBatch) -> Result<()>) -> Result<()> {
        self.inner_mut().scan(table, sink)
    }

    fn pieces(&mut self, table: &Table, wanted: usize) -> Result<usize> {
        self.inner_mut().pieces(table, wanted)
    }

    fn scan_piece(
        &mut self,
        table: &Table,
        piece: usize,
        pieces: usize,
        sink: &mut dyn FnMut(DataBatch) -> Result<()>,
    ) -> Result<()> {
        self.inner_mut().scan_piece(table, piece, pieces, sink)
    }

    fn fork(&self) -> Result<Option<Box<dyn Snapshot>>> {
        self.inner().fork()
    }
}

impl ChangeSnapshot for PgChangeSnapshot {
    /// The snapshot itself (`pg_current_snapshot()` in it, as text): a log
    /// row is within it when the transaction that last wrote it is visible
    /// in it.
    fn horizon(&self) -> String {
        self.horizon.clone()
    }

    fn record(&self) -> &CollectionRecord {
        &self.record
    }

    fn fork_changes(&self) -> Result<Option<Box<dyn ChangeSnapshot>>> {
        Ok(self.inner().fork_pg()?.map(|inner| {
            Box::new(PgChangeSnapshot {
                inner: Some(inner),
                record: self.record.clone(),
                horizon: self.horizon.clone(),
                logs: self.logs.clone(),
                problems: self.problems.clone(),
            }) as Box<dyn ChangeSnapshot>
        }))
    }

    fn capture_problem(&self, table: &Table) -> Option<String> {
        self.problems.get(&table.name).cloned()
    }

    fn key_table(&self, table: &Table) -> Table {
        let key = self
            .logs
            .get(&table.name)
            .map(|c| c.key.clone())
            .unwrap_or_else(|| table.primary_key.clone());
        Table {
            name: table.name.clone(),
            kind: TableKind::Table,
            columns: key
                .iter()
                .filter_map(|k| table.columns.iter().find(|c| &c.name == k).cloned())
                .collect(),
            primary_key: key,
            hidden_key: None,
            rows: 0,
            parts: Vec::new(),
        }
    }

    fn count_changes(&mut self, table: &Table) -> Result<u64> {
        let log = self.log(table)?.log();
        let address = self.inner().address().clone();
        let n: i64 = self
            .inner_mut()
            .client()
            .query_one(&format!("SELECT count(*) FROM {log}"), &[])
            .map_err(|e| {
                query_error(
                    &address,
                    &format!("counting the changes of table '{}'", table.name),
                    &e,
                )
            })?
            .get(0);
        Ok(n as u64)
    }

    fn scan_upserts(
        &mut self,
        table: &Table,
        sink: &mut dyn FnMut(DataBatch) -> Result<()>,
    ) -> Result<()> {
        self.scan_log(table, false, sink)
    }

    fn scan_deletes(
        &mut self,
        table: &Table,
        sink: &mut dyn FnMut(DataBatch) -> Result<()>,
    ) -> Result<()> {
        self.scan_log(table, true, sink)
    }
}

/// Which archive table each pg_dump entry of a dump of chosen tables
/// belongs to.
pub(crate) struct Owners {
    /// `(schema, relation)` of the tables, their indexes and sequences.
    relations: BTreeMap<(String, String), String>,
    /// `(schema, name, archive name)` of the tables, longest name first.
    tables: Vec<(String, String, String)>,
}

impl Owners {
    /// Read the indexes and owned sequences of `tables` (archive name →
    /// PostgreSQL table).
    pub(crate) fn read(
        client: &mut postgres::Client,
        address: &Address,
        tables: &[(String, &catalog::Table)],
    ) -> Result<Owners> {
        let mut relations = BTreeMap::new();
        let mut list = Vec::new();
        let mut oids = Vec::new();
        let mut archive_of = BTreeMap::new();
        for (name, t) in tables {
            relations.insert((t.schema.clone(), t.name.clone()), name.clone());
            list.push((t.schema.clone(), t.name.clone(), name.clone()));
            oids.push(t.oid);
            archive_of.insert(t.oid, name.clone());
        }
        let rows = client
            .query(
                "SELECT i.indrelid, n.nspname::text, c.relname::text FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE i.indrelid = ANY($1) \
                 UNION ALL \
                 SELECT d.refobjid, n.nspname::text, c.relname::text FROM pg_depend d \
                 JOIN pg_class c ON c.oid = d.objid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass \
                   AND d.refobjid = ANY($1) AND c.relkind = 'S' AND d.deptype IN ('a', 'i')",
                &[&oids],
            )
            .map_err(|e| query_error(address, "reading the tables' indexes and sequences", &e))?;
        for r in rows {
            let owner: u32 = r.get(0);
            if let Some(name) = archive_of.get(&owner) {
                relations.insert((r.get(1), r.get(2)), name.clone());
            }
        }
        list.sort_by_key(|(_, n, _)| std::cmp::Reverse(n.len()));
        Ok(Owners {
            relations,
            tables: list,
        })
    }

    /// The archive table that `e` belongs to, when it can be told.
    pub(crate) fn of(&self, e: &Entry) -> Option<String> {
        let relation = |name: &str| {
            self.relations
                .get(&(e.schema.clone(), name.to_string()))
                .cloned()
        };
        // A table whose name `text` begins with, followed by `sep` (or
        // that is all of it).
        let table_prefix = |text: &str, sep: char| {
            self.tables
                .iter()
                .find(|(s, n, _)| {
                    s == &e.schema
                        && text
                            .strip_prefix(n.as_str())
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with(sep))
                })
                .map(|(_, _, a)| a.clone())
        };
        match e.kind.as_str() {
            "TABLE" | "INDEX" | "SEQUENCE" | "SEQUENCE OWNED BY" => relation(&e.name),
            "COMMENT" | "ACL" | "SECURITY LABEL" => {
                let (what, rest) = e.name.split_once(' ')?;
                match what {
                    "TABLE" | "INDEX" | "SEQUENCE" => relation(rest),
                    "COLUMN" => table_prefix(rest, '.'),
                    _ => rest
                        .rsplit_once(" ON ")
                        .and_then(|(_, t)| table_prefix(t, ' ')),
                }
            }
            _ => table_prefix(&e.name, ' '),
        }
    }
}
