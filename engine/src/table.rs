//! The writer of a table: the root that applies `INSERT`, `UPDATE` and `DELETE` to the
//! table's stored rows and emits the resulting changelog to the views that read it.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use openclaw_storage::StateWrite;
use tokio::sync::{mpsc, oneshot};

use crate::operators::materialize::Layout;
use crate::operators::MaterializedState;
use crate::watermark::{WatermarkGenerator, WatermarkSpec};
use crate::{Barrier, EngineResult, Message, ObjectId, Op, Outputs, StreamChunk};

/// Most write requests queued at one table before writers wait.
pub const TABLE_REQUEST_QUEUE: usize = 64;

/// A change submitted by a session.
pub enum TableWrite {
    /// Rows to upsert (a table with a primary key) or append (without one).
    Upsert(RecordBatch),
    /// Rows to delete, matched by primary key.
    Delete(RecordBatch),
    /// Rows from a connector, stored with `extra` (the connector's position) so that a restart
    /// resumes exactly after them: inserts are upserted or appended; deletes (`FORMAT UPSERT`
    /// tombstones, a table with a primary key) delete by key.
    Ingest(StreamChunk, StateWrite),
    /// A statement's or a transaction's changes to this table, applied in order as one write
    /// in two phases, so that a transaction over several tables is one atomic RocksDB write:
    /// the writer computes the write and its changelog, answers `prepared` with the write
    /// (which the caller merges with the other tables' and makes durable), then waits for
    /// `decision`. `true`: the write is durable, the changelog is sent on; anything else:
    /// nothing happened. The writer serves nothing else meanwhile, so no other write and no
    /// barrier comes between the two phases.
    Prepare {
        changes: Vec<Change>,
        prepared: oneshot::Sender<EngineResult<StateWrite>>,
        decision: oneshot::Receiver<bool>,
    },
}

/// One step of a [`TableWrite::Prepare`].
#[derive(Debug, Clone)]
pub enum Change {
    /// Rows to upsert (or append, without a primary key).
    Upsert(RecordBatch),
    /// Rows to delete, matched by primary key.
    Delete(RecordBatch),
}

impl Change {
    pub fn batch(&self) -> &RecordBatch {
        match self {
            Change::Upsert(b) | Change::Delete(b) => b,
        }
    }
}

/// Rows a prepared write has changed so far, by primary key (`None`: deleted), so that later
/// steps of the same write see earlier ones.
type Overlay = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// Keys read by one `multi_get` of a write's lookups.
const LOOKUP_KEYS: usize = 8192;

pub struct TableRequest {
    pub write: TableWrite,
    /// Answered with the number of rows affected once the change is stored and sent on.
    pub done: oneshot::Sender<EngineResult<usize>>,
}

/// Applies writes to one table.
pub struct TableWriter {
    object: ObjectId,
    state: Arc<MaterializedState>,
    next_row_id: u64,
    outputs: Outputs,
    watermark: Option<WatermarkGenerator>,
    checkpoints: Option<crate::source::RootCheckpoints>,
    /// New downstreams still being sent the stored rows.
    backfills: crate::backfill::Backfills,
    /// Every write's changelog, for views that resume from a checkpoint.
    log: crate::table_log::TableLog,
    /// Downstreams resuming from a checkpoint, waiting for sources to be released (so that
    /// everything downstream of them is attached) to get the log replayed from their position.
    replays: Vec<(mpsc::Sender<Message>, u64)>,
}

impl TableWriter {
    /// `idle_timeout_ms`: see [`crate::EngineConfig::idle_timeout_ms`].
    pub fn new(object: ObjectId, state: Arc<MaterializedState>, watermark: Option<WatermarkSpec>, idle_timeout_ms: u64) -> EngineResult<Self> {
        let next_row_id = if state.layout == Layout::RowId { crate::table_blocks::next_row_id(&state)? } else { 1 };
        let log = crate::table_log::TableLog::open(&state.store, &state.cf)?;
        let watermark = watermark.map(|w| WatermarkGenerator::new(w, idle_timeout_ms));
        Ok(Self { object, state, next_row_id, outputs: Outputs::default(), watermark, checkpoints: None, backfills: Default::default(), log, replays: vec![] })
    }

    /// Takes part in checkpoints: reports its position at each checkpoint barrier.
    pub fn with_checkpoints(mut self, checkpoints: crate::source::RootCheckpoints) -> Self {
        self.checkpoints = Some(checkpoints);
        self
    }

