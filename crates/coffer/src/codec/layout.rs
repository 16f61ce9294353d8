//! Text layouts of dates, timestamps and decimals: the codecs behind
//! SQLite's date and decimal text (its `text_format` layouts) and the CSV
//! forms of `date`, `timestamp` and `decimal(P,S)` up to 38 digits, which
//! archives of every format version write. The engines' own policies
//! (which column gets which type) live in the engines.

// Dates and timestamps as text.

/// The text layout of a date or timestamp column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Whether there is a time of day at all (`false` for dates).
    pub time: bool,
    /// `b' '` or `b'T'` between date and time.
    pub sep: u8,
    /// Fraction digits: 0, 3 or 6.
    pub frac: u8,
}

/// The layout of dates.
pub const DATE_LAYOUT: &str = "%Y-%m-%d";

const LAYOUTS: &[(&str, Layout)] = &[
    (
        DATE_LAYOUT,
        Layout {
            time: false,
            sep: b' ',
            frac: 0,
        },
    ),
    (
        "%Y-%m-%d %H:%M:%S",
        Layout {
            time: true,
            sep: b' ',
            frac: 0,
        },
    ),
    (
        "%Y-%m-%d %H:%M:%S%.3f",
        Layout {
            time: true,
            sep: b' ',
            frac: 3,
        },
    ),
    (
        "%Y-%m-%d %H:%M:%S%.6f",
        Layout {
            time: true,
            sep: b' ',
            frac: 6,
        },
    ),
    (
        "%Y-%m-%dT%H:%M:%S",
        Layout {
            time: true,
            sep: b'T',
            frac: 0,
        },
    ),
    (
        "%Y-%m-%dT%H:%M:%S%.3f",
        Layout {
            time: true,
            sep: b'T',
            frac: 3,
        },
    ),
    (
        "%Y-%m-%dT%H:%M:%S%.6f",
        Layout {
            time: true,
            sep: b'T',
            frac: 6,
        },
    ),
];

impl Layout {
    /// The layout named by a `text_format` string.
    pub fn parse(name: &str) -> Option<Layout> {
        LAYOUTS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
    }

    /// Whether the layout has a time of day (a timestamp layout).
    pub fn has_time(&self) -> bool {
        self.time
    }

    /// The layout's `text_format` string.
    pub fn name(&self) -> &'static str {
        LAYOUTS
            .iter()
            .find(|(_, l)| l == self)
            .map(|(n, _)| *n)
            .expect("every layout is listed")
    }

    /// The timestamp layout of `s`, if it is one.
    pub fn detect(s: &[u8]) -> Option<Layout> {
        let frac = match s.len() {
            19 => 0,
            23 => 3,
            26 => 6,
            _ => return None,
        };
        let sep = s[10];
        (sep == b' ' || sep == b'T').then_some(Layout {
            time: true,
            sep,
            frac,
        })
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn digits(s: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(b - b'0');
    }
    Some(v)
}

/// `YYYY-MM-DD` (years 0001–9999, a real day) as days since 1970-01-01.
pub fn parse_date(s: &[u8]) -> Option<i32> {
    if s.len() != 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(&s[0..4])?, digits(&s[5..7])?, digits(&s[8..10])?);
    if y == 0 || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(i64::from(y), m, d);
    (civil_from_days(days) == (i64::from(y), m, d)).then_some(days as i32)
}

/// Days since 1970-01-01 as `YYYY-MM-DD`.
pub fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(i64::from(days));
    format!("{y:04}-{m:02}-{d:02}")
}

/// A timestamp in `layout` as microseconds since 1970-01-01 00:00:00.
pub fn parse_timestamp(s: &[u8], layout: Layout) -> Option<i64> {
    if Layout::detect(s)? != layout {
        return None;
    }
    let days = i64::from(parse_date(&s[..10])?);
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (
        digits(&s[11..13])?,
        digits(&s[14..16])?,
        digits(&s[17..19])?,
    );
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let micros = match layout.frac {
        0 => 0,
        n => {
            if s[19] != b'.' {
                return None;
            }
            let f = digits(&s[20..])?;
            if n == 3 { f * 1000 } else { f }
        }
    };
    Some(
        (days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(sec)) * 1_000_000
            + i64::from(micros),
    )
}

/// Microseconds since 1970-01-01 in `layout`; `None` for a layout without
/// a time, or fractions the layout cannot show.
pub fn format_timestamp(micros: i64, layout: Option<Layout>) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let rest = micros.rem_euclid(86_400_000_000);
    let (y, m, d) = civil_from_days(days);
    let secs = rest / 1_000_000;
    let frac = rest % 1_000_000;
    let (sep, digits) = match layout {
        Some(l) => (l.sep as char, l.frac),
        None => (' ', if frac == 0 { 0 } else { 6 }),
    };
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}{sep}{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    match digits {
        3 => out.push_str(&format!(".{:03}", frac / 1000)),
        6 => out.push_str(&format!(".{frac:06}")),
        _ => {}
    }
    out
}

/// A timestamp as text in `layout` (a timestamp layout), or in
/// `YYYY-MM-DD HH:MM:SS[.ffffff]` when there is none.
pub fn format_timestamp_text(micros: i64, layout: Option<Layout>) -> String {
    format_timestamp(micros, layout.filter(|l| l.time))
}

/// Timestamp text in `layout`, or in any of the timestamp layouts when
/// there is none, as microseconds since 1970-01-01 00:00:00.
pub fn parse_timestamp_text(s: &[u8], layout: Option<Layout>) -> Option<i64> {
    let layout = layout.filter(|l| l.time).or_else(|| Layout::detect(s))?;
    parse_timestamp(s, layout)
}

// ---------------------------------------------------------------------------
// Decimals.

/// 10 to the power `n` (`n` at most 38).
pub fn pow10(n: u8) -> i128 {
    10i128.pow(u32::from(n))
}

/// An unscaled decimal as text with exactly `scale` digits after the point.
pub fn format_decimal(v: i128, scale: i8) -> String {
    let scale = scale as usize;
    let digits = v.unsigned_abs().to_string();
    let digits = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
    } else {
        digits
    };
    let (int, frac) = digits.split_at(digits.len() - scale);
    let sign = if v < 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// Decimal text (`-12.50`, exactly `scale` fraction digits, or none when
/// the scale is 0) as an unscaled value that fits `precision` digits.
pub fn parse_decimal(s: &str, precision: u8, scale: i8) -> Option<i128> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    if int.is_empty()
        || frac.len() != scale as usize
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        || (scale > 0 && !body.contains('.'))
    {
        return None;
    }
    let mut v: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        v = v.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    (v < pow10(precision)).then_some(if neg { -v } else { v })
}
