//! What every exactly-once sink shares: a buffer of records in the state store (part of every
//! checkpoint), the queue of checkpoints waiting to be committed, and the committer task that
//! writes a checkpoint's records out once it is durable.
//!
//! Two-phase commit, as in Flink: the sink's operator appends what it receives to its
//! [`SeqBuffer`] (pre-commit: the buffer goes into the checkpoint) and, at each checkpoint
//! barrier, pushes the buffer's end to [`PendingCommits`]. [`run_committer`] waits until that
//! checkpoint is durable, then has the sink's [`Committer`] write the records out (a Kafka
//! transaction, Parquet files), note how far it got where a restart finds it, and trim the
//! buffer. After a crash the restored buffer holds what the restored checkpoint saw; the
//! committer's `recover` says which of it is out already.

use std::sync::Arc;
use std::time::Duration;

use openclaw_engine::{EngineError, EngineResult, ObjectId};
use openclaw_storage::{StateWrite, Store};

/// The column family where sinks note what they have committed (sink id → buffer position).
/// Like tables, it is carried over when a restart rolls state back: it describes the outside
/// world, not the dataflow.
pub const SINK_COMMITS_CF: &str = "sink_commits";

/// Checkpoints whose records wait to be committed, at most. Beyond it the newest waiting
/// checkpoint takes in the next one (one commit for both), so that a checkpoint barrier never
/// waits on the outside world: with a broker or a disk down, FLUSH, DDL and checkpoints go on.
pub(crate) const PENDING_COMMITS: usize = 16;

/// The checkpoints whose records wait to be committed, as (epoch, buffer end), oldest first;
/// bounded by [`PENDING_COMMITS`] by merging the newest.
#[derive(Default)]
pub(crate) struct PendingCommits {
    queue: std::sync::Mutex<std::collections::VecDeque<(u64, u64)>>,
    notify: tokio::sync::Notify,
    closed: std::sync::atomic::AtomicBool,
}

impl PendingCommits {
    /// Never waits.
    pub(crate) fn push(&self, epoch: u64, end: u64) {
        let mut queue = self.queue.lock().expect("pending commits lock");
        if let Some(&(last_epoch, last_end)) = queue.back() {
            assert!(last_epoch < epoch && last_end <= end, "checkpoints arrive in order");
        }
        if queue.len() == PENDING_COMMITS {
            queue.pop_back();
        }
        queue.push_back((epoch, end));
        drop(queue);
        self.notify.notify_one();
    }

    /// The oldest waiting checkpoint; `None` once closed and empty.
    pub(crate) async fn pop(&self) -> Option<(u64, u64)> {
        loop {
            let notified = self.notify.notified();
            if let Some(next) = self.queue.lock().expect("pending commits lock").pop_front() {
                return Some(next);
            }
            if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return None;
            }
            notified.await;
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_one();
    }
}

/// A sink's buffer in the state store: values by sequence number (u64, big endian).
#[derive(Clone)]
pub(crate) struct SeqBuffer {
    pub(crate) store: Store,
    pub(crate) cf: Arc<str>,
}

impl SeqBuffer {
    /// Appends `values` from `*next_seq` on, in one write.
    pub(crate) fn append(&self, next_seq: &mut u64, values: impl IntoIterator<Item = Vec<u8>>) -> EngineResult<()> {
        let mut write = StateWrite::default();
        for v in values {
            write.put(&self.cf, next_seq.to_be_bytes().to_vec(), v);
            *next_seq += 1;
        }
        Ok(self.store.write_state(write)?)
    }

