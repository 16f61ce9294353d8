//! [`PostgresEngine`]: the PostgreSQL engine as the operations see it.
//!
//! One exported snapshot shared by every scanner, each table read with
//! binary `COPY` into Arrow columns of its natural logical types
//! ([`crate::scan`]), so `coffer export` writes Parquet and CSV that other
//! tools read as they are; a backup keeps beside the rows the schema as
//! pg_dump writes it, object by object ([`crate::ddl`]), the database's
//! locale, sequence values and which materialized views hold rows
//! ([`crate::restore::ArchiveSettings`]), and restores into a new database
//! ([`crate::restore`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer::engine::{
    Address as DbAddress, Catalog, DataBatch, Engine, Restorer, Snapshot, SnapshotPoint,
};
use coffer::manifest::{Column, SchemaObject, Table, TableKind};
use coffer::progress::Cancel;
use coffer::{Error, Result};

use crate::address::{Address, is_postgres_url};
use crate::catalog::{self, read_tables};
use crate::connect::query_error;
use crate::copy::BinaryCopyReader;
use crate::ddl;
use crate::restore::{ArchiveSettings, PgRestorer, SequenceState};
use crate::scan::{BatchBuilder, ColumnPlan, copy_sql, plan_column};
use crate::schema::{DumpOptions, PgDump};
use crate::snapshot::{CtidRange, ExportedSnapshot, SnapshotWorker, split_pages};

/// The PostgreSQL engine.
#[derive(Debug, Default, Clone, Copy)]
pub struct PostgresEngine;

/// The PostgreSQL engine, for a [`coffer::engine::Registry`].
pub fn engine() -> Arc<dyn Engine> {
    Arc::new(PostgresEngine)
}

/// The fewest pages (8 KiB each) a piece of a table split across scanners
/// has: smaller tables are read whole.
const MIN_PIECE_PAGES: u64 = 2048;

/// How long a snapshot waits for the lock on one table (another session
/// altering it) before it gives up, naming the table.
const LOCK_TIMEOUT_MS: u32 = 10_000;

impl Engine for PostgresEngine {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn address(&self, text: &str) -> Option<Result<DbAddress>> {
        if !is_postgres_url(text) {
            return None;
        }
        Some(Address::parse(text).map(|a| {
            for w in a.warnings() {
                tracing::warn!("{w}");
            }
            DbAddress::new(
                text,
                a.to_string(),
                a.dbname(),
                a.default_repository().to_string_lossy(),
            )
        }))
    }

    fn address_forms(&self) -> &'static str {
        "postgres://USER@HOST:PORT/DATABASE"
    }

    fn snapshot(&self, db: &str) -> Result<Box<dyn Snapshot>> {
        Ok(Box::new(PgSnapshot::open(&Address::parse(db)?)?))
    }

    fn restorer(&self, target: &str, replace: bool, cancel: Cancel) -> Result<Box<dyn Restorer>> {
        let address = Address::parse(target)?;
        Ok(Box::new(PgRestorer::open(&address, replace, cancel)?))
    }

    fn importer(
        &self,
        target: &str,
        mode: coffer::engine::ImportMode,
        cancel: Cancel,
    ) -> Result<Box<dyn Restorer>> {
        let address = Address::parse(target)?;
        Ok(Box::new(crate::import::PgImporter::open(
            &address, mode, cancel,
        )?))
    }

    fn export_objects(&self, _objects: &[SchemaObject], _tables: &[&str]) -> Vec<SchemaObject> {
        // The catalog lists no DDL yet (no PostgreSQL importer reads it);
        // imports elsewhere build tables from the neutral schema.
        Vec::new()
    }

    /// `schema.name` is in `schema`; a name without a dot is in `public`
    /// (see [`archive_name`]).
    fn schema_of(&self, table: &str) -> Option<String> {
        Some(match table.split_once('.') {
            Some((schema, _)) => schema.to_string(),
            None => "public".to_string(),
        })
    }

    /// A collection's backups record each table's shape as read from the
    /// catalog (an object of kind `shape`); see [`crate::capture`].
    fn shape(&self, objects: &[SchemaObject], table: &str) -> Vec<SchemaObject> {
        objects
            .iter()
            .filter(|o| o.table == table && o.kind == crate::capture::SHAPE_KIND)
            .cloned()
            .collect()
    }

    fn capture(&self) -> Option<&dyn coffer::engine::ChangeCapture> {
        Some(&crate::capture::PgCapture)
    }
}

