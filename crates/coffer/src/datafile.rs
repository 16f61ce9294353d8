//! Data files: tables as Parquet parts, with a side file for misfit values.
//!
//! A table's rows are written to `tables/<segment>/part-NNNNN.parquet`,
//! split when a part reaches the configured size. Values that do not fit
//! their column's logical type (see [`crate::engine::Misfit`]) are noted in
//! the part's side file `misfits/<segment>/part-NNNNN.parquet`, a Parquet
//! file of `(row UInt64, column UInt32, engine Utf8, class UInt8, value
//! Binary NULL)`: `engine` names whose value classes `class` counts
//! (format version 3; see [`RawValue`]):
//!
//! * `sqlite`: 1 integer (`value` 8 bytes little-endian), 2 real (the
//!   double's 8 bytes little-endian), 3 text (its bytes, not necessarily
//!   UTF-8), 4 blob;
//! * `postgres`: 1 numeric `NaN`, 2 `infinity`, 3 `-infinity` (`value`
//!   empty; the column's type says of which type), 4 the value in
//!   PostgreSQL's text form.
//!
//! For SQLite's values:
//!
//! * a value the column's type holds exactly (the integer 18 in a `float64`
//!   column as 18.0, the integer 7 in a `utf8` column as `7`, text in a
//!   `binary` column as its bytes; see [`shown_as`]) is **in the column**,
//!   and its entry has only the storage class (`value` NULL);
//! * any other value (text `'n/a'` in a `float64` column, 2^53 + 1 there,
//!   text that is not UTF-8) is NULL in the column, and its entry carries
//!   the value's bytes.
//!
//! Other engines' values are always NULL in the column, with their bytes in
//! the entry.
//!
//! So other readers see every value their column type can show, and coffer
//! restores exact values and storage classes. In memory
//! ([`DataBatch`]) a misfit is always NULL in its column and carries its
//! value; [`show_misfits`] and [`hide_shown`] convert at the file boundary.
//! Side files of format versions 1 and 2 have no `engine` column: every
//! entry is SQLite's. Version 1 has entries with values only, which read
//! the same way.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBufferBuilder, Float64Builder, Int64Builder, StringBuilder, UInt8Builder,
    UInt32Builder, UInt64Builder,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, Float64Array, Int64Array, RecordBatch, StringArray, UInt8Array,
    UInt32Array, UInt64Array,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use tokio::runtime::Handle;

use crate::engine::{DataBatch, Misfit, PostgresValue, RawValue, SqliteValue};
use crate::error::{Error, Result};
use crate::manifest::{DataFormat, LogicalType, Part, Table, path_segment};
use crate::store::Store;
use crate::upload::{Pending, Upload};

pub mod csv;
#[cfg(test)]
mod types_tests;

/// Compression of data files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zstd at the given level (1–22).
    Zstd(i32),
    /// No compression.
    None,
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Zstd(1)
    }
}

impl std::str::FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "unknown compression '{s}'; use zstd, zstd-N (N from 1 to 22) or none"
            ))
        };
        match s {
            "none" => Ok(Compression::None),
            "zstd" => Ok(Compression::default()),
            _ => {
                let level: i32 = s
                    .strip_prefix("zstd-")
                    .ok_or_else(bad)?
                    .parse()
                    .map_err(|_| bad())?;
                if (1..=22).contains(&level) {
                    Ok(Compression::Zstd(level))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// How data files are written.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// A part is closed once it reaches about this many bytes.
    pub part_size: u64,
    /// Compression of the Parquet pages (of whole files for CSV).
    pub compression: Compression,
    /// The format of the data files (CSV for exports only).
    pub data_format: DataFormat,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            part_size: 32 * 1024 * 1024,
            compression: Compression::default(),
            data_format: DataFormat::Parquet,
        }
    }
}

/// The Arrow type that carries a logical type (see docs/FORMAT.md).
pub fn arrow_type(t: &LogicalType) -> DataType {
    use arrow_schema::TimeUnit::Microsecond;
    match t {
        LogicalType::Bool => DataType::Boolean,
        LogicalType::Int16 => DataType::Int16,
        LogicalType::Int32 => DataType::Int32,
        LogicalType::Int64 => DataType::Int64,
        LogicalType::Float32 => DataType::Float32,
        LogicalType::Float64 => DataType::Float64,
        LogicalType::Utf8 | LogicalType::DecimalText | LogicalType::Json => DataType::Utf8,
        LogicalType::Binary => DataType::Binary,
        LogicalType::Date => DataType::Date32,
        LogicalType::Time => DataType::Time64(Microsecond),
        LogicalType::Timestamp => DataType::Timestamp(Microsecond, None),
        LogicalType::TimestampTz => DataType::Timestamp(Microsecond, Some("UTC".into())),
        LogicalType::Decimal { precision, scale } if *precision <= 38 => {
            DataType::Decimal128(*precision, *scale)
        }
        LogicalType::Decimal { precision, scale } => DataType::Decimal256(*precision, *scale),
        LogicalType::Interval => DataType::Struct(interval_fields()),
        LogicalType::Uuid => DataType::FixedSizeBinary(16),
        LogicalType::List(element) => DataType::List(Arc::new(arrow_field("item", element))),
    }
}

