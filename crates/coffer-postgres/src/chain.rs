//! Restoring a collection's chain of backups into PostgreSQL, in one
//! transaction: all of it is visible at the end, or none of it.
//!
//! Into an existing database the tables are created (with `--force`, the
//! existing ones dropped first) inside that transaction; a database that
//! does not exist is built under a temporary name and renamed to the
//! target after the commit, as an import does.
//!
//! 1. The full backup's pre-data objects of the chosen tables (their
//!    definitions, owned sequences, defaults), each statement checked as a
//!    restore checks them; owners and grants are left out: the tables
//!    belong to the role that restores them.
//! 2. The full backup's rows, with `COPY`.
//! 3. Its indexes and key constraints (the changes are applied with them in
//!    place).
//! 4. Per incremental and table: the deleted keys, copied into a temporary
//!    table and deleted by a join; the upserted rows, copied into another
//!    and, once all of the table's are there, their keys deleted and the
//!    rows inserted — so a unique constraint never sees half of a swap of
//!    values between two rows.
//! 5. Foreign keys (one that references a table not restored is left out,
//!    with a warning), triggers, rules, policies, comments; sequences set
//!    to their values at the restored backup point; commit; `ANALYZE`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use coffer::engine::{ChainRestorer, DataBatch};
use coffer::manifest::{Manifest, SchemaObject, Table, TableKind};
use coffer::progress::{Cancel, Progress};
use coffer::{Error, ErrorKind, Result};

use crate::address::Address;
use crate::capture::SHAPE_KIND;
use crate::catalog::quote_ident;
use crate::connect::query_error;
use crate::ddl::{self, Entry, SESSION_SETTINGS};
use crate::import::{CopyTarget, NewDatabase, drop_new_database, open_target, rename_new_database};
use crate::restore::ArchiveSettings;

/// One temporary table that changes are gathered in.
struct Stage {
    name: String,
    copy: CopyTarget,
    /// Rows in it not yet applied.
    pending: bool,
}

/// A table being restored.
struct Building {
    qualified: String,
    shown: String,
    key: Vec<String>,
    columns: Vec<String>,
    rows: CopyTarget,
    upserts: Option<Stage>,
    deletes: Option<Stage>,
}

/// A chain restore into PostgreSQL.
pub struct PgChainRestorer {
    target: Address,
    new_database: Option<NewDatabase>,
    client: Option<postgres::Client>,
    replace: bool,
    cancel: Cancel,
    tables: BTreeMap<String, Building>,
    /// The full backup's objects that belong to the restored tables, with
    /// whether each is pre-data.
    objects: Vec<(SchemaObject, bool)>,
    /// Sequences the restore created, `(schema, name)`.
    sequences: BTreeSet<(String, String)>,
    buf: Vec<u8>,
    stages: usize,
    progress: Option<Arc<dyn Progress>>,
}

impl PgChainRestorer {
    /// A chain restore into the database at `target`, created when absent.
    pub fn open(target: &Address, replace: bool, cancel: Cancel) -> Result<PgChainRestorer> {
        let (client, new_database) = open_target(target, "restore into")?;
        let mut restorer = PgChainRestorer {
            target: target.clone(),
            new_database,
            client: Some(client),
            replace,
            cancel,
            tables: BTreeMap::new(),
            objects: Vec::new(),
            sequences: BTreeSet::new(),
            buf: Vec::with_capacity(1 << 20),
            stages: 0,
            progress: None,
        };
        restorer.run(
            &format!("{SESSION_SETTINGS}; BEGIN"),
            "beginning the restore",
        )?;
        Ok(restorer)
    }

    fn client(&mut self) -> Result<&mut postgres::Client> {
        self.client
            .as_mut()
            .ok_or_else(|| Error::internal("the restore's connection is closed"))
    }

    fn run(&mut self, sql: &str, doing: &str) -> Result<()> {
        let address = self.target.clone();
        self.client()?
            .batch_execute(sql)
            .map_err(|e| query_error(&address, doing, &e))
    }

    fn note(&self, what: &str) {
        if let Some(p) = &self.progress {
            p.note(what);
        }
    }

    fn building(&mut self, table: &Table) -> Result<&mut Building> {
        self.tables
            .get_mut(&table.name)
            .ok_or_else(|| Error::internal(format!("table '{}' was not begun", table.name)))
    }

