//! OpenClaw's connectors. Each lives in its own folder and implements [`Connector`]; the
//! engine only sees the [`SourceReader`]s they build.

use std::collections::BTreeMap;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use openclaw_engine::dead_letters::DeadLetterTable;
use openclaw_engine::source::{SourceProgress, SourceReader};

pub mod blackhole;
pub mod datagen;
pub mod file;
pub mod kafka;
pub mod nexmark;
pub mod parquet;
pub mod protobuf;
pub mod two_phase;
pub mod webhook;

/// `WITH (...)` options of a source, keys lowercased.
pub type Options = BTreeMap<String, String>;

/// Options fixed at `CREATE` and stored with the statement, so that a restart does not choose
/// them again: a Nexmark source's base time, a Kafka source's Avro schema (from the registry).
pub const RESOLVED_OPTIONS: &[&str] = &["nexmark.base.time", "encode.schema", "encode.descriptor", file::FILE_LIST_OPTION];

/// A mistake in a source's definition: the user's fault, reported with SQLSTATE 22023/42601.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorError {
    pub message: String,
    pub hint: Option<String>,
}

impl ConnectorError {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A kind of source, named by `connector = '...'`.
pub trait Connector: Send + Sync {
    fn name(&self) -> &'static str;

    /// Checks the options and the declared columns, and returns the source's schema (the
    /// declared columns, or the connector's own when none were declared).
    fn validate(&self, declared: &SchemaRef, options: &Options) -> Result<SchemaRef, ConnectorError>;

    /// Fixes at `CREATE` what a restart must not choose again (a Kafka source's Avro schema
    /// from the registry), by adding options; the catalog stores the added ones with the
    /// statement. A restart passes them in again, so this must leave present ones alone.
    fn resolve(&self, _options: &mut Options) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// Whether its sources keep records that do not decode in a dead-letter table
    /// (`<source>_dlq`), created with the source.
    fn has_dead_letters(&self) -> bool {
        false
    }

    /// The columns of `schema` (as `validate` returned it) that no two of the source's records
    /// share, when the connector guarantees it (a Nexmark auction's `id`). The planner takes it
    /// as a primary key: a view grouped or partitioned by it can free state by a column it
    /// determines (an auction's `expires`).
    fn unique_key(&self, _schema: &SchemaRef, _options: &Options) -> Option<Vec<usize>> {
        None
    }

    /// For a connector whose records are sent to OpenClaw over HTTP rather than read (a
    /// webhook): what checks each request before its rows are written. `None` (the default):
    /// the connector reads, through [`Connector::reader`].
    fn receiver(&self, _schema: &SchemaRef, _options: &Options) -> Result<Option<Arc<dyn Receiver>>, ConnectorError> {
        Ok(None)
    }

    /// A new reader of the whole stream, from its beginning.
    fn reader(&self, schema: &SchemaRef, options: &Options, context: ReaderContext) -> Result<Box<dyn SourceReader>, ConnectorError>;
}

/// What a reader is given besides its options.
pub struct ReaderContext {
    /// The source's name, for logs and default client ids.
    pub source: String,
    /// Counters shown by `SHOW SOURCES`.
    pub progress: Arc<SourceProgress>,
    /// Where records that do not decode go, for connectors that have one.
    pub dead_letters: Option<Arc<DeadLetterTable>>,
}

/// The checks of a table fed by requests sent to it (`POST /v1/webhook/<table>`).
pub trait Receiver: Send + Sync {
    /// Whether a request with these headers (`header` takes a lowercased name) and this body,
    /// exactly as received, may write. An error refuses it (401) before anything is decoded.
    fn authenticate(&self, header: &dyn Fn(&str) -> Option<Vec<u8>>, body: &[u8]) -> Result<(), ConnectorError>;

    /// The (lowercased) header that names a delivery: a second request with the same value
    /// writes nothing again and gets the first answer.
    fn idempotency_header(&self) -> Option<&str>;

    /// Whether the whole body is one row of the table's only column, rather than records
    /// whose fields are columns.
    fn body_is_text(&self) -> bool;
}

/// The connector named `name`.
pub fn connector(name: &str) -> Option<&'static dyn Connector> {
    match name.to_ascii_lowercase().as_str() {
        "nexmark" => Some(&nexmark::NexmarkConnector),
        "datagen" => Some(&datagen::DatagenConnector),
        "kafka" => Some(&kafka::KafkaConnector),
        "webhook" => Some(&webhook::WebhookConnector),
        "file" => Some(&file::FileConnector),
        _ => None,
    }
}

