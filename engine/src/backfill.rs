//! Backfill that does not stop the upstream (after RisingWave's no-shuffle backfill): a new
//! downstream of a table is sent the table's stored rows page by page, in key order, between
//! the table's own writes, while barriers and writes go on.
//!
//! The table's writer owns the backfill, so each page is read between two of its writes,
//! when the stored rows are exactly what it has sent on. Each backfill keeps a cursor, the key
//! of the last row it sent. A live change to a key at or before the cursor is forwarded (the
//! downstream holds that row already); a change after it is not, because the page that reaches
//! its key will read the row as it is then. So at every barrier the downstream has seen the
//! table restricted to keys up to the cursor, exactly, and once the last page is sent it is an
//! ordinary output. Watermarks reach it only then: the stored rows may lie behind them.
//!
//! The pages keep the downstream's channel full, so the writer never waits on it for a live
//! change or a barrier: those wait, in order, in the backfill's outbox (bounded by
//! [`BACKFILL_OUTBOX_ROWS`] and [`BACKFILL_OUTBOX_BARRIERS`]) and go before the next page.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::operators::materialize::Layout;
use crate::operators::MaterializedState;
use crate::{Barrier, EngineResult, Message, StreamChunk};

/// Where a backfill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackfillState {
    Running,
    /// Every stored row was sent; the downstream gets every change from now on.
    Done,
    /// The downstream or the upstream went away first.
    Abandoned,
}

/// A backfill's progress, shared with the statement that created the downstream (which waits
/// for it) and with `SHOW MATERIALIZED VIEWS`.
#[derive(Debug)]
pub struct BackfillProgress {
    pub rows_sent: AtomicU64,
    state: watch::Sender<BackfillState>,
}

impl Default for BackfillProgress {
    fn default() -> Self {
        Self { rows_sent: AtomicU64::new(0), state: watch::channel(BackfillState::Running).0 }
    }
}

impl BackfillProgress {
    pub fn state(&self) -> BackfillState {
        *self.state.borrow()
    }

    /// Waits until the backfill is done (`true`) or abandoned (`false`).
    pub async fn finished(&self) -> bool {
        let mut rx = self.state.subscribe();
        let state = rx.wait_for(|s| *s != BackfillState::Running).await.map(|s| *s);
        matches!(state, Ok(BackfillState::Done))
    }

    /// Says that every row was sent (by an upstream that sends them all at once).
    pub fn mark_done(&self) {
        self.end(BackfillState::Done);
    }

    fn end(&self, state: BackfillState) {
        self.state.send_if_modified(|s| {
            let running = *s == BackfillState::Running;
            if running {
                *s = state;
            }
            running
        });
    }
}

/// Most rows of live changes held for one backfilling downstream whose channel is full (of
/// pages) before the table's writer waits for it. Below the limits, a downstream working off
/// its pages never holds up the writer, so writes and FLUSH stay fast during a backfill; at
/// them, a downstream that does not keep up slows the writer as any output does.
pub const BACKFILL_OUTBOX_ROWS: usize = 65_536;

/// Most barriers held for one backfilling downstream (see [`BACKFILL_OUTBOX_ROWS`]). Barriers
/// are small and come at the rate of statements, not of rows: a limit in messages slowed
/// every INSERT to the pace of a busy view's pages once FLUSHes came quickly (6.7 s).
pub const BACKFILL_OUTBOX_BARRIERS: usize = 10_000;

/// Messages for a backfilling downstream that did not fit in its channel, in order.
#[derive(Default)]
struct Outbox {
    held: VecDeque<Message>,
    rows: usize,
    barriers: usize,
}

impl Outbox {
    fn push(&mut self, message: Message) {
        match &message {
            Message::Chunk(c) => self.rows += c.num_rows(),
            Message::Barrier(_) => self.barriers += 1,
            Message::Watermark(_) | Message::Idle => {}
        }
        self.held.push_back(message);
    }

    fn pop(&mut self) -> Option<Message> {
        let message = self.held.pop_front()?;
        match &message {
            Message::Chunk(c) => self.rows -= c.num_rows(),
            Message::Barrier(_) => self.barriers -= 1,
            Message::Watermark(_) | Message::Idle => {}
        }
        Some(message)
    }

    fn over_limit(&self) -> bool {
        self.rows > BACKFILL_OUTBOX_ROWS || self.barriers > BACKFILL_OUTBOX_BARRIERS
    }
}

/// One downstream being backfilled.
struct Backfill {
    tx: mpsc::Sender<Message>,
    /// Messages for `tx` that did not fit in its channel: they go before any page.
    outbox: Outbox,
    /// The stored key of the last row sent; `None` before the first page.
    cursor: Option<Vec<u8>>,
    progress: Arc<BackfillProgress>,
}

