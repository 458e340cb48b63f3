//! Blocks of appended rows: how a table without a primary key stores its rows.
//!
//! Such a table only appends (UPDATE and DELETE need a primary key), so its rows never change
//! once written. Storing each row under its own key made every ingested batch thousands of
//! RocksDB entries (a memtable insert, a WAL record and a compaction's work each); a block
//! keeps a run of consecutive rows as one entry instead.
//!
//! - Key (12 bytes): the block's first row id (u64, big endian), then its row count (u32,
//!   big endian). Keys sort by row id, and the last key tells the next row id.
//! - Value (format 1, ours): a format byte `1`, then the rows as one Arrow IPC stream (a
//!   schema message without metadata, one record batch, the end-of-stream marker), 8-byte
//!   aligned and uncompressed (RocksDB compresses the files it flushes). Arrow's IPC format is
//!   stable across Arrow versions, and decoding it is mostly taking buffers as they are.
//!
//! Pinned by `tests/golden_encoding.rs` (`row_block_v1.bin`).

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::ipc::MetadataVersion;

use crate::{StorageError, StorageResult};

/// The format byte of a block's value.
pub const BLOCK_FORMAT: u8 = 1;

/// The length of a block's key.
pub const BLOCK_KEY_LEN: usize = 12;

/// The key of the block whose first row id is `first_row_id`, holding `rows` rows.
pub fn block_key(first_row_id: u64, rows: u32) -> [u8; BLOCK_KEY_LEN] {
    let mut key = [0u8; BLOCK_KEY_LEN];
    key[..8].copy_from_slice(&first_row_id.to_be_bytes());
    key[8..].copy_from_slice(&rows.to_be_bytes());
    key
}

/// The first row id and the row count a block's key names.
pub fn parse_block_key(key: &[u8]) -> StorageResult<(u64, u32)> {
    let key: &[u8; BLOCK_KEY_LEN] = key
        .try_into()
        .map_err(|_| StorageError::Corrupt(format!("a row block's key has {} bytes, not {BLOCK_KEY_LEN}", key.len())))?;
    let first = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
    let rows = u32::from_be_bytes(key[8..].try_into().expect("4 bytes"));
    Ok((first, rows))
}

/// The value of a block holding `batch`'s rows.
pub fn encode_block(batch: &RecordBatch) -> StorageResult<Vec<u8>> {
    // Field names and types are all a reader needs; the table's schema has the rest.
    let fields: Vec<_> = batch.schema().fields().iter().map(|f| f.as_ref().clone().with_metadata(Default::default())).collect();
    let schema = Schema::new(fields);
    let batch = RecordBatch::try_new(std::sync::Arc::new(schema.clone()), batch.columns().to_vec())?;
    let options = IpcWriteOptions::try_new(8, false, MetadataVersion::V5)?;
    let mut out = Vec::with_capacity(1 + batch.get_array_memory_size() + 512);
    out.push(BLOCK_FORMAT);
    let mut writer = StreamWriter::try_new_with_options(&mut out, &schema, options)?;
    writer.write(&batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// The rows of a block's `value`, as columns of `schema` (the table's).
pub fn decode_block(value: &[u8], schema: &SchemaRef) -> StorageResult<RecordBatch> {
    let Some((&BLOCK_FORMAT, ipc)) = value.split_first() else {
        return Err(StorageError::Corrupt(format!("a row block has the unknown format {:?}", value.first())));
    };
    let mut reader = StreamReader::try_new(std::io::Cursor::new(ipc), None)?;
    let batch = match reader.next() {
        Some(batch) => batch?,
        None => return Err(StorageError::Corrupt("a row block holds no rows".into())),
    };
    if batch.num_columns() != schema.fields().len() {
        return Err(StorageError::Corrupt(format!("a row block has {} columns, its table {}", batch.num_columns(), schema.fields().len())));
    }
    Ok(RecordBatch::try_new(schema.clone(), batch.columns().to_vec())?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};

    use super::*;

    #[test]
    fn a_block_decodes_to_its_rows_with_the_tables_schema() {
        let metadata = std::collections::HashMap::from([("pg_type".to_string(), "varchar".to_string())]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true).with_metadata(metadata),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![1, 2])), Arc::new(StringArray::from(vec![Some("a"), None]))],
        )
        .unwrap();
        let decoded = decode_block(&encode_block(&batch).unwrap(), &schema).unwrap();
        assert_eq!(decoded, batch);
        assert_eq!(decoded.schema(), schema);
        assert!(decode_block(&[9, 1, 2], &schema).is_err());
        assert!(decode_block(&[], &schema).is_err());
    }

    #[test]
    fn keys_sort_by_first_row_id() {
        assert!(block_key(1, 4000) < block_key(2, 1));
        assert!(block_key(255, 1) < block_key(256, 1));
        assert_eq!(parse_block_key(&block_key(7, 3)).unwrap(), (7, 3));
        assert!(parse_block_key(&[0; 8]).is_err());
    }
}