/// A table as the snapshot reads it.
#[derive(Debug, Clone)]
struct Source {
    pg: catalog::Table,
    plans: Vec<ColumnPlan>,
}

/// The connection a snapshot reads through.
enum Link {
    /// The transaction that exported the snapshot.
    Leader(ExportedSnapshot),
    /// A connection that imported it.
    Worker(SnapshotWorker),
}

/// One exported snapshot of a PostgreSQL database.
pub struct PgSnapshot {
    link: Link,
    address: Address,
    catalog: Arc<Catalog>,
    sources: Arc<BTreeMap<String, Source>>,
    point: SnapshotPoint,
}

/// What a backup keeps of the schema, or why it cannot.
enum Schema {
    Kept(Vec<SchemaObject>, ArchiveSettings),
    Refused(String),
}

/// What a snapshot covers: which tables, and how much of the schema.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    /// The archive names of the tables it reads; `None`: every table.
    pub tables: Option<Vec<String>>,
    /// Run pg_dump for the schema (of the whole database, or of only
    /// [`Scope::tables`] and what belongs to them); without it the
    /// snapshot carries no schema objects.
    pub dump: bool,
}

impl Scope {
    /// Every table, with pg_dump's schema: a backup or an export.
    fn database() -> Scope {
        Scope {
            tables: None,
            dump: true,
        }
    }
}

