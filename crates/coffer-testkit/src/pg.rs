//! Throwaway PostgreSQL clusters for tests.
//!
//! [`cluster`] starts one cluster per test process, the first time a test
//! asks: `initdb` into a temporary directory (as the `postgres` user when the
//! tests run as root, since `initdb` refuses root), then `postgres` with
//! `fsync`, `synchronous_commit` and `full_page_writes` off, listening on
//! 127.0.0.1 only on a free port, its socket in the temporary directory, and
//! TLS on with a certificate from a CA made for it (when `openssl` is there).
//!
//! Roles: [`SUPERUSER`] connects without a password (`trust`, over TCP and
//! the socket); [`PASSWORD_USER`] is an ordinary role that must give
//! [`Cluster::password`] (SCRAM) over TCP; [`REJECTED_USER`] exists but
//! `pg_hba.conf` rejects it over TCP.
//!
//! The binaries come from `pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/N/bin`. When there are none the test fails, saying
//! what to install: a missing PostgreSQL is never a silent skip.
//!
//! Statics are never dropped, so each cluster has a watchdog process that
//! waits on a pipe from the test process; when the test process exits, however
//! it exits, the pipe closes and the watchdog stops the server and removes its
//! directory. A cluster from [`Cluster::start`] also stops when dropped.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The superuser every cluster has; it needs no password.
pub const SUPERUSER: &str = "coffer";

/// A deliberately nasty database: every kind of schema object a backup
/// keeps and values at the edges of every type (`fixtures/postgres/nasty.sql`).
pub const NASTY_SQL: &str = include_str!("../fixtures/postgres/nasty.sql");
/// An ordinary role that logs in with a password over TCP (SCRAM).
pub const PASSWORD_USER: &str = "coffer_pw";
/// A role that exists but that `pg_hba.conf` rejects over TCP.
pub const REJECTED_USER: &str = "coffer_rejected";

/// A running throwaway cluster.
pub struct Cluster {
    /// Where the server's binaries are (`pg_dump` for the oracle, …).
    pub bindir: PathBuf,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// The directory holding the Unix socket.
    pub socket_dir: PathBuf,
    /// The CA certificate the server's certificate is signed by (PEM), when TLS is on.
    pub ca_cert: Option<PathBuf>,
    /// `server_version_num` of the server.
    pub version_num: u32,
    password: String,
    dir: PathBuf,
    server: Child,
    watchdog: Option<(Child, ChildStdin)>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("port", &self.port)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The cluster shared by every test of this process (started on first use).
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start(true))
}

/// The directory of the PostgreSQL server binaries, or a panic saying what to install.
pub fn bindir() -> PathBuf {
    find_bindir(
        std::env::var("COFFER_PG_BINDIR").ok().as_deref(),
        "pg_config",
        Path::new("/usr/lib/postgresql"),
    )
    .unwrap_or_else(|message| panic!("{message}"))
}

/// `override_dir` (`COFFER_PG_BINDIR`), else what `pg_config --bindir`
/// names, else the newest `debian_root/N/bin`; each must hold initdb and
/// postgres. The error says what to install.
pub fn find_bindir(
    override_dir: Option<&str>,
    pg_config: &str,
    debian_root: &Path,
) -> Result<PathBuf, String> {
    let has_server = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(d) = override_dir {
        let d = PathBuf::from(d);
        if !has_server(&d) {
            return Err(format!(
                "COFFER_PG_BINDIR={} holds no initdb and postgres: point it at a PostgreSQL bin directory",
                d.display()
            ));
        }
        return Ok(d);
    }
    if let Ok(out) = Command::new(pg_config).arg("--bindir").output()
        && out.status.success()
    {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&d) {
            return Ok(d);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(debian_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse::<u32>().ok()?;
            let d = e.path().join("bin");
            has_server(&d).then_some((n, d))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, d)) => Ok(d),
        None => Err(format!(
            "the PostgreSQL tests need the PostgreSQL server binaries (initdb, postgres) and found none \
             via pg_config --bindir or {}/N/bin: install them \
             (Debian/Ubuntu: apt-get install postgresql postgresql-contrib) or set COFFER_PG_BINDIR",
            debian_root.display()
        )),
    }
}

/// The uid and gid of `postgres`, when running as root (None otherwise).
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == "postgres" {
            return Some((f[2].parse().unwrap(), f[3].parse().unwrap()));
        }
    }
    panic!(
        "the PostgreSQL tests run as root, and initdb refuses root, but there is no user `postgres` to run it as: \
         install the postgresql package (it creates one) or run `useradd postgres`"
    );
}

fn command(bin: &Path, user: Option<(u32, u32)>) -> Command {
    let mut c = Command::new(bin);
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid);
    }
    c.env_remove("PGDATA").env("LC_ALL", "C.UTF-8");
    c
}

