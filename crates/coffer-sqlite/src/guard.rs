//! Keeping a restore inside the database it builds.
//!
//! An archive is untrusted input: anyone who can write to its location can
//! rewrite `manifest.json` and seal it again (its checksum detects damage,
//! not intent). Every connection that builds a restore, an import or a
//! collection restore is therefore [`restrict`]ed for its whole life:
//!
//! - `SQLITE_LIMIT_ATTACHED` is 0, so no other database can be attached
//!   (`ATTACH`, and `VACUUM INTO`, which attaches its output);
//! - an authorizer refuses `ATTACH` and `DETACH`, `TEMP` objects, any
//!   change to a schema other than `main`, every `PRAGMA` but the few coffer
//!   itself issues (nothing like `writable_schema`), the `load_extension()`
//!   and `fts3_tokenizer()` functions (extension loading is also left off),
//!   and virtual tables of modules other than SQLite's own full-text and
//!   R*Tree modules;
//! - each schema object's SQL from the manifest goes through
//!   [`Guard::create`], which prepares it as exactly one statement and
//!   checks, while SQLite compiles it, that it creates the one object the
//!   manifest entry names, of that kind, in `main`, and does nothing else.
//!
//! A refusal names `manifest.json` and the object in one sentence.

use std::sync::{Arc, Mutex};

use coffer::manifest::{Manifest, SchemaObject};
use coffer::{Error, ErrorKind};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::{Connection, Statement};

use crate::{Result, sql_error};

/// The pragmas a restoring connection may run: those coffer issues itself
/// (settings of the file being built, its checks, schema inspection), and
/// `page_size` and `data_version`, which SQLite's FTS and R*Tree modules
/// read.
const PRAGMAS: &[&str] = &[
    "application_id",
    "auto_vacuum",
    "cache_size",
    "collation_list",
    "data_version",
    "encoding",
    "foreign_keys",
    "ignore_check_constraints",
    "index_info",
    "index_list",
    "index_xinfo",
    "integrity_check",
    "journal_mode",
    "locking_mode",
    "module_list",
    "page_size",
    "quick_check",
    "synchronous",
    "table_info",
    "table_list",
    "table_xinfo",
    "threads",
    "user_version",
];

/// Virtual table modules a restore may create: SQLite's own, whose
/// arguments name only columns, options and tables of the same database.
const MODULES: &[&str] = &[
    "fts3",
    "fts4",
    "fts4aux",
    "fts5",
    "fts5vocab",
    "rtree",
    "rtree_i32",
    "geopoly",
];

/// SQL functions no restore may call, wherever they appear.
const FUNCTIONS: &[&str] = &["load_extension", "fts3_tokenizer"];

/// The kind of schema object a manifest entry says its SQL creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `CREATE TABLE` or `CREATE VIRTUAL TABLE`.
    Table,
    /// `CREATE INDEX`.
    Index,
    /// `CREATE VIEW`.
    View,
    /// `CREATE TRIGGER`.
    Trigger,
}

impl Kind {
    fn of(kind: &str) -> Option<Kind> {
        match kind {
            "table" => Some(Kind::Table),
            "index" => Some(Kind::Index),
            "view" => Some(Kind::View),
            "trigger" => Some(Kind::Trigger),
            _ => None,
        }
    }
}

/// What the statement being prepared must do.
#[derive(Debug)]
struct Expected {
    kind: Kind,
    name: String,
    /// The table an index or trigger is on.
    table: Option<String>,
    /// Whether the object's own CREATE action was seen.
    created: bool,
}

#[derive(Debug, Default)]
struct State {
    /// Set while a manifest object's SQL is prepared.
    expected: Option<Expected>,
    /// Why the authorizer last refused something.
    refused: Option<String>,
    /// Set while [`Guard::record_virtual_table`] writes one schema row.
    schema_row: bool,
}

/// The restriction of one connection; see the module docs.
#[derive(Clone, Debug)]
pub(crate) struct Guard {
    state: Arc<Mutex<State>>,
}

