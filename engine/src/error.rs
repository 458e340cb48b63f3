use datafusion::error::DataFusionError;
use openclaw_storage::StorageError;
use thiserror::Error;

/// Errors of the engine, split by who is at fault.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The data made an expression fail (division by zero, a bad cast): the user's input.
    #[error("{0}")]
    Execution(String),
    /// The plan asks for something the engine cannot do yet.
    #[error("{0}")]
    NotSupported(String),
    /// An invariant of the engine broke: a bug.
    #[error("internal error: {0}")]
    Internal(String),
    /// A system outside the engine failed (a Kafka broker refused, a network error).
    #[error("{0}")]
    External(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// A peer task went away (its object was dropped, or the server is shutting down).
    #[error("channel closed")]
    Closed,
}

pub type EngineResult<T> = Result<T, EngineError>;

/// Returns early with an [`EngineError::Internal`].
#[macro_export]
macro_rules! internal_err {
    ($($arg:tt)*) => { return Err($crate::EngineError::Internal(format!($($arg)*))) };
}