fn chown(path: &Path, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Make a CA and a server certificate for 127.0.0.1 / localhost with
/// `openssl`; None (TLS off) when openssl is missing.
fn make_certificates(dir: &Path) -> Option<()> {
    let run = |args: &[&str]| -> bool {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .ok()?;
    let ok = run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3",
        "-subj",
        "/CN=coffer test CA",
    ]) && run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "3",
        "-extfile",
        "san.ext",
    ]);
    ok.then_some(())
}

impl Cluster {
    /// Start a cluster of its own (the shared one is [`cluster`]); with
    /// `tls` false the server refuses TLS. It stops when dropped.
    pub fn start(tls: bool) -> Cluster {
        let bindir = bindir();
        let user = run_as();
        let dir = tempfile::Builder::new()
            .prefix("coffer-pg-")
            .tempdir()
            .unwrap()
            .keep();
        chown(&dir, user);
        let data = dir.join("data");
        let init = command(&bindir.join("initdb"), user)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .args(["--no-sync", "--no-instructions"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}/initdb: {e}", bindir.display()));
        assert!(
            init.status.success(),
            "initdb into {} failed: {}{}",
            data.display(),
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        );
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "local all all trust\n\
                 host all {SUPERUSER} 127.0.0.1/32 trust\n\
                 host all {REJECTED_USER} 127.0.0.1/32 reject\n\
                 host all all 127.0.0.1/32 scram-sha-256\n\
                 local replication all trust\n"
            ),
        )
        .unwrap();
        let ca_cert = if tls && make_certificates(&dir).is_some() {
            for f in ["server.key", "server.crt", "ca.crt"] {
                chown(&dir.join(f), user);
            }
            std::fs::set_permissions(
                dir.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
            Some(dir.join("ca.crt"))
        } else {
            None
        };

        let mut cluster = Cluster::launch(bindir, user, dir, ca_cert, &[]);
        let mut client = cluster.wait_ready();
        cluster.version_num = client
            .query_one("SELECT current_setting('server_version_num')::int4", &[])
            .unwrap()
            .get::<_, i32>(0) as u32;
        client
            .batch_execute(&format!(
                "SET password_encryption = 'scram-sha-256'; \
                 CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{}'; CREATE ROLE {REJECTED_USER} LOGIN",
                cluster.password
            ))
            .unwrap();
        cluster
    }