/// Restrict `conn` for the rest of its life (see the module docs); `what`
/// names its file in errors.
pub(crate) fn restrict(conn: &Connection, what: &str) -> Result<Guard> {
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)
        .map_err(|e| sql_error("restrict", what, e))?;
    let state = Arc::new(Mutex::new(State::default()));
    let shared = state.clone();
    conn.authorizer(Some(move |ctx: AuthContext<'_>| {
        let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
        match judge(&mut state, &ctx) {
            Ok(()) => Authorization::Allow,
            Err(why) => {
                state.refused = Some(why);
                Authorization::Deny
            }
        }
    }));
    Ok(Guard { state })
}

fn in_main(ctx: &AuthContext<'_>) -> bool {
    ctx.database_name.is_none_or(|d| d == "main")
}

fn is_schema_table(name: &str) -> bool {
    ["sqlite_master", "sqlite_schema"]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s))
}

/// Allow `ctx` or say (as the end of a sentence about the object) why not.
fn judge(state: &mut State, ctx: &AuthContext<'_>) -> std::result::Result<(), String> {
    use AuthAction as A;
    let elsewhere = || match ctx.database_name {
        Some("temp") => Err("creates or changes a TEMP object".to_string()),
        other => Err(format!(
            "writes to database '{}' instead of the one being restored",
            other.unwrap_or("?")
        )),
    };
    // Recording a virtual table whose module this SQLite lacks: the one
    // PRAGMA and the one schema row that takes, nothing else.
    if state.schema_row {
        return match ctx.action {
            A::Pragma { pragma_name, .. }
                if pragma_name.eq_ignore_ascii_case("writable_schema") && in_main(ctx) =>
            {
                Ok(())
            }
            A::Insert { table_name } if is_schema_table(table_name) && in_main(ctx) => Ok(()),
            _ => Err("does more than record a virtual table".into()),
        };
    }
    // What no connection building a restore may do at all.
    match ctx.action {
        A::Attach { .. } => return Err("attaches another database".into()),
        A::Detach { .. } => return Err("detaches a database".into()),
        A::CreateTempTable { .. }
        | A::CreateTempIndex { .. }
        | A::CreateTempView { .. }
        | A::CreateTempTrigger { .. }
        | A::DropTempTable { .. }
        | A::DropTempIndex { .. }
        | A::DropTempView { .. }
        | A::DropTempTrigger { .. } => return Err("creates or changes a TEMP object".into()),
        A::Pragma { pragma_name, .. } => {
            let known = PRAGMAS.iter().any(|p| p.eq_ignore_ascii_case(pragma_name));
            if !known || !in_main(ctx) {
                return Err(format!("runs PRAGMA {pragma_name}"));
            }
        }
        A::Function { function_name }
            if FUNCTIONS
                .iter()
                .any(|f| f.eq_ignore_ascii_case(function_name)) =>
        {
            return Err(format!("calls {function_name}()"));
        }
        A::CreateVtable { module_name, .. } => {
            if !MODULES.iter().any(|m| m.eq_ignore_ascii_case(module_name)) {
                return Err(format!(
                    "uses virtual table module '{module_name}', which a restore does not create"
                ));
            }
            if !in_main(ctx) {
                return elsewhere();
            }
        }
        A::CreateTable { .. }
        | A::CreateIndex { .. }
        | A::CreateView { .. }
        | A::CreateTrigger { .. }
        | A::DropTable { .. }
        | A::DropIndex { .. }
        | A::DropView { .. }
        | A::DropTrigger { .. }
        | A::DropVtable { .. }
        | A::AlterTable { .. }
        | A::Insert { .. }
        | A::Update { .. }
        | A::Delete { .. }
        | A::Analyze { .. }
        | A::Reindex { .. }
            if !in_main(ctx) =>
        {
            return elsewhere();
        }
        A::Unknown { code, .. } => return Err(format!("does something unknown ({code})")),
        _ => {}
    }
    let Some(expected) = state.expected.as_mut() else {
        return Ok(());
    };
    // Preparing a manifest object's SQL: it must create that object and
    // otherwise only read.
    let (kind, what, name, table) = match ctx.action {
        A::CreateTable { table_name } => (Kind::Table, "table", table_name, None),
        A::CreateVtable { table_name, .. } => (Kind::Table, "virtual table", table_name, None),
        A::CreateIndex {
            index_name,
            table_name,
        } => (Kind::Index, "index", index_name, Some(table_name)),
        A::CreateView { view_name } => (Kind::View, "view", view_name, None),
        A::CreateTrigger {
            trigger_name,
            table_name,
        } => (Kind::Trigger, "trigger", trigger_name, Some(table_name)),
        // Recording the new object in the schema, and filling a new index.
        A::Insert { table_name } | A::Update { table_name, .. } if is_schema_table(table_name) => {
            return Ok(());
        }
        A::Reindex { index_name } if expected.created && index_name == expected.name => {
            return Ok(());
        }
        A::Read { .. } | A::Select | A::Function { .. } | A::Recursive => return Ok(()),
        A::Insert { table_name } | A::Update { table_name, .. } | A::Delete { table_name } => {
            return Err(format!("writes to table '{table_name}'"));
        }
        A::Pragma { pragma_name, .. } => return Err(format!("runs PRAGMA {pragma_name}")),
        A::Transaction { .. } | A::Savepoint { .. } => {
            return Err("starts or ends a transaction".into());
        }
        _ => return Err("does more than create it".into()),
    };
    if expected.created {
        // A table's UNIQUE and PRIMARY KEY constraints create automatic
        // indexes, and AUTOINCREMENT SQLite's counter table.
        if expected.kind == Kind::Table
            && ((kind == Kind::Table && name == "sqlite_sequence")
                || (kind == Kind::Index
                    && table == Some(expected.name.as_str())
                    && name
                        .strip_prefix("sqlite_autoindex_")
                        .and_then(|rest| rest.strip_prefix(expected.name.as_str()))
                        .is_some_and(|rest| rest.starts_with('_'))))
        {
            return Ok(());
        }
        return Err(format!("also creates {what} '{name}'"));
    }
    if kind != expected.kind || name != expected.name {
        return Err(format!("creates {what} '{name}' instead"));
    }
    if let (Some(want), Some(on)) = (&expected.table, table)
        && want != on
    {
        return Err(format!("is on '{on}', not on '{want}'"));
    }
    expected.created = true;
    Ok(())
}

