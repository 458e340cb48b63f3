use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use openclaw_storage::CfKind;

use crate::metrics::OperatorMetrics;
use crate::{Barrier, Coordinator, EngineConfig, EngineError, EngineResult, Message, StreamChunk, Watermark};

/// One step of the dataflow. The runtime loop ([`crate::runtime::run_operator`]) calls these
/// methods; only [`Operator::process_batch`] has no default.
///
/// Contract: the runtime delivers messages of each input in order; it calls
/// `handle_checkpoint` once per barrier, after the barrier has arrived on every input (aligned)
/// and before forwarding it; operators must have applied every earlier chunk to their state by
/// then.
#[async_trait]
pub trait Operator: Send + 'static {
    /// A short name for logs, metrics and `EXPLAIN`.
    fn name(&self) -> String;

    /// Called once before the first message.
    async fn on_start(&mut self, _ctx: &mut OperatorContext) -> EngineResult<()> {
        Ok(())
    }

    /// Processes one chunk that arrived on input `input`; emits results through `ctx`.
    async fn process_batch(
        &mut self,
        input: usize,
        chunk: StreamChunk,
        ctx: &mut OperatorContext,
    ) -> EngineResult<()>;

    /// Called when the watermark of a column, the minimum over all inputs, advances. Default:
    /// forward it, which is right for operators that keep their input's columns in place.
    async fn handle_watermark(&mut self, wm: Watermark, ctx: &mut OperatorContext) -> EngineResult<()> {
        ctx.outputs.send(Message::Watermark(wm)).await
    }

    /// Whether the inputs share one schema, so that the runtime merges their watermarks per
    /// column (the minimum) before [`Self::handle_watermark`]. Operators whose inputs differ
    /// (joins) return `false` and get each input's own in [`Self::handle_input_watermark`].
    fn merges_input_watermarks(&self) -> bool {
        true
    }

    /// Whether the inputs are the partitions of one operator, fed by the same broadcast
    /// watermarks and idleness. An idle partition then still holds the merged watermark: it
    /// learns that an input woke up only when that input's rows or watermark reach it, and a
    /// sibling's watermark, racing ahead on another channel, must not make those rows late.
    /// Distinct streams (a union's branches, a source's readers) return `false`: an idle one is
    /// left out of the minimum, as in Flink.
    fn inputs_are_partitions(&self) -> bool {
        false
    }

    /// Called with the watermarks of input `input` when [`Self::merges_input_watermarks`] is
    /// `false`. Default: drop them.
    async fn handle_input_watermark(&mut self, _input: usize, _wm: Watermark, _ctx: &mut OperatorContext) -> EngineResult<()> {
        Ok(())
    }

    /// Called when every live input is idle ([`Message::Idle`]). Default: tell downstream.
    async fn handle_idle(&mut self, ctx: &mut OperatorContext) -> EngineResult<()> {
        ctx.outputs.send(Message::Idle).await
    }

    /// Called when input `input` goes idle ([`Message::Idle`]) and
    /// [`Self::merges_input_watermarks`] is `false`; it is active again from its next chunk or
    /// watermark. Default: nothing.
    async fn handle_input_idle(&mut self, _input: usize, _ctx: &mut OperatorContext) -> EngineResult<()> {
        Ok(())
    }

    /// Called with an aligned barrier before the runtime forwards it. Default: nothing.
    async fn handle_checkpoint(&mut self, _barrier: &Barrier, _ctx: &mut OperatorContext) -> EngineResult<()> {
        Ok(())
    }

    /// The column families this operator alone writes. At a checkpoint barrier the runtime
    /// snapshots them after [`Self::handle_checkpoint`] ([`OperatorContext::snapshot_state`]),
    /// so everything the operator wrote before the barrier must be in the store by then, and
    /// nothing after it. Default: none (a stateless operator).
    fn state_tables(&self) -> Vec<(Arc<str>, CfKind)> {
        vec![]
    }

    /// Called after the barrier's snapshot, just before the runtime forwards the barrier: a
    /// sink acknowledges it here, so that a checkpoint's snapshots are all taken by the time
    /// every sink has acknowledged. Default: nothing.
    async fn barrier_passed(&mut self, _barrier: &Barrier, _ctx: &mut OperatorContext) -> EngineResult<()> {
        Ok(())
    }

    /// Called once when every input has closed.
    async fn on_close(&mut self, _ctx: &mut OperatorContext) -> EngineResult<()> {
        Ok(())
    }
}

