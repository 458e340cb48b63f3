//! OpenClaw's state store: one RocksDB database per data directory, one column family per
//! table, view or operator state. Rows are encoded with OpenClaw's own row encoding
//! ([`RowCodec`], versioned by [`FORMAT_VERSION`]), so that keys sort like the values they
//! encode and values decode straight back into Arrow columns.

mod budget;
pub mod cf_export;
pub mod checkpoint;
mod codec;
mod error;
pub mod row_block;
mod store;

pub use budget::MemoryBudget;
pub use codec::{Row, RowCodec, Rows};
pub use error::{StorageError, StorageResult};
pub use store::{decode_count, CfKind, ReadSnapshot, StateWrite, Store, FORMAT_VERSION};
