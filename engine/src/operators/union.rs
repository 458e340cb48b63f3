use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use crate::{EngineResult, Operator, OperatorContext, StreamChunk};

/// `UNION ALL`: merges its inputs (the runtime loop does the merging and barrier alignment)
/// and relabels their batches with the union's schema.
pub struct UnionOperator {
    schema: SchemaRef,
    partitions: bool,
}

impl UnionOperator {
    pub fn new(schema: SchemaRef) -> Self {
        Self { schema, partitions: false }
    }

    /// The merge after the partitions of a stateful operator (see
    /// [`Operator::inputs_are_partitions`]).
    pub fn of_partitions(schema: SchemaRef) -> Self {
        Self { schema, partitions: true }
    }
}

#[async_trait]
impl Operator for UnionOperator {
    fn name(&self) -> String {
        if self.partitions { "Union(partitions)".to_string() } else { "Union".to_string() }
    }

    fn inputs_are_partitions(&self) -> bool {
        self.partitions
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, ctx: &mut OperatorContext) -> EngineResult<()> {
        let batch = RecordBatch::try_new(self.schema.clone(), chunk.columns().to_vec())?;
        ctx.collect(chunk.with_batch(batch)).await
    }
}
