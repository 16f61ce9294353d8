//! pg_dump's schema text as objects, and the check every statement of an
//! archive passes before a restore runs it.
//!
//! A backup splits pg_dump's plain output at its entry headers
//! (`-- Name: t; Type: TABLE; Schema: public; Owner: app`) into one
//! [`Entry`] per object, kept in the manifest in pg_dump's order. The
//! manifest is untrusted input on restore: [`statements`] splits an entry's
//! text into statements as PostgreSQL's lexer would (quotes, dollar quotes,
//! comments), and [`check_statement`] admits only the statement kinds a
//! schema dump holds whose effects stay inside the database being built —
//! never one that touches roles, other databases, tablespaces, server
//! settings or files, nor any data statement.

use coffer::{Error, ErrorKind, Result};

/// One object of pg_dump's output: its header and its statements' text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// pg_dump's type of it (`TABLE`, `INDEX`, `FK CONSTRAINT`, `ACL`, …).
    pub kind: String,
    /// Its name as the header gives it (`t`, `TABLE t`, `t t_pkey`).
    pub name: String,
    /// Its schema (`-` for objects outside schemas).
    pub schema: String,
    /// The statements, as pg_dump wrote them.
    pub sql: String,
}

/// Parse one `-- Name: …; Type: …; Schema: …; Owner: …` header line.
fn header(line: &str) -> Option<(String, String, String)> {
    let rest = line.strip_prefix("-- Name: ")?;
    let (name, rest) = rest.rsplit_once("; Type: ")?;
    let (kind, rest) = rest.split_once("; Schema: ")?;
    let schema = match rest.split_once("; Owner: ") {
        Some((s, _)) => s,
        None => rest.split_once("; Tablespace: ").map_or(rest, |(s, _)| s),
    };
    Some((name.to_owned(), kind.to_owned(), schema.to_owned()))
}

/// The entries of one section of pg_dump's plain output. What comes before
/// the first header (the session settings pg_dump starts with) is left
/// out: a restore sets its own ([`SESSION_SETTINGS`]).
pub fn entries(dump: &str) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let lines: Vec<&str> = dump.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        // A header is `--`, the line, `--`.
        if let Some((name, kind, schema)) = header(line)
            && i > 0
            && lines[i - 1] == "--"
            && lines.get(i + 1) == Some(&"--")
        {
            // The `--` that opened this header belongs to no entry.
            if let Some(last) = out.last_mut() {
                trim_trailing_opener(&mut last.sql);
            }
            out.push(Entry {
                kind,
                name,
                schema,
                sql: String::new(),
            });
            i += 2;
            continue;
        }
        if let Some(last) = out.last_mut() {
            last.sql.push_str(line);
            last.sql.push('\n');
        }
        i += 1;
    }
    if let Some(last) = out.last_mut() {
        // pg_dump ends with `-- PostgreSQL database dump complete`.
        if let Some(at) = last.sql.find("--\n-- PostgreSQL database dump complete") {
            last.sql.truncate(at);
        }
    }
    for e in &mut out {
        let trimmed = e.sql.trim().to_owned();
        e.sql = trimmed;
    }
    out
}

fn trim_trailing_opener(sql: &mut String) {
    let t = sql.trim_end().len();
    sql.truncate(t);
    if sql.ends_with("\n--") || sql == "--" {
        sql.truncate(sql.len() - 2);
    }
}

/// The session settings every connection that builds a restore runs with
/// (pg_dump's own preamble, fixed by coffer rather than read from the
/// archive).
pub const SESSION_SETTINGS: &str = "SET statement_timeout = 0; \
     SET lock_timeout = 0; \
     SET idle_in_transaction_session_timeout = 0; \
     SET client_encoding = 'UTF8'; \
     SET standard_conforming_strings = on; \
     SELECT pg_catalog.set_config('search_path', '', false); \
     SET check_function_bodies = false; \
     SET xmloption = content; \
     SET client_min_messages = warning; \
     SET row_security = off";