/// What an operator may touch besides its own fields.
pub struct OperatorContext {
    pub outputs: Outputs,
    pub config: Arc<EngineConfig>,
    pub coordinator: Arc<Coordinator>,
    /// The view whose dataflow the operator belongs to, if any.
    pub owner: Option<crate::ObjectId>,
    /// The task's counters (rows in, time processing; its outputs count rows out and time
    /// blocked).
    pub metrics: Arc<OperatorMetrics>,
    /// When the operator last flushed its state while its view was being filled.
    filling_flushed_at: Option<std::time::Instant>,
}

/// How often an operator of a view being filled flushes its memtables (at a checkpoint
/// barrier, without a snapshot): often enough that the view's first snapshot has little to
/// flush (a whole backfill's memtables once made it take 666 ms), seldom enough that a view
/// whose backfill meets many barriers (FLUSH after FLUSH) does not spend its time switching.
pub const FILLING_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl OperatorContext {
    pub fn new(outputs: Outputs, config: Arc<EngineConfig>, coordinator: Arc<Coordinator>) -> Self {
        Self { outputs, config, coordinator, owner: None, metrics: Arc::new(OperatorMetrics::detached(String::new())), filling_flushed_at: None }
    }

    /// Counts this task's work into `metrics` (its outputs' too).
    pub fn with_metrics(mut self, metrics: Arc<OperatorMetrics>) -> Self {
        self.outputs.metrics = Some(metrics.clone());
        self.metrics = metrics;
        self
    }

    /// The context of an operator of view `owner`'s dataflow.
    pub fn owned_by(mut self, owner: crate::ObjectId) -> Self {
        self.owner = Some(owner);
        self
    }

    /// At a checkpoint barrier, starts the snapshot of `tables` (this operator's column
    /// families): their memtables are switched, so what the operator writes from now on is not
    /// in the snapshot, and the checkpoint collects the files once every sink has passed the
    /// barrier. The operator waits only for the switch; no input waits at all. Other
    /// barriers, or no snapshot store: nothing.
    pub async fn snapshot_state(&mut self, barrier: &Barrier, tables: Vec<(Arc<str>, CfKind)>) -> EngineResult<()> {
        if !barrier.checkpoint || tables.is_empty() {
            return Ok(());
        }
        let Some(store) = self.coordinator.snapshot_store().cloned() else { return Ok(()) };
        // A view still being filled has no state worth resuming (it is rebuilt after a crash),
        // but its memtables are flushed now and then all the same (see
        // [`FILLING_FLUSH_INTERVAL`]).
        let filling = self.owner.is_some_and(|owner| self.coordinator.is_filling(owner, barrier.epoch));
        if filling {
            if self.filling_flushed_at.is_some_and(|at| at.elapsed() < FILLING_FLUSH_INTERVAL) {
                return Ok(());
            }
            self.filling_flushed_at = Some(std::time::Instant::now());
        }
        let started = std::time::Instant::now();
        let pending = tokio::task::spawn_blocking(move || tables.iter().map(|(cf, kind)| store.switch_memtable(cf, *kind)).collect::<Result<Vec<_>, _>>())
            .await
            .map_err(|e| EngineError::Internal(format!("state snapshot task failed: {e}")))??;
        if !filling {
            self.coordinator.snapshotted(barrier.epoch, pending, started.elapsed());
        }
        Ok(())
    }

    /// Emits a chunk downstream; empty chunks are dropped here.
    pub async fn collect(&mut self, chunk: StreamChunk) -> EngineResult<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.outputs.send(Message::Chunk(chunk)).await
    }
}

/// The downstream edges of a task. Every edge is a bounded channel. An edge whose receiver
/// is gone (its view was dropped) is closed, not treated as an error; the other edges keep
/// their index, so that an exchange can address partition `i` by [`Outputs::send_to`].
#[derive(Default)]
pub struct Outputs {
    senders: Vec<Option<mpsc::Sender<Message>>>,
    /// Where rows sent and time blocked on a full edge are counted, if anywhere.
    metrics: Option<Arc<OperatorMetrics>>,
}

