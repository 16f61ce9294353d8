//! Text forms of the engine-neutral types (see [`crate::manifest::LogicalType`]),
//! as CSV data files write them: each value's text reads back as exactly
//! the same value. Writers append to a buffer (no allocation per value);
//! parsers are strict and take exactly what the writers write.
//!
//! * booleans: `true`, `false`;
//! * `float32`: the shortest text that reads back as the same single
//!   (`0.1`, `-0.0`, `inf`, `-inf`, `NaN`), as for `float64`;
//! * decimals: digits with exactly `scale` of them after the point;
//! * dates: `YYYY-MM-DD` for years 0000 to 9999 (astronomical numbering:
//!   year 0 is 1 BC), otherwise ISO 8601's expanded years with a sign:
//!   `-0044-03-15`, `+10000-01-01`;
//! * times: `HH:MM:SS` and `.ffffff` when there is a fraction (`24:00:00`
//!   is a time, as in PostgreSQL);
//! * timestamps: a date, a space and a time of day (`2024-01-31
//!   23:59:59.000001`); `timestamptz` the same in UTC with `+00:00`;
//! * intervals: ISO 8601 durations as PostgreSQL's `iso_8601` style writes
//!   them, each part signed on its own (`P1Y2M3DT4H5M6.5S`,
//!   `P-1M3DT-0.000001S`, `PT0S`): years and months make the months, hours,
//!   minutes and seconds the microseconds;
//! * UUIDs: lowercase `8-4-4-4-12` hex.

use std::io::Write;

pub mod layout;

use arrow_buffer::i256;

/// Microseconds in a day.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// `true` or `false`.
pub fn format_bool(b: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// `true` or `false`, exactly.
pub fn parse_bool(s: &[u8]) -> Option<bool> {
    match s {
        b"true" => Some(true),
        b"false" => Some(false),
        _ => None,
    }
}

/// The shortest text that reads back as exactly `x` (`0.1`, `-0.0`,
/// `inf`, `-inf`, `NaN`).
pub fn format_f32(x: f32, out: &mut Vec<u8>) {
    if x.is_infinite() {
        out.extend_from_slice(if x > 0.0 { b"inf" } else { b"-inf" });
    } else {
        let _ = write!(out, "{x:?}");
    }
}

/// The digits of an unscaled decimal (its `Display`, with a leading `-`
/// when negative) with the point put `scale` digits from the right.
fn push_scaled(digits: &str, scale: usize, out: &mut Vec<u8>) {
    let (sign, digits) = match digits.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", digits),
    };
    out.extend_from_slice(sign.as_bytes());
    if scale == 0 {
        out.extend_from_slice(digits.as_bytes());
        return;
    }
    if digits.len() <= scale {
        out.push(b'0');
        out.push(b'.');
        out.extend(std::iter::repeat_n(b'0', scale - digits.len()));
        out.extend_from_slice(digits.as_bytes());
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int.as_bytes());
        out.push(b'.');
        out.extend_from_slice(frac.as_bytes());
    }
}

/// An unscaled Decimal256 as text with exactly `scale` digits after the
/// point.
pub fn format_decimal256(v: i256, scale: i8, out: &mut Vec<u8>) {
    push_scaled(&v.to_string(), scale as usize, out);
}

/// An unscaled Decimal128 as text with exactly `scale` digits after the
/// point.
pub fn format_decimal128(v: i128, scale: i8, out: &mut Vec<u8>) {
    push_scaled(&v.to_string(), scale as usize, out);
}

/// The sign and the digits without the point of decimal text with exactly
/// `scale` fraction digits (none, and no point, when the scale is 0), if
/// they fit `precision`.
fn scaled_digits(s: &[u8], precision: u8, scale: i8) -> Option<(bool, Vec<u8>)> {
    let (neg, body) = match s.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = match body.iter().position(|&b| b == b'.') {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, &b""[..]),
    };
    if int.is_empty()
        || frac.len() != scale as usize
        || (scale > 0) != body.contains(&b'.')
        || !int.iter().chain(frac).all(u8::is_ascii_digit)
    {
        return None;
    }
    let mut digits: Vec<u8> = int.iter().chain(frac).copied().collect();
    let first = digits
        .iter()
        .position(|&b| b != b'0')
        .unwrap_or(digits.len());
    digits.drain(..first);
    (digits.len() <= precision as usize).then_some((neg, digits))
}

