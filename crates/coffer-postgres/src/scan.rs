//! From a PostgreSQL table to coffer's neutral schema and Arrow batches.
//!
//! Each column gets the natural logical type of its PostgreSQL type
//! ([`plan_column`]); a type without one travels as PostgreSQL's own text
//! form of the value (the column selected `::text`), which its input
//! function reads back as the same value. Values that the logical type
//! cannot hold — `numeric` NaN and ±Infinity, dates and timestamps at
//! ±infinity, arrays with several dimensions or lower bounds other than 1 —
//! are misfits: the column holds NULL there and the side file the value.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Decimal256Builder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer, i256};
use coffer::datafile::{arrow_field, arrow_schema, interval_fields};
use coffer::engine::{DataBatch, Misfit, PostgresValue, RawValue};
use coffer::manifest::{self, LogicalType};
use coffer::{Error, Result};

use crate::catalog::{self, quote_ident};
use crate::copy::Row;
use crate::decode::{Array as PgArray, Date, Numeric, Timestamp, Value, decode, oid};
use crate::snapshot::CtidRange;

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
pub(crate) const EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
pub(crate) const EPOCH_MICROS: i64 = 946_684_800_000_000;

/// How one column is read and what it becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// Its binary form, decoded as type `oid` (a domain's base type).
    Binary {
        /// The type to decode.
        oid: u32,
    },
    /// `column::text`: PostgreSQL's text form.
    Text,
    /// An array of natural elements: its binary form, plus (in a companion
    /// field) its text form when it has several dimensions or a lower bound
    /// other than 1.
    Array {
        /// The elements' type.
        element: u32,
    },
}

/// A column's plan: its logical type and how it is read.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnPlan {
    /// The column.
    pub name: String,
    /// The logical type of its values in the data files.
    pub logical_type: LogicalType,
    /// How it is read.
    pub read: Read,
}

/// The natural logical type of a built-in type, if it has one.
fn natural(type_oid: u32, typmod: i32) -> Option<LogicalType> {
    Some(match type_oid {
        oid::BOOL => LogicalType::Bool,
        oid::INT2 => LogicalType::Int16,
        oid::INT4 => LogicalType::Int32,
        oid::INT8 | oid::OID => LogicalType::Int64,
        oid::FLOAT4 => LogicalType::Float32,
        oid::FLOAT8 => LogicalType::Float64,
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME => LogicalType::Utf8,
        oid::BYTEA => LogicalType::Binary,
        oid::DATE => LogicalType::Date,
        oid::TIME => LogicalType::Time,
        oid::TIMESTAMP => LogicalType::Timestamp,
        oid::TIMESTAMPTZ => LogicalType::TimestampTz,
        oid::INTERVAL => LogicalType::Interval,
        oid::UUID => LogicalType::Uuid,
        oid::JSON | oid::JSONB => LogicalType::Json,
        oid::NUMERIC => {
            // typmod = ((precision << 16) | scale) + 4; -1 unconstrained.
            if typmod < 4 {
                LogicalType::DecimalText
            } else {
                let m = typmod - 4;
                let (precision, scale) = ((m >> 16) & 0xffff, m & 0xffff);
                // PostgreSQL 15 allows scales below 0 or above the
                // precision (stored in 11 bits, signed); those stay text.
                if (1..=i32::from(manifest::MAX_DECIMAL_PRECISION)).contains(&precision)
                    && scale <= precision
                {
                    LogicalType::Decimal {
                        precision: precision as u8,
                        scale: scale as i8,
                    }
                } else {
                    LogicalType::DecimalText
                }
            }
        }
        _ => return None,
    })
}

/// The plan of column `c`.
pub fn plan_column(c: &catalog::Column) -> ColumnPlan {
    let base = c.domain_base_oid.unwrap_or(c.type_oid);
    let (logical_type, read) = if let Some(t) = natural(base, c.typmod) {
        (t, Read::Binary { oid: base })
    } else if let Some(element) = c.element_oid
        && c.domain_base_oid.is_none()
        && let Some(t) = natural(element, -1)
        && t != LogicalType::Interval
    {
        (LogicalType::List(Box::new(t)), Read::Array { element })
    } else {
        (LogicalType::Utf8, Read::Text)
    };
    ColumnPlan {
        name: c.name.clone(),
        logical_type,
        read,
    }
}

