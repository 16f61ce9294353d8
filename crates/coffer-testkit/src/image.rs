//! An engine-neutral image of a database, with an exact diff and a digest.
//!
//! An [`Image`] is what a database holds, in terms no engine owns: its
//! settings (name → [`Value`]), its schema objects as `(kind, name, table,
//! normalized definition)` ([`SchemaItem`]), and its tables, each with its
//! column names and rows of [`Value`]s that keep exactness: integers,
//! floats by bit pattern (so `-0.0 != 0.0` and every NaN payload counts),
//! text as bytes (never decoded: it may be invalid UTF-8), blobs, NULL, and
//! values of engine types that have no neutral form yet
//! ([`Value::Typed`]).
//!
//! Rows are not held in memory: an image reads them through its
//! [`RowSource`] when compared or digested, one row at a time, so images of
//! large databases compare in bounded memory. [`Image::loaded`] reads every
//! row once and keeps them, for an image that must outlive changes to its
//! database.
//!
//! An engine's reader builds images (the SQLite one is
//! [`crate::sqlite::read_image`]); [`diff`] reports the first difference of
//! two images as one precise message, and [`Image::digest`] hashes the same
//! content, so that two images have equal digests exactly when they diff
//! equal (barring collisions).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// One value, exactly as the database holds it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    /// NULL.
    Null,
    /// An integer.
    Integer(i64),
    /// A floating-point number, as its IEEE-754 bit pattern.
    Real(u64),
    /// Text, as the stored bytes (not necessarily valid UTF-8).
    Text(Vec<u8>),
    /// Bytes.
    Blob(Vec<u8>),
    /// A value of an engine type with no neutral form here (a PostgreSQL
    /// `interval`, an array): the type's name and the value's exact text in
    /// the engine's canonical output form.
    Typed {
        /// The engine's name for the type.
        type_name: String,
        /// The value in the engine's canonical text form.
        text: String,
    },
}

impl Value {
    /// A float, by its bit pattern.
    pub fn real(v: f64) -> Value {
        Value::Real(v.to_bits())
    }

    /// Text from a string.
    pub fn text(s: &str) -> Value {
        Value::Text(s.as_bytes().to_vec())
    }

    fn hash_into(&self, h: &mut Sha256) {
        match self {
            Value::Null => h.update([0u8]),
            Value::Integer(i) => {
                h.update([1u8]);
                h.update(i.to_be_bytes());
            }
            Value::Real(bits) => {
                h.update([2u8]);
                h.update(bits.to_be_bytes());
            }
            Value::Text(t) => {
                h.update([3u8]);
                hash_bytes(h, t);
            }
            Value::Blob(b) => {
                h.update([4u8]);
                hash_bytes(h, b);
            }
            Value::Typed { type_name, text } => {
                h.update([5u8]);
                hash_str(h, type_name);
                hash_str(h, text);
            }
        }
    }
}

fn hash_bytes(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn hash_str(h: &mut Sha256, s: &str) {
    hash_bytes(h, s.as_bytes());
}

/// Shows the class and a readable, bounded rendering of the value.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        match self {
            Value::Null => write!(f, "NULL"),
            Value::Integer(i) => write!(f, "INTEGER {i}"),
            Value::Real(bits) => {
                write!(f, "REAL {:?} (bits {bits:#018x})", f64::from_bits(*bits))
            }
            Value::Text(t) => {
                let valid = std::str::from_utf8(t).is_ok();
                let shown = &t[..t.len().min(SHOWN)];
                write!(
                    f,
                    "TEXT of {} bytes {:?}",
                    t.len(),
                    String::from_utf8_lossy(shown)
                )?;
                if t.len() > SHOWN {
                    write!(f, "…")?;
                }
                if !valid || t.contains(&0) {
                    write!(f, " (hex {})", hex::encode(shown))?;
                }
                Ok(())
            }
            Value::Blob(b) => {
                write!(
                    f,
                    "BLOB of {} bytes x'{}'",
                    b.len(),
                    hex::encode(&b[..b.len().min(SHOWN)])
                )?;
                if b.len() > SHOWN {
                    write!(f, "…")?;
                }
                Ok(())
            }
            Value::Typed { type_name, text } => {
                let shown: String = text.chars().take(SHOWN).collect();
                write!(f, "{type_name} {shown:?}")?;
                if shown.len() < text.len() {
                    write!(f, "…")?;
                }
                Ok(())
            }
        }
    }
}

