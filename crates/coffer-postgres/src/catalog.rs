//! The tables of a database and their columns, read from the catalog inside
//! a snapshot.
//!
//! Tables are the user's ordinary, partitioned and unlogged tables (not
//! those of `pg_catalog`, `information_schema`, TOAST or temporary schemas,
//! and not those that belong to an extension). Data lives in the tables
//! with storage: a partitioned table has none, its partitions hold its rows;
//! an inheritance parent's own rows are read with `ONLY` so a child's rows
//! are read once, from the child.

use coffer::{Error, ErrorKind, Result};

use crate::address::Address;
use crate::connect::query_error;
use crate::snapshot::CtidRange;

/// `"name"` with inner quotes doubled: an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What kind of relation a table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// An ordinary table (`relkind 'r'`), including partitions and inheritance children.
    Ordinary,
    /// A partitioned table (`'p'`): no rows of its own.
    Partitioned,
}

/// A table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// `pg_class.oid`.
    pub oid: u32,
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Ordinary or partitioned.
    pub kind: TableKind,
    /// `UNLOGGED`.
    pub unlogged: bool,
    /// A partition of [`Table::parents`]' only entry.
    pub is_partition: bool,
    /// Parents (`pg_inherits`, in `inhseqno` order) as `(schema, name)`.
    pub parents: Vec<(String, String)>,
    /// Pages on disk now (`pg_relation_size / block_size`). `relpages` is
    /// only the planner's estimate as of the last VACUUM or ANALYZE (0 for a
    /// table freshly loaded), so this is what ranges are cut from.
    pub pages: u64,
    /// `pg_class.reltuples`: the planner's row estimate (-1 or 0 when unknown).
    pub estimated_rows: f64,
    /// The current role may read it (`SELECT`).
    pub readable: bool,
    /// Columns in `attnum` order (dropped ones left out).
    pub columns: Vec<Column>,
    /// Primary key columns in key order (empty when there is none).
    pub primary_key: Vec<String>,
}

/// A column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// `attnum`.
    pub num: i16,
    /// `atttypid`.
    pub type_oid: u32,
    /// The type as SQL writes it, modifier included: `numeric(10,2)`,
    /// `character varying(20)`, `integer[]`, `public.mood`.
    pub type_sql: String,
    /// `pg_type.typname` (`int4`, `_int4`, `mood`).
    pub type_name: String,
    /// The type's schema.
    pub type_schema: String,
    /// `atttypmod` (-1 when none).
    pub typmod: i32,
    /// `pg_type.typtype`: `b` base, `c` composite, `d` domain, `e` enum,
    /// `r` range, `m` multirange, `p` pseudo.
    pub type_kind: char,
    /// The element type of an array type (`typelem` when `typcategory` is `A`).
    pub element_oid: Option<u32>,
    /// The base type of a domain, through domains over domains (the first
    /// type that is not a domain).
    pub domain_base_oid: Option<u32>,
    /// `NOT NULL`.
    pub not_null: bool,
    /// `GENERATED ALWAYS AS (…) STORED`: computed, not copied.
    pub generated: bool,
    /// `GENERATED ALWAYS AS IDENTITY` (`a`) or `BY DEFAULT` (`d`).
    pub identity: Option<char>,
    /// Has a `DEFAULT`.
    pub has_default: bool,
}

/// How a column travels in a binary COPY: in binary form, decoded by
/// [`crate::decode::decode`] with this type oid, or as PostgreSQL's text
/// form of the value (`"col"::text` in the COPY's SELECT; decode it as
/// `text`), which is lossless by PostgreSQL's I/O contract, for every type
/// the decoder does not know (enums, composites, ranges, extension types…).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireForm {
    /// Binary, decoded as this type oid (a domain's base type; an array's own oid).
    Binary(u32),
    /// Text, decoded as `text`.
    Text,
}

impl Column {
    /// How this column's values come out of [`Table::copy_out_sql`].
    pub fn wire_form(&self) -> WireForm {
        use crate::decode::is_supported;
        match (self.domain_base_oid, self.element_oid) {
            (Some(base), _) if is_supported(base) => WireForm::Binary(base),
            (None, Some(element)) if is_supported(element) => WireForm::Binary(self.type_oid),
            (None, None) if is_supported(self.type_oid) => WireForm::Binary(self.type_oid),
            _ => WireForm::Text,
        }
    }
}

