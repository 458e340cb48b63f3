//! The Parquet sink's files: the layout (Hive-style partitions by commit time), writing a
//! range of buffered chunks as files atomically, listing them, and the encoding of a chunk in
//! the buffer.

use std::io::Write;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use openclaw_engine::{EngineError, EngineResult};

use crate::ConnectorError;

/// Format of a buffered chunk: this byte, then the chunk as an Arrow IPC stream (one batch).
const CHUNK_FORMAT: u8 = 1;
/// What a file is called while it is written; a crash may leave one behind.
pub(crate) const PARTIAL_SUFFIX: &str = ".partial";
/// Beside a hot file once it is in the cold tier (an empty file): the file is read from the
/// cold tier from then on, and deleted here after [`super::tier::MOVED_FILE_GRACE`].
pub(crate) const UPLOADED_SUFFIX: &str = ".uploaded";
/// How deep partition directories go under a sink's path (`date=`, `hour=`).
const MAX_PARTITION_DEPTH: usize = 2;

/// How files are split into directories by commit time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partitioning {
    /// `date=YYYY-MM-DD/hour=HH/`
    Hour,
    /// `date=YYYY-MM-DD/`
    Day,
    /// Every file in the sink's path.
    None,
}

impl Partitioning {
    pub fn parse(value: Option<&str>) -> Result<Self, ConnectorError> {
        match value.map(str::to_ascii_lowercase).as_deref() {
            None | Some("hour") => Ok(Self::Hour),
            Some("day") => Ok(Self::Day),
            Some("none") => Ok(Self::None),
            Some(other) => Err(ConnectorError::new(format!("partition = '{other}' is not supported")).with_hint("use 'hour', 'day' or 'none'")),
        }
    }

    /// The partition directories' names (and columns), outermost first.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Self::Hour => &["date", "hour"],
            Self::Day => &["date"],
            Self::None => &[],
        }
    }

    /// The directory, relative to the sink's path, of rows committed at `commit_ms`.
    fn directory(self, commit_ms: i64) -> PathBuf {
        let at = chrono::DateTime::from_timestamp_millis(commit_ms).unwrap_or_default();
        match self {
            Self::Hour => PathBuf::from(format!("date={}", at.format("%Y-%m-%d"))).join(format!("hour={}", at.format("%H"))),
            Self::Day => PathBuf::from(format!("date={}", at.format("%Y-%m-%d"))),
            Self::None => PathBuf::new(),
        }
    }
}

/// A chunk as the buffer keeps it.
pub(crate) fn encode_chunk(batch: &RecordBatch) -> EngineResult<Vec<u8>> {
    let mut out = vec![CHUNK_FORMAT];
    let mut writer = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).map_err(arrow_err)?;
    writer.write(batch).map_err(arrow_err)?;
    writer.finish().map_err(arrow_err)?;
    drop(writer);
    Ok(out)
}

pub(crate) fn decode_chunk(bytes: &[u8]) -> EngineResult<RecordBatch> {
    let Some((&CHUNK_FORMAT, ipc)) = bytes.split_first() else {
        openclaw_engine::internal_err!("a parquet sink's buffered chunk has an unknown format");
    };
    let mut reader = datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None).map_err(arrow_err)?;
    match reader.next() {
        Some(batch) => batch.map_err(arrow_err),
        None => openclaw_engine::internal_err!("a parquet sink's buffered chunk is empty"),
    }
}

/// Rows per Parquet row group: what one file being written holds in memory before it writes
/// a row group out, and the unit a filter skips by its statistics.
const ROW_GROUP_ROWS: usize = 122_880;

/// A file being written: its directory, its name while written, its writer.
type OpenFile = (PathBuf, PathBuf, ::parquet::arrow::ArrowWriter<std::fs::File>);

/// Writes `chunks` (buffer range `from..to`, each with one commit time in its last column,
/// read lazily by the caller) as one file per partition, each written aside, then synced and
/// renamed into place. Returns the files and the rows written. On failure the files this call
/// wrote are removed, so that a retry does not duplicate them.
pub(crate) fn write_files(
    root: &Path,
    partitioning: Partitioning,
    schema: &SchemaRef,
    chunks: impl Iterator<Item = EngineResult<RecordBatch>>,
    from: u64,
    to: u64,
) -> std::io::Result<(Vec<PathBuf>, usize)> {
    if !root.is_dir() {
        // The directory goes with the sink (a dropped history is set aside at once): what
        // its committer still finishes after the DROP has nowhere to go.
        tracing::warn!(path = %root.display(), "the parquet sink's directory is gone; rows not written");
        return Ok((vec![], 0));
    }
    let name = file_name(from, to);
    let mut open: Vec<OpenFile> = vec![];
    let rows = match write_chunks(root, partitioning, schema, chunks, &name, &mut open) {
        Ok(rows) => rows,
        Err(e) => {
            open.iter().for_each(|(_, partial, _)| drop(std::fs::remove_file(partial)));
            return Err(e);
        }
    };
    let mut written = vec![];
    let mut open = open.into_iter();
    while let Some((dir, partial, writer)) = open.next() {
        match finish_file(&dir, &partial, &name, writer) {
            Ok(path) => written.push(path),
            Err(e) => {
                written.iter().for_each(|p| drop(std::fs::remove_file(p)));
                open.for_each(|(_, partial, _)| drop(std::fs::remove_file(partial)));
                return Err(e);
            }
        }
    }
    Ok((written, rows))
}

