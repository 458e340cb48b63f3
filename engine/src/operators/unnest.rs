//! `unnest(list)`: each input row becomes one row per element of its list columns, with the
//! row's change op. DataFusion's own `UnnestExec` does the work, over one chunk at a time, with
//! the row's position carried through as an extra column, so each output row gets its input
//! row's op. It keeps no state; the other columns keep their places, so their watermarks
//! pass through. A struct column's fields take its place as columns.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::UnnestOptions;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::unnest::{ListUnnest, UnnestExec};

use crate::chunk::nullable_schema;
use crate::{EngineError, EngineResult, Message, Op, Operator, OperatorContext, StreamChunk, Watermark};

/// The name of the column that carries each row's position through the unnest.
const POSITION: &str = "__openclaw_unnest_position";

#[derive(Clone)]
pub struct UnnestSpec {
    /// The input columns to unnest (each once, one level deep or more).
    pub lists: Vec<ListUnnest>,
    /// The input struct columns whose fields become columns in their place.
    pub structs: Vec<usize>,
    pub options: UnnestOptions,
    /// The input's columns, each list column as its elements' type.
    pub schema: SchemaRef,
    pub input_schema: SchemaRef,
}

impl UnnestSpec {
    /// How many output columns input column `i` becomes: a struct's fields, else one.
    fn output_width(&self, i: usize) -> usize {
        match (self.structs.contains(&i), self.input_schema.field(i).data_type()) {
            (true, DataType::Struct(fields)) => fields.len(),
            _ => 1,
        }
    }
}

pub struct UnnestOperator {
    spec: UnnestSpec,
    /// The input with the position column after its own.
    positioned_input: SchemaRef,
    /// The output with the position column after its own.
    positioned_output: SchemaRef,
    task: Arc<TaskContext>,
}

impl UnnestOperator {
    pub fn new(spec: UnnestSpec) -> Self {
        let widths: usize = (0..spec.input_schema.fields().len()).map(|i| spec.output_width(i)).sum();
        assert_eq!(spec.schema.fields().len(), widths, "one output column per input column or struct field");
        let position = Arc::new(Field::new(POSITION, DataType::UInt32, false));
        let with_position = |s: &SchemaRef| {
            let mut fields = nullable_schema(s).fields().to_vec();
            fields.push(position.clone());
            Arc::new(Schema::new(fields))
        };
        let (positioned_input, positioned_output) = (with_position(&spec.input_schema), with_position(&spec.schema));
        Self { spec, positioned_input, positioned_output, task: Arc::new(TaskContext::default()) }
    }

    async fn unnest(&self, chunk: &StreamChunk) -> EngineResult<StreamChunk> {
        let n = chunk.num_rows();
        let mut columns = chunk.batch().columns().to_vec();
        columns.push(Arc::new(UInt32Array::from_iter_values(0..n as u32)));
        let input = RecordBatch::try_new(self.positioned_input.clone(), columns)?;
        let source = datafusion::datasource::memory::MemorySourceConfig::try_new_exec(&[vec![input]], self.positioned_input.clone(), None)?;
        let exec = UnnestExec::new(source, self.spec.lists.clone(), self.spec.structs.clone(), self.positioned_output.clone(), self.spec.options.clone())?;
        let batches = datafusion::physical_plan::collect(Arc::new(exec), self.task.clone()).await?;
        let out = datafusion::arrow::compute::concat_batches(&self.positioned_output, &batches)?;
        let width = out.num_columns() - 1;
        let positions = out.column(width).as_any().downcast_ref::<UInt32Array>().ok_or_else(|| EngineError::Internal("the unnest lost its positions".into()))?;
        let ops: Vec<Op> = positions.values().iter().map(|&p| chunk.ops()[p as usize]).collect();
        let batch = RecordBatch::try_new(self.spec.schema.clone(), out.columns()[..width].to_vec())?;
        Ok(StreamChunk::new(ops, batch))
    }
}

#[async_trait]
impl Operator for UnnestOperator {
    fn name(&self) -> String {
        let lists: Vec<String> = self.spec.lists.iter().map(|l| self.spec.input_schema.field(l.index_in_input_schema).name().clone()).collect();
        format!("Unnest({})", lists.join(", "))
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, ctx: &mut OperatorContext) -> EngineResult<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let out = self.unnest(&chunk).await?;
        ctx.collect(out).await
    }

    /// A watermark of a column that is not unnested goes on, to where the column is now
    /// (after a struct spread before it); one of a list or struct column means nothing for
    /// its elements or fields.
    async fn handle_watermark(&mut self, wm: Watermark, ctx: &mut OperatorContext) -> EngineResult<()> {
        if self.spec.lists.iter().any(|l| l.index_in_input_schema == wm.column) || self.spec.structs.contains(&wm.column) {
            return Ok(());
        }
        let column = (0..wm.column).map(|i| self.spec.output_width(i)).sum();
        ctx.outputs.send(Message::Watermark(Watermark { column, ..wm })).await
    }
}
