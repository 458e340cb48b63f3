//! A Kafka sink: the changelog of a view, encoded as JSON or Avro records, written exactly once with
//! Kafka transactions committed after OpenClaw's checkpoints.
//!
//! Two-phase commit, as in Flink: the operator appends each chunk's records to a buffer in the
//! state store (so the buffer is part of every checkpoint); at a checkpoint barrier it hands
//! the committer the buffer's end. Once that checkpoint is durable, the committer produces the
//! records in one transaction, together with a marker (a transactional offset commit of the
//! buffer's end for the group `openclaw-sink-<name>`), commits, and trims the buffer. After a
//! crash, the restored buffer holds what the restored checkpoint saw; the marker tells which of
//! it Kafka already has, and the rest is produced again in a new transaction. A
//! `read_committed` consumer sees every record once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use openclaw_engine::{Barrier, EngineError, EngineResult, ObjectId, Operator, OperatorContext, StreamChunk};
use openclaw_storage::Store;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use super::encode::{encode_chunk, Codec, SinkEncoding};
use crate::two_phase::{CommitQueue, Committer, SeqBuffer};
use crate::{ConnectorError, Options, PreparedSink, SinkConnector};

/// `CREATE SINK ... WITH (connector = 'kafka', ...)`.
pub struct KafkaSinkConnector;

impl SinkConnector for KafkaSinkConnector {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn prepare(&self, options: &Options) -> Result<Arc<dyn PreparedSink>, ConnectorError> {
        let options = KafkaSinkOptions::parse(options)?;
        options.validate()?;
        Ok(Arc::new(options))
    }
}

impl PreparedSink for KafkaSinkOptions {
    /// ENCODE AVRO registers its schemas here, so a registry problem is CREATE's error.
    fn operator(&self, object: ObjectId, name: &str, schema: &SchemaRef, store: Store, buffer_cf: &str) -> Result<Box<dyn Operator>, ConnectorError> {
        Ok(Box::new(KafkaSinkOperator::new(object, name, schema, self.clone(), store, buffer_cf)?))
    }
}

pub use crate::two_phase::SINK_COMMITS_CF;

/// How long one transaction step (init, commit, marker) may take before it is retried.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// The record envelope (`FORMAT PLAIN | UPSERT | DEBEZIUM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkFormat {
    /// Inserts only: a retraction fails the sink.
    Plain,
    /// Key (the primary key as JSON) and row; a deleted key gets a tombstone (null value).
    Upsert,
    /// Debezium's `{"before", "after", "op", "ts_ms"}`, keyed like UPSERT.
    Debezium,
}

/// A sink's options, checked.
#[derive(Clone)]
pub struct KafkaSinkOptions {
    pub topic: String,
    pub client: ClientConfig,
    pub format: SinkFormat,
    /// Columns of the key, by name; all columns when not given.
    pub primary_key: Option<Vec<String>>,
    /// Transactions committed on checkpoints; `false` is at least once (idempotent producer).
    pub exactly_once: bool,
    pub encoding: SinkEncoding,
}

const KNOWN: &[&str] = &["connector", "topic", "primary_key", "sink.exactly_once", "format", "encode", "encode.schema.registry"];