impl Table {
    /// `"schema"."name"`.
    pub fn sql_name(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// Whether the table has rows of its own to read (partitioned tables do not).
    pub fn has_storage(&self) -> bool {
        self.kind == TableKind::Ordinary
    }

    /// The columns a data copy carries: all but the generated ones.
    pub fn copy_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| !c.generated)
    }

    /// The statement that streams this table's own rows (or one range of
    /// them) in binary COPY form, in [`Table::copy_columns`] order, each
    /// column in its [`Column::wire_form`].
    pub fn copy_out_sql(&self, range: Option<CtidRange>) -> String {
        let cols: Vec<String> = self
            .copy_columns()
            .map(|c| match c.wire_form() {
                WireForm::Binary(_) => quote_ident(&c.name),
                WireForm::Text => format!("{}::text", quote_ident(&c.name)),
            })
            .collect();
        self.copy_select_sql(&cols, range)
    }

    /// The statement that streams `fields` (select-list expressions) of
    /// this table's own rows, or of one range of its pages, in binary COPY
    /// form.
    pub fn copy_select_sql(&self, fields: &[String], range: Option<CtidRange>) -> String {
        let filter = range
            .and_then(|r| r.predicate())
            .map(|p| format!(" WHERE {p}"))
            .unwrap_or_default();
        format!(
            "COPY (SELECT {} FROM ONLY {}{filter}) TO STDOUT (FORMAT binary)",
            fields.join(", "),
            self.sql_name()
        )
    }
}

/// Read every table with its columns and primary key.
pub fn read_tables(
    client: &mut impl postgres::GenericClient,
    address: &Address,
) -> Result<Vec<Table>> {
    let doing = "reading the catalog";
    let rows = client
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, c.relpersistence::text, \
                    c.relispartition, pg_relation_size(c.oid) / current_setting('block_size')::int8, \
                    c.reltuples::float8, has_table_privilege(c.oid, 'SELECT') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp_' \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                               AND d.objid = c.oid AND d.deptype = 'e') \
             ORDER BY n.nspname, c.relname",
            &[],
        )
        .map_err(|e| query_error(address, doing, &e))?;
    let mut tables: Vec<Table> = rows
        .iter()
        .map(|r| Table {
            oid: r.get(0),
            schema: r.get(1),
            name: r.get(2),
            kind: if r.get::<_, String>(3) == "p" {
                TableKind::Partitioned
            } else {
                TableKind::Ordinary
            },
            unlogged: r.get::<_, String>(4) == "u",
            is_partition: r.get(5),
            parents: Vec::new(),
            pages: r.get::<_, i64>(6).max(0) as u64,
            estimated_rows: r.get(7),
            readable: r.get(8),
            columns: Vec::new(),
            primary_key: Vec::new(),
        })
        .collect();
    let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
    let index = |oid: u32| oids.iter().position(|&o| o == oid);

    let parents = client
        .query(
            "SELECT i.inhrelid, n.nspname::text, c.relname::text FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhparent JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE i.inhrelid = ANY($1) ORDER BY i.inhrelid, i.inhseqno",
            &[&oids],
        )
        .map_err(|e| query_error(address, doing, &e))?;
    for r in parents {
        if let Some(i) = index(r.get(0)) {
            tables[i].parents.push((r.get(1), r.get(2)));
        }
    }

    let columns = client
        .query(
            "SELECT a.attrelid, a.attnum, a.attname::text, a.atttypid, \
                    format_type(a.atttypid, a.atttypmod), t.typname::text, tn.nspname::text, a.atttypmod, \
                    t.typtype::text, CASE WHEN t.typcategory = 'A' THEN t.typelem END, \
                    CASE WHEN t.typtype = 'd' THEN \
                        (WITH RECURSIVE b(oid, typtype, base) AS ( \
                             SELECT t.oid, t.typtype, t.typbasetype \
                             UNION ALL SELECT p.oid, p.typtype, p.typbasetype FROM b JOIN pg_type p ON p.oid = b.base \
                             WHERE b.typtype = 'd') \
                         SELECT oid FROM b WHERE typtype <> 'd') END, \
                    a.attnotnull, a.attgenerated <> '', NULLIF(a.attidentity, '')::text, a.atthasdef \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             JOIN pg_namespace tn ON tn.oid = t.typnamespace \
             WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attrelid, a.attnum",
            &[&oids],
        )
        .map_err(|e| query_error(address, doing, &e))?;
    for r in columns {
        let Some(i) = index(r.get(0)) else { continue };
        let kind: String = r.get(8);
        let identity: Option<String> = r.get(13);
        tables[i].columns.push(Column {
            num: r.get(1),
            name: r.get(2),
            type_oid: r.get(3),
            type_sql: r.get(4),
            type_name: r.get(5),
            type_schema: r.get(6),
            typmod: r.get(7),
            type_kind: kind.chars().next().unwrap_or('b'),
            element_oid: r.get(9),
            domain_base_oid: r.get(10),
            not_null: r.get(11),
            generated: r.get(12),
            identity: identity.and_then(|s| s.chars().next()),
            has_default: r.get(14),
        });
    }

    let keys = client
        .query(
            "SELECT i.indrelid, a.attname::text FROM pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indisprimary AND i.indrelid = ANY($1) ORDER BY i.indrelid, k.ord",
            &[&oids],
        )
        .map_err(|e| query_error(address, doing, &e))?;
    for r in keys {
        if let Some(i) = index(r.get(0)) {
            tables[i].primary_key.push(r.get(1));
        }
    }
    Ok(tables)
}

