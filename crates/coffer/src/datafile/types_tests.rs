//! Every logical type round-trips exactly through Parquet and CSV data
//! files, edge values included, and is written with the standard Parquet
//! type that other readers understand.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, FixedSizeBinaryBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::types::Int64Type;
use arrow_array::{
    Array, ArrayRef, BooleanArray, Date32Array, Decimal128Array, Decimal256Array,
    FixedSizeBinaryArray, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array,
    ListArray, RecordBatch, StringArray, StructArray, Time64MicrosecondArray,
    TimestampMicrosecondArray,
};
use arrow_buffer::{NullBuffer, i256};

use super::*;
use crate::manifest::Column;

fn table(columns: &[(&str, LogicalType)]) -> Table {
    Table {
        name: "all types".into(),
        kind: crate::manifest::TableKind::Table,
        columns: columns
            .iter()
            .map(|(n, t)| Column {
                name: n.to_string(),
                logical_type: t.clone(),
                declared_type: String::new(),
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

const ROWS: usize = 6;

fn list_of<B: arrow_array::builder::ArrayBuilder>(
    values: B,
    element: &LogicalType,
) -> ListBuilder<B> {
    ListBuilder::new(values).with_field(Arc::new(arrow_field("item", element)))
}

/// A table with a column of every type and a batch of nasty values (six
/// rows, the third all NULL).
fn every_type() -> (Table, RecordBatch) {
    use LogicalType::*;
    let max76 = i256::from_string(&"9".repeat(76)).unwrap();
    let uuid = |b: u8| [b; 16];
    let mut cols: Vec<(&str, LogicalType, ArrayRef)> = vec![
        (
            "bool",
            Bool,
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
                Some(false),
                Some(true),
            ])),
        ),
        (
            "int16",
            Int16,
            Arc::new(Int16Array::from(vec![
                Some(i16::MIN),
                Some(i16::MAX),
                None,
                Some(0),
                Some(-1),
                Some(1),
            ])),
        ),
        (
            "int32",
            Int32,
            Arc::new(Int32Array::from(vec![
                Some(i32::MIN),
                Some(i32::MAX),
                None,
                Some(0),
                Some(-1),
                Some(1),
            ])),
        ),
        (
            "int64",
            Int64,
            Arc::new(Int64Array::from(vec![
                Some(i64::MIN),
                Some(i64::MAX),
                None,
                Some(0),
                Some(-1),
                Some(1),
            ])),
        ),
        (
            "float32",
            Float32,
            Arc::new(Float32Array::from(vec![
                Some(f32::NAN),
                Some(-0.0),
                None,
                Some(f32::INFINITY),
                Some(f32::NEG_INFINITY),
                Some(1e-45),
            ])),
        ),
        (
            "float64",
            Float64,
            Arc::new(Float64Array::from(vec![
                Some(f64::NAN),
                Some(-0.0),
                None,
                Some(f64::INFINITY),
                Some(f64::NEG_INFINITY),
                Some(5e-324),
            ])),
        ),
        (
            "utf8",
            Utf8,
            Arc::new(StringArray::from(vec![
                Some(""),
                Some("a,b\"c\r\nd"),
                None,
                Some("NULL"),
                Some("{}"),
                Some("ä\u{0}"),
            ])),
        ),
        (
            "binary",
            Binary,
            Arc::new(arrow_array::BinaryArray::from(vec![
                Some(&b""[..]),
                Some(&[0, 255][..]),
                None,
                Some(&b"\\x"[..]),
                Some(&b","[..]),
                Some(&b"\""[..]),
            ])),
        ),
        (
            "date",
            Date,
            Arc::new(Date32Array::from(vec![
                Some(i32::MIN),
                Some(i32::MAX),
                None,
                Some(0),
                Some(-719_529),
                Some(2_932_897),
            ])),
        ),
        (
            "time",
            Time,
            Arc::new(Time64MicrosecondArray::from(vec![
                Some(0),
                Some(86_400_000_000),
                None,
                Some(1),
                Some(86_399_999_999),
                Some(43_200_000_000),
            ])),
        ),
        (
            "timestamp",
            Timestamp,
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(i64::MIN),
                Some(i64::MAX),
                None,
                Some(0),
                Some(-1),
                Some(1),
            ])),
        ),
        (
            "timestamptz",
            TimestampTz,
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    Some(i64::MIN),
                    Some(i64::MAX),
                    None,
                    Some(0),
                    Some(-1),
                    Some(1),
                ])
                .with_timezone("UTC"),
            ),
        ),
        (
            "decimal(10,2)",
            Decimal {
                precision: 10,
                scale: 2,
            },
            Arc::new(
                Decimal128Array::from(vec![
                    Some(-9_999_999_999),
                    Some(9_999_999_999),
                    None,
                    Some(0),
                    Some(-1),
                    Some(1),
                ])
                .with_precision_and_scale(10, 2)
                .unwrap(),
            ),
        ),
        (
            "decimal(76,10)",
            Decimal {
                precision: 76,
                scale: 10,
            },
            Arc::new(
                Decimal256Array::from(vec![
                    Some(max76),
                    Some(max76.wrapping_neg()),
                    None,
                    Some(i256::ZERO),
                    Some(i256::MINUS_ONE),
                    Some(i256::ONE),
                ])
                .with_precision_and_scale(76, 10)
                .unwrap(),
            ),
        ),
        (
            "decimal",
            DecimalText,
            Arc::new(StringArray::from(vec![
                Some("0".to_string()),
                Some("-123.456000".to_string()),
                None,
                Some("1".repeat(200)),
                Some(format!("0.{}1", "0".repeat(300))),
                Some("-0".to_string()),
            ])),
        ),
        (
            "interval",
            Interval,
            Arc::new(
                StructArray::try_new(
                    interval_fields(),
                    vec![
                        Arc::new(Int32Array::from(vec![0, i32::MAX, 0, -1, i32::MIN, 14])),
                        Arc::new(Int32Array::from(vec![0, i32::MIN, 0, 3, i32::MAX, 3])),
                        Arc::new(Int64Array::from(vec![
                            0,
                            i64::MAX,
                            0,
                            -1,
                            i64::MIN,
                            14_706_500_000,
                        ])),
                    ],
                    Some(NullBuffer::from(vec![true, true, false, true, true, true])),
                )
                .unwrap(),
            ),
        ),
        (
            "uuid",
            Uuid,
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    [
                        Some(uuid(0)),
                        Some(uuid(255)),
                        None,
                        Some(std::array::from_fn(|i| i as u8)),
                        Some(uuid(1)),
                        Some(uuid(0x7f)),
                    ]
                    .into_iter(),
                    16,
                )
                .unwrap(),
            ),
        ),
        (
            "json",
            Json,
            Arc::new(StringArray::from(vec![
                Some(r#"{"a": [1, null], "b": "x,\"y\""}"#),
                Some(r#""""#),
                None,
                Some("null"),
                Some("[]"),
                Some("3.0e10"),
            ])),
        ),
    ];
    // list<int32>: empty lists, NULL elements, a NULL list.
    let mut b = list_of(Int32Builder::new(), &Int32);
    for row in [
        vec![],
        vec![Some(1), None, Some(3)],
        vec![],
        vec![None],
        vec![Some(i32::MIN), Some(i32::MAX)],
        vec![],
    ]
    .into_iter()
    .enumerate()
    {
        let (i, values) = row;
        if i == 2 {
            b.append_null();
        } else {
            b.append_value(values);
        }
    }
    cols.push(("list<int32>", List(Box::new(Int32)), Arc::new(b.finish())));
    // list<utf8>: texts that need quoting in the array form.
    let mut b = list_of(StringBuilder::new(), &Utf8);
    for (i, row) in [
        vec![
            Some(""),
            Some("NULL"),
            None,
            Some("a b"),
            Some("\"\\{},"),
            Some("null"),
        ],
        vec![],
        vec![],
        vec![None],
        vec![Some("x")],
        vec![Some("ä"), Some("\r\n")],
    ]
    .into_iter()
    .enumerate()
    {
        if i == 2 {
            b.append_null();
        } else {
            for v in row {
                b.values().append_option(v);
            }
            b.append(true);
        }
    }
    cols.push(("list<utf8>", List(Box::new(Utf8)), Arc::new(b.finish())));
    // list<binary>: bytes are \x hex, quoted in the array form.
    let mut b = list_of(BinaryBuilder::new(), &Binary);
    for (i, row) in [
        vec![Some(&b""[..]), None, Some(&[0, 255][..])],
        vec![],
        vec![],
        vec![None],
        vec![Some(&b"{"[..])],
        vec![],
    ]
    .into_iter()
    .enumerate()
    {
        if i == 2 {
            b.append_null();
        } else {
            for v in row {
                b.values().append_option(v);
            }
            b.append(true);
        }
    }
    cols.push(("list<binary>", List(Box::new(Binary)), Arc::new(b.finish())));
    // list<uuid>: elements with an extension type.
    let mut b = list_of(FixedSizeBinaryBuilder::new(16), &Uuid);
    for i in 0..ROWS {
        match i {
            2 => b.append_null(),
            3 => {
                b.values().append_null();
                b.values().append_value([9u8; 16]).unwrap();
                b.append(true);
            }
            _ => b.append(true),
        }
    }
    cols.push(("list<uuid>", List(Box::new(Uuid)), Arc::new(b.finish())));
    // list<list<int64>>: nested lists, empty and NULL at both levels.
    let inner = List(Box::new(Int64));
    let mut b = list_of(list_of(Int64Builder::new(), &Int64), &inner);
    for i in 0..ROWS {
        match i {
            0 => {
                b.values().append_value([Some(1), Some(2)]);
                b.values().append_value(Vec::<Option<i64>>::new());
                b.values().append_null();
                b.values().append_value([None]);
                b.append(true);
            }
            2 => b.append_null(),
            3 => {
                b.values().append_value(Vec::<Option<i64>>::new());
                b.append(true);
            }
            4 => {
                b.values().append_null();
                b.append(true);
            }
            5 => {
                b.values().append_value([Some(i64::MIN)]);
                b.append(true);
            }
            _ => b.append(true),
        }
    }
    let nested: ListArray = b.finish();
    assert_eq!(
        nested
            .value(5)
            .as_any()
            .downcast_ref::<ListArray>()
            .unwrap()
            .value(0)
            .as_any()
            .downcast_ref::<arrow_array::PrimitiveArray<Int64Type>>()
            .unwrap()
            .value(0),
        i64::MIN
    );
    cols.push(("list<list<int64>>", List(Box::new(inner)), Arc::new(nested)));

    let names: Vec<(&str, LogicalType)> = cols.iter().map(|(n, t, _)| (*n, t.clone())).collect();
    let table = table(&names);
    let batch = RecordBatch::try_new(
        arrow_schema(&table),
        cols.into_iter().map(|(_, _, a)| a).collect(),
    )
    .unwrap();
    assert_eq!(batch.num_rows(), ROWS);
    (table, batch)
}

