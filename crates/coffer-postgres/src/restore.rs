//! Restores into PostgreSQL: a new database built under a temporary name,
//! renamed to the target only when complete and checked.
//!
//! 1. On a maintenance connection (database `postgres`, else `template1`)
//!    the restore takes an advisory lock of its target, so two restores of
//!    one target never race, and drops what killed restores of it left
//!    (`coffer_restore_…` and `coffer_replaced_…` databases nobody uses).
//! 2. `CREATE DATABASE` under the temporary name from `template0` with the
//!    source's encoding and locale; pg_dump's pre-data section in one
//!    transaction, every statement checked first ([`crate::ddl`]).
//! 3. Rows with `COPY … FROM STDIN` on one connection per core, batches
//!    handed to whichever connection is free ([`crate::load`]); each
//!    table's row count checked against the manifest.
//! 4. Post-data: runs of indexes and constraints in parallel on those
//!    connections (a deadlock between two retries), the rest in order;
//!    sequence values; materialized views refreshed; `ANALYZE`.
//! 5. In one transaction the target (if any) is renamed aside and the new
//!    database renamed to the target; then the old one is dropped. A kill
//!    at any instant leaves the target as it was or fully restored.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use coffer::engine::{DataBatch, Restorer};
use coffer::manifest::{Manifest, Table};
use coffer::progress::{Cancel, Progress};
use coffer::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::catalog::quote_ident;
use crate::connect::query_error;
use crate::ddl::{self, Entry, SESSION_SETTINGS};
use crate::load::{
    BINARY_HEADER, BINARY_TRAILER, BinaryColumn, binary_fits, encode_batch, encode_binary,
};

/// What a PostgreSQL backup records beside its schema objects, in the
/// manifest's `settings`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveSettings {
    /// The source database's encoding (`UTF8`).
    pub encoding: String,
    /// Its `LC_COLLATE`.
    pub lc_collate: String,
    /// Its `LC_CTYPE`.
    pub lc_ctype: String,
    /// Its locale provider (`c`, `i` for ICU) and ICU locale, PostgreSQL 15+.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icu_locale: Option<String>,
    /// How many of the schema objects are pg_dump's pre-data section; the
    /// rest is its post-data section.
    pub pre_data_objects: usize,
    /// Each table of the archive: `(schema, name)` in PostgreSQL.
    pub tables: BTreeMap<String, (String, String)>,
    /// Every sequence's state.
    pub sequences: Vec<SequenceState>,
    /// The materialized views that held rows, in creation order: a restore
    /// refreshes them.
    pub populated_matviews: Vec<(String, String)>,
    /// A collection's backups: the key of each table's change log (its
    /// primary key, or the unique key capture chose), which a restore of
    /// the chain upserts by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, Vec<String>>,
}

/// A sequence's state, as `setval` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceState {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// `last_value`.
    pub last_value: i64,
    /// `is_called`.
    pub is_called: bool,
}

impl ArchiveSettings {
    /// The key these settings have in a manifest's `settings`.
    pub const KEY: &'static str = "postgres";

    /// `(schema, name)` of the archive table `table`, when the settings
    /// record it as an archive of that name can be (`schema.name`, or the
    /// name alone in `public`): an altered manifest cannot point a table at
    /// another one of the target's.
    pub fn location_of(&self, table: &str) -> Option<(String, String)> {
        let (schema, name) = self.tables.get(table)?;
        let named = if schema == "public" {
            name.clone()
        } else {
            format!("{schema}.{name}")
        };
        (named == table).then(|| (schema.clone(), name.clone()))
    }

    /// Read them from a manifest's settings.
    pub fn of(settings: &serde_json::Map<String, serde_json::Value>) -> Result<ArchiveSettings> {
        let v = settings.get(Self::KEY).ok_or_else(|| {
            Error::new(
                ErrorKind::Corrupt,
                "the archive's manifest has no PostgreSQL settings; it was not written by a PostgreSQL backup",
            )
        })?;
        serde_json::from_value(v.clone()).map_err(|e| {
            Error::new(
                ErrorKind::Corrupt,
                format!("the archive's PostgreSQL settings cannot be read ({e}); the archive was altered or damaged"),
            )
        })
    }
}

/// FNV-1a of `s`: a stable short hash for names of temporary databases.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

