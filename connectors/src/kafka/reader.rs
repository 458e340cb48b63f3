//! Reads every partition of one topic with one consumer, assigned by hand (no group
//! rebalancing): OpenClaw's checkpoints own the offsets, as in Flink. Offsets are also
//! committed to the consumer group, but only so that lag shows in Kafka's own tools.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{new_null_array, ArrayRef, BinaryBuilder, Int32Array, Int64Array, RecordBatch, RecordBatchOptions, StringBuilder, TimestampMillisecondBuilder};
use datafusion::arrow::compute::{cast, interleave};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use openclaw_engine::dead_letters::{DeadLetter, DeadLetterTable};
use openclaw_engine::source::{Position, SourceProgress, SourceReader};
use openclaw_engine::{EngineError, EngineResult, Op, StreamChunk};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaOptions, Meta, Startup, ValueDecoder};
use crate::{ConnectorError, ReaderContext};

/// Longest one `next_chunk` collects records, so that barriers pass promptly.
const POLL_BUDGET: Duration = Duration::from_millis(50);
/// Once some records are in hand, how long to wait for more before returning them.
const LINGER: Duration = Duration::from_millis(5);
/// Empty polls in a row (of up to [`POLL_BUDGET`] each) after which a waiting FLUSH takes the
/// reader to be at the end of its partitions.
const IDLE_POLLS_AT_END: u32 = 20;
/// How often the lag (high watermark minus position) is refreshed.
const LAG_INTERVAL: Duration = Duration::from_secs(1);

/// One record's bytes and metadata, copied out of librdkafka's buffer.
struct Record {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Vec<u8>>,
    headers: Option<String>,
    value: Option<Vec<u8>>,
}

pub struct KafkaReader {
    schema: SchemaRef,
    options: KafkaOptions,
    /// Always `Some` until dropped (see `Drop`).
    consumer: Option<StreamConsumer>,
    decoder: ValueDecoder,
    /// Columns of the record value (the declared ones), a prefix of `schema`.
    value_columns: usize,
    /// The next offset to read in each partition: the position stored in checkpoints.
    next_offsets: BTreeMap<i32, i64>,
    assigned: bool,
    /// Partitions assigned, in order.
    partitions: Vec<i32>,
    /// Where a waiting FLUSH wants the reader to get: each partition's end offset then.
    flush_target: Option<BTreeMap<i32, i64>>,
    /// Polls in a row that found nothing.
    idle_polls: u32,
    /// The partition of each row of the last chunk (watermarks are per partition).
    row_partitions: Vec<i32>,
    progress: Arc<SourceProgress>,
    dead_letters: Option<Arc<DeadLetterTable>>,
    lag_checked: Instant,
    /// Produces dead letters to `dlq.topic` too, when one is configured.
    dlq_producer: Option<Arc<DeadLetterProducer>>,
    /// This reader's part of the lag in `progress.lag`, which the readers of a split share.
    lag_reported: i64,
    /// Which partitions are this reader's: those with `p % of == index`.
    share: Share,
}

/// A reader's share of the partitions when a source is read by several readers.
#[derive(Debug, Clone, Copy)]
struct Share {
    index: i32,
    of: i32,
}

impl Share {
    fn owns(&self, partition: i32) -> bool {
        partition.rem_euclid(self.of) == self.index
    }
}

impl KafkaReader {
    pub fn new(schema: SchemaRef, options: KafkaOptions, context: ReaderContext) -> Result<Self, ConnectorError> {
        Self::with_share(schema, options, context, Share { index: 0, of: 1 })
    }

