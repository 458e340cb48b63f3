//! The streaming operators. Stateless ones evaluate DataFusion `PhysicalExpr`s over whole
//! batches; stateful ones keep their state in RocksDB through `openclaw-storage`.

pub mod aggregate;
pub mod change_log;
pub mod exchange;
mod filter;
pub mod join;
pub mod join_expiry;
pub mod materialize;
pub mod project;
pub mod subscribe;
pub mod temporal_filter;
pub mod top_n;
mod union;

pub use aggregate::{AggregateOperator, AggregateSpec};
pub use change_log::{ChangeLog, ChangeLogs};
pub use filter::FilterOperator;
pub use join::{JoinKind, JoinOperator, JoinSpec};
pub use materialize::{MaterializeOperator, MaterializedState};
pub use project::ProjectOperator;
pub use subscribe::{SubscribeOperator, SubscriberQueue, SubscriptionEvent};
pub use temporal_filter::{TemporalFilterOperator, TemporalFilterSpec};
pub use top_n::{TopNOperator, TopNSpec};
pub use union::UnionOperator;
