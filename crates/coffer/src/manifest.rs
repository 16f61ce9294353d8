//! The manifest: pure data describing one archive.
//!
//! A manifest is loaded from and saved to bytes; it never touches storage.
//! It is written last, so an archive without `manifest.json` does not exist.
//! [`Manifest::from_bytes`] validates strictly: an unknown format version, a
//! path outside the archive or a malformed checksum is rejected.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The name of the manifest object at the root of every archive.
pub const MANIFEST: &str = "manifest.json";
/// The name of the checksum list, readable by `sha256sum -c`.
pub const SHA256SUMS: &str = "SHA256SUMS";
/// The archive format version this build writes. Version 3 names the
/// engine of every value in the misfit side file (see [`crate::datafile`])
/// and has the engine-neutral types of [`LogicalType`]; version 2 put
/// every value a column's type can hold exactly in the column, with only
/// its storage class in the misfit side file, and wrote CSV with `""` for
/// empty text and `\x` hex for bytes.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest archive format version this build reads: version 1 and 2
/// archives read, restore and import exactly as before.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// The value of the `format` field, to recognise a coffer manifest.
pub const FORMAT_NAME: &str = "coffer-archive";

/// What an archive was made by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveKind {
    /// An exact full snapshot of a whole database (`coffer backup`).
    Backup,
    /// Portable snapshot of chosen tables (`coffer export`).
    Export,
    /// A collection's full backup.
    Full,
    /// A collection's incremental backup.
    Incremental,
}

/// The data file format of an archive's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// Apache Parquet (the default).
    #[default]
    Parquet,
    /// RFC 4180 CSV with a header row.
    Csv,
}

/// The engine-neutral type of a column's values in the data files.
///
/// In `manifest.json` a type is a string (see docs/FORMAT.md for the Arrow,
/// Parquet and CSV form of each): `bool`, `int16`, `int32`, `int64`,
/// `float32`, `float64`, `decimal(P,S)`, `decimal`, `date`, `time`,
/// `timestamp`, `timestamptz`, `interval`, `uuid`, `json`, `utf8`,
/// `binary`, and `list<T>` of any of these (lists nest). Backups of SQLite
/// use only `int64`, `float64`, `utf8` and `binary`; its exports also use
/// `date`, `timestamp` and `decimal(P,S)` where the source declares them and
/// every value converts losslessly (the SQLite engine decides that).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LogicalType {
    /// A boolean (Parquet BOOLEAN).
    Bool,
    /// 16-bit signed integer (Parquet INT32, INT(16, signed)).
    Int16,
    /// 32-bit signed integer (Parquet INT32).
    Int32,
    /// 64-bit signed integer (Parquet INT64).
    Int64,
    /// IEEE 754 single (Parquet FLOAT).
    Float32,
    /// IEEE 754 double (Parquet DOUBLE).
    Float64,
    /// UTF-8 text (Parquet BYTE_ARRAY, STRING).
    Utf8,
    /// Bytes (Parquet BYTE_ARRAY).
    Binary,
    /// A calendar date (Parquet DATE, days since 1970-01-01).
    Date,
    /// A time of day in microseconds since midnight, without time zone
    /// (Parquet TIME(MICROS, isAdjustedToUTC=false)); 24:00:00 is allowed.
    Time,
    /// A date and time of day without time zone (Parquet TIMESTAMP, micros,
    /// not adjusted to UTC).
    Timestamp,
    /// An instant: microseconds since 1970-01-01 00:00:00 UTC (Parquet
    /// TIMESTAMP(MICROS, isAdjustedToUTC=true), Arrow time zone `UTC`).
    TimestampTz,
    /// A fixed-point decimal (Parquet DECIMAL; Arrow Decimal128 up to 38
    /// digits, Decimal256 up to 76).
    Decimal {
        /// Total significant digits, 1 to [`MAX_DECIMAL_PRECISION`].
        precision: u8,
        /// Digits after the point, 0 to `precision`.
        scale: i8,
    },
    /// A decimal number of any precision and scale (PostgreSQL's
    /// unconstrained `numeric`, or one beyond 76 digits or with a scale
    /// outside 0 to its precision): exact decimal text in a Parquet STRING
    /// column, `-?D+(.D+)?` with the digits as the source had them.
    DecimalText,
    /// A calendar interval of months, days and microseconds, each signed
    /// and kept apart (PostgreSQL `interval`): a Parquet group of `months`
    /// INT32, `days` INT32, `micros` INT64 (Parquet's own INTERVAL type has
    /// only milliseconds, and parquet-rs cannot write Arrow's
    /// month-day-nano intervals).
    Interval,
    /// A UUID (Parquet FIXED_LEN_BYTE_ARRAY(16), UUID; Arrow extension
    /// `arrow.uuid`).
    Uuid,
    /// JSON text (Parquet BYTE_ARRAY, JSON; Arrow extension `arrow.json`).
    Json,
    /// A list of values of one type, any of them NULL (Parquet LIST).
    List(Box<LogicalType>),
}