    fn with_share(schema: SchemaRef, mut options: KafkaOptions, context: ReaderContext, share: Share) -> Result<Self, ConnectorError> {
        let value_columns = schema.fields().len() - options.include.len();
        let value_schema = Arc::new(Schema::new(schema.fields()[..value_columns].to_vec()));
        if options.client.get("group.id").is_none() {
            options.client.set("group.id", format!("openclaw-{}", context.source));
        }
        let consumer: StreamConsumer = options
            .client
            .clone()
            // Positions come from checkpoints; the group's offsets are only for monitoring.
            .set("enable.auto.commit", options.client.get("enable.auto.commit").unwrap_or("true"))
            .set("enable.auto.offset.store", "true")
            .set("enable.partition.eof", "false")
            // An offset that retention deleted is an error, not a silent jump (a loss).
            .set("auto.offset.reset", options.client.get("auto.offset.reset").unwrap_or("error"))
            .set("isolation.level", options.client.get("isolation.level").unwrap_or("read_committed"))
            .create()
            .map_err(|e| ConnectorError::new(format!("invalid kafka properties: {e}")))?;
        let decoder = ValueDecoder::new(value_schema, options.encoding.clone())?;
        let dlq_producer = match &options.dlq_topic {
            Some(topic) => Some(Arc::new(DeadLetterProducer::new(&options, topic)?)),
            None => None,
        };
        Ok(Self {
            dlq_producer,
            schema,
            options,
            consumer: Some(consumer),
            decoder,
            value_columns,
            next_offsets: BTreeMap::new(),
            assigned: false,
            partitions: vec![],
            flush_target: None,
            idle_polls: 0,
            row_partitions: vec![],
            progress: context.progress,
            dead_letters: context.dead_letters,
            lag_checked: Instant::now(),
            lag_reported: 0,
            share,
        })
    }

    /// Assigns every partition of the topic: at its checkpointed offset, or where the startup
    /// mode says for partitions the checkpoint does not know.
    fn assign(&mut self) -> EngineResult<()> {
        let partitions = tokio::task::block_in_place(|| self.options.partitions())
            .map_err(|e| EngineError::Execution(e.message))?;
        let mut list = TopicPartitionList::new();
        for p in partitions.into_iter().filter(|p| self.share.owns(*p)) {
            let offset = match (self.next_offsets.get(&p), self.options.startup) {
                (Some(&o), _) => Offset::Offset(o),
                (None, Startup::Earliest) => Offset::Beginning,
                (None, Startup::Latest) => Offset::End,
                (None, Startup::GroupOffsets) => Offset::Stored,
                (None, Startup::Timestamp(_)) => Offset::Beginning,
            };
            list.add_partition_offset(&self.options.topic, p, offset).map_err(kafka_err)?;
        }
        if let Startup::Timestamp(ms) = self.options.startup {
            let fresh: Vec<i32> = list.elements().iter().filter(|e| !self.next_offsets.contains_key(&e.partition())).map(|e| e.partition()).collect();
            if !fresh.is_empty() {
                let mut query = TopicPartitionList::new();
                for p in &fresh {
                    query.add_partition_offset(&self.options.topic, *p, Offset::Offset(ms)).map_err(kafka_err)?;
                }
                let found = tokio::task::block_in_place(|| self.consumer().offsets_for_times(query, super::METADATA_TIMEOUT)).map_err(kafka_err)?;
                for e in found.elements() {
                    list.set_partition_offset(&self.options.topic, e.partition(), e.offset()).map_err(kafka_err)?;
                }
            }
        }
        self.consumer().assign(&list).map_err(kafka_err)?;
        self.partitions = list.elements().iter().map(|e| e.partition()).collect();
        tracing::info!(topic = %self.options.topic, partitions = list.count(), resumed = !self.next_offsets.is_empty(), "kafka reader assigned");
        self.assigned = true;
        Ok(())
    }

