//! The data path's building blocks against a real cluster: one snapshot
//! across connections, the catalog, ctid ranges, binary COPY and the
//! decoding of values (checked against the server's own text output).

use std::collections::BTreeSet;
use std::io::Read;

use coffer::ErrorKind;
use coffer_postgres::Address;
use coffer_postgres::address::Env;
use coffer_postgres::catalog::{self, TableKind};
use coffer_postgres::copy::BinaryCopyReader;
use coffer_postgres::decode::{Value, decode};
use coffer_postgres::snapshot::{ExportedSnapshot, split_pages};
use coffer_testkit::pg::{self, PASSWORD_USER};

fn address(url: &str) -> Address {
    Address::parse_with(url, &Env::default()).unwrap()
}

fn ints(client: &mut postgres::Client, sql: &str) -> Vec<i64> {
    let mut reader = BinaryCopyReader::new(client.copy_out(sql).unwrap(), "test").unwrap();
    let mut out = Vec::new();
    while let Some(row) = reader.next_row().unwrap() {
        match decode(20, row.field(0).unwrap()).unwrap() {
            Value::Int8(v) => out.push(v),
            v => panic!("{v:?}"),
        }
    }
    out
}

#[test]
fn workers_share_the_exported_snapshot() {
    let c = pg::cluster();
    let db = c.create_database("snapshot");
    c.execute(
        &db,
        "CREATE TABLE t (id int8 PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)",
    );
    let a = address(&c.url(&db));
    let mut leader = ExportedSnapshot::begin(&a).unwrap();
    let moment = leader.moment().clone();
    assert!(moment.at <= moment.clock);
    assert!(!moment.standby);
    let lsn = moment.wal_lsn.clone().unwrap();
    assert!(lsn.contains('/'), "{lsn}");
    let age = jiff::Timestamp::now().duration_since(moment.at);
    assert!(age.as_secs() < 60, "{age:?}");

    // Changes committed after the export are invisible to every worker.
    c.execute(
        &db,
        "INSERT INTO t SELECT generate_series(101, 150); DELETE FROM t WHERE id <= 10",
    );
    let mut w1 = leader.worker().unwrap();
    let mut w2 = leader.worker().unwrap();
    let sql = "COPY (SELECT id FROM t ORDER BY id) TO STDOUT (FORMAT binary)";
    let expect: Vec<i64> = (1..=100).collect();
    assert_eq!(ints(w1.client(), sql), expect);
    assert_eq!(ints(w2.client(), sql), expect);
    assert_eq!(ints(leader.client(), sql), expect);
    // A fresh connection sees the present.
    let mut now = a.connect().unwrap();
    assert_eq!(ints(&mut now.client, sql), (11..=150).collect::<Vec<_>>());

    leader
        .lock_tables(&[("public".into(), "t".into())], 1000)
        .unwrap();
    // Once the leader is gone its snapshot cannot be imported.
    let id = leader.id().to_owned();
    let late = ExportedSnapshot::begin(&a).unwrap();
    drop(leader);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut conn = a.connect().unwrap();
    conn.client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .unwrap();
    let err = conn
        .client
        .batch_execute(&format!("SET TRANSACTION SNAPSHOT '{id}'"))
        .unwrap_err();
    assert!(format!("{err:?}").contains("snapshot"), "{err:?}");
    drop(late);
}

