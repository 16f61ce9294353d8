//! Values of the common types from their binary wire form (what binary
//! `COPY` and binary results carry), exactly: nothing is rounded, infinities
//! and NaN are kept, and dates and timestamps cover PostgreSQL's whole range
//! (4713 BC to 5874897 AD, 294276 AD for timestamps), beyond what `jiff` or
//! Arrow's civil types hold.
//!
//! `Display` of a [`Value`] is PostgreSQL's own text output of it in the
//! session coffer sets (`DateStyle ISO`, `TimeZone UTC`, `IntervalStyle
//! iso_8601`, `bytea_output hex`), floats aside (Rust's shortest
//! round-trip form); the tests compare it with the server's `::text`.

use std::fmt::{self, Write as _};

use coffer::codec::layout::civil_from_days;
use coffer::{Error, Result};

/// Type oids coffer decodes (`pg_type.oid`, fixed for built-in types).
pub mod oid {
    #![allow(missing_docs)]
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
    pub const TIMETZ: u32 = 1266;
    pub const INET: u32 = 869;
    pub const CIDR: u32 = 650;
    pub const MACADDR: u32 = 829;
    pub const MACADDR8: u32 = 774;
    pub const MONEY: u32 = 790;
    pub const BIT: u32 = 1560;
    pub const VARBIT: u32 = 1562;
}

/// A decoded value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL (inside arrays; a NULL field is None before decoding).
    Null,
    /// `bool`.
    Bool(bool),
    /// `int2`.
    Int2(i16),
    /// `int4`.
    Int4(i32),
    /// `int8`.
    Int8(i64),
    /// `oid`.
    Oid(u32),
    /// `float4`, every bit kept (NaN, ±Infinity, −0).
    Float4(f32),
    /// `float8`, every bit kept.
    Float8(f64),
    /// `numeric`.
    Numeric(Numeric),
    /// `text`, `varchar`, `bpchar` (with its padding), `name`.
    Text(String),
    /// `bytea`.
    Bytea(Vec<u8>),
    /// `date`.
    Date(Date),
    /// `time`: microseconds since midnight (0 to 24:00:00 inclusive).
    Time(i64),
    /// `timestamp` (no time zone).
    Timestamp(Timestamp),
    /// `timestamptz`: an instant, shown in UTC.
    Timestamptz(Timestamp),
    /// `interval`.
    Interval(Interval),
    /// `uuid`.
    Uuid([u8; 16]),
    /// `json`, as stored (whitespace and key order kept).
    Json(String),
    /// `jsonb`, in its canonical text.
    Jsonb(String),
    /// An array of any element type coffer decodes.
    Array(Array),
    /// `timetz`: microseconds since midnight and the zone's offset in
    /// seconds east of UTC.
    Timetz {
        /// Local time of day.
        micros: i64,
        /// Offset east of UTC, seconds (PostgreSQL keeps it as west, negated here).
        offset_east: i32,
    },
    /// `inet` / `cidr`: an address and its netmask length.
    Inet {
        /// The address.
        addr: std::net::IpAddr,
        /// Netmask length.
        bits: u8,
        /// A `cidr` (always shows its netmask).
        cidr: bool,
    },
    /// `macaddr`.
    MacAddr([u8; 6]),
    /// `macaddr8`.
    MacAddr8([u8; 8]),
    /// `money`: in the currency's smallest unit (cents); its text depends
    /// on `lc_monetary`, so the number is what is kept.
    Money(i64),
    /// `bit(n)` / `varbit`: the bits, most significant first.
    Bits {
        /// Number of bits.
        len: u32,
        /// The bits packed, the last byte padded with zeros.
        bytes: Vec<u8>,
    },
}

/// A `numeric`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Numeric {
    /// `NaN`.
    NaN,
    /// `Infinity` (PostgreSQL 14 and later).
    Infinity,
    /// `-Infinity`.
    NegInfinity,
    /// A finite value as exact decimal text with its display scale
    /// (`-12.3400`, `0.000`).
    Finite(String),
}

/// A `date`: days since 2000-01-01, or an infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Date {
    /// `-infinity`.
    NegInfinity,
    /// Days since 2000-01-01 (negative before).
    Days(i32),
    /// `infinity`.
    Infinity,
}