/// Decimal text with exactly `scale` fraction digits as an unscaled
/// Decimal256 of at most `precision` digits.
pub fn parse_decimal256(s: &[u8], precision: u8, scale: i8) -> Option<i256> {
    let (neg, digits) = scaled_digits(s, precision, scale)?;
    let mut v = i256::ZERO;
    let ten = i256::from_i128(10);
    for d in digits {
        v = v
            .checked_mul(ten)?
            .checked_add(i256::from_i128(i128::from(d - b'0')))?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// Whether `s` is the text of a `decimal` (no declared precision) value:
/// `-?D+(.D+)?`.
pub fn is_decimal_text(s: &[u8]) -> bool {
    let body = s.strip_prefix(b"-").unwrap_or(s);
    let (int, frac) = match body.iter().position(|&b| b == b'.') {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    !int.is_empty()
        && int.iter().all(u8::is_ascii_digit)
        && frac.is_none_or(|f| !f.is_empty() && f.iter().all(u8::is_ascii_digit))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    layout::days_from_civil(y, m, d)
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    layout::civil_from_days(z)
}

fn push_date(days: i64, out: &mut Vec<u8>) {
    let (y, m, d) = civil_from_days(days);
    let _ = if (0..=9999).contains(&y) {
        write!(out, "{y:04}-{m:02}-{d:02}")
    } else if y > 9999 {
        write!(out, "+{y}-{m:02}-{d:02}")
    } else {
        write!(out, "-{:04}-{m:02}-{d:02}", -y)
    };
}

/// A date as PostgreSQL writes and reads it: `YYYY-MM-DD` for years 1 and
/// later (any number of digits), `YYYY-MM-DD BC` before (1 BC is the
/// astronomical year 0). Returns whether it is BC, so a timestamp puts the
/// ` BC` after its time.
fn push_pg_date(days: i64, out: &mut Vec<u8>) -> bool {
    let (y, m, d) = civil_from_days(days);
    if y >= 1 {
        let _ = write!(out, "{y:04}-{m:02}-{d:02}");
        false
    } else {
        let _ = write!(out, "{:04}-{m:02}-{d:02}", 1 - y);
        true
    }
}

/// Days since 1970-01-01 in PostgreSQL's text form (`0044-03-15 BC`).
pub fn format_pg_date(days: i32, out: &mut Vec<u8>) {
    if push_pg_date(i64::from(days), out) {
        out.extend_from_slice(b" BC");
    }
}

/// Microseconds since 1970-01-01 00:00:00 in PostgreSQL's text form
/// (`0044-03-15 12:00:00.5 BC`); with `utc`, an instant with `+00:00`.
pub fn format_pg_timestamp(micros: i64, utc: bool, out: &mut Vec<u8>) {
    let bc = push_pg_date(micros.div_euclid(MICROS_PER_DAY), out);
    out.push(b' ');
    push_time_of_day(micros.rem_euclid(MICROS_PER_DAY), out);
    if utc {
        out.extend_from_slice(b"+00:00");
    }
    if bc {
        out.extend_from_slice(b" BC");
    }
}

/// Days since 1970-01-01 as a date (see the module docs).
pub fn format_date(days: i32, out: &mut Vec<u8>) {
    push_date(i64::from(days), out);
}

fn number(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0i64, |v, &b| v * 10 + i64::from(b - b'0')))
}

/// A date as [`format_date`] writes it, as days since 1970-01-01; the
/// rest of `s` after it.
fn take_date(s: &[u8]) -> Option<(i64, &[u8])> {
    let (sign, body) = match s.first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => (0, s),
    };
    let year_len = body.iter().position(|&b| b == b'-')?;
    let year = number(&body[..year_len])?;
    let ok_len = match sign {
        0 => year_len == 4,
        1 => year_len > 4 && body[0] != b'0',
        _ => year_len >= 4 && (year_len == 4 || body[0] != b'0') && year > 0,
    };
    let rest = &body[year_len..];
    if !ok_len || rest.len() < 6 || rest[0] != b'-' || rest[3] != b'-' {
        return None;
    }
    let y = if sign < 0 { -year } else { year };
    let (m, d) = (number(&rest[1..3])? as u32, number(&rest[4..6])? as u32);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    (civil_from_days(days) == (y, m, d)).then_some((days, &rest[6..]))
}