/// The most digits a `decimal(P,S)` column has (Arrow Decimal256).
pub const MAX_DECIMAL_PRECISION: u8 = 76;

impl std::fmt::Display for LogicalType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogicalType::Bool => f.write_str("bool"),
            LogicalType::Int16 => f.write_str("int16"),
            LogicalType::Int32 => f.write_str("int32"),
            LogicalType::Int64 => f.write_str("int64"),
            LogicalType::Float32 => f.write_str("float32"),
            LogicalType::Float64 => f.write_str("float64"),
            LogicalType::Utf8 => f.write_str("utf8"),
            LogicalType::Binary => f.write_str("binary"),
            LogicalType::Date => f.write_str("date"),
            LogicalType::Time => f.write_str("time"),
            LogicalType::Timestamp => f.write_str("timestamp"),
            LogicalType::TimestampTz => f.write_str("timestamptz"),
            LogicalType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            LogicalType::DecimalText => f.write_str("decimal"),
            LogicalType::Interval => f.write_str("interval"),
            LogicalType::Uuid => f.write_str("uuid"),
            LogicalType::Json => f.write_str("json"),
            LogicalType::List(t) => write!(f, "list<{t}>"),
        }
    }
}

impl std::str::FromStr for LogicalType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("unknown column type '{s}'");
        Ok(match s {
            "bool" => LogicalType::Bool,
            "int16" => LogicalType::Int16,
            "int32" => LogicalType::Int32,
            "int64" => LogicalType::Int64,
            "float32" => LogicalType::Float32,
            "float64" => LogicalType::Float64,
            "utf8" => LogicalType::Utf8,
            "binary" => LogicalType::Binary,
            "date" => LogicalType::Date,
            "time" => LogicalType::Time,
            "timestamp" => LogicalType::Timestamp,
            "timestamptz" => LogicalType::TimestampTz,
            "decimal" => LogicalType::DecimalText,
            "interval" => LogicalType::Interval,
            "uuid" => LogicalType::Uuid,
            "json" => LogicalType::Json,
            _ => {
                if let Some(inner) = s.strip_prefix("list<").and_then(|r| r.strip_suffix('>')) {
                    return Ok(LogicalType::List(Box::new(
                        inner.parse().map_err(|_| bad())?,
                    )));
                }
                let inner = s
                    .strip_prefix("decimal(")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(bad)?;
                let (p, sc) = inner.split_once(',').ok_or_else(bad)?;
                let precision: u8 = p.trim().parse().map_err(|_| bad())?;
                let scale: i8 = sc.trim().parse().map_err(|_| bad())?;
                if !(1..=MAX_DECIMAL_PRECISION).contains(&precision)
                    || scale < 0
                    || scale as u8 > precision
                {
                    return Err(bad());
                }
                LogicalType::Decimal { precision, scale }
            }
        })
    }
}