/// Writes each chunk to the file of its partition, opening files as partitions appear.
fn write_chunks(root: &Path, partitioning: Partitioning, schema: &SchemaRef, chunks: impl Iterator<Item = EngineResult<RecordBatch>>, name: &str, open: &mut Vec<OpenFile>) -> std::io::Result<usize> {
    let mut rows = 0;
    for chunk in chunks {
        let chunk = chunk.map_err(std::io::Error::other)?;
        if chunk.num_rows() == 0 {
            continue;
        }
        let commit_ms = chunk.column(chunk.num_columns() - 1).as_primitive::<TimestampMillisecondType>().value(0);
        let dir = root.join(partitioning.directory(commit_ms));
        let at = match open.iter().position(|(d, ..)| *d == dir) {
            Some(at) => at,
            None => {
                std::fs::create_dir_all(&dir)?;
                let partial = dir.join(format!("{name}{PARTIAL_SUFFIX}"));
                let writer = new_writer(&partial, schema)?;
                open.push((dir, partial, writer));
                open.len() - 1
            }
        };
        open[at].2.write(&chunk).map_err(std::io::Error::other)?;
        rows += chunk.num_rows();
    }
    Ok(rows)
}

/// A zstd Parquet writer of `schema` into the new file `partial`.
pub(crate) fn new_writer(partial: &Path, schema: &SchemaRef) -> std::io::Result<::parquet::arrow::ArrowWriter<std::fs::File>> {
    use ::parquet::basic::{Compression, ZstdLevel};
    let properties = ::parquet::file::properties::WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    ::parquet::arrow::ArrowWriter::try_new(std::fs::File::create(partial)?, schema.clone(), Some(properties)).map_err(std::io::Error::other)
}

pub(crate) fn file_name(from: u64, to: u64) -> String {
    format!("part-{from:020}-{to:020}.parquet")
}

