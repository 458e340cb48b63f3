//! [`KeyedTable`]: a column family of `key → value` entries held in memory in key order. An
//! aggregate's groups are one (key: the group; value: its accumulator states and last output
//! row), so that a chunk's groups are found without reading RocksDB and written back once per
//! barrier instead of once per chunk.
//!
//! The on-disk layout is the column family's own; this cache adds no encoding. Entries are
//! kept in key order so that a range of them (the groups of closed windows, whose keys start
//! with the window) is found and dropped without visiting the others.

use std::collections::BTreeMap;
use std::sync::Arc;

use openclaw_storage::{MemoryBudget, StateWrite, Store};

use crate::EngineResult;

/// Bytes an entry costs besides its key and value: its B-tree slot (a third of a node is
/// empty on average), the two boxed allocations and the flags.
const ENTRY_OVERHEAD_BYTES: usize = 112;

struct Entry {
    /// `None`: the key holds nothing (never had, or deleted since the last flush).
    value: Option<Box<[u8]>>,
    /// Changed since the last flush.
    dirty: bool,
    /// The store holds the key (as of the last flush).
    stored: bool,
    /// The [`KeyedTable::clock`] of the entry's last use, for eviction.
    last_used: u64,
}

impl Entry {
    fn bytes(key: &[u8], value: Option<&[u8]>) -> usize {
        ENTRY_OVERHEAD_BYTES + key.len() + value.map_or(0, <[u8]>::len)
    }
}

/// A column family's entries, decoded from RocksDB on first use, written back at
/// [`KeyedTable::flush`], evicted least recently used beyond the store's cache budget.
pub struct KeyedTable {
    store: Store,
    cf: Arc<str>,
    entries: BTreeMap<Box<[u8]>, Entry>,
    /// Keys changed since the last flush (a key may be listed after it was forgotten).
    dirty: Vec<Box<[u8]>>,
    /// Every key the column family holds is in memory: a key not in `entries` holds nothing,
    /// and a miss needs no read. True for a table that started empty and never evicted.
    complete: bool,
    bytes: usize,
    /// Advances once per [`KeyedTable::load`] (once per chunk).
    clock: u64,
    budget: Arc<MemoryBudget>,
}

impl KeyedTable {
    /// The table over column family `cf` (created by the caller).
    pub fn new(store: Store, cf: Arc<str>) -> EngineResult<Self> {
        let empty = super::cf_is_empty(&store, &cf)?;
        let budget = store.operator_cache().clone();
        Ok(Self { store, cf, entries: BTreeMap::new(), dirty: vec![], complete: empty, bytes: 0, clock: 0, budget })
    }

    pub fn cf(&self) -> &Arc<str> {
        &self.cf
    }

    /// Bytes held in memory.
    pub fn held_bytes(&self) -> usize {
        self.bytes
    }

    /// Whether every entry of the column family is in memory.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Makes sure `keys` are in memory, reading the missing ones with one `multi_get`, and
    /// marks them used now. A key the store does not hold is remembered as empty.
    pub fn load(&mut self, keys: &[&[u8]]) -> EngineResult<()> {
        self.clock += 1;
        let mut missing: Vec<&[u8]> = vec![];
        for key in keys {
            match self.entries.get_mut(*key) {
                Some(e) => e.last_used = self.clock,
                None if !self.complete => missing.push(key),
                None => {}
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_unstable();
        missing.dedup();
        let values = self.store.multi_get(&self.cf, &missing)?;
        for (key, value) in missing.into_iter().zip(values) {
            let value = value.map(Vec::into_boxed_slice);
            self.add_bytes(Entry::bytes(key, value.as_deref()));
            let stored = value.is_some();
            self.entries.insert(Box::from(key), Entry { value, dirty: false, stored, last_used: self.clock });
        }
        Ok(())
    }

    /// The value under `key`; the key must have been [`Self::load`]ed (or the table be
    /// complete).
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key)?.value.as_deref()
    }

