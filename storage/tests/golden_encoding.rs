//! The row encoding is ours and on disk: these bytes must decode, and values must encode to
//! them, in every future build (`tests/fixtures/row_encoding_v2.txt`). A change that breaks
//! this needs a new `FORMAT_VERSION` and a new fixture, never an edited one.
//! `OPENCLAW_BLESS=1 cargo test -p openclaw-storage --test golden_encoding` writes the fixture
//! for a new format.

use std::sync::Arc;

use arrow::array::*;
use arrow::compute::SortOptions;
use arrow::datatypes::*;
use openclaw_storage::RowCodec;

const FIXTURE: &str = "tests/fixtures/row_encoding_v2.txt";

/// Rows covering every encoded type, NULLs, negative numbers, empty strings and zero bytes.
fn sample() -> Vec<ArrayRef> {
    vec![
        Arc::new(BooleanArray::from(vec![Some(true), Some(false), None, Some(true)])),
        Arc::new(Int16Array::from(vec![Some(-2), Some(0), None, Some(300)])),
        Arc::new(Int32Array::from(vec![Some(i32::MIN), Some(-1), None, Some(7)])),
        Arc::new(Int64Array::from(vec![Some(-1), Some(0), None, Some(1 << 40)])),
        Arc::new(UInt64Array::from(vec![Some(0), Some(1), None, Some(u64::MAX)])),
        Arc::new(Float32Array::from(vec![Some(-0.0), Some(1.5), None, Some(f32::NEG_INFINITY)])),
        Arc::new(Float64Array::from(vec![Some(0.1), Some(-2.5), None, Some(f64::MAX)])),
        Arc::new(Decimal128Array::from(vec![Some(-100), Some(12345), None, Some(0)]).with_precision_and_scale(38, 2).unwrap()),
        Arc::new(Date32Array::from(vec![Some(0), Some(-365), None, Some(20000)])),
        Arc::new(TimestampMicrosecondArray::from(vec![Some(1_700_000_000_000_000), Some(-1), None, Some(0)])),
        Arc::new(TimestampMicrosecondArray::from(vec![Some(5), Some(6), None, Some(7)]).with_timezone("+00:00")),
        Arc::new(IntervalMonthDayNanoArray::from(vec![Some(IntervalMonthDayNano::new(1, 2, 3)), Some(IntervalMonthDayNano::new(-1, 0, 0)), None, Some(IntervalMonthDayNano::new(0, 0, 1_000))])),
        Arc::new(StringArray::from(vec![Some("auction"), Some(""), None, Some("a\0b é")])),
        Arc::new(BinaryArray::from(vec![Some(&[0u8, 1, 0xFF][..]), Some(&[][..]), None, Some(&[0u8][..])])),
    ]
}

fn schema(cols: &[ArrayRef]) -> SchemaRef {
    Arc::new(Schema::new(cols.iter().enumerate().map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true)).collect::<Vec<_>>()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

/// The codecs the fixture pins: every column ascending, and every column descending with
/// NULLs last (what top-N keys use).
fn codecs(schema: &SchemaRef) -> Vec<(&'static str, RowCodec)> {
    let n = schema.fields().len();
    let desc = vec![SortOptions { descending: true, nulls_first: false }; n];
    vec![("asc", RowCodec::new(schema.clone()).unwrap()), ("desc", RowCodec::with_order(schema.clone(), &desc).unwrap())]
}

#[test]
fn encoded_rows_equal_the_checked_in_bytes_and_decode_back() {
    let cols = sample();
    let schema = schema(&cols);
    let mut lines = vec![];
    for (name, codec) in codecs(&schema) {
        let rows = codec.encode(&cols).unwrap();
        for (i, row) in rows.iter().enumerate() {
            lines.push(format!("{name} {i} {}", hex(row.data())));
        }
    }
    let path = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())).join(FIXTURE);
    if std::env::var_os("OPENCLAW_BLESS").is_some() {
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }
    let fixture = std::fs::read_to_string(&path).expect("the checked-in fixture");
    let expected: Vec<&str> = fixture.lines().collect();
    assert_eq!(lines, expected, "the row encoding changed: bump FORMAT_VERSION and write a new fixture");
    // And the checked-in bytes decode to the values, whatever encode does.
    for (name, codec) in codecs(&schema) {
        let bytes: Vec<Vec<u8>> = expected.iter().filter(|l| l.starts_with(&format!("{name} "))).map(|l| unhex(l.rsplit(' ').next().unwrap())).collect();
        let batch = codec.decode(bytes.iter().map(|b| b.as_slice())).unwrap();
        assert_eq!(batch.columns(), cols.as_slice(), "{name}");
    }
}

const BLOCK_FIXTURE: &str = "tests/fixtures/row_block_v1.txt";

/// A table without a primary key keeps its rows in blocks (`row_block.rs`): these bytes must
/// decode in every future build. A change needs a new block format byte and fixture.
#[test]
fn a_row_block_equals_the_checked_in_bytes_and_decodes_back() {
    use openclaw_storage::row_block::{block_key, decode_block, encode_block, parse_block_key};
    let cols = sample();
    let schema = schema(&cols);
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let line = format!("{} {}", hex(&block_key(1 << 33, 4)), hex(&encode_block(&batch).unwrap()));
    let path = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())).join(BLOCK_FIXTURE);
    if std::env::var_os("OPENCLAW_BLESS").is_some() {
        std::fs::write(&path, format!("{line}\n")).unwrap();
    }
    let fixture = std::fs::read_to_string(&path).expect("the checked-in fixture");
    let expected = fixture.trim_end();
    assert_eq!(line, expected, "the row block encoding changed: bump its format byte and write a new fixture");
    let (key, value) = expected.split_once(' ').unwrap();
    assert_eq!(parse_block_key(&unhex(key)).unwrap(), (1 << 33, 4));
    assert_eq!(decode_block(&unhex(value), &schema).unwrap(), batch);
}
