//! Other engines' values into SQLite's storage, for imports of their
//! exports (a PostgreSQL export into a SQLite file).
//!
//! SQLite stores integers, reals, text and blobs. A column of a type it
//! has no storage for is stored exactly in one of them:
//!
//! * `bool` as the integers 0 and 1; `int16`, `int32` as integers;
//! * `float32` as a real (every single is exactly a double);
//! * `time`, `timestamptz`, `interval`, `uuid`, `json`, decimals beyond 38
//!   digits or of no declared precision, and lists, as text in the form CSV
//!   files use ([`coffer::codec`]; lists in PostgreSQL's array form), in
//!   columns of TEXT affinity, so that SQLite never turns the text into a
//!   number;
//!
//! and the values that did not fit their column in the source engine (a
//! PostgreSQL misfit) become: the text `infinity` / `-infinity` for dates
//! and timestamps (SQLite keeps those as text anyway), a real ±infinity for
//! a `decimal(P,S)` and the text `Infinity` / `-Infinity` for a decimal
//! stored as text, and the text form for anything else. A numeric `NaN` has no
//! exact SQLite value (SQLite stores NaN as NULL): the import stops, naming
//! the table, column and row.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int16Type, Int32Type};
use arrow_array::{ArrayRef, RecordBatch};
use coffer::datafile::arrow_schema;
use coffer::datafile::csv::ColumnView;
use coffer::engine::{DataBatch, Misfit, PostgresValue, RawValue, SqliteValue};
use coffer::manifest::{LogicalType, Table};
use coffer::{Error, Result};

/// What a logical type is stored as in SQLite, when SQLite has no storage
/// of its own for it (the plain and portable types are SQLite's own).
pub fn stored_as(t: &LogicalType) -> Option<LogicalType> {
    match t {
        LogicalType::Bool | LogicalType::Int16 | LogicalType::Int32 => Some(LogicalType::Int64),
        LogicalType::Float32 => Some(LogicalType::Float64),
        LogicalType::Time
        | LogicalType::TimestampTz
        | LogicalType::Interval
        | LogicalType::Uuid
        | LogicalType::Json
        | LogicalType::DecimalText
        | LogicalType::List(_) => Some(LogicalType::Utf8),
        LogicalType::Decimal { precision, .. } if *precision > 38 => Some(LogicalType::Utf8),
        _ => None,
    }
}

/// The declared type of a column of logical type `t` that SQLite has no
/// storage for, in a table built from the neutral schema.
pub fn declared_type(t: &LogicalType) -> Option<&'static str> {
    Some(match stored_as(t)? {
        LogicalType::Int64 => match t {
            LogicalType::Bool => "BOOLEAN",
            LogicalType::Int16 => "SMALLINT",
            _ => "INT",
        },
        LogicalType::Float64 => "FLOAT",
        // TEXT affinity: SQLite leaves the text as it is.
        _ => "TEXT",
    })
}

/// Whether a batch of `table` needs [`to_sqlite`]: a column of a type
/// SQLite has no storage for, or a misfit of another engine.
pub fn needed(table: &Table, batch: &DataBatch) -> bool {
    table
        .columns
        .iter()
        .any(|c| stored_as(&c.logical_type).is_some())
        || batch
            .misfits
            .iter()
            .any(|m| !matches!(m.value, RawValue::Sqlite(_)))
}