impl Backfill {
    /// Sends `message` after those already held, holding it if the channel is full; waits only
    /// while the outbox is over its limits. A downstream that went away is dropped at its next
    /// page.
    async fn post(&mut self, message: Message) {
        if self.outbox.held.is_empty() {
            match self.tx.try_send(message) {
                Err(mpsc::error::TrySendError::Full(m)) => self.outbox.push(m),
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        } else {
            self.outbox.push(message);
        }
        while self.outbox.over_limit() {
            let held = self.outbox.pop().expect("over the limit");
            if self.tx.send(held).await.is_err() {
                self.outbox = Outbox::default();
            }
        }
    }
}

impl Drop for Backfill {
    fn drop(&mut self) {
        // A no-op once done: only a backfill cut short leaves its waiter hanging otherwise.
        self.progress.end(BackfillState::Abandoned);
    }
}

/// The backfills of one table, run by its writer.
#[derive(Default)]
pub struct Backfills {
    active: Vec<Backfill>,
}

impl Backfills {
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    pub fn start(&mut self, tx: mpsc::Sender<Message>, progress: Arc<BackfillProgress>) {
        self.active.push(Backfill { tx, outbox: Outbox::default(), cursor: None, progress });
    }

    /// Sends each backfilling downstream the rows of `chunk` at or before its cursor.
    pub async fn forward(&mut self, state: &MaterializedState, chunk: &StreamChunk) -> EngineResult<()> {
        if self.active.is_empty() {
            return Ok(());
        }
        // A table without a primary key only appends, after every stored row: its new rows
        // are all past every cursor, and a later page reads them.
        let Some(keys) = state.encode_keys(chunk.batch())? else { return Ok(()) };
        debug_assert!(matches!(state.layout, Layout::Keyed(_)));
        for b in &mut self.active {
            let Some(cursor) = &b.cursor else { continue };
            let mask: datafusion::arrow::array::BooleanArray = keys.iter().map(|k| Some(k.data() <= cursor.as_slice())).collect();
            let part = chunk.filter(&mask)?;
            if !part.is_empty() {
                b.post(Message::Chunk(part)).await;
            }
        }
        Ok(())
    }

    /// Sends the barrier to every backfilling downstream: a backfill never holds barriers.
    pub async fn forward_barrier(&mut self, barrier: &Barrier) {
        for b in &mut self.active {
            b.post(Message::Barrier(barrier.clone())).await;
        }
    }

    /// Resolves when some backfilling downstream has room for a page: its index and a permit.
    /// Pending forever while there is none.
    pub async fn ready(&self) -> (usize, Option<mpsc::OwnedPermit<Message>>) {
        if self.active.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.active.iter().enumerate().map(|(i, b)| {
            let tx = b.tx.clone();
            Box::pin(async move { (i, tx.reserve_owned().await.ok()) })
        });
        futures::future::select_all(waits).await.0
    }

    /// A page for backfill `i` if its downstream has room now; `None` when none has.
    pub fn try_ready(&self) -> Option<(usize, mpsc::OwnedPermit<Message>)> {
        self.active.iter().enumerate().find_map(|(i, b)| b.tx.clone().try_reserve_owned().ok().map(|p| (i, p)))
    }

    /// Sends backfill `i` what its outbox holds first, else its next page of at most `page_rows` rows. Returns its sender once
    /// every stored row is sent (the caller makes it an ordinary output), and drops it when
    /// its downstream went away (`permit` is `None`).
    pub fn step(
        &mut self,
        i: usize,
        permit: Option<mpsc::OwnedPermit<Message>>,
        state: &MaterializedState,
        page_rows: usize,
    ) -> EngineResult<Option<mpsc::Sender<Message>>> {
        let Some(permit) = permit else {
            self.active.swap_remove(i);
            return Ok(None);
        };
        let b = &mut self.active[i];
        if let Some(held) = b.outbox.pop() {
            permit.send(held);
            return Ok(None);
        }
        let (batch, last) = state.read_page(None, b.cursor.as_deref(), page_rows.max(1))?;
        b.progress.rows_sent.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        if batch.num_rows() > 0 {
            permit.send(Message::Chunk(StreamChunk::inserts(batch)));
        }
        match last {
            Some(key) => {
                b.cursor = Some(key);
                Ok(None)
            }
            None => {
                let b = self.active.swap_remove(i);
                b.progress.end(BackfillState::Done);
                Ok(Some(b.tx.clone()))
            }
        }
    }
}
