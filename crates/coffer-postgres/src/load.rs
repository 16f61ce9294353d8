//! Rows into PostgreSQL: a batch of an archive as `COPY … FROM STDIN` text.
//!
//! Text, not binary, because a value of a type without a natural mapping
//! travels as PostgreSQL's own text form of it (an enum, a range, an
//! `hstore`), which only the type's input function reads; `pg_restore`
//! loads pg_dump's data in the same format. Each value is written in the
//! form PostgreSQL's input reads back as the very same value
//! ([`coffer::datafile::csv::TextForm::Postgres`]), a misfit as its
//! PostgreSQL text, and the COPY text escapes applied.

use coffer::datafile::csv::{TextForm, ValueText};
use coffer::engine::{DataBatch, PostgresValue, RawValue, SqliteValue};
use coffer::manifest::{LogicalType, Table};
use coffer::{Error, Result};

/// Append `text` to `out` with COPY's text-format escapes (`\\`, `\t`,
/// `\n`, `\r`); `Err(())` when it holds a NUL, which PostgreSQL text
/// cannot.
fn escape_into(text: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), ()> {
    out.reserve(text.len());
    let mut from = 0;
    for (i, &b) in text.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            0 => return Err(()),
            _ => continue,
        };
        out.extend_from_slice(&text[from..i]);
        out.extend_from_slice(esc);
        from = i + 1;
    }
    out.extend_from_slice(&text[from..]);
    Ok(())
}

/// Append `text` to `out` with COPY's escapes; a NUL in it is an error,
/// unless `coerce` counts the value and its NULs are left out.
fn escape_text(
    text: &[u8],
    out: &mut Vec<u8>,
    coerce: &mut Option<&mut u64>,
) -> std::result::Result<(), ()> {
    let mark = out.len();
    match (escape_into(text, out), coerce) {
        (Ok(()), _) => Ok(()),
        (Err(()), Some(n)) => {
            out.truncate(mark);
            let kept: Vec<u8> = text.iter().copied().filter(|&b| b != 0).collect();
            **n += 1;
            escape_into(&kept, out)
        }
        (Err(()), None) => Err(()),
    }
}

/// The PostgreSQL text of a misfit; a SQLite value (of another storage
/// class than its column's) only when coercing, as its own text.
fn misfit_text(v: &RawValue, coerce: &mut Option<&mut u64>) -> Option<Vec<u8>> {
    Some(match v {
        RawValue::Postgres(PostgresValue::NaN) => b"NaN".to_vec(),
        RawValue::Postgres(PostgresValue::Infinity) => b"Infinity".to_vec(),
        RawValue::Postgres(PostgresValue::NegInfinity) => b"-Infinity".to_vec(),
        RawValue::Postgres(PostgresValue::Text(t)) => t.clone(),
        RawValue::Sqlite(s) => {
            let n = coerce.as_deref_mut()?;
            *n += 1;
            match s {
                SqliteValue::Integer(i) => i.to_string().into_bytes(),
                SqliteValue::Real(r) => coffer::datafile::real_text(*r).into_bytes(),
                SqliteValue::Text(t) => String::from_utf8_lossy(t).into_owned().into_bytes(),
                SqliteValue::Blob(b) => {
                    let mut t = b"\\x".to_vec();
                    for byte in b {
                        t.extend_from_slice(format!("{byte:02x}").as_bytes());
                    }
                    t
                }
            }
        }
    })
}

