//! PostgreSQL addresses as users write them: `postgres://` / `postgresql://`
//! URLs with libpq's environment (`PGHOST`, `PGPORT`, …) and password file
//! (`PGPASSFILE`, `~/.pgpass`) as defaults.
//!
//! Precedence is libpq's: a value in the URL (its authority or a query
//! parameter; a query parameter wins over the authority), then the
//! environment, then the built-in default. The password comes from the URL,
//! else `PGPASSWORD`, else the password file.
//!
//! A parsed [`Address`] never shows its password: not in `Debug`, not in
//! `Display`, not in any error built from it.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use coffer::{Error, Result};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// The port PostgreSQL listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 5432;

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A host name or IP address reached over TCP (IPv6 without brackets).
    Tcp(String),
    /// A directory holding the server's Unix-domain socket `.s.PGSQL.<port>`.
    Socket(PathBuf),
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// Plain first, TLS if the server insists (coffer treats it as `prefer`).
    Allow,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked.
    Prefer,
    /// TLS or nothing; the certificate is checked against a root certificate
    /// only when one is given (or `~/.postgresql/root.crt` exists), as libpq does.
    Require,
    /// TLS, and the certificate must chain to the root certificate.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// The name libpq uses.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// A password that never shows itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The secret, for handing to the connection only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Where the password came from (for messages: never the password itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// In the URL.
    Url,
    /// `PGPASSWORD`.
    Environment,
    /// A line of this password file.
    File(PathBuf),
}

/// The process environment as libpq reads it; tests build their own.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// Environment variables (only the `PG*` ones, `USER`, `LOGNAME` matter).
    pub vars: HashMap<String, String>,
    /// The home directory (`~/.pgpass`, `~/.postgresql/root.crt`).
    pub home: Option<PathBuf>,
    /// The socket directory used when no host is given.
    pub default_socket_dir: PathBuf,
}

impl Env {
    /// This process's environment. The default socket directory is Debian's
    /// `/var/run/postgresql` when it exists, else `/tmp` (libpq's built-in).
    /// When neither `USER` nor `LOGNAME` is set (a container, cron), the
    /// user name is the effective user's, as libpq takes it.
    pub fn from_process() -> Env {
        let mut vars: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("PG") || k == "USER" || k == "LOGNAME")
            .collect();
        if !vars.contains_key("USER")
            && !vars.contains_key("LOGNAME")
            && let Some(name) = effective_user_name()
        {
            vars.insert("USER".to_owned(), name);
        }
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let debian = Path::new("/var/run/postgresql");
        let default_socket_dir = if debian.is_dir() {
            debian.to_path_buf()
        } else {
            PathBuf::from("/tmp")
        };
        Env {
            vars,
            home,
            default_socket_dir,
        }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// A PostgreSQL database to connect to.
#[derive(Clone)]
pub struct Address {
    host: Host,
    port: u16,
    user: String,
    password: Option<(Password, PasswordSource)>,
    dbname: String,
    sslmode: SslMode,
    sslrootcert: Option<PathBuf>,
    application_name: Option<String>,
    connect_timeout: Option<u64>,
    warnings: Vec<String>,
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Address")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field(
                "password",
                &self.password.as_ref().map(|(_, source)| source),
            )
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// Characters escaped in the display form's user and database name.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl fmt::Display for Address {
    /// `postgres://user@host:port/db`, or
    /// `postgres://user@/db?host=/socket/dir&port=5432` for a socket;
    /// never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = utf8_percent_encode(&self.user, COMPONENT);
        let db = utf8_percent_encode(&self.dbname, COMPONENT);
        match &self.host {
            Host::Tcp(h) if h.contains(':') => {
                write!(f, "postgres://{user}@[{h}]:{}/{db}", self.port)
            }
            Host::Tcp(h) => write!(f, "postgres://{user}@{h}:{}/{db}", self.port),
            Host::Socket(dir) => write!(
                f,
                "postgres://{user}@/{db}?host={}&port={}",
                dir.display(),
                self.port
            ),
        }
    }
}

/// Is this string a PostgreSQL address (rather than, say, a file path)?
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// The name of the effective user, from the password database.
#[cfg(unix)]
fn effective_user_name() -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: passwd is plain data; getpwuid_r writes into it and into buf,
    // whose length it is told, and sets result to null or to &pwd.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(pwd.pw_name)
            .to_str()
            .ok()
            .map(str::to_owned)
    }
}

