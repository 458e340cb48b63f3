//! OpenClaw's dataflow engine.
//!
//! Data moves as [`Message`]s: a changelog [`StreamChunk`] (an Arrow batch with an [`Op`] per
//! row), a [`Watermark`], or a [`Barrier`]. Operators implement one trait, [`Operator`], and
//! run inside one loop, [`runtime::run_operator`], which owns the channel select, barrier
//! alignment and watermark merging. Tasks are connected by bounded channels, so a slow
//! consumer slows its producers. The [`Coordinator`] injects barriers at every root (source or
//! table) and learns when every sink has passed them: that is what `FLUSH` waits for.

pub mod backfill;
pub mod chunk;
pub mod config;
pub mod coordinator;
pub mod dead_letters;
pub mod error;
pub mod eval_errors;
pub mod message;
pub mod metrics;
pub mod operator;
pub mod operators;
pub mod plan;
pub mod runtime;
pub mod sketch;
pub mod source;
pub mod state;
pub mod table;
pub mod table_blocks;
pub mod table_log;
pub mod watermark;

pub use chunk::{Op, StreamChunk};
pub use config::EngineConfig;
pub use coordinator::Coordinator;
pub use error::{EngineError, EngineResult};
pub use message::{Barrier, BarrierKind, Message, Mutation, Subscription, Watch, Watermark};
pub use operator::{Operator, OperatorContext, Outputs};

/// Identifies a catalog object (table, source, view) inside the engine.
pub type ObjectId = u64;
