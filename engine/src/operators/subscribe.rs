//! The end of a subscription's dataflow (`SUBSCRIBE`): hands each epoch's changes to one
//! client's queue at the barrier that makes them visible, tagged with that barrier's epoch
//! (the subscription's progress token). The epoch's changes are consolidated first (diffs
//! summed per distinct row, zeros dropped), as Materialize does per timestamp: a view whose
//! hundred rows each change with every chunk sends at most two hundred rows per epoch, not a
//! changelog as long as its input.
//!
//! A slow client never holds up the dataflow: the operator never waits on the queue. The
//! queue is bounded in rows ([`SubscriberQueue::max_rows`]); when a client falls that far
//! behind, the subscription is closed with [`SubscriptionEvent::Overflow`], and the dataflow
//! goes on as before.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use tokio::sync::Notify;

use crate::{Barrier, EngineResult, ObjectId, Operator, OperatorContext, StreamChunk};

/// Rows a subscriber may have waiting (not yet read by its client) before it is closed, by
/// default: with the rows of the epoch being gathered. `SUBSCRIBE`'s snapshot counts too.
pub const DEFAULT_SUBSCRIBER_MAX_ROWS: usize = 1 << 20;
/// Bytes of Arrow arrays a subscriber may have waiting, by default (`--subscriber-max-bytes`):
/// wide rows reach it before the row limit.
pub const DEFAULT_SUBSCRIBER_MAX_BYTES: usize = 256 << 20;

/// What a subscriber's client reads, in order.
#[derive(Debug, Clone)]
pub enum SubscriptionEvent {
    /// Changes that became visible at `token` (a barrier's epoch): distinct rows, each with
    /// its net change in copies (never zero).
    Changes { token: u64, rows: RecordBatch, diffs: Int64Array },
    /// Every change up to and including `token` has been queued before this.
    Progress { token: u64 },
    /// The client fell more than the limit behind: nothing more comes.
    Overflow { behind_rows: usize, max_rows: usize, behind_bytes: usize, max_bytes: usize },
    /// The dataflow stopped (its input was dropped, or it failed): nothing more comes.
    Ended,
}

/// One subscriber's queue, shared by the operator (writing at barriers) and the client.
pub struct SubscriberQueue {
    events: Mutex<VecDeque<SubscriptionEvent>>,
    /// Rows in `events`.
    queued_rows: AtomicUsize,
    max_rows: usize,
    /// Bytes of the arrays in `events` (a batch shared with other subscribers counts for each).
    queued_bytes: AtomicUsize,
    max_bytes: usize,
    closed: AtomicBool,
    ready: Notify,
}

impl SubscriberQueue {
    pub fn new(max_rows: usize) -> Arc<Self> {
        Self::with_limits(max_rows, DEFAULT_SUBSCRIBER_MAX_BYTES)
    }

    /// A queue closed once more than `max_rows` rows or `max_bytes` bytes wait in it.
    pub fn with_limits(max_rows: usize, max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            events: Mutex::new(VecDeque::new()),
            queued_rows: AtomicUsize::new(0),
            max_rows: max_rows.max(1),
            queued_bytes: AtomicUsize::new(0),
            max_bytes: max_bytes.max(1),
            closed: AtomicBool::new(false),
            ready: Notify::new(),
        })
    }

    pub fn max_rows(&self) -> usize {
        self.max_rows
    }

    /// Whether nothing more will be queued (overflowed or ended).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn push(&self, events: impl IntoIterator<Item = SubscriptionEvent>) {
        let mut queue = self.events.lock().expect("subscriber queue lock");
        for event in events {
            match (&event, queue.back_mut()) {
                // A progress mark behind another says more: the queue of a client that stopped
                // reading a quiet view holds one mark, not one per barrier.
                (SubscriptionEvent::Progress { token }, Some(SubscriptionEvent::Progress { token: last })) => *last = *token,
                (SubscriptionEvent::Changes { rows, diffs, .. }, _) => {
                    self.queued_rows.fetch_add(rows.num_rows(), Ordering::AcqRel);
                    self.queued_bytes.fetch_add(batch_bytes(rows, diffs), Ordering::AcqRel);
                    queue.push_back(event);
                }
                _ => queue.push_back(event),
            }
        }
        drop(queue);
        self.ready.notify_one();
    }

    /// Queues a final event; nothing is queued after it.
    fn close_with(&self, event: SubscriptionEvent) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.push([event]);
        }
    }

    /// Takes the next event, if one is queued.
    pub fn try_pop(&self) -> Option<SubscriptionEvent> {
        let event = self.events.lock().expect("subscriber queue lock").pop_front()?;
        if let SubscriptionEvent::Changes { rows, diffs, .. } = &event {
            self.queued_rows.fetch_sub(rows.num_rows(), Ordering::AcqRel);
            self.queued_bytes.fetch_sub(batch_bytes(rows, diffs), Ordering::AcqRel);
        }
        Some(event)
    }

    /// Waits for the next event.
    pub async fn pop(&self) -> SubscriptionEvent {
        loop {
            let notified = self.ready.notified();
            if let Some(event) = self.try_pop() {
                return event;
            }
            notified.await;
        }
    }

    /// The dataflow stopped: the client learns it after the events already queued.
    pub fn end(&self) {
        self.close_with(SubscriptionEvent::Ended);
    }

    /// Queues an epoch's changes and then its progress mark, unless that would leave the
    /// client more than the limit behind (then it is closed instead). Whether it is open.
    pub fn offer(&self, token: u64, changes: &[(RecordBatch, Int64Array)]) -> bool {
        if self.is_closed() {
            return false;
        }
        let rows: usize = changes.iter().map(|(r, _)| r.num_rows()).sum();
        let bytes: usize = changes.iter().map(|(r, d)| batch_bytes(r, d)).sum();
        if !self.check_behind(rows, bytes) {
            return false;
        }
        let events = changes.iter().map(|(rows, diffs)| SubscriptionEvent::Changes { token, rows: rows.clone(), diffs: diffs.clone() });
        self.push(events.chain([SubscriptionEvent::Progress { token }]));
        true
    }
}

