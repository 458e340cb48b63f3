//! Compaction: a partition's small files merged into one, so that a history written at every
//! checkpoint is not read as thousands of files.
//!
//! After each commit the committer looks, in each partition of the hot tier, for a run of at
//! least [`COMPACT_MIN_FILES`] consecutive files (by buffer range) each under
//! [`COMPACT_TARGET_BYTES`] and not yet in the cold tier, and merges up to that many bytes of
//! them into one file named by the whole range (`part-<first from>-<last to>.parquet`),
//! written aside, synced and renamed into place; the merged files are then deleted at once, so
//! that no reader (ours, or DuckDB's `*.parquet` glob) sees a row twice. A reader that has
//! one open reads on (the file goes when it closes it); a query that listed one but has not
//! opened it yet fails, and a retry reads the merged file. A crash between the rename and
//! the deletes leaves files whose range lies inside another's in the same directory:
//! [`remove_superseded`] deletes them when the sink starts. Only the committer compacts,
//! between commits, so nothing else writes the directory meanwhile. Rows keep their order and
//! values, and the merged file the modification time of the newest file it holds (retention
//! and the move to the cold tier count from it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::files::{self, list_files, DataFile};

/// Fewest small files in a row that a partition merges.
pub const COMPACT_MIN_FILES: usize = 8;
/// A file this big is left as it is; a merge writes at most about this many bytes.
pub const COMPACT_TARGET_BYTES: u64 = 128 << 20;
/// Rows per batch while a merge reads its files.
const MERGE_BATCH_ROWS: usize = 8192;

/// Merges small files in every partition under `root`; returns how many files were merged.
pub(crate) fn compact(root: &Path) -> std::io::Result<usize> {
    let mut merged = 0;
    for (dir, mut dir_files) in by_directory(list_files(root)?) {
        dir_files.sort_by_key(|f| f.from);
        if let Some(run) = first_run(&dir_files) {
            merge(&dir, run)?;
            merged += run.len();
        }
    }
    Ok(merged)
}

fn by_directory(all: Vec<DataFile>) -> BTreeMap<PathBuf, Vec<DataFile>> {
    let mut out: BTreeMap<PathBuf, Vec<DataFile>> = BTreeMap::new();
    for file in all {
        let dir = file.path.parent().map(Path::to_path_buf).unwrap_or_default();
        out.entry(dir).or_default().push(file);
    }
    out
}

/// The first run (files sorted by range) of small hot files long enough to merge, cut to
/// about [`COMPACT_TARGET_BYTES`].
fn first_run(sorted: &[DataFile]) -> Option<&[DataFile]> {
    let mut start = 0;
    for i in 0..=sorted.len() {
        let small = sorted.get(i).is_some_and(|f| !f.uploaded && f.bytes < COMPACT_TARGET_BYTES);
        if small {
            continue;
        }
        if i - start >= COMPACT_MIN_FILES {
            let run = &sorted[start..i];
            let mut bytes = 0;
            let fits = run.iter().take_while(|f| {
                bytes += f.bytes;
                bytes <= COMPACT_TARGET_BYTES
            });
            let n = fits.count().max(2);
            return Some(&run[..n]);
        }
        start = i + 1;
    }
    None
}

