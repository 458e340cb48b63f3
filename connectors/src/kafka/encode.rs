//! A sink's changelog chunks as Kafka records: first which records (the envelope of `FORMAT
//! PLAIN | UPSERT | DEBEZIUM` decides from the ops), then their bytes (`ENCODE JSON`, by
//! arrow-json's writer, or `ENCODE AVRO`, by arrow-avro in Confluent's wire format with the
//! schemas registered under `<topic>-key` and `<topic>-value`).

use std::sync::Arc;

use arrow_avro::schema::{AvroSchema, FingerprintStrategy};
use arrow_avro::writer::format::AvroSoeFormat;
use arrow_avro::writer::{Encoder, WriterBuilder};
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, StructArray, UInt32Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use openclaw_engine::{EngineError, EngineResult, Op, StreamChunk};

use super::registry::{self, RegistryClient};
use super::sink::{SinkFormat, SinkRecord};
use crate::ConnectorError;

/// `ENCODE JSON | AVRO` of a sink.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkEncoding {
    Json,
    /// Confluent's wire format; the schemas are registered in this registry.
    Avro { registry: String },
}

/// Which records a chunk makes, by row index, before any encoding.
enum Planned {
    /// A row as a value without a key (`FORMAT PLAIN`).
    Row(usize),
    /// The key of row `key`, and row `value` or a tombstone.
    Upsert { key: usize, value: Option<usize> },
    /// The key of row `key`, and an envelope of `before` and `after`.
    Debezium { key: usize, before: Option<usize>, after: Option<usize>, op: &'static str },
}

/// Encodes rows and keys as one sink's records.
pub enum Codec {
    Json,
    Avro(AvroCodec),
}

/// Avro encoders for a sink's value (its rows, or Debezium envelopes of them) and key.
pub struct AvroCodec {
    value: Encoder,
    value_schema: SchemaRef,
    key: Encoder,
    key_schema: SchemaRef,
    /// The row type inside Debezium's `before` and `after`.
    row_fields: Fields,
}

impl Codec {
    /// For `ENCODE AVRO`, derives the key and value schemas from `schema` (every field
    /// optional, as a view's column may be null), registers them and keeps their ids; blocks
    /// on the registry, bounded by its timeout.
    pub fn new(encoding: &SinkEncoding, format: SinkFormat, topic: &str, schema: &SchemaRef, key_columns: &[usize]) -> Result<Self, ConnectorError> {
        let SinkEncoding::Avro { registry: base } = encoding else { return Ok(Codec::Json) };
        let client = RegistryClient::new(base)?;
        let row_fields: Fields = schema.fields().iter().map(|f| Field::new(f.name(), f.data_type().clone(), true)).collect();
        let rows = Arc::new(Schema::new(row_fields.clone()));
        let value_schema = match format {
            SinkFormat::Debezium => Arc::new(Schema::new(vec![
                Field::new("before", DataType::Struct(row_fields.clone()), true),
                Field::new("after", DataType::Struct(row_fields.clone()), true),
                Field::new("op", DataType::Utf8, false),
                Field::new("ts_ms", DataType::Int64, false),
            ])),
            _ => rows.clone(),
        };
        let key_schema = Arc::new(rows.project(key_columns).map_err(|e| ConnectorError::new(e.to_string()))?);
        let value = encoder(&client, &format!("{topic}-value"), &value_schema)?;
        let key = encoder(&client, &format!("{topic}-key"), &key_schema)?;
        Ok(Codec::Avro(AvroCodec { value, value_schema, key, key_schema, row_fields }))
    }

    /// Each row of `batch` as a value (`FORMAT PLAIN | UPSERT`).
    fn rows(&mut self, batch: &RecordBatch) -> EngineResult<Vec<Vec<u8>>> {
        match self {
            Codec::Json => json_rows(batch),
            Codec::Avro(a) => avro_rows(&mut a.value, &a.value_schema, batch),
        }
    }

