//! A Parquet sink: a dataflow's changelog written as Parquet files (zstd), exactly once, in a
//! Hive-style layout that DuckDB, pyarrow and Spark read as it is:
//! `<path>/date=YYYY-MM-DD/hour=HH/part-<from>-<to>.parquet` (`partition = 'hour'`, the
//! default; `'day'` leaves out `hour=`, `'none'` both). Each row has the sink's columns, then
//! `_diff` (+1 for a row that enters, -1 for one that leaves) and `_commit_time` (when the
//! sink received it, UTC), by which files are partitioned.
//!
//! Two-phase ([`crate::two_phase`]): the operator appends each chunk, as an Arrow IPC stream,
//! to its buffer (one value per chunk); once a checkpoint is durable the committer writes the
//! chunks up to its position as one file per partition (written aside, synced, renamed into
//! place, the directory synced), notes the position in `sink_commits`, and trims the buffer.
//! File names carry the buffer range, so after a crash the files past the noted position are
//! deleted and written again from the restored buffer: every row lands once.

mod compact;
mod files;
mod tier;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use openclaw_engine::{Barrier, EngineError, EngineResult, ObjectId, Operator, OperatorContext, StreamChunk};
use openclaw_storage::Store;

pub use files::{list_files, DataFile, Partitioning};
pub use tier::{cold_store, configure_cold_store, open_object_store, relative_path, sink_dir_name, waiting_bytes, ColdStore};
use crate::two_phase::{CommitQueue, Committer, SeqBuffer};
use crate::{ConnectorError, Options, PreparedSink, SinkConnector};

/// The columns every file adds after the sink's own.
pub const DIFF_COLUMN: &str = "_diff";
pub const COMMIT_TIME_COLUMN: &str = "_commit_time";

/// `CREATE SINK ... WITH (connector = 'parquet', path = '/dir', partition = 'hour')`.
pub struct ParquetSinkConnector;

impl SinkConnector for ParquetSinkConnector {
    fn name(&self) -> &'static str {
        "parquet"
    }

    fn prepare(&self, options: &Options) -> Result<Arc<dyn PreparedSink>, ConnectorError> {
        Ok(Arc::new(ParquetSinkOptions::parse(options)?))
    }
}

/// A Parquet sink's options, checked.
#[derive(Clone, Debug)]
pub struct ParquetSinkOptions {
    pub path: PathBuf,
    pub partitioning: Partitioning,
    /// Files older than this (by when they were written) are deleted; `None`: kept.
    pub retention_ms: Option<u64>,
    /// With a cold store (`--cold-store`), files older than this move there.
    pub hot_ms: u64,
    /// Most bytes of files that wait in the hot tier for the cold one (older than `hot_ms`,
    /// not moved yet, as while the store is down): past it commits wait, and the sink slows
    /// its dataflow down ([`MAX_UNCOMMITTED_CHUNKS`]) rather than fill the disk.
    pub hot_limit_bytes: u64,
}

const KNOWN: &[&str] = &["connector", "path", "partition", "retention", "hot", "hot_limit"];
/// How long files stay in the hot tier when `hot` is not given.
const DEFAULT_HOT_MS: u64 = 86_400_000;
/// `hot_limit` when not given.
pub const DEFAULT_HOT_LIMIT_BYTES: u64 = 10 << 30;
/// Chunks checkpointed but not yet committed that a sink lets pile up in its buffer before
/// it waits for its committer (the buffer is bounded while commits cannot go on).
pub const MAX_UNCOMMITTED_CHUNKS: u64 = 4096;
/// Buffered chunks read at once while a commit writes them out (sequence numbers are dense).
const COMMIT_PAGE_CHUNKS: u64 = 64;
/// How often, at most, a sink looks for files past their retention.
const RETENTION_SWEEP_MS: i64 = 10_000;

