//! `PROCTIME()`, Flink's processing time: the wall clock when a row is processed, as a
//! `timestamptz` in milliseconds (Flink's `TIMESTAMP_LTZ(3)`). Ad hoc it is the time the query
//! runs; in a view, the time each chunk of input passes the projection that computes it, so a
//! `TUMBLE` over it counts rows by when they arrived (Nexmark q12). Volatile: never folded.
//! The engine's projection sends each chunk's time on as the column's watermark
//! (`openclaw_engine::operators::project::is_processing_time`, which knows it by this name),
//! so windows over it close.
//! A view may compute it only over an input that never updates or deletes rows, since a
//! retraction would get another time than the row it retracts (`lower.rs` refuses the rest).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

pub const NAME: &str = "proctime";

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Proctime {
    signature: Signature,
}

impl Proctime {
    pub fn new() -> Self {
        Self { signature: Signature::exact(vec![], Volatility::Volatile) }
    }
}

fn utc() -> Option<Arc<str>> {
    Some(Arc::from("+00:00"))
}

impl ScalarUDFImpl for Proctime {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Millisecond, utc()))
    }

    /// One time for the whole batch: its rows are processed together.
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        Ok(ColumnarValue::Scalar(ScalarValue::TimestampMillisecond(Some(now_ms), utc())))
    }
}

/// Whether `e` reads the processing time.
pub fn mentions(e: &Expr) -> bool {
    e.exists(|e| Ok(matches!(e, Expr::ScalarFunction(f) if f.func.inner().is::<Proctime>()))).unwrap_or(true)
}
