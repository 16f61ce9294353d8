//! A streaming reader of PostgreSQL's binary `COPY` format: the header
//! (signature, flags, extension), then tuples (a field count and each field
//! as a length, -1 for NULL, and that many bytes), then the trailer (a field
//! count of -1). One tuple is in memory at a time, in a buffer reused for the
//! next.

use std::io::Read;
use std::ops::Range;

use coffer::{Error, Result};

use crate::address::Address;
use crate::catalog::Table;
use crate::connect::query_error;
use crate::snapshot::CtidRange;

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Start streaming `table`'s own rows (or one range of them) over `client`
/// (a snapshot's connection), in [`Table::copy_columns`] order. A refusal
/// (no SELECT privilege, the table gone) names the table.
pub fn copy_table<'a>(
    client: &'a mut postgres::Client,
    address: &Address,
    table: &Table,
    range: Option<CtidRange>,
) -> Result<BinaryCopyReader<postgres::CopyOutReader<'a>>> {
    let what = format!("table {}.{}", table.schema, table.name);
    let reader = client
        .copy_out(&table.copy_out_sql(range))
        .map_err(|e| query_error(address, &format!("reading {what}"), &e))?;
    BinaryCopyReader::new(reader, what)
}

/// Reads tuples from a binary COPY stream.
pub struct BinaryCopyReader<R> {
    reader: R,
    /// What the stream is, for messages ("table public.t").
    what: String,
    data: Vec<u8>,
    fields: Vec<Option<Range<usize>>>,
    rows: u64,
    done: bool,
}

impl<R: Read> BinaryCopyReader<R> {
    /// Read the header; `what` names the stream in errors.
    pub fn new(mut reader: R, what: impl Into<String>) -> Result<Self> {
        let what = what.into();
        let mut header = [0u8; 19];
        read_exact(&mut reader, &mut header, &what, "its header")?;
        if &header[..11] != SIGNATURE {
            return Err(Error::corrupt(format!(
                "the COPY stream of {what} does not start with the binary COPY signature"
            )));
        }
        let flags = u32::from_be_bytes(header[11..15].try_into().unwrap());
        // Bit 16: OIDs included (servers before 12); bits 17-31 must be clear.
        if flags & 0xFFFF_0000 != 0 {
            return Err(Error::corrupt(format!(
                "the COPY stream of {what} has header flags {flags:#x}, which coffer does not read (OIDs or a newer format)"
            )));
        }
        let ext = u32::from_be_bytes(header[15..19].try_into().unwrap()) as u64;
        std::io::copy(&mut (&mut reader).take(ext), &mut std::io::sink())
            .map_err(|e| io_error(&what, e))?;
        Ok(BinaryCopyReader {
            reader,
            what,
            data: Vec::new(),
            fields: Vec::new(),
            rows: 0,
            done: false,
        })
    }

    /// The next tuple, or None after the trailer (once the stream has ended
    /// exactly there).
    pub fn next_row(&mut self) -> Result<Option<Row<'_>>> {
        if self.done {
            return Ok(None);
        }
        let mut count = [0u8; 2];
        read_exact(
            &mut self.reader,
            &mut count,
            &self.what,
            "a tuple's field count",
        )?;
        let count = i16::from_be_bytes(count);
        if count == -1 {
            self.done = true;
            let mut extra = [0u8; 1];
            match self.reader.read(&mut extra) {
                Ok(0) => return Ok(None),
                Ok(_) => {
                    return Err(Error::corrupt(format!(
                        "the COPY stream of {} goes on after its trailer",
                        self.what
                    )));
                }
                Err(e) => return Err(io_error(&self.what, e)),
            }
        }
        if count < 0 {
            return Err(Error::corrupt(format!(
                "the COPY stream of {} has a tuple of {count} fields after {} rows",
                self.what, self.rows
            )));
        }
        self.data.clear();
        self.fields.clear();
        for _ in 0..count {
            let mut len = [0u8; 4];
            read_exact(&mut self.reader, &mut len, &self.what, "a field's length")?;
            let len = i32::from_be_bytes(len);
            if len == -1 {
                self.fields.push(None);
                continue;
            }
            if len < 0 {
                return Err(Error::corrupt(format!(
                    "the COPY stream of {} has a field of length {len} in row {}",
                    self.what,
                    self.rows + 1
                )));
            }
            let start = self.data.len();
            let got = (&mut self.reader)
                .take(len as u64)
                .read_to_end(&mut self.data)
                .map_err(|e| io_error(&self.what, e))?;
            if got != len as usize {
                return Err(truncated(&self.what, "a field"));
            }
            self.fields.push(Some(start..start + len as usize));
        }
        self.rows += 1;
        Ok(Some(Row {
            data: &self.data,
            fields: &self.fields,
        }))
    }

    /// Tuples read so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

