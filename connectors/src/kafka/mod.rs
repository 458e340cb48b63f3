//! Kafka, through librdkafka (`rdkafka`): a source that assigns itself every partition of a
//! topic, decodes record values vectorized (JSON, CSV, Avro), adds Kafka metadata columns, sends
//! records that do not decode to the source's dead-letter table, and keeps its offsets in
//! OpenClaw's checkpoints.

mod avro;
mod decode;
mod encode;
mod reader;
pub mod registry;
mod sink;

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use openclaw_engine::source::SourceReader;
use rdkafka::config::ClientConfig;

pub use avro::AvroEncoding;
pub use decode::{Decoded, Encoding, ValueDecoder};
pub use encode::SinkEncoding;
pub use reader::KafkaReader;
pub use sink::{KafkaSinkConnector, KafkaSinkOperator, KafkaSinkOptions, SinkFormat, SINK_COMMITS_CF};

use crate::{Connector, ConnectorError, Options, ReaderContext};

/// How long `CREATE SOURCE` waits for the broker to describe the topic.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Kafka metadata a source can add as columns (`INCLUDE partition AS p`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meta {
    Partition,
    Offset,
    Key,
    Timestamp,
    Headers,
}

impl Meta {
    pub const ALL: [(&'static str, Meta); 5] = [
        ("partition", Meta::Partition),
        ("offset", Meta::Offset),
        ("key", Meta::Key),
        ("timestamp", Meta::Timestamp),
        ("headers", Meta::Headers),
    ];

    fn data_type(self) -> DataType {
        match self {
            Meta::Partition => DataType::Int32,
            Meta::Offset => DataType::Int64,
            Meta::Key => DataType::Binary,
            Meta::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
            // A JSON object of header name to value (as text).
            Meta::Headers => DataType::Utf8,
        }
    }
}

/// Where a reader starts in a partition that its checkpoint has no offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Startup {
    Earliest,
    Latest,
    /// The consumer group's committed offset (earliest when there is none).
    GroupOffsets,
    /// The first record at or after this time (milliseconds since the epoch).
    Timestamp(i64),
}

/// A source's options, checked.
#[derive(Clone)]
pub struct KafkaOptions {
    pub topic: String,
    /// librdkafka settings: every `properties.*` option, prefix removed.
    pub client: ClientConfig,
    pub startup: Startup,
    pub encoding: Encoding,
    /// Metadata columns, in the order they follow the declared columns.
    pub include: Vec<(Meta, String)>,
    /// A topic that dead letters are produced to as well (on the same brokers).
    pub dlq_topic: Option<String>,
    /// `FORMAT UPSERT`: the record key is the row's primary key (an `INCLUDE key` column), a
    /// record replaces the row of its key, and a tombstone deletes it. Tables only.
    pub upsert: bool,
}

/// Options this connector knows besides `properties.*` and `include.*`.
const KNOWN: &[&str] = &[
    "connector", "topic", "scan.startup.mode", "scan.startup.timestamp.millis", "format", "encode",
    "encode.delimiter", "encode.without_header", "encode.schema", "encode.schema.registry", "dlq.topic",
    "encode.message", "encode.schema.location", "encode.descriptor",
];

impl KafkaOptions {
    pub fn parse(options: &Options) -> Result<Self, ConnectorError> {
        for key in options.keys() {
            let ok = KNOWN.contains(&key.as_str()) || key.starts_with("properties.") || key.starts_with("include.");
            if !ok {
                return Err(ConnectorError::new(format!("unknown option \"{key}\" for connector \"kafka\""))
                    .with_hint(format!("options are {}, and properties.* passed to librdkafka", KNOWN.join(", "))));
            }
        }
        let topic = options.get("topic").cloned().ok_or_else(|| {
            ConnectorError::new("a kafka source needs a topic").with_hint("add WITH (topic = '...')")
        })?;
        let mut client = ClientConfig::new();
        for (key, value) in options.iter().filter_map(|(k, v)| Some((k.strip_prefix("properties.")?, v))) {
            // RisingWave's spelling of the broker list.
            let key = if key == "bootstrap.server" { "bootstrap.servers" } else { key };
            client.set(key, value);
        }
        if client.get("bootstrap.servers").is_none() {
            return Err(ConnectorError::new("a kafka source needs a broker list")
                .with_hint("add 'properties.bootstrap.server' = 'host:9092'"));
        }
        let dlq_topic = options.get("dlq.topic").cloned();
        let include = include(options)?;
        let upsert = upsert(options, &include)?;
        Ok(Self { topic, client, startup: startup(options)?, encoding: encoding(options)?, include, dlq_topic, upsert })
    }