/// A `timestamp` / `timestamptz`: microseconds since 2000-01-01 00:00:00
/// (UTC for timestamptz), or an infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamp {
    /// `-infinity`.
    NegInfinity,
    /// Microseconds since 2000-01-01 00:00:00.
    Micros(i64),
    /// `infinity`.
    Infinity,
}

/// An `interval`: its three fields as PostgreSQL keeps them (never normalised:
/// `1 mon` and `30 days` differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Months.
    pub months: i32,
    /// Days.
    pub days: i32,
    /// Microseconds.
    pub micros: i64,
}

/// An array: dimensions with their lower bounds, elements in row-major
/// order (NULL elements as [`Value::Null`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// The elements' type oid.
    pub element_oid: u32,
    /// `(length, lower bound)` per dimension; empty for `{}`.
    pub dims: Vec<(i32, i32)>,
    /// The elements.
    pub elements: Vec<Value>,
}

/// Days from 1970-01-01 to 2000-01-01.
const EPOCH_2000_DAYS: i64 = 10_957;
const USECS_PER_DAY: i64 = 86_400_000_000;

impl Date {
    /// Proleptic Gregorian (year, month, day); year 0 is 1 BC.
    pub fn ymd(days: i32) -> (i64, u32, u32) {
        civil_from_days(days as i64 + EPOCH_2000_DAYS)
    }

    /// As a `jiff` date when in its range (years -9999 to 9999).
    pub fn to_jiff(self) -> Option<jiff::civil::Date> {
        match self {
            Date::Days(d) => {
                let (y, m, d) = Date::ymd(d);
                jiff::civil::Date::new(i16::try_from(y).ok()?, m as i8, d as i8).ok()
            }
            _ => None,
        }
    }
}

impl Timestamp {
    /// As a `jiff` instant when in its range (timestamptz, or timestamp read as UTC).
    pub fn to_jiff(self) -> Option<jiff::Timestamp> {
        match self {
            Timestamp::Micros(us) => {
                jiff::Timestamp::from_microsecond(us.checked_add(EPOCH_2000_DAYS * USECS_PER_DAY)?)
                    .ok()
            }
            _ => None,
        }
    }
}

