//! [`SortedPartitions`]: the input rows of an operator over `PARTITION BY ... ORDER BY ...`
//! (a top-N, an over-window), kept under
//!
//! `partition bytes ‖ (order columns, then the row)` → multiplicity
//!
//! where the order columns are encoded to sort as the `ORDER BY` says, so a partition reads in
//! order. The entries are held in memory by partition ([`GroupedTable`]: a partition is read
//! from RocksDB with one prefix scan on first use) and written back at each barrier as one
//! batch. Ties in the `ORDER BY` are ordered by the whole row, so what reads them is
//! deterministic.
//!
//! When the first `PARTITION BY` expression is an input column carrying a watermark (a window
//! column), the partitions the watermark has passed can never change again: their state is
//! freed with one range delete, and rows that arrive for them later are dropped and counted as
//! late.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;
use openclaw_storage::{CfKind, RowCodec, StateWrite, Store};

use crate::state::{Count, GroupedTable};
use crate::{EngineResult, StreamChunk, Watermark};

/// What the rows are partitioned and ordered by.
#[derive(Clone)]
pub struct SortSpec {
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    pub order_by: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
    pub input_schema: SchemaRef,
    /// The input column of the first `PARTITION BY` expression, when it is that column
    /// itself and carries a watermark: partitions behind the watermark are freed.
    pub clean_by: Option<usize>,
}

/// A chunk's changes, grouped by the partitions they touch.
pub struct Staged {
    /// The partitions the chunk touches, in first-seen order.
    pub partitions: Vec<Vec<u8>>,
    /// Per entry: its partition (an index into `partitions`), its bytes and its net change.
    deltas: Vec<(usize, Vec<u8>, i64)>,
}

pub struct SortedPartitions {
    spec: SortSpec,
    store: Store,
    /// `partition ‖ entry → count`, held in memory by partition, written back at barriers.
    table: GroupedTable<Count>,
    cf: Arc<str>,
    partition_codec: Option<RowCodec>,
    /// Order columns then the input row.
    entry_codec: RowCodec,
    /// With [`SortSpec::clean_by`]: the watermark it has reached, in microseconds; every
    /// partition below is freed, and rows for them are late.
    closed_below_us: Option<i64>,
    /// The view's count of late rows dropped.
    late_rows: Arc<AtomicU64>,
}

impl SortedPartitions {
    /// Over column family `table`, created here.
    pub fn new(spec: SortSpec, store: Store, table: &str, late_rows: Arc<AtomicU64>) -> EngineResult<Self> {
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
        store.create_cf(table, CfKind::Counters)?;
        let cf: Arc<str> = Arc::from(table);
        let table = GroupedTable::new(store.clone(), cf.clone())?;
        Ok(Self { spec, store, table, cf, partition_codec, entry_codec, closed_below_us: None, late_rows })
    }

    pub fn spec(&self) -> &SortSpec {
        &self.spec
    }

    pub fn cf(&self) -> &Arc<str> {
        &self.cf
    }

    fn eval(exprs: impl Iterator<Item = Arc<dyn PhysicalExpr>>, batch: &RecordBatch) -> EngineResult<Vec<ArrayRef>> {
        exprs.map(|e| Ok(e.evaluate(batch)?.into_array(batch.num_rows())?)).collect()
    }

