use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::AsArray;
use datafusion::physical_expr::PhysicalExpr;

use crate::{EngineResult, Operator, OperatorContext, StreamChunk};

/// Keeps the rows for which a predicate is true. Works for every op alike: a deleted row
/// passes exactly when its insert passed, because the predicate is deterministic.
pub struct FilterOperator {
    predicate: Arc<dyn PhysicalExpr>,
}

impl FilterOperator {
    pub fn new(predicate: Arc<dyn PhysicalExpr>) -> Self {
        Self { predicate }
    }
}

#[async_trait]
impl Operator for FilterOperator {
    fn name(&self) -> String {
        format!("Filter({})", self.predicate)
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, ctx: &mut OperatorContext) -> EngineResult<()> {
        let mask = self.predicate.evaluate(chunk.batch())?.into_array(chunk.num_rows())?;
        let out = chunk.filter(mask.as_boolean())?;
        ctx.collect(out).await
    }
}