#[test]
fn a_table_held_by_another_session_is_named() {
    let c = pg::cluster();
    let db = c.create_database("locks");
    c.execute(&db, "CREATE TABLE busy (x int)");
    let mut other = c.client(&db).unwrap();
    other
        .batch_execute("BEGIN; LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let a = address(&c.url(&db));
    let mut leader = ExportedSnapshot::begin(&a).unwrap();
    let e = leader
        .lock_tables(&[("public".into(), "busy".into())], 100)
        .unwrap_err();
    assert!(
        e.message()
            .starts_with("table public.busy in postgres://coffer@127.0.0.1:"),
        "{e}"
    );
    assert!(e.message().contains("for more than 100 ms"), "{e}");
}

#[test]
fn catalog_of_every_kind_of_table() {
    let c = pg::cluster();
    let db = c.create_database("catalog");
    c.execute(
        &db,
        r#"
        CREATE SCHEMA "Odd ""Schema""";
        CREATE TABLE "Odd ""Schema""".plain (
            id int8 GENERATED ALWAYS AS IDENTITY,
            k text NOT NULL,
            amount numeric(10,2) DEFAULT 0,
            twice numeric GENERATED ALWAYS AS (amount * 2) STORED,
            tags varchar(20)[],
            dropped int,
            PRIMARY KEY (k, id)
        );
        ALTER TABLE "Odd ""Schema""".plain DROP COLUMN dropped;
        CREATE TABLE parted (d date NOT NULL, v int) PARTITION BY RANGE (d);
        CREATE TABLE parted_2026 PARTITION OF parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        CREATE TABLE parent (x int);
        CREATE TABLE child (y int) INHERITS (parent);
        CREATE UNLOGGED TABLE scratch (z bytea);
        CREATE TYPE mood AS ENUM ('sad', 'happy');
        CREATE TABLE feelings (m mood, ms mood[]);
        CREATE EXTENSION IF NOT EXISTS hstore;
        "#,
    );
    let a = address(&c.url(&db));
    let mut leader = ExportedSnapshot::begin(&a).unwrap();
    let tables = catalog::read_tables(leader.client(), &a).unwrap();
    let names: Vec<String> = tables
        .iter()
        .map(|t| format!("{}.{}", t.schema, t.name))
        .collect();
    assert_eq!(
        names,
        [
            "Odd \"Schema\".plain",
            "public.child",
            "public.feelings",
            "public.parent",
            "public.parted",
            "public.parted_2026",
            "public.scratch"
        ]
    );
    let plain = &tables[0];
    assert_eq!(plain.sql_name(), r#""Odd ""Schema"""."plain""#);
    let cols: Vec<(&str, &str, bool)> = plain
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.type_sql.as_str(), c.not_null))
        .collect();
    assert_eq!(
        cols,
        [
            ("id", "bigint", true),
            ("k", "text", true),
            ("amount", "numeric(10,2)", false),
            ("twice", "numeric", false),
            ("tags", "character varying(20)[]", false),
        ]
    );
    assert_eq!(plain.columns[0].identity, Some('a'));
    assert!(plain.columns[2].has_default);
    assert!(plain.columns[3].generated);
    assert_eq!(plain.columns[4].element_oid, Some(1043));
    assert_eq!(plain.columns[4].typmod, 24);
    assert_eq!(plain.primary_key, ["k", "id"]);
    assert_eq!(
        plain.copy_out_sql(None),
        r#"COPY (SELECT "id", "k", "amount", "tags" FROM ONLY "Odd ""Schema"""."plain") TO STDOUT (FORMAT binary)"#
    );
    let by = |n: &str| tables.iter().find(|t| t.name == n).unwrap();
    assert_eq!(by("parted").kind, TableKind::Partitioned);
    assert!(!by("parted").has_storage());
    assert!(by("parted_2026").is_partition);
    assert_eq!(
        by("parted_2026").parents,
        [("public".to_owned(), "parted".to_owned())]
    );
    assert_eq!(
        by("child").parents,
        [("public".to_owned(), "parent".to_owned())]
    );
    assert!(!by("child").is_partition);
    assert!(by("scratch").unlogged);
    let m = &by("feelings").columns;
    assert_eq!((m[0].type_kind, m[0].type_name.as_str()), ('e', "mood"));
    assert!(tables.iter().all(|t| t.readable));
    catalog::check_readable(&tables, &a).unwrap();

    // A role that may read only some tables is refused, naming the others.
    c.execute(
        &db,
        "GRANT SELECT ON parent, child, parted, parted_2026, scratch TO coffer_pw",
    );
    let pw = address(&format!(
        "postgres://{PASSWORD_USER}:{}@127.0.0.1:{}/{db}?sslmode=disable",
        c.password(),
        c.port
    ));
    let mut leader = ExportedSnapshot::begin(&pw).unwrap();
    let tables = catalog::read_tables(leader.client(), &pw).unwrap();
    let e = catalog::check_readable(&tables, &pw).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert_eq!(
        e.message(),
        format!(
            "user \"coffer_pw\" may not read tables Odd \"Schema\".plain, public.feelings in postgres://coffer_pw@127.0.0.1:{}/{db}: grant it SELECT, or back up as a role that can read every table",
            c.port
        )
    );
}

