//! Operator state held decoded in memory in front of RocksDB.
//!
//! An operator reads and changes its state in memory; at each checkpoint barrier it writes
//! what changed since the previous one as one `WriteBatch`, before the runtime snapshots its
//! column families. State over the store's [`openclaw_storage::MemoryBudget`] is evicted
//! after that write (it is clean by then) and read back from RocksDB on its next use, so
//! state larger than memory still works.

pub mod grouped;
pub mod keyed;
pub mod sorted;

pub use grouped::{GroupedTable, StateValue};
pub use keyed::KeyedTable;

use openclaw_storage::Store;

use crate::EngineResult;

/// Whether column family `cf` holds nothing: a cache over it then starts complete (a key not
/// in memory is not in the store either) and reads nothing until it evicts.
fn cf_is_empty(store: &Store, cf: &str) -> EngineResult<bool> {
    let mut empty = true;
    store.scan(cf, None, |_, _| {
        empty = false;
        false
    })?;
    Ok(empty)
}

/// A count (a multiplicity, a match count) in the counters encoding: `i64`, little-endian.
/// Absent at zero.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Count(pub i64);

impl StateValue for Count {
    fn encode(&self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Self {
        Count(openclaw_storage::decode_count(bytes))
    }
    fn is_absent(&self) -> bool {
        self.0 == 0
    }
}