/// Decode a value of type `type_oid` from its binary form.
pub fn decode(type_oid: u32, bytes: &[u8]) -> Result<Value> {
    let bad = |what: &str| {
        Error::corrupt(format!(
            "a {what} value of {} bytes is not valid binary {what}",
            bytes.len()
        ))
    };
    let fixed = |n: usize, what: &str| -> Result<&[u8]> {
        if bytes.len() == n {
            Ok(bytes)
        } else {
            Err(bad(what))
        }
    };
    Ok(match type_oid {
        oid::BOOL => Value::Bool(fixed(1, "bool")?[0] != 0),
        oid::INT2 => Value::Int2(i16::from_be_bytes(fixed(2, "int2")?.try_into().unwrap())),
        oid::INT4 => Value::Int4(i32::from_be_bytes(fixed(4, "int4")?.try_into().unwrap())),
        oid::INT8 => Value::Int8(i64::from_be_bytes(fixed(8, "int8")?.try_into().unwrap())),
        oid::OID => Value::Oid(u32::from_be_bytes(fixed(4, "oid")?.try_into().unwrap())),
        oid::FLOAT4 => Value::Float4(f32::from_be_bytes(fixed(4, "float4")?.try_into().unwrap())),
        oid::FLOAT8 => Value::Float8(f64::from_be_bytes(fixed(8, "float8")?.try_into().unwrap())),
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME => Value::Text(utf8(bytes, "text")?),
        oid::JSON => Value::Json(utf8(bytes, "json")?),
        oid::JSONB => match bytes.split_first() {
            Some((1, text)) => Value::Jsonb(utf8(text, "jsonb")?),
            _ => return Err(bad("jsonb")),
        },
        oid::BYTEA => Value::Bytea(bytes.to_vec()),
        oid::UUID => Value::Uuid(fixed(16, "uuid")?.try_into().unwrap()),
        oid::DATE => Value::Date(
            match i32::from_be_bytes(fixed(4, "date")?.try_into().unwrap()) {
                i32::MIN => Date::NegInfinity,
                i32::MAX => Date::Infinity,
                d => Date::Days(d),
            },
        ),
        oid::TIME => Value::Time(i64::from_be_bytes(fixed(8, "time")?.try_into().unwrap())),
        oid::TIMESTAMP | oid::TIMESTAMPTZ => {
            let us = i64::from_be_bytes(fixed(8, "timestamp")?.try_into().unwrap());
            let ts = match us {
                i64::MIN => Timestamp::NegInfinity,
                i64::MAX => Timestamp::Infinity,
                us => Timestamp::Micros(us),
            };
            if type_oid == oid::TIMESTAMP {
                Value::Timestamp(ts)
            } else {
                Value::Timestamptz(ts)
            }
        }
        oid::INTERVAL => {
            let b = fixed(16, "interval")?;
            Value::Interval(Interval {
                micros: i64::from_be_bytes(b[0..8].try_into().unwrap()),
                days: i32::from_be_bytes(b[8..12].try_into().unwrap()),
                months: i32::from_be_bytes(b[12..16].try_into().unwrap()),
            })
        }
        oid::NUMERIC => Value::Numeric(numeric(bytes).ok_or_else(|| bad("numeric"))?),
        oid::TIMETZ => {
            let b = fixed(12, "timetz")?;
            Value::Timetz {
                micros: i64::from_be_bytes(b[0..8].try_into().unwrap()),
                offset_east: -i32::from_be_bytes(b[8..12].try_into().unwrap()),
            }
        }
        oid::INET | oid::CIDR => inet(bytes).ok_or_else(|| bad("inet"))?,
        oid::MACADDR => Value::MacAddr(fixed(6, "macaddr")?.try_into().unwrap()),
        oid::MACADDR8 => Value::MacAddr8(fixed(8, "macaddr8")?.try_into().unwrap()),
        oid::MONEY => Value::Money(i64::from_be_bytes(fixed(8, "money")?.try_into().unwrap())),
        oid::BIT | oid::VARBIT => {
            let len = bytes
                .get(0..4)
                .map(|b| i32::from_be_bytes(b.try_into().unwrap()))
                .filter(|&n| n >= 0)
                .ok_or_else(|| bad("bit"))? as u32;
            let rest = &bytes[4..];
            if rest.len() != (len as usize).div_ceil(8) {
                return Err(bad("bit"));
            }
            Value::Bits {
                len,
                bytes: rest.to_vec(),
            }
        }
        _ => {
            if let Some(array) = array(bytes)? {
                Value::Array(array)
            } else {
                return Err(Error::invalid(format!(
                    "coffer cannot decode values of type oid {type_oid} from their binary form"
                )));
            }
        }
    })
}

/// Whether values of `type_oid` can be decoded (arrays are recognised by
/// [`decode`] from their content; ask with the element type).
pub fn is_supported(type_oid: u32) -> bool {
    use oid::*;
    matches!(
        type_oid,
        BOOL | INT2
            | INT4
            | INT8
            | OID
            | FLOAT4
            | FLOAT8
            | TEXT
            | VARCHAR
            | BPCHAR
            | NAME
            | JSON
            | JSONB
            | BYTEA
            | UUID
            | DATE
            | TIME
            | TIMESTAMP
            | TIMESTAMPTZ
            | INTERVAL
            | NUMERIC
            | TIMETZ
            | INET
            | CIDR
            | MACADDR
            | MACADDR8
            | MONEY
            | BIT
            | VARBIT
    )
}

fn utf8(bytes: &[u8], what: &str) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        Error::corrupt(format!(
            "a {what} value is not valid UTF-8: the database's encoding must be UTF8, or the client encoding conversion failed"
        ))
    })
}

