//! The writer of a table: the root that applies `INSERT`, `UPDATE` and `DELETE` to the
//! table's stored rows and emits the resulting changelog to the views that read it.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use openclaw_storage::{RowCodec, StateWrite};
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
}

pub struct TableRequest {
    pub write: TableWrite,
    /// Answered with the number of rows affected once the change is stored and sent on.
    pub done: oneshot::Sender<EngineResult<usize>>,
}

/// Applies writes to one table.
pub struct TableWriter {
    object: ObjectId,
    state: Arc<MaterializedState>,
    key_codec: Option<RowCodec>,
    next_row_id: u64,
    outputs: Outputs,
    watermark: Option<WatermarkGenerator>,
    /// Writes applied since the writer started: its position at a checkpoint.
    writes: u64,
    checkpoints: Option<crate::source::RootCheckpoints>,
}

impl TableWriter {
    /// `idle_timeout_ms`: see [`crate::EngineConfig::idle_timeout_ms`].
    pub fn new(object: ObjectId, state: Arc<MaterializedState>, watermark: Option<WatermarkSpec>, idle_timeout_ms: u64) -> EngineResult<Self> {
        let key_codec = match &state.layout {
            Layout::Keyed(cols) => Some(RowCodec::new(Arc::new(state.schema().project(cols)?))?),
            _ => None,
        };
        let next_row_id = Self::last_row_id(&state)? + 1;
        let watermark = watermark.map(|w| WatermarkGenerator::new(w, idle_timeout_ms));
        Ok(Self { object, state, key_codec, next_row_id, outputs: Outputs::default(), watermark, writes: 0, checkpoints: None })
    }

    /// Takes part in checkpoints: pauses behind checkpoint barriers, reporting its position.
    pub fn with_checkpoints(mut self, checkpoints: crate::source::RootCheckpoints) -> Self {
        self.checkpoints = Some(checkpoints);
        self
    }

    fn last_row_id(state: &MaterializedState) -> EngineResult<u64> {
        if state.layout != Layout::RowId {
            return Ok(0);
        }
        let mut last = 0;
        state.store.scan(&state.cf, None, |k, _| {
            last = u64::from_be_bytes(k.try_into().expect("8-byte row id"));
            true
        })?;
        Ok(last)
    }

