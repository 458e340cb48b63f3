//! Injects barriers at every root of the dataflow and learns when every sink has passed them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};

use openclaw_storage::cf_export::PendingSnapshot;
use openclaw_storage::Store;

use crate::{Barrier, BarrierKind, EngineError, EngineResult, Mutation, ObjectId};

/// A task that starts streams: a table writer or a source reader. Several roots may belong to
/// one object (each view reading a source has its own reader), so roots have their own ids.
pub type RootId = u64;

/// How a root receives barriers: unbounded, so that injecting a barrier never waits for one
/// slow root (a source held up by a full channel downstream would otherwise hold up every
/// FLUSH, CREATE, checkpoint and commit behind it). [`MAX_INFLIGHT_BARRIERS`] bounds it.
pub type BarrierSender = mpsc::UnboundedSender<Barrier>;
pub type BarrierReceiver = mpsc::UnboundedReceiver<Barrier>;

pub fn barrier_channel() -> (BarrierSender, BarrierReceiver) {
    mpsc::unbounded_channel()
}

/// Most barriers in flight (injected, not yet past every sink) for a periodic barrier to be
/// injected: beyond it, progress waits for the slow view or root instead of queueing more
/// barriers at the roots. Other barriers (FLUSH, CREATE, checkpoints) are each awaited by
/// their caller, so sessions bound them.
pub const MAX_INFLIGHT_BARRIERS: usize = 64;

#[derive(Default)]
struct State {
    next_epoch: u64,
    next_root: RootId,
    roots: BTreeMap<RootId, BarrierSender>,
    sinks: BTreeSet<ObjectId>,
    inflight: BTreeMap<u64, Inflight>,
    /// Positions reported by roots at the checkpoint barrier in progress.
    positions: BTreeMap<String, u64>,
    /// State snapshots taken by operators at checkpoint barriers, by epoch, until the
    /// checkpoint collects them.
    snapshots: BTreeMap<u64, Snapshots>,
}

/// The snapshots operators took at one checkpoint barrier.
#[derive(Default)]
struct Snapshots {
    families: Vec<PendingSnapshot>,
    /// The longest one operator spent taking its snapshot.
    longest: std::time::Duration,
}

struct Inflight {
    remaining: BTreeSet<ObjectId>,
    waiters: Vec<oneshot::Sender<()>>,
}

/// The barrier coordinator.
pub struct Coordinator {
    state: Mutex<State>,
    /// Serialises injections so that every root sees epochs in the same order.
    inject: tokio::sync::Mutex<()>,
    /// Per view that was filled (backfilled) after it attached, the first barrier epoch at
    /// which it was complete (`u64::MAX` while filling). Its state at earlier checkpoint
    /// barriers is left out of checkpoints, for all its operators alike, so a restart rebuilds
    /// it instead of resuming half a view. An entry goes once a checkpoint at or after that
    /// epoch completes: later barriers find the view complete without it.
    filled_from: Mutex<BTreeMap<ObjectId, u64>>,
    /// Views being filled that barriers do not wait for ([`FillingGuard::attached`]): a
    /// FLUSH or a checkpoint must not wait for a backfill to finish.
    not_awaited: Mutex<BTreeSet<ObjectId>>,
    /// The newest barrier each registered sink has passed, for waits on one sink alone
    /// ([`FillingGuard::caught_up`]).
    passed: watch::Sender<BTreeMap<ObjectId, u64>>,
    /// Where operators write their state snapshots at checkpoint barriers; none (no
    /// snapshots) until [`Self::set_snapshot_store`].
    snapshot_store: std::sync::OnceLock<Store>,
    /// The epoch of the newest checkpoint that is durable on disk: what a sink may commit to
    /// the outside world (two-phase commit).
    committed: watch::Sender<u64>,
    /// Sinks that commit to the outside world after checkpoints, with the epoch of the last
    /// checkpoint each has committed.
    external: watch::Sender<BTreeMap<ObjectId, u64>>,
    /// Writes that must land in one epoch at several roots (a transaction's commit) hold this
    /// shared from before they reach the roots until every root has sent them on; barriers
    /// are sent to the roots under it exclusively, so no barrier falls between them.
    commit_gate: tokio::sync::RwLock<()>,
    /// Whether sources may read. A restart holds them until every object is restored, so
    /// that a resumed view's dependents are attached before it sees any new row.
    sources_released: watch::Sender<bool>,
}