impl ParquetSinkOptions {
    pub fn parse(options: &Options) -> Result<Self, ConnectorError> {
        if let Some(key) = options.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(ConnectorError::new(format!("unknown option \"{key}\" for a parquet sink")).with_hint(format!("options are {}", KNOWN.join(", "))));
        }
        let path = options.get("path").ok_or_else(|| ConnectorError::new("a parquet sink needs a path").with_hint("add WITH (path = '/directory/for/the/files')"))?;
        let path = PathBuf::from(path.strip_prefix("file://").unwrap_or(path));
        if !path.is_absolute() {
            return Err(ConnectorError::new(format!("the parquet sink's path \"{}\" is not absolute", path.display())));
        }
        let partitioning = Partitioning::parse(options.get("partition").map(String::as_str))?;
        let age = |key: &str, example: &str| -> Result<Option<u64>, ConnectorError> {
            match options.get(key) {
                None => Ok(None),
                Some(text) => Ok(Some(crate::parse_duration_ms(text).filter(|ms| *ms >= 1_000).ok_or_else(|| {
                    ConnectorError::new(format!("invalid {key} \"{text}\"")).with_hint(format!("give a number and a unit (seconds, minutes, hours or days), at least 1 second, e.g. {key} = '{example}'"))
                })?)),
            }
        };
        let retention_ms = age("retention", "30 days")?;
        let hot_ms = age("hot", "1 day")?.unwrap_or(DEFAULT_HOT_MS);
        let hot_limit_bytes = match options.get("hot_limit") {
            None => DEFAULT_HOT_LIMIT_BYTES,
            Some(text) => crate::parse_bytes(text)
                .filter(|b| *b > 0)
                .ok_or_else(|| ConnectorError::new(format!("invalid hot_limit \"{text}\"")).with_hint("give a size, e.g. hot_limit = '10 GB'"))?,
        };
        std::fs::create_dir_all(&path).map_err(|e| ConnectorError::new(format!("cannot create the directory {}: {e}", path.display())))?;
        Ok(Self { path, partitioning, retention_ms, hot_ms, hot_limit_bytes })
    }
}

impl PreparedSink for ParquetSinkOptions {
    fn operator(&self, object: ObjectId, _name: &str, schema: &SchemaRef, store: Store, buffer_cf: &str) -> Result<Box<dyn Operator>, ConnectorError> {
        Ok(Box::new(ParquetSinkOperator::new(object, schema, self.clone(), store, buffer_cf)?))
    }
}

/// The schema of the files: the sink's columns, then `_diff` and `_commit_time`.
pub fn file_schema(schema: &SchemaRef) -> Result<SchemaRef, ConnectorError> {
    if let Some(clash) = schema.fields().iter().find(|f| [DIFF_COLUMN, COMMIT_TIME_COLUMN].contains(&f.name().as_str())) {
        return Err(ConnectorError::new(format!("column \"{}\" clashes with the column the parquet files add", clash.name())).with_hint("rename it in the query"));
    }
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(DIFF_COLUMN, DataType::Int64, false));
    fields.push(Field::new(COMMIT_TIME_COLUMN, DataType::Timestamp(TimeUnit::Millisecond, None), false));
    Ok(Arc::new(Schema::new(fields)))
}

/// The last operator of a Parquet sink's dataflow.
pub struct ParquetSinkOperator {
    object: ObjectId,
    options: ParquetSinkOptions,
    schema: SchemaRef,
    buffer: SeqBuffer,
    next_seq: u64,
    /// The buffer's end at the last checkpoint barrier.
    checkpointed: u64,
    commits: CommitQueue,
}

impl ParquetSinkOperator {
    pub fn new(object: ObjectId, schema: &SchemaRef, options: ParquetSinkOptions, store: Store, buffer_cf: &str) -> Result<Self, ConnectorError> {
        let schema = file_schema(schema)?;
        Ok(Self { object, options, schema, buffer: SeqBuffer { store, cf: Arc::from(buffer_cf) }, next_seq: 0, checkpointed: 0, commits: CommitQueue::default() })
    }
}

#[async_trait]
impl Operator for ParquetSinkOperator {
    fn name(&self) -> String {
        format!("ParquetSink({})", self.options.path.display())
    }

