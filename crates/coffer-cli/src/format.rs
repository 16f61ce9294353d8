//! Numbers, sizes, durations and times for people, and sizes from people.

/// Text from an archive or a database (table names, messages that quote
/// them) made safe for a terminal: control characters other than the line
/// breaks of `keep_newlines`, and the Unicode controls that reorder text,
/// are written as escapes (`\u{1b}`), so a crafted name cannot move the
/// cursor, recolour the screen or disguise itself.
pub fn printable(text: &str, keep_newlines: bool) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && !(keep_newlines && c == '\n'))
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `95.2 MiB`, `512 B`: binary units, one decimal.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    // 1023.96 KiB would print as "1024.0 KiB"; say "1.0 MiB" instead.
    if value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `3,000,000`.
pub fn human_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 table`, `3 tables`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", human_count(n), if n == 1 { one } else { many })
}

/// `0.42 s`, `4.1 s`, `2 min 05 s`, `1 h 02 min`.
pub fn human_seconds(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "? s".to_string();
    }
    if secs < 1.0 {
        format!("{secs:.2} s")
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        let s = secs.round() as u64;
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        let m = (secs / 60.0).round() as u64;
        format!("{} h {:02} min", m / 60, m % 60)
    }
}

/// An RFC 3339 timestamp from a manifest as `2025-06-01 12:00:00 UTC`;
/// anything unparsable is shown as it is.
pub fn human_time(rfc3339: &str) -> String {
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(ts) => {
            let ts = ts.round(jiff::Unit::Second).unwrap_or(ts);
            ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
        }
        Err(_) => rfc3339.to_string(),
    }
}

/// Parse a size such as `33554432`, `64MiB`, `32M`, `1.5 GiB` or `500kB`.
///
/// `K`, `M`, `G`, `T` (with or without `iB`) are powers of 1024; `kB`, `MB`,
/// `GB`, `TB` are powers of 1000. Case does not matter.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: String = number.chars().filter(|&c| c != '_').collect();
    let bad = || {
        format!(
            "'{text}' is not a size; write a number of bytes with an optional unit, e.g. 64MiB, 32M or 1GiB"
        )
    };
    if number.is_empty() {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("'{text}' is too large"));
    }
    let bytes = bytes.round() as u64;
    if bytes == 0 {
        return Err(format!("'{text}' is zero; a size must be at least 1 byte"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_escaped() {
        assert_eq!(printable("users", false), "users");
        assert_eq!(printable("a\u{1b}[2Jb", false), "a\\u{1b}[2Jb");
        assert_eq!(printable("x\ny", true), "x\ny");
        assert_eq!(printable("x\ny", false), "x\\ny");
        assert_eq!(printable("ab\u{202e}c", true), "ab\\u{202e}c");
        assert_eq!(printable("表", false), "表");
    }

    #[test]
    fn bytes_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(99_824_435), "95.2 MiB");
        assert_eq!(human_bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn counts_are_grouped() {
        assert_eq!(human_count(0), "0");
        assert_eq!(human_count(999), "999");
        assert_eq!(human_count(1000), "1,000");
        assert_eq!(human_count(3_000_000), "3,000,000");
        assert_eq!(plural(1, "table", "tables"), "1 table");
        assert_eq!(plural(1000, "row", "rows"), "1,000 rows");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_seconds(0.421), "0.42 s");
        assert_eq!(human_seconds(4.12), "4.1 s");
        assert_eq!(human_seconds(125.0), "2 min 05 s");
        assert_eq!(human_seconds(3720.0), "1 h 02 min");
    }

    #[test]
    fn times_are_shortened() {
        assert_eq!(
            human_time("2025-06-01T12:00:00.123456Z"),
            "2025-06-01 12:00:00 UTC"
        );
        assert_eq!(human_time("yesterday"), "yesterday");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("32M").unwrap(), 32 << 20);
        assert_eq!(parse_size("32 mb").unwrap(), 32_000_000);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("4k").unwrap(), 4096);
        assert_eq!(parse_size("1_000_000").unwrap(), 1_000_000);
        for bad in [
            "",
            "MiB",
            "12 parsecs",
            "0",
            "1.2.3",
            "-5",
            "99999999999TiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
