//! Imports into a PostgreSQL database: chosen tables of any archive (an
//! export or a backup, of PostgreSQL or of another engine), created,
//! appended to or replaced in one transaction, so that a failure at any
//! point leaves the database as it was. A database that does not exist is
//! created under a temporary name (as a restore's) and renamed to the
//! target once the import has committed.
//!
//! Tables are made from the archive's neutral schema: each column gets the
//! PostgreSQL type of its logical type ([`pg_type`]), or, from a PostgreSQL
//! source, its declared type where that is a built-in type of the same
//! logical type; `NOT NULL` and the primary key come along. Rows go in with
//! `COPY`, in binary form where every column's type allows it.

use std::collections::BTreeMap;

use coffer::engine::{DataBatch, ImportMode, Restorer};
use coffer::manifest::{LogicalType, Manifest, Table};
use coffer::progress::Cancel;
use coffer::{Error, ErrorKind, Result};

use crate::address::Address;
use crate::catalog::quote_ident;
use crate::connect::query_error;
use crate::ddl::SESSION_SETTINGS;
use crate::load::{
    BINARY_HEADER, BINARY_TRAILER, BinaryColumn, binary_fits, encode_batch, encode_binary,
};
use crate::restore::{
    ArchiveSettings, admin_connection, column_types, drop_database, drop_leftovers,
    execute_while_in_use, lock_target, nonce, temporary_prefixes,
};

/// The PostgreSQL type of a logical type, for a table made from the
/// neutral schema.
pub fn pg_type(t: &LogicalType) -> String {
    match t {
        LogicalType::Bool => "boolean".into(),
        LogicalType::Int16 => "smallint".into(),
        LogicalType::Int32 => "integer".into(),
        LogicalType::Int64 => "bigint".into(),
        LogicalType::Float32 => "real".into(),
        LogicalType::Float64 => "double precision".into(),
        LogicalType::Utf8 => "text".into(),
        LogicalType::Binary => "bytea".into(),
        LogicalType::Date => "date".into(),
        LogicalType::Time => "time".into(),
        LogicalType::Timestamp => "timestamp".into(),
        LogicalType::TimestampTz => "timestamptz".into(),
        LogicalType::Decimal { precision, scale } => format!("numeric({precision},{scale})"),
        LogicalType::DecimalText => "numeric".into(),
        LogicalType::Interval => "interval".into(),
        LogicalType::Uuid => "uuid".into(),
        LogicalType::Json => "json".into(),
        LogicalType::List(e) => {
            let mut inner: &LogicalType = e;
            while let LogicalType::List(x) = inner {
                inner = x;
            }
            format!("{}[]", pg_type(inner))
        }
    }
}

