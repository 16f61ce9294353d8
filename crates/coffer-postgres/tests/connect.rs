//! Connecting to a real cluster: every way it can fail gets its sentence,
//! and no password ever shows.

use std::path::PathBuf;

use coffer::ErrorKind;
use coffer_postgres::address::{Address, Env};
use coffer_testkit::pg::{self, PASSWORD_USER};

fn env() -> Env {
    Env {
        default_socket_dir: PathBuf::from("/nonexistent"),
        ..Env::default()
    }
}

fn parse(url: &str) -> Address {
    Address::parse_with(url, &env()).unwrap()
}

fn connect_err(url: &str) -> coffer::Error {
    parse(url).connect().unwrap_err()
}

/// Neither the sentence nor the debug form (with its causes) shows `secret`.
fn assert_hidden(e: &coffer::Error, secret: &str) {
    let text = format!("{e} {e:?}");
    assert!(!text.contains(secret), "password shown: {text}");
}

#[test]
fn connects_over_tcp_and_the_socket() {
    let c = pg::cluster();
    let db = c.create_database("connects");
    for url in [c.url(&db), c.socket_url(&db)] {
        let mut conn = parse(&url).connect().unwrap();
        assert!(conn.server_version >= 120000);
        let tz: String = conn.client.query_one("SHOW TimeZone", &[]).unwrap().get(0);
        assert_eq!(tz, "UTC");
        let name: String = conn
            .client
            .query_one("SELECT current_setting('application_name')", &[])
            .unwrap()
            .get(0);
        assert_eq!(name, "coffer");
    }
}

#[test]
fn password_role() {
    let c = pg::cluster();
    let db = c.create_database("password");
    let pw = c.password();
    let good = format!(
        "postgres://{PASSWORD_USER}:{pw}@127.0.0.1:{}/{db}?sslmode=disable",
        c.port
    );
    parse(&good).connect().unwrap();

    let wrong = format!(
        "postgres://{PASSWORD_USER}:not-{pw}@127.0.0.1:{}/{db}?sslmode=disable",
        c.port
    );
    let e = connect_err(&wrong);
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(e.message().contains("refused the password"), "{e}");
    assert!(
        e.message().contains(&format!("127.0.0.1:{}", c.port)),
        "{e}"
    );
    assert!(e.message().contains("the one in the address"), "{e}");
    assert_hidden(&e, &format!("not-{pw}"));
    assert_hidden(&e, pw);

    let none = format!(
        "postgres://{PASSWORD_USER}@127.0.0.1:{}/{db}?sslmode=disable",
        c.port
    );
    let e = connect_err(&none);
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(e.message().contains("none was given"), "{e}");
}

#[test]
fn password_from_a_password_file() {
    use std::os::unix::fs::PermissionsExt;
    let c = pg::cluster();
    let db = c.create_database("pgpass");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgpass");
    std::fs::write(
        &file,
        format!("127.0.0.1:{}:*:{PASSWORD_USER}:{}\n", c.port, c.password()),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut e = env();
    e.vars
        .insert("PGPASSFILE".into(), file.to_str().unwrap().into());
    let url = format!(
        "postgres://{PASSWORD_USER}@127.0.0.1:{}/{db}?sslmode=disable",
        c.port
    );
    let address = Address::parse_with(&url, &e).unwrap();
    address.connect().unwrap();
    assert!(!format!("{address:?} {address}").contains(c.password()));
}

#[test]
fn missing_database() {
    let c = pg::cluster();
    let e = connect_err(&c.url("no_such_db"));
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.message().starts_with(
            "database \"no_such_db\" does not exist on the PostgreSQL server at 127.0.0.1:"
        ),
        "{e}"
    );
}

#[test]
fn no_connect_privilege() {
    let c = pg::cluster();
    let db = c.create_database("noconnect");
    c.execute(
        "postgres",
        &format!("REVOKE CONNECT ON DATABASE {db} FROM PUBLIC"),
    );
    let url = format!(
        "postgres://{PASSWORD_USER}:{}@127.0.0.1:{}/{db}?sslmode=disable",
        c.password(),
        c.port
    );
    let e = connect_err(&url);
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(e.message().contains("may not connect to database"), "{e}");
    assert_hidden(&e, c.password());
}

#[test]
fn missing_table_privilege() {
    let c = pg::cluster();
    let db = c.create_database("noselect");
    c.execute(&db, "CREATE TABLE secret_stuff (x int)");
    let url = format!(
        "postgres://{PASSWORD_USER}:{}@127.0.0.1:{}/{db}?sslmode=disable",
        c.password(),
        c.port
    );
    let address = parse(&url);
    let mut conn = address.connect().unwrap();
    let err = conn
        .client
        .query("SELECT * FROM public.secret_stuff", &[])
        .unwrap_err();
    let e =
        coffer_postgres::connect::query_error(&address, "reading table public.secret_stuff", &err);
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(
        e.message().starts_with(&format!(
            "reading table public.secret_stuff in postgres://{PASSWORD_USER}@127.0.0.1:{}/{db} failed because user \"{PASSWORD_USER}\" lacks a privilege (permission denied for table secret_stuff)",
            c.port
        )),
        "{e}"
    );
    assert_hidden(&e, c.password());
}

#[test]
fn unreachable_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = connect_err(&format!(
        "postgres://u:pw@127.0.0.1:{port}/d?sslmode=disable"
    ));
    assert_eq!(e.kind(), ErrorKind::Engine);
    assert_eq!(
        e.message(),
        format!(
            "cannot reach the PostgreSQL server at 127.0.0.1:{port} (connection refused): is it running and accepting TCP connections there?"
        )
    );
    let e = connect_err("postgres://u@/d?host=/nonexistent/dir&port=5999");
    assert_eq!(
        e.message(),
        "cannot reach the PostgreSQL server at /nonexistent/dir/.s.PGSQL.5999 (no such socket): is it running, with its socket in that directory?"
    );
}