#[cfg(not(unix))]
fn effective_user_name() -> Option<String> {
    None
}

fn decode(s: &str, what: &str, url: &str) -> Result<String> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| {
            Error::invalid(format!(
                "the {what} in PostgreSQL address {url} is not valid UTF-8 once percent-decoded: fix its %-escapes"
            ))
        })
}

impl Address {
    /// Parse `url` with this process's environment as defaults.
    pub fn parse(url: &str) -> Result<Address> {
        Address::parse_with(url, &Env::from_process())
    }

    /// Parse `url` with `env` as defaults.
    pub fn parse_with(url: &str, env: &Env) -> Result<Address> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{} is not a PostgreSQL address: write postgres://user@host:port/dbname",
                    redact_url(url)
                ))
            })?;
        // What we show in errors: the URL with any password removed.
        let shown = redact_url(url);
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };

        let mut user = None;
        let mut password = None;
        if let Some(info) = userinfo {
            let (u, p) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            if !u.is_empty() {
                user = Some(decode(u, "user name", &shown)?);
            }
            if let Some(p) = p {
                password = Some(decode(p, "password", &shown)?);
            }
        }

        let mut host = None;
        let mut port = None;
        if hostport.contains(',') {
            return Err(Error::invalid(format!(
                "PostgreSQL address {shown} names several hosts; coffer connects to one: keep only the server to back up"
            )));
        }
        let (h, p) = if let Some(stripped) = hostport.strip_prefix('[') {
            let end = stripped.find(']').ok_or_else(|| {
                Error::invalid(format!(
                    "PostgreSQL address {shown} opens an IPv6 address with [ but never closes it with ]"
                ))
            })?;
            let after = &stripped[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => {
                    return Err(Error::invalid(format!(
                        "PostgreSQL address {shown} has {after:?} after its IPv6 address; write [addr]:port"
                    )));
                }
            };
            (&stripped[..end], port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if !h.is_empty() {
            host = Some(decode(h, "host", &shown)?);
        }
        if let Some(p) = p.filter(|p| !p.is_empty()) {
            port = Some(parse_port(p, &shown)?);
        }
        let mut dbname = match path.filter(|p| !p.is_empty()) {
            Some(p) => Some(decode(p, "database name", &shown)?),
            None => None,
        };

        let mut sslmode = None;
        let mut sslrootcert = None;
        let mut application_name = None;
        let mut connect_timeout = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                Error::invalid(format!(
                    "query parameter {pair:?} of PostgreSQL address {shown} has no value: write {pair}=VALUE"
                ))
            })?;
            let k = decode(k, "query parameter name", &shown)?;
            let v = decode(v, &format!("value of {k}"), &shown)?;
            match k.as_str() {
                "host" => host = Some(v),
                "port" => port = Some(parse_port(&v, &shown)?),
                "user" => user = Some(v),
                "password" => password = Some(v),
                "dbname" => dbname = Some(v),
                "sslmode" => {
                    sslmode = Some(SslMode::parse(&v).ok_or_else(|| bad_sslmode(&v, &shown))?)
                }
                "sslrootcert" => sslrootcert = Some(PathBuf::from(v)),
                "application_name" => application_name = Some(v),
                "connect_timeout" => {
                    connect_timeout = Some(v.parse::<u64>().map_err(|_| {
                        Error::invalid(format!(
                            "connect_timeout {v:?} of PostgreSQL address {shown} is not a number of seconds"
                        ))
                    })?)
                }
                other => {
                    return Err(Error::invalid(format!(
                        "PostgreSQL address {shown} has query parameter {other:?}, which coffer does not know: \
                         use host, port, user, password, dbname, sslmode, sslrootcert, application_name or connect_timeout"
                    )));
                }
            }
        }

        // The environment, then the defaults.
        let host = match host.or_else(|| env.var("PGHOST").map(str::to_owned)) {
            Some(h) if h.contains(',') => {
                return Err(Error::invalid(format!(
                    "the host of PostgreSQL address {shown} (or PGHOST) names several hosts; coffer connects to one: keep only the server to back up"
                )));
            }
            Some(h) if h.starts_with('/') => Host::Socket(PathBuf::from(h)),
            Some(h) => Host::Tcp(h),
            None => Host::Socket(env.default_socket_dir.clone()),
        };
        let port = match port {
            Some(p) => p,
            None => match env.var("PGPORT") {
                Some(p) => parse_port(p, "PGPORT")?,
                None => DEFAULT_PORT,
            },
        };
        let user = match user.or_else(|| env.var("PGUSER").map(str::to_owned)) {
            Some(u) => u,
            None => env
                .var("USER")
                .or_else(|| env.var("LOGNAME"))
                .map(str::to_owned)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "PostgreSQL address {shown} names no user and neither PGUSER nor USER is set: write postgres://USER@host/dbname"
                    ))
                })?,
        };
        let dbname = dbname
            .or_else(|| env.var("PGDATABASE").map(str::to_owned))
            .unwrap_or_else(|| user.clone());
        let sslmode = match sslmode {
            Some(m) => m,
            None => match env.var("PGSSLMODE") {
                Some(m) => SslMode::parse(m).ok_or_else(|| bad_sslmode(m, "PGSSLMODE"))?,
                None => SslMode::Prefer,
            },
        };
        let sslrootcert = sslrootcert.or_else(|| env.var("PGSSLROOTCERT").map(PathBuf::from));

        let mut address = Address {
            host,
            port,
            user,
            password: None,
            dbname,
            sslmode,
            sslrootcert,
            application_name,
            connect_timeout: connect_timeout
                .or_else(|| env.var("PGCONNECT_TIMEOUT").and_then(|v| v.parse().ok())),
            warnings: Vec::new(),
        };
        address.password = match password {
            Some(p) => Some((Password(p), PasswordSource::Url)),
            None => match env.var("PGPASSWORD") {
                Some(p) => Some((Password(p.to_owned()), PasswordSource::Environment)),
                None => address.password_from_file(env),
            },
        };
        Ok(address)
    }

    fn password_from_file(&mut self, env: &Env) -> Option<(Password, PasswordSource)> {
        let file = match env.var("PGPASSFILE") {
            Some(f) => PathBuf::from(f),
            None => env.home.as_ref()?.join(".pgpass"),
        };
        let meta = std::fs::metadata(&file).ok()?;
        if !meta.is_file() {
            self.warn(format!(
                "password file {} is not a plain file; ignoring it",
                file.display()
            ));
            return None;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                self.warn(format!(
                    "password file {} has group or world access and is ignored, as libpq does: run chmod 0600 on it",
                    file.display()
                ));
                return None;
            }
        }
        let text = match std::fs::read(&file) {
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(e) => {
                self.warn(format!(
                    "password file {} cannot be read ({e}); ignoring it",
                    file.display()
                ));
                return None;
            }
        };
        // libpq matches the host "localhost" for a Unix socket.
        let host = match &self.host {
            Host::Tcp(h) => h.clone(),
            Host::Socket(_) => "localhost".to_owned(),
        };
        let port = self.port.to_string();
        let wanted = [host.as_str(), port.as_str(), &self.dbname, &self.user];
        let password = pgpass_lookup(&text, wanted)?;
        Some((Password(password), PasswordSource::File(file)))
    }

    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.warnings.push(message);
    }

    /// Warnings met while parsing (an ignored password file), already logged.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Where the server is.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The server's port (also the socket's name for a socket directory).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The role to connect as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The database.
    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// The password, and where it came from.
    pub fn password(&self) -> Option<(&Password, &PasswordSource)> {
        self.password.as_ref().map(|(p, s)| (p, s))
    }

    /// The TLS mode.
    pub fn sslmode(&self) -> SslMode {
        self.sslmode
    }

    /// The root certificate file given by `sslrootcert` or `PGSSLROOTCERT`.
    pub fn sslrootcert(&self) -> Option<&Path> {
        self.sslrootcert.as_deref()
    }

    /// The `application_name` the server sees (`coffer` unless given).
    pub fn application_name(&self) -> &str {
        self.application_name.as_deref().unwrap_or("coffer")
    }

    /// How long to wait for the server to answer a connection attempt:
    /// `connect_timeout` (or `PGCONNECT_TIMEOUT`) seconds, 15 unless given;
    /// 0 means no limit, as in libpq.
    pub fn connect_timeout(&self) -> Option<std::time::Duration> {
        match self.connect_timeout {
            Some(0) => None,
            Some(s) => Some(std::time::Duration::from_secs(s)),
            None => Some(std::time::Duration::from_secs(15)),
        }
    }

    /// The same server and role, another database.
    pub fn with_dbname(&self, dbname: &str) -> Address {
        let mut a = self.clone();
        a.dbname = dbname.to_owned();
        a
    }

    /// `host:port` or the socket's path, for messages.
    pub fn server(&self) -> String {
        match &self.host {
            Host::Tcp(h) if h.contains(':') => format!("[{h}]:{}", self.port),
            Host::Tcp(h) => format!("{h}:{}", self.port),
            Host::Socket(dir) => format!("{}/.s.PGSQL.{}", dir.display(), self.port),
        }
    }

    /// The repository a collection of this database uses unless told
    /// otherwise: `<dbname>.backups` in the current directory, the database
    /// name with every character outside `[A-Za-z0-9._-]` replaced by `_`
    /// (and a leading `.` too, so it is never hidden nor `..`).
    pub fn default_repository(&self) -> PathBuf {
        let mut name: String = self
            .dbname
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if name.starts_with('.') {
            name.replace_range(0..1, "_");
        }
        PathBuf::from(format!("{name}.backups"))
    }
}