/// The error for `obj`'s SQL doing `why`.
fn refusal(obj: &SchemaObject, why: &str) -> Error {
    refused(&format!("the SQL of {} '{}' {why}", obj.kind, obj.name))
}

/// The error for an archive whose manifest asks for `what`.
fn refused(what: &str) -> Error {
    Error::corrupt(format!(
        "manifest.json of the archive is refused: {what}; the target was left unchanged, use a trusted copy of the archive"
    ))
}

/// The settings of `manifest` that a restore applies with `PRAGMA`, checked
/// and typed, in order, as statements: those that must precede the first
/// table (`early`: `page_size`, `auto_vacuum`, `encoding`) or follow the
/// last commit (`user_version`, `application_id`). A value SQLite could not
/// have reported for that setting is refused, naming manifest.json.
pub(crate) fn setting_pragmas(manifest: &Manifest, early: bool) -> Result<Vec<String>> {
    let names: &[&str] = if early {
        &["page_size", "auto_vacuum", "encoding"]
    } else {
        &["user_version", "application_id"]
    };
    let mut out = Vec::new();
    for &name in names {
        let Some(value) = manifest.settings.get(name) else {
            continue;
        };
        let int = value.as_i64();
        let typed = match name {
            "page_size" => int
                .filter(|n| (512..=65536).contains(n) && (*n as u64).is_power_of_two())
                .map(|n| n.to_string()),
            "auto_vacuum" => int.filter(|n| (0..=2).contains(n)).map(|n| n.to_string()),
            "encoding" => value
                .as_str()
                .map(str::to_ascii_lowercase)
                .filter(|e| ["utf-8", "utf-16le", "utf-16be"].contains(&e.as_str()))
                .map(|e| format!("'{e}'")),
            _ => int
                .filter(|n| i32::try_from(*n).is_ok())
                .map(|n| n.to_string()),
        };
        let Some(typed) = typed else {
            return Err(refused(&format!(
                "its setting {name} is {value}, which is not a value SQLite has"
            )));
        };
        out.push(format!("PRAGMA main.{name} = {typed}"));
    }
    Ok(out)
}

