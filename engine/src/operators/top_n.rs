//! Top-N per partition: `ROW_NUMBER() OVER (PARTITION BY p ORDER BY o) AS rn … WHERE rn <= N`
//! (N = 1 is dedup). Every input row is kept in RocksDB under
//!
//! `partition bytes ‖ (order columns, then the row)` → multiplicity
//!
//! where the order columns are encoded to sort as the `ORDER BY` says, so a prefix scan reads
//! a partition best-first. For each partition a chunk touches, the operator reads the first N
//! before and after applying the chunk and emits the difference, rank by rank. Ties in the
//! `ORDER BY` are broken by the whole row, so the result is deterministic.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;
use openclaw_storage::{decode_count, CfKind, RowCodec, StateWrite, Store};

use crate::{EngineResult, Op, Operator, OperatorContext, StreamChunk};

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
}

pub struct TopNOperator {
    spec: TopNSpec,
    store: Store,
    cf: Arc<str>,
    partition_codec: Option<RowCodec>,
    /// Order columns then the input row.
    entry_codec: RowCodec,
}

impl TopNOperator {
    pub fn new(spec: TopNSpec, store: Store, table: String) -> EngineResult<Self> {
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
        Ok(Self { spec, store, cf: Arc::from(table.as_str()), partition_codec, entry_codec })
    }

    fn eval(exprs: impl Iterator<Item = Arc<dyn PhysicalExpr>>, batch: &RecordBatch) -> EngineResult<Vec<ArrayRef>> {
        exprs.map(|e| Ok(e.evaluate(batch)?.into_array(batch.num_rows())?)).collect()
    }

    /// The first `limit` entries (expanded by multiplicity) of a partition, best first.
    fn read_top(&self, partition: &[u8]) -> EngineResult<Vec<Vec<u8>>> {
        let mut top = vec![];
        self.store.scan_prefix(&self.cf, partition, false, |key, value| {
            let count = decode_count(value);
            for _ in 0..count.max(0) {
                if top.len() == self.spec.limit {
                    return false;
                }
                top.push(key[partition.len()..].to_vec());
            }
            top.len() < self.spec.limit
        })?;
        Ok(top)
    }

    fn apply(&self, chunk: &StreamChunk) -> EngineResult<StreamChunk> {
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
        let before: Vec<Vec<Vec<u8>>> = dirty.iter().map(|p| self.read_top(p)).collect::<EngineResult<_>>()?;
        let mut write = StateWrite::default();
        for ((p, entry), delta) in deltas {
            if delta != 0 {
                let mut key = dirty[p].to_vec();
                key.extend_from_slice(entry);
                write.add_count(&self.cf, key, delta);
            }
        }
        self.store.write_state(write)?;
        let mut changed: Vec<(Vec<u8>, u64, Op)> = vec![];
        for (p, old) in dirty.iter().zip(before) {
            let new = self.read_top(p)?;
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
        let out = self.apply(&chunk)?;
        ctx.collect(out).await
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