/// A date as [`format_date`] writes it, as days since 1970-01-01.
pub fn parse_date(s: &[u8]) -> Option<i32> {
    match take_date(s)? {
        (days, []) => i32::try_from(days).ok(),
        _ => None,
    }
}

/// `HH:MM:SS[.ffffff]` of `micros` within a day (0 to 24:00:00).
fn push_time_of_day(micros: i64, out: &mut Vec<u8>) {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        let _ = write!(out, ".{frac:06}");
    }
}

/// `HH:MM:SS[.ffffff]` as microseconds since midnight; `24:00:00` only
/// when `allow_24`.
fn take_time_of_day(s: &[u8], allow_24: bool) -> Option<i64> {
    if s.len() < 8 || s[2] != b':' || s[5] != b':' {
        return None;
    }
    let (h, m, sec) = (number(&s[..2])?, number(&s[3..5])?, number(&s[6..8])?);
    let frac = match &s[8..] {
        [] => 0,
        [b'.', f @ ..] if f.len() == 6 => number(f)?,
        _ => return None,
    };
    if h > 24 || m > 59 || sec > 59 {
        return None;
    }
    let micros = ((h * 60 + m) * 60 + sec) * 1_000_000 + frac;
    let max = if allow_24 {
        MICROS_PER_DAY
    } else {
        MICROS_PER_DAY - 1
    };
    (micros <= max).then_some(micros)
}

/// A time of day (microseconds since midnight) as `HH:MM:SS[.ffffff]`.
/// A value outside 00:00:00 to 24:00:00, which no source has, is written
/// as its microseconds and `us` (`-1us`), so that it too reads back.
pub fn format_time(micros: i64, out: &mut Vec<u8>) {
    if (0..=MICROS_PER_DAY).contains(&micros) {
        push_time_of_day(micros, out);
    } else {
        let _ = write!(out, "{micros}us");
    }
}

/// A time as [`format_time`] writes it, as microseconds since midnight.
pub fn parse_time(s: &[u8]) -> Option<i64> {
    if let Some(n) = s.strip_suffix(b"us") {
        let v: i64 = std::str::from_utf8(n).ok()?.parse().ok()?;
        return (!(0..=MICROS_PER_DAY).contains(&v)).then_some(v);
    }
    take_time_of_day(s, true)
}

/// Microseconds since 1970-01-01 00:00:00 as `DATE HH:MM:SS[.ffffff]`.
pub fn format_timestamp(micros: i64, out: &mut Vec<u8>) {
    push_date(micros.div_euclid(MICROS_PER_DAY), out);
    out.push(b' ');
    push_time_of_day(micros.rem_euclid(MICROS_PER_DAY), out);
}

/// A timestamp as [`format_timestamp`] writes it.
pub fn parse_timestamp(s: &[u8]) -> Option<i64> {
    let (days, rest) = take_date(s)?;
    let time = take_time_of_day(rest.strip_prefix(b" ")?, false)?;
    i64::try_from(i128::from(days) * i128::from(MICROS_PER_DAY) + i128::from(time)).ok()
}

/// An instant as its UTC timestamp and `+00:00`.
pub fn format_timestamptz(micros: i64, out: &mut Vec<u8>) {
    format_timestamp(micros, out);
    out.extend_from_slice(b"+00:00");
}

