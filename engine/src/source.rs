//! Roots of the dataflow that read from outside: the generator, datagen, and later Kafka.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;

use crate::watermark::WatermarkGenerator;
use crate::{Barrier, BarrierKind, EngineResult, Message, Outputs, StreamChunk};

/// How often a held source looks for barriers.
const HELD_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Most barriers a source holds back while a bounded stream is still being read.
const MAX_DEFERRED_BARRIERS: usize = 64;

/// Reads one stream of rows. Implemented by each connector.
#[async_trait]
pub trait SourceReader: Send + 'static {
    /// The schema of every chunk it returns.
    fn schema(&self) -> SchemaRef;

    /// The next chunk of inserts, at most `max_rows` rows; `None` once a bounded stream is
    /// exhausted; an empty chunk when nothing is due yet. May wait (a rate limit, or no data
    /// yet), but must return within about 100 ms so that barriers are not held up.
    async fn next_chunk(&mut self, max_rows: usize) -> EngineResult<Option<StreamChunk>>;

    /// Whether the stream only ever inserts (no deletes or updates, as an upsert stream has):
    /// an aggregate over it can keep `min`/`max` as one value instead of every value.
    fn is_append_only(&self) -> bool {
        false
    }

    /// Whether the stream ends. `FLUSH` waits for a bounded stream to be read to its end; an
    /// unbounded one passes `FLUSH` at once.
    fn is_bounded(&self) -> bool;

    /// A `FLUSH` barrier reached the reader: whether the barrier (and every barrier after
    /// it) waits until [`Self::caught_up`]. A bounded reader holds it until its end; an
    /// unbounded one may hold it until it has read what was there when the FLUSH came (Kafka:
    /// the partitions' end offsets then), so that FLUSH shows what was produced before it.
    fn begin_flush(&mut self) -> bool {
        self.is_bounded()
    }

    /// Whether the reader has read up to where [`Self::begin_flush`] said it would.
    /// Bounded readers are caught up when exhausted (`next_chunk` returned `None`).
    fn caught_up(&self) -> bool {
        false
    }

    /// Splits the reader for parallel reading: makes it the first of at most `n` readers that
    /// together read the same stream, each a disjoint share of its splits (Kafka partitions),
    /// and returns the others. Their positions use disjoint split names, so they share one
    /// checkpoint key. Called before the first read. Default: no split.
    fn split_off(&mut self, _n: usize) -> EngineResult<Vec<Box<dyn SourceReader>>> {
        Ok(vec![])
    }

    /// The split (Kafka partition) of each row of the chunk `next_chunk` returned last, for a
    /// reader of several splits: watermarks are then kept per split. `None`: one split.
    fn row_splits(&self) -> Option<&[i32]> {
        None
    }

    /// Every split this reader reads, once it knows them (after its first read), for a reader
    /// of several splits: one that has had no rows yet holds the watermark back for a while.
    fn assigned_splits(&self) -> &[i32] {
        &[]
    }

    /// Where the reader stands: every row before it has been returned, none after. Stored in
    /// checkpoints. `None` for a reader that cannot be replayed from a position.
    fn position(&self) -> Option<Position> {
        None
    }

    /// Moves the reader to `position`, as [`Self::position`] returned it.
    fn seek(&mut self, _position: Position) -> EngineResult<()> {
        Err(crate::EngineError::NotSupported("this source cannot be replayed from a checkpoint position".into()))
    }
}

/// A reader's position: an offset per split, by split name. A reader with one split (a
/// generator) uses the name "", a Kafka reader one `p<partition>` per partition.
pub type Position = std::collections::BTreeMap<String, u64>;

/// How a root takes part in checkpoints: the key its position is stored under.
#[derive(Clone)]
pub struct RootCheckpoints {
    pub coordinator: Arc<crate::Coordinator>,
    pub key: String,
}

impl RootCheckpoints {
    /// Where a root's watermark is stored beside its position.
    pub fn watermark_key(key: &str) -> String {
        format!("{key}.watermark")
    }

    /// The checkpoint key of `split` of the root stored under `key`.
    pub fn split_key(key: &str, split: &str) -> String {
        match split {
            "" => key.to_string(),
            _ => format!("{key}.{split}"),
        }
    }

    /// The position stored for the root under `key` among a checkpoint's `positions`; `None`
    /// when it has none.
    pub fn stored_position(positions: &std::collections::BTreeMap<String, u64>, key: &str) -> Option<Position> {
        let prefix = format!("{key}.");
        let watermark = Self::watermark_key(key);
        let position: Position = positions
            .iter()
            .filter_map(|(k, &p)| match k.strip_prefix(&prefix) {
                _ if k == key => Some((String::new(), p)),
                Some(split) if *k != watermark => Some((split.to_string(), p)),
                _ => None,
            })
            .collect();
        (!position.is_empty()).then_some(position)
    }

    /// At a checkpoint barrier: report `position` (and the watermark), then send the barrier.
    /// The root goes on at once; the operators downstream snapshot their state as the barrier
    /// reaches them. Any other barrier is just sent.
    pub async fn pass(
        this: Option<&Self>,
        outputs: &mut Outputs,
        barrier: Barrier,
        position: Option<Position>,
        watermark_us: Option<i64>,
    ) -> EngineResult<()> {
        if let Some(c) = this.filter(|_| barrier.checkpoint) {
            for (split, p) in position.into_iter().flatten() {
                c.coordinator.reached_checkpoint(&Self::split_key(&c.key, &split), p);
            }
            if let Some(w) = watermark_us {
                // Bit for bit: positions are u64, watermarks i64.
                c.coordinator.reached_checkpoint(&Self::watermark_key(&c.key), w as u64);
            }
        }
        outputs.send(Message::Barrier(barrier)).await
    }
}