    /// Start `postgres` on `dir/data` (socket and log in `dir`), with its
    /// watchdog, and wait until it accepts connections.
    fn launch(
        bindir: PathBuf,
        user: Option<(u32, u32)>,
        dir: PathBuf,
        ca_cert: Option<PathBuf>,
        extra: &[&str],
    ) -> Cluster {
        let data = dir.join("data");
        let port = free_port();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        chown(&dir.join("server.log"), user);
        let mut cmd = command(&bindir.join("postgres"), user);
        cmd.arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("port={port}")])
            .args(["-c", &format!("unix_socket_directories={}", dir.display())])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=60"]);
        if ca_cert.is_some() {
            cmd.args(["-c", "ssl=on"])
                .args([
                    "-c",
                    &format!("ssl_cert_file={}", dir.join("server.crt").display()),
                ])
                .args([
                    "-c",
                    &format!("ssl_key_file={}", dir.join("server.key").display()),
                ]);
        }
        for setting in extra {
            cmd.args(["-c", setting]);
        }
        let server = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}/postgres: {e}", bindir.display()));

        // The watchdog: when our end of its stdin closes (we exited), stop the
        // server at once and remove the directory.
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(
                "read _ignored; kill -QUIT \"$PGPID\" 2>/dev/null; \
                 n=0; while kill -0 \"$PGPID\" 2>/dev/null && [ $n -lt 200 ]; do sleep 0.05; n=$((n+1)); done; \
                 kill -KILL \"$PGPID\" 2>/dev/null; rm -rf \"$PGDIR\"",
            )
            .env("PGPID", server.id().to_string())
            .env("PGDIR", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .ok()
            .map(|mut c| {
                let stdin = c.stdin.take().unwrap();
                (c, stdin)
            });

        Cluster {
            bindir,
            port,
            socket_dir: dir.clone(),
            ca_cert,
            version_num: 0,
            password: format!("pw-{:016x}", fastrand::u64(..)),
            dir,
            server,
            watchdog,
        }
    }

    /// A hot standby of this cluster (`pg_basebackup -R`, streaming
    /// replication), without TLS; it stops when dropped. Its superuser and
    /// roles are this cluster's (the password too).
    pub fn start_standby(&self) -> Cluster {
        let user = run_as();
        let dir = tempfile::Builder::new()
            .prefix("coffer-pg-standby-")
            .tempdir()
            .unwrap()
            .keep();
        chown(&dir, user);
        let out = command(&self.bindir.join("pg_basebackup"), user)
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-R",
                "-X",
                "stream",
                "--no-sync",
                "--checkpoint=fast",
                "-U",
                SUPERUSER,
            ])
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg_basebackup: {e}"));
        assert!(
            out.status.success(),
            "pg_basebackup of the test cluster failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut standby =
            Cluster::launch(self.bindir.clone(), user, dir, None, &["hot_standby=on"]);
        standby.password = self.password.clone();
        let mut client = standby.wait_ready();
        standby.version_num = client
            .query_one("SELECT current_setting('server_version_num')::int4", &[])
            .unwrap()
            .get::<_, i32>(0) as u32;
        standby
    }

    fn wait_ready(&mut self) -> postgres::Client {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.client("postgres") {
                Ok(c) => return c,
                Err(e) => {
                    if let Ok(Some(status)) = self.server.try_wait() {
                        panic!(
                            "the test PostgreSQL server exited ({status}) while starting: {}",
                            self.log()
                        );
                    }
                    if Instant::now() > deadline {
                        panic!(
                            "the test PostgreSQL server did not accept connections within 60 s ({e}): {}",
                            self.log()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// A superuser client on `db` over the socket.
    pub fn client(&self, db: &str) -> Result<postgres::Client, postgres::Error> {
        postgres::Config::new()
            .host_path(&self.socket_dir)
            .port(self.port)
            .user(SUPERUSER)
            .dbname(db)
            .connect(postgres::NoTls)
    }

    /// Run `sql` (several statements allowed) in `db` as the superuser; panics on failure.
    pub fn execute(&self, db: &str, sql: &str) {
        let mut c = self.client(db).unwrap();
        if let Err(e) = c.batch_execute(sql) {
            panic!("{sql}: {e:?}");
        }
    }

    /// Create a fresh, empty database named after `hint` (unique in this
    /// process) and return its name.
    pub fn create_database(&self, hint: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let clean = name_part(hint, 40);
        let name = format!("{clean}_{}", COUNTER.fetch_add(1, Ordering::Relaxed));
        self.execute("postgres", &format!("CREATE DATABASE \"{name}\""));
        name
    }

    /// `pg_dump --schema-only` of `db`, without the lines that differ
    /// between any two dumps (psql's `\restrict` key): the oracle of what
    /// a database's schema is.
    pub fn schema_dump(&self, db: &str) -> String {
        let out = Command::new(self.bindir.join("pg_dump"))
            .args(["--schema-only", "--dbname", &self.url(db)])
            .output()
            .expect("pg_dump runs");
        assert!(
            out.status.success(),
            "pg_dump of {db}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("UTF-8 DDL")
            .lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `postgres://coffer@127.0.0.1:PORT/db?sslmode=disable` (superuser, TCP, no password).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// The superuser over the Unix socket.
    pub fn socket_url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@/{db}?host={}&port={}",
            self.socket_dir.display(),
            self.port
        )
    }

    /// The password of [`PASSWORD_USER`].
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The CA certificate, or a panic saying that openssl is needed.
    pub fn require_tls(&self) -> &Path {
        self.ca_cert.as_deref().unwrap_or_else(|| {
            panic!(
                "the TLS tests need the test cluster's certificates, made with the openssl command, which failed or is missing: install openssl"
            )
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stop the server ourselves and reap it (a zombie would look alive to
        // the watchdog), then let the watchdog remove the directory.
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe {
            libc::kill(self.server.id() as libc::pid_t, libc::SIGQUIT);
        }
        let _ = self.server.wait();
        if let Some((mut child, mut stdin)) = self.watchdog.take() {
            let _ = stdin.write_all(b"\n");
            drop(stdin);
            let _ = child.wait();
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `hint` as part of a database name: lower-case ASCII letters and digits,
/// `_` for anything else, at most `max` characters.
pub fn name_part(hint: &str, max: usize) -> String {
    hint.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_say_what_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let e = find_bindir(None, "no-such-pg_config", empty.path()).unwrap_err();
        assert!(
            e.contains("apt-get install postgresql postgresql-contrib"),
            "{e}"
        );
        let e = find_bindir(Some("/nonexistent"), "pg_config", empty.path()).unwrap_err();
        assert!(
            e.starts_with("COFFER_PG_BINDIR=/nonexistent holds no initdb"),
            "{e}"
        );
        // The newest of several Debian directories.
        for n in ["9", "13", "15"] {
            let bin = empty.path().join(n).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("initdb"), "").unwrap();
            std::fs::write(bin.join("postgres"), "").unwrap();
        }
        assert_eq!(
            find_bindir(None, "no-such-pg_config", empty.path()).unwrap(),
            empty.path().join("15/bin")
        );
    }
}
