//! CSV data files (exports with `--format csv`).
//!
//! One file per part, `tables/<segment>/part-NNNNN.csv`, or
//! `part-NNNNN.csv.zst` (one zstd frame over the whole file) when
//! compression is asked for. RFC 4180: a header row with the column names,
//! fields separated by `,`, records ended by CRLF, a field quoted with `"`
//! (and inner quotes doubled) when it holds `,`, `"`, CR or LF.
//!
//! **NULL is an unquoted empty field; an empty string is `""`**, as
//! PostgreSQL's CSV has it, so readers that tell the two apart (DuckDB with
//! `allow_quoted_nulls = false`, pyarrow with `quoted_strings_can_be_null =
//! False`) read them back as different.
//!
//! Values, by the column's type in the manifest: integers in decimal;
//! doubles in the shortest text that reads back to the same bits (`0.1`,
//! `1e300`, `-0.0`, `inf`, `-inf`); text as is; bytes as `\x` and lowercase
//! hex (`\x00ff`, `\x` for no bytes: PostgreSQL's `bytea` hex form); the
//! other types as [`crate::codec`] writes them (dates `YYYY-MM-DD`,
//! timestamps `YYYY-MM-DD HH:MM:SS[.ffffff]`, decimals with exactly `scale`
//! digits after the point, lists in PostgreSQL's array form: `{1,NULL}`).
//!
//! Archives of format versions 1 and 2 wrote a timestamp in the layout of
//! its SQLite text (the column's `text_format`, e.g. `T` between date and
//! time); they read as written. From version 3 `text_format` is the SQLite
//! engine's alone: the SQLite importer gives the text its layout back.
//!
//! Values whose storage class differs from the column's type are noted in
//! the part's misfit file, the same Parquet side file as for Parquet parts
//! (see [`super`]): the column shows what it can hold exactly, and the side
//! file keeps the class, or the value itself where the column shows NULL.
//!
//! Archives of format version 1 wrote empty text and empty bytes as empty
//! fields with a misfit entry each, a quoted empty field only for a NULL in
//! a one-column table, and bytes as bare hex; they read as they were meant.

use std::io::{Read, Write};
use std::sync::Arc;

use arrow_array::Array;
use arrow_buffer::NullBuffer;
use bytes::Bytes;
use tokio::runtime::Handle;

use super::{
    Compression, SideEntry, WriteOptions, arrow_schema, hide_shown, misfit_path, read_misfits,
    real_text, show_misfits, write_misfit_file, writer_properties,
};
use crate::codec;
use crate::codec::layout::{Layout, parse_decimal};
use crate::engine::DataBatch;
use crate::error::{Error, Result};
use crate::manifest::{LogicalType, Part, Table, path_segment};
use crate::store::Store;
use crate::upload::Upload;

/// The first bytes of a zstd frame; a CSV file (UTF-8 text) never starts so.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Rows per batch when reading.
const READ_BATCH_ROWS: usize = 8192;

/// The path of CSV part `n` of a table, relative to the archive root.
pub fn part_path(table: &str, n: usize, compression: Compression) -> String {
    let ext = match compression {
        Compression::None => "csv",
        Compression::Zstd(_) => "csv.zst",
    };
    format!("tables/{}/part-{n:05}.{ext}", path_segment(table))
}

/// An [`Upload`] that counts what it is handed.
struct Counted {
    upload: Upload,
    bytes: u64,
}

impl Write for Counted {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.upload.write(data)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.upload.flush()
    }
}

enum Sink {
    Plain(Counted),
    Zstd(zstd::stream::write::Encoder<'static, Counted>),
}

impl Sink {
    fn counted(&mut self) -> &mut Counted {
        match self {
            Sink::Plain(c) => c,
            Sink::Zstd(z) => z.get_mut(),
        }
    }

    fn finish(self) -> std::io::Result<Upload> {
        Ok(match self {
            Sink::Plain(c) => c.upload,
            Sink::Zstd(z) => z.finish()?.upload,
        })
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(c) => c.write(data),
            Sink::Zstd(z) => z.write(data),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(c) => c.flush(),
            Sink::Zstd(z) => z.flush(),
        }
    }
}

struct OpenPart {
    sink: Sink,
    rel: String,
    rows: u64,
    misfits: Vec<SideEntry>,
}

/// Writes one table's batches as CSV parts (see the module docs).
pub struct CsvTableWriter {
    store: Store,
    handle: Handle,
    table: Table,
    options: WriteOptions,
    current: Option<OpenPart>,
    parts: Vec<Part>,
    field: Vec<u8>,
    text: Vec<u8>,
    /// The number of the first part.
    first_part: usize,
}

