//! Session windows, maintained. A session of a partition is a maximal run of its rows whose
//! times are each less than `gap` after the previous one; it spans from its first time to its
//! last time plus `gap` (Flink's: each row opens `[t, t + gap)` and overlapping windows merge).
//! SQL's `SESSION(t, ts, gap [, key ...])` adds `window_start` and `window_end` to every row
//! (the window functions `session_window_start` and `session_window_end` over
//! `PARTITION BY key ORDER BY ts`), so a row that bridges two sessions retracts the rows of
//! both and inserts them again with the merged bounds, and a deleted row splits its session.
//!
//! The operator is the over-window's (the rows of each partition kept in order, the touched
//! partitions evaluated before and after a chunk, the difference emitted) with what event time
//! allows on top. Once the watermark on `ts` reaches a session's end, no row can join it any
//! more (a later row is at least `gap` after its last), so:
//!
//! - rows behind the watermark are dropped and counted as late;
//! - a closed session's rows leave the state when their partition is next touched, and a
//!   partition whose last session closed is freed whole (an index of each partition's last
//!   end, kept in its own column family, finds them without a scan);
//! - the watermark goes on as one on `window_end`: every later output row, a retraction of an
//!   open session's included, ends after it. Watermarks of other columns stop here, as an
//!   open session's rows may be retracted long after their own times.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, TimestampMicrosecondArray};
use datafusion::arrow::compute::{cast, sort_to_indices, SortOptions};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use openclaw_storage::{CfKind, StateWrite, Store};

use super::over_window::{Evaluated, OverWindow, OverWindowSpec};
use super::partitioned_rows::{PartitionedRowsOperator, RowsLogic};
use crate::state::sorted::SortedPartitions;
use crate::{EngineError, EngineResult, StreamChunk, Watermark};

/// What makes an over-window a session window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSpec {
    /// The input's time column, which the rows are ordered by.
    pub ts_column: usize,
    pub gap_us: i64,
    /// The output column of the session's end, when the view keeps it: it carries the
    /// watermark on `ts_column`.
    pub end_column: Option<usize>,
}

/// The start and the end of the session of each time in `times` (a timestamp array in any
/// order), as arrays of its type; a NULL time is in no session.
pub fn session_bounds(times: &dyn Array, gap_us: i64) -> EngineResult<(ArrayRef, ArrayRef)> {
    let DataType::Timestamp(_, tz) = times.data_type() else {
        return Err(EngineError::Internal(format!("a session window needs a timestamp, not {}", times.data_type())));
    };
    let micros = cast(times, &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))?;
    let micros = micros.as_primitive::<TimestampMicrosecondType>();
    let order = sort_to_indices(micros, Some(SortOptions { descending: false, nulls_first: false }), None)?;
    let (mut starts, mut ends) = (vec![None; micros.len()], vec![None; micros.len()]);
    // One pass over the times in order: a session closes where the next time is `gap` or
    // more after the last; its rows then get its first time and its last time plus `gap`.
    let mut open: Vec<usize> = vec![];
    let mut close = |open: &mut Vec<usize>, first: i64, last: i64| {
        for &i in open.iter() {
            starts[i] = Some(first);
            ends[i] = Some(last.saturating_add(gap_us));
        }
        open.clear();
    };
    let (mut first, mut last) = (0i64, 0i64);
    for i in order.values().iter().map(|&i| i as usize) {
        if micros.is_null(i) {
            break;
        }
        let t = micros.value(i);
        if !open.is_empty() && t.saturating_sub(last) >= gap_us {
            close(&mut open, first, last);
        }
        if open.is_empty() {
            first = t;
        }
        last = t;
        open.push(i);
    }
    close(&mut open, first, last);
    let back = |v: Vec<Option<i64>>| cast(&TimestampMicrosecondArray::from(v).with_timezone_opt(tz.clone()), times.data_type());
    Ok((back(starts)?, back(ends)?))
}