fn prefix(target: &str, what: &str) -> String {
    format!("coffer_{what}_{:08x}_", fnv(target) as u32)
}

/// How the names of the databases that restores into the database `target`
/// build in (`coffer_restore_…`) and set aside (`coffer_replaced_…`)
/// begin.
pub fn temporary_prefixes(target: &str) -> [String; 2] {
    [prefix(target, "restore"), prefix(target, "replaced")]
}

/// A value unlikely to repeat: for the temporary database's name.
pub(crate) fn nonce() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish() as u32
}

/// A string as a SQL literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Whether a locale or encoding name from an archive is a plain name.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'))
}

/// The most connections a restore loads over.
const MAX_WRITERS: usize = 8;

/// One batch for a writer.
struct Job {
    table: Arc<TableLoad>,
    batch: DataBatch,
    /// Whether it goes in binary form.
    binary: bool,
    /// The table's rows before it, for messages naming a row.
    first_row: u64,
}

/// A table as the writers load it.
struct TableLoad {
    table: Table,
    /// `COPY … FROM STDIN` (text).
    copy_sql: String,
    /// How each column goes in binary form, when every column has one.
    binary: Option<Vec<BinaryColumn>>,
}

impl TableLoad {
    fn sql(&self, binary: bool) -> String {
        if binary {
            format!("{} (FORMAT binary)", self.copy_sql)
        } else {
            self.copy_sql.clone()
        }
    }
}

/// The database being built.
struct Build {
    name: String,
    address: Address,
    main: Option<postgres::Client>,
    queue: Option<SyncSender<Job>>,
    writers: Vec<std::thread::JoinHandle<(Option<postgres::Client>, Result<()>)>>,
    idle: Vec<postgres::Client>,
    loaded: Arc<Mutex<BTreeMap<String, u64>>>,
    tables: BTreeMap<String, Arc<TableLoad>>,
    /// Rows handed to the writers so far, by table.
    sent: BTreeMap<String, u64>,
}

/// A restorer into a new PostgreSQL database.
pub struct PgRestorer {
    target: Address,
    admin: postgres::Client,
    admin_address: Address,
    target_exists: bool,
    server_version: u32,
    cancel: Cancel,
    no_owner: bool,
    no_privileges: bool,
    writers: usize,
    progress: Option<Arc<dyn Progress>>,
    build: Option<Build>,
    started: std::time::Instant,
    /// Statements run after all others (event triggers).
    last: Vec<String>,
    /// The archive's settings, read by `begin`.
    settings: Option<ArchiveSettings>,
    /// The post-data's entries and their checked statements, from `begin`.
    post: Vec<(Entry, Vec<String>)>,
}

/// `DROP DATABASE IF EXISTS name` on a maintenance connection, ending the
/// database's sessions where the server can (13 and later).
pub(crate) fn drop_database(
    admin: &mut postgres::Client,
    server_version: u32,
    name: &str,
) -> std::result::Result<(), postgres::Error> {
    let force = if server_version >= 130000 {
        " WITH (FORCE)"
    } else {
        ""
    };
    admin.batch_execute(&format!(
        "DROP DATABASE IF EXISTS {}{force}",
        quote_ident(name)
    ))
}

/// Run `sql` (database renames) on a maintenance connection, again while
/// the server says a database is in use, for up to 5 s: the sessions this
/// process just closed end on the server a moment later. A failed attempt
/// is rolled back.
pub(crate) fn execute_while_in_use(
    admin: &mut postgres::Client,
    sql: &str,
) -> std::result::Result<(), postgres::Error> {
    let mut tries = 0;
    loop {
        match admin.batch_execute(sql) {
            Ok(()) => return Ok(()),
            Err(e) => {
                let _ = admin.batch_execute("ROLLBACK");
                if e.code().map(|c| c.code()) == Some("55006") && tries < 50 {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                } else {
                    return Err(e);
                }
            }
        }
    }
}

/// A connection to `address` with the restore's session settings.
fn session(address: &Address) -> Result<postgres::Client> {
    let mut c = address.connect()?.client;
    c.batch_execute(SESSION_SETTINGS)
        .map_err(|e| query_error(address, "setting up the session", &e))?;
    Ok(c)
}

