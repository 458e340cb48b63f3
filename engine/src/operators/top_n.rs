//! Top-N per partition: `ROW_NUMBER() OVER (PARTITION BY p ORDER BY o) AS rn … WHERE rn <= N`
//! (N = 1 is dedup). Every input row is kept in order by partition ([`SortedPartitions`]). For
//! each partition a chunk touches, the operator reads the first N before and after applying the
//! chunk and emits the difference, rank by rank. Ties in the `ORDER BY` are broken by the whole
//! row, so the result is deterministic. Partitions led by a watermarked column are freed once
//! the watermark passes them.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch, UInt64Array};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;
use openclaw_storage::Store;

use super::partitioned_rows::{PartitionedRowsOperator, RowsLogic};
use crate::state::sorted::{SortSpec, SortedPartitions};
use crate::{EngineResult, Op, StreamChunk};

/// Largest N accepted: a partition's top N is read twice per touched partition and chunk.
pub const MAX_TOP_N: usize = 10_000;

#[derive(Clone)]
pub struct TopNSpec {
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    pub order_by: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
    pub limit: usize,
    /// The input's columns, then the row number (UInt64).
    pub schema: SchemaRef,
    pub input_schema: SchemaRef,
    /// The input column of the first `PARTITION BY` expression, when it is that column
    /// itself and carries a watermark: partitions behind the watermark are freed.
    pub clean_by: Option<usize>,
}

/// The top-N's logic over its [`SortedPartitions`].
pub struct TopN {
    spec: TopNSpec,
}

pub type TopNOperator = PartitionedRowsOperator<TopN>;

impl TopNOperator {
    pub fn new(spec: TopNSpec, store: Store, table: String, late_rows: Arc<AtomicU64>) -> EngineResult<Self> {
        assert!(spec.limit >= 1 && spec.limit <= MAX_TOP_N, "the planner bounds N");
        let sort = SortSpec { partition_by: spec.partition_by.clone(), order_by: spec.order_by.clone(), input_schema: spec.input_schema.clone(), clean_by: spec.clean_by };
        let rows = SortedPartitions::new(sort, store, &table, late_rows)?;
        Ok(Self { rows, logic: TopN { spec } })
    }
}

impl RowsLogic for TopN {
    fn name(&self, cf: &str) -> String {
        format!("TopN({}; state = \"{cf}\")", self.spec.limit)
    }

    /// Reads each touched partition's first N before and after the chunk and emits the
    /// difference, rank by rank.
    fn apply(&mut self, rows: &mut SortedPartitions, chunk: &StreamChunk) -> EngineResult<StreamChunk> {
        let staged = rows.stage(chunk)?;
        let limit = self.spec.limit;
        let before: Vec<Vec<Vec<u8>>> = staged.partitions.iter().map(|p| rows.entries(p, limit)).collect();
        rows.apply(&staged);
        let mut changed: Vec<(Vec<u8>, u64, Op)> = vec![];
        for (p, old) in staged.partitions.iter().zip(before) {
            let new = rows.entries(p, limit);
            for rank in 0..old.len().max(new.len()) {
                match (old.get(rank), new.get(rank)) {
                    (Some(o), Some(n)) if o == n => {}
                    (Some(o), Some(n)) => {
                        changed.push((o.clone(), rank as u64 + 1, Op::UpdateDelete));
                        changed.push((n.clone(), rank as u64 + 1, Op::UpdateInsert));
                    }
                    (Some(o), None) => changed.push((o.clone(), rank as u64 + 1, Op::Delete)),
                    (None, Some(n)) => changed.push((n.clone(), rank as u64 + 1, Op::Insert)),
                    (None, None) => unreachable!("rank below the longer list"),
                }
            }
        }
        self.output(rows, changed)
    }
}

impl TopN {
    fn output(&self, rows: &SortedPartitions, changed: Vec<(Vec<u8>, u64, Op)>) -> EngineResult<StreamChunk> {
        let mut columns = rows.rows(changed.iter().map(|(e, _, _)| e.as_slice()))?;
        columns.push(Arc::new(UInt64Array::from_iter_values(changed.iter().map(|c| c.1))));
        let columns = columns
            .into_iter()
            .zip(self.spec.schema.fields())
            .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c) } else { datafusion::arrow::compute::cast(&c, f.data_type()) })
            .collect::<Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new(self.spec.schema.clone(), columns)?;
        Ok(StreamChunk::new(changed.iter().map(|c| c.2).collect::<Vec<_>>(), batch))
    }
}