#[test]
fn tls_modes() {
    let c = pg::cluster();
    let ca = c.require_tls();
    let db = c.create_database("tls");
    let in_tls = |url: &str| -> bool {
        let mut conn = parse(url).connect().unwrap();
        conn.client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let base = format!("postgres://{}@127.0.0.1:{}/{db}", pg::SUPERUSER, c.port);
    assert!(!in_tls(&format!("{base}?sslmode=disable")));
    assert!(in_tls(&format!("{base}?sslmode=prefer")));
    assert!(in_tls(&format!("{base}?sslmode=require")));
    let ca = ca.display();
    assert!(in_tls(&format!(
        "{base}?sslmode=verify-ca&sslrootcert={ca}"
    )));
    assert!(in_tls(&format!(
        "{base}?sslmode=verify-full&sslrootcert={ca}"
    )));
    let localhost = format!(
        "postgres://{}@localhost:{}/{db}?sslmode=verify-full&sslrootcert={ca}",
        pg::SUPERUSER,
        c.port
    );
    assert!(in_tls(&localhost));

    // A root certificate that did not sign the server's.
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "other.crt",
            "-days",
            "2",
            "-subj",
            "/CN=other",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap()
        .status;
    assert!(status.success());
    let other = dir.path().join("other.crt");
    for mode in ["require", "verify-ca", "verify-full"] {
        let e = connect_err(&format!(
            "{base}?sslmode={mode}&sslrootcert={}",
            other.display()
        ));
        assert_eq!(
            e.message(),
            format!(
                "the certificate of the PostgreSQL server at 127.0.0.1:{} was not accepted with sslmode={mode}: its certificate is not signed by the root certificate given; give the right sslrootcert, or a weaker sslmode if you trust the network",
                c.port
            )
        );
    }
    // verify-* need a root certificate (HOME has none here, presumably).
    let e = connect_err(&format!(
        "{base}?sslmode=verify-full&sslrootcert=/nonexistent.crt"
    ));
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.message()
            .starts_with("root certificate file /nonexistent.crt cannot be read"),
        "{e}"
    );
    let e = connect_err(&format!(
        "{base}?sslmode=verify-ca&sslrootcert={}",
        dir.path().join("k.pem").display()
    ));
    assert!(e.message().contains("holds no certificate"), "{e}");
}

#[test]
fn tls_required_but_not_offered() {
    let c = pg::Cluster::start(false);
    let e = connect_err(&format!(
        "postgres://{}@127.0.0.1:{}/postgres?sslmode=require",
        pg::SUPERUSER,
        c.port
    ));
    assert_eq!(
        e.message(),
        format!(
            "the PostgreSQL server at 127.0.0.1:{} does not offer TLS, which sslmode=require requires: enable ssl on the server, or use sslmode=prefer if you trust the network",
            c.port
        )
    );
    // prefer falls back to plain.
    parse(&format!(
        "postgres://{}@127.0.0.1:{}/postgres?sslmode=prefer",
        pg::SUPERUSER,
        c.port
    ))
    .connect()
    .unwrap();
}

#[test]
fn too_old_a_server_is_refused() {
    let a = parse("postgres://u@db.example:5432/d");
    let e = coffer_postgres::connect::check_server_version(&a, 110022, "11.22").unwrap_err();
    assert_eq!(
        e.message(),
        "the PostgreSQL server at db.example:5432 runs version 11.22, older than 12, the oldest coffer supports: upgrade it, or use that version's pg_dump"
    );
    coffer_postgres::connect::check_server_version(&a, 120000, "12.0").unwrap();
}

#[test]
fn refused_by_pg_hba() {
    let c = pg::cluster();
    let e = connect_err(&format!(
        "postgres://{}@127.0.0.1:{}/postgres?sslmode=disable",
        pg::REJECTED_USER,
        c.port
    ));
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(
        e.message().starts_with(&format!(
            "the PostgreSQL server at 127.0.0.1:{} refused user \"{}\" for database \"postgres\" (pg_hba.conf rejects connection",
            c.port,
            pg::REJECTED_USER
        )),
        "{e}"
    );
    assert!(
        e.message()
            .ends_with("check the user name and the server's pg_hba.conf"),
        "{e}"
    );
}

/// Run by `the_test_cluster_dies_with_its_process` in a child process:
/// start the shared cluster, say where it is, and wait to be killed.
#[test]
#[ignore = "run as a child of the_test_cluster_dies_with_its_process"]
fn child_holding_a_cluster() {
    if std::env::var_os("COFFER_PG_CHILD").is_none() {
        return;
    }
    let c = pg::cluster();
    println!("CLUSTER {} {}", c.port, c.socket_dir.display());
    std::thread::sleep(std::time::Duration::from_secs(120));
}

#[test]
fn the_test_cluster_dies_with_its_process() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holding_a_cluster",
            "--ignored",
            "--nocapture",
        ])
        .env("COFFER_PG_CHILD", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (port, dir) = loop {
        let line = lines
            .next()
            .expect("the child said where its cluster is")
            .unwrap();
        if let Some(rest) = line.strip_prefix("CLUSTER ") {
            let (port, dir) = rest.split_once(' ').unwrap();
            break (port.parse::<u16>().unwrap(), PathBuf::from(dir));
        }
    };
    assert!(dir.exists());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    // SIGKILL: no destructor, no atexit; only the watchdog can clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while dir.exists() || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the cluster of a killed test process still runs or its directory {} is left",
            dir.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
