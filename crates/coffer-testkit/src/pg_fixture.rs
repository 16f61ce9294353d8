//! The PostgreSQL engine's fixture for the [engine conformance
//! suite](crate::engines): databases on the test cluster ([`crate::pg`]),
//! read back as images (rows by type, schema objects as `pg_dump
//! --schema-only` writes them), written by a seeded random writer.
//!
//! The `postgres` client blocks on a runtime of its own, which may not run
//! inside another: every call to the server runs on a thread of its own
//! ([`off_runtime`]), since the suite's checks are async.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use coffer::engine::{Address, Engine};
use coffer_postgres::catalog::quote_ident as quote;
use postgres::types::ToSql;

use crate::fixture::{
    ColumnType, Description, EngineFixture, SchemaChange, TableDesc, Writer, random_key, random_row,
};
use crate::image::{Image, RowIter, RowSource, SchemaItem, TableImage, Value};
use crate::pg::{self, Cluster, NASTY_SQL};

/// Run `f` on a thread of its own and return what it returns (its panic
/// goes on in the caller).
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

fn pg_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Integer => "bigint",
        ColumnType::Real => "double precision",
        ColumnType::Text => "text",
        ColumnType::Blob => "bytea",
    }
}

/// A value as a statement parameter of a column of type `ty`.
fn param(ty: ColumnType, v: &Value) -> Box<dyn ToSql + Sync + Send> {
    match (ty, v) {
        (_, Value::Integer(i)) => Box::new(*i),
        (_, Value::Real(bits)) => Box::new(f64::from_bits(*bits)),
        (_, Value::Text(t)) => Box::new(String::from_utf8(t.clone()).expect("UTF-8 text")),
        (_, Value::Blob(b)) => Box::new(b.clone()),
        (ColumnType::Integer, _) => Box::new(None::<i64>),
        (ColumnType::Real, _) => Box::new(None::<f64>),
        (ColumnType::Text, _) => Box::new(None::<String>),
        (ColumnType::Blob, _) => Box::new(None::<Vec<u8>>),
    }
}

/// Statement parameters, each of its column's type.
type Params = Vec<Box<dyn ToSql + Sync + Send>>;

fn refs(params: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// The PostgreSQL engine's fixture: each database is a new one on the test
/// cluster, named after the fixture and a counter.
pub struct PgFixture {
    cluster: &'static Cluster,
    tag: String,
    next: AtomicU64,
}

impl Default for PgFixture {
    fn default() -> Self {
        PgFixture::new()
    }
}

impl PgFixture {
    /// A fixture on the process's test cluster.
    pub fn new() -> PgFixture {
        static FIXTURES: AtomicU64 = AtomicU64::new(0);
        PgFixture {
            cluster: off_runtime(pg::cluster),
            tag: format!("cf{}", FIXTURES.fetch_add(1, Ordering::SeqCst)),
            next: AtomicU64::new(0),
        }
    }

    fn new_name(&self, label: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        format!("{}_{n}_{}", self.tag, pg::name_part(label, 30))
    }

    fn address(&self, db: &str) -> Address {
        coffer_postgres::engine()
            .resolve(&self.cluster.url(db))
            .expect("a PostgreSQL address")
    }

    fn client(&self, db: &Address) -> postgres::Client {
        self.cluster
            .client(db.database())
            .unwrap_or_else(|e| panic!("connect to {db}: {e}"))
    }
}

fn create_table_sql(t: &TableDesc) -> String {
    let mut parts: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            let null = if c.nullable { "" } else { " NOT NULL" };
            format!("{} {}{null}", quote(&c.name), pg_type(c.ty))
        })
        .collect();
    if !t.primary_key.is_empty() {
        let key: Vec<String> = t.primary_key.iter().map(|k| quote(k)).collect();
        parts.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    format!("CREATE TABLE {} ({})", quote(&t.name), parts.join(", "))
}

fn insert_sql(t: &TableDesc) -> String {
    let cols: Vec<String> = t.columns.iter().map(|c| quote(&c.name)).collect();
    let params: Vec<String> = (1..=t.columns.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        quote(&t.name),
        cols.join(", "),
        params.join(", ")
    )
}

/// The rows of a database's tables, read when asked.
struct ServerRows {
    cluster: &'static Cluster,
    db: String,
}