/// Refuse, naming them, tables the current role may not read.
pub fn check_readable(tables: &[Table], address: &Address) -> Result<()> {
    let denied: Vec<String> = tables
        .iter()
        .filter(|t| !t.readable)
        .map(|t| format!("{}.{}", t.schema, t.name))
        .collect();
    if denied.is_empty() {
        return Ok(());
    }
    let (what, list) = match denied.len() {
        1 => ("table", denied[0].clone()),
        n if n <= 5 => ("tables", denied.join(", ")),
        n => (
            "tables",
            format!("{} and {} more", denied[..5].join(", "), n - 5),
        ),
    };
    Err(Error::new(
        ErrorKind::Auth,
        format!(
            "user {:?} may not read {what} {list} in {address}: grant it SELECT, or back up as a role that can read every table",
            address.user()
        ),
    ))
}

/// A sequence and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// `last_value`.
    pub last_value: i64,
    /// `is_called`: whether `last_value` has been handed out (the next
    /// `nextval` returns the one after it) or not (it returns `last_value`).
    pub is_called: bool,
    /// The column it belongs to (`OWNED BY`, identity and serial columns),
    /// as `(schema, table, column)`.
    pub owned_by: Option<(String, String, String)>,
}

impl Sequence {
    /// The statement that puts this state back (what pg_dump writes).
    pub fn setval_sql(&self) -> String {
        let name = format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name));
        format!(
            "SELECT pg_catalog.setval('{}', {}, {})",
            name.replace('\'', "''"),
            self.last_value,
            self.is_called
        )
    }
}

/// Read every user sequence's state. Sequences are not transactional: this
/// is their state now, not at the snapshot (as with pg_dump), so read them
/// last — a value read later is never behind a row read earlier.
/// With `owners`, only the sequences that belong to those tables
/// (`(schema, name)`).
pub fn read_sequences(
    client: &mut postgres::Client,
    address: &Address,
    owners: Option<&[(String, String)]>,
) -> Result<Vec<Sequence>> {
    let doing = "reading sequences";
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, \
                    dn.nspname::text, dc.relname::text, a.attname::text \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid \
                  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') \
             LEFT JOIN pg_class dc ON dc.oid = d.refobjid \
             LEFT JOIN pg_namespace dn ON dn.oid = dc.relnamespace \
             LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
             WHERE c.relkind = 'S' \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp_' \
               AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass \
                               AND e.objid = c.oid AND e.deptype = 'e') \
             ORDER BY 1, 2",
            &[],
        )
        .map_err(|e| query_error(address, doing, &e))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let schema: String = r.get(0);
        let name: String = r.get(1);
        let owned_by: Option<(String, String, String)> = match (r.get(2), r.get(3), r.get(4)) {
            (Some(s), Some(t), Some(c)) => Some((s, t, c)),
            _ => None,
        };
        if let Some(owners) = owners {
            let mine = owned_by
                .as_ref()
                .is_some_and(|(s, t, _)| owners.iter().any(|(os, ot)| os == s && ot == t));
            if !mine {
                continue;
            }
        }
        let sql = format!(
            "SELECT last_value, is_called FROM {}.{}",
            quote_ident(&schema),
            quote_ident(&name)
        );
        let state = client
            .query_one(&sql, &[])
            .map_err(|e| query_error(address, &format!("reading sequence {schema}.{name}"), &e))?;
        out.push(Sequence {
            schema,
            name,
            last_value: state.get(0),
            is_called: state.get(1),
            owned_by,
        });
    }
    Ok(out)
}