    /// Groups `chunk`'s rows by partition and entry, and loads the partitions it touches.
    pub fn stage(&mut self, chunk: &StreamChunk) -> EngineResult<Staged> {
        let batch = chunk.batch();
        let n = batch.num_rows();
        let partition_keys: Vec<Vec<u8>> = match &self.partition_codec {
            None => vec![vec![]; n],
            Some(codec) => {
                let rows = codec.encode(&Self::eval(self.spec.partition_by.iter().cloned(), batch)?)?;
                rows.iter().map(|r| r.as_ref().to_vec()).collect()
            }
        };
        let mut entry_cols = Self::eval(self.spec.order_by.iter().map(|(e, _)| e.clone()), batch)?;
        entry_cols.extend(batch.columns().iter().cloned());
        let entries = self.entry_codec.encode(&entry_cols)?;
        let mut partitions: Vec<Vec<u8>> = vec![];
        let mut seen: HashMap<&[u8], usize> = HashMap::new();
        let mut net: HashMap<(usize, &[u8]), i64> = HashMap::new();
        for i in 0..n {
            let p = *seen.entry(partition_keys[i].as_slice()).or_insert_with(|| {
                partitions.push(partition_keys[i].clone());
                partitions.len() - 1
            });
            *net.entry((p, entries.row(i).data())).or_default() += chunk.ops()[i].sign();
        }
        let deltas = net.into_iter().filter(|(_, d)| *d != 0).map(|((p, e), d)| (p, e.to_vec(), d)).collect();
        self.table.load(partitions.iter().map(Vec::as_slice))?;
        Ok(Staged { partitions, deltas })
    }

    /// Applies a staged chunk's changes to the (loaded) partitions.
    pub fn apply(&mut self, staged: &Staged) {
        for (p, entry, delta) in &staged.deltas {
            self.table.update(&staged.partitions[*p], entry, |c| c.0 += delta);
        }
    }

    /// A loaded partition's entries in order, each as many times as it occurs, up to `limit`.
    pub fn entries(&self, partition: &[u8], limit: usize) -> Vec<Vec<u8>> {
        let mut out = vec![];
        for (entry, count) in self.table.members(partition) {
            for _ in 0..count.0.max(0) {
                if out.len() == limit {
                    return out;
                }
                out.push(entry.to_vec());
            }
        }
        out
    }

    /// The input rows of `entries`.
    pub fn rows<'a>(&self, entries: impl IntoIterator<Item = &'a [u8]>) -> EngineResult<Vec<ArrayRef>> {
        let decoded = self.entry_codec.decode(entries)?;
        Ok(decoded.columns()[self.spec.order_by.len()..].to_vec())
    }

    /// Drops the rows of partitions the watermark has passed, counting them.
    pub fn drop_late(&self, chunk: StreamChunk) -> EngineResult<StreamChunk> {
        let (Some(column), Some(closed)) = (self.spec.clean_by, self.closed_below_us) else { return Ok(chunk) };
        let keep = crate::watermark::not_passed(chunk.batch().column(column), closed)?;
        let late = keep.len() - keep.true_count();
        if late == 0 {
            return Ok(chunk);
        }
        self.late_rows.fetch_add(late as u64, Ordering::Relaxed);
        chunk.filter(&keep)
    }

    /// Frees the partitions `wm` has passed, when it is [`SortSpec::clean_by`]'s.
    pub fn on_watermark(&mut self, wm: &Watermark) -> EngineResult<()> {
        if self.spec.clean_by != Some(wm.column) {
            return Ok(());
        }
        let closed = self.closed_below_us.map_or(wm.time_us, |c| c.max(wm.time_us));
        self.closed_below_us = Some(closed);
        self.free_partitions(wm.column, closed)
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

    /// Writes the changes since the last write-back as one batch with `write` (the operator's
    /// other changes), then evicts what the state cache cannot hold.
    pub fn write_back(&mut self, mut write: StateWrite) -> EngineResult<()> {
        self.table.flush(&mut write);
        if !write.is_empty() {
            self.store.write_state(write)?;
        }
        self.table.evict_to_budget();
        Ok(())
    }

    /// Whether the changes held exceed the state cache, so that they must be written back
    /// early: they cannot be evicted before they are written (still before the next barrier,
    /// so its snapshot is exact).
    pub fn is_full(&self) -> bool {
        self.table.held_bytes() > self.store.operator_cache().limit_bytes()
    }

    /// Removes every occurrence of `entry` from `partition` (loaded).
    pub fn remove(&mut self, partition: &[u8], entry: &[u8]) {
        self.table.update(partition, entry, |c| c.0 = 0);
    }

    /// Makes sure `partitions` are in memory.
    pub fn load<'a>(&mut self, partitions: impl IntoIterator<Item = &'a [u8]>) -> EngineResult<()> {
        self.table.load(partitions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int64Array};
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
