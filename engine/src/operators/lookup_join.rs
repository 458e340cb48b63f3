//! A temporal join (`s JOIN t FOR SYSTEM_TIME AS OF PROCTIME()`): each row of the stream is
//! joined with table `t` as `t` stands when the row arrives, by a lookup of `t`'s primary key
//! in `t`'s own stored rows (one `multi_get` per chunk). Later changes of `t` do not revisit
//! rows already joined, so the operator keeps no state of its own; the stream only gains rows
//! (the planner checks), so each output row is final.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{new_null_array, Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use super::MaterializedState;
use crate::{EngineResult, Message, Operator, OperatorContext, StreamChunk, Watermark};

#[derive(Clone)]
pub struct LookupJoinSpec {
    /// A left join keeps a stream row that finds nothing, with NULLs for the table's columns.
    pub left_outer: bool,
    /// Over the stream's rows: the table's primary-key values to look up, in its key's order
    /// and types.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The table's stored rows.
    pub table: Arc<MaterializedState>,
    /// The table's columns the join outputs, after the stream's.
    pub table_columns: Vec<usize>,
    /// A condition over the table's row alone (a filter of the looked-up side): a row failing
    /// it is not found.
    pub table_filter: Option<Arc<dyn PhysicalExpr>>,
    /// A condition over the joined row (stream columns, then the table's output columns).
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Stream columns, then the table's output columns.
    pub schema: SchemaRef,
}

pub struct LookupJoinOperator {
    spec: LookupJoinSpec,
}

impl LookupJoinOperator {
    pub fn new(spec: LookupJoinSpec) -> Self {
        Self { spec }
    }

    fn join(&self, chunk: &StreamChunk) -> EngineResult<StreamChunk> {
        let batch = chunk.batch();
        let n = batch.num_rows();
        let keys = self.spec.keys.iter().map(|k| Ok(k.evaluate(batch)?.into_array(n)?)).collect::<EngineResult<Vec<ArrayRef>>>()?;
        let (found, positions) = self.spec.table.lookup(&keys)?;
        let passing: Option<BooleanArray> = match &self.spec.table_filter {
            Some(f) => Some(boolean(f.evaluate(&found)?.into_array(found.num_rows())?)),
            None => None,
        };
        // Per stream row, the index of its table row, NULL when none (or it fails the filter).
        let index: UInt32Array = positions.iter().map(|p| p.filter(|&i| passing.as_ref().is_none_or(|m| m.value(i as usize)))).collect();
        let mut columns = batch.columns().to_vec();
        for &c in &self.spec.table_columns {
            columns.push(match found.num_rows() {
                0 => new_null_array(found.column(c).data_type(), n),
                _ => take(found.column(c), &index, None)?,
            });
        }
        let joined = RecordBatch::try_new(self.spec.schema.clone(), columns)?;
        // Found (and passing the table's own filter), then the join's condition: two kernels.
        let found_row = datafusion::arrow::compute::is_not_null(&index)?;
        let matched = match &self.spec.filter {
            Some(f) => datafusion::arrow::compute::and(&found_row, &boolean(f.evaluate(&joined)?.into_array(n)?))?,
            None => found_row,
        };
        if !self.spec.left_outer {
            return chunk.with_batch(joined).filter(&matched);
        }
        // A left join: one row per stream row, the table's columns NULL where nothing matched.
        let width = batch.num_columns();
        let mut columns = joined.columns().to_vec();
        for column in &mut columns[width..] {
            *column = datafusion::arrow::compute::nullif(column, &datafusion::arrow::compute::not(&matched)?)?;
        }
        Ok(chunk.with_batch(RecordBatch::try_new(self.spec.schema.clone(), columns)?))
    }
}

/// A condition's result with NULL as false.
fn boolean(values: ArrayRef) -> BooleanArray {
    let values = values.as_any().downcast_ref::<BooleanArray>().cloned().unwrap_or_else(|| BooleanArray::from(vec![false; values.len()]));
    match values.null_count() {
        0 => values,
        _ => datafusion::arrow::compute::prep_null_mask_filter(&values),
    }
}

#[async_trait]
impl Operator for LookupJoinOperator {
    fn name(&self) -> String {
        format!("LookupJoin({})", self.spec.table.cf)
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, ctx: &mut OperatorContext) -> EngineResult<()> {
        let out = self.join(&chunk)?;
        ctx.collect(out).await
    }

    /// The stream's columns keep their places: their watermarks go on as they came.
    async fn handle_watermark(&mut self, wm: Watermark, ctx: &mut OperatorContext) -> EngineResult<()> {
        ctx.outputs.send(Message::Watermark(wm)).await
    }
}