impl RowSource for ServerRows {
    fn rows(&self, table: &TableImage) -> Result<RowIter, String> {
        let (cluster, db, sql) = (self.cluster, self.db.clone(), table.read.clone());
        let rows = off_runtime(move || -> Result<Vec<Vec<Value>>, String> {
            let mut c = cluster.client(&db).map_err(|e| e.to_string())?;
            let rows = c
                .query(&sql, &[])
                .map_err(|e| format!("{db}: {sql}: {e}"))?;
            Ok(rows
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| {
                            let ty = r.columns()[i].type_().name().to_string();
                            match ty.as_str() {
                                "int8" => r
                                    .get::<_, Option<i64>>(i)
                                    .map_or(Value::Null, Value::Integer),
                                "float8" => {
                                    r.get::<_, Option<f64>>(i).map_or(Value::Null, Value::real)
                                }
                                "text" => r
                                    .get::<_, Option<String>>(i)
                                    .map_or(Value::Null, |s| Value::text(&s)),
                                "bytea" => r
                                    .get::<_, Option<Vec<u8>>>(i)
                                    .map_or(Value::Null, Value::Blob),
                                _ => unreachable!("the reading query casts {ty} to text"),
                            }
                        })
                        .collect()
                })
                .collect())
        })?;
        Ok(Box::new(rows.into_iter().map(Ok)))
    }
}

/// The table an entry of pg_dump's output belongs to, if it is part of
/// one: a table itself, its constraints (`table constraint`), its indexes
/// (the table their SQL names after `ON`).
fn table_of(entry: &coffer_postgres::ddl::Entry) -> Option<String> {
    let qualify = |name: &str| {
        if entry.schema == "public" {
            name.to_string()
        } else {
            format!("{}.{name}", entry.schema)
        }
    };
    match entry.kind.as_str() {
        "TABLE" => Some(qualify(&entry.name)),
        "CONSTRAINT" | "FK CONSTRAINT" => entry.name.split(' ').next().map(qualify),
        "INDEX" => {
            let after = entry.sql.split(" ON ").nth(1)?;
            let name = after.trim_start_matches("ONLY ").split([' ', '(']).next()?;
            let name = name.split_once('.').map_or(name, |(_, n)| n);
            Some(qualify(name.trim_matches('"')))
        }
        _ => None,
    }
}

/// The image of `db` on `cluster`.
fn read_image(cluster: &'static Cluster, db: &str) -> Result<Image, String> {
    let mut image = Image::new(
        format!("PostgreSQL database {db}"),
        Arc::new(ServerRows {
            cluster,
            db: db.to_string(),
        }),
    );
    let out = std::process::Command::new(cluster.bindir.join("pg_dump"))
        .args(["--schema-only", "--dbname", &cluster.url(db)])
        .output()
        .map_err(|e| format!("pg_dump: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pg_dump of {db}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    for e in coffer_postgres::ddl::entries(&text) {
        let table = table_of(&e);
        image.objects.insert(SchemaItem {
            kind: e.kind.to_lowercase(),
            name: format!("{}.{}", e.schema, e.name),
            part_of_table: table.is_some(),
            table: table.unwrap_or_default(),
            definition: Some(e.sql.into_bytes()),
            by_name_only: false,
        });
    }
    let mut c = cluster.client(db).map_err(|e| e.to_string())?;
    let tables = c
        .query(
            "SELECT n.nspname::text, c.relname::text, c.oid FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname !~ '^pg_toast' ORDER BY 1, 2",
            &[],
        )
        .map_err(|e| e.to_string())?;
    for t in tables {
        let (schema, name, oid): (String, String, u32) = (t.get(0), t.get(1), t.get(2));
        let columns = c
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, NULL), \
                        coalesce(a.attnum = ANY (i.indkey), false) \
                 FROM pg_attribute a LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary \
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                &[&oid],
            )
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = columns.iter().map(|r| r.get(0)).collect();
        let key: Vec<usize> = columns
            .iter()
            .enumerate()
            .filter(|(_, r)| r.get::<_, bool>(2))
            .map(|(i, _)| i)
            .collect();
        let select: Vec<String> = columns
            .iter()
            .map(|r| {
                let (col, ty): (String, String) = (r.get(0), r.get(1));
                match ty.as_str() {
                    "bigint" | "double precision" | "text" | "bytea" => quote(&col),
                    _ => format!("{}::text", quote(&col)),
                }
            })
            .collect();
        let order: Vec<String> = (1..=select.len()).map(|i| i.to_string()).collect();
        let qualified = format!("{}.{}", quote(&schema), quote(&name));
        let shown = if schema == "public" {
            name.clone()
        } else {
            format!("{schema}.{name}")
        };
        image.tables.insert(
            shown.clone(),
            TableImage {
                name: shown,
                kind: "table".into(),
                layout: if key.is_empty() {
                    "no key"
                } else {
                    "primary key"
                }
                .into(),
                columns: names,
                key,
                hidden_key: None,
                read: format!(
                    "SELECT {} FROM ONLY {qualified} ORDER BY {}",
                    select.join(", "),
                    if order.is_empty() {
                        "1".into()
                    } else {
                        order.join(", ")
                    }
                ),
            },
        );
    }
    Ok(image)
}

