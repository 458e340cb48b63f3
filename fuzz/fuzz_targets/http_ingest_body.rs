//! `POST /v1/ingest/<table>` and `/v1/webhook/<table>`: a body in any of the formats the HTTP
//! front takes, decoded into a table's columns (every type a table may hold, one NOT NULL) as
//! `openclaw_sql::write_api` does before anything is written. The first byte picks the format.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use openclaw_sql::write_api::{decode_request_body, BodyFormat};

fn table() -> SchemaRef {
    static TABLE: OnceLock<SchemaRef> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("name", DataType::Utf8, true),
                Field::new("price", DataType::Decimal128(10, 2), true),
                Field::new("ratio", DataType::Float64, true),
                Field::new("ok", DataType::Boolean, true),
                Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
                Field::new("day", DataType::Date32, true),
                Field::new("small", DataType::Int16, true),
            ]))
        })
        .clone()
}

const FORMATS: [BodyFormat; 8] = [
    BodyFormat::NdJson,
    BodyFormat::JsonArray,
    BodyFormat::JsonDocument,
    BodyFormat::Text,
    BodyFormat::Csv { header: true },
    BodyFormat::Csv { header: false },
    BodyFormat::CsvMarkedNulls,
    BodyFormat::ArrowStream,
];

fuzz_target!(|data: &[u8]| {
    let Some((format, body)) = data.split_first() else { return };
    let _ = decode_request_body(FORMATS[*format as usize % FORMATS.len()], body, &table());
});