impl KafkaSinkOptions {
    pub fn parse(options: &Options) -> Result<Self, ConnectorError> {
        for key in options.keys() {
            if !(KNOWN.contains(&key.as_str()) || key.starts_with("properties.")) {
                return Err(ConnectorError::new(format!("unknown option \"{key}\" for a kafka sink"))
                    .with_hint(format!("options are {}, and properties.* passed to librdkafka", KNOWN.join(", "))));
            }
        }
        let topic = options.get("topic").cloned().ok_or_else(|| ConnectorError::new("a kafka sink needs a topic").with_hint("add WITH (topic = '...')"))?;
        let mut client = ClientConfig::new();
        for (key, value) in options.iter().filter_map(|(k, v)| Some((k.strip_prefix("properties.")?, v))) {
            client.set(if key == "bootstrap.server" { "bootstrap.servers" } else { key }, value);
        }
        if client.get("bootstrap.servers").is_none() {
            return Err(ConnectorError::new("a kafka sink needs a broker list").with_hint("add 'properties.bootstrap.server' = 'host:9092'"));
        }
        let format = match options.get("format").map(|f| f.to_ascii_lowercase()).as_deref() {
            None | Some("plain") => SinkFormat::Plain,
            Some("upsert") => SinkFormat::Upsert,
            Some("debezium") => SinkFormat::Debezium,
            Some(other) => {
                return Err(ConnectorError::new(format!("FORMAT {} is not supported for kafka sinks", other.to_uppercase()))
                    .with_hint("use FORMAT PLAIN, UPSERT or DEBEZIUM"))
            }
        };
        let encoding = match options.get("encode").map(|e| e.to_ascii_lowercase()).as_deref() {
            None | Some("json") => SinkEncoding::Json,
            Some("avro") => {
                let registry = options.get("encode.schema.registry").cloned().ok_or_else(|| {
                    ConnectorError::new("an ENCODE AVRO sink needs a schema registry")
                        .with_hint("give ENCODE AVRO (schema.registry = 'http://host:8081'); its schemas are registered there")
                })?;
                SinkEncoding::Avro { registry }
            }
            Some(other) => {
                return Err(ConnectorError::new(format!("ENCODE {} is not supported for kafka sinks", other.to_uppercase()))
                    .with_hint("use ENCODE JSON or AVRO"))
            }
        };
        let primary_key = options.get("primary_key").map(|k| k.split(',').map(|c| c.trim().to_string()).collect());
        let exactly_once = !options.get("sink.exactly_once").is_some_and(|v| v.eq_ignore_ascii_case("false"));
        Ok(Self { topic, client, format, primary_key, exactly_once, encoding })
    }

    /// Column indexes of the key in `schema`.
    pub fn key_columns(&self, schema: &SchemaRef) -> Result<Vec<usize>, ConnectorError> {
        match &self.primary_key {
            None => Ok((0..schema.fields().len()).collect()),
            Some(cols) => cols
                .iter()
                .map(|c| {
                    schema.index_of(c).map_err(|_| {
                        ConnectorError::new(format!("primary_key column \"{c}\" is not a column of the sink's query"))
                    })
                })
                .collect(),
        }
    }

    /// Checks that the broker is reachable and the topic exists.
    pub fn validate(&self) -> Result<(), ConnectorError> {
        let source = super::KafkaOptions {
            topic: self.topic.clone(),
            client: self.client.clone(),
            startup: super::Startup::Earliest,
            encoding: super::Encoding::Json,
            include: vec![],
            dlq_topic: None,
            upsert: false,
        };
        source.partitions().map(|_| ())
    }
}

/// One Kafka record as buffered: key and value (a tombstone has none).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SinkRecord {
    pub(super) key: Option<Vec<u8>>,
    pub(super) value: Option<Vec<u8>>,
}

impl SinkRecord {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len));
        for part in [&self.key, &self.value] {
            match part {
                Some(bytes) => {
                    out.push(1);
                    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    out.extend_from_slice(bytes);
                }
                None => out.push(0),
            }
        }
        out
    }

    fn decode(mut bytes: &[u8]) -> EngineResult<Self> {
        let mut part = || -> EngineResult<Option<Vec<u8>>> {
            let (&flag, rest) = bytes.split_first().ok_or_else(|| EngineError::Internal("truncated sink record".into()))?;
            bytes = rest;
            if flag == 0 {
                return Ok(None);
            }
            if bytes.len() < 4 {
                openclaw_engine::internal_err!("truncated sink record");
            }
            let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
            let Some(data) = bytes.get(4..4 + len) else { openclaw_engine::internal_err!("truncated sink record") };
            let data = data.to_vec();
            bytes = &bytes[4 + len..];
            Ok(Some(data))
        };
        let key = part()?;
        let value = part()?;
        Ok(Self { key, value })
    }
}

/// The sink's buffer: encoded [`SinkRecord`]s by sequence number.
#[derive(Clone)]
struct Buffer(SeqBuffer);