    async fn on_start(&mut self, ctx: &mut OperatorContext) -> EngineResult<()> {
        let committer = FileCommitter { options: self.options.clone(), schema: self.schema.clone(), buffer: self.buffer.clone(), sink: self.object, last_sweep_ms: Default::default() };
        let noted = self.buffer.noted(self.object)?;
        let recovering = committer.clone();
        tokio::task::spawn_blocking(move || recovering.recover(noted)).await.map_err(|e| EngineError::Internal(e.to_string()))??;
        // Values below the note are in files already; the rest of the restored buffer is
        // written again, first.
        self.buffer.trim(noted)?;
        self.next_seq = self.buffer.end()?.max(noted);
        self.checkpointed = self.next_seq;
        self.commits = CommitQueue::start(committer, self.object, noted, self.next_seq, ctx.coordinator.clone(), tracing::info_span!("parquet sink", path = %self.options.path.display()));
        Ok(())
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, _ctx: &mut OperatorContext) -> EngineResult<()> {
        if chunk.batch().num_rows() == 0 {
            return Ok(());
        }
        // Commits that cannot go on (the hot tier full while the cold store is down) slow the
        // dataflow here rather than grow the buffer without bound. Only checkpointed chunks
        // count, which commits can clear without another barrier.
        self.commits.wait_for_room(self.checkpointed, MAX_UNCOMMITTED_CHUNKS).await;
        let rows = chunk.batch().num_rows();
        let diffs: ArrayRef = Arc::new(Int64Array::from_iter_values(chunk.ops().iter().map(|op| op.sign())));
        let now_ms = chrono::Utc::now().timestamp_millis();
        let times: ArrayRef = Arc::new(TimestampMillisecondArray::from_value(now_ms, rows));
        let mut columns = chunk.batch().columns().to_vec();
        columns.extend([diffs, times]);
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| EngineError::Internal(format!("parquet sink batch: {e}")))?;
        self.buffer.append(&mut self.next_seq, [files::encode_chunk(&batch)?])
    }

    async fn handle_checkpoint(&mut self, barrier: &Barrier, _ctx: &mut OperatorContext) -> EngineResult<()> {
        self.commits.checkpoint(barrier, self.next_seq);
        if barrier.checkpoint {
            self.checkpointed = self.next_seq;
        }
        Ok(())
    }

    fn state_tables(&self) -> Vec<(Arc<str>, openclaw_storage::CfKind)> {
        vec![(self.buffer.cf.clone(), openclaw_storage::CfKind::Plain)]
    }

    async fn barrier_passed(&mut self, barrier: &Barrier, ctx: &mut OperatorContext) -> EngineResult<()> {
        ctx.coordinator.ack(self.object, barrier.epoch);
        Ok(())
    }
}

/// Writes buffered chunks as files once their checkpoint is durable.
#[derive(Clone)]
struct FileCommitter {
    options: ParquetSinkOptions,
    schema: SchemaRef,
    buffer: SeqBuffer,
    sink: ObjectId,
    /// When files past the retention were last looked for (ms since the epoch).
    last_sweep_ms: Arc<std::sync::atomic::AtomicI64>,
}

impl FileCommitter {
    /// Deletes what a crash left past the note: files of ranges from `noted` on (their rows
    /// are still in the restored buffer) and files half written.
    fn recover(&self, noted: u64) -> EngineResult<()> {
        let mut removed = 0;
        for file in list_files(&self.options.path).map_err(io_err)? {
            if file.from >= noted {
                file.remove().map_err(io_err)?;
                removed += 1;
            }
        }
        files::remove_partial(&self.options.path).map_err(io_err)?;
        let superseded = compact::remove_superseded(&self.options.path).map_err(io_err)?;
        tracing::info!(path = %self.options.path.display(), noted, removed, superseded, "parquet sink recovered");
        Ok(())
    }
}