/// Whether `declared` (a column's type as a PostgreSQL source declared
/// it) is a built-in type that holds exactly the values of logical type
/// `t`, so that an import keeps it.
fn keeps_declared(t: &LogicalType, declared: &str) -> bool {
    let d = declared.trim().to_ascii_lowercase();
    // Words, then at most one `(N)` or `(N,M)`: nothing else gets through.
    let (base, args) = match d.split_once('(') {
        Some((b, rest)) => match rest.strip_suffix(')') {
            Some(a) => (b.trim(), Some(a)),
            None => return false,
        },
        None => (d.as_str(), None),
    };
    let args_ok = args.is_none_or(|a| {
        let parts: Vec<&str> = a.split(',').map(str::trim).collect();
        parts.len() <= 2
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    let names: &[&str] = match t {
        LogicalType::Utf8 => &[
            "text",
            "character varying",
            "varchar",
            "character",
            "char",
            "bpchar",
            "name",
        ],
        LogicalType::Json => &["json", "jsonb"],
        LogicalType::Int64 => &["bigint", "oid"],
        LogicalType::Decimal { .. } | LogicalType::DecimalText => &["numeric"],
        LogicalType::Timestamp => &["timestamp without time zone", "timestamp"],
        LogicalType::TimestampTz => &["timestamp with time zone", "timestamptz"],
        LogicalType::Time => &["time without time zone", "time"],
        _ => &[],
    };
    args_ok && names.contains(&base)
}

/// A table rows are copied into: its `COPY` statement and whether (and
/// how) batches go in binary form.
pub(crate) struct CopyTarget {
    table: Table,
    qualified: String,
    copy_sql: String,
    binary: Option<Vec<BinaryColumn>>,
    /// Rows copied so far.
    pub(crate) rows: u64,
}

impl CopyTarget {
    /// Prepare to copy rows of the archive table `table` into `qualified`
    /// (quoted, qualified), which must have every column of the archive's.
    pub(crate) fn prepare(
        client: &mut postgres::Client,
        address: &Address,
        table: &Table,
        qualified: &str,
        shown: &str,
    ) -> Result<CopyTarget> {
        let types = column_types(client, address, qualified)?;
        for c in &table.columns {
            if !types.contains_key(&c.name) {
                return Err(Error::invalid(format!(
                    "table {shown} in {address} has no column '{}', which the archive's rows have; nothing was written",
                    c.name
                )));
            }
        }
        let binary = table
            .columns
            .iter()
            .map(|c| BinaryColumn::of(&c.logical_type, types[&c.name]))
            .collect();
        let cols: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
        Ok(CopyTarget {
            table: table.clone(),
            copy_sql: format!("COPY {qualified} ({}) FROM STDIN", cols.join(", ")),
            qualified: qualified.to_string(),
            binary,
            rows: 0,
        })
    }

    /// Copy one batch in; returns the rows the server took.
    pub(crate) fn copy(
        &mut self,
        client: &mut postgres::Client,
        address: &Address,
        batch: &DataBatch,
        coerced: Option<&mut u64>,
        buf: &mut Vec<u8>,
    ) -> Result<u64> {
        use std::io::Write;
        buf.clear();
        let binary = match &self.binary {
            Some(plan) if binary_fits(batch) => {
                buf.extend_from_slice(BINARY_HEADER);
                encode_binary(&self.table, plan, batch, self.rows, coerced, buf)?;
                buf.extend_from_slice(BINARY_TRAILER);
                true
            }
            _ => {
                encode_batch(&self.table, batch, self.rows, coerced, buf)?;
                false
            }
        };
        let sql = if binary {
            format!("{} (FORMAT binary)", self.copy_sql)
        } else {
            self.copy_sql.clone()
        };
        let doing = format!("loading table {}", self.qualified);
        let mut copy = client
            .copy_in(&sql)
            .map_err(|e| query_error(address, &doing, &e))?;
        copy.write_all(buf).map_err(|e| {
            Error::new(
                ErrorKind::Engine,
                format!("{doing} in {address} failed: {e}"),
            )
        })?;
        let n = copy
            .finish()
            .map_err(|e| query_error(address, &doing, &e))?;
        self.rows += n;
        Ok(n)
    }
}

/// A database that did not exist, built under a temporary name and renamed
/// to the target when the work in it has committed.
pub(crate) struct NewDatabase {
    admin: postgres::Client,
    admin_address: Address,
    name: String,
    server_version: u32,
}

/// An import into a PostgreSQL database, in one transaction.
pub struct PgImporter {
    /// The database as the user named it (messages name it, even while the
    /// rows go into a new database's temporary name).
    target: Address,
    new_database: Option<NewDatabase>,
    client: Option<postgres::Client>,
    mode: ImportMode,
    cancel: Cancel,
    targets: BTreeMap<String, CopyTarget>,
    buf: Vec<u8>,
    /// Values coerced so far, when asked to (`Restorer::coerce`).
    coerced: Option<u64>,
}

impl PgImporter {
    /// An importer into the database at `target`; one that does not exist
    /// is created (under a temporary name until the import commits).
    pub fn open(target: &Address, mode: ImportMode, cancel: Cancel) -> Result<PgImporter> {
        let (client, new_database) = open_target(target, "import into")?;
        let mut importer = PgImporter {
            target: target.clone(),
            new_database,
            client: Some(client),
            mode,
            cancel,
            targets: BTreeMap::new(),
            buf: Vec::with_capacity(1 << 20),
            coerced: None,
        };
        importer.run(
            &format!("{SESSION_SETTINGS}; BEGIN"),
            "beginning the import",
        )?;
        Ok(importer)
    }

    fn client(&mut self) -> &mut postgres::Client {
        self.client
            .as_mut()
            .expect("the import's connection is open until it ends")
    }
}

/// Connect to the database `target`; one that does not exist is created
/// under a temporary name (`doing`: what it is created to do, for
/// messages), to be renamed by [`rename_new_database`].
pub(crate) fn open_target(
    target: &Address,
    doing: &str,
) -> Result<(postgres::Client, Option<NewDatabase>)> {
    match target.connect() {
        Ok(c) => Ok((c.client, None)),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let (mut admin, admin_address, server_version) = admin_connection(target)?;
            // Held until the new database is renamed in (or dropped): the
            // leftovers of killed runs, which nobody uses, can go.
            lock_target(&mut admin, &admin_address, target)?;
            drop_leftovers(&mut admin, &admin_address, server_version, target.dbname())?;
            if let Ok(c) = target.connect() {
                // Created by another run while this one waited.
                return Ok((c.client, None));
            }
            let [prefix, _] = temporary_prefixes(target.dbname());
            let name = format!("{prefix}{:08x}", nonce());
            admin
                .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
                .map_err(|e| {
                    query_error(
                        &admin_address,
                        &format!("creating the database {target} to {doing}"),
                        &e,
                    )
                })?;
            let address = target.with_dbname(&name);
            let new = NewDatabase {
                admin,
                admin_address,
                name,
                server_version,
            };
            match address.connect() {
                Ok(c) => Ok((c.client, Some(new))),
                Err(e) => {
                    drop_new_database(new);
                    Err(e)
                }
            }
        }
        Err(e) => Err(e),
    }
}

/// Rename a new database to the target, once complete (every session to
/// it closed); on failure it is dropped.
pub(crate) fn rename_new_database(mut new: NewDatabase, target: &Address) -> Result<()> {
    let sql = format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(&new.name),
        quote_ident(target.dbname())
    );
    if let Err(e) = execute_while_in_use(&mut new.admin, &sql) {
        let err = query_error(
            &new.admin_address,
            &format!("renaming the new database to {}", target.dbname()),
            &e,
        );
        drop_new_database(new);
        return Err(err);
    }
    Ok(())
}

