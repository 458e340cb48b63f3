//! Reads a file source's files, in order, on a thread of its own that sends chunks ahead
//! through a bounded channel; the reader hands them out and keeps the position of the last.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ProjectionMask;
use openclaw_engine::dead_letters::{DeadLetter, DeadLetterTable};
use openclaw_engine::source::{Position, SourceProgress, SourceReader};
use openclaw_engine::{EngineError, EngineResult, StreamChunk};
use tokio::sync::mpsc;

use super::{FileOptions, Format};
use crate::kafka::{Encoding, ValueDecoder};
use crate::{ConnectorError, ReaderContext};

/// Chunks read ahead of the dataflow, at most.
pub(crate) const READ_AHEAD_CHUNKS: usize = 4;
/// Bytes of a CSV or JSON file read at once (a line longer than this is read whole).
const BLOCK_BYTES: usize = 8 << 20;
/// Longest line of a CSV or JSON file: a longer one is a dead letter, without its payload.
const MAX_LINE_BYTES: usize = 16 << 20;
/// How long `next_chunk` waits for the reading thread before it returns an empty chunk.
const WAIT_MS: u64 = 100;

/// What the reading thread sends.
enum Sent {
    /// Rows of file `file`, after which `row` of its rows have been read; and the lines of
    /// them that did not decode.
    Chunk { file: u64, row: u64, batch: RecordBatch, bad: Vec<DeadLetter>, bytes: u64 },
    /// Every file has been read.
    End,
}

pub(crate) struct FileReader {
    schema: SchemaRef,
    options: FileOptions,
    /// The file being read and its rows already returned.
    file: u64,
    row: u64,
    chunks: Option<mpsc::Receiver<Sent>>,
    done: bool,
    dead_letters: Option<Arc<DeadLetterTable>>,
    progress: Arc<SourceProgress>,
    source: String,
}

impl FileReader {
    pub(crate) fn new(schema: SchemaRef, options: FileOptions, context: ReaderContext) -> Result<Self, ConnectorError> {
        Ok(Self { schema, options, file: 0, row: 0, chunks: None, done: false, dead_letters: context.dead_letters, progress: context.progress, source: context.source })
    }

    /// Starts the reading thread at the current position.
    fn start(&mut self, max_rows: usize) -> EngineResult<()> {
        let (tx, rx) = mpsc::channel(READ_AHEAD_CHUNKS);
        let reading = Reading { schema: self.schema.clone(), format: self.options.format, files: self.options.files.clone(), max_rows: max_rows.max(1), tx };
        let (file, row) = (self.file, self.row);
        std::thread::Builder::new()
            .name(format!("file-source-{}", self.source))
            .spawn(move || reading.run(file, row))
            .map_err(|e| EngineError::Internal(format!("cannot start the file reader: {e}")))?;
        self.chunks = Some(rx);
        Ok(())
    }
}

#[async_trait]
impl SourceReader for FileReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    async fn next_chunk(&mut self, max_rows: usize) -> EngineResult<Option<StreamChunk>> {
        if self.done {
            return Ok(None);
        }
        if self.chunks.is_none() {
            self.start(max_rows)?;
        }
        let chunks = self.chunks.as_mut().expect("started");
        let received = match tokio::time::timeout(std::time::Duration::from_millis(WAIT_MS), chunks.recv()).await {
            Err(_) => return Ok(Some(StreamChunk::inserts(RecordBatch::new_empty(self.schema.clone())))),
            Ok(received) => received,
        };
        match received {
            Some(Sent::Chunk { file, row, batch, bad, bytes }) => {
                // The dead letters are stored before the position passes their lines.
                if !bad.is_empty() {
                    if let Some(table) = &self.dead_letters {
                        table.write(&bad)?;
                    }
                    self.progress.dead_letters.fetch_add(bad.len() as u64, Ordering::Relaxed);
                    tracing::debug!(source = %self.source, count = bad.len(), "file records sent to the dead-letter table");
                }
                debug_assert!((file, row) >= (self.file, self.row), "the position goes forward");
                (self.file, self.row) = (file, row);
                self.progress.bytes.fetch_add(bytes, Ordering::Relaxed);
                Ok(Some(StreamChunk::inserts(batch)))
            }
            Some(Sent::End) => {
                self.done = true;
                (self.file, self.row) = (self.options.files.len() as u64, 0);
                Ok(None)
            }
            None => Err(EngineError::Internal("the file reader's thread stopped".into())),
        }
    }

    fn is_append_only(&self) -> bool {
        true
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn position(&self) -> Option<Position> {
        Some(Position::from([("file".to_string(), self.file), ("row".to_string(), self.row)]))
    }

    fn seek(&mut self, position: Position) -> EngineResult<()> {
        if self.chunks.is_some() {
            return Err(EngineError::Internal("a file source seeks before its first read".into()));
        }
        self.file = position.get("file").copied().unwrap_or(0);
        self.row = position.get("row").copied().unwrap_or(0);
        self.done = self.file >= self.options.files.len() as u64;
        Ok(())
    }
}

