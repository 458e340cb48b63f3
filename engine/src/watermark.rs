//! Event-time watermarks: generated where rows enter (tables and sources declared with
//! `WATERMARK FOR col AS col - INTERVAL …`) and carried through the plan, column by column.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::{cast, max};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};

use std::time::{Duration, Instant};

use crate::{EngineResult, Watermark};

/// `WATERMARK FOR <column> AS <column> - <delay>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkSpec {
    pub column: usize,
    pub delay_us: i64,
}

/// The watermark of one input: the largest event time seen so far, minus the delay. It also
/// decides when the input goes idle.
#[derive(Debug)]
pub struct WatermarkGenerator {
    spec: WatermarkSpec,
    emitted: Option<i64>,
    idle_timeout: Duration,
    last_rows: Instant,
    rows_since_barrier: bool,
    /// The last read found nothing to read (a source's reader returned an empty chunk; a
    /// table between writes). A reader that is merely slow, or behind backpressure, is not
    /// idle.
    starved: bool,
    idle: bool,
    /// For readers of several splits (Kafka partitions): each split's largest event time and
    /// when it last had rows. The watermark is the minimum over the splits not idle.
    splits: std::collections::BTreeMap<i32, (i64, Instant)>,
}

impl WatermarkGenerator {
    /// `idle_timeout_ms`: how long without rows before the input is declared idle, at its
    /// next barrier.
    pub fn new(spec: WatermarkSpec, idle_timeout_ms: u64) -> Self {
        Self {
            spec,
            emitted: None,
            idle_timeout: Duration::from_millis(idle_timeout_ms),
            last_rows: Instant::now(),
            rows_since_barrier: false,
            starved: false,
            idle: false,
            splits: Default::default(),
        }
    }

    /// Continues from a watermark stored in a checkpoint: nothing below it is emitted again.
    pub fn resume_at(&mut self, time_us: i64) {
        self.emitted = Some(self.emitted.map_or(time_us, |e| e.max(time_us)));
    }

    /// The input looked for rows and found none.
    pub fn note_starved(&mut self) {
        self.starved = true;
    }

    /// Called as a barrier leaves the root: whether to send [`crate::Message::Idle`] before
    /// it. An input goes idle when its last read found nothing, no rows arrived since the
    /// previous barrier, and none for at least the idle timeout. Deciding at barriers, not on a
    /// timer, means a `FLUSH` (with a zero timeout) settles idleness deterministically.
    pub fn goes_idle_at_barrier(&mut self) -> bool {
        let quiet = self.starved && !self.rows_since_barrier;
        let goes = !self.idle && quiet && self.last_rows.elapsed() >= self.idle_timeout;
        self.rows_since_barrier = false;
        self.idle |= goes;
        goes
    }