    /// Serves write requests and barriers until both channels close.
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<TableRequest>,
        mut barriers: mpsc::Receiver<Barrier>,
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
                        let result = self.apply(req.write).await;
                        let failed = result.is_err();
                        let _ = req.done.send(result);
                        if failed {
                            tracing::warn!(table = self.object, "table write failed");
                        }
                    }
                    None => return Ok(()),
                },
            }
        }
    }

    async fn on_barrier(&mut self, barrier: Barrier, chunk_rows: usize) -> EngineResult<()> {
        for (tx, snapshot) in barrier.take_subscriptions(self.object) {
            if snapshot {
                self.state.send_snapshot(&tx, chunk_rows).await?;
            }
            if let Some(wm) = self.watermark.as_ref().and_then(|w| w.current()) {
                let _ = tx.send(Message::Watermark(wm)).await;
            }
            if self.watermark.as_ref().is_some_and(|w| w.is_idle()) {
                let _ = tx.send(Message::Idle).await;
            }
            self.outputs.add(tx);
        }
        // Between writes a table has nothing to read: it is starved by definition.
        if let Some(w) = &mut self.watermark {
            w.note_starved();
        }
        if self.watermark.as_mut().is_some_and(|w| w.goes_idle_at_barrier()) {
            self.outputs.send(Message::Idle).await?;
        }
        crate::source::RootCheckpoints::pass(self.checkpoints.as_ref(), &mut self.outputs, barrier, Some(crate::source::Position::from([(String::new(), self.writes)])), None).await
    }

    async fn apply(&mut self, write: TableWrite) -> EngineResult<usize> {
        self.writes += 1;
        let (changes, n) = match write {
            TableWrite::Upsert(batch) => (self.upsert(&batch, StateWrite::default())?, batch.num_rows()),
            TableWrite::Ingest(chunk, extra) => self.ingest(&chunk, extra)?,
            TableWrite::Delete(batch) => self.delete(&batch, StateWrite::default())?,
        };
        if let Some(chunk) = changes.filter(|c| !c.is_empty()) {
            let advanced = match &mut self.watermark {
                Some(w) => w.observe(chunk.batch())?,
                None => None,
            };
            self.outputs.send(Message::Chunk(chunk)).await?;
            if let Some(wm) = advanced {
                self.outputs.send(Message::Watermark(wm)).await?;
            }
        }
        Ok(n)
    }

    fn upsert(&mut self, batch: &RecordBatch, extra: StateWrite) -> EngineResult<Option<StreamChunk>> {
        let rows = self.state.row_codec().encode(batch.columns())?;
        let mut write = StateWrite::default();
        write.append(extra);
        let Some(key_codec) = &self.key_codec else {
            for row in rows.iter() {
                write.put(&self.state.cf, self.next_row_id.to_be_bytes().to_vec(), row.data().to_vec());
                self.next_row_id += 1;
            }
            self.state.store.write_durable(write)?;
            return Ok(Some(StreamChunk::inserts(batch.clone())));
        };
        let keys = key_codec.encode(&key_columns(batch, &self.state.layout))?;
        let existing = self.lookup(keys.iter().map(|k| k.data()))?;
        // Later rows of the same batch see earlier ones: the overlay holds this batch's writes.
        let mut overlay: HashMap<&[u8], Vec<u8>> = HashMap::new();
        let mut ops = Vec::with_capacity(batch.num_rows());
        let mut out_rows: Vec<Vec<u8>> = Vec::with_capacity(batch.num_rows());
        for (i, (key, new_row)) in keys.iter().zip(rows.iter()).enumerate() {
            let old = overlay.get(key.data()).cloned().or_else(|| existing[i].clone());
            if let Some(old) = old {
                ops.extend([Op::UpdateDelete, Op::UpdateInsert]);
                out_rows.push(old);
            } else {
                ops.push(Op::Insert);
            }
            out_rows.push(new_row.data().to_vec());
            overlay.insert(key.data(), new_row.data().to_vec());
            write.put(&self.state.cf, key.data().to_vec(), new_row.data().to_vec());
        }
        self.state.store.write_durable(write)?;
        let out = self.state.row_codec().decode(out_rows.iter().map(|r| r.as_slice()))?;
        Ok(Some(StreamChunk::new(ops, out)))
    }

    /// A connector's chunk: runs of inserts (upserted) and deletes, in order. The position
    /// goes with the last run's write; a crash between runs replays them all from the previous
    /// position, and upserts and deletes by key replayed in order end in the same rows.
    fn ingest(&mut self, chunk: &StreamChunk, extra: StateWrite) -> EngineResult<(Option<StreamChunk>, usize)> {
        let ops = chunk.ops();
        if ops.iter().all(|op| *op == Op::Insert) {
            return Ok((self.upsert(chunk.batch(), extra)?, chunk.num_rows()));
        }
        let mut runs: Vec<(usize, usize)> = vec![];
        for (i, op) in ops.iter().enumerate() {
            assert!(matches!(op, Op::Insert | Op::Delete), "a connector sends inserts and deletes");
            match runs.last_mut() {
                Some((start, len)) if ops[*start] == *op => *len += 1,
                _ => runs.push((i, 1)),
            }
        }
        let mut extra = Some(extra);
        let mut out = vec![];
        for (k, &(start, len)) in runs.iter().enumerate() {
            let part = chunk.batch().slice(start, len);
            let write = if k + 1 == runs.len() { extra.take().expect("one last run") } else { StateWrite::default() };
            let changes = match ops[start] {
                Op::Delete => self.delete(&part, write)?.0,
                _ => self.upsert(&part, write)?,
            };
            out.extend(changes);
        }
        let ops: Vec<Op> = out.iter().flat_map(|c| c.ops().iter().copied()).collect();
        let batches: Vec<RecordBatch> = out.iter().map(|c| c.batch().clone()).collect();
        let batch = datafusion::arrow::compute::concat_batches(&self.state.schema(), &batches)?;
        Ok((Some(StreamChunk::new(ops, batch)), chunk.num_rows()))
    }

    /// Deletes the rows with the keys of `batch`, in one durable write with `extra`.
    fn delete(&mut self, batch: &RecordBatch, extra: StateWrite) -> EngineResult<(Option<StreamChunk>, usize)> {
        let Some(key_codec) = &self.key_codec else {
            crate::internal_err!("delete on a table without a primary key");
        };
        let keys = key_codec.encode(&key_columns(batch, &self.state.layout))?;
        let existing = self.lookup(keys.iter().map(|k| k.data()))?;
        let mut write = StateWrite::default();
        write.append(extra);
        let mut seen = std::collections::HashSet::new();
        let mut out_rows = vec![];
        for (key, old) in keys.iter().zip(existing) {
            if let Some(old) = old {
                if seen.insert(key.data()) {
                    write.delete(&self.state.cf, key.data().to_vec());
                    out_rows.push(old);
                }
            }
        }
        let n = out_rows.len();
        self.state.store.write_durable(write)?;
        if n == 0 {
            return Ok((None, 0));
        }
        let out = self.state.row_codec().decode(out_rows.iter().map(|r| r.as_slice()))?;
        Ok((Some(StreamChunk::new(vec![Op::Delete; n], out)), n))
    }

    fn lookup<'a>(&self, keys: impl Iterator<Item = &'a [u8]>) -> EngineResult<Vec<Option<Vec<u8>>>> {
        let keys: Vec<&[u8]> = keys.collect();
        Ok(self.state.store.multi_get(&self.state.cf, &keys)?)
    }
}

fn key_columns(batch: &RecordBatch, layout: &Layout) -> Vec<ArrayRef> {
    match layout {
        Layout::Keyed(cols) => cols.iter().map(|&c| batch.column(c).clone()).collect(),
        _ => vec![],
    }
}