/// Connect to a maintenance database of `target`'s server.
pub(crate) fn admin_connection(target: &Address) -> Result<(postgres::Client, Address, u32)> {
    let mut first = None;
    for db in ["postgres", "template1"] {
        let a = target.with_dbname(db);
        match a.connect() {
            Ok(c) => return Ok((c.client, a, c.server_version)),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.expect("tried"))
}

/// Take the session-level advisory lock of restores into `target` on
/// `admin` (held until it closes), waiting up to 10 s: two restores (or
/// imports into a new database) of one target never race.
pub(crate) fn lock_target(
    admin: &mut postgres::Client,
    admin_address: &Address,
    target: &Address,
) -> Result<()> {
    let key = fnv(&format!("coffer restore {}", target.dbname())) as i64;
    // Wait a little: a restore that just ended may not have left the
    // server yet (its session ends a moment after the process).
    let locked = admin
        .batch_execute("SET lock_timeout = '10s'")
        .and_then(|()| admin.execute("SELECT pg_advisory_lock($1)", &[&key]));
    match locked {
        Ok(_) => {}
        Err(e) if e.code().map(|c| c.code()) == Some("55P03") => {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("another coffer restore into {target} is running; wait for it to finish"),
            ));
        }
        Err(e) => {
            return Err(query_error(
                admin_address,
                "locking the restore's target",
                &e,
            ));
        }
    }
    admin
        .batch_execute("RESET lock_timeout")
        .map_err(|e| query_error(admin_address, "locking the restore's target", &e))
}

/// Drop the databases that killed restores into `target` left behind
/// (nobody connected to them). Called holding the target's lock.
pub(crate) fn drop_leftovers(
    admin: &mut postgres::Client,
    admin_address: &Address,
    server_version: u32,
    target: &str,
) -> Result<()> {
    for p in temporary_prefixes(target) {
        let rows = admin
            .query(
                "SELECT datname::text FROM pg_database d WHERE starts_with(datname, $1) \
                 AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)",
                &[&p],
            )
            .map_err(|e| query_error(admin_address, "looking for leftover restores", &e))?;
        for r in rows {
            let name: String = r.get(0);
            tracing::info!(database = %name, "dropping what a stopped restore left");
            drop_database(admin, server_version, &name).map_err(|e| {
                query_error(admin_address, &format!("dropping database {name}"), &e)
            })?;
        }
    }
    Ok(())
}