/// The fields of the Arrow struct that carries an interval: `months`
/// Int32, `days` Int32, `micros` Int64.
pub fn interval_fields() -> arrow_schema::Fields {
    arrow_schema::Fields::from(vec![
        Field::new("months", DataType::Int32, true),
        Field::new("days", DataType::Int32, true),
        Field::new("micros", DataType::Int64, true),
    ])
}

/// The nullable Arrow field named `name` of logical type `t`, with the
/// canonical extension type (`arrow.uuid`, `arrow.json`) that gives its
/// Parquet logical type (UUID, JSON).
pub fn arrow_field(name: &str, t: &LogicalType) -> Field {
    let field = Field::new(name, arrow_type(t), true);
    match t {
        LogicalType::Uuid => field.with_extension_type(arrow_schema::extension::Uuid),
        LogicalType::Json => field.with_extension_type(arrow_schema::extension::Json::default()),
        _ => field,
    }
}

/// The Arrow schema of a table's data files. Every field is nullable: a
/// misfit leaves a NULL in its column.
pub fn arrow_schema(table: &Table) -> SchemaRef {
    Arc::new(Schema::new(
        table
            .columns
            .iter()
            .map(|c| arrow_field(&c.name, &c.logical_type))
            .collect::<Vec<_>>(),
    ))
}

/// The schema of misfit side files (format version 3); `value` is NULL
/// where the column holds the value.
fn misfit_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("row", DataType::UInt64, false),
        Field::new("column", DataType::UInt32, false),
        Field::new("engine", DataType::Utf8, false),
        Field::new("class", DataType::UInt8, false),
        Field::new("value", DataType::Binary, true),
    ]))
}

/// The schema of misfit side files of format versions 1 and 2, without
/// `engine` (version 1 declared `value` not nullable: only names and types
/// are compared).
fn misfit_schema_v2() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("row", DataType::UInt64, false),
        Field::new("column", DataType::UInt32, false),
        Field::new("class", DataType::UInt8, false),
        Field::new("value", DataType::Binary, true),
    ]))
}

/// The engine whose value classes a side entry counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueEngine {
    /// SQLite's storage classes.
    Sqlite,
    /// PostgreSQL's values that no logical type holds.
    Postgres,
}

impl ValueEngine {
    fn name(self) -> &'static str {
        match self {
            ValueEngine::Sqlite => "sqlite",
            ValueEngine::Postgres => "postgres",
        }
    }

    fn from_name(name: &str) -> Option<ValueEngine> {
        match name {
            "sqlite" => Some(ValueEngine::Sqlite),
            "postgres" => Some(ValueEngine::Postgres),
            _ => None,
        }
    }
}

/// One entry of a misfit side file: the storage class of the value at
/// (`row`, `column`), and its bytes when the column does not hold it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SideEntry {
    /// Row index within the part (or batch).
    pub row: u64,
    /// Column index in the table's `columns`.
    pub column: u32,
    /// Whose value classes `class` counts.
    pub engine: ValueEngine,
    /// The value's class (see the module docs).
    pub class: u8,
    /// The value's bytes; `None` when the column holds the value.
    pub value: Option<Vec<u8>>,
}

/// A value as a column of a plain type holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    /// In an `int64` column.
    Int(i64),
    /// In a `float64` column.
    Float(f64),
    /// In a `utf8` column.
    Text(String),
    /// In a `binary` column.
    Bytes(Vec<u8>),
}

/// 2^63 as a double: the first double past `i64::MAX`.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// The shortest text that reads back as exactly `x` (`18.0`, `0.1`,
/// `1e300`, `-0.0`, `inf`, `-inf`).
pub fn real_text(x: f64) -> String {
    if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{x:?}")
    }
}

/// How a column of plain type `t` holds `v`, a value of another storage
/// class, when it can hold it **exactly** — so that the value and its class
/// (recorded beside it) give back `v` bit for bit:
///
/// * an integer in a `float64` column, when the double is the same number
///   (every integer of magnitude up to 2^53, and larger ones that are
///   multiples of a power of two);
/// * a real in an `int64` column, when it is a whole number within i64
///   (not `-0.0`);
/// * an integer or a real in a `utf8` column, as its decimal text (`7`,
///   `18.0`, `1e300`, `inf`: the shortest text that reads back as the same
///   double);
/// * text in a `binary` column, as its bytes.
///
/// Anything else — text or blobs in numeric columns, blobs in text columns,
/// text that is not UTF-8 — cannot be shown: the column holds NULL there.
pub fn shown_as(t: &LogicalType, v: &RawValue) -> Option<Shown> {
    let RawValue::Sqlite(v) = v else {
        return None;
    };
    match (t, v) {
        (LogicalType::Float64, SqliteValue::Integer(i)) => {
            let f = *i as f64;
            (f < TWO_POW_63 && f as i64 == *i).then_some(Shown::Float(f))
        }
        (LogicalType::Int64, SqliteValue::Real(f)) => {
            let ok = f.is_finite() && *f >= -TWO_POW_63 && *f < TWO_POW_63 && f.fract() == 0.0;
            let i = *f as i64;
            (ok && (i as f64).to_bits() == f.to_bits()).then_some(Shown::Int(i))
        }
        (LogicalType::Utf8, SqliteValue::Integer(i)) => Some(Shown::Text(i.to_string())),
        (LogicalType::Utf8, SqliteValue::Real(f)) => {
            let text = real_text(*f);
            (text.parse::<f64>().ok().map(f64::to_bits) == Some(f.to_bits()))
                .then_some(Shown::Text(text))
        }
        (LogicalType::Binary, SqliteValue::Text(t)) => Some(Shown::Bytes(t.clone())),
        _ => None,
    }
}