    /// Each row of `batch` (the key columns only) as a key.
    fn keys(&mut self, batch: &RecordBatch) -> EngineResult<Vec<Vec<u8>>> {
        match self {
            Codec::Json => json_rows(batch),
            Codec::Avro(a) => avro_rows(&mut a.key, &a.key_schema, batch),
        }
    }

    /// Debezium envelopes, one per `(before, after, op)`.
    fn envelopes(&mut self, batch: &RecordBatch, changes: &[(Option<usize>, Option<usize>, &'static str)], now_ms: i64) -> EngineResult<Vec<Vec<u8>>> {
        match self {
            Codec::Json => {
                let rows = json_rows(batch)?;
                let row = |j: Option<usize>| j.map_or("null".to_string(), |j| String::from_utf8_lossy(&rows[j]).into_owned());
                Ok(changes
                    .iter()
                    .map(|&(before, after, op)| {
                        format!(r#"{{"before":{},"after":{},"op":"{op}","ts_ms":{now_ms}}}"#, row(before), row(after)).into_bytes()
                    })
                    .collect())
            }
            Codec::Avro(a) => {
                let rows = conform(batch, &Arc::new(Schema::new(a.row_fields.clone())))?;
                let side = |pick: fn(&(Option<usize>, Option<usize>, &'static str)) -> Option<usize>| -> EngineResult<ArrayRef> {
                    let indices = UInt32Array::from(changes.iter().map(|c| pick(c).map(|i| i as u32)).collect::<Vec<_>>());
                    let columns = rows.columns().iter().map(|c| take(c, &indices, None)).collect::<Result<Vec<_>, _>>()?;
                    let nulls = NullBuffer::from(changes.iter().map(|c| pick(c).is_some()).collect::<Vec<bool>>());
                    Ok(Arc::new(StructArray::try_new(a.row_fields.clone(), columns, Some(nulls))?))
                };
                let envelope = RecordBatch::try_new(
                    a.value_schema.clone(),
                    vec![
                        side(|c| c.0)?,
                        side(|c| c.1)?,
                        Arc::new(StringArray::from(changes.iter().map(|c| c.2).collect::<Vec<_>>())),
                        Arc::new(Int64Array::from(vec![now_ms; changes.len()])),
                    ],
                )?;
                avro_rows(&mut a.value, &a.value_schema, &envelope)
            }
        }
    }
}

/// An Avro encoder for `schema`, registered under `subject`.
fn encoder(client: &RegistryClient, subject: &str, schema: &SchemaRef) -> Result<Encoder, ConnectorError> {
    let avro = AvroSchema::try_from(schema.as_ref())
        .map_err(|e| ConnectorError::new(format!("the sink's columns have no Avro schema: {e}")).with_hint("cast the columns to plain types in the sink's query"))?;
    let id = registry::block_on(client.register(subject, &avro.json_string)).map_err(|e| e.into_connector_error(client.base()))?;
    WriterBuilder::new(schema.as_ref().clone())
        .with_fingerprint_strategy(FingerprintStrategy::Id(id))
        .build_encoder::<AvroSoeFormat>()
        .map_err(|e| ConnectorError::new(format!("cannot encode Avro for subject \"{subject}\": {e}")))
}

/// `batch` with the columns of `schema` (same order; cast where a type differs, nullable).
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> EngineResult<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { cast(c, f.data_type()) })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn avro_rows(encoder: &mut Encoder, schema: &SchemaRef, batch: &RecordBatch) -> EngineResult<Vec<Vec<u8>>> {
    let avro_err = |e: arrow_avro::errors::AvroError| EngineError::Internal(format!("avro encoding: {e}"));
    encoder.encode(&conform(batch, schema)?).map_err(avro_err)?;
    let rows = encoder.flush();
    debug_assert_eq!(rows.len(), batch.num_rows());
    Ok(rows.iter().map(|r| r.to_vec()).collect())
}

/// Rows of a batch as JSON objects, one per row (arrow-json's writer, vectorized).
fn json_rows(batch: &RecordBatch) -> EngineResult<Vec<Vec<u8>>> {
    use datafusion::arrow::json::writer::{JsonArray, WriterBuilder};
    let mut writer = WriterBuilder::new().with_explicit_nulls(true).build::<_, JsonArray>(Vec::new());
    writer.write(batch)?;
    writer.finish()?;
    let array: Vec<serde_json::Value> = serde_json::from_slice(&writer.into_inner()).map_err(|e| EngineError::Internal(format!("json rows: {e}")))?;
    Ok(array.into_iter().map(|v| v.to_string().into_bytes()).collect())
}

/// Encodes a changelog chunk into records of `format`.
pub fn encode_chunk(chunk: &StreamChunk, format: SinkFormat, codec: &mut Codec, key_columns: &[usize], now_ms: i64) -> EngineResult<Vec<SinkRecord>> {
    let batch = chunk.batch();
    let keys = match format {
        SinkFormat::Plain => vec![],
        _ => codec.keys(&batch.project(key_columns)?)?,
    };
    let planned = plan(chunk.ops(), format, &keys)?;
    match format {
        SinkFormat::Plain | SinkFormat::Upsert => {
            let rows = codec.rows(batch)?;
            Ok(planned
                .into_iter()
                .map(|p| match p {
                    Planned::Row(i) => SinkRecord { key: None, value: Some(rows[i].clone()) },
                    Planned::Upsert { key, value } => SinkRecord { key: Some(keys[key].clone()), value: value.map(|v| rows[v].clone()) },
                    Planned::Debezium { .. } => unreachable!("no envelope for FORMAT PLAIN or UPSERT"),
                })
                .collect())
        }
        SinkFormat::Debezium => {
            let (key_rows, changes): (Vec<usize>, Vec<_>) = planned
                .into_iter()
                .map(|p| match p {
                    Planned::Debezium { key, before, after, op } => (key, (before, after, op)),
                    _ => unreachable!("only envelopes for FORMAT DEBEZIUM"),
                })
                .unzip();
            let values = codec.envelopes(batch, &changes, now_ms)?;
            Ok(key_rows.into_iter().zip(values).map(|(k, v)| SinkRecord { key: Some(keys[k].clone()), value: Some(v) }).collect())
        }
    }
}

/// Which records the ops make. `keys`: each row's encoded key (empty for `FORMAT PLAIN`); an
/// update that keeps its key is one record, not a tombstone and a row.
fn plan(ops: &[Op], format: SinkFormat, keys: &[Vec<u8>]) -> EngineResult<Vec<Planned>> {
    let mut out = Vec::with_capacity(ops.len());
    let same_key_update = |i: usize| ops[i] == Op::UpdateDelete && ops.get(i + 1) == Some(&Op::UpdateInsert) && keys[i] == keys[i + 1];
    let mut i = 0;
    while i < ops.len() {
        let inserted = matches!(ops[i], Op::Insert | Op::UpdateInsert);
        match format {
            SinkFormat::Plain if inserted => out.push(Planned::Row(i)),
            SinkFormat::Plain => {
                return Err(EngineError::NotSupported(
                    "a FORMAT PLAIN sink got a delete or update: its query is not append-only (use FORMAT UPSERT or DEBEZIUM)".into(),
                ))
            }
            SinkFormat::Upsert if same_key_update(i) => {}
            SinkFormat::Upsert => out.push(Planned::Upsert { key: i, value: inserted.then_some(i) }),
            SinkFormat::Debezium if same_key_update(i) => {
                out.push(Planned::Debezium { key: i + 1, before: Some(i), after: Some(i + 1), op: "u" });
                i += 1;
            }
            SinkFormat::Debezium if inserted => out.push(Planned::Debezium { key: i, before: None, after: Some(i), op: "c" }),
            SinkFormat::Debezium => out.push(Planned::Debezium { key: i, before: Some(i), after: None, op: "d" }),
        }
        i += 1;
    }
    Ok(out)
}
