//! Schema DDL from pg_dump, in the data's snapshot; the oracle is pg_dump
//! itself: DDL applied to an empty database dumps the same as the source.

use std::path::PathBuf;

use coffer::ErrorKind;
use coffer_postgres::Address;
use coffer_postgres::address::Env;
use coffer_postgres::schema::{DumpOptions, PgDump, find_pg_dump};
use coffer_postgres::snapshot::ExportedSnapshot;
use coffer_testkit::pg::{self, PASSWORD_USER};

fn address(url: &str) -> Address {
    Address::parse_with(url, &Env::default()).unwrap()
}

const SCHEMA: &str = r#"
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE SCHEMA shop;
CREATE TYPE shop.mood AS ENUM ('sad', 'happy');
CREATE DOMAIN shop.positive AS int CHECK (VALUE > 0);
CREATE TABLE shop.customers (
    id int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL COLLATE "C",
    mood shop.mood,
    attrs hstore,
    qty shop.positive DEFAULT 1,
    twice int GENERATED ALWAYS AS (qty * 2) STORED
);
CREATE TABLE shop.orders (
    id serial PRIMARY KEY,
    customer int8 REFERENCES shop.customers (id) DEFERRABLE INITIALLY DEFERRED,
    placed timestamptz NOT NULL DEFAULT now(),
    CHECK (id > 0)
);
CREATE INDEX orders_placed ON shop.orders USING brin (placed);
CREATE UNIQUE INDEX customers_lower_name ON shop.customers (lower(name));
CREATE VIEW shop.recent AS SELECT * FROM shop.orders WHERE placed > now() - interval '1 day';
CREATE MATERIALIZED VIEW shop.counts AS SELECT customer, count(*) FROM shop.orders GROUP BY customer;
CREATE FUNCTION shop.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.placed := now(); RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE UPDATE ON shop.orders FOR EACH ROW EXECUTE FUNCTION shop.touch();
ALTER TABLE shop.customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON shop.customers USING (name = current_user);
COMMENT ON TABLE shop.customers IS 'people who buy';
CREATE TABLE events (d date NOT NULL, v int) PARTITION BY RANGE (d);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE UNLOGGED TABLE scratch (x int);
GRANT SELECT ON shop.orders TO coffer_pw;
"#;

/// The schema as pg_dump prints it.
fn oracle(c: &pg::Cluster, db: &str) -> String {
    c.schema_dump(db)
}

#[test]
fn sections_round_trip_through_an_empty_database() {
    let c = pg::cluster();
    let db = c.create_database("schema_src");
    c.execute(&db, SCHEMA);
    let a = address(&c.url(&db));
    let leader = ExportedSnapshot::begin(&a).unwrap();
    // DDL after the snapshot is not in the dump.
    c.execute(&db, "CREATE TABLE shop.later (x int)");
    let pg_dump = PgDump::find(&a, leader.server_version()).unwrap();
    assert!(pg_dump.major * 10000 >= leader.server_version() / 10000 * 10000);
    let ddl = pg_dump
        .dump_schema(&a, Some(leader.id()), DumpOptions::default())
        .unwrap();
    assert!(
        ddl.pre_data.contains("CREATE TABLE shop.customers"),
        "{}",
        ddl.pre_data
    );
    assert!(!ddl.pre_data.contains("shop.later"));
    assert!(!ddl.pre_data.contains("CREATE INDEX"));
    assert!(!ddl.pre_data.contains("\\restrict"));
    for post in [
        "CREATE INDEX orders_placed ON shop.orders USING brin",
        "FOREIGN KEY (customer) REFERENCES shop.customers(id) DEFERRABLE INITIALLY DEFERRED",
        "CREATE TRIGGER orders_touch",
        "CREATE POLICY own",
        "ADD CONSTRAINT customers_pkey PRIMARY KEY (id)",
    ] {
        assert!(ddl.post_data.contains(post), "{post}: {}", ddl.post_data);
        assert!(!ddl.pre_data.contains(post), "{post}");
    }
    drop(leader);
    c.execute(&db, "DROP TABLE shop.later");

    let target = c.create_database("schema_dst");
    let mut client = c.client(&target).unwrap();
    client.batch_execute(&ddl.pre_data).unwrap();
    client.batch_execute(&ddl.post_data).unwrap();
    assert_eq!(oracle(c, &target), oracle(c, &db));

    // --no-owner / --no-privileges leave those statements out.
    let ddl = pg_dump
        .dump_schema(
            &a,
            None,
            DumpOptions {
                no_owner: true,
                no_privileges: true,
                ..DumpOptions::default()
            },
        )
        .unwrap();
    assert!(!ddl.pre_data.contains("OWNER TO"));
    assert!(!ddl.pre_data.contains("GRANT SELECT"));
}

#[test]
fn the_password_reaches_pg_dump_and_its_errors_are_one_sentence() {
    let c = pg::cluster();
    let db = c.create_database("schema_pw");
    let url = format!(
        "postgres://{PASSWORD_USER}:{}@127.0.0.1:{}/{db}?sslmode=disable",
        c.password(),
        c.port
    );
    let a = address(&url);
    let pg_dump = PgDump::find(&a, c.version_num).unwrap();
    let ddl = pg_dump
        .dump_schema(&a, None, DumpOptions::default())
        .unwrap();
    assert!(ddl.pre_data.contains("PostgreSQL database dump"));

    let wrong = address(&format!(
        "postgres://{PASSWORD_USER}:wrong-{}@127.0.0.1:{}/{db}?sslmode=disable",
        c.password(),
        c.port
    ));
    let e = pg_dump
        .dump_schema(&wrong, None, DumpOptions::default())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Engine);
    let text = format!("{e} {e:?}");
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(!text.contains(c.password()), "{text}");
}

#[test]
fn missing_or_old_pg_dump_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = find_pg_dump(&[dir.path().join("pg_dump")], 150004, "db:5432").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        e.message(),
        "pg_dump, which coffer runs to read the schema of the server at db:5432, was found neither on PATH nor via pg_config --bindir: install the PostgreSQL 15 client tools or newer (Debian/Ubuntu: apt-get install postgresql-client-15)"
    );
    // An old one (a stand-in that answers --version as pg_dump 11 does).
    let old = dir.path().join("old/pg_dump");
    std::fs::create_dir(dir.path().join("old")).unwrap();
    std::fs::write(&old, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 11.22'\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = find_pg_dump(std::slice::from_ref(&old), 150004, "db:5432").unwrap_err();
    assert_eq!(
        e.message(),
        format!(
            "pg_dump at {} is version 11, older than the server at db:5432 (version 15), and cannot read its schema: install the PostgreSQL 15 client tools or newer (Debian/Ubuntu: apt-get install postgresql-client-15) and put them on PATH",
            old.display()
        )
    );
    // A new enough one later in the list wins.
    let real: PathBuf = pg::cluster().bindir.join("pg_dump");
    let found = find_pg_dump(&[old, real.clone()], 150004, "db:5432").unwrap();
    assert_eq!(found.path, real);
}