fn class_of(v: &RawValue) -> (ValueEngine, u8) {
    match v {
        RawValue::Sqlite(v) => (
            ValueEngine::Sqlite,
            match v {
                SqliteValue::Integer(_) => CLASS_INTEGER,
                SqliteValue::Real(_) => CLASS_REAL,
                SqliteValue::Text(_) => CLASS_TEXT,
                SqliteValue::Blob(_) => CLASS_BLOB,
            },
        ),
        RawValue::Postgres(v) => (
            ValueEngine::Postgres,
            match v {
                PostgresValue::NaN => PG_NAN,
                PostgresValue::Infinity => PG_INFINITY,
                PostgresValue::NegInfinity => PG_NEG_INFINITY,
                PostgresValue::Text(_) => PG_TEXT,
            },
        ),
    }
}

fn value_bytes(v: RawValue) -> Vec<u8> {
    match v {
        RawValue::Sqlite(SqliteValue::Integer(i)) => i.to_le_bytes().to_vec(),
        RawValue::Sqlite(SqliteValue::Real(f)) => f.to_bits().to_le_bytes().to_vec(),
        RawValue::Sqlite(SqliteValue::Text(t) | SqliteValue::Blob(t)) => t,
        RawValue::Postgres(PostgresValue::Text(t)) => t,
        RawValue::Postgres(_) => Vec::new(),
    }
}

/// Put every misfit of `batch` that its column can hold ([`shown_as`]) into
/// the column; returns the columns as a data file holds them and the side
/// entries, sorted by (row, column).
pub(crate) fn show_misfits(
    batch: DataBatch,
    table: &Table,
) -> Result<(RecordBatch, Vec<SideEntry>)> {
    if batch.misfits.is_empty() {
        return Ok((batch.columns, Vec::new()));
    }
    let mut shown: Vec<Vec<(usize, Shown)>> = vec![Vec::new(); table.columns.len()];
    let mut entries = Vec::with_capacity(batch.misfits.len());
    for m in batch.misfits {
        let (engine, class) = class_of(&m.value);
        let t = table
            .columns
            .get(m.column as usize)
            .map(|c| &c.logical_type)
            .ok_or_else(|| Error::internal(format!("a misfit names column {}", m.column)))?;
        let value = match shown_as(t, &m.value) {
            Some(s) => {
                shown[m.column as usize].push((m.row as usize, s));
                None
            }
            None => Some(value_bytes(m.value)),
        };
        entries.push(SideEntry {
            row: m.row,
            column: m.column,
            engine,
            class,
            value,
        });
    }
    if shown.iter().all(Vec::is_empty) {
        return Ok((batch.columns, entries));
    }
    let mut columns = batch.columns.columns().to_vec();
    for (i, fills) in shown.into_iter().enumerate() {
        if !fills.is_empty() {
            columns[i] = fill_column(&columns[i], fills)?;
        }
    }
    let columns = RecordBatch::try_new(batch.columns.schema(), columns)
        .map_err(|e| Error::internal(format!("could not build a batch: {e}")))?;
    Ok((columns, entries))
}