/// The schema objects (pg_dump's, in the snapshot) and settings a backup
/// keeps.
fn schema(
    leader: &mut ExportedSnapshot,
    address: &Address,
    sources: &BTreeMap<String, Source>,
    scope: &Scope,
) -> Result<Schema> {
    let client = leader.client();
    let large: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_largeobject_metadata",
            &[],
        )
        .map_err(|e| query_error(address, "counting large objects", &e))?
        .get(0);
    // A backup of chosen tables (a collection's) holds no large objects.
    if large > 0 && scope.tables.is_none() {
        return Ok(Schema::Refused(format!(
            "{address} holds {large} large object(s) (pg_largeobject), which coffer does not back up yet: \
             export its tables with `coffer export`, or move the large objects into bytea columns"
        )));
    }
    let provider = if leader.server_version() >= 150000 {
        "CASE WHEN datlocprovider = 'i' THEN daticulocale END"
    } else {
        "NULL::text"
    };
    let row = leader
        .client()
        .query_one(
            &format!(
                "SELECT pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text, {provider}::text \
                 FROM pg_database WHERE datname = current_database()"
            ),
            &[],
        )
        .map_err(|e| query_error(address, "reading the database's locale", &e))?;
    let mut settings = ArchiveSettings {
        encoding: row.get(0),
        lc_collate: row.get(1),
        lc_ctype: row.get(2),
        icu_locale: row.get(3),
        ..ArchiveSettings::default()
    };
    let populated: Vec<(String, String)> = leader
        .client()
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'm' AND c.relispopulated",
            &[],
        )
        .map_err(|e| query_error(address, "reading materialized views", &e))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let owners: Option<Vec<(String, String)>> = scope.tables.as_ref().map(|_| {
        sources
            .values()
            .map(|s| (s.pg.schema.clone(), s.pg.name.clone()))
            .collect()
    });
    settings.sequences = catalog::read_sequences(leader.client(), address, owners.as_deref())?
        .into_iter()
        .map(|s| SequenceState {
            schema: s.schema,
            name: s.name,
            last_value: s.last_value,
            is_called: s.is_called,
        })
        .collect();
    settings.tables = sources
        .iter()
        .map(|(k, s)| (k.clone(), (s.pg.schema.clone(), s.pg.name.clone())))
        .collect();
    if !scope.dump {
        return Ok(Schema::Kept(Vec::new(), settings));
    }
    let dump = PgDump::find(address, leader.server_version())?;
    let options = DumpOptions {
        tables: owners.clone().unwrap_or_default(),
        ..DumpOptions::default()
    };
    let ddl = dump.dump_schema(address, Some(leader.id()), options)?;
    let mut pre = ddl::entries(&ddl.pre_data);
    let mut post = ddl::entries(&ddl.post_data);
    if scope.tables.is_some() {
        // Never coffer's own change capture.
        post.retain(|e| !crate::capture::is_capture_entry(e));
        pre.retain(|e| !crate::capture::is_capture_entry(e));
    }
    settings.pre_data_objects = pre.len();
    // Materialized views refresh in the order they were created in.
    settings.populated_matviews = pre
        .iter()
        .filter(|e| e.kind == "MATERIALIZED VIEW")
        .map(|e| (e.schema.clone(), e.name.clone()))
        .filter(|k| populated.contains(k))
        .collect();
    let table_of: BTreeMap<(String, String), String> = sources
        .iter()
        .map(|(k, s)| ((s.pg.schema.clone(), s.pg.name.clone()), k.clone()))
        .collect();
    // Which table each object belongs to: only a table's own entry in a
    // whole-database backup; every object of a backup of chosen tables
    // that can be told (a restore of some of them takes theirs).
    let owner_of = match scope.tables {
        Some(_) => {
            let list: Vec<(String, &catalog::Table)> =
                sources.iter().map(|(k, s)| (k.clone(), &s.pg)).collect();
            Some(crate::capture::Owners::read(
                leader.client(),
                address,
                &list,
            )?)
        }
        None => None,
    };
    let objects = pre
        .into_iter()
        .chain(post)
        .map(|e| {
            let key = (e.schema.clone(), e.name.clone());
            let table = match &owner_of {
                Some(owners) => owners.of(&e).unwrap_or_default(),
                None if e.kind == "TABLE" => table_of.get(&key).cloned().unwrap_or_default(),
                None => String::new(),
            };
            let name = if e.schema == "-" || e.schema == "public" {
                e.name
            } else {
                format!("{}.{}", e.schema, e.name)
            };
            SchemaObject {
                kind: e.kind.to_lowercase(),
                name,
                table,
                sql: e.sql,
            }
        })
        .collect();
    Ok(Schema::Kept(objects, settings))
}

