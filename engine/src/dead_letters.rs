//! A source's dead-letter table: the records it could not decode, with why and where from.
//!
//! The reader writes them itself, durably, before it returns the chunk that skipped them, and
//! keyed by where they came from (partition, offset). So a record is in the table before the
//! reader's position passes it, and a replay after a restart overwrites the same key instead of
//! adding a second row. Writes bypass the table's changelog: views do not read dead-letter
//! tables (the planner refuses them); `SELECT` does.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::compute::cast;
use openclaw_storage::{RowCodec, StateWrite};

use crate::operators::materialize::Layout;
use crate::operators::MaterializedState;
use crate::{internal_err, EngineResult};

/// The columns of a dead-letter table, in order, as SQL.
pub const DEAD_LETTER_COLUMNS: &str = "kafka_partition INT NOT NULL, kafka_offset BIGINT NOT NULL, \
     kafka_timestamp TIMESTAMPTZ, error VARCHAR NOT NULL, payload BYTEA, received_at TIMESTAMPTZ NOT NULL, \
     PRIMARY KEY (kafka_partition, kafka_offset)";

/// One record that did not decode.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp, in milliseconds since the epoch, when it has one.
    pub timestamp_ms: Option<i64>,
    pub error: String,
    pub payload: Option<Vec<u8>>,
}

/// Writes dead letters into one table.
pub struct DeadLetterTable {
    state: Arc<MaterializedState>,
    key_codec: RowCodec,
}

impl DeadLetterTable {
    /// `state`: a table with [`DEAD_LETTER_COLUMNS`].
    pub fn new(state: Arc<MaterializedState>) -> EngineResult<Self> {
        let Layout::Keyed(cols) = &state.layout else {
            internal_err!("a dead-letter table is keyed by partition and offset");
        };
        if cols != &[0, 1] || state.schema().fields().len() != 6 {
            internal_err!("a dead-letter table has the columns {DEAD_LETTER_COLUMNS}");
        }
        let key_codec = RowCodec::new(Arc::new(state.schema().project(cols)?))?;
        Ok(Self { state, key_codec })
    }

    /// Stores `letters` durably (a synced write-ahead log), overwriting letters already there
    /// for the same partition and offset.
    pub fn write(&self, letters: &[DeadLetter]) -> EngineResult<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let batch = self.batch(letters)?;
        let keys = self.key_codec.encode(&batch.columns()[..2])?;
        let rows = self.state.row_codec().encode(batch.columns())?;
        let mut write = StateWrite::default();
        for (key, row) in keys.iter().zip(rows.iter()) {
            write.put(&self.state.cf, key.data().to_vec(), row.data().to_vec());
        }
        Ok(self.state.store.write_durable(write)?)
    }

    fn batch(&self, letters: &[DeadLetter]) -> EngineResult<RecordBatch> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from_iter_values(letters.iter().map(|l| l.partition))),
            Arc::new(Int64Array::from_iter_values(letters.iter().map(|l| l.offset))),
            Arc::new(TimestampMillisecondArray::from_iter(letters.iter().map(|l| l.timestamp_ms)).with_timezone("+00:00")),
            Arc::new(StringArray::from_iter_values(letters.iter().map(|l| l.error.as_str()))),
            Arc::new(BinaryArray::from_iter(letters.iter().map(|l| l.payload.as_deref()))),
            Arc::new(TimestampMillisecondArray::from_iter_values(letters.iter().map(|_| now_ms)).with_timezone("+00:00")),
        ];
        let schema = self.state.schema().clone();
        let columns = columns
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| cast(c, f.data_type()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}
