use thiserror::Error;

/// Errors of the storage layer. Every one of them is the system's fault or the disk's, never
/// the user's: callers map them to SQLSTATE XX000 (internal) or 58030 (I/O).
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),
    #[error("arrow row codec: {0}")]
    Codec(#[from] arrow::error::ArrowError),
    #[error("column family \"{0}\" does not exist")]
    MissingColumnFamily(String),
    #[error("data directory {dir} was written by an incompatible storage format {found} (this build reads {expected})")]
    IncompatibleFormat { dir: String, found: String, expected: u32 },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

pub type StorageResult<T> = Result<T, StorageError>;