impl SubscriberQueue {
    /// Closes the queue if `rows` and `bytes` more would put its client over a limit; whether
    /// it is still open.
    fn check_behind(&self, rows: usize, bytes: usize) -> bool {
        let behind_rows = self.queued_rows.load(Ordering::Acquire) + rows;
        let behind_bytes = self.queued_bytes.load(Ordering::Acquire) + bytes;
        if behind_rows > self.max_rows || behind_bytes > self.max_bytes {
            self.close_with(SubscriptionEvent::Overflow { behind_rows, max_rows: self.max_rows, behind_bytes, max_bytes: self.max_bytes });
            return false;
        }
        true
    }
}

/// What a batch of changes holds in memory.
fn batch_bytes(rows: &RecordBatch, diffs: &Int64Array) -> usize {
    rows.get_array_memory_size() + datafusion::arrow::array::Array::get_array_memory_size(diffs)
}

impl std::fmt::Debug for SubscriberQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SubscriberQueue(max_rows = {}, closed = {})", self.max_rows, self.is_closed())
    }
}

/// The last operator of a subscription's dataflow.
pub struct SubscribeOperator {
    object: ObjectId,
    queue: Arc<SubscriberQueue>,
    /// Encodes rows for consolidation; built from the first chunk's columns.
    converter: Option<RowConverter>,
    /// This epoch's net change per distinct row, queued at its barrier.
    pending: HashMap<OwnedRow, i64>,
    /// The rows' schema, from the first chunk.
    schema: Option<datafusion::arrow::datatypes::SchemaRef>,
}

impl SubscribeOperator {
    pub fn new(object: ObjectId, queue: Arc<SubscriberQueue>) -> Self {
        Self { object, queue, converter: None, pending: HashMap::new(), schema: None }
    }

    /// Closes the subscription if its client is too far behind; whether it is still open.
    fn check_behind(&mut self) -> bool {
        if self.queue.is_closed() {
            self.pending.clear();
            return false;
        }
        // The epoch's rows count before they are queued; their bytes once they are.
        if !self.queue.check_behind(self.pending.len(), 0) {
            self.pending.clear();
            return false;
        }
        true
    }

    /// Adds a chunk's rows to the epoch's net changes.
    fn fold(&mut self, chunk: &StreamChunk) -> EngineResult<()> {
        let batch = chunk.batch();
        if self.converter.is_none() {
            let fields = batch.schema().fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
            self.converter = Some(RowConverter::new(fields)?);
        }
        let converter = self.converter.as_ref().expect("built above");
        let rows = converter.convert_columns(batch.columns())?;
        // Consolidation is a hash per row, as the view's own epoch buffer is. A row whose
        // changes cancel out leaves the map at once: what it holds (and what counts against
        // the client's limit) is the epoch's net change, not every version a row went through.
        for (i, op) in chunk.ops().iter().enumerate() {
            match self.pending.entry(rows.row(i).owned()) {
                Entry::Occupied(mut e) => {
                    *e.get_mut() += op.sign();
                    if *e.get() == 0 {
                        e.remove();
                    }
                }
                Entry::Vacant(e) => {
                    e.insert(op.sign());
                }
            }
        }
        Ok(())
    }

