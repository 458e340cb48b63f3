use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use openclaw_storage::{decode_count, CfKind, ReadSnapshot, RowCodec, StateWrite, Store};
use tokio::sync::mpsc;

use super::change_log::{ChangeLog, ChangeLogs};
use super::subscribe::SubscriberQueue;

use crate::{
    internal_err, Barrier, EngineError, EngineResult, Message, ObjectId, Operator, OperatorContext, StreamChunk, Watermark,
};

/// How the rows of a table or view are laid out in their column family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// key = the whole row, value = its multiplicity (i64, little endian). Any changelog can
    /// be applied to it, so views use it whatever their plan.
    Multiset,
    /// key = the primary-key columns, value = the whole row.
    Keyed(Vec<usize>),
    /// Rows appended under hidden, increasing row ids, in blocks of consecutive ids
    /// ([`crate::table_blocks`]).
    RowId,
}

/// The stored content of one table or view: where it lives and how to read it back.
pub struct MaterializedState {
    pub store: Store,
    pub cf: Arc<str>,
    pub layout: Layout,
    row_codec: RowCodec,
    /// Encodes the primary key of a [`Layout::Keyed`] table.
    key_codec: Option<RowCodec>,
}

impl MaterializedState {
    pub fn new(store: Store, cf: &str, schema: SchemaRef, layout: Layout) -> EngineResult<Self> {
        let kind = if layout == Layout::Multiset { CfKind::Counters } else { CfKind::Plain };
        store.create_cf(cf, kind)?;
        let key_codec = match &layout {
            Layout::Keyed(cols) => Some(RowCodec::new(Arc::new(schema.project(cols)?))?),
            _ => None,
        };
        Ok(Self { store, cf: Arc::from(cf), layout, row_codec: RowCodec::new(schema)?, key_codec })
    }

    /// The stored keys of `batch`'s rows (a batch of the whole row), for a keyed layout.
    pub fn encode_keys(&self, batch: &RecordBatch) -> EngineResult<Option<openclaw_storage::Rows>> {
        let (Some(codec), Layout::Keyed(cols)) = (&self.key_codec, &self.layout) else { return Ok(None) };
        let columns: Vec<_> = cols.iter().map(|&c| batch.column(c).clone()).collect();
        Ok(Some(codec.encode(&columns)?))
    }

    pub fn schema(&self) -> &SchemaRef {
        self.row_codec.schema()
    }

    /// The stored rows whose primary key is each row of `key_columns` (a keyed layout's key
    /// columns, in its order and types), read with one `multi_get`: the rows found, and per key
    /// the index of its row among them.
    pub fn lookup(&self, key_columns: &[ArrayRef]) -> EngineResult<(RecordBatch, Vec<Option<u32>>)> {
        let codec = self.key_codec.as_ref().ok_or_else(|| EngineError::Internal(format!("{} has no primary key to look up", self.cf)))?;
        let keys = codec.encode(key_columns)?;
        let keys: Vec<&[u8]> = keys.iter().map(|k| k.data()).collect();
        let values = self.store.multi_get(&self.cf, &keys)?;
        let mut found = vec![];
        let positions = values
            .iter()
            .map(|v| {
                v.as_deref().map(|row| {
                    found.push(row);
                    found.len() as u32 - 1
                })
            })
            .collect();
        Ok((self.row_codec.decode(found)?, positions))
    }

    pub fn row_codec(&self) -> &RowCodec {
        &self.row_codec
    }

    /// Reads up to about `max_rows` rows after key `after`, as of `snapshot`. Returns the rows
    /// and the last key read (`None` when the scan is finished).
    pub fn read_page(
        &self,
        snapshot: Option<&ReadSnapshot>,
        after: Option<&[u8]>,
        max_rows: usize,
    ) -> EngineResult<(RecordBatch, Option<Vec<u8>>)> {
        self.read_page_skipping(snapshot, after, max_rows, &|_| false)
    }

