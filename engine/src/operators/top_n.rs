//! Top-N per partition: `ROW_NUMBER() OVER (PARTITION BY p ORDER BY o) AS rn … WHERE rn <= N`
//! (N = 1 is dedup). Every input row is kept under
//!
//! `partition bytes ‖ (order columns, then the row)` → multiplicity
//!
//! where the order columns are encoded to sort as the `ORDER BY` says, so a partition reads
//! best-first. The entries are held in memory by partition ([`GroupedTable`]: a partition is
//! read from RocksDB with one prefix scan on first use) and written back at each barrier as
//! one batch. For each partition a chunk touches, the operator reads the first N before and
//! after applying the chunk and emits the difference, rank by rank. Ties in the
//! `ORDER BY` are broken by the whole row, so the result is deterministic.
//!
//! When the first `PARTITION BY` expression is an input column carrying a watermark (a window
//! column: the hot items of each window), the partitions the watermark has passed can never
//! change again: their state is freed with one range delete (their rows stay in the view), and
//! rows that arrive for them later are dropped and counted as late.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, UInt64Array};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;
use openclaw_storage::{CfKind, RowCodec, StateWrite, Store};

use crate::state::{Count, GroupedTable};
use crate::{Barrier, EngineResult, Message, Op, Operator, OperatorContext, StreamChunk, Watermark};

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

pub struct TopNOperator {
    spec: TopNSpec,
    store: Store,
    /// `partition ‖ entry → count`, held in memory by partition, written back at barriers.
    table: GroupedTable<Count>,
    cf: Arc<str>,
    partition_codec: Option<RowCodec>,
    /// Order columns then the input row.
    entry_codec: RowCodec,
    /// With [`TopNSpec::clean_by`]: the watermark it has reached, in microseconds; every
    /// partition below is freed, and rows for them are late.
    closed_below_us: Option<i64>,
    /// The view's count of late rows dropped.
    late_rows: Arc<AtomicU64>,
}

impl TopNOperator {
    pub fn new(spec: TopNSpec, store: Store, table: String, late_rows: Arc<AtomicU64>) -> EngineResult<Self> {
        assert!(spec.limit >= 1 && spec.limit <= MAX_TOP_N, "the planner bounds N");
        let input = &spec.input_schema;
        let partition_codec = if spec.partition_by.is_empty() {
            None
        } else {
            let fields = spec
                .partition_by
                .iter()
                .enumerate()
                .map(|(i, e)| Ok(Field::new(format!("p{i}"), e.data_type(input)?, true)))
                .collect::<EngineResult<Vec<_>>>()?;
            Some(RowCodec::new(Arc::new(Schema::new(fields)))?)
        };
        let mut fields = vec![];
        let mut options = vec![];
        for (i, (e, o)) in spec.order_by.iter().enumerate() {
            fields.push(Field::new(format!("o{i}"), e.data_type(input)?, true));
            options.push(*o);
        }
        for f in input.fields() {
            fields.push(f.as_ref().clone().with_nullable(true));
            options.push(SortOptions::default());
        }
        let entry_codec = RowCodec::with_order(Arc::new(Schema::new(fields)), &options)?;
        store.create_cf(&table, CfKind::Counters)?;
        let cf: Arc<str> = Arc::from(table.as_str());
        let table = GroupedTable::new(store.clone(), cf.clone())?;
        Ok(Self { spec, store, table, cf, partition_codec, entry_codec, closed_below_us: None, late_rows })
    }

    fn eval(exprs: impl Iterator<Item = Arc<dyn PhysicalExpr>>, batch: &RecordBatch) -> EngineResult<Vec<ArrayRef>> {
        exprs.map(|e| Ok(e.evaluate(batch)?.into_array(batch.num_rows())?)).collect()
    }

    /// The first `limit` entries (expanded by multiplicity) of a loaded partition, best first.
    fn read_top(&self, partition: &[u8]) -> Vec<Vec<u8>> {
        let mut top = vec![];
        for (entry, count) in self.table.members(partition) {
            for _ in 0..count.0.max(0) {
                if top.len() == self.spec.limit {
                    return top;
                }
                top.push(entry.to_vec());
            }
        }
        top
    }