    /// The epoch's net changes as one batch with its diffs (`None`: nothing changed).
    fn take_changes(&mut self, schema: &datafusion::arrow::datatypes::SchemaRef) -> EngineResult<Option<(RecordBatch, Int64Array)>> {
        let Some(converter) = &self.converter else { return Ok(None) };
        let mut changed: Vec<(OwnedRow, i64)> = self.pending.drain().filter(|(_, d)| *d != 0).collect();
        if changed.is_empty() {
            return Ok(None);
        }
        // Rows that go before rows that come: a client keyed by some column (a dashboard's
        // bucket) applying them in order never holds two versions of one key.
        changed.sort_by_key(|(_, d)| *d > 0);
        let columns = converter.convert_rows(changed.iter().map(|(r, _)| r.row()))?;
        let diffs: Int64Array = changed.iter().map(|(_, d)| Some(*d)).collect();
        Ok(Some((RecordBatch::try_new(schema.clone(), columns)?, diffs)))
    }
}

impl Drop for SubscribeOperator {
    fn drop(&mut self) {
        self.queue.end();
    }
}

#[async_trait]
impl Operator for SubscribeOperator {
    fn name(&self) -> String {
        "Subscribe".into()
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, _ctx: &mut OperatorContext) -> EngineResult<()> {
        if chunk.is_empty() || self.queue.is_closed() {
            return Ok(());
        }
        if self.schema.is_none() {
            self.schema = Some(chunk.schema());
        }
        self.fold(&chunk)?;
        self.check_behind();
        Ok(())
    }

    /// The epoch's changes become visible here: queued with its epoch as their token, then
    /// the token's progress mark. Acknowledged at once; the client never holds a barrier.
    async fn barrier_passed(&mut self, barrier: &Barrier, ctx: &mut OperatorContext) -> EngineResult<()> {
        if self.check_behind() {
            let token = barrier.epoch;
            let changes = match &self.schema.clone() {
                Some(schema) => self.take_changes(schema)?,
                None => None,
            };
            let changes = changes.map(|(rows, diffs)| SubscriptionEvent::Changes { token, rows, diffs });
            self.queue.push(changes.into_iter().chain([SubscriptionEvent::Progress { token }]));
        }
        ctx.coordinator.ack(self.object, barrier.epoch);
        Ok(())
    }

    async fn on_close(&mut self, _ctx: &mut OperatorContext) -> EngineResult<()> {
        self.queue.end();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BarrierKind, Coordinator, EngineConfig, Message, Outputs};
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn chunk(values: &[i64]) -> StreamChunk {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        StreamChunk::inserts(RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap())
    }

    fn barrier(epoch: u64) -> Message {
        Message::Barrier(Barrier { epoch, kind: BarrierKind::Periodic, checkpoint: false, mutation: None })
    }

    async fn run(queue: Arc<SubscriberQueue>, messages: Vec<Message>) {
        let (tx, rx) = tokio::sync::mpsc::channel(messages.len() + 1);
        for m in messages {
            tx.send(m).await.unwrap();
        }
        drop(tx);
        let ctx = OperatorContext::new(Outputs::default(), Arc::new(EngineConfig::default()), Coordinator::new());
        crate::runtime::run_operator(Box::new(SubscribeOperator::new(1, queue)), vec![rx], ctx).await.unwrap();
    }

    /// Changes wait for their barrier and carry its epoch; each epoch ends with its progress.
    #[tokio::test]
    async fn changes_are_queued_at_their_barrier_with_its_epoch() {
        let queue = SubscriberQueue::new(100);
        run(queue.clone(), vec![Message::Chunk(chunk(&[1, 2])), Message::Chunk(chunk(&[3])), barrier(7), barrier(8), Message::Chunk(chunk(&[4])), barrier(9)]).await;
        let mut seen = vec![];
        while let Some(e) = queue.try_pop() {
            seen.push(match e {
                SubscriptionEvent::Changes { token, rows, diffs } => format!("{token}:{}:{}", rows.num_rows(), diffs.values().iter().sum::<i64>()),
                SubscriptionEvent::Progress { token } => format!("p{token}"),
                SubscriptionEvent::Overflow { .. } => "overflow".into(),
                SubscriptionEvent::Ended => "end".into(),
            });
        }
        // The marks of 7 and 8 are one mark (8): nobody read between them.
        assert_eq!(seen, ["7:3:3", "p8", "9:1:1", "p9", "end"]);
    }