impl PgRestorer {
    /// A restorer into `target`, which must not exist or be empty unless
    /// `replace`.
    pub fn open(target: &Address, replace: bool, cancel: Cancel) -> Result<PgRestorer> {
        let name = target.dbname().to_owned();
        if name.starts_with("coffer_restore_") || name.starts_with("coffer_replaced_") {
            return Err(Error::invalid(format!(
                "{target} is named like the temporary databases coffer builds restores in; choose another name"
            )));
        }
        let (mut admin, admin_address, server_version) = admin_connection(target)?;
        let who = target.to_string();
        let row = admin
            .query_one(
                "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .map_err(|e| query_error(&admin_address, "reading the role's privileges", &e))?;
        if !row.get::<_, bool>(0) {
            return Err(Error::new(
                ErrorKind::Auth,
                format!(
                    "user {:?} may not create databases on the server at {}, which a restore into {who} needs: \
                     ALTER ROLE {} CREATEDB, or restore as a role that may",
                    target.user(),
                    target.server(),
                    quote_ident(target.user())
                ),
            ));
        }
        lock_target(&mut admin, &admin_address, target)?;
        let mut r = PgRestorer {
            target: target.clone(),
            admin,
            admin_address,
            target_exists: false,
            server_version,
            cancel,
            no_owner: false,
            no_privileges: false,
            writers: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(1, MAX_WRITERS),
            progress: None,
            build: None,
            started: std::time::Instant::now(),
            last: Vec::new(),
            settings: None,
            post: Vec::new(),
        };
        r.drop_leftovers()?;
        r.target_exists = r.database_exists(&name)?;
        if r.target_exists && !replace && !r.is_empty(target)? {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "database {who} exists and is not empty; restore into a new name, or pass --force to replace it"
                ),
            ));
        }
        Ok(r)
    }

    fn prefix(&self, what: &str) -> String {
        prefix(self.target.dbname(), what)
    }

    fn database_exists(&mut self, name: &str) -> Result<bool> {
        Ok(self
            .admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .map_err(|e| query_error(&self.admin_address, "looking for the target database", &e))?
            .is_some())
    }

    /// Whether the database at `address` has no objects of its own.
    fn is_empty(&self, address: &Address) -> Result<bool> {
        let mut c = address.connect()?.client;
        let row = c
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' \
                    AND n.nspname !~ '^pg_temp') \
                 AND NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema'))",
                &[],
            )
            .map_err(|e| query_error(address, "checking whether the database is empty", &e))?;
        Ok(row.get(0))
    }

    /// Drop the databases that killed restores of this target left behind
    /// (nobody connected to them). Called holding the target's lock.
    fn drop_leftovers(&mut self) -> Result<()> {
        drop_leftovers(
            &mut self.admin,
            &self.admin_address,
            self.server_version,
            self.target.dbname(),
        )
    }

    fn drop_database(&mut self, name: &str) -> Result<()> {
        drop_database(&mut self.admin, self.server_version, name).map_err(|e| {
            query_error(
                &self.admin_address,
                &format!("dropping database {name}"),
                &e,
            )
        })
    }

    /// The statements of `entries` that this restore runs (checked, with
    /// owners and grants left out as asked); those about event triggers go
    /// to `self.last`, to run after everything else.
    fn runnable<'e>(&mut self, entries: &'e [Entry]) -> Result<Vec<(&'e Entry, Vec<&'e str>)>> {
        let mut out = Vec::new();
        for e in entries {
            let mut list: Vec<&str> = ddl::checked_statements(e, "the archive")?
                .into_iter()
                .filter(|s| !(self.no_owner && ddl::is_owner_change(s)))
                .filter(|s| !(self.no_privileges && ddl::is_privilege(s)))
                // pg_dump's own search_path setting: the session has it.
                .filter(|s| !s.to_ascii_uppercase().starts_with("SELECT"))
                .collect();
            list.retain(|s| {
                let last = ddl::is_event_trigger(s);
                if last {
                    self.last.push(s.to_string());
                }
                !last
            });
            if !list.is_empty() {
                out.push((e, list));
            }
        }
        Ok(out)
    }
}

/// A statement that names a role this server does not have (an owner or a
/// grantee of the source's) says how to restore without them.
fn missing_role_hint(err: Error, cause: &postgres::Error) -> Error {
    let missing_role = cause
        .as_db_error()
        .is_some_and(|d| d.code().code() == "42704" && d.message().starts_with("role "));
    if missing_role {
        Error::new(
            err.kind(),
            format!(
                "{err}; create that role on this server, or restore with --no-owner --no-privileges to leave the source's roles out"
            ),
        )
    } else {
        err
    }
}

/// The entries of a manifest's schema objects.
fn entries_of(manifest: &Manifest) -> Vec<Entry> {
    manifest
        .objects
        .iter()
        .filter(|o| o.kind != crate::capture::SHAPE_KIND)
        .map(|o| Entry {
            kind: o.kind.to_ascii_uppercase(),
            name: o.name.clone(),
            schema: String::from("-"),
            sql: o.sql.clone(),
        })
        .collect()
}

