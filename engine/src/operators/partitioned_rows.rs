//! The operator over [`SortedPartitions`] that the top-N and the over-window share: it drops
//! rows for partitions the watermark has passed, hands each chunk to its [`RowsLogic`], writes
//! the state back at barriers (or earlier, when it outgrows the cache) and frees partitions by
//! watermark.

use std::sync::Arc;

use async_trait::async_trait;
use openclaw_storage::CfKind;

use crate::state::sorted::SortedPartitions;
use crate::{Barrier, EngineResult, Message, Operator, OperatorContext, StreamChunk, Watermark};

/// What an operator over [`SortedPartitions`] makes of its input.
pub trait RowsLogic: Send + 'static {
    /// The operator's name, given its state's column family.
    fn name(&self, cf: &str) -> String;

    /// Applies `chunk` to `rows` and returns the output's changes. The output keeps the
    /// input's columns in place, so watermarks pass through unchanged.
    fn apply(&mut self, rows: &mut SortedPartitions, chunk: &StreamChunk) -> EngineResult<StreamChunk>;
}

pub struct PartitionedRowsOperator<L: RowsLogic> {
    pub(crate) rows: SortedPartitions,
    pub(crate) logic: L,
}

#[async_trait]
impl<L: RowsLogic> Operator for PartitionedRowsOperator<L> {
    fn name(&self) -> String {
        self.logic.name(self.rows.cf())
    }

    fn state_tables(&self) -> Vec<(Arc<str>, CfKind)> {
        vec![(self.rows.cf().clone(), CfKind::Counters)]
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, ctx: &mut OperatorContext) -> EngineResult<()> {
        let chunk = self.rows.drop_late(chunk)?;
        let out = self.logic.apply(&mut self.rows, &chunk)?;
        self.rows.write_back_if_full()?;
        ctx.collect(out).await
    }

    /// Writes the changes since the last barrier (one batch) and evicts what the state cache
    /// cannot hold.
    async fn handle_checkpoint(&mut self, _barrier: &Barrier, _ctx: &mut OperatorContext) -> EngineResult<()> {
        self.rows.write_back()
    }

    /// Frees the partitions the watermark has passed, when it is the watermark of the first
    /// `PARTITION BY` column; the watermark goes on as it came.
    async fn handle_watermark(&mut self, wm: Watermark, ctx: &mut OperatorContext) -> EngineResult<()> {
        self.rows.on_watermark(&wm)?;
        ctx.outputs.send(Message::Watermark(wm)).await
    }
}
