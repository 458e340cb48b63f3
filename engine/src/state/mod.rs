//! Operator state held decoded in memory in front of RocksDB.
//!
//! An operator reads and changes its state in memory; at each checkpoint barrier it writes
//! what changed since the previous one as one `WriteBatch`, before the runtime snapshots its
//! column families. State over the store's [`openclaw_storage::MemoryBudget`] is evicted
//! after that write (it is clean by then) and read back from RocksDB on its next use, so
//! state larger than memory still works.

pub mod grouped;

pub use grouped::{GroupedTable, StateValue};