/// `batch` (of `table`) with every column of a type SQLite has no storage
/// for in the type that stores it, and every other engine's misfit as a
/// SQLite value; and `table` with those columns' new types. `origin` names
/// the data in errors; `first_row` is the batch's first row in its table
/// (for messages).
pub fn to_sqlite(
    batch: &DataBatch,
    table: &Table,
    origin: &str,
    first_row: u64,
) -> Result<(DataBatch, Table)> {
    let mut out_table = table.clone();
    let mut columns: Vec<ArrayRef> = batch.columns.columns().to_vec();
    for (i, col) in table.columns.iter().enumerate() {
        let Some(stored) = stored_as(&col.logical_type) else {
            continue;
        };
        let array = batch.columns.column(i).as_ref();
        let n = array.len();
        columns[i] = match (&col.logical_type, &stored) {
            (LogicalType::Bool, _) => {
                let a = array.as_boolean();
                let mut b = Int64Builder::with_capacity(n);
                for v in a.iter() {
                    b.append_option(v.map(i64::from));
                }
                Arc::new(b.finish())
            }
            (LogicalType::Int16, _) => {
                let a = array.as_primitive::<Int16Type>();
                Arc::new(
                    a.iter()
                        .map(|v| v.map(i64::from))
                        .collect::<arrow_array::Int64Array>(),
                )
            }
            (LogicalType::Int32, _) => {
                let a = array.as_primitive::<Int32Type>();
                Arc::new(
                    a.iter()
                        .map(|v| v.map(i64::from))
                        .collect::<arrow_array::Int64Array>(),
                )
            }
            (LogicalType::Float32, _) => {
                let a = array.as_primitive::<Float32Type>();
                let mut b = Float64Builder::with_capacity(n);
                for v in a.iter() {
                    b.append_option(v.map(f64::from));
                }
                Arc::new(b.finish())
            }
            _ => {
                let view = ColumnView::of(array, &col.logical_type)?;
                let mut b = StringBuilder::with_capacity(n, n * 16);
                let mut text = Vec::new();
                for row in 0..n {
                    text.clear();
                    if view.render(row, &mut text) {
                        // The text forms are ASCII or the column's own UTF-8.
                        b.append_value(String::from_utf8_lossy(&text));
                    } else {
                        b.append_null();
                    }
                }
                Arc::new(b.finish())
            }
        };
        out_table.columns[i].logical_type = stored;
    }
    let mut misfits = Vec::with_capacity(batch.misfits.len());
    for m in &batch.misfits {
        let value = match &m.value {
            RawValue::Sqlite(_) => m.value.clone(),
            RawValue::Postgres(p) => {
                let col = &table.columns[m.column as usize];
                let infinite = |negative: bool| match col.logical_type {
                    // A numeric column (DECIMAL affinity) keeps a real.
                    LogicalType::Decimal { precision, .. } if precision <= 38 => {
                        SqliteValue::Real(if negative {
                            f64::NEG_INFINITY
                        } else {
                            f64::INFINITY
                        })
                    }
                    // A TEXT column would turn a real into `Inf`: the
                    // numeric's own text.
                    LogicalType::Decimal { .. } | LogicalType::DecimalText => SqliteValue::Text(
                        if negative { "-Infinity" } else { "Infinity" }
                            .as_bytes()
                            .to_vec(),
                    ),
                    _ => SqliteValue::Text(
                        if negative { "-infinity" } else { "infinity" }
                            .as_bytes()
                            .to_vec(),
                    ),
                };
                RawValue::Sqlite(match p {
                    PostgresValue::Infinity => infinite(false),
                    PostgresValue::NegInfinity => infinite(true),
                    PostgresValue::Text(t) => SqliteValue::Text(t.clone()),
                    PostgresValue::NaN => {
                        return Err(Error::invalid(format!(
                            "row {} of table '{}' in {origin} holds NaN in column '{}', which SQLite cannot store (it keeps NaN as NULL); leave the table out with --table, or change the value at the source",
                            first_row + m.row + 1,
                            table.name,
                            col.name
                        )));
                    }
                })
            }
        };
        misfits.push(Misfit { value, ..m.clone() });
    }
    let columns = RecordBatch::try_new(arrow_schema(&out_table), columns)
        .map_err(|e| Error::corrupt(format!("{origin} does not match its manifest ({e})")))?;
    Ok((DataBatch { columns, misfits }, out_table))
}