    /// Run the statements of `object` (checked; owners and grants left
    /// out). A type, function or extension the target lacks is named with
    /// what to do.
    fn run_object(&mut self, object: &SchemaObject) -> Result<()> {
        let address = self.target.clone();
        for s in runnable(object)? {
            let doing = format!("creating {} {}", object.kind, object.name);
            if let Err(e) = self.client()?.batch_execute(&s) {
                let missing = matches!(
                    e.code().map(|c| c.code()),
                    Some("42704" | "42883" | "3F000")
                );
                let err = query_error(&address, &doing, &e);
                if missing {
                    return Err(Error::new(
                        err.kind(),
                        format!(
                            "{err}; a collection holds its tables, not the types, functions and extensions they use: create them in {address} first, or restore into a database that has them"
                        ),
                    ));
                }
                return Err(err);
            }
        }
        Ok(())
    }

    /// Apply the upserts gathered for `name`.
    fn apply_upserts(&mut self, name: &str) -> Result<()> {
        let Some(b) = self.tables.get_mut(name) else {
            return Ok(());
        };
        let Some(stage) = b.upserts.as_mut().filter(|s| s.pending) else {
            return Ok(());
        };
        stage.pending = false;
        let matches = key_match(&b.key, "t", "s");
        let cols = b
            .columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "DELETE FROM {q} t USING {s} s WHERE {matches}; \
             INSERT INTO {q} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM {s}; \
             TRUNCATE {s}",
            q = b.qualified,
            s = stage.name,
        );
        let doing = format!("applying the changed rows of table {}", b.shown);
        self.run(&sql, &doing)
    }

    /// A new temporary table shaped like `like` (a select over the table).
    fn stage(&mut self, table: &Table, select: &str, what: &str) -> Result<Stage> {
        self.stages += 1;
        let name = format!("coffer_{what}_{}", self.stages);
        let sql = format!("CREATE TEMPORARY TABLE {name} AS {select} WITH NO DATA");
        self.run(
            &sql,
            &format!("preparing the changes of table '{}'", table.name),
        )?;
        let address = self.target.clone();
        let copy = CopyTarget::prepare(self.client()?, &address, table, &name, &name)?;
        Ok(Stage {
            name,
            copy,
            pending: false,
        })
    }
    /// Copy `batch` (rows shaped like `shape`) into `table`'s temporary
    /// table for `which` changes, made on first use; returns its name.
    fn stage_batch(
        &mut self,
        table: &Table,
        shape: &Table,
        which: Staged,
        batch: &DataBatch,
    ) -> Result<String> {
        if slot(self.building(table)?, which).is_none() {
            let b = self.building(table)?;
            let select = format!(
                "SELECT {} FROM {}",
                shape
                    .columns
                    .iter()
                    .map(|c| quote_ident(&c.name))
                    .collect::<Vec<_>>()
                    .join(", "),
                b.qualified
            );
            let what = match which {
                Staged::Deleted => "deleted",
                Staged::Changed => "changed",
            };
            let stage = self.stage(shape, &select, what)?;
            *slot(self.building(table)?, which) = Some(stage);
        }
        self.copy_into(table, Some(which), batch)?;
        let b = self.building(table)?;
        Ok(slot(b, which).as_ref().expect("just made").name.clone())
    }

    /// Copy `batch` into `table` (`None`) or one of its temporary tables.
    fn copy_into(&mut self, table: &Table, which: Option<Staged>, batch: &DataBatch) -> Result<()> {
        let address = self.target.clone();
        let mut buf = std::mem::take(&mut self.buf);
        let client = self
            .client
            .as_mut()
            .ok_or_else(|| Error::internal("the restore's connection is closed"))?;
        let b = self
            .tables
            .get_mut(&table.name)
            .ok_or_else(|| Error::internal(format!("table '{}' was not begun", table.name)))?;
        let target = match which {
            None => &mut b.rows,
            Some(which) => {
                let stage = slot(b, which).as_mut().expect("made before");
                stage.pending = true;
                &mut stage.copy
            }
        };
        let done = target.copy(client, &address, batch, None, &mut buf);
        self.buf = buf;
        done.map(|_| ())
    }
}

/// `b`'s temporary table for `which` changes.
fn slot(b: &mut Building, which: Staged) -> &mut Option<Stage> {
    match which {
        Staged::Deleted => &mut b.deletes,
        Staged::Changed => &mut b.upserts,
    }
}

/// Which changes a temporary table gathers.
#[derive(Debug, Clone, Copy)]
enum Staged {
    Deleted,
    Changed,
}

