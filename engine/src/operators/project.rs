use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{new_null_array, ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use crate::chunk::nullable_schema;
use crate::eval_errors::ErrorTable;
use crate::watermark::{as_micros, watermark_value};
use crate::{EngineResult, Message, Operator, OperatorContext, StreamChunk, Watermark};

/// Computes new columns from each row; ops pass through unchanged.
pub struct ProjectOperator {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    /// Known once the plan is built ([`Self::with_input`]) or the first chunk arrives.
    input_schema: Option<SchemaRef>,
    /// Where rows whose expressions fail go, in a view; without one, a failure fails the
    /// dataflow.
    errors: Option<ErrorTable>,
}

impl ProjectOperator {
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> Self {
        assert_eq!(exprs.len(), schema.fields().len());
        Self { exprs, schema, input_schema: None, errors: None }
    }

    /// Counts rows whose expressions fail in `errors` instead of failing.
    pub fn with_errors(mut self, errors: ErrorTable) -> Self {
        self.errors = Some(errors);
        self
    }

    /// The new columns of `batch`, in a batch of the output schema.
    fn evaluate(&self, batch: &RecordBatch) -> EngineResult<RecordBatch> {
        let n = batch.num_rows();
        let columns = self.exprs.iter().map(|e| e.evaluate(batch)?.into_array(n)).collect::<Result<Vec<_>, _>>()?;
        // The row count is explicit: `count(*)` projects no columns at all.
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        Ok(RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?)
    }

    /// The input's schema, which mapping watermarks needs.
    pub fn with_input(mut self, input: SchemaRef) -> Self {
        self.input_schema = Some(input);
        self
    }
}

/// Whether `expr` never decreases when input column `column` grows and the other columns it
/// reads are constants: then a watermark on `column` carries over to the expression.
pub fn monotone_in(expr: &Arc<dyn PhysicalExpr>, column: usize) -> bool {
    use datafusion::logical_expr::Operator as BinOp;
    use datafusion::physical_expr::ScalarFunctionExpr;
    use datafusion::physical_plan::expressions::{BinaryExpr, CastExpr, Column, Literal};
    if let Some(c) = expr.downcast_ref::<Column>() {
        return c.index() == column;
    }
    if let Some(cast) = expr.downcast_ref::<CastExpr>() {
        return cast.cast_type().is_temporal() && monotone_in(cast.expr(), column);
    }
    if let Some(b) = expr.downcast_ref::<BinaryExpr>() {
        let constant = |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<Literal>().is_some();
        return match b.op() {
            BinOp::Plus => (monotone_in(b.left(), column) && constant(b.right())) || (constant(b.left()) && monotone_in(b.right(), column)),
            BinOp::Minus => monotone_in(b.left(), column) && constant(b.right()),
            _ => false,
        };
    }
    if let Some(f) = expr.downcast_ref::<ScalarFunctionExpr>() {
        let args = f.args();
        let constant = |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<Literal>().is_some();
        return match f.name() {
            // date_bin(stride, ts[, origin]) and date_trunc(unit, ts)
            "date_bin" | "date_trunc" => {
                args.len() >= 2 && constant(&args[0]) && monotone_in(&args[1], column) && args[2..].iter().all(constant)
            }
            _ => false,
        };
    }
    false
}

/// Whether `expr` is SQL's `PROCTIME()`: the wall clock as the chunk is processed, the same
/// for its rows and never less for a later chunk's, so the column carries a watermark.
pub fn is_processing_time(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.downcast_ref::<datafusion::physical_expr::ScalarFunctionExpr>().is_some_and(|f| f.name() == "proctime" && f.args().is_empty())
}

impl ProjectOperator {
    /// The watermark of output `out` given the input column's, by evaluating the expression
    /// on a row holding just that value. The end-of-input watermark maps to itself.
    fn map_watermark(&self, out: usize, wm: Watermark, input: &SchemaRef) -> Option<Watermark> {
        if wm.time_us == i64::MAX {
            return Some(Watermark { column: out, time_us: i64::MAX });
        }
        let columns: Vec<ArrayRef> = input
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if i == wm.column {
                    watermark_value(wm.time_us, f.data_type())
                } else {
                    Some(new_null_array(f.data_type(), 1))
                }
            })
            .collect::<Option<_>>()?;
        let row = RecordBatch::try_new(nullable_schema(input), columns).ok()?;
        let value = self.exprs[out].evaluate(&row).ok()?.into_array(1).ok()?;
        as_micros(value.as_ref()).map(|time_us| Watermark { column: out, time_us })
    }
}

#[async_trait]
impl Operator for ProjectOperator {
    fn name(&self) -> String {
        let exprs: Vec<String> = self.exprs.iter().map(|e| e.to_string()).collect();
        format!("Project({})", exprs.join(", "))
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, ctx: &mut OperatorContext) -> EngineResult<()> {
        let (chunk, batch) = match self.errors.take() {
            None => {
                let batch = self.evaluate(chunk.batch())?;
                (chunk, batch)
            }
            Some(mut errors) => {
                let result = errors.evaluate(chunk, |b| self.evaluate(b));
                self.errors = Some(errors);
                result?
            }
        };
        let n = batch.num_rows();
        // Processing time only grows: each chunk's is a watermark of its column.
        let processed: Vec<Watermark> = (0..self.exprs.len())
            .filter(|&out| n > 0 && is_processing_time(&self.exprs[out]))
            .filter_map(|out| as_micros(batch.column(out).slice(0, 1).as_ref()).map(|time_us| Watermark { column: out, time_us }))
            .collect();
        ctx.collect(chunk.with_batch(batch)).await?;
        for wm in processed {
            ctx.outputs.send(Message::Watermark(wm)).await?;
        }
        Ok(())
    }

    fn state_tables(&self) -> Vec<(Arc<str>, openclaw_storage::CfKind)> {
        self.errors.as_ref().map(ErrorTable::state_tables).unwrap_or_default()
    }

    async fn handle_watermark(&mut self, wm: Watermark, ctx: &mut OperatorContext) -> EngineResult<()> {
        let Some(input) = self.input_schema.clone() else { return Ok(()) };
        for out in 0..self.exprs.len() {
            if monotone_in(&self.exprs[out], wm.column) {
                if let Some(mapped) = self.map_watermark(out, wm, &input) {
                    ctx.outputs.send(Message::Watermark(mapped)).await?;
                }
            }
        }
        Ok(())
    }
}