/// Split `sql` into its statements (without the `;`), as PostgreSQL's
/// lexer reads it with `standard_conforming_strings` on: `'…'` and `E'…'`
/// strings, `"…"` identifiers, `$tag$…$tag$` bodies, `--` and nested `/* */`
/// comments. Text that is only whitespace and comments is no statement.
/// An unterminated quote or comment is an error.
pub fn statements(sql: &str) -> std::result::Result<Vec<&str>, String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut has_code = false;
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    while i < b.len() {
        let c = b[i];
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                loop {
                    if i + 1 >= b.len() {
                        return Err("a comment is not closed".into());
                    }
                    if b[i] == b'/' && b[i + 1] == b'*' {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b[i + 1] == b'/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'\'' => {
                has_code = true;
                let escapes =
                    i > 0 && matches!(b[i - 1], b'e' | b'E') && (i < 2 || !ident(b[i - 2]));
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err("a string is not closed".into()),
                        Some(b'\\') if escapes => i += 2,
                        Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                continue;
            }
            b'"' => {
                has_code = true;
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err("a quoted name is not closed".into()),
                        Some(b'"') if b.get(i + 1) == Some(&b'"') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                continue;
            }
            b'$' if i == 0 || !ident(b[i - 1]) => {
                // `$tag$` opens a body; `$1` is a parameter.
                let mut j = i + 1;
                while j < b.len() && (ident(b[j])) && !(j == i + 1 && b[j].is_ascii_digit()) {
                    j += 1;
                }
                if b.get(j) == Some(&b'$') {
                    has_code = true;
                    let tag = &sql[i..=j];
                    match sql[j + 1..].find(tag) {
                        Some(end) => {
                            i = j + 1 + end + tag.len();
                            continue;
                        }
                        None => return Err(format!("a {tag} body is not closed")),
                    }
                }
                has_code = true;
                i += 1;
                continue;
            }
            b';' => {
                if has_code {
                    out.push(sql[start..i].trim());
                }
                has_code = false;
                start = i + 1;
            }
            c if !c.is_ascii_whitespace() => has_code = true,
            _ => {}
        }
        i += 1;
    }
    if has_code {
        out.push(sql[start..].trim());
    }
    Ok(out)
}

/// The words of `stmt` from its start (outside comments), upper-cased, up
/// to `n` of them; a quoted name or anything else ends the list.
fn leading_words(stmt: &str, n: usize) -> Vec<String> {
    let mut words = Vec::new();
    let b = stmt.as_bytes();
    let mut i = 0;
    while words.len() < n && i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            match stmt[i + 2..].find("*/") {
                Some(e) => i += e + 4,
                None => break,
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                i += 1;
            }
            words.push(stmt[s..i].to_ascii_uppercase());
        } else {
            break;
        }
    }
    words
}

/// The words of `stmt` outside parentheses, quotes, bodies and comments,
/// upper-cased (`CREATE TABLE t (x int) AS …` → `CREATE`, `TABLE`, `T`,
/// `AS`, …), to tell what a statement does at its top level.
fn top_level_words(stmt: &str) -> Vec<String> {
    let b = stmt.as_bytes();
    let mut words = Vec::new();
    let (mut i, mut depth) = (0usize, 0usize);
    while i < b.len() {
        let c = b[i];
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => match stmt[i + 2..].find("*/") {
                Some(e) => i += e + 4,
                None => break,
            },
            b'\'' | b'"' => {
                // An E'…' string has backslash escapes.
                let escapes = c == b'\''
                    && i > 0
                    && matches!(b[i - 1], b'e' | b'E')
                    && (i < 2 || !(b[i - 2].is_ascii_alphanumeric() || b[i - 2] == b'_'));
                i += 1;
                while i < b.len() && b[i] != c {
                    i += if escapes && b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'$' => {
                let rest = &stmt[i + 1..];
                match rest.find('$') {
                    Some(e)
                        if rest[..e]
                            .bytes()
                            .all(|x| x.is_ascii_alphanumeric() || x == b'_') =>
                    {
                        let tag = &stmt[i..i + e + 2];
                        match stmt[i + tag.len()..].find(tag) {
                            Some(end) => i += 2 * tag.len() + end,
                            None => break,
                        }
                    }
                    _ => i += 1,
                }
            }
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
                if depth == 0 {
                    words.push(stmt[start..i].to_ascii_uppercase());
                }
            }
            _ => i += 1,
        }
    }
    words
}