/// `array` with the values of `fills` (by row, ascending) in place of its
/// NULLs there.
fn fill_column(array: &ArrayRef, fills: Vec<(usize, Shown)>) -> Result<ArrayRef> {
    let n = array.len();
    let mut fills = fills.into_iter().peekable();
    let wrong = || Error::internal("a shown misfit does not match its column's type");
    macro_rules! rebuild {
        ($arr:ty, $builder:expr, $variant:ident, $conv:expr) => {{
            let a = array.as_any().downcast_ref::<$arr>().ok_or_else(wrong)?;
            let mut b = $builder;
            for row in 0..n {
                match fills.next_if(|(r, _)| *r == row) {
                    Some((_, Shown::$variant(v))) => b.append_value($conv(v)),
                    Some(_) => return Err(wrong()),
                    None if a.is_valid(row) => b.append_value(a.value(row)),
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match array.data_type() {
        DataType::Int64 => rebuild!(Int64Array, Int64Builder::with_capacity(n), Int, |v| v),
        DataType::Float64 => rebuild!(Float64Array, Float64Builder::with_capacity(n), Float, |v| v),
        DataType::Utf8 => rebuild!(StringArray, StringBuilder::new(), Text, |v: String| v),
        DataType::Binary => rebuild!(BinaryArray, BinaryBuilder::new(), Bytes, |v: Vec<u8>| v),
        _ => return Err(wrong()),
    })
}

/// The in-memory batch of a data file's `columns` and the side `entries`
/// of its rows (rows relative to the batch): values the columns hold for
/// an entry without a value become misfits of the entry's class, NULL in
/// their column, as [`DataBatch`] has them. `origin` names the side file in
/// errors.
pub(crate) fn hide_shown(
    columns: RecordBatch,
    entries: Vec<SideEntry>,
    table: &Table,
    origin: &str,
) -> Result<DataBatch> {
    let damaged = |what: String| {
        Error::corrupt(format!(
            "{origin} is damaged ({what}); the archive cannot be restored exactly"
        ))
    };
    let mut hidden: Vec<Vec<usize>> = vec![Vec::new(); columns.num_columns()];
    let mut misfits = Vec::with_capacity(entries.len());
    for e in entries {
        let i = e.column as usize;
        let row = e.row as usize;
        let value = match e.value {
            Some(bytes) => decode_value(e.engine, e.class, bytes).map_err(damaged)?,
            None if e.engine != ValueEngine::Sqlite => {
                return Err(damaged(format!(
                    "row {row} of column '{}' is said to show a {} value, which no column shows",
                    table.columns[i].name,
                    e.engine.name()
                )));
            }
            None => {
                let array = columns.column(i);
                if row >= array.len() || array.is_null(row) {
                    return Err(damaged(format!(
                        "row {row} of column '{}' is said to be shown but is NULL",
                        table.columns[i].name
                    )));
                }
                hidden[i].push(row);
                shown_value(array.as_ref(), row, e.class).ok_or_else(|| {
                    damaged(format!(
                        "row {row} of column '{}' does not hold a value of class {}",
                        table.columns[i].name, e.class
                    ))
                })?
            }
        };
        misfits.push(Misfit {
            row: e.row,
            column: e.column,
            value,
        });
    }
    if hidden.iter().all(Vec::is_empty) {
        return Ok(DataBatch { columns, misfits });
    }
    let mut arrays = columns.columns().to_vec();
    for (i, rows) in hidden.into_iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        let n = arrays[i].len();
        let mut mask = BooleanBufferBuilder::new(n);
        mask.append_n(n, true);
        for r in rows {
            mask.set_bit(r, false);
        }
        let mask = NullBuffer::new(mask.finish());
        let nulls = NullBuffer::union(arrays[i].nulls(), Some(&mask));
        let data = arrays[i]
            .to_data()
            .into_builder()
            .nulls(nulls)
            .build()
            .map_err(|e| Error::internal(e.to_string()))?;
        arrays[i] = arrow_array::make_array(data);
    }
    let columns = RecordBatch::try_new(columns.schema(), arrays)
        .map_err(|e| Error::internal(format!("could not build a batch: {e}")))?;
    Ok(DataBatch { columns, misfits })
}

/// The value of class `class` that a column shows at `row` ([`shown_as`]
/// in reverse), if it is one.
fn shown_value(array: &dyn Array, row: usize, class: u8) -> Option<RawValue> {
    let value = shown_sqlite_value(array, row, class)?.into();
    let t = match array.data_type() {
        DataType::Float64 => LogicalType::Float64,
        DataType::Int64 => LogicalType::Int64,
        DataType::Utf8 => LogicalType::Utf8,
        _ => LogicalType::Binary,
    };
    let any = array.as_any();
    // Only what a writer shows reads back: the same display again.
    let again = shown_as(&t, &value)?;
    let same = match (&again, array.data_type()) {
        (Shown::Float(f), DataType::Float64) => {
            any.downcast_ref::<Float64Array>()?.value(row).to_bits() == f.to_bits()
        }
        (Shown::Int(i), DataType::Int64) => any.downcast_ref::<Int64Array>()?.value(row) == *i,
        (Shown::Text(s), DataType::Utf8) => any.downcast_ref::<StringArray>()?.value(row) == s,
        (Shown::Bytes(b), DataType::Binary) => any.downcast_ref::<BinaryArray>()?.value(row) == b,
        _ => false,
    };
    same.then_some(value)
}

/// The SQLite value of class `class` that a column shows at `row`.
fn shown_sqlite_value(array: &dyn Array, row: usize, class: u8) -> Option<SqliteValue> {
    let any = array.as_any();
    let value = match (array.data_type(), class) {
        (DataType::Float64, CLASS_INTEGER) => {
            let f = any.downcast_ref::<Float64Array>()?.value(row);
            SqliteValue::Integer(f as i64)
        }
        (DataType::Int64, CLASS_REAL) => {
            SqliteValue::Real(any.downcast_ref::<Int64Array>()?.value(row) as f64)
        }
        (DataType::Utf8, CLASS_INTEGER) => {
            SqliteValue::Integer(any.downcast_ref::<StringArray>()?.value(row).parse().ok()?)
        }
        (DataType::Utf8, CLASS_REAL) => {
            SqliteValue::Real(any.downcast_ref::<StringArray>()?.value(row).parse().ok()?)
        }
        (DataType::Binary, CLASS_TEXT) => {
            SqliteValue::Text(any.downcast_ref::<BinaryArray>()?.value(row).to_vec())
        }
        _ => return None,
    };
    Some(value)
}

fn decode_value(
    engine: ValueEngine,
    class: u8,
    v: Vec<u8>,
) -> std::result::Result<RawValue, String> {
    if engine == ValueEngine::Postgres {
        let empty = |value: PostgresValue| {
            if v.is_empty() {
                Ok(RawValue::Postgres(value))
            } else {
                Err(format!("a PostgreSQL value of class {class} with bytes"))
            }
        };
        return match class {
            PG_NAN => empty(PostgresValue::NaN),
            PG_INFINITY => empty(PostgresValue::Infinity),
            PG_NEG_INFINITY => empty(PostgresValue::NegInfinity),
            PG_TEXT => Ok(RawValue::Postgres(PostgresValue::Text(v))),
            c => Err(format!("unknown PostgreSQL value class {c}")),
        };
    }
    let fixed = |v: &[u8]| -> std::result::Result<[u8; 8], String> {
        v.try_into()
            .map_err(|_| format!("a number of {} bytes", v.len()))
    };
    Ok(RawValue::Sqlite(match class {
        CLASS_INTEGER => SqliteValue::Integer(i64::from_le_bytes(fixed(&v)?)),
        CLASS_REAL => SqliteValue::Real(f64::from_bits(u64::from_le_bytes(fixed(&v)?))),
        CLASS_TEXT => SqliteValue::Text(v),
        CLASS_BLOB => SqliteValue::Blob(v),
        c => return Err(format!("unknown value class {c}")),
    }))
}

const CLASS_INTEGER: u8 = 1;
const CLASS_REAL: u8 = 2;
const CLASS_TEXT: u8 = 3;
const CLASS_BLOB: u8 = 4;
const PG_NAN: u8 = 1;
const PG_INFINITY: u8 = 2;
const PG_NEG_INFINITY: u8 = 3;
const PG_TEXT: u8 = 4;

fn writer_properties(compression: Compression) -> WriterProperties {
    let c = match compression {
        Compression::None => PqCompression::UNCOMPRESSED,
        Compression::Zstd(level) => {
            PqCompression::ZSTD(ZstdLevel::try_new(level).unwrap_or_default())
        }
    };
    WriterProperties::builder()
        .set_compression(c)
        // A column whose dictionary grows past 64 KiB in a row group has
        // too many distinct values for one to pay: plain values under zstd
        // are smaller (see docs/DECISIONS.md, "Parquet dictionaries").
        .set_dictionary_page_size_limit(64 * 1024)
        .set_max_row_group_row_count(Some(128 * 1024))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_created_by(format!("coffer {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The path of part `n` of a table, relative to the archive root.
pub fn part_path(table: &str, n: usize) -> String {
    format!("tables/{}/part-{n:05}.parquet", path_segment(table))
}

/// The path of the misfit side file of part `n` of a table.
pub fn misfit_path(table: &str, n: usize) -> String {
    format!("misfits/{}/part-{n:05}.parquet", path_segment(table))
}

struct OpenPart {
    writer: ArrowWriter<Upload>,
    rows: u64,
    misfits: Vec<SideEntry>,
}

/// Writes one table's batches as parts. Use from a blocking thread.
pub struct TableWriter {
    store: Store,
    handle: Handle,
    /// The table in the types its data files have.
    table: Table,
    schema: SchemaRef,
    options: WriteOptions,
    props: WriterProperties,
    current: Option<OpenPart>,
    parts: Vec<Part>,
    /// The last closed part, still completing its upload in the background.
    completing: Option<Pending>,
    /// Writes CSV parts instead, when that is the format.
    csv: Option<csv::CsvTableWriter>,
    /// The number of this writer's first part (see [`TableWriter::starting_at`]).
    first_part: usize,
}

impl TableWriter {
    /// A writer for `table`'s data into `store`.
    pub fn new(store: Store, handle: Handle, table: &Table, options: WriteOptions) -> Self {
        let csv = (options.data_format == DataFormat::Csv).then(|| {
            csv::CsvTableWriter::new(store.clone(), handle.clone(), table, options.clone())
        });
        TableWriter {
            csv,
            props: writer_properties(options.compression),
            store,
            handle,
            table: table.clone(),
            schema: arrow_schema(table),
            options,
            current: None,
            parts: Vec::new(),
            completing: None,
            first_part: 0,
        }
    }

    /// The same writer, numbering its parts from `first`: several writers
    /// can then write one table's rows in pieces (one piece per writer,
    /// each with its own range of part numbers) into one directory.
    pub fn starting_at(mut self, first: usize) -> Self {
        self.first_part = first;
        if let Some(csv) = self.csv.take() {
            self.csv = Some(csv.starting_at(first));
        }
        self
    }

    fn open(&mut self) -> Result<&mut OpenPart> {
        if self.current.is_none() {
            let rel = part_path(&self.table.name, self.first_part + self.parts.len());
            let upload = Upload::new(&self.store, &rel, self.handle.clone());
            let writer =
                ArrowWriter::try_new(upload, self.schema.clone(), Some(self.props.clone()))
                    .map_err(|e| Error::internal(format!("could not start {rel}: {e}")))?;
            self.current = Some(OpenPart {
                writer,
                rows: 0,
                misfits: Vec::new(),
            });
        }
        Ok(self.current.as_mut().expect("part is open"))
    }

    /// Append a batch; closes the current part when it reaches the size limit.
    pub fn write(&mut self, batch: DataBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if let Some(csv) = &mut self.csv {
            return csv.write(batch);
        }
        let (columns, entries) = show_misfits(batch, &self.table)?;
        let limit = self.options.part_size;
        let url = self.store.url_of(&part_path(
            &self.table.name,
            self.first_part + self.parts.len(),
        ));
        let part = self.open()?;
        if let Err(e) = part.writer.write(&columns) {
            return Err(part
                .writer
                .inner_mut()
                .take_failure()
                .unwrap_or_else(|| Error::internal(format!("could not encode {url}: {e}"))));
        }
        let offset = part.rows;
        part.misfits.extend(entries.into_iter().map(|mut m| {
            m.row += offset;
            m
        }));
        part.rows += columns.num_rows() as u64;
        let size = (part.writer.bytes_written() + part.writer.in_progress_size()) as u64;
        if size >= limit {
            self.close_part()?;
        } else if part.writer.in_progress_size() > 32 * 1024 * 1024 {
            part.writer
                .flush()
                .map_err(|e| Error::internal(format!("could not encode {url}: {e}")))?;
        }
        Ok(())
    }

    fn close_part(&mut self) -> Result<()> {
        let Some(part) = self.current.take() else {
            return Ok(());
        };
        let n = self.first_part + self.parts.len();
        let rel = part_path(&self.table.name, n);
        let upload = part.writer.into_inner().map_err(|e| {
            Error::internal(format!("could not finish {}: {e}", self.store.url_of(&rel)))
        })?;
        // Let the upload complete while the next part is encoded; at most
        // one part is in flight that way, which bounds memory.
        let pending = upload.finish_later()?;
        let file = pending.file().clone();
        if let Some(previous) = self.completing.replace(pending) {
            previous.wait()?;
        }
        let misfits = if part.misfits.is_empty() {
            None
        } else {
            Some(write_misfit_file(
                &self.store,
                &self.handle,
                &misfit_path(&self.table.name, n),
                &part.misfits,
                &self.props,
            )?)
        };
        self.parts.push(Part {
            file,
            rows: part.rows,
            misfits,
        });
        Ok(())
    }

    /// Close the last part and return every part written; a table without
    /// rows has no part.
    pub fn finish(mut self) -> Result<Vec<Part>> {
        if let Some(csv) = self.csv.take() {
            return csv.finish(false);
        }
        self.close_part()?;
        if let Some(last) = self.completing.take() {
            last.wait()?;
        }
        Ok(self.parts)
    }

    /// Close the last part and return every part written; a table without
    /// rows gets one part all the same, with its columns and no rows, so
    /// that other tools read an empty table (backups and exports).
    pub fn finish_table(mut self) -> Result<Vec<Part>> {
        if let Some(csv) = self.csv.take() {
            return csv.finish(true);
        }
        if self.parts.is_empty() && self.current.is_none() {
            self.open()?;
        }
        self.finish()
    }
}

/// Write a misfit side file of `entries` (sorted by row and column) at
/// `rel`.
pub(crate) fn write_misfit_file(
    store: &Store,
    handle: &Handle,
    rel: &str,
    entries: &[SideEntry],
    props: &WriterProperties,
) -> Result<crate::manifest::FileRef> {
    let url = store.url_of(rel);
    let encode_err =
        |e: parquet::errors::ParquetError| Error::internal(format!("could not encode {url}: {e}"));
    let upload = Upload::new(store, rel, handle.clone());
    let mut writer =
        ArrowWriter::try_new(upload, misfit_schema(), Some(props.clone())).map_err(encode_err)?;
    for chunk in entries.chunks(8192) {
        if let Err(e) = writer.write(&misfit_batch(chunk)) {
            return Err(writer
                .inner_mut()
                .take_failure()
                .unwrap_or_else(|| encode_err(e)));
        }
    }
    writer.into_inner().map_err(encode_err)?.finish()
}

fn misfit_batch(entries: &[SideEntry]) -> RecordBatch {
    let mut rows = UInt64Builder::with_capacity(entries.len());
    let mut cols = UInt32Builder::with_capacity(entries.len());
    let mut engines = StringBuilder::with_capacity(entries.len(), entries.len() * 6);
    let mut classes = UInt8Builder::with_capacity(entries.len());
    let mut values = BinaryBuilder::new();
    for e in entries {
        rows.append_value(e.row);
        cols.append_value(e.column);
        engines.append_value(e.engine.name());
        classes.append_value(e.class);
        values.append_option(e.value.as_deref());
    }
    RecordBatch::try_new(
        misfit_schema(),
        vec![
            Arc::new(rows.finish()),
            Arc::new(cols.finish()),
            Arc::new(engines.finish()),
            Arc::new(classes.finish()),
            Arc::new(values.finish()),
        ],
    )
    .expect("misfit batch matches its schema")
}

/// The entries of a misfit side file, sorted by (row, column).
fn read_misfits(data: Bytes, origin: &str, columns: usize) -> Result<Vec<SideEntry>> {
    let damaged = |what: String| {
        Error::corrupt(format!(
            "{origin} is damaged ({what}); the archive cannot be restored exactly"
        ))
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(data)
        .and_then(|b| b.build())
        .map_err(|e| damaged(e.to_string()))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| damaged(e.to_string()))?;
        // Format 3 names each entry's engine; versions 1 and 2 have no
        // `engine` column (every entry is SQLite's). Version 1 declared
        // `value` not nullable: the names and types are what matter.
        let matches = |expected: SchemaRef| {
            batch.schema().fields().len() == expected.fields().len()
                && batch
                    .schema()
                    .fields()
                    .iter()
                    .zip(expected.fields())
                    .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
        };
        let (engines, first) = if matches(misfit_schema()) {
            (batch.column(2).as_any().downcast_ref::<StringArray>(), 3)
        } else if matches(misfit_schema_v2()) {
            (None, 2)
        } else {
            return Err(damaged("unexpected columns".into()));
        };
        let rows = batch.column(0).as_any().downcast_ref::<UInt64Array>();
        let cols = batch.column(1).as_any().downcast_ref::<UInt32Array>();
        let classes = batch.column(first).as_any().downcast_ref::<UInt8Array>();
        let values = batch
            .column(first + 1)
            .as_any()
            .downcast_ref::<BinaryArray>();
        let (Some(rows), Some(cols), Some(classes), Some(values)) = (rows, cols, classes, values)
        else {
            return Err(damaged("unexpected column types".into()));
        };
        for i in 0..batch.num_rows() {
            let engine = match engines {
                None => ValueEngine::Sqlite,
                Some(names) => ValueEngine::from_name(names.value(i)).ok_or_else(|| {
                    damaged(format!("values of an unknown engine '{}'", names.value(i)))
                })?,
            };
            let class = classes.value(i);
            let value = values.is_valid(i).then(|| values.value(i).to_vec());
            match engine {
                ValueEngine::Sqlite => {
                    if !(CLASS_INTEGER..=CLASS_BLOB).contains(&class) {
                        return Err(damaged(format!("unknown value class {class}")));
                    }
                    if let Some(v) = &value
                        && class <= CLASS_REAL
                        && v.len() != 8
                    {
                        return Err(damaged(format!("a number of {} bytes", v.len())));
                    }
                }
                ValueEngine::Postgres => {
                    if !(PG_NAN..=PG_TEXT).contains(&class) {
                        return Err(damaged(format!("unknown PostgreSQL value class {class}")));
                    }
                    if value.is_none() {
                        return Err(damaged("a PostgreSQL value without its bytes".into()));
                    }
                }
            }
            let column = cols.value(i);
            if column as usize >= columns {
                return Err(damaged(format!("column {column} out of range")));
            }
            out.push(SideEntry {
                row: rows.value(i),
                column,
                engine,
                class,
                value,
            });
        }
    }
    out.sort_by_key(|m| (m.row, m.column));
    Ok(out)
}

/// Decode one part (and its misfit side file) of `table`, handing batches
/// to `sink`. `origin` names the part in errors. The bytes must already be
/// checked against the manifest.
pub fn read_part(
    table: &Table,
    data: Bytes,
    misfits: Option<(Bytes, &str)>,
    origin: &str,
    sink: &mut dyn FnMut(DataBatch) -> Result<()>,
) -> Result<u64> {
    let damaged =
        |what: String| Error::corrupt(format!("{origin} is not a readable data file ({what})"));
    let schema = arrow_schema(table);
    let (misfits, side_origin) = match misfits {
        Some((bytes, side)) => (read_misfits(bytes, side, table.columns.len())?, side),
        None => (Vec::new(), origin),
    };
    let mut misfits = misfits.into_iter().peekable();
    let reader = ParquetRecordBatchReaderBuilder::try_new(data)
        .map_err(|e| damaged(e.to_string()))?
        .with_batch_size(8192)
        .build()
        .map_err(|e| damaged(e.to_string()))?;
    let mut offset = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| damaged(e.to_string()))?;
        let same = batch.schema().fields().len() == schema.fields().len()
            && batch
                .schema()
                .fields()
                .iter()
                .zip(schema.fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        if !same {
            return Err(damaged(format!(
                "its columns do not match table '{}' in the manifest",
                table.name
            )));
        }
        let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
            .map_err(|e| damaged(e.to_string()))?;
        let rows = batch.num_rows() as u64;
        let mut own = Vec::new();
        while let Some(m) = misfits.next_if(|m| m.row < offset + rows) {
            if m.row < offset {
                return Err(damaged("misfit rows out of order".into()));
            }
            own.push(SideEntry {
                row: m.row - offset,
                ..m
            });
        }
        offset += rows;
        sink(hide_shown(batch, own, table, side_origin)?)?;
    }
    if misfits.next().is_some() {
        return Err(damaged("misfits name rows past its end".into()));
    }
    Ok(offset)
}

/// Decode one part of `table` written in `format` by an archive of format
/// `version`; see [`read_part`].
pub fn read_part_as(
    format: DataFormat,
    version: u32,
    table: &Table,
    data: Bytes,
    misfits: Option<(Bytes, &str)>,
    origin: &str,
    sink: &mut dyn FnMut(DataBatch) -> Result<()>,
) -> Result<u64> {
    match format {
        DataFormat::Parquet => read_part(table, data, misfits, origin, sink),
        DataFormat::Csv => csv::read_part(version, table, data, misfits, origin, sink),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Column;

    fn table(types: &[LogicalType]) -> Table {
        Table {
            name: "t".into(),
            kind: crate::manifest::TableKind::Table,
            columns: types
                .iter()
                .enumerate()
                .map(|(i, t)| Column {
                    name: format!("c{i}"),
                    logical_type: t.clone(),
                    declared_type: String::new(),
                    nullable: true,
                    text_format: None,
                })
                .collect(),
            primary_key: vec![],
            hidden_key: None,
            rows: 0,
            parts: vec![],
        }
    }

    #[test]
    fn only_exact_values_are_shown() {
        use LogicalType::*;
        use SqliteValue::*;
        assert_eq!(
            shown_as(&Float64, &Integer(18).into()),
            Some(Shown::Float(18.0))
        );
        assert_eq!(
            shown_as(&Float64, &Integer(1 << 53).into()),
            Some(Shown::Float(9_007_199_254_740_992.0))
        );
        assert_eq!(shown_as(&Float64, &Integer((1 << 53) + 1).into()), None);
        assert_eq!(shown_as(&Float64, &Integer(i64::MAX).into()), None);
        assert_eq!(
            shown_as(&Float64, &Integer(i64::MIN).into()),
            Some(Shown::Float(-TWO_POW_63))
        );
        assert_eq!(shown_as(&Int64, &Real(3.0).into()), Some(Shown::Int(3)));
        assert_eq!(shown_as(&Int64, &Real(-0.0).into()), None);
        assert_eq!(shown_as(&Int64, &Real(1.5).into()), None);
        assert_eq!(shown_as(&Int64, &Real(TWO_POW_63).into()), None);
        assert_eq!(shown_as(&Int64, &Real(f64::INFINITY).into()), None);
        assert_eq!(
            shown_as(&Utf8, &Integer(-7).into()),
            Some(Shown::Text("-7".into()))
        );
        assert_eq!(
            shown_as(&Utf8, &Real(18.0).into()),
            Some(Shown::Text("18.0".into()))
        );
        assert_eq!(
            shown_as(&Utf8, &Real(1e300).into()),
            Some(Shown::Text("1e300".into()))
        );
        assert_eq!(
            shown_as(&Utf8, &Real(f64::NEG_INFINITY).into()),
            Some(Shown::Text("-inf".into()))
        );
        assert_eq!(
            shown_as(&Binary, &Text(vec![0xff, 0]).into()),
            Some(Shown::Bytes(vec![0xff, 0]))
        );
        for (t, v) in [
            (Float64, Text(b"18".to_vec())),
            (Int64, Blob(vec![1])),
            (Utf8, Blob(b"abc".to_vec())),
            (Utf8, Text(vec![0xff])),
            (Binary, Integer(1)),
            (Date, Integer(1)),
        ] {
            assert_eq!(shown_as(&t, &v.clone().into()), None, "{t} {v:?}");
        }
    }

    #[test]
    fn misfits_shown_in_their_columns_read_back_exactly() {
        use LogicalType::*;
        let t = table(&[Float64, Int64, Utf8, Binary, Utf8]);
        let batch = DataBatch {
            columns: RecordBatch::try_new(
                arrow_schema(&t),
                vec![
                    Arc::new(Float64Array::from(vec![None, Some(9.8), None])),
                    Arc::new(Int64Array::from(vec![Some(1), None, None])),
                    Arc::new(StringArray::from(vec![None, Some("x"), None])),
                    Arc::new(BinaryArray::from(vec![None, Some(&b"b"[..]), None])),
                    Arc::new(StringArray::from(vec![None::<&str>, None, None])),
                ],
            )
            .unwrap(),
            misfits: vec![
                Misfit {
                    row: 0,
                    column: 0,
                    value: SqliteValue::Integer(18).into(),
                },
                Misfit {
                    row: 0,
                    column: 2,
                    value: SqliteValue::Real(-0.0).into(),
                },
                Misfit {
                    row: 0,
                    column: 3,
                    value: SqliteValue::Text(b"t".to_vec()).into(),
                },
                Misfit {
                    row: 0,
                    column: 4,
                    value: SqliteValue::Blob(vec![0xff]).into(),
                },
                Misfit {
                    row: 1,
                    column: 1,
                    value: SqliteValue::Real(2.5).into(),
                },
                Misfit {
                    row: 2,
                    column: 0,
                    value: SqliteValue::Text(b"n/a".to_vec()).into(),
                },
                Misfit {
                    row: 2,
                    column: 1,
                    value: SqliteValue::Real(4.0).into(),
                },
            ],
        };
        let (columns, entries) = show_misfits(batch.clone(), &t).unwrap();
        let floats = columns
            .column(0)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(floats.value(0), 18.0);
        assert!(floats.is_null(2), "'n/a' cannot be shown");
        let texts = columns
            .column(2)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(texts.value(0), "-0.0");
        let ints = columns
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert!(ints.is_null(1));
        assert_eq!(ints.value(2), 4);
        let summary: Vec<(u64, u32, u8, bool)> = entries
            .iter()
            .map(|e| (e.row, e.column, e.class, e.value.is_some()))
            .collect();
        assert_eq!(
            summary,
            [
                (0, 0, CLASS_INTEGER, false),
                (0, 2, CLASS_REAL, false),
                (0, 3, CLASS_TEXT, false),
                (0, 4, CLASS_BLOB, true),
                (1, 1, CLASS_REAL, true),
                (2, 0, CLASS_TEXT, true),
                (2, 1, CLASS_REAL, false),
            ]
        );
        let back = hide_shown(columns, entries, &t, "test").unwrap();
        assert_eq!(back.columns, batch.columns);
        assert_eq!(back.misfits, batch.misfits);
    }

    #[test]
    fn a_shown_entry_that_does_not_match_its_column_is_damage() {
        let t = table(&[LogicalType::Float64]);
        let columns = RecordBatch::try_new(
            arrow_schema(&t),
            vec![Arc::new(Float64Array::from(vec![Some(1.5), None]))],
        )
        .unwrap();
        for row in [0, 1] {
            let entry = SideEntry {
                row,
                column: 0,
                engine: ValueEngine::Sqlite,
                class: CLASS_INTEGER,
                value: None,
            };
            let err = hide_shown(
                columns.clone(),
                vec![entry],
                &t,
                "misfits/t/part-00000.parquet",
            )
            .unwrap_err();
            assert!(
                err.message()
                    .contains("misfits/t/part-00000.parquet is damaged"),
                "{err}"
            );
        }
    }
}