impl Default for Coordinator {
    fn default() -> Self {
        Self {
            state: Mutex::new(State { next_epoch: 1, next_root: 1, ..State::default() }),
            inject: Default::default(),
            snapshot_store: Default::default(),
            filled_from: Default::default(),
            not_awaited: Default::default(),
            passed: watch::channel(BTreeMap::new()).0,
            committed: watch::channel(0).0,
            external: watch::channel(BTreeMap::new()).0,
            sources_released: watch::channel(true).0,
            commit_gate: Default::default(),
        }
    }
}

/// A consistent cut: every sink has passed checkpoint barrier `epoch`, so every operator has
/// started the snapshot of its state as of that barrier ([`crate::OperatorContext::snapshot_state`]) and
/// every root has reported its position there. The inputs never waited: rows after the
/// barrier went on meanwhile, into state the snapshots do not hold.
pub struct CheckpointCut {
    pub epoch: u64,
    /// When the barrier was injected.
    pub started: std::time::Instant,
    /// Each root's position at the cut, by the key the root reported under.
    pub positions: BTreeMap<String, u64>,
    /// The snapshots the operators started at the barrier, for the checkpoint to collect.
    pub snapshots: Vec<PendingSnapshot>,
    /// The longest one operator spent starting its snapshots (the only pause a checkpoint
    /// makes, and only of that operator).
    pub longest_snapshot: std::time::Duration,
}

/// A view is being filled while this lives ([`Coordinator::filling`]).
pub struct FillingGuard(Arc<Coordinator>, ObjectId);

impl FillingGuard {
    /// The view has attached (its sink acknowledged the barrier that attached it): until the
    /// guard drops, barriers no longer wait for it.
    pub fn attached(&self) {
        self.0.not_awaited.lock().expect("awaited lock").insert(self.1);
    }

    /// Waits until the view has worked off what its inputs sent it so far: a barrier injected
    /// now has passed its sink (or the sink went away). Called once its backfill has sent the
    /// last row and before the guard drops, so that the first barriers that wait for the view
    /// again do not also wait for its backlog of backfilled rows (up to a channel's worth per
    /// edge: FLUSH once took 242 ms on it).
    pub async fn caught_up(&self) {
        let (epoch, _all_sinks) = self.0.inject(BarrierKind::Periodic, None).await;
        let mut passed = self.0.passed.subscribe();
        let _ = passed.wait_for(|p| p.get(&self.1).is_none_or(|e| *e >= epoch)).await;
    }
}

impl Drop for FillingGuard {
    /// The view is complete from the next barrier injected on, which waits for it again.
    fn drop(&mut self) {
        let s = self.0.lock();
        self.0.filled_from.lock().expect("filled lock").insert(self.1, s.next_epoch);
        self.0.not_awaited.lock().expect("awaited lock").remove(&self.1);
    }
}

/// Sources are held while this lives ([`Coordinator::hold_sources`]).
pub struct SourceHold(Arc<Coordinator>);

impl Drop for SourceHold {
    fn drop(&mut self) {
        self.0.sources_released.send_replace(true);
    }
}

