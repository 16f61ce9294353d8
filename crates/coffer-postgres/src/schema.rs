//! The schema as DDL, from the server's own `pg_dump --schema-only`, in
//! its two sections: pre-data (types, tables, functions, views, … — what
//! must exist before rows are loaded) and post-data (indexes, constraints
//! other than NOT NULL and CHECK, triggers, rules, policies — what is
//! cheaper to build after). See docs/DECISIONS.md for why pg_dump and not
//! catalog queries of our own.
//!
//! pg_dump runs on the snapshot the data is read in (`--snapshot`), so
//! schema and rows are of one moment. It gets the address as a conninfo
//! string and the password in its environment (`PGPASSWORD`), never on its
//! command line.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use coffer::{Error, ErrorKind, Result};

use crate::address::{Address, Host};

/// A `pg_dump` binary and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgDump {
    /// The binary.
    pub path: PathBuf,
    /// Its major version (15 for 15.4).
    pub major: u32,
    /// The version as it prints it (`15.18 (Debian 15.18-0+deb12u1)`).
    pub version: String,
}

/// Where `pg_dump` is looked for, in order: each directory of `PATH`, the
/// directory `pg_config --bindir` names, then Debian's
/// `/usr/lib/postgresql/N/bin`, newest first.
pub fn pg_dump_candidates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("pg_dump"))
                .collect()
        })
        .unwrap_or_default();
    if let Ok(o) = Command::new("pg_config").arg("--bindir").output()
        && o.status.success()
    {
        out.push(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("pg_dump"));
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((n, e.path().join("bin/pg_dump")))
        })
        .collect();
    debian.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    out.extend(debian.into_iter().map(|(_, p)| p));
    out
}

/// The major version in `pg_dump --version` output
/// (`pg_dump (PostgreSQL) 15.18 (Debian …)` → 15; `9.6.24` → 9).
pub fn parse_version(output: &str) -> Option<(u32, String)> {
    let rest = output.trim().strip_prefix("pg_dump (PostgreSQL) ")?;
    let major = rest
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((major, rest.to_owned()))
}

/// The first of `candidates` that runs and is at least as new as the
/// server (`server_version_num`); refused, in one sentence, when none is
/// there or every one is too old.
pub fn find_pg_dump(
    candidates: &[PathBuf],
    server_version_num: u32,
    server: &str,
) -> Result<PgDump> {
    let server_major = server_version_num / 10000;
    let mut too_old: Option<PgDump> = None;
    for path in candidates {
        if !path.is_file() {
            continue;
        }
        let Ok(out) = Command::new(path).arg("--version").output() else {
            continue;
        };
        let Some((major, version)) = parse_version(&String::from_utf8_lossy(&out.stdout)) else {
            continue;
        };
        let found = PgDump {
            path: path.clone(),
            major,
            version,
        };
        if major >= server_major {
            return Ok(found);
        }
        too_old.get_or_insert(found);
    }
    match too_old {
        Some(old) => Err(Error::new(
            ErrorKind::Engine,
            format!(
                "pg_dump at {} is version {}, older than the server at {server} (version {server_major}), and cannot read its schema: \
                 install the PostgreSQL {server_major} client tools or newer (Debian/Ubuntu: apt-get install postgresql-client-{server_major}) and put them on PATH",
                old.path.display(),
                old.major
            ),
        )),
        None => Err(Error::not_found(format!(
            "pg_dump, which coffer runs to read the schema of the server at {server}, was found neither on PATH nor via pg_config --bindir: \
             install the PostgreSQL {server_major} client tools or newer (Debian/Ubuntu: apt-get install postgresql-client-{server_major})"
        ))),
    }
}

/// Options of the dump, as pg_dump has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpOptions {
    /// Leave out `ALTER … OWNER TO` (`--no-owner`).
    pub no_owner: bool,
    /// Leave out `GRANT` / `REVOKE` (`--no-privileges`).
    pub no_privileges: bool,
    /// Only these tables (`(schema, name)`), with their indexes,
    /// constraints, triggers and owned sequences (`--table`); empty: the
    /// whole database.
    pub tables: Vec<(String, String)>,
}

/// The DDL of a database, in pg_dump's two schema sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaDdl {
    /// Before the rows: types, tables, functions, views, sequences, …
    pub pre_data: String,
    /// After the rows: indexes, constraints, triggers, rules, policies, …
    pub post_data: String,
}