impl TryFrom<String> for LogicalType {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<LogicalType> for String {
    fn from(t: LogicalType) -> String {
        t.to_string()
    }
}

/// Where the tool that wrote an archive came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    /// Always `coffer`.
    pub name: String,
    /// The tool's version.
    pub version: String,
}

/// The database an archive was taken from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Engine name, e.g. `sqlite`.
    pub engine: String,
    /// Engine version, e.g. `3.50.2`.
    pub engine_version: String,
    /// The database's name (a file name for SQLite), never credentials.
    pub database: String,
    /// The engine's own position of the backup point, where it has one
    /// (PostgreSQL's WAL location of the snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
}

/// One schema object with its native DDL, in creation order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaObject {
    /// `table`, `index`, `view`, `trigger` (engine-native kinds).
    #[serde(rename = "type")]
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// The table it belongs to (itself for tables).
    pub table: String,
    /// The native DDL that re-creates it.
    pub sql: String,
}

/// One column of a table's neutral schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Type of the values in the data files.
    #[serde(rename = "type")]
    pub logical_type: LogicalType,
    /// The type as declared in the source (may be empty).
    pub declared_type: String,
    /// Whether the source allows NULL.
    pub nullable: bool,
    /// For `date` and `timestamp` columns whose source stores text (SQLite):
    /// the layout of that text, e.g. `%Y-%m-%d %H:%M:%S`, so an import
    /// writes back the very same text. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_format: Option<String>,
}

/// One stored file with its size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Path relative to the archive root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the contents.
    pub sha256: String,
}

/// One data file of a table, with the side file of its misfit values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// The data file.
    #[serde(flatten)]
    pub file: FileRef,
    /// Rows in this part.
    pub rows: u64,
    /// Values that did not fit their column's logical type, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfits: Option<FileRef>,
}

/// What a table entry of a manifest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    /// A table of the database (the default).
    #[default]
    Table,
    /// A virtual table whose rows the engine reads through its module.
    Virtual,
    /// The engine's own bookkeeping (SQLite's `sqlite_sequence` and
    /// `sqlite_stat*`): restored with the database, never exported alone
    /// or imported.
    Internal,
    /// In a collection's incremental backup: the keys of the rows deleted
    /// from the table of that name since the previous backup.
    Deleted,
}

impl TableKind {
    /// The kind as the manifest spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Table => "table",
            TableKind::Virtual => "virtual",
            TableKind::Internal => "internal",
            TableKind::Deleted => "deleted",
        }
    }
}

impl std::fmt::Display for TableKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One table: neutral schema, row count and data files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Table name in the source.
    pub name: String,
    /// What the entry is.
    #[serde(default)]
    pub kind: TableKind,
    /// Columns as stored in the data files, in order. May include a hidden
    /// key column (see `hidden_key`).
    pub columns: Vec<Column>,
    /// Primary key column names, in key order (empty when none).
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// The data column that carries a row identity the engine keeps but
    /// the table does not declare (SQLite's rowid), when there is one. The
    /// manifest names it `rowid_column`, after the one engine that has such
    /// a key.
    #[serde(
        default,
        rename = "rowid_column",
        skip_serializing_if = "Option::is_none"
    )]
    pub hidden_key: Option<String>,
    /// Rows in the table at the backup point.
    pub rows: u64,
    /// Data files in row order.
    pub parts: Vec<Part>,
}