/// One schema object, as compared.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct SchemaItem {
    /// The engine's word for its kind: `table`, `index`, `view`, ...
    pub kind: String,
    /// Its name.
    pub name: String,
    /// The table it belongs to (its own name for a table).
    pub table: String,
    /// Its definition, normalized by the reader; `None` when the engine
    /// records none or when it is compared by name only.
    pub definition: Option<Vec<u8>>,
    /// Whether the definition was deliberately left out (the engine makes
    /// it, e.g. SQLite's automatic indexes and FTS shadow tables).
    pub by_name_only: bool,
    /// Whether it is part of its table (the table itself, its indexes and
    /// constraints), as opposed to an object that reaches beyond it (a
    /// view, a trigger): [`diff_tables`] compares only these.
    pub part_of_table: bool,
}

impl fmt::Display for SchemaItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} on {:?}", self.kind, self.name, self.table)?;
        match (&self.definition, self.by_name_only) {
            (_, true) => write!(f, " (compared by name only)"),
            (None, false) => write!(f, " with no SQL"),
            (Some(sql), false) => write!(f, " with SQL {:?}", String::from_utf8_lossy(sql)),
        }
    }
}

/// One table of an image: how its rows are identified and read.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TableImage {
    /// Its name.
    pub name: String,
    /// The engine's word for its kind (`table`, `virtual`).
    pub kind: String,
    /// How its rows are keyed, as the engine says it (`rowid`, `without
    /// rowid`, `primary key`, `no key`): compared with the kind.
    pub layout: String,
    /// The column names of its rows, in order: hidden key columns (a
    /// SQLite rowid) included.
    pub columns: Vec<String>,
    /// Positions in `columns` that identify a row (for messages).
    pub key: Vec<usize>,
    /// The position of a key column the engine keeps beside the table's
    /// own columns (a SQLite rowid that no column aliases), if there is one:
    /// rows appended by an import may get new values there.
    pub hidden_key: Option<usize>,
    /// How the reader reads the rows (a query), opaque to the image; not
    /// compared.
    pub read: String,
}

/// Rows of one table, in the canonical order of their keys.
pub type RowIter = Box<dyn Iterator<Item = Result<Vec<Value>, String>> + Send>;

/// Reads the rows of an image's tables on demand.
pub trait RowSource: Send + Sync {
    /// The rows of `table` (one of the image's tables), in canonical order.
    fn rows(&self, table: &TableImage) -> Result<RowIter, String>;
}

/// Rows already in memory, by (internal, table name).
struct MemoryRows(HashMap<(bool, String), Arc<Vec<Vec<Value>>>>);

impl RowSource for MemoryRows {
    fn rows(&self, table: &TableImage) -> Result<RowIter, String> {
        // Internal and user tables never share a name in one image.
        let rows = self
            .0
            .get(&(false, table.name.clone()))
            .or_else(|| self.0.get(&(true, table.name.clone())))
            .cloned()
            .ok_or_else(|| format!("no rows kept for table {:?}", table.name))?;
        let n = rows.len();
        Ok(Box::new((0..n).map(move |i| Ok(rows[i].clone()))))
    }
}

