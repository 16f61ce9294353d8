//! Data files: tables as Parquet parts, with a side file for misfit values.
//!
//! A table's rows are written to `tables/<segment>/part-NNNNN.parquet`,
//! split when a part reaches the configured size. Values that do not fit
//! their column's logical type (see [`crate::engine::Misfit`]) are NULL in the
//! part and carried in `misfits/<segment>/part-NNNNN.parquet`, a Parquet file
//! of `(row UInt64, column UInt32, class UInt8, value Binary)`, so other
//! readers see ordinary typed columns and coffer restores exact values.

use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, UInt8Builder, UInt32Builder, UInt64Builder};
use arrow_array::{BinaryArray, RecordBatch, UInt8Array, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use tokio::runtime::Handle;

use crate::engine::{DataBatch, Misfit, RawValue};
use crate::error::{Error, Result};
use crate::manifest::{DataFormat, LogicalType, Part, Table, path_segment};
use crate::store::Store;
use crate::upload::{Pending, Upload};

pub mod csv;

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

/// The Arrow type that carries a logical type.
pub fn arrow_type(t: LogicalType) -> DataType {
    match t {
        LogicalType::Int64 => DataType::Int64,
        LogicalType::Float64 => DataType::Float64,
        LogicalType::Utf8 => DataType::Utf8,
        LogicalType::Binary => DataType::Binary,
        LogicalType::Date => DataType::Date32,
        LogicalType::Timestamp => DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None),
        LogicalType::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
    }
}

/// The Arrow schema of a table's data files. Every field is nullable: a
/// misfit leaves a NULL in its column.
pub fn arrow_schema(table: &Table) -> SchemaRef {
    Arc::new(Schema::new(
        table
            .columns
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c.logical_type), true))
            .collect::<Vec<_>>(),
    ))
}

fn misfit_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("row", DataType::UInt64, false),
        Field::new("column", DataType::UInt32, false),
        Field::new("class", DataType::UInt8, false),
        Field::new("value", DataType::Binary, false),
    ]))
}

const CLASS_INTEGER: u8 = 1;
const CLASS_REAL: u8 = 2;
const CLASS_TEXT: u8 = 3;
const CLASS_BLOB: u8 = 4;

fn writer_properties(compression: Compression) -> WriterProperties {
    let c = match compression {
        Compression::None => PqCompression::UNCOMPRESSED,
        Compression::Zstd(level) => {
            PqCompression::ZSTD(ZstdLevel::try_new(level).unwrap_or_default())
        }
    };
    WriterProperties::builder()
        .set_compression(c)
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
    misfits: Vec<Misfit>,
}

/// Writes one table's batches as parts. Use from a blocking thread.
pub struct TableWriter {
    store: Store,
    handle: Handle,
    table: String,
    schema: SchemaRef,
    options: WriteOptions,
    props: WriterProperties,
    current: Option<OpenPart>,
    parts: Vec<Part>,
    /// The last closed part, still completing its upload in the background.
    completing: Option<Pending>,
    /// The table, when some of its columns have portable types that the
    /// scanned batches carry as plain ones (exports; see crate::portable).
    portable: Option<Table>,
    /// Writes CSV parts instead, when that is the format.
    csv: Option<csv::CsvTableWriter>,
}

impl TableWriter {
    /// A writer for `table`'s data into `store`.
    pub fn new(store: Store, handle: Handle, table: &Table, options: WriteOptions) -> Self {
        let portable = crate::portable::has_portable_columns(table).then(|| table.clone());
        let csv = (options.data_format == DataFormat::Csv).then(|| {
            csv::CsvTableWriter::new(store.clone(), handle.clone(), table, options.clone())
        });
        TableWriter {
            portable,
            csv,
            props: writer_properties(options.compression),
            store,
            handle,
            table: table.name.clone(),
            schema: arrow_schema(table),
            options,
            current: None,
            parts: Vec::new(),
            completing: None,
        }
    }

    fn open(&mut self) -> Result<&mut OpenPart> {
        if self.current.is_none() {
            let rel = part_path(&self.table, self.parts.len());
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
        let batch = match &self.portable {
            Some(table) => crate::portable::to_portable(batch, table)?,
            None => batch,
        };
        if let Some(csv) = &mut self.csv {
            return csv.write(batch);
        }
        let limit = self.options.part_size;
        let url = self.store.url_of(&part_path(&self.table, self.parts.len()));
        let part = self.open()?;
        if let Err(e) = part.writer.write(&batch.columns) {
            return Err(part
                .writer
                .inner_mut()
                .take_failure()
                .unwrap_or_else(|| Error::internal(format!("could not encode {url}: {e}"))));
        }
        let offset = part.rows;
        part.misfits.extend(batch.misfits.into_iter().map(|mut m| {
            m.row += offset;
            m
        }));
        part.rows += batch.columns.num_rows() as u64;
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
        let n = self.parts.len();
        let rel = part_path(&self.table, n);
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
            Some(self.write_misfits(n, &part.misfits)?)
        };
        self.parts.push(Part {
            file,
            rows: part.rows,
            misfits,
        });
        Ok(())
    }