    /// Collects records until `max_rows`, or the poll budget is spent.
    async fn poll(&mut self, max_rows: usize) -> EngineResult<Vec<Record>> {
        let started = Instant::now();
        let mut records = Vec::with_capacity(max_rows.min(4096));
        while records.len() < max_rows {
            let mut deadline = started + POLL_BUDGET;
            if !records.is_empty() {
                deadline = deadline.min(Instant::now() + LINGER);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, self.consumer().recv()).await {
                Err(_) => break, // nothing more for now
                Ok(Ok(m)) => records.push(copy(&m)),
                Ok(Err(e)) if is_fatal(&e) => return Err(EngineError::External(format!("kafka: {e}"))),
                Ok(Err(e)) => {
                    // librdkafka retries broker errors itself: log and go on.
                    tracing::warn!(topic = %self.options.topic, error = %e, "kafka consumer error");
                    break;
                }
            }
        }
        Ok(records)
    }

    /// Decodes `records` into a chunk of the source's schema; the rest go to the dead letters.
    /// Under `FORMAT UPSERT` a tombstone is a delete of its key (the other columns null), and a
    /// record without a key is a dead letter.
    fn decode(&mut self, records: &[Record]) -> EngineResult<StreamChunk> {
        let upsert = self.options.upsert;
        let mut bad: Vec<(usize, String)> = vec![];
        let mut deletes: Vec<usize> = vec![];
        // The records that carry a row, as given to the decoder.
        let mut valued: Vec<usize> = vec![];
        for (i, r) in records.iter().enumerate() {
            match (&r.key, &r.value) {
                (None, _) if upsert => bad.push((i, "an upsert record needs a key".into())),
                (Some(_), None) if upsert => deletes.push(i),
                // A tombstone is not a row of a plain source; it is kept as a dead letter too.
                (_, None) => bad.push((i, "the record has no value (a tombstone)".into())),
                (_, Some(_)) => valued.push(i),
            }
        }
        let values: Vec<&[u8]> = valued.iter().map(|&i| records[i].value.as_deref().unwrap_or(b"")).collect();
        let decoded = self.decoder.decode(&values);
        bad.extend(decoded.bad.iter().map(|(j, error)| (valued[*j], error.clone())));
        let good: Vec<usize> = decoded.good.iter().map(|&j| valued[j]).collect();
        self.send_dead_letters(records, &bad)?;
        let (values, rows, ops) = with_deletes(decoded.batch, &good, &deletes)?;
        self.row_partitions = rows.iter().map(|&i| records[i].partition).collect();
        let batch = self.with_metadata(values, &rows, records)?;
        Ok(match ops {
            Some(ops) => StreamChunk::new(ops, batch),
            None => StreamChunk::inserts(batch),
        })
    }

    fn send_dead_letters(&self, records: &[Record], bad: &[(usize, String)]) -> EngineResult<()> {
        if bad.is_empty() {
            return Ok(());
        }
        let letters: Vec<DeadLetter> = bad
            .iter()
            .map(|(i, error)| {
                let r = &records[*i];
                DeadLetter { partition: r.partition, offset: r.offset, timestamp_ms: r.timestamp_ms, error: error.clone(), payload: r.value.clone() }
            })
            .collect();
        if let Some(table) = &self.dead_letters {
            table.write(&letters)?;
        }
        if let Some(producer) = &self.dlq_producer {
            producer.send(&letters)?;
        }
        self.progress.dead_letters.fetch_add(letters.len() as u64, Ordering::Relaxed);
        tracing::debug!(topic = %self.options.topic, count = letters.len(), "records sent to the dead-letter table");
        Ok(())
    }