    /// The declared columns followed by the metadata columns.
    /// Without declared columns, an Avro source takes its schema's fields.
    pub fn schema(&self, declared: &SchemaRef) -> Result<SchemaRef, ConnectorError> {
        let declared = match (&self.encoding, declared.fields().is_empty()) {
            (Encoding::Avro(avro), true) => avro.columns()?,
            (_, true) => {
                return Err(ConnectorError::new("a kafka source needs a column list")
                    .with_hint("declare the columns of the records, e.g. CREATE SOURCE s (auction BIGINT, price BIGINT) WITH (...)"))
            }
            (_, false) => declared.clone(),
        };
        let mut fields: Vec<Field> = declared.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (meta, name) in &self.include {
            if declared.field_with_name(name).is_ok() {
                return Err(ConnectorError::new(format!("column \"{name}\" is declared and also included as Kafka metadata"))
                    .with_hint("name the metadata column with INCLUDE ... AS another_name"));
            }
            fields.push(Field::new(name, meta.data_type(), true));
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    /// The partitions of the topic, asking the broker (blocks up to [`METADATA_TIMEOUT`]).
    pub fn partitions(&self) -> Result<Vec<i32>, ConnectorError> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = self
            .client
            .create()
            .map_err(|e| ConnectorError::new(format!("invalid kafka properties: {e}")))?;
        let metadata = consumer.fetch_metadata(Some(&self.topic), METADATA_TIMEOUT).map_err(|e| {
            ConnectorError::new(format!("could not reach the kafka brokers: {e}"))
                .with_hint(format!("check 'properties.bootstrap.server' ({})", self.client.get("bootstrap.servers").unwrap_or("")))
        })?;
        let topic = metadata.topics().iter().find(|t| t.name() == self.topic);
        match topic {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                Ok(t.partitions().iter().map(|p| p.id()).collect())
            }
            _ => Err(ConnectorError::new(format!("kafka topic \"{}\" does not exist", self.topic))
                .with_hint("create the topic first (kafka-topics.sh --create, rpk topic create)")),
        }
    }
}

fn startup(options: &Options) -> Result<Startup, ConnectorError> {
    let mode = options.get("scan.startup.mode").map(|m| m.to_ascii_lowercase());
    match mode.as_deref() {
        None | Some("earliest") => Ok(Startup::Earliest),
        Some("latest") => Ok(Startup::Latest),
        Some("group-offsets") => Ok(Startup::GroupOffsets),
        Some("timestamp") => {
            let ms = crate::parse_opt::<i64>(options, "scan.startup.timestamp.millis")?.ok_or_else(|| {
                ConnectorError::new("scan.startup.mode 'timestamp' needs 'scan.startup.timestamp.millis'")
            })?;
            Ok(Startup::Timestamp(ms))
        }
        Some(other) => Err(ConnectorError::new(format!("invalid value for option \"scan.startup.mode\": \"{other}\""))
            .with_hint("use 'earliest', 'latest', 'group-offsets' or 'timestamp'")),
    }
}

/// `FORMAT PLAIN` (the default) or `FORMAT UPSERT`, which needs the key as a column.
fn upsert(options: &Options, include: &[(Meta, String)]) -> Result<bool, ConnectorError> {
    match options.get("format").map(|f| f.to_ascii_lowercase()).as_deref() {
        None | Some("plain") => Ok(false),
        Some("upsert") if include.iter().any(|(m, _)| *m == Meta::Key) => Ok(true),
        Some("upsert") => Err(ConnectorError::new("FORMAT UPSERT needs the record key as a column")
            .with_hint("add INCLUDE key AS k, and make k the table's PRIMARY KEY")),
        Some(other) => Err(ConnectorError::new(format!("FORMAT {} is not supported for kafka sources", other.to_uppercase()))
            .with_hint("use FORMAT PLAIN, or FORMAT UPSERT for a table keyed by the record key")),
    }
}

/// The name of the `INCLUDE key` column of a `FORMAT UPSERT` source, which must be the
/// table's primary key; `None` for other sources.
pub fn upsert_key_column(options: &Options) -> Result<Option<String>, ConnectorError> {
    let include = include(options)?;
    if !upsert(options, &include)? {
        return Ok(None);
    }
    Ok(include.into_iter().find(|(m, _)| *m == Meta::Key).map(|(_, name)| name))
}