    /// Serves write requests, barriers and backfill pages until the request and barrier
    /// channels close. Barriers come first; a backfill page goes after each write and
    /// whenever nothing else waits, so neither writes nor backfills starve.
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<TableRequest>,
        mut barriers: crate::coordinator::BarrierReceiver,
        chunk_rows: usize,
    ) -> EngineResult<()> {
        loop {
            tokio::select! {
                biased;
                barrier = barriers.recv() => match barrier {
                    Some(b) => self.on_barrier(b, chunk_rows).await?,
                    None => return Ok(()),
                },
                request = requests.recv() => match request {
                    Some(req) => {
                        let result = self.apply(req.write, chunk_rows).await;
                        let failed = result.is_err();
                        let _ = req.done.send(result);
                        if failed {
                            tracing::warn!(table = self.object, "table write failed");
                        }
                        if let Some((i, permit)) = self.backfills.try_ready() {
                            self.backfill_step(i, Some(permit), chunk_rows).await?;
                        }
                    }
                    None => return Ok(()),
                },
                (i, permit) = self.backfills.ready() => self.backfill_step(i, permit, chunk_rows).await?,
            }
        }
    }

    /// Sends backfill `i` a page; once it has every row, it becomes an ordinary output.
    async fn backfill_step(&mut self, i: usize, permit: Option<mpsc::OwnedPermit<Message>>, chunk_rows: usize) -> EngineResult<()> {
        if let Some(tx) = self.backfills.step(i, permit, &self.state, chunk_rows)? {
            self.attach(tx).await;
        }
        // A page is a chunk's worth of work: let the worker's other tasks run (see the
        // operator loop).
        tokio::task::yield_now().await;
        Ok(())
    }

    /// Once sources are released (a restart has attached every view), sends each resuming
    /// downstream the logged changes from its position, and makes it an output.
    async fn replay(&mut self, chunk_rows: usize) -> EngineResult<()> {
        let released = self.checkpoints.as_ref().is_none_or(|c| c.coordinator.sources_released());
        if self.replays.is_empty() || !released {
            return Ok(());
        }
        for (tx, from) in std::mem::take(&mut self.replays) {
            let chunks = self.log.read_from(&self.state, from, chunk_rows)?;
            let rows: usize = chunks.iter().map(|c| c.num_rows()).sum();
            tracing::info!(table = self.object, from, rows, "replaying the table's log to a resumed view");
            for chunk in chunks {
                let _ = tx.send(Message::Chunk(chunk)).await;
            }
            self.attach(tx).await;
        }
        Ok(())
    }

    /// Makes `tx` an output, with the watermark and idleness a downstream starts from.
    async fn attach(&mut self, tx: mpsc::Sender<Message>) {
        if let Some(wm) = self.watermark.as_ref().and_then(|w| w.current()) {
            let _ = tx.send(Message::Watermark(wm)).await;
        }
        if self.watermark.as_ref().is_some_and(|w| w.is_idle()) {
            let _ = tx.send(Message::Idle).await;
        }
        self.outputs.add(tx);
    }

    async fn on_barrier(&mut self, barrier: Barrier, chunk_rows: usize) -> EngineResult<()> {
        for crate::message::Attach { tx, backfill, replay_from } in barrier.take_subscriptions(self.object) {
            match (backfill, replay_from) {
                (Some(progress), _) => self.backfills.start(tx, progress),
                (None, Some(from)) => self.replays.push((tx, from)),
                (None, None) => self.attach(tx).await,
            }
        }
        self.replay(chunk_rows).await?;
        self.backfills.forward_barrier(&barrier).await;
        for (tx, _) in &self.replays {
            let _ = tx.send(Message::Barrier(barrier.clone())).await;
        }
        if barrier.checkpoint {
            self.log.at_checkpoint(&self.state.store)?;
        }
        // Between writes a table has nothing to read: it is starved by definition.
        if let Some(w) = &mut self.watermark {
            w.note_starved();
        }
        if self.watermark.as_mut().is_some_and(|w| w.goes_idle_at_barrier()) {
            self.outputs.send(Message::Idle).await?;
        }
        crate::source::RootCheckpoints::pass(self.checkpoints.as_ref(), &mut self.outputs, barrier, Some(crate::source::Position::from([(String::new(), self.log.position())])), None).await
    }

    async fn apply(&mut self, write: TableWrite, chunk_rows: usize) -> EngineResult<usize> {
        let (chunks, n) = match write {
            TableWrite::Upsert(batch) => self.commit(vec![Change::Upsert(batch)], StateWrite::default(), chunk_rows).await?,
            TableWrite::Delete(batch) => self.commit(vec![Change::Delete(batch)], StateWrite::default(), chunk_rows).await?,
            TableWrite::Ingest(chunk, extra) => {
                let n = chunk.num_rows();
                (self.commit(Self::ingest_changes(&chunk), extra, chunk_rows).await?.0, n)
            }
            TableWrite::Prepare { changes, prepared, decision } => {
                let (write, chunks, n) = match self.plan_changes(&changes, chunk_rows) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = prepared.send(Err(e));
                        return Ok(0);
                    }
                };
                if prepared.send(Ok(write)).is_err() || decision.await != Ok(true) {
                    return Ok(0); // not made durable: nothing happened
                }
                for chunk in chunks {
                    self.emit(chunk, chunk_rows).await?;
                }
                return Ok(n);
            }
        };
        for chunk in chunks {
            self.emit(chunk, chunk_rows).await?;
        }
        Ok(n)
    }

    /// Applies `changes` in order as one durable write together with `extra` (a connector's
    /// position), synced off the async workers; returns the changelog and the rows affected.
    async fn commit(&mut self, changes: Vec<Change>, extra: StateWrite, chunk_rows: usize) -> EngineResult<(Vec<StreamChunk>, usize)> {
        let (mut write, chunks, n) = self.plan_changes(&changes, chunk_rows)?;
        write.append(extra);
        let store = self.state.store.clone();
        tokio::task::spawn_blocking(move || store.write_durable(write))
            .await
            .map_err(|e| crate::EngineError::Internal(format!("table write task failed: {e}")))??;
        Ok((chunks, n))
    }

    /// A connector's chunk as changes: its runs of inserts (upserted) and deletes (by key,
    /// `FORMAT UPSERT` tombstones), in order.
    fn ingest_changes(chunk: &StreamChunk) -> Vec<Change> {
        let ops = chunk.ops();
        let mut runs: Vec<(usize, usize)> = vec![];
        for (i, op) in ops.iter().enumerate() {
            assert!(matches!(op, Op::Insert | Op::Delete), "a connector sends inserts and deletes");
            match runs.last_mut() {
                Some((start, len)) if ops[*start] == *op => *len += 1,
                _ => runs.push((i, 1)),
            }
        }
        runs.into_iter()
            .map(|(start, len)| {
                let part = chunk.batch().slice(start, len);
                if ops[start] == Op::Delete { Change::Delete(part) } else { Change::Upsert(part) }
            })
            .collect()
    }

    /// Sends a changelog chunk on in chunks of at most `chunk_rows` rows, with the watermark
    /// it advances. An update pair is never split across two chunks.
    async fn emit(&mut self, chunk: StreamChunk, chunk_rows: usize) -> EngineResult<()> {
        let mut start = 0;
        while start < chunk.num_rows() {
            let mut end = (start + chunk_rows.max(2)).min(chunk.num_rows());
            if end < chunk.num_rows() && chunk.ops()[end] == Op::UpdateInsert {
                end -= 1; // keep UpdateDelete with its UpdateInsert
            }
            let part = chunk.slice(start, end - start);
            start = end;
            let advanced = match &mut self.watermark {
                Some(w) => w.observe(part.batch())?,
                None => None,
            };
            self.backfills.forward(&self.state, &part).await?;
            self.outputs.send(Message::Chunk(part)).await?;
            if let Some(wm) = advanced {
                self.outputs.send(Message::Watermark(wm)).await?;
            }
        }
        Ok(())
    }

    /// The write (with its log entry) and changelog of a prepared write's changes, applied in
    /// order. Appended rows go in blocks of at most `chunk_rows` rows.
    fn plan_changes(&mut self, changes: &[Change], chunk_rows: usize) -> EngineResult<(StateWrite, Vec<StreamChunk>, usize)> {
        let mut overlay = Overlay::new();
        let mut write = StateWrite::default();
        let mut chunks = vec![];
        let mut n = 0;
        let first_row_id = self.next_row_id;
        // Keyed tables only: a keyless table appends each batch in blocks as it comes.
        let changes = if self.state.layout == Layout::RowId { std::borrow::Cow::Borrowed(changes) } else { merge_upserts(changes)? };
        for (i, change) in changes.iter().enumerate() {
            let later_changes = i + 1 < changes.len();
            let (chunk, affected) = match change {
                Change::Upsert(b) => (self.plan_upsert(b, &mut overlay, &mut write, chunk_rows, later_changes)?, b.num_rows()),
                Change::Delete(b) => self.plan_delete(b, &mut overlay, &mut write)?,
            };
            n += affected;
            chunks.extend(chunk.filter(|c| !c.is_empty()));
        }
        if self.state.layout == Layout::RowId {
            // The rows are in the table for good: the log names them rather than copying them.
            self.log.append_rows(&mut write, first_row_id, self.next_row_id - first_row_id);
        } else {
            self.log.append(&mut write, &chunks, self.state.row_codec())?;
        }
        Ok((write, chunks, n))
    }

    /// Adds an upsert of `batch` to `write` and returns its changelog. Rows see the rows
    /// `overlay` holds (earlier in this write), and are added to it (`later_changes`: other
    /// changes of this write follow, which must see them). Without a primary key, the rows
    /// are appended in blocks of at most `block_rows`.
    fn plan_upsert(&mut self, batch: &RecordBatch, overlay: &mut Overlay, write: &mut StateWrite, block_rows: usize, later_changes: bool) -> EngineResult<Option<StreamChunk>> {
        let Some(keys) = self.state.encode_keys(batch)? else {
            self.next_row_id = crate::table_blocks::append(&self.state, write, batch, self.next_row_id, block_rows)?;
            return Ok(Some(StreamChunk::inserts(batch.clone())));
        };
        let rows = self.state.row_codec().encode(batch.columns())?;
        let existing = self.lookup(keys.iter().map(|k| k.data()))?;
        if let Some(chunk) = self.plan_distinct_upserts(batch, &keys, &rows, &existing, overlay, write, later_changes)? {
            return Ok(Some(chunk));
        }
        let mut ops = Vec::with_capacity(batch.num_rows());
        let mut out_rows: Vec<Vec<u8>> = Vec::with_capacity(batch.num_rows());
        for (i, (key, new_row)) in keys.iter().zip(rows.iter()).enumerate() {
            let old = match overlay.get(key.data()) {
                Some(seen) => seen.clone(),
                None => existing[i].clone(),
            };
            if let Some(old) = old {
                ops.extend([Op::UpdateDelete, Op::UpdateInsert]);
                out_rows.push(old);
            } else {
                ops.push(Op::Insert);
            }
            out_rows.push(new_row.data().to_vec());
            overlay.insert(key.data().to_vec(), Some(new_row.data().to_vec()));
            write.put(&self.state.cf, key.data().to_vec(), new_row.data().to_vec());
        }
        let out = self.state.row_codec().decode(out_rows.iter().map(|r| r.as_slice()))?;
        Ok(Some(StreamChunk::new(ops, out)))
    }

    /// The common case of a bulk load, planned without copying rows back through the row
    /// codec: when no key of `batch` repeats in it or was written earlier in this write
    /// (`overlay`), each row replaces at most its stored row (`existing`). The changelog is
    /// the batch's own rows interleaved with the decoded replaced ones. `None` when a key
    /// repeats; [`Self::plan_upsert`] then works row by row.
    #[allow(clippy::too_many_arguments)]
    fn plan_distinct_upserts(
        &self,
        batch: &RecordBatch,
        keys: &openclaw_storage::Rows,
        rows: &openclaw_storage::Rows,
        existing: &[Option<Vec<u8>>],
        overlay: &mut Overlay,
        write: &mut StateWrite,
        later_changes: bool,
    ) -> EngineResult<Option<StreamChunk>> {
        // Replaced rows decode to the table's types, which the batch's must be to interleave.
        let stored_types = self.state.row_codec().schema().fields().iter().map(|f| f.data_type());
        if !stored_types.eq(batch.schema().fields().iter().map(|f| f.data_type())) {
            return Ok(None);
        }
        let mut seen = datafusion::common::HashSet::with_capacity(keys.num_rows());
        if !keys.iter().all(|k| seen.insert(k.data()) && !overlay.contains_key(k.data())) {
            return Ok(None);
        }
        let bytes = keys.iter().chain(rows.iter()).map(|r| r.data().len()).sum();
        write.reserve(keys.num_rows(), bytes);
        for (key, row) in keys.iter().zip(rows.iter()) {
            write.put_slices(&self.state.cf, key.data(), row.data());
        }
        // Later changes of this write see these rows: only then are they kept in the overlay.
        if later_changes {
            overlay.extend(keys.iter().zip(rows.iter()).map(|(k, r)| (k.data().to_vec(), Some(r.data().to_vec()))));
        }
        if existing.iter().all(Option::is_none) {
            return Ok(Some(StreamChunk::inserts(batch.clone())));
        }
        let replaced = self.state.row_codec().decode(existing.iter().flatten().map(Vec::as_slice))?;
        let mut ops = Vec::with_capacity(batch.num_rows() + replaced.num_rows() * 2);
        // (0, i): the i-th replaced row; (1, i): the batch's i-th row.
        let mut order = Vec::with_capacity(ops.capacity());
        let mut next_replaced = 0;
        for (i, old) in existing.iter().enumerate() {
            if old.is_some() {
                ops.extend([Op::UpdateDelete, Op::UpdateInsert]);
                order.push((0, next_replaced));
                next_replaced += 1;
            } else {
                ops.push(Op::Insert);
            }
            order.push((1, i));
        }
        let columns = (0..batch.num_columns())
            .map(|c| datafusion::arrow::compute::interleave(&[replaced.column(c).as_ref(), batch.column(c).as_ref()], &order))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(StreamChunk::new(ops, RecordBatch::try_new(batch.schema(), columns)?)))
    }

    /// Adds the deletes of the rows with the keys of `batch` to `write`, seeing `overlay`.
    fn plan_delete(&mut self, batch: &RecordBatch, overlay: &mut Overlay, write: &mut StateWrite) -> EngineResult<(Option<StreamChunk>, usize)> {
        let Some(keys) = self.state.encode_keys(batch)? else {
            crate::internal_err!("delete on a table without a primary key");
        };
        let existing = self.lookup(keys.iter().map(|k| k.data()))?;
        let mut out_rows = vec![];
        for (key, stored) in keys.iter().zip(existing) {
            let old = match overlay.get(key.data()) {
                Some(seen) => seen.clone(),
                None => stored,
            };
            if let Some(old) = old {
                write.delete(&self.state.cf, key.data().to_vec());
                overlay.insert(key.data().to_vec(), None);
                out_rows.push(old);
            }
        }
        let n = out_rows.len();
        if n == 0 {
            return Ok((None, 0));
        }
        let out = self.state.row_codec().decode(out_rows.iter().map(|r| r.as_slice()))?;
        Ok((Some(StreamChunk::new(vec![Op::Delete; n], out)), n))
    }

    /// The stored rows of `keys`, read with one `multi_get` per [`LOOKUP_KEYS`] keys (a bulk
    /// load's million keys at once would make RocksDB allocate for all of them).
    fn lookup<'a>(&self, keys: impl Iterator<Item = &'a [u8]>) -> EngineResult<Vec<Option<Vec<u8>>>> {
        let keys: Vec<&[u8]> = keys.collect();
        let mut found = Vec::with_capacity(keys.len());
        for part in keys.chunks(LOOKUP_KEYS) {
            found.extend(self.state.store.multi_get(&self.state.cf, part)?);
        }
        Ok(found)
    }
}