/// The reading thread's side.
struct Reading {
    schema: SchemaRef,
    format: Format,
    files: Arc<Vec<PathBuf>>,
    max_rows: usize,
    tx: mpsc::Sender<Sent>,
}

/// The reader went away: stop reading.
struct Stopped;

impl Reading {
    fn run(self, first: u64, skip: u64) {
        for (index, path) in self.files.iter().enumerate().skip(first as usize) {
            let skip = if index as u64 == first { skip } else { 0 };
            let read = match self.format {
                Format::Parquet => self.read_parquet(index as u64, path, skip),
                Format::Csv { .. } | Format::Json => self.read_lines(index as u64, path, skip),
            };
            match read {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    // The file (from here on) cannot be read: one dead letter for it.
                    tracing::warn!(file = %path.display(), %error, "a file of a file source cannot be read; it goes to the dead-letter table");
                    let letter = DeadLetter { partition: index as i32, offset: -1, timestamp_ms: None, error: format!("{}: {error}", path.display()), payload: None };
                    let empty = RecordBatch::new_empty(self.schema.clone());
                    if self.send(Sent::Chunk { file: index as u64, row: u64::MAX, batch: empty, bad: vec![letter], bytes: 0 }).is_err() {
                        return;
                    }
                }
                Err(Stopped) => return,
            }
        }
        let _ = self.send(Sent::End);
    }

    fn send(&self, read: Sent) -> Result<(), Stopped> {
        self.tx.blocking_send(read).map_err(|_| Stopped)
    }

    /// Sends the rows of a Parquet file after its first `skip`, in chunks of `max_rows`.
    /// `Ok(Err(_))`: the file cannot be read (from the chunk sent last on).
    fn read_parquet(&self, file: u64, path: &Path, skip: u64) -> Result<Result<(), String>, Stopped> {
        let opened = File::open(path).map_err(|e| e.to_string()).and_then(|f| ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| e.to_string()));
        let builder = match opened {
            Ok(builder) => builder,
            Err(e) => return Ok(Err(e)),
        };
        let file_schema = builder.schema().clone();
        let mut columns = vec![];
        for field in self.schema.fields() {
            match find_column(&file_schema, field.name()) {
                Some(i) => columns.push(i),
                None => return Ok(Err(format!("it has no column \"{}\"", field.name()))),
            }
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), columns.iter().copied());
        let reader = match builder.with_projection(mask).with_batch_size(self.max_rows).with_offset(skip as usize).build() {
            Ok(reader) => reader,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let mut row = skip;
        for batch in reader {
            let batch = match batch.map_err(|e| e.to_string()).and_then(|b| self.conform(&b)) {
                Ok(batch) => batch,
                Err(e) => return Ok(Err(format!("after row {row}: {e}"))),
            };
            row += batch.num_rows() as u64;
            let bytes = batch.get_array_memory_size() as u64;
            self.send(Sent::Chunk { file, row, batch, bad: vec![], bytes })?;
        }
        Ok(Ok(()))
    }

    /// `batch` (a Parquet file's projected columns, in the file's order) as the source's
    /// columns, in order, cast to their declared types.
    fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch, String> {
        let columns: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .map(|field| {
                let i = find_column(batch.schema_ref(), field.name()).ok_or_else(|| format!("no column \"{}\"", field.name()))?;
                cast(batch.column(i), field.data_type()).map_err(|e| format!("column \"{}\": {e}", field.name()))
            })
            .collect::<Result<_, _>>()?;
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())
    }

    /// Sends the records (lines) of a CSV or JSON file after its first `skip`, decoded
    /// `max_rows` lines at a time; lines that do not decode go as dead letters (offset: the
    /// line's number in the file, from 1).
    fn read_lines(&self, file: u64, path: &Path, skip: u64) -> Result<Result<(), String>, Stopped> {
        let encoding = match self.format {
            Format::Csv { delimiter, .. } => Encoding::Csv { delimiter },
            _ => Encoding::Json,
        };
        let header = matches!(self.format, Format::Csv { header: true, .. }) as u64;
        let decoder = match ValueDecoder::new(self.schema.clone(), encoding) {
            Ok(decoder) => decoder,
            Err(e) => return Ok(Err(e.message)),
        };
        let mut reader = match File::open(path) {
            Ok(f) => f,
            Err(e) => return Ok(Err(e.to_string())),
        };
        // Lines read so far (the header included), and the unread bytes.
        let mut line = 0u64;
        let mut buffer: Vec<u8> = Vec::with_capacity(BLOCK_BYTES);
        let mut eof = false;
        while !eof {
            let start = buffer.len();
            buffer.resize(start + BLOCK_BYTES, 0);
            let n = match read_full(&mut reader, &mut buffer[start..]) {
                Ok(n) => n,
                Err(e) => return Ok(Err(format!("after line {line}: {e}"))),
            };
            buffer.truncate(start + n);
            eof = n == 0;
            // Whole lines only, unless the file ends (its last line may lack a newline).
            let complete = match eof {
                true => buffer.len(),
                false => match memchr::memrchr(b'\n', &buffer) {
                    Some(at) => at + 1,
                    None if buffer.len() > MAX_LINE_BYTES => buffer.len(),
                    None => continue,
                },
            };
            let mut lines: Vec<(u64, &[u8])> = vec![];
            for text in buffer[..complete].split_inclusive(|b| *b == b'\n') {
                line += 1;
                if line <= header + skip || text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                lines.push((line, text));
            }
            for group in lines.chunks(self.max_rows) {
                let records: Vec<&[u8]> = group.iter().map(|(_, text)| *text).collect();
                let decoded = decoder.decode(&records);
                let bad = decoded
                    .bad
                    .into_iter()
                    .map(|(i, error)| {
                        let (number, text) = group[i];
                        let text = text.strip_suffix(b"\n").map(|t| t.strip_suffix(b"\r").unwrap_or(t)).unwrap_or(text);
                        let payload = (text.len() <= MAX_LINE_BYTES).then(|| text.to_vec());
                        DeadLetter { partition: file as i32, offset: number as i64, timestamp_ms: None, error, payload }
                    })
                    .collect();
                let (last, _) = group.last().expect("a group has lines");
                let bytes = records.iter().map(|r| r.len() as u64).sum();
                self.send(Sent::Chunk { file, row: last - header, batch: decoded.batch, bad, bytes })?;
            }
            buffer.drain(..complete);
        }
        Ok(Ok(()))
    }
}

/// Reads until `buf` is full or the file ends; the bytes read.
fn read_full(reader: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The Arrow schema of a Parquet file.
pub(crate) fn parquet_schema(path: &Path) -> Result<SchemaRef, String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| format!("{} is not a Parquet file: {e}", path.display()))?;
    Ok(builder.schema().clone())
}

/// The index of column `name` in `schema`: the same name, else the same but for case.
pub(crate) fn find_column(schema: &Schema, name: &str) -> Option<usize> {
    schema.index_of(name).ok().or_else(|| schema.fields().iter().position(|f| f.name().eq_ignore_ascii_case(name)))
}
