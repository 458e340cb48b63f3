//! The streaming operators. Stateless ones evaluate DataFusion `PhysicalExpr`s over whole
//! batches; stateful ones keep their state in RocksDB through `openclaw-storage`.

pub mod aggregate;
pub mod change_log;
pub mod exchange;
mod filter;
pub mod join;
pub mod join_expiry;
mod join_output;
pub mod lookup_join;
pub mod materialize;
pub mod over_window;
pub mod partitioned_rows;
pub mod project;
pub mod session;
pub mod subscribe;
pub mod temporal_filter;
pub mod top_n;
pub mod unnest;
mod union;

pub use aggregate::{AggregateOperator, AggregateSpec};
pub use change_log::{ChangeLog, ChangeLogs};
pub use filter::FilterOperator;
pub use join::{JoinKind, JoinOperator, JoinSpec};
pub use lookup_join::{LookupJoinOperator, LookupJoinSpec};
pub use materialize::{MaterializeOperator, MaterializedState};
pub use over_window::{OverWindowOperator, OverWindowSpec};
pub use project::ProjectOperator;
pub use session::{SessionSpec, SessionWindowOperator};
pub use subscribe::{SubscribeOperator, SubscriberQueue, SubscriptionEvent};
pub use temporal_filter::{TemporalFilterOperator, TemporalFilterSpec};
pub use top_n::{TopNOperator, TopNSpec};
pub use union::UnionOperator;
pub use unnest::{UnnestOperator, UnnestSpec};
