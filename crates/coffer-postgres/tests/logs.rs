//! Passwords never reach the logs: everything coffer-postgres and the
//! driver log (at every level, `log` records included) is captured while
//! connecting with a right and a wrong password, reading a password file
//! that is ignored, and running pg_dump.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use coffer_postgres::Address;
use coffer_postgres::address::Env;
use coffer_postgres::schema::{DumpOptions, PgDump};
use coffer_testkit::pg::{self, PASSWORD_USER};

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(|| Capture)
            .init();
    });
}

#[test]
fn no_password_in_any_log_record() {
    // The cluster is set up (its role created with the password) before
    // logs are captured: only coffer's own work is under test.
    let c = pg::cluster();
    let db = c.create_database("logs");
    init();
    let pw = c.password();
    let url = |p: &str| {
        format!(
            "postgres://{PASSWORD_USER}:{p}@127.0.0.1:{}/{db}?sslmode=prefer",
            c.port
        )
    };
    let mut conn = Address::parse(&url(pw)).unwrap().connect().unwrap();
    conn.client.query("SELECT 1", &[]).unwrap();
    let wrong = format!("wrong-{pw}");
    assert!(Address::parse(&url(&wrong)).unwrap().connect().is_err());

    // A group-readable password file: ignored with a warning.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgpass");
    std::fs::write(&file, format!("*:*:*:*:{pw}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut env = Env::default();
    env.vars
        .insert("PGPASSFILE".into(), file.to_str().unwrap().into());
    let a = Address::parse_with(
        &format!("postgres://{PASSWORD_USER}@127.0.0.1:{}/{db}", c.port),
        &env,
    )
    .unwrap();
    assert!(a.password().is_none());

    let a = Address::parse(&url(pw)).unwrap();
    PgDump::find(&a, c.version_num)
        .unwrap()
        .dump_schema(&a, None, DumpOptions::default())
        .unwrap();

    let log = String::from_utf8(LOG.lock().unwrap().clone()).unwrap();
    // The capture works: the driver's records and our warning are there.
    assert!(log.contains("group or world access"), "{log}");
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "{log}");
    assert!(!log.contains(pw), "password in the log: {log}");
}
