use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::AsArray;
use datafusion::physical_expr::PhysicalExpr;

use crate::eval_errors::ErrorTable;
use crate::{EngineResult, Operator, OperatorContext, StreamChunk};

/// Keeps the rows for which a predicate is true. Works for every op alike: a deleted row
/// passes exactly when its insert passed, because the predicate is deterministic.
pub struct FilterOperator {
    predicate: Arc<dyn PhysicalExpr>,
    /// Where rows whose predicate fails go, in a view; without one, a failure fails the
    /// dataflow.
    errors: Option<ErrorTable>,
}

impl FilterOperator {
    pub fn new(predicate: Arc<dyn PhysicalExpr>) -> Self {
        Self { predicate, errors: None }
    }

    /// Counts rows whose predicate fails in `errors` instead of failing.
    pub fn with_errors(mut self, errors: ErrorTable) -> Self {
        self.errors = Some(errors);
        self
    }
}

#[async_trait]
impl Operator for FilterOperator {
    fn name(&self) -> String {
        format!("Filter({})", self.predicate)
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, ctx: &mut OperatorContext) -> EngineResult<()> {
        let predicate = &self.predicate;
        let eval = |b: &datafusion::arrow::array::RecordBatch| Ok(predicate.evaluate(b)?.into_array(b.num_rows())?);
        let (chunk, mask) = match &mut self.errors {
            None => {
                let mask = eval(chunk.batch())?;
                (chunk, mask)
            }
            Some(errors) => errors.evaluate(chunk, eval)?,
        };
        let out = chunk.filter(mask.as_boolean())?;
        ctx.collect(out).await
    }

    fn state_tables(&self) -> Vec<(Arc<str>, openclaw_storage::CfKind)> {
        self.errors.as_ref().map(ErrorTable::state_tables).unwrap_or_default()
    }
}
