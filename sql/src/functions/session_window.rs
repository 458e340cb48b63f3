//! `session_window_start(ts, gap)` and `session_window_end(ts, gap)`: the window functions that
//! `SESSION(t, ts, gap [, key ...])` is rewritten into (see `windows.rs`), over
//! `PARTITION BY key ORDER BY ts`. Ad hoc DataFusion evaluates them over each partition; in a
//! view the lowering makes them the engine's session window, which computes the same bounds
//! ([`session_bounds`]) and frees closed sessions.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, IntervalMonthDayNanoType};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{PartitionEvaluator, Signature, Volatility, WindowUDFImpl};
use openclaw_engine::operators::session::session_bounds;

use crate::error::{SqlError, SqlState};

/// Which bound of its session a row gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bound {
    Start,
    End,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SessionBound {
    bound: Bound,
    signature: Signature,
}

impl SessionBound {
    pub fn new(bound: Bound) -> Self {
        Self { bound, signature: Signature::any(2, Volatility::Immutable) }
    }
}

pub const START: &str = "session_window_start";
pub const END: &str = "session_window_end";

impl WindowUDFImpl for SessionBound {
    fn name(&self) -> &str {
        match self.bound {
            Bound::Start => START,
            Bound::End => END,
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(&self, _args: PartitionEvaluatorArgs) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(Evaluator { bound: self.bound }))
    }

    /// The time's own type, nullable (a row without a time is in no session).
    fn field(&self, args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let [ts, gap] = args.input_fields() else { return plan_err!("{} takes a time and a gap", self.name()) };
        let mismatch = |m: String| SqlError::new(SqlState::DatatypeMismatch, m).into_datafusion();
        if !matches!(ts.data_type(), DataType::Timestamp(..)) {
            let pg = crate::types::pg_type_name(ts.data_type());
            return Err(mismatch(format!("the time column of a SESSION window must be a timestamp, not {pg}")));
        }
        if !matches!(gap.data_type(), DataType::Interval(_)) {
            let pg = crate::types::pg_type_name(gap.data_type());
            return Err(mismatch(format!("the gap of a SESSION window must be an interval, not {pg}")));
        }
        Ok(Arc::new(Field::new(args.name(), ts.data_type().clone(), true)))
    }
}

#[derive(Debug)]
struct Evaluator {
    bound: Bound,
}

impl PartitionEvaluator for Evaluator {
    /// Every row of the partition at once, in any order.
    fn evaluate_all(&mut self, values: &[ArrayRef], _num_rows: usize) -> Result<ArrayRef> {
        let [times, gap] = values else { return exec_err!("a session bound takes a time and a gap") };
        let gap_us = gap_micros(gap.as_ref())?;
        let (starts, ends) = session_bounds(times.as_ref(), gap_us).map_err(|e| datafusion::common::DataFusionError::Execution(e.to_string()))?;
        Ok(match self.bound {
            Bound::Start => starts,
            Bound::End => ends,
        })
    }
}

/// The gap in microseconds: a positive interval of days and smaller units, the same on
/// every row.
pub fn gap_micros(gap: &dyn Array) -> Result<i64> {
    let gap = datafusion::arrow::compute::cast(gap, &DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano))?;
    let gaps = gap.as_primitive::<IntervalMonthDayNanoType>();
    if gaps.is_empty() || gaps.is_null(0) {
        return exec_err!("the gap of a SESSION window must not be NULL");
    }
    let g = gaps.value(0);
    let us = (g.days as i64) * 86_400_000_000 + g.nanoseconds / 1_000;
    if g.months != 0 || us <= 0 {
        return exec_err!("the gap of a SESSION window must be a positive interval of days or less");
    }
    Ok(us)
}