    /// Sets (`Some`) or deletes (`None`) the value under `key`, written at the next
    /// [`Self::flush`].
    pub fn put(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        let value = value.map(Vec::into_boxed_slice);
        let new_bytes = Entry::bytes(key, value.as_deref());
        let clock = self.clock;
        let (old_bytes, was_dirty) = match self.entries.get_mut(key) {
            Some(e) => {
                let old = Entry::bytes(key, e.value.as_deref());
                let was_dirty = e.dirty;
                e.value = value;
                e.dirty = true;
                e.last_used = clock;
                (old, was_dirty)
            }
            None => {
                self.entries.insert(Box::from(key), Entry { value, dirty: true, stored: false, last_used: clock });
                (0, false)
            }
        };
        if !was_dirty {
            self.dirty.push(Box::from(key));
        }
        self.add_bytes(new_bytes);
        self.release(old_bytes);
    }

    /// The entries below `bound` that hold a value, in key order. Only a complete table
    /// knows them all.
    pub fn values_below<'a>(&'a self, bound: &[u8]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        debug_assert!(self.complete, "an incomplete table does not hold every entry");
        self.entries
            .range::<[u8], _>((std::ops::Bound::Unbounded, std::ops::Bound::Excluded(bound)))
            .filter_map(|(k, e)| Some((k.as_ref(), e.value.as_deref()?)))
    }

    /// Forgets every entry below `bound`, changed or not, for a range the caller deletes from
    /// the store itself. Returns whether the store may hold any of them (so whether that
    /// delete is needed): always for an incomplete table.
    pub fn forget_below(&mut self, bound: &[u8]) -> bool {
        let kept = self.entries.split_off(bound);
        let below = std::mem::replace(&mut self.entries, kept);
        let mut stored = !self.complete;
        let mut freed = 0;
        for (key, e) in &below {
            stored |= e.stored;
            freed += Entry::bytes(key, e.value.as_deref());
        }
        self.release(freed);
        stored
    }

    /// Adds every change since the last flush to `write`: a value becomes a put, an emptied
    /// key that the store holds a delete.
    pub fn flush(&mut self, write: &mut StateWrite) {
        for key in std::mem::take(&mut self.dirty) {
            let Some(e) = self.entries.get_mut(&key) else { continue };
            if !e.dirty {
                continue;
            }
            e.dirty = false;
            let emptied = match &e.value {
                Some(v) => {
                    write.put(&self.cf, key.to_vec(), v.to_vec());
                    e.stored = true;
                    false
                }
                None => {
                    if e.stored {
                        write.delete(&self.cf, key.to_vec());
                    }
                    e.stored = false;
                    true
                }
            };
            // A complete table needs no memory of what is not there.
            if emptied && self.complete {
                self.entries.remove(&key);
                self.release(Entry::bytes(&key, None));
            }
        }
    }

    /// After a [`Self::flush`]: evicts the least recently used entries while this table holds
    /// more than its share of the budget.
    pub fn evict_to_budget(&mut self) {
        debug_assert!(self.dirty.is_empty(), "only a flushed table evicts");
        let target = self.budget.share_of(self.bytes);
        if self.bytes <= target {
            return;
        }
        let mut by_age: Vec<(u64, Box<[u8]>)> = self.entries.iter().map(|(k, e)| (e.last_used, k.clone())).collect();
        by_age.sort_unstable_by_key(|(used, _)| *used);
        let mut freed = 0;
        for (_, key) in by_age {
            if self.bytes - freed <= target {
                break;
            }
            if let Some(e) = self.entries.remove(&key) {
                freed += Entry::bytes(&key, e.value.as_deref());
            }
        }
        self.release(freed);
        self.complete = false;
    }

    fn add_bytes(&mut self, bytes: usize) {
        self.bytes += bytes;
        self.budget.grow(bytes);
    }

    fn release(&mut self, bytes: usize) {
        self.bytes -= bytes;
        self.budget.shrink(bytes);
    }
}

