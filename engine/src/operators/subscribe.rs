//! The end of a subscription's dataflow (`SUBSCRIBE`): hands each epoch's changes to one
//! client's queue at the barrier that makes them visible, tagged with that barrier's epoch
//! (the subscription's progress token).
//!
//! A slow client never holds up the dataflow: the operator never waits on the queue. The
//! queue is bounded in rows ([`SubscriberQueue::max_rows`]); when a client falls that far
//! behind, the subscription is closed with [`SubscriptionEvent::Overflow`], and the dataflow
//! goes on as before.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::{Barrier, EngineResult, ObjectId, Operator, OperatorContext, StreamChunk};

/// Rows a subscriber may have waiting (not yet read by its client) before it is closed, by
/// default: with the rows of the epoch being gathered. `SUBSCRIBE`'s snapshot counts too.
pub const DEFAULT_SUBSCRIBER_MAX_ROWS: usize = 1 << 20;

/// What a subscriber's client reads, in order.
#[derive(Debug, Clone)]
pub enum SubscriptionEvent {
    /// Changes that became visible at `token` (a barrier's epoch).
    Changes { token: u64, chunk: StreamChunk },
    /// Every change up to and including `token` has been queued before this.
    Progress { token: u64 },
    /// The client fell more than the limit behind: nothing more comes.
    Overflow { behind_rows: usize, max_rows: usize },
    /// The dataflow stopped (its input was dropped, or it failed): nothing more comes.
    Ended,
}

/// One subscriber's queue, shared by the operator (writing at barriers) and the client.
pub struct SubscriberQueue {
    events: Mutex<VecDeque<SubscriptionEvent>>,
    /// Rows in `events`.
    queued_rows: AtomicUsize,
    max_rows: usize,
    closed: AtomicBool,
    ready: Notify,
}

impl SubscriberQueue {
    pub fn new(max_rows: usize) -> Arc<Self> {
        Arc::new(Self {
            events: Mutex::new(VecDeque::new()),
            queued_rows: AtomicUsize::new(0),
            max_rows: max_rows.max(1),
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
            if let SubscriptionEvent::Changes { chunk, .. } = &event {
                self.queued_rows.fetch_add(chunk.num_rows(), Ordering::AcqRel);
            }
            queue.push_back(event);
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
        if let SubscriptionEvent::Changes { chunk, .. } = &event {
            self.queued_rows.fetch_sub(chunk.num_rows(), Ordering::AcqRel);
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
}

/// The last operator of a subscription's dataflow.
pub struct SubscribeOperator {
    object: ObjectId,
    queue: Arc<SubscriberQueue>,
    /// This epoch's changes, queued at its barrier.
    pending: Vec<StreamChunk>,
    pending_rows: usize,
}

impl SubscribeOperator {
    pub fn new(object: ObjectId, queue: Arc<SubscriberQueue>) -> Self {
        Self { object, queue, pending: vec![], pending_rows: 0 }
    }

    /// Closes the subscription if its client is too far behind; whether it is still open.
    fn check_behind(&mut self) -> bool {
        if self.queue.is_closed() {
            self.pending.clear();
            return false;
        }
        let behind_rows = self.queue.queued_rows.load(Ordering::Acquire) + self.pending_rows;
        if behind_rows > self.queue.max_rows {
            self.pending.clear();
            self.queue.close_with(SubscriptionEvent::Overflow { behind_rows, max_rows: self.queue.max_rows });
            return false;
        }
        true
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
        self.pending_rows += chunk.num_rows();
        self.pending.push(chunk);
        self.check_behind();
        Ok(())
    }

    /// The epoch's changes become visible here: queued with its epoch as their token, then
    /// the token's progress mark. Acknowledged at once; the client never holds a barrier.
    async fn barrier_passed(&mut self, barrier: &Barrier, ctx: &mut OperatorContext) -> EngineResult<()> {
        if self.check_behind() {
            let token = barrier.epoch;
            let changes = self.pending.drain(..).map(|chunk| SubscriptionEvent::Changes { token, chunk });
            self.queue.push(changes.chain([SubscriptionEvent::Progress { token }]));
        }
        self.pending_rows = 0;
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
        let (tx, rx) = tokio::sync::mpsc::channel(64);
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
                SubscriptionEvent::Changes { token, chunk } => format!("{token}:{}", chunk.num_rows()),
                SubscriptionEvent::Progress { token } => format!("p{token}"),
                SubscriptionEvent::Overflow { .. } => "overflow".into(),
                SubscriptionEvent::Ended => "end".into(),
            });
        }
        assert_eq!(seen, ["7:2", "7:1", "p7", "p8", "9:1", "p9", "end"]);
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
        assert!(matches!(events[2], SubscriptionEvent::Overflow { behind_rows: 6, max_rows: 5 }), "{:?}", events[2]);
        assert_eq!(events.len(), 3, "nothing after the overflow: {events:?}");
        assert!(queue.is_closed());
    }
}