    /// Appends the metadata columns of the good records to their decoded values, and casts the
    /// values to the declared types.
    fn with_metadata(&self, values: RecordBatch, good: &[usize], records: &[Record]) -> EngineResult<RecordBatch> {
        let mut columns: Vec<ArrayRef> = values.columns().to_vec();
        debug_assert_eq!(columns.len(), self.value_columns);
        for (meta, _) in &self.options.include {
            let rows = good.iter().map(|&i| &records[i]);
            let column: ArrayRef = match meta {
                Meta::Partition => Arc::new(Int32Array::from_iter_values(rows.map(|r| r.partition))),
                Meta::Offset => Arc::new(Int64Array::from_iter_values(rows.map(|r| r.offset))),
                Meta::Key => {
                    let mut b = BinaryBuilder::new();
                    rows.for_each(|r| b.append_option(r.key.as_deref()));
                    Arc::new(b.finish())
                }
                Meta::Timestamp => {
                    let mut b = TimestampMillisecondBuilder::new().with_timezone("+00:00");
                    rows.for_each(|r| b.append_option(r.timestamp_ms));
                    Arc::new(b.finish())
                }
                Meta::Headers => {
                    let mut b = StringBuilder::new();
                    rows.for_each(|r| b.append_option(r.headers.as_deref()));
                    Arc::new(b.finish())
                }
            };
            columns.push(column);
        }
        let columns = columns
            .iter()
            .zip(self.schema.fields())
            .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { cast(c, f.data_type()) })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    fn consumer(&self) -> &StreamConsumer {
        self.consumer.as_ref().expect("the consumer lives as long as the reader")
    }

    fn assignment(&self) -> Vec<i32> {
        self.partitions.clone()
    }

    fn refresh_lag(&mut self) {
        if self.lag_checked.elapsed() < LAG_INTERVAL {
            return;
        }
        self.lag_checked = Instant::now();
        let mut lag = 0i64;
        for &p in &self.partitions {
            let next = self.next_offsets.get(&p).copied().unwrap_or(0);
            if let Some(high) = cached_high_watermark(self.consumer(), &self.options.topic, p) {
                lag += (high - next).max(0);
            }
        }
        self.progress.lag.fetch_add(lag - self.lag_reported, Ordering::Relaxed);
        self.lag_reported = lag;
    }
}

impl Drop for KafkaReader {
    /// Closing a consumer commits offsets and leaves the broker, which blocks (for as long as
    /// the session timeout when the broker is down): it is done on a thread of its own, not on
    /// the async worker that dropped the reader.
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            let spawned = std::thread::Builder::new().name("kafka-close".into()).spawn(move || drop(consumer));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not close the kafka consumer on a thread of its own");
            }
        }
    }
}

