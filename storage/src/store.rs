use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::compaction_filter::Decision;
use rocksdb::{
    ColumnFamilyDescriptor, DBWithThreadMode, IteratorMode, MergeOperands, MultiThreaded, Options,
    ReadOptions, SnapshotWithThreadMode, WriteBatch,
};

use crate::{MemoryBudget, StorageError, StorageResult};

type Db = DBWithThreadMode<MultiThreaded>;

/// Version of the on-disk encoding. Bumped whenever keys or values change shape, so that an
/// old data directory is refused with a message instead of being misread.
/// 1: Arrow's row format (arrow 59), DataFusion's hash for partitions.
/// 2: OpenClaw's own row encoding (`codec.rs`) and partition hash (xxh64 of the encoded key).
/// 3: a table without a primary key stores its rows in blocks (`row_block.rs`), and its log
///    names the rows a write appended instead of copying them.
pub const FORMAT_VERSION: u32 = 3;
const FORMAT_FILE: &str = "OPENCLAW_FORMAT";
/// Names of the column families created as [`CfKind::Counters`], one per line (append-only;
/// names are never reused), so that they reopen with their compaction filter.
const COUNTER_FAMILIES_FILE: &str = "COUNTER_FAMILIES";

/// The database together with the options of the column families created after it was
/// opened: RocksDB keeps raw pointers to their merge operators and compaction filters, so
/// they must live as long as the database (field order drops the database first).
pub struct DbAndOptions {
    pub(crate) db: Db,
    pub(crate) created_cf_options: std::sync::Mutex<Vec<Options>>,
}

impl std::ops::Deref for DbAndOptions {
    type Target = Db;
    fn deref(&self) -> &Db {
        &self.db
    }
}

/// What a column family holds, which decides its RocksDB options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CfKind {
    /// Keys and values written with put and delete.
    Plain,
    /// Values are i64 counts (little endian) changed with [`StateWrite::add_count`]: RocksDB
    /// adds them up itself (a merge operator), so a change needs no read before its write.
    /// A count of zero means absent; compaction drops such keys.
    Counters,
}

const ZERO_COUNT: [u8; 8] = 0i64.to_le_bytes();

/// Reads a count of a [`CfKind::Counters`] family (a malformed value reads as zero).
pub fn decode_count(bytes: &[u8]) -> i64 {
    bytes.try_into().map(i64::from_le_bytes).unwrap_or(0)
}

fn add_counts(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut sum = existing.map(decode_count).unwrap_or(0);
    for op in operands {
        sum += decode_count(op);
    }
    Some(sum.to_le_bytes().to_vec())
}

/// Default size of the state cache (RocksDB's block cache plus its memtables).
pub const DEFAULT_STATE_CACHE_BYTES: usize = 256 << 20;

/// Size of one partition of a file's index or filter (see `merge_options`).
pub const METADATA_BLOCK_BYTES: usize = 4096;

/// Options every column family shares: the merge operator (see [`Store::open`]) and the one
/// block cache that bounds how much state is held in memory.
fn merge_options(cache: &rocksdb::Cache) -> Options {
    let mut opts = Options::default();
    opts.set_merge_operator_associative("openclaw_add_counts", add_counts);
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_cache_index_and_filter_blocks(true);
    table.set_bloom_filter(10.0, false);
    // Index and filters in blocks of a few kilobytes, read into the cache as needed. Whole,
    // a large file's filter outgrew a shard of the cache, so every lookup read and
    // checksummed megabytes of it again: a 1 M-row INSERT into a 3 M-row table took 19-57 s
    // instead of 4 (`perf`: 42% in XXH3 of long blocks, 21% copying pread data).
    table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(METADATA_BLOCK_BYTES);
    table.set_cache_index_and_filter_blocks_with_high_priority(true);
    table.set_pin_top_level_index_and_filter(true);
    opts.set_block_based_table_factory(&table);
    opts
}

pub(crate) fn cf_options(kind: CfKind, cache: &rocksdb::Cache) -> Options {
    let mut opts = merge_options(cache);
    if kind == CfKind::Counters {
        opts.set_compaction_filter("openclaw_drop_zero_counts", |_level, _key, value| {
            if value == ZERO_COUNT { Decision::Remove } else { Decision::Keep }
        });
    }
    opts
}

