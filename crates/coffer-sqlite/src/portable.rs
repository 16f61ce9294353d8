//! Portable column types for exports: `date`, `timestamp` and
//! `decimal(P,S)` where the source declares them.
//!
//! SQLite has no date or decimal storage: a `DATE` column holds text, a
//! `DECIMAL(10,2)` column integers and reals. A backup keeps those plain
//! types. An export, which other tools read, gives such a column the natural
//! Parquet type — but only when **every** value of the column converts to it
//! and back to the very same value and storage class; otherwise the column
//! keeps its plain type. The rules:
//!
//! * declared `DATE` (a `utf8` column) → `date` when every value is text
//!   `YYYY-MM-DD` naming a real day of the years 0001–9999;
//! * declared `DATETIME` or `TIMESTAMP` (not `WITH TIME ZONE`) → `timestamp`
//!   when every value is text in one of the layouts `YYYY-MM-DD HH:MM:SS`,
//!   optionally with `T` instead of the space and with exactly 3 or 6
//!   fraction digits — the same layout for the whole column, recorded in the
//!   column's `text_format`;
//! * declared `DECIMAL(P,S)` or `NUMERIC(P,S)` (P ≤ 38; a `float64` column)
//!   → `decimal(P,S)` when every value is an integer or real that has at
//!   most S digits after the point, at most P digits in all, and comes back
//!   as the same value and storage class (reals by bit pattern).
//!
//! A column without any value converts too (nothing contradicts it).
//! Deciding takes a first pass over the table ([`TypeProbe`]), which stops
//! as soon as every candidate column is ruled out; [`to_portable`] then
//! converts the scanned batches, and [`to_plain`] converts them back for
//! engines that store the plain types.

use std::sync::Arc;

