//! Avro record values, decoded into Arrow by arrow-avro, vectorized: either plain Avro datums
//! of one inline schema, or Confluent's wire format (magic byte 0, a 4-byte big-endian schema
//! id, the datum) with writer schemas fetched from a schema registry by id as they appear.
//! Decoded rows are matched to the source's columns by name and cast to their types, so
//! records of older or newer schema versions land in the same columns.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow_avro::reader::ReaderBuilder;
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use datafusion::arrow::array::{new_null_array, ArrayRef, RecordBatch};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::registry::{RegistryClient, RegistryError};
use crate::ConnectorError;

/// Confluent's magic byte, then a 4-byte schema id.
const CONFLUENT_PREFIX_BYTES: usize = 5;
/// The id an inline schema is stored under (records carry no id; the decoder is given one).
const INLINE_ID: u32 = 0;
/// Registry lookups of one poll are retried this often before the reader fails (and the view
/// with it, to resume from its checkpoint): a registry outage must not turn good records into
/// dead letters.
const REGISTRY_ATTEMPTS: u32 = 5;
/// The first pause between two lookups; it doubles each time.
const REGISTRY_BACKOFF: Duration = Duration::from_millis(200);
/// Most schema ids a reader remembers (known and unknown). Garbage that happens to start with
/// byte 0 names random ids; past this, a new id is not looked up and its record is a dead
/// letter, so such a topic cannot grow the cache or flood the registry.
const MAX_SCHEMA_IDS: usize = 1024;

/// `ENCODE AVRO (...)`: where the schemas come from.
#[derive(Debug, Clone, PartialEq)]
pub struct AvroEncoding {
    /// The reader's schema: inline (`schema = '...'`), or the registry's latest for the
    /// topic, fixed at `CREATE` (it gives the columns when none are declared).
    pub schema: String,
    /// A Confluent schema registry: records are in its wire format, and their writer schemas
    /// are fetched by id.
    pub registry: Option<String>,
}

impl AvroEncoding {
    /// The Arrow columns of an Avro record schema, for a source declared without columns. All
    /// are nullable: a record of another schema version may lack any of them.
    pub fn columns(&self) -> Result<SchemaRef, ConnectorError> {
        let decoder = decoder_for(&self.schema, 1, INLINE_ID).map_err(|e| ConnectorError::new(format!("invalid Avro schema: {e}")))?;
        let fields: Vec<Field> = decoder
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let data_type = match f.data_type() {
                    DataType::Dictionary(_, v) if v.as_ref() == &DataType::Utf8 => DataType::Utf8,
                    DataType::Utf8View => DataType::Utf8,
                    other => other.clone(),
                };
                Field::new(f.name(), data_type, true)
            })
            .collect();
        Ok(Arc::new(Schema::new(fields)))
    }
}

/// A decoder of one writer schema, the one records prefixed with schema id `id` name.
fn decoder_for(schema: &str, batch_rows: usize, id: u32) -> Result<arrow_avro::reader::Decoder, String> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store.set(Fingerprint::Id(id), AvroSchema::new(schema.to_string())).map_err(|e| e.to_string())?;
    ReaderBuilder::new()
        .with_batch_size(batch_rows.max(1))
        .with_writer_schema_store(store)
        .with_active_fingerprint(Fingerprint::Id(id))
        .build_decoder()
        .map_err(|e| e.to_string())
}

/// Decodes Avro record values into batches of the source's value columns.
pub struct AvroDecoder {
    target: SchemaRef,
    registry: Option<RegistryClient>,
    /// Writer schemas by id (only [`INLINE_ID`] without a registry).
    writers: HashMap<u32, String>,
    /// Ids the registry answered "not found" for, with that answer: their records are dead
    /// letters.
    unknown: HashMap<u32, String>,
}

impl AvroDecoder {
    pub fn new(target: SchemaRef, encoding: &AvroEncoding) -> Result<Self, ConnectorError> {
        decoder_for(&encoding.schema, 1, INLINE_ID).map_err(|e| ConnectorError::new(format!("invalid Avro schema: {e}")))?;
        let registry = encoding.registry.as_deref().map(RegistryClient::new).transpose()?;
        let writers = match registry {
            Some(_) => HashMap::new(),
            None => [(INLINE_ID, encoding.schema.clone())].into(),
        };
        Ok(Self { target, registry, writers, unknown: HashMap::new() })
    }

