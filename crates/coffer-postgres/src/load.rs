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
use coffer::engine::{DataBatch, PostgresValue, RawValue};
use coffer::manifest::Table;
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

/// The PostgreSQL text of a misfit.
fn misfit_text(v: &RawValue) -> Option<&[u8]> {
    match v {
        RawValue::Postgres(PostgresValue::NaN) => Some(b"NaN"),
        RawValue::Postgres(PostgresValue::Infinity) => Some(b"Infinity"),
        RawValue::Postgres(PostgresValue::NegInfinity) => Some(b"-Infinity"),
        RawValue::Postgres(PostgresValue::Text(t)) => Some(t),
        RawValue::Sqlite(_) => None,
    }
}

/// Append the rows of `batch` (of `table`) to `out` as COPY text lines.
pub fn encode_batch(table: &Table, batch: &DataBatch, out: &mut Vec<u8>) -> Result<()> {
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
            "row {} of table '{}' holds text with a NUL character in column '{}', which PostgreSQL cannot store",
            row + 1,
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
                let text = misfit_text(&m.value).ok_or_else(|| {
                    Error::invalid(format!(
                        "row {} of table '{}' holds a SQLite value in column '{}' that PostgreSQL has no type for",
                        row + 1,
                        table.name,
                        table.columns[col].name
                    ))
                })?;
                escape_into(text, out).map_err(|()| nul(row, col))?;
                continue;
            }
            scratch.clear();
            if view.write(row, &mut scratch) {
                escape_into(&scratch, out).map_err(|()| nul(row, col))?;
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
    use coffer::manifest::{Column, LogicalType, TableKind};

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
        encode_batch(&table, &batch, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1\ta\\tb\\\\c\\nd\t1970-01-01\n\\N\t\t0001-01-01 BC\n3\t\\N\tInfinity\n"
        );
    }

    #[test]
    fn nul_is_refused() {
        let mut out = Vec::new();
        assert!(escape_into(b"a\0b", &mut out).is_err());
    }
}