/// `(schema, name)` of the tables with rows of their own that the role
/// may read, as the catalog has them now.
fn lockable_tables(address: &Address) -> Result<Vec<(String, String)>> {
    let mut client = address.connect()?.client;
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND has_table_privilege(c.oid, 'SELECT') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp_' \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                               AND d.objid = c.oid AND d.deptype = 'e') \
             ORDER BY 1, 2",
            &[],
        )
        .map_err(|e| query_error(address, "listing the tables", &e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The name a table has in the archive: `schema.name`, or `name` alone in
/// the schema `public`.
pub(crate) fn archive_name(t: &catalog::Table) -> String {
    if t.schema == "public" {
        t.name.clone()
    } else {
        format!("{}.{}", t.schema, t.name)
    }
}

impl PgSnapshot {
    /// Export a snapshot of the database at `address` and read its catalog.
    ///
    /// The tables that exist (and that the role may read) are locked
    /// before the snapshot is taken: `TRUNCATE` is not MVCC-safe, and one
    /// that committed between the snapshot and the locks would make its
    /// table look empty beside the others' rows of before. pg_dump locks
    /// after; a table created in between is locked after the snapshot too.
    pub fn open(address: &Address) -> Result<PgSnapshot> {
        let tables = lockable_tables(address)?;
        let leader = match ExportedSnapshot::begin_locked(address, &tables, LOCK_TIMEOUT_MS) {
            Ok(leader) => leader,
            // A table dropped since it was listed, say: lock after.
            Err(e) if e.kind() == coffer::ErrorKind::NotFound => {
                tracing::debug!("locking before the snapshot: {e}");
                ExportedSnapshot::begin(address)?
            }
            Err(e) => return Err(e),
        };
        PgSnapshot::open_in(leader, address, &Scope::database())
    }

    /// Read the catalog of what `scope` covers in the snapshot `leader`
    /// exported.
    pub(crate) fn open_in(
        mut leader: ExportedSnapshot,
        address: &Address,
        scope: &Scope,
    ) -> Result<PgSnapshot> {
        let tables = read_tables(leader.client(), address)?;
        let mut with_rows: Vec<catalog::Table> =
            tables.into_iter().filter(|t| t.has_storage()).collect();
        if let Some(wanted) = &scope.tables {
            with_rows.retain(|t| wanted.contains(&archive_name(t)));
            for name in wanted {
                if !with_rows.iter().any(|t| &archive_name(t) == name) {
                    return Err(Error::not_found(format!(
                        "table '{name}' is not in {address} (dropped or renamed?)"
                    )));
                }
            }
        }
        catalog::check_readable(&with_rows, address)?;
        let names: Vec<(String, String)> = with_rows
            .iter()
            .map(|t| (t.schema.clone(), t.name.clone()))
            .collect();
        leader.lock_tables(&names, LOCK_TIMEOUT_MS)?;
        let version: String = leader
            .client()
            .query_one("SELECT current_setting('server_version')", &[])
            .map_err(|e| query_error(address, "reading the server version", &e))?
            .get(0);
        let mut sources = BTreeMap::new();
        let mut out = Vec::new();
        for t in with_rows {
            let plans: Vec<ColumnPlan> = t.copy_columns().map(plan_column).collect();
            let name = archive_name(&t);
            let columns = t
                .copy_columns()
                .zip(&plans)
                .map(|(c, p)| Column {
                    name: c.name.clone(),
                    logical_type: p.logical_type.clone(),
                    declared_type: c.type_sql.clone(),
                    nullable: !c.not_null,
                    text_format: None,
                })
                .collect();
            let table = Table {
                name: name.clone(),
                // coffer's own (a collection's capture): in a backup, left
                // out of an export unless named.
                kind: if t.schema == crate::capture::SCHEMA {
                    TableKind::Internal
                } else {
                    TableKind::Table
                },
                columns,
                primary_key: t.primary_key.clone(),
                hidden_key: None,
                rows: 0,
                parts: Vec::new(),
            };
            if sources
                .insert(name.clone(), Source { pg: t, plans })
                .is_some()
            {
                return Err(Error::invalid(format!(
                    "{address} has two tables that coffer would both call '{name}' (one named with a dot in the schema public); rename one of them"
                )));
            }
            out.push(table);
        }
        let moment = leader.moment().clone();
        let (objects, settings, backup_refusal) =
            match schema(&mut leader, address, &sources, scope) {
                Ok(Schema::Kept(objects, settings)) => {
                    let mut map = serde_json::Map::new();
                    map.insert(
                        ArchiveSettings::KEY.into(),
                        serde_json::to_value(settings)
                            .map_err(|e| Error::internal(e.to_string()))?,
                    );
                    (objects, map, None)
                }
                Ok(Schema::Refused(why)) => (Vec::new(), serde_json::Map::new(), Some(why)),
                // Without pg_dump an export still works; a backup says why not.
                Err(e) => (Vec::new(), serde_json::Map::new(), Some(e.to_string())),
            };
        let catalog = Catalog {
            engine_version: version,
            database: address.dbname().to_string(),
            settings,
            objects,
            tables: out,
            unreadable: BTreeMap::new(),
            backup_refusal,
        };
        Ok(PgSnapshot {
            link: Link::Leader(leader),
            address: address.clone(),
            catalog: Arc::new(catalog),
            sources: Arc::new(sources),
            point: SnapshotPoint {
                time: moment.at,
                position: moment.wal_lsn,
            },
        })
    }

    /// The snapshot's connection (inside its transaction).
    pub(crate) fn client(&mut self) -> &mut postgres::Client {
        match &mut self.link {
            Link::Leader(l) => l.client(),
            Link::Worker(w) => w.client(),
        }
    }

    fn source(&self, table: &Table) -> Result<Source> {
        self.sources.get(&table.name).cloned().ok_or_else(|| {
            Error::invalid(format!("table '{}' is not in {}", table.name, self.address))
        })
    }

    /// The database it reads.
    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    /// The PostgreSQL table behind an archive table.
    pub(crate) fn pg_table(&self, table: &str) -> Option<&catalog::Table> {
        self.sources.get(table).map(|s| &s.pg)
    }

    /// Record the keys of a collection's change logs in the settings.
    pub(crate) fn set_keys(&mut self, keys: BTreeMap<String, Vec<String>>) -> Result<()> {
        let catalog = Arc::make_mut(&mut self.catalog);
        let mut settings = ArchiveSettings::of(&catalog.settings).unwrap_or_default();
        settings.keys = keys;
        catalog.settings.insert(
            ArchiveSettings::KEY.into(),
            serde_json::to_value(settings).map_err(|e| Error::internal(e.to_string()))?,
        );
        Ok(())
    }

    /// Add schema objects to the catalog (a collection's shapes).
    pub(crate) fn add_objects(&mut self, more: Vec<SchemaObject>) {
        Arc::make_mut(&mut self.catalog).objects.extend(more);
    }

    /// Another connection in the same snapshot, as [`Snapshot::fork`].
    pub(crate) fn fork_pg(&self) -> Result<Option<PgSnapshot>> {
        let Link::Leader(leader) = &self.link else {
            return Ok(None);
        };
        Ok(Some(PgSnapshot {
            link: Link::Worker(leader.worker()?),
            address: self.address.clone(),
            catalog: self.catalog.clone(),
            sources: self.sources.clone(),
            point: self.point.clone(),
        }))
    }

    /// Read the rows of `table` whose keys (`key`, in key order) the
    /// change log `log` lists: with `deleted`, the logged keys that have no
    /// row (as rows of `keys`, the key as a table); otherwise the rows of
    /// the logged keys that exist. In key order.
    pub(crate) fn scan_logged(
        &mut self,
        table: &Table,
        keys: &Table,
        log: &str,
        deleted: bool,
        sink: &mut dyn FnMut(DataBatch) -> Result<()>,
    ) -> Result<()> {
        let source = self.source(table)?;
        let key: Vec<String> = keys.columns.iter().map(|c| c.name.clone()).collect();
        let matches = key
            .iter()
            .map(|k| format!("t.{0} = l.{0}", crate::catalog::quote_ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let order = key
            .iter()
            .map(|k| format!("l.{}", crate::catalog::quote_ident(k)))
            .collect::<Vec<_>>()
            .join(", ");
        let (sql, plans, what) = if deleted {
            let plans: Vec<ColumnPlan> = key
                .iter()
                .filter_map(|k| source.plans.iter().find(|p| &p.name == k).cloned())
                .collect();
            let sql = format!(
                "COPY (SELECT {} FROM {log} l WHERE NOT EXISTS (SELECT 1 FROM ONLY {} t WHERE {matches}) ORDER BY {order}) TO STDOUT (FORMAT binary)",
                crate::scan::select_fields(&plans, "l.").join(", "),
                source.pg.sql_name()
            );
            (
                sql,
                plans,
                format!("the deleted keys of table {}", table.name),
            )
        } else {
            let sql = format!(
                "COPY (SELECT {} FROM ONLY {} t JOIN {log} l ON {matches} ORDER BY {order}) TO STDOUT (FORMAT binary)",
                crate::scan::select_fields(&source.plans, "t.").join(", "),
                source.pg.sql_name()
            );
            (
                sql,
                source.plans.clone(),
                format!("the changed rows of table {}", table.name),
            )
        };
        let shape = if deleted { keys } else { table };
        self.copy_batches(&sql, shape, &plans, &what, sink)
    }

    /// Run the binary `COPY … TO STDOUT` `sql`, whose columns are `shape`'s
    /// read as `plans` say, handing its rows on in batches.
    fn copy_batches(
        &mut self,
        sql: &str,
        shape: &Table,
        plans: &[ColumnPlan],
        what: &str,
        sink: &mut dyn FnMut(DataBatch) -> Result<()>,
    ) -> Result<()> {
        let address = self.address.clone();
        let reader = self
            .client()
            .copy_out(sql)
            .map_err(|e| query_error(&address, &format!("reading {what}"), &e))?;
        let mut rows = BinaryCopyReader::new(reader, what.to_string())?;
        let mut batch = BatchBuilder::new(shape, plans);
        while let Some(row) = rows.next_row()? {
            batch.push(&row, what)?;
            if batch.full() {
                sink(batch.take()?)?;
            }
        }
        if !batch.is_empty() {
            sink(batch.take()?)?;
        }
        Ok(())
    }

    /// Read `table`'s rows (on the pages of `range`, or all) in batches.
    fn scan_range(
        &mut self,
        table: &Table,
        range: Option<CtidRange>,
        sink: &mut dyn FnMut(DataBatch) -> Result<()>,
    ) -> Result<()> {
        let source = self.source(table)?;
        let what = format!("table {}", table.name);
        let sql = copy_sql(&source.pg, &source.plans, range);
        self.copy_batches(&sql, table, &source.plans, &what, sink)
    }
}

impl Snapshot for PgSnapshot {
    fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn point(&self) -> SnapshotPoint {
        self.point.clone()
    }

    fn count_rows(&mut self, table: &Table) -> Result<u64> {
        let source = self.source(table)?;
        let sql = format!("SELECT count(*) FROM ONLY {}", source.pg.sql_name());
        let address = self.address.clone();
        let n: i64 = self
            .client()
            .query_one(&sql, &[])
            .map_err(|e| {
                query_error(
                    &address,
                    &format!("counting the rows of {}", table.name),
                    &e,
                )
            })?
            .get(0);
        Ok(n as u64)
    }

    fn scan(&mut self, table: &Table, sink: &mut dyn FnMut(DataBatch) -> Result<()>) -> Result<()> {
        self.scan_range(table, None, sink)
    }

    fn pieces(&mut self, table: &Table, wanted: usize) -> Result<usize> {
        let source = self.source(table)?;
        Ok(split_pages(source.pg.pages, wanted, MIN_PIECE_PAGES).len())
    }

    fn scan_piece(
        &mut self,
        table: &Table,
        piece: usize,
        pieces: usize,
        sink: &mut dyn FnMut(DataBatch) -> Result<()>,
    ) -> Result<()> {
        let source = self.source(table)?;
        let ranges = split_pages(source.pg.pages, pieces, MIN_PIECE_PAGES);
        let range = *ranges.get(piece).ok_or_else(|| {
            Error::internal(format!(
                "piece {piece} of {pieces} of table '{}' does not exist",
                table.name
            ))
        })?;
        self.scan_range(table, Some(range), sink)
    }

    fn fork(&self) -> Result<Option<Box<dyn Snapshot>>> {
        Ok(self.fork_pg()?.map(|s| Box::new(s) as Box<dyn Snapshot>))
    }
}