impl EngineFixture for PgFixture {
    fn engine(&self) -> Arc<dyn Engine> {
        coffer_postgres::engine()
    }

    fn fresh(&self, label: &str) -> Address {
        self.address(&self.new_name(label))
    }

    fn create(&self, label: &str, description: &Description) -> Address {
        let name = self.new_name(label);
        let cluster = self.cluster;
        off_runtime(|| {
            cluster.execute("postgres", &format!("CREATE DATABASE {}", quote(&name)));
            let mut c = cluster.client(&name).unwrap();
            let mut tx = c.transaction().unwrap();
            for t in &description.tables {
                tx.batch_execute(&create_table_sql(t))
                    .unwrap_or_else(|e| panic!("create {}: {e}", t.name));
                let insert = tx.prepare(&insert_sql(t)).unwrap();
                for row in &t.rows {
                    let params: Vec<_> = row
                        .iter()
                        .zip(&t.columns)
                        .map(|(v, c)| param(c.ty, v))
                        .collect();
                    tx.execute(&insert, &refs(&params))
                        .unwrap_or_else(|e| panic!("insert into {}: {e}: {row:?}", t.name));
                }
            }
            tx.commit().unwrap();
        });
        self.address(&name)
    }

    fn create_nasty(&self, label: &str) -> Option<Address> {
        let name = self.new_name(label);
        let cluster = self.cluster;
        off_runtime(|| {
            cluster.execute("postgres", &format!("CREATE DATABASE {}", quote(&name)));
            cluster.execute(&name, NASTY_SQL);
        });
        Some(self.address(&name))
    }

    fn image(&self, db: &Address) -> Result<Image, String> {
        let (cluster, name) = (self.cluster, db.database().to_string());
        off_runtime(move || read_image(cluster, &name))
    }

    fn exists(&self, db: &Address) -> bool {
        let (cluster, name) = (self.cluster, db.database().to_string());
        off_runtime(move || {
            cluster
                .client("postgres")
                .unwrap()
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .unwrap()
                .is_some()
        })
    }