/// The whole manifest of an archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// Always [`FORMAT_VERSION`] for archives this build writes.
    pub format_version: u32,
    /// What wrote it.
    pub tool: Tool,
    /// What the archive is.
    pub kind: ArchiveKind,
    /// The data file format.
    #[serde(default)]
    pub data_format: DataFormat,
    /// When the archive was committed (RFC 3339, UTC).
    pub created_at: String,
    /// The consistent moment the data represents (RFC 3339, UTC).
    pub backup_point: String,
    /// The archive this one builds on (incrementals only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Where the data came from.
    pub source: Source,
    /// Engine-specific settings (page size, user version, ...).
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Every schema object with native DDL, in creation order.
    pub objects: Vec<SchemaObject>,
    /// Every table with data in the archive.
    pub tables: Vec<Table>,
    /// SHA-256 of this manifest serialized without this field, so that an
    /// edited manifest is detected. Set by [`Manifest::seal`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

impl Manifest {
    /// Compute and set [`Manifest::checksum`]; call just before saving.
    pub fn seal(&mut self) {
        self.checksum = None;
        self.checksum = Some(self.own_checksum());
    }

    fn own_checksum(&self) -> String {
        use sha2::Digest;
        let unsealed = Manifest {
            checksum: None,
            ..self.clone()
        };
        hex::encode(sha2::Sha256::digest(unsealed.to_bytes()))
    }

    /// Serialize to pretty JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        json_bytes(self)
    }

    /// Parse and validate a manifest read from `origin` (named in errors).
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| {
            Error::corrupt(format!(
                "{origin} is not a valid coffer manifest ({e}); the archive is damaged"
            ))
        })?;
        match &m.checksum {
            Some(sum) if *sum == m.own_checksum() => {}
            _ => {
                return Err(Error::corrupt(format!(
                    "{origin} has been modified or damaged: its checksum does not match its contents; restore from another copy of the archive"
                )));
            }
        }
        m.validate(origin)?;
        Ok(m)
    }

    /// Check the invariants a reader relies on.
    pub fn validate(&self, origin: &str) -> Result<()> {
        if self.format != FORMAT_NAME {
            return Err(Error::corrupt(format!(
                "{origin} is not a coffer manifest (format is '{}')",
                self.format
            )));
        }
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&self.format_version) {
            return Err(Error::invalid(format!(
                "{origin} has archive format version {}, but this coffer reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}; use a newer coffer release",
                self.format_version
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for table in &self.tables {
            let mut rows = 0u64;
            for part in &table.parts {
                rows += part.rows;
                for file in std::iter::once(&part.file).chain(part.misfits.as_ref()) {
                    check_relative_path(&file.path, origin)?;
                    if file.sha256.len() != 64
                        || !file.sha256.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        return Err(Error::corrupt(format!(
                            "{origin} lists {} with a malformed SHA-256; the manifest is damaged",
                            file.path
                        )));
                    }
                    if !seen.insert(file.path.as_str()) {
                        return Err(Error::corrupt(format!(
                            "{origin} lists {} twice; the manifest is damaged",
                            file.path
                        )));
                    }
                }
            }
            if rows != table.rows {
                return Err(Error::corrupt(format!(
                    "{origin} says table '{}' has {} rows but its parts hold {rows}; the manifest is damaged",
                    table.name, table.rows
                )));
            }
        }
        Ok(())
    }

    /// Every file the archive holds (data and misfit files), in table order.
    pub fn files(&self) -> impl Iterator<Item = &FileRef> {
        self.tables.iter().flat_map(|t| {
            t.parts
                .iter()
                .flat_map(|p| std::iter::once(&p.file).chain(p.misfits.as_ref()))
        })
    }

    /// The table named `name`, if the archive holds it.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Total bytes of all data files.
    pub fn total_bytes(&self) -> u64 {
        self.files().map(|f| f.size).sum()
    }

    /// Total rows of all tables.
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    /// The `SHA256SUMS` text for this manifest's files.
    pub fn sha256sums(&self) -> String {
        sums_text(self.files())
    }
}

/// The `SHA256SUMS` text of `files` (what `sha256sum -c` reads).
pub fn sums_text<'a>(files: impl Iterator<Item = &'a FileRef>) -> String {
    let mut out = String::new();
    for f in files {
        out.push_str(&f.sha256);
        out.push_str("  ");
        out.push_str(&f.path);
        out.push('\n');
    }
    out
}