fn encoding(options: &Options) -> Result<Encoding, ConnectorError> {
    match options.get("encode").map(|e| e.to_ascii_lowercase()).as_deref() {
        None | Some("json") => Ok(Encoding::Json),
        Some("csv") => {
            let delimiter = match options.get("encode.delimiter").map(|d| d.as_bytes()) {
                None => b',',
                Some([d]) => *d,
                Some(_) => return Err(ConnectorError::new("the CSV delimiter must be one byte")),
            };
            if options.get("encode.without_header").is_some_and(|v| v.eq_ignore_ascii_case("false")) {
                return Err(ConnectorError::new("kafka CSV records have no header line")
                    .with_hint("each record is one line; drop without_header"));
            }
            Ok(Encoding::Csv { delimiter })
        }
        Some("avro") => {
            let registry = options.get("encode.schema.registry").cloned();
            let schema = options.get("encode.schema").cloned().ok_or_else(|| {
                ConnectorError::new("ENCODE AVRO needs a schema")
                    .with_hint("give ENCODE AVRO (schema.registry = 'http://host:8081') or ENCODE AVRO (schema = '<Avro schema JSON>')")
            })?;
            Ok(Encoding::Avro(AvroEncoding { schema, registry }))
        }
        Some("protobuf") => {
            let message = options.get("encode.message").ok_or_else(|| {
                ConnectorError::new("ENCODE PROTOBUF needs a message").with_hint("ENCODE PROTOBUF (message = 'pkg.Msg', schema.location = 'file:///path/to/set.desc')")
            })?;
            let descriptor_set = match options.get("encode.descriptor") {
                Some(stored) => {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD.decode(stored).map_err(|e| ConnectorError::new(format!("the stored descriptor set is corrupt: {e}")))?
                }
                None => descriptor_set(options)?,
            };
            let message = crate::protobuf::ProtobufMessage::from_descriptor_set(&descriptor_set, message)?;
            let confluent_indexes = options.contains_key("encode.schema.registry").then(|| message.message_indexes());
            Ok(Encoding::Protobuf(decode::ProtobufEncoding { message, confluent_indexes }))
        }
        Some(other) => Err(ConnectorError::new(format!("ENCODE {} is not supported", other.to_uppercase()))
            .with_hint("use ENCODE JSON, CSV, AVRO or PROTOBUF")),
    }
}

/// The descriptor set of `ENCODE PROTOBUF`: compiled from the topic's latest value schema
/// with `schema.registry`, else read from `schema.location`.
fn descriptor_set(options: &Options) -> Result<Vec<u8>, ConnectorError> {
    match options.get("encode.schema.registry") {
        Some(base) => registry_descriptor_set(base, options),
        None => read_descriptor_set(options),
    }
}

/// Most schemas one Protobuf schema may reference, directly or not.
const MAX_SCHEMA_REFERENCES: usize = crate::protobuf::MAX_PROTO_FILES - 1;

/// Compiles the latest schema of subject `<topic>-value` (a Protobuf schema) with every
/// schema it references (each by the import name the reference gives).
fn registry_descriptor_set(base: &str, options: &Options) -> Result<Vec<u8>, ConnectorError> {
    let topic = options.get("topic").ok_or_else(|| ConnectorError::new("a kafka source needs a topic").with_hint("add WITH (topic = '...')"))?;
    let client = registry::RegistryClient::new(base)?;
    let subject = format!("{topic}-value");
    let root = registry::block_on(client.version(&subject, None)).map_err(|e| e.into_connector_error(base))?;
    if root.schema_type != "PROTOBUF" {
        return Err(ConnectorError::new(format!("subject \"{subject}\" holds a {} schema, not a Protobuf one", root.schema_type))
            .with_hint(format!("use ENCODE {} for this topic", root.schema_type)));
    }
    let root_name = format!("{subject}.proto");
    let mut files = std::collections::BTreeMap::from([(root_name.clone(), root.schema)]);
    let mut pending = root.references;
    while let Some(reference) = pending.pop() {
        if files.contains_key(&reference.name) {
            continue;
        }
        if files.len() > MAX_SCHEMA_REFERENCES {
            return Err(ConnectorError::new(format!("subject \"{subject}\" references more than {MAX_SCHEMA_REFERENCES} schemas")));
        }
        let found = registry::block_on(client.version(&reference.subject, Some(reference.version))).map_err(|e| e.into_connector_error(base))?;
        files.insert(reference.name, found.schema);
        pending.extend(found.references);
    }
    crate::protobuf::compile_sources(&root_name, files)
}

