//! The rows of a table without a primary key ([`Layout::RowId`]): blocks of consecutive row
//! ids, one RocksDB entry each (`openclaw_storage::row_block`). The table's writer appends
//! them; queries, backfills and the log's replay read them back in row-id order.
//!
//! A block holds at most the chunk size's rows (the writer splits a larger write), so that a
//! page of whole blocks is never more than a chunk.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use openclaw_storage::row_block::{block_key, decode_block, encode_block, parse_block_key};
use openclaw_storage::{ReadSnapshot, StateWrite};

use crate::operators::materialize::Layout;
use crate::operators::MaterializedState;
use crate::{internal_err, EngineResult};

/// Adds `batch`'s rows to `write` as blocks of at most `block_rows` rows, the first taking row
/// id `next_row_id`. Returns the row id after the last.
pub fn append(state: &MaterializedState, write: &mut StateWrite, batch: &RecordBatch, next_row_id: u64, block_rows: usize) -> EngineResult<u64> {
    debug_assert_eq!(state.layout, Layout::RowId);
    let block_rows = block_rows.clamp(1, u32::MAX as usize);
    let mut next = next_row_id;
    let mut start = 0;
    while start < batch.num_rows() {
        let rows = block_rows.min(batch.num_rows() - start);
        let block = batch.slice(start, rows);
        write.put(&state.cf, block_key(next, rows as u32).to_vec(), encode_block(&block)?);
        next += rows as u64;
        start += rows;
    }
    Ok(next)
}

/// The row id the table's next row takes: one after the last block's last row (1 when empty).
pub fn next_row_id(state: &MaterializedState) -> EngineResult<u64> {
    let mut last = None;
    state.store.scan_prefix(&state.cf, &[], true, |key, _| {
        last = Some(key.to_vec());
        false
    })?;
    match last {
        None => Ok(1),
        Some(key) => {
            let (first, rows) = parse_block_key(&key)?;
            Ok(first + rows as u64)
        }
    }
}

/// Up to `max_rows` rows in whole blocks after the block keyed `after`, as of `snapshot`, with
/// the last block's key (`None` once the table is read to its end). A first block larger than
/// `max_rows` (written under a larger chunk size) comes whole.
pub fn read_page(state: &MaterializedState, snapshot: Option<&ReadSnapshot>, after: Option<&[u8]>, max_rows: usize) -> EngineResult<(RecordBatch, Option<Vec<u8>>)> {
    let mut batches = vec![];
    let mut rows = 0usize;
    let mut last_key: Option<Vec<u8>> = None;
    let mut full = false;
    let mut failure = None;
    state.store.scan_from(&state.cf, after, snapshot, |key, value| {
        let block_rows = match parse_block_key(key) {
            Ok((_, n)) => n as usize,
            Err(e) => {
                failure = Some(e);
                return false;
            }
        };
        if rows > 0 && rows + block_rows > max_rows {
            full = true;
            return false;
        }
        match decode_block(value, state.schema()) {
            Ok(batch) => batches.push(batch),
            Err(e) => {
                failure = Some(e);
                return false;
            }
        }
        rows += block_rows;
        last_key = Some(key.to_vec());
        if rows >= max_rows {
            full = true;
        }
        !full
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let batch = concat_batches(state.schema(), &batches)?;
    Ok((batch, last_key.filter(|_| full)))
}

/// The rows with ids `first..first + count` (appended by one write), in order.
pub fn read_appended(state: &MaterializedState, first: u64, count: u64) -> EngineResult<Vec<RecordBatch>> {
    let end = first + count;
    let mut out = vec![];
    let mut failure = None;
    // Every key of the range sorts after the row id alone.
    state.store.scan_from(&state.cf, Some(&first.to_be_bytes()), None, |key, value| {
        let result = parse_block_key(key).and_then(|(block_first, _)| {
            if block_first >= end {
                return Ok(false);
            }
            out.push(decode_block(value, state.schema())?);
            Ok(true)
        });
        result.unwrap_or_else(|e| {
            failure = Some(e);
            false
        })
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let read: usize = out.iter().map(|b| b.num_rows()).sum();
    if read as u64 != count {
        internal_err!("a table's log names {count} appended rows from row id {first}; the table holds {read} of them");
    }
    Ok(out)
}