/// Pretty JSON with a final newline: how coffer writes `manifest.json`,
/// `collection.json` and the like.
pub fn json_bytes(value: &impl Serialize) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).expect("coffer's own types serialize");
    out.push(b'\n');
    out
}

/// The `format` field of a JSON document, if it has one: what tells a plain
/// manifest (or collection description) from an encrypted one.
pub fn format_of(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Peek {
        format: Option<String>,
    }
    serde_json::from_slice::<Peek>(bytes).ok()?.format
}

/// Reject a path that could escape the archive: absolute, `..`, `.`, empty
/// segments, backslashes or control characters.
pub fn check_relative_path(path: &str, origin: &str) -> Result<()> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.chars().any(|c| c.is_control())
        || path
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad {
        return Err(Error::corrupt(format!(
            "{origin} names the path '{}' outside its archive; refusing to use it",
            path.escape_debug()
        )));
    }
    Ok(())
}

/// The longest path segment [`path_segment`] writes, in bytes: under the
/// 255-byte limit of common filesystems, with room for a store's own
/// suffixes (the local store's `#N` of an upload in progress).
pub const MAX_SEGMENT_LEN: usize = 200;

/// Encode a table name as one safe path segment that readers take as a
/// plain directory name.
///
/// ASCII letters, digits, `-`, and `_` and `.` except in first place stay;
/// every other byte becomes `@XX` (`@` needs no escaping in object stores,
/// filesystems or URLs, unlike `%`; and, unlike `=`, Hive-style readers —
/// DuckDB, Spark, pyarrow — do not take it for a partition `key=value`; a
/// leading `_` or `.` would make them skip the directory as hidden). The
/// empty name is `@`. A segment longer than [`MAX_SEGMENT_LEN`] is cut at
/// a whole escape and ends in `@@` and 16 hex digits of the name's SHA-256,
/// so it stays within filesystem limits; `@@` occurs in no other segment.
/// The encoding is injective (up to SHA-256 collisions of long names), so
/// distinct names never share a directory. Readers never recompute it:
/// every path is read from the manifest, so archives written with the
/// earlier `=XX` encoding read the same.
pub fn path_segment(name: &str) -> String {
    if name.is_empty() {
        return "@".to_string();
    }
    let mut out = String::with_capacity(name.len());
    // Where each byte's encoding starts, to cut a long one at a boundary.
    let mut boundaries = Vec::new();
    for (i, b) in name.bytes().enumerate() {
        boundaries.push(out.len());
        let plain = b.is_ascii_alphanumeric() || b == b'-' || (i > 0 && (b == b'_' || b == b'.'));
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("@{b:02X}"));
        }
    }
    if out.len() <= MAX_SEGMENT_LEN {
        return out;
    }
    use sha2::Digest;
    let digest = hex::encode(&sha2::Sha256::digest(name.as_bytes())[..8]);
    let keep = MAX_SEGMENT_LEN - 2 - digest.len();
    let cut = boundaries
        .into_iter()
        .take_while(|&b| b <= keep)
        .last()
        .unwrap_or(0);
    format!("{}@@{digest}", &out[..cut])
}