impl Drop for KeyedTable {
    fn drop(&mut self) {
        self.budget.shrink(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store(name: &str, cache_bytes: usize) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("openclaw-keyed-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open_with_cache(&dir, cache_bytes).unwrap();
        store.create_cf("t", openclaw_storage::CfKind::Plain).unwrap();
        (store, dir)
    }

    fn stored(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = vec![];
        store
            .scan("t", None, |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
        out
    }

    fn flush(t: &mut KeyedTable, store: &Store) {
        let mut write = StateWrite::default();
        t.flush(&mut write);
        store.write_state(write).unwrap();
    }

    #[test]
    fn changes_reach_the_store_only_at_a_flush_and_read_back_after_eviction() {
        let (store, dir) = temp_store("flush", 8 << 20);
        let mut t = KeyedTable::new(store.clone(), Arc::from("t")).unwrap();
        assert!(t.is_complete(), "an empty column family is wholly in memory");
        t.put(b"a", Some(b"1".to_vec()));
        t.put(b"b", Some(b"2".to_vec()));
        assert!(stored(&store).is_empty(), "nothing is written before the flush");
        flush(&mut t, &store);
        assert_eq!(stored(&store), vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]);

        // A deleted key becomes a delete; a key created and deleted between flushes is never written.
        t.put(b"b", None);
        t.put(b"c", Some(b"3".to_vec()));
        t.put(b"c", None);
        let mut write = StateWrite::default();
        t.flush(&mut write);
        store.write_state(write).unwrap();
        assert_eq!(stored(&store), vec![(b"a".to_vec(), b"1".to_vec())]);

        // A table reopened over a non-empty column family reads its keys back.
        drop(t);
        let mut t = KeyedTable::new(store.clone(), Arc::from("t")).unwrap();
        assert!(!t.is_complete());
        t.load(&[b"a", b"z"]).unwrap();
        assert_eq!(t.get(b"a"), Some(&b"1"[..]));
        assert_eq!(t.get(b"z"), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn forgetting_a_range_says_whether_the_store_holds_any_of_it() {
        let (store, dir) = temp_store("range", 8 << 20);
        let mut t = KeyedTable::new(store.clone(), Arc::from("t")).unwrap();
        t.put(b"a1", Some(b"x".to_vec()));
        t.put(b"b1", Some(b"y".to_vec()));
        assert_eq!(t.values_below(b"b").map(|(k, _)| k.to_vec()).collect::<Vec<_>>(), vec![b"a1".to_vec()]);
        assert!(!t.forget_below(b"b"), "never written: nothing to delete in the store");
        flush(&mut t, &store);
        assert_eq!(stored(&store), vec![(b"b1".to_vec(), b"y".to_vec())], "a forgotten change is not written");
        assert!(t.forget_below(b"c"), "b1 is in the store");
        assert_eq!(t.held_bytes(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_table_over_its_budget_evicts_its_oldest_keys_and_stays_correct() {
        // 64 KiB of state budget: half of it for operator caches.
        let (store, dir) = temp_store("evict", 64 << 10);
        let mut t = KeyedTable::new(store.clone(), Arc::from("t")).unwrap();
        for k in 0u32..2_000 {
            let key = k.to_be_bytes();
            t.load(&[&key]).unwrap();
            t.put(&key, Some(k.to_le_bytes().to_vec()));
            if k % 100 == 99 {
                flush(&mut t, &store);
                t.evict_to_budget();
                assert!(t.held_bytes() <= store.operator_cache().limit_bytes(), "{} bytes held", t.held_bytes());
            }
        }
        assert!(!t.is_complete());
        for k in [0u32, 999, 1_999] {
            let key = k.to_be_bytes();
            t.load(&[&key]).unwrap();
            assert_eq!(t.get(&key), Some(&k.to_le_bytes()[..]));
        }
        assert_eq!(stored(&store).len(), 2_000);
        drop(t);
        assert_eq!(store.operator_cache().used_bytes(), 0, "a dropped table releases its budget");
        let _ = std::fs::remove_dir_all(dir);
    }
}