/// One tuple: its fields' bytes in binary wire form, None for NULL.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    data: &'a [u8],
    fields: &'a [Option<Range<usize>>],
}

impl<'a> Row<'a> {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// No fields at all (a table without columns).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Field `i`'s bytes, None for NULL. Panics when `i >= len()`.
    pub fn field(&self, i: usize) -> Option<&'a [u8]> {
        self.fields[i].clone().map(|r| &self.data[r])
    }
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], what: &str, part: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            truncated(what, part)
        } else {
            io_error(what, e)
        }
    })
}

fn truncated(what: &str, part: &str) -> Error {
    Error::corrupt(format!(
        "the COPY stream of {what} ended in the middle of {part}: the connection was probably lost; try again"
    ))
}

fn io_error(what: &str, e: std::io::Error) -> Error {
    Error::new(
        coffer::ErrorKind::Engine,
        format!("reading the COPY stream of {what} failed: {e}"),
    )
    .with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(rows: &[&[Option<&[u8]>]]) -> Vec<u8> {
        let mut s = SIGNATURE.to_vec();
        s.extend(0u32.to_be_bytes());
        s.extend(4u32.to_be_bytes());
        s.extend(b"skip");
        for row in rows {
            s.extend((row.len() as i16).to_be_bytes());
            for f in *row {
                match f {
                    None => s.extend((-1i32).to_be_bytes()),
                    Some(b) => {
                        s.extend((b.len() as i32).to_be_bytes());
                        s.extend(*b);
                    }
                }
            }
        }
        s.extend((-1i16).to_be_bytes());
        s
    }

    #[test]
    fn tuples_nulls_and_empty_fields() {
        let s = stream(&[&[Some(b"ab"), None, Some(b"")], &[None, Some(b"x"), None]]);
        let mut r = BinaryCopyReader::new(&s[..], "t").unwrap();
        let row = r.next_row().unwrap().unwrap();
        assert_eq!(row.len(), 3);
        assert_eq!(row.field(0), Some(&b"ab"[..]));
        assert_eq!(row.field(1), None);
        assert_eq!(row.field(2), Some(&b""[..]));
        let row = r.next_row().unwrap().unwrap();
        assert_eq!(row.field(1), Some(&b"x"[..]));
        assert!(r.next_row().unwrap().is_none());
        assert!(r.next_row().unwrap().is_none());
        assert_eq!(r.rows(), 2);
    }

    #[test]
    fn damage_is_reported() {
        let good = stream(&[&[Some(b"abcd")]]);
        // Truncated anywhere: an error, never a short table.
        for cut in 0..good.len() {
            let e = match BinaryCopyReader::new(&good[..cut], "table public.t") {
                Err(e) => e,
                Ok(mut r) => loop {
                    match r.next_row() {
                        Ok(Some(_)) => continue,
                        Ok(None) => panic!("a stream cut at {cut} read as complete"),
                        Err(e) => break e,
                    }
                },
            };
            assert!(e.message().contains("table public.t"), "{e}");
        }
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(BinaryCopyReader::new(&bad[..], "t").is_err());
        let mut extra = good.clone();
        extra.push(0);
        let mut r = BinaryCopyReader::new(&extra[..], "t").unwrap();
        r.next_row().unwrap();
        let e = r.next_row().unwrap_err();
        assert!(e.message().contains("after its trailer"), "{e}");
    }
}