impl Coordinator {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("coordinator lock")
    }

    /// Makes the next barrier's epoch follow `epoch`: epochs name checkpoints, so after a
    /// restart they continue past the newest checkpoint on disk.
    pub fn start_epochs_after(&self, epoch: u64) {
        let mut s = self.lock();
        s.next_epoch = s.next_epoch.max(epoch + 1);
    }

    /// Makes operators snapshot their state into `store`'s pending checkpoints at checkpoint
    /// barriers. Set once, before any dataflow runs.
    pub fn set_snapshot_store(&self, store: Store) {
        let _ = self.snapshot_store.set(store);
    }

    /// Marks view `id` as being filled until the guard drops (see `filling`).
    pub fn filling(self: &Arc<Self>, id: ObjectId) -> FillingGuard {
        self.filled_from.lock().expect("filled lock").insert(id, u64::MAX);
        FillingGuard(self.clone(), id)
    }

    /// Whether view `id` was not yet filled at barrier `epoch`.
    pub fn is_filling(&self, id: ObjectId, epoch: u64) -> bool {
        self.filled_from.lock().expect("filled lock").get(&id).is_some_and(|&from| epoch < from)
    }

    /// The store operators snapshot into, if any.
    pub fn snapshot_store(&self) -> Option<&Store> {
        self.snapshot_store.get()
    }

    /// Called by an operator that has started the snapshot of its state at checkpoint barrier
    /// `epoch`.
    pub fn snapshotted(&self, epoch: u64, families: Vec<PendingSnapshot>, took: std::time::Duration) {
        let mut s = self.lock();
        let snapshots = s.snapshots.entry(epoch).or_default();
        snapshots.families.extend(families);
        snapshots.longest = snapshots.longest.max(took);
    }

    /// Keeps barriers from reaching any root while the guard lives (see `commit_gate`). Hold
    /// it only while roots apply a commit: a barrier injection waits for it.
    pub async fn hold_barriers(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.commit_gate.read().await
    }

    /// Says that the checkpoint of `epoch` is durable.
    pub fn checkpoint_committed(&self, epoch: u64) {
        self.committed.send_if_modified(|e| {
            let advanced = *e < epoch;
            *e = (*e).max(epoch);
            advanced
        });
    }

    /// The epoch of the newest barrier injected (0 before the first).
    pub fn last_epoch(&self) -> u64 {
        self.state.lock().expect("coordinator lock").next_epoch - 1
    }

    /// Follows the epochs of durable checkpoints.
    pub fn committed_checkpoints(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// Holds every source before its next read (barriers still pass) until the guard drops.
    pub fn hold_sources(self: &Arc<Self>) -> SourceHold {
        self.sources_released.send_replace(false);
        SourceHold(self.clone())
    }

    pub fn sources_released(&self) -> bool {
        *self.sources_released.borrow()
    }

    /// Waits until sources may read.
    pub async fn wait_sources_released(&self) {
        let mut rx = self.sources_released.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Registers a sink that commits after checkpoints (see [`Self::external_committed`]).
    pub fn register_external(&self, sink: ObjectId) {
        self.external.send_modify(|m| {
            m.entry(sink).or_insert(0);
        });
    }

    pub fn unregister_external(&self, sink: ObjectId) {
        self.external.send_modify(|m| {
            m.remove(&sink);
        });
    }

    /// Says that `sink` has committed everything up to the checkpoint of `epoch`.
    pub fn external_committed(&self, sink: ObjectId, epoch: u64) {
        self.external.send_if_modified(|m| match m.get_mut(&sink) {
            Some(e) if *e < epoch => {
                *e = epoch;
                true
            }
            _ => false,
        });
    }

    /// Waits until every external sink has committed the checkpoint of `epoch` (or was
    /// unregistered).
    pub async fn wait_external_commits(&self, epoch: u64) {
        let mut rx = self.external.subscribe();
        let _ = rx.wait_for(|m| m.values().all(|e| *e >= epoch)).await;
    }

    /// Registers a root; barriers injected from now on reach it through `tx`.
    pub fn register_root(&self, tx: BarrierSender) -> RootId {
        let mut s = self.lock();
        let id = s.next_root;
        s.next_root += 1;
        s.roots.insert(id, tx);
        id
    }

    pub fn unregister_root(&self, id: RootId) {
        self.lock().roots.remove(&id);
    }

    /// Registers a sink; barriers injected from now on wait for its acknowledgement.
    pub fn register_sink(&self, id: ObjectId) {
        self.lock().sinks.insert(id);
        self.note_sinks(&[id]);
    }

    fn note_sinks(&self, ids: &[ObjectId]) {
        self.passed.send_modify(|p| {
            for id in ids {
                p.entry(*id).or_insert(0);
            }
        });
    }

    /// Forgets a sink (dropped or failed); epochs that waited only for it complete.
    pub fn unregister_sink(&self, id: ObjectId) {
        self.passed.send_modify(|p| {
            p.remove(&id);
        });
        let mut s = self.lock();
        s.sinks.remove(&id);
        let epochs: Vec<u64> = s.inflight.keys().copied().collect();
        for epoch in epochs {
            Self::ack_locked(&mut s, id, epoch);
        }
    }

    /// Called by a sink when barrier `epoch` has passed it.
    pub fn ack(&self, sink: ObjectId, epoch: u64) {
        Self::ack_locked(&mut self.lock(), sink, epoch);
        self.passed.send_if_modified(|p| match p.get_mut(&sink) {
            Some(e) if *e < epoch => {
                *e = epoch;
                true
            }
            _ => false,
        });
    }

    /// A sink that passed `epoch` will never see an earlier barrier it has not acknowledged
    /// (a view created after that barrier was injected), so it is done with all of them.
    fn ack_locked(s: &mut State, sink: ObjectId, epoch: u64) {
        let epochs: Vec<u64> = s.inflight.range(..=epoch).map(|(e, _)| *e).collect();
        for e in epochs {
            let inflight = s.inflight.get_mut(&e).expect("listed");
            inflight.remaining.remove(&sink);
            if inflight.remaining.is_empty() {
                let done = s.inflight.remove(&e).expect("present");
                done.waiters.into_iter().for_each(|w| {
                    let _ = w.send(());
                });
            }
        }
    }

    /// Injects a barrier at every root and waits until every sink registered now has passed it.
    /// Reserves the id of a root that [`Self::inject_attaching`] will register.
    pub fn reserve_root(&self) -> RootId {
        let mut s = self.lock();
        let id = s.next_root;
        s.next_root += 1;
        id
    }

    /// Injects a barrier and, atomically with choosing its epoch, registers the roots of a new
    /// dataflow: the barrier is the first the new roots see. A dataflow that read an earlier
    /// barrier on one input and not on another (a source registered just before a periodic
    /// barrier, next to a subscription that starts at this one) could never align.
    ///
    /// The new dataflow's sinks are registered with the same barrier: a sink registered
    /// earlier would be waited for by a barrier (a checkpoint's) that can never reach it.
    pub async fn inject_attaching(
        &self,
        kind: BarrierKind,
        mutation: Option<Mutation>,
        roots: Vec<(RootId, BarrierSender)>,
        sinks: Vec<ObjectId>,
    ) -> EngineResult<u64> {
        let (epoch, done) = self.inject_inner(kind, mutation, roots, sinks).await;
        done.await.map_err(|_| EngineError::Closed)?;
        Ok(epoch)
    }

    pub async fn inject_and_wait(&self, kind: BarrierKind, mutation: Option<Mutation>) -> EngineResult<u64> {
        let (epoch, done) = self.inject(kind, mutation).await;
        done.await.map_err(|_| EngineError::Closed)?;
        Ok(epoch)
    }

    /// Injects a barrier; the receiver resolves when every sink registered now has passed it.
    pub async fn inject(&self, kind: BarrierKind, mutation: Option<Mutation>) -> (u64, oneshot::Receiver<()>) {
        self.inject_inner(kind, mutation, vec![], vec![]).await
    }

    async fn inject_inner(
        &self,
        kind: BarrierKind,
        mutation: Option<Mutation>,
        new_roots: Vec<(RootId, BarrierSender)>,
        new_sinks: Vec<ObjectId>,
    ) -> (u64, oneshot::Receiver<()>) {
        let _serial = self.inject.lock().await;
        self.inject_locked(kind, false, mutation, new_roots, new_sinks).await
    }

    /// Injects a checkpoint barrier and waits until every sink has passed it. Roots do not
    /// wait behind it: each operator snapshots its own state as the barrier passes, and the
    /// returned cut lists those snapshots and the roots' positions. Callers take one
    /// checkpoint at a time (the snapshots of an abandoned one are dropped by the next).
    pub async fn checkpoint(&self, kind: BarrierKind) -> EngineResult<CheckpointCut> {
        let started = std::time::Instant::now();
        let (epoch, done) = {
            let _serial = self.inject.lock().await;
            self.lock().positions.clear();
            self.inject_locked(kind, true, None, vec![], vec![]).await
        };
        done.await.map_err(|_| EngineError::Closed)?;
        let mut s = self.lock();
        let positions = std::mem::take(&mut s.positions);
        let snapshots = s.snapshots.remove(&epoch).unwrap_or_default();
        // Snapshots of earlier, abandoned checkpoints are not wanted any more.
        s.snapshots = s.snapshots.split_off(&epoch);
        drop(s);
        self.filled_from.lock().expect("filled lock").retain(|_, from| *from > epoch);
        Ok(CheckpointCut { epoch, started, positions, snapshots: snapshots.families, longest_snapshot: snapshots.longest })
    }

    /// Called by a root as checkpoint barrier `epoch` leaves it, with where it stands.
    pub fn reached_checkpoint(&self, key: &str, position: u64) {
        self.lock().positions.insert(key.to_string(), position);
    }

    async fn inject_locked(
        &self,
        kind: BarrierKind,
        checkpoint: bool,
        mutation: Option<Mutation>,
        new_roots: Vec<(RootId, BarrierSender)>,
        new_sinks: Vec<ObjectId>,
    ) -> (u64, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let (barrier, roots) = {
            let mut s = self.lock();
            s.roots.extend(new_roots);
            s.sinks.extend(new_sinks.iter().copied());
            self.note_sinks(&new_sinks);
            let epoch = s.next_epoch;
            s.next_epoch += 1;
            let not_awaited = self.not_awaited.lock().expect("awaited lock");
            let remaining: BTreeSet<ObjectId> = s.sinks.iter().filter(|id| !not_awaited.contains(id)).copied().collect();
            drop(not_awaited);
            if remaining.is_empty() {
                let _ = tx.send(());
            } else {
                s.inflight.insert(epoch, Inflight { remaining, waiters: vec![tx] });
            }
            let roots: Vec<(RootId, BarrierSender)> =
                s.roots.iter().map(|(id, tx)| (*id, tx.clone())).collect();
            (Barrier { epoch, kind, checkpoint, mutation: mutation.map(Arc::new) }, roots)
        };
        // Enqueued at every root before any later commit is released: never waits.
        let _gate = self.commit_gate.write().await;
        for (id, root) in roots {
            if root.send(barrier.clone()).is_err() {
                self.unregister_root(id);
            }
        }
        (barrier.epoch, rx)
    }

    /// A periodic barrier, unless [`MAX_INFLIGHT_BARRIERS`] are in flight: then none, and
    /// progress waits for the ones in flight.
    pub async fn inject_periodic(&self) -> Option<u64> {
        if self.lock().inflight.len() >= MAX_INFLIGHT_BARRIERS {
            return None;
        }
        Some(self.inject(BarrierKind::Periodic, None).await.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root that reads no barriers (a source held up by a full channel) holds up no
    /// injection, and the others get every barrier in order; periodic barriers stop at
    /// [`MAX_INFLIGHT_BARRIERS`] while a sink does not pass them.
    #[tokio::test]
    async fn a_root_that_reads_no_barriers_holds_up_no_injection() {
        let c = Coordinator::new();
        let (stuck, _never_read) = barrier_channel();
        let (tx, mut rx) = barrier_channel();
        c.register_root(stuck);
        c.register_root(tx);
        c.register_sink(7);
        // A deadline, not a timing: before, the 17th barrier waited forever for the stuck root.
        let injected = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            let mut epochs = vec![];
            for _ in 0..MAX_INFLIGHT_BARRIERS {
                epochs.push(c.inject_periodic().await.expect("below the limit"));
            }
            assert_eq!(c.inject_periodic().await, None, "no periodic barrier beyond the limit");
            // Awaited barriers still go in, past the stuck root.
            epochs.push(c.inject(BarrierKind::Flush, None).await.0);
            epochs
        });
        let epochs = injected.await.expect("injection never waits for a root");
        for epoch in &epochs {
            assert_eq!(rx.recv().await.unwrap().epoch, *epoch);
        }
        for epoch in &epochs {
            c.ack(7, *epoch);
        }
        assert!(c.inject_periodic().await.is_some(), "periodic barriers resume once the sink passed them");
    }

    #[tokio::test]
    async fn barrier_completes_when_every_sink_acks() {
        let c = Coordinator::new();
        let (tx, mut rx) = barrier_channel();
        c.register_root(tx);
        c.register_sink(7);
        c.register_sink(8);
        let (epoch, mut done) = c.inject(BarrierKind::Flush, None).await;
        assert_eq!(rx.recv().await.unwrap().epoch, epoch);
        c.ack(7, epoch);
        assert!(done.try_recv().is_err());
        c.unregister_sink(8);
        assert!(done.try_recv().is_ok());
    }

    /// A view being created while a checkpoint waits must not be waited for: its sink joins
    /// with the barrier that attaches it, which comes after the checkpoint's.
    #[tokio::test]
    async fn a_checkpoint_does_not_wait_for_a_view_still_attaching() {
        let c = Coordinator::new();
        let (tx, mut rx) = barrier_channel();
        c.register_root(tx);
        c.register_sink(7);
        let checkpoint = tokio::spawn({
            let c = c.clone();
            async move { c.checkpoint(BarrierKind::Periodic).await.map(|cut| cut.epoch) }
        });
        let first = rx.recv().await.unwrap();
        assert!(first.checkpoint);
        let attach = tokio::spawn({
            let c = c.clone();
            async move { c.inject_attaching(BarrierKind::Periodic, None, vec![], vec![8]).await }
        });
        tokio::task::yield_now().await;
        c.ack(7, first.epoch);
        assert_eq!(checkpoint.await.unwrap().unwrap(), first.epoch);
        let second = rx.recv().await.unwrap();
        assert_eq!(second.epoch, first.epoch + 1);
        c.ack(7, second.epoch);
        c.ack(8, second.epoch);
        assert_eq!(attach.await.unwrap().unwrap(), second.epoch);
    }

    /// A view that has sent its last backfilled row is caught up once a barrier injected then
    /// has passed its own sink, however slow the other sinks are; or once its sink is gone.
    #[tokio::test]
    async fn a_filling_view_catches_up_on_its_own_sink() {
        let c = Coordinator::new();
        let (tx, mut barriers) = barrier_channel();
        c.register_root(tx);
        c.register_sink(7);
        c.register_sink(8);
        let filling = c.filling(8);
        filling.attached();
        let caught_up = tokio::spawn(async move {
            filling.caught_up().await;
            filling
        });
        let barrier = barriers.recv().await.unwrap();
        c.ack(8, barrier.epoch - 1);
        tokio::task::yield_now().await;
        assert!(!caught_up.is_finished(), "an earlier barrier does not count");
        c.ack(8, barrier.epoch);
        let filling = caught_up.await.unwrap();
        // Sink 7 never passed it: it is not waited for.
        let gone = tokio::spawn(async move { filling.caught_up().await });
        barriers.recv().await.unwrap();
        c.unregister_sink(8);
        gone.await.unwrap();
    }

    /// A root passes a checkpoint barrier and goes on at once: the checkpoint completes later,
    /// when the sinks have passed it, with the position the root reported.
    #[tokio::test]
    async fn a_root_does_not_wait_for_the_checkpoint_it_passes() {
        let c = Coordinator::new();
        let (tx, mut barriers) = barrier_channel();
        c.register_root(tx);
        c.register_sink(7);
        let checkpoint = tokio::spawn({
            let c = c.clone();
            async move { c.checkpoint(BarrierKind::Periodic).await.map(|cut| cut.positions) }
        });
        let barrier = barriers.recv().await.unwrap();
        assert!(barrier.checkpoint);
        let (out_tx, mut out_rx) = mpsc::channel(4);
        let mut outputs = crate::Outputs::new(vec![out_tx]);
        let root = crate::source::RootCheckpoints { coordinator: c.clone(), key: "src".into() };
        let position = crate::source::Position::from([(String::new(), 42)]);
        let epoch = barrier.epoch;
        // Returns although no sink has passed the barrier yet (the old design paused here).
        tokio::time::timeout(std::time::Duration::from_secs(10), crate::source::RootCheckpoints::pass(Some(&root), &mut outputs, barrier, Some(position), None))
            .await
            .expect("the root is not held")
            .unwrap();
        assert!(matches!(out_rx.recv().await, Some(crate::Message::Barrier(b)) if b.epoch == epoch));
        assert!(!checkpoint.is_finished());
        c.ack(7, epoch);
        assert_eq!(checkpoint.await.unwrap().unwrap()["src"], 42);
    }
}
