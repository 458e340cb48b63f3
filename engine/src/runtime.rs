//! The one loop every operator task runs: select over inputs, align barriers, merge
//! watermarks, and hand the rest to the [`Operator`].

use std::collections::HashMap;
use std::future::poll_fn;
use std::task::Poll;

use tokio::sync::mpsc;

use crate::{Barrier, EngineResult, Message, Operator, OperatorContext, Watermark};

/// Runs `op` until every input has closed, or until it fails.
pub async fn run_operator(
    mut op: Box<dyn Operator>,
    inputs: Vec<mpsc::Receiver<Message>>,
    mut ctx: OperatorContext,
) -> EngineResult<()> {
    let mut merge = InputMerge::new(inputs);
    let mut watermarks = WatermarkMerge::new(merge.len(), op.inputs_are_partitions());
    let mut aligning: Option<Barrier> = None;
    op.on_start(&mut ctx).await?;
    while let Some(next) = merge.next().await {
        // Time handling this message, less what sending blocked (counted apart).
        let (started, blocked_before) = (std::time::Instant::now(), ctx.metrics.blocked_so_far());
        let mut yield_after = false;
        match next {
            // An input closed while the others waited on a barrier: re-check the alignment.
            None => {}
            Some((input, msg)) => match msg {
            Message::Chunk(chunk) => {
                watermarks.activate(input);
                ctx.metrics.received(chunk.num_rows());
                op.process_batch(input, chunk, &mut ctx).await?;
                yield_after = true;
            }
            Message::Watermark(wm) if !op.merges_input_watermarks() => {
                watermarks.activate(input);
                op.handle_input_watermark(input, wm, &mut ctx).await?;
            }
            Message::Watermark(wm) => {
                watermarks.activate(input);
                if let Some(advanced) = watermarks.observe(input, wm, merge.live()) {
                    op.handle_watermark(advanced, &mut ctx).await?;
                }
            }
            Message::Idle => {
                let was_idle = merge.live().all(|i| watermarks.is_idle(i));
                for advanced in watermarks.deactivate(input, merge.live()) {
                    op.handle_watermark(advanced, &mut ctx).await?;
                }
                if !op.merges_input_watermarks() {
                    op.handle_input_idle(input, &mut ctx).await?;
                }
                // Downstream learns only when nothing feeds this operator any more, and once.
                if !was_idle && merge.live().all(|i| watermarks.is_idle(i)) {
                    op.handle_idle(&mut ctx).await?;
                }
            }
            Message::Barrier(barrier) => {
                if let Some(pending) = &aligning {
                    debug_assert_eq!(pending.epoch, barrier.epoch, "barriers arrive in epoch order");
                }
                merge.block(input);
                aligning.get_or_insert(barrier);
            }
            },
        }
        if aligning.is_some() && merge.all_live_blocked() {
            let barrier = aligning.take().expect("checked");
            op.handle_checkpoint(&barrier, &mut ctx).await?;
            ctx.snapshot_state(&barrier, op.state_tables()).await?;
            op.barrier_passed(&barrier, &mut ctx).await?;
            ctx.outputs.send(Message::Barrier(barrier)).await?;
            merge.unblock_all();
        }
        let blocked = ctx.metrics.blocked_so_far().saturating_sub(blocked_before);
        ctx.metrics.processed(started.elapsed().saturating_sub(blocked));
        if yield_after {
            // Back of the worker's queue after each chunk: with input always ready, tokio
            // would let this task run up to its budget of 128 receives, and a busy view (a
            // backfill) would hold a worker for hundreds of milliseconds while sessions and
            // other views wait.
            tokio::task::yield_now().await;
        }
    }
    op.on_close(&mut ctx).await
}

/// Per column, the minimum watermark over the live inputs that are not idle. An input that
/// closed no longer holds the others back, nor does one that said it is idle
/// ([`Message::Idle`]) until it sends again. When every live input is idle, the minimum is over
/// those that have a watermark: each still vouches for its own future rows. The partitions of
/// one operator are never left out ([`crate::Operator::inputs_are_partitions`]).
struct WatermarkMerge {
    /// `latest[input]`: the last watermark of each column seen on that input.
    latest: Vec<HashMap<usize, i64>>,
    idle: Vec<bool>,
    emitted: HashMap<usize, i64>,
    partitions: bool,
}

