//! The operator over [`SortedPartitions`] that the top-N and the over-window share: it drops
//! rows for partitions the watermark has passed, hands each chunk to its [`RowsLogic`], writes
//! the state back at barriers (or earlier, when it outgrows the cache) and frees partitions by
//! watermark.

use std::sync::Arc;

use async_trait::async_trait;
use openclaw_storage::{CfKind, StateWrite};

use crate::state::sorted::SortedPartitions;
use crate::{Barrier, EngineResult, Message, Operator, OperatorContext, StreamChunk, Watermark};

/// What an operator over [`SortedPartitions`] makes of its input.
pub trait RowsLogic: Send + 'static {
    /// The operator's name, given its state's column family.
    fn name(&self, cf: &str) -> String;

    /// Applies `chunk` to `rows` and returns the output's changes. The output keeps the
    /// input's columns in place, so watermarks pass through unchanged.
    fn apply(&mut self, rows: &mut SortedPartitions, chunk: &StreamChunk) -> EngineResult<StreamChunk>;

    /// Column families the logic keeps besides the rows', snapshotted with them.
    fn extra_tables(&self) -> Vec<(Arc<str>, CfKind)> {
        vec![]
    }

    /// Drops and counts the input rows that arrive too late to be applied: by default those
    /// of partitions the watermark has freed.
    fn drop_late(&mut self, rows: &SortedPartitions, chunk: StreamChunk) -> EngineResult<StreamChunk> {
        rows.drop_late(chunk)
    }

    /// Frees what `wm` has passed and returns the watermarks to send on (by default `wm`
    /// itself: the output keeps the input's columns in place).
    fn on_watermark(&mut self, rows: &mut SortedPartitions, wm: Watermark) -> EngineResult<Vec<Watermark>> {
        rows.on_watermark(&wm)?;
        Ok(vec![wm])
    }

    /// Adds the logic's own changes since the last write-back to `write`, which also carries
    /// the rows' (one batch, so a snapshot holds both or neither).
    fn write_back(&mut self, _write: &mut StateWrite) {}
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
        let mut tables = vec![(self.rows.cf().clone(), CfKind::Counters)];
        tables.extend(self.logic.extra_tables());
        tables
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, ctx: &mut OperatorContext) -> EngineResult<()> {
        let chunk = self.logic.drop_late(&self.rows, chunk)?;
        let out = self.logic.apply(&mut self.rows, &chunk)?;
        if self.rows.is_full() {
            self.write_back()?;
        }
        ctx.collect(out).await
    }

    /// Writes the changes since the last barrier (one batch) and evicts what the state cache
    /// cannot hold.
    async fn handle_checkpoint(&mut self, _barrier: &Barrier, _ctx: &mut OperatorContext) -> EngineResult<()> {
        self.write_back()
    }

    /// Frees what the watermark has passed (see [`RowsLogic::on_watermark`]) and sends on the
    /// watermarks the output carries.
    async fn handle_watermark(&mut self, wm: Watermark, ctx: &mut OperatorContext) -> EngineResult<()> {
        for wm in self.logic.on_watermark(&mut self.rows, wm)? {
            ctx.outputs.send(Message::Watermark(wm)).await?;
        }
        Ok(())
    }
}

impl<L: RowsLogic> PartitionedRowsOperator<L> {
    fn write_back(&mut self) -> EngineResult<()> {
        let mut write = StateWrite::default();
        self.logic.write_back(&mut write);
        self.rows.write_back(write)
    }
}