impl Guard {
    /// Create the schema object `obj` of a manifest: its SQL must be exactly
    /// one statement that creates an object of `obj`'s kind and name in
    /// `main` (for an index or a trigger, on `obj.table`), and does nothing
    /// else. Otherwise nothing is executed and the error names manifest.json
    /// and the object. `sql` is `obj.sql`, or coffer's own DDL for it.
    /// Record the virtual table `obj`, whose module this SQLite does not
    /// have, as a row of the schema, as the source holds it: it works where
    /// that module is loaded. Its SQL must be one `CREATE VIRTUAL TABLE` of
    /// the entry's name (checked by the caller's reading of it and here by
    /// the name); while the row is written, the connection may run
    /// `PRAGMA writable_schema` and insert into the schema table, nothing
    /// else.
    pub(crate) fn record_virtual_table(&self, conn: &Connection, obj: &SchemaObject) -> Result<()> {
        let what = format!("virtual table '{}'", obj.name);
        {
            let mut state = self.lock();
            state.refused = None;
            state.schema_row = true;
        }
        let written = conn
            .execute_batch("PRAGMA writable_schema = ON")
            .and_then(|()| {
                conn.execute(
                    "INSERT INTO main.sqlite_schema(type, name, tbl_name, rootpage, sql) \
                     VALUES ('table', ?1, ?1, 0, ?2)",
                    [&obj.name, &obj.sql],
                )
            })
            .and_then(|_| conn.execute_batch("PRAGMA writable_schema = OFF"));
        self.lock().schema_row = false;
        written.map_err(|e| self.error("restore", &what, e))
    }