/// Whether a `CREATE` statement would run a query while it is created: a
/// `CREATE TABLE … AS` (or `AS EXECUTE`), a materialized view that is not
/// `WITH NO DATA`. pg_dump writes neither.
fn creates_by_query(stmt: &str) -> bool {
    let top = top_level_words(stmt);
    let kind: Vec<&str> = top
        .iter()
        .skip(1)
        .map(String::as_str)
        .skip_while(|w| {
            matches!(
                *w,
                "OR" | "REPLACE" | "UNLOGGED" | "TEMP" | "TEMPORARY" | "GLOBAL" | "LOCAL"
            )
        })
        .take(2)
        .collect();
    match kind.as_slice() {
        ["TABLE", ..] => top.iter().any(|w| w == "AS" || w == "EXECUTE"),
        ["MATERIALIZED", "VIEW"] => !top.ends_with(&["WITH".into(), "NO".into(), "DATA".into()]),
        _ => false,
    }
}

/// The objects that live outside any one database: statements about them
/// act on the whole cluster.
const SHARED: &[&str] = &[
    "DATABASE",
    "ROLE",
    "USER",
    "GROUP",
    "TABLESPACE",
    "SUBSCRIPTION",
    "SYSTEM",
    "PARAMETER",
    "LARGE",
];

/// Settings a schema dump sets between its objects.
const SETTABLE: &[&str] = &[
    "DEFAULT_TABLESPACE",
    "DEFAULT_TABLE_ACCESS_METHOD",
    "DEFAULT_WITH_OIDS",
    "CHECK_FUNCTION_BODIES",
];

/// The words of a `GRANT`/`REVOKE` up to its `TO`/`FROM`, outside quotes:
/// whether it names an object (`ON …`), and which kind.
fn grant_target(stmt: &str) -> Option<String> {
    let upper = stmt.to_ascii_uppercase();
    let words: Vec<&str> = upper.split_whitespace().collect();
    let on = words.iter().position(|w| *w == "ON")?;
    if let Some(to) = words.iter().position(|w| *w == "TO" || *w == "FROM")
        && to < on
    {
        return None;
    }
    words.get(on + 1).map(|w| (*w).to_owned())
}