/// A database as an engine-neutral image (see the [module docs](self)).
#[derive(Clone)]
pub struct Image {
    /// How messages name the database (a path, an address without
    /// credentials).
    pub name: String,
    /// Settings that belong to the database (SQLite's header pragmas, as
    /// `PRAGMA user_version`), in the order compared.
    pub settings: Vec<(String, Value)>,
    /// Every schema object.
    pub objects: BTreeSet<SchemaItem>,
    /// The user's tables, by name.
    pub tables: BTreeMap<String, TableImage>,
    /// The engine's own tables whose rows belong to the database (SQLite's
    /// `sqlite_sequence`, `sqlite_stat1`), by name.
    pub internal: BTreeMap<String, TableImage>,
    rows: Arc<dyn RowSource>,
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("objects", &self.objects.len())
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .field("internal", &self.internal.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Image {
    /// An image named `name` with nothing in it, whose rows `rows` reads.
    pub fn new(name: impl Into<String>, rows: Arc<dyn RowSource>) -> Image {
        Image {
            name: name.into(),
            settings: Vec::new(),
            objects: BTreeSet::new(),
            tables: BTreeMap::new(),
            internal: BTreeMap::new(),
            rows,
        }
    }

    /// The rows of `table`, read now.
    pub fn rows(&self, table: &TableImage) -> Result<RowIter, String> {
        self.rows.rows(table)
    }

    /// Every row of the user table `name`, in memory.
    pub fn table_rows(&self, name: &str) -> Result<Vec<Vec<Value>>, String> {
        let t = self
            .tables
            .get(name)
            .ok_or_else(|| format!("{}: no table {name:?}", self.name))?;
        self.rows(t)?.collect()
    }

    /// The same image with every row read now and kept in memory, so that
    /// it shows the database as it is at this call, whatever changes later.
    pub fn loaded(self) -> Result<Image, String> {
        let mut kept = HashMap::new();
        for (internal, map) in [(false, &self.tables), (true, &self.internal)] {
            for t in map.values() {
                let rows: Vec<Vec<Value>> = self.rows(t)?.collect::<Result<_, _>>()?;
                kept.insert((internal, t.name.clone()), Arc::new(rows));
            }
        }
        Ok(Image {
            rows: Arc::new(MemoryRows(kept)),
            ..self
        })
    }

    /// The image with only the user tables `names` (and their schema
    /// objects that are [part of the table](SchemaItem::part_of_table)):
    /// no settings, no internal tables, nothing else.
    pub fn only_tables(&self, names: &[&str]) -> Image {
        Image {
            name: self.name.clone(),
            settings: Vec::new(),
            objects: self
                .objects
                .iter()
                .filter(|o| o.part_of_table && names.contains(&o.table.as_str()))
                .cloned()
                .collect(),
            tables: self
                .tables
                .iter()
                .filter(|(n, _)| names.contains(&n.as_str()))
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect(),
            internal: BTreeMap::new(),
            rows: self.rows.clone(),
        }
    }

    /// A stable SHA-256 (hex) over everything [`diff`] compares.
    pub fn digest(&self) -> Result<String, String> {
        let mut h = Sha256::new();
        h.update(b"coffer-testkit database digest v2\0");
        h.update((self.settings.len() as u64).to_be_bytes());
        for (name, v) in &self.settings {
            hash_str(&mut h, name);
            v.hash_into(&mut h);
        }
        h.update((self.objects.len() as u64).to_be_bytes());
        for o in &self.objects {
            hash_str(&mut h, &o.kind);
            hash_str(&mut h, &o.name);
            hash_str(&mut h, &o.table);
            match &o.definition {
                None => h.update([o.by_name_only as u8]),
                Some(sql) => {
                    h.update([2u8]);
                    hash_bytes(&mut h, sql);
                }
            }
        }
        for (label, tables) in [("tables", &self.tables), ("internal", &self.internal)] {
            hash_str(&mut h, label);
            h.update((tables.len() as u64).to_be_bytes());
            for t in tables.values() {
                hash_str(&mut h, &t.name);
                hash_str(&mut h, &t.kind);
                hash_str(&mut h, &t.layout);
                h.update((t.columns.len() as u64).to_be_bytes());
                for n in &t.columns {
                    hash_str(&mut h, n);
                }
                let mut count = 0u64;
                for row in self.rows(t)? {
                    let row = row.map_err(|e| format!("table {:?}: {e}", t.name))?;
                    h.update([0xAA]);
                    for v in &row {
                        v.hash_into(&mut h);
                    }
                    count += 1;
                }
                h.update([0x55]);
                h.update(count.to_be_bytes());
            }
        }
        Ok(hex::encode(h.finalize()))
    }
}

/// Quote a name as SQL does, for messages.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn first_only<T: Ord + Clone>(x: &BTreeSet<T>, y: &BTreeSet<T>) -> Option<T> {
    x.difference(y).next().cloned()
}

fn describe_key(row: &[Value], key: &[usize], names: &[String]) -> String {
    key.iter()
        .filter_map(|&i| Some(format!("{} = {:?}", names.get(i)?, row.get(i)?)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compare two images; `Err` carries one message describing the first
/// difference found: settings, then schema objects, then user tables in
/// name order, then internal tables, each row value by value.
pub fn diff(a: &Image, b: &Image) -> Result<(), String> {
    let prefix = format!("{} (a) and {} (b) differ", a.name, b.name);
    let names_a: Vec<&String> = a.settings.iter().map(|(n, _)| n).collect();
    let names_b: Vec<&String> = b.settings.iter().map(|(n, _)| n).collect();
    if names_a != names_b {
        return Err(format!(
            "{prefix}: settings differ: a has {names_a:?}, b has {names_b:?}"
        ));
    }
    for ((name, va), (_, vb)) in a.settings.iter().zip(&b.settings) {
        if va != vb {
            return Err(format!("{prefix}: {name}: a has {va:?} but b has {vb:?}"));
        }
    }
    diff_objects(a, b, &prefix)?;
    for (label, ma, mb) in [
        ("table", &a.tables, &b.tables),
        ("internal table", &a.internal, &b.internal),
    ] {
        let names_a: BTreeSet<_> = ma.keys().cloned().collect();
        let names_b: BTreeSet<_> = mb.keys().cloned().collect();
        if let Some(n) = first_only(&names_a, &names_b) {
            return Err(format!(
                "{prefix}: {label} {} is in a but not in b",
                quoted(&n)
            ));
        }
        if let Some(n) = first_only(&names_b, &names_a) {
            return Err(format!(
                "{prefix}: {label} {} is in b but not in a",
                quoted(&n)
            ));
        }
        for (name, ta) in ma {
            let what = format!("{prefix}: {label} {}", quoted(name));
            diff_table(a, b, ta, &mb[name], &what)?;
        }
    }
    Ok(())
}

fn diff_objects(a: &Image, b: &Image, prefix: &str) -> Result<(), String> {
    if let Some(row) = first_only(&a.objects, &b.objects) {
        let hint = b
            .objects
            .iter()
            .find(|r| r.name == row.name)
            .map(|r| format!("; b has {r}"))
            .unwrap_or_default();
        return Err(format!("{prefix}: schema: a has {row} which b lacks{hint}"));
    }
    if let Some(row) = first_only(&b.objects, &a.objects) {
        return Err(format!("{prefix}: schema: b has {row} which a lacks"));
    }
    Ok(())
}

/// Compare only the user tables `names` of two images: each table's own
/// schema objects ([`SchemaItem::part_of_table`]) and its rows, as [`diff`]
/// does. Settings, other tables and objects beyond the tables (views,
/// triggers) are not compared.
pub fn diff_tables(a: &Image, b: &Image, names: &[&str]) -> Result<(), String> {
    let prefix = format!("{} (a) and {} (b) differ", a.name, b.name);
    for name in names {
        let (oa, ob) = (a.only_tables(&[name]), b.only_tables(&[name]));
        diff_objects(&oa, &ob, &prefix)?;
        let what = format!("{prefix}: table {}", quoted(name));
        let (Some(ta), Some(tb)) = (a.tables.get(*name), b.tables.get(*name)) else {
            return Err(format!("{what} is missing from one of them"));
        };
        diff_table(a, b, ta, tb, &what)?;
    }
    Ok(())
}

/// Compare one table's shape and rows in lockstep.
fn diff_table(
    a: &Image,
    b: &Image,
    ta: &TableImage,
    tb: &TableImage,
    what: &str,
) -> Result<(), String> {
    if (&ta.kind, &ta.layout) != (&tb.kind, &tb.layout) {
        return Err(format!(
            "{what}: shape differs: a is {} ({}), b is {} ({})",
            ta.kind, ta.layout, tb.kind, tb.layout
        ));
    }
    if ta.columns != tb.columns {
        return Err(format!(
            "{what}: columns differ: a has {:?}, b has {:?}",
            ta.columns, tb.columns
        ));
    }
    let ctx = |side: &str, e: String| format!("{what}: could not read it from {side}: {e}");
    let mut ra = a.rows(ta).map_err(|e| ctx("a", e))?;
    let mut rb = b.rows(tb).map_err(|e| ctx("b", e))?;
    let names = &ta.columns;
    let mut index = 0u64;
    loop {
        let row_a = ra.next().transpose().map_err(|e| ctx("a", e))?;
        let row_b = rb.next().transpose().map_err(|e| ctx("b", e))?;
        match (row_a, row_b) {
            (None, None) => return Ok(()),
            (Some(r), None) => {
                return Err(format!(
                    "{what}: a has more rows than b ({index} in common); the first extra row of a has {}",
                    describe_key(&r, &ta.key, names)
                ));
            }
            (None, Some(r)) => {
                return Err(format!(
                    "{what}: b has more rows than a ({index} in common); the first extra row of b has {}",
                    describe_key(&r, &ta.key, names)
                ));
            }
            (Some(x), Some(y)) => {
                if let Some(i) =
                    (0..names.len().max(x.len()).max(y.len())).find(|&i| x.get(i) != y.get(i))
                {
                    let key_a = describe_key(&x, &ta.key, names);
                    let key_b = describe_key(&y, &ta.key, names);
                    let at = if key_a == key_b {
                        format!("row {index} ({key_a})")
                    } else {
                        format!("row {index} (a: {key_a}; b: {key_b})")
                    };
                    let column = names.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
                    return Err(format!(
                        "{what}: {at}, column {column:?}: a has {:?} but b has {:?}",
                        x.get(i).unwrap_or(&Value::Null),
                        y.get(i).unwrap_or(&Value::Null)
                    ));
                }
            }
        }
        index += 1;
    }
}

/// Panic with the message of [`diff`] at the first difference.
#[track_caller]
pub fn assert_same_image(a: &Image, b: &Image) {
    if let Err(msg) = diff(a, b) {
        panic!("{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, rows: Vec<Vec<Value>>) -> Image {
        let table = TableImage {
            name: "t".into(),
            kind: "table".into(),
            layout: "no key".into(),
            columns: vec!["k".into(), "v".into()],
            key: vec![0],
            hidden_key: None,
            read: String::new(),
        };
        let mut kept = HashMap::new();
        kept.insert((false, "t".to_string()), Arc::new(rows));
        let mut i = Image::new(name, Arc::new(MemoryRows(kept)));
        i.tables.insert("t".into(), table);
        i
    }

    #[test]
    fn typed_values_and_float_bits_are_compared_exactly() {
        let typed = |t: &str| Value::Typed {
            type_name: "interval".into(),
            text: t.into(),
        };
        let a = image("a", vec![vec![Value::Integer(1), typed("1 day")]]);
        let b = image("b", vec![vec![Value::Integer(1), typed("24:00:00")]]);
        let msg = diff(&a, &b).unwrap_err();
        assert!(
            msg.contains("row 0 (k = INTEGER 1), column \"v\": a has interval \"1 day\""),
            "{msg}"
        );
        assert_ne!(a.digest().unwrap(), b.digest().unwrap());
        let a = image("a", vec![vec![Value::Integer(1), Value::real(f64::NAN)]]);
        let b = image("b", vec![vec![Value::Integer(1), Value::real(-f64::NAN)]]);
        assert!(diff(&a, &b).is_err());
        let c = image("c", vec![vec![Value::Integer(1), Value::real(f64::NAN)]]);
        diff(&a, &c).unwrap();
        assert_eq!(a.digest().unwrap(), c.digest().unwrap());
    }

    #[test]
    fn a_loaded_image_keeps_its_rows() {
        let a = image("a", vec![vec![Value::Integer(1), Value::text("x")]]);
        let kept = a.clone().loaded().unwrap();
        diff(&a, &kept).unwrap();
        assert_eq!(kept.table_rows("t").unwrap().len(), 1);
    }
}