    /// Values with sequence numbers in `from..to`, in order, each through `decode`.
    pub(crate) fn read<T>(&self, from: u64, to: u64, mut decode: impl FnMut(&[u8]) -> EngineResult<T>) -> EngineResult<Vec<T>> {
        let mut out = vec![];
        let mut failed = None;
        let after = from.checked_sub(1).map(u64::to_be_bytes);
        self.store.scan_from(&self.cf, after.as_ref().map(|a| a.as_slice()), None, |k, v| {
            let seq = u64::from_be_bytes(k.try_into().expect("8-byte sequence number"));
            if seq >= to {
                return false;
            }
            match decode(v) {
                Ok(r) => out.push(r),
                Err(e) => failed = Some(e),
            }
            failed.is_none()
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// The sequence number after the last buffered value (0 when empty).
    pub(crate) fn end(&self) -> EngineResult<u64> {
        let mut last = None;
        self.store.scan(&self.cf, None, |k, _| {
            last = Some(u64::from_be_bytes(k.try_into().expect("8-byte sequence number")));
            true
        })?;
        Ok(last.map_or(0, |l| l + 1))
    }

    pub(crate) fn trim(&self, to: u64) -> EngineResult<()> {
        Ok(self.store.delete_range(&self.cf, &0u64.to_be_bytes(), &to.to_be_bytes())?)
    }

    /// The buffer position sink `sink` noted after its last commit (0 before the first).
    pub(crate) fn noted(&self, sink: ObjectId) -> EngineResult<u64> {
        self.store.create_cf(SINK_COMMITS_CF, openclaw_storage::CfKind::Plain)?;
        let found = self.store.multi_get(SINK_COMMITS_CF, &[&sink.to_be_bytes()])?;
        Ok(match found.first().and_then(|v| v.as_deref()) {
            Some(v) => u64::from_be_bytes(v.try_into().map_err(|_| EngineError::Internal("bad sink commit record".into()))?),
            None => 0,
        })
    }

    /// Notes, durably, that sink `sink` has committed everything before `to`; then trims.
    pub(crate) fn note_and_trim(&self, sink: ObjectId, to: u64) -> EngineResult<()> {
        let mut note = StateWrite::default();
        note.put(&Arc::from(SINK_COMMITS_CF), sink.to_be_bytes().to_vec(), to.to_be_bytes().to_vec());
        self.store.write_durable(note)?;
        self.trim(to)
    }
}

/// A sink operator's end of its committer: checkpoints are pushed here; dropping it lets the
/// committer finish what waits, then end.
#[derive(Default)]
pub(crate) struct CommitQueue(Option<Arc<PendingCommits>>, Arc<std::sync::atomic::AtomicU64>);

impl CommitQueue {
    /// Starts `committer` for sink `sink`, whose buffer has everything before `done` written
    /// out already and ends at `end` (what the restored checkpoint held is committed first).
    pub(crate) fn start<C: Committer>(committer: C, sink: ObjectId, done: u64, end: u64, coordinator: Arc<openclaw_engine::Coordinator>, span: tracing::Span) -> Self {
        let pending = Arc::new(PendingCommits::default());
        pending.push(0, end);
        coordinator.register_external(sink);
        let out = Arc::new(std::sync::atomic::AtomicU64::new(done));
        tokio::spawn(tracing::Instrument::instrument(run_committer(committer, done, pending.clone(), coordinator, sink, out.clone()), span));
        Self(Some(pending), out)
    }

    /// Waits while more than `max` chunks before `checkpointed` (a buffer end pushed at a
    /// checkpoint) are not committed yet. Never waits for a checkpoint to come: only commits
    /// of checkpoints already pushed move it on.
    pub(crate) async fn wait_for_room(&self, checkpointed: u64, max: u64) {
        let mut warned = false;
        while checkpointed.saturating_sub(self.1.load(std::sync::atomic::Ordering::SeqCst)) > max && self.0.is_some() {
            if !std::mem::replace(&mut warned, true) {
                tracing::warn!(max, "the sink's commits are behind; its dataflow waits for them");
            }
            tokio::time::sleep(COMMIT_POLL).await;
        }
    }

    /// At a checkpoint barrier: the buffer up to `end` is committed once it is durable.
    pub(crate) fn checkpoint(&self, barrier: &openclaw_engine::Barrier, end: u64) {
        if let (true, Some(pending)) = (barrier.checkpoint, &self.0) {
            pending.push(barrier.epoch, end);
        }
    }
}

impl Drop for CommitQueue {
    /// The committer commits what is waiting, then ends.
    fn drop(&mut self) {
        if let Some(pending) = &self.0 {
            pending.close();
        }
    }
}

/// Writes a range of a sink's buffer out. Runs on a blocking thread.
pub(crate) trait Committer: Send + Sync + 'static {
    /// Writes the buffered values `from..to` out, notes `to` (where [`SeqBuffer::noted`] or
    /// the outside world tells a restart), and trims the buffer; returns how many it wrote.
    /// Either all of them are out afterwards or the call fails and is retried with the same
    /// `from` (and the same or a larger `to`).
    fn commit(&self, from: u64, to: u64) -> EngineResult<usize>;
    /// For logs: what the sink writes to.
    fn target(&self) -> &str;
    /// Called about once a second while no checkpoint waits (housekeeping: retention,
    /// tiering). Runs on a blocking thread.
    fn idle(&self) {}
}

/// How often a sink waiting for its commits looks again.
const COMMIT_POLL: Duration = Duration::from_millis(100);

/// How often an idle committer gets [`Committer::idle`].
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Commits each checkpoint's records once it is durable, in order, retrying failures once a
/// second; tells the coordinator which checkpoint it has committed (what `FLUSH` waits for).
/// `done`: the buffer position already out.
/// `out`: where `done` is published, for [`CommitQueue::wait_for_room`].
pub(crate) async fn run_committer<C: Committer>(committer: C, mut done: u64, commits: Arc<PendingCommits>, coordinator: Arc<openclaw_engine::Coordinator>, sink: ObjectId, out: Arc<std::sync::atomic::AtomicU64>) {
    let this = Arc::new(committer);
    let mut committed = coordinator.committed_checkpoints();
    let mut last_idle = tokio::time::Instant::now();
    loop {
        // Housekeeping about once a second, whether checkpoints come or not.
        if last_idle.elapsed() >= IDLE_TICK {
            let idle = this.clone();
            if tokio::task::spawn_blocking(move || idle.idle()).await.is_err() {
                return;
            }
            last_idle = tokio::time::Instant::now();
        }
        let (epoch, end) = match tokio::time::timeout(IDLE_TICK, commits.pop()).await {
            Ok(Some(next)) => next,
            Ok(None) => break,
            Err(_) => continue,
        };
        if committed.wait_for(|c| *c >= epoch).await.is_err() {
            return; // the server is shutting down
        }
        if end <= done {
            coordinator.external_committed(sink, epoch);
            continue;
        }
        loop {
            let (c, from) = (this.clone(), done);
            match tokio::task::spawn_blocking(move || c.commit(from, end)).await {
                Ok(Ok(n)) => {
                    tracing::debug!(records = n, epoch, target = this.target(), "sink committed");
                    done = end;
                    out.store(done, std::sync::atomic::Ordering::SeqCst);
                    coordinator.external_committed(sink, epoch);
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, epoch, target = this.target(), "sink commit failed; retrying");
                    // Retried once a second: often enough to resume soon after the outside
                    // world is back, rarely enough not to flood the log.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(_) => return,
            }
        }
    }
    coordinator.unregister_external(sink);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_commits_stay_bounded_by_merging_the_newest() {
        let pending = PendingCommits::default();
        for epoch in 1..=(PENDING_COMMITS as u64 + 5) {
            pending.push(epoch, epoch * 10);
        }
        pending.close();
        let mut popped = vec![];
        while let Some(next) = pending.pop().await {
            popped.push(next);
        }
        assert_eq!(popped.len(), PENDING_COMMITS);
        // The oldest stay as they were; the last takes in every checkpoint past the limit.
        assert_eq!(popped[0], (1, 10));
        assert_eq!(popped[PENDING_COMMITS - 2], (PENDING_COMMITS as u64 - 1, (PENDING_COMMITS as u64 - 1) * 10));
        assert_eq!(*popped.last().unwrap(), (PENDING_COMMITS as u64 + 5, (PENDING_COMMITS as u64 + 5) * 10));
    }
}