/// A conninfo value in single quotes, `\` and `'` escaped.
fn conninfo_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The conninfo string pg_dump gets: everything but the password.
fn conninfo(address: &Address) -> String {
    let host = match address.host() {
        Host::Tcp(h) => h.clone(),
        Host::Socket(d) => d.display().to_string(),
    };
    let mut s = format!(
        "host={} port={} user={} dbname={} sslmode={} application_name={}",
        conninfo_value(&host),
        address.port(),
        conninfo_value(address.user()),
        conninfo_value(address.dbname()),
        address.sslmode().as_str(),
        conninfo_value(&format!("{} pg_dump", address.application_name())),
    );
    if let Some(root) = address.sslrootcert() {
        s.push_str(&format!(
            " sslrootcert={}",
            conninfo_value(&root.display().to_string())
        ));
    }
    s
}

impl PgDump {
    /// Find pg_dump for a server of `server_version_num` at `address`.
    pub fn find(address: &Address, server_version_num: u32) -> Result<PgDump> {
        find_pg_dump(&pg_dump_candidates(), server_version_num, &address.server())
    }

    /// Dump both schema sections of `address`'s database, in `snapshot`
    /// (an exported snapshot id, still open) when given.
    pub fn dump_schema(
        &self,
        address: &Address,
        snapshot: Option<&str>,
        options: DumpOptions,
    ) -> Result<SchemaDdl> {
        Ok(SchemaDdl {
            pre_data: self.section(address, snapshot, &options, "pre-data")?,
            post_data: self.section(address, snapshot, &options, "post-data")?,
        })
    }

    fn section(
        &self,
        address: &Address,
        snapshot: Option<&str>,
        options: &DumpOptions,
        section: &str,
    ) -> Result<String> {
        let mut cmd = Command::new(&self.path);
        cmd.arg("--schema-only")
            .arg(format!("--section={section}"))
            .arg("--no-password")
            .arg("--dbname")
            .arg(conninfo(address));
        if let Some(id) = snapshot {
            cmd.arg(format!("--snapshot={id}"));
        }
        if options.no_owner {
            cmd.arg("--no-owner");
        }
        if options.no_privileges {
            cmd.arg("--no-privileges");
        }
        for (schema, name) in &options.tables {
            // Quoted, a pattern's name is taken literally.
            cmd.arg(format!(
                "--table={}.{}",
                crate::catalog::quote_ident(schema),
                crate::catalog::quote_ident(name)
            ));
        }
        if !options.tables.is_empty() {
            cmd.arg("--strict-names");
        }
        // Only what the conninfo does not say may come from the environment.
        for var in ["PGPASSWORD", "PGSERVICE", "PGOPTIONS", "PGHOSTADDR"] {
            cmd.env_remove(var);
        }
        if let Some((password, _)) = address.password() {
            cmd.env("PGPASSWORD", password.expose());
        }
        let out = cmd.stdin(Stdio::null()).output().map_err(|e| {
            Error::new(
                ErrorKind::Engine,
                format!("cannot run pg_dump at {}: {e}", self.path.display()),
            )
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let line = stderr
                .lines()
                .find(|l| l.contains("error:"))
                .or_else(|| stderr.lines().next())
                .unwrap_or("no message")
                .trim();
            return Err(Error::new(
                ErrorKind::Engine,
                format!(
                    "pg_dump {} of the {section} schema of {address} failed ({}): {line}",
                    self.path.display(),
                    out.status
                ),
            ));
        }
        let text = String::from_utf8(out.stdout).map_err(|_| {
            Error::new(
                ErrorKind::Engine,
                format!("pg_dump wrote schema DDL of {address} that is not UTF-8"),
            )
        })?;
        Ok(strip_psql_commands(&text))
    }
}

/// pg_dump 17.6, 16.10, 15.14, 14.19, 13.22 and later wrap plain output in
/// psql's `\restrict KEY` / `\unrestrict KEY`; the DDL is run over a
/// connection, not by psql, so those lines go.
fn strip_psql_commands(text: &str) -> String {
    text.lines()
        .filter(|l| !(l.starts_with("\\restrict ") || l.starts_with("\\unrestrict ")))
        .flat_map(|l| [l, "\n"])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n")
                .unwrap()
                .0,
            15
        );
        assert_eq!(parse_version("pg_dump (PostgreSQL) 9.6.24").unwrap().0, 9);
        assert_eq!(parse_version("pg_dump (PostgreSQL) 17beta1").unwrap().0, 17);
        assert!(parse_version("something else").is_none());
    }

    #[test]
    fn conninfo_quotes() {
        assert_eq!(conninfo_value(r"a'b\c"), r"'a\'b\\c'");
    }

    #[test]
    fn psql_commands_go() {
        assert_eq!(
            strip_psql_commands("\\restrict abc\nCREATE TABLE t ();\n\\unrestrict abc\n"),
            "CREATE TABLE t ();\n"
        );
    }
}
