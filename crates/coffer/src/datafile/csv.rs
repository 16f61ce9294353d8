//! CSV data files (exports with `--format csv`).
//!
//! One file per part, `tables/<segment>/part-NNNNN.csv`, or
//! `part-NNNNN.csv.zst` (one zstd frame over the whole file) when
//! compression is on. RFC 4180: a header row with the column names, fields
//! separated by `,`, records ended by CRLF, a field quoted with `"` (and
//! inner quotes doubled) when it holds `,`, `"`, CR or LF.
//!
//! Values, by the column's type in the manifest: integers in decimal;
//! doubles in the shortest text that reads back to the same bits (`0.1`,
//! `1e300`, `-0.0`, `inf`, `-inf`); text as is; bytes as lowercase hex;
//! dates `YYYY-MM-DD`; timestamps in the column's `text_format` (else
//! `YYYY-MM-DD HH:MM:SS[.ffffff]`); decimals with exactly `scale` digits after
//! the point. NULL is an empty field.
//!
//! What CSV cannot carry, the part's misfit file carries (the same Parquet
//! side file as for Parquet parts), so coffer reads a CSV export back
//! exactly: values that do not fit their column's type, and **empty text
//! and empty bytes**, which would otherwise read back as NULL.

use std::io::{Read, Write};

use bytes::Bytes;
use tokio::runtime::Handle;

use super::{
    Compression, WriteOptions, arrow_schema, misfit_batch, misfit_path, misfit_schema,
    read_misfits, writer_properties,
};
use crate::engine::{DataBatch, Misfit, RawValue};
use crate::error::{Error, Result};
use crate::manifest::{FileRef, LogicalType, Part, Table, path_segment};
use crate::portable::{Layout, format_date, format_decimal, parse_date, parse_decimal};
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
    misfits: Vec<Misfit>,
}

/// Writes one table's batches as CSV parts (see the module docs).
pub struct CsvTableWriter {
    store: Store,
    handle: Handle,
    table: Table,
    options: WriteOptions,
    layouts: Vec<Option<Layout>>,
    csv: csv::WriterBuilder,
    current: Option<OpenPart>,
    parts: Vec<Part>,
    field: Vec<u8>,
    text: Vec<u8>,
}

impl CsvTableWriter {
    /// A writer for `table`'s data into `store`.
    pub fn new(store: Store, handle: Handle, table: &Table, options: WriteOptions) -> Self {
        let mut csv = csv::WriterBuilder::new();
        csv.terminator(csv::Terminator::CRLF)
            .quote_style(csv::QuoteStyle::Necessary);
        CsvTableWriter {
            layouts: table
                .columns
                .iter()
                .map(|c| c.text_format.as_deref().and_then(Layout::parse))
                .collect(),
            store,
            handle,
            table: table.clone(),
            options,
            csv,
            current: None,
            parts: Vec::new(),
            field: Vec::with_capacity(64),
            text: Vec::with_capacity(1 << 20),
        }
    }