/// The `COPY (SELECT …) TO STDOUT (FORMAT binary)` of a table's columns as
/// planned (of one range of its pages, or all): the columns in order, then
/// one companion field per array column.
pub fn copy_sql(table: &catalog::Table, plans: &[ColumnPlan], range: Option<CtidRange>) -> String {
    table.copy_select_sql(&select_fields(plans, ""), range)
}

/// The select list that gives the columns of `plans` as
/// [`BatchBuilder`] reads them, each column qualified by `alias` (`t.`, or
/// nothing).
pub fn select_fields(plans: &[ColumnPlan], alias: &str) -> Vec<String> {
    let mut fields: Vec<String> = plans
        .iter()
        .map(|p| {
            let c = format!("{alias}{}", quote_ident(&p.name));
            match p.read {
                Read::Text => format!("{c}::text"),
                _ => c,
            }
        })
        .collect();
    for p in plans {
        if let Read::Array { .. } = p.read {
            let c = format!("{alias}{}", quote_ident(&p.name));
            fields.push(format!(
                "CASE WHEN array_ndims({c}) > 1 OR array_lower({c}, 1) <> 1 THEN {c}::text END"
            ));
        }
    }
    fields
}

/// Builds the Arrow column of one logical type (one per column, so the
/// size of the largest variant does not matter).
#[allow(clippy::large_enum_variant)]
enum Builder {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Text(StringBuilder),
    Bin(BinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Ts(TimestampMicrosecondBuilder),
    TsTz(TimestampMicrosecondBuilder),
    Dec128(Decimal128Builder, i8),
    Dec256(Decimal256Builder, i8),
    Interval(Int32Builder, Int32Builder, Int64Builder, NullBufferBuilder),
    Uuid(FixedSizeBinaryBuilder),
    List {
        element: LogicalType,
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
        child: Box<Builder>,
    },
}

impl Builder {
    fn new(t: &LogicalType) -> Builder {
        match t {
            LogicalType::Bool => Builder::Bool(BooleanBuilder::new()),
            LogicalType::Int16 => Builder::I16(Int16Builder::new()),
            LogicalType::Int32 => Builder::I32(Int32Builder::new()),
            LogicalType::Int64 => Builder::I64(Int64Builder::new()),
            LogicalType::Float32 => Builder::F32(Float32Builder::new()),
            LogicalType::Float64 => Builder::F64(Float64Builder::new()),
            LogicalType::Utf8 | LogicalType::Json | LogicalType::DecimalText => {
                Builder::Text(StringBuilder::new())
            }
            LogicalType::Binary => Builder::Bin(BinaryBuilder::new()),
            LogicalType::Date => Builder::Date(Date32Builder::new()),
            LogicalType::Time => Builder::Time(Time64MicrosecondBuilder::new()),
            LogicalType::Timestamp => Builder::Ts(TimestampMicrosecondBuilder::new()),
            LogicalType::TimestampTz => {
                Builder::TsTz(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            LogicalType::Decimal { precision, scale } if *precision <= 38 => Builder::Dec128(
                Decimal128Builder::new()
                    .with_precision_and_scale(*precision, *scale)
                    .expect("a valid decimal type"),
                *scale,
            ),
            LogicalType::Decimal { precision, scale } => Builder::Dec256(
                Decimal256Builder::new()
                    .with_precision_and_scale(*precision, *scale)
                    .expect("a valid decimal type"),
                *scale,
            ),
            LogicalType::Interval => Builder::Interval(
                Int32Builder::new(),
                Int32Builder::new(),
                Int64Builder::new(),
                NullBufferBuilder::new(0),
            ),
            LogicalType::Uuid => Builder::Uuid(FixedSizeBinaryBuilder::new(16)),
            LogicalType::List(element) => Builder::List {
                element: (**element).clone(),
                offsets: vec![0],
                nulls: NullBufferBuilder::new(0),
                child: Box::new(Builder::new(element)),
            },
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Bool(b) => b.append_null(),
            Builder::I16(b) => b.append_null(),
            Builder::I32(b) => b.append_null(),
            Builder::I64(b) => b.append_null(),
            Builder::F32(b) => b.append_null(),
            Builder::F64(b) => b.append_null(),
            Builder::Text(b) => b.append_null(),
            Builder::Bin(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Time(b) => b.append_null(),
            Builder::Ts(b) | Builder::TsTz(b) => b.append_null(),
            Builder::Dec128(b, _) => b.append_null(),
            Builder::Dec256(b, _) => b.append_null(),
            Builder::Interval(m, d, u, n) => {
                m.append_value(0);
                d.append_value(0);
                u.append_value(0);
                n.append_null();
            }
            Builder::Uuid(b) => b.append_null(),
            Builder::List { offsets, nulls, .. } => {
                offsets.push(*offsets.last().expect("offsets start at 0"));
                nulls.append_null();
            }
        }
    }

    /// Append `v`; `Err(misfit)` when the column's type cannot hold it (the
    /// caller then appends NULL and records the misfit).
    fn append(&mut self, v: Value) -> std::result::Result<(), PostgresValue> {
        match (self, v) {
            (b, Value::Null) => b.append_null(),
            (Builder::Bool(b), Value::Bool(x)) => b.append_value(x),
            (Builder::I16(b), Value::Int2(x)) => b.append_value(x),
            (Builder::I32(b), Value::Int4(x)) => b.append_value(x),
            (Builder::I64(b), Value::Int8(x)) => b.append_value(x),
            (Builder::I64(b), Value::Oid(x)) => b.append_value(i64::from(x)),
            (Builder::F32(b), Value::Float4(x)) => b.append_value(x),
            (Builder::F64(b), Value::Float8(x)) => b.append_value(x),
            (Builder::Text(b), Value::Text(s) | Value::Json(s) | Value::Jsonb(s)) => {
                b.append_value(s)
            }
            (Builder::Text(b), Value::Numeric(n)) => match n {
                Numeric::Finite(s) => b.append_value(s),
                other => return Err(numeric_misfit(other)),
            },
            (Builder::Bin(b), Value::Bytea(x)) => b.append_value(x),
            (Builder::Date(b), Value::Date(d)) => match d {
                Date::Days(d) => match d.checked_add(EPOCH_DAYS) {
                    Some(d) => b.append_value(d),
                    None => {
                        return Err(PostgresValue::Text(
                            Value::Date(Date::Days(d)).to_string().into_bytes(),
                        ));
                    }
                },
                Date::Infinity => return Err(PostgresValue::Infinity),
                Date::NegInfinity => return Err(PostgresValue::NegInfinity),
            },
            (Builder::Time(b), Value::Time(us)) => b.append_value(us),
            (Builder::Ts(b), Value::Timestamp(t)) | (Builder::TsTz(b), Value::Timestamptz(t)) => {
                match t {
                    Timestamp::Micros(us) => match us.checked_add(EPOCH_MICROS) {
                        Some(us) => b.append_value(us),
                        None => return Err(PostgresValue::Text(t_text(t).into_bytes())),
                    },
                    Timestamp::Infinity => return Err(PostgresValue::Infinity),
                    Timestamp::NegInfinity => return Err(PostgresValue::NegInfinity),
                }
            }
            (Builder::Dec128(b, scale), Value::Numeric(n)) => match n {
                Numeric::Finite(s) => match scaled(&s, *scale).and_then(|d| d.parse::<i128>().ok())
                {
                    Some(v) => b.append_value(v),
                    None => return Err(PostgresValue::Text(s.into_bytes())),
                },
                other => return Err(numeric_misfit(other)),
            },
            (Builder::Dec256(b, scale), Value::Numeric(n)) => match n {
                Numeric::Finite(s) => {
                    match scaled(&s, *scale).and_then(|d| i256::from_string(&d)) {
                        Some(v) => b.append_value(v),
                        None => return Err(PostgresValue::Text(s.into_bytes())),
                    }
                }
                other => return Err(numeric_misfit(other)),
            },
            (Builder::Interval(m, d, u, n), Value::Interval(i)) => {
                m.append_value(i.months);
                d.append_value(i.days);
                u.append_value(i.micros);
                n.append_non_null();
            }
            (Builder::Uuid(b), Value::Uuid(x)) => {
                b.append_value(x).expect("16 bytes");
            }
            (
                Builder::List {
                    offsets,
                    nulls,
                    child,
                    element,
                },
                Value::Array(a),
            ) => {
                if !simple(&a) || !a.elements.iter().all(|e| fits(element, e)) {
                    // Several dimensions, or an element the element type
                    // cannot hold (NaN in a numeric[]): the text form.
                    return Err(PostgresValue::Text(
                        Value::Array(a).to_string().into_bytes(),
                    ));
                }
                let n = a.elements.len() as i32;
                for e in a.elements {
                    child.append(e).expect("every element was checked to fit");
                }
                offsets.push(offsets.last().expect("offsets start at 0") + n);
                nulls.append_non_null();
            }
            (_, v) => return Err(PostgresValue::Text(v.to_string().into_bytes())),
        }
        Ok(())
    }

    fn finish(&mut self, t: &LogicalType) -> ArrayRef {
        match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::I16(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::F32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Bin(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Ts(b) | Builder::TsTz(b) => Arc::new(b.finish()),
            Builder::Dec128(b, _) => Arc::new(b.finish()),
            Builder::Dec256(b, _) => Arc::new(b.finish()),
            Builder::Interval(m, d, u, n) => Arc::new(StructArray::new(
                interval_fields(),
                vec![
                    Arc::new(m.finish()),
                    Arc::new(d.finish()),
                    Arc::new(u.finish()),
                ],
                n.finish(),
            )),
            Builder::Uuid(b) => Arc::new(b.finish()),
            Builder::List {
                offsets,
                nulls,
                child,
                element,
            } => {
                let values = child.finish(element);
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                let LogicalType::List(inner) = t else {
                    unreachable!("a list builder for a list type")
                };
                Arc::new(ListArray::new(
                    Arc::new(arrow_field("item", inner)),
                    offsets,
                    values,
                    nulls.finish(),
                ))
            }
        }
    }
}

/// Whether a list element `v` fits the element type `t` (what
/// [`Builder::append`] would take without a misfit).
fn fits(t: &LogicalType, v: &Value) -> bool {
    match (t, v) {
        (_, Value::Null) => true,
        (LogicalType::Decimal { scale, precision }, Value::Numeric(Numeric::Finite(s))) => {
            scaled(s, *scale).is_some_and(|d| {
                d.trim_start_matches('-').trim_start_matches('0').len() <= usize::from(*precision)
            })
        }
        (LogicalType::DecimalText, Value::Numeric(n)) => matches!(n, Numeric::Finite(_)),
        (_, Value::Numeric(_)) => false,
        (LogicalType::Date, Value::Date(Date::Days(d))) => d.checked_add(EPOCH_DAYS).is_some(),
        (_, Value::Date(_)) => false,
        (
            _,
            Value::Timestamp(Timestamp::Micros(us)) | Value::Timestamptz(Timestamp::Micros(us)),
        ) => us.checked_add(EPOCH_MICROS).is_some(),
        (_, Value::Timestamp(_) | Value::Timestamptz(_)) => false,
        _ => true,
    }
}

fn numeric_misfit(n: Numeric) -> PostgresValue {
    match n {
        Numeric::NaN => PostgresValue::NaN,
        Numeric::Infinity => PostgresValue::Infinity,
        Numeric::NegInfinity => PostgresValue::NegInfinity,
        Numeric::Finite(s) => PostgresValue::Text(s.into_bytes()),
    }
}

fn t_text(t: Timestamp) -> String {
    Value::Timestamp(t).to_string()
}

/// Whether an array is a plain list: one dimension with lower bound 1, or
/// empty.
fn simple(a: &PgArray) -> bool {
    matches!(a.dims.as_slice(), [] | [(_, 1)])
}

/// The digits of decimal text `s` scaled by 10^`scale`, as an integer
/// string (`-12.34` at scale 3 → `-12340`); None when `s` has more
/// fraction digits than `scale` (which `numeric(p,s)` never stores).
fn scaled(s: &str, scale: i8) -> Option<String> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let scale = usize::try_from(scale).ok()?;
    if frac.len() > scale || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut out = String::with_capacity(int.len() + scale + 1);
    if neg {
        out.push('-');
    }
    out.push_str(int);
    out.push_str(frac);
    out.extend(std::iter::repeat_n('0', scale - frac.len()));
    Some(out)
}

/// Turns binary COPY rows of one table into [`DataBatch`]es.
pub struct BatchBuilder {
    table: manifest::Table,
    plans: Vec<ColumnPlan>,
    builders: Vec<Builder>,
    misfits: Vec<Misfit>,
    /// Fields per COPY row: the columns, then one companion per array.
    fields: usize,
    rows: usize,
    bytes: usize,
}

/// Rows per batch, and the bytes of field data after which a batch is cut
/// early (wide rows).
const BATCH_ROWS: usize = 8192;
const BATCH_BYTES: usize = 16 << 20;

impl BatchBuilder {
    /// A builder for `table` (the neutral schema) read by `plans`.
    pub fn new(table: &manifest::Table, plans: &[ColumnPlan]) -> BatchBuilder {
        BatchBuilder {
            table: table.clone(),
            plans: plans.to_vec(),
            builders: plans
                .iter()
                .map(|p| Builder::new(&p.logical_type))
                .collect(),
            misfits: Vec::new(),
            fields: plans.len()
                + plans
                    .iter()
                    .filter(|p| matches!(p.read, Read::Array { .. }))
                    .count(),
            rows: 0,
            bytes: 0,
        }
    }

    /// Append one row of fields (the columns, then the array companions);
    /// `what` names the table in errors.
    pub fn push(&mut self, row: &Row<'_>, what: &str) -> Result<()> {
        if row.len() != self.fields {
            return Err(Error::corrupt(format!(
                "the COPY stream of {what} has {} fields where {} were expected",
                row.len(),
                self.fields
            )));
        }
        let mut companion = self.plans.len();
        for (i, plan) in self.plans.iter().enumerate() {
            let field = row.field(i);
            let text_of_array = match plan.read {
                Read::Array { .. } => {
                    companion += 1;
                    row.field(companion - 1)
                }
                _ => None,
            };
            let Some(bytes) = field else {
                self.builders[i].append_null();
                continue;
            };
            self.bytes += bytes.len();
            if let Some(text) = text_of_array {
                self.builders[i].append_null();
                self.misfits.push(Misfit {
                    row: self.rows as u64,
                    column: i as u32,
                    value: RawValue::Postgres(PostgresValue::Text(text.to_vec())),
                });
                continue;
            }
            let value = match (&plan.read, &mut self.builders[i]) {
                // A text form goes into its column as it is.
                (Read::Text, Builder::Text(b)) => {
                    b.append_value(std::str::from_utf8(bytes).map_err(|_| {
                        Error::corrupt(format!("column {} of {what} is not UTF-8 text", plan.name))
                    })?);
                    continue;
                }
                (Read::Text, _) => unreachable!("a text form is planned as utf8"),
                (Read::Binary { oid }, _) => decode(*oid, bytes)?,
                // Arrays are recognised by their content.
                (Read::Array { .. }, _) => decode(0, bytes)?,
            };
            if let Err(misfit) = self.builders[i].append(value) {
                // Nothing was appended (a list checks every element
                // first): the column holds NULL, the side file the value.
                self.builders[i].append_null();
                self.misfits.push(Misfit {
                    row: self.rows as u64,
                    column: i as u32,
                    value: RawValue::Postgres(misfit),
                });
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Whether the batch is full.
    pub fn full(&self) -> bool {
        self.rows >= BATCH_ROWS || self.bytes >= BATCH_BYTES
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The rows held as a batch; the builder starts anew.
    pub fn take(&mut self) -> Result<DataBatch> {
        let columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .zip(&self.plans)
            .map(|(b, p)| b.finish(&p.logical_type))
            .collect();
        let columns = RecordBatch::try_new(arrow_schema(&self.table), columns).map_err(|e| {
            Error::internal(format!(
                "could not build a batch of {}: {e}",
                self.table.name
            ))
        })?;
        self.rows = 0;
        self.bytes = 0;
        Ok(DataBatch {
            columns,
            misfits: std::mem::take(&mut self.misfits),
        })
    }
}