impl Buffer {
    fn append(&self, next_seq: &mut u64, records: &[SinkRecord]) -> EngineResult<()> {
        self.0.append(next_seq, records.iter().map(SinkRecord::encode))
    }

    /// Records with sequence numbers in `from..to`, in order.
    fn read(&self, from: u64, to: u64) -> EngineResult<Vec<SinkRecord>> {
        self.0.read(from, to, SinkRecord::decode)
    }
}

/// The last operator of a sink's dataflow.
pub struct KafkaSinkOperator {
    object: ObjectId,
    name: String,
    options: KafkaSinkOptions,
    key_columns: Vec<usize>,
    codec: Codec,
    buffer: Buffer,
    next_seq: u64,
    commits: CommitQueue,
}

impl KafkaSinkOperator {
    /// `buffer_cf`: a column family of the sink's own, created by the caller.
    pub fn new(object: ObjectId, name: &str, schema: &SchemaRef, options: KafkaSinkOptions, store: Store, buffer_cf: &str) -> Result<Self, ConnectorError> {
        let key_columns = options.key_columns(schema)?;
        let codec = Codec::new(&options.encoding, options.format, &options.topic, schema, &key_columns)?;
        Ok(Self {
            object,
            name: name.to_string(),
            options,
            key_columns,
            codec,
            buffer: Buffer(SeqBuffer { store, cf: Arc::from(buffer_cf) }),
            next_seq: 0,
            commits: CommitQueue::default(),
        })
    }

    fn group(&self) -> String {
        format!("openclaw-sink-{}", self.name)
    }
}

#[async_trait]
impl Operator for KafkaSinkOperator {
    fn name(&self) -> String {
        format!("KafkaSink({})", self.options.topic)
    }

    async fn on_start(&mut self, ctx: &mut OperatorContext) -> EngineResult<()> {
        let committer = KafkaCommitter::new(&self.options, &self.group(), self.buffer.clone(), self.object)?;
        let (marker, committer) = tokio::task::spawn_blocking(move || committer.recover().map(|m| (m, committer)))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        // Records below the marker are in Kafka already; the rest of the restored buffer is
        // produced again, first.
        self.buffer.0.trim(marker)?;
        self.next_seq = self.buffer.0.end()?.max(marker);
        self.commits = CommitQueue::start(committer, self.object, marker, self.next_seq, ctx.coordinator.clone(), tracing::info_span!("kafka sink", sink = %self.name));
        Ok(())
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, _ctx: &mut OperatorContext) -> EngineResult<()> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let records = encode_chunk(&chunk, self.options.format, &mut self.codec, &self.key_columns, now_ms)?;
        self.buffer.append(&mut self.next_seq, &records)
    }

    async fn handle_checkpoint(&mut self, barrier: &Barrier, _ctx: &mut OperatorContext) -> EngineResult<()> {
        self.commits.checkpoint(barrier, self.next_seq);
        Ok(())
    }

    fn state_tables(&self) -> Vec<(Arc<str>, openclaw_storage::CfKind)> {
        vec![(self.buffer.0.cf.clone(), openclaw_storage::CfKind::Plain)]
    }

    async fn barrier_passed(&mut self, barrier: &Barrier, ctx: &mut OperatorContext) -> EngineResult<()> {
        ctx.coordinator.ack(self.object, barrier.epoch);
        Ok(())
    }
}

/// Produces buffered records to Kafka once their checkpoint is durable.
struct KafkaCommitter {
    topic: String,
    producer: ThreadedProducer<DefaultProducerContext>,
    /// For the marker: the group's metadata and its committed offset.
    consumer: BaseConsumer,
    buffer: Buffer,
    exactly_once: bool,
    /// This sink's key in [`SINK_COMMITS_CF`].
    sink: ObjectId,
}