impl FileCommitter {
    /// At most every [`RETENTION_SWEEP_MS`] (or half the retention or hot age, when shorter):
    /// deletes the files past the retention in both tiers, and moves the files past the hot
    /// age to the cold tier. A failure is logged and tried again at the next sweep; files that
    /// could not move wait in the hot tier.
    fn sweep(&self) {
        let cold = tier::cold_store();
        if self.options.retention_ms.is_none() && cold.is_none() {
            return;
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut every_ms = RETENTION_SWEEP_MS;
        for age in self.options.retention_ms.into_iter().chain(cold.map(|_| self.options.hot_ms)) {
            every_ms = every_ms.min(age as i64 / 2);
        }
        if now_ms - self.last_sweep_ms.load(std::sync::atomic::Ordering::Relaxed) < every_ms {
            return;
        }
        self.last_sweep_ms.store(now_ms, std::sync::atomic::Ordering::Relaxed);
        let path = self.options.path.display();
        if let Some(retention) = self.options.retention_ms.map(std::time::Duration::from_millis) {
            match files::remove_older_than(&self.options.path, retention) {
                Ok(0) => {}
                Ok(removed) => tracing::info!(%path, removed, "parquet files past their retention deleted"),
                Err(e) => tracing::warn!(%path, error = %e, "could not delete parquet files past their retention"),
            }
            if let Some(cold) = cold {
                match tier::expire_cold(cold, &self.options.path, retention) {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(%path, removed, "cold parquet files past their retention deleted"),
                    Err(e) => tracing::warn!(%path, error = %e, "could not delete cold parquet files past their retention"),
                }
            }
        }
        if let Some(cold) = cold {
            match tier::move_cold(cold, &self.options.path, std::time::Duration::from_millis(self.options.hot_ms)) {
                Ok(0) => {}
                Ok(moved) => tracing::info!(%path, moved, "parquet files moved to the cold tier"),
                Err(e) => tracing::warn!(%path, error = %e, "the cold tier cannot be reached; files wait in the hot tier"),
            }
        }
    }
}

impl FileCommitter {
    /// Fails (the commit is retried a second later) while the files waiting for the cold
    /// tier pass the hot tier's limit, after trying to move them.
    fn check_hot_limit(&self) -> EngineResult<()> {
        if tier::cold_store().is_none() {
            return Ok(());
        }
        let hot = std::time::Duration::from_millis(self.options.hot_ms);
        let waiting = tier::waiting_bytes(&self.options.path, hot).map_err(io_err)?;
        if waiting < self.options.hot_limit_bytes {
            return Ok(());
        }
        self.sweep();
        let waiting = tier::waiting_bytes(&self.options.path, hot).map_err(io_err)?;
        if waiting < self.options.hot_limit_bytes {
            return Ok(());
        }
        Err(EngineError::External(format!(
            "{waiting} bytes of files wait in the hot tier for the cold one, at least the limit of {}; commits wait until they move",
            self.options.hot_limit_bytes
        )))
    }
}

impl Committer for FileCommitter {
    fn commit(&self, from: u64, to: u64) -> EngineResult<usize> {
        self.check_hot_limit()?;
        // The range is read a page at a time while it is written: a commit of a long FLUSH
        // holds at most a page of chunks (and a row group per partition) in memory.
        let pages = (from..to).step_by(COMMIT_PAGE_CHUNKS as usize).map(|start| self.buffer.read(start, (start + COMMIT_PAGE_CHUNKS).min(to), files::decode_chunk));
        let chunks = pages.flat_map(|page| match page {
            Ok(chunks) => chunks.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        });
        let (_, rows) = files::write_files(&self.options.path, self.options.partitioning, &self.schema, chunks, from, to).map_err(io_err)?;
        self.buffer.note_and_trim(self.sink, to)?;
        // Committed first: a compaction that fails is logged and tried again after the next
        // commit, and never costs a commit.
        if let Err(e) = compact::compact(&self.options.path) {
            tracing::warn!(path = %self.options.path.display(), error = %e, "could not compact parquet files");
        }
        self.sweep();
        Ok(rows)
    }

    fn target(&self) -> &str {
        self.options.path.to_str().unwrap_or("(path)")
    }

    fn idle(&self) {
        self.sweep();
    }
}

fn io_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::External(format!("parquet sink: {e}"))
}