    fn leftovers(&self, db: &Address) -> Vec<String> {
        let [built, aside] = coffer_postgres::restore::temporary_prefixes(db.database());
        let cluster = self.cluster;
        off_runtime(move || {
            cluster
                .client("postgres")
                .unwrap()
                .query(
                    "SELECT datname::text FROM pg_database \
                     WHERE starts_with(datname, $1) OR starts_with(datname, $2) ORDER BY 1",
                    &[&built, &aside],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect()
        })
    }

    fn writer(
        &self,
        db: &Address,
        description: &Description,
        tables: &[&str],
        seed: u64,
    ) -> Box<dyn Writer> {
        let client = off_runtime(|| self.client(db));
        Box::new(PgWriter {
            client: Some(client),
            tables: tables
                .iter()
                .map(|t| description.table(t).clone())
                .collect(),
            rng: fastrand::Rng::with_seed(seed),
        })
    }

    /// A table needs a primary key or a unique key to be captured.
    fn captures_keyless(&self) -> bool {
        false
    }

    fn change_schema(&self, db: &Address, table: &str, change: SchemaChange) {
        let q = quote(table);
        let sql = match &change {
            SchemaChange::AddColumn => format!(
                "BEGIN;
                 ALTER TABLE {q} ADD COLUMN \"added by the suite\" text;
                 UPDATE {q} SET \"added by the suite\" = 'changed' WHERE ctid = (SELECT min(ctid) FROM {q});
                 COMMIT;"
            ),
            SchemaChange::AddUniqueIndex(columns) => format!(
                "CREATE UNIQUE INDEX {} ON {q} ({})",
                quote(&format!("{table} unique by the suite")),
                columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
            ),
        };
        let (cluster, name) = (self.cluster, db.database().to_string());
        off_runtime(move || cluster.execute(&name, &sql));
    }
}

struct PgWriter {
    client: Option<postgres::Client>,
    tables: Vec<TableDesc>,
    rng: fastrand::Rng,
}

/// One random change to `t`, as SQL and its parameters (`$1` first).
fn one_change(rng: &mut fastrand::Rng, t: &TableDesc) -> (String, Params) {
    let q = quote(&t.name);
    let keys = t.key_positions();
    let row = random_row(rng, t, &keys);
    let non_key: Vec<usize> = (0..t.columns.len()).filter(|i| !keys.contains(i)).collect();
    // Which row an update or delete hits: by key (parameters from $2), or
    // without a key by position in ctid order.
    let (cond, key_params): (String, Params) = if keys.is_empty() {
        let offset = rng.i64(0..400);
        (
            format!(
                "ctid = (SELECT ctid FROM {q} ORDER BY ctid LIMIT 1 OFFSET {offset} % greatest(1, (SELECT count(*) FROM {q})))"
            ),
            Vec::new(),
        )
    } else {
        let cond = keys
            .iter()
            .enumerate()
            .map(|(n, &k)| format!("x.{} = ${}", quote(&t.columns[k].name), n + 2))
            .collect::<Vec<_>>()
            .join(" AND ");
        let params = keys
            .iter()
            .map(|&k| param(t.columns[k].ty, &random_key(rng, t.columns[k].ty)))
            .collect();
        (cond, params)
    };
    let key_cols: Vec<String> = keys.iter().map(|&k| quote(&t.columns[k].name)).collect();
    match rng.u8(0..10) {
        0..=3 => {
            let replace = rng.bool();
            let params: Vec<_> = row
                .iter()
                .zip(&t.columns)
                .map(|(v, c)| param(c.ty, v))
                .collect();
            let mut sql = insert_sql(t);
            if !keys.is_empty() {
                let sets: Vec<String> = non_key
                    .iter()
                    .map(|&c| {
                        let n = quote(&t.columns[c].name);
                        format!("{n} = EXCLUDED.{n}")
                    })
                    .collect();
                if replace && !sets.is_empty() {
                    sql.push_str(&format!(
                        " ON CONFLICT ({}) DO UPDATE SET {}",
                        key_cols.join(", "),
                        sets.join(", ")
                    ));
                } else {
                    sql.push_str(" ON CONFLICT DO NOTHING");
                }
            }
            (sql, params)
        }
        4..=6 if !non_key.is_empty() => {
            let c = non_key[rng.usize(..non_key.len())];
            let sql = format!(
                "UPDATE {q} AS x SET {} = $1 WHERE {cond}",
                quote(&t.columns[c].name)
            );
            let mut p = vec![param(t.columns[c].ty, &row[c])];
            p.extend(key_params);
            (sql, p)
        }
        7 if !keys.is_empty() => {
            // A key change, left out where the new key is taken.
            let k = keys[0];
            let kc = quote(&t.columns[k].name);
            let same_rest: String = keys[1..]
                .iter()
                .map(|&o| {
                    let n = quote(&t.columns[o].name);
                    format!(" AND y.{n} = x.{n}")
                })
                .collect();
            let sql = format!(
                "UPDATE {q} AS x SET {kc} = $1 WHERE {cond} \
                 AND NOT EXISTS (SELECT 1 FROM {q} y WHERE y.{kc} = $1{same_rest})"
            );
            let mut p = vec![param(t.columns[k].ty, &random_key(rng, t.columns[k].ty))];
            p.extend(key_params);
            (sql, p)
        }
        _ => {
            // $1 is unused by the condition; it is there so that the key
            // parameters are $2 on, as in the other statements.
            let sql = format!("DELETE FROM {q} AS x WHERE $1::int IS NULL AND {cond}");
            let mut p: Params = vec![Box::new(None::<i32>)];
            p.extend(key_params);
            (sql, p)
        }
    }
}

impl Writer for PgWriter {
    fn step(&mut self) -> Result<(), String> {
        let n = self.rng.usize(1..6);
        let changes: Vec<(String, String, Params)> = (0..n)
            .map(|_| {
                let t = &self.tables[self.rng.usize(..self.tables.len())];
                let (sql, params) = one_change(&mut self.rng, t);
                (t.name.clone(), sql, params)
            })
            .collect();
        let mut client = self
            .client
            .take()
            .ok_or("the writer's connection is gone")?;
        let (client, result) = off_runtime(move || {
            let result = (|| -> Result<(), String> {
                let mut tx = client.transaction().map_err(|e| e.to_string())?;
                for (table, sql, params) in &changes {
                    tx.execute(sql.as_str(), &refs(params))
                        .map_err(|e| format!("table {table}: {sql}: {e}"))?;
                }
                tx.commit().map_err(|e| e.to_string())
            })();
            (client, result)
        });
        self.client = Some(client);
        result
    }
}

impl Drop for PgWriter {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            off_runtime(move || drop(c));
        }
    }
}