/// The statements of `object` a chain restore runs: each checked as a
/// restore checks them (an archive is untrusted), owners and grants left
/// out.
fn runnable(object: &SchemaObject) -> Result<Vec<String>> {
    let entry = Entry {
        kind: object.kind.to_ascii_uppercase(),
        name: object.name.clone(),
        schema: String::from("-"),
        sql: object.sql.clone(),
    };
    Ok(
        ddl::checked_statements(&entry, "manifest.json of the chain's full backup")?
            .into_iter()
            .filter(|s| !ddl::is_owner_change(s) && !ddl::is_privilege(s))
            .filter(|s| !s.to_ascii_uppercase().starts_with("SELECT"))
            .map(str::to_string)
            .collect(),
    )
}

/// `t.k1 = s.k1 AND …`
fn key_match(key: &[String], t: &str, s: &str) -> String {
    key.iter()
        .map(|k| format!("{t}.{0} = {s}.{0}", quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

impl Drop for PgChainRestorer {
    fn drop(&mut self) {
        // An unfinished transaction rolls back when its connection closes.
        drop(self.client.take());
        if let Some(new) = self.new_database.take() {
            drop_new_database(new);
        }
    }
}

/// Whether an object kind is created with the indexes, before the changes.
fn with_indexes(kind: &str) -> bool {
    matches!(kind, "constraint" | "index")
}

impl ChainRestorer for PgChainRestorer {
    fn begin(&mut self, full: &Manifest, tables: &[&Table]) -> Result<()> {
        let settings = ArchiveSettings::of(&full.settings)?;
        let chosen: BTreeSet<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        let all = full
            .tables
            .iter()
            .filter(|t| t.kind != TableKind::Deleted)
            .all(|t| chosen.contains(t.name.as_str()));
        let pre = settings.pre_data_objects;
        self.objects = full
            .objects
            .iter()
            .enumerate()
            .filter(|(_, o)| o.kind != SHAPE_KIND)
            .filter(|(_, o)| {
                if o.table.is_empty() {
                    all
                } else {
                    chosen.contains(o.table.as_str())
                }
            })
            .map(|(i, o)| (o.clone(), i < pre))
            .collect();
        // Every statement checked before anything is created.
        for (o, _) in &self.objects {
            runnable(o)?;
        }
        let address = self.target.clone();
        // Each table's (quoted, shown) name in PostgreSQL.
        let located = tables
            .iter()
            .map(|t| {
                let (schema, name) = settings.location_of(&t.name).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Corrupt,
                        format!(
                            "manifest.json of the chain's full backup does not say where table '{}' lives, or says it lives elsewhere; the archive was altered or damaged",
                            t.name
                        ),
                    )
                })?;
                Ok((
                    format!("{}.{}", quote_ident(&schema), quote_ident(&name)),
                    format!("{schema}.{name}"),
                    schema,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        for (qualified, shown, schema) in &located {
            self.cancel.check()?;
            let exists = self
                .client()?
                .query_opt("SELECT to_regclass($1)::text", &[&qualified])
                .map_err(|e| query_error(&address, "looking for the table", &e))?
                .and_then(|r| r.get::<_, Option<String>>(0))
                .is_some();
            if exists && !self.replace {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "table {shown} already exists in {address}; restore with --force to replace it, or into another database"
                    ),
                ));
            }
            if exists {
                self.run(
                    &format!("DROP TABLE {qualified}"),
                    &format!("dropping table {shown}"),
                )?;
            }
            self.run(
                &format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)),
                &format!("creating schema {schema}"),
            )?;
        }
        let pre_objects: Vec<SchemaObject> = self
            .objects
            .iter()
            .filter(|(_, pre)| *pre)
            .map(|(o, _)| o.clone())
            .collect();
        for o in &pre_objects {
            self.cancel.check()?;
            self.run_object(o)?;
            if o.kind == "sequence" {
                for s in &settings.sequences {
                    let named = if s.schema == "public" {
                        s.name.clone()
                    } else {
                        format!("{}.{}", s.schema, s.name)
                    };
                    if named == o.name {
                        self.sequences.insert((s.schema.clone(), s.name.clone()));
                    }
                }
            }
        }
        for (t, (qualified, shown, _)) in tables.iter().zip(located) {
            let rows = CopyTarget::prepare(self.client()?, &address, t, &qualified, &shown)?;
            let key = settings
                .keys
                .get(&t.name)
                .cloned()
                .unwrap_or_else(|| t.primary_key.clone());
            if key.is_empty() {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "the collection's full backup gives table '{}' no key; the repository is damaged",
                        t.name
                    ),
                ));
            }
            self.tables.insert(
                t.name.clone(),
                Building {
                    qualified,
                    shown,
                    key,
                    columns: t.columns.iter().map(|c| c.name.clone()).collect(),
                    rows,
                    upserts: None,
                    deletes: None,
                },
            );
        }
        Ok(())
    }

    fn load(&mut self, table: &Table, batch: &DataBatch) -> Result<()> {
        self.copy_into(table, None, batch)
    }

    fn begin_changes(&mut self, _full: &Manifest, _tables: &[&Table]) -> Result<()> {
        let objects: Vec<SchemaObject> = self
            .objects
            .iter()
            .filter(|(o, pre)| !*pre && with_indexes(&o.kind))
            .map(|(o, _)| o.clone())
            .collect();
        for o in &objects {
            self.cancel.check()?;
            self.note(&format!("{} {}", o.kind, o.name));
            self.run_object(o)?;
        }
        Ok(())
    }

    fn delete(&mut self, table: &Table, keys: &Table, batch: &DataBatch) -> Result<()> {
        self.apply_upserts(&table.name)?;
        let stage = self.stage_batch(table, keys, Staged::Deleted, batch)?;
        let b = self.building(table)?;
        let key: Vec<String> = keys.columns.iter().map(|c| c.name.clone()).collect();
        let sql = format!(
            "DELETE FROM {q} t USING {stage} s WHERE {}; TRUNCATE {stage}",
            key_match(&key, "t", "s"),
            q = b.qualified,
        );
        let doing = format!("deleting rows of table {}", b.shown);
        self.run(&sql, &doing)
    }

    fn upsert(&mut self, table: &Table, batch: &DataBatch) -> Result<()> {
        self.stage_batch(table, table, Staged::Changed, batch)
            .map(|_| ())
    }

    fn end_changes(&mut self, table: &Table) -> Result<()> {
        self.apply_upserts(&table.name)
    }

    fn finish(mut self: Box<Self>, point: &Manifest, _tables: &[&Table]) -> Result<()> {
        let names: Vec<String> = self.tables.keys().cloned().collect();
        for n in &names {
            self.apply_upserts(n)?;
        }
        let objects: Vec<SchemaObject> = self
            .objects
            .iter()
            .filter(|(o, pre)| !*pre && !with_indexes(&o.kind))
            .map(|(o, _)| o.clone())
            .collect();
        for o in &objects {
            self.cancel.check()?;
            self.note(&format!("{} {}", o.kind, o.name));
            if o.kind == "fk constraint" {
                // A foreign key to a table this restore does not hold may
                // not be creatable here: left out, said.
                self.run("SAVEPOINT coffer_fk", "setting a savepoint")?;
                if let Err(e) = self.run_object(o) {
                    self.run("ROLLBACK TO SAVEPOINT coffer_fk", "rolling back")?;
                    tracing::warn!("foreign key {} was not restored: {e}", o.name);
                    continue;
                }
                self.run("RELEASE SAVEPOINT coffer_fk", "releasing a savepoint")?;
            } else {
                self.run_object(o)?;
            }
        }
        // Sequences as at the restored backup point.
        let settings = ArchiveSettings::of(&point.settings)?;
        for s in &settings.sequences {
            if self.sequences.contains(&(s.schema.clone(), s.name.clone())) {
                let name = format!("{}.{}", quote_ident(&s.schema), quote_ident(&s.name));
                let sql = format!(
                    "SELECT pg_catalog.setval('{}', {}, {})",
                    name.replace('\'', "''"),
                    s.last_value,
                    s.is_called
                );
                self.run(&sql, &format!("setting sequence {}.{}", s.schema, s.name))?;
            }
        }
        let stages: Vec<String> = self
            .tables
            .values()
            .flat_map(|b| [&b.upserts, &b.deletes])
            .flatten()
            .map(|s| s.name.clone())
            .collect();
        for s in stages {
            self.run(&format!("DROP TABLE {s}"), "dropping a temporary table")?;
        }
        self.cancel.check()?;
        self.note("committing");
        self.run("COMMIT", "committing the restore")?;
        let qualified: Vec<String> = self.tables.values().map(|b| b.qualified.clone()).collect();
        for q in qualified {
            if let Err(e) = self.run(&format!("ANALYZE {q}"), "analyzing") {
                tracing::warn!("analyzing {q} after the restore: {e}");
            }
        }
        drop(self.client.take());
        if let Some(new) = self.new_database.take() {
            rename_new_database(new, &self.target)?;
        }
        Ok(())
    }

    fn set_progress(&mut self, progress: Arc<dyn Progress>) {
        self.progress = Some(progress);
    }
}
