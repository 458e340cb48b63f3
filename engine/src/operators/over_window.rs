//! Window functions over `PARTITION BY ... ORDER BY ...`, maintained: `rank()`,
//! `dense_rank()`, `row_number()` without a bound, `lag`/`lead`, `first_value`/`last_value`,
//! `ntile`, running and framed aggregates (`ROWS`/`RANGE BETWEEN ...`). Every input row is
//! kept in order by partition ([`SortedPartitions`]). For each partition a chunk touches, the
//! operator evaluates the window functions over the whole partition before and after
//! applying the chunk (DataFusion's own window evaluators, one call per partition and
//! function over its rows as arrays) and emits the difference: the rows whose output changed
//! are retracted and inserted again. A change therefore costs the size of its partition, as
//! recomputing a window does in RisingWave's first over-window executor: meant for partitions
//! of up to thousands of rows, not one partition of millions. Ties in the `ORDER BY` are
//! ordered by the whole row, so `row_number()` and `lag` over ties are deterministic.
//! Partitions led by a watermarked column are freed once the watermark passes them.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::physical_expr::window::WindowExpr;
use openclaw_storage::{RowCodec, Store};

use super::partitioned_rows::{PartitionedRowsOperator, RowsLogic};
use crate::state::sorted::{SortSpec, SortedPartitions};
use crate::{EngineResult, Op, StreamChunk};

#[derive(Clone)]
pub struct OverWindowSpec {
    pub sort: SortSpec,
    /// The window functions, each over the input's columns with `sort`'s partitioning and
    /// order, evaluated over one partition's rows at a time.
    pub functions: Vec<Arc<dyn WindowExpr>>,
    /// The input's columns, then one per function.
    pub schema: SchemaRef,
    /// When the functions are a session window's bounds: the operator frees closed sessions.
    pub session: Option<super::session::SessionSpec>,
}

/// The over-window's logic over its [`SortedPartitions`].
pub struct OverWindow {
    spec: OverWindowSpec,
    /// The input's schema with every column nullable, as decoded rows are.
    decoded_schema: SchemaRef,
    /// Encodes output rows, to tell which changed.
    output_codec: RowCodec,
}

pub type OverWindowOperator = PartitionedRowsOperator<OverWindow>;

impl OverWindowOperator {
    pub fn new(spec: OverWindowSpec, store: Store, table: String, late_rows: Arc<AtomicU64>) -> EngineResult<Self> {
        let rows = SortedPartitions::new(spec.sort.clone(), store, &table, late_rows)?;
        Ok(Self { rows, logic: OverWindow::new(spec)? })
    }
}

/// The output rows of some partitions, as they stand.
pub(crate) struct Evaluated {
    pub batch: RecordBatch,
    /// The entry of each row, in the rows' order.
    pub entries: Vec<Vec<u8>>,
    /// Per partition with rows: its index among those asked for, its first row and its count.
    pub bounds: Vec<(usize, usize, usize)>,
}

impl RowsLogic for OverWindow {
    fn name(&self, cf: &str) -> String {
        format!("OverWindow(state = \"{cf}\")")
    }

    /// Evaluates the touched partitions before and after the chunk and emits the difference.
    fn apply(&mut self, rows: &mut SortedPartitions, chunk: &StreamChunk) -> EngineResult<StreamChunk> {
        let staged = rows.stage(chunk)?;
        let before = self.evaluate(rows, &staged.partitions)?;
        rows.apply(&staged);
        let after = self.evaluate(rows, &staged.partitions)?;
        self.difference(&before, &after)
    }
}

impl OverWindow {
    pub(crate) fn new(spec: OverWindowSpec) -> EngineResult<Self> {
        let nullable = |s: &Schema| Arc::new(Schema::new(s.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>()));
        let decoded_schema = nullable(&spec.sort.input_schema);
        let output_codec = RowCodec::new(nullable(&spec.schema))?;
        Ok(Self { spec, decoded_schema, output_codec })
    }

    fn evaluate(&self, rows: &SortedPartitions, partitions: &[Vec<u8>]) -> EngineResult<RecordBatch> {
        Ok(self.evaluate_entries(rows, partitions)?.batch)
    }

    /// The output rows of `partitions` (loaded) as they stand: their input rows in order, with
    /// each window function evaluated over each partition.
    pub(crate) fn evaluate_entries(&self, rows: &SortedPartitions, partitions: &[Vec<u8>]) -> EngineResult<Evaluated> {
        let mut entries = vec![];
        let mut bounds = vec![];
        for (i, p) in partitions.iter().enumerate() {
            let start = entries.len();
            entries.extend(rows.entries(p, usize::MAX));
            if entries.len() > start {
                bounds.push((i, start, entries.len() - start));
            }
        }
        let input = RecordBatch::try_new(self.decoded_schema.clone(), rows.rows(entries.iter().map(Vec::as_slice))?)?;
        let mut columns: Vec<ArrayRef> = input.columns().to_vec();
        for function in &self.spec.functions {
            let parts = bounds.iter().map(|&(_, start, len)| function.evaluate(&input.slice(start, len))).collect::<Result<Vec<_>, _>>()?;
            let parts: Vec<&dyn datafusion::arrow::array::Array> = parts.iter().map(|a| a.as_ref()).collect();
            let column = match parts.is_empty() {
                true => datafusion::arrow::array::new_empty_array(function.field()?.data_type()),
                false => datafusion::arrow::compute::concat(&parts)?,
            };
            columns.push(column);
        }
        let columns = columns
            .into_iter()
            .zip(self.output_codec.schema().fields())
            .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c) } else { datafusion::arrow::compute::cast(&c, f.data_type()) })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Evaluated { batch: RecordBatch::try_new(self.output_codec.schema().clone(), columns)?, entries, bounds })
    }

    /// The rows of `before` that `after` lacks (deleted) and of `after` that `before` lacks
    /// (inserted), each as often as it differs.
    pub(crate) fn difference(&self, before: &RecordBatch, after: &RecordBatch) -> EngineResult<StreamChunk> {
        let (old, new) = (self.output_codec.encode(before.columns())?, self.output_codec.encode(after.columns())?);
        let mut net: HashMap<&[u8], i64> = HashMap::new();
        for r in old.iter() {
            *net.entry(r.data()).or_default() -= 1;
        }
        for r in new.iter() {
            *net.entry(r.data()).or_default() += 1;
        }
        let mut take = |rows: &openclaw_storage::Rows, sign: i64| -> Vec<u32> {
            let mut picked = vec![];
            for (i, r) in rows.iter().enumerate() {
                let n = net.get_mut(r.data()).expect("every row was counted");
                if *n * sign > 0 {
                    *n -= sign;
                    picked.push(i as u32);
                }
            }
            picked
        };
        let (deleted, inserted) = (take(&old, -1), take(&new, 1));
        let pick = |batch: &RecordBatch, rows: Vec<u32>| datafusion::arrow::compute::take_record_batch(batch, &UInt32Array::from(rows));
        let out = datafusion::arrow::compute::concat_batches(self.output_codec.schema(), &[pick(before, deleted.clone())?, pick(after, inserted.clone())?])?;
        let out = RecordBatch::try_new(self.spec.schema.clone(), out.columns().to_vec())?;
        let ops: Vec<Op> = deleted.iter().map(|_| Op::Delete).chain(inserted.iter().map(|_| Op::Insert)).collect();
        Ok(StreamChunk::new(ops, out))
    }
}