/// The state store of one data directory: a RocksDB database with a column family per table,
/// view or operator state.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Arc<DbAndOptions>,
    pub(crate) cache: rocksdb::Cache,
    pub(crate) dir: PathBuf,
    /// The operators' decoded state caches ([`MemoryBudget`]).
    operator_cache: Arc<MemoryBudget>,
    /// Column families found when the store was opened.
    opened_with: Arc<Vec<String>>,
}

/// Bytes a flush or compaction writes before it syncs them (see `open_at`).
pub const BYTES_PER_SYNC: u64 = 1 << 20;

/// The live database's directory inside the data dir.
pub(crate) const STATE_SUBDIR: &str = "state";

impl Store {
    /// Opens (or creates) the store under `dir`, with every column family it already has.
    pub fn open(dir: &Path) -> StorageResult<Self> {
        Self::open_with_cache(dir, DEFAULT_STATE_CACHE_BYTES)
    }

    /// Opens the store with a memory budget for state: half for the operators' decoded state
    /// caches ([`Store::operator_cache`]), a quarter for the shared LRU block cache in front of
    /// every column family, a quarter for the write buffers (memtables). State larger than that
    /// lives on disk.
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> StorageResult<Self> {
        Self::open_at(dir, STATE_SUBDIR, cache_bytes)
    }

    /// Opens the RocksDB database in `dir/<subdir>` (the live one is [`STATE_SUBDIR`]).
    pub(crate) fn open_at(dir: &Path, subdir: &str, cache_bytes: usize) -> StorageResult<Self> {
        std::fs::create_dir_all(dir)?;
        let cache = rocksdb::Cache::new_lru_cache(cache_bytes / 4);
        check_format(dir)?;
        let path = dir.join(subdir);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Two background jobs match the two cores of the target machine.
        opts.increase_parallelism(2);
        opts.set_db_write_buffer_size(cache_bytes / 4);
        // Files written by flushes and compactions are synced a megabyte at a time, so that
        // dirty pages never pile up: on ext4, a durable write's fsync of the log otherwise
        // waits for them (an INSERT during a backfill once took 440 ms in its fsync).
        opts.set_bytes_per_sync(BYTES_PER_SYNC);
        opts.set_wal_bytes_per_sync(BYTES_PER_SYNC);
        let existing = Db::list_cf(&opts, &path).unwrap_or_else(|_| vec!["default".to_string()]);
        // Every column family reopens with the merge operator: the write-ahead log may hold
        // merges of counter families, and replaying one without it would fail. Counter
        // families get their compaction filter back too, so zero counts keep being dropped.
        let counters = read_counter_families(dir)?;
        let cfs = existing.iter().map(|name| {
            let kind = if counters.contains(name) { CfKind::Counters } else { CfKind::Plain };
            ColumnFamilyDescriptor::new(name, cf_options(kind, &cache))
        });
        let db = Db::open_cf_descriptors(&opts, &path, cfs)?;
        let opened_with = Arc::new(existing.into_iter().filter(|n| n != "default").collect());
        let db = DbAndOptions { db, created_cf_options: Default::default() };
        let operator_cache = Arc::new(MemoryBudget::new(cache_bytes / 2));
        Ok(Self { db: Arc::new(db), cache, dir: dir.to_path_buf(), opened_with, operator_cache })
    }

    /// The column families (besides RocksDB's default) the store had when it was opened.
    pub fn opened_with(&self) -> &[String] {
        &self.opened_with
    }

