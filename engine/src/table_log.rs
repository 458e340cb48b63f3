//! A table's change log: the changelog of every write, by sequence number, stored in the same
//! atomic write as the rows (column family `table_<id>_log`). A view over the table resumes
//! from a checkpoint after a restart by replaying the entries after the table's position in
//! that checkpoint, instead of being rebuilt from the whole table.
//!
//! An entry (format 1, ours): a version byte `1`, the row count as u32 big-endian, then per
//! row its op (`Op as u8`: 0 insert, 1 delete, 2 update-delete, 3 update-insert), the length
//! of its encoded row as u32 big-endian and the row in the table's row encoding
//! (`openclaw_storage::RowCodec`).
//!
//! Cleanup: at each checkpoint barrier the writer deletes the entries older than the position
//! of the third-newest checkpoint barrier it has seen (two checkpoints are kept on disk, and one
//! more barrier covers a checkpoint whose copy failed). The newest entry always stays: it
//! tells the next start where the sequence stands.

use std::collections::VecDeque;
use std::sync::Arc;

use openclaw_storage::{CfKind, RowCodec, StateWrite, Store};

use crate::{internal_err, EngineResult, Op, StreamChunk};

const ENTRY_FORMAT: u8 = 1;

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
    pub fn append(&mut self, write: &mut StateWrite, chunks: &[StreamChunk], codec: &RowCodec) -> EngineResult<()> {
        let rows: usize = chunks.iter().map(|c| c.num_rows()).sum();
        if rows == 0 {
            return Ok(());
        }
        let mut entry = Vec::with_capacity(5 + rows * 32);
        entry.push(ENTRY_FORMAT);
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
    /// about `chunk_rows` rows.
    pub fn read_from(&self, store: &Store, from: u64, codec: &RowCodec, chunk_rows: usize) -> EngineResult<Vec<StreamChunk>> {
        let mut out = vec![];
        let mut ops: Vec<Op> = vec![];
        let mut rows: Vec<Vec<u8>> = vec![];
        let mut failure = None;
        store.scan_from(&self.cf, None, None, |key, value| {
            if seq_of(key) < from {
                return true;
            }
            if let Err(e) = decode_entry(value, &mut ops, &mut rows) {
                failure = Some(e);
                return false;
            }
            if rows.len() >= chunk_rows {
                out.push((std::mem::take(&mut ops), std::mem::take(&mut rows)));
            }
            true
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if !rows.is_empty() {
            out.push((ops, rows));
        }
        out.into_iter()
            .map(|(ops, rows)| Ok(StreamChunk::new(ops, codec.decode(rows.iter().map(Vec::as_slice))?)))
            .collect()
    }
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

fn decode_entry(value: &[u8], ops: &mut Vec<Op>, rows: &mut Vec<Vec<u8>>) -> EngineResult<()> {
    let bad = || crate::EngineError::Execution("a table log entry does not decode".into());
    if value.first() != Some(&ENTRY_FORMAT) || value.len() < 5 {
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