    /// A client that reads nothing is closed once more than the limit is waiting; the
    /// operator goes on acknowledging barriers.
    #[tokio::test]
    async fn a_client_too_far_behind_is_closed_and_told_by_how_much() {
        let queue = SubscriberQueue::new(5);
        run(queue.clone(), vec![Message::Chunk(chunk(&[1, 2, 3])), barrier(1), Message::Chunk(chunk(&[4, 5, 6])), barrier(2), Message::Chunk(chunk(&[7])), barrier(3)]).await;
        let mut events = vec![];
        while let Some(e) = queue.try_pop() {
            events.push(e);
        }
        assert!(matches!(events[0], SubscriptionEvent::Changes { token: 1, .. }));
        assert!(matches!(events[1], SubscriptionEvent::Progress { token: 1 }));
        assert!(matches!(events[2], SubscriptionEvent::Overflow { behind_rows: 6, max_rows: 5, .. }), "{:?}", events[2]);
        assert_eq!(events.len(), 3, "nothing after the overflow: {events:?}");
        assert!(queue.is_closed());
    }

    /// Wide rows reach the byte limit before the row limit: the queue closes on bytes, and
    /// says so; reading frees what was read.
    #[test]
    fn the_byte_limit_closes_a_queue_of_wide_rows() {
        let rows = chunk(&(0..1000).collect::<Vec<_>>()).batch().clone();
        let diffs = Int64Array::from(vec![1; 1000]);
        let bytes = batch_bytes(&rows, &diffs);
        let queue = SubscriberQueue::with_limits(1_000_000, bytes * 2);
        assert!(queue.offer(1, &[(rows.clone(), diffs.clone())]));
        assert!(queue.offer(2, &[(rows.clone(), diffs.clone())]));
        while queue.try_pop().is_some() {}
        assert!(queue.offer(3, &[(rows.clone(), diffs.clone())]), "what was read no longer counts");
        assert!(queue.offer(4, &[(rows.clone(), diffs.clone())]));
        assert!(!queue.offer(5, &[(rows, diffs)]), "a third batch waiting is over the limit");
        let mut last = None;
        while let Some(e) = queue.try_pop() {
            last = Some(e);
        }
        match last {
            Some(SubscriptionEvent::Overflow { behind_rows: 3000, behind_bytes, max_bytes, .. }) => assert_eq!((behind_bytes, max_bytes), (bytes * 3, bytes * 2)),
            other => panic!("{other:?}"),
        }
    }

    /// Within an epoch, a row inserted and deleted cancels out, and copies add up.
    #[tokio::test]
    async fn an_epochs_changes_are_consolidated_per_row() {
        let queue = SubscriberQueue::new(100);
        let deletes = |values: &[i64]| StreamChunk::new(vec![crate::Op::Delete; values.len()], chunk(values).batch().clone());
        run(queue.clone(), vec![Message::Chunk(chunk(&[1, 2, 2])), Message::Chunk(deletes(&[1, 3])), barrier(4)]).await;
        let Some(SubscriptionEvent::Changes { token: 4, rows, diffs }) = queue.try_pop() else { panic!("changes first") };
        assert!(diffs.value(0) < 0, "rows that go come first: {diffs:?}");
        let mut net: Vec<(i64, i64)> = (0..rows.num_rows())
            .map(|i| (datafusion::arrow::array::AsArray::as_primitive::<datafusion::arrow::datatypes::Int64Type>(rows.column(0)).value(i), diffs.value(i)))
            .collect();
        net.sort();
        assert_eq!(net, [(2, 2), (3, -1)]);
    }

    /// A row that changes many times within an epoch counts once against the client's limit:
    /// only its net change waits.
    #[tokio::test]
    async fn versions_that_cancel_out_within_an_epoch_do_not_count_against_the_limit() {
        let queue = SubscriberQueue::new(5);
        let deletes = |values: &[i64]| StreamChunk::new(vec![crate::Op::Delete; values.len()], chunk(values).batch().clone());
        let mut messages = vec![];
        for v in 0..100 {
            messages.push(Message::Chunk(chunk(&[v])));
            messages.push(Message::Chunk(deletes(&[v])));
        }
        messages.push(Message::Chunk(chunk(&[1000])));
        messages.push(barrier(1));
        run(queue.clone(), messages).await;
        assert!(matches!(queue.try_pop(), Some(SubscriptionEvent::Changes { token: 1, ref rows, .. }) if rows.num_rows() == 1));
        assert!(matches!(queue.try_pop(), Some(SubscriptionEvent::Progress { token: 1 })));
    }

    /// A client that stops reading a quiet view holds one progress mark, however many
    /// barriers pass: the queue stays bounded in events as well as rows.
    #[tokio::test]
    async fn progress_marks_of_an_unread_queue_collapse_into_one() {
        let queue = SubscriberQueue::new(5);
        run(queue.clone(), (1..=1000).map(barrier).collect()).await;
        assert!(matches!(queue.try_pop(), Some(SubscriptionEvent::Progress { token: 1000 })));
        assert!(matches!(queue.try_pop(), Some(SubscriptionEvent::Ended)));
        assert!(queue.try_pop().is_none());
    }
}