#[test]
fn ctid_ranges_cover_every_row_once() {
    let c = pg::cluster();
    let db = c.create_database("ranges");
    c.execute(
        &db,
        "CREATE TABLE big (id int8, pad text); \
         INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g; \
         DELETE FROM big WHERE id % 7 = 0;",
    );
    let a = address(&c.url(&db));
    let mut leader = ExportedSnapshot::begin(&a).unwrap();
    let tables = catalog::read_tables(leader.client(), &a).unwrap();
    let big = &tables[0];
    assert!(big.pages > 500, "{}", big.pages);
    // Rows added after the snapshot land on new pages; the open last range
    // would read them, but the snapshot hides them.
    c.execute(
        &db,
        "INSERT INTO big SELECT g, 'late' FROM generate_series(20001, 25000) g",
    );
    let ranges = split_pages(big.pages, 4, 10);
    assert_eq!(ranges.len(), 4);
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for range in ranges {
        let mut w = leader.worker().unwrap();
        let sql = format!(
            "COPY (SELECT id FROM ONLY public.big WHERE {}) TO STDOUT (FORMAT binary)",
            range.predicate().unwrap()
        );
        let ids = ints(w.client(), &sql);
        assert!(!ids.is_empty());
        total += ids.len();
        seen.extend(ids);
    }
    let expect: BTreeSet<i64> = (1..=20000).filter(|i| i % 7 != 0).collect();
    assert_eq!(total, expect.len());
    assert_eq!(seen, expect);
}