fn numeric(b: &[u8]) -> Option<Numeric> {
    if b.len() < 8 {
        return None;
    }
    let ndigits = u16::from_be_bytes([b[0], b[1]]) as usize;
    let weight = i16::from_be_bytes([b[2], b[3]]) as i64;
    let sign = u16::from_be_bytes([b[4], b[5]]);
    let dscale = u16::from_be_bytes([b[6], b[7]]) as usize;
    match sign {
        0xC000 => return Some(Numeric::NaN),
        0xD000 => return Some(Numeric::Infinity),
        0xF000 => return Some(Numeric::NegInfinity),
        0x0000 | 0x4000 => {}
        _ => return None,
    }
    if b.len() != 8 + 2 * ndigits {
        return None;
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|i| u16::from_be_bytes([b[8 + 2 * i], b[9 + 2 * i]]))
        .collect();
    if digits.iter().any(|&d| d > 9999) {
        return None;
    }
    let digit = |i: i64| -> u16 {
        if i >= 0 && (i as usize) < ndigits {
            digits[i as usize]
        } else {
            0
        }
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                write!(s, "{}", digit(i)).unwrap();
            } else {
                write!(s, "{:04}", digit(i)).unwrap();
            }
        }
    }
    if dscale > 0 {
        s.push('.');
        let mut frac = String::with_capacity(dscale + 4);
        let mut j = 0;
        while frac.len() < dscale {
            write!(frac, "{:04}", digit(weight + 1 + j)).unwrap();
            j += 1;
        }
        frac.truncate(dscale);
        s.push_str(&frac);
    }
    Some(Numeric::Finite(s))
}

fn inet(b: &[u8]) -> Option<Value> {
    let (&[family, bits, is_cidr, n], addr) = b.split_first_chunk::<4>()?;
    let addr: std::net::IpAddr = match (family, n, addr.len()) {
        // PGSQL_AF_INET, PGSQL_AF_INET6
        (2, 4, 4) => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(addr).ok()?).into(),
        (3, 16, 16) => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(addr).ok()?).into(),
        _ => return None,
    };
    if bits as usize > addr_bits(&addr) {
        return None;
    }
    Some(Value::Inet {
        addr,
        bits,
        cidr: is_cidr != 0,
    })
}

fn addr_bits(addr: &std::net::IpAddr) -> usize {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn array(b: &[u8]) -> Result<Option<Array>> {
    let bad = || Error::corrupt("an array value is not valid binary array form".to_owned());
    let int = |at: usize| -> Result<i32> {
        b.get(at..at + 4)
            .map(|s| i32::from_be_bytes(s.try_into().unwrap()))
            .ok_or_else(bad)
    };
    if b.len() < 12 {
        return Ok(None);
    }
    let ndim = int(0)?;
    let element_oid = int(8)? as u32;
    if !(0..=6).contains(&ndim) || !(is_supported(element_oid)) {
        return Ok(None);
    }
    let mut dims = Vec::with_capacity(ndim as usize);
    let mut at = 12;
    let mut count: i64 = if ndim == 0 { 0 } else { 1 };
    for _ in 0..ndim {
        let (len, lower) = (int(at)?, int(at + 4)?);
        if len < 0 {
            return Err(bad());
        }
        dims.push((len, lower));
        count *= len as i64;
        at += 8;
    }
    let mut elements = Vec::with_capacity(count.min(1 << 20) as usize);
    for _ in 0..count {
        let len = int(at)?;
        at += 4;
        if len == -1 {
            elements.push(Value::Null);
            continue;
        }
        let end = at.checked_add(len as usize).ok_or_else(bad)?;
        let field = b.get(at..end).ok_or_else(bad)?;
        elements.push(decode(element_oid, field)?);
        at = end;
    }
    if at != b.len() {
        return Err(bad());
    }
    Ok(Some(Array {
        element_oid,
        dims,
        elements,
    }))
}

fn write_date(f: &mut impl fmt::Write, days: i64) -> fmt::Result {
    let (y, m, d) = civil_from_days(days + EPOCH_2000_DAYS);
    let year = if y <= 0 { 1 - y } else { y };
    write!(f, "{year:04}-{m:02}-{d:02}")
}

fn bc(days: i64) -> bool {
    civil_from_days(days + EPOCH_2000_DAYS).0 <= 0
}

/// `HH:MM:SS` and `.ffffff` with trailing zeros dropped.
fn write_time(f: &mut impl fmt::Write, us: i64) -> fmt::Result {
    let (h, rest) = (us / 3_600_000_000, us % 3_600_000_000);
    let (m, rest) = (rest / 60_000_000, rest % 60_000_000);
    let (s, frac) = (rest / 1_000_000, rest % 1_000_000);
    write!(f, "{h:02}:{m:02}:{s:02}")?;
    write_fraction(f, frac)
}

fn write_fraction(f: &mut impl fmt::Write, frac: i64) -> fmt::Result {
    if frac != 0 {
        let digits = format!("{:06}", frac.abs());
        write!(f, ".{}", digits.trim_end_matches('0'))?;
    }
    Ok(())
}

fn write_timestamp(f: &mut fmt::Formatter<'_>, ts: &Timestamp, tz: bool) -> fmt::Result {
    match ts {
        Timestamp::NegInfinity => f.write_str("-infinity"),
        Timestamp::Infinity => f.write_str("infinity"),
        Timestamp::Micros(us) => {
            let days = us.div_euclid(USECS_PER_DAY);
            let time = us.rem_euclid(USECS_PER_DAY);
            write_date(f, days)?;
            f.write_char(' ')?;
            write_time(f, time)?;
            if tz {
                f.write_str("+00")?;
            }
            if bc(days) {
                f.write_str(" BC")?;
            }
            Ok(())
        }
    }
}

impl fmt::Display for Interval {
    /// ISO 8601 as PostgreSQL writes it (`IntervalStyle iso_8601`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, mon, mday) = (self.months / 12, self.months % 12, self.days);
        let t = self.micros;
        let hour = t / 3_600_000_000;
        let t = t - hour * 3_600_000_000;
        let min = t / 60_000_000;
        let t = t - min * 60_000_000;
        let sec = t / 1_000_000;
        let fsec = t - sec * 1_000_000;
        if year == 0 && mon == 0 && mday == 0 && hour == 0 && min == 0 && sec == 0 && fsec == 0 {
            return f.write_str("PT0S");
        }
        f.write_char('P')?;
        for (v, c) in [(year as i64, 'Y'), (mon as i64, 'M'), (mday as i64, 'D')] {
            if v != 0 {
                write!(f, "{v}{c}")?;
            }
        }
        if hour != 0 || min != 0 || sec != 0 || fsec != 0 {
            f.write_char('T')?;
        }
        for (v, c) in [(hour, 'H'), (min, 'M')] {
            if v != 0 {
                write!(f, "{v}{c}")?;
            }
        }
        if sec != 0 || fsec != 0 {
            if sec < 0 || fsec < 0 {
                f.write_char('-')?;
            }
            write!(f, "{}", sec.abs())?;
            write_fraction(f, fsec)?;
            f.write_char('S')?;
        }
        Ok(())
    }
}