/// The descriptor set `schema.location` names (`file:///path` or a path), as `protoc
/// --descriptor_set_out --include_imports` writes it.
fn read_descriptor_set(options: &Options) -> Result<Vec<u8>, ConnectorError> {
    let location = options.get("encode.schema.location").ok_or_else(|| {
        ConnectorError::new("ENCODE PROTOBUF needs a descriptor set or a schema registry")
            .with_hint("ENCODE PROTOBUF (message = 'pkg.Msg', schema.location = 'file:///path/to/set.desc') or (message = 'pkg.Msg', schema.registry = 'http://host:8081')")
    })?;
    let path = location.strip_prefix("file://").unwrap_or(location);
    let bytes = std::fs::read(path).map_err(|e| ConnectorError::new(format!("cannot read the descriptor set {location}: {e}")))?;
    if bytes.len() > crate::protobuf::MAX_DESCRIPTOR_SET_BYTES {
        return Err(ConnectorError::new(format!("a descriptor set has at most {} MiB", crate::protobuf::MAX_DESCRIPTOR_SET_BYTES >> 20)));
    }
    Ok(bytes)
}

fn include(options: &Options) -> Result<Vec<(Meta, String)>, ConnectorError> {
    // Sorted by the position the parser recorded (`include.<n>.<what>`), i.e. as written.
    let mut out = vec![];
    for (key, column) in options.iter().filter_map(|(k, v)| Some((k.strip_prefix("include.")?, v))) {
        let (n, what) = key.split_once('.').unwrap_or(("0", key));
        let meta = Meta::ALL.iter().find(|(w, _)| *w == what).map(|(_, m)| *m).ok_or_else(|| {
            ConnectorError::new(format!("INCLUDE {what} is not available for kafka"))
                .with_hint("kafka sources can INCLUDE partition, offset, key, timestamp and headers")
        })?;
        let n: usize = n.parse().map_err(|_| ConnectorError::new(format!("invalid option \"include.{key}\"")))?;
        out.push((n, meta, column.clone()));
    }
    out.sort_by_key(|(n, ..)| *n);
    Ok(out.into_iter().map(|(_, m, c)| (m, c)).collect())
}

pub struct KafkaConnector;

impl Connector for KafkaConnector {
    fn name(&self) -> &'static str {
        "kafka"
    }

    /// With a schema registry and no inline schema, fixes the topic's latest value schema
    /// (subject `<topic>-value`) as the reader's schema: it gives the columns, and a restart
    /// must not pick a newer one.
    fn resolve(&self, options: &mut Options) -> Result<(), ConnectorError> {
        // A Protobuf descriptor set is kept with the statement: a restart does not need the
        // file or the registry, and a changed file or a newer schema does not change the source.
        let is_protobuf = options.get("encode").is_some_and(|e| e.eq_ignore_ascii_case("protobuf"));
        if is_protobuf && !options.contains_key("encode.descriptor") {
            use base64::Engine;
            let stored = base64::engine::general_purpose::STANDARD.encode(descriptor_set(options)?);
            options.insert("encode.descriptor".into(), stored);
        }
        let is_avro = options.get("encode").is_some_and(|e| e.eq_ignore_ascii_case("avro"));
        let (Some(base), None, true) = (options.get("encode.schema.registry"), options.get("encode.schema"), is_avro) else {
            return Ok(());
        };
        let topic = options.get("topic").ok_or_else(|| ConnectorError::new("a kafka source needs a topic").with_hint("add WITH (topic = '...')"))?;
        let client = registry::RegistryClient::new(base)?;
        let subject = format!("{topic}-value");
        let (_, schema) = registry::block_on(client.latest(&subject)).map_err(|e| e.into_connector_error(base))?;
        options.insert("encode.schema".into(), schema);
        Ok(())
    }

    fn validate(&self, declared: &SchemaRef, options: &Options) -> Result<SchemaRef, ConnectorError> {
        let parsed = KafkaOptions::parse(options)?;
        let schema = parsed.schema(declared)?;
        parsed.partitions()?;
        Ok(schema)
    }

    fn has_dead_letters(&self) -> bool {
        true
    }

    fn reader(&self, schema: &SchemaRef, options: &Options, context: ReaderContext) -> Result<Box<dyn SourceReader>, ConnectorError> {
        let parsed = KafkaOptions::parse(options)?;
        Ok(Box::new(KafkaReader::new(schema.clone(), parsed, context)?))
    }
}
