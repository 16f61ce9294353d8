//! Other engines' awkward values into SQLite's storage, for imports of
//! their exports (a PostgreSQL export into a SQLite file).
//!
//! The columns' types are stored as [`crate::portable::plain_type`] says;
//! this is about the values that did not fit their column in the source
//! engine (a PostgreSQL misfit). They become: the text `infinity` /
//! `-infinity` for dates and timestamps (SQLite keeps those as text
//! anyway), a real ±infinity for a `decimal(P,S)` and the text `Infinity`
//! / `-Infinity` for a decimal stored as text, and their text form for
//! anything else. A numeric `NaN` has no exact SQLite value (SQLite stores
//! NaN as NULL): the import stops, naming the table, column and row.

use coffer::engine::{DataBatch, Misfit, PostgresValue, RawValue, SqliteValue};
use coffer::manifest::{LogicalType, Table};
use coffer::{Error, Result};

/// Whether `batch` holds a misfit of another engine.
pub fn needed(batch: &DataBatch) -> bool {
    batch
        .misfits
        .iter()
        .any(|m| !matches!(m.value, RawValue::Sqlite(_)))
}

/// `batch` (of `table`) with every other engine's misfit as a SQLite
/// value. `origin` names the data in errors; `first_row` is the batch's
/// first row in its table (rows are named from 1). With `coerced`, a
/// numeric NaN stays NULL (as SQLite would keep it) and is counted there,
/// instead of failing.
pub fn to_sqlite(
    batch: &DataBatch,
    table: &Table,
    origin: &str,
    first_row: u64,
    mut coerced: Option<&mut u64>,
) -> Result<DataBatch> {
    let mut misfits = Vec::with_capacity(batch.misfits.len());
    for m in &batch.misfits {
        let RawValue::Postgres(p) = &m.value else {
            misfits.push(m.clone());
            continue;
        };
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
            // A TEXT column would turn a real into `Inf`: the numeric's
            // own text.
            LogicalType::Decimal { .. } | LogicalType::DecimalText => SqliteValue::Text(
                if negative {
                    &b"-Infinity"[..]
                } else {
                    b"Infinity"
                }
                .to_vec(),
            ),
            _ => SqliteValue::Text(
                if negative {
                    &b"-infinity"[..]
                } else {
                    b"infinity"
                }
                .to_vec(),
            ),
        };
        let value = match p {
            PostgresValue::Infinity => infinite(false),
            PostgresValue::NegInfinity => infinite(true),
            PostgresValue::Text(t) => SqliteValue::Text(t.clone()),
            PostgresValue::NaN if coerced.is_some() => {
                if let Some(n) = coerced.as_deref_mut() {
                    *n += 1;
                }
                // The column holds NULL there already.
                continue;
            }
            PostgresValue::NaN => {
                return Err(Error::invalid(format!(
                    "row {} of table '{}' in {origin} holds NaN in column '{}', which SQLite cannot store (it keeps NaN as NULL); leave the table out with --table, import with --coerce to keep it as NULL, or change the value at the source",
                    first_row + m.row + 1,
                    table.name,
                    col.name
                )));
            }
        };
        misfits.push(Misfit {
            value: RawValue::Sqlite(value),
            ..m.clone()
        });
    }
    Ok(DataBatch {
        columns: batch.columns.clone(),
        misfits,
    })
}