    fn apply(&mut self, chunk: &StreamChunk) -> EngineResult<StreamChunk> {
        let batch = chunk.batch();
        let n = batch.num_rows();
        let partitions: Vec<Vec<u8>> = match &self.partition_codec {
            None => vec![vec![]; n],
            Some(codec) => {
                let rows = codec.encode(&Self::eval(self.spec.partition_by.iter().cloned(), batch)?)?;
                rows.iter().map(|r| r.as_ref().to_vec()).collect()
            }
        };
        let mut entry_cols = Self::eval(self.spec.order_by.iter().map(|(e, _)| e.clone()), batch)?;
        entry_cols.extend(batch.columns().iter().cloned());
        let entries = self.entry_codec.encode(&entry_cols)?;
        let mut dirty: Vec<&[u8]> = vec![];
        let mut deltas: HashMap<(usize, &[u8]), i64> = HashMap::new();
        let mut seen: HashMap<&[u8], usize> = HashMap::new();
        for i in 0..n {
            let p = *seen.entry(partitions[i].as_slice()).or_insert_with(|| {
                dirty.push(partitions[i].as_slice());
                dirty.len() - 1
            });
            *deltas.entry((p, entries.row(i).data())).or_default() += chunk.ops()[i].sign();
        }
        self.table.load(dirty.iter().copied())?;
        let before: Vec<Vec<Vec<u8>>> = dirty.iter().map(|p| self.read_top(p)).collect();
        for ((p, entry), delta) in deltas {
            if delta != 0 {
                self.table.update(dirty[p], entry, |c| c.0 += delta);
            }
        }
        let mut changed: Vec<(Vec<u8>, u64, Op)> = vec![];
        for (p, old) in dirty.iter().zip(before) {
            let new = self.read_top(p);
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
        self.output(changed)
    }

    /// Drops the rows of partitions the watermark has passed, counting them.
    fn drop_late(&self, chunk: StreamChunk) -> EngineResult<StreamChunk> {
        let (Some(column), Some(closed)) = (self.spec.clean_by, self.closed_below_us) else { return Ok(chunk) };
        let keep = crate::watermark::not_passed(chunk.batch().column(column), closed)?;
        let late = keep.len() - keep.true_count();
        if late == 0 {
            return Ok(chunk);
        }
        self.late_rows.fetch_add(late as u64, Ordering::Relaxed);
        chunk.filter(&keep)
    }

    /// Frees the partitions whose first `PARTITION BY` value is below `closed_us`, when there
    /// is one (so that watermarks leave no range tombstones behind for nothing).
    fn free_partitions(&mut self, column: usize, closed_us: i64) -> EngineResult<()> {
        let bound = if closed_us == i64::MAX {
            // The end of the input: above every encoded key (valid values start with 0x01).
            vec![0xFF]
        } else {
            let field = self.spec.input_schema.field(column).clone().with_nullable(true);
            let codec = RowCodec::new(Arc::new(Schema::new(vec![field.clone()])))?;
            let micros = datafusion::common::ScalarValue::TimestampMicrosecond(Some(closed_us), None).to_array()?;
            let value = datafusion::arrow::compute::cast(&micros, field.data_type())?;
            codec.encode(&[value])?.row(0).as_ref().to_vec()
        };
        // Null partitions (0x00) are never behind a watermark: start at the first valid value.
        let from = [0x01u8];
        if !self.table.forget_range(&from, &bound) {
            return Ok(());
        }
        let mut below = false;
        self.store.scan(&self.cf, None, |key, _| {
            if key < from.as_slice() {
                return true;
            }
            below = key < bound.as_slice();
            false
        })?;
        if below {
            self.store.delete_range(&self.cf, &from, &bound)?;
        }
        Ok(())
    }

    /// Writes the changes since the last write-back as one batch, then evicts what the state
    /// cache cannot hold.
    fn write_back(&mut self) -> EngineResult<()> {
        let mut write = StateWrite::default();
        self.table.flush(&mut write);
        if !write.is_empty() {
            self.store.write_state(write)?;
        }
        self.table.evict_to_budget();
        Ok(())
    }

    fn output(&self, changed: Vec<(Vec<u8>, u64, Op)>) -> EngineResult<StreamChunk> {
        let decoded = self.entry_codec.decode(changed.iter().map(|(e, _, _)| e.as_slice()))?;
        let skip = self.spec.order_by.len();
        let mut columns: Vec<ArrayRef> = decoded.columns()[skip..].to_vec();
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

#[async_trait]
impl Operator for TopNOperator {
    fn name(&self) -> String {
        format!("TopN({}; state = \"{}\")", self.spec.limit, self.cf)
    }

    fn state_tables(&self) -> Vec<(Arc<str>, CfKind)> {
        vec![(self.cf.clone(), CfKind::Counters)]
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, ctx: &mut OperatorContext) -> EngineResult<()> {
        let chunk = self.drop_late(chunk)?;
        let out = self.apply(&chunk)?;
        // Changes cannot be evicted before they are written: when barriers are slow to come,
        // write them back early (still before the next barrier, so its snapshot is exact).
        if self.table.held_bytes() > self.store.operator_cache().limit_bytes() {
            self.write_back()?;
        }
        ctx.collect(out).await
    }

    /// Writes the changes since the last barrier (one batch) and evicts what the state cache
    /// cannot hold.
    async fn handle_checkpoint(&mut self, _barrier: &Barrier, _ctx: &mut OperatorContext) -> EngineResult<()> {
        self.write_back()
    }

    /// Frees the partitions the watermark of [`TopNSpec::clean_by`] has passed; the
    /// watermark goes on as it came (the output keeps the input's columns in place).
    async fn handle_watermark(&mut self, wm: Watermark, ctx: &mut OperatorContext) -> EngineResult<()> {
        if self.spec.clean_by == Some(wm.column) {
            let closed = self.closed_below_us.map_or(wm.time_us, |c| c.max(wm.time_us));
            self.closed_below_us = Some(closed);
            self.free_partitions(wm.column, closed)?;
        }
        ctx.outputs.send(Message::Watermark(wm)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::DataType;

    #[test]
    fn entries_sort_best_first_and_decode_back() {
        let schema = Arc::new(Schema::new(vec![Field::new("o", DataType::Int64, true), Field::new("v", DataType::Int64, true)]));
        let desc = SortOptions { descending: true, nulls_first: false };
        let codec = RowCodec::with_order(schema, &[desc, SortOptions::default()]).unwrap();
        let cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![1, 9, 5])), Arc::new(Int64Array::from(vec![10, 90, 50]))];
        let rows = codec.encode(&cols).unwrap();
        let mut keys: Vec<Vec<u8>> = rows.iter().map(|r| r.as_ref().to_vec()).collect();
        keys.sort();
        let back = codec.decode(keys.iter().map(|k| k.as_slice())).unwrap();
        let order: Vec<i64> = back.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec();
        assert_eq!(order, vec![9, 5, 1], "descending ORDER BY reads best first");
    }
}