    fn open(&mut self) -> Result<()> {
        if self.current.is_some() {
            return Ok(());
        }
        let rel = part_path(&self.table.name, self.parts.len(), self.options.compression);
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
        {
            let mut w = self.csv.from_writer(&mut self.text);
            w.write_record(self.table.columns.iter().map(|c| c.name.as_bytes()))
                .and_then(|()| w.flush().map_err(Into::into))
                .map_err(|e| Error::internal(format!("could not encode a CSV header: {e}")))?;
        }
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
        self.open()?;
        let mut part = self.current.take().expect("part is open");
        let encoded = self.encode_rows(&mut part, &batch);
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
        part.rows += batch.num_rows() as u64;
        part.misfits.extend(batch.misfits.into_iter().map(|mut m| {
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

    /// Encode the batch's rows into `self.text`.
    fn encode_rows(&mut self, part: &mut OpenPart, batch: &DataBatch) -> Result<()> {
        let columns: Vec<ColumnView<'_>> = batch
            .columns
            .columns()
            .iter()
            .zip(&self.table.columns)
            .map(|(a, c)| ColumnView::of(a.as_ref(), c.logical_type))
            .collect::<Result<_>>()?;
        let base = part.rows;
        self.text.clear();
        let mut w = self.csv.from_writer(&mut self.text);
        let encode_err = |e: csv::Error| Error::internal(format!("could not encode CSV: {e}"));
        for row in 0..batch.num_rows() {
            for (i, col) in columns.iter().enumerate() {
                self.field.clear();
                match col.render(row, self.layouts[i], &mut self.field) {
                    Rendered::Value | Rendered::Null => {}
                    Rendered::Empty(value) => part.misfits.push(Misfit {
                        row: base + row as u64,
                        column: i as u32,
                        value,
                    }),
                }
                w.write_field(&self.field).map_err(encode_err)?;
            }
            w.write_record(None::<&[u8]>).map_err(encode_err)?;
        }
        w.flush()
            .map_err(|e| Error::internal(format!("could not encode CSV: {e}")))?;
        Ok(())
    }

    fn close_part(&mut self) -> Result<()> {
        let Some(mut part) = self.current.take() else {
            return Ok(());
        };
        let n = self.parts.len();
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
            part.misfits.sort_by_key(|m| (m.row, m.column));
            Some(write_misfit_file(
                &self.store,
                &self.handle,
                &misfit_path(&self.table.name, n),
                &part.misfits,
                self.options.compression,
            )?)
        };
        self.parts.push(Part {
            file,
            rows: part.rows,
            misfits,
        });
        Ok(())
    }

    /// Close the last part and return every part written.
    pub fn finish(mut self) -> Result<Vec<Part>> {
        self.close_part()?;
        Ok(self.parts)
    }
}

/// Write a misfit side file (the same Parquet file as for Parquet parts).
fn write_misfit_file(
    store: &Store,
    handle: &Handle,
    rel: &str,
    misfits: &[Misfit],
    compression: Compression,
) -> Result<FileRef> {
    let url = store.url_of(rel);
    let encode_err =
        |e: parquet::errors::ParquetError| Error::internal(format!("could not encode {url}: {e}"));
    let upload = Upload::new(store, rel, handle.clone());
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        upload,
        misfit_schema(),
        Some(writer_properties(compression)),
    )
    .map_err(encode_err)?;
    for chunk in misfits.chunks(8192) {
        if let Err(e) = writer.write(&misfit_batch(chunk)) {
            return Err(writer
                .inner_mut()
                .take_failure()
                .unwrap_or_else(|| encode_err(e)));
        }
    }
    writer.into_inner().map_err(encode_err)?.finish()
}

enum Rendered {
    Value,
    Null,
    /// An empty text or blob: written as an empty field, carried as a misfit.
    Empty(RawValue),
}

/// A typed view of one column of a batch, for writing.
enum ColumnView<'a> {
    Int(&'a arrow_array::Int64Array),
    Float(&'a arrow_array::Float64Array),
    Text(&'a arrow_array::StringArray),
    Bin(&'a arrow_array::BinaryArray),
    Date(&'a arrow_array::Date32Array),
    Timestamp(&'a arrow_array::TimestampMicrosecondArray),
    Decimal(&'a arrow_array::Decimal128Array, i8),
}

impl<'a> ColumnView<'a> {
    fn of(a: &'a dyn arrow_array::Array, t: LogicalType) -> Result<ColumnView<'a>> {
        let any = a.as_any();
        let view = match t {
            LogicalType::Int64 => any.downcast_ref().map(ColumnView::Int),
            LogicalType::Float64 => any.downcast_ref().map(ColumnView::Float),
            LogicalType::Utf8 => any.downcast_ref().map(ColumnView::Text),
            LogicalType::Binary => any.downcast_ref().map(ColumnView::Bin),
            LogicalType::Date => any.downcast_ref().map(ColumnView::Date),
            LogicalType::Timestamp => any.downcast_ref().map(ColumnView::Timestamp),
            LogicalType::Decimal { scale, .. } => {
                any.downcast_ref().map(|d| ColumnView::Decimal(d, scale))
            }
        };
        view.ok_or_else(|| {
            Error::internal(format!(
                "a {} column was handed to the CSV writer as {}",
                t,
                a.data_type()
            ))
        })
    }

    fn render(&self, row: usize, layout: Option<Layout>, out: &mut Vec<u8>) -> Rendered {
        use arrow_array::Array;
        let valid = match self {
            ColumnView::Int(a) => a.is_valid(row),
            ColumnView::Float(a) => a.is_valid(row),
            ColumnView::Text(a) => a.is_valid(row),
            ColumnView::Bin(a) => a.is_valid(row),
            ColumnView::Date(a) => a.is_valid(row),
            ColumnView::Timestamp(a) => a.is_valid(row),
            ColumnView::Decimal(a, _) => a.is_valid(row),
        };
        if !valid {
            return Rendered::Null;
        }
        match self {
            ColumnView::Int(a) => {
                let _ = write!(out, "{}", a.value(row));
            }
            ColumnView::Float(a) => {
                let v = a.value(row);
                if v.is_infinite() {
                    out.extend_from_slice(if v > 0.0 { b"inf" } else { b"-inf" });
                } else {
                    let _ = write!(out, "{v:?}");
                }
            }
            ColumnView::Text(a) => {
                let v = a.value(row);
                if v.is_empty() {
                    return Rendered::Empty(RawValue::Text(Vec::new()));
                }
                out.extend_from_slice(v.as_bytes());
            }
            ColumnView::Bin(a) => {
                let v = a.value(row);
                if v.is_empty() {
                    return Rendered::Empty(RawValue::Blob(Vec::new()));
                }
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.reserve(v.len() * 2);
                for b in v {
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 15)]);
                }
            }
            ColumnView::Date(a) => out.extend_from_slice(format_date(a.value(row)).as_bytes()),
            ColumnView::Timestamp(a) => out.extend_from_slice(
                crate::portable::format_timestamp_text(a.value(row), layout).as_bytes(),
            ),
            ColumnView::Decimal(a, scale) => {
                out.extend_from_slice(format_decimal(a.value(row), *scale).as_bytes())
            }
        }
        Rendered::Value
    }
}

/// A column being read, in the table's type.
enum ColumnBuilder {
    Int(arrow_array::builder::Int64Builder),
    Float(arrow_array::builder::Float64Builder),
    Text(arrow_array::builder::StringBuilder),
    Bin(arrow_array::builder::BinaryBuilder),
    Date(arrow_array::builder::Date32Builder),
    Timestamp(arrow_array::builder::TimestampMicrosecondBuilder),
    Decimal(arrow_array::builder::Decimal128Builder, u8, i8),
}

impl ColumnBuilder {
    fn new(t: LogicalType) -> ColumnBuilder {
        use arrow_array::builder::*;
        match t {
            LogicalType::Int64 => ColumnBuilder::Int(Int64Builder::new()),
            LogicalType::Float64 => ColumnBuilder::Float(Float64Builder::new()),
            LogicalType::Utf8 => ColumnBuilder::Text(StringBuilder::new()),
            LogicalType::Binary => ColumnBuilder::Bin(BinaryBuilder::new()),
            LogicalType::Date => ColumnBuilder::Date(Date32Builder::new()),
            LogicalType::Timestamp => ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new()),
            LogicalType::Decimal { precision, scale } => {
                ColumnBuilder::Decimal(Decimal128Builder::new(), precision, scale)
            }
        }
    }

    /// Append a field; `Err` with what is wrong with it.
    fn append(&mut self, field: &[u8], layout: Option<Layout>) -> std::result::Result<(), String> {
        if field.is_empty() {
            match self {
                ColumnBuilder::Int(b) => b.append_null(),
                ColumnBuilder::Float(b) => b.append_null(),
                ColumnBuilder::Text(b) => b.append_null(),
                ColumnBuilder::Bin(b) => b.append_null(),
                ColumnBuilder::Date(b) => b.append_null(),
                ColumnBuilder::Timestamp(b) => b.append_null(),
                ColumnBuilder::Decimal(b, ..) => b.append_null(),
            }
            return Ok(());
        }
        let text = || std::str::from_utf8(field).map_err(|_| "it is not UTF-8".to_string());
        let bad = |what: &str| format!("'{}' is not {what}", String::from_utf8_lossy(field));
        match self {
            ColumnBuilder::Int(b) => {
                b.append_value(text()?.parse().map_err(|_| bad("an integer"))?)
            }
            ColumnBuilder::Float(b) => {
                b.append_value(text()?.parse().map_err(|_| bad("a number"))?)
            }
            ColumnBuilder::Text(b) => b.append_value(text()?),
            ColumnBuilder::Bin(b) => {
                if !field.len().is_multiple_of(2) {
                    return Err(bad("hexadecimal bytes"));
                }
                let mut bytes = Vec::with_capacity(field.len() / 2);
                for pair in field.chunks(2) {
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
                b.append_value(parse_date(field).ok_or_else(|| bad("a date"))?)
            }
            ColumnBuilder::Timestamp(b) => b.append_value(
                crate::portable::parse_timestamp_text(field, layout)
                    .ok_or_else(|| bad("a timestamp"))?,
            ),
            ColumnBuilder::Decimal(b, precision, scale) => b.append_value(
                parse_decimal(text()?, *precision, *scale).ok_or_else(|| bad("a decimal"))?,
            ),
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<arrow_array::ArrayRef> {
        use std::sync::Arc;
        Ok(match self {
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Bin(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .map_err(|e| Error::internal(e.to_string()))?,
            ),
        })
    }
}

/// Decode one CSV part (and its misfit side file) of `table`, handing
/// batches to `sink`; see [`super::read_part`].
pub fn read_part(
    table: &Table,
    data: Bytes,
    misfits: Option<(Bytes, &str)>,
    origin: &str,
    sink: &mut dyn FnMut(DataBatch) -> Result<()>,
) -> Result<u64> {
    let damaged =
        |what: String| Error::corrupt(format!("{origin} is not a readable data file ({what})"));
    let mut misfits = match misfits {
        Some((bytes, origin)) => read_misfits(bytes, origin, table.columns.len())?,
        None => Vec::new(),
    }
    .into_iter()
    .peekable();
    let input: Box<dyn Read + '_> = if data.starts_with(&ZSTD_MAGIC) {
        Box::new(
            zstd::stream::read::Decoder::new(&data[..])
                .map_err(|e| damaged(format!("its zstd stream: {e}")))?,
        )
    } else {
        Box::new(&data[..])
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .buffer_capacity(256 * 1024)
        .from_reader(input);
    let header = reader
        .byte_headers()
        .map_err(|e| damaged(e.to_string()))?
        .clone();
    let same = header.len() == table.columns.len()
        && header
            .iter()
            .zip(&table.columns)
            .all(|(h, c)| h == c.name.as_bytes());
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
    let new_builders = || -> Vec<ColumnBuilder> {
        table
            .columns
            .iter()
            .map(|c| ColumnBuilder::new(c.logical_type))
            .collect()
    };
    let mut builders = new_builders();
    let mut record = csv::ByteRecord::new();
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
            own.push(Misfit {
                row: m.row - offset,
                ..m
            });
        }
        sink(DataBatch {
            columns: batch,
            misfits: own,
        })
    };
    loop {
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|e| damaged(e.to_string()))?;
        if !more {
            break;
        }
        if record.len() != table.columns.len() {
            return Err(damaged(format!(
                "row {} has {} fields instead of {}",
                offset + rows as u64 + 1,
                record.len(),
                table.columns.len()
            )));
        }
        for (i, field) in record.iter().enumerate() {
            builders[i].append(field, layouts[i]).map_err(|what| {
                damaged(format!(
                    "row {}, column '{}': {what}",
                    offset + rows as u64 + 1,
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