/// Closes a file, syncs it, and renames it into place (the directory synced after).
pub(crate) fn finish_file(dir: &Path, partial: &Path, name: &str, writer: ::parquet::arrow::ArrowWriter<std::fs::File>) -> std::io::Result<PathBuf> {
    let mut file = writer.into_inner().map_err(std::io::Error::other)?;
    file.flush()?;
    file.sync_all()?;
    let path = dir.join(name);
    std::fs::rename(partial, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(path)
}

/// One of a sink's files: where it is, the buffer range it holds, its size, and whether it
/// is in the cold tier already (so no longer part of the hot one).
#[derive(Clone, Debug, PartialEq)]
pub struct DataFile {
    pub path: PathBuf,
    pub from: u64,
    pub to: u64,
    pub bytes: u64,
    pub uploaded: bool,
}

impl DataFile {
    /// The marker that says this file is in the cold tier.
    pub(crate) fn uploaded_marker(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(UPLOADED_SUFFIX);
        PathBuf::from(name)
    }

    /// Deletes the file and its marker.
    pub(crate) fn remove(&self) -> std::io::Result<()> {
        std::fs::remove_file(&self.path)?;
        match std::fs::remove_file(self.uploaded_marker()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Every complete file under `root`, in no particular order.
pub fn list_files(root: &Path) -> std::io::Result<Vec<DataFile>> {
    let mut out = vec![];
    walk(root, 0, &mut |path, name| {
        if let Some((from, to)) = parse_name(name) {
            let bytes = std::fs::metadata(path)?.len();
            let mut file = DataFile { path: path.to_path_buf(), from, to, bytes, uploaded: false };
            file.uploaded = file.uploaded_marker().exists();
            out.push(file);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Removes the files written longer than `age` ago (by their modification time, which is no
/// earlier than the commit time of any of their rows), and the partition directories left
/// empty; returns how many files went.
pub(crate) fn remove_older_than(root: &Path, age: std::time::Duration) -> std::io::Result<usize> {
    let Some(cutoff) = std::time::SystemTime::now().checked_sub(age) else { return Ok(0) };
    let mut removed = 0;
    for file in list_files(root)? {
        if std::fs::metadata(&file.path)?.modified()? < cutoff {
            file.remove()?;
            removed += 1;
            remove_empty_parents(root, &file.path);
        }
    }
    Ok(removed)
}

/// Removes the partition directories under `root` that `removed` (a file just deleted) leaves
/// empty (`remove_dir` fails on one that is not).
pub(crate) fn remove_empty_parents(root: &Path, removed: &Path) {
    let mut dir = removed.parent();
    while let Some(d) = dir.filter(|d| *d != root) {
        if std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Removes files a crash left half written.
pub(crate) fn remove_partial(root: &Path) -> std::io::Result<()> {
    walk(root, 0, &mut |path, name| if name.ends_with(PARTIAL_SUFFIX) { std::fs::remove_file(path) } else { Ok(()) })
}

pub(crate) fn walk(dir: &Path, depth: usize, visit: &mut dyn FnMut(&Path, &str) -> std::io::Result<()>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            if depth < MAX_PARTITION_DEPTH {
                walk(&path, depth + 1, visit)?;
            }
        } else {
            visit(&path, &name)?;
        }
    }
    Ok(())
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (from, to) = name.strip_prefix("part-")?.strip_suffix(".parquet")?.split_once('-')?;
    Some((from.parse().ok()?, to.parse().ok()?))
}

fn arrow_err(e: datafusion::arrow::error::ArrowError) -> EngineError {
    EngineError::Internal(format!("parquet sink chunk: {e}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    pub(crate) fn chunk(values: &[i64], commit_ms: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false), Field::new("_commit_time", DataType::Timestamp(TimeUnit::Millisecond, None), false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec())), Arc::new(TimestampMillisecondArray::from_value(commit_ms, values.len()))]).unwrap()
    }

    /// The buffered form of a chunk, byte for byte: a format byte, then Arrow's IPC stream. A
    /// change to either breaks the buffers of running sinks and must bump the format.
    #[test]
    fn a_buffered_chunk_has_the_checked_in_bytes() {
        let batch = chunk(&[7], 1_700_000_000_000);
        let bytes = encode_chunk(&batch).unwrap();
        assert_eq!(bytes[0], CHUNK_FORMAT);
        // Found at run time, as the checkpoint manifest's fixture is (a shared test binary).
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
        let golden = std::fs::read(format!("{dir}/tests/fixtures/parquet_sink_chunk_v1.bin"));
        match golden {
            Ok(golden) => assert_eq!(bytes, golden, "the buffered chunk encoding changed"),
            Err(_) => panic!("missing fixture; write it with: {}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        }
        assert_eq!(decode_chunk(&bytes).unwrap(), batch);
        assert!(decode_chunk(&[9, 1, 2]).is_err());
    }

    /// Chunks go to the directory of their commit hour, one file per directory named by the
    /// buffer range; listing finds them and nothing half written.
    #[test]
    fn files_land_in_hour_partitions_named_by_their_range() {
        let root = std::env::temp_dir().join(format!("openclaw-parquet-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let schema = chunk(&[], 0).schema();
        assert!(write_files(&root, Partitioning::Hour, &schema, [Ok(chunk(&[1], 0))].into_iter(), 0, 1).unwrap().0.is_empty(), "no directory, no files");
        std::fs::create_dir_all(&root).unwrap();
        let hour = 3_600_000;
        let base = 1_700_000_000_000 / hour * hour;
        let chunks = [chunk(&[1, 2], base + 5), chunk(&[3], base + hour + 1), chunk(&[4], base + 10)];
        let schema = chunks[0].schema();
        let (written, rows) = write_files(&root, Partitioning::Hour, &schema, chunks.iter().cloned().map(Ok), 10, 13).unwrap();
        assert_eq!(rows, 4);
        assert_eq!(written.len(), 2);
        assert!(written[0].ends_with("date=2023-11-14/hour=22/part-00000000000000000010-00000000000000000013.parquet"), "{written:?}");
        assert!(written[1].ends_with("date=2023-11-14/hour=23/part-00000000000000000010-00000000000000000013.parquet"), "{written:?}");
        std::fs::write(root.join("part-00000000000000000013-00000000000000000014.parquet.partial"), b"x").unwrap();
        let mut listed = list_files(&root).unwrap();
        listed.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(listed.iter().map(|f| (f.from, f.to)).collect::<Vec<_>>(), [(10, 13), (10, 13)]);
        remove_partial(&root).unwrap();
        assert!(!root.join("part-00000000000000000013-00000000000000000014.parquet.partial").exists());
        let file = std::fs::File::open(&written[0]).unwrap();
        let rows: usize = ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 3);
        let _ = std::fs::remove_dir_all(&root);
    }
}