/// Encode a collection name as its repository directory (the format's
/// first encoding, kept so that existing repositories are found): ASCII
/// letters, digits, `_` and `-` stay, every other byte becomes `=XX`.
/// Collection names are short and checked, so this never nears a limit.
pub fn collection_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("=00");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_one_manifest_string() {
        use LogicalType::*;
        let all = [
            (Bool, "bool"),
            (Int16, "int16"),
            (Int32, "int32"),
            (Int64, "int64"),
            (Float32, "float32"),
            (Float64, "float64"),
            (Utf8, "utf8"),
            (Binary, "binary"),
            (Date, "date"),
            (Time, "time"),
            (Timestamp, "timestamp"),
            (TimestampTz, "timestamptz"),
            (
                Decimal {
                    precision: 10,
                    scale: 2,
                },
                "decimal(10,2)",
            ),
            (
                Decimal {
                    precision: 76,
                    scale: 76,
                },
                "decimal(76,76)",
            ),
            (DecimalText, "decimal"),
            (Interval, "interval"),
            (Uuid, "uuid"),
            (Json, "json"),
            (List(Box::new(Int32)), "list<int32>"),
            (
                List(Box::new(List(Box::new(Decimal {
                    precision: 5,
                    scale: 0,
                })))),
                "list<list<decimal(5,0)>>",
            ),
        ];
        for (t, text) in all {
            assert_eq!(t.to_string(), text);
            assert_eq!(text.parse::<LogicalType>().unwrap(), t);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<LogicalType>(&json).unwrap(), t);
        }
        for bad in [
            "decimal(77,0)",
            "decimal(0,0)",
            "decimal(5,6)",
            "decimal(5,-1)",
            "list<>",
            "list<int8>",
            "list<int32",
            "text",
            "Int64",
        ] {
            let err = bad.parse::<LogicalType>().unwrap_err();
            assert!(err.contains("unknown column type"), "{bad}: {err}");
        }
    }

    #[test]
    fn segments_are_safe_and_distinct() {
        assert_eq!(path_segment("users"), "users");
        assert_eq!(path_segment("main.users"), "main.users");
        assert_eq!(path_segment("snake_case"), "snake_case");
        assert_eq!(path_segment("../x"), "@2E.@2Fx");
        assert_eq!(path_segment("Order Details"), "Order@20Details");
        assert_eq!(path_segment("_tmp"), "@5Ftmp");
        assert_eq!(path_segment("a=b"), "a@3Db");
        assert_ne!(path_segment("a@20b"), path_segment("a b"));
        assert_eq!(path_segment(""), "@");
        assert_ne!(path_segment(""), path_segment("@"));
        for name in ["..", ".", "a/b", "ä", "x\0y", "k=v", "_x", ".x"] {
            let seg = path_segment(name);
            assert!(!seg.contains('='), "{seg}");
            assert!(!seg.starts_with(['_', '.']), "{seg}");
            check_relative_path(&format!("tables/{seg}/p"), "m").unwrap();
        }
    }

    /// Issue 'Hardening' item 6: 100 × `表` is a legal table name whose
    /// plain encoding (900 bytes) exceeds the 255-byte limit of a
    /// filesystem's path segment.
    #[test]
    fn long_names_are_shortened_deterministically_and_distinctly() {
        let long = "表".repeat(100);
        let seg = path_segment(&long);
        assert!(seg.len() <= MAX_SEGMENT_LEN, "{}", seg.len());
        assert_eq!(seg, path_segment(&long));
        assert!(seg.starts_with("@E8@A1@A8"), "{seg}");
        assert!(seg.contains("@@"), "{seg}");
        let other = format!("{long}x");
        assert_ne!(path_segment(&other), seg);
        let ascii = "a".repeat(300);
        assert_eq!(path_segment(&ascii).len(), MAX_SEGMENT_LEN);
        let just = "a".repeat(MAX_SEGMENT_LEN);
        assert_eq!(path_segment(&just), just);
    }

    #[test]
    fn collection_directories_keep_the_first_encoding() {
        assert_eq!(collection_segment("shop.v2"), "shop=2Ev2");
        assert_eq!(collection_segment("shop"), "shop");
    }

    #[test]
    fn paths_outside_the_archive_are_rejected() {
        for p in [
            "/etc/passwd",
            "../x",
            "tables/../../x",
            "a//b",
            "a\\b",
            "",
            "./a",
        ] {
            let err = check_relative_path(p, "manifest.json").unwrap_err();
            assert!(
                err.to_string().contains("outside its archive"),
                "{p}: {err}"
            );
        }
    }
}