/// The session window's logic: the over-window's, with closed sessions freed.
pub struct SessionWindow {
    over: OverWindow,
    spec: SessionSpec,
    ends_cf: Arc<str>,
    /// Every partition holding rows, by the end of its last session.
    by_end: BTreeSet<(i64, Vec<u8>)>,
    ends: HashMap<Vec<u8>, i64>,
    /// Changes of `ends` since the last write-back (`None`: the partition emptied).
    changed: HashMap<Vec<u8>, Option<i64>>,
    /// The watermark on the time column: sessions ending at or before it are closed.
    closed_below_us: Option<i64>,
    late_rows: Arc<AtomicU64>,
}

pub type SessionWindowOperator = PartitionedRowsOperator<SessionWindow>;

/// Version byte of the keys of the ends column family (`0x01 ‖ partition` → last end, i64 LE).
const ENDS_KEY_V1: u8 = 0x01;

impl SessionWindowOperator {
    /// Over column families `rows_table` (the rows, as an over-window's) and `ends_table`
    /// (each partition's last session end), both created here; the index is read back whole,
    /// as it holds one entry per partition with an open session.
    pub fn new(spec: OverWindowSpec, store: Store, rows_table: String, ends_table: String, late_rows: Arc<AtomicU64>) -> EngineResult<Self> {
        let session = spec.session.ok_or_else(|| EngineError::Internal("a session window without its spec".into()))?;
        let rows = SortedPartitions::new(spec.sort.clone(), store.clone(), &rows_table, late_rows.clone())?;
        store.create_cf(&ends_table, CfKind::Plain)?;
        let mut logic = SessionWindow {
            over: OverWindow::new(spec)?,
            spec: session,
            ends_cf: Arc::from(ends_table.as_str()),
            by_end: BTreeSet::new(),
            ends: HashMap::new(),
            changed: HashMap::new(),
            closed_below_us: None,
            late_rows,
        };
        store.scan(&ends_table, None, |key, value| {
            if let (Some((&ENDS_KEY_V1, partition)), Ok(end)) = (key.split_first(), <[u8; 8]>::try_from(value)) {
                let end = i64::from_le_bytes(end);
                logic.by_end.insert((end, partition.to_vec()));
                logic.ends.insert(partition.to_vec(), end);
            }
            true
        })?;
        Ok(Self { rows, logic })
    }
}

impl RowsLogic for SessionWindow {
    fn name(&self, cf: &str) -> String {
        format!("SessionWindow(gap = {}us, state = \"{cf}\")", self.spec.gap_us)
    }

    fn apply(&mut self, rows: &mut SortedPartitions, chunk: &StreamChunk) -> EngineResult<StreamChunk> {
        let staged = rows.stage(chunk)?;
        let before = self.over.evaluate_entries(rows, &staged.partitions)?;
        rows.apply(&staged);
        let after = self.over.evaluate_entries(rows, &staged.partitions)?;
        let out = self.over.difference(&before.batch, &after.batch)?;
        self.settle(rows, &staged.partitions, &after)?;
        Ok(out)
    }

    fn extra_tables(&self) -> Vec<(Arc<str>, CfKind)> {
        vec![(self.ends_cf.clone(), CfKind::Plain)]
    }

    /// Drops the rows behind the watermark on the time column: they could only join closed
    /// sessions.
    fn drop_late(&mut self, _rows: &SortedPartitions, chunk: StreamChunk) -> EngineResult<StreamChunk> {
        let Some(closed) = self.closed_below_us else { return Ok(chunk) };
        let keep = crate::watermark::not_passed(chunk.batch().column(self.spec.ts_column), closed)?;
        let late = keep.len() - keep.true_count();
        if late == 0 {
            return Ok(chunk);
        }
        self.late_rows.fetch_add(late as u64, Ordering::Relaxed);
        chunk.filter(&keep)
    }

    /// Frees the partitions whose last session the watermark on the time column closed, and
    /// sends it on as the watermark of `window_end`.
    fn on_watermark(&mut self, rows: &mut SortedPartitions, wm: Watermark) -> EngineResult<Vec<Watermark>> {
        if wm.column != self.spec.ts_column {
            return Ok(vec![]);
        }
        let closed = self.closed_below_us.map_or(wm.time_us, |c| c.max(wm.time_us));
        self.closed_below_us = Some(closed);
        let done: Vec<Vec<u8>> = self.by_end.iter().take_while(|(end, _)| *end <= closed).map(|(_, p)| p.clone()).collect();
        rows.load(done.iter().map(Vec::as_slice))?;
        for p in &done {
            for entry in rows.entries(p, usize::MAX) {
                rows.remove(p, &entry);
            }
            self.set_end(p, None);
        }
        Ok(self.spec.end_column.map(|column| Watermark { column, time_us: closed }).into_iter().collect())
    }

