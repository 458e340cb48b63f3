use thiserror::Error;

/// Errors of the storage layer. Every one of them is the system's fault or the disk's, never
/// the user's: callers map them to SQLSTATE XX000 (internal) or 58030 (I/O).
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),
    #[error("arrow: {0}")]
    Codec(#[from] arrow::error::ArrowError),
    /// A type the row encoding has no form for: the user's query asked to keep it in state.
    #[error("{0}")]
    UnsupportedType(String),
    #[error("{0}")]
    Corrupt(String),
    #[error("column family \"{0}\" does not exist")]
    MissingColumnFamily(String),
    #[error("data directory {dir} was written in storage format {found}; this build reads and writes format {expected} and does not convert older formats. Start the OpenClaw release that wrote it to read the data out, or move the directory aside to start afresh")]
    IncompatibleFormat { dir: String, found: String, expected: u32 },
    /// A checkpoint could not collect the snapshot of a column family; the checkpoint is
    /// abandoned and the next one tries again.
    #[error("snapshot unavailable: {0}")]
    SnapshotUnavailable(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

pub type StorageResult<T> = Result<T, StorageError>;