/// Progress of a running source reader, shared with `SHOW SOURCES`.
#[derive(Default)]
pub struct SourceProgress {
    pub rows: std::sync::atomic::AtomicU64,
    /// Bytes of records read, as they came (before decoding).
    pub bytes: std::sync::atomic::AtomicU64,
    /// Records that did not decode and went to the dead-letter table.
    pub dead_letters: std::sync::atomic::AtomicU64,
    /// Records behind the end of the stream at the last look (Kafka: high watermark minus
    /// position, summed over partitions); -1 when unknown.
    pub lag: std::sync::atomic::AtomicI64,
    pub exhausted: std::sync::atomic::AtomicBool,
    /// The last watermark emitted, in microseconds (0 before the first).
    pub watermark_us: std::sync::atomic::AtomicI64,
}

/// Runs a source reader as a root: emits its chunks, and barriers from the coordinator in
/// between. A `FLUSH` barrier waits until a bounded source is exhausted, and every barrier
/// after it waits behind it, so epochs stay in order.
pub async fn run_source(
    mut reader: Box<dyn SourceReader>,
    mut barriers: crate::coordinator::BarrierReceiver,
    mut outputs: Outputs,
    chunk_rows: usize,
    progress: Arc<SourceProgress>,
    mut watermark: Option<WatermarkGenerator>,
    checkpoints: Option<RootCheckpoints>,
) -> EngineResult<()> {
    use std::sync::atomic::Ordering;
    // A reader resumed from a checkpoint starts from the watermark it had there.
    if let Some(wm) = watermark.as_ref().and_then(|w| w.current()) {
        outputs.send(Message::Watermark(wm)).await?;
    }
    let mut deferred: VecDeque<Barrier> = VecDeque::new();
    let mut exhausted = false;
    loop {
        if exhausted {
            while let Some(b) = deferred.pop_front() {
                send_barrier(&mut outputs, &mut watermark, b, checkpoints.as_ref(), reader.position()).await?;
            }
            match barriers.recv().await {
                Some(b) => send_barrier(&mut outputs, &mut watermark, b, checkpoints.as_ref(), reader.position()).await?,
                None => return Ok(()),
            }
            if outputs.is_empty() {
                return Ok(());
            }
            continue;
        }
        // The FLUSH at the front of `deferred` waits for the reader to catch up; once it
        // has, it and the barriers behind it go out, up to the next FLUSH that waits.
        if !deferred.is_empty() && reader.caught_up() {
            while let Some(b) = deferred.pop_front() {
                send_barrier(&mut outputs, &mut watermark, b, checkpoints.as_ref(), reader.position()).await?;
                if deferred.front().is_some_and(|b| b.kind == BarrierKind::Flush) && !reader.caught_up() {
                    break;
                }
            }
        }
        while deferred.len() < MAX_DEFERRED_BARRIERS {
            let Ok(b) = barriers.try_recv() else { break };
            let waits = b.kind == BarrierKind::Flush && reader.begin_flush();
            if deferred.is_empty() && !waits {
                send_barrier(&mut outputs, &mut watermark, b, checkpoints.as_ref(), reader.position()).await?;
            } else {
                deferred.push_back(b);
            }
        }
        if let Some(c) = checkpoints.as_ref().filter(|c| !c.coordinator.sources_released()) {
            // Held while a restart restores the catalog: barriers pass, rows wait.
            let _ = tokio::time::timeout(HELD_POLL, c.coordinator.wait_sources_released()).await;
            continue;
        }
        match reader.next_chunk(chunk_rows).await? {
            // An empty chunk means "nothing yet" (a rate limit): loop to serve barriers.
            Some(chunk) if chunk.is_empty() => {
                if let Some(w) = &mut watermark {
                    w.note_starved();
                }
            }
            Some(chunk) => {
                progress.rows.fetch_add(chunk.num_rows() as u64, Ordering::Relaxed);
                let advanced = match (&mut watermark, reader.row_splits()) {
                    (Some(w), Some(splits)) => w.observe_splits(chunk.batch(), splits, reader.assigned_splits())?,
                    (Some(w), None) => w.observe(chunk.batch())?,
                    (None, _) => None,
                };
                outputs.send(Message::Chunk(chunk)).await?;
                if let Some(wm) = advanced {
                    progress.watermark_us.store(wm.time_us, Ordering::Relaxed);
                    outputs.send(Message::Watermark(wm)).await?;
                }
            }
            None => {
                if let Some(wm) = watermark.as_mut().and_then(|w| w.finish()) {
                    outputs.send(Message::Watermark(wm)).await?;
                }
                exhausted = true;
                progress.exhausted.store(true, Ordering::Relaxed);
            }
        }
        if outputs.is_empty() {
            return Ok(()); // every reader of this stream is gone
        }
    }
}

/// Sends a barrier, preceded by [`Message::Idle`] when the source goes idle at it, and
/// reports its position at a checkpoint barrier.
async fn send_barrier(
    outputs: &mut Outputs,
    watermark: &mut Option<WatermarkGenerator>,
    barrier: Barrier,
    checkpoints: Option<&RootCheckpoints>,
    position: Option<Position>,
) -> EngineResult<()> {
    if watermark.as_mut().is_some_and(|w| w.goes_idle_at_barrier()) {
        outputs.send(Message::Idle).await?;
    }
    let watermark_us = watermark.as_ref().and_then(|w| w.current()).map(|w| w.time_us);
    RootCheckpoints::pass(checkpoints, outputs, barrier, position, watermark_us).await
}