use arrow_array::builder::{
    Date32Builder, Decimal128Builder, Float64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{
    Array, ArrayRef, Date32Array, Decimal128Array, Float64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};

use coffer::codec::layout::{
    DATE_LAYOUT, Layout, format_date, format_decimal, format_timestamp, parse_date, parse_decimal,
    parse_timestamp, pow10,
};
use coffer::datafile::arrow_schema;
use coffer::engine::{DataBatch, Misfit, RawValue, SqliteValue};
use coffer::manifest::{LogicalType, Table};
use coffer::{Error, Result};

/// Whether `t` is one of the portable types that SQLite's exports derive
/// from plain values: `date`, `timestamp`, `decimal(P,S)` up to 38 digits.
pub fn is_portable(t: &LogicalType) -> bool {
    match t {
        LogicalType::Date | LogicalType::Timestamp => true,
        LogicalType::Decimal { precision, .. } => *precision <= 38,
        _ => false,
    }
}

/// Whether `t` is one of the four plain types that SQLite's backups have.
pub fn is_plain(t: &LogicalType) -> bool {
    matches!(
        t,
        LogicalType::Int64 | LogicalType::Float64 | LogicalType::Utf8 | LogicalType::Binary
    )
}

/// The plain type that carries a type's values in SQLite: dates and
/// timestamps as `utf8` (text in their layout), decimals up to 38 digits as
/// `float64` (reals, or integers when whole), booleans and narrower
/// integers as `int64`, `float32` as `float64`, and every other type as
/// `utf8` in its CSV text form ([`coffer::codec`]).
pub fn plain_type(t: &LogicalType) -> LogicalType {
    match t {
        LogicalType::Int64 | LogicalType::Float64 | LogicalType::Utf8 | LogicalType::Binary => {
            t.clone()
        }
        LogicalType::Bool | LogicalType::Int16 | LogicalType::Int32 => LogicalType::Int64,
        LogicalType::Float32 => LogicalType::Float64,
        LogicalType::Decimal { precision, .. } if *precision <= 38 => LogicalType::Float64,
        _ => LogicalType::Utf8,
    }
}

/// Whether any column of `table` has a type that is not plain.
pub fn has_portable_columns(table: &Table) -> bool {
    table.columns.iter().any(|c| !is_plain(&c.logical_type))
}

/// `table` with every column in its plain type: what an engine without the
/// portable types scans and stores.
pub fn plain_table(table: &Table) -> Table {
    let mut t = table.clone();
    for c in &mut t.columns {
        c.logical_type = plain_type(&c.logical_type);
        c.text_format = None;
    }
    t
}

/// The portable type a declared column type asks for, if any, given the
/// plain logical type the column has now.
pub fn declared_portable_type(declared: &str, plain: &LogicalType) -> Option<LogicalType> {
    let t = declared.trim().to_ascii_uppercase();
    let base: String = t
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    match (base.as_str(), plain) {
        ("DATE", LogicalType::Utf8) => Some(LogicalType::Date),
        ("DATETIME" | "TIMESTAMP", LogicalType::Utf8) if !t.contains("ZONE") => {
            Some(LogicalType::Timestamp)
        }
        ("DECIMAL" | "NUMERIC", LogicalType::Float64) => {
            let args = t[base.len()..].trim();
            let inner = args.strip_prefix('(')?.strip_suffix(')')?;
            let (p, s) = match inner.split_once(',') {
                Some((p, s)) => (p.trim().parse::<u8>().ok()?, s.trim().parse::<i8>().ok()?),
                None => (inner.trim().parse::<u8>().ok()?, 0),
            };
            ((1..=38).contains(&p) && s >= 0 && s as u8 <= p).then_some(LogicalType::Decimal {
                precision: p,
                scale: s,
            })
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Decimals.

/// A decimal as a plain value: an integer when it is whole and fits i64,
/// otherwise the nearest double of its decimal text.
fn decimal_to_plain(v: i128, scale: i8) -> SqliteValue {
    let pow = pow10(scale as u8);
    if v % pow == 0
        && let Ok(i) = i64::try_from(v / pow)
    {
        return SqliteValue::Integer(i);
    }
    SqliteValue::Real(
        format_decimal(v, scale)
            .parse()
            .expect("decimal text parses as a double"),
    )
}

/// The exact decimal of a plain value, if it has one that converts back to
/// the same value and storage class.
fn plain_to_decimal(v: &SqliteValue, precision: u8, scale: i8) -> Option<i128> {
    let unscaled = match v {
        SqliteValue::Integer(i) => i128::from(*i).checked_mul(pow10(scale as u8))?,
        SqliteValue::Real(x) if x.is_finite() => {
            parse_decimal(&format!("{:.*}", scale as usize, x), 38, scale)?
        }
        _ => return None,
    };
    if unscaled.unsigned_abs() >= pow10(precision) as u128 {
        return None;
    }
    let same = match (decimal_to_plain(unscaled, scale), v) {
        (SqliteValue::Integer(a), SqliteValue::Integer(b)) => a == *b,
        (SqliteValue::Real(a), SqliteValue::Real(b)) => a.to_bits() == b.to_bits(),
        _ => false,
    };
    same.then_some(unscaled)
}

// ---------------------------------------------------------------------------

// Deciding the types.

#[derive(Debug, Clone)]
struct Probe {
    column: usize,
    target: LogicalType,
    alive: bool,
    layout: Option<Layout>,
}

/// Decides which columns of a table take a portable type, from a pass over
/// its rows (in the plain types).
#[derive(Debug, Clone)]
pub struct TypeProbe {
    probes: Vec<Probe>,
}

impl TypeProbe {
    /// A probe for `table`'s candidate columns; `None` when it has none.
    pub fn new(table: &Table) -> Option<TypeProbe> {
        let probes: Vec<Probe> = table
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| Some(&c.name) != table.hidden_key.as_ref())
            .filter_map(|(i, c)| {
                declared_portable_type(&c.declared_type, &c.logical_type).map(|target| Probe {
                    column: i,
                    layout: (target == LogicalType::Date)
                        .then(|| Layout::parse(DATE_LAYOUT).expect("the date layout is listed")),
                    target,
                    alive: true,
                })
            })
            .collect();
        (!probes.is_empty()).then_some(TypeProbe { probes })
    }

    /// Whether every candidate has been ruled out (reading on is useless).
    pub fn settled(&self) -> bool {
        self.probes.iter().all(|p| !p.alive)
    }

    /// Check the values of one batch (in the table's plain types).
    pub fn feed(&mut self, batch: &DataBatch) {
        for p in self.probes.iter_mut().filter(|p| p.alive) {
            if batch.misfits.iter().any(|m| {
                m.column as usize == p.column
                    && !matches!(
                        (&p.target, &m.value),
                        (
                            LogicalType::Decimal { .. },
                            RawValue::Sqlite(SqliteValue::Integer(_))
                        )
                    )
            }) {
                p.alive = false;
                continue;
            }
            let array = batch.columns.column(p.column);
            p.alive = match p.target.clone() {
                LogicalType::Date | LogicalType::Timestamp => {
                    let Some(a) = array.as_any().downcast_ref::<StringArray>() else {
                        p.alive = false;
                        continue;
                    };
                    a.iter().flatten().all(|s| {
                        let s = s.as_bytes();
                        if p.target == LogicalType::Date {
                            return parse_date(s).is_some();
                        }
                        let layout = match p.layout {
                            Some(l) => l,
                            None => match Layout::detect(s) {
                                Some(l) => {
                                    p.layout = Some(l);
                                    l
                                }
                                None => return false,
                            },
                        };
                        parse_timestamp(s, layout).is_some()
                    })
                }
                LogicalType::Decimal { precision, scale } => {
                    let Some(a) = array.as_any().downcast_ref::<Float64Array>() else {
                        p.alive = false;
                        continue;
                    };
                    let reals = a.iter().flatten().all(|x| {
                        plain_to_decimal(&SqliteValue::Real(x), precision, scale).is_some()
                    });
                    reals
                        && batch
                            .misfits
                            .iter()
                            .filter(|m| m.column as usize == p.column)
                            .all(|m| {
                                m.value
                                    .as_sqlite()
                                    .and_then(|v| plain_to_decimal(v, precision, scale))
                                    .is_some()
                            })
                }
                _ => false,
            };
        }
    }

    /// `table` with the surviving candidates in their portable types.
    pub fn refine(&self, table: &Table) -> Table {
        let mut t = table.clone();
        for p in self.probes.iter().filter(|p| p.alive) {
            let c = &mut t.columns[p.column];
            c.logical_type = p.target.clone();
            c.text_format = match p.target {
                LogicalType::Date => Some(DATE_LAYOUT.to_string()),
                LogicalType::Timestamp => Some(
                    p.layout
                        .unwrap_or(Layout {
                            time: true,
                            sep: b' ',
                            frac: 0,
                        })
                        .name()
                        .to_string(),
                ),
                _ => None,
            };
        }
        t
    }
}

// ---------------------------------------------------------------------------
// Converting batches.

fn layout_of(table: &Table, column: usize) -> Result<Option<Layout>> {
    match &table.columns[column].text_format {
        None => Ok(None),
        Some(name) => Layout::parse(name).map(Some).ok_or_else(|| {
            Error::corrupt(format!(
                "column '{}' of table '{}' has the unknown text format '{name}'",
                table.columns[column].name, table.name
            ))
        }),
    }
}

fn misfits_of(misfits: &[Misfit], column: usize) -> impl Iterator<Item = &Misfit> {
    misfits.iter().filter(move |m| m.column as usize == column)
}

/// Convert a batch scanned in `table`'s plain types to its portable types.
/// Fails (a bug: the probe said every value converts) on a value that does
/// not convert.
pub fn to_portable(batch: DataBatch, table: &Table) -> Result<DataBatch> {
    let not_converted = |column: usize| {
        Error::internal(format!(
            "a value of column '{}' of table '{}' does not convert to {}",
            table.columns[column].name, table.name, table.columns[column].logical_type
        ))
    };
    let mut columns: Vec<ArrayRef> = batch.columns.columns().to_vec();
    let mut consumed = vec![false; table.columns.len()];
    for (i, col) in table.columns.iter().enumerate() {
        let array = batch.columns.column(i);
        // Columns the engine scanned in their own type stay as they are.
        if !is_portable(&col.logical_type)
            || *array.data_type() == coffer::datafile::arrow_type(&col.logical_type)
        {
            continue;
        }
        consumed[i] = true;
        let n = array.len();
        columns[i] = match col.logical_type {
            LogicalType::Date | LogicalType::Timestamp => {
                if misfits_of(&batch.misfits, i).next().is_some() {
                    return Err(not_converted(i));
                }
                let a = array
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| not_converted(i))?;
                if col.logical_type == LogicalType::Date {
                    let mut b = Date32Builder::with_capacity(n);
                    for v in a.iter() {
                        match v {
                            None => b.append_null(),
                            Some(s) => b.append_value(
                                parse_date(s.as_bytes()).ok_or_else(|| not_converted(i))?,
                            ),
                        }
                    }
                    Arc::new(b.finish())
                } else {
                    let layout = layout_of(table, i)?;
                    let mut b = TimestampMicrosecondBuilder::with_capacity(n);
                    for v in a.iter() {
                        match v {
                            None => b.append_null(),
                            Some(s) => {
                                let s = s.as_bytes();
                                let l = layout.or_else(|| Layout::detect(s));
                                let micros = l
                                    .and_then(|l| parse_timestamp(s, l))
                                    .ok_or_else(|| not_converted(i))?;
                                b.append_value(micros);
                            }
                        }
                    }
                    Arc::new(b.finish())
                }
            }
            LogicalType::Decimal { precision, scale } => {
                let a = array
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .ok_or_else(|| not_converted(i))?;
                let mut ints = misfits_of(&batch.misfits, i).peekable();
                let mut b = Decimal128Builder::with_capacity(n);
                for row in 0..n {
                    if let Some(m) = ints.next_if(|m| m.row == row as u64) {
                        b.append_value(
                            m.value
                                .as_sqlite()
                                .and_then(|v| plain_to_decimal(v, precision, scale))
                                .ok_or_else(|| not_converted(i))?,
                        );
                    } else if a.is_valid(row) {
                        b.append_value(
                            plain_to_decimal(&SqliteValue::Real(a.value(row)), precision, scale)
                                .ok_or_else(|| not_converted(i))?,
                        );
                    } else {
                        b.append_null();
                    }
                }
                if ints.next().is_some() {
                    return Err(not_converted(i));
                }
                Arc::new(
                    b.finish()
                        .with_precision_and_scale(precision, scale)
                        .map_err(|e| Error::internal(e.to_string()))?,
                )
            }
            _ => unreachable!("only portable types are converted"),
        };
    }
    let columns = RecordBatch::try_new(arrow_schema(table), columns).map_err(|e| {
        Error::internal(format!(
            "could not build a batch of table '{}': {e}",
            table.name
        ))
    })?;
    let misfits = batch
        .misfits
        .into_iter()
        .filter(|m| !consumed[m.column as usize])
        .collect();
    Ok(DataBatch { columns, misfits })
}

/// A column of a type SQLite has no storage for in its plain type
/// ([`plain_type`]): booleans as 0 and 1, narrower integers and singles
/// widened exactly, anything else as its text.
fn other_to_plain(array: &dyn Array, t: &LogicalType) -> Result<ArrayRef> {
    use arrow_array::{BooleanArray, Float32Array, Int16Array, Int32Array, Int64Array};
    let any = array.as_any();
    let wrong = || Error::internal(format!("a {t} column holds {}", array.data_type()));
    Ok(match t {
        LogicalType::Bool => {
            let a = any.downcast_ref::<BooleanArray>().ok_or_else(wrong)?;
            Arc::new(a.iter().map(|v| v.map(i64::from)).collect::<Int64Array>())
        }
        LogicalType::Int16 => {
            let a = any.downcast_ref::<Int16Array>().ok_or_else(wrong)?;
            Arc::new(a.iter().map(|v| v.map(i64::from)).collect::<Int64Array>())
        }
        LogicalType::Int32 => {
            let a = any.downcast_ref::<Int32Array>().ok_or_else(wrong)?;
            Arc::new(a.iter().map(|v| v.map(i64::from)).collect::<Int64Array>())
        }
        LogicalType::Float32 => {
            let a = any.downcast_ref::<Float32Array>().ok_or_else(wrong)?;
            Arc::new(a.iter().map(|v| v.map(f64::from)).collect::<Float64Array>())
        }
        _ => Arc::new(coffer::datafile::csv::text_column(array, t)?),
    })
}

/// Convert a batch in `table`'s types (portable ones included) to the
/// plain types: dates and timestamps as text in the column's
/// `text_format`, decimals as reals, or integers when whole, and the types
/// SQLite has no storage for as [`plain_type`] says. `origin` names the
/// data in errors.
pub fn to_plain(batch: &DataBatch, table: &Table, origin: &str) -> Result<DataBatch> {
    if !has_portable_columns(table) {
        return Ok(batch.clone());
    }
    let mismatch = |column: usize| {
        Error::corrupt(format!(
            "{origin} does not hold {} values in column '{}' of table '{}' as its manifest says",
            table.columns[column].logical_type, table.columns[column].name, table.name
        ))
    };
    let mut columns: Vec<ArrayRef> = batch.columns.columns().to_vec();
    let mut misfits = batch.misfits.clone();
    let mut added = false;
    for (i, col) in table.columns.iter().enumerate() {
        if is_plain(&col.logical_type) {
            continue;
        }
        let array = batch.columns.column(i);
        if !is_portable(&col.logical_type) {
            columns[i] =
                other_to_plain(array.as_ref(), &col.logical_type).map_err(|_| mismatch(i))?;
            continue;
        }
        let n = array.len();
        columns[i] = match col.logical_type {
            LogicalType::Date => {
                let a = array
                    .as_any()
                    .downcast_ref::<Date32Array>()
                    .ok_or_else(|| mismatch(i))?;
                let mut b = StringBuilder::with_capacity(n, n * 10);
                for v in a.iter() {
                    match v {
                        Some(d) => b.append_value(format_date(d)),
                        None => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            LogicalType::Timestamp => {
                let a = array
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .ok_or_else(|| mismatch(i))?;
                let layout = layout_of(table, i)?.filter(|l| l.time);
                let mut b = StringBuilder::with_capacity(n, n * 26);
                for v in a.iter() {
                    match v {
                        Some(t) => b.append_value(format_timestamp(t, layout)),
                        None => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            LogicalType::Decimal { scale, .. } => {
                let a = array
                    .as_any()
                    .downcast_ref::<Decimal128Array>()
                    .ok_or_else(|| mismatch(i))?;
                let mut b = Float64Builder::with_capacity(n);
                for row in 0..n {
                    if a.is_null(row) {
                        b.append_null();
                        continue;
                    }
                    match decimal_to_plain(a.value(row), scale) {
                        SqliteValue::Real(x) => b.append_value(x),
                        value => {
                            b.append_null();
                            added = true;
                            misfits.push(Misfit {
                                row: row as u64,
                                column: i as u32,
                                value: value.into(),
                            });
                        }
                    }
                }
                Arc::new(b.finish())
            }
            _ => unreachable!("only portable types are converted"),
        };
    }
    if added {
        misfits.sort_by_key(|m| (m.row, m.column));
    }
    let columns = RecordBatch::try_new(arrow_schema(&plain_table(table)), columns)
        .map_err(|e| Error::corrupt(format!("{origin} does not match its manifest ({e})")))?;
    Ok(DataBatch { columns, misfits })
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer::manifest::Column;

    fn table(cols: &[(&str, LogicalType, &str)]) -> Table {
        Table {
            name: "t".into(),
            kind: coffer::manifest::TableKind::Table,
            columns: cols
                .iter()
                .map(|(n, t, d)| Column {
                    name: n.to_string(),
                    logical_type: t.clone(),
                    declared_type: d.to_string(),
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
    fn declared_types() {
        use LogicalType::*;
        assert_eq!(declared_portable_type("date", &Utf8), Some(Date));
        assert_eq!(declared_portable_type("DATETIME", &Utf8), Some(Timestamp));
        assert_eq!(declared_portable_type("timestamp", &Utf8), Some(Timestamp));
        assert_eq!(
            declared_portable_type("TIMESTAMP WITH TIME ZONE", &Utf8),
            None
        );
        assert_eq!(
            declared_portable_type("DECIMAL(10,2)", &Float64),
            Some(Decimal {
                precision: 10,
                scale: 2
            })
        );
        assert_eq!(
            declared_portable_type("numeric (12)", &Float64),
            Some(Decimal {
                precision: 12,
                scale: 0
            })
        );
        assert_eq!(declared_portable_type("DECIMAL", &Float64), None);
        assert_eq!(declared_portable_type("DECIMAL(40,2)", &Float64), None);
        assert_eq!(declared_portable_type("DECIMAL(2,3)", &Float64), None);
        assert_eq!(declared_portable_type("DATE", &Int64), None);
        assert_eq!(declared_portable_type("TEXT", &Utf8), None);
        assert_eq!(declared_portable_type("UPDATED_DATE", &Utf8), None);
    }

    #[test]
    fn dates_are_strict() {
        assert_eq!(parse_date(b"1970-01-01"), Some(0));
        assert_eq!(parse_date(b"2024-02-29"), Some(19_782));
        assert_eq!(parse_date(b"2023-02-29"), None);
        assert_eq!(parse_date(b"2024-13-01"), None);
        assert_eq!(parse_date(b"0000-01-01"), None);
        assert_eq!(parse_date(b"2024-1-01"), None);
        assert_eq!(parse_date(b"2024-01-01 "), None);
        for d in [-719_162, -1, 0, 1, 19_782, 2_932_896] {
            assert_eq!(parse_date(format_date(d).as_bytes()), Some(d));
        }
    }

    #[test]
    fn timestamps_keep_their_layout() {
        for s in [
            "2024-01-01 12:00:00",
            "1969-12-31T23:59:59",
            "2024-06-30 01:02:03.450",
            "0001-01-01T00:00:00.000001",
            "9999-12-31 23:59:59.999999",
        ] {
            let layout = Layout::detect(s.as_bytes()).unwrap();
            let micros = parse_timestamp(s.as_bytes(), layout).unwrap();
            assert_eq!(format_timestamp(micros, Some(layout)), s);
            assert_eq!(Layout::parse(layout.name()), Some(layout));
        }
        for bad in [
            "2024-01-01 24:00:00",
            "2024-01-01 12:00",
            "2024-01-01 12:00:00Z",
            "2024-01-01 12:00:00.5",
            "2024-02-30 00:00:00",
        ] {
            let ok = Layout::detect(bad.as_bytes())
                .and_then(|l| parse_timestamp(bad.as_bytes(), l))
                .is_some();
            assert!(!ok, "{bad}");
        }
        assert_eq!(
            format_timestamp(1_500_000, None),
            "1970-01-01 00:00:01.500000"
        );
    }

    #[test]
    fn decimals_convert_only_exactly() {
        let d = |v: SqliteValue| plain_to_decimal(&v, 10, 2);
        assert_eq!(d(SqliteValue::Real(12.5)), Some(1250));
        assert_eq!(d(SqliteValue::Real(0.1)), Some(10));
        assert_eq!(d(SqliteValue::Real(-0.07)), Some(-7));
        assert_eq!(d(SqliteValue::Integer(12)), Some(1200));
        assert_eq!(d(SqliteValue::Real(12.345)), None);
        assert_eq!(d(SqliteValue::Real(-0.0)), None);
        assert_eq!(
            d(SqliteValue::Real(12.0)),
            None,
            "a whole real comes back as an integer"
        );
        assert_eq!(d(SqliteValue::Real(1e300)), None);
        assert_eq!(d(SqliteValue::Integer(i64::MAX)), None);
        assert_eq!(d(SqliteValue::Text(b"1".to_vec())), None);
        assert_eq!(format_decimal(-7, 2), "-0.07");
        assert_eq!(format_decimal(1250, 2), "12.50");
        assert_eq!(format_decimal(5, 0), "5");
        assert_eq!(parse_decimal("-0.07", 10, 2), Some(-7));
        assert_eq!(parse_decimal("12.5", 10, 2), None);
        assert_eq!(parse_decimal("5", 10, 0), Some(5));
        assert_eq!(parse_decimal("12345678901", 10, 0), None);
    }

    #[test]
    fn batches_convert_both_ways() {
        use LogicalType::*;
        let plain = table(&[
            ("d", Utf8, "DATE"),
            ("ts", Utf8, "DATETIME"),
            ("price", Float64, "DECIMAL(10,2)"),
            ("other", Utf8, "TEXT"),
        ]);
        let batch = DataBatch {
            columns: RecordBatch::try_new(
                arrow_schema(&plain),
                vec![
                    Arc::new(StringArray::from(vec![
                        Some("2024-01-02"),
                        None,
                        Some("1999-12-31"),
                    ])),
                    Arc::new(StringArray::from(vec![
                        Some("2024-01-02T03:04:05.678"),
                        Some("1970-01-01T00:00:00.000"),
                        None,
                    ])),
                    Arc::new(Float64Array::from(vec![Some(1.25), None, None])),
                    Arc::new(StringArray::from(vec![Some("x"), None, Some("")])),
                ],
            )
            .unwrap(),
            misfits: vec![
                Misfit {
                    row: 2,
                    column: 2,
                    value: SqliteValue::Integer(7).into(),
                },
                Misfit {
                    row: 2,
                    column: 3,
                    value: SqliteValue::Blob(vec![1]).into(),
                },
            ],
        };
        let mut probe = TypeProbe::new(&plain).unwrap();
        probe.feed(&batch);
        assert!(!probe.settled());
        let portable = probe.refine(&plain);
        assert_eq!(portable.columns[0].logical_type, Date);
        assert_eq!(portable.columns[1].logical_type, Timestamp);
        assert_eq!(
            portable.columns[1].text_format.as_deref(),
            Some("%Y-%m-%dT%H:%M:%S%.3f")
        );
        assert_eq!(
            portable.columns[2].logical_type,
            Decimal {
                precision: 10,
                scale: 2
            }
        );
        assert_eq!(portable.columns[3].logical_type, Utf8);
        let converted = to_portable(batch.clone(), &portable).unwrap();
        assert_eq!(converted.misfits.len(), 1);
        let back = to_plain(&converted, &portable, "test").unwrap();
        assert_eq!(back.columns, batch.columns);
        assert_eq!(back.misfits, batch.misfits);

        // One odd value keeps a column plain.
        let odd = DataBatch {
            columns: RecordBatch::try_new(
                arrow_schema(&plain),
                vec![
                    Arc::new(StringArray::from(vec![Some("2024-01-02"), Some("now")])),
                    Arc::new(StringArray::from(vec![
                        Some("2024-01-02 03:04:05"),
                        Some("2024-01-02T03:04:05"),
                    ])),
                    Arc::new(Float64Array::from(vec![Some(1.255), None])),
                    Arc::new(StringArray::from(vec![Some("x"), None])),
                ],
            )
            .unwrap(),
            misfits: vec![],
        };
        let mut probe = TypeProbe::new(&plain).unwrap();
        probe.feed(&odd);
        assert!(probe.settled());
        assert_eq!(probe.refine(&plain), plain);
    }
}