/// Whether a restore may run `stmt` (one statement of a schema dump): `Ok`
/// for the kinds a schema dump holds whose effects stay in the database
/// being built, otherwise what is wrong with it, as a phrase.
pub fn check_statement(stmt: &str) -> std::result::Result<(), String> {
    let w = leading_words(stmt, 6);
    let word = |i: usize| w.get(i).map(String::as_str).unwrap_or("");
    let shared =
        |i: usize| SHARED.contains(&word(i)) && !(word(i) == "USER" && word(i + 1) == "MAPPING");
    let ok = match word(0) {
        "CREATE" => {
            let mut k = 1;
            if word(1) == "OR" && word(2) == "REPLACE" {
                k = 3;
            }
            !shared(k) && !creates_by_query(stmt)
        }
        "ALTER" => !shared(1),
        "COMMENT" => word(1) == "ON" && !shared(2),
        // SECURITY LABEL [FOR provider] ON kind …
        "SECURITY" => {
            let on = if word(2) == "FOR" { 4 } else { 2 };
            word(1) == "LABEL" && word(on) == "ON" && !shared(on + 1)
        }
        "GRANT" | "REVOKE" => match grant_target(stmt) {
            Some(kind) => !SHARED.contains(&kind.as_str()),
            None => false,
        },
        "SET" => SETTABLE.contains(&word(1)),
        "SELECT" => {
            let compact: String = stmt.split_whitespace().collect();
            compact == "SELECTpg_catalog.set_config('search_path','',false)"
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        let shown: String = stmt.split_whitespace().collect::<Vec<_>>().join(" ");
        let shown = if shown.chars().count() > 80 {
            format!("{}…", shown.chars().take(80).collect::<String>())
        } else {
            shown
        };
        Err(format!(
            "holds a statement that a schema restore does not run ({shown})"
        ))
    }
}

/// Whether `stmt` is about an event trigger (creates, alters or comments
/// on one): a restore runs those last, so that no event trigger of the
/// archive fires on the restore's own DDL.
pub fn is_event_trigger(stmt: &str) -> bool {
    let w = leading_words(stmt, 4);
    w.windows(2)
        .take(3)
        .any(|p| p[0] == "EVENT" && p[1] == "TRIGGER")
}

/// Whether `stmt` changes an object's owner (`ALTER … OWNER TO`), what
/// `--no-owner` leaves out.
pub fn is_owner_change(stmt: &str) -> bool {
    let w = leading_words(stmt, 2);
    w.first().map(String::as_str) == Some("ALTER") && {
        let upper = stmt.to_ascii_uppercase();
        upper.contains(" OWNER TO ")
    }
}

/// Whether `stmt` grants or revokes privileges, what `--no-privileges`
/// leaves out.
pub fn is_privilege(stmt: &str) -> bool {
    matches!(
        leading_words(stmt, 1).first().map(String::as_str),
        Some("GRANT" | "REVOKE")
    ) || leading_words(stmt, 3)
        .iter()
        .map(String::as_str)
        .eq(["ALTER", "DEFAULT", "PRIVILEGES"])
}

/// The statements of `entry` that a restore runs, each checked; an entry
/// that holds a statement it would not run is refused, naming the entry
/// and `what` (the archive).
pub fn checked_statements<'e>(entry: &'e Entry, what: &str) -> Result<Vec<&'e str>> {
    let kind = entry.kind.to_lowercase();
    let name = if entry.schema == "-" {
        format!("{kind} {}", entry.name)
    } else {
        format!("{kind} {}.{}", entry.schema, entry.name)
    };
    let list = statements(&entry.sql).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!("the schema object {name} in {what} cannot be read ({e}); the archive was altered or damaged"),
        )
    })?;
    for s in &list {
        check_statement(s).map_err(|e| {
            Error::new(
                ErrorKind::Corrupt,
                format!("the schema object {name} in {what} {e}; the archive was altered, refusing to restore it"),
            )
        })?;
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n--\n-- Name: shop; Type: SCHEMA; Schema: -; Owner: app\n--\n\nCREATE SCHEMA shop;\n\n\nALTER SCHEMA shop OWNER TO app;\n\n--\n-- Name: touch(); Type: FUNCTION; Schema: shop; Owner: app\n--\n\nCREATE FUNCTION shop.touch() RETURNS trigger\n    LANGUAGE plpgsql\n    AS $$ BEGIN NEW.x := ';'; RETURN NEW; END $$;\n\n\n--\n-- PostgreSQL database dump complete\n--\n\n";

    #[test]
    fn entries_split_at_headers() {
        let e = entries(DUMP);
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].kind.as_str(), e[0].name.as_str(), e[0].schema.as_str()),
            ("SCHEMA", "shop", "-")
        );
        assert_eq!(
            e[0].sql,
            "CREATE SCHEMA shop;\n\n\nALTER SCHEMA shop OWNER TO app;"
        );
        assert_eq!(e[1].kind, "FUNCTION");
        assert!(e[1].sql.ends_with("END $$;"), "{}", e[1].sql);
        assert_eq!(statements(&e[1].sql).unwrap().len(), 1);
    }

    #[test]
    fn statements_respect_quotes_and_comments() {
        let s = statements(
            "CREATE TABLE \"a;b\" (x text DEFAULT 'it''s; fine');\n-- a ; comment\n/* nested /* ; */ */ COMMENT ON TABLE t IS E'\\'; still';\nCREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;SELECT $1",
        )
        .unwrap();
        assert_eq!(s.len(), 4, "{s:?}");
        assert!(
            s[1].contains("COMMENT ON TABLE t") && s[1].ends_with("still'"),
            "{}",
            s[1]
        );
        assert!(statements("SELECT 'open").is_err());
        assert!(statements("SELECT $x$ open").is_err());
        assert!(statements("/* open").is_err());
        assert_eq!(statements("  -- only a comment\n ; ;").unwrap().len(), 0);
    }

    #[test]
    fn what_a_restore_runs() {
        for ok in [
            "CREATE TABLE public.t (x int)",
            "CREATE OR REPLACE FUNCTION f() RETURNS int AS $$ select 1 $$ LANGUAGE sql",
            "CREATE UNIQUE INDEX i ON t (x)",
            "CREATE USER MAPPING FOR app SERVER s",
            "ALTER TABLE ONLY public.t ADD CONSTRAINT t_pkey PRIMARY KEY (x)",
            "ALTER TABLE public.t OWNER TO app",
            "COMMENT ON TABLE public.t IS 'x'",
            "GRANT SELECT ON TABLE public.t TO app",
            "REVOKE ALL ON SCHEMA public FROM PUBLIC",
            "SET default_tablespace = ''",
            "SELECT pg_catalog.set_config('search_path', '', false)",
            "CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA public",
            "CREATE TABLE public.t (x int GENERATED ALWAYS AS (1) STORED, y text DEFAULT 'AS')",
            "CREATE UNLOGGED TABLE public.u (x int) WITH (fillfactor = 50)",
            "CREATE MATERIALIZED VIEW public.m AS\n SELECT 1 AS one\n  WITH NO DATA",
            "CREATE FUNCTION f() RETURNS int AS $$ select 1 $$ LANGUAGE sql",
            "SECURITY LABEL FOR selinux ON TABLE public.t IS 'x'",
        ] {
            assert_eq!(check_statement(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ALTER ROLE app SUPERUSER",
            "alter   role app superuser",
            "CREATE ROLE evil",
            "CREATE DATABASE other",
            "DROP TABLE t",
            "DO $$ BEGIN PERFORM 1; END $$",
            "COPY t TO '/tmp/x'",
            "COPY t FROM PROGRAM 'rm -rf /'",
            "SELECT pg_catalog.lo_create('1')",
            "SELECT pg_read_file('/etc/passwd')",
            "GRANT pg_read_server_files TO app",
            "GRANT ALL ON DATABASE other TO app",
            "ALTER SYSTEM SET fsync = off",
            "SET ROLE postgres",
            "SET SESSION AUTHORIZATION postgres",
            "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p",
            "COMMENT ON DATABASE other IS 'x'",
            "ALTER DATABASE other RENAME TO x",
            "CALL p()",
            "LOAD 'evil'",
            "\\! rm -rf /",
            "INSERT INTO t VALUES (1)",
            "CREATE TABLE stolen AS SELECT pg_read_file('/etc/passwd')",
            "CREATE UNLOGGED TABLE x AS SELECT lo_export(1, '/tmp/x')",
            "CREATE TABLE x AS EXECUTE p",
            "CREATE TABLE x (c) WITH (o = E'\\'') AS SELECT pg_read_file('/etc/passwd')",
            "CREATE MATERIALIZED VIEW m AS SELECT pg_read_file('/etc/passwd')",
            "SECURITY LABEL ON ROLE app IS 'x'",
            "SECURITY LABEL FOR p ON DATABASE other IS 'x'",
        ] {
            assert!(check_statement(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_triggers() {
        assert!(is_event_trigger(
            "CREATE EVENT TRIGGER t ON ddl_command_end EXECUTE FUNCTION f()"
        ));
        assert!(is_event_trigger("ALTER EVENT TRIGGER t OWNER TO app"));
        assert!(is_event_trigger("COMMENT ON EVENT TRIGGER t IS 'x'"));
        assert!(!is_event_trigger(
            "CREATE TRIGGER t BEFORE INSERT ON x EXECUTE FUNCTION f()"
        ));
    }

    #[test]
    fn owner_and_privileges() {
        assert!(is_owner_change("ALTER TABLE public.t OWNER TO app"));
        assert!(!is_owner_change(
            "ALTER TABLE public.t ADD COLUMN owner_to int"
        ));
        assert!(is_privilege("GRANT SELECT ON TABLE t TO app"));
        assert!(is_privilege(
            "ALTER DEFAULT PRIVILEGES FOR ROLE app GRANT SELECT ON TABLES TO x"
        ));
        assert!(!is_privilege("CREATE TABLE grants (x int)"));
    }
}