impl KafkaCommitter {
    fn new(options: &KafkaSinkOptions, group: &str, buffer: Buffer, sink: ObjectId) -> EngineResult<Self> {
        let mut producer = options.client.clone();
        let linger = producer.get("linger.ms").unwrap_or("5").to_string();
        producer.set("enable.idempotence", "true").set("linger.ms", linger);
        if options.exactly_once {
            producer.set("transactional.id", producer.get("transactional.id").unwrap_or(group).to_string());
        }
        let producer: ThreadedProducer<DefaultProducerContext> = producer.create().map_err(kafka_err)?;
        let consumer: BaseConsumer = options
            .client
            .clone()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(kafka_err)?;
        Ok(Self { topic: options.topic.clone(), producer, consumer, buffer, exactly_once: options.exactly_once, sink })
    }

    /// Fences earlier producers of this sink (aborting their open transaction) and returns
    /// the marker: the buffer position Kafka has every record before. That is the larger of
    /// the marker committed in the last transaction (exact) and the position noted locally
    /// after it (which a crash between Kafka's commit and the note can leave behind; brokers
    /// that do not keep transactional offset commits, such as librdkafka's mock, have only it).
    fn recover(&self) -> EngineResult<u64> {
        let noted = self.buffer.0.noted(self.sink)?;
        if !self.exactly_once {
            return Ok(noted);
        }
        self.producer.init_transactions(TXN_TIMEOUT).map_err(kafka_err)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, 0);
        let committed = self.consumer.committed_offsets(tpl, TXN_TIMEOUT).map_err(kafka_err)?;
        let marker = committed.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => Some(o as u64),
            _ => None,
        });
        let marker = marker.unwrap_or(0).max(noted);
        tracing::info!(topic = %self.topic, marker, noted, "kafka sink recovered");
        Ok(marker)
    }

}

impl Committer for KafkaCommitter {
    fn target(&self) -> &str {
        &self.topic
    }

    /// Produces the buffered records `from..to` in one transaction with the marker `to`.
    fn commit(&self, from: u64, to: u64) -> EngineResult<usize> {
        let records = self.buffer.read(from, to)?;
        if self.exactly_once {
            self.producer.begin_transaction().map_err(kafka_err)?;
        }
        let result = self.produce(&records).and_then(|()| self.finish(to));
        if let Err(e) = result {
            if self.exactly_once {
                let _ = self.producer.abort_transaction(TXN_TIMEOUT);
            }
            return Err(e);
        }
        self.buffer.0.note_and_trim(self.sink, to)?;
        Ok(records.len())
    }
}

impl KafkaCommitter {
    fn produce(&self, records: &[SinkRecord]) -> EngineResult<()> {
        for r in records {
            let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic);
            if let Some(k) = &r.key {
                record = record.key(k.as_slice());
            }
            if let Some(v) = &r.value {
                record = record.payload(v.as_slice());
            }
            while let Err((e, back)) = self.producer.send(record) {
                if !matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)) {
                    return Err(kafka_err(e));
                }
                // librdkafka's queue is full: it drains as the broker acknowledges (this runs
                // on a blocking thread, not on an async worker).
                record = back;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }

    fn finish(&self, to: u64) -> EngineResult<()> {
        if !self.exactly_once {
            return self.producer.flush(TXN_TIMEOUT).map_err(kafka_err);
        }
        let mut marker = TopicPartitionList::new();
        marker.add_partition_offset(&self.topic, 0, Offset::Offset(to as i64)).map_err(kafka_err)?;
        let group = self.consumer.group_metadata().ok_or_else(|| EngineError::Internal("kafka sink has no group metadata".into()))?;
        self.producer.send_offsets_to_transaction(&marker, &group, TXN_TIMEOUT).map_err(kafka_err)?;
        self.producer.commit_transaction(TXN_TIMEOUT).map_err(kafka_err)
    }
}

fn kafka_err(e: rdkafka::error::KafkaError) -> EngineError {
    EngineError::External(format!("kafka: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_records_round_trip() {
        for r in [
            SinkRecord { key: Some(b"{\"a\":1}".to_vec()), value: None },
            SinkRecord { key: None, value: Some(b"{}".to_vec()) },
            SinkRecord { key: Some(vec![]), value: Some(b"x".to_vec()) },
        ] {
            assert_eq!(SinkRecord::decode(&r.encode()).unwrap(), r);
        }
        assert!(SinkRecord::decode(&[1, 9, 0, 0, 0, b'x']).is_err());
    }
}