/// Writes `run`'s rows, in order, as one file in `dir`, then deletes the files of the run.
fn merge(dir: &Path, run: &[DataFile]) -> std::io::Result<()> {
    let (first, last) = (run.first().expect("a run has files"), run.last().expect("a run has files"));
    let name = files::file_name(first.from, last.to);
    let partial = dir.join(format!("{name}{}", files::PARTIAL_SUFFIX));
    let written = (|| {
        let mut writer = None;
        for file in run {
            let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file.path)?)
                .map_err(std::io::Error::other)?
                .with_batch_size(MERGE_BATCH_ROWS)
                .build()
                .map_err(std::io::Error::other)?;
            for batch in reader {
                let batch = batch.map_err(std::io::Error::other)?;
                if writer.is_none() {
                    writer = Some(files::new_writer(&partial, &batch.schema())?);
                }
                writer.as_mut().expect("opened").write(&batch).map_err(std::io::Error::other)?;
            }
        }
        match writer {
            Some(writer) => files::finish_file(dir, &partial, &name, writer).map(Some),
            None => Ok(None),
        }
    })();
    match written {
        Ok(Some(path)) => {
            // As old as the newest file it holds: retention and the move to the cold tier go
            // by a file's age, which a merge must not make younger.
            let newest = run.iter().map(|f| std::fs::metadata(&f.path).and_then(|m| m.modified())).collect::<std::io::Result<Vec<_>>>()?.into_iter().max();
            if let Some(newest) = newest {
                std::fs::File::options().write(true).open(&path)?.set_modified(newest)?;
            }
        }
        Ok(None) => {}
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    }
    run.iter().try_for_each(DataFile::remove)?;
    tracing::debug!(dir = %dir.display(), files = run.len(), into = %name, "parquet files compacted");
    Ok(())
}

/// Deletes files whose range lies inside another file's in the same directory: what a crash
/// between a merge and the deletes of its files leaves. Returns how many.
pub(crate) fn remove_superseded(root: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    for (_, dir_files) in by_directory(list_files(root)?) {
        for file in &dir_files {
            let inside = dir_files.iter().any(|o| (o.from, o.to) != (file.from, file.to) && o.from <= file.from && file.to <= o.to);
            if inside {
                file.remove()?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, RecordBatch};
    use datafusion::arrow::datatypes::Int64Type;

    use super::*;
    use crate::parquet::files::tests::chunk;
    use crate::parquet::files::{write_files, Partitioning};

    fn values(path: &Path) -> Vec<i64> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap().build().unwrap();
        reader.flat_map(|b: Result<RecordBatch, _>| b.unwrap().column(0).as_primitive::<Int64Type>().values().to_vec()).collect()
    }

    /// Ten commits of one partition become one file named by their whole range, with their
    /// rows in order; fewer than COMPACT_MIN_FILES are left alone; a crash's leftovers (a
    /// merged file and one it holds) lose the one it holds.
    #[test]
    fn small_files_merge_into_one_named_by_their_range() {
        let root = std::env::temp_dir().join(format!("openclaw-parquet-compact-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let schema = chunk(&[], 0).schema();
        for n in 0..(COMPACT_MIN_FILES as u64 - 1) {
            write_files(&root, Partitioning::None, &schema, [Ok(chunk(&[n as i64 * 10, n as i64 * 10 + 1], 5))].into_iter(), n, n + 1).unwrap();
        }
        assert_eq!(compact(&root).unwrap(), 0, "too few to merge");
        let n = COMPACT_MIN_FILES as u64 - 1;
        let (written, _) = write_files(&root, Partitioning::None, &schema, [Ok(chunk(&[n as i64 * 10, n as i64 * 10 + 1], 5))].into_iter(), n, n + 1).unwrap();
        let kept = std::fs::read(&written[0]).unwrap();
        assert_eq!(compact(&root).unwrap(), COMPACT_MIN_FILES);
        let listed = list_files(&root).unwrap();
        assert_eq!(listed.iter().map(|f| (f.from, f.to)).collect::<Vec<_>>(), [(0, n + 1)]);
        let expected: Vec<i64> = (0..=n as i64).flat_map(|i| [i * 10, i * 10 + 1]).collect();
        assert_eq!(values(&listed[0].path), expected);
        // As a crash after the rename and before the deletes would leave it.
        std::fs::write(&written[0], kept).unwrap();
        assert_eq!(list_files(&root).unwrap().len(), 2);
        assert_eq!(remove_superseded(&root).unwrap(), 1);
        assert_eq!(list_files(&root).unwrap().iter().map(|f| (f.from, f.to)).collect::<Vec<_>>(), [(0, n + 1)]);
        let _ = std::fs::remove_dir_all(&root);
    }
}