    /// Fetches the writer schemas of ids in `records` that are not known yet. Fails only when
    /// the registry cannot be asked, after [`REGISTRY_ATTEMPTS`]; an id it does not have is
    /// remembered, and its records become dead letters.
    pub async fn learn(&mut self, records: &[&[u8]]) -> Result<(), String> {
        let Some(registry) = self.registry.clone() else { return Ok(()) };
        let mut new_ids: Vec<u32> = records.iter().filter_map(|r| confluent_id(r)).filter(|id| !self.writers.contains_key(id) && !self.unknown.contains_key(id)).collect();
        new_ids.sort_unstable();
        new_ids.dedup();
        for id in new_ids {
            if self.writers.len() + self.unknown.len() >= MAX_SCHEMA_IDS {
                tracing::warn!(registry = registry.base(), id, limit = MAX_SCHEMA_IDS, "too many schema ids; not looking up more");
                break;
            }
            let mut pause = REGISTRY_BACKOFF;
            for attempt in 1..=REGISTRY_ATTEMPTS {
                match registry.schema_by_id(id).await {
                    Ok(schema) => match decoder_for(&schema, 1, id) {
                        Ok(_) => {
                            tracing::info!(registry = registry.base(), id, "fetched an Avro writer schema");
                            self.writers.insert(id, schema);
                        }
                        Err(e) => {
                            self.unknown.insert(id, format!("the registry's schema {id} is not a usable Avro schema: {e}"));
                        }
                    },
                    Err(RegistryError::NotFound(m)) => {
                        self.unknown.insert(id, m);
                    }
                    Err(RegistryError::Unavailable(m)) if attempt == REGISTRY_ATTEMPTS => {
                        return Err(format!("the schema registry is unavailable: {m}"));
                    }
                    Err(RegistryError::Unavailable(m)) => {
                        tracing::warn!(registry = registry.base(), id, attempt, error = %m, "schema registry lookup failed; retrying");
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                        continue;
                    }
                }
                break;
            }
        }
        Ok(())
    }

    /// The writer schema id `record` is decoded with, or why it cannot be decoded at all.
    pub fn writer_of(&self, record: &[u8]) -> Result<u32, String> {
        if self.registry.is_none() {
            return Ok(INLINE_ID);
        }
        let id = confluent_id(record).ok_or("not in Confluent's Avro wire format (magic byte 0 and a 4-byte schema id)")?;
        if let Some(why) = self.unknown.get(&id) {
            return Err(why.clone());
        }
        if !self.writers.contains_key(&id) {
            return Err(format!("schema id {id} is not known (a reader looks up at most {MAX_SCHEMA_IDS} ids)"));
        }
        Ok(id)
    }

    /// Decodes `records`, all of writer schema `id`, into one batch of the target columns,
    /// or fails if any of them does not decode to exactly one row.
    pub fn decode_all<'a>(&self, id: u32, n: usize, records: impl Iterator<Item = &'a [u8]>) -> Result<RecordBatch, String> {
        let schema = self.writers.get(&id).ok_or_else(|| format!("schema id {id} is not known"))?;
        let mut decoder = decoder_for(schema, n, id)?;
        let mut framed = Vec::new();
        for record in records {
            // The decoder expects every datum after a prefix; a plain datum gets one here.
            let bytes = match self.registry {
                Some(_) => record,
                None => {
                    framed.clear();
                    framed.push(0);
                    framed.extend_from_slice(&INLINE_ID.to_be_bytes());
                    framed.extend_from_slice(record);
                    &framed[..]
                }
            };
            let before = decoder.capacity();
            let read = decoder.decode(bytes).map_err(|e| e.to_string())?;
            if read != bytes.len() || decoder.capacity() + 1 != before {
                return Err(match read < bytes.len() && decoder.capacity() + 1 == before {
                    true => "the record has bytes after its Avro datum".into(),
                    false => "the record's Avro datum is truncated or malformed".into(),
                });
            }
        }
        let batch = decoder.flush().map_err(|e| e.to_string())?;
        match batch {
            Some(batch) => conform(&batch, &self.target),
            None => Ok(RecordBatch::new_empty(self.target.clone())),
        }
    }
}