    /// [`Self::read_page`] without the rows whose stored key `skip` names (a transaction's
    /// own changes hide the committed rows they replace).
    pub fn read_page_skipping(
        &self,
        snapshot: Option<&ReadSnapshot>,
        after: Option<&[u8]>,
        max_rows: usize,
        skip: &dyn Fn(&[u8]) -> bool,
    ) -> EngineResult<(RecordBatch, Option<Vec<u8>>)> {
        if self.layout == Layout::RowId {
            // Appended rows are never replaced: there is nothing to skip.
            return crate::table_blocks::read_page(self, snapshot, after, max_rows);
        }
        let mut encoded: Vec<Vec<u8>> = Vec::new();
        let mut counts: Vec<u32> = Vec::new();
        let mut last_key = None;
        let mut rows = 0usize;
        let multiset = self.layout == Layout::Multiset;
        let mut negative = None;
        self.store.scan_from(&self.cf, after, snapshot, |key, value| {
            if multiset {
                let count = decode_count(value);
                if count < 0 {
                    negative = Some(count);
                    return false;
                }
                if count == 0 {
                    return true; // retracted; compaction will drop the key
                }
                encoded.push(key.to_vec());
                counts.push(count as u32);
                rows += count as usize;
            } else if !skip(key) {
                encoded.push(value.to_vec());
                rows += 1;
            }
            if rows >= max_rows {
                last_key = Some(key.to_vec());
                return false;
            }
            true
        })?;
        if let Some(count) = negative {
            internal_err!("a row of \"{}\" was deleted more often than inserted (count {count})", self.cf);
        }
        let batch = self.row_codec.decode(encoded.iter().map(|r| r.as_slice()))?;
        if !multiset || counts.iter().all(|&c| c == 1) {
            return Ok((batch, last_key));
        }
        let indices: UInt32Array =
            counts.iter().enumerate().flat_map(|(i, &c)| std::iter::repeat_n(i as u32, c as usize)).collect();
        Ok((take_record_batch(&batch, &indices)?, last_key))
    }

    /// Reads every row, in pages of `page_rows`.
    pub fn read_all(&self, snapshot: Option<&ReadSnapshot>, page_rows: usize) -> EngineResult<Vec<RecordBatch>> {
        let mut out = vec![];
        let mut after: Option<Vec<u8>> = None;
        loop {
            let (batch, last) = self.read_page(snapshot, after.as_deref(), page_rows)?;
            if batch.num_rows() > 0 {
                out.push(batch);
            }
            match last {
                Some(k) => after = Some(k),
                None => return Ok(out),
            }
        }
    }

    /// Sends the whole content as insert chunks to a new subscriber (its backfill).
    pub async fn send_snapshot(&self, tx: &mpsc::Sender<Message>, chunk_rows: usize) -> EngineResult<()> {
        let snapshot = self.store.snapshot();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let (batch, last) = self.read_page(Some(&snapshot), after.as_deref(), chunk_rows)?;
            if batch.num_rows() > 0 && tx.send(Message::Chunk(StreamChunk::inserts(batch))).await.is_err() {
                return Ok(()); // the subscriber went away during its backfill
            }
            match last {
                Some(k) => after = Some(k),
                None => return Ok(()),
            }
        }
    }

    /// Adds a changelog chunk to `deltas`: each row's change of count (multiset layout).
    pub fn add_deltas(&self, chunk: &StreamChunk, deltas: &mut HashMap<Vec<u8>, i64>) -> EngineResult<()> {
        debug_assert_eq!(self.layout, Layout::Multiset);
        let rows = self.row_codec.encode(chunk.columns())?;
        for (i, op) in chunk.ops().iter().enumerate() {
            let row = rows.row(i).data();
            match deltas.get_mut(row) {
                Some(d) => *d += op.sign(),
                None => {
                    deltas.insert(row.to_vec(), op.sign());
                }
            }
        }
        Ok(())
    }

    /// Applies `deltas` in one write and empties it: each row's count goes up or down by
    /// merge, with no read before the write. A count that reaches zero reads as absent.
    pub fn apply_deltas(&self, deltas: &mut HashMap<Vec<u8>, i64>) -> EngineResult<()> {
        let mut write = StateWrite::default();
        for (key, delta) in deltas.drain() {
            if delta != 0 {
                write.add_count(&self.cf, key, delta);
            }
        }
        self.store.write_state(write)?;
        Ok(())
    }
}