/// `changes` with each run of consecutive upserts as one upsert of their rows, in order: a
/// bulk load (COPY, ingest) arrives as many batches, and one batch is planned in one pass
/// without keeping every row in the overlay for the batches after it.
fn merge_upserts(changes: &[Change]) -> EngineResult<std::borrow::Cow<'_, [Change]>> {
    let consecutive = changes.windows(2).any(|w| matches!(w, [Change::Upsert(_), Change::Upsert(_)]));
    if !consecutive {
        return Ok(std::borrow::Cow::Borrowed(changes));
    }
    let mut merged: Vec<Change> = Vec::with_capacity(changes.len());
    let mut run: Vec<&RecordBatch> = vec![];
    let flush = |run: &mut Vec<&RecordBatch>, merged: &mut Vec<Change>| -> EngineResult<()> {
        match run.as_slice() {
            [] => {}
            [one] => merged.push(Change::Upsert((*one).clone())),
            many => merged.push(Change::Upsert(datafusion::arrow::compute::concat_batches(&many[0].schema(), many.iter().copied())?)),
        }
        run.clear();
        Ok(())
    };
    for change in changes {
        match change {
            Change::Upsert(b) => run.push(b),
            Change::Delete(_) => {
                flush(&mut run, &mut merged)?;
                merged.push(change.clone());
            }
        }
    }
    flush(&mut run, &mut merged)?;
    Ok(std::borrow::Cow::Owned(merged))
}