    fn write_misfits(&self, n: usize, misfits: &[Misfit]) -> Result<crate::manifest::FileRef> {
        let rel = misfit_path(&self.table, n);
        let url = self.store.url_of(&rel);
        let encode_err = |e: parquet::errors::ParquetError| {
            Error::internal(format!("could not encode {url}: {e}"))
        };
        let upload = Upload::new(&self.store, &rel, self.handle.clone());
        let mut writer = ArrowWriter::try_new(upload, misfit_schema(), Some(self.props.clone()))
            .map_err(encode_err)?;
        for chunk in misfits.chunks(8192) {
            writer.write(&misfit_batch(chunk)).map_err(encode_err)?;
        }
        writer.into_inner().map_err(encode_err)?.finish()
    }

    /// Close the last part and return every part written.
    pub fn finish(mut self) -> Result<Vec<Part>> {
        if let Some(csv) = self.csv.take() {
            return csv.finish();
        }
        self.close_part()?;
        if let Some(last) = self.completing.take() {
            last.wait()?;
        }
        Ok(self.parts)
    }
}

fn misfit_batch(misfits: &[Misfit]) -> RecordBatch {
    let mut rows = UInt64Builder::with_capacity(misfits.len());
    let mut cols = UInt32Builder::with_capacity(misfits.len());
    let mut classes = UInt8Builder::with_capacity(misfits.len());
    let mut values = BinaryBuilder::new();
    for m in misfits {
        rows.append_value(m.row);
        cols.append_value(m.column);
        match &m.value {
            RawValue::Integer(i) => {
                classes.append_value(CLASS_INTEGER);
                values.append_value(i.to_le_bytes());
            }
            RawValue::Real(f) => {
                classes.append_value(CLASS_REAL);
                values.append_value(f.to_bits().to_le_bytes());
            }
            RawValue::Text(t) => {
                classes.append_value(CLASS_TEXT);
                values.append_value(t);
            }
            RawValue::Blob(b) => {
                classes.append_value(CLASS_BLOB);
                values.append_value(b);
            }
        }
    }
    RecordBatch::try_new(
        misfit_schema(),
        vec![
            Arc::new(rows.finish()),
            Arc::new(cols.finish()),
            Arc::new(classes.finish()),
            Arc::new(values.finish()),
        ],
    )
    .expect("misfit batch matches its schema")
}

fn read_misfits(data: Bytes, origin: &str, columns: usize) -> Result<Vec<Misfit>> {
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
        if batch.schema().fields() != misfit_schema().fields() {
            return Err(damaged("unexpected columns".into()));
        }
        let rows = batch.column(0).as_any().downcast_ref::<UInt64Array>();
        let cols = batch.column(1).as_any().downcast_ref::<UInt32Array>();
        let classes = batch.column(2).as_any().downcast_ref::<UInt8Array>();
        let values = batch.column(3).as_any().downcast_ref::<BinaryArray>();
        let (Some(rows), Some(cols), Some(classes), Some(values)) = (rows, cols, classes, values)
        else {
            return Err(damaged("unexpected column types".into()));
        };
        for i in 0..batch.num_rows() {
            let v = values.value(i);
            let fixed = || -> Result<[u8; 8]> {
                v.try_into()
                    .map_err(|_| damaged(format!("a number of {} bytes", v.len())))
            };
            let value = match classes.value(i) {
                CLASS_INTEGER => RawValue::Integer(i64::from_le_bytes(fixed()?)),
                CLASS_REAL => RawValue::Real(f64::from_bits(u64::from_le_bytes(fixed()?))),
                CLASS_TEXT => RawValue::Text(v.to_vec()),
                CLASS_BLOB => RawValue::Blob(v.to_vec()),
                c => return Err(damaged(format!("unknown value class {c}"))),
            };
            let column = cols.value(i);
            if column as usize >= columns {
                return Err(damaged(format!("column {column} out of range")));
            }
            out.push(Misfit {
                row: rows.value(i),
                column,
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
    let mut misfits = match misfits {
        Some((bytes, origin)) => read_misfits(bytes, origin, table.columns.len())?,
        None => Vec::new(),
    }
    .into_iter()
    .peekable();
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
            own.push(Misfit {
                row: m.row - offset,
                ..m
            });
        }
        offset += rows;
        sink(DataBatch {
            columns: batch,
            misfits: own,
        })?;
    }
    if misfits.next().is_some() {
        return Err(damaged("misfits name rows past its end".into()));
    }
    Ok(offset)
}

/// Decode one part of `table` written in `format`; see [`read_part`].
pub fn read_part_as(
    format: DataFormat,
    table: &Table,
    data: Bytes,
    misfits: Option<(Bytes, &str)>,
    origin: &str,
    sink: &mut dyn FnMut(DataBatch) -> Result<()>,
) -> Result<u64> {
    match format {
        DataFormat::Parquet => read_part(table, data, misfits, origin, sink),
        DataFormat::Csv => csv::read_part(table, data, misfits, origin, sink),
    }
}