/// Most distinct rows a view buffers between two barriers. Beyond it the buffer is written
/// early, so only an epoch larger than this (a backfill, a huge transaction) can be seen in
/// part by a query of the view.
pub const MAX_EPOCH_BUFFER_ROWS: usize = 262_144;

/// The last operator of a view: applies the changelog to the view's stored content at each
/// barrier, serves subscriptions of downstream views, and acknowledges barriers as a sink.
///
/// Changes are buffered until the barrier (epoch-buffered writes, as in RisingWave's state
/// tables), so that a query reads the view at an epoch boundary: a transaction, which lands
/// in one epoch, is seen whole or not at all.
pub struct MaterializeOperator {
    object: ObjectId,
    state: Arc<MaterializedState>,
    /// The last watermark of each column, and whether the input is idle: what a view that
    /// subscribes later must start from, as it would have seen them had it been there.
    watermarks: BTreeMap<usize, i64>,
    idle: bool,
    /// This epoch's changes, by encoded row.
    pending: HashMap<Vec<u8>, i64>,
    /// Subscribers of this view (`SUBSCRIBE`): each gets every epoch's consolidated changes,
    /// the ones `pending` holds, at the barrier, without a dataflow of its own.
    watchers: Vec<Arc<SubscriberQueue>>,
    /// Changes of this epoch already written early (an epoch over `MAX_EPOCH_BUFFER_ROWS`),
    /// kept for the watchers.
    written_early: Vec<(RecordBatch, Int64Array)>,
    /// The durable subscriptions' logs of this view, as the catalog holds them.
    logs: ChangeLogs,
    /// The logs written at the last barrier: state of this operator, exported with it.
    logging: Vec<Arc<ChangeLog>>,
}

impl MaterializeOperator {
    pub fn new(object: ObjectId, state: Arc<MaterializedState>) -> Self {
        Self::with_logs(object, state, ChangeLogs::default())
    }

    /// A view that also writes the changelogs in `logs` (durable subscriptions) at each barrier.
    pub fn with_logs(object: ObjectId, state: Arc<MaterializedState>, logs: ChangeLogs) -> Self {
        Self {
            object,
            state,
            watermarks: BTreeMap::new(),
            idle: false,
            pending: HashMap::new(),
            watchers: vec![],
            written_early: vec![],
            logs,
            logging: vec![],
        }
    }

    /// Whether this epoch's changes are wanted decoded (by subscribers or logs).
    fn changes_wanted(&self) -> bool {
        !self.watchers.is_empty() || !self.logging.is_empty()
    }

    /// Writes `changes` (epoch `epoch`'s) to every log, adopting new ones, and drops what is
    /// past each log's retention: one write for all.
    fn write_logs(&mut self, epoch: u64, changes: &[(RecordBatch, Int64Array)]) -> EngineResult<()> {
        if self.logging.is_empty() {
            return Ok(());
        }
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut write = StateWrite::default();
        for log in &self.logging {
            if log.is_adopted() {
                log.append(epoch, now_ms, changes, &mut write)?;
            } else {
                // Its first epoch is the one after this barrier.
                log.adopt(epoch, &mut write);
            }
            log.trim(now_ms, &mut write)?;
        }
        self.store_write(write)
    }

    fn store_write(&self, write: StateWrite) -> EngineResult<()> {
        if !write.is_empty() {
            self.state.store.write_state(write)?;
        }
        Ok(())
    }

    /// The buffered changes as rows and their diffs, rows that go first (`None`: none).
    fn pending_changes(&self) -> EngineResult<Option<(RecordBatch, Int64Array)>> {
        let mut changed: Vec<(&[u8], i64)> = self.pending.iter().filter(|(_, d)| **d != 0).map(|(k, d)| (k.as_slice(), *d)).collect();
        if changed.is_empty() {
            return Ok(None);
        }
        changed.sort_by_key(|(_, d)| *d > 0);
        let rows = self.state.row_codec().decode(changed.iter().map(|(k, _)| *k))?;
        let diffs: Int64Array = changed.iter().map(|(_, d)| Some(*d)).collect();
        Ok(Some((rows, diffs)))
    }

