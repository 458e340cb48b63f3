//! Event-time watermarks: generated where rows enter (tables and sources declared with
//! `WATERMARK FOR col AS col - INTERVAL …`) and carried through the plan, column by column.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::{cast, max};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};

use crate::{EngineResult, Watermark};

/// `WATERMARK FOR <column> AS <column> - <delay>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkSpec {
    pub column: usize,
    pub delay_us: i64,
}

/// The watermark of one input: the largest event time seen so far, minus the delay.
#[derive(Debug)]
pub struct WatermarkGenerator {
    spec: WatermarkSpec,
    emitted: Option<i64>,
}

impl WatermarkGenerator {
    pub fn new(spec: WatermarkSpec) -> Self {
        Self { spec, emitted: None }
    }

    /// The new watermark after `batch` arrived, if it advanced.
    pub fn observe(&mut self, batch: &RecordBatch) -> EngineResult<Option<Watermark>> {
        let micros = cast(batch.column(self.spec.column), &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        let Some(max_us) = max(micros.as_primitive::<TimestampMicrosecondType>()) else { return Ok(None) };
        Ok(self.advance(max_us.saturating_sub(self.spec.delay_us)))
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