    /// Whether the input is idle now.
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// The new watermark after `batch` arrived, if it advanced.
    pub fn observe(&mut self, batch: &RecordBatch) -> EngineResult<Option<Watermark>> {
        if batch.num_rows() > 0 {
            self.last_rows = Instant::now();
            self.rows_since_barrier = true;
            self.starved = false;
            self.idle = false;
        }
        let micros = cast(batch.column(self.spec.column), &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        let Some(max_us) = max(micros.as_primitive::<TimestampMicrosecondType>()) else { return Ok(None) };
        Ok(self.advance(max_us.saturating_sub(self.spec.delay_us)))
    }

    /// [`Self::observe`] for a reader of several splits: `splits[i]` is the split of row `i`,
    /// and `assigned` every split the reader reads. Each split keeps its own largest event
    /// time; the watermark is the smallest of them over the splits that had rows within the
    /// idle timeout (or in this batch), so that a split behind holds it back and an idle one
    /// does not. A split that has had no rows yet holds it back for the idle timeout from when
    /// it was first assigned, as in Flink: its first rows may be older than the others'.
    pub fn observe_splits(&mut self, batch: &RecordBatch, splits: &[i32], assigned: &[i32]) -> EngineResult<Option<Watermark>> {
        self.observe_splits_at(batch, splits, assigned, Instant::now())
    }

    fn observe_splits_at(&mut self, batch: &RecordBatch, splits: &[i32], assigned: &[i32], now: Instant) -> EngineResult<Option<Watermark>> {
        assert_eq!(batch.num_rows(), splits.len(), "one split per row");
        for &split in assigned {
            self.splits.entry(split).or_insert((i64::MIN, now));
        }
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        self.last_rows = now;
        self.rows_since_barrier = true;
        self.starved = false;
        self.idle = false;
        let micros = cast(batch.column(self.spec.column), &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        let micros = micros.as_primitive::<TimestampMicrosecondType>();
        for (i, &split) in splits.iter().enumerate() {
            let entry = self.splits.entry(split).or_insert((i64::MIN, now));
            entry.1 = now;
            if micros.is_valid(i) {
                entry.0 = entry.0.max(micros.value(i));
            }
        }
        let in_batch: std::collections::BTreeSet<i32> = splits.iter().copied().collect();
        let active = self
            .splits
            .iter()
            .filter(|(split, (_, seen))| in_batch.contains(split) || now.duration_since(*seen) < self.idle_timeout)
            .map(|(_, v)| v);
        let Some(min_us) = active.map(|(max_us, _)| *max_us).min().filter(|m| *m != i64::MIN) else { return Ok(None) };
        Ok(self.advance(min_us.saturating_sub(self.spec.delay_us)))
    }

    /// The end of a bounded input: every window may close (as in Flink).
    pub fn finish(&mut self) -> Option<Watermark> {
        self.advance(i64::MAX)
    }

    pub fn current(&self) -> Option<Watermark> {
        self.emitted.map(|time_us| Watermark { column: self.spec.column, time_us })
    }

    fn advance(&mut self, time_us: i64) -> Option<Watermark> {
        if self.emitted.is_some_and(|e| e >= time_us) {
            return None;
        }
        self.emitted = Some(time_us);
        self.current()
    }
}

/// The value of a watermark as a one-row array of `data_type` (for evaluating expressions over
/// it), or `None` when it does not fit (the end-of-input watermark).
pub fn watermark_value(time_us: i64, data_type: &DataType) -> Option<std::sync::Arc<dyn Array>> {
    if time_us == i64::MAX {
        return None;
    }
    let us = datafusion::arrow::array::TimestampMicrosecondArray::from(vec![time_us]);
    cast(&us, data_type).ok().filter(|a| a.null_count() == 0)
}

/// Reads back a one-row array of a timestamp or date type as microseconds.
pub fn as_micros(array: &dyn Array) -> Option<i64> {
    let us = cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None)).ok()?;
    let us = us.as_primitive::<TimestampMicrosecondType>();
    (us.len() == 1 && us.is_valid(0)).then(|| us.value(0))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{BooleanArray, TimestampMicrosecondArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    /// Rows at or after the watermark, and rows without a time, are kept; the rest are late.
    #[test]
    fn rows_before_the_watermark_have_passed() {
        let times = TimestampMillisecondArray::from(vec![Some(1), None, Some(2), Some(3)]);
        let keep = super::not_passed(&times, 2_000).unwrap();
        assert_eq!(keep, BooleanArray::from(vec![false, true, true, true]));
    }

    use super::*;

    fn batch(times_us: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), false)]));
        RecordBatch::try_new(schema, vec![Arc::new(TimestampMicrosecondArray::from(times_us.to_vec()))]).unwrap()
    }

    #[test]
    fn the_slowest_active_split_holds_the_watermark_and_an_idle_one_does_not() {
        let mut w = WatermarkGenerator::new(WatermarkSpec { column: 0, delay_us: 10 }, 1_000);
        let t0 = Instant::now();
        // Partition 0 is at 100, partition 1 at 50: the watermark follows partition 1.
        let wm = w.observe_splits_at(&batch(&[100, 50]), &[0, 1], &[0, 1], t0).unwrap();
        assert_eq!(wm.map(|w| w.time_us), Some(40));
        // Partition 0 moves on; partition 1, quiet for less than the timeout, still holds it.
        let wm = w.observe_splits_at(&batch(&[300]), &[0], &[0, 1], t0 + Duration::from_millis(500)).unwrap();
        assert_eq!(wm, None);
        // After the timeout partition 1 is idle and no longer counts.
        let wm = w.observe_splits_at(&batch(&[400]), &[0], &[0, 1], t0 + Duration::from_millis(1_500)).unwrap();
        assert_eq!(wm.map(|w| w.time_us), Some(390));
        // It comes back behind the watermark: it counts again, and the watermark never goes back.
        let wm = w.observe_splits_at(&batch(&[200]), &[1], &[0, 1], t0 + Duration::from_millis(1_600)).unwrap();
        assert_eq!(wm, None);
        assert_eq!(w.current().map(|w| w.time_us), Some(390));
    }

    #[test]
    fn a_split_without_rows_yet_holds_the_watermark_for_the_idle_timeout() {
        let mut w = WatermarkGenerator::new(WatermarkSpec { column: 0, delay_us: 10 }, 1_000);
        let t0 = Instant::now();
        // Partitions 0 and 1 are assigned; only 0 has rows. Partition 1's first rows may be
        // older, so nothing is promised yet.
        assert_eq!(w.observe_splits_at(&batch(&[100]), &[0], &[0, 1], t0).unwrap(), None);
        assert_eq!(w.observe_splits_at(&batch(&[200]), &[0], &[0, 1], t0 + Duration::from_millis(900)).unwrap(), None);
        // Its first rows come within the timeout: they hold the watermark at their time.
        let wm = w.observe_splits_at(&batch(&[50]), &[1], &[0, 1], t0 + Duration::from_millis(950)).unwrap();
        assert_eq!(wm.map(|w| w.time_us), Some(40));
        // A partition that stays empty past the timeout is idle.
        let mut w = WatermarkGenerator::new(WatermarkSpec { column: 0, delay_us: 10 }, 1_000);
        assert_eq!(w.observe_splits_at(&batch(&[100]), &[0], &[0, 1], t0).unwrap(), None);
        let wm = w.observe_splits_at(&batch(&[200]), &[0], &[0, 1], t0 + Duration::from_millis(1_200)).unwrap();
        assert_eq!(wm.map(|w| w.time_us), Some(190));
    }
}

/// Which rows of `times` (a time column) a watermark at `closed_us` has not passed: those at
/// or after it, and those without a time (they belong to no window). One comparison kernel
/// over the chunk; what it leaves out is late.
pub fn not_passed(times: &dyn Array, closed_us: i64) -> EngineResult<datafusion::arrow::array::BooleanArray> {
    use datafusion::arrow::array::{Scalar, TimestampMicrosecondArray};
    use datafusion::arrow::compute::kernels::{boolean::or_kleene, cmp::gt_eq};
    let times = cast(times, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    let bound = Scalar::new(TimestampMicrosecondArray::from(vec![closed_us]));
    let at_or_after = gt_eq(&times, &bound)?;
    let untimed = datafusion::arrow::compute::is_null(&times)?;
    Ok(or_kleene(&at_or_after, &untimed)?)
}