impl Outputs {
    pub fn new(senders: Vec<mpsc::Sender<Message>>) -> Self {
        Self { senders: senders.into_iter().map(Some).collect(), metrics: None }
    }

    /// Counts what is sent, and the time blocked sending, into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<OperatorMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Adds an edge, in the slot of a closed one if there is one, so that a table whose
    /// views come and go keeps as many slots as it ever had live subscribers.
    pub fn add(&mut self, sender: mpsc::Sender<Message>) {
        match self.senders.iter_mut().find(|s| s.is_none()) {
            Some(slot) => *slot = Some(sender),
            None => self.senders.push(Some(sender)),
        }
    }

    /// Whether no edge is open any more.
    pub fn is_empty(&self) -> bool {
        self.senders.iter().all(Option::is_none)
    }

    /// Number of edges, open or closed.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Sends `msg` to every edge, waiting while a receiver is full (backpressure).
    pub async fn send(&mut self, msg: Message) -> EngineResult<()> {
        self.count(&msg);
        let last = self.senders.iter().rposition(Option::is_some);
        let mut msg = Some(msg);
        for i in 0..self.senders.len() {
            if self.senders[i].is_none() {
                continue;
            }
            let m = if Some(i) == last { msg.take().expect("sent once") } else { msg.clone().expect("kept") };
            self.send_edge(i, m).await;
        }
        Ok(())
    }

    /// Sends `msg` to edge `index` only; a closed edge drops it.
    pub async fn send_to(&mut self, index: usize, msg: Message) -> EngineResult<()> {
        self.count(&msg);
        self.send_edge(index, msg).await;
        Ok(())
    }

    /// Counts a chunk as sent when some edge is open to take it (a view's last step, which
    /// keeps its rows, sends none).
    fn count(&self, msg: &Message) {
        if let (Some(m), Message::Chunk(chunk)) = (&self.metrics, msg) {
            if !self.is_empty() {
                m.sent(chunk.num_rows());
            }
        }
    }

    /// Sends without waiting when the edge has room; otherwise waits, and counts the wait as
    /// time blocked. An edge whose receiver is gone is closed.
    async fn send_edge(&mut self, index: usize, msg: Message) {
        let Some(tx) = &self.senders[index] else { return };
        let sent = match tx.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(msg)) => {
                let started = std::time::Instant::now();
                let sent = tx.send(msg).await.is_ok();
                if let Some(m) = &self.metrics {
                    m.blocked(started.elapsed());
                }
                sent
            }
        };
        if !sent {
            self.senders[index] = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;

    use super::*;

    fn chunk(rows: i64) -> Message {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        Message::Chunk(StreamChunk::inserts(RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..rows))]).unwrap()))
    }

    /// Rows sent count once however many edges take them; only a send that waits on a full
    /// edge counts as blocked, for as long as it waited.
    #[tokio::test]
    async fn outputs_count_rows_sent_and_time_blocked_on_a_full_edge() {
        let metrics = Arc::new(OperatorMetrics::detached("test".into()));
        let (tx, mut rx) = mpsc::channel(1);
        let (tx2, mut rx2) = mpsc::channel(8);
        let mut outputs = Outputs::new(vec![tx, tx2]).with_metrics(metrics.clone());
        outputs.send(chunk(3)).await.unwrap();
        assert_eq!(metrics.counts().rows_out, 3);
        assert_eq!(metrics.counts().blocked_ns, 0, "room on every edge: no wait");
        let reader = tokio::spawn(async move {
            // The test's subject is the wait itself, so it is made to last.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut got = 0;
            while let Some(_msg) = rx.recv().await {
                got += 1;
            }
            got
        });
        outputs.send(chunk(2)).await.unwrap();
        let c = metrics.counts();
        assert_eq!((c.rows_out, c.chunks_out), (5, 2));
        assert!(c.blocked_ns >= 40_000_000, "blocked {} ns", c.blocked_ns);
        drop(outputs);
        assert_eq!(reader.await.unwrap(), 2);
        assert!(rx2.recv().await.is_some() && rx2.recv().await.is_some());
        // With no edge (a view's last step) nothing is sent, so nothing is counted.
        let last_step = Arc::new(OperatorMetrics::detached("sink".into()));
        Outputs::default().with_metrics(last_step.clone()).send(chunk(4)).await.unwrap();
        assert_eq!(last_step.counts().rows_out, 0);
    }
}
