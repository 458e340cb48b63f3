//! Hash exchange: routes each row to the partition that owns its key, so that the partitions
//! of a stateful operator hold disjoint keys and can run on different worker threads.
//!
//! Watermarks and barriers go to every partition (the default forwarding broadcasts), so each
//! partition sees the same event-time progress at the same place in its stream as a single
//! operator would, and the merge after the partitions aligns barriers as any union does.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::physical_expr::PhysicalExpr;
use openclaw_storage::RowCodec;

use crate::{EngineResult, Message, Operator, OperatorContext, StreamChunk};

/// Most partitions of one stateful operator (`streaming_parallelism`, `--workers`).
pub const MAX_PARALLELISM: usize = 64;

/// The seed of the partitioning hash. It is fixed, so that a key lands on the same partition in
/// every run and on both inputs of a join; state written by one run stays with its partition.
pub const PARTITION_HASH_SEED: u64 = 0x6f70_656e_636c_6177;

/// Which of `partitions` partitions owns each row of `keys` (evaluated key columns):
/// `xxh64(key, PARTITION_HASH_SEED) % partitions`, where `key` is the row's key columns in
/// OpenClaw's row encoding (ascending, NULLs first; `openclaw_storage::RowCodec`). Both are
/// ours and pinned by `tests/fixtures/partitions_v2.txt`: a key routes to the same partition
/// in every build, as the state already on disk expects. Strings route alike whatever their
/// Arrow type (`Utf8`, `LargeUtf8`, `Utf8View`), as their encodings are equal.
pub fn partition_of_rows(keys: &[ArrayRef], rows: usize, partitions: usize) -> EngineResult<Vec<usize>> {
    assert!(partitions > 0, "at least one partition");
    if keys.is_empty() {
        return Ok(vec![0; rows]);
    }
    let fields: Vec<Field> = keys.iter().enumerate().map(|(i, k)| Field::new(format!("k{i}"), k.data_type().clone(), true)).collect();
    let encoded = RowCodec::new(Arc::new(Schema::new(fields)))?.encode(keys)?;
    debug_assert_eq!(encoded.num_rows(), rows);
    Ok(encoded.iter().map(|key| (xxhash_rust::xxh64::xxh64(key.data(), PARTITION_HASH_SEED) % partitions as u64) as usize).collect())
}

/// Splits its input by `hash(keys) % partitions` over as many outputs.
pub struct ExchangeOperator {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    partitions: usize,
}

impl ExchangeOperator {
    /// `keys` are evaluated over the input rows. Rows with equal keys (NULLs included) go to
    /// the same partition.
    pub fn new(keys: Vec<Arc<dyn PhysicalExpr>>, partitions: usize) -> Self {
        assert!((1..=MAX_PARALLELISM).contains(&partitions), "partitions within the named limit");
        Self { keys, partitions }
    }
}

#[async_trait]
impl Operator for ExchangeOperator {
    fn name(&self) -> String {
        format!("Exchange({})", self.partitions)
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, ctx: &mut OperatorContext) -> EngineResult<()> {
        debug_assert_eq!(ctx.outputs.len(), self.partitions, "one output per partition");
        let keys = self
            .keys
            .iter()
            .map(|k| k.evaluate(chunk.batch())?.into_array(chunk.num_rows()))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let owner = partition_of_rows(&keys, chunk.num_rows(), self.partitions)?;
        for p in 0..self.partitions {
            // An update pair whose halves land apart becomes a delete here and an insert
            // there (`StreamChunk::filter`).
            let mask: BooleanArray = owner.iter().map(|&o| Some(o == p)).collect();
            let part = chunk.filter(&mask)?;
            if !part.is_empty() {
                ctx.outputs.send_to(p, Message::Chunk(part)).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};

    #[test]
    fn equal_keys_share_a_partition_across_calls_and_types_of_batch() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3, 1, 2, 3]));
        let b: ArrayRef = Arc::new(StringArray::from(vec!["x", "y", "z", "x", "y", "z"]));
        let owner = partition_of_rows(&[a.clone(), b.clone()], 6, 4).unwrap();
        assert_eq!(owner[0..3], owner[3..6]);
        let again = partition_of_rows(&[a.slice(3, 3), b.slice(3, 3)], 3, 4).unwrap();
        assert_eq!(owner[0..3], again[..]);
        assert!(owner.iter().all(|&p| p < 4));
    }

    #[test]
    fn keys_spread_over_partitions() {
        let a: ArrayRef = Arc::new(Int64Array::from_iter_values(0..1000));
        let owner = partition_of_rows(&[a], 1000, 4).unwrap();
        for p in 0..4 {
            let n = owner.iter().filter(|&&o| o == p).count();
            assert!((150..350).contains(&n), "partition {p} got {n} of 1000 keys");
        }
    }
}