/// The schema id of a record in Confluent's wire format.
fn confluent_id(record: &[u8]) -> Option<u32> {
    match record {
        [0, a, b, c, d, ..] if record.len() >= CONFLUENT_PREFIX_BYTES => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// `batch`'s columns matched to `target`'s by name (exactly, else ignoring case) and cast to
/// their types; a column the record schema lacks is null. A value that does not fit (an
/// overflowing cast) fails the batch, so that its record is isolated as a dead letter.
pub fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, String> {
    let schema = batch.schema();
    let by_lower: BTreeMap<String, usize> = schema.fields().iter().enumerate().map(|(i, f)| (f.name().to_lowercase(), i)).collect();
    let strict = CastOptions { safe: false, ..Default::default() };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let found = schema.index_of(field.name()).ok().or_else(|| by_lower.get(&field.name().to_lowercase()).copied());
        let column = match found {
            Some(i) => cast_with_options(batch.column(i), field.data_type(), &strict).map_err(|e| format!("column \"{}\": {e}", field.name()))?,
            None if field.is_nullable() => new_null_array(field.data_type(), batch.num_rows()),
            None => return Err(format!("the record has no field \"{}\"", field.name())),
        };
        columns.push(column);
    }
    RecordBatch::try_new(target.clone(), columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, Int64Array, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::TimeUnit;

    use super::*;
    use crate::kafka::{Encoding, ValueDecoder};
    use crate::nexmark::avro::{malformed, AvroBids, Framing, BID_SCHEMA};

    fn options() -> crate::Options {
        [("nexmark.base.time".to_string(), "1700000000000".to_string())].into()
    }

    /// Declared columns in another order and types than the Avro schema's, one it lacks.
    fn target() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("price", DataType::Int64, true),
            Field::new("auction", DataType::Int64, true),
            Field::new("date_time", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new("missing", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn inline_schema_datums_decode_by_name_and_a_truncated_one_is_isolated() {
        let encoding = Encoding::Avro(AvroEncoding { schema: BID_SCHEMA.into(), registry: None });
        let decoder = ValueDecoder::new(target(), encoding).unwrap();
        let bids = AvroBids::new(&options(), Framing::Plain).unwrap().next_chunk(5).unwrap();
        let mut records: Vec<Vec<u8>> = bids.iter().map(|(r, _)| r.clone()).collect();
        let half = records[2].len() / 2;
        records[2].truncate(half);
        records[3].extend_from_slice(b"\x02\x04");
        let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
        let out = decoder.decode(&refs);
        assert_eq!(out.good, vec![0, 1, 4]);
        assert_eq!(out.bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![2, 3]);
        assert!(out.bad[1].1.contains("after its Avro datum"), "{}", out.bad[1].1);
        let price = out.batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let json: serde_json::Value = serde_json::from_str(&bids[4].1).unwrap();
        assert_eq!(price.value(2), json["price"].as_i64().unwrap());
        let time = out.batch.column(2).as_any().downcast_ref::<TimestampNanosecondArray>().unwrap();
        assert!(time.value(0) >= 1_700_000_000_000 * 1_000_000, "milliseconds became nanoseconds");
        assert_eq!(out.batch.column(3).null_count(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn confluent_records_fetch_their_schemas_and_bad_ones_are_isolated() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(crate::kafka::registry::serve_mock_registry(listener));
        let client = RegistryClient::new(&base).unwrap();
        let id = client.register("bid-value", BID_SCHEMA).await.unwrap();
        // A newer version with one more field: its records land in the same columns.
        let v2 = BID_SCHEMA.replace(r#"{"name":"extra","type":"string"}"#, r#"{"name":"extra","type":"string"},{"name":"note","type":"string","default":""}"#);
        let id2 = client.register("bid-value", &v2).await.unwrap();
        let encoding = Encoding::Avro(AvroEncoding { schema: BID_SCHEMA.into(), registry: Some(base) });
        let mut decoder = ValueDecoder::new(target(), encoding).unwrap();
        let bids = AvroBids::new(&options(), Framing::Confluent(id)).unwrap().next_chunk(9).unwrap();
        let mut records: Vec<Vec<u8>> = bids.iter().map(|(r, _)| r.clone()).collect();
        for (i, n) in [(1, 0), (4, 1), (7, 2)] {
            records[i] = malformed(n, &records[i]);
        }
        // Record 8 as version 2: the same datum plus an empty string (length 0).
        records[8][1..5].copy_from_slice(&id2.to_be_bytes());
        records[8].push(0);
        let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
        decoder.prepare(&refs).await.unwrap();
        let out = decoder.decode(&refs);
        let mut good = out.good.clone();
        good.sort();
        assert_eq!(good, vec![0, 2, 3, 5, 6, 8]);
        let bad: Vec<(usize, &str)> = out.bad.iter().map(|(i, e)| (*i, e.as_str())).collect();
        assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), vec![1, 4, 7]);
        assert!(bad[1].1.contains("no schema id 999999"), "{}", bad[1].1);
        assert!(bad[2].1.contains("wire format"), "{}", bad[2].1);
        let auction = out.batch.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        let row_of_8 = out.good.iter().position(|&g| g == 8).unwrap();
        let json: serde_json::Value = serde_json::from_str(&bids[8].1).unwrap();
        assert_eq!(auction.value(row_of_8), json["auction"].as_i64().unwrap());
    }
}