/// Drop a database that was created and not finished.
pub(crate) fn drop_new_database(mut new: NewDatabase) {
    if let Err(e) = drop_database(&mut new.admin, new.server_version, &new.name) {
        tracing::warn!(
            "dropping {} on {} after a failed import: {e}",
            new.name,
            new.admin_address
        );
    }
}

impl Drop for PgImporter {
    fn drop(&mut self) {
        // An unfinished transaction rolls back when its connection closes.
        drop(self.client.take());
        if let Some(new) = self.new_database.take() {
            drop_new_database(new);
        }
    }
}

impl PgImporter {
    fn exists(&mut self, schema: &str, name: &str) -> Result<bool> {
        let address = self.target.clone();
        Ok(self
            .client()
            .query_opt(
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
                &[&schema, &name],
            )
            .map_err(|e| query_error(&address, "looking for the table", &e))?
            .is_some())
    }

    fn run(&mut self, sql: &str, doing: &str) -> Result<()> {
        let address = self.target.clone();
        self.client()
            .batch_execute(sql)
            .map_err(|e| query_error(&address, doing, &e))
    }
}

/// `(schema, name)` of an archive table in PostgreSQL: a PostgreSQL
/// archive's own record of it, otherwise the table's name in `public`.
fn target_name(
    manifest: &Manifest,
    settings: Option<&ArchiveSettings>,
    table: &str,
) -> (String, String) {
    if manifest.source.engine == "postgres"
        && let Some(s) = settings
        && let Some(location) = s.location_of(table)
    {
        return location;
    }
    ("public".into(), table.into())
}

fn create_sql(manifest: &Manifest, t: &Table, qualified: &str) -> String {
    let from_postgres = manifest.source.engine == "postgres";
    let mut cols: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            let ty = if from_postgres && keeps_declared(&c.logical_type, &c.declared_type) {
                c.declared_type.clone()
            } else {
                pg_type(&c.logical_type)
            };
            let null = if c.nullable { "" } else { " NOT NULL" };
            format!("{} {ty}{null}", quote_ident(&c.name))
        })
        .collect();
    if !t.primary_key.is_empty() {
        let pk: Vec<String> = t.primary_key.iter().map(|c| quote_ident(c)).collect();
        cols.push(format!("PRIMARY KEY ({})", pk.join(", ")));
    }
    format!("CREATE TABLE {qualified} ({})", cols.join(", "))
}

