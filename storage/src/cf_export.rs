//! A snapshot of one column family, started by its owner at a checkpoint barrier and
//! collected by the checkpoint afterwards, and its import at a restore.
//!
//! At the barrier the owner (the family's only writer) calls [`Store::switch_memtable`]: it
//! notes the sequence number, pins it with a RocksDB snapshot, and switches the family's
//! memtable without waiting for its flush, so the operator goes on at once and its later
//! writes land in a new memtable. Once every sink has passed the barrier, the checkpoint calls
//! [`Store::collect_snapshot`] off the hot path: it waits for the switched memtable's flush,
//! then hard-links the family's SST files, which hold exactly the writes up to the barrier.
//! If a later write reached a file first (a memtable filled and flushed in between, so a file
//! is newer than the barrier), the snapshot cannot be had and the checkpoint is abandoned; the
//! pinned RocksDB snapshot keeps compaction from hiding such a write by zeroing its sequence
//! number. The import uses RocksDB's `CreateColumnFamilyWithImport`, which rocksdb 0.25 does
//! not wrap, through the C API (`librocksdb-sys`, the library rocksdb links).
//!
//! The file list is kept in OpenClaw's own form ([`ExportedCf`], inside the checkpoint's
//! manifest), so a restore does not depend on RocksDB's option files.

use std::ffi::{CStr, CString};
use std::path::Path;

use librocksdb_sys as ffi;
use rocksdb::AsRawPtr;

use crate::{CfKind, StorageError, StorageResult, Store};

/// One SST file of an exported column family, as RocksDB described it at the export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedFile {
    /// The file's name in the export directory (RocksDB's form, with a leading `/`).
    pub name: String,
    pub level: i32,
    pub bytes: u64,
    pub smallest_key: Vec<u8>,
    pub largest_key: Vec<u8>,
    pub smallest_seqno: u64,
    pub largest_seqno: u64,
    pub entries: u64,
    pub deletions: u64,
}

/// A column family as exported: what a restore needs to import it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedCf {
    pub cf: String,
    pub kind: CfKind,
    /// RocksDB's name of the key comparator the files are sorted by.
    pub comparator: String,
    pub files: Vec<ExportedFile>,
}

/// Longest a snapshot waits for the flush of its memtable.
pub const SNAPSHOT_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// How often a snapshot checks whether its memtable has been flushed.
const SNAPSHOT_FLUSH_POLL: std::time::Duration = std::time::Duration::from_millis(2);
/// Times a snapshot lists and links its files before giving up on a compaction racing it.
const SNAPSHOT_LINK_ATTEMPTS: usize = 10;
/// The key order of every column family (RocksDB's default).
const BYTEWISE_COMPARATOR: &str = "leveldb.BytewiseComparator";

/// A snapshot of a column family started at a barrier ([`Store::switch_memtable`]).
pub struct PendingSnapshot {
    pub cf: String,
    pub kind: CfKind,
    /// Every write of the family up to the barrier has a sequence number up to this one.
    pub seq: u64,
    /// Keeps compaction from zeroing the sequence numbers of later writes until collected.
    _pin: crate::ReadSnapshot,
}

/// Turns a C error string into a storage error, freeing it.
unsafe fn take_error(err: *mut std::os::raw::c_char) -> StorageResult<()> {
    if err.is_null() {
        return Ok(());
    }
    let message = CStr::from_ptr(err).to_string_lossy().into_owned();
    ffi::rocksdb_free(err as *mut std::ffi::c_void);
    Err(StorageError::Corrupt(format!("rocksdb: {message}")))
}

fn c_path(path: &Path) -> StorageResult<CString> {
    CString::new(path.to_string_lossy().as_bytes()).map_err(|_| StorageError::Corrupt(format!("path {} has a NUL byte", path.display())))
}

unsafe fn bytes_of(ptr: *const std::os::raw::c_char, len: usize) -> Vec<u8> {
    if ptr.is_null() {
        return vec![];
    }
    std::slice::from_raw_parts(ptr as *const u8, len).to_vec()
}

