//! A table's change log: the changelog of every write, by sequence number, stored in the same
//! atomic write as the rows (column family `table_<id>_log`). A view over the table resumes
//! from a checkpoint after a restart by replaying the entries after the table's position in
//! that checkpoint, instead of being rebuilt from the whole table.
//!
//! An entry is one of (ours; pinned by `tests/golden_table_log.rs`):
//! - format 1, the changelog itself (a table with a primary key): a version byte `1`, the
//!   row count as u32 big-endian, then per row its op (`Op as u8`: 0 insert, 1 delete, 2
//!   update-delete, 3 update-insert), the length of its encoded row as u32 big-endian and the
//!   row in the table's row encoding (`openclaw_storage::RowCodec`);
//! - format 2, rows appended to a table without a primary key, which keeps them for good
//!   ([`crate::table_blocks`]): a version byte `2`, the first row id as u64 big-endian and the
//!   row count as u64 big-endian. Replay reads those rows from the table.
//!
//! Cleanup: at each checkpoint barrier the writer deletes the entries older than the position
//! of the third-newest checkpoint barrier it has seen (two checkpoints are kept on disk, and one
//! more barrier covers a checkpoint whose copy failed). The newest entry always stays: it
//! tells the next start where the sequence stands.

use std::collections::VecDeque;
use std::sync::Arc;

use openclaw_storage::{CfKind, StateWrite, Store};

use crate::operators::MaterializedState;
use crate::{internal_err, EngineResult, Op, StreamChunk};

/// An entry holding the changelog's rows.
const CHANGES_FORMAT: u8 = 1;
/// An entry naming rows appended to the table.
const APPENDED_FORMAT: u8 = 2;

/// Checkpoint barriers whose positions the log keeps entries for.
const KEPT_CHECKPOINTS: usize = 3;

/// The log's column family for the table stored in `table_cf`.
pub fn log_cf(table_cf: &str) -> String {
    format!("{table_cf}_log")
}

pub struct TableLog {
    cf: Arc<str>,
    /// The sequence number of the next entry: the table's position in checkpoints.
    next_seq: u64,
    /// Positions at the last checkpoint barriers, oldest first.
    checkpoints: VecDeque<u64>,
}

impl TableLog {
    /// Opens (or creates) the log of the table stored in `table_cf`.
    pub fn open(store: &Store, table_cf: &str) -> EngineResult<Self> {
        let cf = log_cf(table_cf);
        store.create_cf(&cf, CfKind::Plain)?;
        let next_seq = last_seq(store, &cf)?.map_or(1, |s| s + 1);
        Ok(Self { cf: Arc::from(cf.as_str()), next_seq, checkpoints: VecDeque::new() })
    }

    /// Where the table stands: the sequence number its next write takes.
    pub fn position(&self) -> u64 {
        self.next_seq
    }

    /// Adds the entry of a write whose changelog is `chunks` to `write` (which holds the
    /// write's rows), so that both are stored atomically.
    pub fn append(&mut self, write: &mut StateWrite, chunks: &[StreamChunk], codec: &openclaw_storage::RowCodec) -> EngineResult<()> {
        let rows: usize = chunks.iter().map(|c| c.num_rows()).sum();
        if rows == 0 {
            return Ok(());
        }
        let mut entry = Vec::with_capacity(5 + rows * 32);
        entry.push(CHANGES_FORMAT);
        entry.extend_from_slice(&(rows as u32).to_be_bytes());
        for chunk in chunks {
            let encoded = codec.encode(chunk.columns())?;
            for (op, row) in chunk.ops().iter().zip(encoded.iter()) {
                entry.push(*op as u8);
                entry.extend_from_slice(&(row.data().len() as u32).to_be_bytes());
                entry.extend_from_slice(row.data());
            }
        }
        write.put(&self.cf, self.next_seq.to_be_bytes().to_vec(), entry);
        self.next_seq += 1;
        Ok(())
    }

    /// Adds the entry of a write that appended the rows with ids `first_row_id..` (`rows` of
    /// them) to a table without a primary key, to `write` (which holds the rows).
    pub fn append_rows(&mut self, write: &mut StateWrite, first_row_id: u64, rows: u64) {
        if rows == 0 {
            return;
        }
        write.put(&self.cf, self.next_seq.to_be_bytes().to_vec(), appended_entry(first_row_id, rows));
        self.next_seq += 1;
    }

    /// Notes a checkpoint barrier at the current position, and deletes what no kept
    /// checkpoint needs.
    pub fn at_checkpoint(&mut self, store: &Store) -> EngineResult<()> {
        self.checkpoints.push_back(self.next_seq);
        if self.checkpoints.len() > KEPT_CHECKPOINTS {
            self.checkpoints.pop_front();
            let oldest = self.checkpoints[0];
            // Never the newest entry: the next start reads the sequence from it.
            let below = oldest.min(self.next_seq.saturating_sub(1));
            if below > 1 {
                store.delete_range(&self.cf, &0u64.to_be_bytes(), &below.to_be_bytes())?;
            }
        }
        Ok(())
    }