/// An instant as [`format_timestamptz`] writes it.
pub fn parse_timestamptz(s: &[u8]) -> Option<i64> {
    parse_timestamp(s.strip_suffix(b"+00:00")?)
}

/// An interval as an ISO 8601 duration (see the module docs).
pub fn format_interval(months: i32, days: i32, micros: i64, out: &mut Vec<u8>) {
    out.push(b'P');
    let (y, m) = (months / 12, months % 12);
    if y != 0 {
        let _ = write!(out, "{y}Y");
    }
    if m != 0 {
        let _ = write!(out, "{m}M");
    }
    if days != 0 {
        let _ = write!(out, "{days}D");
    }
    if micros != 0 || (months == 0 && days == 0) {
        out.push(b'T');
        let sign = if micros < 0 { "-" } else { "" };
        let abs = micros.unsigned_abs();
        let (h, mi) = (abs / 3_600_000_000, abs / 60_000_000 % 60);
        let (s, frac) = (abs / 1_000_000 % 60, abs % 1_000_000);
        if h != 0 {
            let _ = write!(out, "{sign}{h}H");
        }
        if mi != 0 {
            let _ = write!(out, "{sign}{mi}M");
        }
        if s != 0 || frac != 0 || (h == 0 && mi == 0) {
            let _ = write!(out, "{sign}{s}");
            if frac != 0 {
                let text = format!("{frac:06}");
                let _ = write!(out, ".{}", text.trim_end_matches('0'));
            }
            out.push(b'S');
        }
    }
}

/// An interval as [`format_interval`] writes it: (months, days, micros).
pub fn parse_interval(s: &[u8]) -> Option<(i32, i32, i64)> {
    let mut rest = s.strip_prefix(b"P")?;
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i128);
    let mut in_time = false;
    let mut seen = 0u32;
    // Each unit once, in order: Y M D T H M S.
    let mut last = 0u8;
    while !rest.is_empty() {
        if rest[0] == b'T' {
            if in_time || rest.len() == 1 {
                return None;
            }
            in_time = true;
            rest = &rest[1..];
            continue;
        }
        let neg = rest[0] == b'-';
        let body = if neg { &rest[1..] } else { rest };
        let end = body
            .iter()
            .position(|&b| !b.is_ascii_digit() && b != b'.')?;
        let (num, unit) = (&body[..end], body[end]);
        rest = &body[end + 1..];
        let rank = match (in_time, unit) {
            (false, b'Y') => 1,
            (false, b'M') => 2,
            (false, b'D') => 3,
            (true, b'H') => 4,
            (true, b'M') => 5,
            (true, b'S') => 6,
            _ => return None,
        };
        if rank <= last {
            return None;
        }
        last = rank;
        seen += 1;
        let value: i128 = if rank == 6 {
            let (int, frac) = match num.iter().position(|&b| b == b'.') {
                Some(i) => (&num[..i], &num[i + 1..]),
                None => (num, &b""[..]),
            };
            if frac.len() > 6 || (num.contains(&b'.') && frac.is_empty()) {
                return None;
            }
            let f = if frac.is_empty() { 0 } else { number(frac)? };
            i128::from(number(int)?) * 1_000_000 + i128::from(f) * 10i128.pow(6 - frac.len() as u32)
        } else {
            i128::from(number(num)?)
        };
        let value = if neg { -value } else { value };
        match rank {
            1 => months += i64::try_from(value.checked_mul(12)?).ok()?,
            2 => months += i64::try_from(value).ok()?,
            3 => days = i64::try_from(value).ok()?,
            4 => micros += value.checked_mul(3_600_000_000)?,
            5 => micros += value.checked_mul(60_000_000)?,
            _ => micros += value,
        }
    }
    if seen == 0 {
        return None;
    }
    Some((
        i32::try_from(months).ok()?,
        i32::try_from(days).ok()?,
        i64::try_from(micros).ok()?,
    ))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A UUID as lowercase `8-4-4-4-12` hex.