impl Store {
    /// Starts a snapshot of column family `cf` at a barrier: everything written to it so far
    /// is in the snapshot, nothing written after this returns. Call it from the family's only
    /// writer. Does not wait for the flush it starts.
    pub fn switch_memtable(&self, cf: &str, kind: CfKind) -> StorageResult<PendingSnapshot> {
        let handle = self.cf(cf)?;
        let seq = self.db.latest_sequence_number();
        let pin = self.snapshot();
        let mut opts = rocksdb::FlushOptions::default();
        opts.set_wait(false);
        self.db.flush_cf_opt(&handle, &opts)?;
        Ok(PendingSnapshot { cf: cf.to_string(), kind, seq, _pin: pin })
    }

    /// Finishes a snapshot that [`Self::switch_memtable`] started: waits for its memtable's
    /// flush, then hard-links the family's files into `dir` (which must not exist). Blocks;
    /// call it off the async workers.
    pub fn collect_snapshot(&self, pending: &PendingSnapshot, dir: &Path) -> StorageResult<ExportedCf> {
        // Dropped meanwhile (its view went away): the checkpoint is taken again without it.
        let handle = self.cf(&pending.cf).map_err(|_| StorageError::SnapshotUnavailable(format!("\"{}\" was dropped", pending.cf)))?;
        let deadline = std::time::Instant::now() + SNAPSHOT_FLUSH_TIMEOUT;
        while self.db.property_int_value_cf(&handle, "rocksdb.num-immutable-mem-table")?.unwrap_or(0) > 0 {
            if std::time::Instant::now() > deadline {
                return Err(StorageError::SnapshotUnavailable(format!("the memtable of \"{}\" was not flushed within {SNAPSHOT_FLUSH_TIMEOUT:?}", pending.cf)));
            }
            // RocksDB has no call that waits for one family's switched memtable alone (a
            // waiting flush would flush the new memtable, with writes after the barrier, too),
            // so poll; this runs on a blocking thread, off the dataflow.
            std::thread::sleep(SNAPSHOT_FLUSH_POLL);
        }
        // A compaction may delete a listed file before it is linked: list again.
        for _ in 0..SNAPSHOT_LINK_ATTEMPTS {
            let files = self.live_files_of(&pending.cf)?;
            if let Some(f) = files.iter().find(|f| f.largest_seqno > pending.seq) {
                return Err(StorageError::SnapshotUnavailable(format!(
                    "\"{}\" flushed writes after its barrier (file {}, sequence {} > {}) before the snapshot was collected",
                    pending.cf, f.name, f.largest_seqno, pending.seq
                )));
            }
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir)?;
            let linked = files.iter().try_for_each(|f| std::fs::hard_link(self.db.db.path().join(f.name.trim_start_matches('/')), dir.join(f.name.trim_start_matches('/'))));
            match linked {
                Ok(()) => return Ok(ExportedCf { cf: pending.cf.clone(), kind: pending.kind, comparator: BYTEWISE_COMPARATOR.into(), files }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StorageError::SnapshotUnavailable(format!("the files of \"{}\" kept changing while they were linked", pending.cf)))
    }

    /// The live SST files of column family `cf`, as RocksDB describes them.
    fn live_files_of(&self, cf: &str) -> StorageResult<Vec<ExportedFile>> {
        // SAFETY: the list is read while the database lives and destroyed once, after its last use.
        unsafe {
            let list = ffi::rocksdb_livefiles(self.db.db.as_raw_ptr());
            let mut files = vec![];
            for i in 0..ffi::rocksdb_livefiles_count(list) {
                if CStr::from_ptr(ffi::rocksdb_livefiles_column_family_name(list, i)).to_bytes() != cf.as_bytes() {
                    continue;
                }
                let (mut small_len, mut large_len) = (0usize, 0usize);
                let small = ffi::rocksdb_livefiles_smallestkey(list, i, &mut small_len);
                let large = ffi::rocksdb_livefiles_largestkey(list, i, &mut large_len);
                files.push(ExportedFile {
                    name: CStr::from_ptr(ffi::rocksdb_livefiles_name(list, i)).to_string_lossy().into_owned(),
                    level: ffi::rocksdb_livefiles_level(list, i),
                    bytes: ffi::rocksdb_livefiles_size(list, i) as u64,
                    smallest_key: bytes_of(small, small_len),
                    largest_key: bytes_of(large, large_len),
                    smallest_seqno: ffi::rocksdb_livefiles_smallest_seqno(list, i),
                    largest_seqno: ffi::rocksdb_livefiles_largest_seqno(list, i),
                    entries: ffi::rocksdb_livefiles_entries(list, i),
                    deletions: ffi::rocksdb_livefiles_deletions(list, i),
                });
            }
            ffi::rocksdb_livefiles_destroy(list);
            files.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(files)
        }
    }

    /// Creates column family `exported.cf` (which must not exist) from the files of an export
    /// found in `dir`. The files are moved into the database: pass a directory of links made
    /// for the purpose, never the checkpoint's own. The family is usable after the store is
    /// reopened (rocksdb 0.25 does not learn of a family created through the C API).
    pub fn import_cf(&self, exported: &ExportedCf, dir: &Path) -> StorageResult<()> {
        if exported.files.is_empty() {
            // Nothing to import (RocksDB refuses an empty list): an empty family.
            return self.create_cf(&exported.cf, exported.kind);
        }
        if exported.kind == CfKind::Counters {
            crate::store::note_counter_family(&self.dir, &exported.cf)?;
        }
        let opts = crate::store::cf_options(exported.kind, &self.cache);
        let name = CString::new(exported.cf.as_bytes()).map_err(|_| StorageError::Corrupt("a column family name with a NUL byte".into()))?;
        let comparator = CString::new(exported.comparator.as_bytes()).map_err(|_| StorageError::Corrupt("a comparator name with a NUL byte".into()))?;
        let dir_c = c_path(dir)?;
        // SAFETY: as in `export_cf`; `opts` is kept alive with the database below, since
        // RocksDB keeps pointers to its merge operator and compaction filter.
        unsafe {
            let list = ffi::rocksdb_livefiles_create();
            for f in &exported.files {
                let file = ffi::rocksdb_livefile_create();
                let file_name = CString::new(f.name.as_bytes()).map_err(|_| StorageError::Corrupt("a file name with a NUL byte".into()))?;
                ffi::rocksdb_livefile_set_column_family_name(file, name.as_ptr());
                ffi::rocksdb_livefile_set_level(file, f.level);
                ffi::rocksdb_livefile_set_name(file, file_name.as_ptr());
                ffi::rocksdb_livefile_set_directory(file, dir_c.as_ptr());
                ffi::rocksdb_livefile_set_size(file, f.bytes as usize);
                ffi::rocksdb_livefile_set_smallest_key(file, f.smallest_key.as_ptr() as *const _, f.smallest_key.len());
                ffi::rocksdb_livefile_set_largest_key(file, f.largest_key.as_ptr() as *const _, f.largest_key.len());
                ffi::rocksdb_livefile_set_smallest_seqno(file, f.smallest_seqno);
                ffi::rocksdb_livefile_set_largest_seqno(file, f.largest_seqno);
                ffi::rocksdb_livefile_set_num_entries(file, f.entries);
                ffi::rocksdb_livefile_set_num_deletions(file, f.deletions);
                ffi::rocksdb_livefiles_add(list, file);
            }
            let metadata = ffi::rocksdb_export_import_files_metadata_create();
            ffi::rocksdb_export_import_files_metadata_set_db_comparator_name(metadata, comparator.as_ptr());
            ffi::rocksdb_export_import_files_metadata_set_files(metadata, list);
            let import = ffi::rocksdb_import_column_family_options_create();
            ffi::rocksdb_import_column_family_options_set_move_files(import, 1);
            let mut err = std::ptr::null_mut();
            let handle = ffi::rocksdb_create_column_family_with_import(
                self.db.db.as_raw_ptr(),
                opts.as_raw_ptr(),
                name.as_ptr(),
                import,
                metadata,
                &mut err,
            );
            ffi::rocksdb_import_column_family_options_destroy(import);
            ffi::rocksdb_export_import_files_metadata_destroy(metadata);
            take_error(err)?;
            if !handle.is_null() {
                ffi::rocksdb_column_family_handle_destroy(handle);
            }
        }
        self.db.created_cf_options.lock().expect("options lock").push(opts);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StateWrite;

    #[test]
    fn a_snapshot_holds_the_writes_before_its_barrier_and_imports_whole() {
        let dir = std::env::temp_dir().join(format!("openclaw-export-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        store.create_cf("s", CfKind::Plain).unwrap();
        store.create_cf("c", CfKind::Counters).unwrap();
        let mut w = StateWrite::default();
        for i in 0..1000u32 {
            w.put(&"s".into(), i.to_be_bytes().to_vec(), vec![1; 50]);
            w.add_count(&"c".into(), (i % 10).to_be_bytes().to_vec(), 1);
        }
        store.write_state(w).unwrap();
        let exports = dir.join("exports");
        std::fs::create_dir_all(&exports).unwrap();
        let pending_s = store.switch_memtable("s", CfKind::Plain).unwrap();
        let pending_c = store.switch_memtable("c", CfKind::Counters).unwrap();
        // Writes after the barrier are not in the snapshot, even once flushed to their own file.
        let mut w = StateWrite::default();
        w.put(&"s".into(), 5000u32.to_be_bytes().to_vec(), vec![2]);
        w.add_count(&"c".into(), 0u32.to_be_bytes().to_vec(), 100);
        store.write_state(w).unwrap();
        let s = store.collect_snapshot(&pending_s, &exports.join("s")).unwrap();
        let c = store.collect_snapshot(&pending_c, &exports.join("c")).unwrap();
        assert!(!s.files.is_empty() && !c.files.is_empty());
        let mut w = StateWrite::default();
        w.put(&"s".into(), 5001u32.to_be_bytes().to_vec(), vec![2]);
        store.write_state(w).unwrap();
        let late = store.switch_memtable("s", CfKind::Plain).unwrap();
        let mut w = StateWrite::default();
        w.put(&"s".into(), 5002u32.to_be_bytes().to_vec(), vec![2]);
        store.write_state(w).unwrap();
        store.db.flush_cf(&store.cf("s").unwrap()).unwrap();
        assert!(
            matches!(store.collect_snapshot(&late, &exports.join("late")), Err(StorageError::SnapshotUnavailable(_))),
            "a file newer than the barrier makes the snapshot unavailable"
        );
        store.drop_cf("s").unwrap();
        store.drop_cf("c").unwrap();
        for (e, sub) in [(&s, "s"), (&c, "c")] {
            let links = dir.join(format!("links-{sub}"));
            std::fs::create_dir_all(&links).unwrap();
            for f in &e.files {
                std::fs::hard_link(exports.join(sub).join(f.name.trim_start_matches('/')), links.join(f.name.trim_start_matches('/'))).unwrap();
            }
            store.import_cf(e, &links).unwrap();
        }
        // The pending snapshots pin the database: release them before reopening it.
        drop((pending_s, pending_c, late, store));
        let store = Store::open(&dir).unwrap();
        let mut n = 0;
        store.scan("s", None, |_, _| {
            n += 1;
            true
        })
        .unwrap();
        assert_eq!(n, 1000, "the rows up to the barrier, none after");
        assert_eq!(store.multi_get("c", &[&0u32.to_be_bytes()[..]]).unwrap()[0].as_deref().map(crate::decode_count), Some(100));
        // Merges still add up after the import: the counter family kept its merge operator.
        let mut w = StateWrite::default();
        w.add_count(&"c".into(), 0u32.to_be_bytes().to_vec(), 1);
        store.write_state(w).unwrap();
        assert_eq!(store.multi_get("c", &[&0u32.to_be_bytes()[..]]).unwrap()[0].as_deref().map(crate::decode_count), Some(101));
        // The export's own files were not moved: they can be imported again.
        for f in &s.files {
            assert!(exports.join("s").join(f.name.trim_start_matches('/')).exists());
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
