//! The gRPC ingest API's `WriteRequest`, decoded from any bytes with the message types of
//! `proto/`, then its rows as the server decodes them: Arrow IPC or JSON lines into the
//! table's columns, or Protobuf messages through the descriptor set the request carries
//! (parsed by prost-reflect) and then into the columns.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use openclaw_sql::write_api::{decode_json_records, decode_request_body, BodyFormat};
use prost::Message;

#[allow(dead_code)]
mod proto {
    include!(concat!(env!("OUT_DIR"), "/openclaw.ingest.v1.rs"));
}

fn table() -> SchemaRef {
    static TABLE: OnceLock<SchemaRef> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("auction", DataType::Int64, false),
                Field::new("bidder", DataType::Int64, true),
                Field::new("price", DataType::Int64, true),
                Field::new("channel", DataType::Utf8, true),
            ]))
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = proto::WriteRequest::decode(data) else { return };
    match request.rows {
        Some(proto::write_request::Rows::ArrowIpc(body)) => {
            let _ = decode_request_body(BodyFormat::ArrowStream, &body, &table());
        }
        Some(proto::write_request::Rows::JsonRows(body)) => {
            let _ = decode_request_body(BodyFormat::NdJson, &body, &table());
        }
        Some(proto::write_request::Rows::Protobuf(rows)) => {
            let Ok(message) = openclaw_connectors::protobuf::ProtobufMessage::from_descriptor_set(&rows.descriptor_set, &rows.message) else { return };
            let records: Vec<_> = rows.messages.iter().filter_map(|m| message.to_json(m).ok()).collect();
            let _ = decode_json_records(records, &table());
        }
        None => {}
    }
});