/// Every row of `sql`'s single column, decoded from binary COPY, shows as
/// the server's own text of it (floats: the same bits).
fn check_values(client: &mut postgres::Client, type_oid: u32, values: &str, ty: &str) {
    let query = format!("SELECT v::{ty} AS v, n FROM (VALUES {values}) AS x(v, n) ORDER BY n");
    let texts: Vec<Option<String>> = client
        .query(&format!("SELECT CASE WHEN v IS NULL THEN NULL ELSE format('%s', v) END FROM ({query}) q ORDER BY n"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut reader = BinaryCopyReader::new(
        client
            .copy_out(&format!(
                "COPY (SELECT v FROM ({query}) q ORDER BY n) TO STDOUT (FORMAT binary)"
            ))
            .unwrap(),
        ty,
    )
    .unwrap();
    let mut i = 0;
    while let Some(row) = reader.next_row().unwrap() {
        let got = row
            .field(0)
            .map(|b| decode(type_oid, b).unwrap_or_else(|e| panic!("{ty} row {i}: {e} ({b:?})")));
        match (&got, &texts[i]) {
            (None, None) => {}
            (Some(Value::Float8(v)), Some(t)) => {
                let server: f64 = parse_float(t);
                assert!(
                    v.to_bits() == server.to_bits() || (v.is_nan() && server.is_nan()),
                    "{ty} row {i}: {v} vs {t}"
                );
            }
            (Some(Value::Float4(v)), Some(t)) => {
                let server = parse_float(t) as f32;
                assert!(
                    v.to_bits() == server.to_bits() || (v.is_nan() && server.is_nan()),
                    "{ty} row {i}: {v} vs {t}"
                );
            }
            (Some(v), Some(t)) => assert_eq!(&v.to_string(), t, "{ty} row {i}: {v:?}"),
            other => panic!("{ty} row {i}: {other:?}"),
        }
        i += 1;
    }
    assert_eq!(i, texts.len(), "{ty}: rows");
}

fn parse_float(t: &str) -> f64 {
    match t {
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        t => t.parse().unwrap(),
    }
}

fn rows(values: &[&str]) -> String {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("({v}, {i})"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn values_decode_exactly() {
    let c = pg::cluster();
    let db = c.create_database("values");
    let a = address(&c.url(&db));
    let mut conn = a.connect().unwrap();
    let cl = &mut conn.client;
    check_values(cl, 16, &rows(&["true", "false", "NULL"]), "bool");
    check_values(cl, 21, &rows(&["-32768", "32767", "0"]), "int2");
    check_values(cl, 23, &rows(&["-2147483648", "2147483647", "-1"]), "int4");
    check_values(
        cl,
        20,
        &rows(&["-9223372036854775808", "9223372036854775807", "0"]),
        "int8",
    );
    check_values(
        cl,
        701,
        &rows(&[
            "'NaN'",
            "'Infinity'",
            "'-Infinity'",
            "'-0'",
            "'0.1'",
            "'1e308'",
            "'4.9e-324'",
            "'-2.2250738585072014e-308'",
            "'3.141592653589793'",
        ]),
        "float8",
    );
    check_values(
        cl,
        700,
        &rows(&[
            "'NaN'",
            "'-Infinity'",
            "'-0'",
            "'0.1'",
            "'3.4028235e38'",
            "'1e-45'",
        ]),
        "float4",
    );
    check_values(
        cl,
        1700,
        &rows(&[
            "'NaN'",
            "'Infinity'",
            "'-Infinity'",
            "'0'",
            "'0.000'",
            "'-0.0001'",
            "'12345678.9'",
            "'1e-30'",
            "'-1e30'",
            "'10000'",
            "'9999.9999'",
            "'0.00001230'",
            "'123456789012345678901234567890.123456789012345678901234567890'",
            "'1e-1000'",
            "'3.14159'::numeric(10,2)",
        ]),
        "numeric",
    );
    check_values(
        cl,
        25,
        &rows(&[
            "''",
            "'plain'",
            "E'tab\\there\\nnewline'",
            "'ünïcødé 🦀'",
            "repeat('long', 5000)",
        ]),
        "text",
    );
    check_values(cl, 1042, &rows(&["'ab'::char(5)", "''::char(3)"]), "bpchar");
    check_values(cl, 1043, &rows(&["'x'::varchar(3)"]), "varchar");
    check_values(
        cl,
        17,
        &rows(&[
            "''::bytea",
            "'\\x00ff10'::bytea",
            "decode(repeat('ab', 1000), 'hex')",
        ]),
        "bytea",
    );
    check_values(
        cl,
        1082,
        &rows(&[
            "'infinity'",
            "'-infinity'",
            "'2000-01-01'",
            "'1999-12-31'",
            "'2024-02-29'",
            "'0001-01-01'",
            "'0001-12-31 BC'",
            "'4713-01-01 BC'",
            "'5874897-12-31'",
            "'1600-03-01'",
        ]),
        "date",
    );
    check_values(
        cl,
        1114,
        &rows(&[
            "'infinity'",
            "'-infinity'",
            "'2000-01-01 00:00:00'",
            "'1969-12-31 23:59:59.999999'",
            "'2026-12-01 12:34:56.5'",
            "'0044-03-15 12:00 BC'",
            "'4713-01-01 00:00 BC'",
            "'294276-12-31 23:59:59.999999'",
        ]),
        "timestamp",
    );
    check_values(
        cl,
        1184,
        &rows(&[
            "'infinity'",
            "'-infinity'",
            "'2026-12-01 12:34:56.000001+05:30'",
            "'1900-01-01 00:00:00+00'",
            "'0001-01-01 00:00 BC'",
        ]),
        "timestamptz",
    );
    check_values(
        cl,
        1083,
        &rows(&["'00:00'", "'23:59:59.999999'", "'24:00:00'", "'12:00:00.1'"]),
        "time",
    );
    check_values(
        cl,
        1186,
        &rows(&[
            "'0'",
            "'1 year 2 months 3 days 04:05:06.789'",
            "'-1 year -2 months'",
            "'-3 days 04:00'",
            "'-00:00:00.5'",
            "'1 mon -30 days'",
            "'178000000 years'",
            "'-178000000 years'",
            "'1 day -00:00:01.000001'",
            "'123:00:00'",
        ]),
        "interval",
    );
    check_values(
        cl,
        2950,
        &rows(&[
            "'00000000-0000-0000-0000-000000000000'",
            "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
        ]),
        "uuid",
    );
    check_values(
        cl,
        114,
        &rows(&[
            "'{\"b\": 1,   \"a\": [1, 2]}'",
            "'\"\\u0000 is fine in json\"'",
            "'null'",
        ]),
        "json",
    );
    check_values(
        cl,
        3802,
        &rows(&["'{\"b\": 1,   \"a\": [1, 2.50]}'", "'\"ünï\"'", "'[]'"]),
        "jsonb",
    );
    check_values(
        cl,
        0,
        &rows(&[
            "'{}'::int4[]",
            "'{1,NULL,3}'::int4[]",
            "'{{1,2},{3,4}}'::int4[]",
            "'[0:1][-2:-1]={{1,2},{3,4}}'::int4[]",
            "'[5:5]={7}'::int4[]",
        ]),
        "int4[]",
    );
    check_values(
        cl,
        0,
        &rows(&[
            "ARRAY['', 'a b', 'q\"uote', 'back\\slash', 'NULL', 'null', NULL, '{}', 'x,y']",
            "ARRAY[ARRAY['a','b'],ARRAY['c',NULL]]",
        ]),
        "text[]",
    );
    check_values(
        cl,
        0,
        &rows(&["ARRAY['NaN'::numeric, 1.50, NULL]"]),
        "numeric[]",
    );
    check_values(
        cl,
        0,
        &rows(&["ARRAY['infinity'::timestamptz, '2026-01-01 00:00+00']"]),
        "timestamptz[]",
    );
    check_values(
        cl,
        0,
        &rows(&["ARRAY['\\x00'::bytea, ''::bytea]"]),
        "bytea[]",
    );
    check_values(
        cl,
        1266,
        &rows(&[
            "'00:00:00+00'",
            "'23:59:59.999999-12:30'",
            "'12:00:00.5+05:45'",
            "'04:05:06+14:59:58'",
            "'24:00:00-15:59'",
        ]),
        "timetz",
    );
    check_values(
        cl,
        869,
        &rows(&[
            "'192.168.0.1'",
            "'10.0.0.0/8'",
            "'10.1.2.3/8'",
            "'::1'",
            "'2001:db8::1/64'",
            "'::ffff:1.2.3.4'",
            "'fe80::1:2:3:4'",
            "'0.0.0.0/0'",
        ]),
        "inet",
    );
    check_values(
        cl,
        650,
        &rows(&[
            "'10.0.0.0/8'",
            "'192.168.1.1/32'",
            "'2001:db8::/32'",
            "'::/0'",
        ]),
        "cidr",
    );
    check_values(
        cl,
        829,
        &rows(&["'08:00:2b:01:02:03'", "'FF-FF-FF-FF-FF-FF'"]),
        "macaddr",
    );
    check_values(cl, 774, &rows(&["'08:00:2b:01:02:03:04:05'"]), "macaddr8");
    check_values(
        cl,
        790,
        &rows(&[
            "'0'",
            "'1.23'",
            "'-1234567.89'",
            "'92233720368547758.07'",
            "'-92233720368547758.08'",
        ]),
        "money",
    );
    check_values(
        cl,
        1560,
        &rows(&["B'1'", "B'10100101'", "B'101001011'::bit(9)"]),
        "bit",
    );
    check_values(
        cl,
        1562,
        &rows(&["B''", "B'0'", "B'1111000011110000111'"]),
        "varbit",
    );
    check_values(
        cl,
        0,
        &rows(&["ARRAY['10.0.0.0/8'::cidr, NULL]", "'{}'::inet[]"]),
        "inet[]",
    );
}

#[test]
fn truncated_streams_are_errors() {
    let c = pg::cluster();
    let db = c.create_database("truncated");
    let mut client = c.client(&db).unwrap();
    let mut bytes = Vec::new();
    client
        .copy_out("COPY (SELECT g, 'x' FROM generate_series(1, 3) g) TO STDOUT (FORMAT binary)")
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    bytes.truncate(bytes.len() - 3);
    let mut r = BinaryCopyReader::new(&bytes[..], "table public.t").unwrap();
    let mut err = None;
    for _ in 0..4 {
        match r.next_row() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("a truncated stream read as complete"),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let e = err.unwrap();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(
        e.message()
            .starts_with("the COPY stream of table public.t ended in the middle"),
        "{e}"
    );
}

#[test]
fn copying_a_table_by_its_catalog_entry() {
    let c = pg::cluster();
    let db = c.create_database("copy_table");
    c.execute(
        &db,
        "CREATE TABLE t (id int8 PRIMARY KEY, g int8 GENERATED ALWAYS AS (id * 2) STORED, s text); \
         INSERT INTO t (id, s) SELECT n, CASE WHEN n % 3 = 0 THEN NULL ELSE 'row ' || n END FROM generate_series(1, 1000) n; \
         CREATE TABLE hidden (x int)",
    );
    let a = address(&c.url(&db));
    let mut leader = ExportedSnapshot::begin(&a).unwrap();
    let tables = catalog::read_tables(leader.client(), &a).unwrap();
    let t = tables.iter().find(|t| t.name == "t").unwrap();
    let mut reader = coffer_postgres::copy::copy_table(leader.client(), &a, t, None).unwrap();
    let mut n = 0;
    while let Some(row) = reader.next_row().unwrap() {
        n += 1;
        // The generated column is not copied.
        assert_eq!(row.len(), 2);
        let id = match decode(20, row.field(0).unwrap()).unwrap() {
            Value::Int8(v) => v,
            v => panic!("{v:?}"),
        };
        match row.field(1) {
            None => assert_eq!(id % 3, 0),
            Some(b) => assert_eq!(decode(25, b).unwrap(), Value::Text(format!("row {id}"))),
        }
    }
    assert_eq!(n, 1000);
    drop(reader);

    // Without SELECT on it, reading a table names it.
    let pw = address(&format!(
        "postgres://{PASSWORD_USER}:{}@127.0.0.1:{}/{db}?sslmode=disable",
        c.password(),
        c.port
    ));
    let mut leader = ExportedSnapshot::begin(&pw).unwrap();
    let hidden = tables.iter().find(|t| t.name == "hidden").unwrap();
    let e = coffer_postgres::copy::copy_table(leader.client(), &pw, hidden, None)
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert_eq!(
        e.message(),
        format!(
            "reading table public.hidden in postgres://coffer_pw@127.0.0.1:{}/{db} failed because user \"coffer_pw\" lacks a privilege (permission denied for table hidden): grant it, or use a role that has it",
            c.port
        )
    );
}

#[test]
fn a_snapshot_on_a_standby_records_the_replayed_wal_position() {
    let c = pg::cluster();
    let db = c.create_database("standby");
    c.execute(
        &db,
        "CREATE TABLE t (id int8); INSERT INTO t SELECT generate_series(1, 50)",
    );
    let standby = c.start_standby();
    let a = address(&standby.url(&db));
    let mut leader = ExportedSnapshot::begin(&a).unwrap();
    let moment = leader.moment().clone();
    assert!(moment.standby);
    let lsn = moment
        .wal_lsn
        .clone()
        .expect("a standby that replayed WAL has a position");
    let mut primary = c.client(&db).unwrap();
    let ahead: bool = primary
        .query_one("SELECT pg_current_wal_lsn() >= $1::text::pg_lsn", &[&lsn])
        .unwrap()
        .get(0);
    assert!(ahead, "{lsn}");
    let sql = "COPY (SELECT id FROM t ORDER BY id) TO STDOUT (FORMAT binary)";
    let mut worker = leader.worker().unwrap();
    assert_eq!(ints(worker.client(), sql), (1..=50).collect::<Vec<_>>());
    assert_eq!(ints(leader.client(), sql), (1..=50).collect::<Vec<_>>());
}

#[test]
fn every_type_travels_binary_or_as_its_text() {
    use coffer_postgres::catalog::WireForm;
    let c = pg::cluster();
    let db = c.create_database("wire_forms");
    c.execute(
        &db,
        r#"
        CREATE EXTENSION IF NOT EXISTS hstore;
        CREATE EXTENSION IF NOT EXISTS citext;
        CREATE EXTENSION IF NOT EXISTS ltree;
        CREATE TYPE mood AS ENUM ('sad', 'happy', 'with "quotes"');
        CREATE DOMAIN money_amount AS numeric(12, 2) CHECK (VALUE >= 0);
        CREATE DOMAIN small_amount AS money_amount CHECK (VALUE < 100);
        CREATE TYPE pair AS (a int, b text);
        CREATE TABLE w (
            n int,
            m mood, ms mood[], d money_amount, dd small_amount, p pair, r int4range, tr tstzrange,
            h hstore, ci citext, l ltree, pt point, x xml, ids int8[], ts tsvector
        );
        INSERT INTO w VALUES
            (1, 'happy', '{sad,"with \"quotes\""}', 12.5, 99.99, ROW(1, 'a "b", c'), '[1,10)', '[2026-01-01,infinity)',
             'a=>1, "b c"=>NULL', 'MiXeD', 'top.science.astronomy', '(1.5,-2)', '<a>x</a>', '{1,NULL,3}', 'a fat cat'),
            (2, NULL, '{}', 0, 0, ROW(NULL, NULL), 'empty', '(,)', '', '', '', '(0,0)', '', '{}', '');
        "#,
    );
    let a = address(&c.url(&db));
    let mut leader = ExportedSnapshot::begin(&a).unwrap();
    let tables = catalog::read_tables(leader.client(), &a).unwrap();
    let t = &tables[0];
    let forms: Vec<(&str, WireForm)> = t
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.wire_form()))
        .collect();
    assert_eq!(
        forms,
        [
            ("n", WireForm::Binary(23)),
            ("m", WireForm::Text),
            ("ms", WireForm::Text),
            ("d", WireForm::Binary(1700)),
            ("dd", WireForm::Binary(1700)),
            ("p", WireForm::Text),
            ("r", WireForm::Text),
            ("tr", WireForm::Text),
            ("h", WireForm::Text),
            ("ci", WireForm::Text),
            ("l", WireForm::Text),
            ("pt", WireForm::Text),
            ("x", WireForm::Text),
            ("ids", WireForm::Binary(1016)),
            ("ts", WireForm::Text),
        ]
    );
    // The server's own text of every column, row by row.
    let names: Vec<String> = t
        .columns
        .iter()
        .map(|c| format!("format('%s', {})", c.name))
        .collect();
    let texts = leader
        .client()
        .query(
            &format!("SELECT {} FROM w ORDER BY n", names.join(", ")),
            &[],
        )
        .unwrap();
    let mut reader = coffer_postgres::copy::copy_table(leader.client(), &a, t, None).unwrap();
    let mut i = 0;
    let mut rows = Vec::new();
    while let Some(row) = reader.next_row().unwrap() {
        let mut values = Vec::new();
        for (j, col) in t.columns.iter().enumerate() {
            let oid = match col.wire_form() {
                WireForm::Binary(oid) => oid,
                WireForm::Text => 25,
            };
            values.push(row.field(j).map(|b| decode(oid, b).unwrap().to_string()));
        }
        rows.push(values);
        i += 1;
    }
    assert_eq!(i, 2);
    rows.sort_by_key(|r| r[0].clone());
    for (row, server) in rows.iter().zip(&texts) {
        for (j, value) in row.iter().enumerate() {
            let expect: String = server.get(j);
            // format('%s', NULL) is ''.
            assert_eq!(
                value.clone().unwrap_or_default(),
                expect,
                "column {}",
                t.columns[j].name
            );
        }
    }
}

#[test]
fn sequences_and_their_state() {
    let c = pg::cluster();
    let db = c.create_database("sequences");
    c.execute(
        &db,
        r#"
        CREATE TABLE t (id serial, ident int8 GENERATED BY DEFAULT AS IDENTITY, x int);
        INSERT INTO t (x) SELECT generate_series(1, 5);
        CREATE SEQUENCE "odd 'seq'" START 100;
        CREATE SEQUENCE fresh;
        SELECT setval('"odd ''seq''"', 42, false);
        "#,
    );
    let a = address(&c.url(&db));
    let mut leader = ExportedSnapshot::begin(&a).unwrap();
    let seqs = catalog::read_sequences(leader.client(), &a, None).unwrap();
    let got: Vec<(&str, i64, bool)> = seqs
        .iter()
        .map(|s| (s.name.as_str(), s.last_value, s.is_called))
        .collect();
    assert_eq!(
        got,
        [
            ("fresh", 1, false),
            ("odd 'seq'", 42, false),
            ("t_id_seq", 5, true),
            ("t_ident_seq", 5, true)
        ]
    );
    assert_eq!(
        seqs[2].owned_by,
        Some(("public".into(), "t".into(), "id".into()))
    );
    assert_eq!(
        seqs[3].owned_by,
        Some(("public".into(), "t".into(), "ident".into()))
    );
    assert_eq!(seqs[0].owned_by, None);
    // setval_sql puts the state back.
    let mut client = c.client(&db).unwrap();
    client
        .batch_execute("SELECT nextval('\"odd ''seq''\"'), nextval('t_id_seq')")
        .unwrap();
    for s in &seqs {
        client.batch_execute(&s.setval_sql()).unwrap();
    }
    let next: i64 = client
        .query_one("SELECT nextval('\"odd ''seq''\"')", &[])
        .unwrap()
        .get(0);
    assert_eq!(next, 42);
    let next: i64 = client
        .query_one("SELECT nextval('t_id_seq')", &[])
        .unwrap()
        .get(0);
    assert_eq!(next, 6);
}