/// Append `field` to `out` as one CSV field: quoted when it is empty (a
/// value, not NULL) or holds `,`, `"`, CR or LF, inner quotes doubled.
fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    let quote = field.is_empty()
        || field
            .iter()
            .any(|&b| b == b',' || b == b'"' || b == b'\r' || b == b'\n');
    if !quote {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    for &b in field {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

impl CsvTableWriter {
    /// A writer for `table`'s data into `store`.
    pub fn new(store: Store, handle: Handle, table: &Table, options: WriteOptions) -> Self {
        CsvTableWriter {
            store,
            handle,
            table: table.clone(),
            options,
            current: None,
            parts: Vec::new(),
            field: Vec::with_capacity(64),
            text: Vec::with_capacity(1 << 20),
            first_part: 0,
        }
    }

    /// The same writer, numbering its parts from `first`.
    pub fn starting_at(mut self, first: usize) -> Self {
        self.first_part = first;
        self
    }

    fn open(&mut self) -> Result<()> {
        if self.current.is_some() {
            return Ok(());
        }
        let rel = part_path(
            &self.table.name,
            self.first_part + self.parts.len(),
            self.options.compression,
        );
        let counted = Counted {
            upload: Upload::new(&self.store, &rel, self.handle.clone()),
            bytes: 0,
        };
        let sink = match self.options.compression {
            Compression::None => Sink::Plain(counted),
            Compression::Zstd(level) => Sink::Zstd(
                zstd::stream::write::Encoder::new(counted, level)
                    .map_err(|e| Error::internal(format!("could not start {rel}: {e}")))?,
            ),
        };
        let mut part = OpenPart {
            sink,
            rel,
            rows: 0,
            misfits: Vec::new(),
        };
        self.text.clear();
        for (i, c) in self.table.columns.iter().enumerate() {
            if i > 0 {
                self.text.push(b',');
            }
            push_field(&mut self.text, c.name.as_bytes());
        }
        self.text.extend_from_slice(b"\r\n");
        if let Err(e) = part.sink.write_all(&self.text) {
            return Err(self.failure(&mut part, e));
        }
        self.current = Some(part);
        Ok(())
    }

    /// The error behind a failed write: the upload's own when it failed.
    fn failure(&self, part: &mut OpenPart, e: std::io::Error) -> Error {
        part.sink
            .counted()
            .upload
            .take_failure()
            .unwrap_or_else(|| {
                Error::internal(format!(
                    "could not write {}: {e}",
                    self.store.url_of(&part.rel)
                ))
            })
    }

    /// Append a batch (in the table's types); closes the current part when
    /// it reaches the size limit.
    pub fn write(&mut self, batch: DataBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rows = batch.num_rows() as u64;
        let (columns, entries) = show_misfits(batch, &self.table)?;
        self.open()?;
        let mut part = self.current.take().expect("part is open");
        let encoded = self.encode_rows(&columns);
        let written = encoded.and_then(|()| {
            part.sink
                .write_all(&self.text)
                .map_err(|e| self.failure(&mut part, e))
        });
        if let Err(e) = written {
            if let Ok(upload) = part.sink.finish() {
                upload.abort();
            }
            return Err(e);
        }
        let offset = part.rows;
        part.rows += rows;
        part.misfits.extend(entries.into_iter().map(|mut m| {
            m.row += offset;
            m
        }));
        let full = part.sink.counted().bytes >= self.options.part_size;
        self.current = Some(part);
        if full {
            self.close_part()?;
        }
        Ok(())
    }

    /// Encode the rows of `columns` into `self.text`.
    fn encode_rows(&mut self, columns: &arrow_array::RecordBatch) -> Result<()> {
        let views: Vec<ColumnView<'_>> = columns
            .columns()
            .iter()
            .zip(&self.table.columns)
            .map(|(a, c)| ColumnView::of(a.as_ref(), &c.logical_type))
            .collect::<Result<_>>()?;
        self.text.clear();
        for row in 0..columns.num_rows() {
            for (i, col) in views.iter().enumerate() {
                if i > 0 {
                    self.text.push(b',');
                }
                self.field.clear();
                if col.render(row, &mut self.field) {
                    push_field(&mut self.text, &self.field);
                }
            }
            self.text.extend_from_slice(b"\r\n");
        }
        Ok(())
    }

    fn close_part(&mut self) -> Result<()> {
        let Some(mut part) = self.current.take() else {
            return Ok(());
        };
        let n = self.first_part + self.parts.len();
        let url = self.store.url_of(&part.rel);
        if let Some(e) = part.sink.counted().upload.take_failure() {
            return Err(e);
        }
        let mut upload = part
            .sink
            .finish()
            .map_err(|e| Error::internal(format!("could not finish {url}: {e}")))?;
        if let Some(e) = upload.take_failure() {
            return Err(e);
        }
        let file = upload.finish()?;
        let misfits = if part.misfits.is_empty() {
            None
        } else {
            Some(write_misfit_file(
                &self.store,
                &self.handle,
                &misfit_path(&self.table.name, n),
                &part.misfits,
                &writer_properties(self.options.compression),
            )?)
        };
        self.parts.push(Part {
            file,
            rows: part.rows,
            misfits,
        });
        Ok(())
    }

    /// Close the last part and return every part written; with
    /// `empty_file`, a table without rows gets one part all the same: the
    /// header row alone.
    pub fn finish(mut self, empty_file: bool) -> Result<Vec<Part>> {
        if empty_file && self.parts.is_empty() {
            self.open()?;
        }
        self.close_part()?;
        Ok(self.parts)
    }
}

/// A typed view of one column of a batch, for writing.
struct ColumnView<'a> {
    array: &'a dyn Array,
    kind: ViewKind<'a>,
    form: TextForm,
}

/// Which text forms a [`ValueText`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextForm {
    /// A CSV data file's ([`crate::codec`]).
    Csv,
    /// PostgreSQL's input forms (what `COPY ... FROM` reads): as `Csv`, but
    /// dates and timestamps before year 1 end in ` BC` and later years
    /// have no sign.
    Postgres,
}

/// The text of a column's values, one at a time, without allocating.
pub struct ValueText<'a>(ColumnView<'a>);