/// The value rows of `good` records (`values`, in their order) and null rows for the
/// `deletes`, merged in record order: the columns, the record of each row, and the ops (`None`
/// when all are inserts).
fn with_deletes(values: RecordBatch, good: &[usize], deletes: &[usize]) -> EngineResult<(RecordBatch, Vec<usize>, Option<Vec<Op>>)> {
    if deletes.is_empty() {
        return Ok((values, good.to_vec(), None));
    }
    // (record, source array, row in it): 0 is `values`, 1 a one-row array of nulls.
    let mut order: Vec<(usize, usize, usize)> = good.iter().enumerate().map(|(k, &i)| (i, 0, k)).collect();
    order.extend(deletes.iter().map(|&i| (i, 1, 0)));
    order.sort_unstable();
    let take: Vec<(usize, usize)> = order.iter().map(|&(_, a, k)| (a, k)).collect();
    let columns = values
        .columns()
        .iter()
        .map(|c| {
            let nulls = new_null_array(c.data_type(), 1);
            interleave(&[c.as_ref(), nulls.as_ref()], &take)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(order.len()));
    let batch = RecordBatch::try_new_with_options(values.schema(), columns, &options)?;
    let ops = order.iter().map(|&(_, a, _)| if a == 0 { Op::Insert } else { Op::Delete }).collect();
    Ok((batch, order.iter().map(|&(i, ..)| i).collect(), Some(ops)))
}

#[async_trait]
impl SourceReader for KafkaReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    async fn next_chunk(&mut self, max_rows: usize) -> EngineResult<Option<StreamChunk>> {
        if !self.assigned {
            self.assign()?;
        }
        let records = self.poll(max_rows).await?;
        self.refresh_lag();
        if records.is_empty() {
            self.idle_polls = self.idle_polls.saturating_add(1);
            return Ok(Some(StreamChunk::inserts(RecordBatch::new_empty(self.schema.clone()))));
        }
        self.idle_polls = 0;
        let bytes: usize = records.iter().map(|r| r.value.as_ref().map_or(0, |v| v.len())).sum();
        let values: Vec<&[u8]> = records.iter().map(|r| r.value.as_deref().unwrap_or(b"")).collect();
        // A failure here (the schema registry is down) leaves the position before these
        // records: a restart reads them again.
        self.decoder.prepare(&values).await.map_err(EngineError::External)?;
        let chunk = self.decode(&records)?;
        // Only now, with the dead letters stored, does the position pass these records.
        for r in &records {
            let next = self.next_offsets.entry(r.partition).or_insert(0);
            debug_assert!(r.offset >= *next || *next == 0, "offsets go forward within a partition");
            *next = r.offset + 1;
        }
        self.progress.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(Some(chunk))
    }

    fn is_append_only(&self) -> bool {
        !self.options.upsert
    }

    fn is_bounded(&self) -> bool {
        false
    }

    fn begin_flush(&mut self) -> bool {
        if !self.assigned {
            if let Err(e) = self.assign() {
                tracing::warn!(topic = %self.options.topic, error = %e, "FLUSH does not wait for kafka");
                return false;
            }
        }
        let mut target = BTreeMap::new();
        for p in self.assignment() {
            let found = tokio::task::block_in_place(|| self.consumer().fetch_watermarks(&self.options.topic, p, super::METADATA_TIMEOUT));
            match found {
                Ok((_, high)) => {
                    target.insert(p, high);
                }
                Err(e) => {
                    tracing::warn!(topic = %self.options.topic, partition = p, error = %e, "FLUSH does not wait for kafka");
                    return false;
                }
            }
        }
        self.flush_target = Some(target);
        self.idle_polls = 0;
        !self.caught_up()
    }

    fn caught_up(&self) -> bool {
        let Some(target) = &self.flush_target else { return true };
        // Transaction markers take offsets that are never delivered: a reader that found
        // nothing for a second is at the end too.
        self.idle_polls >= IDLE_POLLS_AT_END || target.iter().all(|(p, &high)| self.next_offsets.get(p).copied().unwrap_or(0) >= high)
    }

    fn split_off(&mut self, n: usize) -> EngineResult<Vec<Box<dyn SourceReader>>> {
        // No more readers than partitions (when the broker says how many).
        let partitions = tokio::task::block_in_place(|| self.options.partitions()).map(|p| p.len()).unwrap_or(n);
        let n = n.min(partitions).clamp(1, i32::MAX as usize) as i32;
        if n == 1 || self.assigned {
            return Ok(vec![]);
        }
        self.share = Share { index: 0, of: n };
        let mut readers: Vec<Box<dyn SourceReader>> = Vec::with_capacity(n as usize - 1);
        for index in 1..n {
            let context = ReaderContext { source: String::new(), progress: self.progress.clone(), dead_letters: self.dead_letters.clone() };
            let mut reader = KafkaReader::with_share(self.schema.clone(), self.options.clone(), context, Share { index, of: n })
                .map_err(|e| EngineError::Execution(e.message))?;
            reader.next_offsets = self.next_offsets.clone();
            readers.push(Box::new(reader));
        }
        Ok(readers)
    }

    fn row_splits(&self) -> Option<&[i32]> {
        Some(&self.row_partitions)
    }

    fn assigned_splits(&self) -> &[i32] {
        &self.partitions
    }

    fn position(&self) -> Option<Position> {
        // Before assignment the reader is where it was told to be (or nowhere yet).
        // Only its own partitions: the readers of a split report under one key.
        Some(self.next_offsets.iter().filter(|(p, _)| self.share.owns(**p)).map(|(p, o)| (format!("p{p}"), *o as u64)).collect())
    }

    fn seek(&mut self, position: Position) -> EngineResult<()> {
        if self.assigned {
            openclaw_engine::internal_err!("a kafka reader seeks before it starts reading");
        }
        for (split, offset) in position {
            let Some(p) = split.strip_prefix('p').and_then(|p| p.parse::<i32>().ok()) else {
                openclaw_engine::internal_err!("a kafka position names partitions as p<n>, got \"{split}\"");
            };
            self.next_offsets.insert(p, offset as i64);
        }
        Ok(())
    }
}