impl Restorer for PgImporter {
    fn coerce(&mut self) {
        self.coerced.get_or_insert(0);
    }

    fn coerced(&self) -> u64 {
        self.coerced.unwrap_or(0)
    }

    fn begin(&mut self, manifest: &Manifest, tables: &[&Table]) -> Result<()> {
        let settings = ArchiveSettings::of(&manifest.settings).ok();
        for t in tables {
            self.cancel.check()?;
            let (schema, name) = target_name(manifest, settings.as_ref(), &t.name);
            let qualified = format!("{}.{}", quote_ident(&schema), quote_ident(&name));
            let shown = format!("{schema}.{name}");
            let exists = self.exists(&schema, &name)?;
            match (self.mode, exists) {
                (ImportMode::Create, true) => {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "table {shown} already exists in {}; import with --mode append to add the rows or --mode replace to replace it",
                            self.target
                        ),
                    ));
                }
                (ImportMode::Replace, true) => {
                    self.run(
                        &format!("DROP TABLE {qualified}"),
                        &format!("dropping table {shown}"),
                    )?;
                }
                _ => {}
            }
            // A table that is not there is created, in every mode.
            if !exists || self.mode == ImportMode::Replace {
                self.run(
                    &format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&schema)),
                    &format!("creating schema {schema}"),
                )?;
                self.run(
                    &create_sql(manifest, t, &qualified),
                    &format!("creating table {shown}"),
                )?;
            }
            let address = self.target.clone();
            let target = CopyTarget::prepare(self.client(), &address, t, &qualified, &shown)?;
            self.targets.insert(t.name.clone(), target);
        }
        Ok(())
    }

    fn load(&mut self, table: &Table, batch: &DataBatch) -> Result<()> {
        let target = self
            .targets
            .get_mut(&table.name)
            .ok_or_else(|| Error::internal(format!("table '{}' was not begun", table.name)))?;
        let client = self
            .client
            .as_mut()
            .ok_or_else(|| Error::internal("the import's connection is closed"))?;
        target.copy(
            client,
            &self.target,
            batch,
            self.coerced.as_mut(),
            &mut self.buf,
        )?;
        Ok(())
    }

    fn finish(mut self: Box<Self>, _manifest: &Manifest, tables: &[&Table]) -> Result<()> {
        for t in tables {
            let got = self.targets.get(&t.name).map_or(0, |x| x.rows);
            if got != t.rows {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "table '{}' got {got} rows, but the archive's manifest says {}; nothing was imported",
                        t.name, t.rows
                    ),
                ));
            }
        }
        self.cancel.check()?;
        let names: Vec<String> = self.targets.values().map(|t| t.qualified.clone()).collect();
        self.run("COMMIT", "committing the import")?;
        // Statistics for the planner, after the commit (ANALYZE of a table
        // is not part of the import's all or nothing).
        for q in names {
            if let Err(e) = self.client().batch_execute(&format!("ANALYZE {q}")) {
                tracing::warn!("analyzing {q} after the import: {e}");
            }
        }
        drop(self.client.take());
        // A new database: renamed to the target now that it is complete.
        if let Some(new) = self.new_database.take() {
            rename_new_database(new, &self.target)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types() {
        assert_eq!(
            pg_type(&LogicalType::Decimal {
                precision: 12,
                scale: 3
            }),
            "numeric(12,3)"
        );
        assert_eq!(
            pg_type(&LogicalType::List(Box::new(LogicalType::List(Box::new(
                LogicalType::Int32
            ))))),
            "integer[]"
        );
        assert!(keeps_declared(&LogicalType::Utf8, "character varying(5)"));
        assert!(keeps_declared(&LogicalType::Json, "jsonb"));
        assert!(!keeps_declared(&LogicalType::Utf8, "shop.mood"));
        assert!(!keeps_declared(&LogicalType::Utf8, "text; DROP TABLE x"));
        assert!(!keeps_declared(&LogicalType::Utf8, "varchar(5), evil int"));
        assert!(keeps_declared(&LogicalType::DecimalText, "numeric(50, 10)"));
        assert!(!keeps_declared(&LogicalType::Int32, "integer"));
    }
}
