use std::sync::Mutex;

use tokio::sync::mpsc;

use crate::{ObjectId, StreamChunk};

/// What flows on every edge of the dataflow.
#[derive(Debug, Clone)]
pub enum Message {
    Chunk(StreamChunk),
    Watermark(Watermark),
    Barrier(Barrier),
    /// The stream has carried no rows for a while (`--idle-timeout`), so its watermarks stop
    /// holding back the merge of the inputs it meets, until its next chunk or watermark
    /// (Flink's idle `WatermarkStatus`). Rows it sends later may then be late.
    Idle,
}

/// A promise about one column of a stream: no row that arrives later has a value below
/// `time_us` (microseconds since the epoch) in column `column`. Operators that reorder or
/// compute columns map it to their output (or drop it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Watermark {
    pub column: usize,
    pub time_us: i64,
}

/// Why a barrier was injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarrierKind {
    /// Periodic: makes progress visible; bounded sources pass it at once.
    Periodic,
    /// `FLUSH`: bounded sources hold it until they are exhausted, so that a flushed view holds
    /// everything a bounded source will ever produce.
    Flush,
}

/// A barrier splits every stream into epochs. Operators align it across their inputs.
#[derive(Debug, Clone)]
pub struct Barrier {
    pub epoch: u64,
    pub kind: BarrierKind,
    /// A checkpoint barrier: each root reports its position as it sends the barrier, and each
    /// operator snapshots its state as the barrier passes it
    /// ([`crate::OperatorContext::snapshot_state`]); once every sink has passed it, those
    /// snapshots and positions are a consistent cut ([`crate::Coordinator::checkpoint`]).
    pub checkpoint: bool,
    /// A change to the shape of the dataflow that takes effect at this barrier.
    pub mutation: Option<std::sync::Arc<Mutation>>,
}

/// A change to the dataflow carried by a barrier, so that it happens at a consistent cut.
#[derive(Debug)]
pub enum Mutation {
    /// New downstream views attach to existing tables or views.
    Subscribe(Vec<Subscription>),
    /// New subscribers of views' changes ([`Watch`]).
    Watch(Vec<Watch>),
}

/// A new subscriber of a materialized view: the view queues its content at this barrier,
/// then at every barrier its epoch's consolidated changes, into `queue`, until the client
/// drops the queue ([`crate::operators::subscribe`]).
#[derive(Debug)]
pub struct Watch {
    pub view: ObjectId,
    pub queue: std::sync::Arc<crate::operators::SubscriberQueue>,
    /// Whether the view queues its content first (else only the changes after the barrier).
    pub snapshot: bool,
}

/// A new downstream edge. The upstream object, on seeing the barrier, sends its whole current
/// content as inserts, then the barrier, then everything after it.
#[derive(Debug)]
pub struct Subscription {
    pub upstream: ObjectId,
    /// Whether the upstream first sends its whole content. A view restored from a checkpoint
    /// already holds it.
    pub snapshot: bool,
    /// Taken exactly once by the upstream.
    pub sender: Mutex<Option<mpsc::Sender<Message>>>,
    /// With `snapshot`: how the upstream's backfill of the new edge goes.
    pub progress: Option<std::sync::Arc<crate::backfill::BackfillProgress>>,
    /// Without `snapshot`, for a downstream resuming from a checkpoint: the upstream table's
    /// position in it. The table first sends the changes of its log from there
    /// ([`crate::table_log`]).
    pub replay_from: Option<u64>,
}

/// A new edge as its upstream takes it from the barrier.
pub struct Attach {
    pub tx: mpsc::Sender<Message>,
    /// Send the upstream's rows first, and report progress here.
    pub backfill: Option<std::sync::Arc<crate::backfill::BackfillProgress>>,
    /// Send the changes logged from this position first ([`Subscription::replay_from`]).
    pub replay_from: Option<u64>,
}

impl Barrier {
    /// The new subscribers of view `object` that this barrier carries.
    pub fn take_watches(&self, object: ObjectId) -> Vec<(std::sync::Arc<crate::operators::SubscriberQueue>, bool)> {
        let Some(Mutation::Watch(watches)) = self.mutation.as_deref() else { return vec![] };
        watches.iter().filter(|w| w.view == object).map(|w| (w.queue.clone(), w.snapshot)).collect()
    }

    /// The new edges from `object` that this barrier carries.
    pub fn take_subscriptions(&self, object: ObjectId) -> Vec<Attach> {
        let Some(Mutation::Subscribe(subs)) = self.mutation.as_deref() else { return vec![] };
        subs.iter()
            .filter(|s| s.upstream == object)
            .filter_map(|s| {
                let tx = s.sender.lock().expect("subscription lock").take()?;
                let backfill = s.snapshot.then(|| s.progress.clone().unwrap_or_default());
                Some(Attach { tx, backfill, replay_from: s.replay_from.filter(|_| !s.snapshot) })
            })
            .collect()
    }
}