/// A kind of sink, named by `CREATE SINK ... WITH (connector = '...')`.
pub trait SinkConnector: Send + Sync {
    fn name(&self) -> &'static str;

    /// Checks the options, and whatever they point to (a broker, a registry): it may block,
    /// so the caller runs it off the async workers. A mistake is the user's, reported at
    /// `CREATE SINK`.
    fn prepare(&self, options: &Options) -> Result<Arc<dyn PreparedSink>, ConnectorError>;
}

/// A sink whose options were checked: it builds the operator a dataflow ends in.
pub trait PreparedSink: Send + Sync {
    /// The sink's operator for object `object`. `buffer_cf` is a column family of the
    /// sink's own (rows by sequence number), for a sink that must hold records until their
    /// checkpoint is durable; a sink that holds nothing ignores it.
    fn operator(
        &self,
        object: openclaw_engine::ObjectId,
        name: &str,
        schema: &SchemaRef,
        store: openclaw_storage::Store,
        buffer_cf: &str,
    ) -> Result<Box<dyn openclaw_engine::Operator>, ConnectorError>;
}

/// The sink connector named `name`.
pub fn sink_connector(name: &str) -> Option<&'static dyn SinkConnector> {
    match name.to_ascii_lowercase().as_str() {
        "kafka" => Some(&kafka::KafkaSinkConnector),
        "parquet" => Some(&parquet::ParquetSinkConnector),
        "blackhole" => Some(&blackhole::BlackholeConnector),
        _ => None,
    }
}

/// Names of every sink connector, for hints.
pub const SINK_CONNECTORS: &[&str] = &["kafka", "parquet", "blackhole"];

/// Names of every connector, for hints.
pub const CONNECTORS: &[&str] = &["kafka", "nexmark", "datagen", "webhook", "file"];

/// `'1 day'`, `'12 hours'`, `'30 min'`, `'90s'`: a number and a unit (seconds, minutes,
/// hours or days), in milliseconds; `None` for anything else.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim().to_ascii_lowercase());
    let ms_per_unit = match unit.as_str() {
        "s" | "sec" | "second" | "seconds" => 1_000,
        "min" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(ms_per_unit)
}

/// `'10 GB'`, `'500 MB'`, `'64 kB'`, `'1024'`: a size in bytes (units of 1024), or `None`.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim().to_ascii_lowercase());
    let per_unit: u64 = match unit.as_str() {
        "" | "b" | "bytes" => 1,
        "kb" | "kib" => 1 << 10,
        "mb" | "mib" => 1 << 20,
        "gb" | "gib" => 1 << 30,
        "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(per_unit)
}

/// Longest a rate-limited reader waits inside one `next_chunk`, so that barriers pass promptly.
pub(crate) const MAX_PACING_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Waits, at most [`MAX_PACING_WAIT`], until `due` after `started`; true once it is due.
/// Pacing a rate-limited source is the point of this wait.
pub(crate) async fn pace(started: std::time::Instant, due: std::time::Duration) -> bool {
    let elapsed = started.elapsed();
    if due <= elapsed {
        return true;
    }
    let wait = (due - elapsed).min(MAX_PACING_WAIT);
    tokio::time::sleep(wait).await;
    started.elapsed() >= due
}

pub(crate) fn parse_opt<T: std::str::FromStr>(options: &Options, key: &str) -> Result<Option<T>, ConnectorError> {
    match options.get(key) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ConnectorError::new(format!("invalid value for option \"{key}\": \"{v}\""))),
    }
}

/// Casts generated columns to the declared types and orders them as declared.
pub(crate) fn conform(
    declared: &SchemaRef,
    mut columns: impl FnMut(&str) -> Option<datafusion::arrow::array::ArrayRef>,
) -> openclaw_engine::EngineResult<datafusion::arrow::array::RecordBatch> {
    use datafusion::arrow::compute::cast;
    let cols = declared
        .fields()
        .iter()
        .map(|f| {
            let col = columns(f.name()).ok_or_else(|| {
                openclaw_engine::EngineError::Internal(format!("no generated column \"{}\"", f.name()))
            })?;
            Ok(cast(&col, f.data_type())?)
        })
        .collect::<openclaw_engine::EngineResult<Vec<_>>>()?;
    Ok(datafusion::arrow::array::RecordBatch::try_new(declared.clone(), cols)?)
}