impl fmt::Display for Numeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Numeric::NaN => f.write_str("NaN"),
            Numeric::Infinity => f.write_str("Infinity"),
            Numeric::NegInfinity => f.write_str("-Infinity"),
            Numeric::Finite(s) => f.write_str(s),
        }
    }
}

fn write_float(f: &mut fmt::Formatter<'_>, v: f64, s: String) -> fmt::Result {
    if v.is_nan() {
        f.write_str("NaN")
    } else if v.is_infinite() {
        f.write_str(if v > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        f.write_str(&s)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(b) => f.write_str(if *b { "t" } else { "f" }),
            Value::Int2(v) => write!(f, "{v}"),
            Value::Int4(v) => write!(f, "{v}"),
            Value::Int8(v) => write!(f, "{v}"),
            Value::Oid(v) => write!(f, "{v}"),
            Value::Float4(v) => write_float(f, *v as f64, v.to_string()),
            Value::Float8(v) => write_float(f, *v, v.to_string()),
            Value::Numeric(n) => write!(f, "{n}"),
            Value::Text(s) | Value::Json(s) | Value::Jsonb(s) => f.write_str(s),
            Value::Bytea(b) => {
                f.write_str("\\x")?;
                for byte in b {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            Value::Date(Date::NegInfinity) => f.write_str("-infinity"),
            Value::Date(Date::Infinity) => f.write_str("infinity"),
            Value::Date(Date::Days(d)) => {
                write_date(f, *d as i64)?;
                if bc(*d as i64) {
                    f.write_str(" BC")?;
                }
                Ok(())
            }
            Value::Time(us) => write_time(f, *us),
            Value::Timestamp(ts) => write_timestamp(f, ts, false),
            Value::Timestamptz(ts) => write_timestamp(f, ts, true),
            Value::Interval(i) => write!(f, "{i}"),
            Value::Uuid(u) => {
                for (i, byte) in u.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_char('-')?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            Value::Array(a) => write!(f, "{a}"),
            Value::Timetz {
                micros,
                offset_east,
            } => {
                write_time(f, *micros)?;
                let sign = if *offset_east < 0 { '-' } else { '+' };
                let o = offset_east.unsigned_abs();
                write!(f, "{sign}{:02}", o / 3600)?;
                if o % 3600 != 0 {
                    write!(f, ":{:02}", o % 3600 / 60)?;
                    if o % 60 != 0 {
                        write!(f, ":{:02}", o % 60)?;
                    }
                }
                Ok(())
            }
            Value::Inet { addr, bits, cidr } => {
                write!(f, "{addr}")?;
                if *cidr || *bits as usize != addr_bits(addr) {
                    write!(f, "/{bits}")?;
                }
                Ok(())
            }
            Value::MacAddr(m) => write_hex_groups(f, m),
            Value::MacAddr8(m) => write_hex_groups(f, m),
            Value::Money(cents) => {
                // lc_monetary C: $, two decimals, "," every three digits.
                let digits = (cents.unsigned_abs() / 100).to_string();
                let mut grouped = String::new();
                for (i, c) in digits.chars().enumerate() {
                    if i > 0 && (digits.len() - i) % 3 == 0 {
                        grouped.push(',');
                    }
                    grouped.push(c);
                }
                let sign = if *cents < 0 { "-" } else { "" };
                write!(f, "{sign}${grouped}.{:02}", cents.unsigned_abs() % 100)
            }
            Value::Bits { len, bytes } => {
                for i in 0..*len as usize {
                    let bit = bytes[i / 8] >> (7 - i % 8) & 1;
                    f.write_char(if bit == 1 { '1' } else { '0' })?;
                }
                Ok(())
            }
        }
    }
}

fn write_hex_groups(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            f.write_char(':')?;
        }
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

impl fmt::Display for Array {
    /// PostgreSQL's array text: `{1,NULL,"a b"}`, nested braces per
    /// dimension, `[0:1]={…}` when a lower bound is not 1.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dims.is_empty() || self.elements.is_empty() {
            return f.write_str("{}");
        }
        if self.dims.iter().any(|&(_, lower)| lower != 1) {
            for &(len, lower) in &self.dims {
                write!(f, "[{}:{}]", lower, lower as i64 + len as i64 - 1)?;
            }
            f.write_char('=')?;
        }
        let mut next = 0;
        self.write_dim(f, 0, &mut next)
    }
}

impl Array {
    fn write_dim(&self, f: &mut fmt::Formatter<'_>, dim: usize, next: &mut usize) -> fmt::Result {
        f.write_char('{')?;
        for i in 0..self.dims[dim].0 {
            if i > 0 {
                f.write_char(',')?;
            }
            if dim + 1 < self.dims.len() {
                self.write_dim(f, dim + 1, next)?;
            } else {
                let element = &self.elements[*next];
                *next += 1;
                match element {
                    Value::Null => f.write_str("NULL")?,
                    v => {
                        let text = v.to_string();
                        let quote = text.is_empty()
                            || text.eq_ignore_ascii_case("null")
                            || text.chars().any(|c| {
                                matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace()
                            });
                        if quote {
                            f.write_char('"')?;
                            for c in text.chars() {
                                if c == '"' || c == '\\' {
                                    f.write_char('\\')?;
                                }
                                f.write_char(c)?;
                            }
                            f.write_char('"')?;
                        } else {
                            f.write_str(&text)?;
                        }
                    }
                }
            }
        }
        f.write_char('}')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(Date::ymd(0), (2000, 1, 1));
        assert_eq!(Date::ymd(-1), (1999, 12, 31));
        assert_eq!(Date::ymd(59), (2000, 2, 29));
        // 1 BC is year 0: shown as 0001 BC.
        assert_eq!(
            Value::Date(Date::Days(-730_119 - 366)).to_string(),
            "0001-01-01 BC"
        );
        assert_eq!(Date::Days(0).to_jiff(), Some(jiff::civil::date(2000, 1, 1)));
    }

    #[test]
    fn damaged_values_are_errors() {
        assert!(decode(oid::INT4, &[0, 0, 1]).is_err());
        assert!(decode(oid::NUMERIC, &[0, 1, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(decode(oid::NUMERIC, &[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10]).is_err());
        assert!(decode(oid::TEXT, &[0xff]).is_err());
        assert!(decode(oid::JSONB, b"{}").is_err());
        assert!(decode(600, b"whatever").is_err());
    }
}