/// The type of each column of `table` (a quoted, qualified name) in the
/// database being built: a domain's base type, or 0 for a domain over a
/// domain (loaded as text).
pub(crate) fn column_types(
    client: &mut postgres::Client,
    address: &Address,
    table: &str,
) -> Result<BTreeMap<String, u32>> {
    let rows = client
        .query(
            "SELECT a.attname::text, \
                    CASE WHEN t.typtype <> 'd' THEN a.atttypid \
                         WHEN b.typtype <> 'd' THEN t.typbasetype ELSE 0::oid END \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_type b ON b.oid = t.typbasetype \
             WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            &[&table],
        )
        .map_err(|e| query_error(address, &format!("reading the columns of {table}"), &e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Load jobs from `queue` on `client` until it closes; each table's rows
/// counted into `loaded`.
fn writer(
    client: &mut postgres::Client,
    address: &Address,
    queue: &Mutex<Receiver<Job>>,
    loaded: &Mutex<BTreeMap<String, u64>>,
) -> Result<()> {
    use std::io::Write;
    let next = || queue.lock().ok().and_then(|q| q.recv().ok());
    let mut pending = next();
    let mut buf = Vec::with_capacity(1 << 20);
    while let Some(first) = pending.take() {
        let (table, binary) = (first.table.clone(), first.binary);
        let doing = format!("loading table {}", table.table.name);
        let failed = |e: std::io::Error| {
            Error::new(
                ErrorKind::Engine,
                format!("{doing} in {address} failed: {e}"),
            )
        };
        let mut copy = client
            .copy_in(&table.sql(binary))
            .map_err(|e| query_error(address, &doing, &e))?;
        if binary {
            copy.write_all(BINARY_HEADER).map_err(failed)?;
        }
        let mut job = Some(first);
        while let Some(j) = job.take() {
            buf.clear();
            match (&table.binary, binary) {
                (Some(plan), true) => {
                    encode_binary(&table.table, plan, &j.batch, j.first_row, None, &mut buf)?
                }
                _ => encode_batch(&table.table, &j.batch, j.first_row, None, &mut buf)?,
            }
            copy.write_all(&buf).map_err(failed)?;
            match next() {
                Some(n) if Arc::ptr_eq(&n.table, &table) && n.binary == binary => job = Some(n),
                other => pending = other,
            }
        }
        if binary {
            copy.write_all(BINARY_TRAILER).map_err(failed)?;
        }
        let rows = copy
            .finish()
            .map_err(|e| query_error(address, &doing, &e))?;
        *loaded
            .lock()
            .map_err(|_| Error::internal("a loader panicked"))?
            .entry(table.table.name.clone())
            .or_default() += rows;
    }
    Ok(())
}

/// Run `items` (statements) on `clients` in parallel, each on whichever
/// client is free; a statement that a deadlock with another aborted is run
/// again.
fn run_parallel(
    clients: &mut [postgres::Client],
    address: &Address,
    items: &[(String, String)],
    cancel: &Cancel,
) -> Result<()> {
    let next = Mutex::new(0usize);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for c in clients.iter_mut() {
            s.spawn(|| {
                loop {
                    if cancel.is_cancelled() || failed.lock().map_or(true, |f| f.is_some()) {
                        return;
                    }
                    let i = {
                        let Ok(mut n) = next.lock() else { return };
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some((what, sql)) = items.get(i) else {
                        return;
                    };
                    let mut tries = 0;
                    let outcome = loop {
                        match c.batch_execute(sql) {
                            Err(e) if tries < 5 && e.code().map(|c| c.code()) == Some("40P01") => {
                                tries += 1;
                            }
                            other => break other,
                        }
                    };
                    if let Err(e) = outcome
                        && let Ok(mut f) = failed.lock()
                    {
                        f.get_or_insert(query_error(address, &format!("creating {what}"), &e));
                        return;
                    }
                }
            });
        }
    });
    cancel.check()?;
    match failed.into_inner() {
        Ok(Some(e)) => Err(e),
        Ok(None) => Ok(()),
        Err(_) => Err(Error::internal("a post-data worker panicked")),
    }
}

/// Which post-data objects are built in parallel with their neighbours of
/// the same group: indexes and the constraints that make them (primary
/// keys, unique, exclusion) are one; foreign keys, which need the keys they
/// reference, another. Everything else runs in order.
fn parallel_group(kind: &str) -> Option<u8> {
    match kind {
        "INDEX" | "CONSTRAINT" => Some(0),
        "FK CONSTRAINT" => Some(1),
        _ => None,
    }
}

impl Build {
    fn stop_writers(&mut self) -> Result<()> {
        self.queue = None;
        let mut first = Ok(());
        for w in self.writers.drain(..) {
            match w.join() {
                Ok((client, result)) => {
                    if let Some(c) = client {
                        self.idle.push(c);
                    }
                    if first.is_ok() {
                        first = result;
                    }
                }
                Err(_) => {
                    if first.is_ok() {
                        first = Err(Error::internal("a loader thread panicked"));
                    }
                }
            }
        }
        first
    }
}

impl Restorer for PgRestorer {
    fn begin(&mut self, manifest: &Manifest, tables: &[&Table]) -> Result<()> {
        let settings = ArchiveSettings::of(&manifest.settings)?;
        if tables.len() != manifest.tables.len() {
            return Err(Error::invalid(format!(
                "restoring chosen tables into PostgreSQL ({}) is not supported yet: restore the whole archive, \
                 or export those tables and `coffer import` them",
                self.target
            )));
        }
        let entries = entries_of(manifest);
        if settings.pre_data_objects > entries.len() {
            return Err(Error::new(
                ErrorKind::Corrupt,
                "the archive's PostgreSQL settings name more schema objects than it has; the archive was altered or damaged",
            ));
        }
        let (pre, post) = entries.split_at(settings.pre_data_objects);
        // Every statement of the archive is checked before anything is
        // created; the post-data's wait for the rows.
        let pre = self.runnable(pre)?;
        self.post = self
            .runnable(post)?
            .into_iter()
            .map(|(e, st)| (e.clone(), st.into_iter().map(str::to_owned).collect()))
            .collect();
        let mut targets = Vec::new();
        for t in tables {
            let (schema, name) = settings.tables.get(&t.name).ok_or_else(|| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "table '{}' of the archive has no PostgreSQL name in its settings; the archive was altered or damaged",
                        t.name
                    ),
                )
            })?;
            targets.push(((*t).clone(), schema.clone(), name.clone()));
        }
        // The database.
        let name = format!("{}{:08x}", self.prefix("restore"), nonce());
        let mut create = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&name));
        for (what, v) in [
            ("ENCODING", &settings.encoding),
            ("LC_COLLATE", &settings.lc_collate),
            ("LC_CTYPE", &settings.lc_ctype),
        ] {
            if !plain_name(v) {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "the archive's database {what} {v:?} is not a name; the archive was altered or damaged"
                    ),
                ));
            }
            create.push_str(&format!(" {what} {}", literal(v)));
        }
        if let Some(icu) = &settings.icu_locale {
            if !plain_name(icu) {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    "the archive's ICU locale is not a name; the archive was altered or damaged",
                ));
            }
            create.push_str(&format!(" LOCALE_PROVIDER icu ICU_LOCALE {}", literal(icu)));
        }
        self.admin.batch_execute(&create).map_err(|e| {
            query_error(
                &self.admin_address,
                &format!(
                    "creating the database to restore {} in (encoding {}, locale {})",
                    self.target, settings.encoding, settings.lc_collate
                ),
                &e,
            )
        })?;
        let address = self.target.with_dbname(&name);
        self.build = Some(Build {
            name: name.clone(),
            address: address.clone(),
            main: None,
            queue: None,
            writers: Vec::new(),
            idle: Vec::new(),
            loaded: Arc::new(Mutex::new(BTreeMap::new())),
            tables: BTreeMap::new(),
            sent: BTreeMap::new(),
        });
        // Pre-data, in one transaction.
        let mut main = session(&address)?;
        let mut tx = main
            .transaction()
            .map_err(|e| query_error(&self.target, "beginning the schema", &e))?;
        for (entry, statements) in &pre {
            self.cancel.check()?;
            for s in statements {
                tx.batch_execute(s).map_err(|e| {
                    let err = query_error(
                        &self.target,
                        &format!("creating {} {}", entry.kind.to_lowercase(), entry.name),
                        &e,
                    );
                    missing_role_hint(err, &e)
                })?;
            }
        }
        tx.commit()
            .map_err(|e| query_error(&self.target, "committing the schema", &e))?;
        let mut table_loads = BTreeMap::new();
        for (t, schema, name) in targets {
            let qualified = format!("{}.{}", quote_ident(&schema), quote_ident(&name));
            let types = column_types(&mut main, &self.target, &qualified)?;
            let binary: Option<Vec<BinaryColumn>> = t
                .columns
                .iter()
                .map(|c| {
                    types
                        .get(&c.name)
                        .and_then(|&oid| BinaryColumn::of(&c.logical_type, oid))
                })
                .collect();
            let cols: Vec<String> = t.columns.iter().map(|c| quote_ident(&c.name)).collect();
            let copy_sql = format!("COPY {qualified} ({}) FROM STDIN", cols.join(", "));
            table_loads.insert(
                t.name.clone(),
                Arc::new(TableLoad {
                    table: t,
                    copy_sql,
                    binary,
                }),
            );
        }
        self.build.as_mut().expect("built").tables = table_loads;
        // The writers.
        let (tx, rx) = sync_channel::<Job>(self.writers * 2);
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::new();
        for _ in 0..self.writers {
            let mut client = session(&address)?;
            let (rx, address) = (rx.clone(), self.target.clone());
            let loaded = self.build.as_ref().expect("built").loaded.clone();
            handles.push(std::thread::spawn(move || {
                let result = writer(&mut client, &address, &rx, &loaded);
                // A failed COPY leaves its connection unusable.
                (result.is_ok().then_some(client), result)
            }));
        }
        let build = self.build.as_mut().expect("built");
        build.main = Some(main);
        build.queue = Some(tx);
        build.writers = handles;
        self.settings = Some(settings);
        Ok(())
    }

    fn load(&mut self, table: &Table, batch: &DataBatch) -> Result<()> {
        let build = self
            .build
            .as_mut()
            .ok_or_else(|| Error::internal("load before begin"))?;
        let load = build
            .tables
            .get(&table.name)
            .cloned()
            .ok_or_else(|| Error::internal(format!("table '{}' was not begun", table.name)))?;
        // A loader that stopped stopped on an error: say it now.
        if build.writers.iter().any(|w| w.is_finished()) {
            build.stop_writers()?;
            return Err(Error::internal("a loader stopped"));
        }
        let binary = load.binary.is_some() && binary_fits(batch);
        let sent = build.sent.entry(table.name.clone()).or_default();
        let first_row = *sent;
        *sent += batch.num_rows() as u64;
        let sent = build.queue.as_ref().is_some_and(|q| {
            q.send(Job {
                table: load,
                batch: batch.clone(),
                binary,
                first_row,
            })
            .is_ok()
        });
        if !sent {
            build.stop_writers()?;
            return Err(Error::internal("the loaders stopped"));
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, _manifest: &Manifest, tables: &[&Table]) -> Result<()> {
        let settings = self
            .settings
            .take()
            .ok_or_else(|| Error::internal("finish before begin"))?;
        let post = std::mem::take(&mut self.post);
        let target = self.target.clone();
        let cancel = self.cancel.clone();
        let progress = self.progress.clone();
        let started = self.started;
        let phase = |what: &str| {
            tracing::info!(
                at_seconds = started.elapsed().as_secs_f64(),
                "restore: {what}"
            );
            if let Some(p) = &progress {
                p.end();
                p.begin(what, None, None);
            }
        };
        tracing::info!(
            at_seconds = started.elapsed().as_secs_f64(),
            "restore: rows sent"
        );
        {
            let build = self
                .build
                .as_mut()
                .ok_or_else(|| Error::internal("finish before begin"))?;
            build.stop_writers()?;
            let loaded = build
                .loaded
                .lock()
                .map_err(|_| Error::internal("a loader panicked"))?
                .clone();
            for t in tables {
                let got = loaded.get(&t.name).copied().unwrap_or(0);
                if got != t.rows {
                    return Err(Error::new(
                        ErrorKind::Corrupt,
                        format!(
                            "table '{}' got {got} rows in {target}, but the archive's manifest says {}; nothing was restored",
                            t.name, t.rows
                        ),
                    ));
                }
            }
            let mut clients: Vec<postgres::Client> = build.main.take().into_iter().collect();
            clients.append(&mut build.idle);
            let address = build.address.clone();
            while clients.len() < self.writers.max(1) {
                clients.push(session(&address)?);
            }
            // One statement at a time per core: more only makes them
            // compete (each index build may use parallel workers too).
            clients.truncate(self.writers.max(1));
            // Post-data.
            phase("indexes and constraints");
            let mut i = 0;
            while i < post.len() {
                cancel.check()?;
                let (entry, statements) = &post[i];
                if let Some(group) = parallel_group(&entry.kind) {
                    let mut items = Vec::new();
                    while i < post.len() && parallel_group(&post[i].0.kind) == Some(group) {
                        let (e, st) = &post[i];
                        let what = format!("{} {}", e.kind.to_lowercase(), e.name);
                        items.push((what, st.join(";\n")));
                        i += 1;
                    }
                    run_parallel(&mut clients, &target, &items, &cancel)?;
                } else {
                    for s in statements {
                        clients[0].batch_execute(s).map_err(|e| {
                            let err = query_error(
                                &target,
                                &format!("creating {} {}", entry.kind.to_lowercase(), entry.name),
                                &e,
                            );
                            missing_role_hint(err, &e)
                        })?;
                    }
                    i += 1;
                }
            }
            // Sequence values.
            for s in &settings.sequences {
                let name = format!("{}.{}", quote_ident(&s.schema), quote_ident(&s.name));
                clients[0]
                    .execute(
                        "SELECT pg_catalog.setval($1::text::regclass, $2, $3)",
                        &[&name, &s.last_value, &s.is_called],
                    )
                    .map_err(|e| {
                        query_error(
                            &target,
                            &format!("setting sequence {}.{}", s.schema, s.name),
                            &e,
                        )
                    })?;
            }
            phase("refreshing materialized views");
            for (schema, name) in &settings.populated_matviews {
                cancel.check()?;
                let sql = format!(
                    "REFRESH MATERIALIZED VIEW {}.{}",
                    quote_ident(schema),
                    quote_ident(name)
                );
                clients[0].batch_execute(&sql).map_err(|e| {
                    query_error(
                        &target,
                        &format!("refreshing materialized view {schema}.{name}"),
                        &e,
                    )
                })?;
            }
            phase("analyzing");
            let analyze: Vec<(String, String)> = settings
                .tables
                .values()
                .map(|(s, n)| {
                    (
                        format!("statistics of {s}.{n}"),
                        format!("ANALYZE {}.{}", quote_ident(s), quote_ident(n)),
                    )
                })
                .collect();
            run_parallel(&mut clients, &target, &analyze, &cancel)?;
            tracing::info!(
                at_seconds = started.elapsed().as_secs_f64(),
                "restore: analyzed"
            );
            // Event triggers, now that no more DDL of the restore's can
            // fire them.
            for s in std::mem::take(&mut self.last) {
                clients[0].batch_execute(&s).map_err(|e| {
                    let err = query_error(&target, "creating an event trigger", &e);
                    missing_role_hint(err, &e)
                })?;
            }
            // Everything the restore wrote is committed; close before renaming.
            drop(clients);
        }
        cancel.check()?;
        // The swap.
        let build_name = self.build.as_ref().expect("built").name.clone();
        let target_name = self.target.dbname().to_owned();
        let old = format!("{}{:08x}", self.prefix("replaced"), nonce());
        self.target_exists = self.database_exists(&target_name)?;
        let mut sql = String::from("BEGIN; ");
        if self.target_exists {
            sql.push_str(&format!(
                "ALTER DATABASE {} RENAME TO {}; ",
                quote_ident(&target_name),
                quote_ident(&old)
            ));
        }
        sql.push_str(&format!(
            "ALTER DATABASE {} RENAME TO {}; COMMIT",
            quote_ident(&build_name),
            quote_ident(&target_name)
        ));
        if let Err(e) = execute_while_in_use(&mut self.admin, &sql) {
            if e.code().map(|c| c.code()) == Some("55006") && self.target_exists {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "database {target} is in use by other sessions, so it cannot be replaced; close them and try again"
                    ),
                ));
            }
            return Err(query_error(
                &self.admin_address,
                &format!("renaming the restored database to {target_name}"),
                &e,
            ));
        }
        self.build = None;
        if self.target_exists {
            self.drop_database(&old)?;
        }
        Ok(())
    }

    fn set_progress(&mut self, progress: Arc<dyn Progress>) {
        self.progress = Some(progress);
    }

    fn no_owner(&mut self) {
        self.no_owner = true;
    }

    fn no_privileges(&mut self) {
        self.no_privileges = true;
    }
}

impl Drop for PgRestorer {
    fn drop(&mut self) {
        if let Some(mut build) = self.build.take() {
            let _ = build.stop_writers();
            drop(build.main.take());
            build.idle.clear();
            let name = build.name.clone();
            if let Err(e) = self.drop_database(&name) {
                tracing::warn!("{e}");
            }
        }
    }
}

impl std::fmt::Debug for PgRestorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRestorer")
            .field("target", &self.target.to_string())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(plain_name("en_US.UTF-8"));
        assert!(plain_name("C"));
        assert!(!plain_name("C' TEMPLATE evil"));
        assert!(!plain_name(""));
        assert_eq!(fnv("a"), 0xaf63dc4c8601ec8c);
        assert_eq!(literal("it's"), "'it''s'");
    }
}