    fn write_back(&mut self, write: &mut StateWrite) {
        for (partition, end) in self.changed.drain() {
            let mut key = Vec::with_capacity(partition.len() + 1);
            key.push(ENDS_KEY_V1);
            key.extend_from_slice(&partition);
            match end {
                Some(end) => write.put(&self.ends_cf, key, end.to_le_bytes().to_vec()),
                None => write.delete(&self.ends_cf, key),
            }
        }
    }
}

impl SessionWindow {
    /// After a chunk: removes the rows of closed sessions from the partitions it touched and
    /// records where each partition's last session ends.
    fn settle(&mut self, rows: &mut SortedPartitions, partitions: &[Vec<u8>], after: &Evaluated) -> EngineResult<()> {
        let mut last_end: Vec<Option<i64>> = vec![None; partitions.len()];
        // The evaluation computed each row's end already when the view keeps it.
        let computed = self.spec.end_column.map(|c| after.batch.column(c));
        let times = after.batch.column(self.spec.ts_column);
        for &(p, start, len) in &after.bounds {
            let ends = match computed {
                Some(ends) => ends.slice(start, len),
                None => session_bounds(times.slice(start, len).as_ref(), self.spec.gap_us)?.1,
            };
            let ends = cast(&ends, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            let ends = ends.as_primitive::<TimestampMicrosecondType>();
            for (i, end) in ends.iter().enumerate() {
                // A row without a time is in no session and never closes.
                let end = end.unwrap_or(i64::MAX);
                if self.closed_below_us.is_some_and(|closed| end <= closed) {
                    rows.remove(&partitions[p], &after.entries[start + i]);
                } else {
                    last_end[p] = last_end[p].max(Some(end));
                }
            }
        }
        for (p, end) in partitions.iter().zip(last_end) {
            self.set_end(p, end);
        }
        Ok(())
    }

    fn set_end(&mut self, partition: &[u8], end: Option<i64>) {
        let old = self.ends.get(partition).copied();
        if old == end {
            return;
        }
        if let Some(old) = old {
            self.by_end.remove(&(old, partition.to_vec()));
        }
        match end {
            Some(end) => {
                self.by_end.insert((end, partition.to_vec()));
                self.ends.insert(partition.to_vec(), end);
            }
            None => {
                self.ends.remove(partition);
            }
        }
        self.changed.insert(partition.to_vec(), end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::TimestampMillisecondArray;

    #[test]
    fn sessions_merge_rows_closer_than_the_gap_in_any_order() {
        let times = TimestampMillisecondArray::from(vec![Some(12_000), Some(1_000), None, Some(5_000), Some(30_000), Some(21_999)]);
        let (starts, ends) = session_bounds(&times, 10_000_000).unwrap();
        let starts = starts.as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>();
        let ends = ends.as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>();
        // 1s, 5s, 12s and 21.999s are each less than 10s apart: one session; 30s is 8.001s
        // after 21.999s, so it joins too.
        let got: Vec<_> = starts.iter().zip(ends.iter()).collect();
        let one = (Some(1_000), Some(40_000));
        assert_eq!(got, vec![one, one, (None, None), one, one, one]);
        let apart = TimestampMillisecondArray::from(vec![0, 10_000, 25_000]);
        let (starts, ends) = session_bounds(&apart, 10_000_000).unwrap();
        let starts: Vec<_> = starts.as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>().values().to_vec();
        let ends: Vec<_> = ends.as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>().values().to_vec();
        // Exactly the gap apart is a new session (the windows [t, t + gap) only touch).
        assert_eq!(starts, vec![0, 10_000, 25_000]);
        assert_eq!(ends, vec![10_000, 20_000, 35_000]);
    }
}