impl WatermarkMerge {
    fn new(inputs: usize, partitions: bool) -> Self {
        Self { latest: vec![HashMap::new(); inputs], idle: vec![false; inputs], emitted: HashMap::new(), partitions }
    }

    fn is_idle(&self, input: usize) -> bool {
        self.idle[input]
    }

    /// `input` sent a chunk or a watermark: it counts again.
    fn activate(&mut self, input: usize) {
        self.idle[input] = false;
    }

    /// `input` went idle; returns the merged watermarks that advanced because of it.
    fn deactivate(&mut self, input: usize, live: impl Iterator<Item = usize>) -> Vec<Watermark> {
        self.idle[input] = true;
        let live: Vec<usize> = live.collect();
        let mut columns: Vec<usize> = self.latest.iter().flat_map(|m| m.keys().copied()).collect();
        columns.sort_unstable();
        columns.dedup();
        columns.into_iter().filter_map(|c| self.advance(c, &live)).collect()
    }

    /// Records `wm` from `input`; returns the merged watermark of its column if it advanced.
    fn observe(&mut self, input: usize, wm: Watermark, live: impl Iterator<Item = usize>) -> Option<Watermark> {
        let seen = self.latest[input].entry(wm.column).or_insert(i64::MIN);
        *seen = (*seen).max(wm.time_us);
        let live: Vec<usize> = live.collect();
        self.advance(wm.column, &live)
    }

    fn advance(&mut self, column: usize, live: &[usize]) -> Option<Watermark> {
        let active: Vec<usize> = live.iter().copied().filter(|&i| self.partitions || !self.idle[i]).collect();
        let min = if active.is_empty() {
            live.iter().filter_map(|&i| self.latest[i].get(&column).copied()).min()?
        } else {
            let mut min = i64::MAX;
            for i in active {
                min = min.min(*self.latest[i].get(&column)?);
            }
            min
        };
        let emitted = self.emitted.entry(column).or_insert(i64::MIN);
        if min <= *emitted {
            return None;
        }
        *emitted = min;
        Some(Watermark { column, time_us: min })
    }
}

/// Fair merge of several receivers, where an input that delivered a barrier is held back
/// until the barrier is aligned on all inputs.
struct InputMerge {
    inputs: Vec<mpsc::Receiver<Message>>,
    blocked: Vec<bool>,
    closed: Vec<bool>,
    start: usize,
}

impl InputMerge {
    fn new(inputs: Vec<mpsc::Receiver<Message>>) -> Self {
        let n = inputs.len();
        Self { inputs, blocked: vec![false; n], closed: vec![false; n], start: 0 }
    }

    fn len(&self) -> usize {
        self.inputs.len()
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.inputs.len()).filter(|&i| !self.closed[i])
    }

    fn block(&mut self, i: usize) {
        self.blocked[i] = true;
    }

    fn unblock_all(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
    }

    fn all_live_blocked(&self) -> bool {
        self.live().all(|i| self.blocked[i])
    }

    /// The next message of any unblocked input; `Some(None)` when every live input is blocked
    /// (the caller must complete the alignment); `None` once every input has closed.
    async fn next(&mut self) -> Option<Option<(usize, Message)>> {
        poll_fn(|cx| {
            let n = self.inputs.len();
            if self.live().next().is_none() {
                return Poll::Ready(None);
            }
            for k in 0..n {
                let i = (self.start + k) % n;
                if self.closed[i] || self.blocked[i] {
                    continue;
                }
                match self.inputs[i].poll_recv(cx) {
                    Poll::Ready(Some(msg)) => {
                        self.start = (i + 1) % n;
                        return Poll::Ready(Some(Some((i, msg))));
                    }
                    Poll::Ready(None) => self.closed[i] = true,
                    Poll::Pending => {}
                }
            }
            if self.live().next().is_none() {
                Poll::Ready(None)
            } else if self.live().all(|i| self.blocked[i]) {
                Poll::Ready(Some(None))
            } else {
                Poll::Pending
            }
        })
        .await
    }
}