    pub(crate) fn create(
        &self,
        conn: &Connection,
        obj: &SchemaObject,
        sql: &str,
        what: &str,
    ) -> Result<()> {
        let Some(kind) = Kind::of(&obj.kind) else {
            return Err(refusal(obj, "is of a kind a restore does not create"));
        };
        let table = matches!(kind, Kind::Index | Kind::Trigger).then(|| obj.table.clone());
        {
            let mut state = self.lock();
            state.refused = None;
            state.expected = Some(Expected {
                kind,
                name: obj.name.clone(),
                table,
                created: false,
            });
        }
        let prepared = conn.prepare(sql);
        let (expected, refused) = {
            let mut state = self.lock();
            (state.expected.take(), state.refused.take())
        };
        let mut stmt: Statement<'_> = match (prepared, refused) {
            (Ok(stmt), _) => stmt,
            (Err(e), Some(why)) => return Err(refusal(obj, &why).with_source(e)),
            (Err(rusqlite::Error::MultipleStatement), None) => {
                return Err(refusal(obj, "holds more than one statement"));
            }
            (Err(e), None) if e.to_string().contains("no such collation sequence") => {
                let collation = e
                    .to_string()
                    .rsplit(": ")
                    .next()
                    .unwrap_or_default()
                    .to_string();
                return Err(Error::new(
                    ErrorKind::Engine,
                    format!(
                        "could not restore {what}: it needs the collation sequence '{}', which the source's application defines and coffer does not have; leave it out (--table names the tables to take), or restore a backup with --skip-missing-collations",
                        collation.escape_debug()
                    ),
                )
                .with_source(e));
            }
            (Err(e), None) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::Unknown) => {
                return Err(Error::new(
                    ErrorKind::Engine,
                    format!(
                        "could not restore {what}: its SQL in manifest.json does not compile ({e})"
                    ),
                )
                .with_source(e));
            }
            (Err(e), None) => return Err(sql_error("restore", what, e)),
        };
        if !expected.is_some_and(|e| e.created) {
            return Err(refusal(
                obj,
                &format!("does not create {} '{}'", obj.kind, obj.name),
            ));
        }
        stmt.raw_execute()
            .map_err(|e| self.error("restore", what, e))?;
        Ok(())
    }

    /// The error of a statement of coffer's own that failed with `e`: the
    /// authorizer's reason when it refused something, else [`sql_error`].
    pub(crate) fn error(&self, what: &str, thing: &str, e: rusqlite::Error) -> Error {
        // A refusal fails the statement (with SQLITE_AUTH, or SQLITE_ERROR
        // for a function), and nothing else is refused on these connections.
        match self.lock().refused.take() {
            Some(why) => refused(&format!("restoring {thing} {why}")).with_source(e),
            None => sql_error(what, thing, e),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(kind: &str, name: &str, table: &str, sql: &str) -> SchemaObject {
        SchemaObject {
            kind: kind.into(),
            name: name.into(),
            table: table.into(),
            sql: sql.into(),
        }
    }

    /// A restricted connection to a new file in `dir`, with table `t`.
    fn restricted(dir: &std::path::Path) -> (Connection, Guard) {
        let conn = Connection::open(dir.join("built.db")).unwrap();
        let guard = restrict(&conn, "built.db").unwrap();
        let t = obj(
            "table",
            "t",
            "t",
            "CREATE TABLE t(id INTEGER PRIMARY KEY, a UNIQUE)",
        );
        guard.create(&conn, &t, &t.sql, "table 't'").unwrap();
        (conn, guard)
    }

    fn schema(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM main.sqlite_schema ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn the_objects_a_backup_takes_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, guard) = restricted(dir.path());
        for o in [
            obj(
                "table",
                "s",
                "s",
                "CREATE TABLE s(k INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT NOT NULL CHECK (length(v) > 0), w DEFAULT (random()))",
            ),
            obj(
                "table",
                "Odd \"name\"",
                "Odd \"name\"",
                "CREATE TABLE \"Odd \"\"name\"\"\"(a, b, PRIMARY KEY (a, b)) WITHOUT ROWID",
            ),
            obj(
                "index",
                "i",
                "t",
                "CREATE UNIQUE INDEX i ON t(abs(a)) WHERE a > 1",
            ),
            obj("view", "v", "v", "CREATE VIEW v AS SELECT a FROM t"),
            obj(
                "trigger",
                "tr",
                "t",
                "CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM s WHERE k = NEW.id; END",
            ),
            obj(
                "trigger",
                "tv",
                "v",
                "CREATE TRIGGER tv INSTEAD OF INSERT ON v BEGIN INSERT INTO t(a) VALUES (NEW.a); END",
            ),
            obj("table", "f", "f", "CREATE VIRTUAL TABLE f USING fts5(x, y)"),
            obj("table", "f4", "f4", "CREATE VIRTUAL TABLE f4 USING fts4(x)"),
            obj(
                "table",
                "r",
                "r",
                "CREATE VIRTUAL TABLE r USING rtree(id, x0, x1)",
            ),
        ] {
            guard
                .create(&conn, &o, &o.sql, &o.name)
                .unwrap_or_else(|e| panic!("{}: {e}", o.name));
        }
        // coffer's own statements still work.
        conn.execute_batch(
            "BEGIN; INSERT INTO t(a) VALUES (5); INSERT INTO f VALUES ('a b', 'c');
             INSERT INTO r VALUES (1, 0, 1); INSERT INTO s(v) VALUES ('x');
             ANALYZE sqlite_schema; DELETE FROM main.sqlite_sequence; COMMIT;
             PRAGMA main.user_version = 7; PRAGMA main.integrity_check;",
        )
        .unwrap();
        assert!(schema(&conn).contains(&"f_data".to_string()));
    }

    /// `sql` as the SQL of `o` is refused, naming manifest.json, the object
    /// and `why`, and changes nothing.
    fn refused_as(o: SchemaObject, why: &str) {
        let dir = tempfile::tempdir().unwrap();
        let (conn, guard) = restricted(dir.path());
        let before = schema(&conn);
        let Err(err) = guard.create(&conn, &o, &o.sql, &o.name) else {
            panic!("{} was not refused", o.sql);
        };
        let msg = err.to_string();
        assert!(
            msg.starts_with("manifest.json of the archive is refused: ")
                && msg.contains(&format!("{} '{}'", o.kind, o.name))
                && msg.contains(why),
            "{}: {msg}",
            o.sql
        );
        assert_eq!(schema(&conn), before, "{}", o.sql);
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(files, ["built.db"], "{}", o.sql);
    }

    #[test]
    fn sql_that_does_more_or_other_than_its_entry_says_is_refused() {
        let v = |sql: &str| obj("view", "v", "v", sql);
        let other = "other.db";
        refused_as(
            v(&format!("CREATE VIEW v AS SELECT 1; ATTACH '{other}' AS x")),
            "attaches another database",
        );
        refused_as(
            v("CREATE VIEW v AS SELECT 1; SELECT 2"),
            "more than one statement",
        );
        refused_as(
            v("CREATE VIEW v AS SELECT 1; DELETE FROM t"),
            "writes to table 't'",
        );
        refused_as(
            v("CREATE VIEW v AS SELECT 1; CREATE TABLE x(a)"),
            "also creates table 'x'",
        );
        refused_as(
            v("CREATE VIEW v AS SELECT 1; PRAGMA writable_schema = ON"),
            "PRAGMA writable_schema",
        );
        refused_as(v("CREATE TEMP VIEW v AS SELECT 1"), "TEMP object");
        refused_as(v("CREATE VIEW w AS SELECT 1"), "creates view 'w' instead");
        refused_as(v("CREATE TABLE v(a)"), "creates table 'v' instead");
        refused_as(v("DROP TABLE t"), "writes to table 'sqlite_master'");
        refused_as(v("ANALYZE"), "does more than create it");
        refused_as(v("VACUUM"), "does not create view 'v'");
        refused_as(v("PRAGMA journal_mode = DELETE"), "PRAGMA journal_mode");
        refused_as(
            obj("index", "i", "s", "CREATE INDEX i ON t(a)"),
            "is on 't', not on 's'",
        );
        refused_as(
            obj(
                "table",
                "c",
                "c",
                "CREATE TABLE c(a CHECK (load_extension('x')))",
            ),
            "calls load_extension()",
        );
        refused_as(
            obj(
                "trigger",
                "tr",
                "t",
                "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END; ATTACH 'x' AS y",
            ),
            "attaches",
        );
        refused_as(
            obj("table", "d", "d", "CREATE VIRTUAL TABLE d USING dbstat"),
            "module 'dbstat'",
        );
        refused_as(
            obj("table", "z", "z", "CREATE TABLE temp.z(a)"),
            "TEMP object",
        );
        refused_as(obj("sequence", "q", "q", "CREATE TABLE q(a)"), "kind");
        let dir = tempfile::tempdir().unwrap();
        let (conn, guard) = restricted(dir.path());
        let bad = obj("index", "i", "nowhere", "CREATE INDEX i ON nowhere(a)");
        let err = guard
            .create(&conn, &bad, &bad.sql, "index 'i'")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "could not restore index 'i': its SQL in manifest.json does not compile (no such table: main.nowhere)"
        );
    }

    #[test]
    fn the_connection_cannot_reach_other_files_for_its_whole_life() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, guard) = restricted(dir.path());
        let stray = dir.path().join("stray.db");
        let stray = stray.to_str().unwrap();
        for o in [
            obj(
                "view",
                "lx",
                "lx",
                &format!("CREATE VIEW lx AS SELECT load_extension('{stray}')"),
            ),
            obj(
                "trigger",
                "lt",
                "t",
                &format!(
                    "CREATE TRIGGER lt AFTER UPDATE ON t BEGIN SELECT load_extension('{stray}'); END"
                ),
            ),
        ] {
            guard.create(&conn, &o, &o.sql, &o.name).unwrap();
        }
        for sql in [
            format!("ATTACH '{stray}' AS x"),
            format!("VACUUM INTO '{stray}'"),
            format!("SELECT load_extension('{stray}')"),
            "PRAGMA writable_schema = ON".to_string(),
            "PRAGMA main.schema_version = 1".to_string(),
            format!("PRAGMA temp_store_directory = '{}'", dir.path().display()),
            "CREATE TEMP TABLE x(a)".to_string(),
            // Objects of the archive are of the database it restores, but
            // are not run with more rights than coffer's own statements.
            "SELECT * FROM lx".to_string(),
            "UPDATE t SET a = a".to_string(),
        ] {
            let e = conn.execute_batch(&sql).unwrap_err();
            let err = guard.error("restore", "the database", e).to_string();
            // Refused by the guard, the attachment limit, or SQLite itself
            // (load_extension() is never allowed in views and triggers).
            assert!(
                [
                    "manifest.json",
                    "too many attached",
                    "unsafe use of load_extension"
                ]
                .iter()
                .any(|m| err.contains(m)),
                "{sql}: {err}"
            );
        }
        assert!(!std::path::Path::new(stray).exists());
    }

    #[test]
    fn extension_loading_is_off_even_without_the_guard() {
        let conn = Connection::open_in_memory().unwrap();
        let err = conn
            .query_row("SELECT load_extension('x')", [], |_| Ok(()))
            .unwrap_err();
        assert!(err.to_string().contains("not authorized"), "{err}");
    }

    #[test]
    fn settings_are_typed() {
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "format": "coffer-archive", "format_version": 1,
            "tool": {"name": "coffer", "version": "0"}, "kind": "backup",
            "created_at": "", "backup_point": "",
            "source": {"engine": "sqlite", "engine_version": "3", "database": "a.db"},
            "settings": {"page_size": 8192, "auto_vacuum": 1, "encoding": "utf-16le",
                         "user_version": -3, "application_id": 7, "journal_mode": "wal"},
            "objects": [], "tables": []
        }))
        .unwrap();
        assert_eq!(
            setting_pragmas(&m, true).unwrap(),
            [
                "PRAGMA main.page_size = 8192",
                "PRAGMA main.auto_vacuum = 1",
                "PRAGMA main.encoding = 'utf-16le'"
            ]
        );
        assert_eq!(
            setting_pragmas(&m, false).unwrap(),
            [
                "PRAGMA main.user_version = -3",
                "PRAGMA main.application_id = 7"
            ]
        );
        for (name, bad) in [
            ("page_size", serde_json::json!(1000)),
            ("page_size", serde_json::json!("4096; ATTACH 'x' AS y")),
            ("auto_vacuum", serde_json::json!(3)),
            ("encoding", serde_json::json!("utf-8'; ATTACH 'x' AS y; --")),
            ("user_version", serde_json::json!(1i64 << 40)),
            ("application_id", serde_json::json!(1.5)),
        ] {
            let old = m.settings.insert(name.into(), bad).unwrap();
            let early = ["page_size", "auto_vacuum", "encoding"].contains(&name);
            let err = setting_pragmas(&m, early).unwrap_err().to_string();
            assert!(err.contains("manifest.json") && err.contains(name), "{err}");
            m.settings.insert(name.into(), old);
        }
    }
}
