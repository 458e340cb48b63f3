//! Sketches that a view keeps under deletes and updates: their state is counters, which go
//! down as well as up, bounded by the sketch's size rather than by the rows or distinct
//! values. SQL's aggregate functions (`sql/src/functions/`) and the aggregate operator share
//! these functions, so a view and its query ad hoc give the same answer.
//!
//! - [`quantile`]: `approx_percentile`, values counted in logarithmic buckets;
//! - [`count_min`]: `count_min_sketch`, frequencies in a Count-Min sketch.

pub mod count_min;
pub mod quantile;

pub use quantile::{valid_fraction, LogBuckets, SketchCall, DEFAULT_RELATIVE_ACCURACY, MAX_RELATIVE_ACCURACY, MIN_RELATIVE_ACCURACY};

/// The value of a constant argument as a float (`None` unless it is a literal number).
pub fn constant_f64(expr: &std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>) -> Option<f64> {
    let literal = expr.downcast_ref::<datafusion::physical_expr::expressions::Literal>()?;
    match literal.value().cast_to(&datafusion::arrow::datatypes::DataType::Float64).ok()? {
        datafusion::common::ScalarValue::Float64(Some(v)) => Some(v),
        _ => None,
    }
}