    /// The budget every operator's decoded state cache counts against.
    pub fn operator_cache(&self) -> &Arc<MemoryBudget> {
        &self.operator_cache
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the column family `name`; creating one that exists is a no-op.
    pub fn create_cf(&self, name: &str, kind: CfKind) -> StorageResult<()> {
        if self.db.cf_handle(name).is_none() {
            if kind == CfKind::Counters {
                note_counter_family(&self.dir, name)?;
            }
            let opts = cf_options(kind, &self.cache);
            self.db.create_cf(name, &opts)?;
            self.db.created_cf_options.lock().expect("options lock").push(opts);
        }
        Ok(())
    }

    /// Drops the column family `name` and everything in it; dropping a missing one is a no-op.
    pub fn drop_cf(&self, name: &str) -> StorageResult<()> {
        if self.db.cf_handle(name).is_some() {
            self.db.drop_cf(name)?;
        }
        Ok(())
    }

    /// Every column family the store has now (besides RocksDB's default), with its kind.
    pub fn families(&self) -> StorageResult<Vec<(String, CfKind)>> {
        let names = Db::list_cf(&Options::default(), self.db.path())?;
        let counters = read_counter_families(&self.dir)?;
        Ok(names
            .into_iter()
            .filter(|n| n != "default")
            .map(|n| {
                let kind = if counters.contains(&n) { CfKind::Counters } else { CfKind::Plain };
                (n, kind)
            })
            .collect())
    }

    pub fn has_cf(&self, name: &str) -> bool {
        self.db.cf_handle(name).is_some()
    }

    /// Applies a batch of operator-state writes atomically, without the write-ahead log: a
    /// restart restores operator state from a checkpoint (whose snapshot flushes the
    /// memtables), never from the log. Logging it would only make every durable write's
    /// fsync carry the operators' megabytes (measured: an `INSERT` during a backfill waited
    /// up to 90 ms on it).
    pub fn write_state(&self, write: StateWrite) -> StorageResult<()> {
        self.write_with(write, false)
    }

    /// Applies a batch of writes atomically through the write-ahead log, synced to disk
    /// before it returns: the write survives a crash of the process or of the machine. For
    /// what a restart keeps from the live store (tables, the catalog, connector positions) and
    /// for writes acknowledged to a client.
    pub fn write_durable(&self, write: StateWrite) -> StorageResult<()> {
        self.write_with(write, true)
    }

    fn write_with(&self, write: StateWrite, sync: bool) -> StorageResult<()> {
        if write.ops.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        let arena = write.arena.as_slice();
        // Consecutive operations mostly share a column family: its handle is looked up once.
        let mut handle = None;
        for op in &write.ops {
            let cf = match &handle {
                Some((name, cf)) if Arc::ptr_eq(name, &op.cf) || **name == *op.cf => cf,
                _ => &handle.insert((op.cf.clone(), self.cf(&op.cf)?)).1,
            };
            let key = op.key.get(arena);
            match &op.change {
                Change::Put(value) => batch.put_cf(cf, key, value.get(arena)),
                Change::Delete => batch.delete_cf(cf, key),
                Change::AddCount(delta) => batch.merge_cf(cf, key, delta.to_le_bytes()),
            }
        }
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(sync);
        opts.disable_wal(!sync);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// Point lookups of many keys in one column family, in key order of the request.
    pub fn multi_get(&self, cf: &str, keys: &[&[u8]]) -> StorageResult<Vec<Option<Vec<u8>>>> {
        self.multi_get_at(cf, keys, None)
    }

    /// [`Self::multi_get`] as of `snapshot` (or now).
    pub fn multi_get_at(&self, cf: &str, keys: &[&[u8]], snapshot: Option<&ReadSnapshot>) -> StorageResult<Vec<Option<Vec<u8>>>> {
        let handle = self.cf(cf)?;
        let mut read = ReadOptions::default();
        if let Some(snapshot) = snapshot {
            read.set_snapshot(&snapshot.snapshot);
        }
        self.db
            .batched_multi_get_cf_opt(&handle, keys.iter().copied(), false, &read)
            .into_iter()
            .map(|r| Ok(r?.map(|slice| slice.to_vec())))
            .collect()
    }

    /// A consistent, point-in-time view of every column family.
    pub fn snapshot(&self) -> ReadSnapshot {
        ReadSnapshot::new(Arc::clone(&self.db))
    }

    /// Calls `visit` with every key and value of `cf`, in key order, as of `snapshot` (or now).
    /// Stops early when `visit` returns `false`.
    pub fn scan(
        &self,
        cf: &str,
        snapshot: Option<&ReadSnapshot>,
        visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> StorageResult<()> {
        self.scan_from(cf, None, snapshot, visit)
    }

    /// Like [`Self::scan`], starting at the first key strictly after `after` (when given), so
    /// that a long scan can be taken in pages.
    pub fn scan_from(
        &self,
        cf: &str,
        after: Option<&[u8]>,
        snapshot: Option<&ReadSnapshot>,
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> StorageResult<()> {
        let handle = self.cf(cf)?;
        let mut read = ReadOptions::default();
        if let Some(snapshot) = snapshot {
            read.set_snapshot(&snapshot.snapshot);
        }
        let mode = match after {
            Some(key) => IteratorMode::From(key, rocksdb::Direction::Forward),
            None => IteratorMode::Start,
        };
        for item in self.db.iterator_cf_opt(&handle, read, mode) {
            let (key, value) = item?;
            if after.is_some_and(|a| a == &key[..]) {
                continue;
            }
            if !visit(&key, &value) {
                break;
            }
        }
        Ok(())
    }

    /// Calls `visit` with every key of `cf` that starts with `prefix`, in key order (or in
    /// reverse order when `reverse`), until `visit` returns `false`.
    pub fn scan_prefix(
        &self,
        cf: &str,
        prefix: &[u8],
        reverse: bool,
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> StorageResult<()> {
        let handle = self.cf(cf)?;
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(prefix.to_vec());
        if let Some(upper) = prefix_successor(prefix) {
            read.set_iterate_upper_bound(upper);
        }
        let mode = if reverse { IteratorMode::End } else { IteratorMode::Start };
        for item in self.db.iterator_cf_opt(&handle, read, mode) {
            let (key, value) = item?;
            debug_assert!(key.starts_with(prefix), "iterator bounds keep scans inside the prefix");
            if !visit(&key, &value) {
                break;
            }
        }
        Ok(())
    }

    /// Deletes every key of `cf` in `[from, to)`.
    pub fn delete_range(&self, cf: &str, from: &[u8], to: &[u8]) -> StorageResult<()> {
        let handle = self.cf(cf)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(&handle, from, to);
        self.db.write(batch)?;
        Ok(())
    }

    /// Bytes of state the database holds: its SST files (compressed) and memtables, over
    /// every column family. For benchmarks, which compare it with the cache budget.
    pub fn state_bytes(&self) -> StorageResult<u64> {
        let names = Db::list_cf(&Options::default(), self.db.path())?;
        self.bytes_in(&names)
    }

    /// Bytes the column families `cfs` hold on disk (SST files, compressed) and in memtables,
    /// from RocksDB's in-memory properties (no I/O); a family that does not exist holds none.
    /// What `pg_table_size` reports for a relation stored in them.
    pub fn bytes_in(&self, cfs: &[String]) -> StorageResult<u64> {
        let mut total = 0;
        for name in cfs {
            let Some(handle) = self.db.cf_handle(name) else { continue };
            for property in ["rocksdb.total-sst-files-size", "rocksdb.cur-size-all-mem-tables"] {
                total += self.db.property_int_value_cf(&handle, property)?.unwrap_or(0);
            }
        }
        Ok(total)
    }

    /// RocksDB's own statistics for `/metrics`, summed over the column families `cfs`: its
    /// in-memory properties (no I/O), by the property's name without the `rocksdb.` prefix.
    pub fn rocksdb_statistics(&self, cfs: &[String]) -> StorageResult<Vec<(&'static str, u64)>> {
        const SUMMED: [&str; 7] = [
            "estimate-num-keys",
            "total-sst-files-size",
            "cur-size-all-mem-tables",
            "estimate-pending-compaction-bytes",
            "num-running-compactions",
            "num-running-flushes",
            "estimate-table-readers-mem",
        ];
        let mut totals: Vec<(&'static str, u64)> = SUMMED.iter().map(|p| (*p, 0)).collect();
        for name in cfs {
            let Some(handle) = self.db.cf_handle(name) else { continue };
            for (property, total) in totals.iter_mut() {
                *total += self.db.property_int_value_cf(&handle, &format!("rocksdb.{property}"))?.unwrap_or(0);
            }
        }
        // The block cache is shared by every family: counted once.
        let cache = self.db.cf_handle(cfs.first().map(String::as_str).unwrap_or("default")).map(|h| self.db.property_int_value_cf(&h, "rocksdb.block-cache-usage")).transpose()?.flatten();
        totals.push(("block-cache-usage", cache.unwrap_or(0)));
        Ok(totals)
    }

    /// Number of keys in `cf`, counted by a full scan (for tests and `SHOW`).
    pub fn count_keys(&self, cf: &str) -> StorageResult<u64> {
        let mut n = 0;
        self.scan(cf, None, |_, _| {
            n += 1;
            true
        })?;
        Ok(n)
    }

    pub(crate) fn cf(&self, name: &str) -> StorageResult<Arc<rocksdb::BoundColumnFamily<'_>>> {
        self.db.cf_handle(name).ok_or_else(|| StorageError::MissingColumnFamily(name.to_string()))
    }
}

/// The smallest key greater than every key starting with `prefix` (`None` when there is none).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < u8::MAX {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

fn read_counter_families(dir: &Path) -> StorageResult<std::collections::HashSet<String>> {
    match std::fs::read_to_string(dir.join(COUNTER_FAMILIES_FILE)) {
        Ok(text) => Ok(text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(e.into()),
    }
}

/// Records `name` as a counter family, synced before the family exists.
pub(crate) fn note_counter_family(dir: &Path, name: &str) -> StorageResult<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(COUNTER_FAMILIES_FILE))?;
    file.write_all(format!("{name}\n").as_bytes())?;
    file.sync_all()?;
    Ok(())
}

pub(crate) fn check_format(dir: &Path) -> StorageResult<()> {
    let file = dir.join(FORMAT_FILE);
    match std::fs::read_to_string(&file) {
        Ok(found) if found.trim() == FORMAT_VERSION.to_string() => Ok(()),
        Ok(found) => Err(StorageError::IncompatibleFormat {
            dir: dir.display().to_string(),
            found: found.trim().to_string(),
            expected: FORMAT_VERSION,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&file, format!("{FORMAT_VERSION}\n"))?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes to apply atomically across column families.
#[derive(Default)]
pub struct StateWrite {
    ops: Vec<WriteOp>,
    /// Keys and values written with [`StateWrite::put_slices`], back to back: a bulk write
    /// of a million rows makes one growing buffer rather than two million allocations.
    arena: Vec<u8>,
}

struct WriteOp {
    cf: Arc<str>,
    key: Bytes,
    change: Change,
}

/// Bytes owned by an operation, or a range of its write's arena.
enum Bytes {
    Owned(Vec<u8>),
    Arena(std::ops::Range<usize>),
}

impl Bytes {
    fn get<'a>(&'a self, arena: &'a [u8]) -> &'a [u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Arena(r) => &arena[r.clone()],
        }
    }

    /// The same bytes once `offset` bytes precede the arena they point into.
    fn shifted(self, offset: usize) -> Bytes {
        match self {
            Bytes::Arena(r) => Bytes::Arena(r.start + offset..r.end + offset),
            owned => owned,
        }
    }
}

enum Change {
    Put(Bytes),
    Delete,
    AddCount(i64),
}

impl StateWrite {
    /// Adds `other`'s writes after these (applied in the same atomic batch).
    pub fn append(&mut self, other: StateWrite) {
        let offset = self.arena.len();
        self.arena.extend_from_slice(&other.arena);
        self.ops.extend(other.ops.into_iter().map(|op| WriteOp {
            cf: op.cf,
            key: op.key.shifted(offset),
            change: match op.change {
                Change::Put(value) => Change::Put(value.shifted(offset)),
                other => other,
            },
        }));
    }

    /// Whether the write changes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Makes room for `ops` more operations of `bytes` bytes of keys and values written with
    /// [`Self::put_slices`] (a bulk write knows its size).
    pub fn reserve(&mut self, ops: usize, bytes: usize) {
        self.ops.reserve(ops);
        self.arena.reserve(bytes);
    }

    pub fn put(&mut self, cf: &Arc<str>, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(WriteOp { cf: Arc::clone(cf), key: Bytes::Owned(key), change: Change::Put(Bytes::Owned(value)) });
    }

    /// [`Self::put`] of borrowed bytes, copied into the write's arena.
    pub fn put_slices(&mut self, cf: &Arc<str>, key: &[u8], value: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(key);
        self.arena.extend_from_slice(value);
        let (key_end, end) = (start + key.len(), self.arena.len());
        self.ops.push(WriteOp { cf: Arc::clone(cf), key: Bytes::Arena(start..key_end), change: Change::Put(Bytes::Arena(key_end..end)) });
    }

    pub fn delete(&mut self, cf: &Arc<str>, key: Vec<u8>) {
        self.ops.push(WriteOp { cf: Arc::clone(cf), key: Bytes::Owned(key), change: Change::Delete });
    }

    /// Adds `delta` to the count under `key` in a [`CfKind::Counters`] column family.
    pub fn add_count(&mut self, cf: &Arc<str>, key: Vec<u8>, delta: i64) {
        self.ops.push(WriteOp { cf: Arc::clone(cf), key: Bytes::Owned(key), change: Change::AddCount(delta) });
    }
}

/// An owned RocksDB snapshot: every read through it sees the database as of its creation.
pub struct ReadSnapshot {
    // Declared before `_db` so that it is dropped first: the snapshot must not outlive the DB.
    snapshot: SnapshotWithThreadMode<'static, Db>,
    _db: Arc<DbAndOptions>,
}

impl ReadSnapshot {
    fn new(db: Arc<DbAndOptions>) -> Self {
        let snapshot = db.db.snapshot();
        // SAFETY: the snapshot borrows the DB, which this struct keeps alive through `_db` and
        // drops after the snapshot (field order). The DB is never moved out of its Arc.
        let snapshot = unsafe {
            std::mem::transmute::<SnapshotWithThreadMode<'_, Db>, SnapshotWithThreadMode<'static, Db>>(
                snapshot,
            )
        };
        Self { snapshot, _db: db }
    }
}

// SAFETY: a RocksDB snapshot is an immutable handle that RocksDB allows reading from any thread.
unsafe impl Send for ReadSnapshot {}
unsafe impl Sync for ReadSnapshot {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes of borrowed bytes (kept in the write's arena) and of owned ones apply in order,
    /// also after one write is appended to another (its arena ranges moved).
    #[test]
    fn arena_and_owned_writes_apply_in_order_after_append() {
        let dir = std::env::temp_dir().join(format!("openclaw-store-arena-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        store.create_cf("t", CfKind::Plain).unwrap();
        let cf: Arc<str> = Arc::from("t");
        let mut a = StateWrite::default();
        a.reserve(2, 8);
        a.put_slices(&cf, b"k1", b"v1");
        a.put(&cf, b"k2".to_vec(), b"v2".to_vec());
        let mut b = StateWrite::default();
        b.put_slices(&cf, b"k3", b"v3");
        b.put_slices(&cf, b"k1", b"v9");
        b.delete(&cf, b"k2".to_vec());
        a.append(b);
        store.write_durable(a).unwrap();
        let got = store.multi_get("t", &[b"k1", b"k2", b"k3"]).unwrap();
        assert_eq!(got, [Some(b"v9".to_vec()), None, Some(b"v3".to_vec())]);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn snapshot_hides_later_writes_and_reopen_keeps_column_families() {
        let dir = std::env::temp_dir().join(format!("openclaw-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let store = Store::open(&dir).unwrap();
            store.create_cf("t", CfKind::Plain).unwrap();
            store.create_cf("c", CfKind::Counters).unwrap();
            let counts: Arc<str> = Arc::from("c");
            let mut w = StateWrite::default();
            w.add_count(&counts, b"k".to_vec(), 2);
            w.add_count(&counts, b"k".to_vec(), -1);
            store.write_state(w).unwrap();
            assert_eq!(store.multi_get("c", &[b"k"]).unwrap()[0].as_deref(), Some(&1i64.to_le_bytes()[..]));
            let cf: Arc<str> = Arc::from("t");
            let mut w = StateWrite::default();
            w.put(&cf, b"a".to_vec(), b"1".to_vec());
            store.write_state(w).unwrap();
            let snap = store.snapshot();
            let mut w = StateWrite::default();
            w.put(&cf, b"b".to_vec(), b"2".to_vec());
            store.write_state(w).unwrap();
            let mut seen = 0;
            store.scan("t", Some(&snap), |_, _| { seen += 1; true }).unwrap();
            assert_eq!(seen, 1);
            assert_eq!(store.count_keys("t").unwrap(), 2);
        }
        let store = Store::open(&dir).unwrap();
        assert!(store.has_cf("t"));
        store.drop_cf("c").unwrap();
        assert_eq!(store.count_keys("t").unwrap(), 2);
        // Zero counts go at compaction after a reopen too.
        let counts: Arc<str> = Arc::from("z");
        store.create_cf("z", CfKind::Counters).unwrap();
        let mut w = StateWrite::default();
        w.add_count(&counts, b"gone".to_vec(), 1);
        w.add_count(&counts, b"kept".to_vec(), 2);
        store.write_state(w).unwrap();
        drop(store);
        let store = Store::open(&dir).unwrap();
        let mut w = StateWrite::default();
        w.add_count(&counts, b"gone".to_vec(), -1);
        store.write_state(w).unwrap();
        store.db.flush_cf(&store.cf("z").unwrap()).unwrap();
        // The first compaction merges the counts (RocksDB does not filter a merge's result),
        // the next one filters the zero it left.
        store.db.compact_range_cf(&store.cf("z").unwrap(), None::<&[u8]>, None::<&[u8]>);
        store.db.compact_range_cf(&store.cf("z").unwrap(), None::<&[u8]>, None::<&[u8]>);
        assert_eq!(store.count_keys("z").unwrap(), 1, "the zero count was dropped");
        std::fs::write(dir.join(FORMAT_FILE), "999").unwrap();
        drop(store);
        assert!(matches!(Store::open(&dir), Err(StorageError::IncompatibleFormat { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