    /// The changelog of every write from sequence number `from` on, in order, in chunks of
    /// about `chunk_rows` rows, for the table whose stored rows are `table`.
    pub fn read_from(&self, table: &MaterializedState, from: u64, chunk_rows: usize) -> EngineResult<Vec<StreamChunk>> {
        let mut out = vec![];
        let mut changes = Changes::default();
        let mut failure = None;
        table.store.scan_from(&self.cf, None, None, |key, value| {
            if seq_of(key) < from {
                return true;
            }
            let read = match value.first() {
                Some(&APPENDED_FORMAT) => decode_appended(value).and_then(|(first, rows)| {
                    changes.flush(table, &mut out)?;
                    let batches = crate::table_blocks::read_appended(table, first, rows)?;
                    out.extend(batches.into_iter().map(StreamChunk::inserts));
                    Ok(())
                }),
                _ => decode_changes(value, &mut changes.ops, &mut changes.rows).and_then(|()| {
                    if changes.rows.len() >= chunk_rows {
                        changes.flush(table, &mut out)?;
                    }
                    Ok(())
                }),
            };
            if let Err(e) = read {
                failure = Some(e);
                return false;
            }
            true
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        changes.flush(table, &mut out)?;
        Ok(out)
    }
}

/// Rows of changes entries read but not yet decoded.
#[derive(Default)]
struct Changes {
    ops: Vec<Op>,
    rows: Vec<Vec<u8>>,
}

impl Changes {
    fn flush(&mut self, table: &MaterializedState, out: &mut Vec<StreamChunk>) -> EngineResult<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let batch = table.row_codec().decode(self.rows.iter().map(Vec::as_slice))?;
        out.push(StreamChunk::new(std::mem::take(&mut self.ops), batch));
        self.rows.clear();
        Ok(())
    }
}

fn appended_entry(first_row_id: u64, rows: u64) -> Vec<u8> {
    let mut entry = Vec::with_capacity(17);
    entry.push(APPENDED_FORMAT);
    entry.extend_from_slice(&first_row_id.to_be_bytes());
    entry.extend_from_slice(&rows.to_be_bytes());
    entry
}

fn decode_appended(value: &[u8]) -> EngineResult<(u64, u64)> {
    let (Some(first), Some(rows)) = (value.get(1..9), value.get(9..17)) else {
        internal_err!("a table log entry of appended rows has {} bytes", value.len());
    };
    Ok((u64::from_be_bytes(first.try_into().expect("8 bytes")), u64::from_be_bytes(rows.try_into().expect("8 bytes"))))
}

/// Whether the log of the table in `table_cf` still holds every entry from `from` on (what a
/// view resuming from a checkpoint at that position needs).
pub fn covers(store: &Store, table_cf: &str, from: u64) -> EngineResult<bool> {
    let cf = log_cf(table_cf);
    if !store.has_cf(&cf) {
        return Ok(false);
    }
    let next = last_seq(store, &cf)?.map_or(1, |s| s + 1);
    if from >= next {
        return Ok(from == next);
    }
    let mut first = None;
    store.scan(&cf, None, |key, _| {
        first = Some(seq_of(key));
        false
    })?;
    Ok(first.is_some_and(|f| f <= from))
}

fn seq_of(key: &[u8]) -> u64 {
    key.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

fn last_seq(store: &Store, cf: &str) -> EngineResult<Option<u64>> {
    let mut last = None;
    store.scan_prefix(cf, &[], true, |key, _| {
        last = Some(seq_of(key));
        false
    })?;
    Ok(last)
}

fn decode_changes(value: &[u8], ops: &mut Vec<Op>, rows: &mut Vec<Vec<u8>>) -> EngineResult<()> {
    let bad = || crate::EngineError::Execution("a table log entry does not decode".into());
    if value.first() != Some(&CHANGES_FORMAT) || value.len() < 5 {
        internal_err!("a table log entry has an unknown format");
    }
    let count = u32::from_be_bytes(value[1..5].try_into().expect("4 bytes")) as usize;
    let mut at = 5;
    for _ in 0..count {
        let op = match value.get(at).ok_or_else(bad)? {
            0 => Op::Insert,
            1 => Op::Delete,
            2 => Op::UpdateDelete,
            3 => Op::UpdateInsert,
            _ => return Err(bad()),
        };
        let len = u32::from_be_bytes(value.get(at + 1..at + 5).ok_or_else(bad)?.try_into().expect("4 bytes")) as usize;
        let row = value.get(at + 5..at + 5 + len).ok_or_else(bad)?;
        ops.push(op);
        rows.push(row.to_vec());
        at += 5 + len;
    }
    Ok(())
}