fn copy(m: &BorrowedMessage<'_>) -> Record {
    let headers = m.headers().map(|h| {
        let map: serde_json::Map<String, serde_json::Value> = h
            .iter()
            .map(|h| (h.key.to_string(), h.value.map_or(serde_json::Value::Null, |v| String::from_utf8_lossy(v).into())))
            .collect();
        serde_json::Value::Object(map).to_string()
    });
    Record {
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis(),
        key: m.key().map(<[u8]>::to_vec),
        headers,
        value: m.payload().map(<[u8]>::to_vec),
    }
}

/// Produces dead letters to a topic: the raw payload, with the error, the source topic,
/// partition and offset as headers. At least once: a replay after a crash produces them again
/// (the dead-letter table, keyed by partition and offset, has each once).
struct DeadLetterProducer {
    topic: String,
    source_topic: String,
    producer: rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
}

impl DeadLetterProducer {
    fn new(options: &KafkaOptions, topic: &str) -> Result<Self, ConnectorError> {
        let producer = options
            .client
            .clone()
            .set("enable.idempotence", "true")
            .create()
            .map_err(|e| ConnectorError::new(format!("invalid kafka properties for the dead-letter topic: {e}")))?;
        Ok(Self { topic: topic.to_string(), source_topic: options.topic.clone(), producer })
    }

    /// Queues `letters` and waits until the broker has them (before the reader's position
    /// passes them).
    fn send(&self, letters: &[DeadLetter]) -> EngineResult<()> {
        use rdkafka::message::{Header, OwnedHeaders};
        use rdkafka::producer::{BaseRecord, Producer};
        for l in letters {
            let (partition, offset) = (l.partition.to_string(), l.offset.to_string());
            let headers = OwnedHeaders::new()
                .insert(Header { key: "openclaw.error", value: Some(l.error.as_str()) })
                .insert(Header { key: "openclaw.topic", value: Some(self.source_topic.as_str()) })
                .insert(Header { key: "openclaw.partition", value: Some(partition.as_str()) })
                .insert(Header { key: "openclaw.offset", value: Some(offset.as_str()) });
            let mut record = BaseRecord::<(), [u8]>::to(&self.topic).headers(headers);
            if let Some(p) = &l.payload {
                record = record.payload(p.as_slice());
            }
            self.producer.send(record).map_err(|(e, _)| kafka_err(e))?;
        }
        tokio::task::block_in_place(|| self.producer.flush(super::METADATA_TIMEOUT)).map_err(kafka_err)
    }
}

/// The partition's end offset as librdkafka last saw it in a fetch response (no request is
/// made, unlike `fetch_watermarks`); `None` before the first fetch.
fn cached_high_watermark(consumer: &StreamConsumer, topic: &str, partition: i32) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer lives as long as `consumer`; the topic is a valid C string
    // for the call, and librdkafka only writes the two out-parameters.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(consumer.client().native_ptr(), topic.as_ptr(), partition, &mut low, &mut high)
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

fn is_fatal(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    // An offset deleted by retention (auto.offset.reset = error) would otherwise be skipped
    // records: the view fails instead, saying so.
    matches!(
        e.rdkafka_error_code(),
        Some(C::Fatal | C::TopicAuthorizationFailed | C::GroupAuthorizationFailed | C::SaslAuthenticationFailed | C::AutoOffsetReset | C::OffsetOutOfRange)
    )
}

fn kafka_err(e: rdkafka::error::KafkaError) -> EngineError {
    EngineError::External(format!("kafka: {e}"))
}