/// Write `batch` of `table` as an archive's data files in `format` and
/// read them back.
fn round_trip(
    table: &Table,
    batch: &RecordBatch,
    format: DataFormat,
) -> (Vec<DataBatch>, Vec<Bytes>) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = Store::create(dir.path().to_str().unwrap(), &Default::default()).unwrap();
    let options = WriteOptions {
        data_format: format,
        compression: Compression::None,
        ..WriteOptions::default()
    };
    let mut writer = TableWriter::new(store.clone(), rt.handle().clone(), table, options);
    writer
        .write(DataBatch {
            columns: batch.clone(),
            misfits: vec![],
        })
        .unwrap();
    let parts = writer.finish_table().unwrap();
    assert_eq!(parts.len(), 1);
    let mut back = Vec::new();
    let mut files = Vec::new();
    for part in &parts {
        assert!(
            part.misfits.is_none(),
            "no misfits: every value is in its column"
        );
        let data = rt.block_on(store.get(&part.file.path)).unwrap();
        files.push(data.clone());
        let rows = read_part_as(
            format,
            crate::manifest::FORMAT_VERSION,
            table,
            data,
            None,
            &part.file.path,
            &mut |b| {
                back.push(b);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(rows, ROWS as u64);
    }
    (back, files)
}

fn assert_same(table: &Table, want: &RecordBatch, got: &[DataBatch], format: DataFormat) {
    assert_eq!(got.len(), 1);
    let got = &got[0];
    assert!(got.misfits.is_empty());
    assert_eq!(got.columns.schema(), want.schema(), "{format:?}");
    for (i, c) in table.columns.iter().enumerate() {
        let (a, b) = (want.column(i), got.columns.column(i));
        assert_eq!(a.to_data(), b.to_data(), "{format:?}: column {}", c.name);
    }
}

#[test]
fn every_type_round_trips_exactly_through_parquet() {
    let (table, batch) = every_type();
    let (back, files) = round_trip(&table, &batch, DataFormat::Parquet);
    assert_same(&table, &batch, &back, DataFormat::Parquet);
    // Floats keep their bits (NaN and -0.0 too).
    let f = back[0]
        .columns
        .column(5)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert!(f.value(0).is_nan());
    assert_eq!(f.value(1).to_bits(), (-0.0f64).to_bits());

    // The standard Parquet types, as other readers see them.
    let reader =
        parquet::file::serialized_reader::SerializedFileReader::new(files[0].clone()).unwrap();
    let mut text = Vec::new();
    parquet::schema::printer::print_schema(
        &mut text,
        parquet::file::reader::FileReader::metadata(&reader)
            .file_metadata()
            .schema(),
    );
    let text = String::from_utf8(text).unwrap();
    for expect in [
        "OPTIONAL BOOLEAN bool;",
        "OPTIONAL INT32 int16 (INTEGER(16,true));",
        "OPTIONAL INT32 int32;",
        "OPTIONAL INT64 int64;",
        "OPTIONAL FLOAT float32;",
        "OPTIONAL DOUBLE float64;",
        "OPTIONAL BYTE_ARRAY utf8 (STRING);",
        "OPTIONAL BYTE_ARRAY binary;",
        "OPTIONAL INT32 date (DATE);",
        "OPTIONAL INT64 time (TIME(MICROS,false));",
        "OPTIONAL INT64 timestamp (TIMESTAMP(MICROS,false));",
        "OPTIONAL INT64 timestamptz (TIMESTAMP(MICROS,true));",
        "OPTIONAL INT64 decimal(10,2) (DECIMAL(10,2));",
        "OPTIONAL FIXED_LEN_BYTE_ARRAY (32) decimal(76,10) (DECIMAL(76,10));",
        "OPTIONAL BYTE_ARRAY decimal (STRING);",
        "OPTIONAL group interval {",
        "OPTIONAL INT32 months;",
        "OPTIONAL INT32 days;",
        "OPTIONAL INT64 micros;",
        "OPTIONAL FIXED_LEN_BYTE_ARRAY (16) uuid (UUID);",
        "OPTIONAL BYTE_ARRAY json (JSON);",
        "OPTIONAL group list<int32> (LIST) {",
        "OPTIONAL FIXED_LEN_BYTE_ARRAY (16) item (UUID);",
        "OPTIONAL group list<list<int64>> (LIST) {",
    ] {
        assert!(text.contains(expect), "{expect} not in {text}");
    }
}

#[test]
fn every_type_round_trips_exactly_through_csv() {
    let (table, batch) = every_type();
    let (back, files) = round_trip(&table, &batch, DataFormat::Csv);
    assert_same(&table, &batch, &back, DataFormat::Csv);
    let text = String::from_utf8(files[0].to_vec()).unwrap();
    // The third row is all NULL: empty fields only.
    let nulls = format!("\r\n{}\r\n", ",".repeat(table.columns.len() - 1));
    assert!(text.contains(&nulls), "{text}");
    assert!(text.split_once("\r\n").unwrap().1.starts_with("true,"));
    for expect in [
        r#",NaN,NaN,"",\x,-5877641-06-23,00:00:00,-290308-12-21 19:59:05.224192,-290308-12-21 19:59:05.224192+00:00,-99999999.99,"#,
        r#",PT0S,00000000-0000-0000-0000-000000000000,"#,
        r#",{},"{"""",""NULL"",NULL,""a b"",""\""\\{},"",""null""}","#,
        r#""{""\\x"",NULL,""\\x00ff""}""#,
        r#""{{1,2},{},NULL,{NULL}}""#,
        r#",P178956970Y7M-2147483648DT2562047788H54.775807S,"#,
        r#""{NULL,09090909-0909-0909-0909-090909090909}""#,
        "\r\ntrue,0,0,0,inf,inf,NULL,\\x5c78,1970-01-01,00:00:00.000001,",
    ] {
        assert!(text.contains(expect), "{expect} not in {text}");
    }
}

#[test]
fn csv_fields_that_are_not_their_type_are_damage_named_by_column() {
    use LogicalType::*;
    for (t, field) in [
        (Bool, "t"),
        (Int16, "32768"),
        (Int32, "2147483648"),
        (Float32, "x"),
        (Time, "25:00:00"),
        (TimestampTz, "2024-01-01 00:00:00"),
        (
            Decimal {
                precision: 40,
                scale: 1,
            },
            "1.25",
        ),
        (DecimalText, "NaN"),
        (Interval, "1 day"),
        (Uuid, "not-a-uuid"),
        (List(Box::new(Int32)), "{1,x}"),
        (List(Box::new(Int32)), "{1,2"),
        (List(Box::new(Int32)), "{1,}"),
        (List(Box::new(Int32)), "{\"\"}"),
        (List(Box::new(Int32)), "{1} "),
        (List(Box::new(List(Box::new(Int32)))), "{1}"),
    ] {
        let table = table(&[("c", t.clone())]);
        let quoted = field.replace('"', "\"\"");
        let data = Bytes::from(format!("c\r\n\"{quoted}\"\r\n"));
        let err = csv::read_part(
            3,
            &table,
            data,
            None,
            "tables/t/part-00000.csv",
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert!(
            err.message()
                .contains("tables/t/part-00000.csv is not a readable data file (row 1, column 'c'"),
            "{t} {field}: {err}"
        );
    }
}

/// A batch with values of both engines that no column type holds, and
/// SQLite values that their columns show.
fn engine_misfits() -> (Table, DataBatch) {
    use crate::engine::{Misfit, PostgresValue, RawValue, SqliteValue};
    use LogicalType::*;
    let table = table(&[
        ("n", DecimalText),
        ("d", Date),
        ("ts", TimestampTz),
        ("a", List(Box::new(Int32))),
        ("f", Float64),
    ]);
    let columns = RecordBatch::try_new(
        arrow_schema(&table),
        vec![
            Arc::new(StringArray::from(vec![None, None, Some("1.50")])),
            Arc::new(Date32Array::from(vec![None, None, Some(0)])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![None, None, Some(0)]).with_timezone("UTC"),
            ),
            Arc::new(ListArray::from_iter_primitive::<
                arrow_array::types::Int32Type,
                _,
                _,
            >(vec![None, Some(vec![Some(1)]), None])),
            Arc::new(Float64Array::from(vec![None, None, Some(2.5)])),
        ],
    )
    .unwrap();
    let m = |row: u64, column: u32, value: RawValue| Misfit { row, column, value };
    let misfits = vec![
        m(0, 0, PostgresValue::NaN.into()),
        m(0, 1, PostgresValue::Infinity.into()),
        m(0, 2, PostgresValue::NegInfinity.into()),
        m(0, 3, PostgresValue::Text(b"[0:1]={1,2}".to_vec()).into()),
        m(0, 4, SqliteValue::Integer(18).into()),
        m(1, 0, PostgresValue::Infinity.into()),
        m(1, 1, PostgresValue::NegInfinity.into()),
        m(1, 2, PostgresValue::Text(Vec::new()).into()),
        m(1, 4, SqliteValue::Text(b"n/a".to_vec()).into()),
        m(2, 3, SqliteValue::Blob(vec![0xff]).into()),
    ];
    (table, DataBatch { columns, misfits })
}

fn write_and_read(table: &Table, batch: DataBatch, format: DataFormat) -> (DataBatch, Bytes) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = Store::create(dir.path().to_str().unwrap(), &Default::default()).unwrap();
    let options = WriteOptions {
        data_format: format,
        ..WriteOptions::default()
    };
    let mut writer = TableWriter::new(store.clone(), rt.handle().clone(), table, options);
    writer.write(batch).unwrap();
    let parts = writer.finish_table().unwrap();
    let part = &parts[0];
    let side = part.misfits.as_ref().expect("a side file");
    let data = rt.block_on(store.get(&part.file.path)).unwrap();
    let side_bytes = rt.block_on(store.get(&side.path)).unwrap();
    let mut back = Vec::new();
    read_part_as(
        format,
        crate::manifest::FORMAT_VERSION,
        table,
        data,
        Some((side_bytes.clone(), &side.path)),
        &part.file.path,
        &mut |b| {
            back.push(b);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(back.len(), 1);
    (back.pop().unwrap(), side_bytes)
}

#[test]
fn misfits_of_every_engine_travel_exactly_and_say_whose_they_are() {
    for format in [DataFormat::Parquet, DataFormat::Csv] {
        let (table, batch) = engine_misfits();
        let (back, side) = write_and_read(&table, batch.clone(), format);
        assert_eq!(back.misfits, batch.misfits, "{format:?}");
        for i in 0..table.columns.len() {
            assert_eq!(
                back.columns.column(i).to_data(),
                batch.columns.column(i).to_data(),
                "{format:?}: column {}",
                table.columns[i].name
            );
        }
        // The side file names each entry's engine; the integer 18 is in
        // its float64 column (only its class in the side file).
        let entries = read_misfits(side, "side", table.columns.len()).unwrap();
        let summary: Vec<(u64, u32, &str, u8, Option<usize>)> = entries
            .iter()
            .map(|e| {
                (
                    e.row,
                    e.column,
                    e.engine.name(),
                    e.class,
                    e.value.as_ref().map(Vec::len),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (0, 0, "postgres", 1, Some(0)),
                (0, 1, "postgres", 2, Some(0)),
                (0, 2, "postgres", 3, Some(0)),
                (0, 3, "postgres", 4, Some(11)),
                (0, 4, "sqlite", 1, None),
                (1, 0, "postgres", 2, Some(0)),
                (1, 1, "postgres", 3, Some(0)),
                (1, 2, "postgres", 4, Some(0)),
                (1, 4, "sqlite", 3, Some(3)),
                (2, 3, "sqlite", 4, Some(1)),
            ],
            "{format:?}"
        );
    }
}

/// Write a side file of `columns` (`row`, `column`, `engine`, `class`,
/// `value`) and read it back.
fn read_side(columns: Vec<ArrayRef>) -> Result<Vec<SideEntry>> {
    let batch = RecordBatch::try_new(misfit_schema(), columns).unwrap();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, misfit_schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    read_misfits(Bytes::from(out), "misfits/t/part-00000.parquet", 1)
}

#[test]
fn side_entries_of_unknown_engines_or_malformed_values_are_damage() {
    let cols = |engine: &str, class: u8, value: Option<&[u8]>| -> Vec<ArrayRef> {
        vec![
            Arc::new(arrow_array::UInt64Array::from(vec![0])),
            Arc::new(arrow_array::UInt32Array::from(vec![0])),
            Arc::new(StringArray::from(vec![engine])),
            Arc::new(arrow_array::UInt8Array::from(vec![class])),
            Arc::new(arrow_array::BinaryArray::from(vec![value])),
        ]
    };
    assert!(read_side(cols("postgres", 4, Some(b"x"))).is_ok());
    assert!(read_side(cols("sqlite", 1, Some(&[0; 8]))).is_ok());
    for (engine, class, value, what) in [
        ("oracle", 1, Some(&b""[..]), "unknown engine 'oracle'"),
        (
            "postgres",
            5,
            Some(&b""[..]),
            "unknown PostgreSQL value class 5",
        ),
        ("postgres", 4, None, "a PostgreSQL value without its bytes"),
        ("sqlite", 5, None, "unknown value class 5"),
        ("sqlite", 1, Some(&b"1234"[..]), "a number of 4 bytes"),
    ] {
        let err = read_side(cols(engine, class, value)).unwrap_err();
        assert!(
            err.message()
                .contains("misfits/t/part-00000.parquet is damaged")
                && err.message().contains(what),
            "{engine} {class}: {err}"
        );
    }
    // PostgreSQL's NaN and infinities carry no bytes, and no column shows
    // a PostgreSQL value.
    let t = table(&[("n", LogicalType::DecimalText)]);
    let columns = RecordBatch::try_new(
        arrow_schema(&t),
        vec![Arc::new(StringArray::from(vec![None::<&str>]))],
    )
    .unwrap();
    let entry = |value: Option<Vec<u8>>| SideEntry {
        row: 0,
        column: 0,
        engine: ValueEngine::Postgres,
        class: PG_NAN,
        value,
    };
    let err = hide_shown(
        columns.clone(),
        vec![entry(Some(b"x".to_vec()))],
        &t,
        "side",
    )
    .unwrap_err();
    assert!(err.message().contains("side is damaged"), "{err}");
    let err = hide_shown(columns, vec![entry(None)], &t, "side").unwrap_err();
    assert!(err.message().contains("no column shows"), "{err}");
}

/// What pyarrow and DuckDB must find in the Parquet file of
/// [`every_type`] (rows 3 to 5: Python's datetime cannot hold the
/// extreme dates of rows 0 and 1).
const READERS_CHECK: &str = r#"
import sys, uuid, decimal, datetime
import pyarrow.parquet as pq, duckdb
path = sys.argv[1]
t = pq.read_table(path)
types = {f.name: str(f.type) for f in t.schema}
want = {
    "bool": "bool", "int16": "int16", "int32": "int32", "int64": "int64",
    "float32": "float", "float64": "double", "utf8": "string", "binary": "binary",
    "date": "date32[day]", "time": "time64[us]", "timestamp": "timestamp[us]",
    "timestamptz": "timestamp[us, tz=UTC]", "decimal(10,2)": "decimal128(10, 2)",
    "decimal(76,10)": "decimal256(76, 10)", "decimal": "string",
    "interval": "struct<months: int32, days: int32, micros: int64>",
    "uuid": "extension<arrow.uuid>", "json": "extension<arrow.json>",
    "list<int32>": "list<item: int32>", "list<uuid>": "list<item: extension<arrow.uuid>>",
    "list<list<int64>>": "list<item: list<item: int64>>",
}
for k, v in want.items():
    assert types[k] == v, (k, types[k], v)
row = lambda k, i: t.column(k)[i].as_py()
assert row("uuid", 3) == uuid.UUID("00010203-0405-0607-0809-0a0b0c0d0e0f"), row("uuid", 3)
assert row("json", 4) == "[]", row("json", 4)
assert row("interval", 5) == {"months": 14, "days": 3, "micros": 14706500000}
assert row("timestamptz", 3) == datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
assert row("time", 5) == datetime.time(12, 0)
assert row("decimal(76,10)", 5) == decimal.Decimal("1E-10")
assert row("decimal", 3) == "1" * 200
assert row("list<list<int64>>", 3) == [[]]
assert row("list<uuid>", 3) == [None, uuid.UUID(bytes=bytes([9] * 16))]
assert row("float32", 3) == float("inf")
c = duckdb.connect()
described = {r[0]: r[1] for r in c.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()}
for k, v in {"int16": "SMALLINT", "time": "TIME", "timestamptz": "TIMESTAMP WITH TIME ZONE",
             "uuid": "UUID", "json": "JSON", "interval": 'STRUCT("months" INTEGER, "days" INTEGER, micros BIGINT)',
             "list<uuid>": "UUID[]", "list<list<int64>>": "BIGINT[][]", "decimal(10,2)": "DECIMAL(10,2)"}.items():
    assert described[k] == v, (k, described[k], v)
got = c.execute(f"SELECT uuid, interval, \"list<uuid>\" FROM read_parquet('{path}') LIMIT 1 OFFSET 3").fetchone()
assert got[0] == uuid.UUID("00010203-0405-0607-0809-0a0b0c0d0e0f"), got
assert got[1] == {"months": -1, "days": 3, "micros": -1}, got
assert got[2] == [None, uuid.UUID(bytes=bytes([9] * 16))], got
print("ok")
"#;

/// pyarrow and DuckDB read every type of a Parquet data file in its
/// standard type. Needs `python3` (pyarrow and duckdb are installed from
/// PyPI when absent); COFFER_SKIP_INTEROP=1 skips it.
#[test]
fn other_readers_see_every_type_as_its_standard_type() {
    if !coffer_testkit::python::ensure_readers() {
        return;
    }
    let (table, batch) = every_type();
    let (_, files) = round_trip(&table, &batch, DataFormat::Parquet);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.parquet");
    std::fs::write(&path, &files[0]).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-c", READERS_CHECK, path.to_str().unwrap()])
        .output()
        .expect("python3 runs (set COFFER_SKIP_INTEROP=1 where it cannot)");
    assert!(
        out.status.success() && out.stdout == b"ok\n",
        "pyarrow/DuckDB check failed (set COFFER_SKIP_INTEROP=1 where they are not installed): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
