//! Nexmark bids as Avro records, as a service with Confluent's serializer would produce them:
//! for `openclaw kafka produce-nexmark --encode avro`, benchmarks and tests. Each record is
//! also given as the JSON line of [`super::json::bids`], so that a run can be counted from a
//! file.

use std::sync::Arc;

use arrow_avro::schema::{FingerprintStrategy, SCHEMA_METADATA_KEY};
use arrow_avro::writer::format::{AvroBinaryFormat, AvroSoeFormat};
use arrow_avro::writer::{Encoder, WriterBuilder};
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use nexmark::event::{Event, EventType};
use nexmark::EventGenerator;

use super::reader::generator_config;
use crate::{ConnectorError, Options};

/// The Avro schema of a bid (the `bid` table's columns; `date_time` in milliseconds, UTC).
pub const BID_SCHEMA: &str = r#"{"type":"record","name":"bid","namespace":"nexmark","fields":[{"name":"auction","type":"long"},{"name":"bidder","type":"long"},{"name":"price","type":"long"},{"name":"channel","type":"string"},{"name":"url","type":"string"},{"name":"date_time","type":{"type":"long","logicalType":"timestamp-millis"}},{"name":"extra","type":"string"}]}"#;

/// How each record is framed.
#[derive(Debug, Clone, Copy)]
pub enum Framing {
    /// Confluent's wire format with this registry schema id.
    Confluent(u32),
    /// The bare Avro datum (for a source with an inline schema).
    Plain,
}

/// Endless bids, encoded a chunk at a time.
pub struct AvroBids {
    generator: Box<dyn Iterator<Item = Event> + Send>,
    encoder: Encoder,
    schema: SchemaRef,
}

impl AvroBids {
    pub fn new(options: &Options, framing: Framing) -> Result<Self, ConnectorError> {
        let generator = EventGenerator::new(generator_config(options)?).with_type_filter(EventType::Bid);
        let utc = Some("+00:00".into());
        let schema = Arc::new(Schema::new_with_metadata(
            vec![
                Field::new("auction", DataType::Int64, false),
                Field::new("bidder", DataType::Int64, false),
                Field::new("price", DataType::Int64, false),
                Field::new("channel", DataType::Utf8, false),
                Field::new("url", DataType::Utf8, false),
                Field::new("date_time", DataType::Timestamp(TimeUnit::Millisecond, utc), false),
                Field::new("extra", DataType::Utf8, false),
            ],
            [(SCHEMA_METADATA_KEY.to_string(), BID_SCHEMA.to_string())].into(),
        ));
        let builder = WriterBuilder::new(schema.as_ref().clone());
        let encoder = match framing {
            Framing::Confluent(id) => builder.with_fingerprint_strategy(FingerprintStrategy::Id(id)).build_encoder::<AvroSoeFormat>(),
            Framing::Plain => builder.build_encoder::<AvroBinaryFormat>(),
        }
        .map_err(|e| ConnectorError::new(format!("avro encoder: {e}")))?;
        Ok(Self { generator: Box::new(generator), encoder, schema })
    }

    /// The next `n` bids: each as an Avro record and as a JSON line.
    pub fn next_chunk(&mut self, n: usize) -> Result<Vec<(Vec<u8>, String)>, ConnectorError> {
        let bids: Vec<_> = self
            .generator
            .by_ref()
            .filter_map(|e| match e {
                Event::Bid(b) => Some(b),
                _ => None,
            })
            .take(n)
            .collect();
        let column = |f: &dyn Fn(&nexmark::event::Bid) -> i64| Arc::new(Int64Array::from_iter_values(bids.iter().map(f))) as ArrayRef;
        let text = |f: &dyn Fn(&nexmark::event::Bid) -> &str| Arc::new(StringArray::from_iter_values(bids.iter().map(f))) as ArrayRef;
        let times = TimestampMillisecondArray::from_iter_values(bids.iter().map(|b| b.date_time as i64)).with_timezone("+00:00");
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                column(&|b| b.auction as i64),
                column(&|b| b.bidder as i64),
                column(&|b| b.price as i64),
                text(&|b| b.channel.as_str()),
                text(&|b| b.url.as_str()),
                Arc::new(times),
                text(&|b| b.extra.as_str()),
            ],
        )
        .map_err(|e| ConnectorError::new(e.to_string()))?;
        self.encoder.encode(&batch).map_err(|e| ConnectorError::new(format!("avro encoding: {e}")))?;
        let rows = self.encoder.flush();
        Ok(rows.iter().zip(&bids).map(|(r, b)| (r.to_vec(), super::json::bid_json(b))).collect())
    }
}

/// The `n`-th kind of malformed Avro record (cycling through three), made from a good one
/// in Confluent's wire format: a truncated datum, a schema id the registry does not have,
/// and text that is not Avro at all.
pub fn malformed(n: u64, good: &[u8]) -> Vec<u8> {
    match n % 3 {
        0 => good[..good.len() / 2].to_vec(),
        1 => {
            let mut r = good.to_vec();
            r[1..5].copy_from_slice(&999_999u32.to_be_bytes());
            r
        }
        _ => format!("{{\"not\": \"avro #{n}\"}}").into_bytes(),
    }
}