/// Append the rows of `batch` (of `table`) to `out` as COPY text lines;
/// `first_row` is the number of the table's rows before the batch (for
/// messages that name a row).
/// With `coerce`, what PostgreSQL cannot hold is stored in its nearest
/// form and counted there (see [`escape_text`], [`misfit_text`]).
pub fn encode_batch(
    table: &Table,
    batch: &DataBatch,
    first_row: u64,
    mut coerce: Option<&mut u64>,
    out: &mut Vec<u8>,
) -> Result<()> {
    let columns = batch.columns.columns();
    if columns.len() != table.columns.len() {
        return Err(Error::internal(format!(
            "a batch of table '{}' has {} columns, the table {}",
            table.name,
            columns.len(),
            table.columns.len()
        )));
    }
    let views = columns
        .iter()
        .zip(&table.columns)
        .map(|(a, c)| ValueText::new(a.as_ref(), &c.logical_type, TextForm::Postgres))
        .collect::<Result<Vec<_>>>()?;
    let mut misfits = batch.misfits.iter().peekable();
    let mut scratch = Vec::with_capacity(64);
    let nul = |row: usize, col: usize| {
        Error::invalid(format!(
            "row {} of table '{}' holds text with a NUL character in column '{}', which PostgreSQL cannot store; import with --coerce to leave the NULs out",
            first_row + row as u64 + 1,
            table.name,
            table.columns[col].name
        ))
    };
    for row in 0..batch.num_rows() {
        for (col, view) in views.iter().enumerate() {
            if col > 0 {
                out.push(b'\t');
            }
            if let Some(m) = misfits.next_if(|m| m.row == row as u64 && m.column as usize == col) {
                let text = misfit_text(&m.value, &mut coerce).ok_or_else(|| {
                    Error::invalid(format!(
                        "row {} of table '{}' holds a SQLite value in column '{}' of another type than the column's; import with --coerce to store its text",
                        first_row + row as u64 + 1,
                        table.name,
                        table.columns[col].name
                    ))
                })?;
                escape_text(&text, out, &mut coerce).map_err(|()| nul(row, col))?;
                continue;
            }
            scratch.clear();
            if view.write(row, &mut scratch) {
                escape_text(&scratch, out, &mut coerce).map_err(|()| nul(row, col))?;
            } else {
                out.extend_from_slice(b"\\N");
            }
        }
        out.push(b'\n');
    }
    if let Some(m) = misfits.next() {
        return Err(Error::internal(format!(
            "a misfit of table '{}' names row {} column {}, outside its batch",
            table.name, m.row, m.column
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Date32Array, Int32Array, RecordBatch, StringArray};
    use coffer::datafile::arrow_schema;
    use coffer::engine::Misfit;
    use coffer::manifest::{Column, TableKind};

    fn column(name: &str, t: LogicalType) -> Column {
        Column {
            name: name.into(),
            logical_type: t,
            declared_type: String::new(),
            nullable: true,
            text_format: None,
        }
    }

    #[test]
    fn rows_as_copy_text() {
        let table = Table {
            name: "t".into(),
            kind: TableKind::Table,
            columns: vec![
                column("i", LogicalType::Int32),
                column("s", LogicalType::Utf8),
                column("d", LogicalType::Date),
            ],
            primary_key: vec![],
            hidden_key: None,
            rows: 3,
            parts: vec![],
        };
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![Some(1), None, Some(3)])),
            Arc::new(StringArray::from(vec![Some("a\tb\\c\nd"), Some(""), None])),
            Arc::new(Date32Array::from(vec![Some(0), Some(-719_528), None])),
        ];
        let schema = arrow_schema(&table);
        let batch = DataBatch {
            columns: RecordBatch::try_new(schema, arrays).unwrap(),
            misfits: vec![Misfit {
                row: 2,
                column: 2,
                value: RawValue::Postgres(PostgresValue::Infinity),
            }],
        };
        let mut out = Vec::new();
        encode_batch(&table, &batch, 0, None, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1\ta\\tb\\\\c\\nd\t1970-01-01\n\\N\t\t0001-01-01 BC\n3\t\\N\tInfinity\n"
        );
    }

    fn numeric(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        push_numeric(text.as_bytes(), &mut out).unwrap();
        out[4..].to_vec()
    }

    #[test]
    fn numerics_in_binary() {
        // ndigits, weight, sign, dscale, digits (base 10000).
        assert_eq!(numeric("0"), [0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(numeric("-0.000"), [0, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(
            numeric("12345.67"),
            [0, 3, 0, 1, 0, 0, 0, 2, 0, 1, 0x09, 0x29, 0x1a, 0x2c]
        );
        assert_eq!(numeric("-0.0001"), [0, 1, 0xff, 0xff, 0x40, 0, 0, 4, 0, 1]);
        assert_eq!(numeric("10000"), [0, 1, 0, 1, 0, 0, 0, 0, 0, 1]);
        let mut out = Vec::new();
        assert!(push_numeric(b"1e5", &mut out).is_err());
        assert!(push_numeric(b".5", &mut out).is_err());
    }

    #[test]
    fn nul_is_refused() {
        let mut out = Vec::new();
        assert!(escape_into(b"a\0b", &mut out).is_err());
    }
}

/// How one column goes into binary `COPY`: its target type's binary form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryColumn {
    /// `bool`.
    Bool,
    /// `int2`.
    Int2,
    /// `int4`.
    Int4,
    /// `int8`.
    Int8,
    /// `oid` (from an `int64` column).
    Oid,
    /// `float4`.
    Float4,
    /// `float8`.
    Float8,
    /// `text`, `varchar`, `bpchar`, `name`, `json`: the UTF-8 bytes.
    Text,
    /// `jsonb`: a version byte and the text.
    Jsonb,
    /// `bytea`.
    Bytea,
    /// `date`.
    Date,
    /// `time`.
    Time,
    /// `timestamp` or `timestamptz`.
    Timestamp,
    /// `interval`.
    Interval,
    /// `uuid`.
    Uuid,
    /// `numeric` (from a decimal or decimal text column).
    Numeric,
}

impl BinaryColumn {
    /// The binary form for a column of logical type `t` whose target
    /// column is of type `oid` (a domain's base type), if there is one.
    pub fn of(t: &LogicalType, type_oid: u32) -> Option<BinaryColumn> {
        use crate::decode::oid;
        Some(match (t, type_oid) {
            (LogicalType::Bool, oid::BOOL) => BinaryColumn::Bool,
            (LogicalType::Int16, oid::INT2) => BinaryColumn::Int2,
            (LogicalType::Int32, oid::INT4) => BinaryColumn::Int4,
            (LogicalType::Int64, oid::INT8) => BinaryColumn::Int8,
            (LogicalType::Int64, oid::OID) => BinaryColumn::Oid,
            (LogicalType::Float32, oid::FLOAT4) => BinaryColumn::Float4,
            (LogicalType::Float64, oid::FLOAT8) => BinaryColumn::Float8,
            (LogicalType::Utf8, oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME) => {
                BinaryColumn::Text
            }
            (LogicalType::Json, oid::JSON) => BinaryColumn::Text,
            (LogicalType::Json, oid::JSONB) => BinaryColumn::Jsonb,
            (LogicalType::Binary, oid::BYTEA) => BinaryColumn::Bytea,
            (LogicalType::Date, oid::DATE) => BinaryColumn::Date,
            (LogicalType::Time, oid::TIME) => BinaryColumn::Time,
            (LogicalType::Timestamp, oid::TIMESTAMP)
            | (LogicalType::TimestampTz, oid::TIMESTAMPTZ) => BinaryColumn::Timestamp,
            (LogicalType::Interval, oid::INTERVAL) => BinaryColumn::Interval,
            (LogicalType::Uuid, oid::UUID) => BinaryColumn::Uuid,
            (LogicalType::Decimal { .. } | LogicalType::DecimalText, oid::NUMERIC) => {
                BinaryColumn::Numeric
            }
            _ => return None,
        })
    }
}

/// The start of a binary `COPY` stream: signature, flags, no extension.
pub const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The end of a binary `COPY` stream.
pub const BINARY_TRAILER: &[u8] = &[0xff, 0xff];

use crate::scan::{EPOCH_DAYS, EPOCH_MICROS};

/// Whether a batch can go in binary form: no misfit is a text form, which
/// only the type's text input reads.
pub fn binary_fits(batch: &DataBatch) -> bool {
    batch.misfits.iter().all(|m| {
        matches!(
            m.value,
            RawValue::Postgres(
                PostgresValue::NaN | PostgresValue::Infinity | PostgresValue::NegInfinity
            )
        )
    })
}

/// Append PostgreSQL's binary `numeric` of decimal text (`-?D+(.D+)?`).
fn push_numeric(text: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), ()> {
    let (negative, body) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (int, frac) = match body.iter().position(|&b| b == b'.') {
        Some(p) => (&body[..p], &body[p + 1..]),
        None => (body, &body[..0]),
    };
    if int.is_empty() || !int.iter().chain(frac).all(u8::is_ascii_digit) || frac.len() > 0x3fff {
        return Err(());
    }
    let int_groups = int.len().div_ceil(4);
    let frac_groups = frac.len().div_ceil(4);
    let lead = int_groups * 4 - int.len();
    let digit = |i: usize| -> u16 {
        // Position i of the zero-padded digits: `lead` zeros, int, frac, zeros.
        let b = if i < lead {
            b'0'
        } else if i < lead + int.len() {
            int[i - lead]
        } else if i < lead + int.len() + frac.len() {
            frac[i - lead - int.len()]
        } else {
            b'0'
        };
        u16::from(b - b'0')
    };
    let mut groups: Vec<u16> = (0..int_groups + frac_groups)
        .map(|g| (0..4).fold(0u16, |v, k| v * 10 + digit(g * 4 + k)))
        .collect();
    let mut weight = int_groups as i32 - 1;
    let first = groups.iter().position(|&g| g != 0);
    let (sign, ndigits) = match first {
        None => {
            groups.clear();
            weight = 0;
            (0x0000u16, 0usize)
        }
        Some(f) => {
            groups.drain(..f);
            weight -= f as i32;
            while groups.last() == Some(&0) {
                groups.pop();
            }
            (if negative { 0x4000 } else { 0x0000 }, groups.len())
        }
    };
    let weight = i16::try_from(weight).map_err(|_| ())?;
    out.extend_from_slice(&((8 + 2 * ndigits) as i32).to_be_bytes());
    out.extend_from_slice(&(ndigits as u16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&(frac.len() as u16).to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Ok(())
}

fn push_field(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Append the rows of `batch` (of `table`, whose columns go in as `plan`
/// says) as binary `COPY` tuples; the caller checked [`binary_fits`].
/// `first_row` and `coerce` as for [`encode_batch`].
pub fn encode_binary(
    table: &Table,
    plan: &[BinaryColumn],
    batch: &DataBatch,
    first_row: u64,
    mut coerce: Option<&mut u64>,
    out: &mut Vec<u8>,
) -> Result<()> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{
        Date32Type, Decimal128Type, Decimal256Type, Float32Type, Float64Type, Int16Type, Int32Type,
        Int64Type, Time64MicrosecondType, TimestampMicrosecondType,
    };
    let columns = batch.columns.columns();
    if columns.len() != plan.len() || plan.len() != table.columns.len() {
        return Err(Error::internal(format!(
            "a batch of table '{}' does not have the table's columns",
            table.name
        )));
    }
    let wrong = |c: usize| {
        Error::internal(format!(
            "column '{}' of table '{}' is not of its type in a batch",
            table.columns[c].name, table.name
        ))
    };
    let mut misfits = batch.misfits.iter().peekable();
    let mut text = Vec::with_capacity(64);
    let ncols = (plan.len() as i16).to_be_bytes();
    for row in 0..batch.num_rows() {
        out.extend_from_slice(&ncols);
        for (c, (kind, array)) in plan.iter().zip(columns).enumerate() {
            if let Some(m) = misfits.next_if(|m| m.row == row as u64 && m.column as usize == c) {
                let v = match &m.value {
                    RawValue::Postgres(v) => v,
                    RawValue::Sqlite(_) => return Err(wrong(c)),
                };
                match (kind, v) {
                    (BinaryColumn::Numeric, PostgresValue::NaN) => {
                        push_field(&[0, 0, 0, 0, 0xc0, 0, 0, 0], out)
                    }
                    (BinaryColumn::Numeric, PostgresValue::Infinity) => {
                        push_field(&[0, 0, 0, 0, 0xd0, 0, 0, 0], out)
                    }
                    (BinaryColumn::Numeric, PostgresValue::NegInfinity) => {
                        push_field(&[0, 0, 0, 0, 0xf0, 0, 0, 0], out)
                    }
                    (BinaryColumn::Date, PostgresValue::Infinity) => {
                        push_field(&i32::MAX.to_be_bytes(), out)
                    }
                    (BinaryColumn::Date, PostgresValue::NegInfinity) => {
                        push_field(&i32::MIN.to_be_bytes(), out)
                    }
                    (BinaryColumn::Timestamp, PostgresValue::Infinity) => {
                        push_field(&i64::MAX.to_be_bytes(), out)
                    }
                    (BinaryColumn::Timestamp, PostgresValue::NegInfinity) => {
                        push_field(&i64::MIN.to_be_bytes(), out)
                    }
                    _ => {
                        return Err(Error::invalid(format!(
                            "row {} of table '{}' holds a value in column '{}' that its type cannot have",
                            first_row + row as u64 + 1,
                            table.name,
                            table.columns[c].name
                        )));
                    }
                }
                continue;
            }
            if array.is_null(row) {
                out.extend_from_slice(&(-1i32).to_be_bytes());
                continue;
            }
            match kind {
                BinaryColumn::Bool => {
                    let a = array.as_boolean_opt().ok_or_else(|| wrong(c))?;
                    push_field(&[u8::from(a.value(row))], out);
                }
                BinaryColumn::Int2 => {
                    let a = array
                        .as_primitive_opt::<Int16Type>()
                        .ok_or_else(|| wrong(c))?;
                    push_field(&a.value(row).to_be_bytes(), out);
                }
                BinaryColumn::Int4 => {
                    let a = array
                        .as_primitive_opt::<Int32Type>()
                        .ok_or_else(|| wrong(c))?;
                    push_field(&a.value(row).to_be_bytes(), out);
                }
                BinaryColumn::Int8 => {
                    let a = array
                        .as_primitive_opt::<Int64Type>()
                        .ok_or_else(|| wrong(c))?;
                    push_field(&a.value(row).to_be_bytes(), out);
                }
                BinaryColumn::Oid => {
                    let a = array
                        .as_primitive_opt::<Int64Type>()
                        .ok_or_else(|| wrong(c))?;
                    let v = u32::try_from(a.value(row)).map_err(|_| {
                        Error::invalid(format!(
                            "row {} of table '{}' holds {} in the oid column '{}'",
                            first_row + row as u64 + 1,
                            table.name,
                            a.value(row),
                            table.columns[c].name
                        ))
                    })?;
                    push_field(&v.to_be_bytes(), out);
                }
                BinaryColumn::Float4 => {
                    let a = array
                        .as_primitive_opt::<Float32Type>()
                        .ok_or_else(|| wrong(c))?;
                    push_field(&a.value(row).to_bits().to_be_bytes(), out);
                }
                BinaryColumn::Float8 => {
                    let a = array
                        .as_primitive_opt::<Float64Type>()
                        .ok_or_else(|| wrong(c))?;
                    push_field(&a.value(row).to_bits().to_be_bytes(), out);
                }
                BinaryColumn::Text | BinaryColumn::Jsonb => {
                    let a = array.as_string_opt::<i32>().ok_or_else(|| wrong(c))?;
                    let mut v = a.value(row).as_bytes();
                    let kept: Vec<u8>;
                    if v.contains(&0)
                        && let Some(n) = coerce.as_deref_mut()
                    {
                        *n += 1;
                        kept = v.iter().copied().filter(|&b| b != 0).collect();
                        v = &kept;
                    }
                    if v.contains(&0) {
                        return Err(Error::invalid(format!(
                            "row {} of table '{}' holds text with a NUL character in column '{}', which PostgreSQL cannot store; import with --coerce to leave the NULs out",
                            first_row + row as u64 + 1,
                            table.name,
                            table.columns[c].name
                        )));
                    }
                    if *kind == BinaryColumn::Jsonb {
                        out.extend_from_slice(&(v.len() as i32 + 1).to_be_bytes());
                        out.push(1);
                        out.extend_from_slice(v);
                    } else {
                        push_field(v, out);
                    }
                }
                BinaryColumn::Bytea => {
                    let a = array.as_binary_opt::<i32>().ok_or_else(|| wrong(c))?;
                    push_field(a.value(row), out);
                }
                BinaryColumn::Date => {
                    let a = array
                        .as_primitive_opt::<Date32Type>()
                        .ok_or_else(|| wrong(c))?;
                    push_field(&(a.value(row) - EPOCH_DAYS).to_be_bytes(), out);
                }
                BinaryColumn::Time => {
                    let a = array
                        .as_primitive_opt::<Time64MicrosecondType>()
                        .ok_or_else(|| wrong(c))?;
                    push_field(&a.value(row).to_be_bytes(), out);
                }
                BinaryColumn::Timestamp => {
                    let a = array
                        .as_primitive_opt::<TimestampMicrosecondType>()
                        .ok_or_else(|| wrong(c))?;
                    let v = a
                        .value(row)
                        .checked_sub(EPOCH_MICROS)
                        .ok_or_else(|| wrong(c))?;
                    push_field(&v.to_be_bytes(), out);
                }
                BinaryColumn::Interval => {
                    let s = array.as_struct_opt().ok_or_else(|| wrong(c))?;
                    let months = s
                        .column(0)
                        .as_primitive_opt::<Int32Type>()
                        .ok_or_else(|| wrong(c))?;
                    let days = s
                        .column(1)
                        .as_primitive_opt::<Int32Type>()
                        .ok_or_else(|| wrong(c))?;
                    let micros = s
                        .column(2)
                        .as_primitive_opt::<Int64Type>()
                        .ok_or_else(|| wrong(c))?;
                    out.extend_from_slice(&16i32.to_be_bytes());
                    out.extend_from_slice(&micros.value(row).to_be_bytes());
                    out.extend_from_slice(&days.value(row).to_be_bytes());
                    out.extend_from_slice(&months.value(row).to_be_bytes());
                }
                BinaryColumn::Uuid => {
                    let a = array.as_fixed_size_binary_opt().ok_or_else(|| wrong(c))?;
                    push_field(a.value(row), out);
                }
                BinaryColumn::Numeric => {
                    text.clear();
                    let t = &table.columns[c].logical_type;
                    match t {
                        LogicalType::DecimalText => {
                            let a = array.as_string_opt::<i32>().ok_or_else(|| wrong(c))?;
                            text.extend_from_slice(a.value(row).as_bytes());
                        }
                        LogicalType::Decimal { precision, scale } if *precision <= 38 => {
                            let a = array
                                .as_primitive_opt::<Decimal128Type>()
                                .ok_or_else(|| wrong(c))?;
                            coffer::codec::format_decimal128(a.value(row), *scale, &mut text);
                        }
                        LogicalType::Decimal { scale, .. } => {
                            let a = array
                                .as_primitive_opt::<Decimal256Type>()
                                .ok_or_else(|| wrong(c))?;
                            coffer::codec::format_decimal256(a.value(row), *scale, &mut text);
                        }
                        _ => return Err(wrong(c)),
                    }
                    push_numeric(&text, out).map_err(|()| {
                        Error::invalid(format!(
                            "row {} of table '{}' holds {:?} in the numeric column '{}', which is not a decimal number",
                            first_row + row as u64 + 1,
                            table.name,
                            String::from_utf8_lossy(&text),
                            table.columns[c].name
                        ))
                    })?;
                }
            }
        }
    }
    if let Some(m) = misfits.next() {
        return Err(Error::internal(format!(
            "a misfit of table '{}' names row {} column {}, outside its batch",
            table.name, m.row, m.column
        )));
    }
    Ok(())
}
