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
    let mut watermarks = WatermarkMerge::new(merge.len());
    let mut aligning: Option<Barrier> = None;
    op.on_start(&mut ctx).await?;
    while let Some(next) = merge.next().await {
        match next {
            // An input closed while the others waited on a barrier: re-check the alignment.
            None => {}
            Some((input, msg)) => match msg {
            Message::Chunk(chunk) => {
                op.process_batch(input, chunk, &mut ctx).await?;
            }
            Message::Watermark(wm) if !op.merges_input_watermarks() => {
                op.handle_input_watermark(input, wm, &mut ctx).await?;
            }
            Message::Watermark(wm) => {
                if let Some(advanced) = watermarks.observe(input, wm, merge.live()) {
                    op.handle_watermark(advanced, &mut ctx).await?;
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
            ctx.outputs.send(Message::Barrier(barrier)).await?;
            merge.unblock_all();
        }
    }
    op.on_close(&mut ctx).await
}

/// Per column, the minimum watermark over the live inputs. An input that closed no longer holds
/// the others back.
struct WatermarkMerge {
    /// `latest[input]`: the last watermark of each column seen on that input.
    latest: Vec<HashMap<usize, i64>>,
    emitted: HashMap<usize, i64>,
}

impl WatermarkMerge {
    fn new(inputs: usize) -> Self {
        Self { latest: vec![HashMap::new(); inputs], emitted: HashMap::new() }
    }

    /// Records `wm` from `input`; returns the merged watermark of its column if it advanced.
    fn observe(&mut self, input: usize, wm: Watermark, live: impl Iterator<Item = usize>) -> Option<Watermark> {
        let seen = self.latest[input].entry(wm.column).or_insert(i64::MIN);
        *seen = (*seen).max(wm.time_us);
        let mut min: Option<i64> = None;
        for i in live {
            let v = *self.latest[i].get(&wm.column)?;
            min = Some(min.map_or(v, |m| m.min(v)));
        }
        let min = min?;
        let emitted = self.emitted.entry(wm.column).or_insert(i64::MIN);
        if min <= *emitted {
            return None;
        }
        *emitted = min;
        Some(Watermark { column: wm.column, time_us: min })
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