    /// Hands this epoch's changes to the watchers, dropping those whose client went or fell
    /// too far behind; then takes the new ones, each with the view's content first.
    fn serve_watchers(&mut self, barrier: &Barrier, changes: Vec<(RecordBatch, Int64Array)>, chunk_rows: usize) -> EngineResult<()> {
        // A queue only this operator still holds has lost its client.
        self.watchers.retain(|q| Arc::strong_count(q) > 1 && q.offer(barrier.epoch, &changes));
        for (queue, snapshot) in barrier.take_watches(self.object) {
            let content = if snapshot { self.state.read_all(None, chunk_rows)? } else { vec![] };
            let snapshot: Vec<(RecordBatch, Int64Array)> = content
                .into_iter()
                .filter(|b| b.num_rows() > 0)
                .map(|b| {
                    let ones = Int64Array::from(vec![1; b.num_rows()]);
                    (b, ones)
                })
                .collect();
            if queue.offer(barrier.epoch, &snapshot) {
                self.watchers.push(queue);
            }
        }
        Ok(())
    }
}

impl Drop for MaterializeOperator {
    fn drop(&mut self) {
        self.watchers.iter().for_each(|q| q.end());
    }
}

#[async_trait]
impl Operator for MaterializeOperator {
    fn name(&self) -> String {
        format!("Materialize(state = \"{}\")", self.state.cf)
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, ctx: &mut OperatorContext) -> EngineResult<()> {
        self.idle = false;
        self.state.add_deltas(&chunk, &mut self.pending)?;
        if self.pending.len() > MAX_EPOCH_BUFFER_ROWS {
            if self.changes_wanted() {
                self.written_early.extend(self.pending_changes()?);
            }
            self.state.apply_deltas(&mut self.pending)?;
        }
        ctx.collect(chunk).await
    }

    async fn handle_watermark(&mut self, wm: Watermark, ctx: &mut OperatorContext) -> EngineResult<()> {
        self.idle = false;
        self.watermarks.insert(wm.column, wm.time_us);
        ctx.outputs.send(Message::Watermark(wm)).await
    }

    async fn handle_idle(&mut self, ctx: &mut OperatorContext) -> EngineResult<()> {
        self.idle = true;
        ctx.outputs.send(Message::Idle).await
    }

    async fn handle_checkpoint(&mut self, barrier: &Barrier, ctx: &mut OperatorContext) -> EngineResult<()> {
        let mut changes = std::mem::take(&mut self.written_early);
        // The logs as the catalog holds them now: one added since the last barrier starts here.
        self.logging = self.logs.lock().expect("change logs lock").clone();
        if self.changes_wanted() {
            changes.extend(self.pending_changes()?);
        }
        self.state.apply_deltas(&mut self.pending)?;
        self.write_logs(barrier.epoch, &changes)?;
        self.serve_watchers(barrier, changes, ctx.config.chunk_size_rows)?;
        // A view sends a new downstream its rows here, whole, before the barrier (a gap: it
        // holds this view's dataflow meanwhile; tables backfill page by page, `backfill.rs`).
        for crate::message::Attach { tx, backfill, .. } in barrier.take_subscriptions(self.object) {
            if let Some(progress) = backfill {
                self.state.send_snapshot(&tx, ctx.config.chunk_size_rows).await?;
                progress.mark_done();
            }
            for (&column, &time_us) in &self.watermarks {
                let _ = tx.send(Message::Watermark(Watermark { column, time_us })).await;
            }
            if self.idle {
                let _ = tx.send(Message::Idle).await;
            }
            ctx.outputs.add(tx);
        }
        Ok(())
    }

    fn state_tables(&self) -> Vec<(Arc<str>, CfKind)> {
        let kind = if self.state.layout == Layout::Multiset { CfKind::Counters } else { CfKind::Plain };
        let logs = self.logging.iter().map(|log| (log.cf.clone(), CfKind::Plain));
        std::iter::once((self.state.cf.clone(), kind)).chain(logs).collect()
    }

    async fn barrier_passed(&mut self, barrier: &Barrier, ctx: &mut OperatorContext) -> EngineResult<()> {
        ctx.coordinator.ack(self.object, barrier.epoch);
        Ok(())
    }

    async fn on_close(&mut self, _ctx: &mut OperatorContext) -> EngineResult<()> {
        self.watchers.iter().for_each(|q| q.end());
        self.state.apply_deltas(&mut self.pending)
    }
}