fn parse_port(p: &str, shown: &str) -> Result<u16> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::invalid(format!(
            "port {p:?} of PostgreSQL address {shown} is not a port number: give one from 1 to 65535"
        ))),
    }
}

fn bad_sslmode(v: &str, shown: &str) -> Error {
    Error::invalid(format!(
        "sslmode {v:?} of {shown} is not one of disable, allow, prefer, require, verify-ca, verify-full"
    ))
}

/// `url` with the password of its authority and any `password=` query
/// parameter replaced by `***`, for messages about a URL we cannot parse.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let end = main.find('/').unwrap_or(main.len());
    let mut out = scheme.to_owned();
    let authority = &main[..end];
    match authority.rfind('@') {
        Some(at) => {
            let info = &authority[..at];
            match info.split_once(':') {
                Some((u, _)) => out.push_str(&format!("{u}:***{}", &authority[at..])),
                None => out.push_str(authority),
            }
        }
        None => out.push_str(authority),
    }
    out.push_str(&main[end..]);
    if let Some(q) = query {
        out.push('?');
        let parts: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    out
}

/// The password of the first line of a password file (`host:port:db:user:password`,
/// `*` matching anything in the first four fields, `\` escaping `:` and `\`)
/// that matches `wanted` (host, port, database, user).
pub fn pgpass_lookup(text: &str, wanted: [&str; 4]) -> Option<String> {
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        // Each field, and whether it had an escape (an escaped `*` is literal).
        let mut fields = Vec::with_capacity(5);
        let mut escaped = Vec::with_capacity(5);
        let mut field = String::new();
        let mut had_escape = false;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        field.push(n);
                    }
                    had_escape = true;
                }
                ':' if fields.len() < 4 => {
                    fields.push(std::mem::take(&mut field));
                    escaped.push(std::mem::take(&mut had_escape));
                }
                c => field.push(c),
            }
        }
        if fields.len() < 4 {
            continue;
        }
        fields.push(field);
        let matches = (0..4).all(|i| (!escaped[i] && fields[i] == "*") || fields[i] == wanted[i]);
        if matches && !fields[4].is_empty() {
            return Some(fields.pop().unwrap());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env {
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            home: None,
            default_socket_dir: PathBuf::from("/run/pg"),
        }
    }

    #[test]
    fn full_url() {
        let a = Address::parse_with(
            "postgresql://al%40ice:p%3Ass%2Fw@db.example.com:6543/my%20db?sslmode=verify-full&sslrootcert=/ca.pem&application_name=nightly&connect_timeout=3",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(a.host(), &Host::Tcp("db.example.com".into()));
        assert_eq!(a.port(), 6543);
        assert_eq!(a.user(), "al@ice");
        assert_eq!(a.password().unwrap().0.expose(), "p:ss/w");
        assert_eq!(a.dbname(), "my db");
        assert_eq!(a.sslmode(), SslMode::VerifyFull);
        assert_eq!(a.sslrootcert(), Some(Path::new("/ca.pem")));
        assert_eq!(a.application_name(), "nightly");
        assert_eq!(a.connect_timeout(), Some(std::time::Duration::from_secs(3)));
        assert_eq!(
            a.to_string(),
            "postgres://al%40ice@db.example.com:6543/my%20db"
        );
        assert_eq!(a.server(), "db.example.com:6543");
    }

    #[test]
    fn ipv6_and_socket_hosts() {
        let a = Address::parse_with("postgres://u@[::1]:5433/d", &env(&[])).unwrap();
        assert_eq!(a.host(), &Host::Tcp("::1".into()));
        assert_eq!(a.port(), 5433);
        assert_eq!(a.to_string(), "postgres://u@[::1]:5433/d");
        let a = Address::parse_with("postgres://u@[fe80::1]/d", &env(&[])).unwrap();
        assert_eq!(a.port(), 5432);
        let a = Address::parse_with("postgres://u@%2Fvar%2Frun%2Fpg/d", &env(&[])).unwrap();
        assert_eq!(a.host(), &Host::Socket("/var/run/pg".into()));
        let a =
            Address::parse_with("postgres:///d?host=/tmp/s&port=7777&user=bob", &env(&[])).unwrap();
        assert_eq!(a.host(), &Host::Socket("/tmp/s".into()));
        assert_eq!(a.port(), 7777);
        assert_eq!(a.user(), "bob");
        assert_eq!(a.server(), "/tmp/s/.s.PGSQL.7777");
        assert_eq!(a.to_string(), "postgres://bob@/d?host=/tmp/s&port=7777");
    }

    #[test]
    fn query_parameters_win_over_the_authority() {
        let a = Address::parse_with(
            "postgres://a:pw1@h1:1/d1?user=b&password=pw2&host=h2&port=2&dbname=d2",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(
            (a.user(), a.dbname(), a.port(), a.host()),
            ("b", "d2", 2, &Host::Tcp("h2".into()))
        );
        assert_eq!(a.password().unwrap().0.expose(), "pw2");
    }

    #[test]
    fn environment_supplies_defaults() {
        let e = env(&[
            ("PGHOST", "pg.internal"),
            ("PGPORT", "6000"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpw"),
            ("PGDATABASE", "envdb"),
            ("PGSSLMODE", "require"),
            ("PGSSLROOTCERT", "/etc/ca.crt"),
        ]);
        let a = Address::parse_with("postgres://", &e).unwrap();
        assert_eq!(a.host(), &Host::Tcp("pg.internal".into()));
        assert_eq!(a.port(), 6000);
        assert_eq!(a.user(), "envuser");
        assert_eq!(a.dbname(), "envdb");
        assert_eq!(a.sslmode(), SslMode::Require);
        assert_eq!(a.sslrootcert(), Some(Path::new("/etc/ca.crt")));
        let (pw, source) = a.password().unwrap();
        assert_eq!(
            (pw.expose(), source),
            ("envpw", &PasswordSource::Environment)
        );
        // The URL wins over the environment.
        let a = Address::parse_with("postgres://u:p@h:1/d?sslmode=disable", &e).unwrap();
        assert_eq!((a.user(), a.dbname(), a.port()), ("u", "d", 1));
        assert_eq!(a.sslmode(), SslMode::Disable);
        assert_eq!(a.password().unwrap().0.expose(), "p");
    }

    #[test]
    fn builtin_defaults() {
        let a = Address::parse_with("postgres://", &env(&[("USER", "me")])).unwrap();
        assert_eq!(a.host(), &Host::Socket("/run/pg".into()));
        assert_eq!(a.port(), 5432);
        assert_eq!(a.user(), "me");
        assert_eq!(a.dbname(), "me");
        assert_eq!(a.sslmode(), SslMode::Prefer);
        assert!(a.password().is_none());
        let e = Address::parse_with("postgres://", &env(&[])).unwrap_err();
        assert!(e.message().contains("names no user"), "{e}");
    }

    #[test]
    fn bad_addresses_are_one_sentence_without_the_password() {
        for (url, expect) in [
            ("postgres://u:sekrit@h:99999/d", "is not a port number"),
            ("postgres://u:sekrit@h:x/d", "is not a port number"),
            ("postgres://u:sekrit@[::1/d", "never closes it"),
            ("postgres://u:sekrit@h1,h2/d", "several hosts"),
            ("postgres://u:sekrit@h/d?sslmode=maybe", "is not one of"),
            ("postgres://u:sekrit@h/d?frobnicate=1", "does not know"),
            ("postgres://u:sekrit@h/d?password=sekrit&x", "has no value"),
            ("postgres://u:sekrit@h/%ff", "not valid UTF-8"),
            (
                "postgres://u:sekrit@h/d?connect_timeout=soon",
                "not a number of seconds",
            ),
            ("mysql://u:sekrit@h/d", "is not a PostgreSQL address"),
        ] {
            let e = Address::parse_with(url, &env(&[])).unwrap_err();
            let text = format!("{e} {e:?}");
            assert!(text.contains(expect), "{url}: {text}");
            assert!(!text.contains("sekrit"), "{url}: {text}");
            assert_eq!(e.kind(), coffer::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn password_never_shown() {
        let a = Address::parse_with("postgres://u:hunter2@h/d", &env(&[])).unwrap();
        let shown = format!("{a} {a:?} {:?}", a.password());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Url"), "{shown}");
    }

    #[test]
    fn redacting_urls() {
        assert_eq!(
            redact_url("postgres://u:pw@h/d?password=x&sslmode=require"),
            "postgres://u:***@h/d?password=***&sslmode=require"
        );
        assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
    }

    #[test]
    fn pgpass_rules() {
        let text = "\
# comment
other:5432:*:*:nope
h\\:x:5432:db:u:colon-host
*:5432:d\\\\b:u:backslash-db
*:*:*:u:pa\\:ss
*:*:*:*:fallback
";
        assert_eq!(
            pgpass_lookup(text, ["h:x", "5432", "db", "u"]).as_deref(),
            Some("colon-host")
        );
        assert_eq!(
            pgpass_lookup(text, ["h", "5432", "d\\b", "u"]).as_deref(),
            Some("backslash-db")
        );
        assert_eq!(
            pgpass_lookup(text, ["h", "1", "x", "u"]).as_deref(),
            Some("pa:ss")
        );
        assert_eq!(
            pgpass_lookup(text, ["h", "1", "x", "v"]).as_deref(),
            Some("fallback")
        );
        // An escaped star is a literal star, not a wildcard.
        assert_eq!(pgpass_lookup("\\*:*:*:*:pw", ["h", "1", "d", "u"]), None);
        assert_eq!(
            pgpass_lookup("\\*:*:*:*:pw", ["*", "1", "d", "u"]).as_deref(),
            Some("pw")
        );
        // Too few fields: skipped.
        assert_eq!(pgpass_lookup("h:5432:db", ["h", "5432", "db", "u"]), None);
    }

    #[test]
    fn pgpass_file_and_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pass");
        std::fs::write(&file, "localhost:5432:d:u:from-file\nh:5432:d:u:tcp\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = env(&[("PGPASSFILE", file.to_str().unwrap())]);
        // A socket matches "localhost".
        let a = Address::parse_with("postgres://u@/d", &e).unwrap();
        let (pw, source) = a.password().unwrap();
        assert_eq!(pw.expose(), "from-file");
        assert_eq!(source, &PasswordSource::File(file.clone()));
        let a = Address::parse_with("postgres://u@h/d", &e).unwrap();
        assert_eq!(a.password().unwrap().0.expose(), "tcp");
        // Group-readable: ignored with a warning.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let a = Address::parse_with("postgres://u@h/d", &e).unwrap();
        assert!(a.password().is_none());
        assert!(
            a.warnings()[0].contains("group or world access"),
            "{:?}",
            a.warnings()
        );
        // ~/.pgpass when PGPASSFILE is unset.
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::write(home.join(".pgpass"), "*:*:*:*:home-pw\n").unwrap();
        std::fs::set_permissions(home.join(".pgpass"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let mut e = env(&[]);
        e.home = Some(home);
        let a = Address::parse_with("postgres://u@h/d", &e).unwrap();
        assert_eq!(a.password().unwrap().0.expose(), "home-pw");
    }

    #[test]
    fn the_process_always_has_a_user() {
        let e = Env::from_process();
        assert!(e.var("USER").or(e.var("LOGNAME")).is_some(), "{e:?}");
        assert_eq!(effective_user_name().is_some(), cfg!(unix));
    }

    #[test]
    fn default_repository_names() {
        let a = Address::parse_with("postgres://u@h/shop", &env(&[])).unwrap();
        assert_eq!(a.default_repository(), PathBuf::from("shop.backups"));
        let a = Address::parse_with("postgres://u@h/..%2Fetc%20x", &env(&[])).unwrap();
        assert_eq!(a.default_repository(), PathBuf::from("_._etc_x.backups"));
    }
}