pub fn format_uuid(bytes: &[u8], out: &mut Vec<u8>) {
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// A UUID in `8-4-4-4-12` hex (either case).
pub fn parse_uuid(s: &[u8]) -> Option<[u8; 16]> {
    if s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut hex = s
        .iter()
        .enumerate()
        .filter(|(i, _)| !matches!(i, 8 | 13 | 18 | 23))
        .map(|(_, &b)| (b as char).to_digit(16));
    if [8, 13, 18, 23].iter().any(|&i| s[i] != b'-') {
        return None;
    }
    for b in &mut out {
        let (hi, lo) = (hex.next()??, hex.next()??);
        *b = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_and_booleans_read_back_exactly() {
        for x in [
            0.1f32,
            -0.0,
            0.0,
            f32::MIN,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-45,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ] {
            let t = text(|o| format_f32(x, o));
            assert_eq!(t.parse::<f32>().unwrap().to_bits(), x.to_bits(), "{t}");
        }
        assert_eq!(text(|o| format_f32(f32::NAN, o)), "NaN");
        assert!(
            text(|o| format_f32(f32::NAN, o))
                .parse::<f32>()
                .unwrap()
                .is_nan()
        );
        assert_eq!(parse_bool(b"true"), Some(true));
        assert_eq!(parse_bool(b"false"), Some(false));
        assert_eq!(parse_bool(b"t"), None);
        assert_eq!(text(|o| format_bool(true, o)), "true");
    }

    #[test]
    fn wide_decimals_read_back_exactly() {
        let max76 = i256::from_string(&"9".repeat(76)).unwrap();
        for (v, scale, want) in [
            (i256::ZERO, 2, "0.00".to_string()),
            (i256::from_i128(-5), 3, "-0.005".to_string()),
            (i256::from_i128(12345), 0, "12345".to_string()),
            (max76, 0, "9".repeat(76)),
            (max76.wrapping_neg(), 76, format!("-0.{}", "9".repeat(76))),
        ] {
            let t = text(|o| format_decimal256(v, scale, o));
            assert_eq!(t, want);
            assert_eq!(parse_decimal256(t.as_bytes(), 76, scale), Some(v), "{t}");
        }
        assert_eq!(parse_decimal256(b"1.5", 2, 2), None, "wrong scale");
        assert_eq!(parse_decimal256(b"123", 2, 0), None, "too many digits");
        assert_eq!(parse_decimal256(b"0012", 2, 0), Some(i256::from_i128(12)));
        assert_eq!(parse_decimal256(b"1e5", 10, 0), None);
        assert_eq!(parse_decimal256(b"1.", 10, 0), None);
        assert_eq!(text(|o| format_decimal128(-1, 2, o)), "-0.01");
        assert!(is_decimal_text(b"-12.340"));
        assert!(is_decimal_text(
            &["1".repeat(200), "5".repeat(300)].join(".").into_bytes()
        ));
        for bad in [
            &b""[..],
            b"-",
            b"1.",
            b".5",
            b"1e5",
            b"NaN",
            b"+1",
            b"1.2.3",
        ] {
            assert!(!is_decimal_text(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn dates_of_every_era_read_back_exactly() {
        for (days, want) in [
            (0, "1970-01-01"),
            (-719_528, "0000-01-01"),
            (-719_529, "-0001-12-31"),
            (2_932_896, "9999-12-31"),
            (2_932_897, "+10000-01-01"),
            (i32::MAX, "+5881580-07-11"),
            (i32::MIN, "-5877641-06-23"),
        ] {
            let t = text(|o| format_date(days, o));
            assert_eq!(t, want);
            assert_eq!(parse_date(t.as_bytes()), Some(days), "{t}");
        }
        for bad in [
            "2024-02-30",
            "+2024-01-01",
            "-0000-01-01",
            "24-01-01",
            "2024-1-01",
            "+05881580-07-11",
            "+5881580-07-12",
        ] {
            assert_eq!(parse_date(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn times_and_timestamps_read_back_exactly() {
        for (v, want) in [
            (0, "00:00:00"),
            (1, "00:00:00.000001"),
            (MICROS_PER_DAY - 1, "23:59:59.999999"),
            (MICROS_PER_DAY, "24:00:00"),
        ] {
            let t = text(|o| format_time(v, o));
            assert_eq!(t, want);
            assert_eq!(parse_time(t.as_bytes()), Some(v));
        }
        for v in [-1, MICROS_PER_DAY + 1, i64::MIN, i64::MAX] {
            let t = text(|o| format_time(v, o));
            assert_eq!(parse_time(t.as_bytes()), Some(v), "{t}");
        }
        for bad in [
            "24:00:00.000001",
            "23:60:00",
            "1:00:00",
            "00:00:00.5",
            "5us",
            "+1us",
        ] {
            assert_eq!(parse_time(bad.as_bytes()), None, "{bad}");
        }
        for (v, want) in [
            (0, "1970-01-01 00:00:00"),
            (-1, "1969-12-31 23:59:59.999999"),
            (i64::MAX, "+294247-01-10 04:00:54.775807"),
            (i64::MIN, "-290308-12-21 19:59:05.224192"),
        ] {
            let t = text(|o| format_timestamp(v, o));
            assert_eq!(t, want);
            assert_eq!(parse_timestamp(t.as_bytes()), Some(v));
            let tz = text(|o| format_timestamptz(v, o));
            assert_eq!(tz, format!("{want}+00:00"));
            assert_eq!(parse_timestamptz(tz.as_bytes()), Some(v));
            assert_eq!(parse_timestamptz(t.as_bytes()), None);
        }
        assert_eq!(parse_timestamp(b"1970-01-01 24:00:00"), None);
        assert_eq!(parse_timestamp(b"+294247-01-10 04:00:54.775808"), None);
    }

    #[test]
    fn intervals_read_back_exactly() {
        for (v, want) in [
            ((0, 0, 0), "PT0S"),
            ((14, 3, 14_706_500_000), "P1Y2M3DT4H5M6.5S"),
            ((-1, 3, -1), "P-1M3DT-0.000001S"),
            ((12, 0, 0), "P1Y"),
            ((0, -7, 0), "P-7D"),
            ((0, 0, 3_600_000_000), "PT1H"),
            ((0, 0, -60_000_000), "PT-1M"),
        ] {
            let t = text(|o| format_interval(v.0, v.1, v.2, o));
            assert_eq!(t, want);
            assert_eq!(parse_interval(t.as_bytes()), Some(v), "{t}");
        }
        for v in [
            (i32::MAX, i32::MAX, i64::MAX),
            (i32::MIN, i32::MIN, i64::MIN),
            (-13, 1, 1_000_001),
        ] {
            let t = text(|o| format_interval(v.0, v.1, v.2, o));
            assert_eq!(parse_interval(t.as_bytes()), Some(v), "{t}");
        }
        for bad in [
            "P",
            "PT",
            "1D",
            "P1D1Y",
            "P1H",
            "PT1D",
            "P1.5D",
            "PT1.S",
            "PT0.0000001S",
            "P3000000000D",
        ] {
            assert_eq!(parse_interval(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn uuids_read_back_exactly() {
        let bytes: [u8; 16] = std::array::from_fn(|i| (i * 17) as u8);
        let t = text(|o| format_uuid(&bytes, o));
        assert_eq!(t, "00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(parse_uuid(t.as_bytes()), Some(bytes));
        assert_eq!(parse_uuid(t.to_uppercase().as_bytes()), Some(bytes));
        assert_eq!(parse_uuid(b"00112233445566778899aabbccddeeff"), None);
        assert_eq!(parse_uuid(b"0011223-34455-6677-8899-aabbccddeeff"), None);
        assert_eq!(parse_uuid(b"00112233-4455-6677-8899-aabbccddeefg"), None);
    }
}