impl<'a> ValueText<'a> {
    /// A view of `array`, a column of logical type `t`.
    pub fn new(array: &'a dyn Array, t: &LogicalType, form: TextForm) -> Result<ValueText<'a>> {
        ColumnView::of_form(array, t, form).map(ValueText)
    }

    /// Append the text of the value at `row` to `out`; `false` (and nothing
    /// appended) for NULL.
    pub fn write(&self, row: usize, out: &mut Vec<u8>) -> bool {
        self.0.render(row, out)
    }
}

enum ViewKind<'a> {
    Bool(&'a arrow_array::BooleanArray),
    Int16(&'a arrow_array::Int16Array),
    Int32(&'a arrow_array::Int32Array),
    Int(&'a arrow_array::Int64Array),
    Float32(&'a arrow_array::Float32Array),
    Float(&'a arrow_array::Float64Array),
    /// `utf8`, `json` and `decimal` (text) columns.
    Text(&'a arrow_array::StringArray),
    Bin(&'a arrow_array::BinaryArray),
    Date(&'a arrow_array::Date32Array),
    Time(&'a arrow_array::Time64MicrosecondArray),
    Timestamp(&'a arrow_array::TimestampMicrosecondArray),
    TimestampTz(&'a arrow_array::TimestampMicrosecondArray),
    Decimal(&'a arrow_array::Decimal128Array, i8),
    Decimal256(&'a arrow_array::Decimal256Array, i8),
    Interval(
        &'a arrow_array::Int32Array,
        &'a arrow_array::Int32Array,
        &'a arrow_array::Int64Array,
    ),
    Uuid(&'a arrow_array::FixedSizeBinaryArray),
    /// The list, the view of its values, and whether its elements are
    /// lists themselves (written bare, never quoted).
    List(&'a arrow_array::ListArray, Box<ColumnView<'a>>, bool),
}

/// The text of every value of `array` (a column of logical type `t`) as a
/// CSV data file writes it ([`crate::codec`]; NULL stays NULL): the form
/// in which engines without the type store its values.
pub fn text_column(array: &dyn Array, t: &LogicalType) -> Result<arrow_array::StringArray> {
    let view = ColumnView::of(array, t)?;
    let mut text = Vec::with_capacity(64);
    let mut out = arrow_array::builder::StringBuilder::with_capacity(array.len(), array.len() * 16);
    for row in 0..array.len() {
        text.clear();
        if view.render(row, &mut text) {
            let s = std::str::from_utf8(&text)
                .map_err(|_| Error::internal(format!("the text of a {t} value is not UTF-8")))?;
            out.append_value(s);
        } else {
            out.append_null();
        }
    }
    Ok(out.finish())
}

/// Whether a list element's text must be quoted in PostgreSQL's array
/// form: empty, `NULL` in any case, or holding `{`, `}`, `,`, `"`, `\` or
/// white space.
fn element_needs_quotes(text: &[u8]) -> bool {
    text.is_empty()
        || text.eq_ignore_ascii_case(b"NULL")
        || text
            .iter()
            .any(|&b| matches!(b, b'{' | b'}' | b',' | b'"' | b'\\') || b.is_ascii_whitespace())
}

impl<'a> ColumnView<'a> {
    fn of(a: &'a dyn Array, t: &LogicalType) -> Result<ColumnView<'a>> {
        ColumnView::of_form(a, t, TextForm::Csv)
    }

    fn of_form(a: &'a dyn Array, t: &LogicalType, form: TextForm) -> Result<ColumnView<'a>> {
        let any = a.as_any();
        let kind = match t {
            LogicalType::Bool => any.downcast_ref().map(ViewKind::Bool),
            LogicalType::Int16 => any.downcast_ref().map(ViewKind::Int16),
            LogicalType::Int32 => any.downcast_ref().map(ViewKind::Int32),
            LogicalType::Int64 => any.downcast_ref().map(ViewKind::Int),
            LogicalType::Float32 => any.downcast_ref().map(ViewKind::Float32),
            LogicalType::Float64 => any.downcast_ref().map(ViewKind::Float),
            LogicalType::Utf8 | LogicalType::Json | LogicalType::DecimalText => {
                any.downcast_ref().map(ViewKind::Text)
            }
            LogicalType::Binary => any.downcast_ref().map(ViewKind::Bin),
            LogicalType::Date => any.downcast_ref().map(ViewKind::Date),
            LogicalType::Time => any.downcast_ref().map(ViewKind::Time),
            LogicalType::Timestamp => any.downcast_ref().map(ViewKind::Timestamp),
            LogicalType::TimestampTz => any.downcast_ref().map(ViewKind::TimestampTz),
            LogicalType::Decimal { precision, scale } if *precision <= 38 => {
                any.downcast_ref().map(|d| ViewKind::Decimal(d, *scale))
            }
            LogicalType::Decimal { scale, .. } => {
                any.downcast_ref().map(|d| ViewKind::Decimal256(d, *scale))
            }
            LogicalType::Interval => any
                .downcast_ref::<arrow_array::StructArray>()
                .and_then(|s| {
                    Some(ViewKind::Interval(
                        s.column(0).as_any().downcast_ref()?,
                        s.column(1).as_any().downcast_ref()?,
                        s.column(2).as_any().downcast_ref()?,
                    ))
                }),
            LogicalType::Uuid => any
                .downcast_ref::<arrow_array::FixedSizeBinaryArray>()
                .filter(|a| a.value_length() == 16)
                .map(ViewKind::Uuid),
            LogicalType::List(element) => match any.downcast_ref::<arrow_array::ListArray>() {
                Some(l) => {
                    let values = ColumnView::of_form(l.values().as_ref(), element, form)?;
                    let nested = matches!(**element, LogicalType::List(_));
                    Some(ViewKind::List(l, Box::new(values), nested))
                }
                None => None,
            },
        };
        match kind {
            Some(kind) => Ok(ColumnView {
                array: a,
                kind,
                form,
            }),
            None => Err(Error::internal(format!(
                "a {} column was handed to the CSV writer as {}",
                t,
                a.data_type()
            ))),
        }
    }

    /// Render the value at `row` into `out`; `false` for NULL.
    fn render(&self, row: usize, out: &mut Vec<u8>) -> bool {
        if !self.array.is_valid(row) {
            return false;
        }
        match &self.kind {
            ViewKind::Bool(a) => codec::format_bool(a.value(row), out),
            ViewKind::Int16(a) => {
                let _ = write!(out, "{}", a.value(row));
            }
            ViewKind::Int32(a) => {
                let _ = write!(out, "{}", a.value(row));
            }
            ViewKind::Int(a) => {
                let _ = write!(out, "{}", a.value(row));
            }
            ViewKind::Float32(a) => codec::format_f32(a.value(row), out),
            ViewKind::Float(a) => out.extend_from_slice(real_text(a.value(row)).as_bytes()),
            ViewKind::Text(a) => out.extend_from_slice(a.value(row).as_bytes()),
            ViewKind::Bin(a) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let v = a.value(row);
                out.reserve(2 + v.len() * 2);
                out.extend_from_slice(b"\\x");
                for b in v {
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 15)]);
                }
            }
            ViewKind::Date(a) => match self.form {
                TextForm::Csv => codec::format_date(a.value(row), out),
                TextForm::Postgres => codec::format_pg_date(a.value(row), out),
            },
            ViewKind::Time(a) => codec::format_time(a.value(row), out),
            ViewKind::Timestamp(a) => match self.form {
                TextForm::Csv => codec::format_timestamp(a.value(row), out),
                TextForm::Postgres => codec::format_pg_timestamp(a.value(row), false, out),
            },
            ViewKind::TimestampTz(a) => match self.form {
                TextForm::Csv => codec::format_timestamptz(a.value(row), out),
                TextForm::Postgres => codec::format_pg_timestamp(a.value(row), true, out),
            },
            ViewKind::Decimal(a, scale) => codec::format_decimal128(a.value(row), *scale, out),
            ViewKind::Decimal256(a, scale) => codec::format_decimal256(a.value(row), *scale, out),
            ViewKind::Interval(months, days, micros) => {
                codec::format_interval(months.value(row), days.value(row), micros.value(row), out)
            }
            ViewKind::Uuid(a) => codec::format_uuid(a.value(row), out),
            ViewKind::List(list, values, nested) => {
                let offsets = list.value_offsets();
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                out.push(b'{');
                for i in start..end {
                    if i > start {
                        out.push(b',');
                    }
                    let mark = out.len();
                    if !values.render(i, out) {
                        out.extend_from_slice(b"NULL");
                    } else if !*nested && element_needs_quotes(&out[mark..]) {
                        let text = out.split_off(mark);
                        out.push(b'"');
                        for b in text {
                            if b == b'"' || b == b'\\' {
                                out.push(b'\\');
                            }
                            out.push(b);
                        }
                        out.push(b'"');
                    }
                }
                out.push(b'}');
            }
        }
        true
    }
}

/// A column being read, in the table's type. Builders live once per column
/// of a part being read, so their sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum ColumnBuilder {
    Bool(arrow_array::builder::BooleanBuilder),
    Int16(arrow_array::builder::Int16Builder),
    Int32(arrow_array::builder::Int32Builder),
    Int(arrow_array::builder::Int64Builder),
    Float32(arrow_array::builder::Float32Builder),
    Float(arrow_array::builder::Float64Builder),
    Text(arrow_array::builder::StringBuilder),
    Json(arrow_array::builder::StringBuilder),
    DecimalText(arrow_array::builder::StringBuilder),
    Bin(arrow_array::builder::BinaryBuilder),
    Date(arrow_array::builder::Date32Builder),
    Time(arrow_array::builder::Time64MicrosecondBuilder),
    Timestamp(arrow_array::builder::TimestampMicrosecondBuilder),
    TimestampTz(arrow_array::builder::TimestampMicrosecondBuilder),
    Decimal(arrow_array::builder::Decimal128Builder, u8, i8),
    Decimal256(arrow_array::builder::Decimal256Builder, u8, i8),
    Interval {
        months: arrow_array::builder::Int32Builder,
        days: arrow_array::builder::Int32Builder,
        micros: arrow_array::builder::Int64Builder,
        valid: arrow_array::builder::BooleanBufferBuilder,
    },
    Uuid(arrow_array::builder::FixedSizeBinaryBuilder),
    List {
        item: arrow_schema::FieldRef,
        offsets: Vec<i32>,
        valid: arrow_array::builder::BooleanBufferBuilder,
        values: Box<ColumnBuilder>,
        /// Unescaped text of the element being read.
        scratch: Vec<u8>,
    },
}

impl ColumnBuilder {
    fn new(t: &LogicalType) -> ColumnBuilder {
        use arrow_array::builder::*;
        match t {
            LogicalType::Bool => ColumnBuilder::Bool(BooleanBuilder::new()),
            LogicalType::Int16 => ColumnBuilder::Int16(Int16Builder::new()),
            LogicalType::Int32 => ColumnBuilder::Int32(Int32Builder::new()),
            LogicalType::Int64 => ColumnBuilder::Int(Int64Builder::new()),
            LogicalType::Float32 => ColumnBuilder::Float32(Float32Builder::new()),
            LogicalType::Float64 => ColumnBuilder::Float(Float64Builder::new()),
            LogicalType::Utf8 => ColumnBuilder::Text(StringBuilder::new()),
            LogicalType::Json => ColumnBuilder::Json(StringBuilder::new()),
            LogicalType::DecimalText => ColumnBuilder::DecimalText(StringBuilder::new()),
            LogicalType::Binary => ColumnBuilder::Bin(BinaryBuilder::new()),
            LogicalType::Date => ColumnBuilder::Date(Date32Builder::new()),
            LogicalType::Time => ColumnBuilder::Time(Time64MicrosecondBuilder::new()),
            LogicalType::Timestamp => ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new()),
            LogicalType::TimestampTz => {
                ColumnBuilder::TimestampTz(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            LogicalType::Decimal { precision, scale } if *precision <= 38 => {
                ColumnBuilder::Decimal(Decimal128Builder::new(), *precision, *scale)
            }
            LogicalType::Decimal { precision, scale } => {
                ColumnBuilder::Decimal256(Decimal256Builder::new(), *precision, *scale)
            }
            LogicalType::Interval => ColumnBuilder::Interval {
                months: Int32Builder::new(),
                days: Int32Builder::new(),
                micros: Int64Builder::new(),
                valid: BooleanBufferBuilder::new(1024),
            },
            LogicalType::Uuid => ColumnBuilder::Uuid(FixedSizeBinaryBuilder::new(16)),
            LogicalType::List(element) => ColumnBuilder::List {
                item: Arc::new(super::arrow_field("item", element)),
                offsets: vec![0],
                valid: BooleanBufferBuilder::new(1024),
                values: Box::new(ColumnBuilder::new(element)),
                scratch: Vec::new(),
            },
        }
    }

    fn is_text(&self) -> bool {
        matches!(self, ColumnBuilder::Text(_) | ColumnBuilder::Json(_))
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::Int16(b) => b.append_null(),
            ColumnBuilder::Int32(b) => b.append_null(),
            ColumnBuilder::Int(b) => b.append_null(),
            ColumnBuilder::Float32(b) => b.append_null(),
            ColumnBuilder::Float(b) => b.append_null(),
            ColumnBuilder::Text(b) | ColumnBuilder::Json(b) | ColumnBuilder::DecimalText(b) => {
                b.append_null()
            }
            ColumnBuilder::Bin(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Time(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) | ColumnBuilder::TimestampTz(b) => b.append_null(),
            ColumnBuilder::Decimal(b, ..) => b.append_null(),
            ColumnBuilder::Decimal256(b, ..) => b.append_null(),
            ColumnBuilder::Interval {
                months,
                days,
                micros,
                valid,
            } => {
                months.append_value(0);
                days.append_value(0);
                micros.append_value(0);
                valid.append(false);
            }
            ColumnBuilder::Uuid(b) => b.append_null(),
            ColumnBuilder::List { offsets, valid, .. } => {
                offsets.push(*offsets.last().expect("offsets start with 0"));
                valid.append(false);
            }
        }
    }

    /// Append a field, `quoted` or not, of a file of archive format
    /// `version`; `Err` with what is wrong with it.
    fn append(
        &mut self,
        field: &[u8],
        quoted: bool,
        version: u32,
        layout: Option<Layout>,
    ) -> std::result::Result<(), String> {
        // NULL is an unquoted empty field. Version 1 also quoted the empty
        // field of a one-column NULL row; empty text was an empty field
        // with a misfit entry, and reads back from that entry.
        if field.is_empty() && (!quoted || version == 1 || !self.is_text()) {
            if quoted && version != 1 {
                return Err("a quoted empty field is empty text, not a value of this type".into());
            }
            self.append_null();
            return Ok(());
        }
        let text = || std::str::from_utf8(field).map_err(|_| "it is not UTF-8".to_string());
        let bad = |what: &str| format!("'{}' is not {what}", String::from_utf8_lossy(field));
        match self {
            ColumnBuilder::Bool(b) => {
                b.append_value(codec::parse_bool(field).ok_or_else(|| bad("true or false"))?)
            }
            ColumnBuilder::Int16(b) => {
                b.append_value(text()?.parse().map_err(|_| bad("a 16-bit integer"))?)
            }
            ColumnBuilder::Int32(b) => {
                b.append_value(text()?.parse().map_err(|_| bad("a 32-bit integer"))?)
            }
            ColumnBuilder::Int(b) => {
                b.append_value(text()?.parse().map_err(|_| bad("an integer"))?)
            }
            ColumnBuilder::Float32(b) => {
                b.append_value(text()?.parse().map_err(|_| bad("a number"))?)
            }
            ColumnBuilder::Float(b) => {
                b.append_value(text()?.parse().map_err(|_| bad("a number"))?)
            }
            ColumnBuilder::Text(b) | ColumnBuilder::Json(b) => b.append_value(text()?),
            ColumnBuilder::DecimalText(b) => {
                if !codec::is_decimal_text(field) {
                    return Err(bad("a decimal number"));
                }
                b.append_value(text()?)
            }
            ColumnBuilder::Bin(b) => {
                // `\x` and hex; version 1 wrote the hex alone.
                let hex = if version == 1 {
                    field
                } else {
                    field
                        .strip_prefix(b"\\x")
                        .ok_or_else(|| bad("bytes in \\x hex form"))?
                };
                if !hex.len().is_multiple_of(2) {
                    return Err(bad("hexadecimal bytes"));
                }
                let mut bytes = Vec::with_capacity(hex.len() / 2);
                for pair in hex.chunks(2) {
                    let hi = (pair[0] as char).to_digit(16);
                    let lo = (pair[1] as char).to_digit(16);
                    match (hi, lo) {
                        (Some(h), Some(l)) => bytes.push((h * 16 + l) as u8),
                        _ => return Err(bad("hexadecimal bytes")),
                    }
                }
                b.append_value(bytes);
            }
            ColumnBuilder::Date(b) => {
                b.append_value(codec::parse_date(field).ok_or_else(|| bad("a date"))?)
            }
            ColumnBuilder::Time(b) => {
                b.append_value(codec::parse_time(field).ok_or_else(|| bad("a time"))?)
            }
            ColumnBuilder::Timestamp(b) => {
                // Archives before format 3 wrote a timestamp in the layout
                // of its SQLite text (the column's `text_format`).
                let layout = layout.filter(|l| l.has_time() && version < 3);
                let v = match layout {
                    Some(_) => crate::codec::layout::parse_timestamp_text(field, layout),
                    // Archives before format 3 wrote any of SQLite's
                    // layouts; read them all.
                    None => codec::parse_timestamp(field)
                        .or_else(|| crate::codec::layout::parse_timestamp_text(field, None)),
                };
                b.append_value(v.ok_or_else(|| bad("a timestamp"))?)
            }
            ColumnBuilder::TimestampTz(b) => b.append_value(
                codec::parse_timestamptz(field).ok_or_else(|| bad("a timestamp in UTC"))?,
            ),
            ColumnBuilder::Decimal(b, precision, scale) => b.append_value(
                parse_decimal(text()?, *precision, *scale).ok_or_else(|| bad("a decimal"))?,
            ),
            ColumnBuilder::Decimal256(b, precision, scale) => b.append_value(
                codec::parse_decimal256(field, *precision, *scale)
                    .ok_or_else(|| bad("a decimal"))?,
            ),
            ColumnBuilder::Interval {
                months,
                days,
                micros,
                valid,
            } => {
                let (m, d, us) = codec::parse_interval(field).ok_or_else(|| bad("an interval"))?;
                months.append_value(m);
                days.append_value(d);
                micros.append_value(us);
                valid.append(true);
            }
            ColumnBuilder::Uuid(b) => {
                let v = codec::parse_uuid(field).ok_or_else(|| bad("a UUID"))?;
                b.append_value(v).map_err(|e| e.to_string())?;
            }
            ColumnBuilder::List { .. } => {
                let mut pos = 0;
                self.append_list(field, &mut pos, version)
                    .map_err(|what| format!("{} ({what})", bad("a list")))?;
                if pos != field.len() {
                    return Err(bad("a list (text after its closing brace)"));
                }
            }
        }
        Ok(())
    }

    /// Append the list in PostgreSQL's array form at `s[*pos..]` (see the
    /// module docs), moving `pos` past it.
    fn append_list(
        &mut self,
        s: &[u8],
        pos: &mut usize,
        version: u32,
    ) -> std::result::Result<(), String> {
        let ColumnBuilder::List {
            offsets,
            valid,
            values,
            scratch,
            ..
        } = self
        else {
            return Err("a list where none belongs".into());
        };
        if s.get(*pos) != Some(&b'{') {
            return Err("no opening brace".into());
        }
        *pos += 1;
        let nested = matches!(**values, ColumnBuilder::List { .. });
        let mut count = 0i32;
        if s.get(*pos) == Some(&b'}') {
            *pos += 1;
        } else {
            loop {
                match s.get(*pos) {
                    Some(b'{') if nested => values.append_list(s, pos, version)?,
                    Some(b'"') => {
                        *pos += 1;
                        let mut text = std::mem::take(scratch);
                        text.clear();
                        loop {
                            match s.get(*pos) {
                                Some(b'"') => break,
                                Some(b'\\') => {
                                    text.push(*s.get(*pos + 1).ok_or("an unclosed element")?);
                                    *pos += 2;
                                }
                                Some(&b) => {
                                    text.push(b);
                                    *pos += 1;
                                }
                                None => return Err("an unclosed element".into()),
                            }
                        }
                        *pos += 1;
                        let done = values.append(&text, true, version, None);
                        *scratch = text;
                        done?;
                    }
                    _ => {
                        let start = *pos;
                        while let Some(&b) = s.get(*pos) {
                            if b == b',' || b == b'}' {
                                break;
                            }
                            *pos += 1;
                        }
                        let token = &s[start..*pos];
                        if token == b"NULL" {
                            values.append_null();
                        } else if token.is_empty() || nested {
                            return Err("an empty element".into());
                        } else {
                            values.append(token, false, version, None)?;
                        }
                    }
                }
                count += 1;
                match s.get(*pos) {
                    Some(b',') => *pos += 1,
                    Some(b'}') => {
                        *pos += 1;
                        break;
                    }
                    _ => return Err("no closing brace".into()),
                }
            }
        }
        let last = *offsets.last().expect("offsets start with 0");
        offsets.push(last.checked_add(count).ok_or("too many elements")?);
        valid.append(true);
        Ok(())
    }

    fn finish(&mut self) -> Result<arrow_array::ArrayRef> {
        let internal = |e: arrow_schema::ArrowError| Error::internal(e.to_string());
        Ok(match self {
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Int16(b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(b) => Arc::new(b.finish()),
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::Float32(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) | ColumnBuilder::Json(b) | ColumnBuilder::DecimalText(b) => {
                Arc::new(b.finish())
            }
            ColumnBuilder::Bin(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Time(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) | ColumnBuilder::TimestampTz(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .map_err(internal)?,
            ),
            ColumnBuilder::Decimal256(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .map_err(internal)?,
            ),
            ColumnBuilder::Interval {
                months,
                days,
                micros,
                valid,
            } => {
                let nulls = NullBuffer::new(valid.finish());
                Arc::new(
                    arrow_array::StructArray::try_new(
                        super::interval_fields(),
                        vec![
                            Arc::new(months.finish()),
                            Arc::new(days.finish()),
                            Arc::new(micros.finish()),
                        ],
                        Some(nulls),
                    )
                    .map_err(internal)?,
                )
            }
            ColumnBuilder::Uuid(b) => Arc::new(b.finish()),
            ColumnBuilder::List {
                item,
                offsets,
                valid,
                values,
                ..
            } => {
                let offsets = std::mem::replace(offsets, vec![0]);
                let nulls = NullBuffer::new(valid.finish());
                Arc::new(
                    arrow_array::ListArray::try_new(
                        item.clone(),
                        arrow_buffer::OffsetBuffer::new(offsets.into()),
                        values.finish()?,
                        Some(nulls),
                    )
                    .map_err(internal)?,
                )
            }
        })
    }
}

/// Reads RFC 4180 records, keeping apart a quoted empty field (`""`)
/// and an unquoted one, which general CSV readers do not.
struct RecordReader<R> {
    input: R,
    /// The bytes of the current record's fields, one after the other.
    buf: Vec<u8>,
    /// Per field: where it ends in `buf`, and whether it was quoted.
    fields: Vec<(usize, bool)>,
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    /// A `"` inside a quoted field: the end of the field, or the first of
    /// a doubled quote.
    QuoteInQuoted,
    /// After a CR that ends the record, before its LF.
    Cr,
}

impl<R: std::io::BufRead> RecordReader<R> {
    fn new(input: R) -> Self {
        RecordReader {
            input,
            buf: Vec::with_capacity(4096),
            fields: Vec::with_capacity(64),
        }
    }

    /// The fields of the current record.
    fn fields(&self) -> impl Iterator<Item = (&[u8], bool)> + '_ {
        let mut start = 0;
        self.fields.iter().map(move |&(end, quoted)| {
            let f = &self.buf[start..end];
            start = end;
            (f, quoted)
        })
    }

    /// Read the next record; `false` at the end of the input.
    fn next(&mut self) -> std::result::Result<bool, String> {
        self.buf.clear();
        self.fields.clear();
        let mut state = State::FieldStart;
        let mut quoted = false;
        let mut started = false;
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.to_string()),
            };
            if chunk.is_empty() {
                return match state {
                    _ if !started => Ok(false),
                    State::Quoted => Err("a quoted field is not closed".into()),
                    State::Cr => Ok(true),
                    _ => {
                        self.fields.push((self.buf.len(), quoted));
                        Ok(true)
                    }
                };
            }
            started = true;
            let mut used = 0;
            let mut done = false;
            for &b in chunk {
                used += 1;
                match (state, b) {
                    (State::Cr, b'\n') => {
                        done = true;
                        break;
                    }
                    (State::Cr, _) => return Err("a CR that is not followed by LF".into()),
                    (State::FieldStart, b'"') => {
                        quoted = true;
                        state = State::Quoted;
                    }
                    (State::Quoted, b'"') => state = State::QuoteInQuoted,
                    (State::Quoted, _) => self.buf.push(b),
                    (State::QuoteInQuoted, b'"') => {
                        self.buf.push(b'"');
                        state = State::Quoted;
                    }
                    (State::FieldStart | State::Unquoted | State::QuoteInQuoted, b',') => {
                        self.fields.push((self.buf.len(), quoted));
                        quoted = false;
                        state = State::FieldStart;
                    }
                    (State::FieldStart | State::Unquoted | State::QuoteInQuoted, b'\r' | b'\n') => {
                        self.fields.push((self.buf.len(), quoted));
                        if b == b'\n' {
                            done = true;
                            break;
                        }
                        state = State::Cr;
                    }
                    (State::QuoteInQuoted, _) => {
                        return Err("a quoted field goes on after its closing quote".into());
                    }
                    (State::Unquoted, b'"') => {
                        return Err("a quote inside an unquoted field".into());
                    }
                    (State::FieldStart | State::Unquoted, _) => {
                        self.buf.push(b);
                        state = State::Unquoted;
                    }
                }
            }
            self.input.consume(used);
            if done {
                return Ok(true);
            }
        }
    }
}

/// Decode one CSV part (and its misfit side file) of `table`, written by an
/// archive of format `version`, handing batches to `sink`; see
/// [`super::read_part`].
pub fn read_part(
    version: u32,
    table: &Table,
    data: Bytes,
    misfits: Option<(Bytes, &str)>,
    origin: &str,
    sink: &mut dyn FnMut(DataBatch) -> Result<()>,
) -> Result<u64> {
    let damaged =
        |what: String| Error::corrupt(format!("{origin} is not a readable data file ({what})"));
    let (misfits, side_origin) = match misfits {
        Some((bytes, side)) => (read_misfits(bytes, side, table.columns.len())?, side),
        None => (Vec::new(), origin),
    };
    let mut misfits = misfits.into_iter().peekable();
    let input: Box<dyn Read + '_> = if data.starts_with(&ZSTD_MAGIC) {
        Box::new(
            zstd::stream::read::Decoder::new(&data[..])
                .map_err(|e| damaged(format!("its zstd stream: {e}")))?,
        )
    } else {
        Box::new(&data[..])
    };
    let mut reader = RecordReader::new(std::io::BufReader::with_capacity(256 * 1024, input));
    let has_header = reader.next().map_err(&damaged)?;
    let same = has_header
        && reader.fields.len() == table.columns.len()
        && reader
            .fields()
            .zip(&table.columns)
            .all(|((h, _), c)| h == c.name.as_bytes());
    if !same {
        return Err(damaged(format!(
            "its header does not name the columns of table '{}' in the manifest",
            table.name
        )));
    }
    let layouts: Vec<Option<Layout>> = table
        .columns
        .iter()
        .map(|c| c.text_format.as_deref().and_then(Layout::parse))
        .collect();
    let schema = arrow_schema(table);
    let mut builders: Vec<ColumnBuilder> = table
        .columns
        .iter()
        .map(|c| ColumnBuilder::new(&c.logical_type))
        .collect();
    let mut offset = 0u64;
    let mut rows = 0usize;
    let mut flush = |builders: &mut Vec<ColumnBuilder>, rows: usize, offset: u64| -> Result<()> {
        let columns = builders
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect::<Result<Vec<_>>>()?;
        let batch = arrow_array::RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| damaged(e.to_string()))?;
        let mut own = Vec::new();
        while let Some(m) = misfits.next_if(|m| m.row < offset + rows as u64) {
            if m.row < offset {
                return Err(damaged("misfit rows out of order".into()));
            }
            own.push(SideEntry {
                row: m.row - offset,
                ..m
            });
        }
        sink(hide_shown(batch, own, table, side_origin)?)
    };
    loop {
        let row = offset + rows as u64 + 1;
        let more = reader
            .next()
            .map_err(|e| damaged(format!("row {row}: {e}")))?;
        if !more {
            break;
        }
        if reader.fields.len() != table.columns.len() {
            return Err(damaged(format!(
                "row {row} has {} fields instead of {}",
                reader.fields.len(),
                table.columns.len()
            )));
        }
        for (i, (field, quoted)) in reader.fields().enumerate() {
            builders[i]
                .append(field, quoted, version, layouts[i])
                .map_err(|what| {
                    damaged(format!(
                        "row {row}, column '{}': {what}",
                        table.columns[i].name
                    ))
                })?;
        }
        rows += 1;
        if rows == READ_BATCH_ROWS {
            flush(&mut builders, rows, offset)?;
            offset += rows as u64;
            rows = 0;
        }
    }
    if rows > 0 {
        flush(&mut builders, rows, offset)?;
        offset += rows as u64;
    }
    if misfits.next().is_some() {
        return Err(damaged("misfits name rows past its end".into()));
    }
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &[u8]) -> std::result::Result<Vec<Vec<(String, bool)>>, String> {
        let mut r = RecordReader::new(text);
        let mut out = Vec::new();
        while r.next()? {
            out.push(
                r.fields()
                    .map(|(f, q)| (String::from_utf8_lossy(f).into_owned(), q))
                    .collect(),
            );
        }
        Ok(out)
    }

    #[test]
    fn quoted_and_unquoted_empty_fields_stay_apart() {
        let f = |s: &str, q: bool| (s.to_string(), q);
        assert_eq!(
            records(b"a,b\r\n,\"\"\r\n\"x,\"\"y\"\"\r\nz\",w\r\n\r\nlast,\"\"").unwrap(),
            [
                vec![f("a", false), f("b", false)],
                vec![f("", false), f("", true)],
                vec![f("x,\"y\"\r\nz", true), f("w", false)],
                vec![f("", false)],
                vec![f("last", false), f("", true)],
            ]
        );
        assert!(records(b"a\"b\r\n").is_err());
        assert!(records(b"\"open\r\n").is_err());
        assert!(records(b"\"a\"b\r\n").is_err());
    }

    #[test]
    fn fields_are_written_so_that_they_read_back() {
        let mut out = Vec::new();
        for f in [&b""[..], b"plain", b"a,b", b"q\"uote", b"line\nbreak"] {
            push_field(&mut out, f);
            out.push(b',');
        }
        assert_eq!(
            out,
            b"\"\",plain,\"a,b\",\"q\"\"uote\",\"line\nbreak\",".to_vec()
        );
    }

    #[test]
    fn bytes_and_empty_fields_by_version() {
        let mut b = ColumnBuilder::new(&LogicalType::Binary);
        b.append(b"\\x00ff", false, 2, None).unwrap();
        b.append(b"\\x", false, 2, None).unwrap();
        b.append(b"", false, 2, None).unwrap();
        b.append(b"00ff", false, 1, None).unwrap();
        assert!(b.append(b"00ff", false, 2, None).is_err());
        let a = b.finish().unwrap();
        let a = a
            .as_any()
            .downcast_ref::<arrow_array::BinaryArray>()
            .unwrap();
        assert_eq!(a.value(0), [0, 255]);
        assert_eq!(a.value(1), b"");
        assert!(arrow_array::Array::is_null(a, 2));
        assert_eq!(a.value(3), [0, 255]);

        let mut t = ColumnBuilder::new(&LogicalType::Utf8);
        t.append(b"", true, 2, None).unwrap();
        t.append(b"", false, 2, None).unwrap();
        t.append(b"", true, 1, None).unwrap();
        let a = t.finish().unwrap();
        let a = a
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap();
        assert_eq!(a.value(0), "");
        assert!(arrow_array::Array::is_null(a, 1));
        assert!(
            arrow_array::Array::is_null(a, 2),
            "version 1 quoted only NULLs"
        );
        let mut n = ColumnBuilder::new(&LogicalType::Int64);
        assert!(n.append(b"", true, 2, None).is_err());
    }
}
