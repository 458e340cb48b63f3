use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use crate::{EngineResult, Operator, OperatorContext, StreamChunk};

/// Computes new columns from each row; ops pass through unchanged.
pub struct ProjectOperator {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

impl ProjectOperator {
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> Self {
        assert_eq!(exprs.len(), schema.fields().len());
        Self { exprs, schema }
    }
}

#[async_trait]
impl Operator for ProjectOperator {
    fn name(&self) -> String {
        let exprs: Vec<String> = self.exprs.iter().map(|e| e.to_string()).collect();
        format!("Project({})", exprs.join(", "))
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, ctx: &mut OperatorContext) -> EngineResult<()> {
        let n = chunk.num_rows();
        let columns = self
            .exprs
            .iter()
            .map(|e| e.evaluate(chunk.batch())?.into_array(n))
            .collect::<Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        ctx.collect(chunk.with_batch(batch)).await
    }
}
